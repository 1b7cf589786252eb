//! docs/spec.md §11, the buffer API: logits already in a `wgpu::Buffer` (f32, f16,
//! bf16 as u16 bits; a row stride and a byte offset), work recorded into the
//! caller's command encoder, token ids written into the caller's buffer,
//! asynchronous readback, and the packed allowed-token bitmask. Every result
//! is checked against the reference on the same (upcast) values.

#![cfg(feature = "gpu")]

mod gpu_support;

use gpu_support::{assert_row_matches_reference, normal_rows, open_gpu, Rng};
use half::{bf16, f16};
use token_sampler::gpu::{BufferLogits, GpuSampler, LogitsDtype};
use token_sampler::{RowResult, SamplingParams};

fn storage_buffer(g: &GpuSampler, bytes: &[u8]) -> wgpu::Buffer {
    let ctx = g.context();
    let buf = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("caller logits"),
        size: (bytes.len() as u64).next_multiple_of(4),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut padded = bytes.to_vec();
    padded.resize(buf.size() as usize, 0);
    ctx.queue.write_buffer(&buf, 0, &padded);
    buf
}

/// Reads a buffer back through a staging copy.
fn read_u32s(g: &GpuSampler, buf: &wgpu::Buffer, offset: u64, n: usize) -> Vec<u32> {
    let ctx = g.context();
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: n as u64 * 4,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(buf, offset, &staging, 0, n as u64 * 4);
    ctx.queue.submit([enc.finish()]);
    staging
        .slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.unwrap());
    ctx.device
        .poll(wgpu::PollType::wait_indefinitely())
        .unwrap();
    let out =
        bytemuck::cast_slice::<u8, u32>(&staging.slice(..).get_mapped_range().unwrap()).to_vec();
    staging.unmap();
    out
}

/// Seeded normal(0, 3) rows and the same values flattened row after row.
fn logits(seed: u64, rows: usize, vocab: usize) -> (Vec<Vec<f32>>, Vec<f32>) {
    let data = normal_rows(&mut Rng(seed), rows, vocab, 3.0);
    let flat = data.iter().flatten().copied().collect();
    (data, flat)
}

fn params(rows: usize) -> Vec<SamplingParams> {
    (0..rows)
        .map(|r| SamplingParams {
            seed: Some(50 + r as u64),
            step: r as u64,
            temperature: 0.8,
            top_k: if r % 3 == 0 { 100 } else { 0 },
            top_p: if r % 2 == 0 { 0.9 } else { 1.0 },
            min_p: if r % 4 == 3 { 0.02 } else { 0.0 },
            ..Default::default()
        })
        .collect()
}

/// `rows` × `vocab` f32 logits packed at the start of `buffer`.
fn dense(buffer: &wgpu::Buffer, rows: usize, vocab: usize) -> BufferLogits<'_> {
    BufferLogits {
        buffer,
        offset: 0,
        rows,
        vocab,
        row_stride: vocab,
        dtype: LogitsDtype::F32,
        allowed_bitmask: None,
    }
}

/// Runs `encode` into a fresh encoder and reads the results back.
fn run(g: &mut GpuSampler, input: &BufferLogits<'_>, p: &[SamplingParams]) -> Vec<RowResult> {
    let device = g.context().device.clone();
    let mut enc = device.create_command_encoder(&Default::default());
    let pending = g.encode(&mut enc, input, p, 1, None).unwrap();
    g.context().queue.submit([enc.finish()]);
    pending.read(&device).unwrap()
}

