//! Helpers every test of the built `token-sampler` binary shares: run it, read
//! its JSON, check a failure's message, find the repository's example data,
//! write scratch files. Each test file uses some of them.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

/// The binary cargo built for this package's tests, with the environment
/// lavapipe needs.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_token-sampler"));
    c.env("XDG_RUNTIME_DIR", "/tmp");
    c
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

/// Runs and asserts success, showing stderr when it fails.
pub fn run_ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs, asserts success, and parses stdout as exactly one JSON document.
pub fn ok_json(args: &[&str]) -> Value {
    let out = run_ok(args);
    serde_json::from_slice(&out.stdout).expect("stdout is exactly one JSON document")
}

/// Fails with exit code ≠ 0 and a stderr that mentions every `needle`, without
/// a panic.
pub fn fails_with(args: &[&str], needles: &[&str]) {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    for n in needles {
        assert!(err.contains(n), "{args:?}: stderr lacks `{n}`:\n{err}");
    }
    assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
}

/// A file of the repository's `examples/data/` (this crate is
/// `crates/token-sampler-cli/`, two levels below the root).
pub fn data(name: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("examples/data")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Writes `contents` to a file named `name` in this process's scratch folder.
/// Tests running in parallel write the same fixtures, so the file is written
/// under a name of this thread's and renamed into place: a command another
/// test has started never reads a file that is being rewritten (truncated).
pub fn tmp(name: &str, contents: &[u8]) -> String {
    let dir = std::env::temp_dir().join(format!("ts-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let part = dir.join(format!("{name}.{:?}.part", std::thread::current().id()));
    std::fs::write(&part, contents).unwrap();
    std::fs::rename(&part, &p).unwrap();
    p.to_string_lossy().into_owned()
}

/// An empty (removed if present) scratch folder for outputs, unique to this
/// process and `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("token-sampler-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
