// The row solver: one workgroup per row, run after the statistics pass and
// after every scan round. It merges the tiles' partials (fixed order), takes
// the row through SPEC §3 stage by stage, and asks for another read of the
// row only when it cannot go on from what it has (indirect dispatch of the
// next scan round). Every thread runs the same program on the same values, so
// control flow is uniform and the reductions can sit anywhere.
//
// Survivors are always {finite y : key(y) ≥ tau}: every stage keeps a top
// set. A stage is a query "largest tau with G(tau) ≥ tgt", G counting ids
// (top-k, min_tokens_to_keep) or summing e^((y−m)/T) (top-p) over keys ≥ tau:
// histogram rounds narrow a key window until it holds at most CAP ids, those
// are compacted, and bisection over the candidates gives tau exactly.

const PH_INIT: u32 = 0u;
const PH_STAGE: u32 = 1u;
const PH_POST: u32 = 2u;
const PH_FINAL: u32 = 3u;
const PH_DONE: u32 = 4u;
const PH_QBINS: u32 = 11u;
const PH_QCOMP: u32 = 12u;

const K_COUNT: u32 = 1u;
const K_MASS: u32 = 2u;

// Errors reported in R_ERRC.
const E_LOGIT: u32 = 1u;
const E_BIAS: u32 = 2u;
const E_REP: u32 = 3u;
const E_FREQ: u32 = 4u;
const E_MASKED: u32 = 5u;
const E_ROUNDS: u32 = 6u;

// The row's state, the same in every invocation (load_state / store_state
// are generated: src/gpu/shaders.rs).
var<private> s: array<u32, ST>;
var<private> lid: u32;
var<private> row: u32;
var<private> want_pass: bool;
var<workgroup> sh_row: u32;

fn sf(i: u32) -> f32 { return bitcast<f32>(s[i]); }
fn set_f(i: u32, v: f32) { s[i] = bitcast<u32>(v); }
fn pf(field: u32) -> f32 { return bitcast<f32>(mrec(row, field)); }

fn request(mode: u32, lo: u32, hi: u32, shift: u32, floor_k: u32, t: f32, back: u32) {
    s[S_PMODE] = mode;
    s[S_PLO] = lo;
    s[S_PHI] = hi;
    s[S_PSHIFT] = shift;
    s[S_PFLOOR] = floor_k;
    set_f(S_PT, t);
    s[S_PHASE] = back;
    want_pass = true;
}

fn clear_bins() {
    s[S_HAOK] = 0u;
    let b = bins_at(row);
    for (var i = lid; i < NB; i += WG) {
        atomicStore(&wsa[b + i], 0u);
        atomicStore(&wsa[b + HA_BINS + i], 0u);
        atomicStore(&wsa[b + HA_BINS + NB + i], 0u);
    }
}

// A COMPACT pass with an empty window: per-tile count / Σe / Σde of keys ≥ tau.
fn request_sums(tau: u32, t: f32, back: u32) {
    request(3u, tau, tau - 1u, 0u, tau, t, back);
    s[S_SUMS] = 1u;
    s[S_SLO] = tau;
    s[S_SHI] = tau - 1u;
    set_f(S_STQ, t);
    s[S_CALL] = 0u;
    s[S_CANDN] = 0u;
}

// Tile t's (count, Σe, Σde, Σe below) relative to the row max at temperature t_.
fn tile_sums(t: u32, t_: f32) -> vec4<f32> {
    let rec = tl_at(row, t);
    let refv = vec2<f32>(bitcast<f32>(ws[rec + T_REF]), bitcast<f32>(ws[rec + T_REFLO]));
    let m = row_max();
    let cnt = f32(ws[rec + T_CNT]);
    let ss = bitcast<f32>(ws[rec + T_S]);
    let aa = bitcast<f32>(ws[rec + T_A]);
    let bs = bitcast<f32>(ws[rec + T_BS]);
    if (ss == 0.0 && bs == 0.0) { return vec4<f32>(cnt, 0.0, 0.0, 0.0); }
    let d = scaled(refv, m, 1.0 / t_);
    let w = exp(d);
    return vec4<f32>(cnt, w * ss, w * (aa + d * ss), w * bs);
}

fn all_tile_sums(t_: f32) -> vec4<f32> {
    var acc = vec4<f32>(0.0);
    for (var t = lid; t < ch.tiles; t += WG) { acc += tile_sums(t, t_); }
    return wg_sum4(lid, acc);
}

// The row max as a two-float (processed logits are; see y_of).
fn row_max() -> vec2<f32> { return vec2<f32>(sf(S_M), sf(S_MLO)); }

fn cand_key(c: u32) -> u32 { return ws[cand_at(row) + 2u * c]; }
// The candidate's processed logit as a two-float (y_of's (hi, lo)).
fn cand_y(c: u32) -> vec2<f32> {
    return vec2<f32>(val_of(cand_key(c)), bitcast<f32>(ws[cand_at(row) + 2u * c + 1u]));
}

// (count, Σw, Σ w·d) over candidates with key ≥ tau; w = e^((y − m)/t_).
// Each thread adds the blocks of its tiles: a fixed order, whatever order the
// atomics placed the blocks in, so the f32 sums are reproducible.
fn cand_sums(tau: u32, t_: f32) -> vec4<f32> {
    var acc = vec4<f32>(0.0);
    let m = row_max();
    let inv_t = 1.0 / t_;
    if (s[S_CANDN] > 0u) {
        for (var t = lid; t < ch.tiles; t += WG) {
            let rec = tl_at(row, t);
            let c0 = ws[rec + T_COFF];
            for (var c = c0; c < c0 + ws[rec + T_CCNT]; c++) {
                if (cand_key(c) >= tau) {
                    let d = scaled(cand_y(c), m, inv_t);
                    let w = exp(d);
                    acc += vec4<f32>(1.0, w, w * d, 0.0);
                }
            }
        }
    }
    return wg_sum4(lid, acc);
}

