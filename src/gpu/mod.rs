//! The GPU backend: wgpu compute shaders, sort-free.
pub mod shaders;
