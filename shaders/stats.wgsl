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
// Lexicographic "better" for top-n: larger value, then lower id.
fn better(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
    return va > vb || (va == vb && ia < ib);
}

// Appends this tile's top `n` of `vals` (per-thread EPT values with ids) to
// the top-n area `dst` (value, id pairs, descending, ties by lowest id).
fn tile_topn(lid: u32, n: u32, vals: array<f32, EPT>, ids: array<u32, EPT>, dst: u32) {
    // Each round takes the best element strictly after the previous winner.
    var last_v = POS_INF;
    var last_i = 0u;
    for (var k = 0u; k < n; k++) {
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
        let best = wg_best(lid, bv, bi);
        let mv = bitcast<f32>(best.x);
        let mi = best.y;
        if (lid == 0u) {
            ws[dst + 2u * k] = bitcast<u32>(mv);
            ws[dst + 2u * k + 1u] = mi;
        }
        last_v = mv;
        last_i = mi;
    }
}

// A partial of the tile's statistics: (max hi, max lo, raw max), the sums
// relative to that max (Σe, Σde, Σd²e, count at T = 1; Σe, Σde at T_A; raw
// Σe), and (first bad id, argmax).
struct Part { mm: vec4<f32>, s1: vec4<f32>, s2: vec4<f32>, ix: vec2<u32> }

fn part_store(i: u32, p: Part) {
    red_f[i] = p.mm.x;
    red_u[i] = bitcast<u32>(p.mm.y);
    red4[i] = p.s1;
    redu4[i] = bitcast<vec4<u32>>(vec4<f32>(p.s2.xyz, p.mm.z));
    red64[i] = p.ix;
}

fn part_load(i: u32) -> Part {
    let w = bitcast<vec4<f32>>(redu4[i]);
    return Part(vec4<f32>(red_f[i], bitcast<f32>(red_u[i]), w.w, 0.0), red4[i], vec4<f32>(w.xyz, 0.0), red64[i]);
}

// Partial p's sums moved to the two-float max m: with d = (p's max − m) ≤ 0
// and f = e^d, Σe → fΣe, Σde → f(Σde + dΣe), Σd²e → f(Σd²e + 2dΣde + d²Σe),
// and the same at T_A with d/T. An empty partial (max −inf) adds nothing.
fn rescale(p: Part, m: vec2<f32>, inv_t: f32, mr: f32) -> Part {
    var q = Part(p.mm, vec4<f32>(0.0, 0.0, 0.0, p.s1.w), vec4<f32>(0.0), p.ix);
    if (p.mm.x != NEG_INF) {
        let d = scaled(p.mm.xy, m, 1.0);
        let f = exp(d);
        q.s1 = vec4<f32>(f * p.s1.x, f * (p.s1.y + d * p.s1.x),
                         f * (p.s1.z + 2.0 * d * p.s1.y + d * d * p.s1.x), p.s1.w);
        let dt = scaled(p.mm.xy, m, inv_t);
        let ft = exp(dt);
        q.s2 = vec4<f32>(ft * p.s2.x, ft * (p.s2.y + dt * p.s2.x), 0.0, 0.0);
    }
    if (p.mm.z != NEG_INF) { q.s2.z = exp(p.mm.z - mr) * p.s2.z; }
    return q;
}

// Merges two partials: the larger two-float max (lowest argmax among equal
// ones), both partials' sums moved to it and added, the smaller bad id.
fn part_merge(a: Part, b: Part, inv_t: f32) -> Part {
    let b_up = b.mm.x > a.mm.x || (b.mm.x == a.mm.x && b.mm.y > a.mm.y);
    let same = b.mm.x == a.mm.x && b.mm.y == a.mm.y;
    let m = select(a.mm.xy, b.mm.xy, b_up);
    let mr = max(a.mm.z, b.mm.z);
    var arg = select(a.ix.y, b.ix.y, b_up);
    if (same) { arg = min(a.ix.y, b.ix.y); }
    let ra = rescale(a, m, inv_t, mr);
    let rb = rescale(b, m, inv_t, mr);
    return Part(vec4<f32>(m, mr, 0.0), ra.s1 + rb.s1, ra.s2 + rb.s2, vec2<u32>(min(a.ix.x, b.ix.x), arg));
}

