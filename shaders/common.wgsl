// Shared by every sampling shader: bindings, layouts, the order-preserving
// key, the logit loader (f32 / f16 / bf16, bias + mask + penalties applied
// from compact per-row lists) and workgroup reductions.
//
// The host prepends the constants (WG, TILE, EPT, CAP, HA_BITS, HA_BINS, NB,
// NTOP) chosen from the adapter's limits; see src/gpu/pipelines.rs.
//
// Determinism: every reduction below runs in a fixed tree order and every
// per-row quantity is built from per-tile partials (a tile is TILE ids of one
// row, whatever the batch), so a row's result never depends on its batch.

// The Chunk uniform, the parameter and result records (MR, M_*, RES, R_*,
// TOPW), the flag bits (F_*), option bits (OPT_*) and codes (ORDER_*, K_*,
// UNIT_*, DTYPE_*, ROW_*, E_*) are generated from src/gpu/abi.rs and
// prepended to every shader.

@group(0) @binding(0) var<storage, read> logits: array<u32>;
@group(0) @binding(1) var<storage, read> prm: array<u32>;
@group(0) @binding(2) var<storage, read_write> ws: array<u32>;
// The statistics pass's per-row first-digit histograms. Every word is zero
// between calls: the buffer is created zeroed, and each row's solver clears
// the bins its statistics pass filled once it has read them.
@group(0) @binding(3) var<storage, read_write> bins: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read_write> outb: array<u32>;
@group(0) @binding(5) var<storage, read> bitmask: array<u32>;
@group(0) @binding(6) var<storage, read_write> aux: array<u32>;
// The chunk's record (ChunkUniform), bound as read-only storage rather than
// a uniform buffer: lavapipe (Mesa 22.3) inlines the values of a uniform
// buffer that loop bounds read into the shader and compiled it again on
// every dispatch whose values changed, keeping each copy (about 3 MiB and
// several ms per call, without end, at some workgroup sizes).
@group(0) @binding(7) var<storage, read> ch: Chunk;

// WGSL has no infinite constants: the host passes the bits in the chunk record
// (`inf_bits`) and every entry point starts with init_consts().
var<private> NEG_INF: f32;
var<private> POS_INF: f32;
// 0 at run time, unknown to the compiler (see mapping.wgsl's `opq`).
var<private> OPQ_ZERO: u32;
fn init_consts() {
    POS_INF = bitcast<f32>(ch.inf_bits);
    NEG_INF = -POS_INF;
    OPQ_ZERO = ch.inf_bits ^ 0x7f800000u;
}
// 1, as a value the compiler cannot see: the first step of a serial loop
// that only a few invocations of a workgroup run, so that it stays a loop.
// A software adapter (lavapipe) runs every instruction of an unrolled loop
// in every SIMD group of the workgroup under a mask, where a loop leaves a
// group with no invocation in it after one pass; hardware runs the same
// additions in the same order either way. Only where lavapipe's loop budget
// is far (docs/gpu.md): shaders.rs writes the other shaders' steps out.
fn from1() -> u32 { return 1u + OPQ_ZERO; }
const KEY_NEG_INF: u32 = 0x007fffffu;
const KEY_MIN: u32 = 0x00800000u;   // key of -f32::MAX: the smallest finite key
const KEY_MAX: u32 = 0xff7fffffu;   // key of +f32::MAX
const NONE: u32 = 0xffffffffu;

// Bins of T in the top-p prediction histogram (F_HIST_P).
const PBINS_PER_T: f32 = 16.0;

// Bin of a processed logit in the top-p prediction histogram: floor(y·16/T),
// saturating at both ends (bin 0 and HA_BINS − 1 hold everything beyond).
fn pbin(y: f32, per_unit: f32) -> u32 {
    let half = f32(HA_BINS / 2u);
    return u32(clamp(floor(y * per_unit), -half, half - 1.0) + half);
}

