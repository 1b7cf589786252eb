//! The differential suite: seeded random batches (sizes, parameters, orders,
//! mappings, ties, masks, peaked and flat rows) run on a backend and on the
//! reference, compared as docs/spec.md §7 says.
//!
//! * Kept sets equal, except tokens at a boundary: for top-k/min-p (and any
//!   threshold) a logit within 1e-5 (relative) of the threshold; for top-p a cut
//!   where the cumulative mass is within 1e-5 of p; the extended samplers'
//!   own boundaries (top-nσ, typical's score and mass, XTC's set A and its
//!   min tokens, mirostat v1's k near an integer) as docs/spec.md §7 lists.
//! * Mirostat rows: `mirostat_mu` within 1e-4 of the reference's.
//! * Where kept sets are equal: every π_i within 1e-5 absolute, `logprob`
//!   within 1e-4, `entropy` within 1e-4 nats.
//! * Dynamic rows: the backend's T equals the mapping of its own guide entropy
//!   within 1e-6 (relative); its guide entropy is within 1e-4 of the
//!   reference's; π is compared with the reference evaluated at the backend's T.
//! * Tokens: every mismatch is explained — u within 1e-6 of a reference CDF
//!   boundary, or a boundary kept-set difference.

use std::fmt;

use serde::Serialize;

use crate::backend::Sampler;
use crate::batch::{Batch, LogitsView};
use crate::error::Result;
use crate::params::{
    DynamicTemperature, EntropyUnit, Mapping, Mirostat, Order, SamplingParams, TopPRange,
};
use crate::reference::{self, Overrides, ProcessedRow};
use crate::result::{RowProbs, RowResult, TokenLogprob};
use crate::rng::{philox4x32_10, uniform};

/// docs/spec.md §7 tolerances.
pub const PI_TOL: f64 = 1e-5;
pub const LOGPROB_TOL: f64 = 1e-4;
pub const ENTROPY_TOL: f64 = 1e-4;
pub const BOUNDARY_REL: f64 = 1e-5;
pub const TOP_P_MASS_TOL: f64 = 1e-5;
pub const DYN_T_REL: f64 = 1e-6;
pub const CDF_TOL: f64 = 1e-6;

/// The vocabulary sizes of docs/spec.md §7's large-V suite.
pub const LARGE_VOCABS: [usize; 5] = [32_000, 128_256, 151_936, 200_064, 262_144];

/// A deterministic random stream (Philox in counter mode), so a suite seed
/// names the same cases on every platform and version.
#[derive(Debug, Clone)]
pub struct Stream {
    key: [u32; 2],
    counter: u64,
    buf: [u32; 4],
    used: usize,
}

impl Stream {
    pub fn new(seed: u64) -> Self {
        Stream {
            key: [seed as u32, (seed >> 32) as u32 ^ 0x5eed_ca5e],
            counter: 0,
            buf: [0; 4],
            used: 4,
        }
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.used == 4 {
            let c = self.counter;
            self.counter += 1;
            self.buf = philox4x32_10([c as u32, (c >> 32) as u32, 0x7e57, 0], self.key);
            self.used = 0;
        }
        self.used += 1;
        self.buf[self.used - 1]
    }

    pub fn next_u64(&mut self) -> u64 {
        (self.next_u32() as u64) << 32 | self.next_u32() as u64
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n.saturating_sub(1))
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-300);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Seeded normal(0, σ) logits, the benchmark input of docs/spec.md §8.
pub fn normal_batch(rows: usize, vocab: usize, sigma: f64, seed: u64) -> Batch {
    let mut s = Stream::new(seed);
    let data = (0..rows * vocab)
        .map(|_| (sigma * s.normal()) as f32)
        .collect();
    Batch::new(data, rows, vocab).expect("rows, vocab ≥ 1")
}

/// The shapes rows are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    Normal,
    Peaked,
    Flat,
    Ties,
    Masked,
    Zipf,
    FewFinite,
}

impl RowKind {
    const ALL: [RowKind; 7] = [
        RowKind::Normal,
        RowKind::Peaked,
        RowKind::Flat,
        RowKind::Ties,
        RowKind::Masked,
        RowKind::Zipf,
        RowKind::FewFinite,
    ];
}

/// One random row of `vocab` logits of the given kind.
pub fn random_row(s: &mut Stream, kind: RowKind, vocab: usize) -> Vec<f32> {
    let sigma = s.pick(&[1.0, 3.0, 8.0]);
    let mut x: Vec<f32> = match kind {
        RowKind::Normal | RowKind::Masked | RowKind::FewFinite => {
            (0..vocab).map(|_| (sigma * s.normal()) as f32).collect()
        }
        RowKind::Peaked => {
            let mut x: Vec<f32> = (0..vocab).map(|_| s.normal() as f32).collect();
            let top = s.below(vocab);
            x[top] += s.pick(&[8.0, 15.0, 25.0]);
            x
        }
        RowKind::Flat => {
            if s.chance(0.5) {
                vec![s.pick(&[0.0, 1.5, -3.0]); vocab]
            } else {
                (0..vocab).map(|_| (0.01 * s.normal()) as f32).collect()
            }
        }
        RowKind::Ties => {
            // Few distinct values: many exact ties at every threshold.
            (0..vocab)
                .map(|_| (s.normal() * 2.0).round() as f32 * 0.5)
                .collect()
        }
        RowKind::Zipf => {
            // Logit of rank r: −1.1·ln r, ranks shuffled over the ids.
            let mut x: Vec<f32> = (0..vocab).map(|r| -1.1 * ((r + 1) as f32).ln()).collect();
            for i in (1..vocab).rev() {
                let j = s.below(i + 1);
                x.swap(i, j);
            }
            x
        }
    };
    match kind {
        RowKind::Masked => {
            for v in x.iter_mut() {
                if s.chance(0.3) {
                    *v = f32::NEG_INFINITY;
                }
            }
            let keep = s.below(vocab);
            if !x[keep].is_finite() {
                x[keep] = 0.0;
            }
        }
        RowKind::FewFinite => {
            let n = 1 + s.below(6);
            let ids: Vec<usize> = (0..n).map(|_| s.below(vocab)).collect();
            for (i, v) in x.iter_mut().enumerate() {
                if !ids.contains(&i) {
                    *v = f32::NEG_INFINITY;
                }
            }
        }
        _ => {}
    }
    x
}

fn random_ids(s: &mut Stream, n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|_| s.below(vocab) as u32).collect()
}

/// A random dynamic-temperature configuration (every mapping and unit).
pub fn random_dynamic(s: &mut Stream, order: Order) -> DynamicTemperature {
    let unit = s.pick(&[
        None,
        Some(EntropyUnit::Nats),
        Some(EntropyUnit::Bits),
        Some(EntropyUnit::Normalized),
    ]);
    let scale = match unit {
        Some(EntropyUnit::Bits) => 1.0 / std::f32::consts::LN_2,
        Some(EntropyUnit::Normalized) => 0.1,
        _ => 1.0,
    };
    let kind = s.below(5);
    let t_min = s.pick(&[0.0f32, 0.2, 0.5]);
    let t_max = t_min + s.pick(&[0.3f32, 0.8, 1.5]);
    let mapping = match kind {
        0 => {
            let lo = s.pick(&[0.0f32, 0.5, 2.0]) * scale;
            Mapping::Linear {
                h_low: lo,
                h_high: lo + s.pick(&[1.0f32, 3.0, 6.0]) * scale,
                t_min,
                t_max,
            }
        }
        1 => Mapping::Sigmoid {
            h_mid: s.pick(&[1.0f32, 3.0, 6.0]) * scale,
            steepness: s.pick(&[0.5f32, 2.0, 8.0]) / scale,
            t_min,
            t_max,
        },
        2 => Mapping::Lut {
            entropies: [0.0f32, 1.0, 3.0, 6.0].iter().map(|e| e * scale).collect(),
            temperatures: vec![0.1, 0.5, 0.9, s.pick(&[1.0f32, 1.4])],
        },
        3 => Mapping::Edt {
            t0: s.pick(&[0.7f32, 1.0, 1.3]),
            base: s.pick(&[0.5f32, 0.8]),
            theta: s.pick(&[0.5f32, 1.0, 2.0]) * scale,
        },
        _ => Mapping::LlamaCpp {
            range: s.pick(&[0.0f32, 0.3, 0.8]),
            exponent: s.pick(&[0.5f32, 1.0, 2.0]),
        },
    };
    let is_llama = matches!(mapping, Mapping::LlamaCpp { .. });
    let with_top_p = matches!(mapping, Mapping::Linear { .. } | Mapping::Sigmoid { .. })
        && order != Order::LlamaCpp
        && s.chance(0.3);
    DynamicTemperature {
        unit: if is_llama { None } else { unit },
        max_entropy: if !is_llama && s.chance(0.25) {
            Some(s.pick(&[2.0f32, 4.0]) * scale)
        } else {
            None
        },
        mapping,
        top_p: with_top_p.then(|| TopPRange {
            low: s.pick(&[0.5f32, 0.8]),
            high: s.pick(&[0.9f32, 0.99, 1.0]),
        }),
    }
}

