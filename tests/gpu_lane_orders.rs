//! Races inside a workgroup, found on a deterministic scheduler. lavapipe runs
//! a workgroup's invocations in SIMD groups of 8, switching only at barriers
//! and always in ascending order, so a race between invocations of one
//! barrier interval resolves the same way every time there; a real GPU runs
//! its warps in any order. The shaders can be built with the logical local id
//! remapped (reversed, interleaved across SIMD groups, scattered) and the
//! workgroups' tiles and rows taken in reverse order (`LaneOrder`), so the
//! same scheduler runs them in other orders. Race-free shaders give the same
//! bits in every order: every reduction's tree is fixed in logical ids, and
//! everything the atomics place (histogram counts, integer masses, candidate
//! blocks) is summed in an order that does not depend on where they landed.
//!
//! * The shared goldens under each permuted order.
//! * Batches of the differential suite's random cases (every row kind and
//!   parameter mix, several vocabularies) sampled with draws and logprobs,
//!   and their π, bit for bit equal to the natural order's.
//! * The same for the samplers of docs/spec.md §3.10–3.15: the suite's
//!   extended cases and a batch of one row per sampler (typical, XTC
//!   firing, mirostat 1 and 2, top-nσ, ε, η), and the extended goldens of
//!   tests/sampler_cases under every order.
//!
//! Run any other GPU test binary under a permutation with
//! `TOKEN_SAMPLER_LANE_ORDER=reversed|interleaved|scattered`.

#![cfg(feature = "gpu")]

mod common;
mod gpu_support;
mod sampler_cases;

use gpu_support::open_gpu_lanes;
use token_sampler::gpu::LaneOrder;
use token_sampler::validate::{make_case, SuiteConfig};
use token_sampler::Sampler;

mod reversed {
    crate::backend_tests!(crate::gpu_support::open_gpu_lanes(
        token_sampler::gpu::LaneOrder::Reversed
    ));
}

mod interleaved {
    crate::backend_tests!(crate::gpu_support::open_gpu_lanes(
        token_sampler::gpu::LaneOrder::Interleaved
    ));
}

mod scattered {
    crate::backend_tests!(crate::gpu_support::open_gpu_lanes(
        token_sampler::gpu::LaneOrder::Scattered
    ));
}

/// The suite's cases at a few vocabularies (one tile, several tiles, a
/// partial last tile), batches of up to 24 rows.
fn cases() -> Vec<token_sampler::validate::Case> {
    let cfg = SuiteConfig {
        cases: 6,
        vocabs: vec![9, 300, 2500, 5000],
        max_batch: 24,
        ..Default::default()
    };
    let mut out = Vec::new();
    for &v in &cfg.vocabs {
        for i in 0..cfg.cases {
            let mut c = make_case(&cfg, v, i, usize::MAX);
            // Unseeded rows would draw a fresh seed per call.
            for (r, p) in c.params.iter_mut().enumerate() {
                p.seed.get_or_insert(7919 * i as u64 + r as u64);
            }
            out.push(c);
        }
    }
    out
}

/// Every result of a case as text: f64s print exactly (shortest round-trip),
/// so equal text is equal bits; errors compare by message.
fn run_case(g: &mut dyn Sampler, c: &token_sampler::validate::Case) -> Vec<String> {
    let sampled = g.sample(c.batch.view(), &c.params, c.samples.max(3));
    let probs = g.probs(c.batch.view(), &c.params);
    let mut out: Vec<String> = match sampled {
        Ok(rows) => rows.iter().map(|r| format!("{r:?}")).collect(),
        Err(e) => vec![format!("error: {e}")],
    };
    match probs {
        Ok(rows) => out.extend(rows.iter().map(|r| format!("{r:?}"))),
        Err(e) => out.push(format!("error: {e}")),
    }
    out
}

#[test]
fn permuted_orders_give_the_natural_orders_bits() {
    let cases = cases();
    let want: Vec<Vec<String>> = {
        let Some(mut g) = open_gpu_lanes(LaneOrder::Natural) else {
            return;
        };
        cases.iter().map(|c| run_case(&mut *g, c)).collect()
    };
    for order in [
        LaneOrder::Reversed,
        LaneOrder::Interleaved,
        LaneOrder::Scattered,
    ] {
        let Some(mut g) = open_gpu_lanes(order) else {
            return;
        };
        for (c, want) in cases.iter().zip(&want) {
            let got = run_case(&mut *g, c);
            let v = c.batch.vocab();
            assert_eq!(got.len(), want.len(), "{order:?} V={v} case {}", c.index);
            for (row, (a, b)) in got.iter().zip(want).enumerate() {
                assert_eq!(
                    a,
                    b,
                    "{order:?} V={v} case {} result {row} ({:?}): a race",
                    c.index,
                    c.params[row % c.params.len()]
                );
            }
        }
    }
}

/// The suite's extended cases (docs/spec.md §3.10–3.15, DRY included) and a
/// batch of one row per extended sampler at each vocabulary.
fn extended_cases() -> Vec<token_sampler::validate::Case> {
    let cfg = SuiteConfig {
        cases: 3,
        vocabs: vec![9, 300, 2500, 5000],
        max_batch: 16,
        extended: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    for &v in &cfg.vocabs {
        for i in 0..cfg.cases {
            let mut c = make_case(&cfg, v, i, usize::MAX);
            for (r, p) in c.params.iter_mut().enumerate() {
                p.seed.get_or_insert(7919 * i as u64 + r as u64);
            }
            out.push(c);
        }
        let params = sampler_cases::extended_rows();
        let rows = params.len();
        out.push(token_sampler::validate::Case {
            index: cfg.cases,
            batch: token_sampler::validate::normal_batch(rows, v, 3.0, v as u64),
            params,
            kinds: vec![token_sampler::validate::RowKind::Normal; rows],
            samples: 3,
        });
    }
    out
}

#[test]
fn extended_samplers_give_the_natural_orders_bits() {
    let cases = extended_cases();
    let want: Vec<Vec<String>> = {
        let Some(mut g) = open_gpu_lanes(LaneOrder::Natural) else {
            return;
        };
        cases.iter().map(|c| run_case(&mut *g, c)).collect()
    };
    // The natural order runs them (no `Unsupported` compared with itself).
    for (c, want) in cases.iter().zip(&want) {
        for r in want {
            assert!(
                !r.starts_with("error"),
                "V={} case {}: {r}",
                c.batch.vocab(),
                c.index
            );
        }
    }
    let goldens = sampler_cases::goldens();
    for order in LaneOrder::ALL {
        let Some(mut g) = open_gpu_lanes(order) else {
            return;
        };
        for golden in &goldens {
            sampler_cases::check(&mut *g, golden);
        }
        if order == LaneOrder::Natural {
            continue;
        }
        for (c, want) in cases.iter().zip(&want) {
            let got = run_case(&mut *g, c);
            let v = c.batch.vocab();
            assert_eq!(got.len(), want.len(), "{order:?} V={v} case {}", c.index);
            for (row, (a, b)) in got.iter().zip(want).enumerate() {
                assert_eq!(
                    a,
                    b,
                    "{order:?} V={v} case {} result {row} ({:?}): a race",
                    c.index,
                    c.params[row % c.params.len()]
                );
            }
        }
    }
}
