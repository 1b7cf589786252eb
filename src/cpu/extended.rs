//! Rows that use the extended samplers (typical-p, top-nσ, XTC, ε/η cutoffs,
//! DRY, mirostat): the reference's pipeline on a compact survivor list, with
//! no sort of the vocabulary.
//!
//! The row's edited logits (bias, mask, penalties, DRY; exact in f64, as the
//! reference holds them) are compacted once into `(id, y)` pairs of the
//! finite tokens, in id order (only a top-k's candidates when a top-k is the
//! first stage to act, [`prefilter_bound`]). Every stage then computes a keep
//! decision for the current survivors, applies its `min_tokens_to_keep` rule,
//! and compacts the list in place, so the stages after the first cut work on
//! the few survivors, not on V tokens. Weights use the reference's formulas
//! with a vectorised f64 exponential (within 1 ulp of libm's). Each decision
//! is a threshold or a selection:
//!
//! - top-k, `min_tokens_to_keep`, mirostat v1's k: the k-th largest by
//!   quickselect (`select_nth_unstable`, bounded by chunk maxima), ties at the
//!   k-th kept;
//! - top-p and typical-p: a histogram, then a weighted quickselect in the one
//!   bucket where the mass crosses ([`hist_cut`], [`mass_cut`]), by
//!   descending logit for top-p and by ascending score `|−ln q − H|` for
//!   typical-p;
//! - min-p, top-nσ, ε, η, mirostat v2: closed-form thresholds on q (or on the
//!   logits, from one pass for the max, the normaliser, the entropy or the
//!   mean and variance);
//! - XTC: a count and a minimum over the tokens above its threshold;
//! - mirostat v1's top-100: a bounded selection (quickselect of 100 entries,
//!   then those 100 ordered), never an order of the whole row.

use super::edits::Edits;
use super::row::{check_row, edited_stats, raw_stats, raw_top};
use super::row::{RowOut, Want};
use super::select::{mass_cut, TopN};
use super::simd::{Kernels, LANE_SLOTS};
use crate::error::{Result, SamplerError};
use crate::params::{resolve_seeds, widen, Order, SamplingParams, Stage};
use crate::reference::TOP_P_SLACK;
use crate::result::{RowProbs, RowResult, TokenLogprob, TopLogprobs};
use crate::rng::{uniform, xtc_uniform};

/// Scratch reused across rows and calls.
#[derive(Default)]
pub struct ExtScratch {
    edits: Edits,
    blocks: Vec<super::edits::Block>,
    ids: Vec<u32>,
    ys: Vec<f64>,
    w: Vec<f64>,
    q: Vec<f64>,
    keep: Vec<bool>,
    lanes: Vec<[f32; LANE_SLOTS]>,
    v32: Vec<f32>,
    exact: Vec<(usize, f64)>,
    top: TopN,
    tmp: Vec<f64>,
    pairs: Vec<(f64, f64)>,
    cdf: Vec<f64>,
    dry_seq: Vec<u32>,
    dry_counts: Vec<usize>,
    dry: Vec<(u32, f64)>,
}

/// The survivors of the stages so far: finite edited logits, in id order.
struct Surv<'s> {
    k: Kernels,
    ids: &'s mut Vec<u32>,
    ys: &'s mut Vec<f64>,
    w: &'s mut Vec<f64>,
    q: &'s mut Vec<f64>,
    keep: &'s mut Vec<bool>,
    tmp: &'s mut Vec<f64>,
    pairs: &'s mut Vec<(f64, f64)>,
    /// Finite tokens left out of the list by [`prefilter_bound`] or
    /// [`top_p_prefilter`] (none of them survives the first stage); 0 once a
    /// stage has run.
    hidden: usize,
    /// The whole row's normaliser at the first stage's T, while tokens are
    /// hidden (a top-p first).
    z_full: Option<f64>,
}

/// Descending, total order (no NaN reaches here).
fn desc(a: &f64, b: &f64) -> std::cmp::Ordering {
    b.total_cmp(a)
}

