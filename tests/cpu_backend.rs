//! The shared hand-derived test bodies (tests/common/bodies.rs) on the `cpu`
//! backend, with two threads and with one (rows split or not), on the widest
//! ISA this CPU runs and on the x86-64 baseline.

mod common;

use token_sampler::cpu::{CpuSampler, Isa};
use token_sampler::Sampler;

fn cpu() -> Option<Box<dyn Sampler>> {
    Some(Box::new(CpuSampler::with_threads(2)))
}

backend_tests!(cpu());

mod one_thread_baseline {
    use super::*;

    fn cpu_baseline() -> Option<Box<dyn Sampler>> {
        Some(Box::new(CpuSampler::with_isa(1, Isa::Baseline)))
    }

    backend_tests!(cpu_baseline());
}
