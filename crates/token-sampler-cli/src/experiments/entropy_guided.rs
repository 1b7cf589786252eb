//! Entropy-guided temperature (docs/spec.md §4): a synthetic sequence of rows going from
//! confident to uncertain, and the temperature each mapping chooses per row.

use super::plot::{color, Figure, LineSpec, Lines, Panel};
use super::table::{row, Table};
use super::{bits, ExperimentKind, Lab, Report, Result};
use token_sampler::calibrate::{entropy_percentiles, Unit};
use token_sampler::params::widen;
use token_sampler::params::{DynamicTemperature, Mapping, SamplingParams};

/// Vocabulary of the synthetic rows.
const VOCAB: usize = 100;
/// Rows in the sequence.
const ROWS: usize = 48;
/// The temperature range the entropy-guided article advises mapping onto.
const T_LOW: f32 = 0.3;
const T_HIGH: f32 = 1.8;

/// Row r: a Zipf-shaped row `x_i = −s_r · ln(i + 1)` whose sharpness s_r falls
/// geometrically from 6 (one token holds ~95 %) to 0.5 (nearly flat over 100
/// tokens), so its entropy rises from ≈0.1 to ≈4.4 nats.
pub(crate) fn synthetic_rows() -> Vec<(f64, Vec<f32>)> {
    (0..ROWS)
        .map(|r| {
            let s = 6.0 * (0.5f64 / 6.0).powf(r as f64 / (ROWS - 1) as f64);
            let x = (0..VOCAB)
                .map(|i| (-s * ((i + 1) as f64).ln()) as f32)
                .collect();
            (s, x)
        })
        .collect()
}

/// The mappings compared: linear and sigmoid on the 25th–75th percentile of
/// the sequence's entropies (the article's advice), a LUT, EDT and llama.cpp's
/// `temp_ext`. `None` rows are static temperatures.
fn mappings(
    p25: f32,
    median: f32,
    p75: f32,
) -> Vec<(&'static str, Option<DynamicTemperature>, Option<f32>)> {
    let dynamic = |m| Some(DynamicTemperature::new(m));
    vec![
        ("static T 1.0", None, Some(1.0)),
        ("static T 0.7", None, Some(0.7)),
        (
            "linear",
            dynamic(Mapping::Linear {
                h_low: p25,
                h_high: p75,
                t_min: T_LOW,
                t_max: T_HIGH,
            }),
            None,
        ),
        (
            "sigmoid",
            dynamic(Mapping::Sigmoid {
                h_mid: median,
                steepness: 4.0 / (p75 - p25),
                t_min: T_LOW,
                t_max: T_HIGH,
            }),
            None,
        ),
        (
            "lut",
            dynamic(Mapping::Lut {
                entropies: vec![0.5, 1.5, 2.5, 3.5, 4.5],
                temperatures: vec![0.3, 0.5, 0.9, 1.4, 1.8],
            }),
            None,
        ),
        (
            "edt",
            dynamic(Mapping::Edt {
                t0: T_HIGH,
                base: 0.8,
                theta: 1.0,
            }),
            None,
        ),
        (
            "llama_cpp",
            dynamic(Mapping::LlamaCpp {
                range: 0.75,
                exponent: 1.0,
            }),
            None,
        ),
    ]
}

