//! The benchmark harness behind `token-sampler bench` (docs/spec.md §8, §9), usable
//! from other programs and from the GPU device scripts: the named parameter
//! sets, the seeded normal(0, 3) input, timing with warm-up, median and IQR,
//! and the bandwidth figures against a streaming-read probe of the same run.
//!
//! ```
//! use token_sampler::bench::{bench_case, named_set, normal_logits, BenchOptions, ParamSet};
//! use token_sampler::CpuSampler;
//!
//! let logits = normal_logits(2, 4096, 7);
//! let set = ParamSet::named("top_k_top_p").unwrap();
//! let opts = BenchOptions { runs: 10, warmup: 1, ..Default::default() };
//! let mut cpu = CpuSampler::new();
//! let results = bench_case(&mut cpu, logits.view(), &set, &opts, Some(0.1), &mut || {})?;
//! assert_eq!(results[0].mode, "end_to_end");
//! assert!(results[0].us_per_row > 0.0 && results[0].bw_fraction.unwrap() > 0.0);
//! # Ok::<(), token_sampler::SamplerError>(())
//! ```

use std::time::Instant;

use serde::Serialize;

use crate::backend::Sampler;
use crate::batch::{Batch, LogitsView};
use crate::error::{Result, SamplerError};
use crate::params::{DynamicTemperature, EntropyUnit, Mapping, SamplingParams};

/// The named parameter sets, in table order.
pub const SET_NAMES: [&str; 5] = [
    "temperature",
    "top_k_top_p",
    "top_p",
    "min_p",
    "entropy_guided",
];

/// The parameters of a named set (every other field off):
///
/// | set | parameters |
/// |---|---|
/// | `temperature` | T 0.7 |
/// | `top_k_top_p` | top-k 40, top-p 0.9, T 0.7 (the GPU grid's k 50: add `--top-k 50`) |
/// | `top_p` | top-p 0.9, T 0.7 |
/// | `min_p` | min-p 0.05, T 0.7 |
/// | `entropy_guided` | linear dynamic temperature in nats: h_low 1, h_high 5, t_min 0.3, t_max 1.2 |
pub fn named_set(name: &str) -> Option<SamplingParams> {
    let t07 = SamplingParams {
        temperature: 0.7,
        ..Default::default()
    };
    Some(match name {
        "temperature" => t07,
        "top_k_top_p" => SamplingParams {
            top_k: 40,
            top_p: 0.9,
            ..t07
        },
        "top_p" => SamplingParams { top_p: 0.9, ..t07 },
        "min_p" => SamplingParams { min_p: 0.05, ..t07 },
        "entropy_guided" => SamplingParams {
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
        _ => return None,
    })
}

/// A named parameter set of the grid: one object for every row, or one per row.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSet {
    pub name: String,
    pub params: PerRow,
}

/// Parameters for every row, or exactly one object per row.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // a handful per run; boxing buys nothing
pub enum PerRow {
    Same(SamplingParams),
    Rows(Vec<SamplingParams>),
}

impl ParamSet {
    pub fn new(name: impl Into<String>, params: SamplingParams) -> Self {
        ParamSet {
            name: name.into(),
            params: PerRow::Same(params),
        }
    }

    /// One of [`SET_NAMES`].
    pub fn named(name: &str) -> Option<Self> {
        named_set(name).map(|p| ParamSet::new(name, p))
    }

    /// The parameters for `rows` rows. Rows without a seed get `seed + row`,
    /// so every run does the same work and the draws are reproducible.
    pub fn rows(&self, rows: usize, seed: u64) -> Result<Vec<SamplingParams>> {
        let mut out = match &self.params {
            PerRow::Same(p) => vec![p.clone(); rows],
            PerRow::Rows(v) if v.len() == rows => v.clone(),
            PerRow::Rows(v) => {
                return Err(SamplerError::Shape(format!(
                    "parameter set `{}` has {} objects for {rows} rows",
                    self.name,
                    v.len()
                )))
            }
        };
        for (r, p) in out.iter_mut().enumerate() {
            p.seed = p.seed.or(Some(seed.wrapping_add(r as u64)));
        }
        Ok(out)
    }