// The candidates in workgroup memory, with their 64-bit masses at the query's
// temperature: the bisections below read them dozens of times.
var<workgroup> sh_ck: array<u32, CAP>;
var<workgroup> sh_cq: array<vec2<u32>, CAP>;

// Loads them; returns the largest candidate key (0 when there are none).
fn load_cands(t_: f32) -> u32 {
    let m = row_max();
    let inv_t = 1.0 / t_;
    var kmax = 0u;
    for (var c = lid; c < s[S_CANDN]; c += WG) {
        let k = cand_key(c);
        sh_ck[c] = k;
        sh_cq[c] = mass_of(weight(cand_y(c), m, inv_t));
        kmax = max(kmax, k);
    }
    return wg_max_u(lid, kmax);
}

fn cand_count(tau: u32) -> u32 {
    var n = 0u;
    for (var c = lid; c < s[S_CANDN]; c += WG) {
        if (sh_ck[c] >= tau) { n += 1u; }
    }
    return wg_sum_u(lid, n);
}

// Σq (64-bit fixed point, as the scan pass adds it) over candidates ≥ tau.
fn cand_mass(tau: u32) -> vec2<u32> {
    var acc = vec2<u32>(0u);
    for (var c = lid; c < s[S_CANDN]; c += WG) {
        if (sh_ck[c] >= tau) { acc = add64(acc, sh_cq[c]); }
    }
    return wg_sum64(lid, acc);
}

// Σq of the keys above the last COMPACT window, over the tiles.
fn tiles_mass_above() -> vec2<u32> {
    var acc = vec2<u32>(0u);
    for (var t = lid; t < ch.tiles; t += WG) {
        let rec = tl_at(row, t);
        acc = add64(acc, vec2<u32>(ws[rec + T_QA], ws[rec + T_QA + 1u]));
    }
    return wg_sum64(lid, acc);
}

// Survivor sums (count, Σe, Σde) at (tau, t_) if the workspace determines them.
fn known_sums(tau: u32, t_: f32) -> bool {
    // Candidates hold every survivor with key ≥ S_SLO, exactly, at any T.
    if (s[S_CALL] != 0u && tau >= s[S_SLO]) { return true; }
    return s[S_SUMS] != 0u && sf(S_STQ) == t_ && tau >= s[S_SLO] && tau <= s[S_SHI] + 1u;
}

fn survivor_sums(tau: u32, t_: f32) -> vec4<f32> {
    let c = cand_sums(tau, t_);
    if (s[S_CALL] != 0u && tau >= s[S_SLO]) { return c; }
    return all_tile_sums(t_) + vec4<f32>(c.xyz, 0.0);
}

// ---- queries ---------------------------------------------------------------
// A query asks for the largest tau ≥ floor with G(tau) ≥ target: G counts the
// survivors with key ≥ tau (top-k, min_tokens_to_keep) or sums their 64-bit
// masses (top-p). Both are exact integers, so every histogram round keeps the
// one bin holding the answer, and the rounds end in a single key or in a
// window of at most CAP ids that is compacted and bisected.

fn finish_query(tau0: u32, cnt: u32, known0: bool) {
    var tau = tau0;
    var known = known0;
    // Top-p always keeps the top tie group (SPEC §3.5), even when p − 1e-6
    // rounds to 0: the row max is a survivor of every stage.
    let km = key_of(sf(S_M));
    if (s[S_QK] == K_MASS && tau > km) {
        tau = km;
        known = false;
    }
    s[S_QRES] = tau;
    s[S_QRCNT] = cnt;
    s[S_QRCK] = select(0u, 1u, known);
    s[S_PHASE] = s[S_QRET];
}

// Largest tau in [lo, hi] with base + count(candidates ≥ max(tau, floor)) ≥ tgt.
// The caller ensures it holds at lo and that base < tgt, so the answer is at
// most the largest candidate key `kmax` (loaded by load_cands).
fn bisect_count(lo: u32, hi: u32, kmax: u32, floor_k: u32, base: u32, tgt: u32) -> u32 {
    var a = lo;
    var b = max(lo, min(hi, kmax));
    loop {
        if (a >= b) { break; }
        let mid = a + (b - a) / 2u + ((b - a) & 1u);
        if (base + cand_count(max(mid, floor_k)) >= tgt) { a = mid; } else { b = mid - 1u; }
    }
    return a;
}

// The same with the candidates' 64-bit masses.
fn bisect_mass(lo: u32, hi: u32, kmax: u32, floor_k: u32, base: vec2<u32>, goal: vec2<u32>) -> u32 {
    var a = lo;
    var b = max(lo, min(hi, kmax));
    loop {
        if (a >= b) { break; }
        let mid = a + (b - a) / 2u + ((b - a) & 1u);
        if (ge64(add64(base, cand_mass(max(mid, floor_k))), goal)) { a = mid; } else { b = mid - 1u; }
    }
    return a;
}

// The mass a top-p query must reach: (p − 1e-6) of the survivors' total.
fn mass_goal(total: vec2<u32>) -> vec2<u32> {
    let g = to64(bitcast<f32>(s[S_QTGT]) * f32_of64(total));
    return select(total, g, ge64(total, g));
}

fn set_goal(goal: vec2<u32>) {
    s[S_QGOAL] = goal.x;
    s[S_QGOAL_HI] = goal.y;
}

