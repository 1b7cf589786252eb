//! The flags of docs/spec.md §3.10–3.15 (typical, top-nσ, XTC, ε, η, DRY,
//! mirostat) as a user runs them, on the reference backend; expected values
//! are the hand derivations of tests/reference_samplers.rs.

mod common;

use common::{fails_with, ok_json, run_ok, tmp};
use serde_json::Value;

/// A one-row logits file of ln w.
fn logits(name: &str, w: &[f64]) -> String {
    let row: Vec<String> = w.iter().map(|v| format!("{:.9}", v.ln())).collect();
    tmp(name, format!("[[{}]]", row.join(", ")).as_bytes())
}

fn probs(file: &str, flags: &[&str]) -> Vec<f64> {
    let mut args = vec![
        "probs",
        "--backend",
        "reference",
        "--logits",
        file,
        "--json",
    ];
    args.extend_from_slice(flags);
    let v = ok_json(&args);
    v["rows"][0]["probs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect()
}

#[track_caller]
fn assert_probs(got: &[f64], weights: &[f64]) {
    let total: f64 = weights.iter().sum();
    assert_eq!(got.len(), weights.len());
    for (g, w) in got.iter().zip(weights) {
        assert!((g - w / total).abs() < 1e-5, "{got:?} vs {weights:?}");
    }
}

#[test]
fn truncation_flags_reach_the_reference() {
    let f = logits("q4321.json", &[4.0, 3.0, 2.0, 1.0]);
    // Typical .25 keeps token 1 alone; with min_tokens_to_keep 2 the two most
    // typical, {1, 2}.
    assert_probs(&probs(&f, &["--typical-p", "0.25"]), &[0.0, 1.0, 0.0, 0.0]);
    assert_probs(
        &probs(&f, &["--typical-p", "0.25", "--min-tokens-to-keep", "2"]),
        &[0.0, 3.0, 2.0, 0.0],
    );
    // XTC with probability 1 and threshold .25 removes token 0.
    assert_probs(
        &probs(
            &f,
            &[
                "--xtc-probability",
                "1",
                "--xtc-threshold",
                "0.25",
                "--seed",
                "3",
            ],
        ),
        &[0.0, 3.0, 2.0, 1.0],
    );
    // ε = .15 removes q = .1; η = .15 (cutoff min(.15, .1578)) on [.6, .3, .1] too.
    assert_probs(
        &probs(&f, &["--epsilon-cutoff", "0.15"]),
        &[4.0, 3.0, 2.0, 0.0],
    );
    let g = logits("q631.json", &[6.0, 3.0, 1.0]);
    assert_probs(&probs(&g, &["--eta-cutoff", "0.15"]), &[6.0, 3.0, 0.0]);
    // Top-nσ 1 on ln[.1, .2, .3, .4] keeps the top two (llama.cpp's case).
    let h = logits("q1234.json", &[0.1, 0.2, 0.3, 0.4]);
    assert_probs(&probs(&h, &["--top-n-sigma", "1"]), &[0.0, 0.0, 0.3, 0.4]);
}

#[test]
fn dry_flags_and_breakers() {
    // llama.cpp's test_dry case 3: history 0 1 3 4 0 1 repeats "0 1", whose
    // next token is 3; breaker 3 is never penalised. Without it, 3 gets 1.
    let f = logits("q5.json", &[0.2; 5]);
    let params = tmp("dry.json", br#"{"history": [0, 1, 3, 4, 0, 1]}"#);
    let base = [
        "--params",
        &params,
        "--dry-multiplier",
        "1",
        "--dry-base",
        "1.1",
        "--dry-allowed-length",
        "2",
        "--dry-penalty-last-n",
        "-1",
    ];
    let mut with = base.to_vec();
    with.extend(["--dry-sequence-breakers", "3,4"]);
    assert_probs(&probs(&f, &with), &[1.0; 5]);
    let e = (-1.0f64).exp();
    assert_probs(&probs(&f, &base), &[1.0, 1.0, 1.0, e, 1.0]);
}

#[test]
fn mirostat_mu_is_reported_in_json_and_text() {
    // q = [.5, .25, .125, .125], v2, mu 2.5 keeps {0, 1}: π = [2/3, 1/3];
    // mu' = 2.566504 after token 0, 2.466504 after token 1.
    let f = logits("q4211.json", &[4.0, 2.0, 1.0, 1.0]);
    let flags = [
        "--mirostat",
        "2",
        "--mirostat-tau",
        "1.25",
        "--mirostat-eta",
        "0.1",
        "--mirostat-mu",
        "2.5",
        "--seed",
        "7",
    ];
    let mut args = vec!["sample", "--backend", "reference", "--logits", &f, "--json"];
    args.extend_from_slice(&flags);
    let v = ok_json(&args);
    let row = &v["rows"][0];
    let mu = row["mirostat_mu"].as_f64().unwrap();
    let want = match row["token"].as_u64().unwrap() {
        0 => 2.566504,
        1 => 2.466504,
        t => panic!("token {t} is outside mirostat's cut"),
    };
    assert!((mu - want).abs() < 1e-5, "{row}");
    // probs reports the mu it cut with.
    let mut args = vec!["probs", "--backend", "reference", "--logits", &f, "--json"];
    args.extend_from_slice(&flags);
    let v = ok_json(&args);
    assert_eq!(v["rows"][0]["mirostat_mu"].as_f64(), Some(2.5));
    // Text output names it too; a row without mirostat has no such key.
    let mut args = vec!["sample", "--backend", "reference", "--logits", &f];
    args.extend_from_slice(&flags);
    let out = run_ok(&args);
    assert!(String::from_utf8_lossy(&out.stdout).contains("mirostat_mu"));
    let v = ok_json(&["sample", "--backend", "reference", "--logits", &f, "--json"]);
    assert_eq!(v["rows"][0].get("mirostat_mu"), None::<&Value>);
}

#[test]
fn bad_sampler_flags_fail_clearly() {
    let f = logits("bad.json", &[4.0, 3.0, 2.0, 1.0]);
    let base = ["probs", "--backend", "reference", "--logits", &f];
    let with = |extra: &[&'static str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        a
    };
    fails_with(&with(&["--mirostat", "3"]), &["expected 1 or 2"]);
    fails_with(
        &with(&["--mirostat-tau", "4"]),
        &["--mirostat-tau", "--mirostat"],
    );
    fails_with(&with(&["--typical-p", "0"]), &["row 0", "typical_p"]);
    fails_with(&with(&["--xtc-probability", "2"]), &["xtc_probability"]);
    fails_with(&with(&["--top-n-sigma", "NaN"]), &["--top-n-sigma"]);
    fails_with(
        &with(&["--dry-sequence-breakers", "1,9"]),
        &["dry_sequence_breakers"],
    );
    fails_with(
        &with(&["--mirostat", "1", "--top-k", "5"]),
        &["top_k", "mirostat"],
    );
    // The cpu backend runs them (src/cpu/extended.rs), with the reference's
    // π; its errors are the reference's.
    let cpu = |flags: &[&'static str]| {
        let mut a = vec!["probs", "--backend", "cpu", "--logits", &f, "--json"];
        a.extend_from_slice(flags);
        ok_json(&a)["rows"][0]["probs"].clone()
    };
    let got = cpu(&["--typical-p", "0.5"]);
    let want: Vec<f64> = probs(&f, &["--typical-p", "0.5"]);
    for (g, w) in got.as_array().unwrap().iter().zip(&want) {
        assert!((g.as_f64().unwrap() - w).abs() < 1e-12, "{got} vs {want:?}");
    }
    fails_with(
        &[
            "probs",
            "--backend",
            "cpu",
            "--logits",
            &f,
            "--typical-p",
            "0",
        ],
        &["row 0", "typical_p"],
    );
}
