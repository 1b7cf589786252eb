//! docs/spec.md §8: host logits in f16 and bf16. A half-precision batch is
//! its exact f32 widening, so every backend must give, bit for bit, the
//! results it gives for the widened f32 batch (and the GPU the reference's
//! answer within docs/spec.md §7), with the same errors naming row and index.
//! Odd element counts exercise the GPU upload's padding of a last half word.

#[cfg(feature = "gpu")]
mod gpu_support;

use half::{bf16, f16};
use token_sampler::{
    BackendKind, Batch, LogitsDtype, LogitsView, Sampler, SamplerError, SamplingParams,
};

/// Seeded logits spread over several units (plenty of f16 ties included).
fn raw(rows: usize, vocab: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..rows * vocab)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 16.0
        })
        .collect()
}

fn params(rows: usize) -> Vec<SamplingParams> {
    let sets = [
        r#"{"temperature": 0.8, "top_p": 0.9, "seed": 11}"#,
        r#"{"temperature": 1.0, "top_k": 40, "min_p": 0.05, "seed": 12, "logprobs": 3}"#,
        r#"{"temperature": 0, "seed": 1}"#,
        r#"{"temperature": 1.3, "top_k": 5, "top_p": 0.7, "seed": 13}"#,
    ];
    (0..rows)
        .map(|r| {
            SamplingParams::from_json_value(r, serde_json::from_str(sets[r % sets.len()]).unwrap())
                .unwrap()
        })
        .collect()
}

/// The f16 and bf16 forms of `x` and their exact f32 widenings.
fn halves(x: &[f32]) -> (Vec<f16>, Vec<f32>, Vec<bf16>, Vec<f32>) {
    let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
    let hw = h.iter().map(|v| v.to_f32()).collect();
    let b: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
    let bw = b.iter().map(|v| v.to_f32()).collect();
    (h, hw, b, bw)
}

fn backends() -> Vec<Box<dyn Sampler>> {
    let mut out: Vec<Box<dyn Sampler>> = vec![
        token_sampler::open(BackendKind::Reference, false).unwrap(),
        token_sampler::open(BackendKind::Cpu, false).unwrap(),
    ];
    #[cfg(feature = "gpu")]
    if gpu_support::open_gpu().is_some() {
        out.push(token_sampler::open(BackendKind::Gpu, true).unwrap());
    }
    out
}

#[test]
fn views_report_type_and_bytes() {
    let x = [1.0f32, -2.5, 0.0];
    let h: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
    let v = LogitsView::f16(&h, 1, 3).unwrap();
    assert_eq!(v.dtype(), LogitsDtype::F16);
    assert_eq!(v.bytes().len(), 6);
    assert!(v.as_f32().is_none());
    assert_eq!(&*v.row(0), &x[..]);
    let b: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
    let v = LogitsView::bf16(&b, 3, 1).unwrap();
    assert_eq!(v.dtype(), LogitsDtype::Bf16);
    assert_eq!(&*v.row(1), &[-2.5f32][..]);
    assert_eq!(&*v.slice_rows(1, 3).to_f32(), &x[1..]);
    let err = LogitsView::f16(&h, 2, 2).unwrap_err();
    assert!(
        err.to_string().contains("3 logits do not make 2 rows of 2"),
        "{err}"
    );
}

#[test]
fn every_backend_samples_half_logits_as_their_f32_widening() {
    let (rows, vocab) = (5, 1001); // 5005 elements: an odd count of halves
    let x = raw(rows, vocab, 7);
    let (h, hw, b, bw) = halves(&x);
    let p = params(rows);
    for mut s in backends() {
        let name = s.kind().name();
        for (half_view, wide) in [
            (LogitsView::f16(&h, rows, vocab).unwrap(), &hw),
            (LogitsView::bf16(&b, rows, vocab).unwrap(), &bw),
        ] {
            let what = format!("{name} {:?}", half_view.dtype());
            let wide_view = LogitsView::new(wide, rows, vocab).unwrap();
            let got = s.sample(half_view, &p, 3).unwrap();
            let want = s.sample(wide_view, &p, 3).unwrap();
            assert_eq!(got, want, "{what}: sample");
            let got = s.probs(half_view, &p).unwrap();
            let want = s.probs(wide_view, &p).unwrap();
            assert_eq!(got, want, "{what}: probs");
            #[cfg(feature = "gpu")]
            if s.kind() == BackendKind::Gpu {
                let got = s.sample(half_view, &p, 1).unwrap();
                for (r, g) in got.iter().enumerate() {
                    gpu_support::assert_row_matches_reference(
                        &format!("{what} row {r}"),
                        &wide[r * vocab..(r + 1) * vocab],
                        &p[r],
                        g,
                    );
                }
            }
        }
    }
}

#[test]
fn half_nan_and_inf_are_errors_naming_row_and_index() {
    let (rows, vocab) = (3, 7);
    let mut x = raw(rows, vocab, 3);
    x[vocab + 4] = f32::INFINITY;
    x[2] = f32::NEG_INFINITY; // a masked logit stays legal
    let (mut h, hw, _, _) = halves(&x);
    let p = params(rows);
    let batch = Batch::new(hw, rows, vocab).unwrap();
    for mut s in backends() {
        let name = s.kind().name();
        let want = s.sample(batch.view(), &p, 1).unwrap_err().to_string();
        let got = s
            .sample(LogitsView::f16(&h, rows, vocab).unwrap(), &p, 1)
            .unwrap_err();
        assert!(
            matches!(got, SamplerError::InvalidLogit { .. }),
            "{name}: {got:?}"
        );
        assert_eq!(got.to_string(), want, "{name}");
        assert!(
            want.contains("row 1") && want.contains("index 4"),
            "{name}: {want}"
        );
    }
    h[vocab + 4] = f16::NAN;
    for mut s in backends() {
        let got = s
            .sample(LogitsView::f16(&h, rows, vocab).unwrap(), &p, 1)
            .unwrap_err()
            .to_string();
        assert!(got.contains("row 1") && got.contains("index 4"), "{got}");
    }
}
