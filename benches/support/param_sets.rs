//! The parameter sets the GPU benchmarks run (SPEC §9's grid), shared by
//! benches/gpu.rs and examples/gpu_bench.rs.

use token_sampler::{DynamicTemperature, Mapping, SamplingParams};

pub const SETS: [&str; 5] = ["temperature", "top_k_50+top_p_0.9", "top_p_0.95", "min_p_0.05", "entropy_guided"];

/// T = 0.8 plus the named stage(s); `top_p_0.9` is the FlashInfer anchor's.
pub fn params_for(set: &str) -> SamplingParams {
    let mut p = SamplingParams { seed: Some(1), temperature: 0.8, ..Default::default() };
    match set {
        "top_k_50+top_p_0.9" => {
            p.top_k = 50;
            p.top_p = 0.9;
        }
        "top_p_0.95" => p.top_p = 0.95,
        "top_p_0.9" => p.top_p = 0.9,
        "min_p_0.05" => p.min_p = 0.05,
        "entropy_guided" => {
            p.dynamic_temperature = Some(DynamicTemperature::new(Mapping::Linear {
                h_low: 1.0,
                h_high: 8.0,
                t_min: 0.3,
                t_max: 1.2,
            }))
        }
        _ => {}
    }
    p
}
