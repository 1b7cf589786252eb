//! The binary at the limits (docs/spec.md §2.2): sizes that overflow or
//! exceed the memory budget are refused up front with a message naming the
//! flag, never a panic, an abort or a hang; text output into a closed pipe
//! ends quietly and other write errors are one line; flag and field messages
//! say what was expected.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{bin, fails_with, run, tmp};

/// Two rows of four f32 logits, raw.
fn raw8() -> String {
    let bytes: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    tmp("eight.bin", &bytes)
}

/// The one line of stderr that is not the backend notice.
fn error_lines(args: &[&str]) -> Vec<String> {
    let out = run(args);
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
    err.lines()
        .filter(|l| !l.starts_with("token-sampler:") && !l.contains("XDG_RUNTIME_DIR"))
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn a_raw_vocab_whose_row_size_wraps_is_an_error() {
    // Was: 2^62 × 4 bytes wraps to 0, a division by zero.
    let f = raw8();
    for v in ["4611686018427387904", "18446744073709551615"] {
        fails_with(
            &[
                "sample",
                "--backend",
                "cpu",
                "--logits",
                &f,
                "--dtype",
                "f32",
                "--vocab",
                v,
            ],
            &["--vocab", v, "64-bit"],
        );
    }
}

#[test]
fn an_npy_shape_whose_product_overflows_names_the_shape() {
    // Was: "0 logits do not make …" for a file holding 8.
    let hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }";
    let mut h = hdr.as_bytes().to_vec();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(h.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&h);
    bytes.extend((0..8).flat_map(|i| (i as f32).to_le_bytes()));
    let f = tmp("wrap.npy", &bytes);
    fails_with(
        &["sample", "--backend", "cpu", "--logits", &f],
        &["[4294967296, 4294967296]", "corrupt header"],
    );
}

#[test]
fn draws_beyond_the_memory_budget_are_refused_up_front() {
    // Was: "memory allocation failed" (an abort) on cpu and reference.
    let f = raw8();
    for backend in ["cpu", "reference"] {
        for samples in ["1000000000", "4294967295"] {
            fails_with(
                &[
                    "sample",
                    "--backend",
                    backend,
                    "--logits",
                    &f,
                    "--dtype",
                    "f32",
                    "--vocab",
                    "4",
                    "--samples",
                    samples,
                ],
                &["--samples", samples, "memory budget"],
            );
        }
    }
    fails_with(
        &[
            "sample",
            "--backend",
            "cpu",
            "--logits",
            &f,
            "--dtype",
            "f32",
            "--vocab",
            "4",
            "--samples",
            "500000000",
            "--json",
        ],
        &["--json", "memory budget"],
    );
}

#[test]
fn bench_and_validate_sizes_are_refused_up_front() {
    // Was: a capacity-overflow panic (2^32, 2^64) and an abort (10^5 × 10^5).
    for (b, v) in [
        ("4294967296", "2"),
        ("18446744073709551615", "18446744073709551615"),
        ("100000", "100000"),
    ] {
        fails_with(
            &[
                "bench",
                "--backend",
                "cpu",
                "--batch",
                b,
                "--vocab",
                v,
                "--runs",
                "10",
            ],
            &["--batch", "memory budget"],
        );
    }
    for v in ["4294967296", "18446744073709551615"] {
        fails_with(
            &[
                "validate",
                "--backend",
                "cpu",
                "--vocab",
                v,
                "--cases",
                "1",
                "--max-batch",
                "1",
            ],
            &["--vocab", "memory budget"],
        );
    }
}

#[test]
fn an_endless_warm_up_is_refused() {
    // Was: `--warmup-ms inf` never returned.
    for ms in ["inf", "NaN", "-1", "1e300"] {
        fails_with(
            &[
                "bench",
                "--backend",
                "cpu",
                "--batch",
                "1",
                "--vocab",
                "8",
                "--runs",
                "10",
                "--warmup-ms",
                ms,
            ],
            &["--warmup-ms"],
        );
    }
    fails_with(
        &[
            "bench",
            "--backend",
            "cpu",
            "--batch",
            "1",
            "--vocab",
            "8",
            "--runs",
            "100000000000",
        ],
        &["--runs", "at most"],
    );
}

