// Entropy-guided temperature (docs/spec.md §4), computed on the device from the
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
// docs/spec.md §7 wants T within 1e-6 (relative) of the f64 mapping of the row's own
// guide. f32 cannot do that: the argument of exp(x) at |x| ≈ 15 already
// carries 5e-7 of rounding, and WGSL's exp/log allow errors of several ulp
// (more for large |x|). So the mapping runs in two-float arithmetic
// (twofloat.wgsl), with exp and log by range reduction, a Taylor series and
// Newton steps; it is evaluated once per row, so its cost does not matter.


const M_TOPP_DYN: u32 = M_DYN + 9u;   // dyn_slot::TOP_P_LOW

// ---- the mapping -------------------------------------------------------------

fn dyn_f(r: u32, i: u32) -> f32 { return bitcast<f32>(mrec(r, M_DYN + i)); }
fn dyn_dd(r: u32, i: u32) -> vec2<f32> { return vec2<f32>(dyn_f(r, i), dyn_f(r, i + 1u)); }
fn map_kind(r: u32) -> u32 { return (mrec(r, M_FLAGS) >> F_MAP_SHIFT) & 7u; }
fn map_unit(r: u32) -> u32 { return (mrec(r, M_FLAGS) >> F_UNIT_SHIFT) & 3u; }

// The guide entropy in the mapping's unit after the clip (llama_cpp: nats).
// This f32 value is what the row reports, and what the mapping below maps.
fn guide_of(r: u32, h: f32, n: u32) -> f32 {
    if (map_kind(r) == K_LLAMA) { return h; }
    var g = h;
    let unit = map_unit(r);
    if (unit == UNIT_BITS) {
        g = h * 1.4426950408889634;
    } else if (unit == UNIT_NORMALIZED) {
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
        let num = dd_sub(dd(g), dyn_dd(r, 1u));
        if (num.x <= 0.0) { return dd(0.0); }
        let s = dd_div(num, dyn_dd(r, 3u));
        // NaN too: a quotient past f32's range (a span far below g − h_low).
        if (!finite_f(s.x) || s.x >= 1.0) { return dd(1.0); }
        return s;
    }
    // 1/(1 + e^−x), x = steepness·(g − h_mid), from e^(−|x|) ≤ 1 either way.
    let diff = dd_sub(dd(g), dyn_dd(r, 1u));
    let x = dd_mul(dyn_dd(r, 3u), diff);
    // x past f32's range (NaN inside two-float arithmetic): s is 1 or 0.
    if (!finite_dd(x)) { return dd(select(0.0, 1.0, diff.x > 0.0)); }
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
// t_static: the row's temperature). 0 means greedy. docs/spec.md §2.1: a
// computed T below the smallest temperature (1e-30) is greedy, one above the
// largest (1e30) is that bound — the rule of params.rs `computed_temperature`.
fn map_temperature(r: u32, g: f32, n: u32, t_static: f32) -> f32 {
    let t = mapping_formula(r, g, n, t_static);
    if (is_nan_f(t) || t < 1e-30) { return 0.0; }
    return min(t, 1e30);
}

fn mapping_formula(r: u32, g: f32, n: u32, t_static: f32) -> f32 {
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
        return dd_f(dd_mul(t0, dd_exp(dd_div(dyn_dd(r, 3u), dd(g)))));
    }
    // llama.cpp temp_ext: t_min + (t_max − t_min)·(H / ln N)^exponent.
    if (n <= 1u) { return t_static; }
    let norm = dd_div(dd(g), dd_log(dd_count(n)));
    var p = dd(0.0);
    if (norm.x > 0.0) {
        let ln_norm = dd_log(norm);
        let x = dd_mul(dyn_dd(r, 5u), ln_norm);
        // exponent·ln(norm) past f32's range (NaN inside two-float
        // arithmetic): norm^exponent is 0 below 1 and huge above it (T then
        // takes the largest temperature).
        if (!finite_dd(x)) {
            p = dd(select(0.0, 3.40282347e38, ln_norm.x > 0.0));
        } else {
            p = dd_exp(x);
        }
    }
    return dd_f(dd_add(dyn_dd(r, 1u), dd_mul(dyn_dd(r, 3u), p)));
}

// The entropy-driven top-p, or `fallback` when not configured.
fn map_top_p(r: u32, g: f32, fallback: f32) -> f32 {
    if ((mrec(r, M_FLAGS) & F_DYN_TOPP) == 0u) { return fallback; }
    let lo = vec2<f32>(bitcast<f32>(mrec(r, M_TOPP_DYN)), bitcast<f32>(mrec(r, M_TOPP_DYN + 1u)));
    let span = vec2<f32>(bitcast<f32>(mrec(r, M_TOPP_DYN + 2u)), bitcast<f32>(mrec(r, M_TOPP_DYN + 3u)));
    return dd_f(dd_add(lo, dd_mul(span, strength(r, g))));
}
