//! The C ABI of `token_sampler` (`include/token_sampler.h`, generated from
//! this file by cbindgen; `tests/header.rs` fails when the checked-in header
//! differs from what this file generates).
//!
//! Boundary rules:
//! - every exported function catches panics (`catch_unwind`) and reports
//!   them as `TS_STATUS_PANIC`: nothing unwinds into C;
//! - C writes every field, so fields that C could fill with any bit pattern
//!   are plain integers here (an enum or `bool` read from C memory that holds
//!   another value would be undefined behaviour in Rust); they are checked and
//!   an out-of-range value is an error naming the row and field;
//! - errors are values: a status code, and a caller-owned `ts_error` that
//!   names the row, the field and the index (docs/spec.md §13.4);
//! - results go into caller-owned arrays; nothing this library allocates is
//!   handed to C except the opaque sampler.

// The C names are the ABI; cbindgen renames the types (cbindgen.toml).
#![allow(clippy::missing_safety_doc)]

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Mutex;

use token_sampler::{
    BackendKind, DynamicTemperature, LogitsView, Mirostat, Order, RowProbs, RowResult, Sampler,
    SamplerError, SamplingParams,
};

/// Capacity of `ts_error.message`, NUL included (longer messages are cut at
/// a character boundary).
pub const TS_ERROR_MESSAGE_CAPACITY: usize = 512;
/// Capacity of `ts_error.field`, NUL included.
pub const TS_ERROR_FIELD_CAPACITY: usize = 96;

/// What a call returns: 0 on success, otherwise what went wrong. Values up to
/// `TS_STATUS_NULL_POINTER` are bad input from the caller.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsStatus {
    Ok = 0,
    /// A parameter outside its valid range (docs/spec.md §2, §4).
    InvalidParam = 1,
    /// `dynamic_temperature_json` that does not parse.
    ParamsParse = 2,
    /// A token id not below the vocabulary size.
    TokenOutOfRange = 3,
    /// NaN or +inf in the logits.
    InvalidLogit = 4,
    /// A bias or penalty that makes a logit non-finite.
    NonFiniteLogit = 5,
    /// Every token of a row is masked.
    AllMasked = 6,
    /// Rows, vocabulary and buffer sizes that do not fit together.
    Shape = 7,
    /// A call argument outside what a call supports (`samples` = 0).
    Unsupported = 8,
    /// A pointer that must not be NULL is NULL (`field` names it).
    NullPointer = 9,
    /// The backend asked for is not in this build or cannot run here.
    BackendUnavailable = 10,
    /// A failure inside the GPU backend.
    Gpu = 11,
    /// A bug: the library panicked (the panic was caught at the boundary).
    Panic = 12,
    /// Any other error.
    Other = 13,
    /// The GPU device was lost or a result mapping failed; a sampler that
    /// opened its own device opens a fresh one on its next call (retry).
    DeviceLost = 14,
    /// The device did not finish within the wait limit; the next call
    /// starts on fresh buffers.
    DeviceTimeout = 15,
}

/// Which backend `ts_sampler_new` opens.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsBackend {
    /// The GPU on a hardware adapter, else `cpu`.
    Auto = 0,
    /// f64 code that may sort: the executable spec.
    Reference = 1,
    /// Sort-free, multi-threaded.
    Cpu = 2,
    /// wgpu compute shaders (a software adapter such as lavapipe is accepted).
    Gpu = 3,
}

/// The stage order of a row (docs/spec.md §3).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsOrder {
    /// bias & mask → penalties → temperature → top-k → top-p → min-p.
    Standard = 0,
    /// vLLM V1: temperature → min-p → top-k → top-p.
    Vllm = 1,
    /// llama.cpp: top-k → top-p → min-p → temperature.
    LlamaCpp = 2,
}

