//! The command line as a user runs it: JSON shapes, precedence of presets,
//! params files and flags, and a clear message with a non-zero exit for each
//! kind of bad input.

mod common;

use common::{data, fails_with, ok_json, run, tmp};
use serde_json::Value;

#[test]
fn sample_json_has_every_spec_key() {
    let v = ok_json(&[
        "sample",
        "--backend",
        "reference",
        "--logits",
        &data("batch_32k.npy"),
        "--preset",
        "chat",
        "--seed",
        "7",
        "--samples",
        "3",
        "--logprobs",
        "4",
        "--json",
    ]);
    assert_eq!(v["schema"], 1);
    assert_eq!(v["backend"], "reference");
    assert_eq!(v["rng"], "philox4x32-10/v1");
    assert!(v["device"].is_string());
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6);
    for r in rows {
        for key in [
            "token",
            "draws",
            "logprob",
            "raw_logprob",
            "entropy",
            "varentropy",
            "final_entropy",
            "temperature",
            "top_p",
            "kept",
            "seed",
            "top_logprobs",
        ] {
            assert!(r.get(key).is_some(), "missing {key} in {r}");
        }
        assert_eq!(r["draws"].as_array().unwrap().len(), 3);
        assert_eq!(r["draws"][0], r["token"]);
        assert_eq!(r["seed"], 7);
        assert_eq!(r["top_logprobs"]["raw"].as_array().unwrap().len(), 4);
        assert!(r["top_logprobs"]["processed"][0]["id"].is_u64());
        // chat preset: T 0.7, top_p 0.9
        assert!(
            (r["temperature"].as_f64().unwrap() - 0.7).abs() < 1e-9,
            "{r}"
        );
        assert!((r["top_p"].as_f64().unwrap() - 0.9).abs() < 1e-9, "{r}");
    }
    // Greedy row 2 of the bundled batch is its peaked row: kept 1, logprob 0.
    assert_eq!(rows[2]["token"], 1234);
    // One draw: no `draws` key, and no guide_entropy on static rows.
    let v = ok_json(&[
        "sample",
        "--backend",
        "reference",
        "--logits",
        &data("seed_rows.json"),
        "--seed",
        "1",
        "--json",
    ]);
    assert!(v["rows"][0].get("draws").is_none());
    assert!(v["rows"][0].get("guide_entropy").is_none());
}