/// Random parameters for one row: each stage alone and in combination.
pub fn random_params(s: &mut Stream, vocab: usize) -> SamplingParams {
    let order = s.pick(&Order::ALL);
    let mut p = SamplingParams {
        order,
        seed: Some(s.next_u64()),
        step: s.next_u64() >> s.below(64),
        ..Default::default()
    };
    p.temperature = s.pick(&[0.0f32, 0.3, 0.7, 0.7, 1.0, 1.0, 1.5]);
    if s.chance(0.4) {
        p.top_k = s.pick(&[1, 5, 50, 1000, 100_000, -1]);
    }
    let dynamic = s.chance(0.25);
    if s.chance(0.45) {
        p.top_p = s.pick(&[0.3f32, 0.5, 0.9, 0.95, 0.99]);
    }
    if s.chance(0.35) {
        p.min_p = s.pick(&[0.005f32, 0.05, 0.2, 0.9]);
    }
    if s.chance(0.15) {
        p.min_tokens_to_keep = s.pick(&[2u32, 10, 100]);
    }
    if s.chance(0.3) {
        p.repetition_penalty = s.pick(&[0.8f32, 1.1, 1.3, 2.0]);
        p.presence_penalty = s.pick(&[0.0f32, 0.5, -0.5]);
        p.frequency_penalty = s.pick(&[0.0f32, 0.2, 1.0]);
        let hn = s.below(40);
        p.history = random_ids(s, hn, vocab);
        // Repeats, so counts above 1 occur.
        if hn > 2 {
            let extra = p.history[..hn / 2].to_vec();
            p.history.extend(extra);
        }
        let pn = s.below(60);
        p.prompt_token_ids = random_ids(s, pn, vocab);
    }
    if s.chance(0.2) {
        for _ in 0..1 + s.below(8) {
            let id = s.below(vocab) as u32;
            p.logit_bias
                .insert(id, s.pick(&[-100.0f32, -2.0, 0.5, 3.0, 30.0]));
        }
    }
    if s.chance(0.1) {
        let n = 1 + s.below(200.min(vocab));
        p.allowed_token_ids = Some(random_ids(s, n, vocab));
    }
    if dynamic {
        let d = random_dynamic(s, order);
        if d.top_p.is_some() {
            p.top_p = 1.0;
        }
        p.dynamic_temperature = Some(d);
    }
    if s.chance(0.2) {
        p.logprobs = Some(s.pick(&[1u32, 5, 20]));
    }
    p
}

/// Adds the samplers of docs/spec.md §3.10–3.15 to a row from
/// [`random_params`]: each alone and in combination, mirostat (which
/// replaces truncation) in place of the truncation stages. The suite draws
/// them only with [`SuiteConfig::extended`].
pub fn random_extended(s: &mut Stream, p: &mut SamplingParams, vocab: usize) {
    if s.chance(0.2) {
        p.mirostat = Some(Mirostat {
            version: s.pick(&[1u8, 2]),
            tau: s.pick(&[1.0f32, 3.0, 5.0]),
            eta: s.pick(&[0.0f32, 0.1, 0.5]),
            mu: if s.chance(0.5) {
                None
            } else {
                Some(s.pick(&[-1.0f32, 2.0, 8.0, 30.0]))
            },
        });
        p.top_k = 0;
        p.top_p = 1.0;
        p.min_p = 0.0;
        p.dynamic_temperature = None;
    } else {
        if s.chance(0.3) {
            p.typical_p = s.pick(&[0.2f32, 0.5, 0.9, 0.99]);
        }
        if s.chance(0.3) {
            p.top_n_sigma = s.pick(&[0.5f32, 1.0, 2.0, 3.0]);
        }
        if s.chance(0.3) {
            p.xtc_probability = s.pick(&[0.5f32, 1.0]);
            p.xtc_threshold = s.pick(&[0.0f32, 0.05, 0.1, 0.3, 0.6]);
        }
        if s.chance(0.25) {
            p.epsilon_cutoff = s.pick(&[1e-4f32, 3e-3, 0.05]);
        }
        if s.chance(0.25) {
            p.eta_cutoff = s.pick(&[1e-4f32, 3e-3, 0.05]);
        }
    }
    if s.chance(0.3) && p.sequence.is_none() {
        p.dry_multiplier = s.pick(&[0.5f32, 0.8, 2.0]);
        p.dry_base = s.pick(&[1.0f32, 1.75, 3.0]);
        p.dry_allowed_length = s.pick(&[0u32, 2, 4]);
        p.dry_penalty_last_n = s.pick(&[-1, 0, 16, 64]);
        let breakers = s.below(3);
        p.dry_sequence_breakers = random_ids(s, breakers, vocab);
        // A repeated stretch, so there is something to penalise.
        let n = 2 + s.below(30);
        let run = random_ids(s, n, vocab);
        p.history.extend_from_slice(&run);
        p.history.extend_from_slice(&run[..n / 2]);
    }
}

/// One batch of the suite.
#[derive(Debug, Clone)]
pub struct Case {
    pub index: usize,
    pub batch: Batch,
    pub params: Vec<SamplingParams>,
    pub kinds: Vec<RowKind>,
    pub samples: u32,
}

/// What the suite runs.
#[derive(Debug, Clone, Serialize)]
pub struct SuiteConfig {
    pub seed: u64,
    /// Batches per vocabulary size.
    pub cases: usize,
    pub vocabs: Vec<usize>,
    /// Rows per batch are drawn from 1..=max_batch.
    pub max_batch: usize,
    /// Stop adding batches for a vocab once this many rows ran (0 = no cap).
    pub max_rows_per_vocab: usize,
    /// Also draw the samplers of docs/spec.md §3.10–3.15
    /// ([`random_extended`]). A backend that does not run them refuses
    /// such a batch (`Unsupported`), which fails the suite; `false` keeps
    /// the suite to the samplers of §3.1–3.8, with the same cases as before.
    pub extended: bool,
}

impl Default for SuiteConfig {
    fn default() -> Self {
        SuiteConfig {
            seed: 20_261_125,
            cases: 8,
            vocabs: LARGE_VOCABS.to_vec(),
            max_batch: 64,
            max_rows_per_vocab: 0,
            extended: false,
        }
    }
}

