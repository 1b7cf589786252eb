//! The extended samplers (docs/spec.md §3.9–§3.15) side by side: typical,
//! top-nσ, ε, η, XTC, mirostat v2 and DRY, each at the values their peers
//! suggest, on experiment 1's ten-token row and on a long-tail row of a few
//! thousand tokens. Every number is what the reference backend returned
//! (`probs`): the kept set, π, its entropy and its top mass.

use super::data::{SWEEP_LOGITS, SWEEP_TOKENS};
use super::plot::{color, BarSeries, Bars, Figure, LineSpec, Lines, Panel};
use super::table::{row, Cell, Table};
use super::{bits, by_rank, strings, Eval, ExperimentKind, Lab, Report, Result};
use token_sampler::params::{Mirostat, SamplingParams};

/// Tokens in the long-tail row.
pub const LONG_TAIL_VOCAB: usize = 4000;
/// The Zipf exponent of the long-tail row: p_r ∝ r^(−s) before the noise.
pub const LONG_TAIL_ZIPF: f64 = 1.3;
/// Standard deviation of the seeded normal noise added to its logits.
pub const LONG_TAIL_NOISE: f64 = 0.3;

/// The history of the DRY configuration on the seed row: `approve reject`
/// repeats the opening, so `review` (token 2) would extend a repeat of length
/// 2 = `dry_allowed_length` and gets the penalty M·b^0 = M.
pub const DRY_SEED_HISTORY: [u32; 6] = [0, 1, 2, 3, 0, 1];
/// The long-tail row's DRY history: `5 17 3` repeats, so token 42 would
/// extend a repeat of length 3 and gets M·b^1.
pub const DRY_LONG_TAIL_HISTORY: [u32; 8] = [5, 17, 3, 42, 9, 5, 17, 3];

