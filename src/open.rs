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
///
/// The reason names what was passed over and why, on one line: `backend cpu
/// on host CPU (2 threads); gpu not used: no GPU adapter found …`.
pub fn open_default() -> Result<(Box<dyn Sampler>, String)> {
    let mut skipped: Vec<String> = Vec::new();
    for kind in [BackendKind::Gpu, BackendKind::Cpu] {
        match open(kind, false) {
            Ok(sampler) => {
                let mut why = format!("backend {} on {}", kind, sampler.device());
                for s in &skipped {
                    why += &format!("; {s}");
                }
                return Ok((sampler, why));
            }
            Err(e) => skipped.push(format!("{kind} not used: {}", reason(&e))),
        }
    }
    let sampler = open(BackendKind::Reference, false)?;
    Ok((
        sampler,
        format!("backend reference; {}", skipped.join("; ")),
    ))
}

/// Why a backend did not open, as one line.
fn reason(e: &SamplerError) -> String {
    let text = match e {
        SamplerError::BackendUnavailable { reason, .. } => reason.clone(),
        e => e.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