impl Surv<'_> {
    /// The number of survivors (those left out by the prefilter included).
    fn len(&self) -> usize {
        self.ys.len() + self.hidden
    }

    fn max(&self) -> f64 {
        // Four running maxima: no chain of dependent compares.
        let mut acc = [f64::NEG_INFINITY; 4];
        let chunks = self.ys.chunks_exact(4);
        let rest = chunks.remainder();
        for c in chunks {
            for j in 0..4 {
                acc[j] = if c[j] > acc[j] { c[j] } else { acc[j] };
            }
        }
        let m = acc[0].max(acc[1]).max(acc[2].max(acc[3]));
        rest.iter().copied().fold(m, f64::max)
    }

    /// Fills `w` with `e^((y−m)/t)` and returns `(m, Σw)`.
    fn weights(&mut self, t: f64) -> (f64, f64) {
        let m = self.max();
        let z = self.k.exp_shifted(self.ys, m, t, self.w);
        (m, z)
    }

    /// ln q of every survivor into `w` and q into `q` (q = softmax at `t`,
    /// `ln q = (y − max)/t − ln Z`, `q = e^(ln q)`: the reference's formulas,
    /// with the vectorised f64 exponential), and the entropy H of q:
    /// `(ln Z, H)`.
    fn log_q(&mut self, t: f64) -> (f64, f64) {
        let ln_z = self.ln_q(t);
        self.k.exp(self.w, self.q);
        let mut h = 0.0;
        for (&q, &lq) in self.q.iter().zip(self.w.iter()) {
            h -= q * lq;
        }
        (ln_z, h.max(0.0))
    }

    /// [`Surv::log_q`] without q and H (for the stages that only compare
    /// ln q): fills `w` with ln q, returns ln Z.
    fn ln_q(&mut self, t: f64) -> f64 {
        let m = self.max();
        let ln_z = self.k.exp_shifted(self.ys, m, t, self.q).ln();
        self.w.clear();
        self.w.extend(self.ys.iter().map(|&y| (y - m) / t - ln_z));
        ln_z
    }

    /// The k-th largest survivor (1-based, clamped to the list).
    /// On a long list, the k-th largest of the chunk maxima bounds it from
    /// below (k entries reach it), so only the entries above that bound are
    /// selected from.
    fn kth(&mut self, k: usize) -> f64 {
        const CHUNK: usize = 256;
        let n = self.ys.len();
        let k = k.clamp(1, n);
        self.tmp.clear();
        if n >= 16 * CHUNK && k * 64 <= n {
            self.tmp.extend(
                self.ys
                    .chunks(CHUNK)
                    .map(|c| c.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
            );
            if self.tmp.len() >= k {
                let bound = *self.tmp.select_nth_unstable_by(k - 1, desc).1;
                self.tmp.clear();
                self.tmp
                    .extend(self.ys.iter().copied().filter(|&y| y >= bound));
            } else {
                self.tmp.clear();
                self.tmp.extend_from_slice(self.ys);
            }
        } else {
            self.tmp.extend_from_slice(self.ys);
        }
        *self.tmp.select_nth_unstable_by(k - 1, desc).1
    }

    /// `keep[i] = ys[i] ≥ tau`; returns the count kept.
    fn keep_ge(&mut self, tau: f64) -> usize {
        self.keep.clear();
        self.keep.extend(self.ys.iter().map(|&y| y >= tau));
        self.keep.iter().filter(|&&k| k).count()
    }

    /// `keep[i] = f(ys[i])`; returns the count kept.
    fn keep_where(&mut self, f: impl Fn(f64) -> bool) -> usize {
        self.keep.clear();
        self.keep.extend(self.ys.iter().map(|&y| f(y)));
        self.keep.iter().filter(|&&k| k).count()
    }

    /// `keep[i] = f(ln q_i)` with ln q in `w` (from [`Surv::log_q`]).
    fn keep_lq(&mut self, f: impl Fn(f64) -> bool) -> usize {
        self.keep.clear();
        self.keep.extend(self.w.iter().map(|&lq| f(lq)));
        self.keep.iter().filter(|&&k| k).count()
    }

    /// `keep[i] = f(tmp[i])` (scores in `tmp`); returns the count kept.
    fn keep_score(&mut self, f: impl Fn(f64) -> bool) -> usize {
        self.keep.clear();
        self.keep.extend(self.tmp.iter().map(|&v| f(v)));
        self.keep.iter().filter(|&&k| k).count()
    }

    /// Compacts the list to the entries with `keep` set.
    fn apply(&mut self) {
        let mut j = 0;
        for i in 0..self.ys.len() {
            if self.keep[i] {
                self.ys[j] = self.ys[i];
                self.ids[j] = self.ids[i];
                j += 1;
            }
        }
        self.ys.truncate(j);
        self.ids.truncate(j);
        self.hidden = 0;
        self.z_full = None;
    }

    /// The min_tokens_to_keep rule of docs/spec.md §3.7 on the decision in
    /// `keep` (`after` of `before` kept), then the compaction.
    fn finish(&mut self, after: usize, min_keep: usize) {
        let before = self.len();
        if after < min_keep && after < before {
            let tau = self.kth(min_keep);
            self.keep_ge(tau);
        }
        self.apply();
    }

    /// docs/spec.md §3.5: the largest τ whose `{y ≥ τ}` weighs ≥ p − 1e-6.
    fn top_p_tau(&mut self, t: f64, p: f64) -> f64 {
        let (_, z) = self.weights(t);
        // Hidden tokens weigh in the normaliser too.
        let z = match self.z_full {
            Some(z_full) if self.hidden > 0 => z_full,
            _ => z,
        };
        let target = (p - TOP_P_SLACK) * z;
        // Buckets a quarter of t wide below the max.
        let (m, scale) = (self.max(), 4.0 / t);
        hist_cut(self.ys, self.w, target, |y| (m - y) * scale, self.pairs)
    }
}

/// A lower bound on every logit the row's stages can need, as an f32 the
/// blocks' f32 values are compared with (f32::MIN: every finite token). When
/// the first stage that acts is a top-k (a top-k of k below the finite count,
/// in every order, with no mirostat), only its input's r = max(k,
/// min_tokens_to_keep) largest matter: the r-th largest block max is reached
/// by r tokens, so it is at most the r-th largest logit (rounding to f32 is
/// monotone), and everything the stage keeps, or keeps for m, lies above it.
fn prefilter_bound(
    p: &SamplingParams,
    finite: usize,
    blocks: &[super::edits::Block],
    maxima: &mut Vec<f64>,
) -> f32 {
    const ALL: f32 = f32::MIN;
    if p.mirostat.is_some() {
        return ALL;
    }
    if first_stage(p) != Some(Stage::TopK) || p.top_k as usize >= finite {
        return ALL;
    }
    let r = (p.top_k as usize).max(p.min_tokens_to_keep as usize);
    rth_block_max(r, finite, blocks, maxima).unwrap_or(ALL)
}

