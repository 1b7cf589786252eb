//! `experiment NAME`: the seed experiments through a real backend (docs/spec.md §10).

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use serde_json::Value;

use super::args::{unsigned, BackendArgs};
use super::{envelope, print_json, Outcome};
use token_sampler::preset;
use token_sampler_cli::experiments::{
    self, ExperimentKind, Options, Report, DEFAULT_SAMPLES, DEFAULT_SEED,
};

/// One experiment, or all of them.
#[derive(Debug, Clone, Copy)]
pub enum Which {
    One(ExperimentKind),
    All,
}

fn parse_which(s: &str) -> Result<Which, String> {
    if s == "all" {
        Ok(Which::All)
    } else {
        s.parse().map(Which::One)
    }
}

#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// temperature, top-p, top-k, combined, repetition, use-cases,
    /// entropy-guided, presets, samplers, or all.
    #[arg(value_name = "NAME", value_parser = parse_which)]
    name: Which,
    /// Write CSV tables, 1200 × 800 PNG plots and index.html/index.md here
    /// (`all`: one sub-folder per experiment, one index at the top).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Machine-readable output (every table in full).
    #[arg(long)]
    json: bool,
    /// Empirical draws per row, through the sampler.
    #[arg(long, default_value_t = DEFAULT_SAMPLES, allow_negative_numbers = true, value_parser = unsigned::<u32>)]
    samples: u32,
    /// Seed of the draws (row r of each call uses seed + r).
    #[arg(long, default_value_t = DEFAULT_SEED, allow_negative_numbers = true, value_parser = unsigned::<u64>)]
    seed: u64,
    /// A preset (see `token-sampler presets`) for the parameters an experiment
    /// does not vary itself; `use-cases` runs every task under it, `presets`
    /// shows only it.
    #[arg(long, value_name = "NAME")]
    preset: Option<String>,
    #[command(flatten)]
    backend: BackendArgs,
}

pub fn run_experiment(a: ExperimentArgs) -> anyhow::Result<Outcome> {
    let preset = a.preset.as_deref().map(preset).transpose()?;
    let opts = Options {
        samples: a.samples,
        seed: a.seed,
        preset,
    };
    let mut sampler = a.backend.open()?;
    let kinds: Vec<ExperimentKind> = match a.name {
        Which::One(k) => vec![k],
        Which::All => ExperimentKind::ALL.to_vec(),
    };
    let mut reports = Vec::new();
    for k in &kinds {
        let started = Instant::now();
        reports.push(experiments::run(*k, sampler.as_mut(), &opts)?);
        if kinds.len() > 1 {
            eprintln!(
                "token-sampler: experiment {} done ({:.1} s)",
                k.name(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let written = match &a.out {
        Some(dir) => write(dir, &reports, matches!(a.name, Which::All))?,
        None => Vec::new(),
    };
    if a.json {
        let mut out = envelope(sampler.kind().name(), &sampler.device());
        out.insert("samples".into(), a.samples.into());
        out.insert("seed".into(), a.seed.into());
        out.insert(
            "preset".into(),
            preset.map_or(Value::Null, |p| Value::from(p.name)),
        );
        out.insert(
            "experiments".into(),
            Value::Array(reports.iter().map(Report::to_json).collect()),
        );
        out.insert(
            "files".into(),
            Value::Array(
                written
                    .iter()
                    .map(|p| Value::from(p.display().to_string()))
                    .collect(),
            ),
        );
        print_json(&Value::Object(out))?;
    } else {
        for r in &reports {
            outln!("{}", r.to_text(12));
        }
        if let Some(dir) = &a.out {
            outln!(
                "wrote {} files to {} (open {})",
                written.len(),
                dir.display(),
                dir.join("index.html").display()
            );
        }
    }
    Ok(Outcome::Ok)
}

fn write(dir: &Path, reports: &[Report], nested: bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut subdirs = Vec::new();
    for r in reports {
        let sub = if nested {
            r.kind.name().to_string()
        } else {
            String::new()
        };
        written.extend(r.write(&dir.join(&sub))?);
        subdirs.push(sub);
    }
    written.extend(experiments::write_index(dir, reports, &subdirs)?);
    Ok(written)
}
