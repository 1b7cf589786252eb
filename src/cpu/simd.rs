//! The hot loops of the CPU backend, written once as portable code that
//! autovectorises (fixed-width lane arrays over `chunks_exact`, no bounds checks,
//! no float→int casts) and compiled three times: AVX-512 (16 lanes), AVX2 + FMA
//! (8 lanes) and the x86-64 baseline (SSE2, 4 lanes). [`Isa::detect`] picks the
//! widest clone the running CPU supports, so one binary runs on any x86-64
//! machine (other architectures get the portable clone).
//!
//! Every kernel works on one contiguous slice of logits; the row code in
//! `row.rs` calls them block by block.

/// The instruction set a [`Kernels`] value dispatches to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F/VL with FMA: 16 f32 lanes.
    Avx512,
    /// AVX2 with FMA: 8 f32 lanes.
    Avx2,
    /// The architecture's baseline (SSE2 on x86-64): 4 lanes, no FMA.
    Baseline,
}

impl Isa {
    /// The widest clone this CPU runs. `TOKEN_SAMPLER_ISA=avx512|avx2|baseline`
    /// forces a narrower one (tests and benchmarks of the fallbacks); a request
    /// the CPU cannot run is ignored.
    pub fn detect() -> Isa {
        let best = Isa::best_supported();
        match std::env::var("TOKEN_SAMPLER_ISA").ok().as_deref() {
            Some("baseline") => Isa::Baseline,
            Some("avx2") if best != Isa::Baseline => Isa::Avx2,
            _ => best,
        }
    }

    fn best_supported() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Baseline
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2+fma",
            Isa::Baseline => "baseline",
        }
    }
}

/// Sums of one block for the statistics pass, relative to a shift `m ≥ max`:
/// `s = Σ e^(x−m)`, `a = Σ (x−m)·e^(x−m)`, `b = Σ (x−m)²·e^(x−m)`,
/// `st = Σ e^((x−m)/T)`, `at = Σ (x−m)·e^((x−m)/T)`, `n` = finite entries.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BlockSums {
    pub s: f64,
    pub a: f64,
    pub b: f64,
    pub st: f64,
    pub at: f64,
    pub n: u32,
}

// ---------------------------------------------------------------------------
// Portable building blocks (inlined into every clone).

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// Adding 1.5·2^23 rounds a float of magnitude < 2^22 to an integer held in the
/// low mantissa bits, so `2^n` can be built from bits without a float→int cast
/// (which would not vectorise).
const MAGIC: f32 = 12_582_912.0;
/// ln 2 split in two (Cody–Waite) so `d − n·ln2` stays exact to f32 precision.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below this, e^d is under f32's smallest normal and counts as 0. Clamping
/// first keeps `n ≥ −126`, so the exponent bits never wrap.
const EXP_FLOOR: f32 = -87.0;
/// Floor for `x − m` where it multiplies a weight: keeps −inf entries (weight
/// exactly 0) from producing −inf·0 = NaN. It is −f32::MAX, not a smaller
/// magnitude: at the largest temperature (1e30, docs/spec.md §2.1) an
/// `x − m` of −4e30 still has the weight e^−4.
const D_FLOOR: f32 = -f32::MAX;

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

#[inline(always)]
fn vmax(a: f32, b: f32) -> f32 {
    // Compiles to one maxps (NaN handling is irrelevant: NaN logits are
    // rejected before any value is used).
    if a > b {
        a
    } else {
        b
    }
}

/// Cephes' coefficients of `(e^r − 1 − r)/r²` on |r| ≤ ln2/2, highest degree
/// first (Horner order), shared by every exp kernel so they agree bit for bit.
const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// e^d for d ≤ 0 (−inf allowed): Cephes' degree-5 polynomial on
/// |r| ≤ ln2/2 times 2^n built from bits; within 2 ulp of `f32::exp`, exactly 0
/// below [`EXP_FLOOR`] (so −inf logits contribute nothing).
#[inline(always)]
pub(crate) fn exp_nonpos<const FMA: bool>(d: f32) -> f32 {
    let dc = vmax(d, EXP_FLOOR);
    let t = madd::<FMA>(dc, LOG2E, MAGIC);
    let n = t - MAGIC;
    let r = madd::<FMA>(n, -LN2_HI, dc);
    let r = madd::<FMA>(n, -LN2_LO, r);
    let mut y = EXP_POLY[0];
    for &c in &EXP_POLY[1..] {
        y = madd::<FMA>(y, r, c);
    }
    let r2 = r * r;
    y = madd::<FMA>(y, r2, r + 1.0);
    let scale = f32::from_bits(t.to_bits().wrapping_add(127) << 23);
    let e = y * scale;
    if d > EXP_FLOOR {
        e
    } else {
        0.0
    }
}

#[inline(always)]
fn hsum<const L: usize>(v: &[f32; L]) -> f64 {
    v.iter().map(|&x| x as f64).sum()
}

/// Lane maxima slots per block: each slot is the max of a disjoint subset
/// of the block (strided by the lane count; slots past it stay −inf).
pub const LANE_SLOTS: usize = 16;