/// The parameters of one row (docs/spec.md §2). Start from
/// `ts_params_default()`: every default switches its stage off. Arrays are
/// borrowed for the duration of the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TsParams {
    /// ≥ 0; 0 is greedy. Default 1.
    pub temperature: f32,
    /// 0 or -1 = off. Default 0.
    pub top_k: i32,
    /// In (0, 1]; 1 = off.
    pub top_p: f32,
    /// In [0, 1]; 0 = off.
    pub min_p: f32,
    /// ≥ 1. Default 1.
    pub min_tokens_to_keep: u32,
    /// > 0; 1 = off.
    pub repetition_penalty: f32,
    /// 0 = off.
    pub presence_penalty: f32,
    /// 0 = off.
    pub frequency_penalty: f32,
    /// Generated tokens the penalties count (`n_history` of them; may be NULL
    /// when `n_history` is 0).
    pub history: *const u32,
    pub n_history: usize,
    /// Prompt tokens; only the repetition penalty counts them.
    pub prompt_token_ids: *const u32,
    pub n_prompt_token_ids: usize,
    /// `n_logit_bias` pairs: `logit_bias_values[i]` is added to the logit of
    /// `logit_bias_ids[i]` (a repeated id: the last value wins).
    pub logit_bias_ids: *const u32,
    pub logit_bias_values: *const f32,
    pub n_logit_bias: usize,
    /// NULL: every token allowed. Otherwise `n_allowed_token_ids` (≥ 1) ids;
    /// every other token is masked.
    pub allowed_token_ids: *const u32,
    pub n_allowed_token_ids: usize,
    /// 0: a fresh random seed for this row (reported in `ts_row_result.seed`);
    /// 1: use `seed`.
    pub has_seed: u8,
    pub seed: u64,
    /// The caller's count of tokens generated so far; part of the random key
    /// (docs/spec.md §5).
    pub step: u64,
    /// A `ts_order` value.
    pub order: u32,
    /// NULL: off. Otherwise a NUL-terminated JSON object: the CLI's
    /// `dynamic_temperature` (docs/spec.md §4), e.g.
    /// `{"mapping": {"kind": "linear", "h_low": 0.5, "h_high": 3, "t_min": 0.3, "t_max": 1.2}}`.
    pub dynamic_temperature_json: *const c_char,
    /// Locally typical sampling (docs/spec.md §3.11): in (0, 1]; 1 = off.
    pub typical_p: f32,
    /// Top-nσ (docs/spec.md §3.10): keep logits ≥ max − n·σ; ≤ 0 = off.
    pub top_n_sigma: f32,
    /// XTC (docs/spec.md §3.13): the chance, in [0, 1], that a step removes
    /// the likely tokens; 0 = off.
    pub xtc_probability: f32,
    /// XTC's threshold, in [0, 1]. Default 0.1.
    pub xtc_threshold: f32,
    /// ε cutoff (docs/spec.md §3.12): in [0, 1); 0 = off.
    pub epsilon_cutoff: f32,
    /// η cutoff (docs/spec.md §3.12): in [0, 1); 0 = off.
    pub eta_cutoff: f32,
    /// DRY (docs/spec.md §3.14): finite, ≥ 0; 0 = off.
    pub dry_multiplier: f32,
    /// DRY's growth base, ≥ 1. Default 1.75.
    pub dry_base: f32,
    /// Repeats up to this length are not penalised. Default 2.
    pub dry_allowed_length: u32,
    /// −1 = the whole sequence (prompt then history), 0 = off, n > 0 = its
    /// last n tokens. Default −1.
    pub dry_penalty_last_n: i32,
    /// Token ids a repeat may not extend across (`n_dry_sequence_breakers`
    /// of them; may be NULL when that is 0).
    pub dry_sequence_breakers: *const u32,
    pub n_dry_sequence_breakers: usize,
    /// Mirostat (docs/spec.md §3.15): 0 = off, 1 or 2 = its version. The
    /// other `mirostat_*` fields are read only when it is on. Errors name
    /// them as the JSON does: `mirostat.version`, `mirostat.tau`,
    /// `mirostat.eta`, `mirostat.mu`.
    pub mirostat: u32,
    /// Target surprise in bits. Default 5.
    pub mirostat_tau: f32,
    /// Learning rate. Default 0.1.
    pub mirostat_eta: f32,
    /// 0: start from mu = 2·tau (the first step); 1: use `mirostat_mu`, the
    /// `mirostat_mu` a previous step's result returned.
    pub has_mirostat_mu: u8,
    pub mirostat_mu: f32,
}

/// What one row's sampling returns (docs/spec.md §6).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct TsRowResult {
    /// Draw 0.
    pub token: u32,
    /// Finite survivors of every stage.
    pub kept: u32,
    /// The seed used (the row's own, or the fresh one drawn).
    pub seed: u64,
    /// ln π of the token (0 for greedy rows).
    pub logprob: f64,
    /// Log-softmax of the logits as given, at the token.
    pub raw_logprob: f64,
    /// Entropy (nats) after bias, mask and penalties, at T = 1.
    pub entropy: f64,
    /// Varentropy (nats²) of the same distribution.
    pub varentropy: f64,
    /// The entropy that guided the temperature; NaN for rows without a
    /// dynamic temperature.
    pub guide_entropy: f64,
    /// Entropy (nats) of π, the distribution sampled.
    pub final_entropy: f64,
    /// The temperature applied (0 = greedy).
    pub temperature: f64,
    /// The top-p applied (1 = off).
    pub top_p: f64,
    /// Mirostat rows (docs/spec.md §3.15): the mu after draw 0, to pass back
    /// as `mirostat_mu` (with `has_mirostat_mu` = 1) in the next step. NaN
    /// for rows without mirostat.
    pub mirostat_mu: f64,
}

