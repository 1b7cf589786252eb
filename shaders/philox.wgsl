// Philox4x32-10 (Random123), bit-identical to src/rng.rs. WGSL has no u64, so
// the 32×32→64 multiply is done in 16-bit halves.

fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let al = a & 0xffffu;
    let ah = a >> 16u;
    let bl = b & 0xffffu;
    let bh = b >> 16u;
    let ll = al * bl;
    let lh = al * bh;
    let hl = ah * bl;
    let hh = ah * bh;
    let mid = (ll >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
    let lo = (ll & 0xffffu) | (mid << 16u);
    let hi = hh + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, lo);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        if (round > 0u) {
            k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
        }
        let p0 = mulhilo(0xD2511F53u, c.x);
        let p1 = mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

// U(seed, step, d) of docs/spec.md §5: key = seed halves, counter = (step halves, d, 0),
// the top 24 bits of word 0 as a uniform in [0, 1) (exact in f32).
fn uniform01(seed: vec2<u32>, step: vec2<u32>, d: u32) -> f32 {
    let w = philox4x32_10(vec4<u32>(step.x, step.y, d, 0u), seed).x;
    return f32(w >> 8u) * (1.0 / 16777216.0);
}
