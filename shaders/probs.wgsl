// The full processed distribution π (docs/spec.md §8 `probs`): one f32 per id, in
// id order, 0 for removed ids. One workgroup per (tile, row).

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid0: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let en = entry(lid3, wid0, nwg);
    let lid = en.lid;
    let c = tile_entry(en);
    let r = c.r;
    let res = res_at(r);
    if (outb[res + R_STATUS] != 1u) { return; }
    let greedy = outb[res + R_GREEDY] != 0u;
    let tok = outb[res + R_TOKEN];
    let m = vec2<f32>(bitcast<f32>(outb[res + R_M]), bitcast<f32>(outb[res + R_MLO]));
    let t_ = bitcast<f32>(outb[res + R_T]);
    let inv_t = 1.0 / t_;
    let lns = bitcast<f32>(outb[res + R_LNS]);
    let tau = outb[res + R_TAU];
    let ceil = outb[res + R_CEIL];
    for (var j = 0u; j < EPT; j++) {
        let li = j * WG + lid;
        if (li < c.n) {
            let i = c.t0 + li;
            var p = 0.0;
            if (greedy) {
                p = select(0.0, 1.0, i == tok);
            } else {
                let y = y_of(c, li, load_x(r, i));
                let k = key_of(y.x);
                if (y.x != NEG_INF && k >= tau && k <= ceil) { p = exp(scaled(y, m, inv_t) - lns); }
            }
            aux[ch.aux_off + r * ch.aux_stride + i] = bitcast<u32>(p);
        }
    }
}
