//! `bench`: a grid of backends × batch sizes × vocabularies × parameter sets
//! (docs/spec.md §8), timed end to end (and kernel-only where the backend has a device
//! clock), with a streaming-read probe of the same run for the bandwidth
//! fraction.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

use super::args::{unsigned, ParamArgs};
use super::{print_json, progress_bar, Outcome};
use token_sampler::backend::check_budget;
use token_sampler::bench::{
    bench_case, format_table, host_cpu_model, normal_logits, BenchOptions, BenchResult, ParamSet,
    PerRow, MAX_RUNS, MAX_WARMUP_MS, MIN_RUNS, SET_NAMES,
};
use token_sampler::{open, open_default, BackendKind, Sampler};
use token_sampler::{Batch, LogitsView, RawDtype, SamplingParams};

/// One benchmarked input in the element type it is handed over in.
enum Host {
    F32(Batch),
    F16(Vec<half::f16>, usize, usize),
    Bf16(Vec<half::bf16>, usize, usize),
}

impl Host {
    fn new(b: Batch, dtype: RawDtype) -> Host {
        let (r, v) = (b.rows(), b.vocab());
        match dtype {
            RawDtype::F32 => Host::F32(b),
            RawDtype::F16 => Host::F16(
                b.data().iter().map(|&x| half::f16::from_f32(x)).collect(),
                r,
                v,
            ),
            RawDtype::Bf16 => Host::Bf16(
                b.data().iter().map(|&x| half::bf16::from_f32(x)).collect(),
                r,
                v,
            ),
        }
    }

    fn view(&self) -> LogitsView<'_> {
        match self {
            Host::F32(b) => b.view(),
            Host::F16(d, r, v) => LogitsView::f16(d, *r, *v).expect("shape of a batch"),
            Host::Bf16(d, r, v) => LogitsView::bf16(d, *r, *v).expect("shape of a batch"),
        }
    }
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Backends to compare (repeat or comma-separate). Default: the default backend.
    #[arg(long, value_delimiter = ',')]
    backend: Vec<BackendKind>,
    /// Batch sizes (rows per call).
    #[arg(long, value_delimiter = ',', default_value = "1,32", allow_negative_numbers = true, value_parser = unsigned::<usize>)]
    batch: Vec<usize>,
    /// Vocabulary sizes (logits per row).
    #[arg(long, value_delimiter = ',', default_value = "131072", allow_negative_numbers = true, value_parser = unsigned::<usize>)]
    vocab: Vec<usize>,
    /// Named parameter sets: temperature, top_k_top_p, top_p, min_p,
    /// entropy_guided (default: all five, unless --preset, --params or a
    /// parameter flag describes a set of its own). Parameter flags override
    /// fields of every set (e.g. `--set top_k_top_p --top-k 50`).
    #[arg(long = "set", value_delimiter = ',', value_name = "NAME")]
    sets: Vec<String>,
    #[command(flatten)]
    params: ParamArgs,
    /// Benchmark these logits instead of seeded normal(0, 3) rows (B and V
    /// come from the file).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["batch", "vocab"])]
    logits: Option<PathBuf>,
    /// Element type of a raw --logits file.
    #[arg(long, value_name = "f32|f16|bf16", requires = "raw_vocab")]
    dtype: Option<RawDtype>,
    /// Row length of a raw --logits file.
    #[arg(long = "raw-vocab", value_name = "V", requires = "dtype", allow_negative_numbers = true, value_parser = unsigned::<usize>)]
    raw_vocab: Option<usize>,
    /// Timed runs per grid point (at least 10).
    #[arg(long, default_value_t = 20, allow_negative_numbers = true, value_parser = unsigned::<usize>)]
    runs: usize,
    /// Untimed warm-up runs per grid point.
    #[arg(long, default_value_t = 3, allow_negative_numbers = true, value_parser = unsigned::<usize>)]
    warmup: usize,
    /// Keep warming up each grid point until this many milliseconds have
    /// passed (idle cores take milliseconds to come up to speed).
    #[arg(
        long = "warmup-ms",
        default_value_t = 50.0,
        allow_negative_numbers = true
    )]
    warmup_ms: f64,
    /// Seed of the generated logits and of the rows' draws.
    #[arg(long = "input-seed", default_value_t = 1, allow_negative_numbers = true, value_parser = unsigned::<u64>)]
    input_seed: u64,
    /// Element type the logits are handed over in (f16/bf16 halve the bytes
    /// a GPU upload moves; values are the f32 input rounded to that type).
    #[arg(
        long = "logits-dtype",
        value_name = "f32|f16|bf16",
        default_value = "f32"
    )]
    logits_dtype: RawDtype,
    /// Skip the `resident` rows (calls on logits already on the device).
    #[arg(long = "no-resident")]
    no_resident: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