// Per-row state (ST words per chunk row).
const ST: u32 = 72u;
const S_STATUS: u32 = 0u;   // ST_RUNNING, ST_DONE or ST_ERROR
const S_PHASE: u32 = 1u;
const S_STAGE: u32 = 2u;
const S_TAU: u32 = 3u;      // survivors are the finite ids with key >= tau
const S_CNT: u32 = 4u;      // their count, when S_CNTK says it is known
const S_CNTK: u32 = 5u;
const S_TQ: u32 = 6u;       // temperature the truncation stages see
const S_T: u32 = 7u;        // temperature of π
const S_TOPP: u32 = 8u;
const S_GUIDE: u32 = 9u;
const S_H: u32 = 10u;
const S_VAR: u32 = 11u;
const S_N: u32 = 12u;
const S_M: u32 = 13u;
const S_S1: u32 = 14u;
const S_ARG: u32 = 15u;
const S_MRAW: u32 = 16u;
const S_SRAW: u32 = 17u;
const S_GREEDY: u32 = 18u;
const S_CALL: u32 = 19u;    // every survivor is a candidate
const S_SUMS: u32 = 20u;    // tile sums hold keys > S_SHI (and candidates [S_SLO, S_SHI]) at S_STQ
const S_SLO: u32 = 21u;
const S_SHI: u32 = 22u;
const S_STQ: u32 = 23u;
const S_CANDN: u32 = 24u;
const S_QK: u32 = 25u;      // query: 1 count, 2 mass
const S_QTGT: u32 = 26u;
const S_QFLOOR: u32 = 27u;
const S_QLO: u32 = 28u;
const S_QHI: u32 = 29u;
const S_QBC: u32 = 30u;
const S_QBM: u32 = 31u;     // mass above the window (64-bit: lo, hi)
const S_QBM_HI: u32 = 32u;
const S_QGOAL: u32 = 33u;   // a mass query's goal (64-bit: lo, hi)
const S_QRES: u32 = 34u;
const S_QRCNT: u32 = 35u;
const S_QRCK: u32 = 36u;
const S_PMODE: u32 = 37u;
const S_PLO: u32 = 38u;
const S_PHI: u32 = 39u;
const S_PSHIFT: u32 = 40u;
const S_PFLOOR: u32 = 41u;
const S_PT: u32 = 42u;
const S_QBIN: u32 = 43u;    // which bins the query reads next: QB_HA, QB_HD or QB_HK
const S_SUB: u32 = 44u;
const S_TBEF: u32 = 45u;
const S_CBEF: u32 = 46u;
const S_CBEFK: u32 = 47u;
const S_PASSES: u32 = 48u;
const S_QRET: u32 = 49u;
const S_HAOK: u32 = 50u;   // the statistics pass's histogram is unused: 1 key digits, 2 top-p prediction
const S_QPRED: u32 = 53u;   // the COMPACT read in flight is a top-p prediction (goal not yet known)
const S_QGOAL_HI: u32 = 51u;
const S_MLO: u32 = 52u;     // lo of the row max (processed logits are two-floats)
// The survivors are the finite ids with S_TAU ≤ key ≤ S_CEIL: a band once
// typical sampling or XTC cut from above (docs/spec.md §3.11, §3.13). S_M
// (with S_MLO) is always the largest survivor, S_REFID its id.
const S_CEIL: u32 = 54u;
const S_REFID: u32 = 55u;
// Which key the solver's reads and queries order the survivors by: 0 their
// logit, 1 their typicality (typ_key) around S_TYPC.
const S_KMODE: u32 = 56u;
const S_TYPC: u32 = 57u;
const S_QFIRST: u32 = 58u;  // a typicality mass query's first round: it fixes the goal
const S_X1: u32 = 59u;      // a stage's saved key (XTC's threshold, mirostat's 100th)
const S_X2: u32 = 60u;
// A sums request (solve.wgsl ask_sums): its key, return phase and mode, and
// the answer: count, Σe, Σde, known.
const S_CTAU: u32 = 61u;
const S_CRET: u32 = 62u;
const S_CPEEK: u32 = 63u;
const S_CCNT: u32 = 64u;
const S_CS: u32 = 65u;
const S_CA: u32 = 66u;
const S_CK: u32 = 67u;
const S_SIGMA: u32 = 68u;   // top-nσ's σ of the finite y

