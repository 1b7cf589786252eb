//! One row through docs/spec.md §3–§6 without sorting it.
//!
//! 1. Edits (bias, mask, penalties) become a block list over the caller's row
//!    (`edits.rs`); nothing is copied.
//! 2. One statistics pass per block: the block max (and the NaN/+inf check),
//!    then `Σe`, `Σ(x−m)e`, `Σ(x−m)²e` against a running max, merged with the
//!    associative rule of docs/spec.md §4.1 ("One read for max, normaliser, entropy
//!    and varentropy"); with a static temperature also the sums at T.
//! 3. Every truncation stage keeps a set `{x ≥ τ}`, so the pipeline carries one
//!    threshold. Thresholds are found on a candidate list `{x ≥ τ_c}` compacted
//!    from the blocks whose max reaches a bound `τ_c` that provably lies below
//!    the answer (the k-th largest block max for top-k, the block maxima whose
//!    mass reaches the target for top-p); blocks below it are never reread.
//!    Min-p is closed-form.
//! 4. The draw is an inverse CDF in id order: over the candidates when they
//!    hold every survivor, else over per-block weights and one block rescan.

use rayon::prelude::*;

use super::edits::{Block, Edits};
use super::select::{kth_largest, mass_threshold, TopN};
use super::simd::{ceil_f32, Kernels, LANE_SLOTS};
use super::team::Team;
use crate::error::{Result, SamplerError};
use crate::params::{widen, Order, SamplingParams, Stage};
use crate::reference::TOP_P_SLACK;
use crate::result::{RowProbs, RowResult, TokenLogprob, TopLogprobs};
use crate::rng::uniform;

/// The "every finite token" threshold: `x ≥ f32::MIN` holds exactly for finite x.
const ALL: f32 = f32::MIN;

/// `1/t` as an f32 multiplier; a temperature so small that `1/t` overflows f32
/// saturates (every token below the max gets weight 0, the max keeps 1).
fn inv_f32(t: f64) -> f32 {
    (1.0 / t).min(f32::MAX as f64) as f32
}

/// Scratch reused across rows and calls (no allocation once warm).
#[derive(Default)]
pub struct Scratch {
    edits: Edits,
    blocks: Vec<Block>,
    lanes: Vec<[f32; LANE_SLOTS]>,
    cand_vals: Vec<f32>,
    cand_ids: Vec<u32>,
    cand_w: Vec<f32>,
    sel: Vec<f32>,
    mass: Vec<(f32, f64)>,
    wbuf: Vec<f32>,
    wbuf64: Vec<f64>,
    bidx: Vec<u32>,
    cdf: Vec<f64>,
    top: TopN,
    groups: Vec<(Vec<f32>, Vec<u32>)>,
    full: Vec<FullSums>,
    /// The extended samplers' path (extended.rs).
    pub ext: super::extended::ExtScratch,
}

/// What the caller wants from a row.
#[derive(Debug, Clone, Copy)]
pub enum Want {
    Sample { seed: u64, samples: u32 },
    Probs,
}

pub enum RowOut {
    Sample(RowResult),
    Probs(RowProbs),
}

/// Running `(m, Σe, Σde, Σd²e, Σe_T, Σde_T)` with `d = x − m`, shifted when the
/// max grows (the merge rule of docs/spec.md §4.1).
#[derive(Debug, Clone, Copy)]
struct Acc {
    m: f64,
    s: f64,
    a: f64,
    b: f64,
    st: f64,
    at: f64,
    n: u64,
}

impl Acc {
    const EMPTY: Acc = Acc {
        m: f64::NEG_INFINITY,
        s: 0.0,
        a: 0.0,
        b: 0.0,
        st: 0.0,
        at: 0.0,
        n: 0,
    };

    fn shift_to(&mut self, m: f64, inv_t: f64) {
        if self.m == f64::NEG_INFINITY {
            self.m = m;
            return;
        }
        let d = self.m - m;
        let (w, wt) = (d.exp(), (d * inv_t).exp());
        self.b = w * (self.b + 2.0 * d * self.a + d * d * self.s);
        self.a = w * (self.a + d * self.s);
        self.s *= w;
        self.at = wt * (self.at + d * self.st);
        self.st *= wt;
        self.m = m;
    }

    fn merge(mut self, mut o: Acc, inv_t: f64) -> Acc {
        if o.m == f64::NEG_INFINITY {
            self.n += o.n;
            return self;
        }
        if self.m == f64::NEG_INFINITY {
            o.n += self.n;
            return o;
        }
        if o.m > self.m {
            self.shift_to(o.m, inv_t);
        } else {
            o.shift_to(self.m, inv_t);
        }
        Acc {
            m: self.m,
            s: self.s + o.s,
            a: self.a + o.a,
            b: self.b + o.b,
            st: self.st + o.st,
            at: self.at + o.at,
            n: self.n + o.n,
        }
    }
}

/// Full-row sums at temperature `t` over `{x ≥ tau}`, relative to the row max:
/// `s = Σ e^((x−m)/t)`, `a = Σ (x−m)·e^((x−m)/t)`.
#[derive(Debug, Clone, Copy)]
struct FullSums {
    t: f64,
    tau: f32,
    s: f64,
    a: f64,
}

fn slice<'a>(x: &'a [f32], ev: &'a [f32], b: &Block) -> &'a [f32] {
    let (s, e) = (b.start as usize, (b.start + b.len) as usize);
    if b.edited {
        &ev[s..e]
    } else {
        &x[s..e]
    }
}

/// The exact (f64) values of an edited block.
fn slice64<'a>(ev64: &'a [f64], b: &Block) -> &'a [f64] {
    &ev64[b.start as usize..(b.start + b.len) as usize]
}

