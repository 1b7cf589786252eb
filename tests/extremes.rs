//! The extremes of f32 and of the parameters (docs/spec.md §2.1) on every
//! backend: property tests whose logits span the whole f32 range (subnormals,
//! values next to f32::MAX, spreads beyond it, ties, one finite token) and
//! whose parameters span their valid ranges (the temperature bounds 1e-30 and
//! 1e30, penalties and biases at f32::MAX) and their invalid ones. Every
//! backend either agrees with the reference as docs/spec.md §7 says (judged by
//! the differential suite's own row check) or fails with the reference's
//! error. Each item found by probing the binary also has a regression test
//! below, run on all three backends.
//!
//! Case counts are modest (the GPU runs on lavapipe in CI); raise them with
//! `PROPTEST_CASES=…`. The cases are the same on every run; set
//! `PROPTEST_RNG_SEED=…` to draw others.

#![allow(clippy::field_reassign_with_default)]

#[cfg(feature = "gpu")]
mod gpu_support;

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use token_sampler::validate::{check_case, Case, Report, RowKind, Stats};
use token_sampler::{
    Batch, CpuSampler, DynamicTemperature, Mapping, Order, ReferenceSampler, Sampler, SamplerError,
    SamplingParams,
};

const MAX: f32 = f32::MAX;
const TINY: f32 = f32::MIN_POSITIVE;

// ---- strategies --------------------------------------------------------------

/// Any finite f32 by its bits: every exponent, subnormals included.
fn any_finite() -> impl Strategy<Value = f32> {
    (any::<bool>(), 0u32..255, 0u32..(1 << 23))
        .prop_map(|(neg, e, m)| f32::from_bits((neg as u32) << 31 | e << 23 | m))
}

fn subnormal() -> impl Strategy<Value = f32> {
    (any::<bool>(), 0u32..(1 << 23)).prop_map(|(neg, m)| f32::from_bits((neg as u32) << 31 | m))
}

/// Within 1000 ulps of ±f32::MAX.
fn near_max() -> impl Strategy<Value = f32> {
    (any::<bool>(), 0u32..1000)
        .prop_map(|(neg, k)| f32::from_bits((neg as u32) << 31 | (MAX.to_bits() - k)))
}

fn logit() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -20.0f32..20.0,
        3 => any_finite(),
        1 => subnormal(),
        1 => near_max(),
        1 => Just(f32::NEG_INFINITY),
    ]
}

/// One row of logits from one family.
fn row(vocab: impl Into<prop::collection::SizeRange>) -> impl Strategy<Value = Vec<f32>> {
    let size: prop::collection::SizeRange = vocab.into();
    prop_oneof![
        // Everything mixed: spreads far beyond f32::MAX.
        3 => prop::collection::vec(logit(), size.clone()),
        // Subnormals and zeros only.
        1 => prop::collection::vec(prop_oneof![subnormal(), Just(0.0f32), Just(-0.0f32)], size.clone()),
        // Next to ±f32::MAX.
        1 => prop::collection::vec(near_max(), size.clone()),
        // Ties: a few distinct values of any magnitude.
        2 => (prop::collection::vec(logit(), 1..4), prop::collection::vec(any::<prop::sample::Index>(), size.clone()))
            .prop_map(|(vals, picks)| picks.iter().map(|i| vals[i.index(vals.len())]).collect()),
        // A single finite token.
        1 => (any_finite(), prop::collection::vec(Just(f32::NEG_INFINITY), size.clone()), any::<prop::sample::Index>())
            .prop_map(|(v, mut x, at)| { let i = at.index(x.len()); x[i] = v; x }),
    ]
    .prop_filter("a finite logit", |x| x.iter().any(|v| v.is_finite()))
}

/// A temperature anywhere in docs/spec.md §2.1's range, bounds included.
fn temperature() -> impl Strategy<Value = f32> {
    prop_oneof![
        1 => Just(0.0f32),
        1 => Just(1e-30f32),
        1 => Just(1e30f32),
        3 => (-30.0f64..30.0).prop_map(|e| 10f64.powf(e) as f32),
        3 => 0.05f32..3.0,
    ]
    .prop_map(|t| t.clamp(0.0, 1e30))
    .prop_filter("in range", |&t| t == 0.0 || t >= 1e-30)
}

