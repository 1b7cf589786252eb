// The streaming-read probe: reads every word of the logits once (vec4 loads,
// the same bytes the sampler reads). The host sizes the grid to the data
// (a few vec4s per invocation, grid-stride), so the time is the read and not
// the launch of idle workgroups; nothing is reduced across invocations. The
// store behind an (almost) never-true test keeps the loads alive.

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = arrayLength(&src);
    var x = 0u;
    for (var i = gid.x; i < n; i += nwg.x * WG) {
        let v = src[i];
        x ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (x == 0x9e3779b9u) {
        dst[gid.x & 65535u] = x;
    }
}
