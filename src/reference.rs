//! The reference backend: docs/spec.md §3–§6 in plain f64 code, one row at a time.
//!
//! This file is the executable spec. It may sort, it never tries to be fast, and
//! each function reads like the paragraph of docs/spec.md it implements. The fast
//! backends are tested against it; its own tests are hand-derived goldens.

use std::collections::{BTreeMap, BTreeSet};
use std::f64::consts::LN_2;

use crate::backend::{check_draws, check_samples, BackendKind, Sampler};
use crate::batch::LogitsView;
use crate::error::{Result, SamplerError};
use crate::params::{
    resolve_seeds, validate_all, widen, Mirostat, Order, SamplingParams, Stage, PENALTY_LIMIT,
};
use crate::result::{RowProbs, RowResult, TokenLogprob, TopLogprobs};
use crate::rng::{uniform, xtc_uniform};

/// Slack on the top-p target: a prefix whose mass reaches `p − 1e-6` is enough
/// (docs/spec.md §3.5), so f32 backends and rounding do not add a token.
pub const TOP_P_SLACK: f64 = 1e-6;

/// The most the DRY penalty subtracts from one logit (docs/spec.md §3.14):
/// 2^23, half of docs/spec.md §2.1's penalty bound, so a long repeat lowers
/// a token past any ordinary logit instead of failing the row.
pub const DRY_PENALTY_CAP: f64 = 8_388_608.0;

/// Mirostat v1 estimates the Zipf exponent from this many most likely tokens
/// (llama.cpp's `m`, docs/spec.md §3.15).
pub const MIROSTAT_M: usize = 100;

/// The reference backend.
#[derive(Debug, Default, Clone)]
pub struct ReferenceSampler;

impl ReferenceSampler {
    pub fn new() -> Self {
        ReferenceSampler
    }
}

/// What one truncation stage did, for diagnostics and for explaining boundary
/// disagreements between backends (docs/spec.md §7).
#[derive(Debug, Clone, PartialEq)]
pub struct StageTrace {
    pub stage: Stage,
    /// Survivors before and after the stage.
    pub before: usize,
    pub after: usize,
    /// The stage keeps exactly the survivors with logit ≥ `threshold` (after
    /// bias, mask and penalties; before temperature). Two stages differ:
    /// XTC keeps the survivors with logit ≤ `threshold` (+inf: it removed
    /// nothing), and typical sampling, which cuts on |−ln q − H|, not on
    /// the logit, reports NaN.
    pub threshold: f64,
    /// `min_tokens_to_keep` overrode the stage.
    pub min_keep_applied: bool,
    /// Top-p only: the target p and the cumulative mass strictly above and
    /// at-or-above the cut value.
    pub top_p_cut: Option<TopPCut>,
    /// Top-nσ only: the max and n·σ its threshold `max − n·σ` came from.
    pub sigma_cut: Option<SigmaCut>,
    /// The stages that cut on q (typical, ε, η, XTC, mirostat v2): the q
    /// they saw, so a validator can compute `ln q` of any logit.
    pub q: Option<LogQ>,
    /// Typical sampling only: its score cut and the masses of its walk.
    pub typical_cut: Option<TypicalCut>,
    /// XTC only (when its coin fired): A's least likely logit and its
    /// neighbours.
    pub xtc_cut: Option<XtcCut>,
    /// Mirostat's cut (docs/spec.md §3.15), which replaces every stage: its
    /// entry says `TopK` for version 1 (the k largest, §3.4's rule) and
    /// `Epsilon` for version 2 (q ≥ 2^−mu, an ε cutoff without min tokens).
    pub mirostat: Option<MirostatCut>,
}

/// The softmax a stage saw: `ln q_i = (x_i − max)/t − ln_z` over its input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogQ {
    pub t: f64,
    pub max: f64,
    pub ln_z: f64,
}

impl LogQ {
    /// ln q of a logit `x` (after bias, mask and penalties).
    pub fn ln_q(&self, x: f64) -> f64 {
        (x - self.max) / self.t - self.ln_z
    }

    /// Typical sampling's score |−ln q − H| of a logit, for entropy `h`.
    pub fn score(&self, x: f64, h: f64) -> f64 {
        (-self.ln_q(x) - h).abs()
    }
}

/// Top-nσ's threshold `max − n·σ`, in parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SigmaCut {
    pub max: f64,
    pub n_sigma: f64,
}

/// Where typical sampling cut (docs/spec.md §3.11). Its walk visits groups
/// of equal score |−ln q − H|, most typical first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TypicalCut {
    /// typical_p and the entropy H of the stage's q.
    pub p: f64,
    pub entropy: f64,
    /// The largest score kept (the walk's, or the m-th most typical's when
    /// min tokens applied).
    pub cut: f64,
    /// The score of the walk's last group, and of the group after it (+inf
    /// if none).
    pub walk_cut: f64,
    pub next: f64,
    /// The walk's cumulative mass before and after its last group.
    pub mass_before: f64,
    pub mass_at: f64,
}