fn set_above(count: u32, mass: vec2<u32>) {
    s[S_QBC] = count;
    s[S_QBM] = mass.x;
    s[S_QBM_HI] = mass.y;
}

// The d-bin thresholds of a mass query's first round: bin b holds the keys
// in [th[b+1], th[b]), i.e. y in (m − (b+1)T/8, m − bT/8]; th[0] is above
// every key and th[NB] = 0. Any monotone choice would be exact; these spread
// the mass of a typical row over the bins.
fn write_thresholds(t_: f32) {
    let base = th_at(row);
    let m = sf(S_M);
    for (var b = lid; b <= NB; b += WG) {
        var th = NONE;
        if (b == NB) {
            th = 0u;
        } else if (b > 0u) {
            th = key_of(m - f32(b) * t_ * 0.125) + 1u;
        }
        atomicStore(&wsa[base + b], th);
    }
}

fn start_query(kind: u32, tgt: u32, floor_k: u32, back: u32) {
    s[S_QK] = kind;
    s[S_QTGT] = tgt;
    s[S_QFLOOR] = floor_k;
    s[S_QRET] = back;
    set_above(0u, vec2<u32>(0u));
    s[S_QLO] = floor_k;
    s[S_QHI] = KEY_MAX;
    let tq = sf(S_TQ);
    if (kind == K_MASS && !(bitcast<f32>(tgt) > 0.0)) {
        // p − 1e-6 ≤ 0: the top tie group alone reaches it.
        finish_query(key_of(sf(S_M)), 0u, false);
        return;
    }
    if (s[S_CALL] != 0u) {
        // The candidates are every survivor with key ≥ S_SLO: solve here, with
        // no read of the row, whenever that settles the query. A count query
        // whose target lies above S_SLO is settled; a mass query needs the
        // total mass, so every survivor (floor ≥ S_SLO).
        let lo = max(floor_k, s[S_SLO]);
        let kmax = load_cands(tq);
        if (kind == K_COUNT) {
            let all = cand_count(lo);
            if (all >= tgt) {
                let tau = bisect_count(lo, KEY_MAX, kmax, lo, 0u, tgt);
                finish_query(tau, cand_count(tau), true);
                return;
            }
            if (floor_k >= s[S_SLO]) {
                finish_query(floor_k, all, true);
                return;
            }
        } else if (floor_k >= s[S_SLO]) {
            let goal = mass_goal(cand_mass(floor_k));
            let tau = bisect_mass(floor_k, KEY_MAX, kmax, floor_k, vec2<u32>(0u), goal);
            finish_query(tau, cand_count(tau), true);
            return;
        }
    }
    if (kind == K_COUNT && s[S_HAOK] != 0u) {
        s[S_QBIN] = 0u;
        // The statistics pass histogrammed the first digit already.
        s[S_PHASE] = PH_QBINS;
        return;
    }
    clear_bins();
    if (kind == K_MASS) {
        s[S_QBIN] = 1u;
        write_thresholds(tq);
        // The thresholds overwrite the first-digit histogram (clear_bins
        // marked it spent).
        request(1u, floor_k, KEY_MAX, 0u, floor_k, tq, PH_QBINS);
    } else {
        s[S_QBIN] = 2u;
        request(2u, floor_k, KEY_MAX, shift_for(floor_k, KEY_MAX), floor_k, tq, PH_QBINS);
    }
}

fn shift_for(lo: u32, hi: u32) -> u32 {
    let span = hi - lo;
    if (span == 0u) { return 0u; }
    let bits = 32u - countLeadingZeros(span);
    let nb_bits = 31u - countLeadingZeros(NB);
    return select(0u, bits - nb_bits, bits > nb_bits);
}

fn bin_count(b: u32) -> u32 {
    let base = bins_at(row);
    if (s[S_QBIN] == 0u) { return atomicLoad(&wsa[base + HA_BINS - 1u - b]); }
    return atomicLoad(&wsa[base + b]);
}

fn bin_mass(b: u32) -> vec2<u32> {
    let base = bins_at(row);
    return vec2<u32>(atomicLoad(&wsa[base + HA_BINS + b]), atomicLoad(&wsa[base + HA_BINS + NB + b]));
}

// Key range [lo, hi] of bin b (bin 0 holds the largest keys), within the floor.
fn window_keys(b: u32) -> vec2<u32> {
    let floor_k = s[S_QFLOOR];
    let q = s[S_QBIN];
    if (q == 0u) {
        let sh = 32u - HA_BITS;
        let p = HA_BINS - 1u - b;
        let whi = min(KEY_MAX, (p << sh) | ((1u << sh) - 1u));
        return vec2<u32>(max(floor_k, p << sh), whi);
    }
    if (q == 1u) {
        let th = th_at(row);
        let upper = atomicLoad(&wsa[th + b]);
        return vec2<u32>(max(floor_k, atomicLoad(&wsa[th + b + 1u])), min(KEY_MAX, upper - 1u));
    }
    let lo = s[S_QLO];
    let hi = s[S_QHI];
    let sh = s[S_PSHIFT];
    let whi = hi - (b << sh);
    let off = (b << sh) + ((1u << sh) - 1u);
    let wlo = select(hi - off, lo, off > hi - lo);
    return vec2<u32>(wlo, whi);
}

// (count, mass lo, mass hi) added with the carry into the high word.
fn add3(a: vec4<u32>, b: vec4<u32>) -> vec4<u32> {
    let m = add64(a.yz, b.yz);
    return vec4<u32>(a.x + b.x, m.x, m.y, 0u);
}