/// The `index`-th batch for `vocab` (deterministic in the suite seed).
pub fn make_case(cfg: &SuiteConfig, vocab: usize, index: usize, rows_left: usize) -> Case {
    let mut s =
        Stream::new(cfg.seed ^ (vocab as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index as u64);
    let rows = (1 + s.below(cfg.max_batch)).min(rows_left.max(1));
    let mut data = Vec::with_capacity(rows * vocab);
    let mut params = Vec::with_capacity(rows);
    let mut kinds = Vec::with_capacity(rows);
    for _ in 0..rows {
        let kind = s.pick(&RowKind::ALL);
        let mut p = random_params(&mut s, vocab);
        if cfg.extended {
            random_extended(&mut s, &mut p, vocab);
        }
        let row = random_row(&mut s, kind, vocab);
        // An allow-list over −inf-only entries would be a (legitimate) error row;
        // keep the suite about agreement, and cover errors in the unit tests.
        if let Some(allowed) = &mut p.allowed_token_ids {
            if !allowed.iter().any(|&t| row[t as usize].is_finite()) {
                let first = row.iter().position(|v| v.is_finite()).unwrap_or(0);
                allowed.push(first as u32);
            }
        }
        data.extend_from_slice(&row);
        params.push(p);
        kinds.push(kind);
    }
    let samples = s.pick(&[1u32, 1, 4]);
    Case {
        index,
        batch: Batch::new(data, rows, vocab).expect("non-empty"),
        params,
        kinds,
        samples,
    }
}

/// Per-vocab and total agreement numbers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    pub vocab: usize,
    pub cases: usize,
    pub rows: usize,
    pub draws: usize,
    pub max_abs_dpi: f64,
    pub max_abs_dlogprob: f64,
    pub max_abs_dentropy: f64,
    pub max_abs_dguide: f64,
    pub max_rel_dtemperature: f64,
    pub kept_mismatch_explained: usize,
    pub kept_mismatch_unexplained: usize,
    pub token_mismatch_explained: usize,
    pub token_mismatch_unexplained: usize,
    /// Rows where a number was outside its docs/spec.md §7 tolerance.
    pub tolerance_failures: usize,
}

impl Stats {
    fn merge(&mut self, o: &Stats) {
        self.cases += o.cases;
        self.rows += o.rows;
        self.draws += o.draws;
        self.max_abs_dpi = self.max_abs_dpi.max(o.max_abs_dpi);
        self.max_abs_dlogprob = self.max_abs_dlogprob.max(o.max_abs_dlogprob);
        self.max_abs_dentropy = self.max_abs_dentropy.max(o.max_abs_dentropy);
        self.max_abs_dguide = self.max_abs_dguide.max(o.max_abs_dguide);
        self.max_rel_dtemperature = self.max_rel_dtemperature.max(o.max_rel_dtemperature);
        self.kept_mismatch_explained += o.kept_mismatch_explained;
        self.kept_mismatch_unexplained += o.kept_mismatch_unexplained;
        self.token_mismatch_explained += o.token_mismatch_explained;
        self.token_mismatch_unexplained += o.token_mismatch_unexplained;
        self.tolerance_failures += o.tolerance_failures;
    }

    pub fn ok(&self) -> bool {
        self.kept_mismatch_unexplained == 0
            && self.token_mismatch_unexplained == 0
            && self.tolerance_failures == 0
    }
}

/// The suite's outcome.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub backend: String,
    pub device: String,
    pub per_vocab: Vec<Stats>,
    pub total: Stats,
    /// The first disagreements, described (at most 20).
    pub failures: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.total.ok()
    }

    fn fail(&mut self, msg: String) {
        if self.failures.len() < 20 {
            self.failures.push(msg);
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "backend {} ({}) vs reference", self.backend, self.device)?;
        writeln!(
            f,
            "{:>8} {:>6} {:>6} {:>7} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12} {:>6}",
            "vocab",
            "cases",
            "rows",
            "draws",
            "max|Δπ|",
            "max|Δlp|",
            "max|ΔH|",
            "max ΔT rel",
            "kept ≠ e/u",
            "token ≠ e/u",
            "tol ✗"
        )?;
        let line = |f: &mut fmt::Formatter<'_>, name: String, s: &Stats| {
            writeln!(
                f,
                "{:>8} {:>6} {:>6} {:>7} {:>10.2e} {:>10.2e} {:>10.2e} {:>10.2e} {:>12} {:>12} {:>6}",
                name,
                s.cases,
                s.rows,
                s.draws,
                s.max_abs_dpi,
                s.max_abs_dlogprob,
                s.max_abs_dentropy,
                s.max_rel_dtemperature,
                format!("{}/{}", s.kept_mismatch_explained, s.kept_mismatch_unexplained),
                format!("{}/{}", s.token_mismatch_explained, s.token_mismatch_unexplained),
                s.tolerance_failures
            )
        };
        for s in &self.per_vocab {
            line(f, s.vocab.to_string(), s)?;
        }
        line(f, "total".into(), &self.total)?;
        writeln!(
            f,
            "(e/u = explained/unexplained per docs/spec.md §7; {})",
            if self.ok() { "PASS" } else { "FAIL" }
        )?;
        for msg in &self.failures {
            writeln!(f, "  ✗ {msg}")?;
        }
        Ok(())
    }
}

/// What one token of a suite batch costs in memory at most: the logits
/// (4 bytes), the reference's processed row (f64 logits, π, ln π and a
/// survivor flag: 25) and the backend's π (8), with room for the
/// reference's sort.
const SUITE_BYTES_PER_TOKEN: u64 = 64;

/// Checks that the suite's largest batch fits the memory budget
/// (docs/spec.md §2.2) and that every size is at least 1.
pub fn check_config(cfg: &SuiteConfig) -> Result<()> {
    if cfg.cases == 0 || cfg.max_batch == 0 || cfg.vocabs.contains(&0) {
        return Err(crate::error::SamplerError::Unsupported(
            "the suite needs at least one case, one row and one token per vocabulary".into(),
        ));
    }
    for &v in &cfg.vocabs {
        crate::backend::check_budget(
            || format!("batches of up to {} rows × {v} tokens", cfg.max_batch),
            (cfg.max_batch as u64)
                .checked_mul(v as u64)
                .and_then(|n| n.checked_mul(SUITE_BYTES_PER_TOKEN)),
        )?;
    }
    Ok(())
}

/// Runs the suite on `backend`; `progress(done, total)` is called after each case.
pub fn run_suite(
    backend: &mut dyn Sampler,
    cfg: &SuiteConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report> {
    let mut report = Report {
        backend: backend.kind().name().into(),
        device: backend.device(),
        ..Default::default()
    };
    check_config(cfg)?;
    let total_cases = cfg.cases.saturating_mul(cfg.vocabs.len());
    let mut done = 0;
    for &vocab in &cfg.vocabs {
        let mut stats = Stats {
            vocab,
            ..Default::default()
        };
        let mut rows_run = 0;
        for index in 0..cfg.cases {
            let cap = if cfg.max_rows_per_vocab > 0 {
                cfg.max_rows_per_vocab.saturating_sub(rows_run)
            } else {
                usize::MAX
            };
            if cap > 0 {
                let case = make_case(cfg, vocab, index, cap);
                rows_run += case.batch.rows();
                check_case(backend, &case, &mut stats, &mut report)?;
            }
            done += 1;
            progress(done, total_cases);
        }
        report.total.merge(&stats);
        report.total.vocab = 0;
        report.per_vocab.push(stats);
    }
    Ok(report)
}

/// Runs one batch on the backend and compares every row with the reference.
pub fn check_case(
    backend: &mut dyn Sampler,
    case: &Case,
    stats: &mut Stats,
    report: &mut Report,
) -> Result<()> {
    let view = case.batch.view();
    let probs = backend.probs(view, &case.params)?;
    let results = backend.sample(view, &case.params, case.samples)?;
    stats.cases += 1;
    let refs = reference_rows(view, &case.params, &probs)?;
    for (r, pr) in refs.into_iter().enumerate() {
        let row = RowCheck {
            case: case.index,
            row: r,
            kind: case.kinds[r],
            x: case.batch.row(r),
            params: &case.params[r],
            reference: &pr,
            probs: &probs[r],
            result: &results[r],
        };
        row.check(stats, report);
    }
    Ok(())
}

/// The reference's processed rows at the backend's own dynamic T and p,
/// computed on every core.
fn reference_rows(
    view: LogitsView<'_>,
    params: &[SamplingParams],
    probs: &[RowProbs],
) -> Result<Vec<ProcessedRow>> {
    let overrides: Vec<Overrides> = params
        .iter()
        .zip(probs)
        .map(|(p, b)| match &p.dynamic_temperature {
            Some(d) => Overrides {
                temperature: Some(b.temperature),
                top_p: d.top_p.map(|_| b.top_p),
            },
            None => Overrides::default(),
        })
        .collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(view.rows());
    let chunk = view.rows().div_ceil(threads);
    let mut out: Vec<Option<Result<ProcessedRow>>> = (0..view.rows()).map(|_| None).collect();
    std::thread::scope(|scope| {
        for (t, slots) in out.chunks_mut(chunk).enumerate() {
            let overrides = &overrides;
            scope.spawn(move || {
                for (i, slot) in slots.iter_mut().enumerate() {
                    let r = t * chunk + i;
                    *slot = Some(reference::process_row(
                        r,
                        &view.row(r),
                        &params[r],
                        overrides[r],
                    ));
                }
            });
        }
    });
    out.into_iter()
        .map(|o| o.expect("every row computed"))
        .collect()
}

struct RowCheck<'a> {
    case: usize,
    row: usize,
    kind: RowKind,
    x: &'a [f32],
    params: &'a SamplingParams,
    reference: &'a ProcessedRow,
    probs: &'a RowProbs,
    result: &'a RowResult,
}

