//! `calibrate`: temperatures that hit a target entropy (checked against an
//! entropy computed here by hand), the mean over a file, truncation, errors for
//! unreachable targets, and the percentile suggestion. The `calibrate` command
//! is tested with the binary (crates/token-sampler-cli/tests/calibrate_cli.rs).

use token_sampler::calibrate::{
    calibrate_mean, calibrate_rows, entropy_at, entropy_percentiles, CalibrationError, Scope, Unit,
};
use token_sampler::{Batch, SamplingParams};

const LN2: f64 = std::f64::consts::LN_2;

/// Entropy (nats) of softmax(x/T) over the finite entries, written out here
/// independently of the library.
fn softmax_entropy(x: &[f32], t: f64) -> f64 {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let w: Vec<f64> = x
        .iter()
        .filter(|v| v.is_finite())
        .map(|&v| ((v as f64 - m) / t).exp())
        .collect();
    let z: f64 = w.iter().sum();
    -w.iter()
        .map(|&e| e / z)
        .filter(|&p| p > 0.0)
        .map(|p| p * p.ln())
        .sum::<f64>()
}

fn sweep() -> Vec<f32> {
    vec![2.2, 1.8, 1.4, 0.9, 0.2, 0.1, -0.3, -0.6, -0.8, -1.0]
}

/// Seeded pseudo-random rows (xorshift; normal-ish by summing uniforms).
fn random_rows(rows: usize, vocab: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut s = seed;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..rows)
        .map(|_| {
            (0..vocab)
                .map(|_| ((0..4).map(|_| next()).sum::<f64>() - 2.0) as f32 * 3.0)
                .collect()
        })
        .collect()
}

#[test]
fn each_row_hits_its_target() {
    let rows = vec![
        sweep(),
        vec![4.5, 0.3, 0.1, -0.2, -0.5, -1.0, -1.2, -1.5, -2.0, -2.5],
    ];
    let batch = Batch::from_rows(&rows).unwrap();
    let params = vec![SamplingParams::default(); 2];
    for (target, unit) in [
        (2.611, Unit::Bits),
        (1.0, Unit::Nats),
        (0.05, Unit::Nats),
        (3.3, Unit::Bits),
    ] {
        let out = calibrate_rows(batch.view(), &params, target, unit).unwrap();
        for (r, c) in out.iter().enumerate() {
            assert_eq!(c.scope, Scope::Row(r));
            let h = softmax_entropy(&rows[r], c.temperature);
            let h = if unit == Unit::Bits { h / LN2 } else { h };
            assert!(
                (h - target).abs() < 1e-4,
                "row {r}: H({}) = {h}, target {target}",
                c.temperature
            );
            assert!((c.entropy - target).abs() < 1e-6);
        }
    }
    // The sweep value of docs/spec.md §10: H = 2.611 bits at T = 1 (2.611016
    // exactly), so the temperature for 2.611016 bits is 1 within the bisection
    // tolerance.
    let out = calibrate_rows(batch.view(), &params[..1], 2.611016, Unit::Bits);
    let one = Batch::from_rows(&rows[..1]).unwrap();
    let out2 = calibrate_rows(one.view(), &params[..1], 2.6110160, Unit::Bits).unwrap();
    assert!(
        out.is_err(),
        "one parameter object for two rows is a shape error"
    );
    assert!(
        (out2[0].temperature - 1.0).abs() < 2e-5,
        "{}",
        out2[0].temperature
    );
}

#[test]
fn the_mean_over_a_file_hits_its_target() {
    let rows = random_rows(6, 64, 7);
    let batch = Batch::from_rows(&rows).unwrap();
    let params = vec![SamplingParams::default(); rows.len()];
    let c = calibrate_mean(batch.view(), &params, 2.0, Unit::Nats).unwrap();
    assert_eq!(c.scope, Scope::Mean(6));
    let mean = rows
        .iter()
        .map(|r| softmax_entropy(r, c.temperature))
        .sum::<f64>()
        / rows.len() as f64;
    assert!(
        (mean - 2.0).abs() < 1e-4,
        "mean H = {mean} at T = {}",
        c.temperature
    );
}

#[test]
fn truncation_keeps_entropy_monotone_and_targets_reachable() {
    // H(T) never decreases, whatever truncation and order (see calibrate.rs).
    let rows = random_rows(5, 48, 11);
    for p in [
        SamplingParams {
            top_p: 0.8,
            ..Default::default()
        },
        SamplingParams {
            top_k: 7,
            top_p: 0.9,
            ..Default::default()
        },
        SamplingParams {
            min_p: 0.1,
            ..Default::default()
        },
        SamplingParams {
            min_p: 0.05,
            top_p: 0.7,
            order: token_sampler::Order::Vllm,
            ..Default::default()
        },
        SamplingParams {
            top_p: 0.6,
            min_tokens_to_keep: 3,
            ..Default::default()
        },
    ] {
        for (r, x) in rows.iter().enumerate() {
            let mut prev = 0.0;
            for i in 0..400 {
                let t = 0.01 * 1.02f64.powi(i);
                let h = entropy_at(r, x, &p, t).unwrap();
                assert!(h >= prev - 1e-12, "{p:?} row {r}: H({t}) = {h} < {prev}");
                prev = h;
            }
        }
    }
    // With top-k 3 at every T the set is fixed: a target between H(T→0) and ln 3 is hit.
    let x = sweep();
    let batch = Batch::from_rows(std::slice::from_ref(&x)).unwrap();
    let p = vec![SamplingParams {
        top_k: 3,
        ..Default::default()
    }];
    let c = calibrate_rows(batch.view(), &p, 1.0, Unit::Bits).unwrap();
    let h = softmax_entropy(&x[..3], c[0].temperature) / LN2;
    assert!((h - 1.0).abs() < 1e-4, "{h}");
    assert!(
        calibrate_rows(batch.view(), &p, 1.6, Unit::Bits).is_err(),
        "log2 3 = 1.585 is the ceiling"
    );
}