// S_STATUS values.
const ST_RUNNING: u32 = 0u;
const ST_DONE: u32 = 1u;
const ST_ERROR: u32 = 2u;
// S_QBIN values: the statistics pass's histogram (HA_BINS bins of the first
// key digit, or of y for the top-p prediction), the digit histogram of a
// HIST_D pass, the digit histogram of a HIST_K pass.
const QB_HA: u32 = 0u;
const QB_HD: u32 = 1u;
const QB_HK: u32 = 2u;

// Per-tile record (TR words per tile).
const TR: u32 = 28u;
const T_REF: u32 = 0u;    // the value sums below are relative to (hi; lo at T_REFLO)
const T_CNT: u32 = 1u;    // survivors above the window (or of the final set)
const T_S: u32 = 2u;      // their Σ e^((y - ref)/T)
const T_A: u32 = 3u;      // their Σ e^((y - ref)/T)·(y - ref)/T
const T_BS: u32 = 4u;     // Σ e^((y - ref)/T) of survivors below the window
const T_COFF: u32 = 5u;   // this tile's candidate block (in thread order): offset, count
const T_CCNT: u32 = 6u;
const T_PRE: u32 = 7u;    // inclusive prefix of the kept mass over tiles
const T_M1: u32 = 9u;     // statistics pass: max y, Σe, Σ(y-m)e, Σ(y-m)²e, finite count, argmax
const T_S1: u32 = 10u;
const T_A1: u32 = 11u;
const T_B1: u32 = 12u;
const T_N: u32 = 13u;
const T_ARG: u32 = 14u;
const T_MRAW: u32 = 15u;
const T_SRAW: u32 = 16u;
const T_SK: u32 = 17u;    // kept mass of this tile relative to the row max (finalize)
const T_QA: u32 = 18u;    // COMPACT: 64-bit fixed-point mass of the keys above the window (2 words)
const T_MLO: u32 = 8u;    // statistics pass: lo of the tile's max (the max is (T_M1, T_MLO))
const T_REFLO: u32 = 20u;
const T_BAD: u32 = 21u;   // statistics pass: the smallest id holding NaN/+inf (NONE: none)
const T_PERR: u32 = 22u;  // statistics pass: the smallest bias/penalty error code of the tile (NONE: none)
const T_QB: u32 = 23u;    // COMPACT: 64-bit fixed-point mass of the survivors below the window (2 words)
const T_MEAN: u32 = 25u;  // statistics pass, top-nσ rows: mean and Σ(y − mean)² of the finite y
const T_M2: u32 = 26u;

fn f(u: u32) -> f32 { return bitcast<f32>(u); }
fn u(x: f32) -> u32 { return bitcast<u32>(x); }

// Order-preserving key: compares as u32 like the f32 compares (test the sign
// bit; -inf is the lowest non-NaN key). -0.0 takes +0.0's key: the two are
// equal logits, so a threshold at 0 keeps both (ties all kept, docs/spec.md §3.4).
fn key_of(y: f32) -> u32 {
    let b = select(bitcast<u32>(y), 0u, y == 0.0);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}
