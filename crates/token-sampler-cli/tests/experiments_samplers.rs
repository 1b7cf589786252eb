//! The `samplers` experiment (docs/spec.md §10, samplers of §3.10–§3.15): its
//! tables agree with the reference pipeline row by row, each cut keeps fewer
//! tokens than no sampler on the long-tail row, and π is a distribution over
//! exactly the kept set.

use token_sampler::reference::{process_row, Overrides};
use token_sampler::{preset, CpuSampler, ReferenceSampler};
use token_sampler_cli::experiments::data::SWEEP_LOGITS;
use token_sampler_cli::experiments::samplers::{
    configs, long_tail_logits, DRY_SEED_HISTORY, LONG_TAIL_VOCAB,
};
use token_sampler_cli::experiments::{run, Cell, ExperimentKind, Options, Report, Table};

fn report() -> Report {
    let opts = Options {
        samples: 100,
        ..Options::default()
    };
    run(
        ExperimentKind::Samplers,
        &mut ReferenceSampler::new(),
        &opts,
    )
    .unwrap()
}

fn col(t: &Table, name: &str) -> usize {
    t.columns
        .iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("{}: no column {name}", t.name))
}

fn num(c: &Cell) -> f64 {
    c.as_f64().unwrap_or_else(|| panic!("not a number: {c:?}"))
}

fn text(c: &Cell) -> String {
    match c {
        Cell::Text(s) => s.clone(),
        other => panic!("not text: {other:?}"),
    }
}

/// The summary rows of one logit row ("seed" or "long-tail"), in config order.
fn summary_rows<'a>(r: &'a Report, row: &str) -> (&'a Table, Vec<&'a Vec<Cell>>) {
    let t = r.table("samplers_summary").unwrap();
    let i = col(t, "row");
    let rows: Vec<_> = t.rows.iter().filter(|c| text(&c[i]) == row).collect();
    assert_eq!(rows.len(), configs().len(), "{row}: one row per config");
    (t, rows)
}

#[test]
fn kept_counts_and_mu_are_the_reference_pipelines() {
    let r = report();
    let long = long_tail_logits();
    for (row, logits) in [("seed", SWEEP_LOGITS.to_vec()), ("long-tail", long)] {
        let (t, rows) = summary_rows(&r, row);
        for (cfg, cells) in configs().iter().zip(rows) {
            assert_eq!(text(&cells[col(t, "params")]), cfg.params);
            let p = if row == "seed" {
                &cfg.seed_row
            } else {
                &cfg.long_tail
            };
            let mut p = p.clone();
            p.seed = Some(0);
            let want = process_row(0, &logits, &p, Overrides::default()).unwrap();
            let what = format!("{row} {} {}", cfg.sampler, cfg.params);
            assert_eq!(
                num(&cells[col(t, "kept")]) as usize,
                want.kept_count,
                "{what}: kept"
            );
            let h = num(&cells[col(t, "final_entropy_nats")]);
            assert!((h - want.final_entropy).abs() < 1e-9, "{what}: H {h}");
            let top = want.pi.iter().cloned().fold(0.0, f64::max);
            let got_top = num(&cells[col(t, "top_probability")]);
            assert!((got_top - top).abs() < 1e-12, "{what}: top {got_top}");
            match (&cells[col(t, "mirostat_mu")], want.mirostat_mu) {
                (Cell::Text(s), None) => assert!(s.is_empty(), "{what}"),
                (c, Some(mu)) => assert!((num(c) - mu).abs() < 1e-9, "{what}: mu"),
                (c, None) => panic!("{what}: mu {c:?} where none"),
            }
        }
    }
}

#[test]
fn every_cut_keeps_fewer_than_none_on_the_long_tail_row_and_dry_keeps_all() {
    let r = report();
    let (t, rows) = summary_rows(&r, "long-tail");
    let kept = |c: &Vec<Cell>| num(&c[col(t, "kept")]) as usize;
    let none = kept(rows[0]);
    assert_eq!(text(&rows[0][col(t, "sampler")]), "none");
    assert_eq!(none, LONG_TAIL_VOCAB);
    for (cfg, cells) in configs().iter().zip(&rows).skip(1) {
        let k = kept(cells);
        if cfg.sampler == "dry" {
            assert_eq!(k, none, "DRY is a penalty, not a cut");
        } else {
            assert!(
                k < none,
                "{} {}: kept {k} of {none}",
                cfg.sampler,
                cfg.params
            );
            assert!(k >= 1);
        }
        // Cutting a distribution whose head holds most of the mass: the kept
        // mass before the cut is at most 1 and positive.
        let m = num(&cells[col(t, "kept_mass_before")]);
        assert!(m > 0.0 && m <= 1.0 + 1e-12, "{}: mass {m}", cfg.params);
    }
    // A tighter setting of the same sampler keeps no more tokens.
    let by_params = |p: &str| {
        let i = configs().iter().position(|c| c.params == p).unwrap();
        kept(rows[i])
    };
    assert!(by_params("typical_p 0.5") <= by_params("typical_p 0.9"));
    assert!(by_params("top_n_sigma 1") <= by_params("top_n_sigma 2"));
    assert!(by_params("v2, tau 3, eta 0.1 (mu 6)") <= by_params("v2, tau 5, eta 0.1 (mu 10)"));
}

