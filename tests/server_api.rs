//! What docs/spec.md §13 promises a server beyond the sampling itself: the
//! types it keeps are `Send` and `Sync`, a boxed sampler moves to the thread
//! that owns the decode loop, and the factory opens each backend by kind.

use std::sync::mpsc;

use token_sampler::{
    open, BackendKind, Batch, CpuSampler, ReferenceSampler, RowResult, Sampler, SamplerError,
    SamplingParams, SequenceState,
};

fn send_sync<T: Send + Sync>() {}

#[test]
fn server_types_are_send_and_sync() {
    send_sync::<CpuSampler>();
    send_sync::<ReferenceSampler>();
    send_sync::<SamplingParams>();
    send_sync::<SequenceState>();
    send_sync::<RowResult>();
    send_sync::<SamplerError>();
    #[cfg(feature = "gpu")]
    {
        send_sync::<token_sampler::gpu::GpuSampler>();
        send_sync::<token_sampler::gpu::PendingResults>();
    }
    // `Sampler: Send`, so a boxed one moves between threads.
    fn send<T: Send>() {}
    send::<Box<dyn Sampler>>();
}

/// A decode loop on its own thread: requests come in over a channel with their
/// parameters (and sequence state), results go back; the sampler never leaves
/// the worker. The same requests sampled here give the same tokens.
#[test]
fn a_boxed_sampler_serves_from_a_worker_thread() {
    let logits = Batch::from_rows(&[vec![0.5f32, 2.0, 1.0, -1.0, 0.0]]).unwrap();
    let (tx, rx) = mpsc::channel::<(Vec<f32>, SamplingParams)>();
    let (back, results) = mpsc::channel::<Result<RowResult, SamplerError>>();
    let sampler: Box<dyn Sampler> = open(BackendKind::Cpu, false).unwrap();
    let worker = std::thread::spawn(move || {
        let mut sampler = sampler;
        for (row, params) in rx {
            let batch = Batch::from_rows(&[row]).unwrap();
            let r = sampler
                .sample(batch.view(), &[params], 1)
                .map(|mut v| v.remove(0));
            back.send(r).unwrap();
        }
    });
    let mut p = SamplingParams {
        seed: Some(3),
        repetition_penalty: 1.4,
        sequence: Some(SequenceState::new(&[1])),
        ..Default::default()
    };
    let mut here = CpuSampler::new();
    for _ in 0..5 {
        tx.send((logits.row(0).to_vec(), p.clone())).unwrap();
        let there = results.recv().unwrap().unwrap();
        let local = here
            .sample(logits.view(), std::slice::from_ref(&p), 1)
            .unwrap();
        assert_eq!(there, local[0]);
        p.accept(there.token);
    }
    // A bad request comes back as a typed error naming its row and field.
    let bad = SamplingParams {
        top_p: 0.0,
        ..Default::default()
    };
    tx.send((logits.row(0).to_vec(), bad)).unwrap();
    match results.recv().unwrap() {
        Err(SamplerError::InvalidParam { row: 0, field, .. }) => assert_eq!(field, "top_p"),
        other => panic!("expected InvalidParam for top_p, got {other:?}"),
    }
    drop(tx);
    worker.join().unwrap();
}

#[test]
fn open_names_each_backend() {
    for kind in [BackendKind::Reference, BackendKind::Cpu] {
        assert_eq!(open(kind, false).unwrap().kind(), kind);
    }
}