/// The first truncation stage of the row's order whose parameter turns it
/// on (a dynamic temperature may turn top-p on).
fn first_stage(p: &SamplingParams) -> Option<Stage> {
    p.order
        .truncation_stages()
        .into_iter()
        .find(|&st| match st {
            Stage::TopK => p.top_k > 0,
            Stage::TopP => p.top_p < 1.0 || p.dynamic_temperature.is_some(),
            Stage::MinP => p.min_p > 0.0,
            Stage::TopNSigma => p.top_n_sigma > 0.0,
            Stage::Typical => p.typical_p < 1.0,
            Stage::Epsilon => p.epsilon_cutoff > 0.0,
            Stage::Eta => p.eta_cutoff > 0.0,
            Stage::Xtc => p.xtc_probability > 0.0,
        })
}

/// The r-th largest block max, when there are enough blocks for it to bound
/// anything (a lower bound on the r-th largest logit).
fn rth_block_max(
    r: usize,
    finite: usize,
    blocks: &[super::edits::Block],
    maxima: &mut Vec<f64>,
) -> Option<f32> {
    if r >= blocks.len() || r * 4 > finite {
        return None;
    }
    maxima.clear();
    maxima.extend(blocks.iter().map(|b| b.max as f64));
    Some(*maxima.select_nth_unstable_by(r - 1, desc).1 as f32)
}

/// When the first stage to act is a static top-p (docs/spec.md §3.5), a bound
/// below its cut, and the normaliser of the whole row at the stage's T (from
/// the vector kernels, within f32 rounding: a difference only where the mass
/// sits within that of p, a §7 boundary). The lane maxima are distinct
/// tokens: bucketed by distance below the max (quarters of T), those down to
/// the bucket where their weight reaches the target prove that the cut lies
/// above that bucket's lower edge. The caller checks the candidates' own
/// mass before it relies on the bound.
#[allow(clippy::too_many_arguments)]
fn top_p_prefilter(
    k: Kernels,
    p: &SamplingParams,
    x: &[f32],
    edits: &Edits,
    m: f64,
    finite: usize,
    blocks: &[super::edits::Block],
    lanes: &[[f32; LANE_SLOTS]],
    maxima: &mut Vec<f64>,
) -> Option<(f32, f64, f64)> {
    if p.mirostat.is_some() || p.dynamic_temperature.is_some() || p.top_p >= 1.0 {
        return None;
    }
    if first_stage(p) != Some(Stage::TopP) || blocks.len() < 16 {
        return None;
    }
    let t = match p.order {
        Order::LlamaCpp => 1.0,
        _ => widen(p.temperature),
    };
    if !(t > 0.0) {
        return None;
    }
    // The whole row's Σ e^((x−m)/t): unedited blocks by the kernels against
    // m rounded to f32 (every unedited logit is ≤ it), edited ones exactly.
    let m32 = m as f32;
    let inv_t = (1.0 / t).min(f32::MAX as f64) as f32;
    let shift = ((m32 as f64 - m) / t).exp();
    let mut z = 0.0;
    for b in blocks {
        let (st, n) = (b.start as usize, b.len as usize);
        if b.edited {
            z += edits.vals64[st..st + n]
                .iter()
                .map(|&y| ((y - m) / t).exp())
                .sum::<f64>();
        } else {
            z += k.tempered(&x[st..st + n], m32, inv_t, f32::MIN).0 * shift;
        }
    }
    let target = (widen(p.top_p) - TOP_P_SLACK) * z;
    const LB: usize = 128;
    let mut hist = [0f64; LB];
    for (b, l) in blocks.iter().zip(lanes) {
        if b.max == f32::NEG_INFINITY {
            continue;
        }
        for &v in l.iter().filter(|&&v| v > f32::NEG_INFINITY) {
            let d = (m - v as f64).max(0.0) / t;
            hist[((d * 4.0) as usize).min(LB - 1)] += (-d).exp();
        }
    }
    let mut cum = 0.0;
    let j = hist.iter().position(|&h| {
        cum += h;
        cum >= target * (1.0 + 1e-6)
    })?;
    if j + 1 >= LB {
        return None;
    }
    let edge = m - (j + 1) as f64 * t / 4.0;
    // The largest f32 at or below the edge.
    let mut bound = edge as f32;
    if bound as f64 > edge {
        bound = f32::from_bits(if bound > 0.0 {
            bound.to_bits() - 1
        } else if bound < 0.0 {
            bound.to_bits() + 1
        } else {
            0x8000_0001
        });
    }
    let r = p.min_tokens_to_keep as usize;
    if r > 1 {
        bound = bound.min(rth_block_max(r, finite, blocks, maxima)?);
    }
    Some((bound, z, target))
}

/// A sum in four interleaved partial sums (no chain of dependent adds).
fn sum4(ys: &[f64], f: impl Fn(f64) -> f64) -> f64 {
    let (mut a, mut b, mut c, mut d) = (0f64, 0f64, 0f64, 0f64);
    let chunks = ys.chunks_exact(4);
    let rest = chunks.remainder();
    for q in chunks {
        a += f(q[0]);
        b += f(q[1]);
        c += f(q[2]);
        d += f(q[3]);
    }
    (a + b) + (c + d) + rest.iter().map(|&y| f(y)).sum::<f64>()
}

/// Histogram buckets of [`hist_cut`].
const BUCKETS: usize = 256;

