//! The library half of the `token-sampler` command line: the seed experiments
//! (docs/spec.md §10), their tables and their plots. The commands themselves
//! are the binary (`src/main.rs`, `src/cli/`).
//!
//! Nothing here is needed to sample: a server links `token_sampler` alone,
//! which compiles none of this crate's plotting and command-line dependencies.

pub mod experiments;