fn val_of(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

fn grow(r: u32) -> u32 { return ch.row0 + r; }
// Row r's candidates from its last COMPACT round, as (key, y hi, y lo)
// triples (the key is the logit's, or the typicality key): one block per
// tile (T_COFF, T_CCNT), blocks placed in tile order, triples in thread
// order within a block.
const CW: u32 = 3u;
fn cand_at(r: u32) -> u32 { return ch.cd_base + r * CAP * CW; }
fn mrec(r: u32, field: u32) -> u32 { return prm[grow(r) * MR + field]; }
fn tl_at(r: u32, t: u32) -> u32 { return ch.tl_base + (r * ch.tiles + t) * TR; }
fn bins_at(r: u32) -> u32 { return r * HA_BINS; }
fn res_at(r: u32) -> u32 { return ch.res_base + grow(r) * RES; }

// Raw logit i of chunk row r, whatever the storage type.
fn load_x(r: u32, i: u32) -> f32 {
    let idx = ch.elem_off + r * ch.stride + i;
    if (ch.dtype == DTYPE_F32) {
        return bitcast<f32>(logits[idx]);
    }
    let w = logits[idx >> 1u];
    let h = (w >> ((idx & 1u) * 16u)) & 0xffffu;
    if (ch.dtype == DTYPE_F16) {
        return f16_bits_to_f32(h);
    }
    return bitcast<f32>(h << 16u);
}

// IEEE binary16 → f32 by bits (exact; no f16 shader capability needed).
fn f16_bits_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let mant = h & 0x3ffu;
    if (e == 0u) {
        let v = f32(mant) * 5.9604644775390625e-8;
        return select(v, -v, sign != 0u);
    }
    if (e == 31u) {
        return bitcast<f32>(sign | 0x7f800000u | (mant << 13u));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (mant << 13u));
}

fn is_bad(x: f32) -> bool {
    // NaN or +inf (only -inf is a legal masked logit).
    let b = bitcast<u32>(x);
    return (b & 0x7f800000u) == 0x7f800000u && b != 0xff800000u;
}

// ---- per-tile view of bias / mask / penalties -------------------------------

var<workgroup> sh_pbits: array<atomic<u32>, TILE / 32u>;
var<workgroup> sh_abits: array<atomic<u32>, TILE / 32u>;
// Patched ids in the words of sh_pbits before each word: an id's patch entry
// is its rank among the tile's patched ids (entries are sorted by id).
var<workgroup> sh_prank: array<u32, TILE / 32u>;

struct TileCtx {
    r: u32, t: u32, t0: u32, n: u32,
    allow: u32,      // 0 none, 1 list / bitmask (bits in sh_abits)
    p_lo: u32, p_hi: u32,  // patch entries of this tile
    a_lo: u32, a_hi: u32,  // allowed-list entries of this tile
}

fn patch_id(e: u32) -> u32 { return prm[ch.meta_patch + e * PATCH_W]; }

// First entry in [lo, hi) whose id is >= id.
fn lower_patch(lo0: u32, hi0: u32, id: u32) -> u32 {
    var lo = lo0;
    var hi = hi0;
    while (lo < hi) {
        let mid = (lo + hi) >> 1u;
        if (patch_id(mid) < id) { lo = mid + 1u; } else { hi = mid; }
    }
    return lo;
}

fn lower_allow(lo0: u32, hi0: u32, id: u32) -> u32 {
    var lo = lo0;
    var hi = hi0;
    while (lo < hi) {
        let mid = (lo + hi) >> 1u;
        if (prm[mid] < id) { lo = mid + 1u; } else { hi = mid; }
    }
    return lo;
}

// The start of every entry point: the constants, then the logical local id
// and workgroup (a permutation of the physical ones in race tests).
struct Entry { lid: u32, wid: vec3<u32> }
fn entry(lid3: vec3<u32>, wid0: vec3<u32>, nwg: vec3<u32>) -> Entry {
    init_consts();
    return Entry(lane(lid3.x), vec3<u32>(group(wid0.x, nwg.x), group(wid0.y, nwg.y), 0u));
}

// A one-tile-of-one-row workgroup (dispatch: tiles × rows): tile `wid.x` of
// chunk row `wid.y`.
fn tile_entry(e: Entry) -> TileCtx {
    return tile_setup(e.lid, e.wid.y, e.wid.x);
}

fn tile_base(r: u32, t: u32) -> TileCtx {
    var c: TileCtx;
    c.r = r;
    c.t = t;
    c.t0 = t * TILE;
    c.n = min(TILE, ch.vocab - c.t0);
    c.allow = select(0u, 1u, HAS_ALLOW && (mrec(r, M_FLAGS) & (F_ALLOW | F_BITMASK)) != 0u);
    return c;
}