var<workgroup> sh_cum: array<vec4<u32>, WG>;
var<workgroup> sh_hit: vec4<u32>;

// Inclusive scan of (count, 64-bit mass) per thread (Hillis–Steele, fixed
// order). sh_cum[WG − 1] keeps the total until the next call writes sh_cum;
// the trailing barrier lets that call start right away (like wg_scan_u).
fn wg_scan3(v: vec4<u32>) -> vec4<u32> {
    sh_cum[lid] = v;
    workgroupBarrier();
    for (var st = 1u; st < WG; st <<= 1u) {
        var add = vec4<u32>(0u);
        if (lid >= st) { add = sh_cum[lid - st]; }
        workgroupBarrier();
        sh_cum[lid] = add3(sh_cum[lid], add);
        workgroupBarrier();
    }
    let out = sh_cum[lid];
    workgroupBarrier();
    return out;
}

// Asks for a histogram round over the keys [lo, hi] whose cumulative above is given.
fn refine(lo: u32, hi: u32, above_count: u32, above_mass: vec2<u32>) {
    clear_bins();
    s[S_QBIN] = 2u;
    s[S_QLO] = lo;
    s[S_QHI] = hi;
    set_above(above_count, above_mass);
    request(2u, lo, hi, shift_for(lo, hi), s[S_QFLOOR], sf(S_TQ), PH_QBINS);
}

// Reads the histogram the last round built and narrows the window to the bin
// holding the answer.
fn query_bins() {
    let kind = s[S_QK];
    let nbins = select(NB, HA_BINS, s[S_QBIN] == 0u);
    if (kind == K_MASS && s[S_QBIN] == 1u) {
        // The first round saw every survivor: its exact total fixes the goal.
        var acc = vec2<u32>(0u);
        for (var b = lid; b < nbins; b += WG) { acc = add64(acc, bin_mass(b)); }
        set_goal(mass_goal(wg_sum64(lid, acc)));
        set_above(0u, vec2<u32>(0u));
    }
    let goal = vec2<u32>(s[S_QGOAL], s[S_QGOAL_HI]);
    var run = vec4<u32>(s[S_QBC], s[S_QBM], s[S_QBM_HI], 0u);
    var hit = NONE;
    for (var chunk = 0u; chunk < nbins; chunk += WG) {
        let b = chunk + lid;
        var v = vec4<u32>(0u);
        if (b < nbins) {
            v.x = bin_count(b);
            if (kind == K_MASS) {
                let mm = bin_mass(b);
                v.y = mm.x;
                v.z = mm.y;
            }
        }
        let incl = add3(run, wg_scan3(v));
        var reached = incl.x >= s[S_QTGT];
        if (kind == K_MASS) { reached = ge64(incl.yz, goal); }
        hit = wg_min_u(lid, select(NONE, b, b < nbins && reached));
        if (hit != NONE) {
            // The cumulative strictly above the hit bin, and the bin's count.
            if (b == hit) {
                let m = add64(incl.yz, vec2<u32>(~v.y, ~v.z));
                sh_hit = vec4<u32>(incl.x - v.x, add64(m, vec2<u32>(1u, 0u)), v.x);
            }
            break;
        }
        run = add3(run, workgroupUniformLoad(&sh_cum[WG - 1u]));
    }
    if (hit == NONE) {
        let lo = s[S_QLO];
        if (kind == K_COUNT || lo <= s[S_QFLOOR]) {
            // Fewer survivors (or less mass) than the target: all stay.
            finish_query(s[S_QFLOOR], s[S_CNT], s[S_CNTK] != 0u);
        } else {
            // The target lies below this window.
            refine(s[S_QFLOOR], lo - 1u, run.x, run.yz);
        }
        return;
    }
    let hb = workgroupUniformLoad(&sh_hit);
    let above_c = hb.x;
    let wcount = hb.w;
    let w = window_keys(hit);
    if (w.y < w.x) {
        // The bin lies below the floor: every survivor stays.
        finish_query(s[S_QFLOOR], s[S_CNT], s[S_CNTK] != 0u);
        return;
    }
    set_above(above_c, hb.yz);
    s[S_QLO] = w.x;
    s[S_QHI] = w.y;
    if (w.x == w.y) {
        finish_query(w.x, above_c + wcount, true);
        return;
    }
    let tq = sf(S_TQ);
    if (above_c + wcount + 64u <= CAP) {
        // Everything from the window up fits: compact it all (the candidates
        // then answer later queries above the window without a read).
        set_above(0u, vec2<u32>(0u));
        s[S_QHI] = KEY_MAX;
        request(3u, w.x, KEY_MAX, 0u, s[S_QFLOOR], tq, PH_QCOMP);
    } else if (wcount + 64u <= CAP) {
        request(3u, w.x, w.y, 0u, s[S_QFLOOR], tq, PH_QCOMP);
    } else {
        refine(w.x, w.y, above_c, hb.yz);
    }
}

var<workgroup> sh_n: u32;

