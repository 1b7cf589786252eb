//! What a user pays on the GPU backend: end to end (upload + sample +
//! readback, `iter_custom` including the device wait) per (B, V, parameter
//! set). Kernel time (timestamp queries) is printed next to it when the
//! adapter has TIMESTAMP_QUERY. In CI (`cargo bench -- --test`) each case
//! runs once; `TS_BENCH_FULL=1` runs the whole grid (B ∈ {1, 32, 256} ×
//! V ∈ {32 000, 128 256, 200 064}). examples/gpu_bench.rs is the same grid as
//! one binary with JSON output, for machines without cargo.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use token_sampler::gpu::GpuSampler;
use token_sampler::validate::normal_batch;
use token_sampler::Sampler;

mod support {
    pub mod param_sets;
}
use support::param_sets::{params_for, SETS};

fn bench(c: &mut Criterion) {
    let mut g = match GpuSampler::new_blocking(true) {
        Ok(g) => g,
        Err(e) => {
            if std::env::var("REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            eprintln!("!!!!!!!! no GPU adapter, GPU benchmarks not run: {e}");
            return;
        }
    };
    let full: Vec<(usize, usize)> = [1, 32, 256]
        .iter()
        .flat_map(|&b| [32_000, 128_256, 200_064].map(move |v| (b, v)))
        .collect();
    let grid = if std::env::var("TS_BENCH_FULL").is_ok() {
        full
    } else {
        vec![(1, 32_000), (32, 32_000)]
    };
    let mut group = c.benchmark_group("gpu_end_to_end");
    group.sample_size(10);
    for &(b, v) in &grid {
        let batch = normal_batch(b, v, 3.0, 42);
        for set in SETS {
            let params = vec![params_for(set); b];
            group.throughput(Throughput::Elements((b * v) as u64));
            group.bench_with_input(
                BenchmarkId::new(set, format!("B{b}_V{v}")),
                &(),
                |bch, _| {
                    bch.iter_custom(|iters| {
                        let t = Instant::now();
                        for _ in 0..iters {
                            g.sample(batch.view(), &params, 1).unwrap();
                        }
                        t.elapsed()
                    })
                },
            );
            if let Some(ms) = g.last_kernel_ms() {
                eprintln!(
                    "kernel time {set} B{b} V{v}: {ms:.3} ms (reads per row {:?})",
                    g.last_reads().iter().max()
                );
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