// The tile's statistics from every invocation's partial in one fixed-order
// tree: log2(WG) + 2 barriers for the max, the argmax and all the sums.
fn wg_online(lid: u32, p: Part, inv_t: f32) -> Part {
    part_store(lid, p);
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
        if (lid < st) { part_store(lid, part_merge(part_load(lid), part_load(lid + st), inv_t)); }
        workgroupBarrier();
    }
    let t = part_load(0u);
    // Every invocation has read slot 0 before any helper writes it again.
    workgroupBarrier();
    return t;
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
    if (HAS_HIST && hist) {
        for (var b = lid; b < HA_BINS; b += WG) { atomicStore(&sh_hist[b], 0u); }
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
                    let b = select(key_of(ys[j]) >> (32u - HA_BITS), pbin(ys[j], per_unit), hist_p);
                    atomicAdd(&sh_hist[b], 1u);
                }
            }
        }
    }
    // This invocation's partial, relative to its own maxima (online
    // softmax): the max as a two-float (the largest lo among its ids at the
    // max), its lowest id there, and the sums at T = 1 and at T_A; the raw
    // logits' Σe relative to their own max.
    var my_lo = NEG_INF;
    for (var j = 0u; j < EPT; j++) {
        if (ys[j] == my && my != NEG_INF) { my_lo = max(my_lo, ylo[j]); }
    }
    if (my == NEG_INF) { my_lo = 0.0; }
    let mm_i = vec2<f32>(my, my_lo);
    var arg = NONE;
    for (var j = 0u; j < EPT; j++) {
        if (ids[j] != NONE && ys[j] == my && ylo[j] == my_lo && my != NEG_INF) { arg = min(arg, ids[j]); }
    }
    let ta = bitcast<f32>(mrec(r, M_TA));
    let inv_t = 1.0 / ta;
    var s1 = vec4<f32>(0.0);   // Σe, Σ(y−m)e, Σ(y−m)²e, count
    var s2 = vec4<f32>(0.0);   // at T_A: Σe, Σ((y−m)/T)e ; raw Σe
    for (var j = 0u; j < EPT; j++) {
        if (ys[j] != NEG_INF) {
            let y = vec2<f32>(ys[j], ylo[j]);
            let d = scaled(y, mm_i, 1.0);
            let e = exp(d);
            s1 += vec4<f32>(e, d * e, d * d * e, 1.0);
            let dt = scaled(y, mm_i, inv_t);
            let et = exp(dt);
            s2.x += et;
            s2.y += dt * et;
        }
        if (xs[j] != NEG_INF) {
            s2.z += exp(xs[j] - mr);
        }
    }
    // One merge tree over the partials (fixed order): maxima, argmax, the
    // rescaled sums and the first bad id together.
    let t = wg_online(lid, Part(vec4<f32>(my, my_lo, mr, 0.0), s1, s2, vec2<u32>(bad, arg)), inv_t);
    let m = t.mm.x;
    let m_lo = t.mm.y;
    let m_raw = t.mm.z;
    let a = t.s1;
    let b = t.s2;
    let mins = t.ix;
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
        for (var bb = lid; bb < HA_BINS; bb += WG) {
            let cnt = atomicLoad(&sh_hist[bb]);
            if (cnt != 0u) { atomicAdd(&bins[gb + bb], cnt); }
        }
    }
    if ((flags & F_NSIGMA) != 0u) {
        // Top-nσ (docs/spec.md §3.10): the tile's count, mean and Σ(y −
        // mean)² of the finite y. Each invocation's Welford partial, then
        // invocation 0 merges them in order (Chan et al.): one barrier, where
        // a reduction tree costs lavapipe's compiler minutes.
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
        tile_topn(lid, n, xs, ids, base);
        tile_topn(lid, n, ys, ids, base + 2u * ch.ntop);
    }
}
