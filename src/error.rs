//! One error type for the whole library. Every variant that comes from user input
//! names the row and the field or index it is about, so a server can report it
//! back to the request that caused it.

use std::path::PathBuf;

/// Everything that can go wrong in `token_sampler`. User input never panics: it
/// ends up here.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    /// A parameter value outside its valid range (docs/spec.md §2, §4).
    #[error("row {row}: invalid `{field}`: {message}")]
    InvalidParam {
        row: usize,
        field: String,
        message: String,
    },

    /// A parameter object that does not parse (unknown field, wrong type, …).
    #[error("row {row}: bad parameters: {message}")]
    ParamsParse { row: usize, message: String },

    /// A token id in a parameter list that is not below the vocabulary size.
    #[error("row {row}: `{field}`[{position}] = {id} is out of range for vocab {vocab}")]
    TokenOutOfRange {
        row: usize,
        field: String,
        position: usize,
        id: u64,
        vocab: usize,
    },

    /// NaN or +inf in the logits; only −inf (a masked token) is legal.
    #[error("row {row}, index {index}: logit is {value}; only finite values and -inf are allowed")]
    InvalidLogit {
        row: usize,
        index: usize,
        value: f32,
    },

    /// A bias pushed a finite logit beyond f32's finite range, or a penalty
    /// step (its result, or the amount it subtracts) reached 2^24 in
    /// magnitude (docs/spec.md §2.1, §3.1).
    #[error("row {row}, index {index}: `{field}` takes the logit to {value:e}, out of range (a bias may reach ±f32::MAX, a penalty less than ±2^24)")]
    NonFiniteLogit {
        row: usize,
        index: usize,
        field: String,
        value: f64,
    },

    /// No finite logit is left after bias, mask and penalties.
    #[error(
        "row {row}: every token is masked (no finite logit left after bias, mask and penalties)"
    )]
    AllMasked { row: usize },

    /// Shapes or counts that do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),

    /// A file that cannot be read or parsed as logits or parameters.
    #[error("{path}: {message}")]
    Load { path: PathBuf, message: String },

    /// An input value inside a logits file that is not allowed, with its position.
    #[error("{path}: row {row}, index {index}: {message}")]
    LoadValue {
        path: PathBuf,
        row: usize,
        index: usize,
        message: String,
    },

    /// A backend that is not in this build or cannot run here.
    #[error("backend `{backend}` is not available: {reason}")]
    BackendUnavailable { backend: String, reason: String },

    /// An unknown preset name.
    #[error("unknown preset `{name}`; known presets: {known}")]
    UnknownPreset { name: String, known: String },

    /// A failure inside the GPU backend that is neither a loss nor a
    /// timeout (out of device memory, a wgpu error): the call's results are
    /// abandoned, and the sampler's buffers are rebuilt for the next call.
    #[error("gpu: {0}")]
    Gpu(String),

    /// The GPU device was lost (a driver reset, a removed GPU) or a result
    /// mapping failed: the call's results are gone. A sampler that opened
    /// its own device opens a fresh one on its next call, so the call can be
    /// retried (docs/spec.md §2.3).
    #[error("gpu: device lost: {reason}; the next call opens a fresh device")]
    DeviceLost { reason: String },

    /// The device did not finish within the sampler's wait limit (a hung or
    /// badly overloaded GPU): the call's results are abandoned, and the next
    /// call starts on fresh buffers (docs/spec.md §2.3).
    #[error("gpu: the device did not finish within the wait limit of {limit_ms} ms (hung, or far slower than expected)")]
    DeviceTimeout { limit_ms: u64 },

    /// A request that is valid in itself but outside what a call supports.
    #[error("{0}")]
    Unsupported(String),
}

/// Shorthand used across the crate.
pub type Result<T, E = SamplerError> = std::result::Result<T, E>;

impl SamplerError {
    /// A fault of the device rather than of the input (lost, timed out, or
    /// another GPU failure): retrying the same call may succeed.
    pub fn is_device_fault(&self) -> bool {
        matches!(
            self,
            SamplerError::Gpu(_)
                | SamplerError::DeviceLost { .. }
                | SamplerError::DeviceTimeout { .. }
        )
    }

    pub(crate) fn param(row: usize, field: &str, message: impl Into<String>) -> Self {
        SamplerError::InvalidParam {
            row,
            field: field.to_string(),
            message: message.into(),
        }
    }
}