/// What XTC decided when its coin fired (docs/spec.md §3.13). `ln q` of a
/// logit comes from the stage's [`LogQ`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct XtcCut {
    /// ln θ (−inf for θ = 0).
    pub ln_threshold: f64,
    /// a, the least likely logit of A = {q ≥ θ} (+inf: A is empty), and the
    /// number of input survivors at or below it.
    pub least: f64,
    pub kept_at_least: usize,
    /// The largest input logit below a (−inf if none), the least likely
    /// member A would have if it reached down to it, and the survivors at or
    /// below it.
    pub below: f64,
    pub kept_at_below: usize,
    /// The smallest logit of A above a (+inf if none), the least likely
    /// member A would have without a's group, and the survivors at or
    /// below it.
    pub above: f64,
    pub kept_at_above: usize,
    /// `min_tokens_to_keep`: XTC removes nothing if fewer would remain.
    pub min_keep: usize,
}

/// Mirostat's cut (docs/spec.md §3.15).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MirostatCut {
    pub version: u8,
    /// The mu the cut used.
    pub mu: f64,
    /// Version 1: k before the floor and clamp (NaN: NaN; 1 for a single
    /// finite token), the k applied, and the k-th and (k+1)-th largest
    /// finite logits (−inf where there is none). Version 2: NaN, the number
    /// kept, NaN, NaN.
    pub k_real: f64,
    pub k: usize,
    pub kth: f64,
    pub next: f64,
}

/// Where top-p cut: the group of tied logits at the threshold has mass
/// `mass_at_or_above − mass_above`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopPCut {
    pub p: f64,
    pub mass_above: f64,
    pub mass_at_or_above: f64,
}

/// Values a validator may force instead of the ones the reference computes
/// (docs/spec.md §7: a dynamic row's π is compared at the backend's own T).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Overrides {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
}

/// Everything the reference computes for one row before drawing.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessedRow {
    /// Logits after bias, mask and penalties (−inf = masked).
    pub logits: Vec<f64>,
    /// Number of finite entries of `logits`.
    pub finite: usize,
    /// Entropy (nats) and varentropy of softmax(`logits`) at T = 1.
    pub entropy: f64,
    pub varentropy: f64,
    /// Guide entropy in the mapping's unit, after the clip (dynamic rows).
    pub guide_entropy: Option<f64>,
    /// The temperature applied; 0 = greedy.
    pub temperature: f64,
    /// The top-p applied.
    pub top_p: f64,
    /// Whether the row is decided greedily.
    pub greedy: bool,
    /// Survivor mask of every stage.
    pub kept: Vec<bool>,
    /// Number of survivors.
    pub kept_count: usize,
    /// π in token-id order (0 for removed tokens).
    pub pi: Vec<f64>,
    /// ln π for survivors (−inf for removed tokens).
    pub log_pi: Vec<f64>,
    /// Entropy (nats) of π.
    pub final_entropy: f64,
    /// One entry per truncation stage that ran.
    pub trace: Vec<StageTrace>,
    /// Mirostat rows: the `mu` this step cut π with (docs/spec.md §3.15).
    pub mirostat_mu: Option<f64>,
}

impl ProcessedRow {
    /// The inverse-CDF draw of docs/spec.md §3.8 for a uniform `u`.
    pub fn draw(&self, u: f64) -> u32 {
        if self.greedy {
            return argmax(&self.logits) as u32;
        }
        inverse_cdf(&self.pi, u)
    }
}

/// Stage 1 (bias & mask) and stage 2 (penalties) of docs/spec.md §3, in f64. Rejects
/// NaN/+inf logits, values a bias or penalty pushes out of f32's finite range,
/// and rows with nothing left.
pub fn bias_mask_penalties(row: usize, x: &[f32], p: &SamplingParams) -> Result<Vec<f64>> {
    let mut y = Vec::with_capacity(x.len());
    for (index, &v) in x.iter().enumerate() {
        if v.is_nan() || v == f32::INFINITY {
            return Err(SamplerError::InvalidLogit {
                row,
                index,
                value: v,
            });
        }
        y.push(v as f64);
    }
    // Tokens outside allowed_token_ids become −inf.
    if let Some(allowed) = &p.allowed_token_ids {
        let allowed: BTreeSet<u32> = allowed.iter().copied().collect();
        for (i, v) in y.iter_mut().enumerate() {
            if !allowed.contains(&(i as u32)) {
                *v = f64::NEG_INFINITY;
            }
        }
    }
    // x_i += logit_bias[i]; a masked token stays −inf.
    for (&id, &b) in &p.logit_bias {
        let i = id as usize;
        if y[i].is_finite() {
            // Exact f32 → f64: a bias that ties two logits in f32 ties them here too.
            y[i] += b as f64;
            check_f32_range(row, i, "logit_bias", y[i])?;
        }
    }
    // Penalties, over every distinct token of history ∪ prompt, ascending;
    // c_i is its count in the history.
    let r = widen(p.repetition_penalty);
    for t in p.penalty_tokens() {
        let i = t.id as usize;
        if !y[i].is_finite() {
            continue;
        }
        if r != 1.0 {
            if y[i] > 0.0 {
                y[i] /= r;
            } else {
                y[i] *= r;
            }
            check_penalised(row, i, "repetition_penalty", y[i])?;
        }
        let c = t.count as f64;
        if c > 0.0 {
            // The amount subtracted, and the result, stay below 2^24
            // (docs/spec.md §2.1).
            let amount = widen(p.frequency_penalty) * c + widen(p.presence_penalty);
            if amount != 0.0 {
                let field = "frequency_penalty/presence_penalty";
                check_penalised(row, i, field, amount)?;
                y[i] -= amount;
                check_penalised(row, i, field, y[i])?;
            }
        }
    }
    // DRY after the other penalties (docs/spec.md §3.14), as in llama.cpp's chain.
    for (id, amount) in dry_penalties(p) {
        let i = id as usize;
        if y[i].is_finite() {
            y[i] -= amount;
            check_penalised(row, i, "dry_multiplier", y[i])?;
        }
    }
    if !y.iter().any(|v| v.is_finite()) {
        return Err(SamplerError::AllMasked { row });
    }
    Ok(y)
}