/// The per-row figures of `ts_probs`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct TsRowProbs {
    pub kept: u32,
    pub entropy: f64,
    pub guide_entropy: f64,
    pub final_entropy: f64,
    pub temperature: f64,
    pub top_p: f64,
    /// Mirostat rows: the mu the cut used (`ts_probs` draws nothing, so mu
    /// does not move). NaN for rows without mirostat.
    pub mirostat_mu: f64,
}

/// A caller-owned error report, filled when a call fails (and left alone
/// when it succeeds). Pass NULL to get only the status.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct TsError {
    pub status: TsStatus,
    /// The row the error is about, or -1.
    pub row: i64,
    /// The logit index, or the position inside a token-id list, or -1.
    pub index: i64,
    /// The parameter or argument (`"temperature"`, `"history"`,
    /// `"dynamic_temperature.mapping.t_min"`, `"logits"`), or "".
    pub field: [c_char; TS_ERROR_FIELD_CAPACITY],
    /// The whole message, naming row and field: "row 3: invalid `temperature`: …".
    pub message: [c_char; TS_ERROR_MESSAGE_CAPACITY],
}

/// An opaque sampler: one backend with what it reuses between calls
/// (threads, scratch, device, pipelines, buffers; docs/spec.md §13.3).
pub struct TsSampler {
    inner: Mutex<Box<dyn Sampler>>,
    kind: BackendKind,
    /// NUL-terminated, for `ts_sampler_device`.
    device: Vec<u8>,
}

// ---------------------------------------------------------------- errors

/// An error on its way to C.
struct Failure {
    status: TsStatus,
    row: Option<usize>,
    index: Option<usize>,
    field: String,
    message: String,
}

impl Failure {
    fn null(row: Option<usize>, field: &str) -> Self {
        let message = match row {
            Some(r) => format!("row {r}: `{field}` is NULL"),
            None => format!("`{field}` is NULL"),
        };
        Failure {
            status: TsStatus::NullPointer,
            row,
            index: None,
            field: field.to_string(),
            message,
        }
    }
}

impl From<SamplerError> for Failure {
    fn from(e: SamplerError) -> Self {
        let message = e.to_string();
        let (status, row, index, field) = match &e {
            SamplerError::InvalidParam { row, field, .. } => {
                (TsStatus::InvalidParam, Some(*row), None, field.clone())
            }
            SamplerError::ParamsParse { row, .. } => {
                (TsStatus::ParamsParse, Some(*row), None, String::new())
            }
            SamplerError::TokenOutOfRange {
                row,
                field,
                position,
                ..
            } => (
                TsStatus::TokenOutOfRange,
                Some(*row),
                Some(*position),
                field.clone(),
            ),
            SamplerError::InvalidLogit { row, index, .. } => (
                TsStatus::InvalidLogit,
                Some(*row),
                Some(*index),
                "logits".into(),
            ),
            SamplerError::NonFiniteLogit {
                row, index, field, ..
            } => (
                TsStatus::NonFiniteLogit,
                Some(*row),
                Some(*index),
                field.clone(),
            ),
            SamplerError::AllMasked { row } => {
                (TsStatus::AllMasked, Some(*row), None, String::new())
            }
            SamplerError::Shape(_) => (TsStatus::Shape, None, None, String::new()),
            SamplerError::Unsupported(_) => (TsStatus::Unsupported, None, None, String::new()),
            SamplerError::BackendUnavailable { .. } => {
                (TsStatus::BackendUnavailable, None, None, String::new())
            }
            SamplerError::Gpu(_) => (TsStatus::Gpu, None, None, String::new()),
            SamplerError::DeviceLost { .. } => (TsStatus::DeviceLost, None, None, String::new()),
            SamplerError::DeviceTimeout { .. } => {
                (TsStatus::DeviceTimeout, None, None, String::new())
            }
            _ => (TsStatus::Other, None, None, String::new()),
        };
        Failure {
            status,
            row,
            index,
            field,
            message,
        }
    }
}

