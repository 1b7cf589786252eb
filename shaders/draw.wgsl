// Sampling (docs/spec.md §3.8, §5), shared by the row solver (draw 0, in the same
// dispatch) and `pick` (every draw of a multi-draw call), both built with the
// solver's workgroup size so that a draw's arithmetic is the same wherever
// it runs: for draw d, u = U(seed, step, d); the token is the smallest id
// whose cumulative kept mass, in id order, exceeds u·S. The solver leaves
// each tile's inclusive prefix of kept mass (T_PRE), so a draw finds its
// tile by binary search and scans only that tile.

// Scratch shared with the solver: its candidates (keys, then the two words
// of their masses), a mass query's d-bin thresholds, or a tile's cumulative
// weights.
const BIG: u32 = max(3u * CAP, 2u * TILE);
var<workgroup> sh_big: array<u32, BIG>;
var<workgroup> sh_dtile: u32;
var<workgroup> sh_dgoal: u32;
var<workgroup> sh_pick: atomic<u32>;
var<workgroup> sh_last: atomic<u32>;

fn pre(r: u32, t: u32) -> f32 { return bitcast<f32>(ws[tl_at(r, t) + T_PRE]); }

// The kept weights of tile t in id order and their inclusive prefix, into
// sh_big (prefix at li, weight at TILE + li). Whole workgroup.
fn load_tile_cdf(lid: u32, r: u32, t: u32, m: vec2<f32>, inv_t: f32, tau: u32, ceil: u32) -> TileCtx {
    let c = tile_setup(lid, r, t);
    var acc = 0.0;
    var w_: array<f32, EPT>;
    for (var j = 0u; j < EPT; j++) {
        let li = lid * EPT + j;
        var w = 0.0;
        if (li < c.n) {
            let y = y_of(c, li, load_x(r, c.t0 + li));
            let k = key_of(y.x);
            if (y.x != NEG_INF && k >= tau && k <= ceil) { w = weight(y, m, inv_t); }
        }
        w_[j] = w;
        acc += w;
    }
    let incl = wg_scan_f(lid, acc);
    var run = incl - acc;
    for (var j = 0u; j < EPT; j++) {
        run += w_[j];
        sh_big[lid * EPT + j] = bitcast<u32>(run);
        sh_big[TILE + lid * EPT + j] = bitcast<u32>(w_[j]);
    }
    workgroupBarrier();
    return c;
}

struct DrawCache { tile: u32, c: TileCtx }

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
    if (t != (*cache).tile) {
        (*cache).c = load_tile_cdf(lid, r, t, m, inv_t, tau, ceil);
        (*cache).tile = t;
    }
    for (var j = 0u; j < EPT; j++) {
        let li = lid * EPT + j;
        if (bitcast<f32>(sh_big[TILE + li]) > 0.0) {
            if (bitcast<f32>(sh_big[li]) > goal) { atomicMin(&sh_pick, li); }
            atomicMax(&sh_last, li + 1u);
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        var li = atomicLoad(&sh_pick);
        if (li == NONE) { li = atomicLoad(&sh_last) - 1u; }
        sh_dtile = (*cache).c.t0 + li;
    }
    return workgroupUniformLoad(&sh_dtile);
}
