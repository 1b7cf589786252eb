//! The preset table as an experiment: each preset on the use-case rows and on
//! experiment 1's row, with and without a history for the penalties to act on.

use super::data::{SWEEP_LOGITS, USE_CASES};
use super::plot::{color, BarSeries, Bars, Figure, Heat, Panel};
use super::table::{row, Table};
use super::{bits, ExperimentKind, Lab, Report, Result};
use token_sampler::params::widen;
use token_sampler::params::SamplingParams;
use token_sampler::presets::{Preset, PresetFamily, PRESETS};

/// The seven task presets, in table order (rising temperature).
pub(crate) fn task_presets() -> Vec<&'static Preset> {
    PRESETS
        .iter()
        .filter(|p| p.family == PresetFamily::Task)
        .collect()
}

/// Four horizontal bar charts — temperature, top-p, top-k and penalties per
/// preset — as in experiment 6's preset panels. `token-sampler presets --png`
/// draws this figure.
pub fn preset_parameters_figure(presets: &[&Preset], file: &str, title: &str) -> Figure {
    let names: Vec<String> = presets.iter().map(|p| p.name.to_string()).collect();
    let bars = |label: &str, values: Vec<f64>, c: usize| BarSeries::bar(label, values, color(c));
    let panel = |title: &str, value_label: &str, series: Vec<BarSeries>, range, reference| {
        Panel::Bars(Bars {
            title: title.into(),
            categories: names.clone(),
            series,
            value_label: value_label.into(),
            range,
            reference,
            annotate: true,
        })
    };
    let t: Vec<f64> = presets.iter().map(|p| widen(p.temperature)).collect();
    let max_t = t.iter().copied().fold(1.0, f64::max);
    Figure {
        file: file.into(),
        title: title.into(),
        grid: (2, 2),
        panels: vec![
            panel(
                "temperature",
                "T (0 = greedy)",
                vec![bars("", t, 0)],
                Some((0.0, max_t * 1.25)),
                Some((0.7, "general-purpose default T = 0.7".into())),
            ),
            panel(
                "top-p (axis from 0.4; 1 = off)",
                "top_p",
                vec![bars(
                    "",
                    presets.iter().map(|p| widen(p.top_p)).collect(),
                    1,
                )],
                Some((0.4, 1.12)),
                None,
            ),
            panel(
                "top-k (0 = off)",
                "top_k",
                vec![bars(
                    "",
                    presets.iter().map(|p| p.top_k as f64).collect(),
                    2,
                )],
                Some((0.0, 40.0)),
                None,
            ),
            panel(
                "penalties",
                "penalty value",
                vec![
                    bars(
                        "repetition_penalty",
                        presets
                            .iter()
                            .map(|p| widen(p.repetition_penalty))
                            .collect(),
                        3,
                    ),
                    bars(
                        "frequency_penalty",
                        presets.iter().map(|p| widen(p.frequency_penalty)).collect(),
                        4,
                    ),
                ],
                Some((0.0, 2.2)),
                Some((1.0, "repetition penalty off (1.0)".into())),
            ),
        ],
    }
}

/// The rows a preset is tried on: experiment 1's and the four use cases.
fn rows() -> Vec<(&'static str, Vec<f32>)> {
    std::iter::once(("approval", SWEEP_LOGITS.to_vec()))
        .chain(USE_CASES.iter().map(|u| (u.task, u.logits.to_vec())))
        .collect()
}

/// The top token generated three times: what the penalties count.
const HISTORY: [u32; 3] = [0, 0, 0];