#[test]
fn f16_and_bf16_buffers_match_the_reference_on_the_upcast_values() {
    let Some(mut g) = open_gpu() else { return };
    let (rows, v) = (6, 20_000);
    let mut rng = Rng(21);
    let data = normal_rows(&mut rng, rows, v, 3.0);
    let p = params(rows);
    for dtype in [LogitsDtype::F16, LogitsDtype::Bf16] {
        let (bits, upcast): (Vec<u16>, Vec<Vec<f32>>) = match dtype {
            LogitsDtype::F16 => (
                data.iter()
                    .flatten()
                    .map(|&x| f16::from_f32(x).to_bits())
                    .collect(),
                data.iter()
                    .map(|r| r.iter().map(|&x| f16::from_f32(x).to_f32()).collect())
                    .collect(),
            ),
            _ => (
                data.iter()
                    .flatten()
                    .map(|&x| bf16::from_f32(x).to_bits())
                    .collect(),
                data.iter()
                    .map(|r| r.iter().map(|&x| bf16::from_f32(x).to_f32()).collect())
                    .collect(),
            ),
        };
        let buf = storage_buffer(&g, bytemuck::cast_slice(&bits));
        let input = BufferLogits {
            dtype,
            ..dense(&buf, rows, v)
        };
        let got = run(&mut g, &input, &p);
        for r in 0..rows {
            assert_row_matches_reference(&format!("{dtype:?} row {r}"), &upcast[r], &p[r], &got[r]);
        }
    }
}

#[test]
fn row_stride_and_offset_skip_the_padding() {
    let Some(mut g) = open_gpu() else { return };
    let (rows, v, stride, skip) = (5, 3000, 3000 + 37, 11);
    let mut rng = Rng(22);
    let data = normal_rows(&mut rng, rows, v, 2.0);
    // NaN in the padding and before the offset: reading any of it is an error.
    let mut flat = vec![f32::NAN; skip + rows * stride];
    for r in 0..rows {
        flat[skip + r * stride..skip + r * stride + v].copy_from_slice(&data[r]);
    }
    let buf = storage_buffer(&g, bytemuck::cast_slice(&flat));
    let p = params(rows);
    let input = BufferLogits {
        buffer: &buf,
        offset: (skip * 4) as u64,
        rows,
        vocab: v,
        row_stride: stride,
        dtype: LogitsDtype::F32,
        allowed_bitmask: None,
    };
    let got = run(&mut g, &input, &p);
    for r in 0..rows {
        assert_row_matches_reference(&format!("row {r}"), &data[r], &p[r], &got[r]);
    }
    // The same bytes with f16 and a stride: offsets are in bytes, element-aligned.
    let bits: Vec<u16> = flat.iter().map(|&x| f16::from_f32(x).to_bits()).collect();
    let buf16 = storage_buffer(&g, bytemuck::cast_slice(&bits));
    let input16 = BufferLogits {
        buffer: &buf16,
        offset: (skip * 2) as u64,
        dtype: LogitsDtype::F16,
        ..input
    };
    let got16 = run(&mut g, &input16, &p);
    for r in 0..rows {
        let up: Vec<f32> = data[r].iter().map(|&x| f16::from_f32(x).to_f32()).collect();
        assert_row_matches_reference(&format!("f16 row {r}"), &up, &p[r], &got16[r]);
    }
}

/// The caller's encoder holds its own work before and after the sampler's:
/// a copy that produces the logits, then a copy of the token ids the sampler
/// wrote; one submission, and the tokens arrive where the next step reads them.
#[test]
fn records_into_the_callers_encoder_and_writes_token_ids() {
    let Some(mut g) = open_gpu() else { return };
    let (rows, v) = (7, 8000);
    let (data, flat) = logits(23, rows, v);
    let device = g.context().device.clone();
    let queue = g.context().queue.clone();
    let source = storage_buffer(&g, bytemuck::cast_slice(&flat));
    // Starts as zeros; the caller's own copy fills it inside the same encoder.
    let logits = storage_buffer(&g, &vec![0u8; flat.len() * 4]);
    let tokens = storage_buffer(&g, &[0u8; 64 + 4 * 7]);
    let next_input = storage_buffer(&g, &[0u8; 4 * 7]);
    let p = params(rows);
    let mut enc = device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(&source, 0, &logits, 0, (flat.len() * 4) as u64);
    let input = dense(&logits, rows, v);
    let pending = g
        .encode(&mut enc, &input, &p, 1, Some((&tokens, 64)))
        .unwrap();
    enc.copy_buffer_to_buffer(&tokens, 64, &next_input, 0, 4 * 7);
    queue.submit([enc.finish()]);
    let got = pending.read(&device).unwrap();
    for r in 0..rows {
        assert_row_matches_reference(&format!("row {r}"), &data[r], &p[r], &got[r]);
    }
    let want: Vec<u32> = got.iter().map(|r| r.token).collect();
    assert_eq!(read_u32s(&g, &tokens, 64, rows), want);
    assert_eq!(read_u32s(&g, &next_input, 0, rows), want);
    assert_eq!(
        read_u32s(&g, &tokens, 0, 16),
        vec![0; 16],
        "bytes before the offset untouched"
    );
}

