//! The interface every backend implements. Opening one by kind is
//! [`crate::open`] (`src/open.rs`): this module names no backend, so the
//! backends that implement the trait never import the module that imports them.

use crate::batch::LogitsView;
use crate::error::{Result, SamplerError};
use crate::params::SamplingParams;
use crate::result::{RowProbs, RowResult};

/// Which implementation runs the pipeline (docs/spec.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// Plain f64 code that may sort: the executable spec.
    Reference,
    /// Sort-free, multi-threaded f32 code for servers without a GPU.
    Cpu,
    /// wgpu + WGSL compute shaders.
    Gpu,
}

impl BackendKind {
    pub const ALL: [BackendKind; 3] = [BackendKind::Reference, BackendKind::Cpu, BackendKind::Gpu];

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Reference => "reference",
            BackendKind::Cpu => "cpu",
            BackendKind::Gpu => "gpu",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "reference" | "ref" => Ok(BackendKind::Reference),
            "cpu" => Ok(BackendKind::Cpu),
            "gpu" => Ok(BackendKind::Gpu),
            other => Err(format!(
                "unknown backend `{other}` (expected reference, cpu or gpu)"
            )),
        }
    }
}

/// A batched sampler. Implementations keep whatever they can reuse between
/// calls (scratch buffers, compiled pipelines), hence `&mut self`.
///
/// Both calls validate the parameters against the batch (one per row, ids below
/// V, docs/spec.md §2 ranges) and the logits (NaN and +inf are errors naming row and
/// index), and return rows in input order.
///
/// `Send` so that a server can move a `Box<dyn Sampler>` to the thread that
/// runs its decode loop (docs/spec.md §13.3).
pub trait Sampler: Send {
    fn kind(&self) -> BackendKind;

    /// A human-readable description of the device the backend runs on.
    fn device(&self) -> String;

    /// Samples `samples` (≥ 1) draws per row; `RowResult::token` is draw 0.
    fn sample(
        &mut self,
        logits: LogitsView<'_>,
        params: &[SamplingParams],
        samples: u32,
    ) -> Result<Vec<RowResult>>;

    /// The processed distribution π of every row, in token-id order.
    fn probs(&mut self, logits: LogitsView<'_>, params: &[SamplingParams])
        -> Result<Vec<RowProbs>>;

    /// Device time (ms) of the kernels of the last `sample` call, measured with
    /// GPU timestamp queries; `None` where the backend has no such clock.
    fn last_kernel_ms(&self) -> Option<f64> {
        None
    }

    /// Milliseconds one streaming read of `logits` takes on this backend's device
    /// (the memory-bandwidth floor benchmarks compare against); `None` if the
    /// backend has no probe.
    fn stream_read_ms(&mut self, logits: LogitsView<'_>) -> Result<Option<f64>> {
        let _ = logits;
        Ok(None)
    }

    /// The structure of the last `sample`/`probs` call on a device
    /// (docs/spec.md §9): dispatches, workgroups, reads of the logits per row.
    /// `None` for backends without dispatches.
    fn last_structure(&self) -> Option<CallCounts> {
        None
    }

    /// The GPU sampler behind this backend, for work on logits that already
    /// live on the device (`bench`'s resident mode); `None` elsewhere.
    #[cfg(feature = "gpu")]
    fn as_gpu(&mut self) -> Option<&mut crate::gpu::GpuSampler> {
        None
    }
}

/// The structure of one call on a device (docs/spec.md §9). Exact on any
/// adapter, lavapipe included: it shows a pipeline's shape without a GPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CallCounts {
    /// Compute dispatches the call recorded (all row chunks).
    pub dispatches: u32,
    /// Workgroups those dispatches launched.
    pub workgroups: u64,
    /// Row chunks (batches past one storage binding are split).
    pub chunks: u32,
    /// Reads of the logits of the row that read most: the statistics pass
    /// plus the reads its row solver made (filled in when results are read).
    pub reads_per_row: u32,
}

/// The memory budget (docs/spec.md §2.2): the most bytes a call's results,
/// or an input the library generates for `bench` and `validate`, may take.
/// Sizes are computed with checked arithmetic and refused before anything
/// is allocated, so an absurd size is an error, never an abort.
pub const MEMORY_BUDGET: u64 = 4 << 30;

/// `Ok` when `bytes` (`None`: the size overflowed) fits [`MEMORY_BUDGET`];
/// else an [`SamplerError::Unsupported`] that says what needed it.
pub fn check_budget(what: impl FnOnce() -> String, bytes: Option<u64>) -> Result<()> {
    match bytes {
        Some(b) if b <= MEMORY_BUDGET => Ok(()),
        Some(b) => Err(SamplerError::Unsupported(format!(
            "{} need {}, over the memory budget of {}",
            what(),
            human_bytes(b),
            human_bytes(MEMORY_BUDGET)
        ))),
        None => Err(SamplerError::Unsupported(format!(
            "{} need more bytes than a 64-bit size holds, over the memory budget of {}",
            what(),
            human_bytes(MEMORY_BUDGET)
        ))),
    }
}

/// Bytes per draw a call keeps (the `draws` of a [`RowResult`]).
const DRAW_BYTES: u64 = 4;

/// The draws of a call fit the memory budget: `rows × samples` u32s.
pub fn check_draws(rows: usize, samples: u32) -> Result<()> {
    check_budget(
        || format!("{rows} rows × {samples} draws"),
        (rows as u64)
            .checked_mul(samples as u64)
            .and_then(|n| n.checked_mul(DRAW_BYTES)),
    )
}

/// `4.0 GiB`, `37.3 TiB`, `512 B`.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Checks the call-level draw count.
pub fn check_samples(samples: u32) -> Result<()> {
    if samples == 0 {
        return Err(SamplerError::Unsupported(
            "samples must be at least 1".into(),
        ));
    }
    Ok(())
}
