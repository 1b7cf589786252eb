//! Embedding the sampler in a decode loop that owns its device
//! (docs/spec.md §11, §13): logits stay in a `wgpu::Buffer`, the sampler
//! records into the loop's encoder and writes the token ids into a buffer the
//! next step could read; results come back after the submit.
//!
//! Each running sequence keeps its parameters, and in them its penalty state
//! (`SequenceState`: prompt ids and per-token counts), for its whole life: a
//! step appends the drawn token with `SamplingParams::accept`, which also
//! advances `step`, so no history is cloned per step. A finished sequence's
//! slot is handed to a new request in place, as vLLM's persistent batch does.
//! `cargo run --release --example server_loop`

use token_sampler::gpu::{BufferLogits, GpuContext, GpuSampler, LogitsDtype};
use token_sampler::wgpu; // the wgpu the library is built against
use token_sampler::{SamplingParams, SequenceState};

/// A new request: its sampling settings and prompt; `seed` makes it repeatable.
fn request(seed: u64, prompt: &[u32]) -> SamplingParams {
    SamplingParams {
        seed: Some(seed),
        temperature: 0.8,
        top_p: 0.95,
        repetition_penalty: 1.1,
        frequency_penalty: 0.2,
        sequence: Some(SequenceState::new(prompt)),
        ..Default::default()
    }
}

/// `pub` so that tests/server_loop_example.rs runs it on lavapipe.
pub fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ctx = pollster::block_on(GpuContext::new(true))?;
    let (device, queue) = (ctx.device.clone(), ctx.queue.clone());
    let mut sampler = GpuSampler::from_device(device.clone(), queue.clone());
    let (rows, vocab) = (8usize, 32_000usize);
    let logits = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("model logits"),
        size: (rows * vocab * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let tokens = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("next input ids"),
        size: (rows * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    // One slot per running sequence; the vector lives as long as the loop.
    let mut params: Vec<SamplingParams> = (0..rows)
        .map(|r| request(r as u64, &[1, 42 + r as u32, 7]))
        .collect();
    for step in 0..4u64 {
        // Stand-in for the model's forward pass: write this step's logits.
        let data: Vec<f32> = (0..rows * vocab)
            .map(|i| ((i as u64 * 2654435761 + step * 97) % 1000) as f32 / 150.0)
            .collect();
        queue.write_buffer(&logits, 0, bytemuck::cast_slice(&data));
        let mut enc = device.create_command_encoder(&Default::default());
        let input = BufferLogits {
            buffer: &logits,
            offset: 0,
            rows,
            vocab,
            row_stride: vocab,
            dtype: LogitsDtype::F32,
            allowed_bitmask: None,
        };
        let pending = sampler.encode(&mut enc, &input, &params, 1, Some((&tokens, 0)))?;
        queue.submit([enc.finish()]);
        let results = pending.read(&device)?;
        for (p, res) in params.iter_mut().zip(&results) {
            p.accept(res.token); // O(log d) for d distinct tokens; step += 1
        }
        println!(
            "step {step}: tokens {:?}",
            results.iter().map(|r| r.token).collect::<Vec<_>>()
        );
        if step == 1 {
            // Sequence 3 has finished: a new request takes its slot.
            params[3] = request(100, &[5, 6]);
        }
    }
    let s = params[0].sequence.as_ref().expect("set by request()");
    println!(
        "sequence 0: {} tokens generated, {} distinct ids counted for its penalties",
        s.generated(),
        s.distinct()
    );
    Ok(())
}