/// Below f32's smallest normal number (1.18e-38) an f32 backend may flush a
/// survivor's π to 0 (GPUs flush denormals); it still counts as kept (docs/spec.md §3),
/// and `kept` is compared separately.
const F32_UNDERFLOW: f64 = 1.2e-38;

impl RowCheck<'_> {
    fn tag(&self) -> String {
        format!(
            "case {} row {} ({:?}, V {}, {:?} order)",
            self.case,
            self.row,
            self.kind,
            self.x.len(),
            self.params.order
        )
    }

    fn check(&self, stats: &mut Stats, report: &mut Report) {
        stats.rows += 1;
        let pr = self.reference;
        let b = self.probs;
        let mut tol_fail = Vec::new();

        // Model entropy: independent of every truncation and of T.
        let dh = (b.entropy - pr.entropy).abs();
        stats.max_abs_dentropy = stats.max_abs_dentropy.max(dh);
        if dh > ENTROPY_TOL {
            tol_fail.push(format!("entropy {} vs {}", b.entropy, pr.entropy));
        }
        let dh = (self.result.entropy - pr.entropy).abs();
        if dh > ENTROPY_TOL {
            tol_fail.push(format!(
                "sample entropy {} vs {}",
                self.result.entropy, pr.entropy
            ));
        }

        // Dynamic rows: the backend's T is the mapping of its own guide.
        if let Some(d) = &self.params.dynamic_temperature {
            self.check_dynamic(d, stats, &mut tol_fail);
        } else if (b.temperature - pr.temperature).abs() > 1e-6 * pr.temperature.max(1e-6) {
            tol_fail.push(format!(
                "temperature {} vs {}",
                b.temperature, pr.temperature
            ));
        }

        // Kept sets.
        let (kept_equal, explained) = self.compare_kept();
        if !kept_equal {
            if explained {
                stats.kept_mismatch_explained += 1;
            } else {
                stats.kept_mismatch_unexplained += 1;
                report.fail(format!(
                    "{}: kept set differs beyond a boundary (backend kept {}, reference {})",
                    self.tag(),
                    b.kept,
                    pr.kept_count
                ));
            }
        } else {
            if b.kept as usize != pr.kept_count {
                if self.kept_count_explained(b.kept) {
                    stats.kept_mismatch_explained += 1;
                } else {
                    tol_fail.push(format!("kept {} vs {}", b.kept, pr.kept_count));
                }
            }
            let mut dpi: f64 = 0.0;
            for (i, (&q, &r)) in b.probs.iter().zip(&pr.pi).enumerate() {
                let d = (q - r).abs();
                if d > dpi {
                    dpi = d;
                }
                if d > PI_TOL && tol_fail.len() < 4 {
                    tol_fail.push(format!("π[{i}] {q} vs {r}"));
                }
            }
            stats.max_abs_dpi = stats.max_abs_dpi.max(dpi);
            let dfe = (b.final_entropy - pr.final_entropy).abs();
            if dfe > ENTROPY_TOL {
                tol_fail.push(format!(
                    "final_entropy {} vs {}",
                    b.final_entropy, pr.final_entropy
                ));
            }
            stats.max_abs_dentropy = stats.max_abs_dentropy.max(dfe);
        }

        // The mu the mirostat cut used (docs/spec.md §3.15).
        match (b.mirostat_mu, pr.mirostat_mu) {
            (None, None) => {}
            (Some(got), Some(want)) if (got - want).abs() <= MIROSTAT_MU_TOL => {}
            (got, want) => tol_fail.push(format!("probs mirostat_mu {got:?} vs {want:?}")),
        }

        // Draws.
        self.check_draws(kept_equal, explained, stats, report, &mut tol_fail);

        if !tol_fail.is_empty() {
            stats.tolerance_failures += 1;
            report.fail(format!("{}: {}", self.tag(), tol_fail.join("; ")));
        }
    }

    fn check_dynamic(&self, d: &DynamicTemperature, stats: &mut Stats, tol_fail: &mut Vec<String>) {
        let pr = self.reference;
        let b = self.probs;
        let (Some(g_b), Some(g_r)) = (b.guide_entropy, pr.guide_entropy) else {
            tol_fail.push("guide_entropy missing".into());
            return;
        };
        let dg = (g_b - g_r).abs();
        stats.max_abs_dguide = stats.max_abs_dguide.max(dg);
        if dg > ENTROPY_TOL {
            if self.guide_on_boundary() {
                // The survivors the guide is taken over differ at a
                // boundary; so may T, which is checked against the
                // backend's own guide below.
                stats.kept_mismatch_explained += 1;
            } else {
                tol_fail.push(format!("guide_entropy {g_b} vs {g_r}"));
            }
        }
        if self.params.temperature == 0.0 {
            if b.temperature != 0.0 {
                tol_fail.push(format!("temperature {} for a greedy row", b.temperature));
            }
            return;
        }
        // The mapping at the backend's own guide. The llama_cpp mapping reads
        // nats over N tokens: the finite ones (standard/vllm) or the survivors
        // of truncation at T = 1 (llama_cpp order), as the reference counted them.
        let n = match self.params.order {
            Order::LlamaCpp => survivors_at_t1(pr),
            _ => pr.finite,
        };
        let static_t = crate::params::widen(self.params.temperature);
        let expected = d.temperature(g_b, g_b, n, static_t);
        let rel = (b.temperature - expected).abs() / expected.abs().max(1e-6);
        // A computed T of 0 is greedy either way.
        let rel = if expected <= 0.0 && b.temperature == 0.0 {
            0.0
        } else {
            rel
        };
        // The llama_cpp mapping counts the survivors: a boundary survivor
        // changes its N.
        let rel = if rel > DYN_T_REL && self.guide_on_boundary() {
            0.0
        } else {
            rel
        };
        stats.max_rel_dtemperature = stats.max_rel_dtemperature.max(rel);
        if rel > DYN_T_REL {
            tol_fail.push(format!(
                "T {} vs mapping of own guide {} = {expected}",
                b.temperature, g_b
            ));
        }
        if let Some(p) = d.top_p(g_b) {
            if (b.top_p - p).abs() > DYN_T_REL * p.max(1e-6) {
                tol_fail.push(format!("dynamic top_p {} vs {p}", b.top_p));
            }
        }
    }

    /// `(equal, explained)`: whether the survivor sets agree, and if not,
    /// whether every differing token sits on a docs/spec.md §7 boundary.
    fn compare_kept(&self) -> (bool, bool) {
        let pr = self.reference;
        let b = &self.probs.probs;
        let mut equal = true;
        let mut explained = true;
        for (i, &bi) in b.iter().enumerate() {
            let in_b = bi > 0.0;
            let in_r = pr.kept[i];
            if in_b == in_r || (in_r && pr.pi[i] < F32_UNDERFLOW) {
                continue;
            }
            equal = false;
            if !self.boundary_token(i) {
                explained = false;
            }
        }
        (equal, explained)
    }

    /// Whether a `kept` count unlike the reference's, where the π of every
    /// token agrees, is a boundary difference (docs/spec.md §7): survivors
    /// whose π is 0 at the row's T (a tiny T, a logit far below the max) may
    /// sit on a threshold that an f32 backend decides the other way. It is,
    /// if at least as many boundary tokens exist as the counts differ by.
    fn kept_count_explained(&self, kept: u32) -> bool {
        let diff = (kept as usize).abs_diff(self.reference.kept_count);
        let boundary = (0..self.x.len())
            .filter(|&i| self.boundary_token(i))
            .count();
        boundary >= diff
    }

    /// Whether token `i` lies on a boundary of some stage (docs/spec.md §7).
    fn boundary_token(&self, i: usize) -> bool {
        let pr = self.reference;
        let y = pr.logits[i];
        if !y.is_finite() {
            return false;
        }
        // Typical sampling reports a NaN threshold and an XTC that removed
        // nothing +inf (reference::StageTrace): neither is a logit on a boundary.
        let near =
            |thr: f64| thr.is_finite() && (y - thr).abs() <= BOUNDARY_REL * thr.abs().max(1.0);
        if pr.greedy {
            let m = pr.logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            return near(m);
        }
        on_boundary(y, &pr.trace)
    }

    /// Whether the guide entropy of a `llama_cpp`-order row, taken over the
    /// survivors of truncation at T = 1, may differ because a survivor sits
    /// on a boundary of that truncation (docs/spec.md §7), greedy rows
    /// included (their trace is recomputed at T = 1: truncation in this order
    /// does not depend on T).
    fn guide_on_boundary(&self) -> bool {
        if self.params.order != Order::LlamaCpp {
            return false;
        }
        let pr = self.reference;
        let at_t1;
        let trace = if pr.greedy {
            let p = SamplingParams {
                temperature: 1.0,
                dynamic_temperature: None,
                ..self.params.clone()
            };
            match reference::process_row(self.row, self.x, &p, Overrides::default()) {
                Ok(r) => {
                    at_t1 = r;
                    &at_t1.trace
                }
                Err(_) => return false,
            }
        } else {
            &pr.trace
        };
        pr.logits.iter().any(|&y| on_boundary(y, trace))
    }

    fn check_draws(
        &self,
        kept_equal: bool,
        kept_explained: bool,
        stats: &mut Stats,
        report: &mut Report,
        tol_fail: &mut Vec<String>,
    ) {
        let pr = self.reference;
        let res = self.result;
        let seed = res.seed;
        if let Some(s) = self.params.seed {
            if s != seed {
                tol_fail.push(format!("seed {seed} reported for a row seeded {s}"));
            }
        }
        let cdf: Vec<f64> = pr
            .pi
            .iter()
            .scan(0.0, |c, &q| {
                *c += q;
                Some(*c)
            })
            .collect();
        for (d, &tb) in res.draws.iter().enumerate() {
            stats.draws += 1;
            let u = uniform(seed, self.params.step, d as u32);
            let tr = pr.draw(u);
            if tb == tr {
                continue;
            }
            let lo = tb.min(tr) as usize;
            let explained = (!kept_equal && kept_explained)
                || (cdf[lo] - u).abs() <= CDF_TOL
                || (pr.greedy && self.boundary_token(tb as usize));
            if explained {
                stats.token_mismatch_explained += 1;
            } else {
                stats.token_mismatch_unexplained += 1;
                report.fail(format!(
                    "{}: draw {d} (u = {u:.9}) gave {tb}, reference {tr} (CDF at {lo} = {:.9})",
                    self.tag(),
                    cdf[lo]
                ));
            }
        }
        if res.draws.first() != Some(&res.token) {
            tol_fail.push("token is not draw 0".into());
        }
        self.check_mirostat_mu(kept_equal, tol_fail);
        if kept_equal {
            let t = res.token as usize;
            let dlp = (res.logprob - pr.log_pi[t]).abs();
            if pr.log_pi[t].is_finite() {
                stats.max_abs_dlogprob = stats.max_abs_dlogprob.max(dlp);
                if dlp > LOGPROB_TOL {
                    tol_fail.push(format!("logprob {} vs {}", res.logprob, pr.log_pi[t]));
                }
            }
            if let Some(n) = self.params.logprobs {
                self.check_top_logprobs(n as usize, tol_fail);
            }
        }
        let raw = reference::raw_log_softmax(self.x);
        let t = res.token as usize;
        if (res.raw_logprob - raw[t]).abs() > LOGPROB_TOL {
            tol_fail.push(format!("raw_logprob {} vs {}", res.raw_logprob, raw[t]));
        }
        if res.kept as usize != pr.kept_count && kept_equal && !self.kept_count_explained(res.kept)
        {
            tol_fail.push(format!("sample kept {} vs {}", res.kept, pr.kept_count));
        }
    }

    /// docs/spec.md §7: the updated mu within 1e-4 of the reference's where
    /// the token and the kept set agree (elsewhere π, and so mu, may differ
    /// at an explained boundary); present exactly on mirostat rows.
    fn check_mirostat_mu(&self, kept_equal: bool, tol_fail: &mut Vec<String>) {
        let res = self.result;
        let Some(ms) = &self.params.mirostat else {
            if let Some(mu) = res.mirostat_mu {
                tol_fail.push(format!("mirostat_mu {mu} on a row without mirostat"));
            }
            return;
        };
        let Some(got) = res.mirostat_mu else {
            tol_fail.push("mirostat_mu missing".into());
            return;
        };
        let pr = self.reference;
        let want_token = pr.draw(uniform(res.seed, self.params.step, 0));
        if res.token != want_token || !kept_equal {
            return;
        }
        let want = reference::mirostat_update(ms, pr.log_pi[want_token as usize]);
        if !(got - want).abs().le(&MIROSTAT_MU_TOL) {
            tol_fail.push(format!("mirostat_mu {got} vs {want}"));
        }
    }

    fn check_top_logprobs(&self, n: usize, tol_fail: &mut Vec<String>) {
        let Some(top) = &self.result.top_logprobs else {
            tol_fail.push("top_logprobs missing".into());
            return;
        };
        let raw = reference::raw_log_softmax(self.x);
        let cmp = |name: &str,
                   got: &[TokenLogprob],
                   want: &[TokenLogprob],
                   all: &[f64],
                   tol_fail: &mut Vec<String>| {
            if got.len() != want.len() {
                tol_fail.push(format!(
                    "{name} top_logprobs: {} entries vs {}",
                    got.len(),
                    want.len()
                ));
                return;
            }
            for (g, w) in got.iter().zip(want) {
                // Positions agree in value; ids may swap only between near-ties.
                if (g.logprob - w.logprob).abs() > LOGPROB_TOL
                    || (g.id != w.id
                        && (all[g.id as usize] - w.logprob).abs()
                            > BOUNDARY_REL * w.logprob.abs().max(1.0))
                {
                    tol_fail.push(format!(
                        "{name} top_logprobs: {}:{} vs {}:{}",
                        g.id, g.logprob, w.id, w.logprob
                    ));
                    return;
                }
            }
        };
        cmp("raw", &top.raw, &reference::top_n(&raw, n), &raw, tol_fail);
        cmp(
            "processed",
            &top.processed,
            &reference::top_n(&self.reference.log_pi, n),
            &self.reference.log_pi,
            tol_fail,
        );
    }
}