/// Copies `s` into a C buffer, NUL-terminated, cut at a character boundary.
fn copy_str(dst: &mut [c_char], s: &str) {
    let mut n = s.len().min(dst.len() - 1);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    for (d, &b) in dst.iter_mut().zip(&s.as_bytes()[..n]) {
        *d = b as c_char;
    }
    dst[n] = 0;
}

/// Runs `f`, catching panics, and reports a failure into `err`.
fn guard(err: *mut TsError, f: impl FnOnce() -> Result<(), Failure>) -> TsStatus {
    let failure = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return TsStatus::Ok,
        Ok(Err(failure)) => failure,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Failure {
                status: TsStatus::Panic,
                row: None,
                index: None,
                field: String::new(),
                message: format!("token_sampler panicked (a bug; please report it): {what}"),
            }
        }
    };
    // SAFETY: the caller passes NULL or a pointer to a writable ts_error.
    if let Some(e) = unsafe { err.as_mut() } {
        e.status = failure.status;
        e.row = failure.row.map_or(-1, |r| r as i64);
        e.index = failure.index.map_or(-1, |i| i as i64);
        copy_str(&mut e.field, &failure.field);
        copy_str(&mut e.message, &failure.message);
    }
    failure.status
}

// ---------------------------------------------------------------- parameters

/// A borrowed C array as a slice; NULL is allowed only when `n` is 0.
///
/// # Safety
/// `ptr` points to `n` readable values (or `n` is 0).
unsafe fn ids<'a, T>(row: usize, field: &str, ptr: *const T, n: usize) -> Result<&'a [T], Failure> {
    if n == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Failure::null(Some(row), field));
    }
    Ok(unsafe { std::slice::from_raw_parts(ptr, n) })
}

/// One row's C parameters as `SamplingParams` (validated later by the
/// backend, which names row and field).
///
/// # Safety
/// The arrays and the string the struct points to are valid for their lengths.
unsafe fn convert(row: usize, p: &TsParams) -> Result<SamplingParams, Failure> {
    let bad = |field: &str, message: String| -> Failure {
        SamplerError::InvalidParam {
            row,
            field: field.into(),
            message,
        }
        .into()
    };
    let order = match p.order {
        0 => Order::Standard,
        1 => Order::Vllm,
        2 => Order::LlamaCpp,
        other => {
            return Err(bad(
                "order",
                format!(
                    "{other} (expected TS_ORDER_STANDARD, TS_ORDER_VLLM or TS_ORDER_LLAMA_CPP)"
                ),
            ))
        }
    };
    let seed = match p.has_seed {
        0 => None,
        1 => Some(p.seed),
        other => return Err(bad("has_seed", format!("{other} (expected 0 or 1)"))),
    };
    let history = unsafe { ids(row, "history", p.history, p.n_history)? }.to_vec();
    let prompt_token_ids = unsafe {
        ids(
            row,
            "prompt_token_ids",
            p.prompt_token_ids,
            p.n_prompt_token_ids,
        )?
    }
    .to_vec();
    let bias_ids = unsafe { ids(row, "logit_bias_ids", p.logit_bias_ids, p.n_logit_bias)? };
    let bias_values = unsafe {
        ids(
            row,
            "logit_bias_values",
            p.logit_bias_values,
            p.n_logit_bias,
        )?
    };
    let logit_bias: BTreeMap<u32, f32> = bias_ids
        .iter()
        .copied()
        .zip(bias_values.iter().copied())
        .collect();
    let allowed_token_ids = if p.allowed_token_ids.is_null() {
        None
    } else {
        // A non-NULL empty list is the library's error ("use null to allow
        // every token"), not silently "all".
        Some(
            unsafe { std::slice::from_raw_parts(p.allowed_token_ids, p.n_allowed_token_ids) }
                .to_vec(),
        )
    };
    let dynamic_temperature = if p.dynamic_temperature_json.is_null() {
        None
    } else {
        let text = unsafe { CStr::from_ptr(p.dynamic_temperature_json) }
            .to_str()
            .map_err(|e| bad("dynamic_temperature", format!("not UTF-8: {e}")))?;
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed: DynamicTemperature =
            serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = e.path().to_string();
                let field = if path == "." || path.is_empty() {
                    "dynamic_temperature".to_string()
                } else {
                    format!("dynamic_temperature.{path}")
                };
                bad(&field, e.into_inner().to_string())
            })?;
        Some(parsed)
    };
    let dry_sequence_breakers = unsafe {
        ids(
            row,
            "dry_sequence_breakers",
            p.dry_sequence_breakers,
            p.n_dry_sequence_breakers,
        )?
    }
    .to_vec();
    let mirostat = match p.mirostat {
        0 => None,
        version @ (1 | 2) => Some(Mirostat {
            version: version as u8,
            tau: p.mirostat_tau,
            eta: p.mirostat_eta,
            mu: match p.has_mirostat_mu {
                0 => None,
                1 => Some(p.mirostat_mu),
                other => return Err(bad("has_mirostat_mu", format!("{other} (expected 0 or 1)"))),
            },
        }),
        other => {
            return Err(bad(
                "mirostat.version",
                format!("{other} (expected 0 = off, 1 or 2)"),
            ))
        }
    };
    Ok(SamplingParams {
        temperature: p.temperature,
        top_k: p.top_k,
        top_p: p.top_p,
        min_p: p.min_p,
        min_tokens_to_keep: p.min_tokens_to_keep,
        repetition_penalty: p.repetition_penalty,
        presence_penalty: p.presence_penalty,
        frequency_penalty: p.frequency_penalty,
        history,
        prompt_token_ids,
        logit_bias,
        allowed_token_ids,
        seed,
        step: p.step,
        logprobs: None,
        dynamic_temperature,
        order,
        sequence: None,
        typical_p: p.typical_p,
        top_n_sigma: p.top_n_sigma,
        xtc_probability: p.xtc_probability,
        xtc_threshold: p.xtc_threshold,
        epsilon_cutoff: p.epsilon_cutoff,
        eta_cutoff: p.eta_cutoff,
        dry_multiplier: p.dry_multiplier,
        dry_base: p.dry_base,
        dry_allowed_length: p.dry_allowed_length,
        dry_penalty_last_n: p.dry_penalty_last_n,
        dry_sequence_breakers,
        mirostat,
    })
}