pub(crate) fn run(lab: &mut Lab) -> Result<Report> {
    let presets: Vec<&'static Preset> = match lab.opts.preset {
        Some(p) => vec![p],
        None => PRESETS.iter().collect(),
    };
    let tasks = rows();
    let mut logits = Vec::new();
    let mut params = Vec::new();
    for p in &presets {
        for (_, x) in &tasks {
            logits.push(x.clone());
            params.push(SamplingParams {
                seed: Some(lab.opts.seed),
                ..p.params()
            });
        }
    }
    let plain = lab.sample(&logits, &params)?;
    let with_history: Vec<SamplingParams> = params
        .iter()
        .map(|p| SamplingParams {
            history: HISTORY.to_vec(),
            ..p.clone()
        })
        .collect();
    let penalised = lab.probs(&logits, &with_history)?;

    let mut table = Table::new(
        "presets_table",
        "The presets (task family: ours; production family: the four production presets)",
        &[
            "preset",
            "family",
            "temperature",
            "top_p",
            "top_k",
            "repetition_penalty",
            "frequency_penalty",
            "description",
        ],
    );
    for p in &presets {
        table.push(row![
            p.name,
            format!("{:?}", p.family).to_lowercase(),
            widen(p.temperature),
            widen(p.top_p),
            p.top_k,
            widen(p.repetition_penalty),
            widen(p.frequency_penalty),
            p.description
        ]);
    }
    let mut entropy = Table::new(
        "presets_entropy",
        "Each preset on each row: final entropy, without and with a history (top token ×3)",
        &[
            "preset",
            "row",
            "kept",
            "entropy_bits",
            "entropy_nats",
            "top_probability",
            "empirical_top_frequency",
            "entropy_bits_with_history",
            "top_probability_with_history",
        ],
    );
    let nt = tasks.len();
    for (i, p) in presets.iter().enumerate() {
        for (j, (task, _)) in tasks.iter().enumerate() {
            let (e, h) = (&plain[i * nt + j], &penalised[i * nt + j]);
            let (top, prob) = e.top();
            entropy.push(row![
                p.name,
                *task,
                e.kept,
                bits(e.final_entropy),
                e.final_entropy,
                prob,
                e.freq_of(top),
                bits(h.final_entropy),
                h.probs[top]
            ]);
        }
    }

    let heat = |title: &str, f: &dyn Fn(usize) -> f64| {
        Panel::Heat(Heat {
            title: title.into(),
            x_label: "row".into(),
            y_label: String::new(),
            x: vec![],
            x_categories: Some(tasks.iter().map(|(t, _)| t.to_string()).collect()),
            y_categories: presets.iter().map(|p| p.name.to_string()).collect(),
            z: (0..presets.len())
                .map(|i| (0..nt).map(|j| f(i * nt + j)).collect())
                .collect(),
            z_label: "entropy (bits)".into(),
            z_range: Some((0.0, 10f64.log2())),
            annotate: true,
        })
    };
    let entropy_fig = Figure {
        file: "presets_entropy.png".into(),
        title: "Final entropy (bits) of each preset on each row".into(),
        grid: (2, 1),
        panels: vec![
            heat("no history", &|k| bits(plain[k].final_entropy)),
            heat("history: the top token 3 times", &|k| {
                bits(penalised[k].final_entropy)
            }),
        ],
    };
    let params_fig = preset_parameters_figure(
        &presets,
        "presets_parameters.png",
        "Presets: temperature, top-p, top-k and penalties",
    );
    let notes = vec![
        "Without a history the repetition and frequency penalties do nothing; the lower map gives them the top token three times to act on.".to_string(),
        "`extraction` has T = 0: greedy, entropy 0 on every row.".to_string(),
    ];
    let about =
        "Every preset on the same rows: experiment 1's approval logits and the four use-case \
        distributions. The task presets' values are ours (the seed gives only their shape); the \
        production presets are the four of the production article. The entropy maps show how the \
        same preset lands on very different entropies depending on the model's own confidence."
            .to_string();
    Ok(Report {
        kind: ExperimentKind::Presets,
        title: ExperimentKind::Presets.title().into(),
        about,
        setup: String::new(),
        tables: vec![table, entropy],
        figures: vec![params_fig, entropy_fig],
        notes,
    })
}