#[test]
fn text_into_a_closed_pipe_ends_quietly() {
    // Was: a panic ("failed printing to stdout: Broken pipe"). 20 000 lines
    // of text is far more than a pipe buffers.
    let row: Vec<String> = (0..20_000)
        .map(|i| format!("{}", (i % 97) as f32 * 0.01))
        .collect();
    let f = tmp("wide.json", format!("[[{}]]", row.join(",")).as_bytes());
    let mut child = bin()
        .args([
            "probs",
            "--backend",
            "cpu",
            "--logits",
            &f,
            "--top",
            "20000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("row 0"), "{first}");
    // The reader is dropped here: the pipe is closed, as `| head -1` does.
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(!err.contains("panicked") && !err.contains("error"), "{err}");
}

#[test]
fn a_full_disk_is_one_line() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        eprintln!("no /dev/full here: not tested");
        return;
    };
    let f = raw8();
    for json in [false, true] {
        let mut args = vec![
            "sample",
            "--backend",
            "cpu",
            "--logits",
            &f,
            "--dtype",
            "f32",
        ];
        args.extend(["--vocab", "4"]);
        if json {
            args.push("--json");
        }
        let out = bin()
            .args(&args)
            .stdout(full.try_clone().unwrap())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains("cannot write the output"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn messages_name_the_flag_or_field() {
    let f = raw8();
    let base = [
        "sample",
        "--backend",
        "cpu",
        "--logits",
        &f,
        "--dtype",
        "f32",
        "--vocab",
        "4",
    ];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        error_lines(&a)
    };
    // Was: "invalid type: null, expected f32".
    let e = with(&["--temperature", "NaN"]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("--temperature NaN") && e[0].contains("finite"),
        "{e:?}"
    );
    // Was: "unexpected argument '-1' found".
    let e = with(&["--seed", "-1"]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("--seed") && e[0].contains("must be ≥ 0"),
        "{e:?}"
    );
    let e = with(&["--samples", "-3"]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("--samples") && e[0].contains("must be ≥ 0"),
        "{e:?}"
    );
    let e = with(&["--seed", "18446744073709551616"]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("--seed") && e[0].contains("18446744073709551615"),
        "{e:?}"
    );
    // Was: "invalid type: floating point" for a seed of 2^64 in a params file.
    let p = tmp("seed64.json", br#"{"seed": 18446744073709551616}"#);
    let e = with(&["--params", &p]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("`seed`") && e[0].contains("whole number"),
        "{e:?}"
    );
    let p = tmp("neg_history.json", br#"{"history": [1, -2]}"#);
    let e = with(&["--params", &p]);
    assert!(e[0].contains("`history[1]`"), "{e:?}");
    // A subnormal temperature names its field (docs/spec.md §2.1).
    let e = with(&["--temperature", "1e-40"]);
    assert!(
        e[0].contains("`temperature`") && e[0].contains("use 0 (greedy)"),
        "{e:?}"
    );
}

#[test]
fn output_path_errors_print_the_os_reason_once() {
    // Was: plotters' internal error chain, and the OS error printed twice.
    let file = tmp("not_a_dir", b"x");
    let png = format!("{file}/chart.png");
    let e = error_lines(&["presets", "--png", &png]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        !e[0].contains("BackendError") && !e[0].contains("Os {"),
        "{e:?}"
    );
    assert_eq!(e[0].matches("os error").count(), 1, "{e:?}");
    let out = format!("{file}/sub");
    let e = error_lines(&[
        "experiment",
        "temperature",
        "--backend",
        "cpu",
        "--out",
        &out,
    ]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].matches("os error").count(), 1, "{e:?}");
}

/// docs/spec.md §2.3: without a usable hardware adapter the default backend
/// is `cpu`, and stderr says why in one line; an explicit `--backend gpu`
/// that cannot open is a one-line error.
#[test]
fn no_usable_adapter_falls_back_to_cpu_in_one_line_unless_gpu_is_asked_for() {
    let input = common::data("batch_32k.npy");
    let out = bin()
        .env("WGPU_ADAPTER_NAME", "no-such-adapter")
        .args(["sample", "--logits", &input, "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let notice: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("token-sampler:"))
        .collect();
    assert_eq!(notice.len(), 1, "{err}");
    for needle in [
        "backend cpu",
        "gpu not used",
        "WGPU_ADAPTER_NAME=`no-such-adapter`",
    ] {
        assert!(
            notice[0].contains(needle),
            "lacks `{needle}`: {}",
            notice[0]
        );
    }
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["backend"], "cpu");

    let out = bin()
        .env("WGPU_ADAPTER_NAME", "no-such-adapter")
        .args(["sample", "--backend", "gpu", "--logits", &input])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.contains("XDG_RUNTIME_DIR") && !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(lines[0].contains("backend `gpu` is not available"), "{err}");
}

/// docs/spec.md §2.2: a usage error (an unknown flag, a missing value) is one
/// line too, with exit code 2.
#[test]
fn usage_errors_are_one_line() {
    for args in [
        &["sample", "--no-such-flag"][..],
        &["sample", "--logits"][..],
        &["no-such-command"][..],
        &["bench", "--batch", "x"][..],
    ] {
        let e = error_lines(args);
        assert_eq!(e.len(), 1, "{args:?}: {e:?}");
        assert!(e[0].starts_with("error: "), "{args:?}: {e:?}");
        assert_eq!(run(args).status.code(), Some(2), "{args:?}");
    }
}
