// A later read of a row, for the rows whose solver asked for one this round
// (indirect dispatch: tiles × active rows). What it does is the row's
// request, over the survivors (key ≥ floor) at the request's temperature:
//   1 HIST_D  histogram over the solver's d-bin thresholds (bin b: y within
//             (b, b+1]·T/8 below the max), counts and 64-bit masses
//   2 HIST_K  histogram of keys in [lo, hi], bin (hi − key) >> shift
//   3 COMPACT ids with lo ≤ key ≤ hi become candidates (one block per tile, in
//             thread order); per tile the count / Σe / Σ((y−m)/T)e and the
//             64-bit mass of the keys above hi, and Σe of the keys below lo.
// Masses are the exact integers of common.wgsl (`mass_of`), added with
// integer atomics: deterministic, and the same numbers the solver bisects.

var<workgroup> sh_cnt: array<atomic<u32>, NB>;
var<workgroup> sh_mass: array<atomic<u32>, NB>;
var<workgroup> sh_mass_hi: array<atomic<u32>, NB>;
var<workgroup> sh_th: array<u32, NB + 1u>;
var<workgroup> sh_row: u32;
var<workgroup> sh_base: u32;

fn add_bin(b: u32, q: vec2<u32>) {
    atomicAdd(&sh_cnt[b], 1u);
    let old = atomicAdd(&sh_mass[b], q.x);
    atomicAdd(&sh_mass_hi[b], q.y + select(0u, 1u, old + q.x < old));
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid0: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let wid = vec3<u32>(group(wid0.x, nwg.x), group(wid0.y, nwg.y), 0u);
    init_consts();
    let lid = lane(lid3.x);
    let t = wid.x;
    if (lid == 0u) { sh_row = atomicLoad(&args[ch.al_base + ch.round * ch.rows + wid.y]); }
    let r = workgroupUniformLoad(&sh_row);
    let st = st_at(r);
    let mode = ws[st + S_PMODE];
    let lo = ws[st + S_PLO];
    let hi = ws[st + S_PHI];
    let shift = ws[st + S_PSHIFT];
    let floor_k = ws[st + S_PFLOOR];
    let inv_t = 1.0 / bitcast<f32>(ws[st + S_PT]);
    let m = bitcast<f32>(ws[st + S_M]);
    let mm = vec2<f32>(m, bitcast<f32>(ws[st + S_MLO]));
    for (var b = lid; b < NB; b += WG) {
        atomicStore(&sh_cnt[b], 0u);
        atomicStore(&sh_mass[b], 0u);
        atomicStore(&sh_mass_hi[b], 0u);
    }
    if (mode == 1u) {
        for (var b = lid; b <= NB; b += WG) { sh_th[b] = atomicLoad(&wsa[th_at(r) + b]); }
    }
    let c = tile_setup(lid, r, t);

    var ab = vec4<f32>(0.0);   // above: count, Σe, Σde ; below Σe
    var qa = vec2<u32>(0u);    // above: 64-bit mass
    var ncand = 0u;
    var ckeys: array<u32, EPT>;
    var clo: array<f32, EPT>;
    for (var j = 0u; j < EPT; j++) {
        let li = lid * EPT + j;
        ckeys[j] = NONE;
        if (li >= c.n) { continue; }
        let y = y_of(c, li, load_x(r, c.t0 + li));
        let k = key_of(y.x);
        if (y.x == NEG_INF || k < floor_k) { continue; }
        let w = weight(y, mm, inv_t);
        if (mode == 1u) {
            // Estimate the bin from d, then settle it on the thresholds.
            var b = u32(min((m - y.x) * inv_t * 8.0, f32(NB - 1u)));
            for (var g = 0u; g < NB; g++) {
                if (k < sh_th[b + 1u]) { b += 1u; } else if (k >= sh_th[b]) { b -= 1u; } else { break; }
            }
            add_bin(b, mass_of(w));
        } else if (mode == 2u) {
            if (k >= lo && k <= hi) { add_bin((hi - k) >> shift, mass_of(w)); }
        } else {
            if (k > hi) {
                ab += vec4<f32>(1.0, w, scaled(y, mm, inv_t) * w, 0.0);
                qa = add64(qa, mass_of(w));
            } else if (k >= lo) {
                ckeys[j] = k;
                clo[j] = y.y;
                ncand += 1u;
            } else {
                ab.w += w;
            }
        }
    }
    workgroupBarrier();
    let gb = bins_at(r);
    if (mode == 1u || mode == 2u) {
        for (var b = lid; b < NB; b += WG) {
            let cnt = atomicLoad(&sh_cnt[b]);
            if (cnt != 0u) {
                atomicAdd(&wsa[gb + b], cnt);
                let q = atomicLoad(&sh_mass[b]);
                let old = atomicAdd(&wsa[gb + HA_BINS + b], q);
                let carry = select(0u, 1u, old + q < old);
                atomicAdd(&wsa[gb + HA_BINS + NB + b], atomicLoad(&sh_mass_hi[b]) + carry);
            }
        }
        return;
    }
    let sums = wg_sum4(lid, ab);
    let qsum = wg_sum64(lid, qa);
    let incl = wg_scan_u(lid, ncand);
    let total = workgroupUniformLoad(&red_u[WG - 1u]);
    if (lid == 0u && total > 0u) {
        sh_base = atomicAdd(&wsa[ra_at(r) + RA_CAND], total);
    }
    let base = workgroupUniformLoad(&sh_base);
    var pos = base + incl - ncand;
    for (var j = 0u; j < EPT; j++) {
        if (ckeys[j] != NONE) {
            if (pos < CAP) {
                ws[cand_at(r) + 2u * pos] = ckeys[j];
                ws[cand_at(r) + 2u * pos + 1u] = bitcast<u32>(clo[j]);
            }
            pos += 1u;
        }
    }
    let rec = tl_at(r, t);
    if (lid == 0u) {
        ws[rec + T_REF] = bitcast<u32>(m);
        ws[rec + T_REFLO] = bitcast<u32>(mm.y);
        ws[rec + T_CNT] = u32(sums.x);
        ws[rec + T_S] = bitcast<u32>(sums.y);
        ws[rec + T_A] = bitcast<u32>(sums.z);
        ws[rec + T_BS] = bitcast<u32>(sums.w);
        ws[rec + T_QA] = qsum.x;
        ws[rec + T_QA + 1u] = qsum.y;
        ws[rec + T_COFF] = select(0u, base, total > 0u);
        ws[rec + T_CCNT] = total;
    }
}
