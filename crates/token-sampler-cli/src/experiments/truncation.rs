//! Experiments 2 and 3: top-p and top-k on experiment 1's logits. Both show
//! the kept set, the renormalised probabilities and the entropy as the knob
//! moves; the temperature is the preset's (1 without one).

use super::data::{SWEEP_LOGITS, SWEEP_TOKENS};
use super::plot::{color, BarSeries, Bars, Figure, Heat, LineSpec, Lines, Panel};
use super::table::{row, Table};
use super::{bits, by_rank, strings, Eval, ExperimentKind, Lab, Report, Result};
use token_sampler::params::SamplingParams;

/// Which truncation knob a sweep moves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Knob {
    TopP,
    TopK,
}

impl Knob {
    fn name(self) -> &'static str {
        match self {
            Knob::TopP => "top_p",
            Knob::TopK => "top_k",
        }
    }
    fn symbol(self) -> &'static str {
        match self {
            Knob::TopP => "p",
            Knob::TopK => "k",
        }
    }
    fn set(self, base: &SamplingParams, v: f64) -> SamplingParams {
        match self {
            Knob::TopP => SamplingParams {
                top_p: v as f32,
                ..base.clone()
            },
            Knob::TopK => SamplingParams {
                top_k: v as i32,
                ..base.clone()
            },
        }
    }
    /// The same row with this knob off: the distribution the stage cuts.
    fn off(self, base: &SamplingParams) -> SamplingParams {
        match self {
            Knob::TopP => self.set(base, 1.0),
            Knob::TopK => self.set(base, 0.0),
        }
    }
}

struct Sweep {
    values: Vec<f64>,
    before: Eval,
    evals: Vec<Eval>,
    curve_values: Vec<f64>,
    curve: Vec<Eval>,
}

fn sweep(lab: &mut Lab, knob: Knob, values: &[f64], curve_values: Vec<f64>) -> Result<Sweep> {
    let base = lab.base();
    let params: Vec<SamplingParams> = values.iter().map(|&v| knob.set(&base, v)).collect();
    let evals = lab.sample_for(&SWEEP_LOGITS, &params)?;
    let curve_params: Vec<SamplingParams> =
        curve_values.iter().map(|&v| knob.set(&base, v)).collect();
    let mut with_before = curve_params;
    with_before.push(knob.off(&base));
    let mut curve = lab.probs_for(&SWEEP_LOGITS, &with_before)?;
    let before = curve.pop().expect("the knob-off row");
    Ok(Sweep {
        values: values.to_vec(),
        before,
        evals,
        curve_values,
        curve,
    })
}