#[test]
fn probs_json_is_a_distribution_per_row() {
    let v = ok_json(&[
        "probs",
        "--backend",
        "reference",
        "--logits",
        &data("seed_rows.json"),
        "--top-p",
        "0.9",
        "--json",
    ]);
    assert_eq!(v["schema"], 1);
    for r in v["rows"].as_array().unwrap() {
        let p: Vec<f64> = r["probs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(p.len(), 10);
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(
            p.iter().filter(|&&x| x > 0.0).count() as u64,
            r["kept"].as_u64().unwrap()
        );
        for key in ["temperature", "entropy", "final_entropy", "top_p"] {
            assert!(r[key].is_f64(), "{key}");
        }
    }
    // Temperature-sweep row at T = 1, no truncation: p(approve) = 0.3468 (docs/spec.md §10).
    let v = ok_json(&[
        "probs",
        "--backend",
        "reference",
        "--logits",
        &data("seed_rows.json"),
        "--json",
    ]);
    assert!((v["rows"][0]["probs"][0].as_f64().unwrap() - 0.3468).abs() < 1e-4);
}

#[test]
fn precedence_is_defaults_preset_params_file_flags() {
    // Preset `code`: T 0.5, top_p 0.95, top_k 30. The file sets T 0.9 and
    // top_p 0.8; the flag sets top_p 0.85. Result: T 0.9 (file), top_p 0.85
    // (flag), top_k 30 (preset).
    let params = tmp("prec.json", br#"{"temperature": 0.9, "top_p": 0.8}"#);
    let v = ok_json(&[
        "probs",
        "--backend",
        "reference",
        "--logits",
        &data("batch_32k.npy"),
        "--preset",
        "code",
        "--params",
        &params,
        "--top-p",
        "0.85",
        "--json",
    ]);
    for r in v["rows"].as_array().unwrap() {
        assert!(
            (r["temperature"].as_f64().unwrap() - 0.9).abs() < 1e-9,
            "{}",
            r["temperature"]
        );
        assert!((r["top_p"].as_f64().unwrap() - 0.85).abs() < 1e-9);
        assert!(r["kept"].as_u64().unwrap() <= 30);
    }
    // One object per row.
    let v = ok_json(&[
        "sample",
        "--backend",
        "reference",
        "--logits",
        &data("batch_32k.npy"),
        "--params",
        &data("params_rows.json"),
        "--json",
    ]);
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows[2]["temperature"], 0.0);
    assert!(rows[4]["guide_entropy"].is_f64());
    assert!(rows[5]["guide_entropy"].is_f64());
    assert_eq!(rows[0]["top_logprobs"]["raw"].as_array().unwrap().len(), 5);
}

#[test]
fn text_output_is_a_table() {
    let out = run(&[
        "sample",
        "--backend",
        "reference",
        "--logits",
        &data("seed_rows.json"),
        "--seed",
        "3",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("token") && text.contains("H bits") && text.contains("kept"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1 + 5 + 1, "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("backend reference"),
        "stderr says which backend: {err}"
    );
    let out = run(&[
        "probs",
        "--backend",
        "reference",
        "--logits",
        &data("seed_rows.json"),
        "--top",
        "2",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("row 4: kept 10 of 10"));
}

#[test]
fn raw_files_with_dtype_and_vocab() {
    let vals: [f32; 6] = [2.0, 0.0, 1.0, -1.0, 3.0, f32::NEG_INFINITY];
    let f16: Vec<u8> = vals
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect();
    let path = tmp("l.f16", &f16);
    let v = ok_json(&[
        "sample",
        "--backend",
        "reference",
        "--logits",
        &path,
        "--dtype",
        "f16",
        "--vocab",
        "3",
        "--temperature",
        "0",
        "--json",
    ]);
    assert_eq!(v["rows"][0]["token"], 0);
    assert_eq!(v["rows"][1]["token"], 1);
    fails_with(
        &[
            "sample",
            "--backend",
            "reference",
            "--logits",
            &path,
            "--dtype",
            "f16",
            "--vocab",
            "5",
        ],
        &["truncated"],
    );
}

#[test]
fn presets_and_info() {
    let v = ok_json(&["presets", "--json"]);
    let names: Vec<&str> = v["presets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for n in [
        "classification",
        "factual-qa",
        "code",
        "summarization",
        "chat",
        "creative-writing",
        "brainstorming",
        "extraction",
        "default-chat",
        "creative-brainstorm",
        "code-generation",
    ] {
        assert!(names.contains(&n), "{n}");
    }
    let v = ok_json(&["info", "--json"]);
    assert_eq!(v["rng"], "philox4x32-10/v1");
    assert!(v["backends"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["backend"] == "reference" && b["available"] == true));
}

#[test]
fn validate_reference_passes() {
    let v = ok_json(&[
        "validate",
        "--backend",
        "reference",
        "--cases",
        "2",
        "--vocab",
        "1000",
        "--json",
    ]);
    assert_eq!(v["pass"], true);
    assert!(v["total"]["rows"].as_u64().unwrap() >= 2);
}

#[test]
fn validate_cpu_passes() {
    // 131 072-logit rows run split over the caller and its helper threads
    // when a batch has one row; 4 096-logit rows run whole.
    let v = ok_json(&[
        "validate",
        "--backend",
        "cpu",
        "--cases",
        "3",
        "--vocab",
        "131072",
        "4096",
        "--max-batch",
        "8",
        "--json",
    ]);
    assert_eq!(v["backend"], "cpu");
    assert_eq!(v["pass"], true, "{v}");
    // The cpu runs the samplers of docs/spec.md §3.10–3.15, so the suite
    // draws them too.
    assert_eq!(v["config"]["extended"], true, "{v}");
    assert!(v["total"]["rows"].as_u64().unwrap() >= 6);
    assert_eq!(v["total"]["token_mismatch_unexplained"], 0);
    assert_eq!(v["total"]["kept_mismatch_unexplained"], 0);
}

#[test]
fn validate_gpu_passes() {
    // lavapipe in CI (REQUIRE_GPU=1): the command must run and pass there.
    let out = run(&[
        "validate",
        "--backend",
        "gpu",
        "--cases",
        "2",
        "--vocab",
        "32000",
        "4096",
        "--max-batch",
        "4",
        "--json",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success()
        && std::env::var("REQUIRE_GPU").as_deref() != Ok("1")
        && err.contains("not available")
    {
        eprintln!("NOTICE: no GPU adapter, `validate --backend gpu` not run: {err}");
        return;
    }
    assert!(out.status.success(), "validate --backend gpu failed: {err}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(v["backend"], "gpu");
    assert_eq!(v["pass"], true, "{v}");
    // The samplers of docs/spec.md §3.10–3.15 are drawn on every backend.
    assert_eq!(v["config"]["extended"], true, "{v}");
    assert!(v["total"]["rows"].as_u64().unwrap() >= 2);
}

#[test]
fn bad_inputs_fail_with_clear_messages() {
    let l = data("seed_rows.json");
    let r = ["--backend", "reference"];
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec!["sample".into(), "--logits".into(), l.clone()];
        v.extend(r.iter().map(|s| s.to_string()));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let check = |extra: &[&str], needles: &[&str]| {
        let args = with(extra);
        let refs: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        fails_with(&refs, needles);
    };
    check(&["--top-p", "2"], &["row 0", "top_p"]);
    check(&["--temperature", "-1"], &["row 0", "temperature"]);
    check(&["--top-k", "-3"], &["top_k"]);
    check(
        &["--preset", "nonsense"],
        &["unknown preset", "classification"],
    );
    check(&["--samples", "0"], &["samples"]);
    check(&["--params", "/nonexistent/params.json"], &["params.json"]);
    let unknown = tmp("unknown.json", br#"{"temprature": 0.5}"#);
    check(
        &["--params", &unknown],
        &["row 0", "unknown field", "temprature"],
    );
    let wrong_count = tmp("count.json", br#"[{}, {}]"#);
    check(
        &["--params", &wrong_count],
        &["2 parameter objects", "5 rows"],
    );
    let out_of_range = tmp("oor.json", br#"{"history": [3, 10]}"#);
    check(
        &["--params", &out_of_range],
        &["row 0", "history", "10", "vocab 10"],
    );
    let masked = tmp(
        "masked.json",
        br#"[{}, {}, {}, {"allowed_token_ids": [0], "logit_bias": {"0": 1.0}}, {}]"#,
    );
    let masked_logits = tmp(
        "masked_logits.json",
        b"[[1,2],[1,2],[1,2],[-Infinity,2],[1,2]]",
    );
    fails_with(
        &[
            "sample",
            "--backend",
            "reference",
            "--logits",
            &masked_logits,
            "--params",
            &masked,
        ],
        &["row 3", "masked"],
    );
    let nan = tmp("nan.json", b"[[1, 2, 3], [4, NaN, 6]]");
    fails_with(
        &["sample", "--backend", "reference", "--logits", &nan],
        &["row 1, index 1", "NaN"],
    );
    let inf = tmp("inf.json", b"[[1, 2, Infinity]]");
    fails_with(
        &["sample", "--backend", "reference", "--logits", &inf],
        &["row 0, index 2", "Infinity"],
    );
    let ragged = tmp("ragged.json", b"[[1, 2, 3], [4, 5]]");
    fails_with(
        &["sample", "--backend", "reference", "--logits", &ragged],
        &["ragged", "row 1"],
    );
    let empty = tmp("empty.json", b"[]");
    fails_with(
        &["sample", "--backend", "reference", "--logits", &empty],
        &["empty"],
    );
    let txt = tmp("logits.txt", b"1 2 3");
    fails_with(
        &["sample", "--backend", "reference", "--logits", &txt],
        &["--dtype"],
    );
    fails_with(
        &["sample", "--backend", "nonsense", "--logits", &l],
        &["unknown backend"],
    );
    fails_with(
        &[
            "sample",
            "--backend",
            "reference",
            "--logits",
            "/nonexistent.npy",
        ],
        &["/nonexistent.npy"],
    );
    let bad_npy = tmp("bad.npy", b"\x93NUMPY garbage");
    fails_with(
        &["sample", "--backend", "reference", "--logits", &bad_npy],
        &["bad.npy"],
    );
}
