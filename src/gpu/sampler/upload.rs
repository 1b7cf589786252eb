//! The upload ring: host logits reach the device through staging buffers
//! that stay mapped for writing between calls. A call copies each chunk's
//! bytes (f32, f16 or bf16 as given) straight into a mapped slot, records a
//! buffer copy into the chunk's storage buffer ahead of its dispatches, and
//! after the submission asks for the slot to be mapped again — which the
//! device grants once that copy has run, while the call's kernels still run
//! and long before the next call needs it. Nothing is allocated per call once
//! the slots have grown to the batch (`queue.write_buffer` would stage every
//! call in a fresh allocation).

use std::sync::{Arc, Mutex};

use crate::error::{Result, SamplerError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    /// Mapped for writing: ready.
    Mapped,
    /// A map request is in flight (the last copy out of it may still run).
    Pending,
    /// The map request failed; the slot is replaced on next use.
    Failed,
}

struct Slot {
    buffer: wgpu::Buffer,
    state: Arc<Mutex<SlotState>>,
}

/// Staging slots, one per row chunk of a call, reused call after call.
#[derive(Default)]
pub(crate) struct UploadRing {
    slots: Vec<Slot>,
    /// Slots written since the last [`UploadRing::rearm`].
    used: Vec<usize>,
}

impl UploadRing {
    /// Copies `bytes` into slot `index` (grown if needed) and records the
    /// copy of the whole words into `dst` at byte 0. An odd count of half
    /// elements gets zero padding to a whole word (never read).
    pub(crate) fn stage(
        &mut self,
        device: &wgpu::Device,
        enc: &mut wgpu::CommandEncoder,
        index: usize,
        bytes: &[u8],
        dst: &wgpu::Buffer,
        wait_limit: Option<std::time::Duration>,
    ) -> Result<()> {
        let len = (bytes.len() as u64).next_multiple_of(4);
        while self.slots.len() <= index {
            self.slots.push(new_slot(device, len));
        }
        let slot = &mut self.slots[index];
        if slot.buffer.size() < len || state(slot) == SlotState::Failed {
            *slot = new_slot(device, len);
        }
        if state(slot) == SlotState::Pending {
            // The previous call's copy out of this slot has not been
            // confirmed yet: wait for the device (normally done already).
            super::readback::wait_until(device, wait_limit, || state(slot) != SlotState::Pending)?;
            if state(slot) == SlotState::Failed {
                *slot = new_slot(device, len);
            }
        }
        {
            let mut view = slot
                .buffer
                .slice(..len)
                .get_mapped_range_mut()
                .map_err(|e| SamplerError::Gpu(format!("upload slot: {e}")))?;
            let mut out = view.slice(..);
            out.slice(..bytes.len()).copy_from_slice(bytes);
            out.slice(bytes.len()..).fill(0);
        }
        slot.buffer.unmap();
        *slot.state.lock().unwrap_or_else(|p| p.into_inner()) = SlotState::Pending;
        enc.copy_buffer_to_buffer(&slot.buffer, 0, dst, 0, len);
        self.used.push(index);
        Ok(())
    }

    /// After the submission that copies out of the slots used since the last
    /// call: map them again (granted once those copies have run).
    pub(crate) fn rearm(&mut self) {
        for i in self.used.drain(..) {
            let slot = &self.slots[i];
            let st = slot.state.clone();
            slot.buffer
                .slice(..)
                .map_async(wgpu::MapMode::Write, move |r| {
                    *st.lock().unwrap_or_else(|p| p.into_inner()) = if r.is_ok() {
                        SlotState::Mapped
                    } else {
                        SlotState::Failed
                    };
                });
        }
    }

    /// Bytes held by the slots.
    pub(crate) fn bytes(&self) -> u64 {
        self.slots.iter().map(|s| s.buffer.size()).sum()
    }
}

fn state(slot: &Slot) -> SlotState {
    *slot.state.lock().unwrap_or_else(|p| p.into_inner())
}

fn new_slot(device: &wgpu::Device, len: u64) -> Slot {
    Slot {
        buffer: device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("upload slot"),
            size: len.max(16).next_multiple_of(256),
            usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        }),
        state: Arc::new(Mutex::new(SlotState::Mapped)),
    }
}
