//! Test bodies shared by every backend (one case, every backend: cubecl's
//! `testgen`, candle's `test_device!`). Each body takes a `&mut dyn Sampler`
//! and asserts hand-derived values with tolerances an f32 backend meets
//! (docs/spec.md §7: π within 1e-5, logprob within 1e-4, entropy within 1e-4).
//!
//! A test file instantiates them with
//! `backend_tests!(make_sampler());` where `make_sampler()` returns
//! `Option<Box<dyn Sampler>>` (`None` only when a GPU is missing and
//! `REQUIRE_GPU` is not set; the maker prints a loud notice).

#![allow(dead_code)]

pub mod bodies;

use token_sampler::{Batch, RowProbs, RowResult, Sampler, SamplingParams};

/// Instantiates every shared body as a `#[test]` for one backend.
#[macro_export]
macro_rules! backend_tests {
    ($make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                if let Some(mut sampler) = $make {
                    $crate::common::bodies::$name(&mut *sampler);
                }
            }
        )*
    };
    ($make:expr) => {
        $crate::backend_tests!($make;
            temperature_sweep,
            top_k_keeps_ties_at_the_boundary,
            top_p_exact_cumulative_boundary,
            top_p_keeps_tied_group,
            top_p_off_at_one,
            min_p_closed_form,
            repetition_penalty_positive_and_negative,
            presence_vs_frequency_with_repeated_history,
            prompt_tokens_only_get_repetition_penalty,
            bias_and_allowed_mask,
            all_masked_row_is_an_error,
            invalid_logits_name_row_and_index,
            bias_overflow_is_an_error,
            param_count_mismatch_is_an_error,
            greedy_lowest_id_among_equal_maxima,
            greedy_result_fields,
            dynamic_linear_bits_and_clip,
            dynamic_normalized_and_sigmoid,
            dynamic_lut,
            dynamic_edt_and_zero_entropy,
            dynamic_llama_cpp_mapping,
            dynamic_top_p,
            order_standard_vs_vllm,
            order_standard_vs_llama_cpp,
            min_tokens_to_keep_each_stage,
            logprobs_raw_and_processed,
            inverse_cdf_draws_follow_u,
            draws_repeat_for_equal_seed_and_step,
            statistics_of_many_draws,
            batch_invariance,
            masked_inputs_stay_masked,
            sequence_state_matches_whole_history,
            sequence_state_window_and_accept,
            sequence_state_errors_name_the_field,
        );
    };
}

/// Natural logs of the given weights: softmax of the result is `w / Σw`, which
/// makes hand derivation exact.
pub fn ln(w: &[f64]) -> Vec<f32> {
    w.iter()
        .map(|&v| {
            if v == 0.0 {
                f32::NEG_INFINITY
            } else {
                v.ln() as f32
            }
        })
        .collect()
}

pub fn one_row(x: &[f32]) -> Batch {
    Batch::from_rows(&[x.to_vec()]).unwrap()
}

pub fn probs1(s: &mut dyn Sampler, x: &[f32], p: SamplingParams) -> RowProbs {
    s.probs(one_row(x).view(), &[p]).unwrap().remove(0)
}

pub fn sample1(s: &mut dyn Sampler, x: &[f32], p: SamplingParams, n: u32) -> RowResult {
    s.sample(one_row(x).view(), &[p], n).unwrap().remove(0)
}

/// `pi` equals `expected` (weights, normalised here) within 1e-5 per entry.
#[track_caller]
pub fn assert_pi(pi: &[f64], expected_weights: &[f64]) {
    let total: f64 = expected_weights.iter().sum();
    assert_eq!(pi.len(), expected_weights.len());
    for (i, (&a, &w)) in pi.iter().zip(expected_weights).enumerate() {
        let e = w / total;
        assert!(
            (a - e).abs() <= 1e-5,
            "π[{i}] = {a}, expected {e} (all: {pi:?})"
        );
    }
}

#[track_caller]
pub fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
    assert!(
        (a - b).abs() <= tol,
        "{what}: {a} vs expected {b} (tolerance {tol})"
    );
}

/// Seeded normal(0, σ) logits without a dependency: Box–Muller over Philox.
pub fn normal_logits(rows: usize, vocab: usize, sigma: f64, seed: u64) -> Batch {
    let mut data = Vec::with_capacity(rows * vocab);
    for i in 0..rows * vocab {
        let u1 = token_sampler::rng::uniform(seed, i as u64, 0).max(1e-9);
        let u2 = token_sampler::rng::uniform(seed, i as u64, 1);
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        data.push((sigma * z) as f32);
    }
    Batch::new(data, rows, vocab).unwrap()
}