/// [`mass_cut`] on `(keys[i], ws[i])` with a histogram first: `depth(key)`
/// grows as the key falls (its floor is the bucket, the last bucket takes
/// everything deeper), so every entry of a bucket before the one where the
/// cumulative weight crosses `target` is above the cut, every entry after
/// it below; the weighted quickselect then runs on that one bucket.
fn hist_cut(
    keys: &[f64],
    ws: &[f64],
    target: f64,
    depth: impl Fn(f64) -> f64,
    pairs: &mut Vec<(f64, f64)>,
) -> f64 {
    let last = (BUCKETS - 1) as f64;
    let bucket = |k: f64| depth(k).max(0.0).min(last) as usize;
    // Four interleaved copies: neighbouring entries mostly share a bucket,
    // and one copy would chain every add through memory.
    let mut hist4 = [[0f64; BUCKETS]; 4];
    for (i, (&k, &w)) in keys.iter().zip(ws.iter()).enumerate() {
        hist4[i & 3][bucket(k)] += w;
    }
    let hist: [f64; BUCKETS] =
        std::array::from_fn(|j| (hist4[0][j] + hist4[1][j]) + (hist4[2][j] + hist4[3][j]));
    let mut above = 0.0;
    let Some(b) = (0..BUCKETS).find(|&b| {
        let crossed = above + hist[b] >= target;
        if !crossed {
            above += hist[b];
        }
        crossed
    }) else {
        // Rounding left the whole set short: keep everything.
        return keys.iter().copied().fold(f64::INFINITY, f64::min);
    };
    pairs.clear();
    pairs.extend(
        keys.iter()
            .zip(ws.iter())
            .filter(|(&k, _)| bucket(k) == b)
            .map(|(&k, &w)| (k, w)),
    );
    mass_cut(pairs, target - above, f64::INFINITY)
}

/// How a row's stages went, for the result.
struct Outcome {
    t: f64,
    top_p: f64,
    greedy: bool,
    guide_entropy: Option<f64>,
    mirostat_mu: Option<f64>,
}

