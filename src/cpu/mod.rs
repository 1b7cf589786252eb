//! The `cpu` backend (docs/spec.md §1): the reference's semantics, sort-free and
//! multi-threaded, in f32 with f64 accumulation.
//!
//! Rows are spread over a rayon pool owned by the sampler; when the batch has
//! fewer rows than threads, each row's passes are split over the spare
//! threads too (B = 1, V = 200k uses every core). Hot loops are compiled for
//! AVX-512, AVX2 + FMA and the x86-64 baseline and picked at run time
//! ([`Isa`]), so the binary needs no `target-cpu` flag.
//!
//! ```
//! use token_sampler::{Batch, CpuSampler, Sampler, SamplingParams};
//!
//! let batch = Batch::from_rows(&[vec![2.0f32, 1.0, 0.5, -1.0]])?;
//! let params = [SamplingParams { temperature: 0.7, top_k: 2, seed: Some(1), ..Default::default() }];
//! let rows = CpuSampler::new().sample(batch.view(), &params, 1)?;
//! assert!(rows[0].token < 2 && rows[0].kept == 2);
//! # Ok::<(), token_sampler::SamplerError>(())
//! ```

// NaN never reaches the hot loops (it is rejected first), so `!(v < +inf)`
// style tests are deliberate, and lane loops index fixed-size arrays by lane.
#![allow(clippy::neg_cmp_op_on_partial_ord, clippy::needless_range_loop)]

mod edits;
mod extended;
mod row;
mod select;
mod simd;
mod team;

use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;

pub use edits::BLOCK;
pub use simd::{Isa, Kernels};

use crate::backend::{check_draws, check_samples, BackendKind, Sampler};
use crate::batch::LogitsView;
use crate::error::{Result, SamplerError};
use crate::params::{resolve_seeds, validate_all, SamplingParams};
use crate::result::{RowProbs, RowResult};
use row::{run_row, RowOut, Scratch, Split, Want};
use team::Team;

/// Rows shorter than this are never split over threads (the hand-off costs
/// more than the work).
const SPLIT_MIN_VOCAB: usize = 24 * 1024;

/// The fast CPU sampler. Create it once and reuse it: it owns its thread pool
/// and the per-row scratch buffers.
pub struct CpuSampler {
    pool: rayon::ThreadPool,
    threads: usize,
    kernels: Kernels,
    scratch: Mutex<Vec<Scratch>>,
    /// Splits a single row over the caller and `threads − 1` helpers (None
    /// with one thread, or if the helpers could not be spawned: then rayon
    /// splits it).
    team: Option<Team>,
}

impl Default for CpuSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for CpuSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuSampler")
            .field("threads", &self.threads)
            .field("isa", &self.kernels.isa())
            .finish()
    }
}

impl CpuSampler {
    /// One thread per available core, the widest ISA this CPU runs.
    pub fn new() -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_threads(threads)
    }

    /// A sampler with `threads` worker threads (at least 1).
    pub fn with_threads(threads: usize) -> Self {
        Self::with_options(threads, Kernels::detect())
    }

    /// A sampler with `threads` workers and the kernels of `isa` (or the best
    /// this CPU runs, if it cannot run `isa`).
    pub fn with_isa(threads: usize, isa: Isa) -> Self {
        Self::with_options(threads, Kernels::with_isa(isa))
    }

    fn with_options(threads: usize, kernels: Kernels) -> Self {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("token-sampler-cpu-{i}"))
            .build()
            .unwrap_or_else(|_| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .expect("a one-thread pool")
            });
        let threads = pool.current_num_threads();
        let team = if threads > 1 {
            Team::new(threads - 1).ok()
        } else {
            None
        };
        CpuSampler {
            pool,
            threads,
            kernels,
            scratch: Mutex::new(Vec::new()),
            team,
        }
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn isa(&self) -> Isa {
        self.kernels.isa()
    }

    fn take_scratch(&self) -> Scratch {
        self.scratch
            .lock()
            .map(|mut s| s.pop())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn put_scratch(&self, s: Scratch) {
        if let Ok(mut pool) = self.scratch.lock() {
            pool.push(s);
        }
    }

    /// Runs every row, in parallel, returning outputs in row order (or the
    /// error of the lowest failing row, as the reference does).
    fn run(
        &self,
        logits: LogitsView<'_>,
        params: &[SamplingParams],
        want: impl Fn(usize) -> Want + Sync,
    ) -> Result<Vec<RowOut>> {
        validate_all(params, logits.rows(), logits.vocab())?;
        if logits.vocab() > u32::MAX as usize {
            return Err(SamplerError::Shape(format!(
                "vocab {} exceeds the 2^32 token ids the cpu backend addresses",
                logits.vocab()
            )));
        }
        let rows = logits.rows();
        let par = if logits.vocab() >= SPLIT_MIN_VOCAB {
            (self.threads / rows).max(1)
        } else {
            1
        };
        let k = self.kernels;
        let one_row = |r: usize, split: Split<'_>| {
            let mut sc = self.take_scratch();
            // Rows using the extended samplers take their own sort-free path
            // (extended.rs); the others keep the fast path untouched.
            let out = if params[r].uses_extended_samplers() {
                extended::run_extended(k, r, &logits.row(r), &params[r], want(r), &mut sc.ext)
            } else {
                run_row(k, r, &logits.row(r), &params[r], want(r), &mut sc, split)
            };
            self.put_scratch(sc);
            out
        };
        // One row runs on the caller's thread (with the team's helpers when
        // it is split): handing it to a pool worker and waiting for it costs
        // two thread wake-ups (15–70 µs on this project's 2-core VM), more
        // than a 32k-logit row takes.
        if rows == 1 && par > 1 {
            if let Some(team) = &self.team {
                return Ok(vec![one_row(0, Split::Team(team))?]);
            }
        }
        if self.threads == 1 || (rows == 1 && par == 1) {
            return (0..rows).map(|r| one_row(r, Split::Serial)).collect();
        }
        let split = if par > 1 {
            Split::Rayon(par)
        } else {
            Split::Serial
        };
        let outs: Vec<Result<RowOut>> = self.pool.install(|| {
            (0..rows)
                .into_par_iter()
                .with_max_len(1)
                .map(|r| one_row(r, split))
                .collect()
        });
        outs.into_iter().collect()
    }
}

