// The row solver: one workgroup per row, run after the statistics pass. It
// merges the tiles' partials (fixed order), takes the row through docs/spec.md §3
// stage by stage, reads the row again itself whenever it cannot go on from
// what it has (run_pass: the workgroup loops over the row's tiles; rows that
// need no read are done at once), then draws token 0 and writes the row's
// results. Every thread runs the same program on the same values, so control
// flow is uniform and the reductions can sit anywhere.
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
const PH_MIRO: u32 = 5u;
const PH_QSTART: u32 = 6u;
const PH_COUNT: u32 = 7u;
const PH_QBINS: u32 = 11u;
const PH_QCOMP: u32 = 12u;

const K_COUNT: u32 = 1u;
const K_MASS: u32 = 2u;

// Errors reported in R_ERRC.

// The row's state, the same in every invocation; it lives only for the
// dispatch (private memory starts zeroed: phase PH_INIT, status running).
var<private> s: array<u32, ST>;
var<private> lid: u32;
var<private> row: u32;
var<private> want_pass: bool;
// Candidates the last COMPACT read found (may exceed CAP: then they did not fit).
var<private> pass_cands: u32;
// Phase steps taken (a bound no row reaches ends the loop with an error).
var<private> steps: u32;
// What the last BAND read found: the survivors' smallest and largest key,
// the largest one's lo and (lowest) id, and their count.
var<private> band_min: u32;
var<private> band_max: u32;
var<private> band_lo: f32;
var<private> band_id: u32;
var<private> band_cnt: u32;


const LN2: f32 = 0.6931471805599453;
var<workgroup> sh_band: array<atomic<u32>, 5>;

fn sf(i: u32) -> f32 { return bitcast<f32>(s[i]); }
fn set_f(i: u32, v: f32) { s[i] = bitcast<u32>(v); }
fn pf(field: u32) -> f32 { return bitcast<f32>(mrec(row, field)); }

// The solver's reads of its row (S_PMODE), see run_pass.
const PASS_HIST_D: u32 = 1u;
const PASS_HIST_K: u32 = 2u;
const PASS_COMPACT: u32 = 3u;
const PASS_BAND: u32 = 4u;


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

// A read's histogram: counts, then the two words of the 64-bit masses. A
// mass query's NB + 1 d-bin thresholds are in sh_big (from HB_TH) meanwhile.
var<workgroup> sh_hb: array<atomic<u32>, 3u * NB>;
const HB_MLO: u32 = NB;
const HB_MHI: u32 = 2u * NB;
const HB_TH: u32 = 0u;
// sh_big while candidates are loaded: keys, then the two words of their masses.
const CB_QLO: u32 = CAP;
const CB_QHI: u32 = 2u * CAP;

