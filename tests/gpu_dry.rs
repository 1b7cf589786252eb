//! The DRY penalty (docs/spec.md §3.14) on the gpu backend against the f64
//! reference: seeded rows with repeats in prompt ++ history, alone and with
//! bias, the other penalties, allowed ids and truncation, in every order, f32
//! and f16 input, V = 50 and 32000, batches mixing DRY settings; DRY's
//! §2.1 error and its place in the reference's error order; and llama.cpp's
//! `test_dry` cases. Without an adapter the tests print a loud notice and
//! pass, unless REQUIRE_GPU=1.

#![cfg(feature = "gpu")]

mod gpu_support;

use gpu_support::{open_gpu, Gpu, Rng};
use half::f16;
use token_sampler::reference::dry_penalties;
use token_sampler::{LogitsView, Order, ReferenceSampler, Sampler, SamplerError, SamplingParams};

/// The gpu against the reference on one call: per row the same token (draw
/// 0, the row's fixed seed), the same kept count, the token's logprob, the
/// entropy and the processed top logprobs within 1e-4; and from `probs` the
/// same kept count and every π within 1e-5. Returns the gpu's π per row.
#[track_caller]
fn agree(
    g: &mut Gpu,
    what: &str,
    view: LogitsView<'_>,
    params: &[SamplingParams],
) -> Vec<Vec<f64>> {
    let mut reference = ReferenceSampler::new();
    let got = g.sample(view, params, 1).unwrap();
    let want = reference.sample(view, params, 1).unwrap();
    for (r, (a, b)) in got.iter().zip(&want).enumerate() {
        assert_eq!(a.token, b.token, "{what} row {r}: token");
        assert_eq!(a.kept, b.kept, "{what} row {r}: kept");
        assert!(
            (a.logprob - b.logprob).abs() <= 1e-4,
            "{what} row {r}: logprob {} vs {}",
            a.logprob,
            b.logprob
        );
        assert!(
            (a.entropy - b.entropy).abs() <= 1e-4,
            "{what} row {r}: entropy {} vs {}",
            a.entropy,
            b.entropy
        );
        if let (Some(ta), Some(tb)) = (&a.top_logprobs, &b.top_logprobs) {
            assert_eq!(ta.processed.len(), tb.processed.len(), "{what} row {r}");
            for (x, y) in ta.processed.iter().zip(&tb.processed) {
                assert_eq!(x.id, y.id, "{what} row {r}: top logprobs");
                assert!(
                    (x.logprob - y.logprob).abs() <= 1e-4,
                    "{what} row {r}: top logprob of {}: {} vs {}",
                    x.id,
                    x.logprob,
                    y.logprob
                );
            }
        }
    }
    let worst_lp = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a.logprob - b.logprob).abs())
        .fold(0.0, f64::max);
    let got = g.probs(view, params).unwrap();
    let want = reference.probs(view, params).unwrap();
    let worst_pi = got
        .iter()
        .zip(&want)
        .flat_map(|(a, b)| a.probs.iter().zip(&b.probs).map(|(x, y)| (x - y).abs()))
        .fold(0.0, f64::max);
    eprintln!("{what}: max |Δlogprob| {worst_lp:.2e}, max |Δπ| {worst_pi:.2e}");
    for (r, (a, b)) in got.iter().zip(&want).enumerate() {
        assert_eq!(a.kept, b.kept, "{what} row {r}: probs kept");
        for (i, (&pa, &pb)) in a.probs.iter().zip(&b.probs).enumerate() {
            assert!(
                (pa - pb).abs() <= 1e-5,
                "{what} row {r}: π[{i}] {pa} vs {pb}"
            );
        }
    }
    got.into_iter().map(|p| p.probs).collect()
}

/// A sequence over `alphabet` with repeats: a random pattern repeated with a
/// few substitutions, split at a random point into prompt and history.
fn repeats(rng: &mut Rng, alphabet: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let pick = |rng: &mut Rng| alphabet[rng.below(alphabet.len() as u64) as usize];
    let pattern: Vec<u32> = (0..3 + rng.below(6)).map(|_| pick(rng)).collect();
    let mut seq = Vec::new();
    for _ in 0..2 + rng.below(3) {
        for &t in &pattern {
            seq.push(if rng.below(8) == 0 { pick(rng) } else { t });
        }
    }
    seq.truncate(seq.len() - rng.below(pattern.len() as u64) as usize);
    let split = rng.below(seq.len() as u64 + 1) as usize;
    let history = seq.split_off(split);
    (seq, history)
}

