//! The shared hand-derived goldens (tests/common/bodies.rs) on the GPU
//! backend, on whatever adapter wgpu finds (lavapipe in CI). Without an
//! adapter every body prints a loud notice and passes, unless REQUIRE_GPU=1,
//! where it fails.

#![cfg(feature = "gpu")]

mod common;

use token_sampler::gpu::GpuSampler;
use token_sampler::Sampler;

fn make_gpu() -> Option<Box<dyn Sampler>> {
    match GpuSampler::new_blocking(true) {
        Ok(g) => Some(Box::new(g)),
        Err(e) => {
            if std::env::var("REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            eprintln!("\n!!!!!!!! NO GPU ADAPTER — GPU GOLDEN TESTS NOT RUN: {e} !!!!!!!!\n");
            None
        }
    }
}

backend_tests!(make_gpu());
