//! The `token-sampler` command line: argument parsing and commands live in `cli/`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