/// For every position j of `w`, the length of the longest common suffix of
/// `w[..=j]` and `w` (docs/spec.md §3.14's L_j before the breaker cap). It is
/// the Z-function of `w` reversed, read back to front: O(N), where comparing
/// each position's suffix directly costs O(N²) on a sequence of one repeated
/// token, which a long prompt can be.
pub fn common_suffixes(w: &[u32]) -> Vec<usize> {
    let n = w.len();
    let r: Vec<u32> = w.iter().rev().copied().collect();
    // z[k]: the longest common prefix of r and r[k..].
    let mut z = vec![0; n];
    if n > 0 {
        z[0] = n;
    }
    let (mut lo, mut hi) = (0, 0);
    for k in 1..n {
        let mut len = if k < hi { z[k - lo].min(hi - k) } else { 0 };
        while k + len < n && r[len] == r[k + len] {
            len += 1;
        }
        if k + len > hi {
            (lo, hi) = (k, k + len);
        }
        z[k] = len;
    }
    // Position j of w is position n − 1 − j of r.
    (0..n).map(|j| z[n - 1 - j]).collect()
}

/// docs/spec.md §3.14: the DRY penalty of every token it applies to. The
/// sequence is `prompt_token_ids` then `history`, its last
/// `dry_penalty_last_n` tokens when that is > 0. For each earlier position j
/// whose tokens end with the sequence's own last tokens (the longest such
/// match has length L_j, capped at the distance from the end to the last
/// sequence breaker), the token after j would extend a repeat: if
/// L_j ≥ `dry_allowed_length` it gets `multiplier · base^(L − allowed)` with L
/// its largest L_j, capped at [`DRY_PENALTY_CAP`]. Breakers are never
/// penalised; a sequence no longer than `dry_allowed_length` penalises nothing.
pub fn dry_penalties(p: &SamplingParams) -> BTreeMap<u32, f64> {
    let mut out = BTreeMap::new();
    if !p.dry_active() {
        return out;
    }
    let seq: Vec<u32> = p
        .prompt_token_ids
        .iter()
        .chain(&p.history)
        .copied()
        .collect();
    let w: &[u32] = match usize::try_from(p.dry_penalty_last_n) {
        Ok(n) if n > 0 => &seq[seq.len().saturating_sub(n)..],
        _ => &seq,
    };
    let n = w.len();
    let allowed = p.dry_allowed_length as usize;
    if n <= allowed {
        return out;
    }
    let breakers: BTreeSet<u32> = p.dry_sequence_breakers.iter().copied().collect();
    // A repeat may not reach back across a breaker: i tokens from the end.
    let limit = (0..n)
        .find(|&i| breakers.contains(&w[n - 1 - i]))
        .unwrap_or(n);
    if limit < allowed {
        return out;
    }
    let suffix = common_suffixes(w);
    let mut longest: BTreeMap<u32, usize> = BTreeMap::new();
    for j in 0..n - 1 {
        let len = suffix[j].min(limit);
        if len >= allowed {
            let e = longest.entry(w[j + 1]).or_insert(len);
            *e = (*e).max(len);
        }
    }
    let (m, b) = (widen(p.dry_multiplier), widen(p.dry_base));
    for (id, len) in longest {
        if !breakers.contains(&id) {
            let amount = m * b.powf((len - allowed) as f64);
            out.insert(id, amount.min(DRY_PENALTY_CAP));
        }
    }
    out
}

/// docs/spec.md §2.1: what a penalty step produces stays below 2^24 in
/// magnitude ([`PENALTY_LIMIT`]), the same error on every backend.
fn check_penalised(row: usize, index: usize, field: &str, v: f64) -> Result<()> {
    if v.abs() < PENALTY_LIMIT {
        Ok(())
    } else {
        Err(SamplerError::NonFiniteLogit {
            row,
            index,
            field: field.to_string(),
            value: v,
        })
    }
}

/// The f32 backends hold logits in f32, so a value beyond f32's range is the
/// same error on every backend.
fn check_f32_range(row: usize, index: usize, field: &str, v: f64) -> Result<()> {
    if v.is_finite() && v.abs() <= f32::MAX as f64 {
        Ok(())
    } else {
        Err(SamplerError::NonFiniteLogit {
            row,
            index,
            field: field.to_string(),
            value: v,
        })
    }
}