/// One row's logits (the alphabet raised so its tokens matter) and its
/// parameters: DRY always on, the rest varied by `case`.
fn dry_row(rng: &mut Rng, v: usize, case: u64) -> (Vec<f32>, SamplingParams) {
    let alphabet: Vec<u32> = (0..4 + rng.below(8))
        .map(|_| rng.below(v as u64) as u32)
        .collect();
    let mut x: Vec<f32> = (0..v).map(|_| 2.0 * rng.normal()).collect();
    // Above the row's largest of the rest (≈ 2σ·√(2 ln V)), so DRY's
    // amounts move real mass.
    let top = if v > 1000 { 9.0 } else { 4.0 };
    for &a in &alphabet {
        x[a as usize] = top + rng.normal();
    }
    let (prompt, history) = repeats(rng, &alphabet);
    let mut p = SamplingParams {
        seed: Some(100 + case),
        step: case,
        prompt_token_ids: prompt,
        history,
        order: Order::ALL[(case % 3) as usize],
        temperature: [0.7f32, 1.0, 1.5, 0.0][(case % 4) as usize],
        dry_multiplier: [0.8f32, 1.0, 2.5, 0.3][(case / 2 % 4) as usize],
        dry_base: [1.75f32, 1.1, 2.0, 1.0][(case / 3 % 4) as usize],
        dry_allowed_length: (case % 3) as u32 + 1,
        dry_penalty_last_n: [-1, -1, 12, 6, 30][(case % 5) as usize],
        logprobs: if case.is_multiple_of(2) {
            Some(5)
        } else {
            None
        },
        ..Default::default()
    };
    if case % 4 == 1 {
        p.dry_sequence_breakers = vec![alphabet[0]];
    }
    // Combined with the other stage-1–2 edits and truncation on most rows.
    if !case.is_multiple_of(5) {
        for &a in alphabet.iter().take(2) {
            p.logit_bias
                .insert(a, [0.5f32, -1.0, 2.0][(case % 3) as usize]);
        }
        p.logit_bias.insert(rng.below(v as u64) as u32, 1.5);
        p.repetition_penalty = [1.0f32, 1.2, 1.5][(case % 3) as usize];
        p.frequency_penalty = [0.0f32, 0.3, 0.1][(case / 2 % 3) as usize];
        p.presence_penalty = [0.0f32, 0.2, 0.5][(case / 3 % 3) as usize];
    }
    if case % 3 == 1 {
        let mut allowed: Vec<u32> = (0..v as u32).filter(|_| rng.below(3) != 0).collect();
        allowed.extend(alphabet.iter().skip(1));
        p.allowed_token_ids = Some(allowed);
    }
    match case % 4 {
        1 => p.top_k = 20,
        2 => p.top_p = 0.9,
        3 => {
            p.top_k = 40;
            p.top_p = 0.95;
            p.min_p = 0.02;
        }
        _ => {}
    }
    (x, p)
}

fn run_batches(v: usize, seed: u64, half: bool) {
    let Some(mut g) = open_gpu() else { return };
    let mut rng = Rng(seed);
    let mut case = 0u64;
    let mut moved = 0.0f64;
    for batch in 0..6 {
        let rows = 1 + batch;
        let mut data = Vec::with_capacity(rows * v);
        let mut params = Vec::with_capacity(rows);
        for _ in 0..rows {
            let (x, p) = dry_row(&mut rng, v, case);
            case += 1;
            data.extend(x);
            params.push(p);
        }
        let what = format!("V {v} batch {batch} f16 {half}");
        let halves: Vec<f16>;
        let view = if half {
            halves = data.iter().map(|&x| f16::from_f32(x)).collect();
            LogitsView::f16(&halves, rows, v).unwrap()
        } else {
            LogitsView::new(&data, rows, v).unwrap()
        };
        let with = agree(&mut g, &what, view, &params);
        // DRY did something here: the same rows without it give other π.
        let without: Vec<SamplingParams> = params
            .iter()
            .map(|p| SamplingParams {
                dry_multiplier: 0.0,
                ..p.clone()
            })
            .collect();
        let off = agree(&mut g, &format!("{what} without DRY"), view, &without);
        for (a, b) in with.iter().zip(&off) {
            moved += a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>();
        }
    }
    eprintln!("V {v} f16 {half}: DRY moved Σ|Δπ| = {moved:.3} over {case} rows");
    assert!(moved > 0.5, "DRY moved only {moved} of π over {case} rows");
}

