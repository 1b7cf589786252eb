//! Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
//! SC'11; the Random123 library) and the uniform draw of docs/spec.md §5.
//!
//! `shaders/philox.wgsl` mirrors this file bit for bit; both are tested against
//! the Random123 known-answer vectors. A row's draw depends only on
//! (seed, step, draw index), so it is the same whatever the batch, the row's
//! position in it, or the backend.

/// The scheme's name as JSON output reports it.
pub const RNG_SCHEME: &str = "philox4x32-10/v1";

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

#[inline]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = a as u64 * b as u64;
    ((p >> 32) as u32, p as u32)
}

/// Philox4x32 with 10 rounds: `counter` and `key` in, four 32-bit words out.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let (hi0, lo0) = mulhilo(M0, c[0]);
        let (hi1, lo1) = mulhilo(M1, c[2]);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// The Philox key and counter for (seed, step, draw): key = (seed low, seed high),
/// counter = (step low, step high, draw, 0).
#[inline]
pub fn key_counter(seed: u64, step: u64, draw: u32) -> ([u32; 4], [u32; 2]) {
    (
        [step as u32, (step >> 32) as u32, draw, 0],
        [seed as u32, (seed >> 32) as u32],
    )
}

/// `U(seed, step, d)`: the top 24 bits of word 0 as a uniform in [0, 1),
/// exactly representable in f32 (and so identical in WGSL).
pub fn uniform(seed: u64, step: u64, draw: u32) -> f64 {
    let (counter, key) = key_counter(seed, step, draw);
    let w = philox4x32_10(counter, key)[0];
    (w >> 8) as f64 * (1.0 / 16_777_216.0)
}

/// XTC's coin for (seed, step) (docs/spec.md §3.13): the uniform of the
/// counter (step low, step high, 0, 1). Every token draw has counter word 3
/// equal to 0, so the coin is never one of them; it depends on the row's
/// seed and step only, as a token draw does, so it is the same whatever the
/// batch or the backend.
pub fn xtc_uniform(seed: u64, step: u64) -> f64 {
    let counter = [step as u32, (step >> 32) as u32, 0, 1];
    let key = [seed as u32, (seed >> 32) as u32];
    let w = philox4x32_10(counter, key)[0];
    (w >> 8) as f64 * (1.0 / 16_777_216.0)
}

/// Random123 `kat_vectors` for philox4x32 with 10 rounds: (counter, key, output).
/// The GPU test checks `shaders/philox.wgsl` against the same vectors.
pub const PHILOX_KNOWN_ANSWERS: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
    (
        [0, 0, 0, 0],
        [0, 0],
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
    ),
    (
        [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
        [0xffffffff, 0xffffffff],
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
    ),
    (
        [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
        [0xa4093822, 0x299f31d0],
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random123_known_answers() {
        for (counter, key, expected) in PHILOX_KNOWN_ANSWERS {
            assert_eq!(philox4x32_10(counter, key), expected, "ctr {counter:08x?}");
        }
    }

    #[test]
    fn uniform_layout_matches_the_scheme() {
        // seed 0, step 0, draw 0 is the first known answer: word0 = 0x6627e8d5.
        assert_eq!(uniform(0, 0, 0), (0x6627e8d5u32 >> 8) as f64 / 16_777_216.0);
        // The key carries the seed's halves, the counter the step's halves and d.
        let (c, k) = key_counter(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210, 7);
        assert_eq!(k, [0x89ab_cdef, 0x0123_4567]);
        assert_eq!(c, [0x7654_3210, 0xfedc_ba98, 7, 0]);
    }

    #[test]
    fn uniform_is_in_unit_interval_and_varies() {
        let us: Vec<f64> = (0..1000).map(|d| uniform(42, 3, d)).collect();
        assert!(us.iter().all(|&u| (0.0..1.0).contains(&u)));
        let mean = us.iter().sum::<f64>() / us.len() as f64;
        // 1000 uniforms: the mean's standard deviation is 0.0091; allow 4σ.
        assert!((mean - 0.5).abs() < 0.037, "mean {mean}");
        assert_ne!(uniform(42, 3, 0), uniform(42, 4, 0));
        assert_ne!(uniform(42, 3, 0), uniform(43, 3, 0));
    }

    #[test]
    fn xtc_coin_is_its_own_counter() {
        // Counter word 3 = 1: not draw 0 (word 3 = 0) of the same seed and step.
        let w = philox4x32_10([3, 0, 0, 1], [42, 0])[0];
        assert_eq!(xtc_uniform(42, 3), (w >> 8) as f64 / 16_777_216.0);
        assert_ne!(xtc_uniform(42, 3), uniform(42, 3, 0));
        assert_ne!(xtc_uniform(42, 3), xtc_uniform(42, 4));
    }
}
