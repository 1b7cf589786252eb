//! Every shader, as the backend assembles it, parses and validates with naga
//! (with the default sizes and with the smaller ones chosen for devices with
//! little workgroup memory).

#![cfg(feature = "gpu")]

use token_sampler::gpu::shaders::{Job, LaneOrder, ShaderConsts};

fn validate(job: Job, consts: &ShaderConsts) {
    let src = job.source(consts);
    let module = naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{}: parse error:\n{}", job.name(), e.emit_to_string(&src)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .unwrap_or_else(|e| {
        panic!(
            "{}: validation error:\n{}",
            job.name(),
            e.emit_to_string(&src)
        )
    });
}

#[test]
fn every_shader_validates_with_default_sizes() {
    for job in Job::ALL {
        validate(job, &ShaderConsts::default());
    }
}

#[test]
fn every_shader_validates_with_small_sizes() {
    let small = ShaderConsts {
        wg: 64,
        tile: 256,
        cap: 512,
        ha_bits: 10,
        nb: 256,
        solve_wg: 32,
        ..Default::default()
    };
    for job in Job::ALL {
        validate(job, &small);
    }
}

#[test]
fn the_lane_order_is_not_compiled_in() {
    // A call carries its lane order in the chunk uniform, so every order
    // runs the same pipelines (and lavapipe compiles them once).
    for lanes in LaneOrder::ALL {
        for job in Job::ALL {
            assert_eq!(
                job.source(&ShaderConsts {
                    lanes,
                    ..Default::default()
                }),
                job.source(&ShaderConsts::default()),
                "{}",
                job.name()
            );
        }
    }
}