/// [`Kernels::stats`] in scalar f64 for the few edited entries, from their
/// exact values.
fn stats64(ys: &[f64], m: f64, inv_t: f64, temper: bool) -> super::simd::BlockSums {
    let mut r = super::simd::BlockSums::default();
    for &y in ys {
        if y == f64::NEG_INFINITY {
            continue;
        }
        let d = y - m;
        let e = d.exp();
        r.s += e;
        r.a += d * e;
        r.b += d * d * e;
        r.n += 1;
        if temper {
            let et = (d * inv_t).exp();
            r.st += et;
            r.at += d * et;
        }
    }
    r
}

/// Blocks between the one being summed and the one being prefetched.
const PREFETCH_AHEAD: usize = 2;

/// Asks for a block's cache lines ahead of its use, so the memory reads of
/// the next block overlap the arithmetic on this one.
#[inline]
fn prefetch(xs: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in xs.chunks(16) {
        // SAFETY: prefetching is a hint; the address is inside a live slice.
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                line.as_ptr() as *const i8,
                std::arch::x86_64::_MM_HINT_T0,
            );
        }
    }
}

/// Index (in the row) of the first NaN/+inf.
fn first_bad(x: &[f32]) -> Option<usize> {
    x.iter().position(|v| !(*v < f32::INFINITY))
}

fn invalid(row: usize, x: &[f32], index: usize) -> SamplerError {
    SamplerError::InvalidLogit {
        row,
        index,
        value: x[index],
    }
}

/// How one row's passes are spread over threads.
#[derive(Clone, Copy)]
pub enum Split<'t> {
    /// On the calling thread only.
    Serial,
    /// Over this many workers of the rayon pool the row already runs in
    /// (batches with fewer rows than threads).
    Rayon(usize),
    /// Over a [`Team`]: the caller plus helpers (one row per call).
    Team(&'t Team),
}

impl Split<'_> {
    fn ways(self) -> usize {
        match self {
            Split::Serial => 1,
            Split::Rayon(n) => n,
            Split::Team(t) => t.size(),
        }
    }

    /// Blocks per piece: a team gets several pieces per thread (a helper that
    /// wakes late takes fewer), rayon one per worker; at least 16 blocks each
    /// so a piece pays for its hand-off.
    fn chunk_len(self, nblocks: usize) -> usize {
        let pieces = match self {
            Split::Team(t) => 4 * t.size(),
            _ => self.ways(),
        };
        nblocks.div_ceil(pieces.max(1)).max(16)
    }

    /// `f` over `items`, spread over the threads; results in item order.
    fn map<I: Send, R: Send>(self, items: Vec<I>, f: impl Fn(I) -> R + Sync + Send) -> Vec<R> {
        match self {
            Split::Serial => items.into_iter().map(f).collect(),
            Split::Rayon(_) => items.into_par_iter().map(f).collect(),
            Split::Team(t) => t.map(items, f),
        }
    }
}

/// The statistics pass over some blocks. `Err` carries the row index of the
/// first NaN/+inf in an unedited block (when `check`).
#[allow(clippy::too_many_arguments)]
fn stats_pass(
    k: Kernels,
    x: &[f32],
    ev: &[f32],
    ev64: &[f64],
    blocks: &mut [Block],
    lanes: &mut [[f32; LANE_SLOTS]],
    check: bool,
    temper: bool,
    inv_t: f32,
    inv_t64: f64,
) -> std::result::Result<(Acc, Acc), usize> {
    let (mut base, mut edit) = (Acc::EMPTY, Acc::EMPTY);
    for i in 0..blocks.len() {
        if i + PREFETCH_AHEAD < blocks.len() {
            prefetch(slice(x, ev, &blocks[i + PREFETCH_AHEAD]));
        }
        let b = &mut blocks[i];
        let xs = slice(x, ev, b);
        let bm = if check && !b.edited {
            let (bm, bad) = k.max_bad(xs, &mut lanes[i]);
            if bad {
                return Err(b.start as usize + first_bad(xs).unwrap_or(0));
            }
            bm
        } else {
            k.max_lanes(xs, &mut lanes[i])
        };
        b.max = bm;
        // Unedited blocks shift by f32 maxima (the kernels' shift); edited
        // ones by their exact maxima.
        let (acc, bm) = if b.edited {
            let ys = slice64(ev64, b);
            (
                &mut edit,
                ys.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            )
        } else {
            (&mut base, bm as f64)
        };
        if bm > acc.m {
            acc.shift_to(bm, inv_t64);
        }
        if acc.m == f64::NEG_INFINITY {
            b.shift = f64::NEG_INFINITY;
            b.weight = 0.0;
            continue;
        }
        let s = if b.edited {
            stats64(slice64(ev64, b), acc.m, inv_t64, temper)
        } else {
            k.stats(xs, acc.m as f32, inv_t, temper)
        };
        acc.s += s.s;
        acc.a += s.a;
        acc.b += s.b;
        acc.st += s.st;
        acc.at += s.at;
        acc.n += s.n as u64;
        b.shift = acc.m;
        b.weight = if temper { s.st } else { s.s };
    }
    Ok((base, edit))
}

/// docs/spec.md §4 statistics of an edited row at T = 1, with the vector
/// kernels: `(m, Σe, Σde, Σd²e, finite count)` against the exact max m.
/// Fills the block maxima. The row was checked for NaN/+inf already.
pub(super) fn edited_stats(
    k: Kernels,
    x: &[f32],
    edits: &Edits,
    blocks: &mut [Block],
    lanes: &mut Vec<[f32; LANE_SLOTS]>,
) -> (f64, f64, f64, f64, usize) {
    lanes.resize(blocks.len(), [0.0; LANE_SLOTS]);
    let (ev, ev64) = (&edits.vals[..], &edits.vals64[..]);
    let (base, edit) = match stats_pass(k, x, ev, ev64, blocks, lanes, false, false, 1.0, 1.0) {
        Ok(r) => r,
        Err(_) => (Acc::EMPTY, Acc::EMPTY),
    };
    let acc = base.merge(edit, 1.0);
    (acc.m, acc.s, acc.a, acc.b, acc.n as usize)
}

