//! The shared test bodies. Every expected number is derived by hand in the
//! comment above its assert; most rows are logs of small integers (`ln(&[…])`)
//! so that softmax is plain fractions.

use std::collections::BTreeMap;

use token_sampler::{
    DynamicTemperature, EntropyUnit, Mapping, Order, Sampler, SamplerError, SamplingParams,
    SequenceState, TopPRange,
};

use super::{assert_close, assert_pi, ln, normal_logits, one_row, probs1, sample1};

const LN2: f64 = std::f64::consts::LN_2;

fn seeded(p: SamplingParams) -> SamplingParams {
    SamplingParams {
        seed: Some(1234),
        ..p
    }
}

/// The temperature sweep of docs/spec.md §10: logits
/// [2.2, 1.8, 1.4, 0.9, 0.2, 0.1, −0.3, −0.6, −0.8, −1.0].
pub fn temperature_sweep(s: &mut dyn Sampler) {
    let x = [2.2f32, 1.8, 1.4, 0.9, 0.2, 0.1, -0.3, -0.6, -0.8, -1.0];
    // With d_i = x_i − 2.2 = [0, −.4, −.8, −1.3, −2, −2.1, −2.5, −2.8, −3, −3.2]:
    // T = 1:   S = Σ e^{d_i} = 1 + .6703 + .4493 + .2725 + .1353 + .1225 + .0821
    //          + .0608 + .0498 + .0408 = 2.8834; p(approve) = 1/S = 0.3468;
    //          H = −Σ p log2 p = 2.611 bits.
    // T = 0.1: S = 1 + e^{−4} + e^{−8} + e^{−13} + … = 1 + .018316 + .000335 + … = 1.018653;
    //          p = 0.9817; H = 0.1343 bits (the seed article prints 0.412).
    // T = 2:   S = Σ e^{d_i/2} = 1 + .8187 + .6703 + .5220 + .3679 + .3499 + .2865
    //          + .2466 + .2231 + .2019 = 4.6870; p = 0.2134; H = 3.1113 bits.
    for (t, h_bits, p0) in [
        (1.0f32, 2.6110, 0.3468),
        (0.1, 0.1343, 0.9817),
        (2.0, 3.1113, 0.2134),
    ] {
        let p = SamplingParams {
            temperature: t,
            ..Default::default()
        };
        let r = probs1(s, &x, p);
        assert_close(r.probs[0], p0, 1e-4, &format!("p(approve) at T={t}"));
        assert_close(
            r.final_entropy / LN2,
            h_bits,
            1e-4,
            &format!("H bits at T={t}"),
        );
        assert_eq!(r.kept, 10);
        // The model entropy is always the T = 1 one.
        assert_close(r.entropy / LN2, 2.6110, 1e-4, "model entropy");
    }
}

pub fn top_k_keeps_ties_at_the_boundary(s: &mut dyn Sampler) {
    // Weights [4, 2, 2, 1, 1]; the 2nd largest value (2) is tied with token 2,
    // so top-k 2 keeps {0, 1, 2}: π = [4, 2, 2, 0, 0] / 8.
    let x = ln(&[4.0, 2.0, 2.0, 1.0, 1.0]);
    let r = probs1(
        s,
        &x,
        SamplingParams {
            top_k: 2,
            ..Default::default()
        },
    );
    assert_eq!(r.kept, 3);
    assert_pi(&r.probs, &[4.0, 2.0, 2.0, 0.0, 0.0]);
    // k ≥ the number of finite tokens, 0 and −1 are off.
    for k in [5, 9, 0, -1] {
        let r = probs1(
            s,
            &x,
            SamplingParams {
                top_k: k,
                ..Default::default()
            },
        );
        assert_eq!(r.kept, 5, "top_k {k}");
    }
}

pub fn top_p_exact_cumulative_boundary(s: &mut dyn Sampler) {
    // q = [4, 2, 1, 1]/8 = [.5, .25, .125, .125]. p = 0.75: after token 0 the
    // mass is .5 < .75 − 1e-6; after token 1 it is exactly .75 ≥ .75 − 1e-6, so
    // the cut is there: π = [2/3, 1/3, 0, 0].
    let x = ln(&[4.0, 2.0, 1.0, 1.0]);
    let r = probs1(
        s,
        &x,
        SamplingParams {
            top_p: 0.75,
            ..Default::default()
        },
    );
    assert_eq!(r.kept, 2);
    assert_pi(&r.probs, &[2.0, 1.0, 0.0, 0.0]);
    // p = 0.5: token 0 alone has mass .5: only it survives.
    let r = probs1(
        s,
        &x,
        SamplingParams {
            top_p: 0.5,
            ..Default::default()
        },
    );
    assert_eq!(r.kept, 1);
    // A tiny p still keeps the top token.
    let r = probs1(
        s,
        &x,
        SamplingParams {
            top_p: 1e-6,
            ..Default::default()
        },
    );
    assert_eq!(r.kept, 1);
    assert_pi(&r.probs, &[1.0, 0.0, 0.0, 0.0]);
}

pub fn top_p_keeps_tied_group(s: &mut dyn Sampler) {
    // q = [2, 1, 1, 1]/5 = [.4, .2, .2, .2]; p = 0.5 needs part of the tied
    // group at .2: every tied token is kept (as FlashInfer does), so all four
    // survive, where HF/vLLM would keep one by sort order.
    let x = ln(&[2.0, 1.0, 1.0, 1.0]);
    let r = probs1(
        s,
        &x,
        SamplingParams {
            top_p: 0.5,
            ..Default::default()
        },
    );
    assert_eq!(r.kept, 4);
    assert_pi(&r.probs, &[2.0, 1.0, 1.0, 1.0]);
    // With T = 0.5 the weights square: q = [4, 1, 1, 1]/7, .571 ≥ .5 → only token 0.
    let r = probs1(
        s,
        &x,
        SamplingParams {
            top_p: 0.5,
            temperature: 0.5,
            ..Default::default()
        },
    );
    assert_eq!(r.kept, 1);
}