/// # Safety
/// `params` points to `rows` structs.
unsafe fn convert_all(
    params: *const TsParams,
    rows: usize,
) -> Result<Vec<SamplingParams>, Failure> {
    if params.is_null() {
        return Err(Failure::null(None, "params"));
    }
    let params = unsafe { std::slice::from_raw_parts(params, rows) };
    params
        .iter()
        .enumerate()
        .map(|(row, p)| unsafe { convert(row, p) })
        .collect()
}

// ---------------------------------------------------------------- calls

/// The logits argument of one call.
#[derive(Clone, Copy)]
enum Logits {
    F32(*const f32),
    F16(*const u16),
    Bf16(*const u16),
}

impl Logits {
    fn is_null(self) -> bool {
        match self {
            Logits::F32(p) => p.is_null(),
            Logits::F16(p) | Logits::Bf16(p) => p.is_null(),
        }
    }

    /// # Safety
    /// The pointer holds `rows · vocab` values.
    unsafe fn view<'a>(self, rows: usize, vocab: usize) -> Result<LogitsView<'a>, Failure> {
        if self.is_null() {
            return Err(Failure::null(None, "logits"));
        }
        let n = rows.checked_mul(vocab).ok_or_else(|| {
            Failure::from(SamplerError::Shape(format!(
                "{rows} × {vocab} logits overflow"
            )))
        })?;
        if n == 0 {
            return Err(SamplerError::Shape(format!(
                "a batch needs at least one row and one token (got {rows} × {vocab})"
            ))
            .into());
        }
        // SAFETY: the caller's contract; half::f16 / bf16 are repr(transparent) u16.
        Ok(unsafe {
            match self {
                Logits::F32(p) => LogitsView::new(std::slice::from_raw_parts(p, n), rows, vocab),
                Logits::F16(p) => LogitsView::f16(
                    std::slice::from_raw_parts(p.cast::<half::f16>(), n),
                    rows,
                    vocab,
                ),
                Logits::Bf16(p) => LogitsView::bf16(
                    std::slice::from_raw_parts(p.cast::<half::bf16>(), n),
                    rows,
                    vocab,
                ),
            }
        }?)
    }
}

fn lock(s: &TsSampler) -> Result<std::sync::MutexGuard<'_, Box<dyn Sampler>>, Failure> {
    s.inner.lock().map_err(|_| {
        SamplerError::Gpu("an earlier call on this sampler panicked; create a new sampler".into())
            .into()
    })
}

fn row_result(r: &RowResult) -> TsRowResult {
    TsRowResult {
        token: r.token,
        kept: r.kept,
        seed: r.seed,
        logprob: r.logprob,
        raw_logprob: r.raw_logprob,
        entropy: r.entropy,
        varentropy: r.varentropy,
        guide_entropy: r.guide_entropy.unwrap_or(f64::NAN),
        final_entropy: r.final_entropy,
        temperature: r.temperature,
        top_p: r.top_p,
        mirostat_mu: r.mirostat_mu.unwrap_or(f64::NAN),
    }
}

