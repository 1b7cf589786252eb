//! Experiment 1: the same ten logits at six temperatures, and a 50-step curve.

use super::data::{temperature_grid, SWEEP_LOGITS, SWEEP_TEMPERATURES, SWEEP_TOKENS};
use super::plot::{color, BarSeries, Bars, Figure, Heat, LineSpec, Lines, Panel};
use super::table::{row, Table};
use super::{bits, strings, ExperimentKind, Lab, Report, Result};
use token_sampler::params::widen;
use token_sampler::params::SamplingParams;

pub(crate) fn run(lab: &mut Lab) -> Result<Report> {
    let base = lab.base();
    let n = SWEEP_TOKENS.len();
    let at = |t: f32| SamplingParams {
        temperature: t,
        ..base.clone()
    };
    let params: Vec<SamplingParams> = SWEEP_TEMPERATURES.iter().map(|&t| at(t)).collect();
    let evals = lab.sample_for(&SWEEP_LOGITS, &params)?;

    let mut sweep = Table::new(
        "temperature_sweep",
        "Per-token probability at each temperature",
        &[
            "temperature",
            "token_id",
            "token",
            "logit",
            "scaled_logit",
            "probability",
            "empirical_frequency",
        ],
    );
    let mut summary = Table::new(
        "temperature_summary",
        "Entropy and top-token probability per temperature",
        &[
            "temperature",
            "entropy_bits",
            "entropy_nats",
            "perplexity",
            "top_token",
            "top_probability",
            "empirical_top_frequency",
            "kept",
        ],
    );
    for (&t, e) in SWEEP_TEMPERATURES.iter().zip(&evals) {
        let t = widen(t);
        for i in 0..n {
            let x = widen(SWEEP_LOGITS[i]);
            sweep.push(row![
                t,
                i,
                SWEEP_TOKENS[i],
                x,
                x / t,
                e.probs[i],
                e.freq_of(i)
            ]);
        }
        let (top, p) = e.top();
        summary.push(row![
            t,
            bits(e.final_entropy),
            e.final_entropy,
            e.final_entropy.exp(),
            SWEEP_TOKENS[top],
            p,
            e.freq_of(top),
            e.kept
        ]);
    }

    // 50 temperatures 0.1 … 5.0 for the curves and the heat map.
    let grid = temperature_grid(50);
    let curve_params: Vec<SamplingParams> = grid.iter().map(|&t| at(t)).collect();
    let curve = lab.probs_for(&SWEEP_LOGITS, &curve_params)?;
    let mut cols = vec!["temperature", "entropy_bits", "top_probability", "kept"];
    let prob_cols: Vec<String> = SWEEP_TOKENS.iter().map(|t| format!("p_{t}")).collect();
    cols.extend(prob_cols.iter().map(|s| s.as_str()));
    let mut curve_table = Table::new(
        "temperature_curve",
        "Entropy, top-token probability and every token's probability over 50 temperatures",
        &cols,
    );
    for (&t, e) in grid.iter().zip(&curve) {
        let mut r = row![widen(t), bits(e.final_entropy), e.top().1, e.kept];
        r.extend(e.probs.iter().map(|&p| p.into()));
        curve_table.push(r);
    }

    // The seed's two small hand calculations, through the sampler: the
    // customer-service scenario (5 tokens) and the 3-token worked example.
    // (name, tokens, logits, [(temperature, the probabilities the seed printed)]).
    type Example<'a> = (&'a str, &'a [&'a str], &'a [f32], &'a [(f32, &'a [f64])]);
    let examples: [Example; 2] = [
        (
            "customer service",
            &["escalate", "notify", "delay", "close", "optimize"],
            &[2.5, 2.0, 0.8, -0.5, -1.2],
            &[
                (0.2, &[0.92, 0.07, 0.01, 0.0, 0.0]),
                (1.0, &[0.52, 0.32, 0.12, 0.03, 0.01]),
                (2.0, &[0.35, 0.27, 0.15, 0.12, 0.11]),
            ],
        ),
        (
            "worked example (3 tokens)",
            &["approve", "reject", "review"],
            &[2.2, 1.8, 1.4],
            &[(0.5, &[0.606, 0.272, 0.122]), (2.0, &[0.402, 0.329, 0.269])],
        ),
    ];
    let mut worked = Table::new(
        "temperature_worked_examples",
        "The seed's hand calculations: printed vs computed",
        &[
            "example",
            "temperature",
            "token",
            "logit",
            "probability",
            "seed_printed",
        ],
    );
    let mut worst: Vec<(String, f64)> = Vec::new();
    for (name, tokens, logits, cases) in examples {
        let params: Vec<SamplingParams> = cases
            .iter()
            .map(|(t, _)| SamplingParams {
                temperature: *t,
                ..SamplingParams::default()
            })
            .collect();
        let evals = lab.probs_for(logits, &params)?;
        for ((t, printed), e) in cases.iter().zip(&evals) {
            let mut max_gap = 0.0f64;
            for i in 0..tokens.len() {
                worked.push(row![
                    name,
                    widen(*t),
                    tokens[i],
                    widen(logits[i]),
                    e.probs[i],
                    printed[i]
                ]);
                max_gap = max_gap.max((e.probs[i] - printed[i]).abs());
            }
            worst.push((
                format!("{name} at T = {t}: computed {}", fmt_probs(&e.probs)),
                max_gap,
            ));
        }
    }

    // Figures.
    let panels = SWEEP_TEMPERATURES
        .iter()
        .zip(&evals)
        .map(|(&t, e)| {
            let (top, p) = e.top();
            Panel::Bars(Bars::probabilities(
                format!(
                    "T = {t} · H = {:.3} bits · P({}) = {:.3}",
                    bits(e.final_entropy),
                    SWEEP_TOKENS[top],
                    p
                ),
                strings(&SWEEP_TOKENS),
                vec![
                    BarSeries::bar("π (sampler)", e.probs.clone(), color(0)),
                    BarSeries::marker(
                        format!("empirical ({} draws)", lab.samples()),
                        e.freq.clone().unwrap_or_default(),
                    ),
                ],
            ))
        })
        .collect();
    let bars = Figure {
        file: "temperature_bars.png".into(),
        title: "Experiment 1 — the same logits at six temperatures".into(),
        grid: (2, 3),
        panels,
    };
    let sweep_points = |f: &dyn Fn(&super::Eval) -> f64| -> Vec<(f64, f64)> {
        SWEEP_TEMPERATURES
            .iter()
            .zip(&evals)
            .map(|(&t, e)| (widen(t), f(e)))
            .collect()
    };
    let curve_points = |f: &dyn Fn(&super::Eval) -> f64| -> Vec<(f64, f64)> {
        grid.iter()
            .zip(&curve)
            .map(|(&t, e)| (widen(t), f(e)))
            .collect()
    };
    let top_prob = Figure {
        file: "temperature_top_prob.png".into(),
        title: "Top-token probability vs temperature".into(),
        grid: (1, 1),
        panels: vec![Panel::Lines(Lines {
            title: "P(approve): steep at low T, flat at high T".into(),
            x_label: "temperature T".into(),
            y_label: "probability of the top token".into(),
            series: vec![
                LineSpec::line(
                    "P(top), 50 temperatures",
                    curve_points(&|e| e.top().1),
                    color(0),
                ),
                LineSpec::dots(
                    "the six tested temperatures",
                    sweep_points(&|e| e.top().1),
                    color(3),
                ),
            ],
            x_range: Some((0.0, 5.1)),
            y_range: Some((0.0, 1.02)),
            vlines: vec![(1.0, "T = 1 (the model's own distribution)".into())],
            hlines: vec![(1.0 / n as f64, "uniform: 1/10".into())],
            x_categories: None,
        })],
    };
    let max_bits = (n as f64).log2();
    let entropy = Figure {
        file: "temperature_entropy.png".into(),
        title: "Entropy vs temperature".into(),
        grid: (1, 1),
        panels: vec![Panel::Lines(Lines {
            title: "Shannon entropy of π rises with T towards log2(10)".into(),
            x_label: "temperature T".into(),
            y_label: "entropy (bits)".into(),
            series: vec![
                LineSpec::line(
                    "H, 50 temperatures",
                    curve_points(&|e| bits(e.final_entropy)),
                    color(0),
                ),
                LineSpec::dots(
                    "the six tested temperatures",
                    sweep_points(&|e| bits(e.final_entropy)),
                    color(3),
                ),
            ],
            x_range: Some((0.0, 5.1)),
            y_range: Some((0.0, 3.6)),
            vlines: vec![(1.0, "T = 1".into())],
            hlines: vec![(max_bits, format!("maximum: log2 10 = {max_bits:.2} bits"))],
            x_categories: None,
        })],
    };
    let heat = Figure {
        file: "temperature_heatmap.png".into(),
        title: "Every token's probability over 50 temperatures".into(),
        grid: (1, 1),
        panels: vec![Panel::Heat(Heat {
            title: "Low T: one bright token; high T: all tokens alike".into(),
            x_label: "temperature T".into(),
            y_label: "token".into(),
            x: grid.iter().map(|&t| widen(t)).collect(),
            x_categories: None,
            y_categories: strings(&SWEEP_TOKENS),
            z: (0..n)
                .map(|i| curve.iter().map(|e| e.probs[i]).collect())
                .collect(),
            z_label: "probability".into(),
            z_range: Some((0.0, 1.0)),
            annotate: false,
        })],
    };

    let find = |t: f32| {
        let i = SWEEP_TEMPERATURES
            .iter()
            .position(|&x| x == t)
            .expect("tested temperature");
        &evals[i]
    };
    let (e01, e1, e2) = (find(0.1), find(1.0), find(2.0));
    let mut notes = Vec::new();
    if base.top_k == 0 && base.top_p >= 1.0 && base.min_p == 0.0 {
        notes.push(format!(
            "The seed prints \"Entropy: 0.412\" and approve 0.967 at T = 0.1; the sampler gives H = {:.3} bits ({:.3} nats) and P(approve) = {:.3}.",
            bits(e01.final_entropy), e01.final_entropy, e01.probs[0]
        ));
        notes.push(format!(
            "At T = 1 the seed's table has approve ~0.36, reject ~0.24, escalate ~0.10, assign ~0.01; computed {:.3}, {:.3}, {:.3}, {:.3} (H = {:.3} bits).",
            e1.probs[0], e1.probs[1], e1.probs[3], e1.probs[8], bits(e1.final_entropy)
        ));
        notes.push(format!(
            "At T = 2 the seed prints entropy 2.891 with `optimize` on top (0.152) and approve 0.138; temperature never changes the ranking: approve stays on top with {:.3}, optimize has {:.3}, H = {:.3} bits.",
            e2.probs[0], e2.probs[6], bits(e2.final_entropy)
        ));
        notes.push(format!(
            "The seed's graph guide speaks of 20 tokens (maximum 4.32 bits); this experiment has the seed's 10 tokens, maximum log2 10 = {max_bits:.3} bits."
        ));
    }
    for (what, gap) in worst {
        if gap > 0.005 {
            notes.push(format!("The seed's {what} (largest difference {gap:.3})."));
        }
    }
    let about = "Temperature divides every logit by T before the softmax. Below 1 it widens the gaps \
        (approve dominates), above 1 it narrows them (the bars even out); the ranking never changes. \
        Entropy (bits) summarises the spread: 0 = one certain token, log2 10 = 3.32 = all ten alike. \
        The black dots are empirical frequencies of the sampler's draws; they sit on the bars."
        .to_string();
    Ok(Report {
        kind: ExperimentKind::Temperature,
        title: ExperimentKind::Temperature.title().into(),
        about,
        setup: String::new(),
        tables: vec![summary, sweep, curve_table, worked],
        figures: vec![bars, top_prob, entropy, heat],
        notes,
    })
}

fn fmt_probs(p: &[f64]) -> String {
    p.iter()
        .map(|v| format!("{v:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}