// After a COMPACT round: candidates in tile order, exact sums, exact solve.
fn query_compacted() {
    if (lid == 0u) {
        sh_n = atomicLoad(&wsa[ra_at(row) + RA_CAND]);
        atomicStore(&wsa[ra_at(row) + RA_CAND], 0u);
    }
    let n_raw = workgroupUniformLoad(&sh_n);
    let lo = s[S_PLO];
    let hi = s[S_PHI];
    let tq = sf(S_PT);
    let floor_k = s[S_QFLOOR];
    let kind = s[S_QK];
    if (n_raw > CAP) {
        // More ids in the window than room: split it further instead.
        refine(lo, hi, s[S_QBC], vec2<u32>(s[S_QBM], s[S_QBM_HI]));
        return;
    }
    s[S_CANDN] = n_raw;
    s[S_SUMS] = 1u;
    s[S_SLO] = max(lo, floor_k);
    s[S_SHI] = hi;
    set_f(S_STQ, tq);
    // With an open window every id with key ≥ S_SLO is a candidate (not every
    // survivor: ids between the stage floor and lo were not compacted).
    s[S_CALL] = select(0u, 1u, hi == KEY_MAX);
    let lo_f = max(lo, floor_k);
    let above_c = u32(all_tile_sums(tq).x);
    let kmax = load_cands(tq);
    if (kind == K_COUNT) {
        let k = s[S_QTGT];
        let total = above_c + cand_count(lo_f);
        if (total < k) {
            finish_query(floor_k, total, lo <= floor_k);
            return;
        }
        let tau = bisect_count(lo_f, hi, kmax, floor_k, above_c, k);
        finish_query(tau, above_c + cand_count(tau), true);
        return;
    }
    let goal = vec2<u32>(s[S_QGOAL], s[S_QGOAL_HI]);
    let above_m = tiles_mass_above();
    if (ge64(above_m, goal) && hi != KEY_MAX) {
        // The goal is reached above the window (not expected: the windows are
        // exact; kept as a guard).
        refine(hi + 1u, KEY_MAX, 0u, vec2<u32>(0u));
        return;
    }
    let with_window = add64(above_m, cand_mass(lo_f));
    if (!ge64(with_window, goal) && lo > floor_k) {
        refine(floor_k, lo - 1u, above_c + cand_count(lo_f), with_window);
        return;
    }
    let tau = bisect_mass(lo_f, hi, kmax, floor_k, above_m, goal);
    finish_query(tau, above_c + cand_count(tau), true);
}

// ---- stages ----------------------------------------------------------------

fn stage_kind(order: u32, i: u32) -> u32 {
    // 0 top-k, 1 top-p, 2 min-p
    if (order == 1u) { return array<u32, 3>(2u, 0u, 1u)[i]; }
    return i;
}

// Smallest key whose value passes (y − m)/T ≥ ln(min_p) (SPEC §3.6).
fn minp_key(lnmp: f32) -> u32 {
    let m = sf(S_M);
    let tq = sf(S_TQ);
    var k = clamp(key_of(m + lnmp * tq), KEY_MIN, key_of(m));
    for (var i = 0u; i < 64u; i++) {
        if (k > KEY_MIN && (val_of(k - 1u) - m) / tq >= lnmp) { k -= 1u; } else { break; }
    }
    for (var i = 0u; i < 64u; i++) {
        if ((val_of(k) - m) / tq < lnmp) { k += 1u; } else { break; }
    }
    return k;
}

// The number of survivors with key ≥ tau, if the workspace determines it;
// otherwise asks for a count pass that resumes the stage at sub-step
// `resume`, and returns NONE.
fn count_or_request(tau: u32, tq: f32, resume: u32) -> u32 {
    if (known_sums(tau, tq)) { return u32(survivor_sums(tau, tq).x); }
    s[S_SUB] = resume;
    request_sums(tau, tq, PH_STAGE);
    return NONE;
}

fn next_stage() {
    s[S_STAGE] += 1u;
    s[S_SUB] = 0u;
}

fn run_stage() {
    if (s[S_STAGE] >= 3u) {
        s[S_PHASE] = PH_POST;
        return;
    }
    let order = (mrec(row, M_FLAGS) >> 2u) & 3u;
    let kind = stage_kind(order, s[S_STAGE]);
    let mk = mrec(row, M_MINKEEP);
    let tau = s[S_TAU];
    let tq = sf(S_TQ);
    let sub = s[S_SUB];
    if (sub == 5u) {
        // A count pass ran for the stage's input (request_sums set the state).
        s[S_CNT] = u32(all_tile_sums(tq).x);
        s[S_CNTK] = 1u;
        s[S_SUB] = 0u;
        return;
    }
    if (sub == 0u) {
        let off = (kind == 0u && (mrec(row, M_TOPK) == 0u || (s[S_CNTK] != 0u && mrec(row, M_TOPK) >= s[S_CNT])))
            || (kind == 1u && sf(S_TOPP) >= 1.0)
            || (kind == 2u && pf(M_MINP) <= 0.0);
        if (off) {
            next_stage();
            return;
        }
        if (mk > 1u && s[S_CNTK] == 0u) {
            let n = count_or_request(tau, tq, 5u);
            if (n == NONE) { return; }
            s[S_CNT] = n;
            s[S_CNTK] = 1u;
        }
        s[S_TBEF] = tau;
        s[S_CBEF] = s[S_CNT];
        s[S_CBEFK] = s[S_CNTK];
        s[S_SUB] = 1u;
        if (kind == 0u) {
            start_query(K_COUNT, mrec(row, M_TOPK), tau, PH_STAGE);
        } else if (kind == 1u) {
            start_query(K_MASS, bitcast<u32>(sf(S_TOPP) - 1e-6), tau, PH_STAGE);
        } else {
            let tm = max(tau, minp_key(pf(M_LNMINP)));
            var cnt = s[S_CNT];
            var known = s[S_CNTK] != 0u && tm == tau;
            if (tm != tau && known_sums(tm, tq)) {
                cnt = u32(survivor_sums(tm, tq).x);
                known = true;
            }
            finish_query(tm, cnt, known);
            s[S_PHASE] = PH_STAGE;
        }
        return;
    }
    if (sub == 6u) {
        // A count pass ran for the stage's output (request_sums set the state).
        s[S_QRCNT] = u32(all_tile_sums(tq).x);
        s[S_QRCK] = 1u;
        s[S_SUB] = 1u;
        return;
    }
    if (sub == 1u) {
        let t_new = max(s[S_TBEF], s[S_QRES]);
        s[S_QRES] = t_new;
        if (mk > 1u && t_new != s[S_TBEF]) {
            if (s[S_QRCK] == 0u) {
                let n = count_or_request(t_new, tq, 6u);
                if (n == NONE) { return; }
                s[S_QRCNT] = n;
                s[S_QRCK] = 1u;
            }
            if (s[S_QRCNT] < mk && s[S_QRCNT] < s[S_CBEF]) {
                // min_tokens_to_keep: the mk largest of the stage's input.
                s[S_SUB] = 2u;
                start_query(K_COUNT, mk, s[S_TBEF], PH_STAGE);
                return;
            }
        }
        s[S_TAU] = t_new;
        s[S_CNT] = s[S_QRCNT];
        s[S_CNTK] = select(s[S_QRCK], s[S_CBEFK], t_new == s[S_TBEF]);
        if (t_new == s[S_TBEF]) { s[S_CNT] = s[S_CBEF]; }
        next_stage();
        return;
    }
    // sub 2: min_tokens_to_keep's query is back.
    s[S_TAU] = max(s[S_TBEF], s[S_QRES]);
    s[S_CNT] = s[S_QRCNT];
    s[S_CNTK] = s[S_QRCK];
    next_stage();
}