pub fn top_p_off_at_one(s: &mut dyn Sampler) {
    // p = 1 skips the stage exactly: even a token of mass 1e-30 survives.
    let x = [0.0f32, -69.0, f32::NEG_INFINITY]; // e^−69 ≈ 1e-30
    let r = probs1(
        s,
        &x,
        SamplingParams {
            top_p: 1.0,
            ..Default::default()
        },
    );
    assert_eq!(r.kept, 2);
    assert_eq!(r.probs[2], 0.0);
}

pub fn min_p_closed_form(s: &mut dyn Sampler) {
    // q = [8, 4, 2, 1]/15. min_p 0.2 keeps q ≥ 0.2·8/15 = 1.6/15: tokens 0, 1, 2
    // (2/15 ≥ 1.6/15), not 3 (1/15). π = [8, 4, 2, 0]/14.
    let x = ln(&[8.0, 4.0, 2.0, 1.0]);
    let r = probs1(
        s,
        &x,
        SamplingParams {
            min_p: 0.2,
            ..Default::default()
        },
    );
    assert_eq!(r.kept, 3);
    assert_pi(&r.probs, &[8.0, 4.0, 2.0, 0.0]);
    // At T = 0.5, q ∝ [64, 16, 4, 1]: 0.2·64 = 12.8 keeps tokens 0 and 1 only.
    let r = probs1(
        s,
        &x,
        SamplingParams {
            min_p: 0.2,
            temperature: 0.5,
            ..Default::default()
        },
    );
    assert_eq!(r.kept, 2);
    assert_pi(&r.probs, &[64.0, 16.0, 0.0, 0.0]);
    // min_p = 1 keeps only the maxima.
    let r = probs1(
        s,
        &x,
        SamplingParams {
            min_p: 1.0,
            ..Default::default()
        },
    );
    assert_eq!(r.kept, 1);
}

pub fn repetition_penalty_positive_and_negative(s: &mut dyn Sampler) {
    // x = [2, −1, 0.5, 1], history [0, 1], r = 2: a positive logit is divided
    // (2 → 1), a negative one multiplied (−1 → −2); tokens 2, 3 untouched.
    // π = softmax([1, −2, 0.5, 1]) = [e, e^−2, e^.5, e] / (2e + e^−2 + e^.5).
    let x = [2.0f32, -1.0, 0.5, 1.0];
    let p = SamplingParams {
        repetition_penalty: 2.0,
        history: vec![0, 1],
        ..Default::default()
    };
    let r = probs1(s, &x, p);
    let e = |v: f64| v.exp();
    assert_pi(&r.probs, &[e(1.0), e(-2.0), e(0.5), e(1.0)]);
    // Penalised logits also drive the model entropy: H of the same π.
    let w = [e(1.0), e(-2.0), e(0.5), e(1.0)];
    let z: f64 = w.iter().sum();
    let h: f64 = w.iter().map(|v| -(v / z) * (v / z).ln()).sum();
    assert_close(r.entropy, h, 1e-4, "entropy after penalties");
}

pub fn presence_vs_frequency_with_repeated_history(s: &mut dyn Sampler) {
    // history [0, 0, 0, 2]: c = [3, 0, 1, 0]. presence 0.5, frequency 0.25:
    // x0 −= 0.25·3 + 0.5 = 1.25; x2 −= 0.25·1 + 0.5 = 0.75.
    // x = [1, 0, 1, 0] → [−0.25, 0, 0.25, 0].
    let x = [1.0f32, 0.0, 1.0, 0.0];
    let p = SamplingParams {
        presence_penalty: 0.5,
        frequency_penalty: 0.25,
        history: vec![0, 0, 0, 2],
        ..Default::default()
    };
    let r = probs1(s, &x, p);
    let e = |v: f64| v.exp();
    assert_pi(&r.probs, &[e(-0.25), 1.0, e(0.25), 1.0]);
    // Presence alone ignores the count: both tokens lose exactly 0.5.
    let p = SamplingParams {
        presence_penalty: 0.5,
        history: vec![0, 0, 0, 2],
        ..Default::default()
    };
    let r = probs1(s, &x, p);
    assert_pi(&r.probs, &[e(0.5), 1.0, e(0.5), 1.0]);
}

pub fn prompt_tokens_only_get_repetition_penalty(s: &mut dyn Sampler) {
    // Prompt [0, 1], r = 2, presence 1, frequency 1, empty history (vLLM):
    // x0 = 2 → 1, x1 = −1 → −2; presence/frequency count only history.
    let x = [2.0f32, -1.0, 0.0];
    let p = SamplingParams {
        repetition_penalty: 2.0,
        presence_penalty: 1.0,
        frequency_penalty: 1.0,
        prompt_token_ids: vec![0, 1, 1],
        ..Default::default()
    };
    let r = probs1(s, &x, p);
    let e = |v: f64| v.exp();
    assert_pi(&r.probs, &[e(1.0), e(-2.0), 1.0]);
}

