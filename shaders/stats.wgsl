// Pass A: one read of every tile of every row (one workgroup per tile and
// row). It first computes the processed logit of the few ids of its tile
// that a bias, history or prompt names (docs/spec.md §3 stages 1–2, from the compact
// per-row lists: never a V-sized mask or copy), then records, after bias /
// mask / penalties: the max, Σe^(y−m), Σ(y−m)e^(y−m), Σ(y−m)²e^(y−m)
// (entropy and varentropy in one read, docs/spec.md §4.1), the finite count and the
// argmax (lowest id); for the raw logits the max and Σe (raw_logprob); the
// smallest index holding NaN/+inf; and, at the row's pass temperature T_A,
// the kept-mass sums that a row without truncation samples from directly.
// Rows with top-k (or min_tokens_to_keep > 1) also histogram the top HA_BITS
// bits of their keys: the first radix digit of the k-th-largest search.
// Rows with top-p alone histogram y in bins of T/16 instead (F_HIST_P): the
// solver predicts the top-p cut from it.
// Rows asking for logprobs keep their tile's top-n raw and processed logits.

var<workgroup> sh_hist: array<atomic<u32>, HA_BINS>;
var<workgroup> sh_blo: atomic<u32>;  // the tile's smallest histogram bin
var<workgroup> sh_bhi: atomic<u32>;  // and largest

// The histogram bin of a finite processed logit: the top HA_BITS bits of
// its key (top-k's first radix digit) or, for a top-p prediction row, its
// bin of T/16 (pbin).
fn hist_bin(y: f32, per_unit: f32, hist_p: bool) -> u32 {
    return select(key_of(y) >> (32u - HA_BITS), pbin(y, per_unit), hist_p);
}

// The processed logit of patch entry e (an id of this tile named by the
// row's bias, history or prompt) in two-float, as the reference's f64: x +
// bias exactly, then the penalties with the f64 values of their parameters
// (the f32 rounding of such an id would be magnified by a small T). Written
// to the workspace for every later read; returns the entry's error code (a
// bias or penalty that makes a finite logit non-finite, docs/spec.md §3.1) or NONE.
// Codes order as the reference reports errors: every bias error, then the
// repetition and frequency/presence errors, then DRY's (docs/spec.md §3.14),
// each by id (ids are below 2^26): bias id<<2, repetition 0x40000000|id<<2,
// frequency/presence 0x40000000|id<<2|1, DRY 0x80000000|id<<2.
fn patch_entry(c: TileCtx, e: u32) -> u32 {
    let base = ch.meta_patch + e * PATCH_W;
    let id = prm[base];
    let bias = bitcast<f32>(prm[base + 1u]);
    let cf = prm[base + 2u];
    let count = cf >> 2u;
    let x = load_x(c.r, id);
    let li = id - c.t0;
    var y = vec2<f32>(x, 0.0);
    if ((c.allow != 0u && (atomicLoad(&sh_abits[li >> 5u]) & (1u << (li & 31u))) == 0u) || is_bad(x)) {
        y = vec2<f32>(NEG_INF, 0.0);
    }
    var err = NONE;
    // Every step is rounded to f64 as the reference rounds it (a bias of 1
    // on 1e17 is absorbed there), and a step whose f64 value leaves f32's
    // range is the reference's error (docs/spec.md §2.1, §3.1).
    if (y.x != NEG_INF) {
        if ((cf & 1u) != 0u) {
            y = round_f64(two_sum(y.x, bias));
            if (outside_f32(y)) { err = id << 2u; }
        }
        // A penalty step's values stay below 2^24 (params.rs PENALTY_LIMIT).
        if (err == NONE && (cf & 2u) != 0u) {
            let rp = vec2<f32>(bitcast<f32>(mrec(c.r, M_REP)), bitcast<f32>(mrec(c.r, M_REP_LO)));
            if (rp.x != 1.0 || rp.y != 0.0) {
                y = round_f64(select(dd_mul(y, rp), dd_div(y, rp), y.x > 0.0));
                if (at_least(y, 16777216.0)) { err = 0x40000000u | (id << 2u); }
            }
            let freq = vec2<f32>(bitcast<f32>(mrec(c.r, M_FREQ)), bitcast<f32>(mrec(c.r, M_FREQ_LO)));
            let pres = vec2<f32>(bitcast<f32>(mrec(c.r, M_PRES)), bitcast<f32>(mrec(c.r, M_PRES_LO)));
            let amount = round_f64(dd_add(round_f64(dd_mul(freq, dd_count(count))), pres));
            if (err == NONE && count > 0u && nonzero_dd(amount)) {
                if (at_least(amount, 16777216.0)) {
                    // The error reports the amount (the stored value is the error's).
                    y = amount;
                    err = 0x40000000u | (id << 2u) | 1u;
                } else {
                    y = round_f64(dd_sub(y, amount));
                    if (at_least(y, 16777216.0)) { err = 0x40000000u | (id << 2u) | 1u; }
                }
            }
        }
        // DRY after the other penalties (docs/spec.md §3.14): the amount
        // (two-float of the reference's f64, at most 2^23) off a finite value.
        let dry = vec2<f32>(bitcast<f32>(prm[base + 4u]), bitcast<f32>(prm[base + 5u]));
        if (err == NONE && nonzero_dd(dry)) {
            y = round_f64(dd_sub(y, dry));
            if (at_least(y, 16777216.0)) { err = 0x80000000u | (id << 2u); }
        }
    }
    ws[ch.pv_base + 2u * e] = bitcast<u32>(y.x);
    ws[ch.pv_base + 2u * e + 1u] = bitcast<u32>(y.y);
    return err;
}
// This tile's top `n` raw logits (xs) and processed logits (ys), appended
// to the top-n areas at `dst` and `dst + 2·ntop` (value, id pairs,
// descending, ties by lowest id). Rank k of both lists in one round of two
// barriers: each invocation proposes its best element strictly after rank
// k − 1's winner, the largest key wins (workgroup atomicMax), then the
// lowest id at it (atomicMin) — the same pair whatever order the lanes
// arrive in. A list with fewer than k finite ids gets (−inf, NONE).
var<workgroup> sh_top: array<atomic<u32>, TOPW>;