// ---- start and end ---------------------------------------------------------

fn go_greedy() {
    s[S_GREEDY] = 1u;
    set_f(S_T, 0.0);
    s[S_PHASE] = PH_DONE;
}

var<workgroup> sh_tile: u32;

fn init_row() {
    // Merge the statistics pass's tiles (fixed order).
    var mloc = NEG_INF;
    var mrl = NEG_INF;
    for (var t = lid; t < ch.tiles; t += WG) {
        let rec = tl_at(row, t);
        mloc = max(mloc, bitcast<f32>(ws[rec + T_M1]));
        mrl = max(mrl, bitcast<f32>(ws[rec + T_MRAW]));
    }
    let mm = wg_max4(lid, vec4<f32>(mloc, mrl, 0.0, 0.0));
    let m = mm.x;
    let mraw = mm.y;
    // The two-float max: the largest lo among the tiles whose max is m.
    var mlo_loc = NEG_INF;
    for (var t = lid; t < ch.tiles; t += WG) {
        let rec = tl_at(row, t);
        if (bitcast<f32>(ws[rec + T_M1]) == m) { mlo_loc = max(mlo_loc, bitcast<f32>(ws[rec + T_MLO])); }
    }
    let m_lo = wg_max4(lid, vec4<f32>(mlo_loc, 0.0, 0.0, 0.0)).x;
    var acc = vec4<f32>(0.0);
    var accr = vec4<f32>(0.0);
    var best_t = NONE;
    for (var t = lid; t < ch.tiles; t += WG) {
        let rec = tl_at(row, t);
        let mt = bitcast<f32>(ws[rec + T_M1]);
        let mt_lo = bitcast<f32>(ws[rec + T_MLO]);
        if (mt != NEG_INF) {
            let d = scaled(vec2<f32>(mt, mt_lo), vec2<f32>(m, m_lo), 1.0);
            let w = exp(d);
            let st = bitcast<f32>(ws[rec + T_S1]);
            let at = bitcast<f32>(ws[rec + T_A1]);
            let bt = bitcast<f32>(ws[rec + T_B1]);
            acc += vec4<f32>(w * st, w * (at + d * st), w * (bt + 2.0 * d * at + d * d * st), 0.0);
        }
        accr.x += f32(ws[rec + T_N]);
        let mr = bitcast<f32>(ws[rec + T_MRAW]);
        if (mr != NEG_INF) { accr.y += exp(mr - mraw) * bitcast<f32>(ws[rec + T_SRAW]); }
        if (mt == m && mt_lo == m_lo && best_t == NONE) { best_t = t; }
    }
    let tail = wg_tail(lid, acc, accr, vec2<u32>(best_t, NONE));
    let tot = tail.a;
    let totr = tail.b;
    let bt = tail.m.x;
    let n = u32(totr.x);
    set_f(S_M, m);
    set_f(S_MLO, select(0.0, m_lo, m != NEG_INF));
    set_f(S_S1, tot.x);
    set_f(S_MRAW, mraw);
    set_f(S_SRAW, totr.y);
    s[S_N] = n;
    s[S_ARG] = NONE;
    if (bt != NONE) { s[S_ARG] = ws[tl_at(row, bt) + T_ARG]; }
    let h = max(0.0, log(tot.x) - tot.y / tot.x);
    let a_s = tot.y / tot.x;
    set_f(S_H, h);
    set_f(S_VAR, max(0.0, tot.z / tot.x - a_s * a_s));

    // Errors in the reference's order: bad logit, bias, penalties, all masked.
    let res = res_at(row);
    let bad = atomicLoad(&wsa[ra_at(row) + RA_BAD]);
    let perr = atomicLoad(&wsa[ra_at(row) + RA_PERR]);
    if (bad != NONE || perr != NONE || n == 0u) {
        s[S_STATUS] = 2u;
        s[S_PHASE] = PH_DONE;
        if (lid == 0u) {
            outb[res + R_STATUS] = 2u;
            if (bad != NONE) {
                outb[res + R_ERRC] = E_LOGIT;
                outb[res + R_ERRI] = bad;
                outb[res + R_ERRV] = bitcast<u32>(load_x(row, bad));
            } else if (perr != NONE) {
                let id = (perr & 0x7fffffffu) >> 1u;
                outb[res + R_ERRC] = select(E_BIAS, select(E_REP, E_FREQ, (perr & 1u) != 0u), (perr & 0x80000000u) != 0u);
                outb[res + R_ERRI] = id;
                let pe = mrec(row, M_PATCH_E);
                let e = lower_patch(pe, pe + mrec(row, M_PATCH_N), id);
                outb[res + R_ERRV] = ws[ch.pv_base + 2u * e];
            } else {
                outb[res + R_ERRC] = E_MASKED;
            }
        }
        return;
    }
    s[S_TAU] = KEY_MIN;
    s[S_CNT] = n;
    s[S_CNTK] = 1u;
    // The statistics pass's tile sums: every finite id at T_A.
    s[S_SUMS] = 1u;
    s[S_SLO] = KEY_MIN;
    s[S_SHI] = KEY_MIN - 1u;
    s[S_STQ] = mrec(row, M_TA);
    s[S_CALL] = 0u;
    s[S_CANDN] = 0u;
    set_f(S_TOPP, pf(M_TOPP));
    let flags = mrec(row, M_FLAGS);
    let order = (flags >> 2u) & 3u;
    let t_stat = pf(M_TEMP);
    s[S_HAOK] = select(0u, 1u, (flags & F_HIST_A) != 0u);
    // llama.cpp order with a dynamic temperature reports the survivors'
    // guide entropy even when the static temperature makes the row greedy.
    if (!(t_stat > 0.0) && !(order == 2u && (flags & F_DYN) != 0u)) {
        if ((flags & F_DYN) != 0u) { set_f(S_GUIDE, guide_of(row, h, n)); }
        go_greedy();
        return;
    }
    if (order != 2u) {
        var t = t_stat;
        if ((flags & F_DYN) != 0u) {
            let g = guide_of(row, h, n);
            set_f(S_GUIDE, g);
            t = map_temperature(row, g, n, t_stat);
            set_f(S_TOPP, map_top_p(row, g, pf(M_TOPP)));
        }
        if (!(t > 0.0)) {
            go_greedy();
            return;
        }
        set_f(S_TQ, t);
    } else {
        set_f(S_TQ, 1.0);
    }
    s[S_STAGE] = 0u;
    s[S_SUB] = 0u;
    s[S_PHASE] = PH_STAGE;
}