/// Max of a slice and whether it holds NaN or +inf; `lanes` receives the
/// per-lane maxima (distinct entries of the slice, so valid selection bounds).
#[inline(always)]
fn max_bad_impl<const L: usize, const CHECK: bool>(
    x: &[f32],
    lanes: &mut [f32; LANE_SLOTS],
) -> (f32, bool) {
    let mut mx = [f32::NEG_INFINITY; L];
    let mut bad = [0u32; L];
    let chunks = x.chunks_exact(L);
    let tail = padded::<L>(chunks.remainder(), f32::NEG_INFINITY);
    for c in chunks {
        max_bad_step::<L, CHECK>(c.try_into().unwrap(), &mut mx, &mut bad);
    }
    if let Some(t) = tail {
        max_bad_step::<L, CHECK>(&t, &mut mx, &mut bad);
    }
    *lanes = [f32::NEG_INFINITY; LANE_SLOTS];
    lanes[..L].copy_from_slice(&mx);
    (
        mx.iter().copied().fold(f32::NEG_INFINITY, vmax),
        bad.iter().any(|&v| v != 0),
    )
}

/// One lanes-wide chunk of [`max_bad_impl`]. (A function, not a closure: a
/// closure is not guaranteed to be inlined into the `target_feature` clone, and
/// compiled on its own it loses the vector ISA.)
#[inline(always)]
fn max_bad_step<const L: usize, const CHECK: bool>(
    c: &[f32; L],
    mx: &mut [f32; L],
    bad: &mut [u32; L],
) {
    for j in 0..L {
        mx[j] = vmax(c[j], mx[j]);
        if CHECK {
            // !(v < +inf) is true exactly for NaN and +inf.
            bad[j] |= (!(c[j] < f32::INFINITY)) as u32;
        }
    }
}

/// The last partial chunk padded to a full one with `fill` (a value every
/// kernel ignores: −inf), so tails run the same vector code as the body
/// instead of a scalar loop that indexes the lane arrays.
#[inline(always)]
fn padded<const L: usize>(rest: &[f32], fill: f32) -> Option<[f32; L]> {
    if rest.is_empty() {
        return None;
    }
    let mut t = [fill; L];
    t[..rest.len()].copy_from_slice(rest);
    Some(t)
}

/// Max of a slice (NaN-free input).
#[inline(always)]
fn max_impl<const L: usize>(x: &[f32]) -> f32 {
    let mut mx = [f32::NEG_INFINITY; L];
    let chunks = x.chunks_exact(L);
    let rest = chunks.remainder();
    for c in chunks {
        let c: &[f32; L] = c.try_into().unwrap();
        for j in 0..L {
            mx[j] = vmax(c[j], mx[j]);
        }
    }
    let m = mx.iter().copied().fold(f32::NEG_INFINITY, vmax);
    rest.iter().copied().fold(m, vmax)
}

/// Per-lane accumulators of [`stats_impl`].
struct StatsLanes<const L: usize> {
    s: [f32; L],
    a: [f32; L],
    b: [f32; L],
    st: [f32; L],
    at: [f32; L],
    n: [u32; L],
}

/// One lanes-wide chunk of [`stats_impl`] (a function, not a closure: see
/// [`max_bad_step`]).
#[inline(always)]
fn stats_step<const L: usize, const FMA: bool, const TEMPER: bool>(
    c: &[f32; L],
    m: f32,
    inv_t: f32,
    acc: &mut StatsLanes<L>,
) {
    for j in 0..L {
        let v = c[j];
        let d = v - m;
        // −inf entries: dc = floor, e = 0, so every product is 0 (never −inf·0).
        let dc = vmax(d, D_FLOOR);
        let e = exp_nonpos::<FMA>(d);
        acc.s[j] += e;
        let ed = e * dc;
        acc.a[j] += ed;
        acc.b[j] = madd::<FMA>(ed, dc, acc.b[j]);
        acc.n[j] += (v > f32::NEG_INFINITY) as u32;
        if TEMPER {
            let et = exp_nonpos::<FMA>(d * inv_t);
            acc.st[j] += et;
            acc.at[j] = madd::<FMA>(et, dc, acc.at[j]);
        }
    }
}

/// The fused statistics of one block (see [`BlockSums`]). `TEMPER` adds the
/// sums at temperature `1/inv_t`. Per-lane f32 accumulators over at most a few
/// hundred values, widened to f64 per block, keep sums accurate to ~1e-7.
#[inline(always)]
fn stats_impl<const L: usize, const FMA: bool, const TEMPER: bool>(
    x: &[f32],
    m: f32,
    inv_t: f32,
) -> BlockSums {
    let mut acc = StatsLanes::<L> {
        s: [0.0; L],
        a: [0.0; L],
        b: [0.0; L],
        st: [0.0; L],
        at: [0.0; L],
        n: [0; L],
    };
    let chunks = x.chunks_exact(L);
    let tail = padded::<L>(chunks.remainder(), f32::NEG_INFINITY);
    for c in chunks {
        stats_step::<L, FMA, TEMPER>(c.try_into().unwrap(), m, inv_t, &mut acc);
    }
    if let Some(c) = tail {
        stats_step::<L, FMA, TEMPER>(&c, m, inv_t, &mut acc);
    }
    BlockSums {
        s: hsum(&acc.s),
        a: hsum(&acc.a),
        b: hsum(&acc.b),
        st: if TEMPER { hsum(&acc.st) } else { 0.0 },
        at: if TEMPER { hsum(&acc.at) } else { 0.0 },
        n: acc.n.iter().sum(),
    }
}