/// Mirostat v1's k is ⌊real k⌋; an f32 backend's real k may cross an
/// integer when it is this close (relative) to one (docs/spec.md §7).
pub const MIROSTAT_K_REL: f64 = 1e-4;
/// The backend's `mirostat_mu` against the reference's (absolute).
pub const MIROSTAT_MU_TOL: f64 = 1e-4;

/// Whether a processed logit `y` lies on a boundary of one of the stages in
/// `trace` (docs/spec.md §7): within 1e-5 (relative) of its threshold, at a
/// top-p or typical cut whose cumulative mass is within 1e-5 of the target,
/// at a typical score within 1e-5 of the cut score, between XTC's two
/// possible "least likely of A", or at mirostat v1's k-th or (k+1)-th value
/// when its real k is within 1e-4 of an integer.
pub fn on_boundary(y: f64, trace: &[reference::StageTrace]) -> bool {
    if !y.is_finite() {
        return false;
    }
    // Typical sampling reports a NaN threshold and an XTC that removed
    // nothing +inf (reference::StageTrace): neither is a logit on a boundary.
    let near_within =
        |thr: f64, scale: f64| thr.is_finite() && (y - thr).abs() <= BOUNDARY_REL * scale;
    let near = |thr: f64| near_within(thr, thr.abs().max(1.0));
    trace.iter().any(|t| {
        // XTC keeps x ≤ a exactly; its boundary is the set A (below).
        if t.xtc_cut.is_none() && near(t.threshold) {
            return true;
        }
        // Top-nσ: an f32 σ is off by ~1e-6·σ, so the threshold max − n·σ is
        // off relative to max and n·σ as well as to itself.
        if let Some(c) = t.sigma_cut {
            let scale = t.threshold.abs().max(c.max.abs()).max(c.n_sigma).max(1.0);
            if near_within(t.threshold, scale) {
                return true;
            }
        }
        if let Some(cut) = t.top_p_cut {
            let target = cut.p - reference::TOP_P_SLACK;
            if (y >= t.threshold && (cut.mass_above - target).abs() <= TOP_P_MASS_TOL)
                || (y < t.threshold && (cut.mass_at_or_above - target).abs() <= TOP_P_MASS_TOL)
            {
                return true;
            }
        }
        if let (Some(c), Some(q)) = (t.typical_cut, t.q) {
            if typical_boundary(y, &c, &q) {
                return true;
            }
        }
        if let (Some(c), Some(q)) = (t.xtc_cut, t.q) {
            if xtc_boundary(y, t, &c, &q) {
                return true;
            }
        }
        if let Some(m) = t.mirostat {
            let k = m.k_real;
            if m.version == 1
                && k.is_finite()
                && (k - k.round()).abs() <= MIROSTAT_K_REL * k.abs().max(1.0)
                && (near(m.kth) || near(m.next))
            {
                return true;
            }
        }
        false
    })
}