pub fn bias_and_allowed_mask(s: &mut dyn Sampler) {
    // allowed [1, 2] (with a duplicate), bias {0: +100, 2: +ln 3}: token 0 is
    // masked whatever its bias; x = [0, 0, ln 3, 0] over {1, 2} → π = [0, 1, 3, 0]/4.
    let x = [0.0f32; 4];
    let mut bias = BTreeMap::new();
    bias.insert(0u32, 100.0f32);
    bias.insert(2u32, 3f32.ln());
    let p = SamplingParams {
        logit_bias: bias,
        allowed_token_ids: Some(vec![2, 1, 2]),
        seed: Some(5),
        ..Default::default()
    };
    let r = probs1(s, &x, p.clone());
    assert_eq!(r.kept, 2);
    assert_pi(&r.probs, &[0.0, 1.0, 3.0, 0.0]);
    // raw_logprob ignores bias and mask: uniform over 4 → ln(1/4).
    let r = sample1(s, &x, p, 1);
    assert!(r.token == 1 || r.token == 2);
    assert_close(r.raw_logprob, (0.25f64).ln(), 1e-5, "raw_logprob");
}

pub fn all_masked_row_is_an_error(s: &mut dyn Sampler) {
    // Row 1 allows only token 2, which is −inf in the input.
    let b = token_sampler::Batch::from_rows(&[
        vec![0.0f32, 1.0, 2.0],
        vec![0.0, 1.0, f32::NEG_INFINITY],
    ])
    .unwrap();
    let params = vec![
        SamplingParams::default(),
        SamplingParams {
            allowed_token_ids: Some(vec![2]),
            ..Default::default()
        },
    ];
    match s.sample(b.view(), &params, 1) {
        Err(SamplerError::AllMasked { row }) => assert_eq!(row, 1),
        other => panic!("expected AllMasked for row 1, got {other:?}"),
    }
    // A row that is −inf everywhere is the same error.
    let b = one_row(&[f32::NEG_INFINITY; 3]);
    assert!(matches!(
        s.probs(b.view(), &[SamplingParams::default()]),
        Err(SamplerError::AllMasked { row: 0 })
    ));
}

pub fn invalid_logits_name_row_and_index(s: &mut dyn Sampler) {
    for bad in [f32::NAN, f32::INFINITY] {
        let b = token_sampler::Batch::from_rows(&[vec![0.0f32, 1.0, 2.0], vec![0.0, 1.0, bad]])
            .unwrap();
        let params = vec![SamplingParams::default(); 2];
        match s.sample(b.view(), &params, 1) {
            Err(SamplerError::InvalidLogit { row, index, .. }) => {
                assert_eq!((row, index), (1, 2), "{bad}")
            }
            other => panic!("expected InvalidLogit for {bad}, got {other:?}"),
        }
    }
}

pub fn bias_overflow_is_an_error(s: &mut dyn Sampler) {
    // 3e38 + 3e38 is beyond f32::MAX (3.4e38): an error, not +inf.
    let mut bias = BTreeMap::new();
    bias.insert(1u32, 3e38f32);
    let p = SamplingParams {
        logit_bias: bias,
        ..Default::default()
    };
    match s.sample(one_row(&[0.0, 3e38, 0.0]).view(), &[p], 1) {
        Err(SamplerError::NonFiniteLogit {
            row: 0, index: 1, ..
        }) => {}
        other => panic!("expected NonFiniteLogit, got {other:?}"),
    }
}

pub fn param_count_mismatch_is_an_error(s: &mut dyn Sampler) {
    let b = one_row(&[0.0, 1.0]);
    assert!(matches!(
        s.sample(
            b.view(),
            &[SamplingParams::default(), SamplingParams::default()],
            1
        ),
        Err(SamplerError::Shape(_))
    ));
    // An out-of-range id names its row and field.
    let p = SamplingParams {
        history: vec![0, 2],
        ..Default::default()
    };
    match s.sample(b.view(), &[p], 1) {
        Err(SamplerError::TokenOutOfRange {
            row: 0,
            field,
            position: 1,
            id: 2,
            ..
        }) => {
            assert_eq!(field, "history")
        }
        other => panic!("expected TokenOutOfRange, got {other:?}"),
    }
    assert!(s.sample(b.view(), &[SamplingParams::default()], 0).is_err());
}

pub fn greedy_lowest_id_among_equal_maxima(s: &mut dyn Sampler) {
    // Maxima 3 at ids 1 and 2: greedy picks id 1, in every order.
    let x = [1.0f32, 3.0, 3.0, 2.0];
    for order in Order::ALL {
        let r = sample1(
            s,
            &x,
            SamplingParams {
                temperature: 0.0,
                order,
                ..Default::default()
            },
            1,
        );
        assert_eq!(r.token, 1, "{order:?}");
    }
}

pub fn greedy_result_fields(s: &mut dyn Sampler) {
    // Greedy rows: kept 1, logprob 0, final_entropy 0, temperature 0, all draws
    // equal — even with dynamic temperature and truncation configured.
    let x = ln(&[1.0, 5.0, 2.0, 2.0]);
    let p = SamplingParams {
        temperature: 0.0,
        top_k: 2,
        top_p: 0.5,
        dynamic_temperature: Some(DynamicTemperature::new(Mapping::Edt {
            t0: 1.0,
            base: 0.8,
            theta: 1.0,
        })),
        ..seeded(Default::default())
    };
    let r = sample1(s, &x, p, 8);
    assert_eq!(r.token, 1);
    assert_eq!(r.draws, vec![1; 8]);
    assert_eq!(r.kept, 1);
    assert_eq!(r.logprob, 0.0);
    assert_eq!(r.final_entropy, 0.0);
    assert_eq!(r.temperature, 0.0);
    // raw_logprob is still the model's: ln(5/10).
    assert_close(r.raw_logprob, 0.5f64.ln(), 1e-5, "raw_logprob");
}

fn linear(h_low: f32, h_high: f32, t_min: f32, t_max: f32) -> Mapping {
    Mapping::Linear {
        h_low,
        h_high,
        t_min,
        t_max,
    }
}

