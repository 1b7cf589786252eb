//! Batches past one storage binding (docs/spec.md §9: tiled, never refused). The
//! device's `max_storage_buffer_binding_size` bounds every binding, so the
//! sampler splits a batch into row chunks inside the one submission.
//!
//! * On the adapter as it is (lavapipe: 128 MiB), B = 256 × V = 200 064 f32
//!   (205 MB) is sampled and rows on both sides of the chunk boundary agree
//!   with the reference.
//! * On a device opened with a small binding limit (8 MiB), every path that
//!   chunks — host `sample` and `probs`, and the buffer API with a row stride
//!   and a token buffer — gives the same per-row results as one chunk does.
//! * On a device allowing 16 workgroups per dispatch dimension, rows are
//!   chunked 16 at a time and a row of more than 16 tiles is refused.

#![cfg(feature = "gpu")]

mod gpu_support;

use gpu_support::{assert_row_matches_reference, normal_rows, open_gpu, Rng};
use token_sampler::gpu::{BufferLogits, GpuSampler, LogitsDtype};
use token_sampler::validate::normal_batch;
use token_sampler::{Batch, Sampler, SamplingParams};

#[test]
fn batch_past_the_binding_limit_agrees_with_the_reference() {
    let Some(mut g) = open_gpu() else { return };
    let (rows, v) = (256, 200_064);
    let limit = g.context().limits.max_storage_buffer_binding_size;
    let bytes = (rows * v * 4) as u64;
    let b = normal_batch(rows, v, 3.0, 77);
    // Cheap parameters (the point is the chunking): temperature + min-p.
    let p: Vec<SamplingParams> = (0..rows)
        .map(|r| SamplingParams {
            seed: Some(r as u64),
            temperature: 0.8,
            min_p: 0.05,
            ..Default::default()
        })
        .collect();
    let got = g.sample(b.view(), &p, 1).unwrap();
    assert_eq!(got.len(), rows);
    // Rows per chunk as the sampler splits (each chunk's logits under the limit).
    let per_chunk = ((limit - 256) / (v as u64 * 4)) as usize;
    let mut check: Vec<usize> = (0..rows).step_by(23).collect();
    if bytes > limit {
        check.extend([per_chunk - 1, per_chunk, per_chunk + 1]);
    } else {
        eprintln!(
            "note: {bytes} bytes fit this adapter's binding limit of {limit}; no chunking here"
        );
    }
    check.push(rows - 1);
    for r in check {
        assert_row_matches_reference(&format!("row {r}"), b.row(r), &p[r], &got[r]);
    }
}

/// A second device on `g`'s adapter with limits changed by `change`.
fn sampler_with_limits(
    g: &GpuSampler,
    change: impl FnOnce(&mut wgpu::Limits),
) -> Option<GpuSampler> {
    let info = g.context().info.clone();
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = info.backend.into();
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
        .into_iter()
        .find(|a| {
            let i = a.get_info();
            i.name == info.name && i.backend == info.backend
        })?;
    let mut limits = adapter.limits();
    change(&mut limits);
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("changed limits"),
        required_limits: limits,
        ..Default::default()
    }))
    .unwrap();
    Some(GpuSampler::from_device(device, queue))
}