/// docs/spec.md §4 entropy statistics of softmax(x) over the entries with `keep` set and
/// x finite: `(H nats, varentropy, N)`. With `S = Σ e^(x−m)`,
/// `H = ln S − Σ e^(x−m)(x−m)/S` (clamped ≥ 0) and
/// `varentropy = Σ π (ln π)² − H²`.
pub fn entropy_stats(x: &[f64], keep: &[bool]) -> (f64, f64, usize) {
    let live = |i: usize| keep[i] && x[i].is_finite();
    let mut m = f64::NEG_INFINITY;
    let mut n = 0;
    for (i, &v) in x.iter().enumerate() {
        if live(i) {
            m = m.max(v);
            n += 1;
        }
    }
    if n == 0 {
        return (0.0, 0.0, 0);
    }
    let (mut s, mut a) = (0.0, 0.0);
    for i in (0..x.len()).filter(|&i| live(i)) {
        let e = (x[i] - m).exp();
        s += e;
        a += e * (x[i] - m);
    }
    let ln_s = s.ln();
    let h = (ln_s - a / s).max(0.0);
    let mut v = 0.0;
    for i in (0..x.len()).filter(|&i| live(i)) {
        let ln_pi = x[i] - m - ln_s;
        v += ln_pi.exp() * ln_pi * ln_pi;
    }
    (h, (v - h * h).max(0.0), n)
}

/// Lowest index of the largest value (the greedy rule: lowest id among equals).
fn argmax(x: &[f64]) -> usize {
    let mut best = 0;
    for i in 1..x.len() {
        if x[i] > x[best] {
            best = i;
        }
    }
    best
}

/// The survivors' logits, descending (ties in id order).
fn sorted_survivors(x: &[f64], keep: &[bool]) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..x.len()).filter(|&i| keep[i]).collect();
    ids.sort_by(|&a, &b| x[b].total_cmp(&x[a]).then(a.cmp(&b)));
    ids
}

/// Keep every survivor ≥ the k-th largest survivor value (ties all kept).
fn keep_top(x: &[f64], keep: &mut [bool], k: usize) -> f64 {
    let sorted = sorted_survivors(x, keep);
    let threshold = x[sorted[k.min(sorted.len()) - 1]];
    for i in 0..x.len() {
        keep[i] = keep[i] && x[i] >= threshold;
    }
    threshold
}

fn count(keep: &[bool]) -> usize {
    keep.iter().filter(|&&k| k).count()
}

/// q, the softmax of the survivors at T, in logs: `(ln q (−inf for removed
/// tokens), H = −Σ q ln q, the survivors' max logit, ln Z)` with
/// `ln q_i = (x_i − max)/T − ln Z`.
fn log_q(x: &[f64], keep: &[bool], t: f64) -> (Vec<f64>, f64, f64, f64) {
    let max = (0..x.len())
        .filter(|&i| keep[i])
        .map(|i| x[i])
        .fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = (0..x.len())
        .filter(|&i| keep[i])
        .map(|i| ((x[i] - max) / t).exp())
        .sum();
    let ln_z = z.ln();
    let mut lq = vec![f64::NEG_INFINITY; x.len()];
    let mut h = 0.0;
    for i in (0..x.len()).filter(|&i| keep[i]) {
        lq[i] = (x[i] - max) / t - ln_z;
        h -= lq[i].exp() * lq[i];
    }
    (lq, h.max(0.0), max, ln_z)
}

/// Typical sampling's score |−ln q_i − H| (docs/spec.md §3.11).
fn typicality(lq: &[f64], h: f64) -> Vec<f64> {
    lq.iter().map(|&l| (-l - h).abs()).collect()
}

/// The survivors, most typical first (ties in id order).
fn by_typicality(score: &[f64], keep: &[bool]) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..score.len()).filter(|&i| keep[i]).collect();
    ids.sort_by(|&a, &b| score[a].total_cmp(&score[b]).then(a.cmp(&b)));
    ids
}

/// Keep every survivor at least as typical as the m-th most typical.
fn keep_most_typical(x: &[f64], keep: &mut [bool], t: f64, m: usize) -> f64 {
    let (lq, h, _, _) = log_q(x, keep, t);
    let score = typicality(&lq, h);
    let order = by_typicality(&score, keep);
    let cut = score[order[m.min(order.len()) - 1]];
    for i in 0..x.len() {
        keep[i] = keep[i] && score[i] <= cut;
    }
    cut
}