fn dynamic(
    unit: Option<EntropyUnit>,
    max_entropy: Option<f32>,
    mapping: Mapping,
) -> SamplingParams {
    SamplingParams {
        dynamic_temperature: Some(DynamicTemperature {
            unit,
            max_entropy,
            mapping,
            top_p: None,
        }),
        ..seeded(Default::default())
    }
}

pub fn dynamic_linear_bits_and_clip(s: &mut dyn Sampler) {
    // A uniform row of 4: H = ln 4 nats = 2 bits. linear(1, 3 bits) → s = 0.5,
    // T = 0.5 + (1.5 − 0.5)·0.5 = 1.0.
    let x = [0.0f32; 4];
    let r = sample1(
        s,
        &x,
        dynamic(Some(EntropyUnit::Bits), None, linear(1.0, 3.0, 0.5, 1.5)),
        1,
    );
    assert_close(r.guide_entropy.unwrap(), 2.0, 1e-4, "guide bits");
    assert_close(r.temperature, 1.0, 1e-4, "T");
    // Clip at 1.5 bits: s = 0.25, T = 0.75.
    let r = sample1(
        s,
        &x,
        dynamic(
            Some(EntropyUnit::Bits),
            Some(1.5),
            linear(1.0, 3.0, 0.5, 1.5),
        ),
        1,
    );
    assert_close(r.guide_entropy.unwrap(), 1.5, 1e-6, "clipped guide");
    assert_close(r.temperature, 0.75, 1e-5, "T after clip");
    // Nats (the default unit): H = 1.3863; linear(0, 2 nats, 0, 2) → T = 1.3863.
    let r = sample1(s, &x, dynamic(None, None, linear(0.0, 2.0, 0.0, 2.0)), 1);
    assert_close(r.temperature, 4f64.ln(), 1e-4, "T nats");
    // Below h_low the temperature is t_min; a peaked row (H ≈ 0) → t_min.
    let peaked = [0.0f32, -40.0, -40.0, -40.0];
    let r = sample1(
        s,
        &peaked,
        dynamic(None, None, linear(0.5, 2.0, 0.3, 2.0)),
        1,
    );
    assert_close(r.temperature, 0.3, 1e-5, "T = t_min");
}

pub fn dynamic_normalized_and_sigmoid(s: &mut dyn Sampler) {
    // Uniform over 4 finite tokens (+1 masked): normalized H = ln 4 / ln 4 = 1.
    let x = [0.0f32, 0.0, 0.0, 0.0, f32::NEG_INFINITY];
    let r = sample1(
        s,
        &x,
        dynamic(
            Some(EntropyUnit::Normalized),
            None,
            linear(0.0, 2.0, 0.0, 2.0),
        ),
        1,
    );
    assert_close(r.guide_entropy.unwrap(), 1.0, 1e-4, "normalized guide");
    assert_close(r.temperature, 1.0, 1e-4, "T");
    // Sigmoid centred on the row's entropy (2 bits): s = 1/2, T = 0.4 + 0.8/2 = 0.8.
    let sig = Mapping::Sigmoid {
        h_mid: 2.0,
        steepness: 3.0,
        t_min: 0.4,
        t_max: 1.2,
    };
    let r = sample1(s, &x, dynamic(Some(EntropyUnit::Bits), None, sig), 1);
    assert_close(r.temperature, 0.8, 1e-4, "sigmoid T");
    // Normalized with a single finite token: N = 1 → guide 0 → T = t_min.
    let one = [f32::NEG_INFINITY, 1.0, f32::NEG_INFINITY];
    let r = sample1(
        s,
        &one,
        dynamic(
            Some(EntropyUnit::Normalized),
            None,
            linear(0.0, 1.0, 0.25, 2.0),
        ),
        1,
    );
    assert_close(r.guide_entropy.unwrap(), 0.0, 1e-9, "N = 1 guide");
    assert_close(r.temperature, 0.25, 1e-6, "N = 1 T");
    assert_eq!(r.token, 1);
}

pub fn dynamic_lut(s: &mut dyn Sampler) {
    // LUT (0, 0.2), (1, 0.6), (2, 1.0) in nats; uniform row of 4: H = 1.3863,
    // T = 0.6 + 0.4·(1.3863 − 1) = 0.75452.
    let lut = Mapping::Lut {
        entropies: vec![0.0, 1.0, 2.0],
        temperatures: vec![0.2, 0.6, 1.0],
    };
    let r = sample1(s, &[0.0f32; 4], dynamic(None, None, lut.clone()), 1);
    assert_close(r.temperature, 0.6 + 0.4 * (4f64.ln() - 1.0), 1e-4, "lut T");
    // Beyond the last entry: clamped to 1.0 (uniform over 16: H = 2.77 nats).
    let r = sample1(s, &[0.0f32; 16], dynamic(None, None, lut), 1);
    assert_close(r.temperature, 1.0, 1e-6, "lut clamp");
}

pub fn dynamic_edt_and_zero_entropy(s: &mut dyn Sampler) {
    // EDT t0 = 1, base 0.8, theta 1 on a uniform row of 4 (H = ln 4 nats):
    // T = 0.8^(1/1.3863) = 0.85132.
    let edt = Mapping::Edt {
        t0: 1.0,
        base: 0.8,
        theta: 1.0,
    };
    let r = sample1(s, &[0.0f32; 4], dynamic(None, None, edt.clone()), 1);
    assert_close(r.temperature, 0.8f64.powf(1.0 / 4f64.ln()), 1e-4, "edt T");
    // One finite token: H = 0 → T = 0 → greedy.
    let one = [f32::NEG_INFINITY, 2.0, f32::NEG_INFINITY];
    let r = sample1(s, &one, dynamic(None, None, edt), 3);
    assert_eq!(r.temperature, 0.0);
    assert_eq!((r.token, r.kept), (1, 1));
    assert_eq!(r.draws, vec![1, 1, 1]);
}

