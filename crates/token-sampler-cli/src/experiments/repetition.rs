//! Experiment 5: repetition, presence and frequency penalties on a history,
//! on experiment 1's logits, and a toy decode loop that feeds each draw back
//! into the history.

use super::data::{SWEEP_LOGITS, SWEEP_TOKENS};
use super::plot::{color, BarSeries, Bars, Figure, Heat, LineSpec, Lines, Panel};
use super::table::{row, Table};
use super::{bits, strings, Eval, ExperimentKind, Lab, Report, Result};
use token_sampler::params::widen;
use token_sampler::params::SamplingParams;
use token_sampler::reference::bias_mask_penalties;

/// The generated text so far: approve ×4, reject, review.
const HISTORY: [u32; 6] = [0, 0, 1, 0, 2, 0];
/// The prompt mentions `escalate`: only the repetition penalty counts it (vLLM).
const PROMPT: [u32; 1] = [3];
/// The temperature without a preset (a chat-like setting).
const TEMPERATURE: f32 = 0.7;

/// (label, repetition_penalty, presence_penalty, frequency_penalty)
type Config = (&'static str, f32, f32, f32);

const CONFIGS: [Config; 9] = [
    ("no penalty", 1.0, 0.0, 0.0),
    ("repetition 1.2", 1.2, 0.0, 0.0),
    ("repetition 1.5", 1.5, 0.0, 0.0),
    ("repetition 2.0", 2.0, 0.0, 0.0),
    ("presence 0.5", 1.0, 0.5, 0.0),
    ("presence 1.0", 1.0, 1.0, 0.0),
    ("frequency 0.2", 1.0, 0.0, 0.2),
    ("frequency 0.5", 1.0, 0.0, 0.5),
    ("repetition 1.2 + frequency 0.3", 1.2, 0.0, 0.3),
];

/// Configurations of the decode loop (indices into `CONFIGS`).
const LOOP_CONFIGS: [usize; 4] = [0, 2, 5, 7];
const LOOP_STEPS: usize = 40;

pub(crate) fn run(lab: &mut Lab) -> Result<Report> {
    let mut base = lab.base();
    if lab.opts.preset.is_none() {
        base.temperature = TEMPERATURE;
    }
    let n = SWEEP_TOKENS.len();
    let with = |&(_, r, pres, freq): &Config, history: &[u32]| SamplingParams {
        repetition_penalty: r,
        presence_penalty: pres,
        frequency_penalty: freq,
        history: history.to_vec(),
        prompt_token_ids: PROMPT.to_vec(),
        ..base.clone()
    };
    let params: Vec<SamplingParams> = CONFIGS.iter().map(|c| with(c, &HISTORY)).collect();
    let evals = lab.sample_for(&SWEEP_LOGITS, &params)?;
    let plain = &evals[0];

    let mut count = [0usize; 10];
    for &t in &HISTORY {
        count[t as usize] += 1;
    }
    let mut configs = Table::new(
        "repetition_configs",
        "Each penalty on the history approve ×4, reject, review (prompt: escalate)",
        &[
            "config",
            "repetition_penalty",
            "presence_penalty",
            "frequency_penalty",
            "logit_approve",
            "p_approve",
            "p_reject",
            "p_escalate",
            "entropy_bits",
            "top_token",
            "empirical_top_frequency",
        ],
    );
    let mut per_token = Table::new(
        "repetition_tokens",
        "Per-token logits after the penalties and probabilities",
        &[
            "config",
            "token_id",
            "token",
            "count_in_history",
            "in_prompt",
            "logit",
            "penalised_logit",
            "probability",
            "empirical_frequency",
        ],
    );
    for ((c, p), e) in CONFIGS.iter().zip(&params).zip(&evals) {
        // The penalised logits, by the reference's stage 1–2 (docs/spec.md §3.2).
        let y = bias_mask_penalties(0, &SWEEP_LOGITS, p)?;
        let (top, _) = e.top();
        configs.push(row![
            c.0,
            widen(c.1),
            widen(c.2),
            widen(c.3),
            y[0],
            e.probs[0],
            e.probs[1],
            e.probs[3],
            bits(e.final_entropy),
            SWEEP_TOKENS[top],
            e.freq_of(top)
        ]);
        for i in 0..n {
            per_token.push(row![
                c.0,
                i,
                SWEEP_TOKENS[i],
                count[i],
                PROMPT.contains(&(i as u32)) as usize,
                widen(SWEEP_LOGITS[i]),
                y[i],
                e.probs[i],
                e.freq_of(i)
            ]);
        }
    }

    // Strength curves, one penalty at a time.
    let strengths: [(&str, f64, f64); 3] = [
        ("repetition_penalty", 1.0, 3.0),
        ("presence_penalty", 0.0, 3.0),
        ("frequency_penalty", 0.0, 1.5),
    ];
    let steps = 31;
    let mut curve_params = Vec::new();
    for (k, &(_, lo, hi)) in strengths.iter().enumerate() {
        for j in 0..steps {
            let v = (lo + (hi - lo) * j as f64 / (steps - 1) as f64) as f32;
            let c: Config = match k {
                0 => ("", v, 0.0, 0.0),
                1 => ("", 1.0, v, 0.0),
                _ => ("", 1.0, 0.0, v),
            };
            curve_params.push(with(&c, &HISTORY));
        }
    }
    let curve = lab.probs_for(&SWEEP_LOGITS, &curve_params)?;
    let mut strength = Table::new(
        "repetition_strength",
        "P(approve) and entropy as each penalty grows",
        &[
            "penalty",
            "strength",
            "p_approve",
            "p_reject",
            "entropy_bits",
        ],
    );
    for (k, &(name, lo, hi)) in strengths.iter().enumerate() {
        for j in 0..steps {
            let e = &curve[k * steps + j];
            let v = widen((lo + (hi - lo) * j as f64 / (steps - 1) as f64) as f32);
            strength.push(row![name, v, e.probs[0], e.probs[1], bits(e.final_entropy)]);
        }
    }

    // The decode loop: each draw joins the history of the next step.
    let mut histories: Vec<Vec<u32>> = LOOP_CONFIGS.iter().map(|_| HISTORY.to_vec()).collect();
    let mut generated: Vec<Vec<u32>> = LOOP_CONFIGS.iter().map(|_| Vec::new()).collect();
    for step in 0..LOOP_STEPS {
        let params: Vec<SamplingParams> = LOOP_CONFIGS
            .iter()
            .zip(&histories)
            .map(|(&c, h)| SamplingParams {
                step: step as u64,
                ..with(&CONFIGS[c], h)
            })
            .collect();
        let tokens = lab.draw_one_for(&SWEEP_LOGITS, &params)?;
        for (k, t) in tokens.into_iter().enumerate() {
            histories[k].push(t);
            generated[k].push(t);
        }
    }
    let mut loop_table = Table::new(
        "repetition_loop",
        "A toy decode loop: the same logits every step, each draw added to the history",
        &["config", "step", "token_id", "token"],
    );
    let mut loop_summary = Table::new(
        "repetition_loop_summary",
        &format!("{LOOP_STEPS} generated tokens per configuration"),
        &["config", "distinct_tokens", "longest_run", "share_approve"],
    );
    for (&c, g) in LOOP_CONFIGS.iter().zip(&generated) {
        for (s, &t) in g.iter().enumerate() {
            loop_table.push(row![CONFIGS[c].0, s, t as usize, SWEEP_TOKENS[t as usize]]);
        }
        let mut distinct = g.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let (mut longest, mut run) = (0, 0);
        for (s, &t) in g.iter().enumerate() {
            run = if s > 0 && g[s - 1] == t { run + 1 } else { 1 };
            longest = longest.max(run);
        }
        let approve = g.iter().filter(|&&t| t == 0).count() as f64 / g.len() as f64;
        loop_summary.push(row![CONFIGS[c].0, distinct.len(), longest, approve]);
    }

    // Figures.
    let panels = CONFIGS
        .iter()
        .zip(&evals)
        .map(|(c, e)| {
            Panel::Bars(Bars {
                title: format!(
                    "{} · P(approve) = {:.3} · H = {:.2} bits",
                    c.0,
                    e.probs[0],
                    bits(e.final_entropy)
                ),
                categories: strings(&SWEEP_TOKENS),
                series: vec![
                    BarSeries::ghost("", plain.probs.clone()),
                    BarSeries::bar("", e.probs.clone(), color(0)),
                    BarSeries::marker("", e.freq.clone().unwrap_or_default()),
                ],
                value_label: "probability".into(),
                range: Some((0.0, 0.8)),
                reference: None,
                annotate: false,
            })
        })
        .collect();
    let t = base.temperature;
    let bars = Figure {
        file: "repetition_bars.png".into(),
        title: format!("Penalties at T = {t} — grey: no penalty, blue: penalised, dots: draws"),
        grid: (3, 3),
        panels,
    };
    let curve_panel = |k: usize, y_label: &str, f: &dyn Fn(&Eval) -> f64| {
        let (name, lo, hi) = strengths[k];
        let pts: Vec<(f64, f64)> = (0..steps)
            .map(|j| {
                (
                    lo + (hi - lo) * j as f64 / (steps - 1) as f64,
                    f(&curve[k * steps + j]),
                )
            })
            .collect();
        Panel::Lines(Lines {
            title: name.replace('_', " "),
            x_label: format!("{name} (off at {lo})"),
            y_label: y_label.into(),
            series: vec![LineSpec::line("", pts, color(k)).with_markers()],
            x_range: None,
            y_range: None,
            vlines: vec![],
            hlines: vec![],
            x_categories: None,
        })
    };
    let strength_fig = Figure {
        file: "repetition_strength.png".into(),
        title: format!(
            "Each penalty alone as it grows (T = {t}; approve is in the history 4 times)"
        ),
        grid: (2, 3),
        panels: (0..3)
            .map(|k| curve_panel(k, "P(approve)", &|e| e.probs[0]))
            .chain((0..3).map(|k| curve_panel(k, "entropy (bits)", &|e| bits(e.final_entropy))))
            .collect(),
    };
    let loop_fig = Figure {
        file: "repetition_loop.png".into(),
        title: format!(
            "A decode loop over {LOOP_STEPS} steps (same logits each step; bright = drawn)"
        ),
        grid: (2, 2),
        panels: LOOP_CONFIGS
            .iter()
            .zip(&generated)
            .map(|(&c, g)| {
                Panel::Heat(Heat {
                    title: CONFIGS[c].0.into(),
                    x_label: "step".into(),
                    y_label: String::new(),
                    x: (0..g.len()).map(|s| s as f64).collect(),
                    x_categories: None,
                    y_categories: strings(&SWEEP_TOKENS),
                    z: (0..n)
                        .map(|i| g.iter().map(|&t| (t as usize == i) as u8 as f64).collect())
                        .collect(),
                    z_label: String::new(),
                    z_range: Some((0.0, 1.0)),
                    annotate: false,
                })
            })
            .collect(),
    };

    let rep2 = &configs.rows[3];
    let notes = vec![
        format!(
            "The repetition penalty divides a positive logit and multiplies a negative one: approve's 2.2 becomes {:.3} at 2.0; the prompt token escalate (0.9) is penalised too, the presence and frequency penalties ignore the prompt (vLLM).",
            rep2[4].as_f64().unwrap_or(f64::NAN)
        ),
        "The decode loop keeps the logits fixed, which a real model would not: it isolates what the penalties do to a growing history.".to_string(),
    ];
    let about = format!(
        "Penalties act on logits before temperature, for tokens already generated. The \
         repetition penalty r divides positive logits by r and multiplies negative ones by r (it \
         also counts prompt tokens); the presence penalty subtracts a constant once a token has \
         appeared; the frequency penalty subtracts per occurrence, so approve (4 times in the \
         history) loses 4× as much. Without a preset T = {TEMPERATURE}."
    );
    Ok(Report {
        kind: ExperimentKind::Repetition,
        title: ExperimentKind::Repetition.title().into(),
        about,
        setup: String::new(),
        tables: vec![configs, per_token, strength, loop_summary, loop_table],
        figures: vec![bars, strength_fig, loop_fig],
        notes,
    })
}
