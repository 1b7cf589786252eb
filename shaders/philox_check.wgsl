// Runs philox.wgsl on the device for the known-answer test: each invocation
// reads (counter, key) from `inp` (6 words) and writes the 4 output words and
// the uniform's bits (5 words) to `outp`.

@group(0) @binding(0) var<storage, read> inp: array<u32>;
@group(0) @binding(1) var<storage, read_write> outp: array<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i * 6u >= arrayLength(&inp)) { return; }
    let b = i * 6u;
    let c = vec4<u32>(inp[b], inp[b + 1u], inp[b + 2u], inp[b + 3u]);
    let k = vec2<u32>(inp[b + 4u], inp[b + 5u]);
    let o = philox4x32_10(c, k);
    outp[i * 5u] = o.x;
    outp[i * 5u + 1u] = o.y;
    outp[i * 5u + 2u] = o.z;
    outp[i * 5u + 3u] = o.w;
    // The same words read as (seed = key, step = counter.xy, d = counter.z).
    outp[i * 5u + 4u] = bitcast<u32>(uniform01(k, c.xy, c.z));
}