#[test]
fn async_readback_matches_the_blocking_one() {
    let Some(mut g) = open_gpu() else { return };
    let (rows, v) = (4, 5000);
    let (data, flat) = logits(24, rows, v);
    let buf = storage_buffer(&g, bytemuck::cast_slice(&flat));
    let p = params(rows);
    let input = dense(&buf, rows, v);
    let blocking = run(&mut g, &input, &p);
    let device = g.context().device.clone();
    let mut enc = device.create_command_encoder(&Default::default());
    let pending = g.encode(&mut enc, &input, &p, 1, None).unwrap();
    g.context().queue.submit([enc.finish()]);
    let got = pollster::block_on(pending.read_async(&device)).unwrap();
    for r in 0..rows {
        assert_eq!(got[r].token, blocking[r].token, "row {r}");
        assert_eq!(
            got[r].logprob.to_bits(),
            blocking[r].logprob.to_bits(),
            "row {r}"
        );
        assert_row_matches_reference(&format!("row {r}"), &data[r], &p[r], &got[r]);
    }
}

/// The packed bitmask (rows × ⌈V/32⌉ u32, bit i%32 of word i/32) against the
/// reference with the same set as `allowed_token_ids`; with both, a token
/// needs both.
#[test]
fn packed_bitmask_equals_allowed_token_ids() {
    let Some(mut g) = open_gpu() else { return };
    let (rows, v): (usize, usize) = (6, 10_001); // V not a multiple of 32: the last word is partial
    let words = v.div_ceil(32);
    let (data, flat) = logits(25, rows, v);
    let mut rng = Rng(26);
    let buf = storage_buffer(&g, bytemuck::cast_slice(&flat));
    let mut allowed: Vec<Vec<u32>> = vec![
        (0..v as u32).collect(), // every bit set
        vec![v as u32 - 1],      // one token, in the partial word
        (0..v as u32).filter(|i| i % 3 == 0).collect(),
        (0..v as u32).filter(|_| rng.below(10) == 0).collect(),
        (0..200).map(|_| rng.below(v as u64) as u32).collect(),
        (5000..5100).collect(),
    ];
    allowed[4].sort_unstable();
    allowed[4].dedup();
    let mut mask = vec![0u32; rows * words];
    for (r, ids) in allowed.iter().enumerate() {
        for &i in ids {
            mask[r * words + i as usize / 32] |= 1 << (i % 32);
        }
    }
    // Bits past V in the last word are ignored (row 1 allows one token only).
    mask[2 * words - 1] |= !0u32 << (v % 32);
    let mask_buf = storage_buffer(&g, bytemuck::cast_slice(&mask));
    let mut p = params(rows);
    // Row 5 also has an id list: the two intersect.
    p[5].allowed_token_ids = Some((5050..5300).collect());
    let input = BufferLogits {
        allowed_bitmask: Some(&mask_buf),
        ..dense(&buf, rows, v)
    };
    let got = run(&mut g, &input, &p);
    for r in 0..rows {
        let mut want = p[r].clone();
        want.allowed_token_ids = Some(match &p[r].allowed_token_ids {
            Some(list) => allowed[r]
                .iter()
                .copied()
                .filter(|i| list.contains(i))
                .collect(),
            None => allowed[r].clone(),
        });
        assert_row_matches_reference(&format!("row {r}"), &data[r], &want, &got[r]);
    }
    assert_eq!(got[1].token, v as u32 - 1);
    assert_eq!(got[1].kept, 1);
    // A row whose mask allows nothing is the all-masked error, naming the row.
    let mut none = mask.clone();
    none[2 * words..3 * words].fill(0);
    let none_buf = storage_buffer(&g, bytemuck::cast_slice(&none));
    let device = g.context().device.clone();
    let mut enc = device.create_command_encoder(&Default::default());
    let input = BufferLogits {
        allowed_bitmask: Some(&none_buf),
        ..input
    };
    let pending = g.encode(&mut enc, &input, &p, 1, None).unwrap();
    g.context().queue.submit([enc.finish()]);
    let e = pending.read(&device).unwrap_err().to_string();
    assert!(e.contains("row 2") && e.contains("masked"), "{e}");
}