/// A real parameter value near a limit of f32, or an ordinary one.
fn extreme_amount() -> impl Strategy<Value = f32> {
    let v = prop_oneof![
        Just(0.0f32),
        Just(1.0f32),
        Just(0.5f32),
        Just(TINY),
        Just(1e-30f32),
        Just(1e17f32),
        Just(1e38f32),
        Just(MAX),
        Just(3e22f32),
        Just(1e20f32),
    ];
    (v, any::<bool>()).prop_map(|(v, neg)| if neg { -v } else { v })
}

fn mapping() -> impl Strategy<Value = DynamicTemperature> {
    let t = prop_oneof![
        Just(0.0f32),
        Just(1e-30f32),
        Just(0.5f32),
        Just(1.0),
        Just(1e30f32)
    ];
    let pos = prop_oneof![
        Just(TINY),
        Just(1e-30f32),
        Just(1.0f32),
        Just(1e30f32),
        Just(MAX)
    ];
    prop_oneof![
        (t.clone(), t.clone(), pos.clone()).prop_map(|(a, b, h)| Mapping::Linear {
            h_low: 0.0,
            h_high: h,
            t_min: a.min(b),
            t_max: a.max(b),
        }),
        (t.clone(), t.clone(), pos.clone()).prop_map(|(a, b, s)| Mapping::Sigmoid {
            h_mid: 1.0,
            steepness: s,
            t_min: a.min(b),
            t_max: a.max(b),
        }),
        (t.clone(), t.clone()).prop_map(|(a, b)| Mapping::Lut {
            entropies: vec![0.0, 1.0, 3.0],
            temperatures: vec![a, 1.0, b],
        }),
        (
            t,
            prop_oneof![Just(TINY), Just(0.5f32), Just(0.99999994f32)],
            pos.clone()
        )
            .prop_map(|(t0, base, theta)| Mapping::Edt { t0, base, theta }),
        (prop_oneof![Just(0.0f32), Just(0.5f32), Just(1e29f32)], pos)
            .prop_map(|(range, exponent)| Mapping::LlamaCpp { range, exponent }),
    ]
    .prop_map(DynamicTemperature::new)
}

/// Parameters for a row of `vocab` tokens, every field across its valid range.
fn params(vocab: usize) -> impl Strategy<Value = SamplingParams> {
    let id = 0..vocab as u32;
    let base = (
        temperature(),
        -1i32..4,
        prop_oneof![Just(1.0f32), Just(TINY), Just(1e-7f32), 0.01f32..1.0],
        prop_oneof![Just(0.0f32), Just(TINY), Just(1.0f32), 0.0f32..1.0],
        1u32..4,
        prop_oneof![
            Just(Order::Standard),
            Just(Order::Vllm),
            Just(Order::LlamaCpp)
        ],
        any::<u64>(),
    );
    let penalties = prop::option::weighted(
        0.4,
        (
            prop_oneof![
                Just(1.0f32),
                Just(TINY),
                Just(1e-30f32),
                Just(0.5f32),
                Just(2.0f32),
                Just(1e30f32),
                Just(MAX)
            ],
            extreme_amount(),
            extreme_amount(),
            prop::collection::vec(id.clone(), 0..6),
            prop::collection::vec(id.clone(), 0..4),
        ),
    );
    let bias = prop::collection::btree_map(id.clone(), extreme_amount(), 0..3);
    let allowed = prop::option::weighted(0.15, prop::collection::vec(id, 1..4));
    let dynamic = prop::option::weighted(0.25, mapping());
    (base, penalties, bias, allowed, dynamic).prop_map(
        |((temperature, top_k, top_p, min_p, keep, order, seed), pen, bias, allowed, dynamic)| {
            let mut p = SamplingParams {
                temperature,
                top_k,
                top_p,
                min_p,
                min_tokens_to_keep: keep,
                order,
                seed: Some(seed),
                logit_bias: bias,
                allowed_token_ids: allowed,
                dynamic_temperature: dynamic,
                ..Default::default()
            };
            if let Some((r, pres, freq, history, prompt)) = pen {
                p.repetition_penalty = r;
                p.presence_penalty = pres;
                p.frequency_penalty = freq;
                p.history = history;
                p.prompt_token_ids = prompt;
            }
            p
        },
    )
}

