// Entropy-guided temperature (SPEC §4), computed on the device from the
// row's own entropy: no host round trip. Parameters come from the row record
// (M_DYN..): max_entropy, four mapping fields, top_p {low, high}, the LUT's
// (entropy, temperature) pairs.

const K_LINEAR: u32 = 0u;
const K_SIGMOID: u32 = 1u;
const K_LUT: u32 = 2u;
const K_EDT: u32 = 3u;
const K_LLAMA: u32 = 4u;

fn dyn_f(r: u32, i: u32) -> f32 { return bitcast<f32>(mrec(r, M_DYN + i)); }
fn map_kind(r: u32) -> u32 { return (mrec(r, M_FLAGS) >> 5u) & 7u; }
fn map_unit(r: u32) -> u32 { return (mrec(r, M_FLAGS) >> 8u) & 3u; }

// The guide entropy in the mapping's unit after the clip (llama_cpp: nats).
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
fn strength(r: u32, g: f32) -> f32 {
    if (map_kind(r) == K_LINEAR) {
        let lo = dyn_f(r, 1u);
        let hi = dyn_f(r, 2u);
        return clamp((g - lo) / (hi - lo), 0.0, 1.0);
    }
    let mid = dyn_f(r, 1u);
    let k = dyn_f(r, 2u);
    return 1.0 / (1.0 + exp(-k * (g - mid)));
}

// T for guide g (h, n: entropy in nats and the count it was taken over;
// t_static: the row's temperature). 0 means greedy.
fn map_temperature(r: u32, g: f32, h: f32, n: u32, t_static: f32) -> f32 {
    let kind = map_kind(r);
    if (kind == K_LINEAR || kind == K_SIGMOID) {
        let t_min = dyn_f(r, 3u);
        let t_max = dyn_f(r, 4u);
        return t_min + (t_max - t_min) * strength(r, g);
    }
    if (kind == K_LUT) {
        let off = mrec(r, M_DYN + 7u);
        let len = mrec(r, M_DYN + 8u);
        let e0 = bitcast<f32>(prm[off]);
        if (g <= e0) { return bitcast<f32>(prm[off + 1u]); }
        let el = bitcast<f32>(prm[off + 2u * (len - 1u)]);
        if (g >= el) { return bitcast<f32>(prm[off + 2u * (len - 1u) + 1u]); }
        var i = 1u;
        while (i < len && bitcast<f32>(prm[off + 2u * i]) <= g) { i += 1u; }
        let ea = bitcast<f32>(prm[off + 2u * (i - 1u)]);
        let ta = bitcast<f32>(prm[off + 2u * (i - 1u) + 1u]);
        let eb = bitcast<f32>(prm[off + 2u * i]);
        let tb = bitcast<f32>(prm[off + 2u * i + 1u]);
        return ta + (tb - ta) * (g - ea) / (eb - ea);
    }
    if (kind == K_EDT) {
        if (g <= 0.0) { return 0.0; }
        let t0 = dyn_f(r, 1u);
        let ln_base = dyn_f(r, 2u);   // ln(base), from the host in f64
        let theta = dyn_f(r, 3u);
        // A T that underflows f32 is still not greedy (ties at the max stay
        // tied): keep the smallest normal value instead of 0.
        return select(0.0, max(t0 * exp(theta / g * ln_base), 1.17549435e-38), t0 > 0.0);
    }
    // llama.cpp temp_ext.
    if (n <= 1u) { return t_static; }
    let range = dyn_f(r, 1u);
    let expo = dyn_f(r, 2u);
    let t_min = max(0.0, t_static - range);
    let t_max = t_static + range;
    let norm = max(h / log(f32(n)), 0.0);
    var p = 0.0;
    if (norm > 0.0) { p = exp(expo * log(norm)); }
    return t_min + (t_max - t_min) * p;
}

// The entropy-driven top-p, or `fallback` when not configured.
fn map_top_p(r: u32, g: f32, fallback: f32) -> f32 {
    if ((mrec(r, M_FLAGS) & F_DYN_TOPP) == 0u) { return fallback; }
    let lo = dyn_f(r, 5u);
    let hi = dyn_f(r, 6u);
    return lo + (hi - lo) * strength(r, g);
}