/// Runs one row that uses the extended samplers.
pub fn run_extended(
    k: Kernels,
    row: usize,
    x: &[f32],
    p: &SamplingParams,
    want: Want,
    sc: &mut ExtScratch,
) -> Result<RowOut> {
    let vocab = x.len();
    // Bad logits first, then the edits' errors, as the reference orders them.
    check_row(k, row, x)?;
    sc.edits.build(row, x, p)?;
    if p.dry_active() {
        dry_amounts(p, &mut sc.dry_seq, &mut sc.dry_counts, &mut sc.dry);
        sc.edits.subtract(row, x, &sc.dry, "dry_multiplier")?;
    }
    sc.edits.blocks(vocab, &mut sc.blocks);
    // docs/spec.md §4 statistics of the edited row at T = 1 (the vector
    // kernels' statistics pass, as the fast path takes them); it also
    // leaves each block's max.
    let (m, s1, a1, b1, finite) = edited_stats(k, x, &sc.edits, &mut sc.blocks, &mut sc.lanes);
    if finite == 0 {
        return Err(SamplerError::AllMasked { row });
    }
    // The survivor list: every finite token, or, when the first stage to
    // act is a top-k, only those a bound proves may survive it.
    let mut top_p_first = top_p_prefilter(
        k,
        p,
        x,
        &sc.edits,
        m,
        finite,
        &sc.blocks,
        &sc.lanes,
        &mut sc.tmp,
    );
    let mut bound = match top_p_first {
        Some((b, _, _)) => b,
        None => prefilter_bound(p, finite, &sc.blocks, &mut sc.tmp),
    };
    loop {
        sc.ids.clear();
        sc.ys.clear();
        sc.v32.clear();
        sc.exact.clear();
        for b in sc.blocks.iter().filter(|b| b.max >= bound) {
            let (st, n) = (b.start as usize, b.len as usize);
            if b.edited {
                let vals = &sc.edits.vals[st..st + n];
                for (j, (&v, &y)) in vals.iter().zip(&sc.edits.vals64[st..st + n]).enumerate() {
                    if v >= bound {
                        sc.exact.push((sc.ids.len(), y));
                        sc.ids.push(b.id + j as u32);
                        sc.v32.push(v);
                    }
                }
            } else {
                // The kernel appends to both lists at their common length.
                k.compact_ge(&x[st..st + n], bound, b.id, &mut sc.v32, &mut sc.ids);
            }
        }
        sc.ys.extend(sc.v32.iter().map(|&v| v as f64));
        for &(i, y) in sc.exact.iter() {
            sc.ys[i] = y;
        }
        // A top-p bound counts only once the candidates' own mass proves it.
        if let Some((_, _, target)) = top_p_first {
            let t = match p.order {
                Order::LlamaCpp => 1.0,
                _ => widen(p.temperature),
            };
            let mass = k.exp_shifted(&sc.ys, m, t, &mut sc.w);
            if !(mass >= target) && bound > f32::MIN {
                top_p_first = None;
                bound = f32::MIN;
                continue;
            }
        }
        break;
    }
    let hidden = finite - sc.ys.len();
    let mut s = Surv {
        k,
        ids: &mut sc.ids,
        ys: &mut sc.ys,
        w: &mut sc.w,
        q: &mut sc.q,
        keep: &mut sc.keep,
        tmp: &mut sc.tmp,
        pairs: &mut sc.pairs,
        hidden,
        z_full: top_p_first.map(|f| f.1),
    };
    let entropy = (s1.ln() - a1 / s1).max(0.0);
    let varentropy = (b1 / s1 - (a1 / s1) * (a1 / s1)).max(0.0);
    let argmax = s.ids[s.ys.iter().position(|&y| y == m).unwrap_or(0)];

    let seed = match want {
        Want::Sample { seed, .. } => seed,
        // A row without a seed gets a fresh one, as the reference's probs
        // resolves it (only XTC's coin reads it here).
        Want::Probs => match p.seed {
            Some(seed) => seed,
            None => resolve_seeds(std::slice::from_ref(p))[0],
        },
    };
    let out = stages(&mut s, p, entropy, finite, vocab, seed);

    // Raw log-softmax of the logits as given (the edited row's own when
    // nothing was edited).
    let (raw_m, raw_ln_s) = if sc.edits.ids.is_empty() && !sc.edits.masked {
        (m, s1.ln())
    } else {
        raw_stats(k, row, x)?
    };
    let raw_lp = |id: u32| x[id as usize] as f64 - raw_m - raw_ln_s;
    let logprobs = p.logprobs.map(|n| n as usize);

    if out.greedy {
        return Ok(match want {
            Want::Probs => {
                let mut probs = vec![0.0; vocab];
                probs[argmax as usize] = 1.0;
                RowOut::Probs(RowProbs {
                    probs,
                    kept: 1,
                    temperature: 0.0,
                    top_p: out.top_p,
                    entropy,
                    final_entropy: 0.0,
                    guide_entropy: out.guide_entropy,
                    mirostat_mu: out.mirostat_mu,
                })
            }
            Want::Sample { seed, samples } => RowOut::Sample(RowResult {
                token: argmax,
                draws: vec![argmax; samples as usize],
                logprob: 0.0,
                raw_logprob: raw_lp(argmax),
                entropy,
                varentropy,
                guide_entropy: out.guide_entropy,
                final_entropy: 0.0,
                temperature: 0.0,
                top_p: out.top_p,
                kept: 1,
                seed,
                top_logprobs: logprobs.map(|n| TopLogprobs {
                    raw: raw_top(k, x, n, raw_m, raw_ln_s, &mut sc.top),
                    processed: if n > 0 {
                        vec![TokenLogprob {
                            id: argmax,
                            logprob: 0.0,
                        }]
                    } else {
                        Vec::new()
                    },
                }),
                mirostat_mu: next_mu(p, out.mirostat_mu, 0.0),
            }),
        });
    }

    // π = softmax of the survivors at T.
    let t = out.t;
    let (_, final_entropy) = s.log_q(t);
    let kept = s.len();
    match want {
        Want::Probs => {
            let mut probs = vec![0.0; vocab];
            for (&id, &q) in s.ids.iter().zip(s.q.iter()) {
                probs[id as usize] = q;
            }
            Ok(RowOut::Probs(RowProbs {
                probs,
                kept: kept as u32,
                temperature: t,
                top_p: out.top_p,
                entropy,
                final_entropy,
                guide_entropy: out.guide_entropy,
                mirostat_mu: out.mirostat_mu,
            }))
        }
        Want::Sample { seed, samples } => {
            sc.cdf.clear();
            let mut cum = 0.0;
            for &q in s.q.iter() {
                cum += q;
                sc.cdf.push(cum);
            }
            let draw = |u: f64| -> usize {
                let pos = sc.cdf.partition_point(|&c| c <= u);
                if pos < sc.cdf.len() {
                    pos
                } else {
                    // Rounding left no crossing: the highest id with π > 0.
                    (0..sc.cdf.len())
                        .rev()
                        .find(|&i| s.q[i] > 0.0)
                        .unwrap_or(sc.cdf.len() - 1)
                }
            };
            let picks: Vec<usize> = (0..samples)
                .map(|d| draw(uniform(seed, p.step, d)))
                .collect();
            let draws: Vec<u32> = picks.iter().map(|&i| s.ids[i]).collect();
            let token = draws[0];
            let logprob = s.w[picks[0]];
            let mirostat_mu = next_mu(p, out.mirostat_mu, logprob);
            let top_logprobs = logprobs.map(|n| TopLogprobs {
                raw: raw_top(k, x, n, raw_m, raw_ln_s, &mut sc.top),
                processed: top_n(s.ids, s.ys, n)
                    .into_iter()
                    .map(|i| TokenLogprob {
                        id: s.ids[i],
                        logprob: s.w[i],
                    })
                    .collect(),
            });
            Ok(RowOut::Sample(RowResult {
                token,
                draws,
                logprob,
                raw_logprob: raw_lp(token),
                entropy,
                varentropy,
                guide_entropy: out.guide_entropy,
                final_entropy,
                temperature: t,
                top_p: out.top_p,
                kept: kept as u32,
                seed,
                top_logprobs,
                mirostat_mu,
            }))
        }
    }
}

/// Mirostat's mu after drawing a token of log-probability `logprob`
/// (docs/spec.md §3.15): `mu − eta·(−log2 π − tau)`.
fn next_mu(p: &SamplingParams, mu: Option<f64>, logprob: f64) -> Option<f64> {
    let (m, mu) = (p.mirostat.as_ref()?, mu?);
    let surprise = -logprob / std::f64::consts::LN_2;
    Some(mu - widen(m.eta) * (surprise - widen(m.tau)))
}

