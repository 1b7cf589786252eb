//! The compiled pipelines, built once per device, and the sizes they were
//! built for (chosen from the adapter's limits).

use std::collections::HashMap;

use super::shaders::{Features, Job, LaneOrder, ShaderConsts};

/// Pipelines by job and feature variant, compiled on first use.
pub struct Pipelines {
    pub consts: ShaderConsts,
    pub layout: wgpu::BindGroupLayout,
    pub stream_layout: wgpu::BindGroupLayout,
    pub philox_layout: wgpu::BindGroupLayout,
    device: wgpu::Device,
    map: HashMap<(Job, Features), wgpu::ComputePipeline>,
}

/// Sizes for this device: 128 invocations and 1024-id tiles where the limits
/// allow (every WebGPU device has 256), the 12-bit first digit and 2048
/// candidates where workgroup memory holds their 16 KiB histogram and the
/// solver's 24 KiB of candidates. A software adapter (lavapipe) gets the
/// same sizes, so the tests there run what a GPU runs; 128 invocations took
/// 30–40 % off the statistics pass there against 256 (docs/gpu.md "Sizes").
/// Every size is a device constant, never a function of the batch.
pub fn consts_for(limits: &wgpu::Limits, software: bool) -> ShaderConsts {
    let mut c = ShaderConsts::default();
    let inv = limits
        .max_compute_invocations_per_workgroup
        .min(limits.max_compute_workgroup_size_x);
    if inv < 128 {
        c.wg = 64;
        c.tile = 256;
    }
    // Kept for a sizing a software adapter may need again.
    let _ = software;
    if limits.max_compute_workgroup_storage_size < 32 * 1024 {
        c.ha_bits = 10;
        c.cap = 512;
    }
    c.solve_wg = c.solve_wg.min(c.wg);
    c
}

fn storage(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

impl Pipelines {
    pub fn new(
        device: &wgpu::Device,
        limits: &wgpu::Limits,
        software: bool,
        lanes: LaneOrder,
    ) -> Self {
        let consts = ShaderConsts {
            lanes,
            ..consts_for(limits, software)
        };
        // common.wgsl's bindings: logits, parameters, workspace, histogram
        // bins, results, bitmask, aux (probs or the caller's token buffer),
        // then the chunk's record (read-only storage, common.wgsl says why).
        let mut entries: Vec<wgpu::BindGroupLayoutEntry> = vec![
            storage(0, true),
            storage(1, true),
            storage(2, false),
            storage(3, false),
            storage(4, false),
            storage(5, true),
            storage(6, false),
        ];
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: 7,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: true },
                has_dynamic_offset: true,
                min_binding_size: None,
            },
            count: None,
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("sampler"),
            entries: &entries,
        });
        let two = |label| {
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(label),
                entries: &[storage(0, true), storage(1, false)],
            })
        };
        let stream_layout = two("stream");
        let philox_layout = two("philox");
        let mut p = Pipelines {
            consts,
            layout,
            stream_layout,
            philox_layout,
            device: device.clone(),
            map: HashMap::new(),
        };
        // The variants every call may need at once are built up front, so the
        // first call's time is not a compiler's.
        for job in [Job::Stream, Job::PhiloxCheck] {
            p.ensure(job, Features::ALL);
        }
        for job in [Job::Stats, Job::Solve, Job::Pick, Job::Probs] {
            p.ensure(job, Features::NONE);
            p.ensure(job, Features::ALL);
        }
        p
    }

    /// Builds the `features` variant of `job` unless it exists.
    pub fn ensure(&mut self, job: Job, features: Features) {
        if self.map.contains_key(&(job, features)) {
            return;
        }
        let bgl = match job {
            Job::Stream => &self.stream_layout,
            Job::PhiloxCheck => &self.philox_layout,
            _ => &self.layout,
        };
        let device = &self.device;
        let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(job.name()),
            bind_group_layouts: &[Some(bgl)],
            immediate_size: 0,
        });
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(job.name()),
            source: wgpu::ShaderSource::Wgsl(job.source_with(&self.consts, features).into()),
        };
        let module = if knob("TOKEN_SAMPLER_GPU_CHECKS") == Some(false) {
            // SAFETY: an experiment switch (off by default) for measuring
            // what naga's bounds checks and loop bounding cost; every index
            // in the shaders is in range by construction.
            unsafe {
                device.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        } else {
            device.create_shader_module(desc)
        };
        let p = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(job.name()),
            layout: Some(&pl),
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                // Every workgroup variable is written before it is read,
                // so zero-initialising workgroup memory is optional.
                zero_initialize_workgroup_memory: knob("TOKEN_SAMPLER_GPU_ZERO_INIT")
                    .unwrap_or(true),
                ..Default::default()
            },
            cache: None,
        });
        self.map.insert((job, features), p);
    }

    /// A variant built by [`ensure`](Self::ensure) (every job's `ALL` and
    /// `NONE` variants are always there).
    pub fn get(&self, job: Job, features: Features) -> &wgpu::ComputePipeline {
        &self.map[&(job, features)]
    }
}

/// An on/off environment switch for measuring pipeline options (`0`/`1`).
fn knob(name: &str) -> Option<bool> {
    match std::env::var(name).ok()?.as_str() {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}
