//! The GPU backend: wgpu compute shaders, sort-free, one submission per batch.
//!
//! Layout: [`context`] acquires the device, [`pipelines`] compiles
//! the shaders once, [`workspace`] keeps buffers across calls, [`sampler`] is
//! the host side, [`shaders`] assembles `shaders/*.wgsl`.

pub mod abi;
pub mod context;
pub mod pipelines;
pub mod sampler;
pub mod shaders;
pub mod workspace;

pub use context::{gpu_report, list_adapters, GpuContext, GpuReport};
pub use sampler::{
    BufferLogits, CallCounts, Fault, GpuSampler, LogitsDtype, PendingResults, DEFAULT_WAIT_LIMIT,
};
pub use shaders::LaneOrder;
