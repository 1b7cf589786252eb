//! The seed experiments (docs/spec.md §10), run through a real [`Sampler`].
//!
//! Each experiment builds rows of logits and per-row parameters, asks the
//! sampler for the processed distribution π (`probs`) and, where frequencies
//! are shown, for `samples` draws per row (`sample`, fixed seeds: row `r` of a
//! call uses `seed + r`). The numbers in its tables are what the sampler
//! returned; nothing is copied from the seed articles, whose printed values
//! are sometimes wrong (the notes of each report say where).
//!
//! A [`Report`] holds tables (CSV) and figures (PNG, 1200 × 800) and writes
//! them, with an `index.html` and `index.md`, into a folder.
//!
//! ```
//! use token_sampler_cli::experiments::{run, ExperimentKind, Options};
//! use token_sampler::ReferenceSampler;
//!
//! let mut sampler = ReferenceSampler::new();
//! let opts = Options { samples: 1000, ..Options::default() };
//! let report = run(ExperimentKind::Temperature, &mut sampler, &opts)?;
//! let summary = report.table("temperature_summary").unwrap();
//! assert_eq!(summary.rows.len(), 6);
//! # Ok::<(), token_sampler_cli::experiments::ExperimentError>(())
//! ```

pub mod data;
pub mod plot;
pub mod table;

mod combined;
mod entropy_guided;
mod presets;
mod repetition;
pub mod samplers;
mod temperature;
mod truncation;
mod use_cases;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use token_sampler::backend::Sampler;
use token_sampler::batch::Batch;
use token_sampler::error::SamplerError;
use token_sampler::params::SamplingParams;
use token_sampler::presets::Preset;

pub use plot::{Figure, Panel};
pub use presets::preset_parameters_figure;
pub use table::{Cell, Table};

/// Draws per row when the caller does not say.
pub const DEFAULT_SAMPLES: u32 = 10_000;
/// The fixed seed of every experiment's draws (row r uses `seed + r`).
pub const DEFAULT_SEED: u64 = 2024;

pub(crate) const LN2: f64 = std::f64::consts::LN_2;

/// nats → bits.
pub fn bits(nats: f64) -> f64 {
    nats / LN2
}

/// The experiments of the learning path, plus entropy-guided sampling and presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExperimentKind {
    Temperature,
    TopP,
    TopK,
    Combined,
    Repetition,
    UseCases,
    EntropyGuided,
    Presets,
    Samplers,
}

impl ExperimentKind {
    pub const ALL: [ExperimentKind; 9] = [
        ExperimentKind::Temperature,
        ExperimentKind::TopP,
        ExperimentKind::TopK,
        ExperimentKind::Combined,
        ExperimentKind::Repetition,
        ExperimentKind::UseCases,
        ExperimentKind::EntropyGuided,
        ExperimentKind::Presets,
        ExperimentKind::Samplers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ExperimentKind::Temperature => "temperature",
            ExperimentKind::TopP => "top-p",
            ExperimentKind::TopK => "top-k",
            ExperimentKind::Combined => "combined",
            ExperimentKind::Repetition => "repetition",
            ExperimentKind::UseCases => "use-cases",
            ExperimentKind::EntropyGuided => "entropy-guided",
            ExperimentKind::Presets => "presets",
            ExperimentKind::Samplers => "samplers",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            ExperimentKind::Temperature => "Experiment 1 — temperature sweep",
            ExperimentKind::TopP => "Experiment 2 — top-p (nucleus) sampling",
            ExperimentKind::TopK => "Experiment 3 — top-k sampling",
            ExperimentKind::Combined => "Experiment 4 — temperature with top-p, top-k and min-p",
            ExperimentKind::Repetition => {
                "Experiment 5 — repetition, presence and frequency penalties"
            }
            ExperimentKind::UseCases => "Experiment 6 — real use cases",
            ExperimentKind::EntropyGuided => "Entropy-guided temperature",
            ExperimentKind::Presets => "Presets",
            ExperimentKind::Samplers => {
                "Extended samplers — typical, top-nσ, ε, η, XTC, mirostat and DRY"
            }
        }
    }
}

impl std::str::FromStr for ExperimentKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        ExperimentKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = ExperimentKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown experiment `{s}` (expected {} or all)",
                    names.join(", ")
                )
            })
    }
}

/// How an experiment runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Empirical draws per row (≥ 1).
    pub samples: u32,
    /// Seed of row 0 of every sampler call; row r uses `seed + r`.
    pub seed: u64,
    /// A preset that sets the parameters an experiment does not vary itself
    /// (e.g. the temperature sweep keeps the preset's top-p and top-k).
    pub preset: Option<&'static Preset>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            samples: DEFAULT_SAMPLES,
            seed: DEFAULT_SEED,
            preset: None,
        }
    }
}

