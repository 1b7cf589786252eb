// The processed top-n log-probabilities of a row whose survivors are a band
// (typical sampling or XTC cut from above, docs/spec.md §3.11, §3.13): the
// statistics pass's per-tile lists hold the largest processed logits, which
// may all lie above the band, so the n largest survivors are found here, one
// read of the row per entry (dispatched only for calls with such rows and
// logprobs; one workgroup per row, rows without a band return at once).

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid0: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let en = entry(lid3, wid0, nwg);
    let lid = en.lid;
    let r = en.wid.y;
    if (r >= ch.rows) { return; }
    let res = res_at(r);
    let n = min(mrec(r, M_LOGPROBS), ch.ntop);
    if (outb[res + R_STATUS] != ROW_OK || outb[res + R_GREEDY] != 0u || outb[res + R_CEIL] >= KEY_MAX || n == 0u) {
        return;
    }
    let tau = outb[res + R_TAU];
    let ceil = outb[res + R_CEIL];
    let dst = ch.to_base + grow(r) * TOPW + TOPW / 2u;
    var last_v = POS_INF;
    var last_i = 0u;
    var taken = 0u;
    for (var k = 0u; k < n; k++) {
        var bv = NEG_INF;
        var bi = NONE;
        var c = tile_setup(lid, r, 0u);
        for (var t = 0u; t < ch.tiles; t++) {
            if (t > 0u) { c = tile_next(lid, c); }
            for (var j = 0u; j < EPT; j++) {
                let li = j * WG + lid;
                if (li < c.n) {
                    let y = y_of(c, li, load_x(r, c.t0 + li));
                    let key = key_of(y.x);
                    let i = c.t0 + li;
                    if (y.x != NEG_INF && key >= tau && key <= ceil && better(last_v, last_i, y.x, i)
                        && (bi == NONE || better(y.x, i, bv, bi))) {
                        bv = y.x;
                        bi = i;
                    }
                }
            }
        }
        let best = wg_best(lid, bv, bi);
        if (best.y == NONE) { break; }
        if (lid == 0u) {
            // The raw logit: the host computes the logprob in f64 (R_TOKX).
            outb[dst + 2u * k] = best.y;
            outb[dst + 2u * k + 1u] = bitcast<u32>(load_x(r, best.y));
        }
        last_v = bitcast<f32>(best.x);
        last_i = best.y;
        taken += 1u;
    }
    if (lid == 0u) { outb[res + R_NPROC] = taken; }
}
