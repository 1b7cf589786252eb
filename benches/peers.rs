//! Side-by-side with the samplers people use on CPUs today, on the same rows in
//! the same process: candle-transformers' `LogitsProcessor` and llama.cpp's
//! sampler chain (built from source by `llama-cpp-sys-2`).
//!
//! `cargo bench --features peers --bench peers` (or `scripts/bench_cpu.sh`).
//! Environment: `PEERS_BATCH` (32), `PEERS_VOCAB` (131072), `PEERS_RUNS` (15),
//! `PEERS_JSON=FILE` (also write the results as JSON), `PEERS_SAMPLERS`
//! (which peers run beside the cpu sampler: a comma list of `llama_1t`,
//! `llama_nt`, `candle_1t`, `candle_nt`; default all, empty = none).
//!
//! Every sampler gets B rows of seeded normal(0, 3) logits per call and draws
//! one token per row. The peers are timed two ways: one thread (how a decode
//! loop calls them, row after row) and rows spread over all cores with a
//! sampler per thread (the strongest reading of them); the ratios are given
//! against both. Each sampler is timed in blocks of back-to-back calls, and
//! the samplers take turns block by block (three cycles), so load changes on
//! the machine hit all of them alike. Candle's input tensors are built outside the timed
//! region; llama.cpp's timing includes filling its `llama_token_data` array
//! from the logits, which `llama_sampler_sample` does on every call.
//! Candle has no min-p and no dynamic temperature: those rows compare with
//! llama.cpp's `min_p` and `temp_ext` only.

use std::time::Instant;

use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use rayon::prelude::*;
use token_sampler::bench::{median_iqr, normal_logits, ParamSet, SET_NAMES};
use token_sampler::{Batch, CpuSampler, Sampler};