// A COMPACT pass with an empty window: per-tile count / Σe / Σde of keys ≥ tau.
fn request_sums(tau: u32, t: f32, back: u32) {
    request(PASS_COMPACT, tau, tau - 1u, 0u, tau, t, back);
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

fn cand_key(c: u32) -> u32 { return ws[cand_at(row) + CW * c]; }
// The candidate's processed logit as a two-float (y_of's (hi, lo)).
fn cand_y(c: u32) -> vec2<f32> {
    let at = cand_at(row) + CW * c;
    return vec2<f32>(bitcast<f32>(ws[at + 1u]), bitcast<f32>(ws[at + 2u]));
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

// The candidates in workgroup memory (sh_big), with their 64-bit masses at
// the query's temperature: the bisections below read them dozens of times.
fn ck(c: u32) -> u32 { return sh_big[c]; }
fn cq(c: u32) -> vec2<u32> { return vec2<u32>(sh_big[CB_QLO + c], sh_big[CB_QHI + c]); }

// Loads them; returns the largest candidate key (0 when there are none).
fn load_cands(t_: f32) -> u32 {
    let m = row_max();
    let inv_t = 1.0 / t_;
    var kmax = 0u;
    for (var c = lid; c < s[S_CANDN]; c += WG) {
        let k = cand_key(c);
        let q = mass_of(weight(cand_y(c), m, inv_t));
        sh_big[c] = k;
        sh_big[CB_QLO + c] = q.x;
        sh_big[CB_QHI + c] = q.y;
        kmax = max(kmax, k);
    }
    return wg_max_u(lid, kmax);
}

fn cand_count(tau: u32) -> u32 {
    var n = 0u;
    for (var c = lid; c < s[S_CANDN]; c += WG) {
        if (ck(c) >= tau) { n += 1u; }
    }
    return wg_sum_u(lid, n);
}

// Σq (64-bit fixed point, as the scan pass adds it) over candidates ≥ tau.
fn cand_mass(tau: u32) -> vec2<u32> {
    var acc = vec2<u32>(0u);
    for (var c = lid; c < s[S_CANDN]; c += WG) {
        if (ck(c) >= tau) { acc = add64(acc, cq(c)); }
    }
    return wg_sum64(lid, acc);
}

// Σq of the keys above (T_QA) or of the survivors below (T_QB) the last
// COMPACT window, over the tiles.
fn tiles_mass(field: u32) -> vec2<u32> {
    var acc = vec2<u32>(0u);
    for (var t = lid; t < ch.tiles; t += WG) {
        let rec = tl_at(row, t);
        acc = add64(acc, vec2<u32>(ws[rec + field], ws[rec + field + 1u]));
    }
    return wg_sum64(lid, acc);
}
fn tiles_mass_above() -> vec2<u32> { return tiles_mass(T_QA); }
fn tiles_mass_below() -> vec2<u32> { return tiles_mass(T_QB); }

// The estimated mass of prediction bin b (y in [b − HA_BINS/2, b − HA_BINS/2 + 1)·T/16)
// relative to the row max: its count at the bin's middle, at most 1 per id.
fn pbin_mass(b: u32, cnt: u32, m: f32, tq: f32) -> f32 {
    if (cnt == 0u || b == 0u) { return 0.0; }
    let mid = (f32(b) - f32(HA_BINS / 2u) + 0.5) * tq / PBINS_PER_T;
    return f32(cnt) * min(1.0, exp((mid - m) / tq));
}

// The top-p prediction (docs/spec.md §9: two reads of the logits): from the
// statistics pass's histogram of y in bins of T/16, the bin where the
// estimated cumulative mass from the top reaches halfway between p and 1 of
// the row's Σe (known exactly from the statistics pass); the window starts
// one bin below it. Returns its lowest key, or NONE when the window would
// not fit the candidates (or reaches the saturated bottom bin). Nothing here
// decides the result: query_compacted verifies the cut on exact masses and
// falls back to exact histogram rounds when the window missed it.
fn predict_top_p(tq: f32) -> u32 {
    let m = sf(S_M);
    let total = all_tile_sums(tq).y;
    let p = bitcast<f32>(s[S_QTGT]);
    let aim = total * (0.5 + 0.5 * p);
    let per = HA_BINS / WG;
    let gb = bins_at(row);
    // Thread lid owns bins lid·per … from the top (index i: bin HA_BINS − 1 − i).
    var msum = 0.0;
    var csum = 0u;
    for (var k = 0u; k < per; k++) {
        let b = HA_BINS - 1u - (lid * per + k);
        let cnt = atomicLoad(&bins[gb + b]);
        msum += pbin_mass(b, cnt, m, tq);
        csum += cnt;
    }
    let mincl = wg_scan_f(lid, msum);
    let cincl = wg_scan_u(lid, csum);
    var run = mincl - msum;
    var crun = cincl - csum;
    var hit = NONE;
    var hitc = NONE;
    for (var k = 0u; k < per; k++) {
        let i = lid * per + k;
        let b = HA_BINS - 1u - i;
        let cnt = atomicLoad(&bins[gb + b]);
        run += pbin_mass(b, cnt, m, tq);
        crun += cnt;
        if (hit == NONE && run >= aim) {
            hit = i;
            hitc = crun;
        }
    }
    // The cumulative count grows with i, so both minima come from the same thread.
    let h = wg_reduce4u(lid, vec4<u32>(hit, hitc, 0u, 0u), OP_MIN);
    if (h.x == NONE || h.x + 3u >= HA_BINS) { return NONE; }
    // The window takes the hit bin's lower neighbour too; the count bound one
    // more, for ids that rounding put on the other side of an edge.
    let below = HA_BINS - 2u - h.x;
    let n = h.y + atomicLoad(&bins[gb + below]) + atomicLoad(&bins[gb + below - 1u]);
    if (n + 64u > CAP) { return NONE; }
    if ((ch.opts & OPT_MISS) != 0u) {
        // Test hook: a window of the top tie group alone (misses unless p is tiny).
        return key_of(m);
    }
    return key_of((f32(below) - f32(HA_BINS / 2u)) * tq / PBINS_PER_T);
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
    // Top-p always keeps the top tie group (docs/spec.md §3.5), even when p − 1e-6
    // rounds to 0: the row max is a survivor of every stage.
    let km = key_of(sf(S_M));
    if (s[S_QK] == K_MASS && tau > km && s[S_KMODE] == 0u) {
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
    let m = sf(S_M);
    for (var b = lid; b <= NB; b += WG) {
        var th = NONE;
        if (b == NB) {
            th = 0u;
        } else if (b > 0u) {
            th = key_of(m - f32(b) * t_ * 0.125) + 1u;
        }
        sh_big[HB_TH + b] = th;
    }
}

// A mass query's exact first read: the d-bin histogram of every survivor.
fn start_mass_rounds(floor_k: u32, tq: f32) {
    s[S_QBIN] = QB_HD;
    write_thresholds(tq);
    request(PASS_HIST_D, floor_k, KEY_MAX, 0u, floor_k, tq, PH_QBINS);
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
    if (s[S_KMODE] != 0u) {
        // Typicality keys: exact histogram rounds from the whole key range;
        // a mass query's first round sees every survivor and fixes the goal.
        s[S_QFIRST] = select(0u, 1u, kind == K_MASS);
        s[S_QBIN] = QB_HK;
        request(PASS_HIST_K, floor_k, KEY_MAX, shift_for(floor_k, KEY_MAX), floor_k, tq, PH_QBINS);
        return;
    }
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
    if (kind == K_MASS && s[S_HAOK] == 2u && floor_k == KEY_MIN && known_sums(KEY_MIN, tq)
        && bitcast<f32>(mrec(row, M_TP)) == tq) {
        // One prediction per row: the histogram describes the stage's input only.
        s[S_HAOK] = 0u;
        let lo = predict_top_p(tq);
        if (lo != NONE) {
            // Verified after the read, on the exact masses (query_compacted).
            s[S_QPRED] = 1u;
            s[S_QLO] = lo;
            request(PASS_COMPACT, lo, KEY_MAX, 0u, floor_k, tq, PH_QCOMP);
            return;
        }
    }
    if (kind == K_COUNT && s[S_HAOK] == 1u) {
        s[S_QBIN] = QB_HA;
        // The statistics pass histogrammed the first digit already.
        s[S_PHASE] = PH_QBINS;
        return;
    }
    if (kind == K_MASS) {
        start_mass_rounds(floor_k, tq);
    } else {
        s[S_QBIN] = QB_HK;
        request(PASS_HIST_K, floor_k, KEY_MAX, shift_for(floor_k, KEY_MAX), floor_k, tq, PH_QBINS);
    }
}

fn shift_for(lo: u32, hi: u32) -> u32 {
    let span = hi - lo;
    if (span == 0u) { return 0u; }
    let bits = 32u - countLeadingZeros(span);
    let nb_bits = 31u - countLeadingZeros(NB);
    return select(0u, bits - nb_bits, bits > nb_bits);
}

// Bin b of the histogram a query reads (bin 0 holds the largest keys): the
// statistics pass's first digit, or the last read's bins in sh_big.
fn bin_count(b: u32) -> u32 {
    if (s[S_QBIN] == QB_HA) { return atomicLoad(&bins[bins_at(row) + HA_BINS - 1u - b]); }
    return atomicLoad(&sh_hb[b]);
}

fn bin_mass(b: u32) -> vec2<u32> {
    return vec2<u32>(atomicLoad(&sh_hb[HB_MLO + b]), atomicLoad(&sh_hb[HB_MHI + b]));
}

// Key range [lo, hi] of bin b (bin 0 holds the largest keys), within the floor.
fn window_keys(b: u32) -> vec2<u32> {
    let floor_k = s[S_QFLOOR];
    let q = s[S_QBIN];
    if (q == QB_HA) {
        let sh = 32u - HA_BITS;
        let p = HA_BINS - 1u - b;
        let whi = min(KEY_MAX, (p << sh) | ((1u << sh) - 1u));
        return vec2<u32>(max(floor_k, p << sh), whi);
    }
    if (q == QB_HD) {
        let upper = sh_big[HB_TH + b];
        return vec2<u32>(max(floor_k, sh_big[HB_TH + b + 1u]), min(KEY_MAX, upper - 1u));
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
var<workgroup> sh_cumt: vec4<u32>;
var<workgroup> sh_hit: vec4<u32>;

// Inclusive scan of (count, 64-bit mass) per thread (two levels, fixed
// order, as common.wgsl's scans). sh_cumt keeps the total until the next
// call; the trailing barrier lets that call start right away.
fn wg_scan3(v: vec4<u32>) -> vec4<u32> {
    sh_cum[lid] = v;
    workgroupBarrier();
    if (lid < WG / SQ) {
        var a = sh_cum[lid * SQ];
        for (var k = 1u; k < SQ; k++) {
            a = add3(a, sh_cum[lid * SQ + k]);
            sh_cum[lid * SQ + k] = a;
        }
    }
    workgroupBarrier();
    let blk = lid / SQ;
    var off = vec4<u32>(0u);
    for (var k = 0u; k < WG / SQ; k++) {
        if (k < blk) { off = add3(off, sh_cum[k * SQ + SQ - 1u]); }
    }
    let out = add3(off, sh_cum[lid]);
    if (lid == WG - 1u) { sh_cumt = out; }
    workgroupBarrier();
    return out;
}

// Asks for a histogram round over the keys [lo, hi] whose cumulative above is given.
fn refine(lo: u32, hi: u32, above_count: u32, above_mass: vec2<u32>) {
    s[S_QBIN] = QB_HK;
    s[S_QLO] = lo;
    s[S_QHI] = hi;
    set_above(above_count, above_mass);
    request(PASS_HIST_K, lo, hi, shift_for(lo, hi), s[S_QFLOOR], sf(S_TQ), PH_QBINS);
}

// Whether a cumulative (count, 64-bit mass) from the top reaches the query's target.
fn reached(c: vec4<u32>, kind: u32, goal: vec2<u32>) -> bool {
    if (kind == K_MASS) { return ge64(c.yz, goal); }
    return c.x >= s[S_QTGT];
}

var<workgroup> sh_hitb: u32;

// Reads the histogram the last round built and narrows the window to the bin
// holding the answer, with one integer scan: each invocation sums a block of
// consecutive bins, one workgroup scan gives every block's cumulative from
// the top, and the one invocation whose block crosses the target walks it to
// the bin. Integer sums: the answer does not depend on the order of the adds.
fn query_bins() {
    let kind = s[S_QK];
    let nbins = select(NB, HA_BINS, s[S_QBIN] == QB_HA);
    let per = (nbins + WG - 1u) / WG;
    let b0 = min(lid * per, nbins);
    let b1 = min(b0 + per, nbins);
    var v = vec4<u32>(0u);
    for (var b = b0; b < b1; b++) {
        v.x += bin_count(b);
        if (kind == K_MASS) {
            let m = add64(v.yz, bin_mass(b));
            v.y = m.x;
            v.z = m.y;
        }
    }
    let incl_blk = wg_scan3(v);
    let total = workgroupUniformLoad(&sh_cumt);
    if (kind == K_MASS && (s[S_QBIN] == QB_HD || s[S_QFIRST] != 0u)) {
        // The first round saw every survivor: its exact total fixes the goal.
        s[S_QFIRST] = 0u;
        set_goal(mass_goal(total.yz));
        set_above(0u, vec2<u32>(0u));
    }
    let goal = vec2<u32>(s[S_QGOAL], s[S_QGOAL_HI]);
    let run0 = vec4<u32>(s[S_QBC], s[S_QBM], s[S_QBM_HI], 0u);
    let run = add3(run0, total);
    let end = add3(run0, incl_blk);
    // The block's start: its inclusive cumulative less its own sum.
    var acc = vec4<u32>(end.x - v.x, add64(add64(end.yz, vec2<u32>(~v.y, ~v.z)), vec2<u32>(1u, 0u)), 0u);
    if (lid == 0u) { sh_hitb = NONE; }
    workgroupBarrier();
    if (reached(end, kind, goal) && (lid == 0u || !reached(acc, kind, goal))) {
        for (var b = b0; b < b1; b++) {
            var w = vec4<u32>(bin_count(b), 0u, 0u, 0u);
            if (kind == K_MASS) { w = vec4<u32>(w.x, bin_mass(b), 0u); }
            let next = add3(acc, w);
            if (reached(next, kind, goal)) {
                // The cumulative strictly above the hit bin, and the bin's count.
                sh_hit = vec4<u32>(acc.x, acc.yz, w.x);
                sh_hitb = b;
                break;
            }
            acc = next;
        }
    }
    let hit = workgroupUniformLoad(&sh_hitb);
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
        request(PASS_COMPACT, w.x, KEY_MAX, 0u, s[S_QFLOOR], tq, PH_QCOMP);
    } else if (wcount + 64u <= CAP) {
        request(PASS_COMPACT, w.x, w.y, 0u, s[S_QFLOOR], tq, PH_QCOMP);
    } else {
        refine(w.x, w.y, above_c, hb.yz);
    }
}

// After a COMPACT read: candidates in tile order, exact sums, exact solve.
fn query_compacted() {
    let n_raw = pass_cands;
    let lo = s[S_PLO];
    let hi = s[S_PHI];
    let tq = sf(S_PT);
    let floor_k = s[S_QFLOOR];
    let kind = s[S_QK];
    if (n_raw > CAP) {
        if (s[S_QPRED] != 0u) {
            // A predicted window that did not fit: the exact rounds instead.
            s[S_QPRED] = 0u;
            start_mass_rounds(floor_k, tq);
            return;
        }
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
    if (s[S_QPRED] != 0u) {
        // A predicted window [lo, ∞): every survivor is above it (none),
        // a candidate, or below it, so the exact total — and the goal —
        // are known now.
        s[S_QPRED] = 0u;
        set_goal(mass_goal(add64(cand_mass(lo_f), tiles_mass_below())));
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

// The truncation stages (docs/spec.md §3.4–3.7, §3.9–3.13).
const STAGE_TOPK: u32 = 0u;
const STAGE_TOPP: u32 = 1u;
const STAGE_MINP: u32 = 2u;
const STAGE_NSIG: u32 = 3u;
const STAGE_TYP: u32 = 4u;
const STAGE_EPS: u32 = 5u;
const STAGE_ETA: u32 = 6u;
const STAGE_XTC: u32 = 7u;
const N_STAGES: u32 = 8u;

// Stage i of an order (docs/spec.md §3, §3.9).
fn stage_kind(order: u32, i: u32) -> u32 {
    if (order == ORDER_VLLM) {
        return array<u32, 8>(STAGE_NSIG, STAGE_MINP, STAGE_TOPK, STAGE_TOPP, STAGE_TYP, STAGE_EPS, STAGE_ETA, STAGE_XTC)[i];
    }
    if (order == ORDER_LLAMA_CPP) {
        return array<u32, 8>(STAGE_NSIG, STAGE_TOPK, STAGE_TYP, STAGE_TOPP, STAGE_MINP, STAGE_EPS, STAGE_ETA, STAGE_XTC)[i];
    }
    return array<u32, 8>(STAGE_NSIG, STAGE_TOPK, STAGE_TOPP, STAGE_MINP, STAGE_TYP, STAGE_EPS, STAGE_ETA, STAGE_XTC)[i];
}

// Smallest key whose value passes (y − m)/T ≥ ln(min_p) (docs/spec.md §3.6).
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

// Smallest key whose value passes (y − m)/T ≥ lnv, m the largest survivor:
// one above m's key when none does (lnv > 0). A threshold on q = e^(d)/S is
// lnv = ln(cutoff) + ln S (docs/spec.md §3.12, §3.13, §3.15).
fn d_key(lnv: f32) -> u32 {
    let km = key_of(sf(S_M));
    if (!(lnv > NEG_INF)) { return KEY_MIN; }
    if (lnv > 0.0) { return km + 1u; }
    return minp_key(lnv);
}

// Top-nσ's threshold key (docs/spec.md §3.10): max − n·σ, σ the population
// standard deviation of the finite y (init_row merges it from the statistics
// pass's per-tile count, mean and Σ(y − mean)²).
fn nsigma_key() -> u32 {
    let thr = (sf(S_M) + sf(S_MLO)) - pf(M_NSIG) * sf(S_SIGMA);
    if (!(thr > NEG_INF)) { return KEY_MIN; }
    return clamp(key_of(thr), KEY_MIN, key_of(sf(S_M)));
}

// ---- helper phases ---------------------------------------------------------
// Every function below that synchronises the workgroup (a query's start,
// the survivors' sums) is called from one place only, the main loop, as a
// phase of its own; a stage asks for it and resumes at a sub-step with the
// answer in the row's state. Each call site of a barrier is more code (every
// call is inlined) and, on lavapipe, which runs every phase under a mask on
// every step, more barriers per step.

// Starts the query in S_QK, S_QTGT, S_QFLOOR; it returns to phase `back`.
fn ask_query(kind: u32, tgt: u32, floor_k: u32, back: u32) {
    s[S_QK] = kind;
    s[S_QTGT] = tgt;
    s[S_QFLOOR] = floor_k;
    s[S_QRET] = back;
    s[S_PHASE] = PH_QSTART;
}

fn run_qstart() {
    start_query(s[S_QK], s[S_QTGT], s[S_QFLOOR], s[S_QRET]);
}

// The survivors' (count, Σe, Σde) at key ≥ tau and the stage temperature,
// into S_CCNT, S_CS, S_CA (S_CK = 1), then back to phase `back`: from the
// workspace when it determines them, else after a count read. A peek
// never reads the row: S_CK = 0 when the workspace does not know.
fn ask_sums(tau: u32, back: u32, peek: bool) {
    s[S_CTAU] = tau;
    s[S_CRET] = back;
    s[S_CPEEK] = select(0u, 1u, peek);
    s[S_PHASE] = PH_COUNT;
}

fn run_count() {
    let tq = sf(S_TQ);
    let tau = s[S_CTAU];
    if (known_sums(tau, tq)) {
        let ss = survivor_sums(tau, tq);
        s[S_CCNT] = u32(ss.x);
        set_f(S_CS, ss.y);
        set_f(S_CA, ss.z);
        s[S_CK] = 1u;
        s[S_PHASE] = s[S_CRET];
        return;
    }
    if (s[S_CPEEK] != 0u) {
        s[S_CK] = 0u;
        s[S_PHASE] = s[S_CRET];
        return;
    }
    request_sums(tau, tq, PH_COUNT);
}

// Nothing in the workspace describes the survivors any more (a new band,
// or reads in typicality keys).
fn forget_sums() {
    s[S_SUMS] = 0u;
    s[S_CALL] = 0u;
    s[S_CANDN] = 0u;
}

// A stage's sub-steps (S_SUB).
const SUB_START: u32 = 0u;       // the stage's own query
const SUB_RESULT: u32 = 1u;      // its query is back
const SUB_KEEP: u32 = 2u;        // min_tokens_to_keep's query is back
const SUB_IN_COUNTED: u32 = 5u;  // the stage's input is counted
const SUB_OUT_COUNTED: u32 = 6u; // the stage's output is counted
const SUB_TYP_RESULT: u32 = 7u;  // typical: the mass query is back
const SUB_TYP_COUNTED: u32 = 8u; // typical: its set is counted
const SUB_TYP_KEEP: u32 = 9u;    // typical: the m most typical are back
const SUB_BAND: u32 = 10u;       // a BAND read ran: the new survivors are known
const SUB_XTC_A: u32 = 11u;      // XTC: the count of {q ≥ θ} is known
const SUB_XTC_LEAST: u32 = 12u;  // XTC: the smallest key among them is back
const SUB_XTC_REM: u32 = 13u;    // XTC: the count above it is known
const SUB_QSUMS: u32 = 14u;      // the survivors' normaliser is known
const SUB_THR_PEEK: u32 = 15u;   // a threshold stage's output count, if known


fn next_stage() {
    s[S_STAGE] += 1u;
    s[S_SUB] = SUB_START;
}

// The survivors become a band (typical, XTC): a BAND read over the ids that
// stay (logit keys in [S_TAU, S_CEIL], and typicality key ≥ floor2 in
// typicality mode) finds its ends, its largest member and its count.
fn request_band(floor2: u32) {
    s[S_SUB] = SUB_BAND;
    request(PASS_BAND, 0u, 0u, 0u, select(s[S_TAU], floor2, s[S_KMODE] != 0u), sf(S_TQ), PH_STAGE);
}

// docs/spec.md §3.11: typicality key = KEY_MAX − (key of |d − c| − key of 0),
// d = (y − m)/T, c = Σq·d (so that |d − c| = |−ln q − H|): the most typical
// have the largest keys, and a mass query from the top walks them first.
fn typ_key(y: vec2<f32>, mm: vec2<f32>, inv_t: f32) -> u32 {
    let sc = abs(scaled(y, mm, inv_t) - sf(S_TYPC));
    return KEY_MAX - (key_of(sc) - 0x80000000u);
}

// The stage's input, before it cuts.
fn stage_begin() {
    s[S_TBEF] = s[S_TAU];
    s[S_CBEF] = s[S_CNT];
    s[S_CBEFK] = s[S_CNTK];
}

// A threshold stage keeps key ≥ tm: its count if the workspace knows it.
fn threshold_cut(tm: u32) {
    if (tm == s[S_TAU]) {
        finish_query(tm, s[S_CNT], s[S_CNTK] != 0u);
        s[S_PHASE] = PH_STAGE;
        s[S_SUB] = SUB_RESULT;
        return;
    }
    s[S_X1] = tm;
    s[S_SUB] = SUB_THR_PEEK;
    ask_sums(tm, PH_STAGE, true);
}

// XTC removes the survivors above a = S_X2 (`removed` of them), all or
// nothing (docs/spec.md §3.13).
fn xtc_with_removed(removed: u32) {
    let mk = mrec(row, M_MINKEEP);
    if (removed == 0u || s[S_CNT] - removed < mk) {
        next_stage();
        return;
    }
    s[S_CEIL] = s[S_X2];
    s[S_HAOK] = 0u;
    forget_sums();
    request_band(KEY_MIN);
}

// Whether stage `kind` leaves this row's survivors as they are without
// looking at them (its parameter is off, or top-k keeps all it has).
fn stage_off(kind: u32, flags: u32) -> bool {
    return (kind == STAGE_TOPK && (mrec(row, M_TOPK) == 0u || (s[S_CNTK] != 0u && mrec(row, M_TOPK) >= s[S_CNT])))
        || (kind == STAGE_TOPP && sf(S_TOPP) >= 1.0)
        || (kind == STAGE_MINP && pf(M_MINP) <= 0.0)
        || (kind == STAGE_NSIG && (flags & F_NSIGMA) == 0u)
        || (kind == STAGE_TYP && (flags & F_TYPICAL) == 0u)
        || (kind == STAGE_EPS && (flags & F_EPSILON) == 0u)
        || (kind == STAGE_ETA && (flags & F_ETA) == 0u)
        || (kind == STAGE_XTC && (flags & F_XTC) == 0u);
}

fn run_stage() {
    let flags = mrec(row, M_FLAGS);
    let order = (flags >> F_ORDER_SHIFT) & 3u;
    // The stages this row does not use pass in one go, in this step: each
    // took a whole step of its own, every phase's code, which a software
    // adapter runs under a mask whatever the phase (8 stages, 8 steps of a
    // temperature-only row). The loop's condition is the same in every
    // invocation (s is per invocation and the same in all).
    while (s[S_STAGE] < N_STAGES && s[S_SUB] == SUB_START && stage_off(stage_kind(order, s[S_STAGE]), flags)) {
        next_stage();
    }
    if (s[S_STAGE] >= N_STAGES) {
        s[S_PHASE] = PH_POST;
        return;
    }
    let kind = stage_kind(order, s[S_STAGE]);
    let mk = mrec(row, M_MINKEEP);
    let tau = s[S_TAU];
    let sub = s[S_SUB];
    if (sub == SUB_IN_COUNTED) {
        s[S_CNT] = s[S_CCNT];
        s[S_CNTK] = 1u;
        s[S_SUB] = SUB_START;
        return;
    }
    if (sub == SUB_START) {
        // (An off stage was passed above.)
        let counted = mk > 1u || kind == STAGE_NSIG || kind == STAGE_TYP || kind == STAGE_XTC;
        if (counted && s[S_CNTK] == 0u) {
            s[S_SUB] = SUB_IN_COUNTED;
            ask_sums(tau, PH_STAGE, false);
            return;
        }
        // Top-nσ and XTC act on two survivors or more.
        if ((kind == STAGE_NSIG || kind == STAGE_XTC) && s[S_CNT] < 2u) {
            next_stage();
            return;
        }
        if (kind == STAGE_TYP || kind == STAGE_EPS || kind == STAGE_ETA || kind == STAGE_XTC) {
            // The stages on q read the survivors' normaliser (and entropy) first.
            s[S_SUB] = SUB_QSUMS;
            ask_sums(tau, PH_STAGE, false);
            return;
        }
        stage_begin();
        if (kind == STAGE_TOPK) {
            s[S_SUB] = SUB_RESULT;
            ask_query(K_COUNT, mrec(row, M_TOPK), tau, PH_STAGE);
        } else if (kind == STAGE_TOPP) {
            s[S_SUB] = SUB_RESULT;
            ask_query(K_MASS, bitcast<u32>(sf(S_TOPP) - 1e-6), tau, PH_STAGE);
        } else if (kind == STAGE_MINP) {
            threshold_cut(max(tau, minp_key(pf(M_LNMINP))));
        } else {
            threshold_cut(max(tau, nsigma_key()));
        }
        return;
    }
    if (sub == SUB_QSUMS) {
        stage_begin();
        let lns = log(sf(S_CS));
        if (kind == STAGE_TYP) {
            set_f(S_TYPC, sf(S_CA) / sf(S_CS));
            s[S_KMODE] = 1u;
            s[S_HAOK] = 0u;
            forget_sums();
            s[S_SUB] = SUB_TYP_RESULT;
            let tgt = pf(M_TYP) - 1e-6;
            if (tgt > 0.0) {
                ask_query(K_MASS, bitcast<u32>(tgt), KEY_MIN, PH_STAGE);
            } else {
                // Mass ≤ 0: the most typical group alone.
                ask_query(K_COUNT, 1u, KEY_MIN, PH_STAGE);
            }
        } else if (kind == STAGE_XTC) {
            // A = {q ≥ θ}: its count, then its smallest key.
            s[S_X1] = max(tau, d_key(pf(M_LNXTC) + lns));
            s[S_SUB] = SUB_XTC_A;
            ask_sums(s[S_X1], PH_STAGE, false);
        } else {
            // docs/spec.md §3.12: q ≥ ε, or q ≥ min(η, √η·e^(−H)), in logs;
            // none passing keeps the top group, as §3.7 would.
            var lnc = pf(M_LNEPS);
            if (kind == STAGE_ETA) {
                let h = max(0.0, lns - sf(S_CA) / sf(S_CS));
                let le = pf(M_LNETA);
                lnc = min(le, 0.5 * le - h);
            }
            threshold_cut(max(tau, min(d_key(lnc + lns), key_of(sf(S_M)))));
        }
        return;
    }
    if (sub == SUB_THR_PEEK) {
        let known = s[S_CK] != 0u;
        finish_query(s[S_X1], select(s[S_CNT], s[S_CCNT], known), known);
        s[S_PHASE] = PH_STAGE;
        s[S_SUB] = SUB_RESULT;
        return;
    }
    if (sub == SUB_OUT_COUNTED) {
        s[S_QRCNT] = s[S_CCNT];
        s[S_QRCK] = 1u;
        s[S_SUB] = SUB_RESULT;
        return;
    }
    if (sub == SUB_RESULT) {
        let t_new = max(s[S_TBEF], s[S_QRES]);
        s[S_QRES] = t_new;
        if (mk > 1u && t_new != s[S_TBEF]) {
            if (s[S_QRCK] == 0u) {
                s[S_SUB] = SUB_OUT_COUNTED;
                ask_sums(t_new, PH_STAGE, false);
                return;
            }
            if (s[S_QRCNT] < mk && s[S_QRCNT] < s[S_CBEF]) {
                // min_tokens_to_keep: the mk largest of the stage's input.
                s[S_SUB] = SUB_KEEP;
                ask_query(K_COUNT, mk, s[S_TBEF], PH_STAGE);
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
    if (sub == SUB_KEEP) {
        // min_tokens_to_keep's query is back.
        s[S_TAU] = max(s[S_TBEF], s[S_QRES]);
        s[S_CNT] = s[S_QRCNT];
        s[S_CNTK] = s[S_QRCK];
        next_stage();
        return;
    }
    // ---- typical (typicality keys) ----
    if (sub == SUB_TYP_COUNTED) {
        s[S_QRCNT] = s[S_CCNT];
        s[S_QRCK] = 1u;
        s[S_SUB] = SUB_TYP_RESULT;
        return;
    }
    if (sub == SUB_TYP_RESULT) {
        if (s[S_QRCK] == 0u) {
            s[S_SUB] = SUB_TYP_COUNTED;
            ask_sums(s[S_QRES], PH_STAGE, false);
            return;
        }
        if (s[S_QRCNT] < mk && s[S_QRCNT] < s[S_CBEF]) {
            // docs/spec.md §3.11: the m most typical of the stage's input.
            s[S_SUB] = SUB_TYP_KEEP;
            ask_query(K_COUNT, mk, KEY_MIN, PH_STAGE);
            return;
        }
        request_band(s[S_QRES]);
        return;
    }
    if (sub == SUB_TYP_KEEP) {
        request_band(s[S_QRES]);
        return;
    }
    if (sub == SUB_BAND) {
        s[S_TAU] = band_min;
        s[S_CEIL] = band_max;
        set_f(S_M, val_of(band_max));
        set_f(S_MLO, band_lo);
        s[S_REFID] = band_id;
        s[S_CNT] = band_cnt;
        s[S_CNTK] = 1u;
        s[S_KMODE] = 0u;
        s[S_HAOK] = 0u;
        forget_sums();
        next_stage();
        return;
    }
    // ---- XTC ----
    if (sub == SUB_XTC_A) {
        if (s[S_CCNT] < 2u) {
            next_stage();
            return;
        }
        // The smallest key in A: the largest tau with |A| ids at or above it.
        s[S_SUB] = SUB_XTC_LEAST;
        ask_query(K_COUNT, s[S_CCNT], s[S_X1], PH_STAGE);
        return;
    }
    if (sub == SUB_XTC_LEAST) {
        s[S_X2] = s[S_QRES];
        if (s[S_X2] >= s[S_CEIL]) {
            next_stage();
            return;
        }
        s[S_SUB] = SUB_XTC_REM;
        ask_sums(s[S_X2] + 1u, PH_STAGE, false);
        return;
    }
    // SUB_XTC_REM
    xtc_with_removed(s[S_CCNT]);
}

// ---- mirostat (docs/spec.md §3.15) -------------------------------------------

// Version 1's k from the top min(100, N) values: the ids above the 100th
// largest key t100 (their candidates, `nab` of them), then t100's value for
// the rest.
fn mirostat_k(nab: u32, t100: u32) -> u32 {
    let n = s[S_N];
    let c100 = min(100u, n);
    let tq = sf(S_TQ);
    let m = row_max();
    // ŝ's numerator Σ t_i·(d_i − d_{i+1}) summed by parts: Σ w_i·d_i with
    // w_i = t_i − t_{i−1} (t_{−1} = 0, t_{c−1} = 0), d = (y − max)/T. A
    // value's weight depends on its rank only, and tied values share their
    // weights' sum, so each invocation ranks the candidates by counting,
    // with no barrier (every invocation computes the same sums).
    var num = 0.0;
    for (var c = 0u; c < nab; c++) {
        let kc = cand_key(c);
        var rank = 0u;
        for (var c2 = 0u; c2 < nab; c2++) {
            let k2 = cand_key(c2);
            if (k2 > kc || (k2 == kc && c2 < c)) { rank += 1u; }
        }
        num += mv_weight(rank, c100) * scaled(cand_y(c), m, 1.0 / tq);
    }
    let dfill = scaled(vec2<f32>(val_of(t100), 0.0), m, 1.0 / tq);
    var den = 0.0;
    for (var i = 0u; i < c100; i++) {
        if (i >= nab) { num += mv_weight(i, c100) * dfill; }
        if (i + 1u < c100) {
            let ti = log(f32(i + 2u) / f32(i + 1u));
            den += ti * ti;
        }
    }
    let s_hat = num / den;
    let eps = s_hat - 1.0;
    let lnv = log(f32(ch.vocab));
    let mu = pf(M_MIROMU) + pf(M_MIROMU + 1u);
    // ln k = ln(ε̂·2^mu / (1 − V^(−ε̂))) / ŝ, in logs so that 2^mu and
    // V^(−ε̂) never overflow f32; at ε̂ = 0 the limit 2^mu / ln V.
    var ln_ratio = mu * LN2 - log(lnv);
    if (eps != 0.0) {
        let z = -eps * lnv;
        var lnd = z;   // ln|e^z − 1|
        if (abs(z) < 1e-3) {
            lnd = log(abs(z * (1.0 + z * (0.5 + z / 6.0))));
        } else if (z <= 15.0) {
            lnd = log(abs(exp(z) - 1.0));
        }
        ln_ratio = log(abs(eps)) + mu * LN2 - lnd;
    }
    let kf = exp(ln_ratio / s_hat);
    if (!(kf >= 1.0)) { return 1u; }
    return u32(min(floor(kf), f32(n)));
}

// w_i = t_i − t_{i−1} of mirostat_k's sum, t_i = ln((i+2)/(i+1)) for i < c − 1.
fn mv_weight(i: u32, c: u32) -> f32 {
    var w = 0.0;
    if (i + 1u < c) { w = log(f32(i + 2u) / f32(i + 1u)); }
    if (i > 0u) { w -= log(f32(i + 1u) / f32(i)); }
    return w;
}

const MS_SUMS: u32 = 10u;

fn run_mirostat() {
    let flags = mrec(row, M_FLAGS);
    let tq = sf(S_TQ);
    let sub = s[S_SUB];
    if ((flags & F_MIRO2) != 0u) {
        if (sub == 0u) {
            s[S_SUB] = MS_SUMS;
            ask_sums(KEY_MIN, PH_MIRO, false);
            return;
        }
        // Keep −log2 q ≤ mu, i.e. d ≥ ln S − mu·ln 2; none: the top group.
        let mu = pf(M_MIROMU) + pf(M_MIROMU + 1u);
        s[S_TAU] = min(d_key(log(sf(S_CS)) - mu * LN2), key_of(sf(S_M)));
        s[S_CNTK] = 0u;
        s[S_PHASE] = PH_POST;
        return;
    }
    if (sub == 0u) {
        let n = s[S_N];
        if (n < 2u) {
            s[S_TAU] = key_of(sf(S_M));
            s[S_CNTK] = 0u;
            s[S_PHASE] = PH_POST;
            return;
        }
        s[S_SUB] = 1u;
        ask_query(K_COUNT, min(100u, n), KEY_MIN, PH_MIRO);
        return;
    }
    if (sub == 1u) {
        // The ids above the 100th largest key: fewer than 100 candidates.
        let t100 = s[S_QRES];
        s[S_X1] = t100;
        s[S_SUB] = 2u;
        s[S_X2] = select(0u, 1u, t100 < KEY_MAX);
        if (t100 < KEY_MAX) {
            request(PASS_COMPACT, t100 + 1u, KEY_MAX, 0u, KEY_MIN, tq, PH_MIRO);
        }
        return;
    }
    if (sub == 2u) {
        let k = mirostat_k(select(0u, pass_cands, s[S_X2] != 0u), s[S_X1]);
        forget_sums();
        s[S_SUB] = 3u;
        ask_query(K_COUNT, k, KEY_MIN, PH_MIRO);
        return;
    }
    s[S_TAU] = s[S_QRES];
    s[S_CNT] = s[S_QRCNT];
    s[S_CNTK] = s[S_QRCK];
    s[S_PHASE] = PH_POST;
}

// ---- start and end ---------------------------------------------------------

fn go_greedy() {
    s[S_GREEDY] = 1u;
    set_f(S_T, 0.0);
    s[S_PHASE] = PH_DONE;
}


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
    // Top-nσ: Σ n·(mean − ref) and Σ (M2 + n·(mean − ref)²) over the tiles,
    // ref = tile 0's mean (close to the row's: no cancellation to speak of).
    let nsig = (mrec(row, M_FLAGS) & F_NSIGMA) != 0u;
    let mref = bitcast<f32>(ws[tl_at(row, 0u) + T_MEAN]);
    for (var t = lid; t < ch.tiles; t += WG) {
        let rec = tl_at(row, t);
        let mt = bitcast<f32>(ws[rec + T_M1]);
        if (nsig) {
            let nt = f32(ws[rec + T_N]);
            let dm = bitcast<f32>(ws[rec + T_MEAN]) - mref;
            accr.z += nt * dm;
            accr.w += bitcast<f32>(ws[rec + T_M2]) + nt * dm * dm;
        }
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
    set_f(S_SIGMA, sqrt(max(0.0, (totr.w - totr.z * totr.z / totr.x) / totr.x)));
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
    var errs = vec4<u32>(NONE);
    for (var t = lid; t < ch.tiles; t += WG) {
        let rec = tl_at(row, t);
        errs = min(errs, vec4<u32>(ws[rec + T_BAD], ws[rec + T_PERR], NONE, NONE));
    }
    errs = wg_reduce4u(lid, errs, OP_MIN);
    let bad = errs.x;
    let perr = errs.y;
    if (bad != NONE || perr != NONE || n == 0u) {
        s[S_STATUS] = ST_ERROR;
        s[S_PHASE] = PH_DONE;
        if (lid == 0u) {
            outb[res + R_STATUS] = ROW_ERROR;
            if (bad != NONE) {
                outb[res + R_ERRC] = E_LOGIT;
                outb[res + R_ERRI] = bad;
                outb[res + R_ERRV] = bitcast<u32>(load_x(row, bad));
            } else if (perr != NONE) {
                // stats.wgsl patch_entry's codes: bias, penalties, DRY.
                let id = (perr & 0x3fffffffu) >> 2u;
                var code = E_BIAS;
                if ((perr & 0x80000000u) != 0u) {
                    code = E_DRY;
                } else if ((perr & 0x40000000u) != 0u) {
                    code = select(E_REP, E_FREQ, (perr & 1u) != 0u);
                }
                outb[res + R_ERRC] = code;
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
    s[S_CEIL] = KEY_MAX;
    s[S_REFID] = s[S_ARG];
    s[S_KMODE] = 0u;
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
    let order = (flags >> F_ORDER_SHIFT) & 3u;
    let t_stat = pf(M_TEMP);
    s[S_HAOK] = select(select(0u, 2u, (flags & F_HIST_P) != 0u), 1u, (flags & F_HIST_A) != 0u);
    // llama.cpp order with a dynamic temperature reports the survivors'
    // guide entropy even when the static temperature makes the row greedy.
    if (!(t_stat > 0.0) && !(order == ORDER_LLAMA_CPP && (flags & F_DYN) != 0u)) {
        if ((flags & F_DYN) != 0u) { set_f(S_GUIDE, guide_of(row, h, n)); }
        go_greedy();
        return;
    }
    if ((flags & (F_MIRO1 | F_MIRO2)) != 0u) {
        // Mirostat replaces the truncation stages: q at the static T.
        set_f(S_TQ, t_stat);
        s[S_SUB] = 0u;
        s[S_PHASE] = PH_MIRO;
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
    s[S_SUB] = SUB_START;
    s[S_PHASE] = PH_STAGE;
}

fn post_stages() {
    let flags = mrec(row, M_FLAGS);
    let order = (flags >> F_ORDER_SHIFT) & 3u;
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
    let ceil = s[S_CEIL];
    for (var k = 0u; k < n; k++) {
        var bv = NEG_INF;
        var bi = NONE;
        for (var t = lid; t < ch.tiles; t += WG) {
            let base = ch.tn_base + (row * ch.tiles + t) * 4u * ch.ntop + which * 2u * ch.ntop;
            for (var j = 0u; j < n; j++) {
                let v = bitcast<f32>(ws[base + 2u * j]);
                let i = ws[base + 2u * j + 1u];
                if (i == NONE || v == NEG_INF) { break; }
                let after = better(last_v, last_i, v, i);
                let ok = which == 0u || (!greedy && key_of(v) >= tau && key_of(v) <= ceil) || (greedy && i == s[S_ARG]);
                if (after && ok) {
                    if (bi == NONE || better(v, i, bv, bi)) { bv = v; bi = i; }
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
        outb[res + R_STATUS] = ROW_OK;
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
        outb[res + R_CEIL] = s[S_CEIL];
        outb[res + R_REFID] = s[S_REFID];
        outb[res + R_REFX] = bitcast<u32>(load_x(row, s[S_REFID]));
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
    let n = select(0u, min(mrec(row, M_LOGPROBS), ch.ntop), HAS_TOPN);
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

// One read of the row by this workgroup, as request() asked (S_PMODE), over
// the survivors (key ≥ S_PFLOOR) at the request's temperature:
//   1 HIST_D  histogram over the d-bin thresholds (bin b: y within
//             (b, b+1]·T/8 below the max), counts and 64-bit masses
//   2 HIST_K  histogram of keys in [lo, hi], bin (hi − key) >> shift
//   3 COMPACT ids with lo ≤ key ≤ hi become candidates (one block per tile, in
//             thread order, blocks in tile order); per tile the count / Σe /
//             Σ((y−m)/T)e and the 64-bit mass of the keys above hi, Σe and
//             the 64-bit mass of the survivors below lo.
// Masses are the exact integers of common.wgsl (`mass_of`): the histograms'
// integer sums do not depend on the order they are added in, and they are
// the same numbers the solver bisects.
// Element li of tile c as a read sees it: its processed logit, logit key,
// the key the read orders by (the typicality key in typicality mode) and
// whether it survives the read's window (docs/spec.md §3).
struct PassElem { y: vec2<f32>, kl: u32, k: u32, live: bool }

fn pass_elem(c: TileCtx, li: u32, sfloor: u32, ceil: u32, kmode: u32, floor_k: u32,
             mm: vec2<f32>, inv_t: f32) -> PassElem {
    var y = vec2<f32>(NEG_INF, 0.0);
    if (li < c.n) { y = y_of(c, li, load_x(row, c.t0 + li)); }
    let kl = key_of(y.x);
    var live = y.x != NEG_INF && kl >= sfloor && kl <= ceil;
    var k = kl;
    if (live && kmode != 0u) {
        k = typ_key(y, mm, inv_t);
        live = k >= floor_k;
    }
    return PassElem(y, kl, k, live);
}

fn run_pass() {
    let mode = s[S_PMODE];
    let lo = s[S_PLO];
    let hi = s[S_PHI];
    let shift = s[S_PSHIFT];
    let floor_k = s[S_PFLOOR];
    let inv_t = 1.0 / sf(S_PT);
    let m = sf(S_M);
    let mm = row_max();
    // The survivors: finite ids with S_TAU ≤ key ≤ S_CEIL. The read's floor
    // bounds its key from below: the logit key, or in typicality mode the
    // typicality key (then S_TAU bounds the logit key).
    let kmode = s[S_KMODE];
    let ceil = s[S_CEIL];
    let sfloor = select(floor_k, s[S_TAU], kmode != 0u);
    // BAND: smallest and largest logit key, (lo, id) of the largest, count.
    var bmin = NONE;
    var bbest = vec4<u32>(0u, 0u, NONE, 0u);
    var bcnt = 0u;
    if (mode == PASS_HIST_D || mode == PASS_HIST_K) {
        for (var b = lid; b < 3u * NB; b += WG) { atomicStore(&sh_hb[b], 0u); }
    }
    if (mode == PASS_BAND && lid == 0u) {
        atomicStore(&sh_band[0], NONE);
        atomicStore(&sh_band[1], 0u);
        atomicStore(&sh_band[2], 0u);
        atomicStore(&sh_band[3], 0u);
        atomicStore(&sh_band[4], NONE);
    }
    // The thresholds (write_thresholds) and the zeroed bins are everyone's.
    workgroupBarrier();
    var placed = 0u;
    var c = tile_setup(lid, row, 0u);
    // One tile loop per kind of read, the kind tested outside it: a row's
    // read is of one kind, and a software adapter runs both sides of a
    // branch under a mask but leaves a loop no invocation is in after one
    // pass (so the other kinds cost one masked pass per read, not per tile).
    if (mode == PASS_BAND) {
        for (var t = 0u; t < ch.tiles; t++) {
            if (t > 0u) { c = tile_next(lid, c); }
            for (var j = 0u; j < EPT; j++) {
                let e = pass_elem(c, lid * EPT + j, sfloor, ceil, kmode, floor_k, mm, inv_t);
                if (e.live) {
                    bmin = min(bmin, e.kl);
                    bcnt += 1u;
                    let cand = vec4<u32>(e.kl, bitcast<u32>(e.y.y), c.t0 + lid * EPT + j, 0u);
                    if (band_better(cand, bbest)) { bbest = cand; }
                }
            }
        }
    } else if (mode == PASS_HIST_D) {
        for (var t = 0u; t < ch.tiles; t++) {
            if (t > 0u) { c = tile_next(lid, c); }
            for (var j = 0u; j < EPT; j++) {
                let e = pass_elem(c, lid * EPT + j, sfloor, ceil, kmode, floor_k, mm, inv_t);
                if (e.live) {
                    let k = e.k;
                    // Estimate the bin from d, then settle it on the thresholds.
                    var b = u32(min((m - e.y.x) * inv_t * 8.0, f32(NB - 1u)));
                    if (k < sh_big[HB_TH + b + 1u]) { b += 1u; } else if (k >= sh_big[HB_TH + b]) { b -= 1u; }
                    if (k < sh_big[HB_TH + b + 1u] || k >= sh_big[HB_TH + b]) {
                        // Rounding moved it further: the exact bin by bisection
                        // (the thresholds descend; th[0] is above every key).
                        b = 0u;
                        for (var st = NB / 2u; st > 0u; st >>= 1u) {
                            if (k < sh_big[HB_TH + b + st]) { b += st; }
                        }
                    }
                    add_bin(b, mass_of(weight(e.y, mm, inv_t)));
                }
            }
        }
    } else if (mode == PASS_HIST_K) {
        for (var t = 0u; t < ch.tiles; t++) {
            if (t > 0u) { c = tile_next(lid, c); }
            for (var j = 0u; j < EPT; j++) {
                let e = pass_elem(c, lid * EPT + j, sfloor, ceil, kmode, floor_k, mm, inv_t);
                if (e.live && e.k >= lo && e.k <= hi) {
                    add_bin((hi - e.k) >> shift, mass_of(weight(e.y, mm, inv_t)));
                }
            }
        }
    } else {
        for (var t = 0u; t < ch.tiles; t++) {
            if (t > 0u) { c = tile_next(lid, c); }
            var ab = vec4<f32>(0.0);   // above: count, Σe, Σde ; below Σe
            var qa = vec2<u32>(0u);    // above: 64-bit mass
            var qb = vec2<u32>(0u);    // below: 64-bit mass
            var ncand = 0u;
            var cbits = 0u;            // candidates: bit j for id lid·EPT + j (EPT ≤ 32)
            for (var j = 0u; j < EPT; j++) {
                let e = pass_elem(c, lid * EPT + j, sfloor, ceil, kmode, floor_k, mm, inv_t);
                if (e.live) {
                    let w = weight(e.y, mm, inv_t);
                    if (e.k > hi) {
                        ab += vec4<f32>(1.0, w, scaled(e.y, mm, inv_t) * w, 0.0);
                        qa = add64(qa, mass_of(w));
                    } else if (e.k >= lo) {
                        cbits |= 1u << j;
                        ncand += 1u;
                    } else {
                        ab.w += w;
                        qb = add64(qb, mass_of(w));
                    }
                }
            }
            let ps = pass_scan(ab, vec4<u32>(qa, qb), ncand);
            let sums = ps.ab;
            let qsa = ps.q.xy;
            let qsb = ps.q.zw;
            let total = ps.total;
            var pos = placed + ps.incl - ncand;
            // This invocation's candidates, lowest id first; their logits and
            // keys again (few ids: cheaper than keeping every id's across the
            // scan's barriers), in a loop as long as their count.
            var left = cbits;
            loop {
                if (left == 0u) { break; }
                let j = firstTrailingBit(left);
                left &= left - 1u;
                if (pos < CAP) {
                    let e = pass_elem(c, lid * EPT + j, sfloor, ceil, kmode, floor_k, mm, inv_t);
                    let at = cand_at(row) + CW * pos;
                    ws[at] = e.k;
                    ws[at + 1u] = bitcast<u32>(e.y.x);
                    ws[at + 2u] = bitcast<u32>(e.y.y);
                }
                pos += 1u;
            }
            let rec = tl_at(row, t);
            if (lid == 0u) {
                ws[rec + T_REF] = bitcast<u32>(m);
                ws[rec + T_REFLO] = bitcast<u32>(mm.y);
                ws[rec + T_CNT] = u32(sums.x);
                ws[rec + T_S] = bitcast<u32>(sums.y);
                ws[rec + T_A] = bitcast<u32>(sums.z);
                ws[rec + T_BS] = bitcast<u32>(sums.w);
                ws[rec + T_QA] = qsa.x;
                ws[rec + T_QA + 1u] = qsa.y;
                ws[rec + T_QB] = qsb.x;
                ws[rec + T_QB + 1u] = qsb.y;
                ws[rec + T_COFF] = select(0u, placed, total > 0u);
                ws[rec + T_CCNT] = total;
            }
            placed += total;
        }
    }
    pass_cands = placed;
    if (mode == PASS_BAND) {
        // Workgroup atomics, three barriers (fewer than a reduction per
        // quantity): the smallest key, the
        // largest, the count; then the largest lo at the largest key; then
        // the lowest id there.
        if (bbest.z != NONE) {
            atomicMin(&sh_band[0], bmin);
            atomicMax(&sh_band[1], bbest.x);
            atomicAdd(&sh_band[2], bcnt);
        }
        workgroupBarrier();
        let kmax = atomicLoad(&sh_band[1]);
        let mine = bbest.z != NONE && bbest.x == kmax;
        if (mine) { atomicMax(&sh_band[3], key_of(bitcast<f32>(bbest.y))); }
        workgroupBarrier();
        let klo = atomicLoad(&sh_band[3]);
        if (mine && key_of(bitcast<f32>(bbest.y)) == klo) { atomicMin(&sh_band[4], bbest.z); }
        workgroupBarrier();
        band_min = atomicLoad(&sh_band[0]);
        band_max = kmax;
        band_cnt = atomicLoad(&sh_band[2]);
        band_lo = val_of(klo);
        band_id = atomicLoad(&sh_band[4]);
    }
    // The tile records and candidates are read by every invocation next.
    storageBarrier();
    s[S_PASSES] += 1u;
}

// The largest survivor of a band as (key, lo bits, id): the larger key, then
// the larger lo, then the lower id (the row max's rule, init_row). An id of
// NONE is no survivor.
fn band_better(a: vec4<u32>, b: vec4<u32>) -> bool {
    if (b.z == NONE) { return a.z != NONE; }
    if (a.z == NONE) { return false; }
    if (a.x != b.x) { return a.x > b.x; }
    let la = bitcast<f32>(a.y);
    let lb = bitcast<f32>(b.y);
    if (la != lb) { return la > lb; }
    return a.z < b.z;
}



struct PassScan { ab: vec4<f32>, q: vec4<u32>, total: u32, incl: u32 }

// One tile's COMPACT partials in one two-level pass (common.wgsl's
// reductions, fixed order): the totals of the sums and of the two 64-bit
// masses, and the inclusive prefix of the candidate counts (positions in
// logical thread order). Three barriers.
var<workgroup> sh_ps: PassScan;

fn pass_scan(ab: vec4<f32>, q: vec4<u32>, n: u32) -> PassScan {
    red4[lid] = ab;
    redu4[lid] = q;
    red_u[lid] = n;
    workgroupBarrier();
    if (lid < WG / SQ) {
        var a4 = red4[lid * SQ];
        var aq = redu4[lid * SQ];
        var an = red_u[lid * SQ];
        for (var k = 1u; k < SQ; k++) {
            a4 = a4 + red4[lid * SQ + k];
            let mq = redu4[lid * SQ + k];
            aq = vec4<u32>(add64(aq.xy, mq.xy), add64(aq.zw, mq.zw));
            an = an + red_u[lid * SQ + k];
            red_u[lid * SQ + k] = an;
        }
        red4[lid * SQ] = a4;
        redu4[lid * SQ] = aq;
    }
    workgroupBarrier();
    let blk = lid / SQ;
    var off = 0u;
    for (var k = 0u; k < WG / SQ; k++) {
        if (k < blk) { off = off + red_u[k * SQ + SQ - 1u]; }
    }
    let incl = off + red_u[lid];
    if (lid == WG - 1u) {
        var t4 = red4[0];
        var tq = redu4[0];
        for (var k = 1u; k < WG / SQ; k++) {
            t4 = t4 + red4[k * SQ];
            let mq = redu4[k * SQ];
            tq = vec4<u32>(add64(tq.xy, mq.xy), add64(tq.zw, mq.zw));
        }
        sh_ps = PassScan(t4, tq, incl, 0u);
    }
    let t = workgroupUniformLoad(&sh_ps);
    return PassScan(t.ab, t.q, t.total, incl);
}

fn add_bin(b: u32, q: vec2<u32>) {
    atomicAdd(&sh_hb[b], 1u);
    let old = atomicAdd(&sh_hb[HB_MLO + b], q.x);
    atomicAdd(&sh_hb[HB_MHI + b], q.y + select(0u, 1u, old + q.x < old));
}

// Whether the row is in phase `ph` with no read pending (a phase that asks
// for a read ends the step).
fn at(ph: u32) -> bool { return !want_pass && s[S_PHASE] == ph; }

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid0: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let en = entry(lid3, wid0, nwg);
    lid = en.lid;
    row = en.wid.y;
    if (row >= ch.rows) { return; }
    // Phase steps until the row is done, with the reads the phases ask for
    // in between. One step offers the row every phase once, in the order a
    // row usually goes through them, so a row moves through several phases
    // per step (a row without a read of its own takes one step, a top-p row
    // with a predicted cut three, where one phase per step took four and
    // seven): fewer loop iterations, which lavapipe also counts against its
    // loop budget (docs/gpu.md). Each query narrows its key window 256-fold
    // per read, so a row needs a few dozen steps at most; the bound turns a
    // bug into an error instead of a hang.
    loop {
        loop {
            if (steps >= 256u) { break; }
            steps += 1u;
            if (at(PH_INIT)) { init_row(); }
            if (at(PH_STAGE)) { run_stage(); }
            if (at(PH_QSTART)) { run_qstart(); }
            if (at(PH_COUNT)) { run_count(); }
            if (at(PH_QBINS)) { query_bins(); }
            if (at(PH_QCOMP)) { query_compacted(); }
            if (at(PH_MIRO)) { run_mirostat(); }
            if (at(PH_POST)) { post_stages(); }
            if (at(PH_FINAL)) { finalize(); }
            if (want_pass || s[S_PHASE] == PH_DONE) { break; }
        }
        if (!want_pass || steps >= 256u) { break; }
        want_pass = false;
        run_pass();
    }
    let res = res_at(row);
    if (s[S_STATUS] == ST_RUNNING && s[S_PHASE] == PH_DONE) {
        write_results();
        s[S_STATUS] = ST_DONE;
        // The results and the tiles' kept-mass prefix are read by every invocation.
        storageBarrier();
        var tok = s[S_ARG];
        if (s[S_GREEDY] == 0u) {
            var cache: DrawCache;
            cache.tile = NONE;
            tok = draw_token(lid, row, 0u, &cache);
        }
        if (lid == 0u) {
            outb[res + R_TOKEN] = tok;
            outb[res + R_TOKX] = bitcast<u32>(load_x(row, tok));
            outb[ch.dr_base + grow(row) * ch.draws] = tok;
            if ((ch.opts & OPT_TOKENS) != 0u) { aux[ch.aux_off + grow(row)] = tok; }
        }
    } else if (s[S_STATUS] == ST_RUNNING) {
        s[S_STATUS] = ST_ERROR;
        if (lid == 0u) {
            outb[res + R_STATUS] = ROW_ERROR;
            outb[res + R_ERRC] = E_ROUNDS;
        }
    }
    if (lid == 0u) { outb[res + R_CALL] = ch.call; }
    // Leave the statistics pass's histogram zeroed for the next call.
    if ((mrec(row, M_FLAGS) & (F_HIST_A | F_HIST_P)) != 0u) {
        let b = bins_at(row);
        for (var i = lid; i < HA_BINS; i += WG) { atomicStore(&bins[b + i], 0u); }
    }
}
