// Resets a chunk's per-row state, atomics and histogram bins, so one
// workspace serves chunk after chunk inside a single submission, and marks
// each row's result record as this call's, not yet written. One workgroup
// per row.

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid0: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let wid = vec3<u32>(group(wid0.x, nwg.x), group(wid0.y, nwg.y), 0u);
    init_consts();
    let lid = lane(lid3.x);
    let r = wid.x;
    if (r >= ch.rows) { return; }
    for (var i = lid; i < ST; i += WG) { ws[st_at(r) + i] = 0u; }
    let b = bins_at(r);
    for (var i = lid; i < HA_BINS + 2u * NB; i += WG) { atomicStore(&wsa[b + i], 0u); }
    if (lid == 0u) {
        atomicStore(&wsa[ra_at(r) + RA_BAD], NONE);
        atomicStore(&wsa[ra_at(r) + RA_PERR], NONE);
        atomicStore(&wsa[ra_at(r) + RA_CAND], 0u);
        atomicStore(&wsa[ra_at(r) + 3u], 0u);
        outb[res_at(r) + R_STATUS] = 0u;
        outb[res_at(r) + R_ERRC] = 0u;
        outb[res_at(r) + R_CALL] = ch.call;
    }
}
