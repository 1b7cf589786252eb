//! The library crate links none of the command line's dependencies
//! (docs/spec.md §13.1): a server that depends on `token-sampler` compiles no
//! argument parser, plotting, font rasteriser, progress bar or `anyhow`. The
//! check asks cargo for the library's normal dependency tree, as a user would:
//! `cargo tree -p token-sampler -e normal`.

use std::process::Command;

/// Crates only the CLI (crates/token-sampler-cli) may pull in.
const CLI_ONLY: [&str; 6] = [
    "clap",
    "plotters",
    "plotters-backend",
    "ab_glyph",
    "indicatif",
    "anyhow",
];

/// `cargo tree` of the library with one package name per line.
fn library_tree(extra: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--locked",
            "-p",
            "token-sampler",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}"])
        .args(extra)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        // "name v1.2.3 (...)" → "name"
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn library_dependency_tree_excludes_cli_only_crates() {
    for features in [&[][..], &["--no-default-features"][..]] {
        let tree = library_tree(features);
        assert_eq!(
            tree.first().map(String::as_str),
            Some("token-sampler"),
            "{tree:?}"
        );
        let found: Vec<&str> = CLI_ONLY
            .iter()
            .copied()
            .filter(|c| tree.iter().any(|p| p == c))
            .collect();
        assert!(
            found.is_empty(),
            "the library ({features:?}) depends on {found:?}"
        );
        assert!(!tree.iter().any(|p| p == "token-sampler-cli"), "{tree:?}");
    }
    // The default build has the GPU backend, and with it the wgpu it re-exports.
    assert!(library_tree(&[]).iter().any(|p| p == "wgpu"));
}

/// The CLI crate is where those dependencies went (the check above is not
/// vacuous: the same query sees them there).
#[test]
fn cli_crate_has_them() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--locked",
            "-p",
            "token-sampler-cli",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "--depth", "1"])
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for c in [
        "clap",
        "plotters",
        "ab_glyph",
        "indicatif",
        "anyhow",
        "token-sampler",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{c} "))),
            "{c} missing:\n{text}"
        );
    }
}