/// Runs one truncation stage on the survivor mask, then the
/// `min_tokens_to_keep` rule (docs/spec.md §3.7; XTC and typical sampling
/// read it their own way, §3.11 and §3.13). `t` is the temperature the stage
/// sees (1 in `llama_cpp` order); `xtc_coin` is the row's XTC uniform.
fn truncate(
    stage: Stage,
    x: &[f64],
    keep: &mut Vec<bool>,
    t: f64,
    p: &SamplingParams,
    top_p: f64,
    xtc_coin: f64,
) -> Option<StageTrace> {
    let before = count(keep);
    let input = keep.clone();
    let mut top_p_cut = None;
    // What the stage reports besides its threshold (docs/spec.md §7).
    let mut sigma_cut = None;
    let mut q = None;
    let mut typical_cut = None;
    let mut xtc_cut = None;
    let threshold = match stage {
        Stage::TopK => {
            // 0, −1 or ≥ the number of finite tokens: off.
            if p.top_k <= 0 || p.top_k as usize >= before {
                return None;
            }
            keep_top(x, keep, p.top_k as usize)
        }
        Stage::TopP => {
            if top_p >= 1.0 {
                return None;
            }
            // q = softmax of the survivors at T; walk tie groups of equal logits
            // from the top until the mass reaches p − 1e-6.
            let sorted = sorted_survivors(x, keep);
            let m = x[sorted[0]];
            let w: Vec<f64> = sorted.iter().map(|&i| ((x[i] - m) / t).exp()).collect();
            let z: f64 = w.iter().sum();
            let mut cum = 0.0;
            let mut j = 0;
            let mut tau = m;
            while j < sorted.len() {
                let value = x[sorted[j]];
                let above = cum;
                while j < sorted.len() && x[sorted[j]] == value {
                    cum += w[j] / z;
                    j += 1;
                }
                tau = value;
                if cum >= top_p - TOP_P_SLACK {
                    top_p_cut = Some(TopPCut {
                        p: top_p,
                        mass_above: above,
                        mass_at_or_above: cum,
                    });
                    break;
                }
            }
            for i in 0..x.len() {
                keep[i] = keep[i] && x[i] >= tau;
            }
            tau
        }
        Stage::MinP => {
            if p.min_p <= 0.0 {
                return None;
            }
            // q_i ≥ min_p · max q  ⇔  (x_i − max)/T ≥ ln min_p.
            let max = (0..x.len())
                .filter(|&i| keep[i])
                .map(|i| x[i])
                .fold(f64::NEG_INFINITY, f64::max);
            let ln_min_p = widen(p.min_p).ln();
            for i in 0..x.len() {
                keep[i] = keep[i] && (x[i] - max) / t >= ln_min_p;
            }
            max + t * ln_min_p
        }
        Stage::TopNSigma => {
            // docs/spec.md §3.10: over the finite survivors, keep x ≥ max − n·σ
            // (σ the population standard deviation). Scaling by 1/T scales
            // max and σ alike, so the logits before temperature decide.
            let n = widen(p.top_n_sigma);
            if n <= 0.0 || before <= 1 {
                return None;
            }
            let live: Vec<f64> = (0..x.len()).filter(|&i| keep[i]).map(|i| x[i]).collect();
            let len = live.len() as f64;
            let mean = live.iter().sum::<f64>() / len;
            let var = live.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / len;
            let max = live.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let threshold = max - n * var.sqrt();
            for i in 0..x.len() {
                keep[i] = keep[i] && x[i] >= threshold;
            }
            sigma_cut = Some(SigmaCut {
                max,
                n_sigma: n * var.sqrt(),
            });
            threshold
        }
        Stage::Typical => {
            // docs/spec.md §3.11: walk groups of equal |−ln q − H|, most
            // typical first, until their mass reaches typical_p − 1e-6.
            let mass = widen(p.typical_p);
            if mass >= 1.0 {
                return None;
            }
            let (lq, h, max, ln_z) = log_q(x, keep, t);
            let score = typicality(&lq, h);
            let order = by_typicality(&score, keep);
            let mut cum = 0.0;
            let mut before_cut = 0.0;
            let mut cut = f64::INFINITY;
            let mut j = 0;
            while j < order.len() {
                let value = score[order[j]];
                before_cut = cum;
                while j < order.len() && score[order[j]] == value {
                    cum += lq[order[j]].exp();
                    j += 1;
                }
                cut = value;
                if cum >= mass - TOP_P_SLACK {
                    break;
                }
            }
            for i in 0..x.len() {
                keep[i] = keep[i] && score[i] <= cut;
            }
            q = Some(LogQ { t, max, ln_z });
            typical_cut = Some(TypicalCut {
                p: mass,
                entropy: h,
                cut,
                walk_cut: cut,
                next: order.get(j).map_or(f64::INFINITY, |&i| score[i]),
                mass_before: before_cut,
                mass_at: cum,
            });
            f64::NAN
        }
        Stage::Epsilon | Stage::Eta => {
            // docs/spec.md §3.12: keep q_i ≥ ε, or q_i ≥ min(η, √η·e^(−H)).
            let cutoff = match stage {
                Stage::Epsilon => widen(p.epsilon_cutoff),
                _ => widen(p.eta_cutoff),
            };
            if cutoff <= 0.0 {
                return None;
            }
            let (lq, h, max, ln_z) = log_q(x, keep, t);
            let cutoff = match stage {
                Stage::Epsilon => cutoff,
                _ => cutoff.min(cutoff.sqrt() * (-h).exp()),
            };
            let ln_cut = cutoff.ln();
            for i in 0..x.len() {
                keep[i] = keep[i] && lq[i] >= ln_cut;
            }
            q = Some(LogQ { t, max, ln_z });
            // q_i ≥ c ⇔ x_i ≥ max + T·(ln c + ln Z).
            max + t * (ln_cut + ln_z)
        }
        Stage::Xtc => {
            // docs/spec.md §3.13: with probability xtc_probability, remove every
            // survivor more likely than the least likely one with q ≥ threshold.
            let chance = widen(p.xtc_probability);
            if chance <= 0.0 || before < 2 || xtc_coin >= chance {
                return None;
            }
            let (lq, _, max, ln_z) = log_q(x, keep, t);
            let ln_thr = widen(p.xtc_threshold).ln();
            let least = (0..x.len())
                .filter(|&i| keep[i] && lq[i] >= ln_thr)
                .map(|i| x[i])
                .fold(f64::INFINITY, f64::min);
            // Its neighbours, for a validator's boundary (docs/spec.md §7).
            let live = || (0..x.len()).filter(|&i| input[i]);
            let below = live()
                .map(|i| x[i])
                .filter(|&v| v < least)
                .fold(f64::NEG_INFINITY, f64::max);
            let above = live()
                .filter(|&i| lq[i] >= ln_thr && x[i] > least)
                .map(|i| x[i])
                .fold(f64::INFINITY, f64::min);
            let at_or_below = |a: f64| live().filter(|&i| x[i] <= a).count();
            for i in 0..x.len() {
                keep[i] = keep[i] && x[i] <= least;
            }
            q = Some(LogQ { t, max, ln_z });
            xtc_cut = Some(XtcCut {
                ln_threshold: ln_thr,
                least,
                kept_at_least: at_or_below(least),
                below,
                kept_at_below: at_or_below(below),
                above,
                kept_at_above: at_or_below(above),
                min_keep: p.min_tokens_to_keep as usize,
            });
            least
        }
    };
    let mut trace = StageTrace {
        stage,
        before,
        after: count(keep),
        threshold,
        min_keep_applied: false,
        top_p_cut,
        sigma_cut,
        q,
        typical_cut,
        xtc_cut,
        mirostat: None,
    };
    let m = p.min_tokens_to_keep as usize;
    if trace.after < m && trace.after < before {
        *keep = input;
        match stage {
            // XTC is all or nothing (docs/spec.md §3.13).
            Stage::Xtc => trace.threshold = f64::INFINITY,
            // The m most typical (docs/spec.md §3.11).
            Stage::Typical => {
                let cut = keep_most_typical(x, keep, t, m);
                if let Some(c) = &mut trace.typical_cut {
                    c.cut = cut;
                }
            }
            // The m largest of the stage's input (ties at the m-th kept).
            _ => trace.threshold = keep_top(x, keep, m),
        }
        trace.after = count(keep);
        trace.min_keep_applied = true;
    }
    Some(trace)
}

