// Stage 1–2 of SPEC §3 for the few ids a row's bias, history or prompt names:
// one invocation per (row, distinct id) entry of the compact lists. Writes
// the processed logit y for the entry; every other id keeps its raw logit, so
// no V-sized mask or copy is ever made. A bias or penalty that makes a finite
// logit non-finite is recorded as the row's smallest error code (bias errors
// before penalty errors, then by id — the order the reference reports them).

// Allowed by the packed mask (if any) and by the id list (if any).
fn row_allowed(r: u32, id: u32) -> bool {
    let flags = mrec(r, M_FLAGS);
    if ((flags & F_BITMASK) != 0u) {
        let w = bitmask[ch.bm_off + grow(r) * ch.bm_words + (id >> 5u)];
        if ((w & (1u << (id & 31u))) == 0u) { return false; }
    }
    if ((flags & F_ALLOW) != 0u) {
        let ao = mrec(r, M_ALLOW_OFF);
        let an = mrec(r, M_ALLOW_N);
        let i = lower_allow(ao, ao + an, id);
        return i < ao + an && prm[i] == id;
    }
    return true;
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    init_consts();
    let e = ch.patch_e0 + gid.x + gid.y * nwg.x * WG;
    if (e >= ch.patch_e1) { return; }
    let base = ch.meta_patch + e * 4u;
    let id = prm[base];
    let bias = bitcast<f32>(prm[base + 1u]);
    let cf = prm[base + 2u];
    let r = prm[base + 3u] - ch.row0;
    let count = cf >> 2u;
    let x = load_x(r, id);
    // Two-float, as the reference's f64: x + bias exactly, then the penalties
    // with the f64 values of their parameters (the f32 rounding of such an id
    // would be magnified by a small T).
    var y = vec2<f32>(x, 0.0);
    if (!row_allowed(r, id) || is_bad(x)) {
        y = vec2<f32>(NEG_INF, 0.0);
    }
    if (y.x != NEG_INF) {
        var err = NONE;
        if ((cf & 1u) != 0u) {
            y = two_sum(y.x, bias);
            if (abs(y.x) > 3.40282347e38) { err = (id << 1u); }
        }
        if (err == NONE && (cf & 2u) != 0u) {
            let rp = vec2<f32>(bitcast<f32>(mrec(r, M_REP)), bitcast<f32>(mrec(r, M_REP_LO)));
            y = select(dd_mul(y, rp), dd_div(y, rp), y.x > 0.0);
            if (abs(y.x) > 3.40282347e38) { err = 0x80000000u | (id << 1u); }
            if (err == NONE && count > 0u) {
                let freq = vec2<f32>(bitcast<f32>(mrec(r, M_FREQ)), bitcast<f32>(mrec(r, M_FREQ_LO)));
                let pres = vec2<f32>(bitcast<f32>(mrec(r, M_PRES)), bitcast<f32>(mrec(r, M_PRES_LO)));
                y = dd_sub(y, dd_add(dd_mul(freq, dd(f32(count))), pres));
                if (abs(y.x) > 3.40282347e38) { err = 0x80000000u | (id << 1u) | 1u; }
            }
        }
        if (err != NONE) {
            atomicMin(&wsa[ra_at(r) + RA_PERR], err);
        }
    }
    ws[ch.pv_base + 2u * e] = bitcast<u32>(y.x);
    ws[ch.pv_base + 2u * e + 1u] = bitcast<u32>(y.y);
}
