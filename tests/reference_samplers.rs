//! The samplers of docs/spec.md §3.9–3.15 on the reference backend:
//! hand-derived goldens (the derivation beside each), the peers' own test
//! cases transcribed (cited by test function; where our tie or coin rules
//! differ the comment says how the case was adapted), and the errors.
//!
//! Logits are `ln w` of small weights w unless said otherwise, so q = w/Σw
//! exactly (up to f32's rounding of ln w, far inside the 1e-5 checked).

mod common;
mod sampler_cases;

use common::{assert_pi, ln, one_row};
use token_sampler::reference::{common_suffixes, dry_penalties, process_row, Overrides};
use token_sampler::rng::{uniform, xtc_uniform};
use token_sampler::{
    CpuSampler, Mirostat, Order, ReferenceSampler, RowProbs, RowResult, Sampler, SamplerError,
    SamplingParams, Stage,
};

fn probs(x: &[f32], p: SamplingParams) -> RowProbs {
    ReferenceSampler::new()
        .probs(one_row(x).view(), &[p])
        .unwrap()
        .remove(0)
}

fn pi(x: &[f32], p: SamplingParams) -> Vec<f64> {
    probs(x, p).probs
}

fn sample(x: &[f32], p: SamplingParams, n: u32) -> RowResult {
    ReferenceSampler::new()
        .sample(one_row(x).view(), &[p], n)
        .unwrap()
        .remove(0)
}

/// The ids with π > 0.
fn kept(pi: &[f64]) -> Vec<usize> {
    (0..pi.len()).filter(|&i| pi[i] > 0.0).collect()
}

fn seeded() -> SamplingParams {
    SamplingParams {
        seed: Some(7),
        ..Default::default()
    }
}

// ---------------------------------------------------------------- top-nσ

#[test]
fn top_n_sigma_golden() {
    // Logits [0, 1, 2, 3]: mean 1.5, deviations ±1.5, ±0.5, variance
    // (2.25 + 0.25 + 0.25 + 2.25)/4 = 1.25, σ = 1.1180.
    // n = 1: keep x ≥ 3 − 1.118 = 1.882 → {2, 3}, π ∝ [e², e³].
    // n = 2: keep x ≥ 3 − 2.236 = 0.764 → {1, 2, 3}.
    let x = [0.0f32, 1.0, 2.0, 3.0];
    let e = std::f64::consts::E;
    let p = |n: f32| SamplingParams {
        top_n_sigma: n,
        ..Default::default()
    };
    assert_pi(&pi(&x, p(1.0)), &[0.0, 0.0, e * e, e * e * e]);
    assert_pi(&pi(&x, p(2.0)), &[0.0, e, e * e, e * e * e]);
    // A masked token is not part of σ (with it σ would be infinite and every
    // token kept): [−inf, 0, 1, 2, 3] keeps {3, 4} at n = 1.
    let xm = [f32::NEG_INFINITY, 0.0, 1.0, 2.0, 3.0];
    assert_eq!(kept(&pi(&xm, p(1.0))), [3, 4]);
    // All equal: σ = 0, all kept; and the rule is the same at every T: at
    // T = 0.5 in standard order (after temperature) n = 1 still keeps {2, 3},
    // π ∝ [e⁴, e⁶].
    assert_eq!(kept(&pi(&[1.0; 3], p(1.0))), [0, 1, 2]);
    let hot = SamplingParams {
        temperature: 0.5,
        ..p(1.0)
    };
    assert_pi(&pi(&x, hot), &[0.0, 0.0, e.powi(4), e.powi(6)]);
}

#[test]
fn top_n_sigma_peer_llama_cpp_test_top_n_sigma() {
    // llama.cpp tests/test-sampling.cpp, test_top_n_sigma: logits ln[.1, .2,
    // .3, .4]; n = 1 → [0, 0, .428571, .571429]; n = 0 (off) and n = 3 → unchanged.
    let x = ln(&[0.1, 0.2, 0.3, 0.4]);
    let p = |n: f32| SamplingParams {
        top_n_sigma: n,
        ..Default::default()
    };
    assert_pi(&pi(&x, p(1.0)), &[0.0, 0.0, 0.428571, 0.571429]);
    assert_pi(&pi(&x, p(0.0)), &[0.1, 0.2, 0.3, 0.4]);
    assert_pi(&pi(&x, p(3.0)), &[0.1, 0.2, 0.3, 0.4]);
}

// --------------------------------------------------------------- typical

