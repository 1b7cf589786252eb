//! `token-sampler bench` as a user runs it: a tiny grid, the `--json` shape of
//! docs/spec.md §8, flags over named sets, `--logits`, and clear errors. These check
//! the harness, not speed (timings are never asserted).

mod common;

use common::{ok_json, run};

const TINY: [&str; 8] = [
    "--backend",
    "cpu",
    "--batch",
    "1,3",
    "--vocab",
    "256",
    "--runs",
    "10",
];

#[test]
fn json_has_one_result_per_grid_point_with_every_key() {
    let mut args = vec!["bench"];
    args.extend(TINY);
    args.extend(["--warmup", "0", "--json"]);
    let v = ok_json(&args);
    assert_eq!(v["schema"], 1);
    assert_eq!(v["backend"], "cpu");
    assert!(v["device"].as_str().unwrap().contains("host CPU"));
    let results = v["results"].as_array().unwrap();
    // 2 batches × 1 vocab × 5 named sets; the cpu has no device clock, so
    // there is no `kernel` mode.
    assert_eq!(results.len(), 10);
    for r in results {
        for key in [
            "backend",
            "device",
            "mode",
            "batch",
            "vocab",
            "params",
            "runs",
            "median_ms",
            "spread_ms",
            "us_per_row",
            "gb_per_s",
            "bw_fraction",
        ] {
            assert!(r.get(key).is_some(), "missing `{key}` in {r}");
        }
        assert_eq!(r["mode"], "end_to_end");
        assert_eq!(r["runs"], 10);
        assert_eq!(r["vocab"], 256);
        let (b, med) = (
            r["batch"].as_f64().unwrap(),
            r["median_ms"].as_f64().unwrap(),
        );
        assert!(med > 0.0 && r["spread_ms"].as_f64().unwrap() >= 0.0);
        assert!((r["us_per_row"].as_f64().unwrap() - med * 1e3 / b).abs() < 1e-9 * med * 1e3);
        let gbps = b * 256.0 * 4.0 / (med * 1e-3) / 1e9;
        assert!((r["gb_per_s"].as_f64().unwrap() - gbps).abs() < 1e-9 * gbps);
        assert!(r["bw_fraction"].as_f64().unwrap() > 0.0);
    }
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["params"].as_str().unwrap())
        .collect();
    for set in [
        "temperature",
        "top_k_top_p",
        "top_p",
        "min_p",
        "entropy_guided",
    ] {
        assert_eq!(names.iter().filter(|&&n| n == set).count(), 2, "{set}");
    }
}

#[test]
fn flags_override_named_sets_and_the_table_prints() {
    let v = ok_json(&[
        "bench",
        "--backend",
        "cpu",
        "--batch",
        "2",
        "--vocab",
        "300",
        "--runs",
        "10",
        "--warmup",
        "0",
        "--set",
        "top_k_top_p",
        "--top-k",
        "50",
        "--json",
    ]);
    let r = &v["results"][0];
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    assert_eq!(r["params"], "top_k_top_p");
    assert_eq!(r["sampling"]["top_k"], 50);
    assert!((r["sampling"]["top_p"].as_f64().unwrap() - 0.9).abs() < 1e-6);

    // Only flags: one custom set. A preset: a set named after it.
    let v = ok_json(&[
        "bench",
        "--backend",
        "cpu",
        "--batch",
        "1",
        "--vocab",
        "64",
        "--runs",
        "10",
        "--min-p",
        "0.1",
        "--json",
    ]);
    assert_eq!(v["results"][0]["params"], "custom");
    let v = ok_json(&[
        "bench",
        "--backend",
        "cpu",
        "--batch",
        "1",
        "--vocab",
        "64",
        "--runs",
        "10",
        "--preset",
        "code",
        "--json",
    ]);
    assert_eq!(v["results"][0]["params"], "preset:code");
    assert_eq!(v["results"][0]["sampling"]["top_k"], 30);

    let out = run(&[
        "bench",
        "--backend",
        "cpu,reference",
        "--batch",
        "1",
        "--vocab",
        "64",
        "--runs",
        "10",
        "--set",
        "min_p",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("µs/row") && text.contains("bw frac"),
        "{text}"
    );
    assert!(
        text.contains("reference") && text.contains("min_p"),
        "{text}"
    );
    // stdout of --json never carries the progress bar; stderr may.
    assert!(!text.contains('\u{1b}'));
}

#[test]
fn logits_file_sets_batch_and_vocab() {
    let dir = std::env::temp_dir().join(format!("ts-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("l.json");
    std::fs::write(&path, "[[1, 2, 3, -Infinity], [0, 0, 1, 2]]").unwrap();
    let v = ok_json(&[
        "bench",
        "--backend",
        "cpu",
        "--logits",
        path.to_str().unwrap(),
        "--runs",
        "10",
        "--set",
        "temperature",
        "--json",
    ]);
    let r = &v["results"][0];
    assert_eq!(
        (r["batch"].as_u64(), r["vocab"].as_u64()),
        (Some(2), Some(4))
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_requests_fail_with_a_message() {
    for (args, needle) in [
        (
            vec!["bench", "--set", "nope", "--batch", "1", "--vocab", "8"],
            "unknown parameter set",
        ),
        (
            vec!["bench", "--runs", "3", "--batch", "1", "--vocab", "8"],
            "at least 10",
        ),
        (vec!["bench", "--batch", "0", "--vocab", "8"], "at least 1"),
        (
            vec![
                "bench",
                "--backend",
                "cpu",
                "--batch",
                "1",
                "--vocab",
                "8",
                "--set",
                "top_p",
                "--top-p",
                "1.5",
            ],
            "top_p",
        ),
    ] {
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