    /// The set's parameters as JSON (the first row's when they differ).
    pub fn to_json(&self) -> serde_json::Value {
        let p = match &self.params {
            PerRow::Same(p) => p,
            PerRow::Rows(v) => &v[0],
        };
        serde_json::to_value(p).unwrap_or(serde_json::Value::Null)
    }
}

/// `rows × vocab` logits drawn from normal(0, 3), reproducible from `seed`
/// (splitmix64 + Box–Muller, independent of any crate's generator).
pub fn normal_logits(rows: usize, vocab: usize, seed: u64) -> Batch {
    let mut state = seed ^ 0x5EED_0000_0000_0000;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let n = rows * vocab;
    let mut data = Vec::with_capacity(n + 1);
    while data.len() < n {
        let (u, v) = (next().max(f64::MIN_POSITIVE), next());
        let r = (-2.0 * u.ln()).sqrt() * 3.0;
        let a = 2.0 * std::f64::consts::PI * v;
        data.push((r * a.cos()) as f32);
        data.push((r * a.sin()) as f32);
    }
    data.truncate(n);
    Batch::new(data, rows, vocab).expect("rows × vocab logits")
}

/// How each grid point is timed.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// Timed calls per point (at least 10).
    pub runs: usize,
    /// Untimed calls first.
    pub warmup: usize,
    /// ... and untimed calls until this many milliseconds have passed: a
    /// thread that was idle (and, on a VM, its virtual core) takes a few
    /// milliseconds to come up to speed, which a handful of calls may not
    /// cover.
    pub warmup_ms: f64,
    /// Base seed of the rows' draws.
    pub seed: u64,
    /// Also time calls on logits already on the device (mode `resident`),
    /// for backends that have a device (docs/spec.md §9).
    pub resident: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            runs: 20,
            warmup: 3,
            warmup_ms: 50.0,
            seed: 1,
            resident: true,
        }
    }
}

/// The fewest timed runs a result may come from.
pub const MIN_RUNS: usize = 10;
/// The most timed (or untimed warm-up) runs per grid point, and the longest
/// warm-up: a run count is kept in memory, and a grid point must end.
pub const MAX_RUNS: usize = 1_000_000;
pub const MAX_WARMUP_MS: f64 = 3_600_000.0;

/// Checks the options of [`bench_case`]: run counts and the warm-up time
/// within their bounds (a warm-up of `inf` ms would never end).
pub fn check_options(opts: &BenchOptions) -> Result<()> {
    if opts.runs > MAX_RUNS || opts.warmup > MAX_RUNS {
        return Err(SamplerError::Unsupported(format!(
            "{} runs and {} warm-up runs per point: at most {MAX_RUNS} each",
            opts.runs, opts.warmup
        )));
    }
    if !(opts.warmup_ms.is_finite() && (0.0..=MAX_WARMUP_MS).contains(&opts.warmup_ms)) {
        return Err(SamplerError::Unsupported(format!(
            "a warm-up of {} ms: expected a number of milliseconds from 0 to {MAX_WARMUP_MS}",
            opts.warmup_ms
        )));
    }
    Ok(())
}

/// The generated input of a grid point, `rows × vocab` f32 logits, fits the
/// memory budget (docs/spec.md §2.2).
pub fn check_input(rows: usize, vocab: usize) -> Result<()> {
    crate::backend::check_budget(
        || format!("{rows} rows × {vocab} logits"),
        (rows as u64)
            .checked_mul(vocab as u64)
            .and_then(|n| n.checked_mul(4)),
    )
}

/// One row of the results table (docs/spec.md §8 `bench --json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchResult {
    pub backend: String,
    pub device: String,
    /// `end_to_end` (the `sample` call) or `kernel` (device time of its kernels).
    pub mode: String,
    pub batch: usize,
    pub vocab: usize,
    /// Element type the logits were handed over in (`f32`, `f16`, `bf16`).
    pub dtype: String,
    /// The parameter set's name; `sampling` holds its values.
    pub params: String,
    pub sampling: serde_json::Value,
    pub runs: usize,
    pub median_ms: f64,
    /// Interquartile range of the runs.
    pub spread_ms: f64,
    pub us_per_row: f64,
    /// Logits read per second: `B·V·4 bytes / median`.
    pub gb_per_s: f64,
    /// One streaming read of the same logits (the probe) divided by the median:
    /// 1.0 = as fast as reading the logits once.
    pub bw_fraction: Option<f64>,
    /// The probe's time for one read.
    pub stream_read_ms: Option<f64>,
    /// GPU backend: compute dispatches per call (docs/spec.md §9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatches: Option<u32>,
    /// GPU backend: reads of the logits of the row that read most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reads_per_row: Option<u32>,
    /// GPU backend: workgroups launched per call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workgroups: Option<u64>,
}

