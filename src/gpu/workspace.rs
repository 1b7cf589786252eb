//! Buffers reused across calls: each named buffer only grows.

use std::collections::HashMap;

#[derive(Default)]
pub struct Workspace {
    bufs: HashMap<String, wgpu::Buffer>,
}

impl Workspace {
    /// A buffer of at least `size` bytes with `usage`, reused when big enough.
    pub fn get(
        &mut self,
        device: &wgpu::Device,
        name: &str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> wgpu::Buffer {
        let size = size.max(16).next_multiple_of(16);
        if let Some(b) = self.bufs.get(name) {
            if b.size() >= size && b.usage().contains(usage) {
                return b.clone();
            }
        }
        let b = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(name),
            size,
            usage,
            mapped_at_creation: false,
        });
        self.bufs.insert(name.to_string(), b.clone());
        b
    }

    /// Bytes held by every workspace buffer.
    pub fn bytes(&self) -> u64 {
        self.bufs.values().map(|b| b.size()).sum()
    }
}
