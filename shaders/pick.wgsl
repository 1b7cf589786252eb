// The draws of a multi-draw call (docs/spec.md §5: d = 0..N−1 share one processed
// π), after the row solver has finished every row and drawn d = 0 itself.
// One workgroup per (group of draws, row); built with the solver's
// workgroup size, so each draw's arithmetic is the solver's (draw.wgsl).

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid0: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let en = entry(lid3, wid0, nwg);
    let wid = en.wid;
    let lid = en.lid;
    let r = wid.y;
    let res = res_at(r);
    if (lid == 0u) { sh_dtile = outb[res + R_STATUS]; }
    let status = workgroupUniformLoad(&sh_dtile);
    if (status != 1u) { return; }
    let draws_at = ch.dr_base + grow(r) * ch.draws;
    if (outb[res + R_GREEDY] != 0u) {
        let tok = outb[res + R_TOKEN];
        for (var d = 1u + wid.x * WG + lid; d < ch.draws; d += nwg.x * WG) { outb[draws_at + d] = tok; }
        return;
    }
    var cache: DrawCache;
    cache.tile = NONE;
    for (var d = 1u + wid.x; d < ch.draws; d += nwg.x) {
        let tok = draw_token(lid, r, d, &cache);
        if (lid == 0u) { outb[draws_at + d] = tok; }
        workgroupBarrier();
    }
}
