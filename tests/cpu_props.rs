//! Property tests: on random small rows (ties, −inf, every order and
//! truncation stage), the cpu's π equals the reference's within 1e-5, its
//! kept count matches, and every draw lands in the kept set; rows with the
//! extended samplers (their own f64 path) match it to 1e-12, draw for draw.

use proptest::prelude::*;
use token_sampler::reference::{process_row, Overrides};
use token_sampler::{Batch, CpuSampler, Order, Sampler, SamplingParams, Stage};

fn row() -> impl Strategy<Value = Vec<f32>> {
    // Values on a 0.25 grid make exact ties common; −inf entries are masks.
    prop::collection::vec(
        prop_oneof![9 => (-24i32..24).prop_map(|v| v as f32 * 0.25), 1 => Just(f32::NEG_INFINITY)],
        1..80,
    )
    .prop_filter("at least one finite logit", |x| {
        x.iter().any(|v| v.is_finite())
    })
}

fn params() -> impl Strategy<Value = SamplingParams> {
    (
        prop_oneof![Just(0.0f32), 0.05f32..3.0],
        -1i32..12,
        prop_oneof![Just(1.0f32), 0.05f32..1.0],
        prop_oneof![Just(0.0f32), 0.0f32..0.6],
        1u32..6,
        prop_oneof![
            Just(Order::Standard),
            Just(Order::Vllm),
            Just(Order::LlamaCpp)
        ],
        any::<u64>(),
    )
        .prop_map(
            |(temperature, top_k, top_p, min_p, keep, order, seed)| SamplingParams {
                temperature,
                top_k,
                top_p,
                min_p,
                min_tokens_to_keep: keep,
                order,
                seed: Some(seed),
                ..Default::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn cpu_pi_matches_reference(x in row(), p in params()) {
        let pr = process_row(0, &x, &p, Overrides::default()).unwrap();
        // A top-p cut whose cumulative mass sits within 1e-5 of p, or a min-p
        // threshold within 1e-5 of a logit, is a boundary docs/spec.md §7 lets the
        // backends decide differently.
        let boundary = pr.trace.iter().any(|s| match (s.stage, s.top_p_cut) {
            (Stage::TopP, Some(c)) => (c.mass_above - c.p).abs() <= 1e-5 || (c.mass_at_or_above - c.p).abs() <= 1e-5,
            (Stage::MinP, _) => pr.logits.iter().any(|&y| (y - s.threshold).abs() <= 1e-5 * s.threshold.abs().max(1.0)),
            _ => false,
        });
        prop_assume!(!boundary);
        let batch = Batch::from_rows(std::slice::from_ref(&x)).unwrap();
        let mut cpu = CpuSampler::with_threads(1);
        let got = cpu.probs(batch.view(), std::slice::from_ref(&p)).unwrap().remove(0);
        prop_assert_eq!(got.kept as usize, pr.kept_count);
        for (i, (&a, &b)) in got.probs.iter().zip(&pr.pi).enumerate() {
            prop_assert!((a - b).abs() <= 1e-5, "π[{}] {} vs {}", i, a, b);
        }
        prop_assert!((got.entropy - pr.entropy).abs() <= 1e-4);
        let res = cpu.sample(batch.view(), &[p], 16).unwrap().remove(0);
        for &d in &res.draws {
            prop_assert!(pr.kept[d as usize], "draw {} outside the kept set", d);
        }
    }
}

/// The extended samplers (docs/spec.md §3.10–3.15) on top of the classic ones,
/// or mirostat alone; DRY over a history drawn from a few ids.
fn extended_params() -> impl Strategy<Value = SamplingParams> {
    (
        params(),
        prop_oneof![Just(1.0f32), 0.05f32..1.0],
        prop_oneof![Just(0.0f32), 0.1f32..3.0],
        prop_oneof![Just(0.0f32), 0.2f32..1.0],
        0.0f32..0.6,
        prop_oneof![Just(0.0f32), 0.0001f32..0.2],
        prop_oneof![Just(0.0f32), 0.0001f32..0.2],
        prop_oneof![Just(0.0f32), 0.1f32..2.0],
        prop::collection::vec(0u32..4, 0..24),
        prop_oneof![
            Just(None),
            (
                1u8..3,
                0.0f32..8.0,
                0.0f32..1.0,
                prop_oneof![Just(None), (0.0f32..12.0).prop_map(Some)]
            )
                .prop_map(Some)
        ],
    )
        .prop_map(
            |(base, typical, sigma, xtc_p, xtc_t, eps, eta, dry, history, miro)| {
                let mut p = SamplingParams {
                    typical_p: typical,
                    top_n_sigma: sigma,
                    xtc_probability: xtc_p,
                    xtc_threshold: xtc_t,
                    epsilon_cutoff: eps,
                    eta_cutoff: eta,
                    dry_multiplier: dry,
                    dry_allowed_length: 1,
                    history,
                    ..base
                };
                if let Some((version, tau, eta, mu)) = miro {
                    p = SamplingParams {
                        mirostat: Some(token_sampler::Mirostat {
                            version,
                            tau,
                            eta,
                            mu,
                        }),
                        temperature: p.temperature,
                        history: p.history,
                        dry_multiplier: p.dry_multiplier,
                        dry_allowed_length: 1,
                        order: p.order,
                        seed: p.seed,
                        ..Default::default()
                    };
                }
                p
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    /// The extended path computes as the reference does: π equal to 1e-12,
    /// the same kept count, the same draws and mirostat_mu.
    #[test]
    fn cpu_extended_matches_reference(x in row(), p in extended_params()) {
        let vocab = x.len();
        let mut p = p;
        p.history.retain(|&t| (t as usize) < vocab);
        prop_assume!(p.uses_extended_samplers() && p.validate(0, vocab).is_ok());
        let Ok(pr) = process_row(0, &x, &p, Overrides::default()) else {
            return Ok(());
        };
        let batch = Batch::from_rows(std::slice::from_ref(&x)).unwrap();
        let mut cpu = CpuSampler::with_threads(1);
        let got = cpu.probs(batch.view(), std::slice::from_ref(&p)).unwrap().remove(0);
        prop_assert_eq!(got.kept as usize, pr.kept_count);
        for (i, (&a, &b)) in got.probs.iter().zip(&pr.pi).enumerate() {
            prop_assert!((a - b).abs() <= 1e-12, "π[{}] {} vs {}", i, a, b);
        }
        prop_assert_eq!(got.mirostat_mu, pr.mirostat_mu);
        let seed = p.seed.unwrap();
        let res = cpu.sample(batch.view(), std::slice::from_ref(&p), 8).unwrap().remove(0);
        let want = token_sampler::reference::sample_row(0, &x, &p, seed, 8).unwrap();
        prop_assert_eq!(&res.draws, &want.draws);
        prop_assert_eq!(res.kept, want.kept);
        match (res.mirostat_mu, want.mirostat_mu) {
            (Some(a), Some(b)) => prop_assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0)),
            (a, b) => prop_assert_eq!(a, b),
        }
    }
}

/// Rows at f32's extremes (docs/spec.md §2.1): values next to ±f32::MAX,
/// subnormals, spreads beyond f32::MAX, ties and masks.
fn extreme_row() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(
        prop_oneof![
            4 => (-8i32..8).prop_map(|v| v as f32 * 0.5),
            1 => Just(f32::MAX),
            1 => Just(-f32::MAX),
            1 => Just(3.0e38f32),
            1 => Just(1.0e-40f32),
            1 => Just(-1.0e-45f32),
            1 => Just(f32::NEG_INFINITY)
        ],
        1..40,
    )
    .prop_filter("at least one finite logit", |x| {
        x.iter().any(|v| v.is_finite())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// At the extremes the extended path gives the reference's answer or the
    /// reference's error.
    #[test]
    fn cpu_extended_matches_reference_at_extremes(x in extreme_row(), p in extended_params()) {
        let vocab = x.len();
        let mut p = p;
        p.history.retain(|&t| (t as usize) < vocab);
        prop_assume!(p.uses_extended_samplers() && p.validate(0, vocab).is_ok());
        let batch = Batch::from_rows(std::slice::from_ref(&x)).unwrap();
        let mut cpu = CpuSampler::with_threads(1);
        let mut reference = token_sampler::ReferenceSampler::new();
        let params = std::slice::from_ref(&p);
        match (cpu.probs(batch.view(), params), reference.probs(batch.view(), params)) {
            (Ok(got), Ok(want)) => {
                let (got, want) = (&got[0], &want[0]);
                prop_assert_eq!(got.kept, want.kept);
                for (i, (&a, &b)) in got.probs.iter().zip(&want.probs).enumerate() {
                    prop_assert!((a - b).abs() <= 1e-12, "π[{}] {} vs {}", i, a, b);
                }
                prop_assert!((got.entropy - want.entropy).abs() <= 1e-4);
                let a = cpu.sample(batch.view(), params, 4).unwrap();
                let b = reference.sample(batch.view(), params, 4).unwrap();
                prop_assert_eq!(&a[0].draws, &b[0].draws);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (a, b) => prop_assert!(false, "cpu {:?} vs reference {:?}", a.map(|_| ()), b.map(|_| ())),
        }
    }
}
