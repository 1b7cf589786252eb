//! `token-sampler calibrate` through the built binary: per-row and mean
//! targets in bits, an unreachable target naming its row, the percentile
//! suggestion parsing as parameters, and a missing `--target`.

mod common;

use common::{run, tmp};
use token_sampler::SamplingParams;

#[test]
fn calibrate_command() {
    let f = tmp(
        "calibrate_rows.json",
        b"[[2.2,1.8,1.4,0.9,0.2,0.1,-0.3,-0.6,-0.8,-1.0],[1,1,-5,-5,-5,-5,-5,-5,-5,-5]]",
    );
    let f = f.as_str();

    let out = run(&[
        "calibrate",
        "--logits",
        f,
        "--target",
        "1.5",
        "--unit",
        "bits",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["unit"], "bits");
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert!((r["entropy"].as_f64().unwrap() - 1.5).abs() < 1e-4);
    }

    let out = run(&[
        "calibrate",
        "--logits",
        f,
        "--target",
        "1.5",
        "--unit",
        "bits",
        "--mean",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        (v["mean"]["entropy"].as_f64().unwrap() - 1.5).abs() < 1e-4,
        "{v}"
    );

    let out = run(&["calibrate", "--logits", f, "--target", "0.2"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("row 1") && err.contains("unreachable"),
        "{err}"
    );

    let out = run(&["calibrate", "--logits", f, "--percentiles", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mapping = &v["suggested"]["dynamic_temperature"]["mapping"];
    assert_eq!(mapping["kind"], "linear");
    assert_eq!(mapping["t_min"], 0.3);
    // The suggestion parses as parameters.
    let params: SamplingParams = serde_json::from_value(serde_json::json!({
        "dynamic_temperature": v["suggested"]["dynamic_temperature"]
    }))
    .unwrap();
    params.validate(0, 10).unwrap();

    let out = run(&["calibrate", "--logits", f]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--target or --percentiles is required"
    );
}
