//! What every GPU test file shares: opening the adapter the same way (a loud
//! notice without one, a failure under REQUIRE_GPU=1, never a silent skip),
//! seeded data, and the docs/spec.md §7 comparison of one sampled row with the
//! reference for results that come without π (the buffer API).

#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard, OnceLock};

use token_sampler::gpu::context::is_software;
use token_sampler::gpu::{GpuSampler, LaneOrder};
use token_sampler::reference::{process_row, Overrides};
use token_sampler::rng::uniform;
use token_sampler::{RowResult, SamplingParams};

/// This test binary's GPU sampler, held for the length of one test.
pub type Gpu = MutexGuard<'static, GpuSampler>;

type Shared = OnceLock<Option<Mutex<GpuSampler>>>;

/// The GPU sampler on whatever adapter wgpu finds (lavapipe in CI). One
/// device per test binary, shared by its tests one at a time: a device (and
/// its compiled pipelines) per test, opened and dropped from many threads at
/// once, is what applications do not do and what drivers handle worst.
pub fn open_gpu() -> Option<Gpu> {
    static GPU: Shared = OnceLock::new();
    shared(&GPU, || GpuSampler::new_blocking(true))
}

/// This binary's sampler whose shaders run their invocations in `lanes`
/// order (the race tests), one device per order.
pub fn open_gpu_lanes(lanes: LaneOrder) -> Option<Gpu> {
    static GPUS: [Shared; 4] = [const { OnceLock::new() }; 4];
    let i = LaneOrder::ALL.iter().position(|&o| o == lanes).unwrap();
    shared(&GPUS[i], || {
        GpuSampler::new_blocking_with_lanes(true, lanes)
    })
}

/// Opens the sampler once; a missing adapter is a loud notice on every call,
/// and a failure under REQUIRE_GPU=1.
fn shared(
    cell: &'static Shared,
    open: impl FnOnce() -> token_sampler::Result<GpuSampler>,
) -> Option<Gpu> {
    let opened = cell.get_or_init(|| {
        let mut g = opened_or_notice(open())?;
        // On a hardware adapter every test call takes milliseconds: a read
        // that waits longer is a hung device, reported by the test that hit
        // it instead of a run that never ends.
        if !is_software(&g.context().info) {
            g.set_wait_limit(Some(std::time::Duration::from_secs(20)));
        }
        Some(Mutex::new(g))
    });
    match opened {
        // A test that failed an assert while holding it left the sampler
        // between calls, in a usable state.
        Some(m) => Some(m.lock().unwrap_or_else(|p| p.into_inner())),
        None => {
            eprintln!("\n!!!!!!!! NO GPU ADAPTER — GPU TEST NOT RUN !!!!!!!!\n");
            None
        }
    }
}

/// The opened sampler, or None after a notice; a failure under
/// REQUIRE_GPU=1 (for tests that open a device of their own).
pub fn opened_or_notice(opened: token_sampler::Result<GpuSampler>) -> Option<GpuSampler> {
    match opened {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("REQUIRE_GPU=1 but no GPU adapter: {e}");
            }
            eprintln!("no GPU adapter: {e}");
            None
        }
    }
}

/// A small deterministic generator for test data (SplitMix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f32 {
        let (u1, u2) = (self.unit().max(1e-300), self.unit());
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `rows` rows of normal(0, σ) logits.
pub fn normal_rows(rng: &mut Rng, rows: usize, vocab: usize, sigma: f32) -> Vec<Vec<f32>> {
    (0..rows)
        .map(|_| (0..vocab).map(|_| rng.normal() * sigma).collect())
        .collect()
}

/// docs/spec.md §7 for a sampled row against the reference on logits `x`: kept count,
/// entropy and logprob within tolerance, and the token equal to the
/// reference's draw for the same (seed, step, 0) or u within 1e-6 of a CDF
/// boundary. Rows of continuous random logits have no ties at a threshold, so
/// the kept sets must agree exactly.
#[track_caller]
pub fn assert_row_matches_reference(what: &str, x: &[f32], p: &SamplingParams, got: &RowResult) {
    let over = Overrides {
        temperature: p.dynamic_temperature.as_ref().map(|_| got.temperature),
        top_p: None,
    };
    let pr = process_row(0, x, p, over).unwrap();
    assert_eq!(got.kept as usize, pr.kept_count, "{what}: kept");
    assert!(
        (got.entropy - pr.entropy).abs() <= 1e-4,
        "{what}: entropy {} vs {}",
        got.entropy,
        pr.entropy
    );
    let u = uniform(got.seed, p.step, 0);
    let want = pr.draw(u);
    if got.token != want {
        let mut cum = 0.0;
        let near = pr.pi.iter().any(|&q| {
            cum += q;
            (cum - u).abs() < 1e-6
        });
        assert!(
            near,
            "{what}: token {} vs reference {want} (u = {u})",
            got.token
        );
    } else {
        let lp = pr.log_pi[want as usize];
        assert!(
            (got.logprob - lp).abs() <= 1e-4,
            "{what}: logprob {} vs {lp}",
            got.logprob
        );
    }
}