fn row_probs(r: &RowProbs) -> TsRowProbs {
    TsRowProbs {
        kept: r.kept,
        entropy: r.entropy,
        guide_entropy: r.guide_entropy.unwrap_or(f64::NAN),
        final_entropy: r.final_entropy,
        temperature: r.temperature,
        top_p: r.top_p,
        mirostat_mu: r.mirostat_mu.unwrap_or(f64::NAN),
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn sample_any(
    sampler: *mut TsSampler,
    logits: Logits,
    rows: usize,
    vocab: usize,
    params: *const TsParams,
    samples: u32,
    results: *mut TsRowResult,
    draws: *mut u32,
    err: *mut TsError,
) -> TsStatus {
    guard(err, || {
        // SAFETY (this block): the pointer contracts in the header.
        let s = unsafe { sampler.as_ref() }.ok_or_else(|| Failure::null(None, "sampler"))?;
        let view = unsafe { logits.view(rows, vocab) }?;
        if results.is_null() {
            return Err(Failure::null(None, "results"));
        }
        let params = unsafe { convert_all(params, rows) }?;
        let out = lock(s)?.sample(view, &params, samples)?;
        let results = unsafe { std::slice::from_raw_parts_mut(results, rows) };
        for (dst, r) in results.iter_mut().zip(&out) {
            *dst = row_result(r);
        }
        if !draws.is_null() {
            let n = samples as usize;
            let total = rows.checked_mul(n).ok_or_else(|| {
                Failure::from(SamplerError::Shape(format!("{rows} × {n} draws overflow")))
            })?;
            let draws = unsafe { std::slice::from_raw_parts_mut(draws, total) };
            for (dst, r) in draws.chunks_exact_mut(n).zip(&out) {
                dst.copy_from_slice(&r.draws);
            }
        }
        Ok(())
    })
}

#[allow(clippy::too_many_arguments)]
unsafe fn probs_any(
    sampler: *mut TsSampler,
    logits: Logits,
    rows: usize,
    vocab: usize,
    params: *const TsParams,
    probs: *mut f64,
    results: *mut TsRowProbs,
    err: *mut TsError,
) -> TsStatus {
    guard(err, || {
        let s = unsafe { sampler.as_ref() }.ok_or_else(|| Failure::null(None, "sampler"))?;
        let view = unsafe { logits.view(rows, vocab) }?;
        if probs.is_null() {
            return Err(Failure::null(None, "probs"));
        }
        let params = unsafe { convert_all(params, rows) }?;
        let out = lock(s)?.probs(view, &params)?;
        let probs = unsafe { std::slice::from_raw_parts_mut(probs, rows * vocab) };
        for (dst, r) in probs.chunks_exact_mut(vocab).zip(&out) {
            dst.copy_from_slice(&r.probs);
        }
        if !results.is_null() {
            let results = unsafe { std::slice::from_raw_parts_mut(results, rows) };
            for (dst, r) in results.iter_mut().zip(&out) {
                *dst = row_probs(r);
            }
        }
        Ok(())
    })
}

// ---------------------------------------------------------------- exports

/// The parameters with every stage off: temperature 1, top_k 0, top_p 1,
/// min_p 0, min_tokens_to_keep 1, penalties off, no lists, a fresh seed,
/// step 0, standard order, no dynamic temperature; typical 1, top-nσ 0,
/// XTC off (threshold 0.1), ε and η 0, DRY off (base 1.75, allowed length 2,
/// last n −1, no breakers), mirostat off (tau 5, eta 0.1, no mu): the
/// defaults of `SamplingParams` (docs/spec.md §3.9).
#[no_mangle]
pub extern "C" fn ts_params_default() -> TsParams {
    // Taken from the library's defaults, so the two cannot drift apart.
    let d = SamplingParams::default();
    let m = Mirostat::new(2);
    TsParams {
        temperature: d.temperature,
        top_k: d.top_k,
        top_p: d.top_p,
        min_p: d.min_p,
        min_tokens_to_keep: d.min_tokens_to_keep,
        repetition_penalty: d.repetition_penalty,
        presence_penalty: d.presence_penalty,
        frequency_penalty: d.frequency_penalty,
        history: std::ptr::null(),
        n_history: 0,
        prompt_token_ids: std::ptr::null(),
        n_prompt_token_ids: 0,
        logit_bias_ids: std::ptr::null(),
        logit_bias_values: std::ptr::null(),
        n_logit_bias: 0,
        allowed_token_ids: std::ptr::null(),
        n_allowed_token_ids: 0,
        has_seed: 0,
        seed: 0,
        step: d.step,
        order: match d.order {
            Order::Standard => TsOrder::Standard,
            Order::Vllm => TsOrder::Vllm,
            Order::LlamaCpp => TsOrder::LlamaCpp,
        } as u32,
        dynamic_temperature_json: std::ptr::null(),
        typical_p: d.typical_p,
        top_n_sigma: d.top_n_sigma,
        xtc_probability: d.xtc_probability,
        xtc_threshold: d.xtc_threshold,
        epsilon_cutoff: d.epsilon_cutoff,
        eta_cutoff: d.eta_cutoff,
        dry_multiplier: d.dry_multiplier,
        dry_base: d.dry_base,
        dry_allowed_length: d.dry_allowed_length,
        dry_penalty_last_n: d.dry_penalty_last_n,
        dry_sequence_breakers: std::ptr::null(),
        n_dry_sequence_breakers: 0,
        mirostat: 0,
        mirostat_tau: m.tau,
        mirostat_eta: m.eta,
        has_mirostat_mu: 0,
        mirostat_mu: 0.0,
    }
}

/// Opens a sampler on `backend` (a `ts_backend` value) into `*out`. Create it
/// once and reuse it; free it with `ts_sampler_free`.
///
/// # Safety
/// `out` points to writable storage for a pointer; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ts_sampler_new(
    backend: u32,
    out: *mut *mut TsSampler,
    err: *mut TsError,
) -> TsStatus {
    guard(err, || {
        if out.is_null() {
            return Err(Failure::null(None, "out"));
        }
        let sampler = match backend {
            0 => token_sampler::open_default().map(|(s, _why)| s),
            1 => token_sampler::open(BackendKind::Reference, true),
            2 => token_sampler::open(BackendKind::Cpu, true),
            3 => token_sampler::open(BackendKind::Gpu, true),
            other => {
                return Err(Failure {
                    status: TsStatus::Unsupported,
                    row: None,
                    index: None,
                    field: "backend".into(),
                    message: format!("unknown backend {other} (expected a ts_backend value)"),
                })
            }
        }?;
        let mut device = sampler.device().into_bytes();
        device.retain(|&b| b != 0);
        device.push(0);
        let boxed = Box::new(TsSampler {
            kind: sampler.kind(),
            device,
            inner: Mutex::new(sampler),
        });
        // SAFETY: checked non-NULL above.
        unsafe { *out = Box::into_raw(boxed) };
        Ok(())
    })
}

/// Frees a sampler (NULL is ignored). No call on it may be running or start
/// afterwards.
///
/// # Safety
/// `sampler` came from `ts_sampler_new` and is freed once.
#[no_mangle]
pub unsafe extern "C" fn ts_sampler_free(sampler: *mut TsSampler) {
    if !sampler.is_null() {
        // A backend's Drop does not panic into C: catch it all the same.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(sampler) })));
    }
}

/// The backend a sampler runs (`TS_BACKEND_REFERENCE`, `_CPU` or `_GPU`;
/// `TS_BACKEND_AUTO` for NULL).
///
/// # Safety
/// `sampler` is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn ts_sampler_backend(sampler: *const TsSampler) -> u32 {
    (match unsafe { sampler.as_ref() }.map(|s| s.kind) {
        None => TsBackend::Auto,
        Some(BackendKind::Reference) => TsBackend::Reference,
        Some(BackendKind::Cpu) => TsBackend::Cpu,
        Some(BackendKind::Gpu) => TsBackend::Gpu,
    }) as u32
}