fn join(v: &[usize]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether any per-field parameter flag was given.
fn has_flags(p: &ParamArgs) -> bool {
    p.temperature.is_some()
        || p.top_k.is_some()
        || p.top_p.is_some()
        || p.min_p.is_some()
        || p.min_tokens_to_keep.is_some()
        || p.repetition_penalty.is_some()
        || p.presence_penalty.is_some()
        || p.frequency_penalty.is_some()
        || p.seed.is_some()
        || p.step.is_some()
        || p.logprobs.is_some()
        || p.order.is_some()
}

/// The flags given on the command line, applied over a named set.
fn apply_flags(a: &ParamArgs, p: &mut SamplingParams) {
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f { p.$f = v; } )* };
    }
    set!(
        temperature,
        top_k,
        top_p,
        min_p,
        min_tokens_to_keep,
        repetition_penalty,
        presence_penalty,
        frequency_penalty,
        step,
        order
    );
    if a.seed.is_some() {
        p.seed = a.seed;
    }
    if a.logprobs.is_some() {
        p.logprobs = a.logprobs;
    }
}

/// The parameter sets of the grid for a batch of `rows`.
fn param_sets(a: &BenchArgs, rows: usize) -> anyhow::Result<Vec<ParamSet>> {
    let custom = a.params.preset.is_some() || a.params.params.is_some();
    let mut names = a.sets.clone();
    if names.is_empty() && !custom && !has_flags(&a.params) {
        names = SET_NAMES.iter().map(|s| s.to_string()).collect();
    }
    let mut sets = Vec::new();
    for name in &names {
        let Some(mut set) = ParamSet::named(name) else {
            bail!(
                "unknown parameter set `{name}` (known: {})",
                SET_NAMES.join(", ")
            );
        };
        if let PerRow::Same(p) = &mut set.params {
            apply_flags(&a.params, p);
            p.validate(0, usize::MAX)
                .with_context(|| format!("set `{name}`"))?;
        }
        sets.push(set);
    }
    if custom || (names.is_empty() && has_flags(&a.params)) {
        // defaults < preset < params file < flags, as for `sample`.
        let rows_params = a.params.build(rows)?;
        let name = match (&a.params.preset, &a.params.params) {
            (Some(p), None) => format!("preset:{p}"),
            (None, Some(f)) => format!("file:{}", f.display()),
            (Some(p), Some(_)) => format!("preset:{p}+file"),
            (None, None) => "custom".to_string(),
        };
        let same = rows_params.windows(2).all(|w| w[0] == w[1]);
        sets.push(ParamSet {
            name,
            params: if same {
                PerRow::Same(rows_params[0].clone())
            } else {
                PerRow::Rows(rows_params)
            },
        });
    }
    Ok(sets)
}

