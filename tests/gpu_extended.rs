//! The samplers of docs/spec.md §3.10–3.15 on the gpu backend (lavapipe in
//! CI; REQUIRE_GPU=1 makes a missing adapter a failure, never a skip):
//!
//! * the hand-derived goldens of tests/reference_samplers.rs for top-nσ,
//!   typical, ε, η, XTC and mirostat (tests/sampler_cases, the data the
//!   reference and cpu backends run too): the same π, kept sets, tokens and
//!   `mirostat_mu`;
//! * the differential suite of src/validate.rs with the extended samplers
//!   drawn (`SuiteConfig::extended`, DRY included), compared as docs/spec.md
//!   §7 says, at small vocabularies (a few thousand rows) and at 32 000 and
//!   131 072 (a few dozen rows);
//! * batch invariance: a row with extended parameters gives the same bits
//!   alone and at several positions in a batch of other rows.
//!
//! The race check under every lane order is in tests/gpu_lane_orders.rs.
//! Sized for CI's 2-core machine with a software GPU: the whole binary is
//! meant to take well under 90 s there.

#![cfg(feature = "gpu")]

mod common;
mod gpu_support;
mod sampler_cases;

use gpu_support::open_gpu;
use sampler_cases::extended_rows;
use token_sampler::validate::{normal_batch, run_suite, Report, SuiteConfig};
use token_sampler::{Batch, Sampler, SamplingParams};

/// Runs the suite on `s`, prints its table and asserts docs/spec.md §7.
fn suite(s: &mut dyn Sampler, cfg: &SuiteConfig) -> Report {
    let report = run_suite(s, cfg, &mut |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
    println!("{report}");
    assert!(report.ok(), "{report}");
    report
}

/// The goldens: same π, kept sets, tokens and mu as derived by hand.
fn goldens_body(s: &mut dyn Sampler) {
    for g in &sampler_cases::goldens() {
        sampler_cases::check(s, g);
    }
}

/// 800 rows at V ≤ 4096, batches of 1–128 rows: lavapipe on CI's 2 cores
/// takes about 40 ms a row here, so the few thousand rows of
/// tests/gpu_vs_reference.rs would not fit this binary's 90 s; the
/// full-size run is `token-sampler validate --backend gpu`.
fn small_suite_body(s: &mut dyn Sampler) {
    let cfg = SuiteConfig {
        seed: 20_261_207,
        cases: 400,
        vocabs: vec![2, 9, 64, 500, 4096],
        max_batch: 128,
        max_rows_per_vocab: 160,
        extended: true,
    };
    let report = suite(s, &cfg);
    assert_eq!(report.total.rows, 5 * 160);
}

/// A few dozen rows at 32 000 and 131 072.
fn large_suite_body(s: &mut dyn Sampler) {
    let cfg = SuiteConfig {
        seed: 20_261_207,
        cases: 24,
        vocabs: vec![32_000, 131_072],
        max_batch: 8,
        max_rows_per_vocab: 24,
        extended: true,
    };
    let report = suite(s, &cfg);
    assert_eq!(report.total.rows, 2 * 24);
}

/// Every result of a batch as text: f64s print exactly, so equal text is
/// equal bits.
fn results(s: &mut dyn Sampler, b: &Batch, p: &[SamplingParams]) -> Vec<String> {
    let sampled = s.sample(b.view(), p, 3).unwrap_or_else(|e| panic!("{e}"));
    let probs = s.probs(b.view(), p).unwrap_or_else(|e| panic!("{e}"));
    sampled
        .iter()
        .map(|r| format!("{r:?}"))
        .zip(probs.iter().map(|r| format!("{r:?}")))
        .map(|(a, b)| a + &b)
        .collect()
}

/// Each extended row alone, then at positions 0, 2 and 3 of a batch of 4
/// whose other rows are plain and extended rows of other logits.
fn batch_invariance_body(s: &mut dyn Sampler) {
    let vocab = 1000;
    let rows = extended_rows();
    let own = normal_batch(rows.len(), vocab, 3.0, 41);
    let others = normal_batch(4, vocab, 2.0, 43);
    let mut fill: Vec<SamplingParams> = vec![
        SamplingParams {
            top_p: 0.9,
            seed: Some(100),
            ..Default::default()
        },
        SamplingParams {
            top_k: 40,
            seed: Some(101),
            ..Default::default()
        },
    ];
    fill.extend(extended_rows().into_iter().rev().map(|p| SamplingParams {
        seed: p.seed.map(|s| s + 1000),
        ..p
    }));
    for (i, p) in rows.iter().enumerate() {
        let x = own.row(i);
        let alone = results(s, &Batch::from_rows(&[x]).unwrap(), std::slice::from_ref(p));
        for (k, pos) in [0, 2, 3].into_iter().enumerate() {
            let mut data: Vec<&[f32]> = (0..4).map(|r| others.row(r)).collect();
            // Other neighbours at each position.
            let mut params: Vec<SamplingParams> = fill[2 * k..2 * k + 4].to_vec();
            data[pos] = x;
            params[pos] = p.clone();
            let got = results(s, &Batch::from_rows(&data).unwrap(), &params);
            assert_eq!(got[pos], alone[0], "row {i} ({p:?}) at position {pos}");
        }
    }
}

/// The extended rows of [`extended_rows`] do what their names say on these
/// logits (XTC fires, every stage removes something), on the reference.
#[test]
fn the_extended_rows_exercise_their_stages() {
    use token_sampler::reference::{process_row, Overrides};
    let vocab = 1000;
    let own = normal_batch(extended_rows().len(), vocab, 3.0, 41);
    for (i, p) in extended_rows().iter().enumerate() {
        let pr = process_row(i, own.row(i), p, Overrides::default()).unwrap();
        assert!(pr.kept_count < pr.finite, "row {i}: nothing removed");
        assert!(pr.kept_count > 1, "row {i}: one token left");
        if p.xtc_probability > 0.0 {
            let xtc = pr.trace.iter().find(|t| t.xtc_cut.is_some());
            assert!(xtc.is_some_and(|t| t.after < t.before), "row {i}: XTC idle");
        }
    }
}

#[test]
fn goldens() {
    if let Some(mut g) = open_gpu() {
        goldens_body(&mut *g);
    }
}

#[test]
fn differential_suite_small_vocabularies() {
    if let Some(mut g) = open_gpu() {
        small_suite_body(&mut *g);
    }
}

#[test]
fn differential_suite_large_vocabularies() {
    if let Some(mut g) = open_gpu() {
        large_suite_body(&mut *g);
    }
}

#[test]
fn batch_invariance() {
    if let Some(mut g) = open_gpu() {
        batch_invariance_body(&mut *g);
    }
}
