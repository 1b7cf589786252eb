//! The shared hand-derived goldens (tests/common/bodies.rs) on the reference
//! backend, plus reference-only checks of its stage trace.

mod common;

use token_sampler::reference::{process_row, Overrides};
use token_sampler::{ReferenceSampler, Sampler, SamplingParams, Stage};

fn reference() -> Option<Box<dyn Sampler>> {
    Some(Box::new(ReferenceSampler::new()))
}

backend_tests!(reference());

#[test]
fn trace_reports_thresholds_and_top_p_cut() {
    // Weights [4, 2, 1, 1], top-k 3 (threshold ln 1 = 0, ties keep 4), then
    // top-p 0.75 (cut after token 1: mass above the cut value .5, at-or-above .75).
    let x = common::ln(&[4.0, 2.0, 1.0, 1.0]);
    let p = SamplingParams {
        top_k: 3,
        top_p: 0.75,
        ..Default::default()
    };
    let pr = process_row(0, &x, &p, Overrides::default()).unwrap();
    assert_eq!(pr.trace.len(), 2);
    assert_eq!(pr.trace[0].stage, Stage::TopK);
    assert_eq!((pr.trace[0].before, pr.trace[0].after), (4, 4));
    assert_eq!(pr.trace[0].threshold, 0.0);
    let cut = pr.trace[1].top_p_cut.unwrap();
    assert!((cut.mass_above - 0.5).abs() < 1e-7 && (cut.mass_at_or_above - 0.75).abs() < 1e-7);
    assert_eq!(pr.trace[1].after, 2);
    assert!((pr.trace[1].threshold - 2f64.ln()).abs() < 1e-6);
}

#[test]
fn overrides_evaluate_at_a_given_temperature() {
    // π at T = 0.5 for weights [4, 2, 1, 1]: ∝ [16, 4, 1, 1].
    let x = common::ln(&[4.0, 2.0, 1.0, 1.0]);
    let pr = process_row(
        0,
        &x,
        &SamplingParams::default(),
        Overrides {
            temperature: Some(0.5),
            top_p: None,
        },
    )
    .unwrap();
    common::assert_pi(&pr.pi, &[16.0, 4.0, 1.0, 1.0]);
    assert_eq!(pr.temperature, 0.5);
}