/// [`stats_impl`] for 16 lanes written with AVX-512 intrinsics: the same
/// operations on the same lanes in the same order (so bit-identical sums),
/// but `2^n` is applied with `vscalefps` under a zero mask (one instruction
/// for the generic clone's shift, add, multiply and select) and tails use a
/// masked load. About 12 % fewer instructions per logit in the statistics
/// pass, which dominates `temperature` and `top_p`.
#[cfg(target_arch = "x86_64")]
mod x512 {
    use super::{BlockSums, D_FLOOR, EXP_FLOOR, EXP_POLY, LN2_HI, LN2_LO, LOG2E, MAGIC};
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn exp_nonpos(d: __m512) -> __m512 {
        let dc = _mm512_max_ps(d, _mm512_set1_ps(EXP_FLOOR));
        let t = _mm512_fmadd_ps(dc, _mm512_set1_ps(LOG2E), _mm512_set1_ps(MAGIC));
        let n = _mm512_sub_ps(t, _mm512_set1_ps(MAGIC));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), dc);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let mut y = _mm512_set1_ps(EXP_POLY[0]);
        for &c in &EXP_POLY[1..] {
            y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c));
        }
        let r2 = _mm512_mul_ps(r, r);
        y = _mm512_fmadd_ps(y, r2, _mm512_add_ps(r, _mm512_set1_ps(1.0)));
        let live = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(d, _mm512_set1_ps(EXP_FLOOR));
        _mm512_maskz_scalef_ps(live, y, n)
    }

    #[inline(always)]
    unsafe fn lanes(v: __m512) -> [f32; 16] {
        let mut out = [0f32; 16];
        _mm512_storeu_ps(out.as_mut_ptr(), v);
        out
    }

    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    pub unsafe fn stats<const TEMPER: bool>(x: &[f32], m: f32, inv_t: f32) -> BlockSums {
        let (mv, tv) = (_mm512_set1_ps(m), _mm512_set1_ps(inv_t));
        let (floor, ninf) = (_mm512_set1_ps(D_FLOOR), _mm512_set1_ps(f32::NEG_INFINITY));
        let z = _mm512_setzero_ps();
        let (mut s, mut a, mut b, mut st, mut at) = (z, z, z, z, z);
        let (mut nv, one) = (_mm512_setzero_si512(), _mm512_set1_epi32(1));
        let mut step = |v: __m512| {
            let d = _mm512_sub_ps(v, mv);
            let dc = _mm512_max_ps(d, floor);
            let e = exp_nonpos(d);
            s = _mm512_add_ps(s, e);
            let ed = _mm512_mul_ps(e, dc);
            a = _mm512_add_ps(a, ed);
            b = _mm512_fmadd_ps(ed, dc, b);
            nv = _mm512_mask_add_epi32(nv, _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, ninf), nv, one);
            if TEMPER {
                let et = exp_nonpos(_mm512_mul_ps(d, tv));
                st = _mm512_add_ps(st, et);
                at = _mm512_fmadd_ps(et, dc, at);
            }
        };
        let chunks = x.chunks_exact(16);
        let rest = chunks.remainder();
        for c in chunks {
            step(_mm512_loadu_ps(c.as_ptr()));
        }
        if !rest.is_empty() {
            let k: __mmask16 = (1u32 << rest.len()) as u16 - 1;
            step(_mm512_mask_loadu_ps(ninf, k, rest.as_ptr()));
        }
        let h = |v: __m512| super::hsum(&lanes(v));
        BlockSums {
            s: h(s),
            a: h(a),
            b: h(b),
            st: if TEMPER { h(st) } else { 0.0 },
            at: if TEMPER { h(at) } else { 0.0 },
            n: _mm512_reduce_add_epi32(nv) as u32,
        }
    }
}

/// One lanes-wide chunk of [`tempered_impl`].
#[inline(always)]
fn tempered_step<const L: usize, const FMA: bool>(
    c: &[f32; L],
    m: f32,
    inv_t: f32,
    tau: f32,
    st: &mut [f32; L],
    at: &mut [f32; L],
) {
    for j in 0..L {
        let v = c[j];
        let d = v - m;
        let dc = vmax(d, D_FLOOR);
        let e = exp_nonpos::<FMA>(d * inv_t);
        let e = if v >= tau { e } else { 0.0 };
        st[j] += e;
        at[j] = madd::<FMA>(e, dc, at[j]);
    }
}

/// `(Σ e^((x−m)/T), Σ (x−m)·e^((x−m)/T))` over the entries with `x ≥ tau`.
#[inline(always)]
fn tempered_impl<const L: usize, const FMA: bool>(
    x: &[f32],
    m: f32,
    inv_t: f32,
    tau: f32,
) -> (f64, f64) {
    let mut st = [0f32; L];
    let mut at = [0f32; L];
    let chunks = x.chunks_exact(L);
    let tail = padded::<L>(chunks.remainder(), f32::NEG_INFINITY);
    for c in chunks {
        tempered_step::<L, FMA>(c.try_into().unwrap(), m, inv_t, tau, &mut st, &mut at);
    }
    if let Some(c) = tail {
        tempered_step::<L, FMA>(&c, m, inv_t, tau, &mut st, &mut at);
    }
    (hsum(&st), hsum(&at))
}

