//! # token-sampler
//!
//! A batched next-token sampler for LLM inference: temperature (static or
//! entropy-guided), top-k, top-p, min-p, penalties, logit bias and allowed-token
//! masks over B rows of V logits, with per-row diagnostics (entropy,
//! varentropy, log-probabilities) and batch-invariant, backend-identical random
//! draws (Philox4x32-10 keyed by seed, step and draw index).
//!
//! Backends implement [`Sampler`]: `reference` (f64, the executable spec),
//! `cpu` (sort-free, multi-threaded) and `gpu` (wgpu compute shaders).
//!
//! ```
//! use token_sampler::{Batch, ReferenceSampler, Sampler, SamplingParams};
//!
//! // Two rows of a 4-token vocabulary; the second masks token 0.
//! let batch = Batch::from_rows(&[
//!     vec![2.0f32, 1.0, 0.5, -1.0],
//!     vec![f32::NEG_INFINITY, 0.0, 3.0, 1.0],
//! ])?;
//! let params = vec![
//!     SamplingParams { temperature: 0.7, top_p: 0.9, seed: Some(7), ..Default::default() },
//!     SamplingParams::greedy(),
//! ];
//! let rows = ReferenceSampler::new().sample(batch.view(), &params, 1)?;
//! assert_eq!(rows[1].token, 2); // greedy: the argmax
//! assert!(rows[0].kept >= 1 && rows[0].entropy > 0.0);
//! # Ok::<(), token_sampler::SamplerError>(())
//! ```

pub mod backend;
pub mod batch;
pub mod bench;
pub mod calibrate;
pub mod cpu;
pub mod error;
pub mod open;
pub mod params;
pub mod presets;
pub mod reference;
pub mod result;
pub mod rng;
pub mod sequence;
pub mod validate;

pub use backend::{BackendKind, CallCounts, Sampler};
pub use batch::{Batch, LogitsDtype, LogitsView, RawDtype};
pub use cpu::CpuSampler;
pub use error::{Result, SamplerError};
pub use open::{open, open_default};
pub use params::{
    DynamicTemperature, EntropyUnit, Mapping, Mirostat, Order, SamplingParams, Stage, TopPRange,
};
pub use presets::{preset, Preset, PRESETS};
pub use reference::ReferenceSampler;
pub use result::{RowProbs, RowResult, TokenLogprob, TopLogprobs};
pub use sequence::{PenaltyToken, SequenceState};
#[cfg(feature = "gpu")]
pub mod gpu;

/// The README's Rust snippets ("Library", "Embedding in a server"), compiled
/// and run as doc tests so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
/// The `wgpu` this crate is built against, so a host that hands the GPU
/// backend its own device, buffers and encoders names the same version
/// (`token_sampler::wgpu::Buffer`) without pinning it separately.
#[cfg(feature = "gpu")]
pub use wgpu;