impl Sampler for CpuSampler {
    fn kind(&self) -> BackendKind {
        BackendKind::Cpu
    }

    fn device(&self) -> String {
        format!(
            "host CPU ({} threads, {})",
            self.threads,
            self.kernels.isa().name()
        )
    }

    fn sample(
        &mut self,
        logits: LogitsView<'_>,
        params: &[SamplingParams],
        samples: u32,
    ) -> Result<Vec<RowResult>> {
        check_samples(samples)?;
        check_draws(logits.rows(), samples)?;
        let seeds = resolve_seeds(params);
        let outs = self.run(logits, params, |r| Want::Sample {
            seed: seeds.get(r).copied().unwrap_or(0),
            samples,
        })?;
        Ok(outs
            .into_iter()
            .filter_map(|o| match o {
                RowOut::Sample(s) => Some(s),
                RowOut::Probs(_) => None,
            })
            .collect())
    }

    fn probs(
        &mut self,
        logits: LogitsView<'_>,
        params: &[SamplingParams],
    ) -> Result<Vec<RowProbs>> {
        let outs = self.run(logits, params, |_| Want::Probs)?;
        Ok(outs
            .into_iter()
            .filter_map(|o| match o {
                RowOut::Probs(p) => Some(p),
                RowOut::Sample(_) => None,
            })
            .collect())
    }

    /// One multi-threaded streaming read of the logits (the median of five),
    /// with the same threads and vector width as sampling.
    fn stream_read_ms(&mut self, logits: LogitsView<'_>) -> Result<Option<f64>> {
        Ok(Some(stream_read_ms(
            &self.pool,
            self.team.as_ref(),
            self.kernels,
            &logits.to_f32(),
        )))
    }
}

/// Milliseconds for one parallel streaming read of `data` (median of five
/// reads after one warm-up): over `team` (the caller and its helpers, no
/// hand-off to wait for) when there is one, else over `pool`.
pub fn stream_read_ms(
    pool: &rayon::ThreadPool,
    team: Option<&Team>,
    k: Kernels,
    data: &[f32],
) -> f64 {
    let once = || {
        let t0 = Instant::now();
        let s: f32 = match team {
            Some(team) => {
                let chunk = data.len().div_ceil(4 * team.size()).max(1);
                team.map(data.chunks(chunk).collect(), |c| k.read_sum(c))
                    .into_iter()
                    .sum()
            }
            None => {
                let chunk = data
                    .len()
                    .div_ceil(pool.current_num_threads().max(1))
                    .max(1);
                pool.install(|| data.par_chunks(chunk).map(|c| k.read_sum(c)).sum())
            }
        };
        std::hint::black_box(s);
        t0.elapsed().as_secs_f64() * 1e3
    };
    once();
    let mut times: Vec<f64> = (0..5).map(|_| once()).collect();
    times.sort_by(f64::total_cmp);
    times[2]
}

/// [`stream_read_ms`] on a fresh sampler of one thread per core (for
/// backends without a probe of their own that run on the host).
pub fn host_stream_read_ms(data: &[f32]) -> f64 {
    let s = CpuSampler::new();
    stream_read_ms(&s.pool, s.team.as_ref(), s.kernels, data)
}