/// `e^((x−m)/T)` for `x ≥ tau`, else 0, written to `out` (same length as `x`).
#[inline(always)]
fn weights_impl<const L: usize, const FMA: bool>(
    x: &[f32],
    m: f32,
    inv_t: f32,
    tau: f32,
    out: &mut [f32],
) {
    let out = &mut out[..x.len()];
    for (o, &v) in out.iter_mut().zip(x) {
        let e = exp_nonpos::<FMA>((v - m) * inv_t);
        *o = if v >= tau { e } else { 0.0 };
    }
}

/// Number of entries `≥ tau`.
#[inline(always)]
fn count_ge_impl<const L: usize>(x: &[f32], tau: f32) -> usize {
    let mut n = [0u32; L];
    let chunks = x.chunks_exact(L);
    let rest = chunks.remainder();
    for c in chunks {
        let c: &[f32; L] = c.try_into().unwrap();
        for j in 0..L {
            n[j] += (c[j] >= tau) as u32;
        }
    }
    let n: usize = n.iter().map(|&v| v as usize).sum();
    n + rest.iter().filter(|&&v| v >= tau).count()
}

/// Appends `(x_i, base + i)` for every `x_i ≥ tau`, in index order. A vector
/// compare rejects whole lanes-wide chunks; the scalar append runs only on
/// chunks that hold a candidate.
#[inline(always)]
fn compact_ge_impl<const L: usize>(
    x: &[f32],
    tau: f32,
    base: u32,
    vals: &mut Vec<f32>,
    ids: &mut Vec<u32>,
) {
    let chunks = x.chunks_exact(L);
    let rest_start = x.len() - chunks.remainder().len();
    for (ci, c) in chunks.enumerate() {
        let c: &[f32; L] = c.try_into().unwrap();
        let mut any = false;
        for j in 0..L {
            any |= c[j] >= tau;
        }
        if any {
            for (j, &v) in c.iter().enumerate() {
                if v >= tau {
                    vals.push(v);
                    ids.push(base + (ci * L + j) as u32);
                }
            }
        }
    }
    for (j, &v) in x[rest_start..].iter().enumerate() {
        if v >= tau {
            vals.push(v);
            ids.push(base + (rest_start + j) as u32);
        }
    }
}

/// [`compact_ge_impl`] with AVX-512 compress-stores: a chunk that holds
/// candidates appends them with two stores instead of a scalar loop whose
/// branches mispredict on every candidate.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn compact_ge_avx512(
    x: &[f32],
    tau: f32,
    base: u32,
    vals: &mut Vec<f32>,
    ids: &mut Vec<u32>,
) {
    use std::arch::x86_64::*;
    let t = _mm512_set1_ps(tau);
    let step = _mm512_set1_epi32(16);
    let mut idx = _mm512_add_epi32(
        _mm512_set1_epi32(base as i32),
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
    );
    let chunks = x.chunks_exact(16);
    let rest_start = x.len() - chunks.remainder().len();
    for c in chunks {
        // SAFETY: `c` holds 16 f32; the stores write at most 16 entries into
        // capacity reserved just before, and the lengths grow by exactly the
        // number written.
        unsafe {
            let v = _mm512_loadu_ps(c.as_ptr());
            let k = _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, t);
            if k != 0 {
                let n = k.count_ones() as usize;
                vals.reserve(16);
                ids.reserve(16);
                let len = vals.len();
                _mm512_mask_compressstoreu_ps(vals.as_mut_ptr().add(len), k, v);
                _mm512_mask_compressstoreu_epi32(ids.as_mut_ptr().add(len) as *mut i32, k, idx);
                vals.set_len(len + n);
                ids.set_len(len + n);
            }
        }
        idx = _mm512_add_epi32(idx, step);
    }
    for (j, &v) in x[rest_start..].iter().enumerate() {
        if v >= tau {
            vals.push(v);
            ids.push(base + (rest_start + j) as u32);
        }
    }
}

/// Σ x as a streaming read (the memory-bandwidth probe).
#[inline(always)]
fn read_sum_impl<const L: usize>(x: &[f32]) -> f32 {
    // Four independent lane groups hide the add latency, so the loop is
    // limited by loads alone.
    let mut acc = [[0f32; L]; 4];
    let chunks = x.chunks_exact(4 * L);
    let rest = chunks.remainder();
    for c in chunks {
        for (g, part) in c.chunks_exact(L).enumerate() {
            let part: &[f32; L] = part.try_into().unwrap();
            for j in 0..L {
                acc[g][j] += part[j];
            }
        }
    }
    let mut s: f32 = acc.iter().flatten().sum();
    for &v in rest {
        s += v;
    }
    s
}

/// Offers every entry above the current n-th largest to `top` (a chunk max
/// rejects most chunks without a scalar look).
#[inline(always)]
fn top_n_impl<const L: usize>(x: &[f32], base: u32, top: &mut super::select::TopN) {
    const CHUNK: usize = 64;
    let mut i = 0;
    for c in x.chunks(CHUNK) {
        let mx = max_impl::<L>(c);
        if mx > f32::NEG_INFINITY && top.wants(mx) {
            for (j, &v) in c.iter().enumerate() {
                if v > f32::NEG_INFINITY && top.wants(v) {
                    top.offer(v, base + (i + j) as u32);
                }
            }
        }
        i += c.len();
    }
}