#[test]
fn dry_rows_agree_with_the_reference_v50() {
    run_batches(50, 1, false);
}

#[test]
fn dry_rows_agree_with_the_reference_v32000() {
    run_batches(32_000, 2, false);
}

#[test]
fn dry_rows_agree_with_the_reference_f16() {
    run_batches(50, 3, true);
    run_batches(32_000, 4, true);
}

/// The generator does make DRY penalise: most rows get amounts, and some
/// penalised ids carry a bias or another penalty too.
#[test]
fn generated_rows_are_dry_penalised() {
    let mut rng = Rng(1);
    let mut with_amounts = 0;
    for case in 0..21 {
        let (_, p) = dry_row(&mut rng, 50, case);
        let d = dry_penalties(&p);
        if !d.is_empty() {
            with_amounts += 1;
        }
    }
    assert!(with_amounts >= 12, "{with_amounts} of 21 rows penalised");
}

fn nonfinite(e: SamplerError) -> (usize, usize, String, f64) {
    match e {
        SamplerError::NonFiniteLogit {
            row,
            index,
            field,
            value,
        } => (row, index, field, value),
        e => panic!("not a NonFiniteLogit: {e}"),
    }
}

/// The same error from the gpu as from the reference, on sample and probs.
#[track_caller]
fn same_error(
    g: &mut Gpu,
    data: &[f32],
    v: usize,
    params: &[SamplingParams],
) -> (usize, usize, String, f64) {
    let view = LogitsView::new(data, params.len(), v).unwrap();
    let want = nonfinite(ReferenceSampler::new().sample(view, params, 1).unwrap_err());
    for got in [
        nonfinite(g.sample(view, params, 1).unwrap_err()),
        nonfinite(g.probs(view, params).unwrap_err()),
    ] {
        assert_eq!((got.0, got.1, &got.2), (want.0, want.1, &want.2));
        // A bias error's value is the reference's f64 sum; the gpu reports
        // the f32 overflow (inf). Penalty and DRY errors carry the value.
        if want.2 != "logit_bias" {
            assert_eq!(got.3, want.3, "{want:?}");
        }
    }
    want
}

#[test]
fn dry_beyond_2_24_is_the_reference_error_and_bias_errors_come_first() {
    let Some(mut g) = open_gpu() else { return };
    let v = 32_000;
    // History a b c d a b c: d extends a repeat of 3. M = 2^23, b = 1: the
    // amount is 2^23 (the cap), and -1.6e7 − 2^23 is beyond 2^24.
    let (a, b, c, d) = (7u32, 9u32, 11u32, 25_000u32);
    let ok = SamplingParams {
        seed: Some(1),
        ..Default::default()
    };
    let dry = SamplingParams {
        seed: Some(2),
        history: vec![a, b, c, d, a, b, c],
        dry_multiplier: 8_388_608.0,
        dry_base: 1.0,
        ..Default::default()
    };
    assert_eq!(
        dry_penalties(&dry).into_iter().collect::<Vec<_>>(),
        [(d, 8_388_608.0)]
    );
    let mut rng = Rng(5);
    let mut data: Vec<f32> = (0..2 * v).map(|_| rng.normal()).collect();
    data[v + d as usize] = -1.6e7;
    let e = same_error(&mut g, &data, v, &[ok.clone(), dry.clone()]);
    assert_eq!(
        (e.0, e.1, e.2.as_str(), e.3),
        (1, d as usize, "dry_multiplier", -1.6e7 - 8_388_608.0)
    );
    // Just inside the bound: no error, and the penalised logit is −2^24 + 1.
    data[v + d as usize] = -8_388_607.0;
    let view = LogitsView::new(&data, 2, v).unwrap();
    agree(&mut g, "inside the bound", view, &[ok.clone(), dry.clone()]);
    data[v + d as usize] = -1.6e7;
    // A bias error on another id (a later tile) wins, as in the reference.
    let mut biased = dry.clone();
    biased.logit_bias.insert(30_000, 3.0e38);
    data[v + 30_000] = 3.0e38;
    let e = same_error(&mut g, &data, v, &[ok.clone(), biased]);
    assert_eq!((e.0, e.1, e.2.as_str()), (1, 30_000, "logit_bias"));
    data[v + 30_000] = 0.0;
    // So does a repetition-penalty error on a higher id: DRY runs after the
    // other penalties of every id. r = 0.5 halves d's −2e7 (no error) before
    // DRY takes it past 2^24, and doubles 29000's 1e7 past 2^24.
    let mut rep = dry.clone();
    rep.repetition_penalty = 0.5;
    rep.history.push(29_000);
    rep.history.extend([a, b, c]);
    data[v + d as usize] = -2.0e7;
    data[v + 29_000] = 1.0e7;
    let e = same_error(&mut g, &data, v, &[ok.clone(), rep.clone()]);
    assert_eq!((e.0, e.1, e.2.as_str()), (1, 29_000, "repetition_penalty"));
    // Without 29000's error, d's DRY error is the row's.
    data[v + 29_000] = 0.0;
    let e = same_error(&mut g, &data, v, &[ok.clone(), rep]);
    assert_eq!((e.0, e.1, e.2.as_str()), (1, d as usize, "dry_multiplier"));
    data[v + d as usize] = -1.6e7;
    // Two DRY errors: the lower id. History a b c d x a b c x a b c: d and x
    // both extend repeats.
    let x = 20_000u32;
    let mut two = dry.clone();
    two.history = vec![a, b, c, x, a, b, c, d, a, b, c];
    data[v + x as usize] = -1.6e7;
    let e = same_error(&mut g, &data, v, &[ok, two]);
    assert_eq!((e.0, e.1, e.2.as_str()), (1, x as usize, "dry_multiplier"));
}