#[test]
fn seed_row_pi_is_a_distribution_over_the_kept_set() {
    let r = report();
    let t = r.table("samplers_seed_row").unwrap();
    let (s, _) = summary_rows(&r, "seed");
    let (ip, ik, ipb, itok) = (
        col(t, "probability"),
        col(t, "kept"),
        col(t, "probability_before"),
        col(t, "token"),
    );
    assert_eq!(t.rows.len(), configs().len() * SWEEP_LOGITS.len());
    let summary = &s.rows;
    for (j, cfg) in configs().iter().enumerate() {
        let rows = &t.rows[j * 10..(j + 1) * 10];
        let sum: f64 = rows.iter().map(|c| num(&c[ip])).sum();
        assert!((sum - 1.0).abs() < 1e-9, "{}: Σπ = {sum}", cfg.params);
        let mut kept = 0;
        let mut h = 0.0;
        for c in rows {
            let p = num(&c[ip]);
            assert_eq!(num(&c[ik]) == 1.0, p > 0.0, "{}: kept ⇔ π > 0", cfg.params);
            if p > 0.0 {
                kept += 1;
                h -= p * p.ln();
                // A cut without a penalty only renormalises: π ≥ the T = 1 q.
                if cfg.sampler != "dry" {
                    assert!(p >= num(&c[ipb]) - 1e-12, "{}", cfg.params);
                }
            }
        }
        let srow = &summary[j];
        assert_eq!(num(&srow[col(s, "kept")]) as usize, kept, "{}", cfg.params);
        let sh = num(&srow[col(s, "final_entropy_nats")]);
        assert!(
            (sh - h).abs() < 1e-9,
            "{}: H {sh} vs Σ −π ln π {h}",
            cfg.params
        );
        if cfg.sampler == "dry" {
            // The history ends with a repeat of its opening `approve reject`,
            // so `review` (what followed it) is penalised and nothing else is.
            assert_eq!(DRY_SEED_HISTORY[2], 2);
            for c in rows {
                let (p, before) = (num(&c[ip]), num(&c[ipb]));
                if text(&c[itok]) == "review" {
                    assert!(p < before, "DRY lowers review: {p} vs {before}");
                } else {
                    assert!(p > before, "DRY raises the others: {p} vs {before}");
                }
            }
        }
        if cfg.sampler == "xtc" {
            // q ≥ 0.1: approve, reject, review; all but review go.
            let gone: Vec<String> = rows
                .iter()
                .filter(|c| num(&c[ik]) == 0.0)
                .map(|c| text(&c[itok]))
                .collect();
            assert_eq!(gone, ["approve", "reject"]);
        }
    }
}

#[test]
fn the_long_tail_row_is_deterministic_and_long_tailed() {
    let a = long_tail_logits();
    assert_eq!(a, long_tail_logits());
    assert_eq!(a.len(), LONG_TAIL_VOCAB);
    assert!(a.iter().all(|x| x.is_finite()));
    // Zipf: the first 10 tokens outweigh the last 1000 on average by far.
    let mean = |s: &[f32]| s.iter().map(|&x| x as f64).sum::<f64>() / s.len() as f64;
    assert!(mean(&a[..10]) > mean(&a[3000..]) + 5.0);
}

#[test]
fn it_runs_on_the_reference_whatever_the_backend_and_preset() {
    let opts = Options {
        samples: 100,
        preset: Some(preset("code").unwrap()),
        ..Options::default()
    };
    let r = run(ExperimentKind::Samplers, &mut CpuSampler::new(), &opts).unwrap();
    assert!(r.setup.starts_with("backend reference"), "{}", r.setup);
    let (t, rows) = summary_rows(&r, "long-tail");
    assert_eq!(num(&rows[0][col(t, "kept")]) as usize, LONG_TAIL_VOCAB);
    assert_eq!(r.figures.len(), 2);
}
