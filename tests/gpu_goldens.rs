//! The shared hand-derived goldens (tests/common/bodies.rs) on the GPU
//! backend, on whatever adapter wgpu finds (lavapipe in CI). Without an
//! adapter every body prints a loud notice and passes, unless REQUIRE_GPU=1,
//! where it fails.

#![cfg(feature = "gpu")]

mod common;
mod gpu_support;

use token_sampler::Sampler;

fn make_gpu() -> Option<Box<dyn Sampler>> {
    gpu_support::open_gpu().map(|g| Box::new(g) as Box<dyn Sampler>)
}

backend_tests!(make_gpu());