/// A batch of 1–3 rows of one vocabulary, each with its parameters.
fn case(vocab: std::ops::Range<usize>) -> impl Strategy<Value = Case> {
    (vocab, 1usize..4, 1u32..3)
        .prop_flat_map(|(v, rows, samples)| {
            (
                prop::collection::vec((row(v), params(v)), rows),
                Just(samples),
            )
        })
        .prop_map(|(rows, samples)| {
            let (x, params): (Vec<Vec<f32>>, Vec<SamplingParams>) = rows.into_iter().unzip();
            let kinds = vec![RowKind::Normal; x.len()];
            Case {
                index: 0,
                batch: Batch::from_rows(&x).unwrap(),
                params,
                kinds,
                samples,
            }
        })
}

// ---- the comparison ------------------------------------------------------------

/// What must be equal between two backends' errors: the variant and what it
/// names (an f32 backend reports the value it computed in f32).
fn error_key(e: &SamplerError) -> String {
    match e {
        SamplerError::NonFiniteLogit {
            row, index, field, ..
        } => format!("NonFiniteLogit row {row} index {index} {field}"),
        other => other.to_string(),
    }
}

/// docs/spec.md §7 agreement with the reference, or the reference's error.
fn agree(backend: &mut dyn Sampler, case: &Case) -> Result<(), TestCaseError> {
    let view = case.batch.view();
    match ReferenceSampler::new().probs(view, &case.params) {
        Err(want) => {
            let want = Some(error_key(&want));
            let got = backend.probs(view, &case.params);
            prop_assert_eq!(got.err().map(|e| error_key(&e)), want.clone(), "probs");
            let got = backend.sample(view, &case.params, case.samples);
            prop_assert_eq!(got.err().map(|e| error_key(&e)), want, "sample");
        }
        Ok(_) => {
            let (mut stats, mut report) = (Stats::default(), Report::default());
            if let Err(e) = check_case(backend, case, &mut stats, &mut report) {
                return Err(TestCaseError::fail(format!(
                    "{} failed where the reference succeeded: {e}",
                    backend.kind()
                )));
            }
            prop_assert!(stats.ok(), "{}", report);
        }
    }
    Ok(())
}

