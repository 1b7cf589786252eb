//! A plain batch on the GPU backend: 4 rows of a 32k vocabulary.
//! `cargo run --release --example gpu_batch`

use token_sampler::gpu::GpuSampler;
use token_sampler::{Batch, Sampler, SamplingParams};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut gpu = GpuSampler::new_blocking(true)?;
    println!("device: {}", gpu.device());
    let v = 32_000;
    let rows: Vec<Vec<f32>> = (0..4)
        .map(|r| {
            (0..v)
                .map(|i| ((i * 7919 + r * 104729) % 1000) as f32 / 100.0)
                .collect()
        })
        .collect();
    let batch = Batch::from_rows(&rows)?;
    let params = vec![
        SamplingParams {
            seed: Some(1),
            ..Default::default()
        },
        SamplingParams {
            seed: Some(2),
            temperature: 0.7,
            top_p: 0.9,
            ..Default::default()
        },
        SamplingParams {
            seed: Some(3),
            top_k: 50,
            min_p: 0.05,
            ..Default::default()
        },
        SamplingParams::greedy(),
    ];
    for (i, r) in gpu.sample(batch.view(), &params, 1)?.iter().enumerate() {
        println!(
            "row {i}: token {} logprob {:.4} kept {} entropy {:.4}",
            r.token, r.logprob, r.kept, r.entropy
        );
    }
    Ok(())
}