/// Median and interquartile range (linear interpolation between order
/// statistics) of `times`.
pub fn median_iqr(times: &[f64]) -> (f64, f64) {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    let q = |f: f64| -> f64 {
        if t.is_empty() {
            return f64::NAN;
        }
        let pos = f * (t.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        t[lo] + (t[hi] - t[lo]) * (pos - lo as f64)
    };
    (q(0.5), q(0.75) - q(0.25))
}

/// Times `sampler` on one batch and parameter set: the `end_to_end` result
/// (host logits in the view's own element type, uploaded every call), a
/// `kernel` result where the backend reports device time, and with
/// `opts.resident` on a GPU a `resident` result (the same calls on logits
/// uploaded once: what a server whose model writes logits on the device
/// pays). `probe_ms`
/// is one streaming read of `logits` (for `bw_fraction`); `tick` is called
/// after every call (progress).
pub fn bench_case(
    sampler: &mut dyn Sampler,
    logits: LogitsView<'_>,
    set: &ParamSet,
    opts: &BenchOptions,
    probe_ms: Option<f64>,
    tick: &mut dyn FnMut(),
) -> Result<Vec<BenchResult>> {
    let (rows, vocab) = (logits.rows(), logits.vocab());
    check_options(opts)?;
    let params = set.rows(rows, opts.seed)?;
    let runs = opts.runs.max(MIN_RUNS);
    let warm = Instant::now();
    let mut calls = 0;
    while calls < opts.warmup || warm.elapsed().as_secs_f64() * 1e3 < opts.warmup_ms {
        sampler.sample(logits, &params, 1)?;
        if calls < opts.warmup {
            tick();
        }
        calls += 1;
    }
    let (mut wall, mut kernel) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs {
        let t0 = Instant::now();
        let out = sampler.sample(logits, &params, 1)?;
        wall.push(t0.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(out);
        if let Some(k) = sampler.last_kernel_ms() {
            kernel.push(k);
        }
        tick();
    }
    #[cfg(feature = "gpu")]
    let resident = match sampler.as_gpu() {
        Some(gpu) if opts.resident => Some(time_resident(gpu, logits, &params, opts, runs, tick)?),
        _ => None,
    };
    #[cfg(not(feature = "gpu"))]
    let resident: Option<Vec<f64>> = None;
    let bytes = logits.bytes().len() as f64;
    let structure = sampler.last_structure();
    let make = |mode: &str, times: &[f64]| {
        let (median, iqr) = median_iqr(times);
        BenchResult {
            backend: sampler.kind().name().to_string(),
            device: sampler.device(),
            mode: mode.to_string(),
            batch: rows,
            vocab,
            dtype: logits.dtype().name().to_string(),
            params: set.name.clone(),
            sampling: set.to_json(),
            runs: times.len(),
            median_ms: median,
            spread_ms: iqr,
            us_per_row: median * 1e3 / rows as f64,
            gb_per_s: bytes / (median * 1e-3) / 1e9,
            bw_fraction: probe_ms.map(|p| p / median),
            stream_read_ms: probe_ms,
            dispatches: structure.map(|s| s.dispatches),
            reads_per_row: structure.map(|s| s.reads_per_row),
            workgroups: structure.map(|s| s.workgroups),
        }
    };
    let mut out = vec![make("end_to_end", &wall)];
    if kernel.len() == runs {
        out.push(make("kernel", &kernel));
    }
    if let Some(times) = resident {
        out.push(make("resident", &times));
    }
    Ok(out)
}

/// Wall time of whole calls (record, submit, wait, read the results) on
/// logits uploaded to the device once.
#[cfg(feature = "gpu")]
fn time_resident(
    gpu: &mut crate::gpu::GpuSampler,
    logits: LogitsView<'_>,
    params: &[SamplingParams],
    opts: &BenchOptions,
    runs: usize,
    tick: &mut dyn FnMut(),
) -> Result<Vec<f64>> {
    let (buffer, dtype) = gpu.upload_buffer(logits);
    let input = crate::gpu::BufferLogits {
        buffer: &buffer,
        offset: 0,
        rows: logits.rows(),
        vocab: logits.vocab(),
        row_stride: logits.vocab(),
        dtype,
        allowed_bitmask: None,
    };
    for _ in 0..opts.warmup.max(1) {
        gpu.sample_buffer(&input, params, 1, None)?;
    }
    let mut wall = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = Instant::now();
        let out = gpu.sample_buffer(&input, params, 1, None)?;
        wall.push(t0.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(out);
        tick();
    }
    Ok(wall)
}

/// The machine's CPU model (Linux `/proc/cpuinfo`), for result tables.
pub fn host_cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The results as a fixed-width table.
pub fn format_table(results: &[BenchResult]) -> String {
    let mut s = format!(
        "{:<10} {:<10} {:>5} {:>7} {:<16} {:>4} {:>10} {:>9} {:>10} {:>8} {:>8} {:>10}\n",
        "backend",
        "mode",
        "B",
        "V",
        "params",
        "runs",
        "median ms",
        "IQR ms",
        "µs/row",
        "GB/s",
        "bw frac",
        "disp/reads"
    );
    for r in results {
        let structure = match (r.dispatches, r.reads_per_row) {
            (Some(d), Some(n)) => format!("{d}/{n}"),
            _ => "-".to_string(),
        };
        s.push_str(&format!(
            "{:<10} {:<10} {:>5} {:>7} {:<16} {:>4} {:>10.4} {:>9.4} {:>10.2} {:>8.2} {:>8} {:>10}\n",
            r.backend,
            r.mode,
            r.batch,
            r.vocab,
            r.params,
            r.runs,
            r.median_ms,
            r.spread_ms,
            r.us_per_row,
            r.gb_per_s,
            r.bw_fraction.map_or("-".to_string(), |f| format!("{f:.3}")),
            structure,
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_sets_are_valid_and_distinct() {
        for (i, name) in SET_NAMES.iter().enumerate() {
            let p = named_set(name).unwrap();
            p.validate(0, 100).unwrap();
            for other in &SET_NAMES[..i] {
                assert_ne!(named_set(other).unwrap(), p);
            }
        }
        assert!(named_set("nope").is_none());
        assert_eq!(named_set("top_k_top_p").unwrap().top_k, 40);
    }

    #[test]
    fn normal_logits_are_seeded_with_sd_3() {
        let a = normal_logits(2, 50_000, 9);
        assert_eq!(a, normal_logits(2, 50_000, 9));
        assert_ne!(a, normal_logits(2, 50_000, 10));
        let n = a.data().len() as f64;
        let mean = a.data().iter().map(|&v| v as f64).sum::<f64>() / n;
        let sd = (a
            .data()
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        // 100k samples: the mean's sd is 0.0095 and the sd's about 0.0067.
        assert!(mean.abs() < 0.05 && (sd - 3.0).abs() < 0.04, "{mean} {sd}");
    }

    #[test]
    fn median_and_iqr_interpolate() {
        assert_eq!(median_iqr(&[4.0, 1.0, 3.0, 2.0, 5.0]), (3.0, 2.0));
        let (m, iqr) = median_iqr(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((iqr - 1.5).abs() < 1e-12);
    }

    #[test]
    fn per_row_sets_get_seeds_and_check_length() {
        let set = ParamSet::named("temperature").unwrap();
        let rows = set.rows(3, 100).unwrap();
        assert_eq!(
            rows.iter().map(|p| p.seed.unwrap()).collect::<Vec<_>>(),
            [100, 101, 102]
        );
        let set = ParamSet {
            name: "file".into(),
            params: PerRow::Rows(vec![SamplingParams::default(); 2]),
        };
        assert!(set.rows(3, 0).is_err());
    }
}
