//! The shared hand-derived goldens (tests/common/bodies.rs) on the GPU
//! backend, on whatever adapter wgpu finds (lavapipe in CI). Without an
//! adapter every body prints a loud notice and passes, unless REQUIRE_GPU=1,
//! where it fails.

#![cfg(feature = "gpu")]

mod common;
mod gpu_support;

backend_tests!(gpu_support::open_gpu());
