//! The typed host ↔ shader layout (src/gpu/abi.rs) round-trips through a
//! shader on the device: a `ParamRecord` and a `ChunkUniform` written on the
//! host with a distinct value in every word are read back field by field
//! through the generated WGSL names (`prm[MR + M_TEMP]`, `ch.vocab`), and a
//! `ResultRecord` written by the shader through the `R_*` names is read on
//! the host through the Rust struct. A field whose WGSL offset, the record
//! stride (`MR`, `RES`) or the uniform struct's member order drifted from
//! the Rust definition fails here.

#![cfg(feature = "gpu")]

mod gpu_support;

use bytemuck::Zeroable;
use token_sampler::gpu::abi::{wgsl_header, ChunkUniform, ParamRecord, ResultRecord};
use token_sampler::wgpu;

/// The value the host writes into word `w` of a record (never 0).
fn word(base: u32, w: usize) -> u32 {
    base + 7 * w as u32 + 1
}

/// The value the shader writes into word `w` of field `k` of the result.
fn result_word(k: usize, w: usize) -> u32 {
    0x5000_0000 + ((k as u32) << 8) + w as u32
}

#[test]
fn every_record_round_trips_through_the_wgsl_layout() {
    let Some(gpu) = gpu_support::open_gpu() else {
        return;
    };
    let ctx = gpu.context();
    let (device, queue) = (&ctx.device, &ctx.queue);

    // Row 1 of the parameters (row 0 zeros: the stride MR is exercised).
    let mut params = [ParamRecord::zeroed(); 2];
    for (w, v) in bytemuck::cast_slice_mut::<ParamRecord, u32>(&mut params[1..])
        .iter_mut()
        .enumerate()
    {
        *v = word(0x1000_0000, w);
    }
    let mut chunk = ChunkUniform::zeroed();
    for (w, v) in bytemuck::cast_slice_mut::<ChunkUniform, u32>(std::slice::from_mut(&mut chunk))
        .iter_mut()
        .enumerate()
    {
        *v = word(0x2000_0000, w);
    }

    // The shader: every parameter word and chunk field copied out in
    // declaration order, then result row 1 written through the R_* names.
    let mut body = String::new();
    let mut at = 0usize;
    for &(_, wgsl, _, n) in ParamRecord::FIELDS {
        for w in 0..n {
            body.push_str(&format!("    outb[{at}u] = prm[MR + {wgsl} + {w}u];\n"));
            at += 1;
        }
    }
    for &(name, _, _, n) in ChunkUniform::FIELDS {
        assert_eq!(n, 1);
        body.push_str(&format!("    outb[{at}u] = ch.{name};\n"));
        at += 1;
    }
    let res0 = at;
    for (k, &(_, wgsl, _, n)) in ResultRecord::FIELDS.iter().enumerate() {
        for w in 0..n {
            body.push_str(&format!(
                "    outb[{res0}u + RES + {wgsl} + {w}u] = {}u;\n",
                result_word(k, w)
            ));
        }
    }
    let words_out = res0 + 2 * ResultRecord::WORDS;
    let src = format!(
        "{}\n@group(0) @binding(0) var<storage, read> prm: array<u32>;\n\
         @group(0) @binding(1) var<uniform> ch: Chunk;\n\
         @group(0) @binding(2) var<storage, read_write> outb: array<u32>;\n\
         @compute @workgroup_size(1)\nfn main() {{\n{body}}}\n",
        wgsl_header()
    );

    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("abi round trip"),
        source: wgpu::ShaderSource::Wgsl(src.into()),
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("abi round trip"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    use wgpu::util::DeviceExt;
    let prm = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::cast_slice(&params),
        usage: wgpu::BufferUsages::STORAGE,
    });
    let uni = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: None,
        contents: bytemuck::bytes_of(&chunk),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let size = (words_out * 4) as u64;
    let out = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let read = device.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: prm.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: uni.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: out.as_entire_binding(),
            },
        ],
    });
    let mut enc = device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(1, 1, 1);
    }
    enc.copy_buffer_to_buffer(&out, 0, &read, 0, size);
    queue.submit([enc.finish()]);
    read.slice(..)
        .map_async(wgpu::MapMode::Read, |r| r.expect("map"));
    device
        .poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: Some(std::time::Duration::from_secs(60)),
        })
        .expect("poll");
    let view = read.slice(..).get_mapped_range().expect("mapped");
    let got: Vec<u32> = bytemuck::cast_slice(&view).to_vec();

    // Parameters and chunk fields: each word is the one the host wrote at
    // the Rust field's offset.
    let mut at = 0usize;
    for &(name, wgsl, off, n) in ParamRecord::FIELDS {
        for w in 0..n {
            assert_eq!(
                got[at],
                word(0x1000_0000, off + w),
                "ParamRecord.{name} ({wgsl} + {w})"
            );
            at += 1;
        }
    }
    for &(name, _, off, _) in ChunkUniform::FIELDS {
        assert_eq!(
            got[at],
            word(0x2000_0000, off),
            "ChunkUniform.{name} (ch.{name})"
        );
        at += 1;
    }
    // The result record: row 0 untouched, row 1 read through the Rust
    // struct, each field holding what the shader wrote through its R_* name.
    let results: &[ResultRecord] = bytemuck::cast_slice(&got[res0..]);
    assert!(bytemuck::bytes_of(&results[0]).iter().all(|&b| b == 0));
    let row1: &[u32] = bytemuck::cast_slice(std::slice::from_ref(&results[1]));
    for (k, &(name, wgsl, off, n)) in ResultRecord::FIELDS.iter().enumerate() {
        for w in 0..n {
            assert_eq!(
                row1[off + w],
                result_word(k, w),
                "ResultRecord.{name} ({wgsl} + {w})"
            );
        }
    }
    // And a few fields by their Rust names, as the readback uses them.
    let index = |name: &str| {
        ResultRecord::FIELDS
            .iter()
            .position(|f| f.0 == name)
            .unwrap()
    };
    assert_eq!(results[1].token, result_word(index("token"), 0));
    assert_eq!(results[1].call, result_word(index("call"), 0));
    assert_eq!(results[1].ref_x, result_word(index("ref_x"), 0));
}