pub fn run_bench(a: BenchArgs) -> anyhow::Result<Outcome> {
    if a.runs < MIN_RUNS {
        bail!(
            "--runs {} is too few: medians and IQRs need at least {MIN_RUNS}",
            a.runs
        );
    }
    if a.runs > MAX_RUNS || a.warmup > MAX_RUNS {
        bail!(
            "--runs {} / --warmup {}: at most {MAX_RUNS} runs per grid point",
            a.runs,
            a.warmup
        );
    }
    if !(a.warmup_ms.is_finite() && (0.0..=MAX_WARMUP_MS).contains(&a.warmup_ms)) {
        bail!(
            "--warmup-ms {}: expected a number of milliseconds from 0 to {MAX_WARMUP_MS}",
            a.warmup_ms
        );
    }
    if a.logits.is_none() {
        // Every grid input is generated up front (f32, and a copy in the
        // handed-over type): their total must fit the memory budget.
        let mut total = Some(0u64);
        for &b in &a.batch {
            for &n in &a.vocab {
                if b == 0 || n == 0 {
                    bail!("--batch and --vocab must be at least 1");
                }
                let point = (b as u64)
                    .checked_mul(n as u64)
                    .and_then(|x| x.checked_mul(8));
                total = total.zip(point).and_then(|(t, p)| t.checked_add(p));
            }
        }
        let what = || {
            format!(
                "--batch {} × --vocab {} (the generated logits)",
                join(&a.batch),
                join(&a.vocab)
            )
        };
        check_budget(what, total)?;
    }
    // The inputs: one file, or every (batch, vocab) of the grid.
    let inputs: Vec<Batch> = match &a.logits {
        Some(path) => {
            let raw = a.dtype.zip(a.raw_vocab);
            vec![Batch::load(path, raw)?]
        }
        None => {
            let mut v = Vec::new();
            for &b in &a.batch {
                for &n in &a.vocab {
                    if b == 0 || n == 0 {
                        bail!("--batch and --vocab must be at least 1");
                    }
                    v.push(normal_logits(b, n, a.input_seed));
                }
            }
            v
        }
    };
    let mut samplers: Vec<Box<dyn Sampler>> = Vec::new();
    if a.backend.is_empty() {
        let (s, why) = open_default()?;
        eprintln!("token-sampler: {why} (default; choose with --backend)");
        samplers.push(s);
    } else {
        for &kind in &a.backend {
            let s = open(kind, true)?;
            eprintln!("token-sampler: backend {} on {}", kind, s.device());
            samplers.push(s);
        }
    }
    let mut grid = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        for set in param_sets(&a, input.rows())? {
            grid.push((i, set));
        }
    }
    let opts = BenchOptions {
        runs: a.runs,
        warmup: a.warmup,
        warmup_ms: a.warmup_ms,
        seed: a.input_seed,
        resident: !a.no_resident,
    };
    let inputs: Vec<Host> = inputs
        .into_iter()
        .map(|b| Host::new(b, a.logits_dtype))
        .collect();
    // GPU points also time the resident calls.
    let per_point = |s: &dyn Sampler| {
        let resident = opts.resident && s.kind() == BackendKind::Gpu;
        opts.runs + opts.warmup + if resident { opts.runs } else { 0 }
    };
    let total = samplers
        .iter()
        .map(|s| per_point(s.as_ref()))
        .sum::<usize>() as u64
        * grid.len() as u64;
    let bar = progress_bar(total, "bench");
    let mut results: Vec<BenchResult> = Vec::new();
    for sampler in samplers.iter_mut() {
        // One probe per input and backend, in this run.
        let mut probes = Vec::new();
        for input in &inputs {
            let own = sampler.stream_read_ms(input.view())?;
            probes.push(own.or_else(|| {
                Some(token_sampler::cpu::host_stream_read_ms(
                    &input.view().to_f32(),
                ))
            }));
        }
        for (i, set) in &grid {
            let input = &inputs[*i];
            bar.set_prefix(format!(
                "bench {} B {} V {} {}",
                sampler.kind(),
                input.view().rows(),
                input.view().vocab(),
                set.name
            ));
            let mut tick = || bar.inc(1);
            let r = bench_case(
                sampler.as_mut(),
                input.view(),
                set,
                &opts,
                probes[*i],
                &mut tick,
            )
            .with_context(|| format!("{} on set `{}`", sampler.kind(), set.name))?;
            results.extend(r);
        }
    }
    bar.finish_and_clear();

    let backends: Vec<&str> = samplers.iter().map(|s| s.kind().name()).collect();
    let devices: Vec<String> = samplers.iter().map(|s| s.device()).collect();
    if a.json {
        let out = json!({
            "schema": 1,
            "backend": backends.join(","),
            "device": devices.join("; "),
            "rng": token_sampler::rng::RNG_SCHEME,
            "host_cpu": host_cpu_model(),
            "results": results,
        });
        print_json(&out)?;
    } else {
        outln!("host CPU: {}", host_cpu_model());
        outln!("logits handed over as {}", a.logits_dtype.name());
        for (b, d) in backends.iter().zip(&devices) {
            outln!("{b}: {d}");
        }
        out!("{}", format_table(&results));
        let probes: Vec<Value> = results
            .iter()
            .filter_map(|r| {
                r.stream_read_ms
                    .map(|p| json!([r.backend, r.batch, r.vocab, p]))
            })
            .collect();
        if let Some(Value::Array(first)) = probes.first() {
            outln!(
                "(bw frac = one streaming read of the same logits ÷ median; e.g. {} B {} V {}: one read {:.4} ms)",
                first[0].as_str().unwrap_or(""),
                first[1],
                first[2],
                first[3].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(Outcome::Ok)
}
