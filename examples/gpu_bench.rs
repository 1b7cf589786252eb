//! The GPU benchmark grid as one self-contained binary (it runs where there is
//! no Rust toolchain, e.g. from `scripts/device_check.sh`): B ∈ {1, 32, 256} ×
//! V ∈ {32 000, 128 256, 200 064} × five parameter sets on seeded normal(0, 3)
//! logits, plus two anchors for published kernels — top-p at B = 128,
//! V = 131 072 (FlashInfer's sampling benchmark shape) and one streaming read
//! of 256 × 128 256 f32 — the floor of a timed pass (a streaming read of
//! 1 × 1024: one workgroup), and the device's cost per dispatch (`dispatch`
//! rows: 1, 16 and 256 empty dependent dispatches in one timed pass; the
//! slope is printed on stderr).
//!
//! Prints `{"results": [...]}` in the shape of docs/spec.md §8's `bench --json`: per
//! grid point a `kernel` row (GPU timestamp queries around the one compute
//! pass: every dispatch, no upload or readback) and an `end_to_end` row
//! (upload + sample + readback, wall clock), each with the median over
//! `--runs`, the interquartile spread, µs per row, GB/s of logits and the
//! fraction of the same run's streaming-read bandwidth, and the reads of the
//! logits per row the sampler took.
//!
//! With `--resident`, each point also gets a `resident` row: the logits are
//! uploaded once into a device buffer and `--runs` calls are recorded and
//! submitted back to back through the buffer API (`GpuSampler::encode`), then
//! read; the row is wall time ÷ calls. The GPU stays busy from one call to
//! the next, so this is the per-call cost a server feeding device-resident
//! logits sees, without the upload gaps that let the clocks drop between the
//! `end_to_end` calls (which made `kernel` medians of one point differ by up
//! to 5× between runs on an H200).
//!
//! `cargo run --release --example gpu_bench -- [--runs N] [--quick] [--profile] [--resident]`
//! (`--quick`: a small grid for software adapters such as lavapipe;
//! `--profile`: one more call per point with every dispatch timed, added to
//! its `kernel` row as `profile_ms` — stats, solve (with its own reads), pick —
//! where the device has TIMESTAMP_QUERY_INSIDE_PASSES).

use std::time::Instant;

use serde_json::{json, Value};
use token_sampler::gpu::{BufferLogits, GpuSampler, LogitsDtype};
use token_sampler::validate::normal_batch;
use token_sampler::{wgpu, Batch, Sampler};

#[path = "../benches/support/param_sets.rs"]
mod param_sets;

use param_sets::{params_for, SETS};