fn post_stages() {
    let flags = mrec(row, M_FLAGS);
    let order = (flags >> 2u) & 3u;
    if (order != 2u) {
        set_f(S_T, sf(S_TQ));
        s[S_PHASE] = PH_FINAL;
        return;
    }
    var t = pf(M_TEMP);
    if ((flags & F_DYN) != 0u) {
        // llama.cpp: the entropy of the survivors (at T = 1) guides T.
        let tau = s[S_TAU];
        if (!known_sums(tau, 1.0)) {
            request_sums(tau, 1.0, PH_POST);
            return;
        }
        let ss = survivor_sums(tau, 1.0);
        let hs = max(0.0, log(ss.y) - ss.z / ss.y);
        let ns = u32(ss.x);
        let g = guide_of(row, hs, ns);
        set_f(S_GUIDE, g);
        if (t > 0.0) { t = map_temperature(row, g, ns, t); }
    }
    if (!(t > 0.0)) {
        go_greedy();
        return;
    }
    set_f(S_T, t);
    s[S_PHASE] = PH_FINAL;
}

var<workgroup> sh_scan_run: f32;

fn finalize() {
    let t = sf(S_T);
    let tau = s[S_TAU];
    if (!known_sums(tau, t)) {
        request_sums(tau, t, PH_FINAL);
        return;
    }
    let m = row_max();
    // Kept mass per tile (relative to the row max), then its prefix.
    var run = 0.0;
    var tot = vec4<f32>(0.0);
    for (var t0 = 0u; t0 < ch.tiles; t0 += WG) {
        let tt = t0 + lid;
        var v = vec4<f32>(0.0);
        if (tt < ch.tiles) {
            let rec = tl_at(row, tt);
            if (s[S_CALL] == 0u) { v = tile_sums(tt, t); v.w = 0.0; }
            if (s[S_CANDN] > 0u) {
                let c0 = ws[rec + T_COFF];
                let cn = select(0u, ws[rec + T_CCNT], s[S_SUMS] != 0u);
                for (var c = c0; c < c0 + cn; c++) {
                    if (cand_key(c) >= tau) {
                        let d = scaled(cand_y(c), m, 1.0 / t);
                        let w = exp(d);
                        v += vec4<f32>(1.0, w, w * d, 0.0);
                    }
                }
            }
            ws[rec + T_SK] = bitcast<u32>(v.y);
        }
        tot += v;
        let incl = wg_scan_f(lid, v.y);
        if (tt < ch.tiles) { ws[tl_at(row, tt) + T_PRE] = bitcast<u32>(run + incl); }
        if (lid == WG - 1u) { sh_scan_run = incl; }
        run += workgroupUniformLoad(&sh_scan_run);
    }
    let all = wg_sum4(lid, tot);
    let res = res_at(row);
    if (lid == 0u) {
        outb[res + R_KEPT] = u32(all.x);
        outb[res + R_HF] = bitcast<u32>(max(0.0, log(all.y) - all.z / all.y));
        outb[res + R_LNS] = bitcast<u32>(log(run));
    }
    s[S_PHASE] = PH_DONE;
}