#[test]
fn a_target_inside_a_top_p_jump_is_a_typed_error() {
    // Top-p 0.5 on the sweep row: at T = 1 it keeps 2 tokens (H 0.97 bits); as T
    // falls it keeps 1 (H = 0), so H jumps from 0 to ≈0.97 bits where approve
    // alone reaches 0.5. 0.5 bits lies inside that jump.
    let batch = Batch::from_rows(&[sweep()]).unwrap();
    let p = vec![SamplingParams {
        top_p: 0.5,
        ..Default::default()
    }];
    match calibrate_rows(batch.view(), &p, 0.5, Unit::Bits) {
        Err(CalibrationError::InGap {
            scope,
            below,
            above,
            temperature,
            ..
        }) => {
            assert_eq!(scope, Scope::Row(0));
            assert!(below < 0.5 && above > 0.5, "{below} {above}");
            // The jump is where p(approve) = 0.5 − 1e-6 slack: there approve
            // alone stops reaching p. p(approve)(T) is 0.3468 at T = 1, so T < 1.
            assert!(temperature > 0.1 && temperature < 1.0, "{temperature}");
        }
        other => panic!("expected InGap, got {other:?}"),
    }
}

#[test]
fn unreachable_targets_name_the_row_and_the_range() {
    // Row 1 has two tied maxima: as T → 0, H → ln 2, never below.
    let rows = vec![
        sweep(),
        vec![1.0, 1.0, -5.0, -5.0, -5.0, -5.0, -5.0, -5.0, -5.0, -5.0],
    ];
    let batch = Batch::from_rows(&rows).unwrap();
    let params = vec![SamplingParams::default(); 2];
    let e = calibrate_rows(batch.view(), &params, 0.5, Unit::Nats).unwrap_err();
    match &e {
        CalibrationError::Unreachable {
            scope,
            h_min,
            h_max,
            ..
        } => {
            assert_eq!(*scope, Scope::Row(1));
            assert!((h_min - 2f64.ln()).abs() < 1e-6, "{h_min}");
            assert!(*h_max < 10f64.ln() && *h_max > 2.30, "{h_max}");
        }
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("row 1") && msg.contains("unreachable") && msg.contains("0.693147"),
        "{msg}"
    );
    // Above ln V: unreachable for row 0 (V = 10, log2 10 = 3.32 bits).
    let e = calibrate_rows(batch.view(), &params, 3.5, Unit::Bits)
        .unwrap_err()
        .to_string();
    assert!(e.contains("row 0") && e.contains("3.32"), "{e}");
    // Negative, NaN and dynamic temperature are refused by name.
    assert!(calibrate_rows(batch.view(), &params, -1.0, Unit::Nats)
        .unwrap_err()
        .to_string()
        .contains("target"));
    let dynamic: SamplingParams = serde_json::from_value(serde_json::json!({
        "dynamic_temperature": {"mapping": {"kind": "edt", "t0": 1.0, "theta": 1.0}}
    }))
    .unwrap();
    let e = calibrate_rows(batch.view(), &[dynamic.clone(), dynamic], 1.0, Unit::Nats).unwrap_err();
    assert!(e.to_string().contains("dynamic_temperature"), "{e}");
}

#[test]
fn percentiles_interpolate_linearly() {
    // Rows with k equal finite logits (the rest masked) have H = ln k = log2 k
    // bits: k = 1, 2, 4, 8 → [0, 1, 2, 3] bits. Rank q·(n−1): p25 = 0.75,
    // median = 1.5, p75 = 2.25.
    let ninf = f32::NEG_INFINITY;
    let rows: Vec<Vec<f32>> = [1usize, 2, 4, 8]
        .iter()
        .map(|&k| (0..8).map(|i| if i < k { 0.5 } else { ninf }).collect())
        .collect();
    let batch = Batch::from_rows(&rows).unwrap();
    let params = vec![SamplingParams::default(); 4];
    let p = entropy_percentiles(batch.view(), &params, Unit::Bits).unwrap();
    assert!(
        (p.p25 - 0.75).abs() < 1e-12
            && (p.median - 1.5).abs() < 1e-12
            && (p.p75 - 2.25).abs() < 1e-12
    );
    assert_eq!(p.suggested_range(), Some((p.p25, p.p75)));
    let same = vec![rows[2].clone(); 3];
    let b = Batch::from_rows(&same).unwrap();
    let p = entropy_percentiles(b.view(), &params[..3], Unit::Nats).unwrap();
    assert_eq!(
        p.suggested_range(),
        None,
        "equal percentiles cannot make a linear mapping"
    );
}
