// Two-float arithmetic: a value is hi + lo (two f32s, |lo| ≤ ulp(hi)/2),
// about 44 bits. Used where f32 is not enough but the work is per row or per
// patched id, not per token: the dynamic temperature (mapping.wgsl) and the
// processed logits of ids with a bias or penalty (patch.wgsl), whose f32
// rounding a small T would otherwise magnify.
//
// The error-free transformations are written so that no compiler rewrite can
// undo them: products of 12-bit halves (split by masking bits) are exact, so
// fusing a multiply into an add changes nothing, and every sum whose rounding
// error is recovered passes through `opq`, an identity (xor with a zero only
// the uniform knows) that keeps algebraic simplification from cancelling it.

fn opq(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) ^ OPQ_ZERO); }

// ---- two-float arithmetic: vec2(hi, lo) -------------------------------------

fn two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = opq(a + b);
    let bb = opq(s - a);
    return vec2<f32>(s, (a - (s - bb)) + (b - bb));
}

fn split12(a: f32) -> vec2<f32> {
    let hi = bitcast<f32>(bitcast<u32>(a) & 0xfffff000u);
    return vec2<f32>(hi, a - hi);
}

fn two_prod(a: f32, b: f32) -> vec2<f32> {
    let p = opq(a * b);
    let x = split12(a);
    let y = split12(b);
    return vec2<f32>(p, ((x.x * y.x - p) + x.x * y.y + x.y * y.x) + x.y * y.y);
}

fn dd(x: f32) -> vec2<f32> { return vec2<f32>(x, 0.0); }

fn dd_norm(hi: f32, lo: f32) -> vec2<f32> { return two_sum(hi, lo); }

fn dd_add(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let s = two_sum(a.x, b.x);
    let t = two_sum(a.y, b.y);
    let u = dd_norm(s.x, s.y + t.x);
    return dd_norm(u.x, u.y + t.y);
}

fn dd_sub(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> { return dd_add(a, -b); }

fn dd_mul(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let p = two_prod(a.x, b.x);
    return dd_norm(p.x, p.y + (a.x * b.y + a.y * b.x));
}

// Division: WGSL's f32 `/` may be off by a few ulp, so each quotient digit
// is corrected from the exact remainder.
fn dd_div(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
    let q1 = a.x / b.x;
    let r1 = dd_sub(a, dd_mul(b, dd(q1)));
    let q2 = r1.x / b.x;
    let r2 = dd_sub(r1, dd_mul(b, dd(q2)));
    let q3 = r2.x / b.x;
    return dd_add(two_sum(q1, q2), dd(q3));
}

fn dd_f(a: vec2<f32>) -> f32 { return a.x + a.y; }

// a ≤ b, exactly.
fn dd_le(a: vec2<f32>, b: vec2<f32>) -> bool { return dd_sub(b, a).x >= 0.0; }

const LN2_DD: vec2<f32> = vec2<f32>(0.693147182464599609375, -1.904654323148236e-09);

// e^x for a two-float x: x = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by its Taylor
// series to r^14 (truncation < 1e-17), then scaled by 2^n.
fn dd_exp(x: vec2<f32>) -> vec2<f32> {
    if (x.x < -120.0) { return vec2<f32>(0.0); }
    // Past f32's range (and ldexp's: WGSL leaves it undefined beyond 2^128).
    if (x.x > 88.8) { return vec2<f32>(POS_INF, 0.0); }
    let n = round(x.x / LN2_DD.x);
    let r = dd_sub(x, dd_mul(LN2_DD, dd(n)));
    var p = dd(1.0);
    for (var k = 14; k >= 1; k--) {
        p = dd_add(dd(1.0), dd_div(dd_mul(p, r), dd(f32(k))));
    }
    let e = i32(n);
    return vec2<f32>(ldexp(p.x, e), ldexp(p.y, e));
}

// ln y for y > 0: y = 2^e·f with f in [0.5, 1), f32 log of f, two Newton
// steps on e^l = f (each squares the relative error), plus e·ln 2.
fn dd_log(y: vec2<f32>) -> vec2<f32> {
    let fr = frexp(y.x);
    let f = vec2<f32>(fr.fract, ldexp(y.y, -fr.exp));
    var l = dd(log(f.x));
    for (var i = 0u; i < 2u; i++) {
        l = dd_add(l, dd_sub(dd_mul(f, dd_exp(-l)), dd(1.0)));
    }
    return dd_add(l, dd_mul(LN2_DD, dd(f32(fr.exp))));
}

// An integer count as a two-float.
fn dd_count(n: u32) -> vec2<f32> { return two_sum(f32(n & 0xffff0000u), f32(n & 0xffffu)); }


// ---- f64 rounding and f32's range (docs/spec.md §2.1) ----------------------
// WGSL lets a compiler assume no value is NaN, so these test bits, not
// comparisons, for what an overflow inside two-float arithmetic leaves.

fn finite_f(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }
fn is_nan_f(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn finite_dd(v: vec2<f32>) -> bool { return finite_f(v.x) && finite_f(v.y); }
fn nonzero_dd(v: vec2<f32>) -> bool { return ((bitcast<u32>(v.x) | bitcast<u32>(v.y)) & 0x7fffffffu) != 0u; }

// A two-float holding an exact value (two_sum's, say) rounded to f64's 53
// significant bits, ties to even, as the reference's f64 arithmetic rounds
// the same value: hi holds 24 of them, so lo is rounded to a multiple of
// 2^(e − 52), e the exponent of hi + lo. Lo's bits start at 2^-149, so below
// e = −97 nothing is rounded. ldexp's exponents are split in halves (WGSL
// leaves ldexp undefined past 2^128).
fn round_f64(v: vec2<f32>) -> vec2<f32> {
    if (!finite_dd(v) || v.y == 0.0) { return v; }
    let fr = frexp(v.x);
    var e = fr.exp - 1;
    // hi a power of two and lo of the other sign: hi + lo lies below 2^e.
    if (abs(fr.fract) == 0.5 && (v.y < 0.0) != (v.x < 0.0)) { e -= 1; }
    if (e <= -97) { return v; }
    let up = 52 - e;
    let q = round(ldexp(ldexp(v.y, up / 2), up - up / 2));
    return vec2<f32>(v.x, ldexp(ldexp(q, -(up / 2)), -(up - up / 2)));
}

// Whether |hi + lo| ≥ lim (lim > 0), or the value is not finite.
fn at_least(v: vec2<f32>, lim: f32) -> bool {
    if (!finite_dd(v)) { return true; }
    let a = abs(v.x);
    return a > lim || (a == lim && !(v.y != 0.0 && (v.y < 0.0) != (v.x < 0.0)));
}

// Whether hi + lo lies beyond f32's finite range.
fn outside_f32(v: vec2<f32>) -> bool {
    if (!finite_dd(v)) { return true; }
    let a = abs(v.x);
    return a > 3.40282347e38 || (a == 3.40282347e38 && v.y != 0.0 && (v.y < 0.0) == (v.x < 0.0));
}