/// docs/spec.md §3.15: the survivors of mirostat's own cut of q, the
/// softmax at T of the finite tokens, over a vocabulary of `vocab`.
///
/// Version 1 estimates the Zipf exponent ŝ from the `MIROSTAT_M` most likely
/// tokens, `ŝ = Σ t_i b_i / Σ t_i²` with `t_i = ln((i+2)/(i+1))` and
/// `b_i = ln(q_i/q_{i+1}) = (x_i − x_{i+1})/T`, then keeps the top
/// `k = ⌊(ε̂·2^mu / (1 − V^(−ε̂)))^(1/ŝ)⌋` (ε̂ = ŝ − 1; at ε̂ = 0 the limit
/// `2^mu / ln V`; k clamped to [1, survivors], NaN → 1; ties at the k-th
/// kept). Version 2 keeps the tokens whose surprise −log2 q is at most mu,
/// or, when there are none, the most likely (ties kept).
pub fn mirostat_keep(x: &[f64], finite: &[bool], t: f64, ms: &Mirostat, vocab: usize) -> Vec<bool> {
    mirostat_keep_traced(x, finite, t, ms, vocab).0
}

/// [`mirostat_keep`] and the trace entry of its cut (docs/spec.md §7).
pub fn mirostat_keep_traced(
    x: &[f64],
    finite: &[bool],
    t: f64,
    ms: &Mirostat,
    vocab: usize,
) -> (Vec<bool>, StageTrace) {
    let mut keep = finite.to_vec();
    let mu = ms.mu();
    let before = count(finite);
    let mut trace = StageTrace {
        stage: Stage::TopK,
        before,
        after: before,
        threshold: f64::NAN,
        min_keep_applied: false,
        top_p_cut: None,
        sigma_cut: None,
        q: None,
        typical_cut: None,
        xtc_cut: None,
        mirostat: None,
    };
    if ms.version == 1 {
        let sorted = sorted_survivors(x, finite);
        let n = sorted.len();
        let mut k_real = 1.0;
        let k = if n < 2 {
            1
        } else {
            let (mut num, mut den) = (0.0, 0.0);
            for i in 0..(MIROSTAT_M - 1).min(n - 1) {
                let t_i = ((i + 2) as f64 / (i + 1) as f64).ln();
                let b_i = (x[sorted[i]] - x[sorted[i + 1]]) / t;
                num += t_i * b_i;
                den += t_i * t_i;
            }
            let s_hat = num / den;
            let eps = s_hat - 1.0;
            let ln_v = (vocab as f64).ln();
            let ratio = if eps == 0.0 {
                mu.exp2() / ln_v
            } else {
                // 1 − V^(−ε̂), without cancellation for small ε̂.
                eps * mu.exp2() / -(-eps * ln_v).exp_m1()
            };
            let k = ratio.powf(1.0 / s_hat);
            k_real = k;
            if k.is_nan() {
                1
            } else {
                k.floor().clamp(1.0, n as f64) as usize
            }
        };
        trace.threshold = keep_top(x, &mut keep, k);
        trace.mirostat = Some(MirostatCut {
            version: 1,
            mu,
            k_real,
            k,
            kth: x[sorted[k.min(n) - 1]],
            next: sorted.get(k).map_or(f64::NEG_INFINITY, |&i| x[i]),
        });
    } else {
        let (lq, _, max, ln_z) = log_q(x, finite, t);
        // −log2 q ≤ mu ⇔ ln q ≥ −mu·ln 2.
        let limit = -mu * LN_2;
        for i in 0..x.len() {
            keep[i] = finite[i] && lq[i] >= limit;
        }
        if count(&keep) == 0 {
            keep = finite.to_vec();
            keep_top(x, &mut keep, 1);
        }
        // ln q ≥ limit ⇔ x ≥ max + T·(limit + ln Z); with none there the
        // most likely stays, below it.
        trace.stage = Stage::Epsilon;
        trace.threshold = max + t * (limit + ln_z);
        trace.q = Some(LogQ { t, max, ln_z });
        trace.mirostat = Some(MirostatCut {
            version: 2,
            mu,
            k_real: f64::NAN,
            k: count(&keep),
            kth: f64::NAN,
            next: f64::NAN,
        });
    }
    trace.after = count(&keep);
    (keep, trace)
}