#[test]
fn typical_golden() {
    // q = [.4, .3, .2, .1]: H = .4·0.916291 + .3·1.203973 + .2·1.609438
    // + .1·2.302585 = 1.279854 nats. Scores |−ln q − H|: token 0 0.363563,
    // token 1 0.075881, token 2 0.329584, token 3 1.022731, so the typical
    // order is 1 (.3), 2 (.2), 0 (.4), 3 (.1).
    let x = ln(&[4.0, 3.0, 2.0, 1.0]);
    let p = |tp: f32, m: u32| SamplingParams {
        typical_p: tp,
        min_tokens_to_keep: m,
        ..Default::default()
    };
    // 0.25: token 1 alone reaches it; the most likely token is removed.
    assert_pi(&pi(&x, p(0.25, 1)), &[0.0, 1.0, 0.0, 0.0]);
    // 0.45: .3 + .2 = .5 → {1, 2}.
    assert_pi(&pi(&x, p(0.45, 1)), &[0.0, 3.0, 2.0, 0.0]);
    // 0.6: .5 + .4 = .9 → {0, 1, 2}.
    assert_pi(&pi(&x, p(0.6, 1)), &[4.0, 3.0, 2.0, 0.0]);
    // min_tokens_to_keep 2 keeps the two most typical, {1, 2}, not the two
    // most likely {0, 1} (docs/spec.md §3.11, as HF and llama.cpp do).
    assert_pi(&pi(&x, p(0.25, 2)), &[0.0, 3.0, 2.0, 0.0]);
    // Ties are kept whole: q = [.25, .125 × 6] has H = 1.906155, scores
    // 0.519861 (token 0) and 0.173287 (the six), whose group mass .75 ≥ .5.
    let flat = ln(&[2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    assert_eq!(kept(&pi(&flat, p(0.5, 1))), [1, 2, 3, 4, 5, 6]);
}

#[test]
fn typical_peer_llama_cpp_test_typical() {
    // llama.cpp test_typical: [.97, .01, .01, .01] at .5 → {.97};
    // [.4, .2, .2, .2] at .5 → {.2, .2, .2} (our tie-group walk agrees: the
    // three .2 tie at score 0.277259 and reach .6).
    let p = SamplingParams {
        typical_p: 0.5,
        ..Default::default()
    };
    assert_pi(
        &pi(&ln(&[0.97, 0.01, 0.01, 0.01]), p.clone()),
        &[1.0, 0.0, 0.0, 0.0],
    );
    assert_pi(&pi(&ln(&[0.4, 0.2, 0.2, 0.2]), p), &[0.0, 1.0, 1.0, 1.0]);
}

/// HF's ramp: logits arange(10) − 5, and the same × 100.
fn ramps() -> [Vec<f32>; 2] {
    let r: Vec<f32> = (0..10).map(|i| (i - 5) as f32).collect();
    let r100 = r.iter().map(|v| v * 100.0).collect();
    [r, r100]
}

#[test]
fn typical_peer_hf_test_typical_dist_warper() {
    // HF test_typical_dist_warper: mass .5 on [[.97, .01, .01, .01],
    // [.4, .2, .2, .2]] → [[.97, 0, 0, 0], [0, .2, .2, .2]].
    let p = |mass: f32, m: u32| SamplingParams {
        typical_p: mass,
        min_tokens_to_keep: m,
        ..Default::default()
    };
    assert_eq!(kept(&pi(&ln(&[0.97, 0.01, 0.01, 0.01]), p(0.5, 1))), [0]);
    assert_eq!(kept(&pi(&ln(&[0.4, 0.2, 0.2, 0.2]), p(0.5, 1))), [1, 2, 3]);
    // Uniform over 5, mass .5, min_tokens_to_keep 3: unchanged.
    assert_eq!(kept(&pi(&[0.0; 5], p(0.5, 3))), [0, 1, 2, 3, 4]);
    // Ramps, mass .7, min_tokens_to_keep 2: 2 and 2 kept (the second ramp
    // keeps 1 by mass, the most typical two by min_tokens_to_keep).
    for r in ramps() {
        assert_eq!(kept(&pi(&r, p(0.7, 2))), [8, 9]);
    }
}

// ------------------------------------------------------------- ε and η

#[test]
fn epsilon_golden() {
    // q = [.6, .3, .1].
    let x = ln(&[6.0, 3.0, 1.0]);
    let p = |e: f32, m: u32| SamplingParams {
        epsilon_cutoff: e,
        min_tokens_to_keep: m,
        ..Default::default()
    };
    // ε = .2 removes .1.
    assert_pi(&pi(&x, p(0.2, 1)), &[6.0, 3.0, 0.0]);
    // ε = .65 removes all: §3.7 keeps the largest (m = 1) or two largest.
    assert_pi(&pi(&x, p(0.65, 1)), &[1.0, 0.0, 0.0]);
    assert_pi(&pi(&x, p(0.65, 2)), &[6.0, 3.0, 0.0]);
}

#[test]
fn epsilon_sees_the_order_temperature() {
    // T = 0.5: q ∝ w² = [36, 9, 1]/46 = [.783, .196, .0217]. ε = .05:
    // standard (after temperature) removes token 2; llama_cpp (T = 1 there,
    // q = [.6, .3, .1]) keeps it, then π is taken at T = .5 ∝ [36, 9, 1].
    let x = ln(&[6.0, 3.0, 1.0]);
    let p = |order| SamplingParams {
        epsilon_cutoff: 0.05,
        temperature: 0.5,
        order,
        ..Default::default()
    };
    assert_pi(&pi(&x, p(Order::Standard)), &[36.0, 9.0, 0.0]);
    assert_pi(&pi(&x, p(Order::Vllm)), &[36.0, 9.0, 0.0]);
    assert_pi(&pi(&x, p(Order::LlamaCpp)), &[36.0, 9.0, 1.0]);
}

#[test]
fn eta_golden() {
    // q = [.5, .25, .25]: H = 1.5·ln 2 = 1.039721, e^(−H) = 2^(−1.5) = .353553.
    // η = .3: √.3·e^(−H) = .547723·.353553 = .193649 < .3, so the cutoff is
    // .193649 and the .25s stay (a plain ε = .3 would remove them).
    let x = ln(&[2.0, 1.0, 1.0]);
    let p = |eta: f32| SamplingParams {
        eta_cutoff: eta,
        ..Default::default()
    };
    assert_pi(&pi(&x, p(0.3)), &[2.0, 1.0, 1.0]);
    let eps = SamplingParams {
        epsilon_cutoff: 0.3,
        ..Default::default()
    };
    assert_pi(&pi(&x, eps), &[1.0, 0.0, 0.0]);
    // q = [.6, .3, .1]: H = .306495 + .361192 + .230259 = .897946;
    // η = .15: √.15·e^(−H) = .387298·.407400 = .157785, so the cutoff is
    // η = .15 and .1 goes.
    assert_pi(&pi(&ln(&[6.0, 3.0, 1.0]), p(0.15)), &[6.0, 3.0, 0.0]);
}

#[test]
fn epsilon_peer_hf_test_epsilon_dist_warper() {
    // HF test_epsilon_dist_warper: ε = .1 on [[.87, .099, .001, .03],
    // [.4, .299, .101, .2]] → [[.87, 0, 0, 0], all of row 2]; ε = 5e-2 with
    // min_tokens_to_keep 2 on the ramps → 3 and 2 kept.
    let p = |e: f32, m: u32| SamplingParams {
        epsilon_cutoff: e,
        min_tokens_to_keep: m,
        ..Default::default()
    };
    assert_eq!(kept(&pi(&ln(&[0.87, 0.099, 0.001, 0.03]), p(0.1, 1))), [0]);
    assert_eq!(
        kept(&pi(&ln(&[0.4, 0.299, 0.101, 0.2]), p(0.1, 1))),
        [0, 1, 2, 3]
    );
    let [r, r100] = ramps();
    assert_eq!(kept(&pi(&r, p(5e-2, 2))), [7, 8, 9]);
    assert_eq!(kept(&pi(&r100, p(5e-2, 2))), [8, 9]);
}

#[test]
fn eta_peer_hf_test_eta_dist_warper() {
    // HF test_eta_dist_warper: η = .0625 on [[0, .1, .8, .1], [.01, .04, .9,
    // .05]] → [[0, .1, .8, .1], [0, 0, .9, 0]] (cutoffs min(.0625, .1320) and
    // min(.0625, .1644)); the 0 is a masked (−inf) token here. η = .1 with
    // min_tokens_to_keep 2 on the ramps → 2 and 2 kept.
    let p = |e: f32, m: u32| SamplingParams {
        eta_cutoff: e,
        min_tokens_to_keep: m,
        ..Default::default()
    };
    assert_pi(
        &pi(&ln(&[0.0, 0.1, 0.8, 0.1]), p(0.0625, 1)),
        &[0.0, 0.1, 0.8, 0.1],
    );
    assert_eq!(kept(&pi(&ln(&[0.01, 0.04, 0.9, 0.05]), p(0.0625, 1))), [2]);
    for r in ramps() {
        assert_eq!(kept(&pi(&r, p(0.1, 2))), [8, 9]);
    }
}

// ------------------------------------------------------------------- XTC

fn xtc(prob: f32, threshold: f32) -> SamplingParams {
    SamplingParams {
        xtc_probability: prob,
        xtc_threshold: threshold,
        ..seeded()
    }
}

#[test]
fn xtc_golden() {
    // q = [.4, .3, .2, .1], θ = .25: A = {0, 1}, its least likely is token 1,
    // so token 0 goes: π ∝ [0, 3, 2, 1].
    let x = ln(&[4.0, 3.0, 2.0, 1.0]);
    assert_pi(&pi(&x, xtc(1.0, 0.25)), &[0.0, 3.0, 2.0, 1.0]);
    // θ > .5: at most one token reaches it, nothing goes.
    assert_pi(&pi(&x, xtc(1.0, 0.6)), &[4.0, 3.0, 2.0, 1.0]);
    // θ = 0: every token is in A; only the least likely stays.
    assert_pi(&pi(&x, xtc(1.0, 0.0)), &[0.0, 0.0, 0.0, 1.0]);
    // Ties: q = [.3, .3, .2, .2]. θ = .25: A = {0, 1} at one logit, nothing
    // is more likely than its least likely member, nothing goes. θ = .15:
    // A is all four, the .2s are its least likely, both stay.
    let t = ln(&[3.0, 3.0, 2.0, 2.0]);
    assert_pi(&pi(&t, xtc(1.0, 0.25)), &[3.0, 3.0, 2.0, 2.0]);
    assert_pi(&pi(&t, xtc(1.0, 0.15)), &[0.0, 0.0, 1.0, 1.0]);
    // All or nothing: θ = .25 would leave 3 < min_tokens_to_keep 4.
    let m4 = SamplingParams {
        min_tokens_to_keep: 4,
        ..xtc(1.0, 0.25)
    };
    assert_pi(&pi(&x, m4), &[4.0, 3.0, 2.0, 1.0]);
    // One finite token: nothing to exclude.
    let one = ln(&[1.0, 0.0, 0.0]);
    assert_pi(&pi(&one, xtc(1.0, 0.0)), &[1.0, 0.0, 0.0]);
}

#[test]
fn greedy_rows_ignore_the_stages_that_remove_the_top_token() {
    // docs/spec.md §3.9: T = 0 is the argmax after stages 1–2 in every order,
    // though XTC (θ = .25) and typical (.25) would remove token 0 of
    // [.4, .3, .2, .1].
    let x = ln(&[4.0, 3.0, 2.0, 1.0]);
    for order in Order::ALL {
        for p in [
            xtc(1.0, 0.25),
            SamplingParams {
                typical_p: 0.25,
                ..seeded()
            },
        ] {
            let p = SamplingParams {
                temperature: 0.0,
                order,
                ..p
            };
            assert_pi(&pi(&x, p.clone()), &[1.0, 0.0, 0.0, 0.0]);
            assert_eq!(sample(&x, p, 1).token, 0);
        }
    }
}

#[test]
fn xtc_sees_the_order_temperature() {
    // T = .5: q ∝ [16, 9, 4, 1]/30 = [.533, .3, .133, .033]. θ = .15:
    // standard: A = {0, 1}, token 0 goes → π ∝ [0, 9, 4, 1];
    // llama_cpp (T = 1: [.4, .3, .2, .1]): A = {0, 1, 2}, tokens 0 and 1 go →
    // π at T = .5 ∝ [0, 0, 4, 1].
    let x = ln(&[4.0, 3.0, 2.0, 1.0]);
    let p = |order| SamplingParams {
        temperature: 0.5,
        order,
        ..xtc(1.0, 0.15)
    };
    assert_pi(&pi(&x, p(Order::Standard)), &[0.0, 9.0, 4.0, 1.0]);
    assert_pi(&pi(&x, p(Order::LlamaCpp)), &[0.0, 0.0, 4.0, 1.0]);
}

#[test]
fn xtc_coin_is_the_philox_counter_word_3() {
    // The coin for (seed, step) is Philox at counter (step, 0, 1): find a
    // step where it is below .5 and one where it is not, and check that XTC
    // acts exactly on the first (θ = .25 removes token 0 of [.4, .3, .2, .1]).
    let x = ln(&[4.0, 3.0, 2.0, 1.0]);
    let seed = 11;
    let below = (0..64).find(|&s| xtc_uniform(seed, s) < 0.5).unwrap();
    let above = (0..64).find(|&s| xtc_uniform(seed, s) >= 0.5).unwrap();
    let p = |step| SamplingParams {
        seed: Some(seed),
        step,
        ..xtc(0.5, 0.25)
    };
    assert_eq!(kept(&pi(&x, p(below))), [1, 2, 3]);
    assert_eq!(kept(&pi(&x, p(above))), [0, 1, 2, 3]);
    // The coin is not the token draw of the same (seed, step).
    assert_ne!(xtc_uniform(seed, below), uniform(seed, below, 0));
    // The trace says whether XTC ran.
    let pr = process_row(0, &x, &p(below), Overrides::default()).unwrap();
    assert_eq!(pr.trace.last().map(|t| t.stage), Some(Stage::Xtc));
    let pr = process_row(0, &x, &p(above), Overrides::default()).unwrap();
    assert!(pr.trace.iter().all(|t| t.stage != Stage::Xtc));
}

#[test]
fn xtc_peer_llama_cpp_test_xtc() {
    // llama.cpp test_xtc, input [.4, .3, .2, .1], probability .99 with
    // thresholds .09 → {.1}; .19 → {.2, .1}; .29 → {.3, .2, .1}; .39 →
    // unchanged. llama.cpp's .99 passes its mt19937 coin; our coin is Philox
    // (§3.13), so the transcription uses probability 1 (always).
    let x = ln(&[0.4, 0.3, 0.2, 0.1]);
    assert_eq!(kept(&pi(&x, xtc(1.0, 0.09))), [3]);
    assert_eq!(kept(&pi(&x, xtc(1.0, 0.19))), [2, 3]);
    assert_eq!(kept(&pi(&x, xtc(1.0, 0.29))), [1, 2, 3]);
    assert_eq!(kept(&pi(&x, xtc(1.0, 0.39))), [0, 1, 2, 3]);
    assert_pi(&pi(&x, xtc(1.0, 0.19)), &[0.0, 0.0, 0.2, 0.1]);
}

// ------------------------------------------------------------------- DRY

fn dry(history: &[u32], m: f32, b: f32, allowed: u32, last_n: i32) -> SamplingParams {
    SamplingParams {
        history: history.to_vec(),
        dry_multiplier: m,
        dry_base: b,
        dry_allowed_length: allowed,
        dry_penalty_last_n: last_n,
        ..Default::default()
    }
}

#[test]
fn dry_golden() {
    // Sequence 5 1 2 3 5 1 2, allowed 2, M = 1, b = 2: the suffix "5 1 2"
    // (length 3) also ends at position 2, followed by 3: token 3 gets
    // 1·2^(3−2) = 2. No other earlier position ends in 2.
    let h = [5, 1, 2, 3, 5, 1, 2];
    let got: Vec<(u32, f64)> = dry_penalties(&dry(&h, 1.0, 2.0, 2, -1))
        .into_iter()
        .collect();
    assert_eq!(got, [(3, 2.0)]);
    // With breaker 5 the repeat cannot reach back past the 5 two tokens from
    // the end: L = 2, penalty 2^0 = 1.
    let brk = SamplingParams {
        dry_sequence_breakers: vec![5],
        ..dry(&h, 1.0, 2.0, 2, -1)
    };
    let got: Vec<(u32, f64)> = dry_penalties(&brk).into_iter().collect();
    assert_eq!(got, [(3, 1.0)]);
    // A window of the last 3 tokens (5 1 2) holds no earlier match.
    assert!(dry_penalties(&dry(&h, 1.0, 2.0, 2, 3)).is_empty());
    // dry_penalty_last_n 0 is off.
    assert!(dry_penalties(&dry(&h, 1.0, 2.0, 2, 0)).is_empty());
    // The prompt comes first: prompt 1 2 3, history 4 1 2 → "1 2" repeats,
    // followed by 3, which gets M = .5.
    let pr = SamplingParams {
        prompt_token_ids: vec![1, 2, 3],
        ..dry(&[4, 1, 2], 0.5, 1.75, 2, -1)
    };
    let got: Vec<(u32, f64)> = dry_penalties(&pr).into_iter().collect();
    assert_eq!(got, [(3, 0.5)]);
    // A huge repeat is capped at 2^23 rather than failing the row.
    let long: Vec<u32> = (0..200).map(|i| i % 2).collect();
    let capped = dry_penalties(&dry(&long, 1.0, 1.75, 2, -1));
    assert_eq!(capped.values().copied().collect::<Vec<_>>(), [8_388_608.0]);
}

#[test]
fn common_suffixes_match_their_definition() {
    // L_j = the longest common suffix of w[..=j] and w, by direct comparison,
    // against the linear-time version, on sequences over small alphabets
    // (many repeats) from a fixed LCG.
    let naive = |w: &[u32]| -> Vec<usize> {
        let n = w.len();
        (0..n)
            .map(|j| {
                let mut len = 0;
                while len <= j && w[j - len] == w[n - 1 - len] {
                    len += 1;
                }
                len
            })
            .collect()
    };
    let mut state = 12345u64;
    for case in 0..300 {
        let n = case % 40;
        let alphabet = 1 + (case % 4) as u64;
        let w: Vec<u32> = (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                ((state >> 33) % alphabet) as u32
            })
            .collect();
        assert_eq!(common_suffixes(&w), naive(&w), "{w:?}");
    }
    // A long run of one token is linear, not quadratic.
    let long = vec![7u32; 200_000];
    let s = common_suffixes(&long);
    assert_eq!((s[0], s[199_998]), (1, 199_999));
}

#[test]
fn dry_runs_after_the_other_penalties() {
    // V = 6, logits 0 except token 3 = 1; history 5 1 2 3 5 1 2 makes DRY
    // subtract 2 from token 3 (dry_golden). Repetition penalty 2 first:
    // 1/2 = .5, then DRY: −1.5. (DRY first would give (1 − 2)·2 = −2.)
    // π ∝ [1, 1, 1, e^−1.5, 1, 1].
    let mut x = vec![0.0f32; 6];
    x[3] = 1.0;
    let p = SamplingParams {
        repetition_penalty: 2.0,
        ..dry(&[5, 1, 2, 3, 5, 1, 2], 1.0, 2.0, 2, -1)
    };
    let w = (-1.5f64).exp();
    assert_pi(&pi(&x, p), &[1.0, 1.0, 1.0, w, 1.0, 1.0]);
    // A masked token stays masked.
    x[3] = f32::NEG_INFINITY;
    let p = dry(&[5, 1, 2, 3, 5, 1, 2], 1.0, 2.0, 2, -1);
    assert_eq!(pi(&x, p)[3], 0.0);
}

#[test]
fn dry_peer_llama_cpp_test_dry() {
    // llama.cpp test_dry, the accepted tokens as our history (no prompt):
    // 1. [.25 × 4], tokens 0 1, M 1, b 1.1, allowed 2, last 4 → unchanged.
    // 2. tokens 0 1 2 0 1, last 5 → [.296923, .296923, .109232, .296923].
    // 3. [.2 × 5], tokens 0 1 3 4 0 1, last 6, breaker {3} → unchanged.
    // 4. tokens 0 1 2 0 1, M 2 → [.241818, .241818, .032727, .241818, .241818].
    // 5. tokens 0 1 2 3 4 0 1, allowed 4, last 7 → unchanged.
    let q4 = ln(&[0.25; 4]);
    let q5 = ln(&[0.2; 5]);
    assert_pi(&pi(&q4, dry(&[0, 1], 1.0, 1.1, 2, 4)), &[1.0; 4]);
    assert_pi(
        &pi(&q4, dry(&[0, 1, 2, 0, 1], 1.0, 1.1, 2, 5)),
        &[0.296923, 0.296923, 0.109232, 0.296923],
    );
    let brk = SamplingParams {
        dry_sequence_breakers: vec![3],
        ..dry(&[0, 1, 3, 4, 0, 1], 1.0, 1.1, 2, 6)
    };
    assert_pi(&pi(&q5, brk), &[1.0; 5]);
    assert_pi(
        &pi(&q5, dry(&[0, 1, 2, 0, 1], 2.0, 1.1, 2, 5)),
        &[0.241818, 0.241818, 0.032727, 0.241818, 0.241818],
    );
    assert_pi(
        &pi(&q5, dry(&[0, 1, 2, 3, 4, 0, 1], 1.0, 1.1, 4, 7)),
        &[1.0; 5],
    );
}

// -------------------------------------------------------------- mirostat

fn miro(version: u8, tau: f32, eta: f32, mu: Option<f32>) -> SamplingParams {
    SamplingParams {
        mirostat: Some(Mirostat {
            version,
            tau,
            eta,
            mu,
        }),
        ..seeded()
    }
}

#[test]
fn mirostat_v2_golden() {
    // q = [.5, .25, .125, .125]: surprises 1, 2, 3, 3 bits. mu = 2.5 keeps
    // {0, 1}: π = [2/3, 1/3]. The default mu is 2·tau: tau 1.25 gives 2.5.
    let x = ln(&[4.0, 2.0, 1.0, 1.0]);
    for p in [miro(2, 1.25, 0.1, Some(2.5)), miro(2, 1.25, 0.1, None)] {
        let r = probs(&x, p.clone());
        assert_pi(&r.probs, &[2.0, 1.0, 0.0, 0.0]);
        assert_eq!(r.mirostat_mu, Some(2.5));
        // Draw 0 is token 0 when u < 2/3 (§3.8). mu' = mu − eta·(surprise − tau)
        // with the surprise over π: token 0: −log2(2/3) = .584963 →
        // 2.5 − .1·(.584963 − 1.25) = 2.566504; token 1: −log2(1/3) =
        // 1.584963 → 2.5 − .1·(1.584963 − 1.25) = 2.466504.
        let u = uniform(7, 0, 0);
        let s = sample(&x, p, 3);
        let (token, mu) = if u < 2.0 / 3.0 {
            (0, 2.566504)
        } else {
            (1, 2.466504)
        };
        assert_eq!(s.token, token);
        assert!((s.mirostat_mu.unwrap() - mu).abs() < 1e-6, "{s:?}");
        // Draws 1 and 2 come from the same π and do not move mu.
        assert_eq!(s.draws.len(), 3);
    }
    // mu = .5: no token has surprise ≤ .5, the most likely stays, π = [1, 0, 0, 0],
    // surprise 0: mu' = .5 − .1·(0 − 3) = .8.
    let s = sample(&x, miro(2, 3.0, 0.1, Some(0.5)), 1);
    assert_eq!(s.token, 0);
    assert!((s.mirostat_mu.unwrap() - 0.8).abs() < 1e-7);
    // Greedy: π_token = 1, mu' = mu + eta·tau = 1 + .5·2 = 2.
    let g = SamplingParams {
        temperature: 0.0,
        ..miro(2, 2.0, 0.5, Some(1.0))
    };
    let s = sample(&x, g, 1);
    assert_eq!((s.token, s.mirostat_mu), (0, Some(2.0)));
}

#[test]
fn mirostat_runs_after_temperature_in_every_order() {
    // q at T = 1: [.5, .25, .125, .125], surprises 1, 2, 3, 3 bits: mu = 2.2
    // keeps {0, 1}. At T = .5, q ∝ [16, 4, 1, 1]/22: surprises .459, 2.459,
    // 4.459: only token 0. Mirostat replaces truncation in every order, so
    // llama_cpp order applies T first too.
    let x = ln(&[4.0, 2.0, 1.0, 1.0]);
    assert_pi(&pi(&x, miro(2, 5.0, 0.1, Some(2.2))), &[2.0, 1.0, 0.0, 0.0]);
    for order in Order::ALL {
        let p = SamplingParams {
            temperature: 0.5,
            order,
            ..miro(2, 5.0, 0.1, Some(2.2))
        };
        assert_pi(&pi(&x, p), &[1.0, 0.0, 0.0, 0.0]);
    }
    // Penalties apply first (llama.cpp's mirostat chain would skip them,
    // §3.15): presence ln 2 on token 0 (history [0]) makes q = [2, 2, 1, 1]/6,
    // surprises 1.585, 1.585, 2.585, 2.585: mu = 2.2 keeps {0, 1} at [.5, .5].
    let p = SamplingParams {
        presence_penalty: std::f32::consts::LN_2,
        history: vec![0],
        ..miro(2, 5.0, 0.1, Some(2.2))
    };
    assert_pi(&pi(&x, p), &[1.0, 1.0, 0.0, 0.0]);
}

#[test]
fn mirostat_v1_golden() {
    // Zipf with exponent 2: w ∝ 1/(i+1)² = [36, 9, 4, 2.25]. Then
    // b_i = ln(q_i/q_{i+1}) = 2·t_i, so ŝ = 2, ε̂ = 1, V = 4 and
    // k = (2^mu / (1 − 4^−1))^(1/2) = (2^mu/.75)^.5:
    // mu = 2: (5.333)^.5 = 2.309 → k = 2, π ∝ [36, 9];
    // mu = 3: (10.667)^.5 = 3.266 → k = 3;  mu = 4: 4.619 → k = 4 (all).
    let x = ln(&[36.0, 9.0, 4.0, 2.25]);
    assert_pi(
        &pi(&x, miro(1, 5.0, 0.1, Some(2.0))),
        &[36.0, 9.0, 0.0, 0.0],
    );
    assert_eq!(kept(&pi(&x, miro(1, 5.0, 0.1, Some(3.0)))), [0, 1, 2]);
    assert_eq!(kept(&pi(&x, miro(1, 5.0, 0.1, Some(4.0)))), [0, 1, 2, 3]);
    // Zipf with exponent 1 (ε̂ ≈ 0, where llama.cpp's formula is 0/0; the
    // limit is 2^mu/ln V): w = [12, 6, 4, 3], ln 4 = 1.386294:
    // mu = 1: 2/1.386 = 1.443 → k = 1; mu = 2: 2.885 → k = 2.
    let z1 = ln(&[12.0, 6.0, 4.0, 3.0]);
    assert_eq!(kept(&pi(&z1, miro(1, 5.0, 0.1, Some(1.0)))), [0]);
    assert_pi(
        &pi(&z1, miro(1, 5.0, 0.1, Some(2.0))),
        &[12.0, 6.0, 0.0, 0.0],
    );
    // mu update: k = 1 gives π = [1], surprise 0: mu' = 1 − .1·(0 − 5) = 1.5.
    let s = sample(&z1, miro(1, 5.0, 0.1, Some(1.0)), 1);
    assert_eq!(s.token, 0);
    assert!((s.mirostat_mu.unwrap() - 1.5).abs() < 1e-7);
    // One finite token: k = 1 (no ratio to estimate ŝ from).
    let one = ln(&[1.0, 0.0, 0.0]);
    assert_pi(&pi(&one, miro(1, 5.0, 0.1, None)), &[1.0, 0.0, 0.0]);
    // Rows without mirostat report no mu.
    assert_eq!(sample(&x, seeded(), 1).mirostat_mu, None);
    assert_eq!(probs(&x, seeded()).mirostat_mu, None);
}

// ------------------------------------------------------------ the errors

#[test]
fn bad_values_name_row_and_field() {
    let x = [0.0f32; 4];
    let batch = token_sampler::Batch::from_rows(&[x.to_vec(), x.to_vec()]).unwrap();
    let cases: Vec<(SamplingParams, &str)> = vec![
        (
            SamplingParams {
                typical_p: 0.0,
                ..Default::default()
            },
            "typical_p",
        ),
        (
            SamplingParams {
                eta_cutoff: 1.0,
                ..Default::default()
            },
            "eta_cutoff",
        ),
        (
            SamplingParams {
                dry_sequence_breakers: vec![4],
                ..Default::default()
            },
            "dry_sequence_breakers",
        ),
        (miro(2, f32::NAN, 0.1, None), "mirostat.tau"),
        (miro(2, 5.0, 0.1, Some(f32::INFINITY)), "mirostat.mu"),
        (
            SamplingParams {
                min_p: 0.1,
                ..miro(1, 5.0, 0.1, None)
            },
            "min_p",
        ),
    ];
    for (bad, field) in cases {
        let e = ReferenceSampler::new()
            .probs(batch.view(), &[SamplingParams::default(), bad])
            .unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(
                e,
                SamplerError::InvalidParam { row: 1, .. }
                    | SamplerError::TokenOutOfRange { row: 1, .. }
            ) && text.contains(field),
            "{text}"
        );
    }
}