fn cases(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    // Reproducible in CI; PROPTEST_RNG_SEED=n explores other cases.
    let rng_seed = match std::env::var("PROPTEST_RNG_SEED") {
        Ok(_) => ProptestConfig::default().rng_seed,
        Err(_) => proptest::test_runner::RngSeed::Fixed(20_261_125),
    };
    ProptestConfig {
        cases,
        rng_seed,
        max_shrink_iters: 400,
        // A failure is kept as a named regression test below, not a file.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- property tests ---------------------------------------------------------------

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn cpu_matches_the_reference_across_f32(case in case(1..40)) {
        agree(&mut CpuSampler::with_threads(2), &case)?;
    }
}

proptest! {
    #![proptest_config(cases(100))]

    /// Rows of several blocks (cpu) and tiles (gpu).
    #[test]
    fn cpu_matches_the_reference_on_long_rows(case in case(1000..3000)) {
        agree(&mut CpuSampler::with_threads(2), &case)?;
    }
}

#[cfg(feature = "gpu")]
proptest! {
    #![proptest_config(cases(60))]

    #[test]
    fn gpu_matches_the_reference_across_f32(case in case(1..40)) {
        let Some(mut g) = gpu_support::open_gpu() else { return Ok(()) };
        agree(&mut *g, &case)?;
    }

    #[test]
    fn gpu_matches_the_reference_on_long_rows(case in case(1000..3000)) {
        let Some(mut g) = gpu_support::open_gpu() else { return Ok(()) };
        agree(&mut *g, &case)?;
    }
}

/// One invalid extreme in an otherwise valid row.
fn invalid_params() -> impl Strategy<Value = (SamplingParams, &'static str)> {
    let sub = (any::<bool>(), 1u32..(1 << 23))
        .prop_map(|(neg, m)| f32::from_bits((neg as u32) << 31 | m));
    let big_t = prop_oneof![
        Just(1.0000001e30f32),
        Just(3e30f32),
        Just(MAX),
        Just(f32::INFINITY),
        Just(f32::NAN)
    ];
    let small_t = prop_oneof![
        sub.clone().prop_map(f32::abs),
        Just(9.9e-31f32),
        Just(1e-35f32)
    ];
    let p = SamplingParams::default;
    prop_oneof![
        big_t.clone().prop_map(move |t| (
            SamplingParams {
                temperature: t,
                ..p()
            },
            "temperature"
        )),
        small_t.clone().prop_map(move |t| (
            SamplingParams {
                temperature: t,
                ..p()
            },
            "temperature"
        )),
        sub.clone().prop_map(move |v| (
            SamplingParams {
                min_p: v.abs(),
                ..p()
            },
            "min_p"
        )),
        sub.clone().prop_map(move |v| (
            SamplingParams {
                top_p: v.abs(),
                ..p()
            },
            "top_p"
        )),
        sub.clone().prop_map(move |v| (
            SamplingParams {
                repetition_penalty: v.abs(),
                ..p()
            },
            "repetition_penalty"
        )),
        sub.clone().prop_map(move |v| (
            SamplingParams {
                presence_penalty: v,
                ..p()
            },
            "presence_penalty"
        )),
        sub.clone().prop_map(move |v| (
            SamplingParams {
                frequency_penalty: v,
                ..p()
            },
            "frequency_penalty"
        )),
        sub.clone().prop_map(move |v| (
            SamplingParams {
                logit_bias: BTreeMap::from([(1, v)]),
                ..p()
            },
            "logit_bias[\"1\"]"
        )),
        small_t.prop_map(move |t| (
            SamplingParams {
                dynamic_temperature: Some(DynamicTemperature::new(Mapping::Edt {
                    t0: t,
                    base: 0.8,
                    theta: 1.0
                })),
                ..p()
            },
            "dynamic_temperature.mapping.t0"
        )),
        big_t
            .prop_filter("finite", |t| t.is_finite())
            .prop_map(move |t| (
                SamplingParams {
                    dynamic_temperature: Some(DynamicTemperature::new(Mapping::Linear {
                        h_low: 0.0,
                        h_high: 1.0,
                        t_min: 0.0,
                        t_max: t
                    })),
                    ..p()
                },
                "dynamic_temperature.mapping.t_max"
            )),
        sub.prop_map(move |v| (
            SamplingParams {
                dynamic_temperature: Some(DynamicTemperature::new(Mapping::Sigmoid {
                    h_mid: v,
                    steepness: 1.0,
                    t_min: 0.0,
                    t_max: 1.0
                })),
                ..p()
            },
            "dynamic_temperature.mapping.h_mid"
        )),
        Just((
            SamplingParams {
                temperature: 1e29,
                dynamic_temperature: Some(DynamicTemperature::new(Mapping::LlamaCpp {
                    range: 1e30,
                    exponent: 1.0
                })),
                ..p()
            },
            "dynamic_temperature.mapping.range"
        )),
    ]
}

#[cfg(feature = "gpu")]
fn gpu_or_none() -> Option<gpu_support::Gpu> {
    gpu_support::open_gpu()
}

proptest! {
    #![proptest_config(cases(100))]

    /// Every backend refuses an invalid extreme with the same error, naming
    /// the row and the field, before any work.
    #[test]
    fn invalid_extremes_are_the_same_error_everywhere((bad, field) in invalid_params(), at in 0usize..3) {
        let batch = Batch::from_rows(&vec![vec![1.0f32, 0.5, -2.0, 3.0]; 3]).unwrap();
        let mut params = vec![SamplingParams::default(); 3];
        params[at] = bad;
        let want = ReferenceSampler::new().probs(batch.view(), &params).unwrap_err();
        match &want {
            SamplerError::InvalidParam { row, field: f, .. } => {
                prop_assert_eq!(*row, at);
                prop_assert_eq!(f.as_str(), field);
            }
            other => prop_assert!(false, "not an InvalidParam: {other}"),
        }
        let mut cpu = CpuSampler::with_threads(2);
        prop_assert_eq!(cpu.sample(batch.view(), &params, 1).unwrap_err().to_string(), want.to_string());
        #[cfg(feature = "gpu")]
        if let Some(mut g) = gpu_or_none() {
            prop_assert_eq!(g.sample(batch.view(), &params, 1).unwrap_err().to_string(), want.to_string());
        }
    }
}

// ---- regressions, one per item found by probing the binary -----------------------

/// Runs a check on one backend.
type OnBackend = Box<dyn FnMut(&dyn Fn(&mut dyn Sampler))>;

/// Every backend this build has: reference, cpu, and gpu where an adapter is.
fn backends() -> Vec<(&'static str, OnBackend)> {
    let mut v: Vec<(&'static str, OnBackend)> = vec![
        ("reference", Box::new(|f| f(&mut ReferenceSampler::new()))),
        ("cpu", Box::new(|f| f(&mut CpuSampler::with_threads(2)))),
    ];
    #[cfg(feature = "gpu")]
    v.push((
        "gpu",
        Box::new(|f| {
            if let Some(mut g) = gpu_support::open_gpu() {
                f(&mut *g)
            }
        }),
    ));
    v
}

/// Runs `case` on every backend and asserts docs/spec.md §7 agreement with
/// the reference (or its error).
fn on_every_backend(x: &[Vec<f32>], params: Vec<SamplingParams>) {
    let case = Case {
        index: 0,
        batch: Batch::from_rows(x).unwrap(),
        kinds: vec![RowKind::Normal; x.len()],
        params,
        samples: 2,
    };
    for (name, mut run) in backends() {
        run(&|s| {
            if let Err(e) = agree(s, &case) {
                panic!("{name}: {e}");
            }
        });
    }
}

fn t(temperature: f32) -> SamplingParams {
    SamplingParams {
        temperature,
        seed: Some(7),
        ..Default::default()
    }
}

fn probs_of(s: &mut dyn Sampler, x: &[f32], p: SamplingParams) -> token_sampler::RowProbs {
    let b = Batch::from_rows(&[x.to_vec()]).unwrap();
    s.probs(b.view(), &[p]).unwrap().remove(0)
}

#[test]
fn subnormal_temperature_is_an_error_naming_the_field() {
    // Was: NaN probabilities and an out-of-range token on gpu.
    for (name, mut run) in backends() {
        run(&|s| {
            for bad in [1e-40f32, 1e-44, 9e-31] {
                let b = Batch::from_rows(&[vec![1.0f32, 0.5, 0.2, 1.0, -3.0]]).unwrap();
                let e = s.sample(b.view(), &[t(bad)], 1).unwrap_err();
                assert!(
                    matches!(&e, SamplerError::InvalidParam { row: 0, field, .. } if field == "temperature"),
                    "{name}: {e}"
                );
                assert!(e.to_string().contains("use 0 (greedy)"), "{name}: {e}");
            }
        });
    }
}

#[test]
fn smallest_temperature_splits_ties_and_subnormal_gaps_exactly() {
    // At T = 1e-30, logits 1e-30 apart still share mass (e^-1), and the tied
    // maxima split it; subnormal logits differ by nothing visible.
    on_every_backend(
        &[
            vec![1.0, 1.0 - 1e-7, 1.0, -3.0, 0.5],
            vec![1e-30, 2e-30, 0.0, 2e-30, -1e-30],
            vec![1e-40, 2e-40, 3e-40, 0.0, -1e-45],
        ],
        vec![t(1e-30), t(1e-30), t(1e-30)],
    );
}

#[test]
fn huge_temperatures_give_the_reference_distribution() {
    // Was: probabilities summing to 1.1 on cpu. At T = 1e30 every logit
    // difference under 1e25 is invisible; differences near f32::MAX are not.
    on_every_backend(
        &[
            vec![1.0, 2.0, 3.0, -5.0, 0.0],
            vec![-1e30, 1e30, 0.0, 3e30, -MAX],
            vec![-3e38, 3e38, 1e38, 0.0, -1e38],
        ],
        vec![t(1e30), t(1e30), t(1e29)],
    );
}

#[test]
fn spread_beyond_f32_max_keeps_entropy_and_dynamic_temperature() {
    // Was: entropy 0 on gpu (−inf·0 = NaN in its sums) and the wrong dynamic T.
    let dynamic = SamplingParams {
        dynamic_temperature: Some(DynamicTemperature::new(Mapping::Linear {
            h_low: 0.0,
            h_high: 1.0,
            t_min: 0.5,
            t_max: 2.0,
        })),
        ..t(1.0)
    };
    let x = vec![-3e38f32, 3e38, 3e38, 1.0];
    on_every_backend(&[x.clone(), x.clone()], vec![t(1.0), dynamic.clone()]);
    for (name, mut run) in backends() {
        run(&|s| {
            let r = probs_of(s, &x, dynamic.clone());
            // Two tokens tied at the max: H = ln 2, T = 0.5 + 1.5·ln 2.
            let ln2 = std::f64::consts::LN_2;
            assert!((r.entropy - ln2).abs() < 1e-6, "{name}: {}", r.entropy);
            assert!(
                (r.temperature - (0.5 + 1.5 * ln2)).abs() < 1e-5,
                "{name}: {}",
                r.temperature
            );
        });
    }
}

#[test]
fn subnormal_logits_sum_to_one() {
    // Was: probabilities summing to 0.26 and an entropy of 74 357 nats on
    // cpu (at a subnormal temperature, now an error; at the smallest
    // temperature the row is exact).
    let x = vec![1e-45f32, 2e-45, 3e-45, 0.0, 1e-44];
    on_every_backend(&[x.clone(), x.clone()], vec![t(1e-30), t(1.0)]);
    for (name, mut run) in backends() {
        run(&|s| {
            let r = probs_of(s, &x, t(1e-30));
            let sum: f64 = r.probs.iter().sum();
            assert!((sum - 1.0).abs() < 1e-6, "{name}: {sum}");
            assert!((r.final_entropy - 5f64.ln()).abs() < 1e-4, "{name}");
        });
    }
}

#[test]
fn penalties_out_of_range_are_the_same_error() {
    // Was: an error on reference and cpu, a silent mask on gpu.
    let x = vec![-3e38f32, 3e38, 2.0, 0.5];
    let cases = [
        // −3e38 · 2 overflows f32.
        (
            SamplingParams {
                repetition_penalty: 2.0,
                history: vec![0],
                ..t(1.0)
            },
            "repetition_penalty",
        ),
        // 3e38 − 2.5e38 · 2 is in range, but the amount subtracted is not.
        (
            SamplingParams {
                frequency_penalty: 2.5e38,
                history: vec![1, 1],
                ..t(1.0)
            },
            "frequency_penalty/presence_penalty",
        ),
        (
            SamplingParams {
                presence_penalty: 1e38,
                history: vec![0],
                ..t(1.0)
            },
            "frequency_penalty/presence_penalty",
        ),
    ];
    for (p, field) in cases {
        for (name, mut run) in backends() {
            run(&|s| {
                let b = Batch::from_rows(std::slice::from_ref(&x)).unwrap();
                let e = s.sample(b.view(), std::slice::from_ref(&p), 1).unwrap_err();
                assert!(
                    matches!(&e, SamplerError::NonFiniteLogit { row: 0, field: f, .. } if f == field),
                    "{name}: {e}"
                );
            });
        }
    }
}

#[test]
fn a_bias_is_rounded_as_f64_rounds_it() {
    // Was: a bias of 1 on 1e17 absorbed by reference and cpu but kept by gpu,
    // which then broke the tie the other way.
    let x = vec![1e17f32, 1e17, 0.0];
    let bias = |id: u32, b: f32| SamplingParams {
        logit_bias: BTreeMap::from([(id, b)]),
        ..t(0.0)
    };
    for (name, mut run) in backends() {
        run(&|s| {
            let b = Batch::from_rows(&[x.clone(), x.clone()]).unwrap();
            let r = s
                .sample(b.view(), &[bias(1, 1.0), bias(1, 64.0)], 1)
                .unwrap();
            // 1e17 + 1 rounds to 1e17 in f64 (a tie: the lowest id wins);
            // 1e17 + 64 does not.
            assert_eq!((r[0].token, r[1].token), (0, 1), "{name}");
        });
    }
    // At f32::MAX: a bias under half an f64 ulp (2^74) is absorbed, one over
    // it leaves f32's range.
    let x = vec![MAX, 0.0];
    for (name, mut run) in backends() {
        run(&|s| {
            let b = Batch::from_rows(std::slice::from_ref(&x)).unwrap();
            let ok = s.sample(b.view(), &[bias(0, 1e20)], 1).unwrap();
            assert_eq!(ok[0].token, 0, "{name}");
            for over in [3e22f32, 1e38] {
                let e = s.sample(b.view(), &[bias(0, over)], 1).unwrap_err();
                assert!(
                    matches!(&e, SamplerError::NonFiniteLogit { row: 0, index: 0, field, .. } if field == "logit_bias"),
                    "{name}: {e}"
                );
            }
        });
    }
}

#[test]
fn a_mapping_that_underflows_is_greedy() {
    // Was: kept 10, T 1.2e-38 on gpu but greedy elsewhere.
    let x: Vec<f32> = (0..10).map(|i| 1.0 + (i % 3) as f32 * 1e-3).collect();
    let edt = SamplingParams {
        dynamic_temperature: Some(DynamicTemperature::new(Mapping::Edt {
            t0: 1.0,
            base: 0.5,
            theta: 1e30,
        })),
        ..t(1.0)
    };
    on_every_backend(std::slice::from_ref(&x), vec![edt.clone()]);
    for (name, mut run) in backends() {
        run(&|s| {
            let r = probs_of(s, &x, edt.clone());
            assert_eq!((r.kept, r.temperature), (1, 0.0), "{name}");
        });
    }
}