/// Tables and figures shared by both experiments.
fn report_parts(
    kind: ExperimentKind,
    knob: Knob,
    s: &Sweep,
    samples: u32,
) -> (Vec<Table>, Vec<Figure>) {
    let n = SWEEP_TOKENS.len();
    let name = knob.name();
    let sym = knob.symbol();
    let prefix = kind.name().replace('-', "_");
    let rank = by_rank(&s.before.probs);
    let mut cumulative = vec![0.0; n];
    let mut acc = 0.0;
    for &i in &rank {
        acc += s.before.probs[i];
        cumulative[i] = acc;
    }

    let mut per_token = Table::new(
        &format!("{prefix}_sweep"),
        &format!("Kept set and renormalised probabilities as {name} moves"),
        &[
            name,
            "token_id",
            "token",
            "probability_before",
            "cumulative_before",
            "kept",
            "probability",
            "empirical_frequency",
        ],
    );
    let mut summary = Table::new(
        &format!("{prefix}_summary"),
        &format!("Kept count, kept mass and entropy per {name}"),
        &[
            name,
            "kept",
            "kept_mass_before",
            "entropy_bits",
            "entropy_nats",
            "top_probability",
            "empirical_top_frequency",
        ],
    );
    for (&v, e) in s.values.iter().zip(&s.evals) {
        let mut mass = 0.0;
        for i in 0..n {
            let kept = e.probs[i] > 0.0;
            if kept {
                mass += s.before.probs[i];
            }
            per_token.push(row![
                v,
                i,
                SWEEP_TOKENS[i],
                s.before.probs[i],
                cumulative[i],
                kept as usize,
                e.probs[i],
                e.freq_of(i)
            ]);
        }
        let (top, p) = e.top();
        summary.push(row![
            v,
            e.kept,
            mass,
            bits(e.final_entropy),
            e.final_entropy,
            p,
            e.freq_of(top)
        ]);
    }
    let mut cols = vec![name, "kept", "entropy_bits", "top_probability"];
    let prob_cols: Vec<String> = SWEEP_TOKENS.iter().map(|t| format!("p_{t}")).collect();
    cols.extend(prob_cols.iter().map(|c| c.as_str()));
    let mut curve = Table::new(
        &format!("{prefix}_curve"),
        &format!("Kept count, entropy and every token's probability over a fine {name} grid"),
        &cols,
    );
    for (&v, e) in s.curve_values.iter().zip(&s.curve) {
        let mut r = row![v, e.kept, bits(e.final_entropy), e.top().1];
        r.extend(e.probs.iter().map(|&p| p.into()));
        curve.push(r);
    }

    let t = s.before.temperature;
    let panels = s
        .values
        .iter()
        .zip(&s.evals)
        .map(|(&v, e)| {
            Panel::Bars(Bars::probabilities(
                format!(
                    "{sym} = {v} · kept {} · H = {:.3} bits",
                    e.kept,
                    bits(e.final_entropy)
                ),
                strings(&SWEEP_TOKENS),
                vec![
                    BarSeries::ghost(format!("before {name} (T = {t})"), s.before.probs.clone()),
                    BarSeries::bar("kept, renormalised π", e.probs.clone(), color(0)),
                    BarSeries::marker(
                        format!("empirical ({samples} draws)"),
                        e.freq.clone().unwrap_or_default(),
                    ),
                ],
            ))
        })
        .collect();
    let bars = Figure {
        file: format!("{prefix}_bars.png"),
        title: format!(
            "{} — grey: before the cut, blue: what is sampled",
            kind.title()
        ),
        grid: (2, 3),
        panels,
    };
    let pts = |f: &dyn Fn(&Eval) -> f64| -> Vec<(f64, f64)> {
        s.curve_values
            .iter()
            .zip(&s.curve)
            .map(|(&v, e)| (v, f(e)))
            .collect()
    };
    let tested = |f: &dyn Fn(&Eval) -> f64| -> Vec<(f64, f64)> {
        s.values
            .iter()
            .zip(&s.evals)
            .map(|(&v, e)| (v, f(e)))
            .collect()
    };
    let x_range = Some(match knob {
        Knob::TopP => (0.0, 1.02),
        Knob::TopK => (0.5, n as f64 + 0.5),
    });
    let lines = Figure {
        file: format!("{prefix}_curve.png"),
        title: format!("Kept tokens and entropy as {name} moves (T = {t})"),
        grid: (1, 2),
        panels: vec![
            Panel::Lines(Lines {
                title: "tokens kept".into(),
                x_label: name.into(),
                y_label: "kept tokens".into(),
                series: vec![
                    LineSpec::line("kept", pts(&|e| e.kept as f64), color(0)),
                    LineSpec::dots("tested values", tested(&|e| e.kept as f64), color(3)),
                ],
                x_range,
                y_range: Some((0.0, n as f64 + 0.5)),
                vlines: vec![],
                hlines: vec![],
                x_categories: None,
            }),
            Panel::Lines(Lines {
                title: "entropy of what is sampled".into(),
                x_label: name.into(),
                y_label: "entropy (bits)".into(),
                series: vec![
                    LineSpec::line("H of π", pts(&|e| bits(e.final_entropy)), color(0)),
                    LineSpec::dots(
                        "tested values",
                        tested(&|e| bits(e.final_entropy)),
                        color(3),
                    ),
                ],
                x_range,
                y_range: Some((0.0, 3.5)),
                vlines: vec![],
                hlines: vec![(
                    bits(s.before.final_entropy),
                    format!("no {name}: {:.3} bits", bits(s.before.final_entropy)),
                )],
                x_categories: None,
            }),
        ],
    };
    let heat = Figure {
        file: format!("{prefix}_heatmap.png"),
        title: format!("Renormalised probability of every token over {name}"),
        grid: (1, 1),
        panels: vec![Panel::Heat(Heat {
            title: "removed tokens are dark (π = 0); survivors brighten as the cut tightens".into(),
            x_label: name.into(),
            y_label: "token".into(),
            x: s.curve_values.clone(),
            x_categories: None,
            y_categories: strings(&SWEEP_TOKENS),
            z: (0..n)
                .map(|i| s.curve.iter().map(|e| e.probs[i]).collect())
                .collect(),
            z_label: "probability".into(),
            z_range: Some((0.0, 1.0)),
            annotate: false,
        })],
    };
    (vec![summary, per_token, curve], vec![bars, lines, heat])
}

