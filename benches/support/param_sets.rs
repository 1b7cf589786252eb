//! The parameter sets the GPU benchmarks run (SPEC §9's grid), shared by
//! benches/gpu.rs and examples/gpu_bench.rs. The values follow the `bench`
//! command's named sets (T 0.7; linear entropy-guided T over 1–5 nats), with
//! the GPU grid's top-k 50 and top-p 0.95.

use token_sampler::{DynamicTemperature, EntropyUnit, Mapping, SamplingParams};

pub const SETS: [&str; 5] = [
    "temperature",
    "top_k_50+top_p_0.9",
    "top_p_0.95",
    "min_p_0.05",
    "entropy_guided",
];

/// The named set; `top_p_0.9` is the FlashInfer anchor's.
pub fn params_for(set: &str) -> SamplingParams {
    let t07 = SamplingParams {
        seed: Some(1),
        temperature: 0.7,
        ..Default::default()
    };
    match set {
        "top_k_50+top_p_0.9" => SamplingParams {
            top_k: 50,
            top_p: 0.9,
            ..t07
        },
        "top_p_0.95" => SamplingParams { top_p: 0.95, ..t07 },
        "top_p_0.9" => SamplingParams { top_p: 0.9, ..t07 },
        "min_p_0.05" => SamplingParams { min_p: 0.05, ..t07 },
        "entropy_guided" => SamplingParams {
            seed: Some(1),
            dynamic_temperature: Some(DynamicTemperature {
                unit: Some(EntropyUnit::Nats),
                ..DynamicTemperature::new(Mapping::Linear {
                    h_low: 1.0,
                    h_high: 5.0,
                    t_min: 0.3,
                    t_max: 1.2,
                })
            }),
            ..Default::default()
        },
        _ => t07,
    }
}