/// Typical sampling (docs/spec.md §7): a score |−ln q − H| within 1e-5 of
/// the cut score, or a walk that stops within 1e-5 of its target mass (the
/// group at the cut and the next one), or that was within 1e-5 of it before
/// the cut's group (that group).
fn typical_boundary(y: f64, c: &reference::TypicalCut, q: &reference::LogQ) -> bool {
    let score = q.score(y, c.entropy);
    let near = |cut: f64| cut.is_finite() && (score - cut).abs() <= BOUNDARY_REL * cut.max(1.0);
    if near(c.cut) {
        return true;
    }
    let target = c.p - reference::TOP_P_SLACK;
    if (c.mass_at - target).abs() <= TOP_P_MASS_TOL && (near(c.walk_cut) || near(c.next)) {
        return true;
    }
    (c.mass_before - target).abs() <= TOP_P_MASS_TOL && near(c.walk_cut)
}

/// XTC (docs/spec.md §7): A = {q ≥ θ} changes if a survivor's ln q is within
/// 1e-5 of ln θ: the input logit just below a joins it, or a's own group
/// leaves it. Every logit between the possible least likely members of A
/// (inclusive) is then a boundary token, and every logit above the lower one
/// if min tokens' all-or-nothing decision differs between them.
fn xtc_boundary(
    y: f64,
    t: &reference::StageTrace,
    c: &reference::XtcCut,
    q: &reference::LogQ,
) -> bool {
    let ln_thr = c.ln_threshold;
    if !ln_thr.is_finite() {
        // θ = 0: every survivor is in A, exactly.
        return false;
    }
    let tol = BOUNDARY_REL * ln_thr.abs().max(1.0);
    let at_threshold = |x: f64| x.is_finite() && (q.ln_q(x) - ln_thr).abs() <= tol;
    let joins = at_threshold(c.below);
    let leaves = at_threshold(c.least);
    if !joins && !leaves {
        return false;
    }
    let lo = if joins { c.below } else { c.least };
    let hi = if leaves { c.above } else { c.least };
    // min tokens: XTC removes nothing if fewer than m would remain.
    let undone = |kept: usize| kept < t.before && kept < c.min_keep;
    let base = undone(c.kept_at_least);
    let flips =
        (joins && undone(c.kept_at_below) != base) || (leaves && undone(c.kept_at_above) != base);
    y >= lo && (y <= hi || flips)
}