/// `(max, ln Σ e^(x−max))` of the caller's row as given (finite entries),
/// with the vector kernels.
pub(super) fn raw_stats(k: Kernels, row: usize, x: &[f32]) -> Result<(f64, f64)> {
    let acc = raw_pass(k, row, x)?;
    Ok((acc.m, acc.s.ln()))
}

/// Max and `Σ e^(x−m)` of the caller's row as given, with the NaN/+inf check
/// (rows whose mask hides most of the row still report raw log-probabilities).
fn raw_pass(k: Kernels, row: usize, x: &[f32]) -> Result<Acc> {
    let mut acc = Acc::EMPTY;
    let mut lanes = [0f32; LANE_SLOTS];
    for (i, xs) in x.chunks(super::edits::BLOCK).enumerate() {
        let (bm, bad) = k.max_bad(xs, &mut lanes);
        if bad {
            let at = i * super::edits::BLOCK + first_bad(xs).unwrap_or(0);
            return Err(invalid(row, x, at));
        }
        if bm as f64 > acc.m {
            acc.shift_to(bm as f64, 1.0);
        }
        if acc.m > f64::NEG_INFINITY {
            acc.s += k.stats(xs, acc.m as f32, 1.0, false).s;
        }
    }
    Ok(acc)
}

/// Checks the whole row, returning its first NaN/+inf as the error.
pub(super) fn check_row(k: Kernels, row: usize, x: &[f32]) -> Result<()> {
    let mut lanes = [0f32; LANE_SLOTS];
    for (i, xs) in x.chunks(4096).enumerate() {
        if k.max_bad(xs, &mut lanes).1 {
            return Err(invalid(row, x, i * 4096 + first_bad(xs).unwrap_or(0)));
        }
    }
    Ok(())
}

/// The per-row state the truncation stages and the draw work on.
struct Row<'s> {
    k: Kernels,
    split: Split<'s>,
    x: &'s [f32],
    ev: &'s [f32],
    ev64: &'s [f64],
    edit_ids: &'s [u32],
    blocks: &'s mut Vec<Block>,
    /// Lane maxima of each block (filled by the statistics pass).
    lanes: &'s [[f32; LANE_SLOTS]],
    cv: &'s mut Vec<f32>,
    ci: &'s mut Vec<u32>,
    /// Weights `e^((x−m)/cw_t)` of the candidates (valid while `cw_t` is).
    cw: &'s mut Vec<f32>,
    cw_t: f64,
    sel: &'s mut Vec<f32>,
    mass: &'s mut Vec<(f32, f64)>,
    wbuf: &'s mut Vec<f32>,
    wbuf64: &'s mut Vec<f64>,
    /// Histogram bucket of each entry of `sel` (top-p bound).
    bidx: &'s mut Vec<u32>,
    cdf: &'s mut Vec<f64>,
    top: &'s mut TopN,
    groups: &'s mut Vec<(Vec<f32>, Vec<u32>)>,
    full: &'s mut Vec<FullSums>,
    /// Row max (exact, after edits), the max of the unedited blocks (the f32
    /// shift of the vector kernels, −inf if none) and the finite count.
    m: f64,
    mb: f32,
    n_finite: usize,
    /// The candidate list holds exactly `{x ≥ tau_c}`, in id order.
    tau_c: f32,
    /// What the block weights currently hold: (t, tau).
    bw: (f64, f32),
}