/// llama.cpp's `test_dry` (tests/test-sampling.cpp), as transcribed in
/// tests/reference_samplers.rs `dry_peer_llama_cpp_test_dry`: the accepted
/// tokens as our history (no prompt), and the probabilities llama.cpp's
/// test expects, on the gpu and the reference alike.
#[test]
fn llama_cpp_test_dry_on_the_gpu() {
    let Some(mut g) = open_gpu() else { return };
    let dry = |history: &[u32], m: f32, b: f32, allowed: u32, last_n: i32| SamplingParams {
        seed: Some(3),
        history: history.to_vec(),
        dry_multiplier: m,
        dry_base: b,
        dry_allowed_length: allowed,
        dry_penalty_last_n: last_n,
        ..Default::default()
    };
    let ln = |q: &[f64]| q.iter().map(|&v| v.ln() as f32).collect::<Vec<f32>>();
    let q4 = ln(&[0.25; 4]);
    let q5 = ln(&[0.2; 5]);
    let cases: Vec<(&Vec<f32>, SamplingParams, Vec<f64>)> = vec![
        (&q4, dry(&[0, 1], 1.0, 1.1, 2, 4), vec![0.25; 4]),
        (
            &q4,
            dry(&[0, 1, 2, 0, 1], 1.0, 1.1, 2, 5),
            vec![0.296923, 0.296923, 0.109232, 0.296923],
        ),
        (
            &q5,
            SamplingParams {
                dry_sequence_breakers: vec![3],
                ..dry(&[0, 1, 3, 4, 0, 1], 1.0, 1.1, 2, 6)
            },
            vec![0.2; 5],
        ),
        (
            &q5,
            dry(&[0, 1, 2, 0, 1], 2.0, 1.1, 2, 5),
            vec![0.241818, 0.241818, 0.032727, 0.241818, 0.241818],
        ),
        (
            &q5,
            dry(&[0, 1, 2, 3, 4, 0, 1], 1.0, 1.1, 4, 7),
            vec![0.2; 5],
        ),
    ];
    for (k, (x, p, expected)) in cases.into_iter().enumerate() {
        let view = LogitsView::new(x, 1, x.len()).unwrap();
        let pi = agree(&mut g, &format!("test_dry case {}", k + 1), view, &[p]);
        for (i, (&a, &e)) in pi[0].iter().zip(&expected).enumerate() {
            assert!(
                (a - e).abs() <= 1e-5,
                "case {}: π[{i}] = {a}, llama.cpp {e}",
                k + 1
            );
        }
    }
}