pub fn dynamic_llama_cpp_mapping(s: &mut dyn Sampler) {
    let m = Mapping::LlamaCpp {
        range: 0.5,
        exponent: 1.0,
    };
    // Standard order, uniform row of 4: H/ln N = 1 → T = t_max = 1 + 0.5.
    let p = SamplingParams {
        temperature: 1.0,
        ..dynamic(None, None, m.clone())
    };
    let r = sample1(s, &[0.0f32; 4], p.clone(), 1);
    assert_close(r.temperature, 1.5, 1e-4, "llama_cpp T at max entropy");
    // llama_cpp order: the entropy is over the survivors. Weights [4, 2, 1, 1]
    // with top-k 2 → survivors {4, 2}: q = [2/3, 1/3], H = 0.63651 nats,
    // H / ln 2 = 0.91830 → T = 0.5 + 1.0·0.91830 = 1.41830; π = [2^(1/T), 1]/Σ.
    let x = ln(&[4.0, 2.0, 1.0, 1.0]);
    let p2 = SamplingParams {
        top_k: 2,
        order: Order::LlamaCpp,
        ..p.clone()
    };
    let r = probs1(s, &x, p2);
    let hn = -(2.0f64 / 3.0) * (2.0f64 / 3.0).ln() - (1.0 / 3.0) * (1.0f64 / 3.0).ln();
    let t = 0.5 + hn / 2f64.ln();
    assert_close(r.guide_entropy.unwrap(), hn, 1e-4, "guide over survivors");
    assert_close(r.temperature, t, 1e-4, "T over survivors");
    assert_pi(&r.probs, &[2f64.powf(1.0 / t), 1.0, 0.0, 0.0]);
    // N = 1 (one allowed token): T = temperature.
    let p3 = SamplingParams {
        allowed_token_ids: Some(vec![2]),
        ..p
    };
    let r = sample1(s, &x, p3, 1);
    assert_close(r.temperature, 1.0, 1e-6, "N = 1");
    assert_eq!(r.token, 2);
}

pub fn dynamic_top_p(s: &mut dyn Sampler) {
    // Uniform row of 4 in bits: H = 2, linear(1, 3) → s = 0.5;
    // top_p {low 0.5, high 0.9} → p = 0.7; T = 1.
    // q = [.25]×4, all tied: the whole group is kept.
    let mut p = dynamic(Some(EntropyUnit::Bits), None, linear(1.0, 3.0, 1.0, 1.0));
    p.dynamic_temperature.as_mut().unwrap().top_p = Some(TopPRange {
        low: 0.5,
        high: 0.9,
    });
    let r = sample1(s, &[0.0f32; 4], p.clone(), 1);
    assert_close(r.top_p, 0.7, 1e-5, "dynamic p");
    assert_eq!(r.kept, 4);
    // Weights [4, 2, 1, 1] (H = 1.75 bits): s = 0.375, p = 0.5 + 0.4·0.375 = 0.65;
    // q = [.5, .25, …]: the mass passes 0.65 at token 1 → kept 2.
    let r = sample1(s, &ln(&[4.0, 2.0, 1.0, 1.0]), p, 1);
    assert_close(r.top_p, 0.65, 1e-4, "dynamic p");
    assert_eq!(r.kept, 2);
}

pub fn order_standard_vs_vllm(s: &mut dyn Sampler) {
    // q = [4, 2, 1, 1]/8, min_p 0.3 (keeps q ≥ 0.15: tokens 0, 1), top_p 0.6.
    // standard: top-p over all → .5 < .6, .75 ≥ .6 → {0, 1}; min-p keeps both.
    // vllm: min-p first → {0, 1} with q = [2/3, 1/3]; top-p: 2/3 ≥ .6 → {0}.
    let x = ln(&[4.0, 2.0, 1.0, 1.0]);
    let base = SamplingParams {
        min_p: 0.3,
        top_p: 0.6,
        ..Default::default()
    };
    let std_ = probs1(s, &x, base.clone());
    let vllm = probs1(
        s,
        &x,
        SamplingParams {
            order: Order::Vllm,
            ..base
        },
    );
    assert_eq!((std_.kept, vllm.kept), (2, 1));
    assert_pi(&std_.probs, &[2.0, 1.0, 0.0, 0.0]);
    assert_pi(&vllm.probs, &[1.0, 0.0, 0.0, 0.0]);
}

pub fn order_standard_vs_llama_cpp(s: &mut dyn Sampler) {
    // Weights [4, 2, 1, 1], T = 0.5, top_p 0.7.
    // standard/vllm: q ∝ [16, 4, 1, 1]/22: 16/22 = .727 ≥ .7 → {0}.
    // llama_cpp: top-p at T = 1: .5, .75 ≥ .7 → {0, 1}; then T = 0.5 →
    // π = [16, 4]/20 = [.8, .2].
    let x = ln(&[4.0, 2.0, 1.0, 1.0]);
    let base = SamplingParams {
        temperature: 0.5,
        top_p: 0.7,
        ..Default::default()
    };
    for order in [Order::Standard, Order::Vllm] {
        let r = probs1(
            s,
            &x,
            SamplingParams {
                order,
                ..base.clone()
            },
        );
        assert_eq!(r.kept, 1, "{order:?}");
    }
    let r = probs1(
        s,
        &x,
        SamplingParams {
            order: Order::LlamaCpp,
            ..base
        },
    );
    assert_eq!(r.kept, 2);
    assert_pi(&r.probs, &[16.0, 4.0, 0.0, 0.0]);
}

