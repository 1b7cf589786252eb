//! Criterion benchmarks of the `cpu` backend: what a caller pays for one
//! `sample` call (every row, threads included), per named parameter set,
//! with `Throughput::Elements` = logits read per call.
//!
//! `cargo bench --bench cpu` measures; `cargo test --benches` runs each
//! benchmark once in test mode (CI), so they never rot.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use token_sampler::bench::{normal_logits, ParamSet, SET_NAMES};
use token_sampler::{CpuSampler, Sampler};

fn sets(c: &mut Criterion) {
    let mut cpu = CpuSampler::new();
    // The headline shape (B = 32, V = 131 072) and the small-batch one.
    for (rows, vocab) in [(32usize, 131_072usize), (1, 200_064)] {
        let batch = normal_logits(rows, vocab, 1);
        let mut group = c.benchmark_group(format!("cpu/B{rows}_V{vocab}"));
        group.throughput(Throughput::Elements((rows * vocab) as u64));
        group.sample_size(20);
        for name in SET_NAMES {
            let params = ParamSet::named(name).unwrap().rows(rows, 1).unwrap();
            group.bench_with_input(BenchmarkId::from_parameter(name), &params, |b, params| {
                b.iter(|| cpu.sample(batch.view(), params, 1).unwrap())
            });
        }
        group.finish();
    }
}

fn features(c: &mut Criterion) {
    // What the sparse edits, log-probabilities and many draws add.
    let (rows, vocab) = (32usize, 131_072usize);
    let batch = normal_logits(rows, vocab, 2);
    let mut cpu = CpuSampler::new();
    let base = ParamSet::named("top_k_top_p")
        .unwrap()
        .rows(rows, 1)
        .unwrap();
    let mut group = c.benchmark_group("cpu/features_B32_V131072");
    group.throughput(Throughput::Elements((rows * vocab) as u64));
    group.sample_size(20);
    let penalties: Vec<_> = base
        .iter()
        .map(|p| {
            let mut p = p.clone();
            p.repetition_penalty = 1.1;
            p.frequency_penalty = 0.2;
            p.history = (0..256).map(|i| (i * 509) % vocab as u32).collect();
            p
        })
        .collect();
    group.bench_function("penalties_256_history", |b| {
        b.iter(|| cpu.sample(batch.view(), &penalties, 1).unwrap())
    });
    let logprobs: Vec<_> = base
        .iter()
        .map(|p| {
            let mut p = p.clone();
            p.logprobs = Some(20);
            p
        })
        .collect();
    group.bench_function("logprobs_20", |b| {
        b.iter(|| cpu.sample(batch.view(), &logprobs, 1).unwrap())
    });
    group.bench_function("draws_64", |b| {
        b.iter(|| cpu.sample(batch.view(), &base, 64).unwrap())
    });
    group.finish();
}

criterion_group!(benches, sets, features);
criterion_main!(benches);
