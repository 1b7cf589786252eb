//! Reading results back: the readback buffers (pooled, each held by the
//! [`PendingResults`] of one recorded call), mapping with a wait limit,
//! blocking or async, and parsing the typed [`ResultRecord`]s into
//! [`RowResult`]s with f64 logprobs.

use std::sync::{Arc, Mutex};

use super::super::abi::{ErrorCode, ResultRecord, RowStatus, NTOP_MAX, TOPW};
use super::super::context::GpuContext;
use super::encode::RowSummary;
use super::READBACK;
use crate::error::{Result, SamplerError};
use crate::reference::mirostat_update;
use crate::result::{RowResult, TokenLogprob, TopLogprobs};

/// Results of a recorded call, to be read back once the caller has submitted.
///
/// Each one owns its readback buffer until it is read or dropped, so calls
/// may be recorded and submitted one after another before any is read (a
/// decode loop that feeds tokens back on the device). Every row's record
/// carries the call's number: reading a call whose submission has not run
/// is an error, never another call's results.
pub struct PendingResults {
    pub(super) staging: Option<wgpu::Buffer>,
    pub(super) pool: StagingPool,
    /// Bytes of results; the two GPU timestamps follow when `timed`.
    pub(super) bytes: u64,
    pub(super) timed: bool,
    pub(super) call: u32,
    pub(super) wait_limit: Option<std::time::Duration>,
    pub(super) rows: usize,
    pub(super) samples: u32,
    pub(super) seeds: Vec<u64>,
    pub(super) summary: Vec<RowSummary>,
}

/// Readback buffers not held by a [`PendingResults`].
#[derive(Clone, Default)]
pub(super) struct StagingPool(Arc<Mutex<Vec<wgpu::Buffer>>>);

/// Readback buffers kept for reuse (more only while that many calls are
/// outstanding).
const POOL_KEEP: usize = 4;

impl StagingPool {
    /// A free buffer of at least `bytes`, or a new one.
    pub(super) fn take(&self, device: &wgpu::Device, bytes: u64) -> wgpu::Buffer {
        let mut free = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = free.iter().position(|b| b.size() >= bytes) {
            return free.swap_remove(i);
        }
        device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("results readback"),
            size: bytes.next_multiple_of(256),
            usage: READBACK,
            mapped_at_creation: false,
        })
    }

    pub(super) fn give_back(&self, b: wgpu::Buffer) {
        let mut free = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < POOL_KEEP {
            free.push(b);
        }
    }
}

impl Drop for PendingResults {
    fn drop(&mut self) {
        // A buffer whose copy is still in flight is safe to hand out: the
        // next call's copy into it comes later in queue order, and a mapping
        // waits for both.
        if let Some(b) = self.staging.take() {
            self.pool.give_back(b);
        }
    }
}

/// Submits `enc` after copying `src` to a staging buffer, and reads it.
pub(super) fn read_words(
    ctx: &GpuContext,
    enc: &mut wgpu::CommandEncoder,
    src: &wgpu::Buffer,
    words: u64,
    limit: Option<std::time::Duration>,
) -> Result<Vec<u32>> {
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: words * 4,
        usage: READBACK,
        mapped_at_creation: false,
    });
    enc.copy_buffer_to_buffer(src, 0, &staging, 0, words * 4);
    let e = std::mem::replace(enc, ctx.device.create_command_encoder(&Default::default()));
    ctx.queue.submit([e.finish()]);
    map_read(&ctx.device, &staging, words * 4, limit)
}

type MapState = Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>;

/// Starts mapping the first `bytes` of `staging`; the state fills in when the
/// device has finished the work before it.
pub(super) fn start_map(staging: &wgpu::Buffer, bytes: u64) -> MapState {
    let state: MapState = Arc::default();
    let done = state.clone();
    staging
        .slice(..bytes)
        .map_async(wgpu::MapMode::Read, move |r| {
            *done.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
        });
    state
}

/// The mapped words, then unmaps.
pub(super) fn take_mapped(
    staging: &wgpu::Buffer,
    bytes: u64,
    state: &MapState,
) -> Result<Vec<u32>> {
    match state.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            return Err(SamplerError::DeviceLost {
                reason: format!("mapping the results failed: {e}"),
            })
        }
        None => return Err(SamplerError::Gpu("the results were not mapped".into())),
    }
    let words = {
        let view = staging
            .slice(..bytes)
            .get_mapped_range()
            .map_err(|e| SamplerError::Gpu(format!("mapped range: {e}")))?;
        bytemuck::cast_slice::<u8, u32>(&view).to_vec()
    };
    staging.unmap();
    Ok(words)
}

/// Waits for the device and reads the first `bytes` of `staging`.
pub(super) fn map_read(
    device: &wgpu::Device,
    staging: &wgpu::Buffer,
    bytes: u64,
    limit: Option<std::time::Duration>,
) -> Result<Vec<u32>> {
    let state = start_map(staging, bytes);
    wait_until(device, limit, || {
        state.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    })?;
    take_mapped(staging, bytes, &state)
}