fn topn_best(vals: array<f32, EPT>, ids: array<u32, EPT>, last_v: f32, last_i: u32) -> vec2<u32> {
    var bv = NEG_INF;
    var bi = NONE;
    for (var j = 0u; j < EPT; j++) {
        let v = vals[j];
        let i = ids[j];
        if (i != NONE && v != NEG_INF && better(last_v, last_i, v, i) && (bi == NONE || better(v, i, bv, bi))) {
            bv = v;
            bi = i;
        }
    }
    return vec2<u32>(key_of(bv), bi);
}

fn tile_topn(lid: u32, n: u32, xs: array<f32, EPT>, ys: array<f32, EPT>, ids: array<u32, EPT>, dst: u32) {
    // Rank k − 1's winners: (raw, processed) values and ids.
    var last = vec2<f32>(POS_INF);
    var last_i = vec2<u32>(0u);
    for (var k = 0u; k < n; k++) {
        let bx = topn_best(xs, ids, last.x, last_i.x);
        let by = topn_best(ys, ids, last.y, last_i.y);
        if (bx.y != NONE) { atomicMax(&sh_top[4u * k], bx.x); }
        if (by.y != NONE) { atomicMax(&sh_top[4u * k + 2u], by.x); }
        workgroupBarrier();
        let kx = atomicLoad(&sh_top[4u * k]);
        let ky = atomicLoad(&sh_top[4u * k + 2u]);
        if (bx.y != NONE && bx.x == kx) { atomicMin(&sh_top[4u * k + 1u], bx.y); }
        if (by.y != NONE && by.x == ky) { atomicMin(&sh_top[4u * k + 3u], by.y); }
        workgroupBarrier();
        last = vec2<f32>(val_of(kx), val_of(ky));
        last_i = vec2<u32>(atomicLoad(&sh_top[4u * k + 1u]), atomicLoad(&sh_top[4u * k + 3u]));
        if (lid == 0u) {
            ws[dst + 2u * k] = bitcast<u32>(last.x);
            ws[dst + 2u * k + 1u] = last_i.x;
            ws[dst + 2u * ch.ntop + 2u * k] = bitcast<u32>(last.y);
            ws[dst + 2u * ch.ntop + 2u * k + 1u] = last_i.y;
        }
    }
}