// Tile t of chunk row r, its list ranges found by binary search. Must be
// called by the whole workgroup (it has barriers).
fn tile_setup(lid: u32, r: u32, t: u32) -> TileCtx {
    var c = tile_base(r, t);
    if (!HAS_PATCH && !HAS_ALLOW) { return c; }
    let pe = mrec(r, M_PATCH_E);
    let pn = mrec(r, M_PATCH_N);
    c.p_lo = lower_patch(pe, pe + pn, c.t0);
    c.p_hi = lower_patch(c.p_lo, pe + pn, c.t0 + c.n);
    let ao = mrec(r, M_ALLOW_OFF);
    let an = select(0u, mrec(r, M_ALLOW_N), (mrec(r, M_FLAGS) & F_ALLOW) != 0u);
    c.a_lo = lower_allow(ao, ao + an, c.t0);
    c.a_hi = lower_allow(c.a_lo, ao + an, c.t0 + c.n);
    tile_bits(lid, c);
    return c;
}

// The tile after `prev` in the same row, its list ranges continued from
// prev's (a walk over this tile's entries only, for a workgroup that reads
// its row tile after tile). Whole workgroup.
fn tile_next(lid: u32, prev: TileCtx) -> TileCtx {
    var c = tile_base(prev.r, prev.t + 1u);
    if (!HAS_PATCH && !HAS_ALLOW) { return c; }
    let pend = mrec(c.r, M_PATCH_E) + mrec(c.r, M_PATCH_N);
    c.p_lo = prev.p_hi;
    c.p_hi = c.p_lo;
    while (c.p_hi < pend && patch_id(c.p_hi) < c.t0 + c.n) { c.p_hi += 1u; }
    let aend = mrec(c.r, M_ALLOW_OFF) + select(0u, mrec(c.r, M_ALLOW_N), (mrec(c.r, M_FLAGS) & F_ALLOW) != 0u);
    c.a_lo = prev.a_hi;
    c.a_hi = c.a_lo;
    while (c.a_hi < aend && prm[c.a_hi] < c.t0 + c.n) { c.a_hi += 1u; }
    tile_bits(lid, c);
    return c;
}

// The tile's bitmaps of patched and allowed ids in workgroup memory.
fn tile_bits(lid: u32, c: TileCtx) {
    let flags = mrec(c.r, M_FLAGS);
    // Nobody may still be reading the previous tile's bits. (TILE / 32 ≤ WG:
    // one word per invocation, and no loop — see shaders.rs `unroll_trees`.)
    workgroupBarrier();
    if (lid < TILE / 32u) {
        atomicStore(&sh_pbits[lid], 0u);
        atomicStore(&sh_abits[lid], 0u);
    }
    workgroupBarrier();
    for (var e = c.p_lo + lid; e < c.p_hi; e += WG) {
        let li = patch_id(e) - c.t0;
        atomicOr(&sh_pbits[li >> 5u], 1u << (li & 31u));
    }
    for (var e = c.a_lo + lid; e < c.a_hi; e += WG) {
        let li = prm[e] - c.t0;
        atomicOr(&sh_abits[li >> 5u], 1u << (li & 31u));
    }
    if ((flags & F_BITMASK) != 0u) {
        // A packed mask and an id list together: a token needs both.
        workgroupBarrier();
        if (lid < TILE / 32u) {
            let gw = (c.t0 >> 5u) + lid;
            var a = 0u;
            if (gw < ch.bm_words) { a = bitmask[ch.bm_off + grow(c.r) * ch.bm_words + gw]; }
            if ((flags & F_ALLOW) != 0u) { a &= atomicLoad(&sh_abits[lid]); }
            atomicStore(&sh_abits[lid], a);
        }
    }
    if (HAS_PATCH && c.p_hi > c.p_lo) {
        workgroupBarrier();
        var v = 0u;
        if (lid < TILE / 32u) { v = countOneBits(atomicLoad(&sh_pbits[lid])); }
        let incl = wg_scan_u(lid, v);
        if (lid < TILE / 32u) { sh_prank[lid] = incl - v; }
    }
    workgroupBarrier();
}

