//! Embedding the sampler in a decode loop that owns its device: logits stay
//! in a `wgpu::Buffer`, the sampler records into the loop's encoder and writes
//! the token ids into a buffer the next step could read; results come back
//! after the submit. `cargo run --release --example server_loop`

use token_sampler::gpu::{BufferLogits, GpuContext, GpuSampler, LogitsDtype};
use token_sampler::SamplingParams;

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    let mut history: Vec<Vec<u32>> = vec![Vec::new(); rows];
    for step in 0..4u64 {
        // Stand-in for the model's forward pass: write this step's logits.
        let data: Vec<f32> = (0..rows * vocab)
            .map(|i| ((i as u64 * 2654435761 + step * 97) % 1000) as f32 / 150.0)
            .collect();
        queue.write_buffer(&logits, 0, bytemuck::cast_slice(&data));
        let params: Vec<SamplingParams> = (0..rows)
            .map(|r| SamplingParams {
                seed: Some(r as u64),
                step,
                temperature: 0.8,
                top_p: 0.95,
                repetition_penalty: 1.1,
                history: history[r].clone(),
                ..Default::default()
            })
            .collect();
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
        for (r, res) in results.iter().enumerate() {
            history[r].push(res.token);
        }
        println!(
            "step {step}: tokens {:?}",
            results.iter().map(|r| r.token).collect::<Vec<_>>()
        );
    }
    Ok(())
}
