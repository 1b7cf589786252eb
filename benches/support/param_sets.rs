//! The parameter sets the GPU benchmarks run (docs/spec.md §9's grid), shared by
//! benches/gpu.rs and examples/gpu_bench.rs: the `bench` command's named sets
//! (`token_sampler::bench::named_set`) with the GPU grid's top-k 50 and
//! top-p 0.95, and the FlashInfer anchor's top-p 0.9.

use token_sampler::bench::named_set;
use token_sampler::SamplingParams;

pub const SETS: [&str; 5] = [
    "temperature",
    "top_k_50+top_p_0.9",
    "top_p_0.95",
    "min_p_0.05",
    "entropy_guided",
];

/// The grid set's parameters, seeded (unknown names fall back to `temperature`).
pub fn params_for(set: &str) -> SamplingParams {
    let named = |name: &str| named_set(name).expect("a named bench set");
    let p = match set {
        "top_k_50+top_p_0.9" => SamplingParams {
            top_k: 50,
            ..named("top_k_top_p")
        },
        "top_p_0.95" => SamplingParams {
            top_p: 0.95,
            ..named("top_p")
        },
        "top_p_0.9" => named("top_p"),
        "min_p_0.05" => named("min_p"),
        "entropy_guided" => named("entropy_guided"),
        _ => named("temperature"),
    };
    SamplingParams { seed: Some(1), ..p }
}