pub(crate) fn run_top_p(lab: &mut Lab) -> Result<Report> {
    let values = [0.5, 0.7, 0.8, 0.9, 0.95, 1.0];
    let grid: Vec<f64> = (1..=100).map(|i| i as f64 / 100.0).collect();
    let s = sweep(lab, Knob::TopP, &values, grid)?;
    let (tables, figures) = report_parts(ExperimentKind::TopP, Knob::TopP, &s, lab.samples());
    let about = "Top-p (nucleus) keeps the smallest set of most probable tokens whose mass reaches p \
        (tokens tied at the cut are all kept), then renormalises the survivors so they sum to 1. The \
        cut adapts to the distribution: a confident head needs few tokens, a flat one many. \
        Entropy falls as p falls because fewer, renormalised tokens remain."
        .to_string();
    Ok(Report {
        kind: ExperimentKind::TopP,
        title: ExperimentKind::TopP.title().into(),
        about,
        setup: String::new(),
        tables,
        figures,
        notes: vec![],
    })
}

pub(crate) fn run_top_k(lab: &mut Lab) -> Result<Report> {
    let values = [1.0, 2.0, 3.0, 5.0, 7.0, 10.0];
    let grid: Vec<f64> = (1..=SWEEP_TOKENS.len()).map(|k| k as f64).collect();
    let s = sweep(lab, Knob::TopK, &values, grid)?;
    let (mut tables, mut figures) =
        report_parts(ExperimentKind::TopK, Knob::TopK, &s, lab.samples());

    // The fixed knife vs the adaptive one: top-k 3 and top-p 0.7 on a sharp
    // (T = 0.5) and a flat (T = 2) version of the same logits.
    let base = lab.base();
    let shapes = [("sharp (T = 0.5)", 0.5f32), ("flat (T = 2)", 2.0)];
    let mut params = Vec::new();
    for &(_, t) in &shapes {
        params.push(SamplingParams {
            temperature: t,
            top_k: 3,
            top_p: 1.0,
            ..base.clone()
        });
        params.push(SamplingParams {
            temperature: t,
            top_k: 0,
            top_p: 0.7,
            ..base.clone()
        });
    }
    let evals = lab.probs_for(&SWEEP_LOGITS, &params)?;
    let mut contrast = Table::new(
        "top_k_vs_top_p",
        "The fixed knife and the adaptive one: top-k = 3 vs top-p = 0.7",
        &[
            "distribution",
            "rule",
            "kept",
            "kept_tokens",
            "entropy_bits",
            "top_probability",
        ],
    );
    let mut panels = Vec::new();
    for (j, e) in evals.iter().enumerate() {
        let (label, _) = shapes[j / 2];
        let rule = if j % 2 == 0 {
            "top_k = 3"
        } else {
            "top_p = 0.7"
        };
        let kept: Vec<&str> = (0..SWEEP_TOKENS.len())
            .filter(|&i| e.probs[i] > 0.0)
            .map(|i| SWEEP_TOKENS[i])
            .collect();
        contrast.push(row![
            label,
            rule,
            e.kept,
            kept.join(" "),
            bits(e.final_entropy),
            e.top().1
        ]);
        panels.push(Panel::Bars(Bars {
            title: format!(
                "{label}, {rule}: kept {} · H = {:.2} bits",
                e.kept,
                bits(e.final_entropy)
            ),
            categories: strings(&SWEEP_TOKENS),
            series: vec![BarSeries::bar(
                "",
                e.probs.clone(),
                color(if j % 2 == 0 { 2 } else { 4 }),
            )],
            value_label: "probability".into(),
            range: Some((0.0, 1.0)),
            reference: None,
            annotate: true,
        }));
    }
    tables.push(contrast);
    figures.push(Figure {
        file: "top_k_vs_top_p.png".into(),
        title: "Top-k cuts a fixed count; top-p adapts to the shape".into(),
        grid: (2, 2),
        panels,
    });
    let about =
        "Top-k keeps the k most probable tokens (all tokens tied with the k-th are kept) and \
        renormalises them. It is the same cut whatever the shape of the distribution: k = 1 is \
        greedy decoding, k ≥ 10 leaves these ten tokens untouched. The last figure contrasts it \
        with top-p on a sharp and a flat version of the same logits."
            .to_string();
    Ok(Report {
        kind: ExperimentKind::TopK,
        title: ExperimentKind::TopK.title().into(),
        about,
        setup: String::new(),
        tables,
        figures,
        notes: vec![],
    })
}