// The processed logit y of tile-local id li, given its raw value x, as
// (hi, lo): ids with a bias or penalty carry the rounding of their f32 value
// in lo (patch.wgsl); every other id is exactly (x, 0).
fn y_of(c: TileCtx, li: u32, x: f32) -> vec2<f32> {
    let bit = 1u << (li & 31u);
    if (HAS_ALLOW && c.allow != 0u && (atomicLoad(&sh_abits[li >> 5u]) & bit) == 0u) {
        return vec2<f32>(NEG_INF, 0.0);
    }
    if (HAS_PATCH && c.p_hi > c.p_lo) {
        let word = atomicLoad(&sh_pbits[li >> 5u]);
        if ((word & bit) != 0u) {
            return patch_value(c.p_lo + sh_prank[li >> 5u] + countOneBits(word & (bit - 1u)));
        }
    }
    return vec2<f32>(x, 0.0);
}

// The processed logit of patch entry e (hi, lo).
fn patch_value(e: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(ws[ch.pv_base + 2u * e]), bitcast<f32>(ws[ch.pv_base + 2u * e + 1u]));
}

// ---- workgroup reductions and scans (two levels, fixed order) ------------
// Level 1: the first WG/SQ logical invocations each combine SQ consecutive
// slots in order; level 2: invocation 0 (reductions) or every invocation
// (scans: the blocks before its own) combines the block results in order.
// Three barriers per call whatever WG is, where a tree takes log2(WG) + 2
// and a Hillis–Steele scan 2·log2(WG) + 2: lavapipe switches every
// invocation's coroutine at each barrier and a GPU waits at each. The order
// depends on logical ids only, so every lane order gives the same bits. The
// serial steps are written out by shaders.rs `unroll_trees` (no loop
// iterations: lavapipe's per-invocation loop budget). `op` (the same in
// every invocation) picks the operation; scalars ride in lane x of the
// vector reductions.

const OP_SUM: u32 = 0u;
const OP_MIN: u32 = 1u;
const OP_MAX: u32 = 2u;

var<workgroup> red_f: array<f32, WG>;
var<workgroup> red_u: array<u32, WG>;
var<workgroup> red4: array<vec4<f32>, WG>;
var<workgroup> red4b: vec4<f32>;
var<workgroup> redu4: array<vec4<u32>, WG>;
var<workgroup> redu4b: vec4<u32>;

fn op4(a: vec4<f32>, b: vec4<f32>, op: u32) -> vec4<f32> {
    if (op == OP_MAX) { return max(a, b); }
    if (op == OP_MIN) { return min(a, b); }
    return a + b;
}

fn op4u(a: vec4<u32>, b: vec4<u32>, op: u32) -> vec4<u32> {
    if (op == OP_MAX) { return max(a, b); }
    if (op == OP_MIN) { return min(a, b); }
    return a + b;
}

fn wg_reduce4(lid: u32, v: vec4<f32>, op: u32) -> vec4<f32> {
    red4[lid] = v;
    workgroupBarrier();
    if (lid < WG / SQ) {
        var a = red4[lid * SQ];
        for (var q = 1u; q < SQ; q++) { a = op4(a, red4[lid * SQ + q], op); }
        red4[lid * SQ] = a;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var a = red4[0];
        for (var q = 1u; q < WG / SQ; q++) { a = op4(a, red4[q * SQ], op); }
        red4b = a;
    }
    return workgroupUniformLoad(&red4b);
}

fn wg_reduce4u(lid: u32, v: vec4<u32>, op: u32) -> vec4<u32> {
    redu4[lid] = v;
    workgroupBarrier();
    if (lid < WG / SQ) {
        var a = redu4[lid * SQ];
        for (var q = 1u; q < SQ; q++) { a = op4u(a, redu4[lid * SQ + q], op); }
        redu4[lid * SQ] = a;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var a = redu4[0];
        for (var q = 1u; q < WG / SQ; q++) { a = op4u(a, redu4[q * SQ], op); }
        redu4b = a;
    }
    return workgroupUniformLoad(&redu4b);
}