/// `e^x` in f64 for `x ≤ 0` (−inf and below −745.2: 0), within a few ulp of
/// the correctly rounded value and branch-free (the extended samplers'
/// weights, src/cpu/extended.rs): Cody–Waite reduction `x = n·ln 2 + r`,
/// `|r| ≤ ln 2 / 2`, the degree-13 Taylor polynomial (truncation below
/// 1e-17), and `2^n` built from bits in two halves, so that results down to
/// the subnormals need no branch. `e^0` is exactly 1.
#[inline(always)]
fn exp64<const FMA: bool>(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    // fdlibm's split of ln 2: n·LN2_HI is exact for |n| < 2^20.
    const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);
    // 1.5·2^52: adding it rounds to an integer held in the low mantissa bits.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    const C: [f64; 14] = [
        1.0,
        1.0,
        1.0 / 2.0,
        1.0 / 6.0,
        1.0 / 24.0,
        1.0 / 120.0,
        1.0 / 720.0,
        1.0 / 5040.0,
        1.0 / 40320.0,
        1.0 / 362_880.0,
        1.0 / 3_628_800.0,
        1.0 / 39_916_800.0,
        1.0 / 479_001_600.0,
        1.0 / 6_227_020_800.0,
    ];
    let fma = |a: f64, b: f64, c: f64| if FMA { a.mul_add(b, c) } else { a * b + c };
    let xc = x.max(-745.2);
    let n = fma(xc, LOG2E, SHIFT) - SHIFT;
    let r = fma(-n, LN2_LO, fma(-n, LN2_HI, xc));
    let mut p = C[13];
    for i in (0..13).rev() {
        p = fma(p, r, C[i]);
    }
    let pow2 = |k: f64| {
        let bits = (k + SHIFT)
            .to_bits()
            .wrapping_sub(SHIFT.to_bits())
            .wrapping_add(1023);
        f64::from_bits(bits << 52)
    };
    let n1 = (n * 0.5 + SHIFT) - SHIFT;
    let v = p * pow2(n1) * pow2(n - n1);
    if x < -745.2 {
        0.0
    } else {
        v
    }
}

/// `out[i] = e^((ys[i] − m)/t)` (every `ys[i] ≤ m`), returning `Σ out` (four
/// partial sums).
#[inline(always)]
fn exp_shifted_impl<const FMA: bool>(ys: &[f64], m: f64, t: f64, out: &mut [f64]) -> f64 {
    for (o, &y) in out.iter_mut().zip(ys) {
        *o = exp64::<FMA>((y - m) / t);
    }
    sum64(out)
}

/// `out[i] = e^(xs[i])` (every `xs[i] ≤ 0`).
#[inline(always)]
fn exp_impl<const FMA: bool>(xs: &[f64], out: &mut [f64]) {
    for (o, &x) in out.iter_mut().zip(xs) {
        *o = exp64::<FMA>(x);
    }
}

