//! The GPU pipeline's structure (docs/spec.md §9), exact on any adapter:
//! dispatches per call, reads of the logits per row, the top-p prediction
//! and its exact fallback, rows that read themselves many times, and rows
//! whose vocabulary sits at a tile boundary.

#![cfg(feature = "gpu")]

mod gpu_support;

use gpu_support::open_gpu;
use token_sampler::bench::named_set;
use token_sampler::validate::{normal_batch, run_suite, SuiteConfig};
use token_sampler::{Batch, Order, Sampler, SamplingParams};

/// Dispatches ≤ 2 for temperature and ≤ 4 for every named set, reads ≤ 1
/// for temperature and ≤ 2 for the others, at B = 1 and B = 32 — the
/// `bench --json` numbers, checked where they are made.
#[test]
fn named_sets_meet_the_dispatch_and_read_bounds() {
    let Some(mut g) = open_gpu() else { return };
    let tiles = 131_072usize.div_ceil(g.shader_consts().tile as usize);
    for rows in [1usize, 32] {
        let b = normal_batch(rows, 131_072, 3.0, 11);
        for name in [
            "temperature",
            "top_k_top_p",
            "top_p",
            "min_p",
            "entropy_guided",
        ] {
            let p = SamplingParams {
                seed: Some(5),
                ..named_set(name).unwrap()
            };
            g.sample(b.view(), &vec![p; rows], 1).unwrap();
            let c = g.last_structure().unwrap();
            let (max_d, max_r) = if name == "temperature" {
                (2, 1)
            } else {
                (4, 2)
            };
            assert!(c.dispatches <= max_d, "{name} B {rows}: {c:?}");
            assert!(c.reads_per_row <= max_r, "{name} B {rows}: {c:?}");
            // One statistics workgroup per tile and row, one solver per row.
            assert_eq!(
                c.workgroups,
                (rows * tiles + rows) as u64,
                "{name} B {rows}: {c:?}"
            );
        }
    }
}

/// More draws add `pick`, a `probs` call adds `probs`: never more than 4.
#[test]
fn draws_and_probs_add_one_dispatch_each() {
    let Some(mut g) = open_gpu() else { return };
    let b = normal_batch(3, 5000, 3.0, 2);
    let p = vec![
        SamplingParams {
            top_p: 0.9,
            top_k: 40,
            seed: Some(1),
            ..Default::default()
        };
        3
    ];
    g.sample(b.view(), &p, 1).unwrap();
    assert_eq!(g.last_structure().unwrap().dispatches, 2);
    let many = g.sample(b.view(), &p, 8).unwrap();
    assert_eq!(g.last_structure().unwrap().dispatches, 3);
    g.probs(b.view(), &p).unwrap();
    assert_eq!(g.last_structure().unwrap().dispatches, 3);
    // Draw 0 (the solver's) is the same token whatever the number of draws.
    let one = g.sample(b.view(), &p, 1).unwrap();
    for (a, b) in one.iter().zip(&many) {
        assert_eq!(a.token, b.draws[0]);
    }
}

/// The exact fallback of the top-p prediction: with every prediction made
/// to miss, the same kept sets, tokens and (within rounding) π, from more
/// reads.
#[test]
fn top_p_prediction_fallback_gives_the_same_answer() {
    let Some(mut g) = open_gpu() else { return };
    let b = normal_batch(6, 50_000, 3.0, 4);
    let mut params = Vec::new();
    for (i, (p, order, t)) in [
        (0.9, Order::Standard, 0.7),
        (0.5, Order::Vllm, 1.0),
        (0.95, Order::LlamaCpp, 0.8),
        (0.99, Order::Standard, 1.3),
        (0.3, Order::Standard, 0.4),
        (0.8, Order::LlamaCpp, 1.0),
    ]
    .into_iter()
    .enumerate()
    {
        params.push(SamplingParams {
            top_p: p,
            order,
            temperature: t,
            seed: Some(i as u64 + 1),
            ..Default::default()
        });
    }
    let hit = g.sample(b.view(), &params, 4).unwrap();
    let hit_reads = g.last_reads().to_vec();
    let hit_probs = g.probs(b.view(), &params).unwrap();
    g.set_force_prediction_miss(true);
    let miss = g.sample(b.view(), &params, 4);
    let miss_reads = g.last_reads().to_vec();
    let miss_probs = g.probs(b.view(), &params);
    g.set_force_prediction_miss(false);
    let (miss, miss_probs) = (miss.unwrap(), miss_probs.unwrap());
    for r in 0..params.len() {
        assert_eq!(hit[r].kept, miss[r].kept, "row {r}");
        assert_eq!(hit[r].draws, miss[r].draws, "row {r}");
        // A predicted row reads twice; made to miss, it takes the fallback's
        // reads. (A nucleus too wide for the candidates is not predicted.)
        if hit_reads[r] == 2 {
            assert!(
                miss_reads[r] > 2,
                "row {r}: {miss_reads:?} vs {hit_reads:?}"
            );
        }
        for (a, b) in hit_probs[r].probs.iter().zip(&miss_probs[r].probs) {
            assert!((a - b).abs() <= 1e-6, "row {r}: {a} vs {b}");
        }
    }
    let predicted = hit_reads.iter().filter(|&&n| n == 2).count();
    assert!(predicted >= 3, "{hit_reads:?}");
}

/// A flat row (every logit equal) with top-k 1 and top-p keeps every tied
/// id: the solver narrows its key window read after read itself, in one
/// dispatch.
#[test]
fn rows_loop_their_own_reads() {
    let Some(mut g) = open_gpu() else { return };
    let v = 200_064;
    let b = Batch::new(vec![0.25f32; v], 1, v).unwrap();
    let p = SamplingParams {
        top_k: 1,
        top_p: 0.95,
        min_tokens_to_keep: 10,
        seed: Some(3),
        ..Default::default()
    };
    let r = g.sample(b.view(), &[p], 1).unwrap();
    assert_eq!(r[0].kept as usize, v);
    let c = g.last_structure().unwrap();
    assert_eq!(c.dispatches, 2);
    assert!(c.reads_per_row >= 3, "{c:?}");
}

/// Vocabularies one id either side of the tile (the device's size, 1 024
/// ids here) and of two tiles agree with the reference (docs/spec.md §7).
#[test]
fn tile_boundaries_agree_with_the_reference() {
    let Some(mut g) = open_gpu() else { return };
    let t = g.shader_consts().tile as usize;
    let cfg = SuiteConfig {
        cases: 6,
        vocabs: vec![t - 1, t, t + 1, 2 * t - 1, 2 * t + 1],
        max_batch: 12,
        ..Default::default()
    };
    let report = run_suite(&mut *g, &cfg, &mut |_, _| {}).unwrap();
    println!("{report}");
    assert!(report.ok(), "{report}");
}
