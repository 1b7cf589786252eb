//! Concurrency and reuse (docs/spec.md §13.3): samplers used from 8 threads at
//! once give exactly the results of one thread, and thousands of back-to-back
//! calls of varying shapes in one process keep memory bounded.
//!
//! The bounded-memory tests measure the resident set (Linux: /proc/self/statm)
//! after a warm-up that has seen every shape once, then after many more calls
//! of the same shapes in a shuffled order, and allow a generous 64 MiB of
//! growth (allocator noise, driver caches); a leak of even one logits copy
//! per call grows by gigabytes. The default run makes 600 cpu and 150 gpu
//! calls; the `#[ignore]`d versions make 10 000 each and print the numbers:
//! `cargo test --release --test reuse -- --ignored --nocapture`.

#[cfg(feature = "gpu")]
mod gpu_support;

use std::sync::Mutex;

use token_sampler::validate::{random_params, random_row, RowKind, Stream};
use token_sampler::{Batch, CpuSampler, RowProbs, RowResult, Sampler, SamplingParams};

/// A batch of `rows` × `vocab` random rows with random parameters (every
/// kind of row and stage, seeded so every thread sees the same batch).
fn batch(seed: u64, rows: usize, vocab: usize) -> (Batch, Vec<SamplingParams>) {
    let mut s = Stream::new(seed);
    let kinds = [
        RowKind::Normal,
        RowKind::Peaked,
        RowKind::Ties,
        RowKind::Masked,
        RowKind::Zipf,
    ];
    let mut x = Vec::with_capacity(rows);
    let mut params = Vec::with_capacity(rows);
    for _ in 0..rows {
        let kind = s.pick(&kinds);
        let mut p = random_params(&mut s, vocab);
        p.allowed_token_ids = None;
        p.seed = Some(s.next_u64());
        x.push(random_row(&mut s, kind, vocab));
        params.push(p);
    }
    (Batch::from_rows(&x).unwrap(), params)
}

/// The shapes the tests cycle through: one row to a few dozen, a handful of
/// tokens to several storage tiles.
const SHAPES: [(usize, usize); 8] = [
    (1, 7),
    (3, 500),
    (8, 4096),
    (1, 40_000),
    (17, 1000),
    (32, 2048),
    (2, 131_072),
    (5, 33),
];

/// The GPU's memory tests use the smaller of them (lavapipe runs a large
/// batch in seconds).
const GPU_SHAPES: [(usize, usize); 6] = [
    (1, 7),
    (3, 500),
    (8, 4096),
    (1, 40_000),
    (17, 1000),
    (5, 33),
];

type Out = (Vec<RowResult>, Vec<RowProbs>);

/// The tests of this file run one at a time: the memory tests measure the
/// whole process.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn run(s: &mut dyn Sampler, seed: u64) -> Out {
    run_shape(s, SHAPES[seed as usize % SHAPES.len()], seed)
}

fn run_shape(s: &mut dyn Sampler, (rows, vocab): (usize, usize), seed: u64) -> Out {
    let (b, p) = batch(seed, rows, vocab);
    let res = s.sample(b.view(), &p, 3).unwrap();
    let probs = s.probs(b.view(), &p).unwrap();
    (res, probs)
}