#[inline(always)]
fn sum64(v: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    let chunks = v.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..4 {
            acc[j] += c[j];
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + rest.iter().sum::<f64>()
}

// ---------------------------------------------------------------------------
// The clones and the dispatcher.

macro_rules! clone_kernels {
    ($modname:ident, $feat:literal, $lanes:literal, $fma:literal) => {
        #[allow(unused_unsafe, clippy::missing_safety_doc)]
        mod $modname {
            use super::*;

            #[cfg_attr(target_arch = "x86_64", target_feature(enable = $feat))]
            pub unsafe fn max_bad(x: &[f32], lanes: &mut [f32; LANE_SLOTS]) -> (f32, bool) {
                max_bad_impl::<$lanes, true>(x, lanes)
            }
            #[cfg_attr(target_arch = "x86_64", target_feature(enable = $feat))]
            pub unsafe fn max_lanes(x: &[f32], lanes: &mut [f32; LANE_SLOTS]) -> f32 {
                max_bad_impl::<$lanes, false>(x, lanes).0
            }
            #[cfg_attr(target_arch = "x86_64", target_feature(enable = $feat))]
            pub unsafe fn stats(x: &[f32], m: f32, inv_t: f32, temper: bool) -> BlockSums {
                if temper {
                    stats_impl::<$lanes, $fma, true>(x, m, inv_t)
                } else {
                    stats_impl::<$lanes, $fma, false>(x, m, inv_t)
                }
            }
            #[cfg_attr(target_arch = "x86_64", target_feature(enable = $feat))]
            pub unsafe fn tempered(x: &[f32], m: f32, inv_t: f32, tau: f32) -> (f64, f64) {
                tempered_impl::<$lanes, $fma>(x, m, inv_t, tau)
            }
            #[cfg_attr(target_arch = "x86_64", target_feature(enable = $feat))]
            pub unsafe fn weights(x: &[f32], m: f32, inv_t: f32, tau: f32, out: &mut [f32]) {
                weights_impl::<$lanes, $fma>(x, m, inv_t, tau, out)
            }
            #[cfg_attr(target_arch = "x86_64", target_feature(enable = $feat))]
            pub unsafe fn count_ge(x: &[f32], tau: f32) -> usize {
                count_ge_impl::<$lanes>(x, tau)
            }
            #[cfg_attr(target_arch = "x86_64", target_feature(enable = $feat))]
            pub unsafe fn compact_ge(
                x: &[f32],
                tau: f32,
                base: u32,
                vals: &mut Vec<f32>,
                ids: &mut Vec<u32>,
            ) {
                compact_ge_impl::<$lanes>(x, tau, base, vals, ids)
            }
            #[cfg_attr(target_arch = "x86_64", target_feature(enable = $feat))]
            pub unsafe fn exp_shifted(ys: &[f64], m: f64, t: f64, out: &mut [f64]) -> f64 {
                exp_shifted_impl::<$fma>(ys, m, t, out)
            }
            #[cfg_attr(target_arch = "x86_64", target_feature(enable = $feat))]
            pub unsafe fn exp(xs: &[f64], out: &mut [f64]) {
                exp_impl::<$fma>(xs, out)
            }
            #[cfg_attr(target_arch = "x86_64", target_feature(enable = $feat))]
            pub unsafe fn read_sum(x: &[f32]) -> f32 {
                read_sum_impl::<$lanes>(x)
            }
            #[cfg_attr(target_arch = "x86_64", target_feature(enable = $feat))]
            pub unsafe fn top_n(x: &[f32], base: u32, top: &mut super::super::select::TopN) {
                top_n_impl::<$lanes>(x, base, top)
            }
        }
    };
}

clone_kernels!(avx512, "avx512f,avx512vl,avx2,fma", 16, true);
clone_kernels!(avx2, "avx2,fma", 8, true);
clone_kernels!(baseline, "sse2", 4, false);

/// The kernels for one [`Isa`], chosen once per sampler.
#[derive(Debug, Clone, Copy)]
pub struct Kernels {
    isa: Isa,
}

macro_rules! dispatch {
    ($self:ident, $f:ident($($arg:expr),*)) => {
        // SAFETY: `Kernels::new` only stores an ISA that `Isa::detect` found
        // on this CPU (or the baseline, which every x86-64 CPU has).
        unsafe {
            match $self.isa {
                Isa::Avx512 => avx512::$f($($arg),*),
                Isa::Avx2 => avx2::$f($($arg),*),
                Isa::Baseline => baseline::$f($($arg),*),
            }
        }
    };
}

impl Kernels {
    /// Kernels for the best ISA of this CPU (see [`Isa::detect`]).
    pub fn detect() -> Kernels {
        Kernels { isa: Isa::detect() }
    }

    /// Kernels for `isa` if this CPU runs it, else for the best one it does.
    pub fn with_isa(isa: Isa) -> Kernels {
        let best = Isa::best_supported();
        let ok = match isa {
            Isa::Baseline => true,
            Isa::Avx2 => best != Isa::Baseline,
            Isa::Avx512 => best == Isa::Avx512,
        };
        Kernels {
            isa: if ok { isa } else { best },
        }
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Max, NaN/+inf flag and lane maxima of a block.
    #[inline]
    pub fn max_bad(&self, x: &[f32], lanes: &mut [f32; LANE_SLOTS]) -> (f32, bool) {
        dispatch!(self, max_bad(x, lanes))
    }
    /// Max and lane maxima of a block known to be NaN-free.
    #[inline]
    pub fn max_lanes(&self, x: &[f32], lanes: &mut [f32; LANE_SLOTS]) -> f32 {
        dispatch!(self, max_lanes(x, lanes))
    }
    #[inline]
    pub fn stats(&self, x: &[f32], m: f32, inv_t: f32, temper: bool) -> BlockSums {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 {
            // SAFETY: `isa` is only Avx512 where the CPU runs AVX-512F/VL.
            return unsafe {
                if temper {
                    x512::stats::<true>(x, m, inv_t)
                } else {
                    x512::stats::<false>(x, m, inv_t)
                }
            };
        }
        dispatch!(self, stats(x, m, inv_t, temper))
    }
    #[inline]
    pub fn tempered(&self, x: &[f32], m: f32, inv_t: f32, tau: f32) -> (f64, f64) {
        dispatch!(self, tempered(x, m, inv_t, tau))
    }
    #[inline]
    pub fn weights(&self, x: &[f32], m: f32, inv_t: f32, tau: f32, out: &mut [f32]) {
        dispatch!(self, weights(x, m, inv_t, tau, out))
    }
    #[inline]
    pub fn count_ge(&self, x: &[f32], tau: f32) -> usize {
        dispatch!(self, count_ge(x, tau))
    }
    #[inline]
    pub fn compact_ge(
        &self,
        x: &[f32],
        tau: f32,
        base: u32,
        vals: &mut Vec<f32>,
        ids: &mut Vec<u32>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 {
            // SAFETY: Isa::Avx512 is only stored when the CPU has AVX-512F.
            unsafe { compact_ge_avx512(x, tau, base, vals, ids) };
            return;
        }
        dispatch!(self, compact_ge(x, tau, base, vals, ids))
    }
    /// `out[i] = e^((ys[i] − m)/t)` in f64 for `ys[i] ≤ m` (a few ulp from the
    /// correctly rounded value), returning their sum; `out` is resized.
    #[inline]
    pub fn exp_shifted(&self, ys: &[f64], m: f64, t: f64, out: &mut Vec<f64>) -> f64 {
        out.resize(ys.len(), 0.0);
        dispatch!(self, exp_shifted(ys, m, t, out))
    }
    /// `out[i] = e^(xs[i])` in f64 for `xs[i] ≤ 0`; `out` is resized.
    #[inline]
    pub fn exp(&self, xs: &[f64], out: &mut Vec<f64>) {
        out.resize(xs.len(), 0.0);
        dispatch!(self, exp(xs, out))
    }
    #[inline]
    pub fn read_sum(&self, x: &[f32]) -> f32 {
        dispatch!(self, read_sum(x))
    }
    #[inline]
    pub fn top_n(&self, x: &[f32], base: u32, top: &mut super::select::TopN) {
        dispatch!(self, top_n(x, base, top))
    }
}

/// The smallest f32 `≥ v`, so that for any f32 `x`, `x ≥ ceil_f32(v)` ⇔ `x ≥ v`
/// (a threshold computed in f64 applied exactly to f32 logits).
pub fn ceil_f32(v: f64) -> f32 {
    let f = v as f32;
    if (f as f64) < v {
        next_up(f)
    } else {
        f
    }
}

/// The next f32 above a finite `f` (`f32::next_up`, which needs Rust 1.86).
fn next_up(f: f32) -> f32 {
    if f == 0.0 {
        f32::from_bits(1)
    } else if f > 0.0 {
        f32::from_bits(f.to_bits() + 1)
    } else {
        f32::from_bits(f.to_bits() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Kernels> {
        [Isa::Avx512, Isa::Avx2, Isa::Baseline]
            .into_iter()
            .map(Kernels::with_isa)
            .collect()
    }

    #[test]
    fn exp_matches_libm_within_2ulp_and_floors_to_zero() {
        let mut worst = 0f64;
        let mut d = -86.99f32;
        while d <= 0.0 {
            let got = exp_nonpos::<true>(d) as f64;
            let want = (d as f64).exp();
            worst = worst.max((got - want).abs() / want);
            let got = exp_nonpos::<false>(d) as f64;
            worst = worst.max((got - want).abs() / want);
            d += 0.000_37;
        }
        // f32 epsilon is 1.19e-7: two ulp.
        assert!(worst < 2.4e-7, "worst relative error {worst}");
        assert_eq!(exp_nonpos::<true>(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpos::<true>(-200.0), 0.0);
        assert_eq!(exp_nonpos::<false>(-87.5), 0.0);
        assert_eq!(exp_nonpos::<true>(0.0), 1.0);
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn avx512_stats_are_bit_identical_to_the_generic_16_lane_clone() {
        if Isa::best_supported() != Isa::Avx512 {
            eprintln!("no AVX-512 on this CPU: nothing to compare");
            return;
        }
        let mut g = 0x1234_5678u64;
        let mut next = || {
            g ^= g << 13;
            g ^= g >> 7;
            g ^= g << 17;
            (g >> 40) as f32 / (1u64 << 24) as f32
        };
        for len in [1usize, 15, 16, 17, 300, 512] {
            let x: Vec<f32> = (0..len)
                .map(|i| match i % 41 {
                    3 => f32::NEG_INFINITY,
                    7 => -90.0 - next() * 20.0, // below the exp floor
                    _ => (next() - 0.5) * 40.0,
                })
                .collect();
            let m = x.iter().copied().fold(f32::NEG_INFINITY, vmax);
            for &(inv_t, temper) in &[
                (1.0f32, false),
                (1.0 / 0.7, true),
                (10.0, true),
                (0.5, true),
            ] {
                let got = Kernels::with_isa(Isa::Avx512).stats(&x, m, inv_t, temper);
                // SAFETY: AVX-512 checked above.
                let want = unsafe { avx512::stats(&x, m, inv_t, temper) };
                assert_eq!(got, want, "len {len} inv_t {inv_t}");
            }
        }
    }

    #[test]
    fn every_clone_agrees_with_plain_f64_sums() {
        let x: Vec<f32> = (0..1003)
            .map(|i| {
                if i % 97 == 5 {
                    f32::NEG_INFINITY
                } else {
                    ((i * 7919) % 1000) as f32 * 0.013 - 6.0
                }
            })
            .collect();
        let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let t = 0.7f64;
        let (mut s, mut a, mut b, mut st, mut at, mut n) = (0.0, 0.0, 0.0, 0.0, 0.0, 0);
        for &v in &x {
            if v == f32::NEG_INFINITY {
                continue;
            }
            let d = v as f64 - m as f64;
            s += d.exp();
            a += d * d.exp();
            b += d * d * d.exp();
            st += (d / t).exp();
            at += d * (d / t).exp();
            n += 1;
        }
        for k in all() {
            let mut lanes = [0f32; LANE_SLOTS];
            let (mx, bad) = k.max_bad(&x, &mut lanes);
            assert_eq!((mx, bad), (m, false), "{:?}", k.isa());
            assert_eq!(lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max), m);
            assert!(lanes
                .iter()
                .all(|l| *l == f32::NEG_INFINITY || x.contains(l)));
            assert_eq!(k.max_lanes(&x, &mut lanes), m);
            let got = k.stats(&x, m, (1.0 / t) as f32, true);
            for (g, w) in [
                (got.s, s),
                (got.a, a),
                (got.b, b),
                (got.st, st),
                (got.at, at),
            ] {
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                    "{:?}: {g} vs {w}",
                    k.isa()
                );
            }
            assert_eq!(got.n, n);
            let plain = k.stats(&x, m, 1.0, false);
            assert_eq!(plain.st, 0.0);
            assert!((plain.s - s).abs() < 1e-5 * s);
            let tau = -1.5f32;
            let (ts, _) = k.tempered(&x, m, (1.0 / t) as f32, tau);
            let want: f64 = x
                .iter()
                .filter(|&&v| v >= tau)
                .map(|&v| ((v as f64 - m as f64) / t).exp())
                .sum();
            assert!((ts - want).abs() < 1e-5 * want);
            assert_eq!(k.count_ge(&x, tau), x.iter().filter(|&&v| v >= tau).count());
            let (mut vals, mut ids) = (Vec::new(), Vec::new());
            k.compact_ge(&x, tau, 10, &mut vals, &mut ids);
            let want: Vec<u32> = (0..x.len() as u32)
                .filter(|&i| x[i as usize] >= tau)
                .map(|i| i + 10)
                .collect();
            assert_eq!(ids, want);
            assert!(vals
                .iter()
                .zip(&ids)
                .all(|(&v, &i)| v == x[i as usize - 10]));
            let mut w = vec![0f32; x.len()];
            k.weights(&x, m, 1.0, tau, &mut w);
            for (i, &v) in x.iter().enumerate() {
                let want = if v >= tau {
                    (v as f64 - m as f64).exp()
                } else {
                    0.0
                };
                // x − m rounds to f32 (≤ 1 ulp of 8 ≈ 5e-7) before the exp.
                assert!((w[i] as f64 - want).abs() <= 1e-6 * want, "{i}");
            }
            let rs = k.read_sum(&x[..100]);
            assert!(rs.is_infinite() && rs < 0.0);
        }
    }

    #[test]
    fn max_bad_flags_nan_and_pos_inf_only() {
        for k in all() {
            let mut x = vec![0.5f32; 77];
            x[3] = f32::NEG_INFINITY;
            let mut lanes = [0f32; LANE_SLOTS];
            assert_eq!(k.max_bad(&x, &mut lanes), (0.5, false));
            for bad in [f32::NAN, f32::INFINITY] {
                for pos in [0, 40, 76] {
                    let mut y = x.clone();
                    y[pos] = bad;
                    assert!(k.max_bad(&y, &mut lanes).1, "{:?} {bad} at {pos}", k.isa());
                }
            }
        }
    }

    #[test]
    fn ceil_f32_is_an_exact_threshold() {
        for v in [0.1f64, -3.3, 1e-40, 7.0, -1e30] {
            let c = ceil_f32(v);
            assert!(c as f64 >= v);
            // The f32 just below c is below v.
            let below = if c > 0.0 {
                f32::from_bits(c.to_bits() - 1)
            } else {
                f32::from_bits(c.to_bits() + 1)
            };
            assert!((below as f64) < v);
        }
    }

    #[test]
    fn exp64_is_within_a_few_ulp_of_libm() {
        for k in all() {
            let mut xs: Vec<f64> = (0..200_000).map(|i| -(i as f64) * 0.003_731).collect();
            xs.extend([
                0.0, -0.0, -1e-300, -1e-12, -0.34657, -0.34658, -708.0, -709.9,
            ]);
            xs.extend([-744.0, -745.1, -745.3, -1e10, f64::NEG_INFINITY, -f64::MAX]);
            let mut out = Vec::new();
            k.exp(&xs, &mut out);
            let mut worst = 0f64;
            for (&x, &got) in xs.iter().zip(&out) {
                let want = x.exp();
                if want < f64::MIN_POSITIVE {
                    // Subnormal results: within a few units of 2^-1074.
                    assert!((got - want).abs() <= 4.0 * 4.9e-324, "{x}: {got} vs {want}");
                    continue;
                }
                let ulps = (got - want).abs() / (want * f64::EPSILON);
                worst = worst.max(ulps);
                assert!(
                    ulps <= 4.0,
                    "{:?} e^{x}: {got} vs {want} ({ulps} ulp)",
                    k.isa()
                );
            }
            assert_eq!(out[xs.len() - 14], 1.0);
            let mut w = Vec::new();
            let z = k.exp_shifted(&[1.0, 0.5, 2.0], 2.0, 0.5, &mut w);
            assert_eq!(w[2], 1.0);
            assert!((z - (1.0 + (-2.0f64).exp() + (-3.0f64).exp())).abs() < 1e-15);
            eprintln!("{:?}: worst {worst:.2} ulp", k.isa());
        }
    }

    #[test]
    #[ignore]
    fn exp64_timing() {
        let xs: Vec<f64> = (0..131_072)
            .map(|i| -((i * 7919) % 1000) as f64 * 0.01)
            .collect();
        let k = Kernels::detect();
        let mut out = Vec::new();
        for _ in 0..3 {
            let t0 = std::time::Instant::now();
            for _ in 0..20 {
                k.exp(&xs, &mut out);
                std::hint::black_box(&out);
            }
            let fast = t0.elapsed().as_secs_f64() / 20.0;
            let t0 = std::time::Instant::now();
            for _ in 0..20 {
                out.clear();
                out.extend(xs.iter().map(|x| x.exp()));
                std::hint::black_box(&out);
            }
            let libm = t0.elapsed().as_secs_f64() / 20.0;
            eprintln!(
                "131072 exps: vector {:.1} us, libm {:.1} us",
                fast * 1e6,
                libm * 1e6
            );
        }
    }
}