/// What can stop an experiment.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error(transparent)]
    Sampler(#[from] SamplerError),
    #[error(transparent)]
    Calibration(#[from] token_sampler::calibrate::CalibrationError),
    /// The OS error is part of the message, not a source of its own, so
    /// error chains print it once.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Plot { path: PathBuf, message: String },
}

pub type Result<T, E = ExperimentError> = std::result::Result<T, E>;

/// One experiment's results.
#[derive(Debug, Clone)]
pub struct Report {
    pub kind: ExperimentKind,
    pub title: String,
    /// What the experiment shows and how to read it (Markdown).
    pub about: String,
    /// The parameters it ran with (preset, draws, seed, backend).
    pub setup: String,
    pub tables: Vec<Table>,
    pub figures: Vec<Figure>,
    /// Where the seed articles print numbers that differ from ours, and other
    /// observations a reader should not miss.
    pub notes: Vec<String>,
}

impl Report {
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// Writes every table as CSV and every figure as PNG into `dir` (created
    /// if missing); returns the paths written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        create_dir(dir)?;
        let mut written = Vec::new();
        for t in &self.tables {
            let path = dir.join(t.file_name());
            std::fs::write(&path, t.to_csv()).map_err(|source| ExperimentError::Io {
                path: path.clone(),
                error: source,
            })?;
            written.push(path);
        }
        for f in &self.figures {
            let path = dir.join(&f.file);
            plot::render(f, &path).map_err(|e| ExperimentError::Plot {
                path: path.clone(),
                message: e.message,
            })?;
            written.push(path);
        }
        Ok(written)
    }

    /// Tables (full), figure file names and notes as JSON.
    pub fn to_json(&self) -> Value {
        let tables: serde_json::Map<String, Value> = self
            .tables
            .iter()
            .map(|t| (t.name.clone(), t.to_json()))
            .collect();
        json!({
            "name": self.kind.name(),
            "title": self.title,
            "setup": self.setup,
            "tables": tables,
            "figures": self.figures.iter().map(|f| f.file.clone()).collect::<Vec<_>>(),
            "notes": self.notes,
        })
    }

    /// The report for a terminal: setup, tables (long ones cut), notes.
    pub fn to_text(&self, max_rows: usize) -> String {
        let mut out = format!("== {} ==\n{}\n\n", self.title, self.setup);
        for t in &self.tables {
            out.push_str(&t.to_text(max_rows));
            out.push('\n');
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| ExperimentError::Io {
        path: dir.to_path_buf(),
        error: source,
    })
}

/// Runs one experiment.
pub fn run(kind: ExperimentKind, sampler: &mut dyn Sampler, opts: &Options) -> Result<Report> {
    token_sampler::backend::check_samples(opts.samples)?;
    // The extended samplers run on the reference backend only (docs/spec.md §3.9).
    let mut reference = token_sampler::ReferenceSampler::new();
    let sampler: &mut dyn Sampler = if kind == ExperimentKind::Samplers {
        &mut reference
    } else {
        sampler
    };
    let mut lab = Lab { sampler, opts };
    let mut report = match kind {
        ExperimentKind::Temperature => temperature::run(&mut lab)?,
        ExperimentKind::TopP => truncation::run_top_p(&mut lab)?,
        ExperimentKind::TopK => truncation::run_top_k(&mut lab)?,
        ExperimentKind::Combined => combined::run(&mut lab)?,
        ExperimentKind::Repetition => repetition::run(&mut lab)?,
        ExperimentKind::UseCases => use_cases::run(&mut lab)?,
        ExperimentKind::EntropyGuided => entropy_guided::run(&mut lab)?,
        ExperimentKind::Presets => presets::run(&mut lab)?,
        ExperimentKind::Samplers => samplers::run(&mut lab)?,
    };
    report.setup = format!(
        "backend {} ({}); {} draws per row, seed {} (+ row); {}",
        lab.sampler.kind(),
        lab.sampler.device(),
        opts.samples,
        opts.seed,
        match opts.preset {
            Some(p) => format!(
                "preset `{}` sets the parameters the experiment does not vary",
                p.name
            ),
            None => "no preset: parameters the experiment does not vary are off".into(),
        }
    );
    Ok(report)
}

/// Runs every experiment, in learning-path order.
pub fn run_all(sampler: &mut dyn Sampler, opts: &Options) -> Result<Vec<Report>> {
    ExperimentKind::ALL
        .iter()
        .map(|&k| run(k, sampler, opts))
        .collect()
}

/// Writes `index.html` and `index.md` into `dir`, showing each report's figures
/// above its tables. `subdirs[i]` is where report i's files are, relative to
/// `dir` (`""` for `dir` itself).
pub fn write_index(dir: &Path, reports: &[Report], subdirs: &[String]) -> Result<Vec<PathBuf>> {
    const ROWS: usize = 24;
    create_dir(dir)?;
    let rel = |sub: &str, file: &str| {
        if sub.is_empty() {
            file.to_string()
        } else {
            format!("{sub}/{file}")
        }
    };
    let mut html = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <title>token-sampler experiments</title>\n<style>\n\
         body{font-family:'DejaVu Sans',sans-serif;max-width:1240px;margin:2em auto;padding:0 1em;color:#222}\n\
         img{max-width:100%;border:1px solid #ddd;margin:.5em 0}\n\
         table{border-collapse:collapse;margin:1em 0;font-size:13px}\n\
         caption{text-align:left;font-weight:bold;padding:.3em 0}\n\
         th,td{border:1px solid #ccc;padding:2px 8px}td.n{text-align:right;font-variant-numeric:tabular-nums}\n\
         .note{background:#fff8e0;border-left:4px solid #e0b000;padding:.4em .8em;margin:.4em 0}\n\
         .setup{color:#666;font-size:13px}\n</style></head><body>\n\
         <h1>token-sampler experiments</h1>\n<ul>\n",
    );
    let mut md = String::from("# token-sampler experiments\n\n");
    for r in reports {
        html.push_str(&format!(
            "<li><a href=\"#{}\">{}</a></li>\n",
            r.kind.name(),
            table::escape(&r.title)
        ));
        md.push_str(&format!("- [{}](#{})\n", r.title, r.kind.name()));
    }
    html.push_str("</ul>\n");
    md.push('\n');
    for (r, sub) in reports.iter().zip(subdirs) {
        html.push_str(&format!(
            "<h2 id=\"{}\">{}</h2>\n<p class=\"setup\">{}</p>\n{}\n",
            r.kind.name(),
            table::escape(&r.title),
            table::escape(&r.setup),
            markdown_paragraphs_to_html(&r.about)
        ));
        md.push_str(&format!(
            "<a id=\"{}\"></a>\n## {}\n\n*{}*\n\n{}\n\n",
            r.kind.name(),
            r.title,
            r.setup,
            r.about
        ));
        for f in &r.figures {
            let src = rel(sub, &f.file);
            html.push_str(&format!(
                "<img src=\"{}\" alt=\"{}\" width=\"1200\" height=\"800\">\n",
                table::escape(&src),
                table::escape(&f.title)
            ));
            md.push_str(&format!("![{}]({})\n\n", f.title, src));
        }
        for n in &r.notes {
            html.push_str(&format!("<div class=\"note\">{}</div>\n", table::escape(n)));
            md.push_str(&format!("> {n}\n\n"));
        }
        for t in &r.tables {
            html.push_str(&t.to_html(ROWS, &rel(sub, &t.file_name())));
            md.push_str(&format!(
                "**{}** ([{}]({}))\n\n",
                t.title,
                t.file_name(),
                rel(sub, &t.file_name())
            ));
            md.push_str(&t.to_markdown(ROWS));
            md.push('\n');
        }
    }
    html.push_str("</body></html>\n");
    let mut written = Vec::new();
    for (name, text) in [("index.html", html), ("index.md", md)] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| ExperimentError::Io {
            path: path.clone(),
            error: source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Blank-line separated paragraphs, escaped; `code` spans kept as <code>.
fn markdown_paragraphs_to_html(md: &str) -> String {
    md.split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let mut out = String::new();
            for (i, part) in table::escape(p.trim()).split('`').enumerate() {
                if i % 2 == 1 {
                    out.push_str(&format!("<code>{part}</code>"));
                } else {
                    out.push_str(part);
                }
            }
            format!("<p>{out}</p>")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the sampler returned for one row.
#[derive(Debug, Clone, PartialEq)]
pub struct Eval {
    /// π in token-id order.
    pub probs: Vec<f64>,
    pub kept: usize,
    /// The temperature and top-p applied (dynamic rows: the chosen ones).
    pub temperature: f64,
    pub top_p: f64,
    /// Model entropy (nats, T = 1, after penalties) and entropy of π (nats).
    pub entropy: f64,
    pub final_entropy: f64,
    pub guide_entropy: Option<f64>,
    /// Mirostat rows: the mu the cut used (docs/spec.md §3.15).
    pub mirostat_mu: Option<f64>,
    /// Empirical frequency of each token over the draws, when drawn.
    pub freq: Option<Vec<f64>>,
}

impl Eval {
    /// The most probable token (lowest id among equals) and its probability.
    pub fn top(&self) -> (usize, f64) {
        let mut best = 0;
        for i in 1..self.probs.len() {
            if self.probs[i] > self.probs[best] {
                best = i;
            }
        }
        (best, self.probs[best])
    }

    pub fn freq_of(&self, token: usize) -> f64 {
        self.freq.as_ref().map_or(f64::NAN, |f| f[token])
    }
}

/// A sampler plus the options: the one place experiments call the backend.
pub(crate) struct Lab<'a> {
    pub sampler: &'a mut dyn Sampler,
    pub opts: &'a Options,
}

impl Lab<'_> {
    /// The preset's parameters (or all stages off), with the fixed seed.
    pub fn base(&self) -> SamplingParams {
        let mut p = self.opts.preset.map(|p| p.params()).unwrap_or_default();
        p.seed = Some(self.opts.seed);
        p
    }

    pub fn samples(&self) -> u32 {
        self.opts.samples
    }

    fn prepare(
        &self,
        rows: &[Vec<f32>],
        params: &[SamplingParams],
    ) -> Result<(Batch, Vec<SamplingParams>)> {
        let batch = Batch::from_rows(rows)?;
        let params = params
            .iter()
            .enumerate()
            .map(|(r, p)| SamplingParams {
                seed: Some(self.opts.seed.wrapping_add(r as u64)),
                ..p.clone()
            })
            .collect();
        Ok((batch, params))
    }

    /// π and diagnostics of every row (no draws).
    pub fn probs(&mut self, rows: &[Vec<f32>], params: &[SamplingParams]) -> Result<Vec<Eval>> {
        let (batch, params) = self.prepare(rows, params)?;
        let out = self.sampler.probs(batch.view(), &params)?;
        Ok(out
            .into_iter()
            .map(|r| Eval {
                kept: r.kept as usize,
                temperature: r.temperature,
                top_p: r.top_p,
                entropy: r.entropy,
                final_entropy: r.final_entropy,
                guide_entropy: r.guide_entropy,
                mirostat_mu: r.mirostat_mu,
                probs: r.probs,
                freq: None,
            })
            .collect())
    }

    /// One draw per row (`Sampler::sample` with one sample), for decode loops.
    pub fn draw_one(&mut self, rows: &[Vec<f32>], params: &[SamplingParams]) -> Result<Vec<u32>> {
        let (batch, params) = self.prepare(rows, params)?;
        let drawn = self.sampler.sample(batch.view(), &params, 1)?;
        Ok(drawn.into_iter().map(|r| r.token).collect())
    }

    /// [`Lab::probs`] with one logit row under each of `params`.
    pub fn probs_for(&mut self, logits: &[f32], params: &[SamplingParams]) -> Result<Vec<Eval>> {
        self.probs(&vec![logits.to_vec(); params.len()], params)
    }

    /// [`Lab::sample`] with one logit row under each of `params`.
    pub fn sample_for(&mut self, logits: &[f32], params: &[SamplingParams]) -> Result<Vec<Eval>> {
        self.sample(&vec![logits.to_vec(); params.len()], params)
    }

    /// [`Lab::draw_one`] with one logit row under each of `params`.
    pub fn draw_one_for(&mut self, logits: &[f32], params: &[SamplingParams]) -> Result<Vec<u32>> {
        self.draw_one(&vec![logits.to_vec(); params.len()], params)
    }

    /// π plus `samples` draws per row through `Sampler::sample`.
    pub fn sample(&mut self, rows: &[Vec<f32>], params: &[SamplingParams]) -> Result<Vec<Eval>> {
        let mut evals = self.probs(rows, params)?;
        let (batch, params) = self.prepare(rows, params)?;
        let drawn = self
            .sampler
            .sample(batch.view(), &params, self.opts.samples)?;
        for (e, r) in evals.iter_mut().zip(drawn) {
            let mut counts = vec![0u64; e.probs.len()];
            for &t in &r.draws {
                counts[t as usize] += 1;
            }
            let n = r.draws.len() as f64;
            e.freq = Some(counts.into_iter().map(|c| c as f64 / n).collect());
        }
        Ok(evals)
    }
}

/// Token ids sorted by descending probability (ties by id).
pub(crate) fn by_rank(p: &[f64]) -> Vec<usize> {
    let mut ids: Vec<usize> = (0..p.len()).collect();
    ids.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    ids
}

/// Strings from `&str`s.
pub(crate) fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}
