// The streaming-read probe: reads every word of the logits once (vec4 loads,
// the same bytes the sampler reads) and writes one word per workgroup so the
// reads cannot be optimised away. Benchmarks compare kernel time with it.

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;

var<workgroup> acc: array<u32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let lid = lane(lid3.x);
    let n = arrayLength(&src);
    var x = 0u;
    let start = (wid.x + wid.y * nwg.x) * WG + lid;
    let stride = nwg.x * nwg.y * WG;
    for (var i = start; i < n; i += stride) {
        let v = src[i];
        x ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    acc[lid] = x;
    workgroupBarrier();
    if (lid == 0u) {
        var t = 0u;
        for (var i = 0u; i < WG; i++) { t ^= acc[i]; }
        dst[wid.x + wid.y * nwg.x] = t;
    }
}