impl Row<'_> {
    /// The edited logit of token `id`, exact.
    fn value64(&self, id: u32) -> f64 {
        match self.edit_ids.binary_search(&id) {
            Ok(e) => self.ev64[e],
            Err(_) => self.x[id as usize] as f64,
        }
    }

    /// Value of candidate `i` for arithmetic: exact for edited tokens.
    fn cand_value64(&self, i: usize) -> f64 {
        if self.edit_ids.is_empty() {
            self.cv[i] as f64
        } else {
            self.value64(self.ci[i])
        }
    }

    fn live_blocks(&self, tau: f32) -> usize {
        self.blocks.iter().filter(|b| b.max >= tau).count()
    }

    /// Makes the candidate list `{x ≥ tau}` by rereading only the blocks whose
    /// max reaches `tau`.
    fn recompact(&mut self, tau: f32) {
        self.cw_t = f64::NAN;
        self.cv.clear();
        self.ci.clear();
        let (k, x, ev) = (self.k, self.x, self.ev);
        let live = self.live_blocks(tau);
        if self.split.ways() > 1 && live >= 64 {
            let cl = self.split.chunk_len(self.blocks.len());
            let n = self.blocks.len().div_ceil(cl);
            self.groups.resize_with(n, Default::default);
            let parts: Vec<_> = self.blocks.chunks(cl).zip(self.groups.iter_mut()).collect();
            self.split.map(parts, |(bs, (gv, gi))| {
                gv.clear();
                gi.clear();
                for b in bs.iter().filter(|b| b.max >= tau) {
                    k.compact_ge(slice(x, ev, b), tau, b.id, gv, gi);
                }
            });
            for (gv, gi) in self.groups.iter().take(n) {
                self.cv.extend_from_slice(gv);
                self.ci.extend_from_slice(gi);
            }
        } else {
            for b in self.blocks.iter().filter(|b| b.max >= tau) {
                k.compact_ge(slice(x, ev, b), tau, b.id, self.cv, self.ci);
            }
        }
        self.tau_c = tau;
    }

    /// Number of finite entries `≥ tau`.
    fn count_ge(&mut self, tau: f32) -> usize {
        if tau <= ALL {
            return self.n_finite;
        }
        if tau >= self.tau_c {
            return self.cv.iter().filter(|&&v| v >= tau).count();
        }
        // Few blocks reach tau: compact them (later stages then work on the
        // list); otherwise count without storing.
        let live = self.live_blocks(tau);
        if live * 8 <= self.blocks.len() || live <= 4 {
            self.recompact(tau);
            return self.cv.len();
        }
        let (k, x, ev) = (self.k, self.x, self.ev);
        let count = |bs: &[Block]| -> usize {
            bs.iter()
                .filter(|b| b.max >= tau)
                .map(|b| k.count_ge(slice(x, ev, b), tau))
                .sum()
        };
        if self.split.ways() > 1 {
            let cl = self.split.chunk_len(self.blocks.len());
            self.split
                .map(self.blocks.chunks(cl).collect(), count)
                .into_iter()
                .sum()
        } else {
            count(self.blocks)
        }
    }

    /// Sums at temperature `t` over `{x ≥ tau}` (see [`FullSums`]); a masked
    /// pass over the live blocks when not already known. The pass leaves its
    /// per-block weights behind for the draw.
    fn full_sums(&mut self, t: f64, tau: f32) -> FullSums {
        if let Some(f) = self.full.iter().find(|f| f.t == t && f.tau == tau) {
            return *f;
        }
        let (k, x, ev, ev64, m, mb) = (self.k, self.x, self.ev, self.ev64, self.m, self.mb);
        let inv_t = inv_f32(t);
        // Unedited blocks are summed by the kernels against `mb`, then moved
        // to the row max: Σ(x−m)w = c·(Σ(x−mb)w' + (mb−m)·Σw'), c = e^((mb−m)/t).
        let (dmb, c) = (mb as f64 - m, ((mb as f64 - m) / t).exp());
        let pass = |bs: &mut [Block]| -> (f64, f64) {
            let (mut s, mut a) = (0.0, 0.0);
            for b in bs.iter_mut() {
                b.weight = 0.0;
                if b.max < tau {
                    continue;
                }
                if b.edited {
                    b.shift = m;
                    for (&v, &y) in slice(x, ev, b).iter().zip(slice64(ev64, b)) {
                        if v >= tau {
                            let d = y - m;
                            let w = (d / t).exp();
                            b.weight += w;
                            s += w;
                            a += d * w;
                        }
                    }
                } else {
                    b.shift = mb as f64;
                    let (bs_, ba) = k.tempered(slice(x, ev, b), mb, inv_t, tau);
                    b.weight = bs_;
                    s += c * bs_;
                    a += c * (ba + dmb * bs_);
                }
            }
            (s, a)
        };
        let (s, a) = if self.split.ways() > 1 {
            let cl = self.split.chunk_len(self.blocks.len());
            let parts = self.split.map(self.blocks.chunks_mut(cl).collect(), pass);
            parts
                .into_iter()
                .fold((0.0, 0.0), |p, q| (p.0 + q.0, p.1 + q.1))
        } else {
            pass(self.blocks)
        };
        self.bw = (t, tau);
        let f = FullSums { t, tau, s, a };
        self.full.push(f);
        f
    }

    /// Fills the candidate weights at temperature `t` (one vectorised pass
    /// over the compact list; f32 weights are within 2 ulp, summed in f64).
    fn cand_weights(&mut self, t: f64) {
        if self.cw_t == t && self.cw.len() == self.cv.len() {
            return;
        }
        self.cw.resize(self.cv.len(), 0.0);
        if self.edit_ids.is_empty() {
            // Every value is an f32 and the row max is one of them.
            self.k
                .weights(self.cv, self.m as f32, inv_f32(t), ALL, self.cw);
        } else {
            // Edited rows: exact values in f64 against the exact max (the
            // lists are both in id order: one merge walk finds the edits).
            let m = self.m;
            let mut e = 0;
            for i in 0..self.cv.len() {
                let id = self.ci[i];
                while e < self.edit_ids.len() && self.edit_ids[e] < id {
                    e += 1;
                }
                let y = if e < self.edit_ids.len() && self.edit_ids[e] == id {
                    self.ev64[e]
                } else {
                    self.cv[i] as f64
                };
                self.cw[i] = ((y - m) / t).exp() as f32;
            }
        }
        self.cw_t = t;
    }

    /// Σ e^((x−m)/t) over the candidates ≥ tau.
    fn cand_mass(&mut self, tau: f32, t: f64) -> f64 {
        self.cand_weights(t);
        self.cv
            .iter()
            .zip(self.cw.iter())
            .filter(|(&v, _)| v >= tau)
            .map(|(_, &w)| w as f64)
            .sum()
    }

    /// Mass at temperature `t` of `{x ≥ tau}`.
    fn mass_ge(&mut self, tau: f32, t: f64) -> f64 {
        if tau >= self.tau_c {
            self.cand_mass(tau, t)
        } else {
            self.full_sums(t, tau).s
        }
    }

    /// Makes sure the candidates hold the `r` largest entries of `{x ≥ tau_prev}`
    /// (or all of them). The r-th largest block max is a lower bound for the
    /// r-th largest entry: r distinct entries reach it.
    fn ensure_rank(&mut self, tau_prev: f32, r: usize) {
        if self.tau_c <= tau_prev || self.cv.len() >= r {
            return;
        }
        self.sel.clear();
        self.sel
            .extend(self.blocks.iter().map(|b| b.max).filter(|&v| v >= tau_prev));
        let bound = if self.sel.len() >= r {
            kth_largest(self.sel, r)
        } else {
            tau_prev
        };
        self.recompact(bound.max(tau_prev));
    }

    /// The k-th largest of `{x ≥ tau_prev}` (its smallest if it has fewer).
    fn kth(&mut self, tau_prev: f32, k: usize) -> f32 {
        self.ensure_rank(tau_prev, k);
        self.sel.clear();
        self.sel
            .extend(self.cv.iter().copied().filter(|&v| v >= tau_prev));
        kth_largest(self.sel, k)
    }

    /// Makes sure the candidates hold every entry of the top-p set, i.e. that
    /// their mass reaches `target` (out of `z`, the input's mass). Lane maxima
    /// are distinct entries of the row, so if those `≥ v` alone weigh the
    /// target, every top-p entry is `≥ v`: one compaction at that `v`. When
    /// the lane maxima hold too little of the mass (flat rows, p near 1),
    /// guesses go down the sorted lane maxima, doubling the depth each time,
    /// and a guess counts only once the compacted entries' mass proves it.
    fn ensure_mass(&mut self, tau_prev: f32, t: f64, target: f64, z: f64) {
        if self.tau_c <= tau_prev || self.cand_mass(tau_prev, t) >= target {
            return;
        }
        self.sel.clear();
        for (b, l) in self.blocks.iter().zip(self.lanes.iter()) {
            if b.max >= tau_prev {
                self.sel
                    .extend(l.iter().copied().filter(|&v| v >= tau_prev));
            }
        }
        self.wbuf.resize(self.sel.len(), 0.0);
        if self.edit_ids.is_empty() {
            self.k
                .weights(self.sel, self.m as f32, inv_f32(t), ALL, self.wbuf);
        } else {
            // Rounded edited maxima may sit a hair above the exact max; the
            // bound is verified on the candidates anyway.
            for (w, &v) in self.wbuf.iter_mut().zip(self.sel.iter()) {
                *w = ((v as f64 - self.m).min(0.0) / t).exp() as f32;
            }
        }
        // Bucket the lane maxima by distance below the max, in quarters of t
        // (weights down to e^-32), and take the lower edge of the bucket where
        // their cumulative weight crosses the target: every lane above that
        // edge is in, so the bound is valid, and at most one bucket's worth of
        // extra entries is compacted. (A histogram, not a selection: a few
        // thousand lanes cost one linear pass.)
        const BUCKETS: usize = 128;
        const WIDTH: f64 = 0.25;
        // Bucket indices in one vectorisable pass, then the sums: four
        // interleaved copies, as neighbouring lanes mostly share a bucket and
        // one copy would chain every add through memory. (In f32 a lane within
        // rounding of an edge may land in either neighbouring bucket; a bound
        // that comes out too high is caught by the candidates' mass check
        // below and only costs the fallback.)
        let scale = 1.0 / (t * WIDTH);
        let m = self.m;
        let (m32, scale32, last) = (m as f32, scale as f32, (BUCKETS - 1) as f32);
        self.bidx.clear();
        self.bidx.extend(self.sel.iter().map(|&v| {
            let q = ((m32 - v).max(0.0) * scale32).min(last);
            q as u32
        }));
        let mut hist4 = [[0f64; BUCKETS]; 4];
        for (i, (&q, &w)) in self.bidx.iter().zip(self.wbuf.iter()).enumerate() {
            hist4[i & 3][q as usize & (BUCKETS - 1)] += w as f64;
        }
        let hist: [f64; BUCKETS] =
            std::array::from_fn(|j| (hist4[0][j] + hist4[1][j]) + (hist4[2][j] + hist4[3][j]));
        // The candidates' weights come from the same values, so they reach at
        // least the lanes' sum; the margin covers the summation order.
        let want = target * (1.0 + 1e-9);
        let mut cum = 0.0;
        let crossing = hist.iter().position(|&h| {
            cum += h;
            cum >= want
        });
        if let Some(j) = crossing.filter(|&j| j + 1 < BUCKETS) {
            let bound = ceil_f32(m - (j + 1) as f64 * t * WIDTH).max(tau_prev);
            if bound < self.tau_c {
                self.recompact(bound);
            }
            if self.cand_mass(tau_prev, t) >= target {
                return;
            }
        }
        self.sel.sort_unstable_by(|a, b| b.total_cmp(a));
        self.cdf.clear();
        let mut cum = 0.0;
        for &v in self.sel.iter() {
            cum += ((v as f64 - m).min(0.0) / t).exp();
            self.cdf.push(cum);
        }
        let share = if z > 0.0 { (cum / z).min(1.0) } else { 1.0 };
        let n = self.sel.len();
        let mut j = self
            .cdf
            .partition_point(|&c| c < target * share)
            .min(n.saturating_sub(1));
        for _ in 0..n {
            let bound = self.sel[j].max(tau_prev);
            if bound < self.tau_c {
                self.recompact(bound);
            }
            if j + 1 >= n || self.cand_mass(tau_prev, t) >= target {
                break;
            }
            j = (2 * j + 1).min(n - 1);
        }
        if self.tau_c > tau_prev && self.cand_mass(tau_prev, t) < target {
            self.recompact(tau_prev);
        }
    }

    /// docs/spec.md §3.5 on `{x ≥ tau_prev}` at temperature `t`.
    fn top_p_tau(&mut self, tau_prev: f32, t: f64, p: f64) -> f32 {
        let z = self.mass_ge(tau_prev, t);
        let target = (p - TOP_P_SLACK) * z;
        self.ensure_mass(tau_prev, t, target, z);
        self.cand_weights(t);
        self.mass.clear();
        self.mass.extend(
            self.cv
                .iter()
                .zip(self.cw.iter())
                .filter(|(&v, _)| v >= tau_prev)
                .map(|(&v, &w)| (v, w as f64)),
        );
        mass_threshold(self.mass, target)
    }

    /// One truncation stage and the min_tokens_to_keep rule (docs/spec.md §3.4–3.7),
    /// as the reference's `truncate`: `None` when the stage is off.
    fn truncate(
        &mut self,
        stage: Stage,
        tau_prev: f32,
        before: usize,
        t: f64,
        p: &SamplingParams,
        top_p: f64,
    ) -> Option<(f32, usize)> {
        let mut tau = match stage {
            Stage::TopK => {
                if p.top_k <= 0 || p.top_k as usize >= before {
                    return None;
                }
                self.kth(tau_prev, p.top_k as usize)
            }
            Stage::TopP => {
                if top_p >= 1.0 {
                    return None;
                }
                self.top_p_tau(tau_prev, t, top_p)
            }
            Stage::MinP => {
                if p.min_p <= 0.0 {
                    return None;
                }
                // q_i ≥ min_p·max q ⇔ x_i ≥ m + t·ln(min_p); the row max survives
                // every stage, so it is the survivors' max too.
                ceil_f32(self.m + t * widen(p.min_p).ln()).max(tau_prev)
            }
            // Not run here yet: mod.rs refuses rows that use them.
            Stage::TopNSigma | Stage::Typical | Stage::Epsilon | Stage::Eta | Stage::Xtc => {
                return None
            }
        };
        let mut after = self.count_ge(tau);
        let keep = p.min_tokens_to_keep as usize;
        if after < keep && after < before {
            tau = self.kth(tau_prev, keep);
            after = self.count_ge(tau);
        }
        Some((tau, after))
    }

    /// `(Σw, Σ(y−m)·w)` over the candidates `≥ tau` at temperature `t`; with
    /// `cdf`, also their running Σw in id order (one entry per candidate).
    fn cand_sums(&mut self, tau: f32, t: f64, cdf: bool) -> (f64, f64) {
        self.cand_weights(t);
        self.cdf.clear();
        let (mut z, mut a) = (0.0, 0.0);
        for i in 0..self.cv.len() {
            if self.cv[i] >= tau {
                let w = self.cw[i] as f64;
                z += w;
                a += (self.cand_value64(i) - self.m) * w;
            }
            if cdf {
                self.cdf.push(z);
            }
        }
        (z, a)
    }

    /// Entropy (nats) at T = 1 of `{x ≥ tau}`.
    fn entropy_over(&mut self, tau: f32) -> f64 {
        let (s, a) = if tau >= self.tau_c {
            self.cand_sums(tau, 1.0, false)
        } else {
            let f = self.full_sums(1.0, tau);
            (f.s, f.a)
        };
        (s.ln() - a / s).max(0.0)
    }

    /// Lowest id holding the row max (the greedy token).
    fn argmax(&self) -> u32 {
        for b in self.blocks.iter() {
            let found = if b.edited {
                slice64(self.ev64, b).iter().position(|&y| y == self.m)
            } else if b.max as f64 == self.m {
                slice(self.x, self.ev, b)
                    .iter()
                    .position(|&v| v as f64 == self.m)
            } else {
                None
            };
            if let Some(j) = found {
                return b.id + j as u32;
            }
        }
        0
    }

    /// The `n` largest survivors `≥ tau`, descending, ties by lowest id.
    fn top_survivors(&mut self, tau: f32, n: usize) {
        self.top.reset(n);
        if self.tau_c <= tau || self.cv.len() >= n {
            for (&v, &id) in self.cv.iter().zip(self.ci.iter()) {
                if v >= tau && self.top.wants(v) {
                    self.top.offer(v, id);
                }
            }
        } else {
            for b in self.blocks.iter() {
                let xs = slice(self.x, self.ev, b);
                self.k.top_n(xs, b.id, self.top);
            }
        }
    }
}