// Merges the tiles' top-n lists (descending, ties by lowest id).
fn merge_topn(which: u32, n: u32, greedy: bool) -> u32 {
    let dst = ch.to_base + grow(row) * TOPW + which * 40u;
    var last_v = POS_INF;
    var last_i = 0u;
    var taken = 0u;
    let tau = s[S_TAU];
    for (var k = 0u; k < n; k++) {
        var bv = NEG_INF;
        var bi = NONE;
        for (var t = lid; t < ch.tiles; t += WG) {
            let base = ch.tn_base + (row * ch.tiles + t) * 4u * ch.ntop + which * 2u * ch.ntop;
            for (var j = 0u; j < n; j++) {
                let v = bitcast<f32>(ws[base + 2u * j]);
                let i = ws[base + 2u * j + 1u];
                if (i == NONE || v == NEG_INF) { break; }
                let after = v < last_v || (v == last_v && i > last_i);
                let ok = which == 0u || (!greedy && key_of(v) >= tau) || (greedy && i == s[S_ARG]);
                if (after && ok) {
                    if (bi == NONE || v > bv || (v == bv && i < bi)) { bv = v; bi = i; }
                    break;
                }
            }
        }
        let best = wg_best(lid, bv, bi);
        let mv = bitcast<f32>(best.x);
        let mi = best.y;
        if (mi == NONE) { break; }
        if (lid == 0u) {
            // The raw logit: the host computes the logprob in f64 (R_TOKX).
            outb[dst + 2u * k] = mi;
            outb[dst + 2u * k + 1u] = bitcast<u32>(load_x(row, mi));
        }
        last_v = mv;
        last_i = mi;
        taken += 1u;
    }
    return taken;
}

fn write_results() {
    let res = res_at(row);
    let greedy = s[S_GREEDY] != 0u;
    storageBarrier();
    workgroupBarrier();
    if (lid == 0u) {
        outb[res + R_STATUS] = 1u;
        outb[res + R_H] = s[S_H];
        outb[res + R_VAR] = s[S_VAR];
        outb[res + R_GUIDE] = s[S_GUIDE];
        outb[res + R_T] = s[S_T];
        outb[res + R_TOPP] = s[S_TOPP];
        outb[res + R_M] = s[S_M];
        outb[res + R_MLO] = s[S_MLO];
        outb[res + R_ARG] = s[S_ARG];
        outb[res + R_ARGX] = bitcast<u32>(load_x(row, s[S_ARG]));
        outb[res + R_TAU] = s[S_TAU];
        outb[res + R_GREEDY] = s[S_GREEDY];
        outb[res + R_MRAW] = s[S_MRAW];
        outb[res + R_LNSRAW] = bitcast<u32>(log(sf(S_SRAW)));
        outb[res + R_PASSES] = s[S_PASSES];
        if (greedy) {
            outb[res + R_KEPT] = 1u;
            outb[res + R_HF] = 0u;
            outb[res + R_LNS] = 0u;
            outb[res + R_TOKEN] = s[S_ARG];
        }
    }
    storageBarrier();
    workgroupBarrier();
    let n = min(mrec(row, M_LOGPROBS), ch.ntop);
    var nr = 0u;
    var np = 0u;
    if (n > 0u) {
        nr = merge_topn(0u, n, greedy);
        np = merge_topn(1u, n, greedy);
    }
    if (lid == 0u) {
        outb[res + R_NRAW] = nr;
        outb[res + R_NPROC] = np;
    }
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid0: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let wid = vec3<u32>(group(wid0.x, nwg.x), group(wid0.y, nwg.y), 0u);
    init_consts();
    lid = lane(lid3.x);
    if (ch.round == 0u) {
        row = wid.y;
    } else {
        if (lid == 0u) { sh_row = atomicLoad(&args[ch.al_base + ch.round * ch.rows + wid.y]); }
        row = workgroupUniformLoad(&sh_row);
    }
    if (row >= ch.rows) { return; }
    let st = st_at(row);
    load_state(st);
    if (s[S_STATUS] != 0u) { return; }
    want_pass = false;
    if (ch.round > 0u) { s[S_PASSES] += 1u; }
    for (var guard = 0u; guard < 64u; guard++) {
        let ph = s[S_PHASE];
        if (ph == PH_INIT) {
            init_row();
        } else if (ph == PH_STAGE) {
            run_stage();
        } else if (ph == PH_POST) {
            post_stages();
        } else if (ph == PH_FINAL) {
            finalize();
        } else if (ph == PH_QBINS) {
            query_bins();
        } else if (ph == PH_QCOMP) {
            query_compacted();
        }
        if (want_pass || s[S_PHASE] == PH_DONE) { break; }
    }
    if (s[S_STATUS] == 0u && s[S_PHASE] == PH_DONE) {
        write_results();
        s[S_STATUS] = 1u;
    }
    if (want_pass && ch.round + 1u > ch.nrounds) {
        // Out of rounds (the host bounds them from the parameters).
        want_pass = false;
        s[S_STATUS] = 2u;
        if (lid == 0u) {
            outb[res_at(row) + R_STATUS] = 2u;
            outb[res_at(row) + R_ERRC] = E_ROUNDS;
        }
    }
    // Every invocation loaded the state from `ws` at the start; thread 0
    // stores it only after all of them have (a path without any barrier
    // would otherwise let it overwrite what a late warp has yet to load).
    storageBarrier();
    if (lid == 0u) {
        store_state(st);
        if (want_pass) {
            let k = ch.round + 1u;
            let slot = atomicAdd(&cnt[ch.cnt_base + k * 8u + 1u], 1u);
            atomicAdd(&cnt[ch.cnt_base + k * 8u + 5u], 1u);
            atomicStore(&args[ch.al_base + k * ch.rows + slot], row);
        }
    }
}