pub fn min_tokens_to_keep_each_stage(s: &mut dyn Sampler) {
    // Weights [8, 4, 2, 1]; m = 3 (top-k 1) or m = 2 (top-p, min-p): each stage
    // would leave 1 token, the rule keeps the m largest instead.
    let x = ln(&[8.0, 4.0, 2.0, 1.0]);
    let cases = [
        (
            SamplingParams {
                top_k: 1,
                min_tokens_to_keep: 3,
                ..Default::default()
            },
            3,
            vec![8.0, 4.0, 2.0, 0.0],
        ),
        (
            SamplingParams {
                top_p: 0.1,
                min_tokens_to_keep: 2,
                ..Default::default()
            },
            2,
            vec![8.0, 4.0, 0.0, 0.0],
        ),
        (
            SamplingParams {
                min_p: 0.9,
                min_tokens_to_keep: 2,
                ..Default::default()
            },
            2,
            vec![8.0, 4.0, 0.0, 0.0],
        ),
    ];
    for (p, kept, w) in cases {
        for order in Order::ALL {
            let r = probs1(s, &x, SamplingParams { order, ..p.clone() });
            assert_eq!(r.kept, kept, "{p:?} {order:?}");
            assert_pi(&r.probs, &w);
        }
    }
    // Ties at the m-th are kept: weights [8, 4, 4, 1], top-k 1, m = 2 → {0, 1, 2}.
    let r = probs1(
        s,
        &ln(&[8.0, 4.0, 4.0, 1.0]),
        SamplingParams {
            top_k: 1,
            min_tokens_to_keep: 2,
            ..Default::default()
        },
    );
    assert_eq!(r.kept, 3);
}

pub fn logprobs_raw_and_processed(s: &mut dyn Sampler) {
    // Raw weights [1, 4, 2, 4, 1] (sum 12); bias +ln 2 on token 0 makes
    // processed weights [2, 4, 2, 4, 1], top-k 3 keeps ≥ 2 → ties: {0, 1, 2, 3} (sum 12).
    // raw top 3: ids 1, 3 (ln 4/12, tie → lower id first), then 2 (ln 2/12).
    // processed top 3: ids 1, 3 (ln 4/12), then 0 (ln 2/12, ties with 2 → lowest id).
    let x = ln(&[1.0, 4.0, 2.0, 4.0, 1.0]);
    let mut bias = BTreeMap::new();
    bias.insert(0u32, 2f32.ln());
    let p = SamplingParams {
        logit_bias: bias,
        top_k: 3,
        logprobs: Some(3),
        ..seeded(Default::default())
    };
    let r = sample1(s, &x, p, 1);
    let top = r.top_logprobs.expect("top_logprobs");
    let ids = |v: &[token_sampler::TokenLogprob]| v.iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(&top.raw), vec![1, 3, 2]);
    assert_eq!(ids(&top.processed), vec![1, 3, 0]);
    assert_close(top.raw[0].logprob, (4.0f64 / 12.0).ln(), 1e-4, "raw lp");
    assert_close(top.raw[2].logprob, (2.0f64 / 12.0).ln(), 1e-4, "raw lp");
    assert_close(
        top.processed[2].logprob,
        (2.0f64 / 12.0).ln(),
        1e-4,
        "processed lp",
    );
    assert_eq!(r.kept, 4);
    // The token's own logprob is its processed one.
    let w = [2.0, 4.0, 2.0, 4.0, 0.0];
    assert_close(
        r.logprob,
        (w[r.token as usize] / 12.0f64).ln(),
        1e-4,
        "logprob",
    );
    // logprobs larger than the kept set lists only survivors.
    let p = SamplingParams {
        top_k: 1,
        logprobs: Some(5),
        ..seeded(Default::default())
    };
    let r = sample1(s, &x, p, 1);
    let top = r.top_logprobs.unwrap();
    assert_eq!(top.raw.len(), 5);
    assert_eq!(ids(&top.processed), vec![1, 3]);
}

pub fn inverse_cdf_draws_follow_u(s: &mut dyn Sampler) {
    // π = [.5, .25, .125, .125]: the token is the smallest t with CDF(t) > u,
    // CDF = [.5, .75, .875, 1]. Check every draw against u from rng.rs.
    let x = ln(&[4.0, 2.0, 1.0, 1.0]);
    let p = SamplingParams {
        seed: Some(99),
        step: 7,
        ..Default::default()
    };
    let r = sample1(s, &x, p, 64);
    for (d, &t) in r.draws.iter().enumerate() {
        let u = token_sampler::rng::uniform(99, 7, d as u32);
        let expected = if u < 0.5 {
            0
        } else if u < 0.75 {
            1
        } else if u < 0.875 {
            2
        } else {
            3
        };
        assert_eq!(t, expected, "draw {d}, u = {u}");
    }
    assert_eq!(r.token, r.draws[0]);
    assert_eq!(r.seed, 99);
}

pub fn draws_repeat_for_equal_seed_and_step(s: &mut dyn Sampler) {
    let x: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
    let p = SamplingParams {
        seed: Some(7),
        step: 3,
        top_p: 0.9,
        ..Default::default()
    };
    let a = sample1(s, &x, p.clone(), 16);
    let b = sample1(s, &x, p.clone(), 16);
    assert_eq!(a.draws, b.draws);
    let c = sample1(s, &x, SamplingParams { step: 4, ..p }, 16);
    assert_ne!(a.draws, c.draws);
    // No seed: a fresh one is drawn and reported, and reusing it repeats the draws.
    let fresh = sample1(s, &x, SamplingParams::default(), 8);
    let again = sample1(
        s,
        &x,
        SamplingParams {
            seed: Some(fresh.seed),
            ..Default::default()
        },
        8,
    );
    assert_eq!(fresh.draws, again.draws);
}

