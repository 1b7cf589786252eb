// Entropy-guided temperature (SPEC §4), computed on the device from the
// row's own entropy: no host round trip. Parameters come from the row record
// (M_DYN..), each real number as a two-float pair the host rounded from the
// f64 value the reference uses (`widen`), so the device evaluates the same
// mapping as the reference does:
//   20      max_entropy (f32)
//   21..28  four mapping numbers (pairs):  linear  h_low, h_high − h_low, t_min, t_max − t_min
//                                          sigmoid h_mid, steepness, t_min, t_max − t_min
//                                          edt     t0, theta·ln(base)
//                                          llama   t_min, t_max − t_min, exponent
//                                          lut     (u32) offset, length of (entropy, T) pair pairs
//   29..32  top_p low, high − low (pairs)
//
// SPEC §7 wants T within 1e-6 (relative) of the f64 mapping of the row's own
// guide. f32 cannot do that: the argument of exp(x) at |x| ≈ 15 already
// carries 5e-7 of rounding, and WGSL's exp/log allow errors of several ulp
// (more for large |x|). So the mapping runs in two-float arithmetic (a value
// is hi + lo, ~44 bits), with exp and log by range reduction, a Taylor series
// and Newton steps; it is evaluated once per row, so its cost does not matter.
//
// The error-free transformations are written so that no compiler rewrite can
// undo them: products of 12-bit halves (split by masking bits) are exact, so
// fusing a multiply into an add changes nothing, and every sum whose rounding
// error is recovered passes through `opq`, an identity (xor with a zero only
// the uniform knows) that keeps algebraic simplification from cancelling it.

const K_LINEAR: u32 = 0u;
const K_SIGMOID: u32 = 1u;
const K_LUT: u32 = 2u;
const K_EDT: u32 = 3u;
const K_LLAMA: u32 = 4u;

const M_TOPP_DYN: u32 = 29u;

fn opq(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) ^ OPQ_ZERO); }

// ---- two-float arithmetic: vec2(hi, lo) -------------------------------------

fn two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = opq(a + b);
    let bb = opq(s - a);
    return vec2<f32>(s, (a - (s - bb)) + (b - bb));
}

fn split12(a: f32) -> vec2<f32> {
    let hi = bitcast<f32>(bitcast<u32>(a) & 0xfffff000u);
    return vec2<f32>(hi, a - hi);
}

fn two_prod(a: f32, b: f32) -> vec2<f32> {
    let p = opq(a * b);
    let x = split12(a);
    let y = split12(b);
    return vec2<f32>(p, ((x.x * y.x - p) + x.x * y.y + x.y * y.x) + x.y * y.y);
}

fn dd(x: f32) -> vec2<f32> { return vec2<f32>(x, 0.0); }

fn dd_norm(hi: f32, lo: f32) -> vec2<f32> { return two_sum(hi, lo); }

fn dd_add(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let s = two_sum(a.x, b.x);
    let t = two_sum(a.y, b.y);
    let u = dd_norm(s.x, s.y + t.x);
    return dd_norm(u.x, u.y + t.y);
}

fn dd_sub(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> { return dd_add(a, -b); }

fn dd_mul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let p = two_prod(a.x, b.x);
    return dd_norm(p.x, p.y + (a.x * b.y + a.y * b.x));
}

// Division: WGSL's f32 `/` may be off by a few ulp, so each quotient digit
// is corrected from the exact remainder.
fn dd_div(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let q1 = a.x / b.x;
    let r1 = dd_sub(a, dd_mul(b, dd(q1)));
    let q2 = r1.x / b.x;
    let r2 = dd_sub(r1, dd_mul(b, dd(q2)));
    let q3 = r2.x / b.x;
    return dd_add(two_sum(q1, q2), dd(q3));
}

fn dd_f(a: vec2<f32>) -> f32 { return a.x + a.y; }

// a ≤ b, exactly.
fn dd_le(a: vec2<f32>, b: vec2<f32>) -> bool { return dd_sub(b, a).x >= 0.0; }

const LN2_DD: vec2<f32> = vec2<f32>(0.693147182464599609375, -1.904654323148236e-09);

// e^x for a two-float x: x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by its Taylor
// series to r^14 (truncation < 1e-17), then scaled by 2^n.
fn dd_exp(x: vec2<f32>) -> vec2<f32> {
    if (x.x < -120.0) { return vec2<f32>(0.0); }
    let n = round(x.x / LN2_DD.x);
    let r = dd_sub(x, dd_mul(LN2_DD, dd(n)));
    var p = dd(1.0);
    for (var k = 14; k >= 1; k--) {
        p = dd_add(dd(1.0), dd_div(dd_mul(p, r), dd(f32(k))));
    }
    let e = i32(n);
    return vec2<f32>(ldexp(p.x, e), ldexp(p.y, e));
}

// ln y for y > 0: y = 2^e·f with f in [0.5, 1), f32 log of f, two Newton
// steps on e^l = f (each squares the relative error), plus e·ln 2.
fn dd_log(y: vec2<f32>) -> vec2<f32> {
    let fr = frexp(y.x);
    let f = vec2<f32>(fr.fract, ldexp(y.y, -fr.exp));
    var l = dd(log(f.x));
    for (var i = 0u; i < 2u; i++) {
        l = dd_add(l, dd_sub(dd_mul(f, dd_exp(-l)), dd(1.0)));
    }
    return dd_add(l, dd_mul(LN2_DD, dd(f32(fr.exp))));
}

// An integer count as a two-float.
fn dd_count(n: u32) -> vec2<f32> { return two_sum(f32(n & 0xffff0000u), f32(n & 0xffffu)); }

