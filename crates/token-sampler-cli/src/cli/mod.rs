//! `token-sampler` commands (docs/spec.md §8). Each command is a module; `main` parses,
//! dispatches and turns errors into a message and a non-zero exit code.

/// `println!` for a command's text output that returns the write error
/// (a closed pipe, a full disk) instead of panicking; `main` ends quietly on
/// a closed pipe, as command-line tools do, and reports any other write error
/// in one line.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err($crate::cli::Output)?
    }};
}

/// `print!` likewise.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*).map_err($crate::cli::Output)?
    }};
}

mod args;
mod bench;
mod calibrate;
mod experiment;
mod info;
mod sample;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "token-sampler",
    version,
    about = "Batched, sort-free next-token sampling on GPU and CPU, checked against an f64 reference"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sample one token (or --samples N draws) per row, with diagnostics.
    Sample(sample::SampleArgs),
    /// Print the processed distribution π of every row.
    Probs(sample::ProbsArgs),
    /// Run the seeded differential suite on a backend against `reference`.
    Validate(validate::ValidateArgs),
    /// List the named presets.
    Presets(info::PresetsArgs),
    /// Show the backends, adapters and limits this binary can use.
    Info(info::InfoArgs),
    /// Time backends over a grid of batch sizes, vocabularies and parameter sets.
    Bench(bench::BenchArgs),
    /// Run a seed experiment (or all) through a backend: tables, plots, index page.
    Experiment(experiment::ExperimentArgs),
    /// Find the temperature that gives a target entropy, or suggest h_low/h_high.
    Calibrate(calibrate::CalibrateArgs),
}

/// What a command reports back to `main` when it fails in an expected way.
pub enum Outcome {
    Ok,
    /// The command ran but found a disagreement (exit 1, message already printed).
    Failed,
}

/// A failed write to stdout.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the output: {0}")]
pub struct Output(pub std::io::Error);

/// Whether `e` is a write into a closed pipe (`… | head -1`).
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<Output>()
            .map(|o| &o.0)
            .or_else(|| c.downcast_ref::<std::io::Error>())
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Parses the command line; a usage error is one line on stderr (clap's
/// first line, without its usage block and tips) and exit code 2.
fn parse() -> Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            e.exit()
        }
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("error: bad arguments");
            eprintln!("{} (see --help)", first.trim_end());
            Err(ExitCode::from(2))
        }
    }
}

pub fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Sample(a) => sample::run_sample(a),
        Command::Probs(a) => sample::run_probs(a),
        Command::Validate(a) => validate::run_validate(a),
        Command::Presets(a) => info::run_presets(a),
        Command::Info(a) => info::run_info(a),
        Command::Bench(a) => bench::run_bench(a),
        Command::Experiment(a) => experiment::run_experiment(a),
        Command::Calibrate(a) => calibrate::run_calibrate(a),
    };
    // What is still buffered is written now, so its errors are seen too.
    let result = result.and_then(|o| {
        use std::io::Write;
        std::io::stdout().flush().map_err(Output)?;
        Ok(o)
    });
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        // The reader has gone: nothing to report to anyone.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Prints a JSON value on stdout.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value).map_err(|e| match e.io_error_kind() {
        Some(kind) => anyhow::Error::from(Output(std::io::Error::new(kind, e))),
        None => e.into(),
    })?;
    writeln!(out).map_err(Output)?;
    Ok(())
}

/// The top-level keys every JSON output carries (docs/spec.md §6).
pub fn envelope(backend: &str, device: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("schema".into(), 1.into());
    m.insert("backend".into(), backend.into());
    m.insert("device".into(), device.into());
    m.insert("rng".into(), token_sampler::rng::RNG_SCHEME.into());
    m
}

/// A progress bar on stderr (hidden when stderr is not a terminal, so logs and
/// `--json` output stay clean).
pub fn progress_bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}