pub(crate) fn run(lab: &mut Lab) -> Result<Report> {
    let base = lab.base();
    let seq = synthetic_rows();
    let logits: Vec<Vec<f32>> = seq.iter().map(|(_, x)| x.clone()).collect();
    let batch = token_sampler::batch::Batch::from_rows(&logits)?;
    let stats = entropy_percentiles(batch.view(), &vec![base.clone(); ROWS], Unit::Nats)?;
    // f32 parameters, as a user would write them (3 decimals).
    let round = |v: f64| ((v * 1000.0).round() / 1000.0) as f32;
    let (p25, median, p75) = (round(stats.p25), round(stats.median), round(stats.p75));
    let maps = mappings(p25, median, p75);

    let mut rows = Vec::new();
    let mut params = Vec::new();
    for (_, dynamic, t) in &maps {
        for x in &logits {
            rows.push(x.clone());
            params.push(SamplingParams {
                temperature: t.unwrap_or(base.temperature),
                dynamic_temperature: dynamic.clone(),
                ..base.clone()
            });
        }
    }
    let evals = lab.probs(&rows, &params)?;
    let at = |m: usize, r: usize| &evals[m * ROWS + r];

    let mut seq_table = Table::new(
        "entropy_guided_rows",
        "The synthetic sequence: sharpness and model entropy per row",
        &[
            "row",
            "sharpness",
            "entropy_nats",
            "entropy_bits",
            "top_probability_t1",
        ],
    );
    for (r, (s, _)) in seq.iter().enumerate() {
        let e = at(0, r);
        seq_table.push(row![r, *s, e.entropy, bits(e.entropy), e.top().1]);
    }
    let mut choice = Table::new(
        "entropy_guided_temperatures",
        "Temperature each mapping chooses per row, and the entropy of what is then sampled",
        &[
            "mapping",
            "row",
            "entropy_nats",
            "guide_entropy",
            "temperature",
            "final_entropy_nats",
            "final_entropy_bits",
            "kept",
        ],
    );
    for (m, (name, _, _)) in maps.iter().enumerate() {
        for r in 0..ROWS {
            let e = at(m, r);
            choice.push(row![
                *name,
                r,
                e.entropy,
                e.guide_entropy.unwrap_or(e.entropy),
                e.temperature,
                e.final_entropy,
                bits(e.final_entropy),
                e.kept
            ]);
        }
    }
    let mut pct = Table::new(
        "entropy_guided_percentiles",
        "Entropy percentiles of the sequence (nats) and the linear mapping's range",
        &["statistic", "entropy_nats"],
    );
    for (k, v) in [
        ("min", stats.min),
        ("p25 (h_low)", stats.p25),
        ("median (sigmoid h_mid)", stats.median),
        ("p75 (h_high)", stats.p75),
        ("max", stats.max),
        ("mean", stats.mean),
    ] {
        pct.push(row![k, v]);
    }
    let mut map_table = Table::new(
        "entropy_guided_mappings",
        "The mappings as `dynamic_temperature` parameters",
        &["mapping", "temperature", "dynamic_temperature"],
    );
    for (name, d, t) in &maps {
        let json = d
            .as_ref()
            .map(|d| serde_json::to_string(d).unwrap_or_default())
            .unwrap_or_else(|| "null".into());
        map_table.push(row![*name, widen(t.unwrap_or(base.temperature)), json]);
    }

    let row_x = |f: &dyn Fn(&super::Eval) -> f64, m: usize| -> Vec<(f64, f64)> {
        (0..ROWS).map(|r| (r as f64, f(at(m, r)))).collect()
    };
    let dyn_series = |f: &dyn Fn(&super::Eval) -> f64| -> Vec<LineSpec> {
        maps.iter()
            .enumerate()
            .map(|(m, (name, _, _))| LineSpec::line(*name, row_x(f, m), color(m)).with_markers())
            .collect()
    };
    let temperature_fig = Figure {
        file: "entropy_guided_temperature.png".into(),
        title: "From confident to uncertain: the temperature each mapping chooses".into(),
        grid: (2, 1),
        panels: vec![
            Panel::Lines(Lines {
                title: "model entropy of each row (T = 1)".into(),
                x_label: "row (step of the sequence)".into(),
                y_label: "entropy (nats)".into(),
                series: vec![LineSpec::line("H", row_x(&|e| e.entropy, 0), color(0)).with_markers()],
                x_range: Some((-1.0, ROWS as f64)),
                y_range: Some((0.0, (VOCAB as f64).ln() + 0.2)),
                vlines: vec![],
                hlines: vec![
                    (
                        stats.p25,
                        format!("25th percentile {:.2} = h_low", stats.p25),
                    ),
                    (
                        stats.p75,
                        format!("75th percentile {:.2} = h_high", stats.p75),
                    ),
                ],
                x_categories: None,
            }),
            Panel::Lines(Lines {
                title: "temperature chosen".into(),
                x_label: "row (step of the sequence)".into(),
                y_label: "temperature".into(),
                series: dyn_series(&|e| e.temperature),
                x_range: Some((-1.0, ROWS as f64 + 8.0)),
                y_range: Some((0.0, 2.0)),
                vlines: vec![],
                hlines: vec![],
                x_categories: None,
            }),
        ],
    };
    let entropy_fig = Figure {
        file: "entropy_guided_entropy.png".into(),
        title: "Entropy of what is sampled after each mapping's temperature".into(),
        grid: (1, 1),
        panels: vec![Panel::Lines(Lines {
            title: "guided rows stay sharp while the model is sure, and open up when it is not"
                .into(),
            x_label: "row (step of the sequence)".into(),
            y_label: "entropy of π (nats)".into(),
            series: dyn_series(&|e| e.final_entropy),
            x_range: Some((-1.0, ROWS as f64 + 8.0)),
            y_range: Some((0.0, (VOCAB as f64).ln() + 0.2)),
            vlines: vec![],
            hlines: vec![(
                (VOCAB as f64).ln(),
                format!("maximum ln {VOCAB} = {:.2} nats", (VOCAB as f64).ln()),
            )],
            x_categories: None,
        })],
    };
    let curves_fig = Figure {
        file: "entropy_guided_mappings.png".into(),
        title: "The mappings as curves: temperature vs model entropy".into(),
        grid: (1, 1),
        panels: vec![Panel::Lines(Lines {
            title: "each dot is one row of the sequence".into(),
            x_label: "model entropy H (nats)".into(),
            y_label: "temperature".into(),
            series: maps
                .iter()
                .enumerate()
                .map(|(m, (name, _, _))| {
                    let pts = (0..ROWS)
                        .map(|r| (at(m, r).entropy, at(m, r).temperature))
                        .collect();
                    LineSpec::line(*name, pts, color(m)).with_markers()
                })
                .collect(),
            x_range: Some((0.0, (VOCAB as f64).ln() + 0.8)),
            y_range: Some((0.0, 2.0)),
            vlines: vec![
                (stats.p25, "h_low (p25)".into()),
                (stats.p75, "h_high (p75)".into()),
            ],
            hlines: vec![],
            x_categories: None,
        })],
    };
    let about = format!(
        "A synthetic sequence of {ROWS} rows over {VOCAB} tokens whose entropy rises from confident \
         to uncertain. Each mapping of docs/spec.md §4 turns the row's entropy into a temperature: linear \
         and sigmoid between T = {T_LOW} and {T_HIGH} on the 25th–75th percentile of the sequence's \
         entropies (as the entropy-guided article advises; `token-sampler calibrate --percentiles` \
         computes them for a logits file), a lookup table, EDT (T = t0·0.8^(θ/H)) and llama.cpp's \
         dynamic temperature (centred on the row's temperature, ±0.75). Static T = 1 and 0.7 are shown for comparison."
    );
    let notes = vec![format!(
        "Percentiles of this sequence: p25 = {:.3}, median = {:.3}, p75 = {:.3} nats (linear interpolation); the article's typical range for open-ended text is 0.5–4.0 nats.",
        stats.p25, stats.median, stats.p75
    )];
    Ok(Report {
        kind: ExperimentKind::EntropyGuided,
        title: ExperimentKind::EntropyGuided.title().into(),
        about,
        setup: String::new(),
        tables: vec![seq_table, choice, pct, map_table],
        figures: vec![temperature_fig, entropy_fig, curves_fig],
        notes,
    })
}