/// The full pipeline of docs/spec.md §3–§4 for one row, up to (not including)
/// the draw. XTC's coin (docs/spec.md §3.13) uses the row's own seed, or 0
/// for a row without one; [`process_row_seeded`] takes the seed a call
/// resolved.
pub fn process_row(
    row: usize,
    x: &[f32],
    p: &SamplingParams,
    overrides: Overrides,
) -> Result<ProcessedRow> {
    process_row_seeded(row, x, p, overrides, p.seed.unwrap_or(0))
}

/// [`process_row`] with the seed the call uses for this row.
pub fn process_row_seeded(
    row: usize,
    x: &[f32],
    p: &SamplingParams,
    overrides: Overrides,
    seed: u64,
) -> Result<ProcessedRow> {
    let y = bias_mask_penalties(row, x, p)?;
    let finite_mask: Vec<bool> = y.iter().map(|v| v.is_finite()).collect();
    let (entropy, varentropy, finite) = entropy_stats(&y, &finite_mask);
    let static_t = widen(p.temperature);
    let dynamic = p.dynamic_temperature.as_ref();

    let mut keep = finite_mask.clone();
    let mut trace = Vec::new();
    let mut top_p = widen(p.top_p);
    let guide_entropy;
    let mut t;
    let coin = xtc_uniform(seed, p.step);

    match p.order {
        _ if p.mirostat.is_some() => {
            // docs/spec.md §3.15: temperature, then mirostat's own cut in
            // place of every truncation stage, in every order.
            guide_entropy = None;
            t = static_t;
            if static_t != 0.0 {
                t = overrides.temperature.unwrap_or(t);
            }
            if let Some(ms) = p.mirostat.as_ref().filter(|_| t > 0.0) {
                let cut;
                (keep, cut) = mirostat_keep_traced(&y, &finite_mask, t, ms, y.len());
                trace.push(cut);
            }
        }
        Order::Standard | Order::Vllm => {
            // The guide is the model entropy; T is decided before truncation.
            (guide_entropy, t, top_p) = p.temperature_before_truncation(entropy, finite);
            top_p = overrides.top_p.unwrap_or(top_p);
            if static_t != 0.0 {
                t = overrides.temperature.unwrap_or(t);
            }
            if t > 0.0 {
                for stage in p.order.truncation_stages() {
                    trace.extend(truncate(stage, &y, &mut keep, t, p, top_p, coin));
                }
            }
        }
        Order::LlamaCpp => {
            // Truncation sees the T = 1 distribution; dynamic temperature sees
            // the survivors.
            top_p = overrides.top_p.unwrap_or(top_p);
            for stage in p.order.truncation_stages() {
                trace.extend(truncate(stage, &y, &mut keep, 1.0, p, top_p, coin));
            }
            let (h_surv, _, n_surv) = entropy_stats(&y, &keep);
            guide_entropy = dynamic.map(|d| d.guide_over_survivors(h_surv, n_surv));
            t = static_t;
            if let (Some(d), Some(g)) = (dynamic, guide_entropy) {
                if static_t != 0.0 {
                    t = d.temperature(g, h_surv, n_surv, static_t);
                }
            }
            if static_t != 0.0 {
                t = overrides.temperature.unwrap_or(t);
            }
        }
    }

    // A NaN from a mapping is greedy too, as T = 0 is.
    let greedy = t.is_nan() || t <= 0.0;
    if greedy {
        t = 0.0;
        keep = vec![false; y.len()];
        keep[argmax(&y)] = true;
        trace.clear();
    }

    // π = softmax of the survivors at T.
    let (pi, log_pi, final_entropy) = if greedy {
        let mut pi = vec![0.0; y.len()];
        let mut log_pi = vec![f64::NEG_INFINITY; y.len()];
        let a = argmax(&y);
        pi[a] = 1.0;
        log_pi[a] = 0.0;
        (pi, log_pi, 0.0)
    } else {
        let m = (0..y.len())
            .filter(|&i| keep[i])
            .map(|i| y[i])
            .fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = (0..y.len())
            .filter(|&i| keep[i])
            .map(|i| ((y[i] - m) / t).exp())
            .sum();
        let ln_z = z.ln();
        let mut pi = vec![0.0; y.len()];
        let mut log_pi = vec![f64::NEG_INFINITY; y.len()];
        let mut h = 0.0;
        for i in (0..y.len()).filter(|&i| keep[i]) {
            log_pi[i] = (y[i] - m) / t - ln_z;
            pi[i] = log_pi[i].exp();
            h -= pi[i] * log_pi[i];
        }
        (pi, log_pi, h.max(0.0))
    };
    let kept_count = count(&keep);
    Ok(ProcessedRow {
        logits: y,
        finite,
        entropy,
        varentropy,
        guide_entropy,
        temperature: t,
        top_p,
        greedy,
        kept: keep,
        kept_count,
        pi,
        log_pi,
        final_entropy,
        trace,
        mirostat_mu: p.mirostat.as_ref().map(Mirostat::mu),
    })
}