/// Results of `calls` calls on one thread, then the same calls on 8 threads
/// at once (each thread all of them, in its own order), compared bit for bit.
fn eight_threads_agree(calls: u64, open: impl Fn() -> Box<dyn Sampler> + Sync) {
    let _one = one_at_a_time();
    let mut one = open();
    let want: Vec<Out> = (0..calls).map(|c| run(&mut *one, c)).collect();
    drop(one);
    let got: Vec<Vec<(u64, Out)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let open = &open;
                scope.spawn(move || {
                    let mut s = open();
                    (0..calls)
                        .map(|i| {
                            let c = (i + t) % calls;
                            (c, run(&mut *s, c))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (t, outs) in got.iter().enumerate() {
        for (c, out) in outs {
            assert_eq!(out, &want[*c as usize], "thread {t}, call {c}");
        }
    }
}

#[test]
fn cpu_from_8_threads_matches_one_thread() {
    // One sampler per thread (docs/spec.md §13.3), each with its own pool.
    eight_threads_agree(16, || Box::new(CpuSampler::with_threads(2)));
}

#[test]
fn one_cpu_sampler_behind_a_mutex_serves_8_threads() {
    let shared = Mutex::new(CpuSampler::with_threads(2));
    let _one = one_at_a_time();
    let want: Vec<Out> = (0..8)
        .map(|c| run(&mut CpuSampler::with_threads(2), c))
        .collect();
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let (shared, want) = (&shared, &want);
            scope.spawn(move || {
                for i in 0..8 {
                    let c = (i + t) % 8;
                    let got = run(&mut *shared.lock().unwrap(), c);
                    assert_eq!(got, want[c as usize], "thread {t}, call {c}");
                }
            });
        }
    });
}

#[cfg(feature = "gpu")]
#[test]
fn gpu_from_8_threads_matches_one_thread() {
    use token_sampler::gpu::GpuSampler;
    // Eight samplers on one device (`from_device` with clones of the same
    // device and queue, docs/spec.md §13.3), used at once.
    let Some(g) = gpu_support::open_gpu() else {
        return;
    };
    let (device, queue) = (g.context().device.clone(), g.context().queue.clone());
    drop(g);
    eight_threads_agree(8, || {
        Box::new(GpuSampler::from_device(device.clone(), queue.clone()))
    });
}

/// The resident set in bytes (Linux), or None.
fn rss() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

const MIB: f64 = (1 << 20) as f64;

/// Runs every shape once (warm-up), then `calls` calls of shuffled shapes;
/// returns (RSS after warm-up, peak RSS after, RSS at the end) in bytes and
/// asserts growth under `tolerance` bytes.
fn bounded(name: &str, s: &mut dyn Sampler, shapes: &[(usize, usize)], calls: u64, tolerance: u64) {
    let _one = one_at_a_time();
    let Some(_) = rss() else {
        eprintln!("{name}: no /proc/self/statm; memory not measured");
        return;
    };
    let n = shapes.len() as u64;
    for c in 0..2 * n {
        run_shape(s, shapes[(c % n) as usize], c);
    }
    let start = rss().unwrap();
    let mut peak = start;
    let t0 = std::time::Instant::now();
    let mut order = Stream::new(99);
    for i in 0..calls {
        // The same shapes (seeds ≡ shape mod 8) with fresh data and params.
        let shape = shapes[order.below(shapes.len())];
        run_shape(s, shape, n * (2 + i));
        if i % 50 == 0 {
            peak = peak.max(rss().unwrap());
        }
        if (i + 1) % (calls / 10).max(1) == 0 {
            println!(
                "{name}: after {} calls RSS {:.1} MiB",
                i + 1,
                rss().unwrap() as f64 / MIB
            );
        }
    }
    let end = rss().unwrap();
    peak = peak.max(end);
    println!(
        "{name}: {calls} calls (sample + probs each) in {:.1} s; RSS after warm-up {:.1} MiB, peak {:.1} MiB, end {:.1} MiB (growth {:+.1} MiB)",
        t0.elapsed().as_secs_f64(),
        start as f64 / MIB,
        peak as f64 / MIB,
        end as f64 / MIB,
        (end as f64 - start as f64) / MIB
    );
    assert!(
        peak <= start + tolerance,
        "{name}: RSS grew from {:.1} MiB to {:.1} MiB over {calls} calls",
        start as f64 / MIB,
        peak as f64 / MIB
    );
}

const TOLERANCE: u64 = 64 << 20;

/// Runs the test `name` of this binary in a process of its own (an earlier
/// test's threads and freed memory would count in this one's resident
/// set); returns false in that child, which then does the work.
fn in_own_process(name: &str) -> bool {
    if std::env::var_os("TOKEN_SAMPLER_REUSE_CHILD").is_some() {
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let status = std::process::Command::new(exe)
        .args([name, "--exact", "--nocapture", "--include-ignored"])
        .env("TOKEN_SAMPLER_REUSE_CHILD", "1")
        .status()
        .unwrap();
    assert!(status.success(), "{name} failed in its own process");
    true
}

#[test]
fn cpu_memory_stays_bounded() {
    if in_own_process("cpu_memory_stays_bounded") {
        return;
    }
    bounded(
        "cpu",
        &mut CpuSampler::with_threads(2),
        &SHAPES,
        600,
        TOLERANCE,
    );
}

#[test]
#[ignore = "10 000 calls: run with --ignored --nocapture for the numbers"]
fn cpu_memory_stays_bounded_over_10000_calls() {
    if in_own_process("cpu_memory_stays_bounded_over_10000_calls") {
        return;
    }
    bounded(
        "cpu",
        &mut CpuSampler::with_threads(2),
        &SHAPES,
        10_000,
        TOLERANCE,
    );
}

#[cfg(feature = "gpu")]
fn gpu_bounded(calls: u64) {
    let Some(mut g) = gpu_support::open_gpu() else {
        return;
    };
    bounded("gpu", &mut *g, &GPU_SHAPES, calls, TOLERANCE);
    println!("gpu workspace: {:.1} MiB", g.workspace_bytes() as f64 / MIB);
    // The workspace only grows to what the largest shapes need.
    let most = g.workspace_estimate(17, 40_000).unwrap();
    assert!(
        g.workspace_bytes() <= 2 * most,
        "{} > 2 × {most}",
        g.workspace_bytes()
    );
}

/// It failed (+759 MiB over its 150 calls) with the 128-invocation
/// workgroups while the chunk record was a uniform buffer: lavapipe
/// inlined the buffer's values and compiled the shaders again on every
/// dispatch, keeping each copy (docs/gpu.md "Sizes").
#[cfg(feature = "gpu")]
#[test]
fn gpu_memory_stays_bounded() {
    if in_own_process("gpu_memory_stays_bounded") {
        return;
    }
    gpu_bounded(150);
}

#[cfg(feature = "gpu")]
#[test]
#[ignore = "10 000 calls: run with --ignored --nocapture for the numbers"]
fn gpu_memory_stays_bounded_over_10000_calls() {
    if in_own_process("gpu_memory_stays_bounded_over_10000_calls") {
        return;
    }
    gpu_bounded(10_000);
}