/// Sampling weights of the final distribution, ready for draws.
enum Draw {
    /// Over the candidates ≥ tau: cumulative weights in id order.
    Cands { tau: f32 },
    /// Over every block: cumulative scaled block weights, then one rescan.
    Blocks { tau: f32, t: f64 },
}

impl Row<'_> {
    /// Prepares the inverse-CDF draw over `{x ≥ tau}` at `t`; returns
    /// (how, Z, Σ(x−m)·w) with weights relative to the row max.
    fn prepare_draw(&mut self, tau: f32, t: f64) -> (Draw, f64, f64) {
        let m = self.m;
        if tau >= self.tau_c {
            let (z, a) = self.cand_sums(tau, t, true);
            (Draw::Cands { tau }, z, a)
        } else {
            let f = self.full_sums(t, tau);
            if self.bw != (t, tau) {
                // The weights in the blocks are for another (t, tau): redo them.
                self.full.retain(|g| !(g.t == t && g.tau == tau));
                let g = self.full_sums(t, tau);
                debug_assert_eq!(g.tau, f.tau);
            }
            self.cdf.clear();
            let mut cum = 0.0;
            let (mut last_shift, mut scale) = (f64::NAN, 0.0);
            for b in self.blocks.iter() {
                if b.shift != last_shift {
                    last_shift = b.shift;
                    scale = if b.shift == f64::NEG_INFINITY {
                        0.0
                    } else {
                        ((b.shift - m) / t).exp()
                    };
                }
                cum += b.weight * scale;
                self.cdf.push(cum);
            }
            (Draw::Blocks { tau, t }, f.s, f.a)
        }
    }

    /// The smallest id whose cumulative weight exceeds `u·Z` (docs/spec.md §3.8).
    fn draw(&mut self, how: &Draw, u: f64) -> u32 {
        let total = *self.cdf.last().unwrap_or(&0.0);
        let target = u * total;
        // First position whose cumulative weight exceeds the target; weight-0
        // positions never start a strict increase, so they are never chosen.
        let pos = self.cdf.partition_point(|&c| c <= target);
        match *how {
            Draw::Cands { tau } => {
                if pos < self.cdf.len() {
                    return self.ci[pos];
                }
                // Rounding left no crossing: the highest id with weight > 0.
                let last = (0..self.cv.len()).rev().find(|&i| self.cv[i] >= tau);
                last.map(|i| self.ci[i]).unwrap_or(0)
            }
            Draw::Blocks { tau, t } => {
                let bi = if pos < self.cdf.len() {
                    pos
                } else {
                    match (0..self.blocks.len())
                        .rev()
                        .find(|&i| self.blocks[i].weight > 0.0)
                    {
                        Some(i) => i,
                        None => return self.argmax(),
                    }
                };
                let b = self.blocks[bi];
                let xs = slice(self.x, self.ev, &b);
                self.wbuf64.clear();
                if b.edited {
                    let m = self.m;
                    for (&v, &y) in xs.iter().zip(slice64(self.ev64, &b)) {
                        self.wbuf64
                            .push(if v >= tau { ((y - m) / t).exp() } else { 0.0 });
                    }
                } else {
                    // Kernel weights against the unedited max, moved to the row max.
                    let c = ((self.mb as f64 - self.m) / t).exp();
                    self.wbuf.resize(xs.len(), 0.0);
                    self.k.weights(xs, self.mb, inv_f32(t), tau, self.wbuf);
                    self.wbuf64.extend(self.wbuf.iter().map(|&w| w as f64 * c));
                }
                let mut cum = if bi == 0 { 0.0 } else { self.cdf[bi - 1] };
                let mut last = None;
                for (j, &w) in self.wbuf64.iter().enumerate() {
                    if w > 0.0 {
                        cum += w;
                        last = Some(j);
                        if cum > target {
                            return b.id + j as u32;
                        }
                    }
                }
                // The block's own sum rounded past the target: its last token.
                b.id + last.unwrap_or(0) as u32
            }
        }
    }
}