/// The smallest id t with `Σ_{j ≤ t} π_j > u`; if rounding leaves none, the
/// highest id with π > 0 (docs/spec.md §3.8).
pub fn inverse_cdf(pi: &[f64], u: f64) -> u32 {
    let mut cum = 0.0;
    for (t, &q) in pi.iter().enumerate() {
        cum += q;
        if q > 0.0 && cum > u {
            return t as u32;
        }
    }
    pi.iter().rposition(|&q| q > 0.0).unwrap_or(0) as u32
}

/// docs/spec.md §3.15: mu after drawing a token of ln π = `log_pi`:
/// `mu − eta·(−log2 π − tau)`.
pub fn mirostat_update(ms: &Mirostat, log_pi: f64) -> f64 {
    let surprise = -log_pi / LN_2;
    ms.mu() - widen(ms.eta) * (surprise - widen(ms.tau))
}

/// Log-softmax of the logits as given (−inf stays −inf).
pub fn raw_log_softmax(x: &[f32]) -> Vec<f64> {
    let m = x
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| v as f64)
        .fold(f64::NEG_INFINITY, f64::max);
    let s: f64 = x
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| (v as f64 - m).exp())
        .sum();
    let ln_s = s.ln();
    x.iter().map(|&v| v as f64 - m - ln_s).collect()
}

/// The `n` largest finite entries, descending, ties by lowest id.
pub fn top_n(logprobs: &[f64], n: usize) -> Vec<TokenLogprob> {
    let mut ids: Vec<usize> = (0..logprobs.len())
        .filter(|&i| logprobs[i].is_finite())
        .collect();
    ids.sort_by(|&a, &b| logprobs[b].total_cmp(&logprobs[a]).then(a.cmp(&b)));
    ids.truncate(n);
    ids.into_iter()
        .map(|i| TokenLogprob {
            id: i as u32,
            logprob: logprobs[i],
        })
        .collect()
}

/// The whole result of docs/spec.md §6 for one row.
pub fn sample_row(
    row: usize,
    x: &[f32],
    p: &SamplingParams,
    seed: u64,
    samples: u32,
) -> Result<RowResult> {
    let pr = process_row_seeded(row, x, p, Overrides::default(), seed)?;
    let draws: Vec<u32> = (0..samples)
        .map(|d| pr.draw(uniform(seed, p.step, d)))
        .collect();
    let token = draws[0];
    let raw = raw_log_softmax(x);
    let top_logprobs = p.logprobs.map(|n| TopLogprobs {
        raw: top_n(&raw, n as usize),
        processed: top_n(&pr.log_pi, n as usize),
    });
    Ok(RowResult {
        token,
        draws,
        logprob: pr.log_pi[token as usize],
        raw_logprob: raw[token as usize],
        entropy: pr.entropy,
        varentropy: pr.varentropy,
        guide_entropy: pr.guide_entropy,
        final_entropy: pr.final_entropy,
        temperature: pr.temperature,
        top_p: pr.top_p,
        kept: pr.kept_count as u32,
        seed,
        top_logprobs,
        mirostat_mu: p
            .mirostat
            .as_ref()
            .map(|ms| mirostat_update(ms, pr.log_pi[token as usize])),
    })
}

impl Sampler for ReferenceSampler {
    fn kind(&self) -> BackendKind {
        BackendKind::Reference
    }

    fn device(&self) -> String {
        "host CPU (f64 reference, single thread)".into()
    }

    fn sample(
        &mut self,
        logits: LogitsView<'_>,
        params: &[SamplingParams],
        samples: u32,
    ) -> Result<Vec<RowResult>> {
        check_samples(samples)?;
        check_draws(logits.rows(), samples)?;
        validate_all(params, logits.rows(), logits.vocab())?;
        let seeds = resolve_seeds(params);
        (0..logits.rows())
            .map(|r| sample_row(r, &logits.row(r), &params[r], seeds[r], samples))
            .collect()
    }

    fn probs(
        &mut self,
        logits: LogitsView<'_>,
        params: &[SamplingParams],
    ) -> Result<Vec<RowProbs>> {
        validate_all(params, logits.rows(), logits.vocab())?;
        let seeds = resolve_seeds(params);
        (0..logits.rows())
            .map(|r| {
                let pr = process_row_seeded(
                    r,
                    &logits.row(r),
                    &params[r],
                    Overrides::default(),
                    seeds[r],
                )?;
                Ok(RowProbs {
                    probs: pr.pi,
                    kept: pr.kept_count as u32,
                    temperature: pr.temperature,
                    top_p: pr.top_p,
                    entropy: pr.entropy,
                    final_entropy: pr.final_entropy,
                    guide_entropy: pr.guide_entropy,
                    mirostat_mu: pr.mirostat_mu,
                })
            })
            .collect()
    }
}
