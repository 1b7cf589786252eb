// Sampling (SPEC §3.8, §5): for draw d, u = U(seed, step, d); the token is
// the smallest id whose cumulative kept mass, in id order, exceeds u·S. The
// solver left each tile's inclusive prefix of kept mass, so a draw finds its
// tile by binary search and scans only that tile (cached across draws).
// One workgroup per (group of draws, row).

var<workgroup> sh_cum: array<f32, TILE>;
var<workgroup> sh_w: array<f32, TILE>;
var<workgroup> sh_tile: u32;
var<workgroup> sh_pick: atomic<u32>;
var<workgroup> sh_last: atomic<u32>;
var<workgroup> sh_u: u32;

fn pre(r: u32, t: u32) -> f32 { return bitcast<f32>(ws[tl_at(r, t) + T_PRE]); }

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid0: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let wid = vec3<u32>(group(wid0.x, nwg.x), group(wid0.y, nwg.y), 0u);
    init_consts();
    let lid = lane(lid3.x);
    let r = wid.y;
    let res = res_at(r);
    if (lid == 0u) { sh_u = outb[res + R_STATUS]; }
    let status = workgroupUniformLoad(&sh_u);
    if (status != 1u) { return; }
    let greedy = outb[res + R_GREEDY] != 0u;
    let m = vec2<f32>(bitcast<f32>(outb[res + R_M]), bitcast<f32>(outb[res + R_MLO]));
    let t_ = bitcast<f32>(outb[res + R_T]);
    let inv_t = 1.0 / t_;
    let tau = outb[res + R_TAU];
    let seed = vec2<u32>(mrec(r, M_SEED), mrec(r, M_SEED + 1u));
    let step = vec2<u32>(mrec(r, M_STEP), mrec(r, M_STEP + 1u));
    let draws_at = ch.dr_base + grow(r) * ch.draws;
    if (greedy) {
        let tok = outb[res + R_TOKEN];
        for (var d = wid.x * WG + lid; d < ch.draws; d += nwg.x * WG) { outb[draws_at + d] = tok; }
        if (wid.x == 0u && lid == 0u) {
            outb[res + R_TOKX] = bitcast<u32>(load_x(r, tok));
        }
        return;
    }
    let last_t = ch.tiles - 1u;
    let total = pre(r, last_t);
    var cached = NONE;
    var c: TileCtx;
    for (var d = wid.x; d < ch.draws; d += nwg.x) {
        if (lid == 0u) {
            let tgt = uniform01(seed, step, d) * total;
            // Smallest tile whose inclusive prefix exceeds the tgt.
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
            sh_tile = lo;
            var before = 0.0;
            if (lo > 0u) { before = pre(r, lo - 1u); }
            sh_u = bitcast<u32>(tgt - before);
            atomicStore(&sh_pick, NONE);
            atomicStore(&sh_last, 0u);
        }
        let t = workgroupUniformLoad(&sh_tile);
        let goal = bitcast<f32>(workgroupUniformLoad(&sh_u));
        if (t != cached) {
            c = tile_setup(lid, r, t);
            var acc = 0.0;
            var ws_: array<f32, EPT>;
            for (var j = 0u; j < EPT; j++) {
                let li = lid * EPT + j;
                var w = 0.0;
                if (li < c.n) {
                    let y = y_of(c, li, load_x(r, c.t0 + li));
                    if (y.x != NEG_INF && key_of(y.x) >= tau) { w = weight(y, m, inv_t); }
                }
                ws_[j] = w;
                acc += w;
            }
            let incl = wg_scan_f(lid, acc);
            var run = incl - acc;
            for (var j = 0u; j < EPT; j++) {
                run += ws_[j];
                sh_cum[lid * EPT + j] = run;
                sh_w[lid * EPT + j] = ws_[j];
            }
            cached = t;
            workgroupBarrier();
        }
        for (var j = 0u; j < EPT; j++) {
            let li = lid * EPT + j;
            if (sh_w[li] > 0.0) {
                if (sh_cum[li] > goal) { atomicMin(&sh_pick, li); }
                atomicMax(&sh_last, li + 1u);
            }
        }
        workgroupBarrier();
        if (lid == 0u) {
            var li = atomicLoad(&sh_pick);
            if (li == NONE) { li = atomicLoad(&sh_last) - 1u; }
            let tok = c.t0 + li;
            outb[draws_at + d] = tok;
            if (d == 0u) {
                outb[res + R_TOKEN] = tok;
                outb[res + R_TOKX] = bitcast<u32>(load_x(r, tok));
            }
        }
        workgroupBarrier();
    }
}