// The tile's maxima, argmax and first bad id, by workgroup atomics on
// order-preserving keys (max and min do not depend on the order lanes
// arrive in); its sums by a two-level sum in logical lane order.
var<workgroup> sh_mk: atomic<u32>;   // key of the largest y (its hi word)
var<workgroup> sh_lk: atomic<u32>;   // key of the largest lo word at that hi
var<workgroup> sh_rk: atomic<u32>;   // key of the largest raw logit
var<workgroup> sh_bad: atomic<u32>;  // smallest NaN/+inf id
var<workgroup> sh_arg: atomic<u32>;  // lowest id at the two-float max

// Two vec4 sums over the workgroup in a fixed order whatever the lanes'
// physical order: the first WG/SQ logical lanes each add SQ consecutive
// partials, then invocation 0 adds those in order (two barriers, where a
// tree takes log2(WG) + 1). Only invocation 0's return value is the sum.
// Its serial steps stay loops (from1): one tile per workgroup is far from
// lavapipe's loop budget, and written out they were ~40 % of the pass there.
fn wg_sum2(lid: u32, a: vec4<f32>, b: vec4<f32>) -> array<vec4<f32>, 2> {
    red4[lid] = a;
    redu4[lid] = bitcast<vec4<u32>>(b);
    workgroupBarrier();
    if (lid < WG / SQ) {
        var sa = red4[lid * SQ];
        var sb = bitcast<vec4<f32>>(redu4[lid * SQ]);
        for (var q = from1(); q < SQ; q++) {
            sa += red4[lid * SQ + q];
            sb += bitcast<vec4<f32>>(redu4[lid * SQ + q]);
        }
        red4[lid * SQ] = sa;
        redu4[lid * SQ] = bitcast<vec4<u32>>(sb);
    }
    workgroupBarrier();
    var ta = vec4<f32>(0.0);
    var tb = vec4<f32>(0.0);
    if (lid == 0u) {
        ta = red4[0];
        tb = bitcast<vec4<f32>>(redu4[0]);
        for (var q = from1(); q < WG / SQ; q++) {
            ta += red4[q * SQ];
            tb += bitcast<vec4<f32>>(redu4[q * SQ]);
        }
    }
    return array<vec4<f32>, 2>(ta, tb);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid0: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let en = entry(lid3, wid0, nwg);
    let lid = en.lid;
    let c = tile_entry(en);
    let r = c.r;
    let flags = mrec(r, M_FLAGS);
    let hist = (flags & (F_HIST_A | F_HIST_P)) != 0u;
    let hist_p = (flags & F_HIST_P) != 0u;
    let per_unit = PBINS_PER_T / bitcast<f32>(mrec(r, M_TP));
    if (lid == 0u) {
        atomicStore(&sh_mk, 0u);
        atomicStore(&sh_lk, 0u);
        atomicStore(&sh_rk, 0u);
        atomicStore(&sh_bad, NONE);
        atomicStore(&sh_arg, NONE);
        atomicStore(&sh_blo, NONE);
        atomicStore(&sh_bhi, 0u);
    }
    if (HAS_TOPN) {
        // Rank k's slots: raw key, raw id, processed key, processed id.
        for (var i = lid; i < TOPW; i += WG) {
            atomicStore(&sh_top[i], select(KEY_NEG_INF, NONE, (i & 1u) != 0u));
        }
    }
    var perr = NONE;
    if (HAS_PATCH && c.p_hi > c.p_lo) {
        var mine = NONE;
        for (var e = c.p_lo + lid; e < c.p_hi; e += WG) { mine = min(mine, patch_entry(c, e)); }
        // Every invocation's patch values are visible before any y_of reads them.
        storageBarrier();
        perr = wg_min_u(lid, mine);
    }
    workgroupBarrier();

    var xs: array<f32, EPT>;
    var ys: array<f32, EPT>;
    var ylo: array<f32, EPT>;
    var ids: array<u32, EPT>;
    var bad = NONE;
    var my = NEG_INF;
    var mr = NEG_INF;
    var blo = NONE;   // the smallest and largest histogram bin of this invocation's ids
    var bhi = 0u;
    for (var j = 0u; j < EPT; j++) {
        let li = j * WG + lid;
        xs[j] = NEG_INF;
        ys[j] = NEG_INF;
        ylo[j] = 0.0;
        ids[j] = NONE;
        if (li < c.n) {
            let x = load_x(r, c.t0 + li);
            ids[j] = c.t0 + li;
            if (is_bad(x)) {
                bad = min(bad, c.t0 + li);
            } else {
                xs[j] = x;
                let y = y_of(c, li, x);
                ys[j] = y.x;
                ylo[j] = y.y;
                my = max(my, ys[j]);
                mr = max(mr, x);
                if (HAS_HIST && hist && ys[j] != NEG_INF) {
                    let b = hist_bin(ys[j], per_unit, hist_p);
                    blo = min(blo, b);
                    bhi = max(bhi, b);
                }
            }
        }
    }
    // The tile's max (two-float: the largest lo among the ids at the
    // largest hi), raw max and first bad id, then the argmax (lowest id at
    // the max). An invocation skips an atomic that cannot change the word
    // (no bad id; a value the word already passes: the words only move one
    // way until the barrier, so the result is the same in any lane order) —
    // each atomic is a locked instruction per invocation on a CPU adapter.
    // Without patched or disallowed ids the raw logits are y: the raw max
    // is the max.
    let kmy = key_of(my);
    if (kmy > atomicLoad(&sh_mk)) { atomicMax(&sh_mk, kmy); }
    if (HAS_PATCH || HAS_ALLOW) {
        let kmr = key_of(mr);
        if (kmr > atomicLoad(&sh_rk)) { atomicMax(&sh_rk, kmr); }
    }
    if (bad != NONE) { atomicMin(&sh_bad, bad); }
    if (HAS_HIST && hist) {
        if (blo < atomicLoad(&sh_blo)) { atomicMin(&sh_blo, blo); }
        if (bhi > atomicLoad(&sh_bhi)) { atomicMax(&sh_bhi, bhi); }
    }
    workgroupBarrier();
    let m = val_of(atomicLoad(&sh_mk));
    // The histogram: only the bins between the tile's smallest and largest
    // (a few hundred of HA_BINS on most rows) are zeroed, counted into and
    // added to the row's; none in a tile without a finite id (hlo = NONE
    // there, and hlo + lid must not wrap around).
    let hlo = atomicLoad(&sh_blo);
    let hhi = atomicLoad(&sh_bhi);
    let hany = hlo <= hhi;
    if (HAS_HIST && hist) {
        for (var b = hlo + lid; hany && b <= hhi; b += WG) { atomicStore(&sh_hist[b], 0u); }
        workgroupBarrier();
        for (var j = 0u; j < EPT; j++) {
            if (ys[j] != NEG_INF) { atomicAdd(&sh_hist[hist_bin(ys[j], per_unit, hist_p)], 1u); }
        }
    }
    var m_raw = m;
    if (HAS_PATCH || HAS_ALLOW) { m_raw = val_of(atomicLoad(&sh_rk)); }
    var m_lo = 0.0;
    if (HAS_PATCH) {
        // Only patched ids carry a lo word.
        var my_lo = NEG_INF;
        for (var j = 0u; j < EPT; j++) {
            if (ys[j] == m && m != NEG_INF) { my_lo = max(my_lo, ylo[j]); }
        }
        atomicMax(&sh_lk, key_of(my_lo));
        workgroupBarrier();
        if (m != NEG_INF) { m_lo = val_of(atomicLoad(&sh_lk)); }
    }
    var arg = NONE;
    for (var j = 0u; j < EPT; j++) {
        if (ids[j] != NONE && ys[j] == m && ylo[j] == m_lo && m != NEG_INF) { arg = min(arg, ids[j]); }
    }
    if (arg != NONE) { atomicMin(&sh_arg, arg); }
    // The sums relative to the tile's maxima: at T = 1 (Σe, Σde, Σd²e,
    // count), at T_A (Σe, Σde) and the raw logits' Σe.
    let mm = vec2<f32>(m, m_lo);
    let ta = bitcast<f32>(mrec(r, M_TA));
    let inv_t = 1.0 / ta;
    var s1 = vec4<f32>(0.0);
    var s2 = vec4<f32>(0.0);
    for (var j = 0u; j < EPT; j++) {
        if (ys[j] != NEG_INF) {
            let y = vec2<f32>(ys[j], ylo[j]);
            let d = scaled(y, mm, 1.0);
            let e = exp(d);
            s1 += vec4<f32>(e, d * e, d * d * e, 1.0);
            let dt = scaled(y, mm, inv_t);
            let et = exp(dt);
            s2.x += et;
            s2.y += dt * et;
        }
        if ((HAS_PATCH || HAS_ALLOW) && xs[j] != NEG_INF) {
            s2.z += exp(xs[j] - m_raw);
        }
    }
    // Without patched or disallowed ids the raw logits are y (lo 0): the
    // raw Σe is Σe at T = 1, term for term.
    if (!HAS_PATCH && !HAS_ALLOW) { s2.z = s1.x; }
    let sums = wg_sum2(lid, s1, s2);
    let a = sums[0];
    let b = sums[1];
    let mins = vec2<u32>(atomicLoad(&sh_bad), atomicLoad(&sh_arg));
    let rec = tl_at(r, c.t);
    if (lid == 0u) {
        ws[rec + T_BAD] = mins.x;
        ws[rec + T_PERR] = perr;
        ws[rec + T_M1] = bitcast<u32>(m);
        ws[rec + T_MLO] = bitcast<u32>(m_lo);
        ws[rec + T_REFLO] = bitcast<u32>(m_lo);
        ws[rec + T_S1] = bitcast<u32>(a.x);
        ws[rec + T_A1] = bitcast<u32>(a.y);
        ws[rec + T_B1] = bitcast<u32>(a.z);
        ws[rec + T_N] = u32(a.w);
        ws[rec + T_ARG] = mins.y;
        ws[rec + T_MRAW] = bitcast<u32>(m_raw);
        ws[rec + T_SRAW] = bitcast<u32>(b.z);
        ws[rec + T_REF] = bitcast<u32>(m);
        ws[rec + T_CNT] = u32(a.w);
        ws[rec + T_S] = bitcast<u32>(b.x);
        ws[rec + T_A] = bitcast<u32>(b.y);
        ws[rec + T_BS] = 0u;
        ws[rec + T_COFF] = 0u;
        ws[rec + T_CCNT] = 0u;
    }
    if (HAS_HIST && hist) {
        workgroupBarrier();
        let gb = bins_at(r);
        for (var bb = hlo + lid; hany && bb <= hhi; bb += WG) {
            let cnt = atomicLoad(&sh_hist[bb]);
            if (cnt != 0u) { atomicAdd(&bins[gb + bb], cnt); }
        }
    }
    if ((flags & F_NSIGMA) != 0u) {
        // Top-nσ (docs/spec.md §3.10): the tile's count, mean and Σ(y −
        // mean)² of the finite y. Each invocation's Welford partial, then
        // invocation 0 merges them in order (Chan et al.): one barrier (two
        // with the one that protects wg_sum2's slots).
        var wv = vec4<f32>(0.0);
        for (var j = 0u; j < EPT; j++) {
            if (ys[j] != NEG_INF) {
                let y = ys[j] + ylo[j];
                wv.x += 1.0;
                let d = y - wv.y;
                wv.y += d / wv.x;
                wv.z += d * (y - wv.y);
            }
        }
        // Invocation 0 has read wg_sum2's partials before they are overwritten.
        workgroupBarrier();
        red4[lid] = wv;
        workgroupBarrier();
        if (lid == 0u) {
            var acc = vec4<f32>(0.0);
            for (var i = 0u; i < WG; i++) {
                let b = red4[i];
                if (b.x > 0.0) {
                    let n2 = acc.x + b.x;
                    let d = b.y - acc.y;
                    acc = vec4<f32>(n2, acc.y + d * (b.x / n2), acc.z + b.z + d * d * (acc.x * b.x / n2), 0.0);
                }
            }
            ws[rec + T_MEAN] = bitcast<u32>(acc.y);
            ws[rec + T_M2] = bitcast<u32>(acc.z);
        }
    }
    let n = min(mrec(r, M_LOGPROBS), ch.ntop);
    if (HAS_TOPN && n > 0u) {
        let base = ch.tn_base + (r * ch.tiles + c.t) * 4u * ch.ntop;
        tile_topn(lid, n, xs, ys, ids, base);
    }
}