/// Little-endian u64 words of a mapped buffer.
fn u64_words(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Median and interquartile range.
fn median_iqr(mut xs: Vec<f64>) -> (f64, f64) {
    xs.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let pos = q * (xs.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        xs[lo] + (xs[hi] - xs[lo]) * (pos - lo as f64)
    };
    (at(0.5), at(0.75) - at(0.25))
}

struct Bench {
    gpu: GpuSampler,
    device: String,
    runs: usize,
    /// One more call per point with every dispatch timed (`--profile`).
    profile: bool,
    /// A back-to-back pass over device-resident logits per point (`--resident`).
    resident: bool,
    results: Vec<Value>,
}

impl Bench {
    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        mode: &str,
        b: usize,
        v: usize,
        params: &str,
        times: Vec<f64>,
        stream_ms: Option<f64>,
        reads: Option<u32>,
    ) -> f64 {
        let runs = times.len();
        let (median, spread) = median_iqr(times);
        let bytes = (b * v * 4) as f64;
        self.results.push(json!({
            "backend": "gpu",
            "device": self.device,
            "mode": mode,
            "batch": b,
            "vocab": v,
            "params": params,
            "runs": runs,
            "median_ms": median,
            "spread_ms": spread,
            "us_per_row": median * 1e3 / b as f64,
            "gb_per_s": bytes / (median * 1e-3) / 1e9,
            "bw_fraction": stream_ms.map(|s| s / median),
            "reads_per_row": reads,
            "dispatches": self.gpu.last_structure().map(|c| c.dispatches),
            "workgroups": self.gpu.last_structure().map(|c| c.workgroups),
        }));
        eprintln!(
            "{mode:>10} B {b:>3} V {v:>6} {params:<20} median {median:9.4} ms  IQR {spread:.4}"
        );
        median
    }

    /// The per-dispatch cost of the device: N empty dependent dispatches
    /// (one invocation each, every one reading and writing the same word, so
    /// each waits for the one before) in one timestamped pass, for N = 1,
    /// 16 and 256. A `dispatch` row per N (`us_per_row` = µs per dispatch,
    /// `dispatches` = N), and on stderr the slope (t(256) − t(1)) / 255: what
    /// one more dispatch in a call costs. Needs timestamp queries.
    fn empty_dispatches(&mut self) {
        let ctx = self.gpu.context();
        if !ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            eprintln!("dispatch: no timestamp queries on this device, skipped");
            return;
        }
        let (device, queue) = (&ctx.device, &ctx.queue);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("empty dispatch"),
            source: wgpu::ShaderSource::Wgsl(
                "@group(0) @binding(0) var<storage, read_write> c: array<u32>;\n\
                 @compute @workgroup_size(1)\nfn main() { c[0] = c[0] + 1u; }\n"
                    .into(),
            ),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("empty dispatch"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let buffer = |size: u64, usage: wgpu::BufferUsages| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        let counter = buffer(256, wgpu::BufferUsages::STORAGE);
        let resolve = buffer(
            16,
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        );
        let read = buffer(
            16,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        );
        let set = device.create_query_set(&wgpu::QuerySetDescriptor {
            label: None,
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[wgpu::BindGroupEntry {
                binding: 0,
                resource: counter.as_entire_binding(),
            }],
        });
        let period = queue.get_timestamp_period() as f64;
        let mut medians = Vec::new();
        for n in [1u32, 16, 256] {
            let mut times = Vec::with_capacity(self.runs);
            for run in 0..self.runs + 2 {
                let mut enc = device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("empty dispatches"),
                        timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                            query_set: &set,
                            beginning_of_pass_write_index: Some(0),
                            end_of_pass_write_index: Some(1),
                        }),
                    });
                    pass.set_pipeline(&pipeline);
                    pass.set_bind_group(0, &bind, &[]);
                    for _ in 0..n {
                        pass.dispatch_workgroups(1, 1, 1);
                    }
                }
                enc.resolve_query_set(&set, 0..2, &resolve, 0);
                enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, 16);
                queue.submit([enc.finish()]);
                read.slice(..)
                    .map_async(wgpu::MapMode::Read, |r| r.expect("map"));
                device
                    .poll(wgpu::PollType::Wait {
                        submission_index: None,
                        timeout: Some(std::time::Duration::from_secs(60)),
                    })
                    .expect("poll");
                let ts: Vec<u64> = {
                    let view = read.slice(..).get_mapped_range().expect("mapped");
                    u64_words(&view)
                };
                read.unmap();
                if run >= 2 {
                    times.push(ts[1].saturating_sub(ts[0]) as f64 * period / 1e6);
                }
            }
            let (median, spread) = median_iqr(times);
            medians.push(median);
            self.results.push(json!({
                "backend": "gpu",
                "device": self.device,
                "mode": "dispatch",
                "batch": 1,
                "vocab": 0,
                "params": format!("empty_x{n}"),
                "runs": self.runs,
                "median_ms": median,
                "spread_ms": spread,
                "us_per_row": median * 1e3 / n as f64,
                "gb_per_s": 0.0,
                "bw_fraction": null,
                "reads_per_row": null,
                "dispatches": n,
                "workgroups": n,
            }));
            eprintln!("  dispatch x{n:<3} median {median:9.4} ms  IQR {spread:.4}");
        }
        eprintln!(
            "  dispatch cost: {:.2} us per dependent empty dispatch (slope 1 -> 256)",
            (medians[2] - medians[0]) * 1e3 / 255.0
        );
    }

    /// One streaming read of the batch (kernel time), median over the runs.
    fn stream(&mut self, batch: &Batch) -> Option<f64> {
        let mut times = Vec::with_capacity(self.runs);
        for _ in 0..self.runs + 2 {
            times.push(self.gpu.stream_read_ms(batch.view()).ok()??);
        }
        times.drain(..2);
        let (b, v) = (batch.rows(), batch.vocab());
        Some(self.row("kernel", b, v, "stream_read", times, None, Some(1)))
    }

    fn point(&mut self, batch: &Batch, set: &str, stream_ms: Option<f64>) {
        let (b, v) = (batch.rows(), batch.vocab());
        let params = vec![params_for(set); b];
        let (mut kernel, mut e2e) = (Vec::new(), Vec::new());
        for run in 0..self.runs + 2 {
            let t = Instant::now();
            self.gpu.sample(batch.view(), &params, 1).expect("sample");
            let wall = t.elapsed().as_secs_f64() * 1e3;
            if run >= 2 {
                e2e.push(wall);
                kernel.extend(self.gpu.last_kernel_ms());
            }
        }
        let reads = self.gpu.last_reads().iter().copied().max();
        let timed = !kernel.is_empty();
        if timed {
            self.row("kernel", b, v, set, kernel, stream_ms, reads);
        }
        if self.profile && timed {
            self.gpu.set_profile(true);
            self.gpu.sample(batch.view(), &params, 1).expect("sample");
            self.gpu.set_profile(false);
            let spans = self.gpu.last_profile().to_vec();
            if !spans.is_empty() {
                let text: Vec<String> =
                    spans.iter().map(|(l, ms)| format!("{l} {ms:.4}")).collect();
                eprintln!("{:>10} ms: {}", "profile", text.join(", "));
                let map: serde_json::Map<String, Value> = spans
                    .iter()
                    .map(|(l, ms)| (l.to_string(), json!(ms)))
                    .collect();
                if let Some(last) = self.results.last_mut() {
                    last["profile_ms"] = Value::Object(map);
                }
            }
        }
        self.row("end_to_end", b, v, set, e2e, stream_ms, reads);
        if self.resident {
            self.resident_point(batch, set, stream_ms, reads);
        }
    }

    /// Calls recorded and submitted back to back on device-resident logits,
    /// read after the last one; three such passes, the median of their
    /// per-call wall times.
    fn resident_point(
        &mut self,
        batch: &Batch,
        set: &str,
        stream_ms: Option<f64>,
        reads: Option<u32>,
    ) {
        let (b, v) = (batch.rows(), batch.vocab());
        let params = vec![params_for(set); b];
        let ctx = self.gpu.context();
        let (device, queue) = (ctx.device.clone(), ctx.queue.clone());
        let buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("gpu_bench resident logits"),
            size: (b * v * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        queue.write_buffer(&buffer, 0, bytemuck::cast_slice(batch.data()));
        let input = BufferLogits {
            buffer: &buffer,
            offset: 0,
            rows: b,
            vocab: v,
            row_stride: v,
            dtype: LogitsDtype::F32,
            allowed_bitmask: None,
        };
        self.gpu
            .sample_buffer(&input, &params, 1, None)
            .expect("resident warm-up");
        let calls = self.runs.max(3);
        let mut per_call = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            let mut pending = Vec::with_capacity(calls);
            for _ in 0..calls {
                let mut enc = device.create_command_encoder(&Default::default());
                pending.push(
                    self.gpu
                        .encode(&mut enc, &input, &params, 1, None)
                        .expect("encode"),
                );
                queue.submit([enc.finish()]);
            }
            for p in pending {
                p.read(&device).expect("read");
            }
            per_call.push(t.elapsed().as_secs_f64() * 1e3 / calls as f64);
        }
        self.row("resident", b, v, set, per_call, stream_ms, reads);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(10usize)
        .max(1);
    let quick = args.iter().any(|a| a == "--quick");
    let profile = args.iter().any(|a| a == "--profile");
    let resident = args.iter().any(|a| a == "--resident");
    let gpu = GpuSampler::new_blocking(true)?;
    let device = gpu.device();
    eprintln!(
        "gpu_bench on {device}; timestamp queries: {}",
        gpu.context()
            .features
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    );
    let mut bench = Bench {
        gpu,
        device,
        runs,
        profile,
        resident,
        results: Vec::new(),
    };
    bench.empty_dispatches();
    let (batches, vocabs): (Vec<usize>, Vec<usize>) = if quick {
        (vec![1, 32], vec![32_000])
    } else {
        (vec![1, 32, 256], vec![32_000, 128_256, 200_064])
    };
    for &v in &vocabs {
        for &b in &batches {
            let batch = normal_batch(b, v, 3.0, 42);
            let stream_ms = bench.stream(&batch);
            for set in SETS {
                bench.point(&batch, set, stream_ms);
            }
        }
    }
    // The floor of any timed pass: one workgroup reading 4 KiB (launch,
    // barriers and the timestamp pair, no bandwidth).
    let tiny = normal_batch(1, 1024, 3.0, 44);
    bench.stream(&tiny);
    // Anchors: FlashInfer top-p sampling at B = 128, V = 131 072; one read of
    // 256 × 128 256 f32 (the bandwidth floor).
    let anchors: [(usize, usize, Option<&str>); 2] = if quick {
        [(8, 131_072, Some("top_p_0.9")), (8, 128_256, None)]
    } else {
        [(128, 131_072, Some("top_p_0.9")), (256, 128_256, None)]
    };
    for (b, v, set) in anchors {
        let batch = normal_batch(b, v, 3.0, 43);
        let stream_ms = bench.stream(&batch);
        if let Some(set) = set {
            bench.point(&batch, set, stream_ms);
        }
    }
    println!(
        "{}",
        serde_json::to_string(&json!({ "schema": 1, "results": bench.results }))?
    );
    Ok(())
}
