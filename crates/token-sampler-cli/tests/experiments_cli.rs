//! `experiment` and `presets --png` through the built binary: files a user
//! would open (1200 × 800 PNGs that are not blank, CSVs that parse, an index
//! page that shows every plot), JSON output and errors.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

mod common;

use common::{run, run_ok, scratch};

/// A PNG of 1200 × 800 whose pixels are not all alike: plotted, not blank.
fn check_png(path: &Path) {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    assert_eq!(img.dimensions(), (1200, 800), "{}", path.display());
    let colours: HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    assert!(
        colours.len() > 20,
        "{}: only {} colours",
        path.display(),
        colours.len()
    );
    // Some ink in each half: text and data, not a title on an empty canvas.
    for half in [0..600u32, 600..1200u32] {
        let dark = half
            .clone()
            .flat_map(|x| (0..800u32).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0.iter().map(|&c| c as u32).sum::<u32>() < 300)
            .count();
        assert!(
            dark > 500,
            "{}: columns {half:?} nearly empty ({dark} dark pixels)",
            path.display()
        );
    }
}

/// Header plus rows of equal width; a column whose first value is a number is
/// numeric in every row.
fn check_csv(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    assert!(
        header
            .iter()
            .all(|h| !h.is_empty() && h.parse::<f64>().is_err()),
        "{}",
        path.display()
    );
    let rows: Vec<Vec<String>> = lines.map(split_csv).collect();
    assert!(!rows.is_empty(), "{}: no rows", path.display());
    let mut numeric = 0;
    for c in 0..header.len() {
        for r in &rows {
            assert_eq!(r.len(), header.len(), "{}: row width", path.display());
        }
        if rows[0][c].parse::<f64>().is_ok() {
            numeric += 1;
            for r in &rows {
                let v: f64 = r[c]
                    .parse()
                    .unwrap_or_else(|_| panic!("{}: {} = {:?}", path.display(), header[c], r[c]));
                assert!(v.is_finite(), "{}: {} = {v}", path.display(), header[c]);
            }
        }
    }
    assert!(numeric > 0, "{}: no numeric column", path.display());
    rows.len()
}

fn split_csv(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p, ext));
        } else if p.extension().is_some_and(|e| e == ext) {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn experiment_all_writes_plots_tables_and_an_index() {
    let dir = scratch("all");
    let out = run_ok(&[
        "experiment",
        "all",
        "--out",
        dir.to_str().unwrap(),
        "--samples",
        "2000",
        "--backend",
        "reference",
    ]);
    let names = [
        "temperature",
        "top-p",
        "top-k",
        "combined",
        "repetition",
        "use-cases",
        "entropy-guided",
        "presets",
        "samplers",
    ];
    let index = std::fs::read_to_string(dir.join("index.html")).unwrap();
    let md = std::fs::read_to_string(dir.join("index.md")).unwrap();
    for n in names {
        let sub = dir.join(n);
        let pngs = files(&sub, "png");
        let csvs = files(&sub, "csv");
        assert!(!pngs.is_empty() && !csvs.is_empty(), "{n}: no files");
        for p in &pngs {
            check_png(p);
            let rel = format!("{n}/{}", p.file_name().unwrap().to_str().unwrap());
            assert!(
                index.contains(&format!("src=\"{rel}\"")),
                "index.html lacks {rel}"
            );
            assert!(md.contains(&format!("]({rel})")), "index.md lacks {rel}");
        }
        for c in &csvs {
            check_csv(c);
        }
    }
    // The temperature experiment's plots, by name.
    for f in [
        "temperature_bars",
        "temperature_top_prob",
        "temperature_entropy",
        "temperature_heatmap",
    ] {
        assert!(
            dir.join("temperature").join(format!("{f}.png")).exists(),
            "{f}"
        );
    }
    assert_eq!(
        check_csv(&dir.join("temperature/temperature_curve.csv")),
        50
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("wrote") && stdout.contains("index.html"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn experiment_json_carries_every_table() {
    let out = run_ok(&[
        "experiment",
        "temperature",
        "--json",
        "--samples",
        "2000",
        "--backend",
        "reference",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema"], 1);
    assert_eq!(v["backend"], "reference");
    assert_eq!(v["samples"], 2000);
    let e = &v["experiments"][0];
    assert_eq!(e["name"], "temperature");
    let rows = e["tables"]["temperature_summary"]["rows"]
        .as_array()
        .unwrap();
    // T = 1: H = 2.611016 bits (see tests/experiments.rs for the derivation).
    let t1 = rows.iter().find(|r| r["temperature"] == 1.0).unwrap();
    assert!((t1["entropy_bits"].as_f64().unwrap() - 2.611016).abs() < 2e-6);
    assert_eq!(
        e["tables"]["temperature_sweep"]["rows"]
            .as_array()
            .unwrap()
            .len(),
        60
    );
}

#[test]
fn experiment_takes_a_preset_and_the_default_backend() {
    // No --backend: the best available one (stderr says which).
    let out = run_ok(&[
        "experiment",
        "use-cases",
        "--preset",
        "chat",
        "--json",
        "--samples",
        "500",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("backend"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["preset"], "chat");
    for r in v["experiments"][0]["tables"]["use_cases_summary"]["rows"]
        .as_array()
        .unwrap()
    {
        assert_eq!(r["temperature"], 0.7);
    }
}

#[test]
fn experiment_errors_are_clean() {
    for (args, needle) in [
        (vec!["experiment", "nope"], "unknown experiment"),
        (
            vec![
                "experiment",
                "top-p",
                "--preset",
                "nope",
                "--backend",
                "reference",
            ],
            "known presets",
        ),
        (
            vec![
                "experiment",
                "temperature",
                "--samples",
                "0",
                "--backend",
                "reference",
            ],
            "samples",
        ),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn presets_draws_its_bar_charts() {
    let dir = scratch("presets");
    let png = dir.join("one.png");
    std::fs::create_dir_all(&dir).unwrap();
    let out = run_ok(&[
        "presets",
        "--png",
        png.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    check_png(&png);
    check_png(&dir.join("presets_parameters.png"));
    // The table still prints.
    assert!(String::from_utf8_lossy(&out.stdout).contains("creative-writing"));
    std::fs::remove_dir_all(&dir).unwrap();
}
