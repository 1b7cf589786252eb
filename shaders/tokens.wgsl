// Copies each row's sampled token (u32) into the caller's buffer, for the
// next forward pass to read without a trip through the host.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    init_consts();
    let r = gid.x;
    if (r >= ch.rows) { return; }
    aux[ch.aux_off + grow(r)] = outb[res_at(r) + R_TOKEN];
}
