//! Opening a backend by kind, and choosing the best usable one (docs/spec.md §8:
//! the CLI's `--backend` and its default). The factory lives apart from the
//! trait (`src/backend.rs`) because it names every backend, and the backends
//! import the trait.

use crate::backend::{BackendKind, Sampler};
use crate::error::{Result, SamplerError};

/// Opens a backend by kind. `allow_software` lets the GPU backend use a
/// software adapter such as lavapipe (an explicit `--backend gpu` does).
pub fn open(kind: BackendKind, allow_software: bool) -> Result<Box<dyn Sampler>> {
    let _ = allow_software;
    match kind {
        BackendKind::Reference => Ok(Box::new(crate::reference::ReferenceSampler::new())),
        BackendKind::Cpu => Ok(Box::new(crate::cpu::CpuSampler::new())),
        #[cfg(feature = "gpu")]
        BackendKind::Gpu => Ok(Box::new(crate::gpu::GpuSampler::new_blocking(
            allow_software,
        )?)),
        // Reached only by `gpu` in a build without the `gpu` feature.
        #[allow(unreachable_patterns)]
        other => Err(SamplerError::BackendUnavailable {
            backend: other.name().into(),
            reason: "not in this build (the library's cargo feature `gpu` is off)".into(),
        }),
    }
}

/// The best backend built and usable here, and why it was chosen: `gpu` on a
/// hardware adapter, else `cpu`, else `reference`.
pub fn open_default() -> Result<(Box<dyn Sampler>, String)> {
    for kind in [BackendKind::Gpu, BackendKind::Cpu] {
        if let Ok(sampler) = open(kind, false) {
            let why = format!("backend {} on {}", kind, sampler.device());
            return Ok((sampler, why));
        }
    }
    let sampler = open(BackendKind::Reference, false)?;
    Ok((
        sampler,
        "backend reference (no faster backend is usable here)".into(),
    ))
}
