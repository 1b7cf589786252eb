//! docs/spec.md §2.3, device faults: a lost device, a result mapping that
//! fails mid-call and a device that does not finish within the wait limit
//! each end the call with an error the caller can match
//! (`SamplerError::DeviceLost` / `DeviceTimeout`), never a panic or a hang,
//! and the next call on the same sampler works again (on a fresh device
//! after a loss) and gives the reference's answer. The faults are real wgpu
//! failures, injected through a test hook: the device is destroyed, or the
//! readback buffer is destroyed before it is mapped.

#![cfg(feature = "gpu")]

mod gpu_support;

use std::sync::Mutex;
use std::time::Duration;

use gpu_support::{assert_row_matches_reference, normal_rows, opened_or_notice, Rng};
use token_sampler::gpu::{Fault, GpuSampler, DEFAULT_WAIT_LIMIT};
use token_sampler::{Batch, RowResult, Sampler, SamplerError, SamplingParams};

/// One device at a time in this binary: each test opens (and breaks) its own.
static ONE: Mutex<()> = Mutex::new(());

fn open() -> Option<GpuSampler> {
    opened_or_notice(GpuSampler::new_blocking(true))
}

fn batch(rows: usize, vocab: usize, seed: u64) -> (Batch, Vec<Vec<f32>>, Vec<SamplingParams>) {
    let mut rng = Rng(seed);
    let x = normal_rows(&mut rng, rows, vocab, 2.0);
    let b = Batch::from_rows(&x).unwrap();
    let p = (0..rows)
        .map(|r| SamplingParams {
            temperature: 0.8,
            top_p: 0.9,
            top_k: if r % 2 == 0 { 50 } else { 0 },
            seed: Some(1000 + r as u64),
            ..Default::default()
        })
        .collect();
    (b, x, p)
}

/// A call that must work: every row matches the reference (docs/spec.md §7).
fn works(g: &mut GpuSampler, what: &str, seed: u64) -> Vec<RowResult> {
    let (b, x, p) = batch(6, 4099, seed);
    let got = g
        .sample(b.view(), &p, 1)
        .unwrap_or_else(|e| panic!("{what}: the call after the fault failed: {e}"));
    for (r, row) in got.iter().enumerate() {
        assert_row_matches_reference(&format!("{what}, row {r}"), &x[r], &p[r], row);
    }
    let probs = g
        .probs(b.view(), &p)
        .unwrap_or_else(|e| panic!("{what}: probs after the fault failed: {e}"));
    for (r, row) in probs.iter().enumerate() {
        let sum: f64 = row.probs.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "{what}, row {r}: Σπ = {sum}");
        assert_eq!(row.kept, got[r].kept, "{what}, row {r}: kept");
    }
    got
}

fn tokens(rows: &[RowResult]) -> Vec<u32> {
    rows.iter().map(|r| r.token).collect()
}

#[test]
fn a_lost_device_is_an_error_and_the_next_call_opens_a_fresh_one() {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut g) = open() else { return };
    let before = works(&mut g, "before the loss", 1);
    g.inject_fault(Fault::LoseDevice);
    let (b, _, p) = batch(6, 4099, 1);
    match g.sample(b.view(), &p, 1) {
        Err(SamplerError::DeviceLost { reason }) => assert!(!reason.is_empty()),
        other => panic!("a call on a lost device: expected DeviceLost, got {other:?}"),
    }
    let after = works(&mut g, "after the loss", 1);
    // The fresh device draws the same tokens (docs/spec.md §6: the draws
    // depend on seed and step only).
    assert_eq!(tokens(&before), tokens(&after));
    // And it keeps working, loss after loss.
    g.inject_fault(Fault::LoseDevice);
    assert!(matches!(
        g.probs(b.view(), &p),
        Err(SamplerError::DeviceLost { .. })
    ));
    works(&mut g, "after a second loss", 2);
}

#[test]
fn a_failed_mapping_is_an_error_and_the_next_call_works() {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut g) = open() else { return };
    let before = works(&mut g, "before the failed mapping", 3);
    g.inject_fault(Fault::FailNextMapping);
    let (b, _, p) = batch(6, 4099, 3);
    let e = g.sample(b.view(), &p, 1).unwrap_err();
    assert!(
        matches!(e, SamplerError::DeviceLost { .. }),
        "a failed mapping: expected DeviceLost, got {e:?}"
    );
    assert!(e.is_device_fault());
    assert!(e.to_string().contains("mapping"), "{e}");
    let after = works(&mut g, "after the failed mapping", 3);
    assert_eq!(tokens(&before), tokens(&after));
}

#[test]
fn a_call_past_the_wait_limit_is_a_timeout_and_the_next_call_works() {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(mut g) = open() else { return };
    // 32 rows of 65 536 logits take milliseconds at least, on any device:
    // a limit of one nanosecond cannot be met.
    let mut rng = Rng(5);
    let x = normal_rows(&mut rng, 32, 65_536, 2.0);
    let b = Batch::from_rows(&x).unwrap();
    let p = vec![
        SamplingParams {
            top_p: 0.9,
            seed: Some(9),
            ..Default::default()
        };
        32
    ];
    g.set_wait_limit(Some(Duration::from_nanos(1)));
    match g.sample(b.view(), &p, 1) {
        Err(SamplerError::DeviceTimeout { limit_ms }) => assert_eq!(limit_ms, 0),
        other => panic!("expected DeviceTimeout, got {other:?}"),
    }
    // The abandoned call's buffers are not reused while it may still run.
    g.set_wait_limit(Some(DEFAULT_WAIT_LIMIT));
    works(&mut g, "after the timeout", 4);
    let again = g.sample(b.view(), &p, 1).unwrap();
    assert_eq!(again.len(), 32);
}

#[test]
fn a_sampler_on_the_callers_device_reports_its_loss_on_every_call() {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let Some(own) = open() else { return };
    let ctx = own.context();
    let mut g = GpuSampler::from_device(ctx.device.clone(), ctx.queue.clone());
    works(&mut g, "on the caller's device", 6);
    g.inject_fault(Fault::LoseDevice);
    let (b, _, p) = batch(6, 4099, 6);
    for i in 0..2 {
        match g.sample(b.view(), &p, 1) {
            Err(SamplerError::DeviceLost { .. }) => {}
            other => panic!("call {i} on the caller's lost device: {other:?}"),
        }
    }
}