/// Positions of the `n` largest values, descending, ties by lowest id (the
/// list is in id order, and an equal value never displaces an earlier one).
fn top_n(ids: &[u32], ys: &[f64], n: usize) -> Vec<usize> {
    let mut top: Vec<usize> = Vec::with_capacity(n + 1);
    if n == 0 {
        return top;
    }
    for i in 0..ys.len() {
        if top.len() == n && ys[i] <= ys[top[n - 1]] {
            continue;
        }
        let pos = top.partition_point(|&j| ys[j] >= ys[i]);
        top.insert(pos, i);
        top.truncate(n);
    }
    debug_assert!(top.windows(2).all(|w| ids[w[0]] != ids[w[1]]));
    top
}

/// Temperature and truncation, stage by stage as the reference runs them.
fn stages(
    s: &mut Surv<'_>,
    p: &SamplingParams,
    entropy: f64,
    finite: usize,
    vocab: usize,
    seed: u64,
) -> Outcome {
    let static_t = widen(p.temperature);
    let mut top_p = widen(p.top_p);
    let guide_entropy;
    let mut t;
    let min_keep = p.min_tokens_to_keep as usize;
    let ctx = StageCtx { p, min_keep, seed };
    if let Some(mirostat) = &p.mirostat {
        // docs/spec.md §3.15: mirostat replaces the truncation stages; it
        // sees the distribution at T.
        if static_t > 0.0 {
            mirostat_truncate(s, mirostat, static_t, vocab);
        }
        let greedy = !(static_t > 0.0);
        return Outcome {
            t: if greedy { 0.0 } else { static_t },
            top_p,
            greedy,
            guide_entropy: None,
            mirostat_mu: Some(mirostat.mu()),
        };
    }
    match p.order {
        Order::Standard | Order::Vllm => {
            (guide_entropy, t, top_p) = p.temperature_before_truncation(entropy, finite);
            if t > 0.0 {
                for stage in p.order.truncation_stages() {
                    truncate(s, stage, t, &ctx, top_p);
                }
            }
        }
        Order::LlamaCpp => {
            for stage in p.order.truncation_stages() {
                truncate(s, stage, 1.0, &ctx, top_p);
            }
            t = static_t;
            guide_entropy = match &p.dynamic_temperature {
                None => None,
                Some(d) => {
                    let (_, h) = s.log_q(1.0);
                    let g = d.guide_over_survivors(h, s.len());
                    if static_t != 0.0 {
                        t = d.temperature(g, h, s.len(), static_t);
                    }
                    Some(g)
                }
            };
        }
    }
    let greedy = t.is_nan() || t <= 0.0;
    Outcome {
        t: if greedy { 0.0 } else { t },
        top_p,
        greedy,
        guide_entropy,
        mirostat_mu: None,
    }
}

/// Mirostat's cut at temperature `t` (docs/spec.md §3.15) for a vocabulary
/// of `vocab` tokens. Version 2 keeps the tokens whose surprise `−log2 q` is
/// at most mu (the most likely, ties kept, if none). Version 1 estimates ŝ
/// from the 100 largest logits (a bounded selection, then an order of
/// those 100 only) and keeps the k largest it implies, ties kept.
fn mirostat_truncate(s: &mut Surv<'_>, m: &crate::params::Mirostat, t: f64, vocab: usize) {
    let mu = m.mu();
    let n = s.len();
    if m.version == 1 {
        s.tmp.clear();
        s.tmp.extend_from_slice(s.ys);
        let top = n.min(100);
        if top < n {
            s.tmp.select_nth_unstable_by(top - 1, desc);
        }
        s.tmp.truncate(top);
        s.tmp.sort_unstable_by(desc);
        let (mut num, mut den) = (0.0, 0.0);
        for i in 0..top - 1 {
            let ti = ((i + 2) as f64 / (i + 1) as f64).ln();
            let bi = (s.tmp[i] - s.tmp[i + 1]) / t;
            num += ti * bi;
            den += ti * ti;
        }
        let s_hat = num / den;
        let eps_hat = s_hat - 1.0;
        let ln_v = (vocab as f64).ln();
        // 1 − V^(−ε̂) as −expm1(−ε̂·ln V): no cancellation for small ε̂.
        let ratio = if eps_hat == 0.0 {
            mu.exp2() / ln_v
        } else {
            eps_hat * mu.exp2() / -(-eps_hat * ln_v).exp_m1()
        };
        let k = ratio.powf(1.0 / s_hat);
        let k = if k.is_nan() {
            1
        } else {
            (k.floor().clamp(1.0, n as f64)) as usize
        };
        if k < n {
            let tau = s.kth(k);
            s.keep_ge(tau);
            s.apply();
        }
    } else {
        s.ln_q(t);
        // −log2 q ≤ mu ⇔ ln q ≥ −mu·ln 2.
        let limit = -mu * std::f64::consts::LN_2;
        if s.keep_lq(|lq| lq >= limit) == 0 {
            let tau = s.max();
            s.keep_ge(tau);
        }
        s.apply();
    }
}

/// What every stage reads besides the survivors.
struct StageCtx<'p> {
    p: &'p SamplingParams,
    min_keep: usize,
    seed: u64,
}