/// The number of survivors of truncation at T = 1 (llama_cpp order): every
/// kept token before temperature, as the reference's last stage left them.
fn survivors_at_t1(pr: &ProcessedRow) -> usize {
    match pr.trace.last() {
        Some(t) => t.after,
        None if pr.greedy => pr.finite,
        None => pr.kept_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ReferenceSampler;

    #[test]
    fn stream_is_deterministic_and_uniform() {
        let mut a = Stream::new(5);
        let mut b = Stream::new(5);
        let xs: Vec<f64> = (0..10_000).map(|_| a.unit()).collect();
        assert!(xs
            .iter()
            .zip((0..10_000).map(|_| b.unit()))
            .all(|(x, y)| *x == y));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        // σ of the mean of 10⁴ uniforms is 0.0029; 4σ.
        assert!((mean - 0.5).abs() < 0.012, "{mean}");
    }

    #[test]
    fn generated_params_are_valid() {
        let mut s = Stream::new(1);
        for _ in 0..2000 {
            let p = random_params(&mut s, 500);
            p.validate(0, 500).unwrap();
        }
    }

    #[test]
    fn reference_agrees_with_itself() {
        let cfg = SuiteConfig {
            cases: 6,
            vocabs: vec![64, 1000],
            max_batch: 16,
            ..Default::default()
        };
        let report = run_suite(&mut ReferenceSampler::new(), &cfg, &mut |_, _| {}).unwrap();
        assert!(report.ok(), "{report}");
        assert_eq!(report.total.max_abs_dpi, 0.0);
        assert!(report.total.rows > 10);
    }

    #[test]
    fn extended_rows_are_valid_and_the_reference_agrees_with_itself() {
        let mut s = Stream::new(2);
        let mut used = 0;
        for _ in 0..2000 {
            let mut p = random_params(&mut s, 500);
            random_extended(&mut s, &mut p, 500);
            p.validate(0, 500).unwrap();
            used += p.uses_extended_samplers() as usize;
        }
        assert!(used > 800, "{used}");
        let cfg = SuiteConfig {
            cases: 4,
            vocabs: vec![64, 1000],
            max_batch: 16,
            extended: true,
            ..Default::default()
        };
        let report = run_suite(&mut ReferenceSampler::new(), &cfg, &mut |_, _| {}).unwrap();
        assert!(report.ok(), "{report}");
        assert_eq!(report.total.max_abs_dpi, 0.0);
    }

    /// A sampler that breaks one rule, to prove the suite notices.
    struct Broken(ReferenceSampler);

    impl Sampler for Broken {
        fn kind(&self) -> crate::BackendKind {
            crate::BackendKind::Cpu
        }
        fn device(&self) -> String {
            "broken".into()
        }
        fn sample(
            &mut self,
            l: LogitsView<'_>,
            p: &[SamplingParams],
            n: u32,
        ) -> Result<Vec<RowResult>> {
            let mut rows = self.0.sample(l, p, n)?;
            for r in &mut rows {
                // Off by one token now and then.
                if r.seed % 3 == 0 && r.kept > 1 {
                    r.draws[0] = (r.draws[0] + 1) % l.vocab() as u32;
                    r.token = r.draws[0];
                }
            }
            Ok(rows)
        }
        fn probs(&mut self, l: LogitsView<'_>, p: &[SamplingParams]) -> Result<Vec<RowProbs>> {
            let mut rows = self.0.probs(l, p)?;
            for r in &mut rows {
                if let Some(q) = r.probs.iter_mut().find(|q| **q > 0.01) {
                    *q += 1e-4;
                }
            }
            Ok(rows)
        }
    }

    #[test]
    fn suite_catches_a_broken_backend() {
        let cfg = SuiteConfig {
            cases: 4,
            vocabs: vec![200],
            max_batch: 16,
            ..Default::default()
        };
        let report = run_suite(&mut Broken(ReferenceSampler::new()), &cfg, &mut |_, _| {}).unwrap();
        assert!(!report.ok());
        assert!(report.total.tolerance_failures > 0);
        assert!(report.total.token_mismatch_unexplained > 0, "{report}");
    }

    // ------------------------------------------------------------------
    // docs/spec.md §7's boundaries of the extended samplers: a fake f32
    // backend (the reference on a row or parameters moved by a rounding's
    // worth) disagrees at a true boundary and is explained; one moved by
    // far more is caught.

    type Skew = Box<dyn Fn(&mut Vec<f32>, &mut SamplingParams) + Send>;

    /// The reference on each row after `skew` moved its logits or
    /// parameters: what a backend that rounds differently would return.
    struct Skewed(Skew);

    impl Skewed {
        fn inputs(&self, l: LogitsView<'_>, p: &[SamplingParams]) -> (Batch, Vec<SamplingParams>) {
            let mut rows = Vec::new();
            let mut params = p.to_vec();
            for (r, q) in params.iter_mut().enumerate() {
                let mut x = l.row(r).to_vec();
                (self.0)(&mut x, q);
                rows.push(x);
            }
            (Batch::from_rows(&rows).unwrap(), params)
        }
    }

    impl Sampler for Skewed {
        fn kind(&self) -> crate::BackendKind {
            crate::BackendKind::Cpu
        }
        fn device(&self) -> String {
            "skewed".into()
        }
        fn sample(
            &mut self,
            l: LogitsView<'_>,
            p: &[SamplingParams],
            n: u32,
        ) -> Result<Vec<RowResult>> {
            let (b, params) = self.inputs(l, p);
            ReferenceSampler::new().sample(b.view(), &params, n)
        }
        fn probs(&mut self, l: LogitsView<'_>, p: &[SamplingParams]) -> Result<Vec<RowProbs>> {
            let (b, params) = self.inputs(l, p);
            ReferenceSampler::new().probs(b.view(), &params)
        }
    }

    /// The suite's verdict on one row run by `Skewed(skew)`.
    fn verdict(
        x: &[f32],
        p: &SamplingParams,
        skew: impl Fn(&mut Vec<f32>, &mut SamplingParams) + Send + 'static,
    ) -> (Stats, Report) {
        let case = Case {
            index: 0,
            batch: Batch::from_rows(&[x.to_vec()]).unwrap(),
            params: vec![p.clone()],
            kinds: vec![RowKind::Normal],
            samples: 2,
        };
        let mut stats = Stats::default();
        let mut report = Report::default();
        check_case(&mut Skewed(Box::new(skew)), &case, &mut stats, &mut report).unwrap();
        (stats, report)
    }

    /// Both skews are explained, and at least one of them does change the
    /// kept set (so the boundary rule, not luck, passed it).
    #[track_caller]
    fn assert_explained(what: &str, x: &[f32], p: &SamplingParams, skews: [Skew; 2]) {
        let mut differed = 0;
        for skew in skews {
            let (s, report) = verdict(x, p, skew);
            assert!(s.ok(), "{what}: {report}");
            differed += s.kept_mismatch_explained;
        }
        assert!(differed > 0, "{what}: neither skew crossed the boundary");
    }

    #[track_caller]
    fn assert_caught(
        what: &str,
        x: &[f32],
        p: &SamplingParams,
        skew: impl Fn(&mut Vec<f32>, &mut SamplingParams) + Send + 'static,
    ) {
        let (s, report) = verdict(x, p, skew);
        assert!(s.kept_mismatch_unexplained > 0, "{what}: {report}");
    }

    fn ln(w: &[f64]) -> Vec<f32> {
        w.iter().map(|v| v.ln() as f32).collect()
    }

    fn seeded(p: SamplingParams) -> SamplingParams {
        SamplingParams { seed: Some(5), ..p }
    }

    /// Moves logit `j` onto `target(trace)` until it stays there (the
    /// threshold depends a little on the logit itself).
    fn place(x: &mut [f32], p: &SamplingParams, j: usize, target: impl Fn(&ProcessedRow) -> f64) {
        for _ in 0..50 {
            let pr = reference::process_row(0, x, p, Overrides::default()).unwrap();
            x[j] = target(&pr) as f32;
        }
    }

    fn threshold_of(stage: crate::Stage) -> impl Fn(&ProcessedRow) -> f64 {
        move |pr| {
            pr.trace
                .iter()
                .find(|t| t.stage == stage)
                .unwrap()
                .threshold
        }
    }

    macro_rules! skews {
        ($($f:expr),* $(,)?) => { [$(Box::new($f) as Skew),*] };
    }

    #[test]
    fn top_n_sigma_boundary_scales_with_max_and_n_sigma() {
        // max 10, n·σ ≈ 7.5, threshold ≈ 2.5: a move of 5e-5 is beyond 1e-5
        // of the threshold but within 1e-5·max(|max|, n·σ) (docs/spec.md §7).
        let p = seeded(SamplingParams {
            top_n_sigma: 1.0,
            ..Default::default()
        });
        let mut x = vec![-10.0f32, -4.0, 0.0, 10.0, 2.0];
        place(&mut x, &p, 4, threshold_of(crate::Stage::TopNSigma));
        assert_explained(
            "top-nσ",
            &x,
            &p,
            skews![
                |x: &mut Vec<f32>, _: &mut SamplingParams| x[4] += 5e-5,
                |x: &mut Vec<f32>, _: &mut SamplingParams| x[4] -= 5e-5
            ],
        );
        // Token 2 (0.0) is 2.5 below the threshold: kept there, a real difference.
        assert_caught(
            "top-nσ",
            &x,
            &p,
            |x: &mut Vec<f32>, _: &mut SamplingParams| x[2] = 6.0,
        );
    }

    #[test]
    fn epsilon_and_eta_boundaries_are_logit_thresholds() {
        // q = [.6, .3, .1], ε = .1: token 2 sits on the cut.
        let x = ln(&[6.0, 3.0, 1.0]);
        let eps = |e: f32| {
            seeded(SamplingParams {
                epsilon_cutoff: e,
                ..Default::default()
            })
        };
        assert_explained(
            "ε",
            &x,
            &eps(0.1),
            skews![
                |_: &mut Vec<f32>, p: &mut SamplingParams| p.epsilon_cutoff *= 1.0 + 3e-6,
                |_: &mut Vec<f32>, p: &mut SamplingParams| p.epsilon_cutoff *= 1.0 - 3e-6
            ],
        );
        assert_caught(
            "ε",
            &x,
            &eps(0.05),
            |_: &mut Vec<f32>, p: &mut SamplingParams| p.epsilon_cutoff = 0.2,
        );
        // q = [.5, .25, .25], e^(−H) = 2^(−1.5): η = .5 cuts at
        // min(.5, √.5·2^(−1.5)) = .25, on tokens 1 and 2.
        let x = ln(&[2.0, 1.0, 1.0]);
        let eta = |e: f32| {
            seeded(SamplingParams {
                eta_cutoff: e,
                ..Default::default()
            })
        };
        assert_explained(
            "η",
            &x,
            &eta(0.5),
            skews![
                |_: &mut Vec<f32>, p: &mut SamplingParams| p.eta_cutoff *= 1.0 + 4e-6,
                |_: &mut Vec<f32>, p: &mut SamplingParams| p.eta_cutoff *= 1.0 - 4e-6
            ],
        );
        assert_caught(
            "η",
            &x,
            &eta(0.1),
            |_: &mut Vec<f32>, p: &mut SamplingParams| p.eta_cutoff = 0.9,
        );
    }

    #[test]
    fn typical_mass_boundary() {
        // q = [.4, .3, .2, .1]: the walk visits 1 (.3), 2 (.2), 0 (.4); with
        // typical_p − 1e-6 just below .5 it stops after token 2, and a
        // backend whose sum falls short of it takes token 0 as well.
        let x = ln(&[4.0, 3.0, 2.0, 1.0]);
        let tp = |v: f32| {
            seeded(SamplingParams {
                typical_p: v,
                ..Default::default()
            })
        };
        assert_explained(
            "typical mass",
            &x,
            &tp(0.499_999),
            skews![
                |_: &mut Vec<f32>, p: &mut SamplingParams| p.typical_p += 4e-6,
                |_: &mut Vec<f32>, p: &mut SamplingParams| p.typical_p -= 4e-6
            ],
        );
        assert_caught(
            "typical mass",
            &x,
            &tp(0.45),
            |_: &mut Vec<f32>, p: &mut SamplingParams| p.typical_p = 0.6,
        );
    }

    #[test]
    fn typical_score_boundary() {
        // Tokens 0 (above H) and 2 (below it) placed at equal scores
        // |−ln q − H|: which of them the walk reaches first is a rounding's
        // decision; typical_p stops the walk between them.
        let mut x = ln(&[4.0, 3.0, 2.0, 1.0]);
        let mut p = seeded(SamplingParams {
            typical_p: 0.99,
            ..Default::default()
        });
        for _ in 0..50 {
            let pr = reference::process_row(0, &x, &p, Overrides::default()).unwrap();
            let t = pr.trace.iter().find(|t| t.typical_cut.is_some()).unwrap();
            let (q, h) = (t.q.unwrap(), t.typical_cut.unwrap().entropy);
            // −ln q2 − H = H + ln q0.
            let ln_q2 = -2.0 * h - q.ln_q(pr.logits[0]);
            x[2] = (q.max + q.t * (ln_q2 + q.ln_z)) as f32;
        }
        let pr = reference::process_row(0, &x, &p, Overrides::default()).unwrap();
        let t = pr.trace.iter().find(|t| t.typical_cut.is_some()).unwrap();
        let (q, h) = (t.q.unwrap(), t.typical_cut.unwrap().entropy);
        let (s0, s2) = (q.score(pr.logits[0], h), q.score(pr.logits[2], h));
        assert!((s0 - s2).abs() < 1e-6, "{s0} {s2}");
        // After token 1, the first of the pair: stop halfway through it.
        let first = if s0 <= s2 { 0 } else { 2 };
        let q1 = q.ln_q(pr.logits[1]).exp();
        let qf = q.ln_q(pr.logits[first]).exp();
        p.typical_p = (q1 + qf / 2.0) as f32;
        assert_explained(
            "typical score",
            &x,
            &p,
            skews![
                |x: &mut Vec<f32>, _: &mut SamplingParams| x[0] += 2e-6,
                |x: &mut Vec<f32>, _: &mut SamplingParams| x[0] -= 2e-6
            ],
        );
        // Token 3 is far from the cut in score and mass.
        assert_caught(
            "typical score",
            &x,
            &p,
            |_: &mut Vec<f32>, p: &mut SamplingParams| p.typical_p = 0.999,
        );
    }

    fn xtc(threshold: f32, m: u32) -> SamplingParams {
        seeded(SamplingParams {
            xtc_probability: 1.0,
            xtc_threshold: threshold,
            min_tokens_to_keep: m,
            ..Default::default()
        })
    }

    #[test]
    fn xtc_boundary_of_the_set_a() {
        // q = [.4, .3, .2, .1], θ = .3: token 1 is on the edge of A, so A is
        // {0, 1} (token 0 goes) or {0} (nothing goes).
        let x = ln(&[4.0, 3.0, 2.0, 1.0]);
        assert_explained(
            "XTC",
            &x,
            &xtc(0.3, 1),
            skews![
                |_: &mut Vec<f32>, p: &mut SamplingParams| p.xtc_threshold *= 1.0 + 4e-6,
                |_: &mut Vec<f32>, p: &mut SamplingParams| p.xtc_threshold *= 1.0 - 4e-6
            ],
        );
        // θ = .25 vs .15: A {0, 1} vs {0, 1, 2}, token 1 removed or not,
        // nowhere near the edge.
        assert_caught(
            "XTC",
            &x,
            &xtc(0.25, 1),
            |_: &mut Vec<f32>, p: &mut SamplingParams| p.xtc_threshold = 0.15,
        );
    }

    #[test]
    fn xtc_boundary_of_min_tokens() {
        // θ = .2 with min tokens 3: A = {0, 1, 2} leaves 2 < 3 tokens, so
        // XTC removes nothing; A = {0, 1} leaves 3 and removes token 0,
        // which is outside the band between the two least likely members.
        let x = ln(&[4.0, 3.0, 2.0, 1.0]);
        assert_explained(
            "XTC min tokens",
            &x,
            &xtc(0.2, 3),
            skews![
                |_: &mut Vec<f32>, p: &mut SamplingParams| p.xtc_threshold *= 1.0 + 4e-6,
                |_: &mut Vec<f32>, p: &mut SamplingParams| p.xtc_threshold *= 1.0 - 4e-6
            ],
        );
        assert_caught(
            "XTC min tokens",
            &x,
            &xtc(0.25, 3),
            |_: &mut Vec<f32>, p: &mut SamplingParams| p.min_tokens_to_keep = 4,
        );
    }

    fn miro(version: u8, mu: f32) -> SamplingParams {
        seeded(SamplingParams {
            mirostat: Some(Mirostat {
                version,
                tau: 5.0,
                eta: 0.1,
                mu: Some(mu),
            }),
            ..Default::default()
        })
    }

    fn nudge_mu(by: f32) -> impl Fn(&mut Vec<f32>, &mut SamplingParams) + Send {
        move |_, p| {
            let ms = p.mirostat.as_mut().unwrap();
            ms.mu = Some(ms.mu.unwrap() + by);
        }
    }

    #[test]
    fn mirostat_v1_k_near_an_integer() {
        // Zipf exponent 2 over V = 4: k = (2^mu/.75)^(1/2), 3 at
        // 2^mu = 6.75: ⌊k⌋ is 2 or 3 by a rounding.
        let x = ln(&[36.0, 9.0, 4.0, 2.25]);
        let p = miro(1, 6.75f64.log2() as f32);
        let pr = reference::process_row(0, &x, &p, Overrides::default()).unwrap();
        let k = pr.trace[0].mirostat.unwrap().k_real;
        assert!((k - 3.0).abs() < 1e-5, "{k}");
        assert_explained(
            "mirostat v1",
            &x,
            &p,
            skews![nudge_mu(2e-5), nudge_mu(-2e-5)],
        );
        // k = 2.31 vs 3.27.
        assert_caught("mirostat v1", &x, &miro(1, 2.0), nudge_mu(1.0));
    }

    #[test]
    fn mirostat_v2_threshold_and_mu() {
        // q = [.5, .25, .125, .125], mu = 2: token 1's surprise is 2 bits,
        // on the cut.
        let x = ln(&[4.0, 2.0, 1.0, 1.0]);
        assert_explained(
            "mirostat v2",
            &x,
            &miro(2, 2.0),
            skews![nudge_mu(3e-6), nudge_mu(-3e-6)],
        );
        assert_caught("mirostat v2", &x, &miro(2, 2.5), nudge_mu(1.0));
        // The same kept set with a mu off by more than 1e-4 is a failure of
        // `mirostat_mu`, in the probs and in the sampled result.
        let (s, report) = verdict(&x, &miro(2, 2.5), nudge_mu(0.01));
        assert_eq!(s.kept_mismatch_explained + s.kept_mismatch_unexplained, 0);
        assert_eq!(s.tolerance_failures, 1, "{report}");
        assert!(report.failures[0].contains("mirostat_mu"), "{report}");
    }

    #[test]
    fn extended_suite_passes_on_the_cpu_backend() {
        let cfg = SuiteConfig {
            cases: 6,
            vocabs: vec![9, 500, 4096],
            max_batch: 24,
            extended: true,
            ..Default::default()
        };
        let report = run_suite(&mut crate::CpuSampler::new(), &cfg, &mut |_, _| {}).unwrap();
        assert!(report.ok(), "{report}");
    }
}
