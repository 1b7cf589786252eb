//! The gpu backend refuses a row that uses a sampler of docs/spec.md
//! §3.10–3.15 (not implemented there yet) on every entry point, naming the
//! row and the field, instead of sampling without it.

#![cfg(feature = "gpu")]

mod gpu_support;

use gpu_support::open_gpu;
use token_sampler::gpu::BufferLogits;
use token_sampler::{Batch, LogitsDtype, Mirostat, Sampler, SamplerError, SamplingParams};

#[track_caller]
fn refused<T: std::fmt::Debug>(r: token_sampler::Result<T>, field: &str) {
    let e = r.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, SamplerError::Unsupported(_))
            && text.contains("row 1")
            && text.contains(field)
            && text.contains("gpu backend")
            && text.contains("--backend reference"),
        "{text}"
    );
}

#[test]
fn extended_rows_are_refused_on_every_entry_point() {
    let Some(mut g) = open_gpu() else { return };
    let row = vec![0.5f32, 1.0, -1.0, 2.0];
    let batch = Batch::from_rows(&[row.clone(), row]).unwrap();
    for (p, field) in [
        (
            SamplingParams {
                top_n_sigma: 1.0,
                ..Default::default()
            },
            "top_n_sigma",
        ),
        (
            SamplingParams {
                mirostat: Some(Mirostat::new(2)),
                ..Default::default()
            },
            "mirostat",
        ),
    ] {
        let params = [SamplingParams::default(), p];
        refused(g.sample(batch.view(), &params, 1), field);
        refused(g.probs(batch.view(), &params), field);
        let (buffer, dtype) = g.upload_buffer(batch.view());
        assert_eq!(dtype, LogitsDtype::F32);
        let input = BufferLogits {
            buffer: &buffer,
            offset: 0,
            rows: 2,
            vocab: 4,
            row_stride: 4,
            dtype,
            allowed_bitmask: None,
        };
        refused(g.sample_buffer(&input, &params, 1, None), field);
    }
    // A row without them still samples.
    let ok = g.sample(
        batch.view(),
        &[SamplingParams::default(), SamplingParams::default()],
        1,
    );
    assert_eq!(ok.unwrap().len(), 2);
}