#[test]
fn chunked_calls_equal_single_chunk_calls() {
    let Some(mut whole) = open_gpu() else { return };
    let Some(mut small) =
        sampler_with_limits(&whole, |l| l.max_storage_buffer_binding_size = 8 << 20)
    else {
        return;
    };
    assert_eq!(
        small.context().limits.max_storage_buffer_binding_size,
        8 << 20
    );
    // 20 rows × 200 000 f32 = 16 MB: three chunks under 8 MiB.
    let (rows, v) = (20, 200_000);
    let mut rng = Rng(31);
    let data = normal_rows(&mut rng, rows, v, 3.0);
    let batch = Batch::from_rows(&data).unwrap();
    let p: Vec<SamplingParams> = (0..rows)
        .map(|r| SamplingParams {
            seed: Some(900 + r as u64),
            temperature: 0.7,
            top_k: if r % 2 == 0 { 64 } else { 0 },
            top_p: 0.9,
            logprobs: Some(3),
            ..Default::default()
        })
        .collect();
    let a = whole.sample(batch.view(), &p, 3).unwrap();
    let b = small.sample(batch.view(), &p, 3).unwrap();
    let pa = whole.probs(batch.view(), &p).unwrap();
    let pb = small.probs(batch.view(), &p).unwrap();
    // The wrapped device may get other workgroup sizes than the adapter the
    // sampler opened itself (it cannot tell a software adapter), so sums can
    // differ in the last bits: compare within f32 rounding.
    for r in 0..rows {
        assert_eq!(a[r].draws, b[r].draws, "row {r}");
        assert_eq!(a[r].kept, b[r].kept, "row {r}");
        assert!((a[r].logprob - b[r].logprob).abs() < 1e-6, "row {r}");
        let (ta, tb) = (
            a[r].top_logprobs.as_ref().unwrap(),
            b[r].top_logprobs.as_ref().unwrap(),
        );
        for (x, y) in ta
            .raw
            .iter()
            .chain(&ta.processed)
            .zip(tb.raw.iter().chain(&tb.processed))
        {
            assert!(
                x.id == y.id && (x.logprob - y.logprob).abs() < 1e-6,
                "row {r}: {ta:?} vs {tb:?}"
            );
        }
        assert!(
            pa[r]
                .probs
                .iter()
                .zip(&pb[r].probs)
                .all(|(x, y)| (x - y).abs() < 1e-7),
            "row {r} π"
        );
        assert_row_matches_reference(&format!("row {r}"), &data[r], &p[r], &b[r]);
    }

    // The buffer API on the small device: a strided buffer, a token buffer.
    let stride = v + 100;
    let mut flat = vec![f32::NAN; rows * stride];
    for r in 0..rows {
        flat[r * stride..r * stride + v].copy_from_slice(&data[r]);
    }
    let ctx = small.context();
    let (device, queue) = (ctx.device.clone(), ctx.queue.clone());
    let logits = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (flat.len() * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&logits, 0, bytemuck::cast_slice(&flat));
    let tokens = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (rows * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let input = BufferLogits {
        buffer: &logits,
        offset: 0,
        rows,
        vocab: v,
        row_stride: stride,
        dtype: LogitsDtype::F32,
        allowed_bitmask: None,
    };
    let mut enc = device.create_command_encoder(&Default::default());
    let pending = small
        .encode(&mut enc, &input, &p, 3, Some((&tokens, 0)))
        .unwrap();
    let staging = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: (rows * 4) as u64,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    enc.copy_buffer_to_buffer(&tokens, 0, &staging, 0, (rows * 4) as u64);
    queue.submit([enc.finish()]);
    let c = pending.read(&device).unwrap();
    staging
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.unwrap());
    device.poll(wgpu::PollType::wait_indefinitely()).unwrap();
    let ids =
        bytemuck::cast_slice::<u8, u32>(&staging.slice(..).get_mapped_range().unwrap()).to_vec();
    for r in 0..rows {
        assert_eq!(c[r].draws, a[r].draws, "buffer API row {r}");
        assert_eq!(ids[r], a[r].token, "token buffer row {r}");
    }
}

/// A device with few workgroups per dispatch dimension: rows are chunked to
/// fit it, and a vocabulary of more tiles than it allows is a typed error (a
/// dispatch past the limit would be a validation panic inside wgpu).
#[test]
fn workgroup_limits_chunk_rows_and_refuse_wide_rows() {
    let Some(mut whole) = open_gpu() else { return };
    let Some(mut few) =
        sampler_with_limits(&whole, |l| l.max_compute_workgroups_per_dimension = 16)
    else {
        return;
    };
    let tile = few.shader_consts().tile as usize;
    let (rows, v) = (40, 16 * tile);
    let batch = normal_batch(rows, v, 3.0, 61);
    let p: Vec<SamplingParams> = (0..rows)
        .map(|r| SamplingParams {
            seed: Some(r as u64),
            temperature: 0.9,
            top_k: if r % 2 == 0 { 30 } else { 0 },
            top_p: 0.9,
            ..Default::default()
        })
        .collect();
    let a = whole.sample(batch.view(), &p, 1).unwrap();
    let b = few.sample(batch.view(), &p, 1).unwrap();
    for r in 0..rows {
        assert_eq!(a[r].token, b[r].token, "row {r}");
        assert_eq!(a[r].kept, b[r].kept, "row {r}");
    }
    let wide = normal_batch(1, 16 * tile + 1, 3.0, 62);
    let e = few.sample(wide.view(), &p[..1], 1).unwrap_err().to_string();
    assert!(e.contains("workgroups per dispatch dimension"), "{e}");
}