/// One truncation stage on the survivors at temperature `t`.
fn truncate(s: &mut Surv<'_>, stage: Stage, t: f64, ctx: &StageCtx<'_>, top_p: f64) {
    let p = ctx.p;
    let before = s.len();
    let after = match stage {
        Stage::TopK => {
            if p.top_k <= 0 || p.top_k as usize >= before {
                return;
            }
            let tau = s.kth(p.top_k as usize);
            s.keep_ge(tau)
        }
        Stage::TopP => {
            if top_p >= 1.0 {
                return;
            }
            let tau = s.top_p_tau(t, top_p);
            s.keep_ge(tau)
        }
        Stage::MinP => {
            if p.min_p <= 0.0 {
                return;
            }
            let m = s.max();
            let ln_min_p = widen(p.min_p).ln();
            s.keep_where(|y| (y - m) / t >= ln_min_p)
        }
        Stage::TopNSigma => {
            if !(p.top_n_sigma > 0.0) {
                return;
            }
            // Mean and population σ of the stage's input, in f64.
            let n = before as f64;
            // Four partial sums each (the reference's sums to rounding; a
            // logit within that of the threshold is a §7 boundary).
            let mean = sum4(s.ys, |y| y) / n;
            let var = sum4(s.ys, |y| (y - mean) * (y - mean)) / n;
            let tau = s.max() - widen(p.top_n_sigma) * var.sqrt();
            s.keep_ge(tau)
        }
        Stage::Typical => {
            if p.typical_p >= 1.0 {
                return;
            }
            // docs/spec.md §3.11: score |−ln q − H|; keep the smallest set by
            // ascending score whose mass reaches τ − 1e-6, every tie at the
            // cut kept (a weighted quickselect on the negated scores).
            let (_, h) = s.log_q(t);
            s.tmp.clear();
            s.tmp.extend(s.w.iter().map(|&lq| -(-lq - h).abs()));
            let target = widen(p.typical_p) - TOP_P_SLACK;
            // Buckets 1/32 nat wide in the score.
            let cut = -hist_cut(s.tmp, s.q, target, |k| -k * 32.0, s.pairs);
            for v in s.tmp.iter_mut() {
                *v = -*v;
            }
            let after = s.keep_score(|sc| sc <= cut);
            if after < ctx.min_keep && after < before {
                // The m most typical of the input instead, ties at the m-th.
                s.pairs.clear();
                s.pairs.extend(s.tmp.iter().map(|&sc| (sc, 0.0)));
                let m = ctx.min_keep.min(before);
                let (_, kth, _) = s
                    .pairs
                    .select_nth_unstable_by(m - 1, |a, b| a.0.total_cmp(&b.0));
                let cut = kth.0;
                s.keep_score(|sc| sc <= cut);
            }
            s.apply();
            return;
        }
        Stage::Epsilon => {
            if p.epsilon_cutoff <= 0.0 {
                return;
            }
            let ln_eps = widen(p.epsilon_cutoff).ln();
            s.ln_q(t);
            s.keep_lq(|lq| lq >= ln_eps)
        }
        Stage::Eta => {
            if p.eta_cutoff <= 0.0 {
                return;
            }
            let eta = widen(p.eta_cutoff);
            let (_, h) = s.log_q(t);
            let cut = eta.min(eta.sqrt() * (-h).exp()).ln();
            s.keep_lq(|lq| lq >= cut)
        }
        Stage::Xtc => {
            // docs/spec.md §3.13: only on a step whose coin says so, with two
            // survivors or more.
            if p.xtc_probability <= 0.0 || before < 2 {
                return;
            }
            if !(xtc_uniform(ctx.seed, p.step) < widen(p.xtc_probability)) {
                return;
            }
            let ln_thr = widen(p.xtc_threshold).ln();
            s.ln_q(t);
            // A = {q ≥ θ} (compared in logs), and its least likely logit a.
            let mut count = 0;
            let mut least = f64::INFINITY;
            for (&lq, &y) in s.w.iter().zip(s.ys.iter()) {
                if lq >= ln_thr {
                    count += 1;
                    least = least.min(y);
                }
            }
            if count < 2 {
                return;
            }
            // Every survivor above a goes; all or nothing against m.
            let after = s.keep_where(|y| y <= least);
            if after < ctx.min_keep {
                return;
            }
            s.apply();
            return;
        }
    };
    s.finish(after, ctx.min_keep);
}

/// The largest DRY penalty (docs/spec.md §3.14): 2^23.
const DRY_CAP: f64 = 8_388_608.0;

/// DRY's penalty per token (docs/spec.md §3.14), ascending ids: over the
/// last `dry_penalty_last_n` tokens of prompt + history, a token that would
/// extend a repeat of length L ≥ `dry_allowed_length` = A loses
/// `multiplier · base^(L − A)`, capped at 2^23.
fn dry_amounts(
    p: &SamplingParams,
    seq: &mut Vec<u32>,
    counts: &mut Vec<usize>,
    out: &mut Vec<(u32, f64)>,
) {
    out.clear();
    seq.clear();
    seq.extend_from_slice(&p.prompt_token_ids);
    seq.extend_from_slice(&p.history);
    let n = match p.dry_penalty_last_n {
        -1 => seq.len(),
        n => (n.max(0) as usize).min(seq.len()),
    };
    let window = &seq[seq.len() - n..];
    let allowed = p.dry_allowed_length as usize;
    let mut repeats = Vec::new();
    dry_repeats(
        window,
        &p.dry_sequence_breakers,
        allowed,
        counts,
        &mut repeats,
    );
    // The longest repeat per token (a sort of at most the window's length,
    // never of the vocabulary).
    repeats.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    repeats.dedup_by_key(|e| e.0);
    let base = widen(p.dry_base);
    let mult = widen(p.dry_multiplier);
    for (token, len) in repeats {
        out.push((
            token,
            (mult * base.powf((len - allowed) as f64)).min(DRY_CAP),
        ));
    }
}