// ---- the mapping -------------------------------------------------------------

fn dyn_f(r: u32, i: u32) -> f32 { return bitcast<f32>(mrec(r, M_DYN + i)); }
fn dyn_dd(r: u32, i: u32) -> vec2<f32> { return vec2<f32>(dyn_f(r, i), dyn_f(r, i + 1u)); }
fn map_kind(r: u32) -> u32 { return (mrec(r, M_FLAGS) >> 5u) & 7u; }
fn map_unit(r: u32) -> u32 { return (mrec(r, M_FLAGS) >> 8u) & 3u; }

// The guide entropy in the mapping's unit after the clip (llama_cpp: nats).
// This f32 value is what the row reports, and what the mapping below maps.
fn guide_of(r: u32, h: f32, n: u32) -> f32 {
    if (map_kind(r) == K_LLAMA) { return h; }
    var g = h;
    let unit = map_unit(r);
    if (unit == 1u) {
        g = h * 1.4426950408889634;
    } else if (unit == 2u) {
        g = select(h / log(f32(n)), 0.0, n <= 1u);
    }
    if ((mrec(r, M_FLAGS) & F_HAS_MAXENT) != 0u) {
        g = min(g, dyn_f(r, 0u));
    }
    return g;
}

// s in [0, 1] for linear / sigmoid.
fn strength(r: u32, g: f32) -> vec2<f32> {
    if (map_kind(r) == K_LINEAR) {
        let s = dd_div(dd_sub(dd(g), dyn_dd(r, 1u)), dyn_dd(r, 3u));
        if (s.x <= 0.0) { return dd(0.0); }
        if (s.x >= 1.0) { return dd(1.0); }
        return s;
    }
    // 1/(1 + e^−x), x = steepness·(g − h_mid), from e^(−|x|) ≤ 1 either way.
    let x = dd_mul(dyn_dd(r, 3u), dd_sub(dd(g), dyn_dd(r, 1u)));
    if (x.x >= 0.0) {
        return dd_div(dd(1.0), dd_add(dd(1.0), dd_exp(-x)));
    }
    let e = dd_exp(x);
    return dd_div(e, dd_add(dd(1.0), e));
}

fn lut_dd(off: u32, i: u32, which: u32) -> vec2<f32> {
    let w = off + 4u * i + 2u * which;
    return vec2<f32>(bitcast<f32>(prm[w]), bitcast<f32>(prm[w + 1u]));
}

// Piecewise-linear T over the (entropy, T) pairs, clamped at both ends.
fn lut_temperature(r: u32, g: f32) -> vec2<f32> {
    let off = mrec(r, M_DYN + 1u);
    let len = mrec(r, M_DYN + 2u);
    let gd = dd(g);
    if (dd_le(gd, lut_dd(off, 0u, 0u))) { return lut_dd(off, 0u, 1u); }
    // i = the number of entropies ≤ g (the reference's partition point).
    var i = 0u;
    while (i < len && dd_le(lut_dd(off, i, 0u), gd)) { i += 1u; }
    if (i >= len) { return lut_dd(off, len - 1u, 1u); }
    let ea = lut_dd(off, i - 1u, 0u);
    let ta = lut_dd(off, i - 1u, 1u);
    let eb = lut_dd(off, i, 0u);
    let tb = lut_dd(off, i, 1u);
    return dd_add(ta, dd_mul(dd_sub(tb, ta), dd_div(dd_sub(gd, ea), dd_sub(eb, ea))));
}

// T for guide g (n: the count of tokens the entropy was taken over;
// t_static: the row's temperature). 0 means greedy.
fn map_temperature(r: u32, g: f32, n: u32, t_static: f32) -> f32 {
    let kind = map_kind(r);
    if (kind == K_LINEAR || kind == K_SIGMOID) {
        return dd_f(dd_add(dyn_dd(r, 5u), dd_mul(dyn_dd(r, 7u), strength(r, g))));
    }
    if (kind == K_LUT) {
        return max(0.0, dd_f(lut_temperature(r, g)));
    }
    if (kind == K_EDT) {
        let t0 = dyn_dd(r, 1u);
        if (g <= 0.0 || t0.x <= 0.0) { return 0.0; }
        // A T that underflows f32 is still not greedy (ties at the max stay
        // tied): keep the smallest normal value instead of 0.
        let t = dd_f(dd_mul(t0, dd_exp(dd_div(dyn_dd(r, 3u), dd(g)))));
        return max(t, 1.17549435e-38);
    }
    // llama.cpp temp_ext: t_min + (t_max − t_min)·(H / ln N)^exponent.
    if (n <= 1u) { return t_static; }
    let norm = dd_div(dd(g), dd_log(dd_count(n)));
    var p = dd(0.0);
    if (norm.x > 0.0) { p = dd_exp(dd_mul(dyn_dd(r, 5u), dd_log(norm))); }
    return dd_f(dd_add(dyn_dd(r, 1u), dd_mul(dyn_dd(r, 3u), p)));
}

// The entropy-driven top-p, or `fallback` when not configured.
fn map_top_p(r: u32, g: f32, fallback: f32) -> f32 {
    if ((mrec(r, M_FLAGS) & F_DYN_TOPP) == 0u) { return fallback; }
    let lo = vec2<f32>(bitcast<f32>(mrec(r, M_TOPP_DYN)), bitcast<f32>(mrec(r, M_TOPP_DYN + 1u)));
    let span = vec2<f32>(bitcast<f32>(mrec(r, M_TOPP_DYN + 2u)), bitcast<f32>(mrec(r, M_TOPP_DYN + 3u)));
    return dd_f(dd_add(lo, dd_mul(span, strength(r, g))));
}