pub fn statistics_of_many_draws(s: &mut dyn Sampler) {
    // 100 000 draws (d = 0..N−1, fixed seed) of one processed row (V = 64,
    // T 0.8, top-k 20, top-p 0.9) reproduce π within 0.01 per token (the
    // largest binomial standard deviation here is √(.25/1e5) = 0.0016, so 0.01
    // is > 6σ), and no draw falls outside the kept set.
    let x: Vec<f32> = (0..64)
        .map(|i| (((i * 29) % 64) as f32 * 0.05).sin() * 2.0)
        .collect();
    let p = SamplingParams {
        temperature: 0.8,
        top_k: 20,
        top_p: 0.9,
        seed: Some(2024),
        ..Default::default()
    };
    let pi = probs1(s, &x, p.clone()).probs;
    let n = 100_000u32;
    let r = sample1(s, &x, p, n);
    let mut counts = vec![0u32; 64];
    for &t in &r.draws {
        assert!(pi[t as usize] > 0.0, "draw {t} outside the kept set");
        counts[t as usize] += 1;
    }
    for (t, &c) in counts.iter().enumerate() {
        let f = c as f64 / n as f64;
        assert!(
            (f - pi[t]).abs() < 0.01,
            "token {t}: frequency {f} vs π {}",
            pi[t]
        );
    }
}

pub fn batch_invariance(s: &mut dyn Sampler) {
    // Row r of a batch of 64 gets the same token alone, in the batch, and at
    // another position (the batch reversed).
    let b = normal_logits(64, 300, 3.0, 77);
    let params: Vec<SamplingParams> = (0..64)
        .map(|r| SamplingParams {
            seed: Some(1000 + r as u64),
            step: r as u64,
            temperature: 0.5 + (r % 4) as f32 * 0.25,
            top_p: if r % 3 == 0 { 0.9 } else { 1.0 },
            top_k: if r % 5 == 0 { 40 } else { 0 },
            ..Default::default()
        })
        .collect();
    let full = s.sample(b.view(), &params, 4).unwrap();
    let rev_rows: Vec<Vec<f32>> = (0..64).rev().map(|r| b.row(r).to_vec()).collect();
    let rev_params: Vec<SamplingParams> = params.iter().rev().cloned().collect();
    let rev = s
        .sample(
            token_sampler::Batch::from_rows(&rev_rows).unwrap().view(),
            &rev_params,
            4,
        )
        .unwrap();
    for r in [0usize, 1, 17, 42, 63] {
        let alone = s
            .sample(one_row(b.row(r)).view(), &params[r..r + 1], 4)
            .unwrap();
        assert_eq!(full[r].draws, alone[0].draws, "row {r} alone");
        assert_eq!(full[r].draws, rev[63 - r].draws, "row {r} reversed");
    }
    for r in 0..64 {
        assert_eq!(full[r].draws, rev[63 - r].draws, "row {r} reversed");
    }
}

pub fn masked_inputs_stay_masked(s: &mut dyn Sampler) {
    // −inf stays −inf whatever bias or penalty: token 1 never survives.
    let x = [0.0f32, f32::NEG_INFINITY, 1.0];
    let mut bias = BTreeMap::new();
    bias.insert(1u32, 50.0f32);
    let p = SamplingParams {
        logit_bias: bias,
        repetition_penalty: 0.5,
        presence_penalty: -20.0,
        history: vec![1, 1],
        ..seeded(Default::default())
    };
    let r = probs1(s, &x, p.clone());
    assert_eq!(r.probs[1], 0.0);
    assert_eq!(r.kept, 2);
    assert_pi(&r.probs, &[1.0, 0.0, 1f64.exp()]);
    let r = sample1(s, &x, p, 200);
    assert!(r.draws.iter().all(|&t| t != 1));
}

/// Penalised parameter sets for the sequence-state bodies: every penalty, both
/// signs, with bias, mask, truncation, dynamic temperature, logprobs and the
/// three orders around them.
fn sequence_configs(vocab: u32) -> Vec<SamplingParams> {
    let mut bias = BTreeMap::new();
    bias.insert(3u32, 1.5f32);
    bias.insert(11, -2.0);
    vec![
        SamplingParams {
            repetition_penalty: 1.3,
            frequency_penalty: 0.4,
            presence_penalty: 0.2,
            ..Default::default()
        },
        SamplingParams {
            temperature: 0.7,
            top_k: 20,
            repetition_penalty: 0.8,
            frequency_penalty: -0.1,
            logprobs: Some(3),
            order: Order::Vllm,
            ..Default::default()
        },
        SamplingParams {
            top_p: 0.9,
            frequency_penalty: 0.5,
            logit_bias: bias,
            allowed_token_ids: Some((0..vocab).filter(|id| id % 7 != 5).collect()),
            ..Default::default()
        },
        SamplingParams {
            min_p: 0.05,
            presence_penalty: -0.3,
            repetition_penalty: 1.1,
            order: Order::LlamaCpp,
            dynamic_temperature: Some(DynamicTemperature::new(Mapping::Linear {
                h_low: 1.0,
                h_high: 3.5,
                t_min: 0.4,
                t_max: 1.2,
            })),
            ..Default::default()
        },
    ]
}