/// Runs one row, its passes spread as `split` says.
pub fn run_row(
    k: Kernels,
    row: usize,
    x: &[f32],
    p: &SamplingParams,
    want: Want,
    sc: &mut Scratch,
    split: Split<'_>,
) -> Result<RowOut> {
    let vocab = x.len();
    let edited = Edits::needed(p);
    // Raw statistics (log-softmax of the logits as given) and the NaN/+inf
    // check, in the reference's error order: bad logits first, then edits.
    let mut raw = None;
    if edited {
        if p.allowed_token_ids.is_some() {
            raw = Some(raw_pass(k, row, x)?);
        } else if Edits::touched(p).any(|id| !(x[id as usize] < f32::INFINITY)) {
            check_row(k, row, x)?;
        }
        if let Err(e) = sc.edits.build(row, x, p) {
            check_row(k, row, x)?;
            return Err(e);
        }
        sc.edits.blocks(vocab, &mut sc.blocks);
    } else {
        sc.edits.ids.clear();
        sc.edits.vals.clear();
        sc.edits.masked = false;
        sc.edits.blocks(vocab, &mut sc.blocks);
    }

    let order = p.order;
    let static_t = widen(p.temperature);
    let dynamic = p.dynamic_temperature.as_ref();
    // Whether the final distribution is probably the whole row at a known T:
    // then the statistics pass also takes the sums at T (one read, not two).
    let trunc_k = p.top_k > 0 && (p.top_k as usize) < vocab;
    let trunc_min = p.min_p > 0.0;
    let trunc_p = p.top_p < 1.0;
    let untruncated = match order {
        Order::LlamaCpp => !(trunc_k || trunc_min || trunc_p),
        _ => !(trunc_k || trunc_min),
    };
    let temper = dynamic.is_none() && static_t > 0.0 && static_t != 1.0 && untruncated;
    let inv_t = if temper { inv_f32(static_t) } else { 1.0 };

    // The statistics pass (NaN/+inf checked here unless done above).
    let check = raw.is_none();
    let (x_, ev, ev64) = (x, &sc.edits.vals[..], &sc.edits.vals64[..]);
    let inv_t64 = if temper { 1.0 / static_t } else { 1.0 };
    sc.lanes.resize(sc.blocks.len(), [0.0; LANE_SLOTS]);
    let result = if split.ways() > 1 && sc.blocks.len() >= 32 {
        let cl = split.chunk_len(sc.blocks.len());
        let parts: Vec<_> = sc
            .blocks
            .chunks_mut(cl)
            .zip(sc.lanes.chunks_mut(cl))
            .collect();
        split
            .map(parts, |(bs, ls)| {
                stats_pass(k, x_, ev, ev64, bs, ls, check, temper, inv_t, inv_t64)
            })
            .into_iter()
            .try_fold((Acc::EMPTY, Acc::EMPTY), |l, r| {
                r.map(|r| (l.0.merge(r.0, inv_t64), l.1.merge(r.1, inv_t64)))
            })
    } else {
        stats_pass(
            k,
            x_,
            ev,
            ev64,
            &mut sc.blocks,
            &mut sc.lanes,
            check,
            temper,
            inv_t,
            inv_t64,
        )
    };
    let (base, edit) = result.map_err(|i| invalid(row, x, i))?;
    let acc = base.merge(edit, inv_t64);
    if acc.m == f64::NEG_INFINITY {
        return Err(SamplerError::AllMasked { row });
    }
    // Raw stats of an unmasked row: the unedited blocks plus the originals of
    // the edited ids.
    let raw = match raw {
        Some(r) => r,
        None => {
            let mut r = Acc { n: 0, ..base };
            for &id in &sc.edits.ids {
                let v = x[id as usize];
                let mut one = Acc::EMPTY;
                one.shift_to(v as f64, 1.0);
                one.s = 1.0;
                r = r.merge(one, 1.0);
            }
            r
        }
    };
    let (raw_m, raw_ln_s) = (raw.m, raw.s.ln());

    let (m, s1, a1) = (acc.m, acc.s, acc.a);
    let ln_s1 = s1.ln();
    let entropy = (ln_s1 - a1 / s1).max(0.0);
    let varentropy = (acc.b / s1 - (a1 / s1) * (a1 / s1)).max(0.0);
    let finite = acc.n as usize;

    sc.full.clear();
    sc.full.push(FullSums {
        t: 1.0,
        tau: ALL,
        s: s1,
        a: a1,
    });
    if temper {
        sc.full.push(FullSums {
            t: static_t,
            tau: ALL,
            s: acc.st,
            a: acc.at,
        });
    }
    let mut r = Row {
        k,
        split,
        x,
        ev: &sc.edits.vals,
        ev64: &sc.edits.vals64,
        edit_ids: &sc.edits.ids,
        blocks: &mut sc.blocks,
        lanes: &sc.lanes,
        cv: &mut sc.cand_vals,
        ci: &mut sc.cand_ids,
        cw: &mut sc.cand_w,
        cw_t: f64::NAN,
        sel: &mut sc.sel,
        mass: &mut sc.mass,
        wbuf: &mut sc.wbuf,
        wbuf64: &mut sc.wbuf64,
        bidx: &mut sc.bidx,
        cdf: &mut sc.cdf,
        top: &mut sc.top,
        groups: &mut sc.groups,
        full: &mut sc.full,
        m,
        mb: base.m as f32,
        n_finite: finite,
        tau_c: f32::INFINITY,
        bw: (if temper { static_t } else { 1.0 }, ALL),
    };
    r.cv.clear();
    r.ci.clear();

    // Temperature and truncation, stage by stage as in the reference.
    let mut top_p = widen(p.top_p);
    let mut tau = ALL;
    let mut kept = finite;
    let guide_entropy;
    let mut t;
    match order {
        Order::Standard | Order::Vllm => {
            (guide_entropy, t, top_p) = p.temperature_before_truncation(entropy, finite);
            if t > 0.0 {
                for stage in order.truncation_stages() {
                    if let Some((nt, after)) = r.truncate(stage, tau, kept, t, p, top_p) {
                        tau = nt;
                        kept = after;
                    }
                }
            }
        }
        Order::LlamaCpp => {
            // Truncation sees T = 1; dynamic temperature sees the survivors.
            // Without a dynamic guide a greedy row needs no truncation at all.
            if static_t != 0.0 || dynamic.is_some() {
                for stage in order.truncation_stages() {
                    if let Some((nt, after)) = r.truncate(stage, tau, kept, 1.0, p, top_p) {
                        tau = nt;
                        kept = after;
                    }
                }
            }
            t = static_t;
            guide_entropy = match dynamic {
                None => None,
                Some(d) => {
                    let h = if tau <= ALL {
                        entropy
                    } else {
                        r.entropy_over(tau)
                    };
                    let g = d.guide_over_survivors(h, kept);
                    if static_t != 0.0 {
                        t = d.temperature(g, h, kept, static_t);
                    }
                    Some(g)
                }
            };
        }
    }

    let greedy = !(t > 0.0);
    let logprobs = p.logprobs.map(|n| n as usize);
    if greedy {
        let token = r.argmax();
        return Ok(match want {
            Want::Probs => {
                let mut probs = vec![0.0; vocab];
                probs[token as usize] = 1.0;
                RowOut::Probs(RowProbs {
                    probs,
                    kept: 1,
                    temperature: 0.0,
                    top_p,
                    entropy,
                    final_entropy: 0.0,
                    guide_entropy,
                    mirostat_mu: None,
                })
            }
            Want::Sample { seed, samples } => {
                let top_logprobs = logprobs.map(|n| TopLogprobs {
                    raw: raw_top(k, x, n, raw_m, raw_ln_s, r.top),
                    processed: if n > 0 {
                        vec![TokenLogprob {
                            id: token,
                            logprob: 0.0,
                        }]
                    } else {
                        Vec::new()
                    },
                });
                RowOut::Sample(RowResult {
                    token,
                    draws: vec![token; samples as usize],
                    logprob: 0.0,
                    raw_logprob: x[token as usize] as f64 - raw_m - raw_ln_s,
                    entropy,
                    varentropy,
                    guide_entropy,
                    final_entropy: 0.0,
                    temperature: 0.0,
                    top_p,
                    kept: 1,
                    seed,
                    top_logprobs,
                    mirostat_mu: None,
                })
            }
        });
    }

    let (how, z, a) = r.prepare_draw(tau, t);
    let ln_z = z.ln();
    let final_entropy = (ln_z - a / (t * z)).max(0.0);
    let logprob_of = |y: f64| (y - m) / t - ln_z;

    match want {
        Want::Probs => {
            let mut probs = vec![0.0; vocab];
            match how {
                Draw::Cands { tau } => {
                    for i in 0..r.cv.len() {
                        if r.cv[i] >= tau {
                            probs[r.ci[i] as usize] = logprob_of(r.cand_value64(i)).exp();
                        }
                    }
                }
                Draw::Blocks { tau, .. } => {
                    for b in r.blocks.iter().filter(|b| b.max >= tau) {
                        for (j, &v) in slice(r.x, r.ev, b).iter().enumerate() {
                            if v >= tau {
                                let y = if b.edited {
                                    r.ev64[(b.start as usize) + j]
                                } else {
                                    v as f64
                                };
                                probs[(b.id as usize) + j] = logprob_of(y).exp();
                            }
                        }
                    }
                }
            }
            Ok(RowOut::Probs(RowProbs {
                probs,
                kept: kept as u32,
                temperature: t,
                top_p,
                entropy,
                final_entropy,
                guide_entropy,
                mirostat_mu: None,
            }))
        }
        Want::Sample { seed, samples } => {
            let draws: Vec<u32> = (0..samples)
                .map(|d| r.draw(&how, uniform(seed, p.step, d)))
                .collect();
            let token = draws[0];
            let logprob = logprob_of(r.value64(token));
            let top_logprobs = logprobs.map(|n| {
                r.top_survivors(tau, n);
                let processed = r
                    .top
                    .items()
                    .iter()
                    .filter(|&&(v, _)| v >= tau)
                    .map(|&(_, id)| TokenLogprob {
                        id,
                        logprob: logprob_of(r.value64(id)),
                    })
                    .collect();
                TopLogprobs {
                    raw: raw_top(k, x, n, raw_m, raw_ln_s, r.top),
                    processed,
                }
            });
            Ok(RowOut::Sample(RowResult {
                token,
                draws,
                logprob,
                raw_logprob: x[token as usize] as f64 - raw_m - raw_ln_s,
                entropy,
                varentropy,
                guide_entropy,
                final_entropy,
                temperature: t,
                top_p,
                kept: kept as u32,
                seed,
                top_logprobs,
                mirostat_mu: None,
            }))
        }
    }
}

/// The n largest raw log-probabilities (the logits as given).
pub(super) fn raw_top(
    k: Kernels,
    x: &[f32],
    n: usize,
    raw_m: f64,
    raw_ln_s: f64,
    top: &mut TopN,
) -> Vec<TokenLogprob> {
    top.reset(n);
    k.top_n(x, 0, top);
    top.items()
        .iter()
        .map(|&(v, id)| TokenLogprob {
            id,
            logprob: v as f64 - raw_m - raw_ln_s,
        })
        .collect()
}