/// The device a sampler runs on, in words: a NUL-terminated string owned by
/// the sampler ("" for NULL).
///
/// # Safety
/// `sampler` is NULL or live; the string lives as long as the sampler.
#[no_mangle]
pub unsafe extern "C" fn ts_sampler_device(sampler: *const TsSampler) -> *const c_char {
    match unsafe { sampler.as_ref() } {
        Some(s) => s.device.as_ptr().cast(),
        None => c"".as_ptr(),
    }
}

/// Samples `samples` (≥ 1) draws for each of `rows` rows of `vocab` f32
/// logits (row-major). `params` holds `rows` structs; `results` receives
/// `rows` results (draw 0 in `token`); `draws`, if not NULL, receives
/// `rows · samples` token ids, row by row.
///
/// # Safety
/// Every pointer holds the number of elements stated; `err` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ts_sample(
    sampler: *mut TsSampler,
    logits: *const f32,
    rows: usize,
    vocab: usize,
    params: *const TsParams,
    samples: u32,
    results: *mut TsRowResult,
    draws: *mut u32,
    err: *mut TsError,
) -> TsStatus {
    unsafe {
        sample_any(
            sampler,
            Logits::F32(logits),
            rows,
            vocab,
            params,
            samples,
            results,
            draws,
            err,
        )
    }
}