fn wg_sum4(lid: u32, v: vec4<f32>) -> vec4<f32> { return wg_reduce4(lid, v, OP_SUM); }
fn wg_max4(lid: u32, v: vec4<f32>) -> vec4<f32> { return wg_reduce4(lid, v, OP_MAX); }
fn wg_sum_u(lid: u32, v: u32) -> u32 { return wg_reduce4u(lid, vec4<u32>(v, 0u, 0u, 0u), OP_SUM).x; }
fn wg_min_u(lid: u32, v: u32) -> u32 { return wg_reduce4u(lid, vec4<u32>(v, 0u, 0u, 0u), OP_MIN).x; }
fn wg_max_u(lid: u32, v: u32) -> u32 { return wg_reduce4u(lid, vec4<u32>(v, 0u, 0u, 0u), OP_MAX).x; }

// Inclusive scan of one f32 per invocation: the blocks before this
// invocation's (in order), plus its block's prefix up to it.
fn wg_scan_f(lid: u32, v: f32) -> f32 {
    red_f[lid] = v;
    workgroupBarrier();
    if (lid < WG / SQ) {
        var a = red_f[lid * SQ];
        for (var q = 1u; q < SQ; q++) {
            a = a + red_f[lid * SQ + q];
            red_f[lid * SQ + q] = a;
        }
    }
    workgroupBarrier();
    let blk = lid / SQ;
    var off = 0.0;
    for (var q = 0u; q < WG / SQ; q++) {
        if (q < blk) { off = off + red_f[q * SQ + SQ - 1u]; }
    }
    let out = off + red_f[lid];
    workgroupBarrier();
    return out;
}

fn wg_scan_u(lid: u32, v: u32) -> u32 {
    red_u[lid] = v;
    workgroupBarrier();
    if (lid < WG / SQ) {
        var a = red_u[lid * SQ];
        for (var q = 1u; q < SQ; q++) {
            a = a + red_u[lid * SQ + q];
            red_u[lid * SQ + q] = a;
        }
    }
    workgroupBarrier();
    let blk = lid / SQ;
    var off = 0u;
    for (var q = 0u; q < WG / SQ; q++) {
        if (q < blk) { off = off + red_u[q * SQ + SQ - 1u]; }
    }
    let out = off + red_u[lid];
    workgroupBarrier();
    return out;
}

// Two vec4 sums and two u32 minima in one reduction (the statistics
// pass's and the solver's per-row tails), returned to every invocation. The
// second sum rides in redu4 as bits and the minima in red64.
struct Tail { a: vec4<f32>, b: vec4<f32>, m: vec2<u32> }

var<workgroup> sh_tail: Tail;

fn wg_tail(lid: u32, a: vec4<f32>, b: vec4<f32>, m: vec2<u32>) -> Tail {
    red4[lid] = a;
    redu4[lid] = bitcast<vec4<u32>>(b);
    red64[lid] = m;
    workgroupBarrier();
    if (lid < WG / SQ) {
        var t = Tail(red4[lid * SQ], bitcast<vec4<f32>>(redu4[lid * SQ]), red64[lid * SQ]);
        for (var q = 1u; q < SQ; q++) {
            t.a = t.a + red4[lid * SQ + q];
            t.b = t.b + bitcast<vec4<f32>>(redu4[lid * SQ + q]);
            t.m = min(t.m, red64[lid * SQ + q]);
        }
        red4[lid * SQ] = t.a;
        redu4[lid * SQ] = bitcast<vec4<u32>>(t.b);
        red64[lid * SQ] = t.m;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var t = Tail(red4[0], bitcast<vec4<f32>>(redu4[0]), red64[0]);
        for (var q = 1u; q < WG / SQ; q++) {
            t.a = t.a + red4[q * SQ];
            t.b = t.b + bitcast<vec4<f32>>(redu4[q * SQ]);
            t.m = min(t.m, red64[q * SQ]);
        }
        sh_tail = t;
    }
    return workgroupUniformLoad(&sh_tail);
}

