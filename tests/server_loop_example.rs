//! examples/server_loop.rs, run: the README's device-resident decode loop
//! (docs/spec.md §11, §13.2) on whatever adapter wgpu finds (lavapipe in CI).
//! Without an adapter it prints a loud notice and passes, unless
//! REQUIRE_GPU=1, where it fails (as every GPU test does).

#![cfg(feature = "gpu")]

#[path = "../examples/server_loop.rs"]
mod server_loop;

#[test]
fn the_server_loop_example_runs() {
    if let Err(e) = pollster::block_on(token_sampler::gpu::GpuContext::new(true)) {
        assert!(
            std::env::var("REQUIRE_GPU").as_deref() != Ok("1"),
            "REQUIRE_GPU=1 but no GPU adapter: {e}"
        );
        eprintln!("*** NO GPU ADAPTER: examples/server_loop.rs NOT RUN ({e}) ***");
        return;
    }
    server_loop::main().expect("the example runs");
}