/// Waits for the device, then until `done` (a mapping's callback has run).
/// Another thread polling the same device (samplers sharing it through
/// `from_device`) may have collected this mapping's callback in its own
/// poll and run it a moment after this thread's wait returns: the callback
/// is then waited for, not taken as missing.
pub(super) fn wait_until(
    device: &wgpu::Device,
    limit: Option<std::time::Duration>,
    done: impl Fn() -> bool,
) -> Result<()> {
    wait(device, limit)?;
    let start = std::time::Instant::now();
    // A callback in flight runs within microseconds; the cap only bounds a
    // wait that could not end.
    let cap = limit.unwrap_or(std::time::Duration::from_secs(60));
    while !done() {
        if start.elapsed() > cap {
            return Err(SamplerError::DeviceTimeout {
                limit_ms: cap.as_millis() as u64,
            });
        }
        poll(device, wgpu::PollType::Poll).map_err(|_| SamplerError::DeviceLost {
            reason: "the device failed while the sampler waited for a mapping".into(),
        })?;
        std::thread::yield_now();
    }
    Ok(())
}

/// Waits until the device has finished its submitted work, at most `limit`.
/// A device lost during the wait is an error, not wgpu's panic (its poll
/// treats a lost device as fatal).
pub(super) fn wait(device: &wgpu::Device, limit: Option<std::time::Duration>) -> Result<()> {
    poll(
        device,
        wgpu::PollType::Wait {
            submission_index: None,
            timeout: limit,
        },
    )
    .map_err(|e| match e {
        Some(wgpu::PollError::Timeout) => SamplerError::DeviceTimeout {
            limit_ms: limit.unwrap_or_default().as_millis() as u64,
        },
        Some(e) => SamplerError::Gpu(format!("device poll failed: {e}")),
        None => SamplerError::DeviceLost {
            reason: "the device failed while the sampler waited for it".into(),
        },
    })
}

/// `device.poll`, with wgpu's panic on a lost device caught (`Err(None)`).
fn poll(
    device: &wgpu::Device,
    how: wgpu::PollType,
) -> std::result::Result<(), Option<wgpu::PollError>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| device.poll(how))) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

/// Resolves once a mapping has completed. Each poll advances the device
/// without blocking (on native wgpu someone must poll it; a server's own
/// poll loop works as well) and then yields to the executor.
struct MapFuture {
    device: wgpu::Device,
    state: MapState,
}

