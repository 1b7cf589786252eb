//! `sample` and `probs`.

use clap::Args;
use serde_json::Value;

use super::args::{unsigned, BackendArgs, InputArgs, ParamArgs};
use super::{envelope, print_json, Outcome};
use token_sampler::{RowProbs, RowResult};

#[derive(Debug, Args)]
pub struct SampleArgs {
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    params: ParamArgs,
    #[command(flatten)]
    backend: BackendArgs,
    /// Draws per row (all share one processed distribution; `token` is draw 0).
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = unsigned::<u32>)]
    samples: u32,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ProbsArgs {
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    params: ParamArgs,
    #[command(flatten)]
    backend: BackendArgs,
    /// How many of the most likely tokens the text output lists per row.
    #[arg(long, default_value_t = 10, allow_negative_numbers = true, value_parser = unsigned::<usize>)]
    top: usize,
    /// Machine-readable output with all V probabilities per row.
    #[arg(long)]
    json: bool,
}

const LN2: f64 = std::f64::consts::LN_2;

/// `--samples` within the memory budget (docs/spec.md §2.2), before anything
/// runs: 4 bytes per draw, and with `--json` the document built from them
/// (about 32 bytes per number).
fn check_draws(rows: usize, samples: u32, json: bool) -> anyhow::Result<()> {
    let per_draw = if json { 36 } else { 4 };
    let bytes = (rows as u64)
        .checked_mul(samples as u64)
        .and_then(|n| n.checked_mul(per_draw));
    token_sampler::backend::check_budget(
        || {
            format!(
                "--samples {samples} for {rows} rows{}",
                if json { " with --json" } else { "" }
            )
        },
        bytes,
    )?;
    Ok(())
}

pub fn run_sample(a: SampleArgs) -> anyhow::Result<Outcome> {
    let batch = a.input.load()?;
    check_draws(batch.rows(), a.samples, a.json)?;
    let params = a.params.build(batch.rows())?;
    let mut sampler = a.backend.open()?;
    let rows = sampler.sample(batch.view(), &params, a.samples)?;
    if a.json {
        let mut out = envelope(sampler.kind().name(), &sampler.device());
        out.insert("samples".into(), a.samples.into());
        out.insert("rows".into(), serde_json::to_value(&rows)?);
        print_json(&Value::Object(out))?;
    } else {
        print_sample_table(&rows, batch.vocab())?;
    }
    Ok(Outcome::Ok)
}

fn print_sample_table(rows: &[RowResult], vocab: usize) -> anyhow::Result<()> {
    outln!(
        "{:>4} {:>8} {:>9} {:>9} {:>10} {:>10} {:>7} {:>7} {:>6}  seed",
        "row",
        "token",
        "prob",
        "logprob",
        "H bits",
        "H nats",
        "kept",
        "T",
        "top_p"
    );
    for (i, r) in rows.iter().enumerate() {
        outln!(
            "{:>4} {:>8} {:>9.6} {:>9.4} {:>10.4} {:>10.4} {:>7} {:>7.3} {:>6.3}  {}",
            i,
            r.token,
            r.logprob.exp(),
            r.logprob,
            r.entropy / LN2,
            r.entropy,
            r.kept,
            r.temperature,
            r.top_p,
            r.seed
        );
        if r.draws.len() > 1 {
            let shown: Vec<String> = r.draws.iter().take(32).map(|d| d.to_string()).collect();
            let more = if r.draws.len() > 32 { " …" } else { "" };
            outln!("     draws ({}): {}{more}", r.draws.len(), shown.join(" "));
        }
        if let Some(g) = r.guide_entropy {
            outln!(
                "     guide entropy {g:.4}, final entropy {:.4} nats",
                r.final_entropy
            );
        }
        if let Some(mu) = r.mirostat_mu {
            outln!("     mirostat_mu {mu:.6} (pass as --mirostat-mu next step)");
        }
        if let Some(top) = &r.top_logprobs {
            let fmt = |v: &[token_sampler::TokenLogprob]| {
                v.iter()
                    .map(|t| format!("{}:{:.4}", t.id, t.logprob))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            outln!("     raw top:       {}", fmt(&top.raw));
            outln!("     processed top: {}", fmt(&top.processed));
        }
    }
    outln!("({} rows, vocab {vocab})", rows.len());
    Ok(())
}

pub fn run_probs(a: ProbsArgs) -> anyhow::Result<Outcome> {
    let batch = a.input.load()?;
    let params = a.params.build(batch.rows())?;
    let mut sampler = a.backend.open()?;
    let rows = sampler.probs(batch.view(), &params)?;
    if a.json {
        let mut out = envelope(sampler.kind().name(), &sampler.device());
        out.insert("rows".into(), serde_json::to_value(&rows)?);
        print_json(&Value::Object(out))?;
    } else {
        print_probs_table(&rows, a.top)?;
    }
    Ok(Outcome::Ok)
}

fn print_probs_table(rows: &[RowProbs], top: usize) -> anyhow::Result<()> {
    for (i, r) in rows.iter().enumerate() {
        outln!(
            "row {i}: kept {} of {}, T {:.3}, top_p {:.3}, entropy {:.4} nats ({:.4} bits), final entropy {:.4} nats{}",
            r.kept,
            r.probs.len(),
            r.temperature,
            r.top_p,
            r.entropy,
            r.entropy / LN2,
            r.final_entropy,
            r.guide_entropy
                .map(|g| format!(", guide entropy {g:.4}"))
                .unwrap_or_default()
        );
        if let Some(mu) = r.mirostat_mu {
            outln!("  mirostat_mu {mu:.6} (the mu this distribution was cut with)");
        }
        let mut ids: Vec<usize> = (0..r.probs.len()).filter(|&t| r.probs[t] > 0.0).collect();
        ids.sort_by(|&x, &y| r.probs[y].total_cmp(&r.probs[x]).then(x.cmp(&y)));
        for &t in ids.iter().take(top) {
            outln!("  {:>8}  {:.6}", t, r.probs[t]);
        }
        if ids.len() > top {
            outln!(
                "  … {} more kept tokens (--json prints all V values)",
                ids.len() - top
            );
        }
    }
    Ok(())
}