use llama_cpp_sys_2 as ll;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median wall time (ms) per callee. Each callee runs in blocks of
/// back-to-back calls after a warm-up (warm, as in a decode loop that calls it
/// step after step, and as criterion times a benchmark); the callees take turns block by block,
/// three cycles, so a change in the machine's load mid-run hits every sampler
/// alike. The result is the median over all timed calls of a callee.
fn time_cycles(runs: usize, callees: &mut [Box<dyn FnMut() + '_>]) -> Vec<f64> {
    const CYCLES: usize = 3;
    let per_block = runs.div_ceil(CYCLES);
    let mut times = vec![Vec::with_capacity(per_block * CYCLES); callees.len()];
    for _ in 0..CYCLES {
        for (i, f) in callees.iter_mut().enumerate() {
            // Warm up for at least two calls and 50 ms: a core that sat idle
            // while the previous callee ran on one thread needs that long to
            // come back to full clock (measured here: without it, the first
            // milliseconds of a two-thread callee run at about half speed).
            let warm = Instant::now();
            let mut calls = 0;
            while calls < 2 || warm.elapsed().as_secs_f64() < 0.05 {
                f();
                calls += 1;
            }
            for _ in 0..per_block {
                let t0 = Instant::now();
                f();
                times[i].push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    times.iter().map(|t| median_iqr(t).0).collect()
}

/// llama.cpp's chain for a parameter set (its own stage order: truncation,
/// then temperature, then the draw).
struct Chain(*mut ll::llama_sampler);

// The chain is used by one thread at a time.
unsafe impl Send for Chain {}

impl Chain {
    fn new(set: &str, seed: u32) -> Option<Chain> {
        // SAFETY: plain constructor calls of llama.cpp's C API; the chain takes
        // ownership of every sampler added to it.
        unsafe {
            let chain = ll::llama_sampler_chain_init(ll::llama_sampler_chain_default_params());
            let add = |s: *mut ll::llama_sampler| ll::llama_sampler_chain_add(chain, s);
            match set {
                "temperature" => add(ll::llama_sampler_init_temp(0.7)),
                "top_k_top_p" => {
                    add(ll::llama_sampler_init_top_k(40));
                    add(ll::llama_sampler_init_top_p(0.9, 1));
                    add(ll::llama_sampler_init_temp(0.7));
                }
                "top_p" => {
                    add(ll::llama_sampler_init_top_p(0.9, 1));
                    add(ll::llama_sampler_init_temp(0.7));
                }
                "min_p" => {
                    add(ll::llama_sampler_init_min_p(0.05, 1));
                    add(ll::llama_sampler_init_temp(0.7));
                }
                // The nearest llama.cpp has to our linear map (T 0.3–1.2):
                // temp_ext centred on 0.75 with range 0.45, exponent 1.
                "entropy_guided" => add(ll::llama_sampler_init_temp_ext(0.75, 0.45, 1.0)),
                _ => {
                    ll::llama_sampler_free(chain);
                    return None;
                }
            }
            add(ll::llama_sampler_init_dist(seed));
            Some(Chain(chain))
        }
    }

    /// One token, the way `llama_sampler_sample` does it: fill the candidate
    /// array from the logits, apply the chain, read the selection.
    fn sample(&mut self, row: &[f32], cur: &mut Vec<ll::llama_token_data>) -> i32 {
        cur.clear();
        cur.extend(
            row.iter()
                .enumerate()
                .map(|(id, &logit)| ll::llama_token_data {
                    id: id as i32,
                    logit,
                    p: 0.0,
                }),
        );
        let mut arr = ll::llama_token_data_array {
            data: cur.as_mut_ptr(),
            size: cur.len(),
            selected: -1,
            sorted: false,
        };
        // SAFETY: `arr` points at `cur`, alive and unaliased for the call.
        unsafe { ll::llama_sampler_apply(self.0, &mut arr) };
        cur[arr.selected.max(0) as usize].id
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        // SAFETY: the chain was made by llama_sampler_chain_init and is freed once.
        unsafe { ll::llama_sampler_free(self.0) }
    }
}

fn candle_sampling(set: &str) -> Option<Sampling> {
    match set {
        "temperature" => Some(Sampling::All { temperature: 0.7 }),
        "top_k_top_p" => Some(Sampling::TopKThenTopP {
            k: 40,
            p: 0.9,
            temperature: 0.7,
        }),
        "top_p" => Some(Sampling::TopP {
            p: 0.9,
            temperature: 0.7,
        }),
        _ => None,
    }
}

/// One call's worth of llama.cpp work: every row through the chain, on one
/// thread or with the rows spread over the pool (a chain per thread).
fn llama_call<'a>(batch: &'a Batch, set: &str, parallel: bool) -> Box<dyn FnMut() + 'a> {
    let rows = batch.rows();
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let mut workers: Vec<(Chain, Vec<ll::llama_token_data>)> = (0..threads)
        .map(|i| {
            (
                Chain::new(set, 7 + i as u32).expect("known set"),
                Vec::new(),
            )
        })
        .collect();
    let per = rows.div_ceil(threads);
    Box::new(move || {
        let run = |w: usize, (chain, cur): &mut (Chain, Vec<ll::llama_token_data>)| {
            for r in (w * per)..((w + 1) * per).min(rows) {
                std::hint::black_box(chain.sample(batch.row(r), cur));
            }
        };
        if parallel {
            workers
                .par_iter_mut()
                .enumerate()
                .for_each(|(w, x)| run(w, x));
        } else {
            run(0, &mut workers[0]);
        }
    })
}

/// The same for candle's `LogitsProcessor` (tensors built beforehand).
fn candle_call<'a>(
    tensors: &'a [Tensor],
    sampling: &Sampling,
    parallel: bool,
) -> Box<dyn FnMut() + 'a> {
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let mut workers: Vec<LogitsProcessor> = (0..threads)
        .map(|i| LogitsProcessor::from_sampling(7 + i as u64, sampling.clone()))
        .collect();
    let per = tensors.len().div_ceil(threads);
    Box::new(move || {
        let run = |w: usize, lp: &mut LogitsProcessor| {
            for t in tensors.iter().skip(w * per).take(per) {
                std::hint::black_box(lp.sample(t).expect("candle sample"));
            }
        };
        if parallel {
            workers
                .par_iter_mut()
                .enumerate()
                .for_each(|(w, lp)| run(w, lp));
        } else {
            run(0, &mut workers[0]);
        }
    })
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing
    // useful here either way: this program only measures.
    let rows = env("PEERS_BATCH", 32);
    let vocab = env("PEERS_VOCAB", 131_072);
    let runs = env("PEERS_RUNS", 15).max(10);
    let batch = normal_logits(rows, vocab, 1);
    let mut cpu = CpuSampler::new();
    let tensors: Vec<Tensor> = (0..rows)
        .map(|r| Tensor::from_slice(batch.row(r), vocab, &Device::Cpu).expect("tensor"))
        .collect();
    let probe = cpu
        .stream_read_ms(batch.view())
        .ok()
        .flatten()
        .unwrap_or(f64::NAN);
    println!(
        "host CPU: {} · {} threads · token-sampler cpu on {}",
        token_sampler::bench::host_cpu_model(),
        rayon::current_num_threads(),
        cpu.device()
    );
    println!(
        "B = {rows}, V = {vocab}, normal(0, 3) logits; median of {runs} calls; µs per row; one streaming read of the batch = {:.1} µs/row",
        probe * 1e3 / rows as f64
    );
    println!(
        "{:<15} {:>7} {:>6} | {:>9} {:>6} {:>9} {:>6} | {:>9} {:>6} {:>9} {:>6}",
        "set", "cpu", "reads", "llama 1T", "×", "llama nT", "×", "candle 1T", "×", "candle nT", "×"
    );
    let us = |ms: f64| ms * 1e3 / rows as f64;
    let wanted: Vec<String> = std::env::var("PEERS_SAMPLERS")
        .unwrap_or_else(|_| "llama_1t,llama_nt,candle_1t,candle_nt".into())
        .split(',')
        .map(|w| w.trim().to_string())
        .collect();
    let mut json = Vec::new();
    for name in SET_NAMES {
        let set = ParamSet::named(name).expect("named set");
        let params = set.rows(rows, 1).expect("params");
        let cpu_ref = &mut cpu;
        let mut labels = vec!["cpu"];
        let mut callees: Vec<Box<dyn FnMut() + '_>> = vec![Box::new(|| {
            std::hint::black_box(
                cpu_ref
                    .sample(batch.view(), &params, 1)
                    .expect("cpu sample"),
            );
        })];
        let sampling = candle_sampling(name);
        for (label, parallel) in [("llama_1t", false), ("llama_nt", true)] {
            if wanted.iter().any(|w| w == label) {
                labels.push(label);
                callees.push(llama_call(&batch, name, parallel));
            }
        }
        for (label, parallel) in [("candle_1t", false), ("candle_nt", true)] {
            if let Some(s) = sampling
                .as_ref()
                .filter(|_| wanted.iter().any(|w| w == label))
            {
                labels.push(label);
                callees.push(candle_call(&tensors, s, parallel));
            }
        }
        let t = time_cycles(runs, &mut callees);
        drop(callees);
        let of = |label: &str| labels.iter().position(|&l| l == label).map(|i| t[i]);
        let ours = t[0];
        let (l1, ln) = (of("llama_1t"), of("llama_nt"));
        let (c1, cn) = (of("candle_1t"), of("candle_nt"));
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}", us(v)));
        let ratio = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}", v / ours));
        println!(
            "{:<15} {:>7.1} {:>6.2} | {:>9} {:>6} {:>9} {:>6} | {:>9} {:>6} {:>9} {:>6}",
            name,
            us(ours),
            ours / probe,
            opt(l1),
            ratio(l1),
            opt(ln),
            ratio(ln),
            opt(c1),
            ratio(c1),
            opt(cn),
            ratio(cn),
        );
        json.push(serde_json::json!({
            "set": name, "batch": rows, "vocab": vocab,
            "cpu_us_per_row": us(ours), "cpu_read_equivalents": ours / probe,
            "llama_us_per_row_1t": l1.map(us), "llama_us_per_row_nt": ln.map(us),
            "candle_us_per_row_1t": c1.map(us), "candle_us_per_row_nt": cn.map(us),
            "speedup_vs_llama_1t": l1.map(|l| l / ours), "speedup_vs_llama_nt": ln.map(|l| l / ours),
            "speedup_vs_candle_1t": c1.map(|c| c / ours), "speedup_vs_candle_nt": cn.map(|c| c / ours),
        }));
    }
    println!("(reads = cpu time ÷ one streaming read of the same logits; × = that peer's time ÷ cpu time; 1T = one thread, row after row; nT = rows over all cores)");
    if let Ok(path) = std::env::var("PEERS_JSON") {
        let out = serde_json::json!({"schema": 1, "host_cpu": token_sampler::bench::host_cpu_model(), "results": json});
        std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap())
            .expect("write PEERS_JSON");
    }
}