impl std::future::Future for MapFuture {
    type Output = Result<()>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<()>> {
        if let Err(e) = poll(&self.device, wgpu::PollType::Poll) {
            return std::task::Poll::Ready(Err(match e {
                Some(e) => SamplerError::Gpu(format!("device poll failed: {e}")),
                None => SamplerError::DeviceLost {
                    reason: "the device failed while the sampler polled it".into(),
                },
            }));
        }
        if self
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            return std::task::Poll::Ready(Ok(()));
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

impl PendingResults {
    /// Waits for the device and parses the per-row results.
    pub fn read(self, device: &wgpu::Device) -> Result<Vec<RowResult>> {
        Ok(read_back(device, self)?.0?.0)
    }

    /// The same without blocking the thread: resolves once the caller's
    /// submission has completed.
    pub async fn read_async(self, device: &wgpu::Device) -> Result<Vec<RowResult>> {
        let staging = self.staging();
        let state = start_map(staging, self.bytes);
        MapFuture {
            device: device.clone(),
            state: state.clone(),
        }
        .await?;
        let words = take_mapped(staging, self.bytes, &state)?;
        Ok(parse(&words, &self)?.0)
    }

    fn staging(&self) -> &wgpu::Buffer {
        self.staging.as_ref().expect("held until drop")
    }
}

type Parsed = Result<(Vec<RowResult>, Vec<u32>)>;

/// The parsed rows and the pass's duration in timestamp ticks.
pub(super) fn read_back(
    device: &wgpu::Device,
    mut p: PendingResults,
) -> Result<(Parsed, Option<f64>)> {
    let total = p.bytes + if p.timed { 16 } else { 0 };
    let mut words = match map_read(device, p.staging(), total, p.wait_limit) {
        Ok(w) => w,
        Err(e) => {
            // Its mapping may still be pending: not for reuse.
            p.staging = None;
            return Err(e);
        }
    };
    let kernel = if p.timed {
        let ts: Vec<u32> = words.split_off((p.bytes / 4) as usize);
        let t0 = ts[0] as u64 | (ts[1] as u64) << 32;
        let t1 = ts[2] as u64 | (ts[3] as u64) << 32;
        (t1 > t0).then(|| (t1 - t0) as f64)
    } else {
        None
    };
    Ok((parse(&words, &p), kernel))
}

pub(super) fn fw(w: u32) -> f64 {
    f32::from_bits(w) as f64
}

/// The per-row results, and each row's reads of the logits (the statistics
/// pass plus its scan rounds).
fn parse(words: &[u32], p: &PendingResults) -> Result<(Vec<RowResult>, Vec<u32>)> {
    let n = p.samples as usize;
    let res = ResultRecord::WORDS;
    let dr = p.rows * res;
    let to = dr + p.rows * n;
    let mut out = Vec::with_capacity(p.rows);
    let mut reads = Vec::with_capacity(p.rows);
    for r in 0..p.rows {
        let w: ResultRecord =
            bytemuck::pod_read_unaligned(bytemuck::cast_slice(&words[r * res..(r + 1) * res]));
        let sm = &p.summary[r];
        if w.call != p.call {
            return Err(SamplerError::Gpu(format!(
                "row {r}: the results are not this call's (was the command buffer that recorded \
                 it submitted before reading?)"
            )));
        }
        if w.status != RowStatus::Ok.code() {
            return Err(row_error(r, &w));
        }
        let greedy = w.greedy != 0;
        let draws = words[dr + r * n..dr + (r + 1) * n].to_vec();
        let token = w.token;
        // Logprobs in f64 from raw logits (see ResultRecord): the
        // reference's processed logits, relative to the max, over T, minus
        // the device's ln S.
        let (t, ln_s) = (w.temperature as f64, w.ln_s as f64);
        let (m_raw, ln_s_raw) = (w.max_raw as f64, w.ln_s_raw as f64);
        // The processed logit the device's sums are relative to: the row
        // max, or the largest survivor of a band (typical, XTC).
        let m = sm.processed(w.ref_id, f32::from_bits(w.ref_x));
        let processed = |id: u32, x: u32| {
            if greedy {
                0.0
            } else {
                (sm.processed(id, f32::from_bits(x)) - m) / t - ln_s
            }
        };
        let raw = |x: u32| fw(x) - m_raw - ln_s_raw;
        let list = |which: usize, count: u32| -> Vec<TokenLogprob> {
            let base = to + r * TOPW + which * 2 * NTOP_MAX;
            (0..count as usize)
                .map(|k| {
                    let (id, x) = (words[base + 2 * k], words[base + 2 * k + 1]);
                    TokenLogprob {
                        id,
                        logprob: if which == 0 { raw(x) } else { processed(id, x) },
                    }
                })
                .collect()
        };
        let logprob = processed(token, w.token_x);
        out.push(RowResult {
            token,
            draws,
            logprob,
            raw_logprob: raw(w.token_x),
            entropy: w.entropy as f64,
            varentropy: w.varentropy as f64,
            guide_entropy: sm.dynamic.then_some(w.guide_entropy as f64),
            final_entropy: w.final_entropy as f64,
            temperature: if greedy {
                0.0
            } else if sm.dynamic {
                w.temperature as f64
            } else {
                sm.temperature
            },
            top_p: if sm.dyn_top_p {
                w.top_p as f64
            } else {
                sm.top_p
            },
            kept: w.kept,
            seed: p.seeds[r],
            top_logprobs: sm.logprobs.map(|_| TopLogprobs {
                raw: list(0, w.n_raw),
                processed: list(1, w.n_processed),
            }),
            // docs/spec.md §3.15: the next step's mu from draw 0's logprob.
            mirostat_mu: sm.mirostat.as_ref().map(|ms| mirostat_update(ms, logprob)),
        });
        reads.push(1 + w.passes);
    }
    Ok((out, reads))
}

fn row_error(row: usize, w: &ResultRecord) -> SamplerError {
    let index = w.error_index as usize;
    let value = f32::from_bits(w.error_value);
    let non_finite = |field: &str| SamplerError::NonFiniteLogit {
        row,
        index,
        field: field.into(),
        value: value as f64,
    };
    match ErrorCode::from_code(w.error_code) {
        Some(ErrorCode::Logit) => SamplerError::InvalidLogit { row, index, value },
        Some(ErrorCode::Bias) => non_finite("logit_bias"),
        Some(ErrorCode::Repetition) => non_finite("repetition_penalty"),
        Some(ErrorCode::FrequencyPresence) => non_finite("frequency_penalty/presence_penalty"),
        Some(ErrorCode::Dry) => non_finite("dry_multiplier"),
        Some(ErrorCode::AllMasked) => SamplerError::AllMasked { row },
        Some(ErrorCode::Rounds) => SamplerError::Gpu(format!(
            "row {row}: the row solver gave up after its bound on steps (a bug: please report it)"
        )),
        None => SamplerError::Gpu(format!(
            "row {row}: no result (status {}, code {})",
            w.status, w.error_code
        )),
    }
}