/// DRY's repeat lengths (llama.cpp's steps 1–3, single-token breakers): for
/// every token that would extend a repeat of the last tokens of `seq`, a
/// repeat length (each occurrence; the caller keeps the longest), capped at the distance to the most recent breaker.
/// `counts` is scratch. The reverse Z-algorithm finds, for every earlier
/// position, how long a suffix of `seq` also ends there, in O(len).
fn dry_repeats(
    seq: &[u32],
    breakers: &[u32],
    allowed: usize,
    counts: &mut Vec<usize>,
    out: &mut Vec<(u32, usize)>,
) {
    out.clear();
    let n = seq.len();
    if n <= allowed {
        return;
    }
    // rat(i): the i-th token from the end.
    let rat = |i: usize| seq[n - 1 - i];
    let is_breaker = |t: u32| breakers.contains(&t);
    let rep_limit = (0..n).find(|&i| is_breaker(rat(i))).unwrap_or(n);
    if rep_limit < allowed {
        return;
    }
    counts.clear();
    counts.resize(n, 0);
    let last = n - 1;
    let (mut lt, mut rt) = (0usize, 0usize);
    for k in 1..n {
        if k > rt {
            let mut len = 0;
            while len + k < n && rat(len) == rat(len + k) {
                len += 1;
            }
            counts[last - k] = len.min(rep_limit);
            if len > 0 {
                lt = k;
                rt = k + len - 1;
            }
        } else {
            let pair = k - lt;
            let right = rt - k + 1;
            if counts[last - pair] < right {
                counts[last - k] = counts[last - pair].min(rep_limit);
            } else {
                let mut i = rt + 1;
                while i < n && rat(i) == rat(i - k) {
                    i += 1;
                }
                counts[last - k] = (i - k).min(rep_limit);
                lt = k;
                rt = i - 1;
            }
        }
    }
    for i in 0..n - 1 {
        let len = counts[i];
        if len >= allowed {
            let token = rat(n - 2 - i);
            if is_breaker(token) {
                continue;
            }
            out.push((token, len));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::{process_row, Overrides};

    fn lcg(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The histogram-first cut equals the plain weighted quickselect, ties,
    /// a crossing in the last bucket and targets beyond the total included.
    #[test]
    fn hist_cut_matches_mass_cut() {
        let mut st = 3u64;
        let mut pairs = Vec::new();
        for case in 0..300 {
            let n = 1 + (lcg(&mut st) * 5000.0) as usize;
            let spread = [0.5, 4.0, 200.0][case % 3];
            let keys: Vec<f64> = (0..n)
                .map(|_| -((lcg(&mut st) * spread * 4.0).floor() / 4.0))
                .collect();
            let ws: Vec<f64> = keys.iter().map(|&k| (k / 3.0).exp()).collect();
            let total: f64 = ws.iter().sum();
            for p in [1e-7, 0.3, 0.9, 0.999, 1.5] {
                let target = p * total;
                let mut all: Vec<(f64, f64)> =
                    keys.iter().copied().zip(ws.iter().copied()).collect();
                let want = mass_cut(&mut all, target, f64::INFINITY);
                let got = hist_cut(&keys, &ws, target, |k| -k * 8.0, &mut pairs);
                // Equal, or both keep the same set (a cut between two keys).
                let kept = |c: f64| keys.iter().filter(|&&k| k >= c).count();
                assert_eq!(kept(got), kept(want), "case {case} p {p}");
            }
        }
    }

    /// Classic rows through the extended path give the reference's π and
    /// kept count (the same f64 arithmetic on the same survivors).
    #[test]
    fn classic_rows_through_the_extended_path_match_the_reference() {
        let mut st = 7u64;
        let mut sc = ExtScratch::default();
        for case in 0..400 {
            let v = 1 + (lcg(&mut st) * 300.0) as usize;
            let x: Vec<f32> = (0..v)
                .map(|_| ((lcg(&mut st) * 16.0).floor() * 0.5 - 4.0) as f32)
                .collect();
            let pick = |st: &mut u64, xs: &[f32]| xs[(lcg(st) * xs.len() as f64) as usize];
            let p = SamplingParams {
                temperature: pick(&mut st, &[0.0, 0.5, 1.0, 1.7]),
                top_k: pick(&mut st, &[0.0, 3.0, 20.0]) as i32,
                top_p: pick(&mut st, &[1.0, 0.9, 0.5]),
                min_p: pick(&mut st, &[0.0, 0.1]),
                min_tokens_to_keep: pick(&mut st, &[1.0, 4.0]) as u32,
                order: [Order::Standard, Order::Vllm, Order::LlamaCpp][case % 3],
                seed: Some(case as u64),
                ..Default::default()
            };
            let pr = process_row(0, &x, &p, Overrides::default()).unwrap();
            let RowOut::Probs(got) =
                run_extended(Kernels::detect(), 0, &x, &p, Want::Probs, &mut sc).unwrap()
            else {
                panic!()
            };
            assert_eq!(got.kept as usize, pr.kept_count, "case {case}");
            for i in 0..v {
                assert!(
                    (got.probs[i] - pr.pi[i]).abs() <= 1e-12,
                    "case {case} π[{i}]"
                );
            }
            let RowOut::Sample(r) = run_extended(
                Kernels::detect(),
                0,
                &x,
                &p,
                Want::Sample {
                    seed: case as u64,
                    samples: 4,
                },
                &mut sc,
            )
            .unwrap() else {
                panic!()
            };
            for (d, &tok) in r.draws.iter().enumerate() {
                let u = uniform(case as u64, 0, d as u32);
                assert_eq!(tok, pr.draw(u), "case {case} draw {d}");
            }
        }
    }
}
