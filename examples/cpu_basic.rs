//! The `cpu` backend embedded in a program: one sampler, reused across calls;
//! three rows with different parameters (a preset with a repetition penalty,
//! top-k + top-p with log-probabilities, greedy); results printed per row.
//!
//! `cargo run --release --example cpu_basic`

use token_sampler::bench::normal_logits;
use token_sampler::{preset, CpuSampler, Sampler, SamplingParams};

fn main() -> Result<(), token_sampler::SamplerError> {
    // Create once: the sampler owns its thread pool and scratch buffers.
    let mut cpu = CpuSampler::new();
    println!("cpu backend: {}", cpu.device());

    let vocab = 32_000;
    let logits = normal_logits(3, vocab, 42);
    let chat = SamplingParams {
        history: vec![17, 17, 905],
        seed: Some(1),
        ..preset("chat")?.params()
    };
    let truncated = SamplingParams {
        temperature: 0.7,
        top_k: 40,
        top_p: 0.9,
        logprobs: Some(3),
        seed: Some(2),
        ..Default::default()
    };
    let params = [chat, truncated, SamplingParams::greedy()];

    for step in 0..2u64 {
        // A decode loop advances `step`: same seed, fresh draws.
        let params: Vec<SamplingParams> = params
            .iter()
            .map(|p| SamplingParams { step, ..p.clone() })
            .collect();
        let rows = cpu.sample(logits.view(), &params, 1)?;
        for (i, r) in rows.iter().enumerate() {
            println!(
                "step {step} row {i}: token {:>5}  p {:.4}  kept {:>5}  T {:.2}  entropy {:.3} nats",
                r.token,
                r.logprob.exp(),
                r.kept,
                r.temperature,
                r.entropy
            );
            if let Some(top) = &r.top_logprobs {
                let fmt: Vec<String> = top
                    .processed
                    .iter()
                    .map(|t| format!("{}:{:.3}", t.id, t.logprob))
                    .collect();
                println!("             top processed logprobs {}", fmt.join(" "));
            }
        }
    }
    Ok(())
}
