//! What a user pays on the GPU backend: end to end (upload + sample +
//! readback, `iter_custom` including the device wait) per (B, V, parameter
//! set). Kernel time (timestamp queries) is printed next to it when the
//! adapter has TIMESTAMP_QUERY. In CI (`cargo bench -- --test`) each case
//! runs once.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use token_sampler::gpu::GpuSampler;
use token_sampler::{Batch, DynamicTemperature, Mapping, Sampler, SamplingParams};

fn params_set(name: &str) -> SamplingParams {
    let mut p = SamplingParams { seed: Some(1), temperature: 0.8, ..Default::default() };
    match name {
        "topk50_topp0.9" => {
            p.top_k = 50;
            p.top_p = 0.9;
        }
        "topp0.95" => p.top_p = 0.95,
        "minp0.05" => p.min_p = 0.05,
        "entropy" => {
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

fn normal_batch(b: usize, v: usize) -> Batch {
    let mut s = 42u64;
    let data = (0..b * v)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u1 = ((s >> 11) as f64 / (1u64 << 53) as f64).max(1e-300);
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u2 = (s >> 11) as f64 / (1u64 << 53) as f64;
            (3.0 * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect();
    Batch::new(data, b, v).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut g = match GpuSampler::new_blocking(true) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("!!!!!!!! no GPU adapter, GPU benchmarks not run: {e}");
            return;
        }
    };
    let quick = std::env::var("TS_BENCH_FULL").is_err();
    let full: Vec<(usize, usize)> = [1, 32, 256]
        .iter()
        .flat_map(|&b| [32_000, 128_256, 200_064].map(move |v| (b, v)))
        .collect();
    let grid: Vec<(usize, usize)> = if quick { vec![(1, 32_000), (32, 32_000)] } else { full };
    let mut group = c.benchmark_group("gpu_end_to_end");
    group.sample_size(10);
    for &(b, v) in &grid {
        let batch = normal_batch(b, v);
        for set in ["T_only", "topk50_topp0.9", "topp0.95", "minp0.05", "entropy"] {
            let params = vec![params_set(set); b];
            group.throughput(Throughput::Elements((b * v) as u64));
            group.bench_with_input(BenchmarkId::new(set, format!("B{b}_V{v}")), &(), |bch, _| {
                bch.iter_custom(|iters| {
                    let t = Instant::now();
                    for _ in 0..iters {
                        g.sample(batch.view(), &params, 1).unwrap();
                    }
                    t.elapsed()
                })
            });
            if let Some(ms) = g.last_kernel_ms() {
                eprintln!("kernel time {set} B{b} V{v}: {ms:.3} ms");
            }
        }
    }
    group.finish();
    let _ = Duration::ZERO;
}

criterion_group!(benches, bench);
criterion_main!(benches);