/// `ts_sample` over IEEE binary16 logits (bit patterns, e.g. `_Float16` or a
/// model's f16 output), widened exactly to f32: the same results as their
/// f32 widening.
///
/// # Safety
/// As `ts_sample`.
#[no_mangle]
pub unsafe extern "C" fn ts_sample_f16(
    sampler: *mut TsSampler,
    logits: *const u16,
    rows: usize,
    vocab: usize,
    params: *const TsParams,
    samples: u32,
    results: *mut TsRowResult,
    draws: *mut u32,
    err: *mut TsError,
) -> TsStatus {
    unsafe {
        sample_any(
            sampler,
            Logits::F16(logits),
            rows,
            vocab,
            params,
            samples,
            results,
            draws,
            err,
        )
    }
}

/// `ts_sample` over bfloat16 logits (bit patterns: the top half of an f32).
///
/// # Safety
/// As `ts_sample`.
#[no_mangle]
pub unsafe extern "C" fn ts_sample_bf16(
    sampler: *mut TsSampler,
    logits: *const u16,
    rows: usize,
    vocab: usize,
    params: *const TsParams,
    samples: u32,
    results: *mut TsRowResult,
    draws: *mut u32,
    err: *mut TsError,
) -> TsStatus {
    unsafe {
        sample_any(
            sampler,
            Logits::Bf16(logits),
            rows,
            vocab,
            params,
            samples,
            results,
            draws,
            err,
        )
    }
}

/// The processed distribution π of every row into `probs` (`rows · vocab`
/// doubles, token-id order, 0 for removed tokens); `results`, if not NULL,
/// receives `rows` per-row figures.
///
/// # Safety
/// As `ts_sample`.
#[no_mangle]
pub unsafe extern "C" fn ts_probs(
    sampler: *mut TsSampler,
    logits: *const f32,
    rows: usize,
    vocab: usize,
    params: *const TsParams,
    probs: *mut f64,
    results: *mut TsRowProbs,
    err: *mut TsError,
) -> TsStatus {
    unsafe {
        probs_any(
            sampler,
            Logits::F32(logits),
            rows,
            vocab,
            params,
            probs,
            results,
            err,
        )
    }
}

/// `ts_probs` over IEEE binary16 logits.
///
/// # Safety
/// As `ts_sample`.
#[no_mangle]
pub unsafe extern "C" fn ts_probs_f16(
    sampler: *mut TsSampler,
    logits: *const u16,
    rows: usize,
    vocab: usize,
    params: *const TsParams,
    probs: *mut f64,
    results: *mut TsRowProbs,
    err: *mut TsError,
) -> TsStatus {
    unsafe {
        probs_any(
            sampler,
            Logits::F16(logits),
            rows,
            vocab,
            params,
            probs,
            results,
            err,
        )
    }
}

/// A status code's name ("TS_STATUS_INVALID_PARAM"), a static string.
#[no_mangle]
pub extern "C" fn ts_status_name(status: i32) -> *const c_char {
    let name: &CStr = match status {
        0 => c"TS_STATUS_OK",
        1 => c"TS_STATUS_INVALID_PARAM",
        2 => c"TS_STATUS_PARAMS_PARSE",
        3 => c"TS_STATUS_TOKEN_OUT_OF_RANGE",
        4 => c"TS_STATUS_INVALID_LOGIT",
        5 => c"TS_STATUS_NON_FINITE_LOGIT",
        6 => c"TS_STATUS_ALL_MASKED",
        7 => c"TS_STATUS_SHAPE",
        8 => c"TS_STATUS_UNSUPPORTED",
        9 => c"TS_STATUS_NULL_POINTER",
        10 => c"TS_STATUS_BACKEND_UNAVAILABLE",
        11 => c"TS_STATUS_GPU",
        12 => c"TS_STATUS_PANIC",
        13 => c"TS_STATUS_OTHER",
        14 => c"TS_STATUS_DEVICE_LOST",
        15 => c"TS_STATUS_DEVICE_TIMEOUT",
        _ => c"TS_STATUS_UNKNOWN",
    };
    name.as_ptr()
}

/// The library's version ("0.1.0"), a static string.
#[no_mangle]
pub extern "C" fn ts_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