/// A deterministic "real-looking" long-tail row: a Zipf(s) log-probability
/// per rank plus seeded normal noise (splitmix64 + Box–Muller, seed fixed), so
/// neighbouring ranks overlap a little as in a model's logits.
pub fn long_tail_logits() -> Vec<f32> {
    let mut state: u64 = 0x5eed_1234_abcd_0001;
    let mut next = || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // (0, 1]: never 0, so ln is finite.
        ((z >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    };
    (0..LONG_TAIL_VOCAB)
        .map(|i| {
            let (u1, u2) = (next(), next());
            let g = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            (-LONG_TAIL_ZIPF * ((i + 1) as f64).ln() + LONG_TAIL_NOISE * g) as f32
        })
        .collect()
}

/// One configuration: its sampler name, its parameters as text, and the row
/// parameters for the seed row and the long-tail row (they differ only in
/// DRY's history).
pub struct Config {
    pub sampler: &'static str,
    /// A short column-name-safe key, e.g. `typical_0.9`.
    pub key: &'static str,
    pub params: &'static str,
    pub seed_row: SamplingParams,
    pub long_tail: SamplingParams,
}

/// The configurations the experiment shows, `none` first.
pub fn configs() -> Vec<Config> {
    let d = SamplingParams::default;
    let same = |sampler, key, params, p: SamplingParams| Config {
        sampler,
        key,
        params,
        seed_row: p.clone(),
        long_tail: p,
    };
    let miro = |tau: f32| SamplingParams {
        mirostat: Some(Mirostat {
            tau,
            ..Mirostat::new(2)
        }),
        ..d()
    };
    let dry = |history: &[u32]| SamplingParams {
        dry_multiplier: 0.8,
        dry_base: 1.75,
        dry_allowed_length: 2,
        dry_penalty_last_n: -1,
        history: history.to_vec(),
        ..d()
    };
    vec![
        same("none", "none", "T 1", d()),
        same(
            "typical",
            "typical_0.9",
            "typical_p 0.9",
            SamplingParams {
                typical_p: 0.9,
                ..d()
            },
        ),
        same(
            "typical",
            "typical_0.5",
            "typical_p 0.5",
            SamplingParams {
                typical_p: 0.5,
                ..d()
            },
        ),
        same(
            "top-nσ",
            "top_n_sigma_1",
            "top_n_sigma 1",
            SamplingParams {
                top_n_sigma: 1.0,
                ..d()
            },
        ),
        same(
            "top-nσ",
            "top_n_sigma_2",
            "top_n_sigma 2",
            SamplingParams {
                top_n_sigma: 2.0,
                ..d()
            },
        ),
        same(
            "epsilon",
            "epsilon_3e-4",
            "epsilon_cutoff 3e-4",
            SamplingParams {
                epsilon_cutoff: 3e-4,
                ..d()
            },
        ),
        same(
            "eta",
            "eta_3e-4",
            "eta_cutoff 3e-4",
            SamplingParams {
                eta_cutoff: 3e-4,
                ..d()
            },
        ),
        same(
            "xtc",
            "xtc_0.1_1",
            "xtc_threshold 0.1, xtc_probability 1",
            SamplingParams {
                xtc_threshold: 0.1,
                xtc_probability: 1.0,
                ..d()
            },
        ),
        same(
            "mirostat",
            "mirostat2_tau3",
            "v2, tau 3, eta 0.1 (mu 6)",
            miro(3.0),
        ),
        same(
            "mirostat",
            "mirostat2_tau5",
            "v2, tau 5, eta 0.1 (mu 10)",
            miro(5.0),
        ),
        Config {
            sampler: "dry",
            key: "dry",
            params: "multiplier 0.8, base 1.75, allowed_length 2, last_n -1",
            seed_row: dry(&DRY_SEED_HISTORY),
            long_tail: dry(&DRY_LONG_TAIL_HISTORY),
        },
    ]
}

pub(crate) fn run(lab: &mut Lab) -> Result<Report> {
    let cfgs = configs();
    let long = long_tail_logits();
    let seed_params: Vec<SamplingParams> = cfgs.iter().map(|c| c.seed_row.clone()).collect();
    let long_params: Vec<SamplingParams> = cfgs.iter().map(|c| c.long_tail.clone()).collect();
    let seed_evals = lab.probs_for(&SWEEP_LOGITS, &seed_params)?;
    let long_evals = lab.probs_for(&long, &long_params)?;

    let mut summary = Table::new(
        "samplers_summary",
        "Kept set, entropy and top mass of each sampler on both rows (mirostat_mu empty where absent)",
        &[
            "row",
            "sampler",
            "params",
            "kept",
            "kept_mass_before",
            "entropy_bits",
            "final_entropy_nats",
            "top_token",
            "top_probability",
            "mirostat_mu",
        ],
    );
    let rows: [(&str, &[Eval]); 2] = [("seed", &seed_evals), ("long-tail", &long_evals)];
    for (name, evals) in rows {
        let before = &evals[0];
        for (c, e) in cfgs.iter().zip(evals) {
            let mass: f64 = (0..e.probs.len())
                .filter(|&i| e.probs[i] > 0.0)
                .map(|i| before.probs[i])
                .sum();
            let (top, p) = e.top();
            let top_name = if name == "seed" {
                SWEEP_TOKENS[top].to_string()
            } else {
                format!("#{top}")
            };
            summary.push(row![
                name,
                c.sampler,
                c.params,
                e.kept,
                mass,
                bits(e.final_entropy),
                e.final_entropy,
                top_name,
                p,
                e.mirostat_mu.map_or(Cell::Text(String::new()), Cell::Num)
            ]);
        }
    }

    let mut per_token = Table::new(
        "samplers_seed_row",
        "The seed row under each sampler: kept tokens and π",
        &[
            "sampler",
            "params",
            "token_id",
            "token",
            "probability_before",
            "kept",
            "probability",
        ],
    );
    for (c, e) in cfgs.iter().zip(&seed_evals) {
        for (i, tok) in SWEEP_TOKENS.iter().enumerate() {
            per_token.push(row![
                c.sampler,
                c.params,
                i,
                *tok,
                seed_evals[0].probs[i],
                (e.probs[i] > 0.0) as usize,
                e.probs[i]
            ]);
        }
    }

    // Long-tail π by rank of the untouched row, the head only.
    const HEAD: usize = 60;
    const PLOTTED: usize = 25;
    let rank = by_rank(&long_evals[0].probs);
    let mut head = vec!["rank", "token_id", "probability_before"];
    let cols: Vec<String> = cfgs[1..].iter().map(|c| format!("p_{}", c.key)).collect();
    head.extend(cols.iter().map(|s| s.as_str()));
    let mut tail_table = Table::new(
        "samplers_long_tail_head",
        &format!("The long-tail row's {HEAD} most likely tokens: π under each sampler"),
        &head,
    );
    for (r, &i) in rank.iter().take(HEAD).enumerate() {
        let mut cells = row![r + 1, i, long_evals[0].probs[i]];
        cells.extend(long_evals[1..].iter().map(|e| e.probs[i].into()));
        tail_table.push(cells);
    }

    let seed_panels: Vec<Panel> = cfgs
        .iter()
        .zip(&seed_evals)
        .map(|(c, e)| {
            Panel::Bars(Bars::probabilities(
                format!(
                    "{} · kept {} · H = {:.2} bits",
                    c.key,
                    e.kept,
                    bits(e.final_entropy)
                ),
                strings(&SWEEP_TOKENS),
                vec![
                    BarSeries::ghost("no sampler (T = 1)", seed_evals[0].probs.clone()),
                    BarSeries::bar("kept, renormalised π", e.probs.clone(), color(0)),
                ],
            ))
        })
        .collect();
    let seed_fig = Figure {
        file: "samplers_seed_bars.png".into(),
        title: "Extended samplers on the seed row — grey: T = 1 untouched, blue: π".into(),
        grid: (3, 4),
        panels: seed_panels,
    };

    let names: Vec<String> = cfgs.iter().map(|c| c.key.to_string()).collect();
    let per =
        |evals: &[Eval], f: &dyn Fn(&Eval) -> f64| -> Vec<f64> { evals.iter().map(f).collect() };
    let head_lines: Vec<LineSpec> = cfgs
        .iter()
        .zip(&long_evals)
        .enumerate()
        .filter(|(_, (c, _))| c.sampler != "none")
        .map(|(j, (c, e))| {
            LineSpec::line(
                c.key,
                rank.iter()
                    .take(PLOTTED)
                    .enumerate()
                    .map(|(r, &i)| ((r + 1) as f64, e.probs[i]))
                    .collect(),
                color(j),
            )
        })
        .collect();
    let mut all_lines = vec![LineSpec::line(
        "none (T = 1)",
        rank.iter()
            .take(PLOTTED)
            .enumerate()
            .map(|(r, &i)| ((r + 1) as f64, long_evals[0].probs[i]))
            .collect(),
        color(0),
    )
    .with_markers()];
    all_lines.extend(head_lines);
    let long_fig = Figure {
        file: "samplers_long_tail.png".into(),
        title: format!(
            "Long-tail row ({LONG_TAIL_VOCAB} tokens, Zipf {LONG_TAIL_ZIPF} + seeded noise): what each sampler keeps"
        ),
        grid: (2, 2),
        panels: vec![
            Panel::Bars(Bars {
                title: format!("tokens kept of {LONG_TAIL_VOCAB}"),
                categories: names.clone(),
                series: vec![BarSeries::bar(
                    "long-tail row",
                    per(&long_evals, &|e| e.kept as f64),
                    color(1),
                )],
                value_label: "kept tokens".into(),
                range: Some((0.0, 1.2 * LONG_TAIL_VOCAB as f64)),
                reference: None,
                annotate: true,
            }),
            Panel::Bars(Bars {
                title: "entropy of π".into(),
                categories: names.clone(),
                series: vec![
                    BarSeries::bar("seed row", per(&seed_evals, &|e| bits(e.final_entropy)), color(0)),
                    BarSeries::bar(
                        "long-tail row",
                        per(&long_evals, &|e| bits(e.final_entropy)),
                        color(1),
                    ),
                ],
                value_label: "entropy (bits)".into(),
                range: Some((0.0, 9.0)),
                reference: None,
                annotate: true,
            }),
            Panel::Bars(Bars {
                title: "top mass (largest π)".into(),
                categories: names,
                series: vec![
                    BarSeries::bar("seed row", per(&seed_evals, &|e| e.top().1), color(0)),
                    BarSeries::bar("long-tail row", per(&long_evals, &|e| e.top().1), color(1)),
                ],
                value_label: "probability".into(),
                range: Some((0.0, 1.0)),
                reference: None,
                annotate: true,
            }),
            Panel::Lines(Lines {
                title: format!("π of the {PLOTTED} most likely tokens (by rank before any sampler)"),
                x_label: "rank".into(),
                y_label: "probability".into(),
                series: all_lines,
                x_range: Some((0.5, PLOTTED as f64 + 0.5)),
                y_range: None,
                vlines: vec![],
                hlines: vec![],
                x_categories: None,
            }),
        ],
    };

    let about = "The samplers of docs/spec.md §3.10–§3.15, each alone at T = 1, on experiment 1's ten \
        tokens and on a long-tail row of 4000 tokens (a Zipf log-probability per rank plus seeded \
        normal noise). Top-nσ keeps logits within n standard deviations of the best; typical keeps \
        the tokens whose surprise is closest to the entropy until their mass reaches τ; ε and η drop \
        tokens below a probability floor (η's floor falls as the entropy rises); XTC removes every \
        likely token but the least likely of them; mirostat v2 keeps the tokens whose surprise is at \
        most mu (2·tau at the first step) and reports the next mu; DRY is a penalty, not a cut: it \
        lowers the token that would extend a repeat of the history and keeps every token."
        .to_string();
    let notes = vec![
        "This experiment always runs on the reference backend: the cpu and gpu backends refuse \
         these samplers until they implement them (docs/spec.md §3.9). A preset is not applied, \
         as mirostat refuses top-k, top-p and min-p (docs/spec.md §3.15)."
            .to_string(),
        "On the seed row XTC at θ = 0.1 removes approve and reject: every token with q ≥ 0.1 \
         but the least likely of them (review), so the top token changes. XTC is meant for \
         creative text, not for a decision."
            .to_string(),
    ];
    Ok(Report {
        kind: ExperimentKind::Samplers,
        title: ExperimentKind::Samplers.title().into(),
        about,
        setup: String::new(),
        tables: vec![summary, per_token, tail_table],
        figures: vec![seed_fig, long_fig],
        notes,
    })
}
