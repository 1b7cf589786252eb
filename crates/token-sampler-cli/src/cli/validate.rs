//! `validate`: the seeded differential suite of docs/spec.md §7 on one backend against
//! `reference`; exit 1 on any disagreement beyond docs/spec.md §7.

use anyhow::Context;
use clap::Args;
use serde_json::Value;

use super::args::{unsigned, BackendArgs};
use super::{envelope, print_json, progress_bar, Outcome};
use token_sampler::validate::{run_suite, SuiteConfig, LARGE_VOCABS};

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// Batches per vocabulary size.
    #[arg(long, default_value_t = 8, allow_negative_numbers = true, value_parser = unsigned::<usize>)]
    cases: usize,
    /// Vocabulary sizes (default: 32000 128256 151936 200064 262144).
    #[arg(long, num_args = 1.., value_name = "V", allow_negative_numbers = true, value_parser = unsigned::<usize>)]
    vocab: Vec<usize>,
    /// Rows per batch are drawn from 1..=max-batch.
    #[arg(long, default_value_t = 64, allow_negative_numbers = true, value_parser = unsigned::<usize>)]
    max_batch: usize,
    /// Cap on rows per vocabulary size (0 = none).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true, value_parser = unsigned::<usize>)]
    max_rows: usize,
    /// Suite seed (the same seed gives the same cases everywhere).
    #[arg(long, default_value_t = SuiteConfig::default().seed, allow_negative_numbers = true, value_parser = unsigned::<u64>)]
    seed: u64,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub fn run_validate(a: ValidateArgs) -> anyhow::Result<Outcome> {
    if a.cases == 0 || a.max_batch == 0 {
        anyhow::bail!("--cases and --max-batch must be at least 1");
    }
    if let Some(v) = a.vocab.iter().find(|&&v| v == 0) {
        anyhow::bail!("--vocab {v}: a vocabulary needs at least one token");
    }
    let cfg = SuiteConfig {
        seed: a.seed,
        cases: a.cases,
        vocabs: if a.vocab.is_empty() {
            LARGE_VOCABS.to_vec()
        } else {
            a.vocab.clone()
        },
        max_batch: a.max_batch,
        max_rows_per_vocab: a.max_rows,
        // The samplers of docs/spec.md §3.10–3.15 on every backend: one that
        // does not run them yet fails with `Unsupported` naming the field,
        // rather than passing a suite that left them out.
        extended: true,
    };
    // Sizes first (the memory budget, docs/spec.md §2.2), then the device.
    token_sampler::validate::check_config(&cfg).context("--vocab / --max-batch")?;
    let mut sampler = a.backend.open()?;
    let bar = progress_bar((cfg.cases * cfg.vocabs.len()) as u64, "validate");
    let report = run_suite(&mut *sampler, &cfg, &mut |done, _| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    if a.json {
        let mut out = envelope(sampler.kind().name(), &sampler.device());
        out.insert("config".into(), serde_json::to_value(&cfg)?);
        out.insert("pass".into(), report.ok().into());
        out.insert("per_vocab".into(), serde_json::to_value(&report.per_vocab)?);
        out.insert("total".into(), serde_json::to_value(&report.total)?);
        out.insert("failures".into(), serde_json::to_value(&report.failures)?);
        print_json(&Value::Object(out))?;
    } else {
        out!("{report}");
    }
    Ok(if report.ok() {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}