/// docs/spec.md §13.2: a decode loop that keeps each row's penalty inputs in a
/// `SequenceState` and accepts every drawn token gets, at every step, exactly
/// the results (penalised π, entropies, draws, log-probabilities) of passing
/// the whole history and prompt as lists.
pub fn sequence_state_matches_whole_history(s: &mut dyn Sampler) {
    let vocab = 48u32;
    let configs = sequence_configs(vocab);
    let rows = configs.len();
    let prompts: Vec<Vec<u32>> = vec![vec![1, 2, 2, 9], vec![], vec![4, 40, 4], vec![0, 47]];
    let mut kept: Vec<SamplingParams> = configs
        .iter()
        .zip(&prompts)
        .enumerate()
        .map(|(r, (c, prompt))| SamplingParams {
            seed: Some(500 + r as u64),
            sequence: Some(SequenceState::new(prompt)),
            ..c.clone()
        })
        .collect();
    let mut histories: Vec<Vec<u32>> = vec![Vec::new(); rows];
    let mut repeats = 0;
    for step in 0..14u64 {
        // A flat row (σ 1) over few tokens, so tokens repeat and counts grow.
        let batch = normal_logits(rows, vocab as usize, 1.0, 900 + step);
        let listed: Vec<SamplingParams> = (0..rows)
            .map(|r| SamplingParams {
                history: histories[r].clone(),
                prompt_token_ids: prompts[r].clone(),
                sequence: None,
                ..kept[r].clone()
            })
            .collect();
        let a = s.sample(batch.view(), &kept, 3).unwrap();
        let b = s.sample(batch.view(), &listed, 3).unwrap();
        assert_eq!(
            a, b,
            "step {step}: sample with the kept state vs the whole lists"
        );
        let pa = s.probs(batch.view(), &kept).unwrap();
        let pb = s.probs(batch.view(), &listed).unwrap();
        assert_eq!(
            pa, pb,
            "step {step}: probs with the kept state vs the whole lists"
        );
        for r in 0..rows {
            assert_eq!(kept[r].step, step);
            repeats += usize::from(histories[r].contains(&a[r].token));
            kept[r].accept(a[r].token);
            histories[r].push(a[r].token);
        }
    }
    // The loop exercised counts above one, not only first occurrences.
    assert!(repeats >= 4, "only {repeats} repeated tokens");
    for r in 0..rows {
        let state = kept[r].sequence.as_ref().unwrap();
        assert_eq!(state.generated(), 14);
        assert_eq!(state.history().collect::<Vec<_>>(), histories[r]);
    }
}

/// docs/spec.md §13.2: a windowed state (llama.cpp's `penalty_last_n`) gets the
/// results of passing only the last `window` generated tokens as `history`; a
/// state accepted through `SamplingParams::accept` and one built from the
/// lists agree; and the penalties change the distribution (the comparison is
/// not vacuous).
pub fn sequence_state_window_and_accept(s: &mut dyn Sampler) {
    let vocab = 40u32;
    let window = 3usize;
    let base = SamplingParams {
        repetition_penalty: 1.5,
        frequency_penalty: 0.6,
        presence_penalty: 0.3,
        seed: Some(77),
        ..Default::default()
    };
    let prompt = [5u32, 6];
    let mut p = SamplingParams {
        sequence: Some(SequenceState::new(&prompt).with_window(window)),
        ..base.clone()
    };
    let mut generated: Vec<u32> = Vec::new();
    let mut penalised = false;
    for step in 0..10u64 {
        let batch = normal_logits(1, vocab as usize, 0.7, 40 + step);
        let last = &generated[generated.len().saturating_sub(window)..];
        let listed = SamplingParams {
            history: last.to_vec(),
            prompt_token_ids: prompt.to_vec(),
            step,
            ..base.clone()
        };
        let rebuilt = SamplingParams {
            sequence: Some(SequenceState::from_lists(&prompt, &generated).with_window(window)),
            step,
            ..base.clone()
        };
        let a = s.sample(batch.view(), std::slice::from_ref(&p), 2).unwrap();
        let b = s
            .sample(batch.view(), std::slice::from_ref(&listed), 2)
            .unwrap();
        let c = s.sample(batch.view(), &[rebuilt], 2).unwrap();
        assert_eq!(
            a, b,
            "step {step}: windowed state vs the last {window} tokens"
        );
        assert_eq!(a, c, "step {step}: accepted vs rebuilt state");
        let off = SamplingParams {
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            ..listed
        };
        let (with, without) = (
            s.probs(batch.view(), std::slice::from_ref(&p)).unwrap(),
            s.probs(batch.view(), &[off]).unwrap(),
        );
        penalised |= with[0].probs != without[0].probs;
        p.accept(a[0].token);
        generated.push(a[0].token);
    }
    assert!(penalised, "the penalties never changed π");
    assert_eq!(p.step, 10);
}

/// docs/spec.md §13.2: a state and the lists together are an error naming the
/// list; an id of the state beyond the vocabulary names where it is.
pub fn sequence_state_errors_name_the_field(s: &mut dyn Sampler) {
    let x = [0.0f32, 1.0, 2.0];
    let both = SamplingParams {
        history: vec![1],
        sequence: Some(SequenceState::new(&[0])),
        ..Default::default()
    };
    let err = s.sample(one_row(&x).view(), &[both], 1).unwrap_err();
    assert!(
        matches!(&err, SamplerError::InvalidParam { row: 0, field, .. } if field == "history"),
        "{err}"
    );
    let too_big = SamplingParams {
        sequence: Some(SequenceState::from_lists(&[1], &[2, 0, 7])),
        ..Default::default()
    };
    let err = s.sample(one_row(&x).view(), &[too_big], 1).unwrap_err();
    match err {
        SamplerError::TokenOutOfRange {
            row,
            field,
            position,
            id,
            vocab,
        } => {
            assert_eq!(
                (row, field.as_str(), position, id, vocab),
                (0, "sequence.history", 2, 7, 3)
            );
        }
        other => panic!("expected TokenOutOfRange, got {other}"),
    }
}