#[test]
fn cpu_backend_runs_them_as_the_reference_does() {
    // The cpu backend runs the extended samplers (src/cpu/extended.rs) with
    // the reference's formulas: the same π, kept count, draws and mu, in a
    // batch beside a plain row.
    let x = ln(&[4.0, 3.0, 2.0, 1.0]);
    let batch = token_sampler::Batch::from_rows(&[x.clone(), x]).unwrap();
    let mut cpu = CpuSampler::new();
    let mut reference = ReferenceSampler::new();
    for p in [
        xtc(1.0, 0.25),
        miro(2, 5.0, 0.1, None),
        miro(1, 1.0, 0.1, Some(2.0)),
        dry(&[0, 1, 0], 1.0, 1.75, 1, -1),
    ] {
        let params = [seeded(), SamplingParams { seed: Some(9), ..p }];
        let want = reference.sample(batch.view(), &params, 8).unwrap();
        let got = cpu.sample(batch.view(), &params, 8).unwrap();
        assert_eq!(got[1].draws, want[1].draws, "{:?}", params[1]);
        assert_eq!(got[1].kept, want[1].kept, "{:?}", params[1]);
        assert_eq!(got[1].mirostat_mu, want[1].mirostat_mu, "{:?}", params[1]);
        let want = reference.probs(batch.view(), &params).unwrap();
        let got = cpu.probs(batch.view(), &params).unwrap();
        for (a, b) in got[1].probs.iter().zip(&want[1].probs) {
            assert!((a - b).abs() <= 1e-12, "{:?}", params[1]);
        }
    }
}

