// Resets a chunk's per-row state, atomics, histogram bins and the indirect
// dispatch arguments of every round, so one workspace serves chunk after
// chunk inside a single submission. One workgroup per row.

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    init_consts();
    let lid = lid3.x;
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
    }
    if (r == 0u) {
        // Round k uses 8 words: the scan pass's (tiles, rows, 1) and the row
        // solver's (1, rows, 1); the solver of the previous round fills in rows.
        for (var k = lid; k <= ch.nrounds; k += WG) {
            atomicStore(&args[k * 8u], ch.tiles);
            atomicStore(&args[k * 8u + 1u], 0u);
            atomicStore(&args[k * 8u + 2u], 1u);
            atomicStore(&args[k * 8u + 3u], 0u);
            atomicStore(&args[k * 8u + 4u], 1u);
            atomicStore(&args[k * 8u + 5u], 0u);
            atomicStore(&args[k * 8u + 6u], 1u);
            atomicStore(&args[k * 8u + 7u], 0u);
        }
    }
}
