// Sampling (docs/spec.md §3.8, §5), shared by the row solver (draw 0, in the same
// dispatch) and `pick` (every draw of a multi-draw call), both built with the
// solver's workgroup size so that a draw's arithmetic is the same wherever
// it runs: for draw d, u = U(seed, step, d); the token is the smallest id
// whose cumulative kept mass, in id order, exceeds u·S. The solver leaves
// each tile's inclusive prefix of kept mass (T_PRE), so a draw finds its
// tile by binary search and scans only that tile.

// Scratch of the solver: its candidates (keys, then the two words of their
// masses) or a mass query's d-bin thresholds.
const BIG: u32 = 3u * CAP;
var<workgroup> sh_big: array<u32, BIG>;
var<workgroup> sh_dtile: u32;
var<workgroup> sh_dgoal: u32;
var<workgroup> sh_pick: atomic<u32>;
var<workgroup> sh_last: atomic<u32>;

fn pre(r: u32, t: u32) -> f32 { return bitcast<f32>(ws[tl_at(r, t) + T_PRE]); }

// The tile a workgroup's draws last scanned: each invocation's kept weights
// of its EPT consecutive ids and the tile's kept mass before them (an
// exclusive workgroup scan in id order), kept across the draws of one
// workgroup.
struct DrawCache { tile: u32, c: TileCtx, w: array<f32, EPT>, before: f32 }

fn load_tile_cdf(lid: u32, r: u32, t: u32, m: vec2<f32>, inv_t: f32, tau: u32, ceil: u32,
                 cache: ptr<function, DrawCache>) {
    let c = tile_setup(lid, r, t);
    var acc = 0.0;
    for (var j = 0u; j < EPT; j++) {
        let li = lid * EPT + j;
        var w = 0.0;
        if (li < c.n) {
            let y = y_of(c, li, load_x(r, c.t0 + li));
            let k = key_of(y.x);
            if (y.x != NEG_INF && k >= tau && k <= ceil) { w = weight(y, m, inv_t); }
        }
        (*cache).w[j] = w;
        acc += w;
    }
    (*cache).before = wg_scan_f(lid, acc) - acc;
    (*cache).c = c;
    (*cache).tile = t;
}

// The token of draw d of chunk row r (a non-greedy row whose solver has
// finished): whole workgroup. `cache` keeps the last tile's weights across
// draws of one workgroup.
fn draw_token(lid: u32, r: u32, d: u32, cache: ptr<function, DrawCache>) -> u32 {
    let res = res_at(r);
    let m = vec2<f32>(bitcast<f32>(outb[res + R_M]), bitcast<f32>(outb[res + R_MLO]));
    let inv_t = 1.0 / bitcast<f32>(outb[res + R_T]);
    let tau = outb[res + R_TAU];
    let ceil = outb[res + R_CEIL];
    let seed = vec2<u32>(mrec(r, M_SEED), mrec(r, M_SEED + 1u));
    let step = vec2<u32>(mrec(r, M_STEP), mrec(r, M_STEP + 1u));
    let last_t = ch.tiles - 1u;
    if (lid == 0u) {
        let tgt = uniform01(seed, step, d) * pre(r, last_t);
        // Smallest tile whose inclusive prefix exceeds tgt.
        var lo = 0u;
        var hi = ch.tiles;
        while (lo < hi) {
            let mid = (lo + hi) >> 1u;
            if (pre(r, mid) > tgt) { hi = mid; } else { lo = mid + 1u; }
        }
        if (lo == ch.tiles) {
            // Rounding left no such tile: the last tile holding mass.
            lo = last_t;
            while (lo > 0u && bitcast<f32>(ws[tl_at(r, lo) + T_SK]) <= 0.0) { lo -= 1u; }
        }
        sh_dtile = lo;
        var before = 0.0;
        if (lo > 0u) { before = pre(r, lo - 1u); }
        sh_dgoal = bitcast<u32>(tgt - before);
        atomicStore(&sh_pick, NONE);
        atomicStore(&sh_last, 0u);
    }
    let t = workgroupUniformLoad(&sh_dtile);
    let goal = bitcast<f32>(workgroupUniformLoad(&sh_dgoal));
    if (t != (*cache).tile) { load_tile_cdf(lid, r, t, m, inv_t, tau, ceil, cache); }
    // The first kept id whose inclusive prefix exceeds the goal, and the
    // last kept id (the fallback when rounding leaves none).
    var run = (*cache).before;
    var pick = NONE;
    var last = 0u;
    for (var j = 0u; j < EPT; j++) {
        let w = (*cache).w[j];
        run += w;
        if (w > 0.0) {
            if (run > goal && pick == NONE) { pick = lid * EPT + j; }
            last = lid * EPT + j + 1u;
        }
    }
    if (pick != NONE) { atomicMin(&sh_pick, pick); }
    if (last != 0u) { atomicMax(&sh_last, last); }
    workgroupBarrier();
    if (lid == 0u) {
        var li = atomicLoad(&sh_pick);
        if (li == NONE) { li = atomicLoad(&sh_last) - 1u; }
        sh_dtile = (*cache).c.t0 + li;
    }
    return workgroupUniformLoad(&sh_dtile);
}