// ------------------------------------------------------ random robustness

#[test]
fn random_rows_never_panic_and_give_a_distribution() {
    // Random valid parameters of every new sampler, in every order, over
    // logits with ties, masked tokens and extreme values: each row is Ok or a
    // typed error, π sums to 1 without NaN, draws fall inside the kept set,
    // and mirostat rows report a finite mu. A fixed LCG draws the cases.
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut sampler = ReferenceSampler::new();
    let mut ok = 0;
    for case in 0..400 {
        let v = 1 + (next() * 12.0) as usize;
        let x: Vec<f32> = (0..v)
            .map(|_| match (next() * 10.0) as u32 {
                0 => f32::NEG_INFINITY,
                1 => 3.0e38,
                2 => -3.0e38,
                3 => 1.0,
                _ => (next() * 20.0 - 10.0) as f32,
            })
            .collect();
        let id = |u: f64| ((u * v as f64) as u32).min(v as u32 - 1);
        let history: Vec<u32> = (0..(next() * 12.0) as usize).map(|_| id(next())).collect();
        let mut p = SamplingParams {
            seed: Some(case),
            temperature: [0.0, 0.3, 1.0, 2.5][(next() * 4.0) as usize],
            order: Order::ALL[(next() * 3.0) as usize],
            min_tokens_to_keep: 1 + (next() * 3.0) as u32,
            history,
            ..Default::default()
        };
        if next() < 0.3 {
            p.mirostat = Some(Mirostat {
                version: 1 + (next() * 2.0) as u8,
                tau: (next() * 8.0) as f32,
                eta: next() as f32,
                mu: (next() < 0.5).then(|| (next() * 40.0 - 10.0) as f32),
            });
        } else {
            p.typical_p = if next() < 0.5 {
                1.0
            } else {
                0.05 + 0.95 * next() as f32
            };
            p.top_n_sigma = (next() * 4.0 - 1.0) as f32;
            p.xtc_probability = if next() < 0.5 { 0.0 } else { next() as f32 };
            p.xtc_threshold = next() as f32;
            p.epsilon_cutoff = if next() < 0.5 {
                0.0
            } else {
                (next() * 0.5) as f32
            };
            p.eta_cutoff = if next() < 0.5 {
                0.0
            } else {
                (next() * 0.5) as f32
            };
            p.top_k = (next() * 5.0) as i32;
        }
        if next() < 0.5 {
            p.dry_multiplier = (next() * 3.0) as f32;
            p.dry_base = 1.0 + (next() * 3.0) as f32;
            p.dry_allowed_length = (next() * 3.0) as u32;
            p.dry_penalty_last_n = (next() * 10.0) as i32 - 1;
            p.dry_sequence_breakers = (0..(next() * 2.0) as usize).map(|_| id(next())).collect();
        }
        let batch = one_row(&x);
        let is_mirostat = p.mirostat.is_some();
        match sampler.sample(batch.view(), &[p.clone()], 2) {
            Ok(mut rows) => {
                let r = rows.remove(0);
                let pr = probs(&x, p);
                let total: f64 = pr.probs.iter().sum();
                assert!((total - 1.0).abs() < 1e-9, "case {case}: Σπ = {total}");
                assert!(pr.probs.iter().all(|q| q.is_finite()), "case {case}");
                for &d in &r.draws {
                    assert!(pr.probs[d as usize] > 0.0, "case {case}: draw {d}");
                }
                assert_eq!(r.mirostat_mu.is_some(), is_mirostat, "case {case}");
                assert!(r.mirostat_mu.is_none_or(f64::is_finite), "case {case}");
                ok += 1;
            }
            Err(
                SamplerError::AllMasked { .. }
                | SamplerError::NonFiniteLogit { .. }
                | SamplerError::InvalidParam { .. },
            ) => {}
            Err(e) => panic!("case {case}: unexpected {e}"),
        }
    }
    assert!(ok > 200, "only {ok} of 400 rows sampled");
}

// ------------------------------------------------- the goldens as shared data

#[test]
fn shared_goldens_on_the_reference_and_cpu() {
    // tests/sampler_cases holds the goldens above (DRY aside) as data, the
    // cases tests/gpu_extended.rs runs on the gpu backend: here they run on
    // the reference and cpu backends, so the data and the derivations agree.
    let goldens = sampler_cases::goldens();
    assert!(goldens.len() > 60, "{}", goldens.len());
    for g in &goldens {
        sampler_cases::check(&mut ReferenceSampler::new(), g);
        sampler_cases::check(&mut CpuSampler::new(), g);
    }
}