// The order of top-n lists: (va, ia) comes before (vb, ib) when its value
// is larger, or equal with a lower id.
fn better(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
    return va > vb || (va == vb && ia < ib);
}

// The best (value, id) over the workgroup in that order: the same pair as a
// max of the values followed by a min of the ids at it. NONE ids lose to
// any other at an equal value. Returns (value bits, id).
fn best_of(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    return select(a, b, better(bitcast<f32>(b.x), b.y, bitcast<f32>(a.x), a.y));
}

fn wg_best(lid: u32, v: f32, i: u32) -> vec2<u32> {
    red64[lid] = vec2<u32>(bitcast<u32>(v), i);
    workgroupBarrier();
    if (lid < WG / SQ) {
        var a = red64[lid * SQ];
        for (var q = 1u; q < SQ; q++) { a = best_of(a, red64[lid * SQ + q]); }
        red64[lid * SQ] = a;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var a = red64[0];
        for (var q = 1u; q < WG / SQ; q++) { a = best_of(a, red64[q * SQ]); }
        red64b = a;
    }
    return workgroupUniformLoad(&red64b);
}

// ---- 64-bit fixed-point masses (top-p) --------------------------------------
// Top-p decides on Σ q with q = e^((y − m)/T) · 2^38 truncated to an integer,
// held as two u32 words (lo, hi). Integer sums are exact and independent of
// order, so the histogram rounds, the compaction's sums and the final
// bisection all see the same numbers: every window found contains the cut and
// no error margin is needed. Per id the truncation loses < 2^-38 of the row
// max's weight (< 1e-6 of the mass for 2^18 ids); sums stay below 2^64 for
// rows of fewer than 2^26 ids (the host refuses larger rows).

const MASS_SCALE: f32 = 274877906944.0;

// (y − m)/T for a two-float y and a two-float max m (exact for y near m, so
// the max's own weight is exactly 1 however small T is). Every shader
// computes a survivor's weight e^d through these expressions, so the scan and
// the solver agree on it bit for bit.
// Clamped at −1e15 (whose weight is 0 as −inf's is): a difference beyond
// f32's range (a spread over f32::MAX, docs/spec.md §2.1) would otherwise make
// every d·e, d²·e and merge term that multiplies it by a weight of 0 NaN.
fn scaled(y: vec2<f32>, m: vec2<f32>, inv_t: f32) -> f32 { return max(((y.x - m.x) + (y.y - m.y)) * inv_t, -1e15); }
fn weight(y: vec2<f32>, m: vec2<f32>, inv_t: f32) -> f32 { return exp(scaled(y, m, inv_t)); }

// A non-negative f32 below 2^64 as a 64-bit integer (fraction truncated).
fn to64(x: f32) -> vec2<u32> {
    let hi = u32(x * 2.3283064365386963e-10);
    return vec2<u32>(u32(x - f32(hi) * 4294967296.0), hi);
}
fn mass_of(w: f32) -> vec2<u32> { return to64(w * MASS_SCALE); }
fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}
fn ge64(a: vec2<u32>, b: vec2<u32>) -> bool { return a.y > b.y || (a.y == b.y && a.x >= b.x); }
fn f32_of64(a: vec2<u32>) -> f32 { return f32(a.y) * 4294967296.0 + f32(a.x); }

var<workgroup> red64: array<vec2<u32>, WG>;
var<workgroup> red64b: vec2<u32>;

fn wg_sum64(lid: u32, v: vec2<u32>) -> vec2<u32> {
    red64[lid] = v;
    workgroupBarrier();
    if (lid < WG / SQ) {
        var a = red64[lid * SQ];
        for (var q = 1u; q < SQ; q++) { a = add64(a, red64[lid * SQ + q]); }
        red64[lid * SQ] = a;
    }
    workgroupBarrier();
    if (lid == 0u) {
        var a = red64[0];
        for (var q = 1u; q < WG / SQ; q++) { a = add64(a, red64[q * SQ]); }
        red64b = a;
    }
    return workgroupUniformLoad(&red64b);
}