#[test]
fn shape_errors_are_typed() {
    let Some(mut g) = open_gpu() else { return };
    let buf = storage_buffer(&g, &vec![0u8; 4 * 1000]);
    let small = storage_buffer(&g, &[0u8; 4]);
    let device = g.context().device.clone();
    let p = params(2);
    let base = dense(&buf, 2, 500);
    let mut try_encode = |input: BufferLogits<'_>, tokens: Option<(&wgpu::Buffer, u64)>| {
        let mut enc = device.create_command_encoder(&Default::default());
        g.encode(&mut enc, &input, &p, 1, tokens)
            .err()
            .map(|e| e.to_string())
    };
    assert!(try_encode(base, None).is_none());
    let e = try_encode(
        BufferLogits {
            row_stride: 600,
            ..base
        },
        None,
    )
    .unwrap();
    assert!(e.contains("bytes"), "{e}");
    let e = try_encode(
        BufferLogits {
            row_stride: 400,
            ..base
        },
        None,
    )
    .unwrap();
    assert!(e.contains("stride"), "{e}");
    let e = try_encode(BufferLogits { offset: 2, ..base }, None).unwrap();
    assert!(e.contains("offset"), "{e}");
    let e = try_encode(
        BufferLogits {
            allowed_bitmask: Some(&small),
            ..base
        },
        None,
    )
    .unwrap();
    assert!(e.contains("bitmask"), "{e}");
    let e = try_encode(base, Some((&small, 0))).unwrap();
    assert!(e.contains("token buffer"), "{e}");
}

/// A decode loop may record and submit the next call before reading the
/// last one: each pending result keeps its own readback, and reading is
/// allowed in any order.
#[test]
fn calls_submitted_before_either_is_read_keep_their_own_results() {
    let Some(mut g) = open_gpu() else { return };
    let (rows, v) = (3, 4000);
    let device = g.context().device.clone();
    let queue = g.context().queue.clone();
    let (data_a, flat_a) = logits(27, rows, v);
    let (data_b, flat_b) = logits(28, rows, v);
    let buf_a = storage_buffer(&g, bytemuck::cast_slice(&flat_a));
    let buf_b = storage_buffer(&g, bytemuck::cast_slice(&flat_b));
    let p = params(rows);
    let mut pending = Vec::new();
    for buf in [&buf_a, &buf_b] {
        let mut enc = device.create_command_encoder(&Default::default());
        pending.push(
            g.encode(&mut enc, &dense(buf, rows, v), &p, 1, None)
                .unwrap(),
        );
        queue.submit([enc.finish()]);
    }
    let got_b = pending.pop().unwrap().read(&device).unwrap();
    let got_a = pending.pop().unwrap().read(&device).unwrap();
    for r in 0..rows {
        assert_row_matches_reference(&format!("first call row {r}"), &data_a[r], &p[r], &got_a[r]);
        assert_row_matches_reference(
            &format!("second call row {r}"),
            &data_b[r],
            &p[r],
            &got_b[r],
        );
    }
}

/// Reading a call whose command buffer never ran is an error, not the
/// results some earlier call left behind.
#[test]
fn reading_before_the_submission_ran_is_an_error() {
    let Some(mut g) = open_gpu() else { return };
    let (rows, v) = (2, 1000);
    let device = g.context().device.clone();
    let (_, flat) = logits(29, rows, v);
    let buf = storage_buffer(&g, bytemuck::cast_slice(&flat));
    let p = params(rows);
    let input = dense(&buf, rows, v);
    // A call that runs, leaving valid results in the workspace.
    run(&mut g, &input, &p);
    let mut enc = device.create_command_encoder(&Default::default());
    let pending = g.encode(&mut enc, &input, &p, 1, None).unwrap();
    let e = pending.read(&device).unwrap_err().to_string();
    assert!(e.contains("not this call's"), "{e}");
    drop(enc);
    // The sampler goes on working.
    let got = run(&mut g, &input, &p);
    assert_eq!(got.len(), rows);
}
