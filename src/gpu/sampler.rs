//! `GpuSampler`: the host side of the pipeline. Per call it only encodes the
//! parameters compactly (one record per row, the bias / history / prompt ids
//! and allowed ids as CSR lists), writes them, and records one compute pass:
//! per chunk of rows, the statistics pass (tiles × rows) and the row solver
//! (one workgroup per row, which reads its row again itself when a stage
//! needs it, and draws token 0), then `pick` for the other draws of a
//! multi-draw call and `probs` for a `probs` call. Only per-row results come
//! back.

mod encode;
mod readback;
mod record;
mod upload;

use super::abi::{DtypeCode, ParamRecord, ResultRecord, TOPW};
use super::context::GpuContext;
use super::pipelines::Pipelines;
use super::shaders::{Features, Job, LaneOrder, ShaderConsts};
use super::workspace::Workspace;
pub use crate::backend::CallCounts;
use crate::backend::{check_samples, BackendKind, Sampler};
pub use crate::batch::LogitsDtype;
use crate::batch::LogitsView;
use crate::error::{Result, SamplerError};
use crate::params::{validate_all, SamplingParams};
use crate::result::{RowProbs, RowResult};
pub use readback::PendingResults;
use readback::{fw, map_read, read_back, read_words, StagingPool};
use record::{bind_range, layout, timed_pass, AuxOut, ChunkSrc, Marks};

/// Words of a statistics tile record (device-only; common.wgsl's TR).
const TR: u64 = 28;
const READBACK: wgpu::BufferUsages =
    wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);
/// How long a call waits for the device by default (docs/spec.md §2.3):
/// far beyond any call's time on a working device, lavapipe included.
pub const DEFAULT_WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(300);
/// Rows of 2^26 ids would overflow the 64-bit top-p masses (common.wgsl).
const MAX_VOCAB: usize = 1 << 26;

/// The shader's code for an element type.
fn dtype_code(d: LogitsDtype) -> DtypeCode {
    match d {
        LogitsDtype::F32 => DtypeCode::F32,
        LogitsDtype::F16 => DtypeCode::F16,
        LogitsDtype::Bf16 => DtypeCode::Bf16,
    }
}

/// Logits that already live in a `wgpu::Buffer` on the sampler's device.
#[derive(Debug, Clone, Copy)]
pub struct BufferLogits<'a> {
    pub buffer: &'a wgpu::Buffer,
    /// Byte offset of row 0.
    pub offset: u64,
    pub rows: usize,
    pub vocab: usize,
    /// Elements from one row's start to the next (≥ vocab).
    pub row_stride: usize,
    pub dtype: LogitsDtype,
    /// A packed allowed-token mask: rows × ⌈vocab/32⌉ u32, bit i%32 of word
    /// i/32 set = allowed (the vLLM / xgrammar layout). A row that also has
    /// `allowed_token_ids` keeps only the tokens both allow.
    pub allowed_bitmask: Option<&'a wgpu::Buffer>,
}

/// The wgpu backend.
pub struct GpuSampler {
    ctx: GpuContext,
    pipes: Pipelines,
    ws: Workspace,
    readback: StagingPool,
    /// Numbers the recorded calls (R_CALL in common.wgsl).
    calls: u32,
    query: Option<wgpu::QuerySet>,
    /// How long a read waits for the device (None: as long as it takes).
    wait_limit: Option<std::time::Duration>,
    /// Timestamps after every dispatch of `sample` / `probs` calls.
    profile: bool,
    profile_marks: Option<Marks>,
    last_profile: Vec<(&'static str, f64)>,
    last_kernel_ms: Option<f64>,
    last_reads: Vec<u32>,
    last_counts: CallCounts,
    /// Test hook: every top-p prediction misses, so the exact fallback runs.
    force_miss: bool,
    /// Mapped staging slots for host logits.
    uploads: upload::UploadRing,
    /// How the device was opened, to open a fresh one after a loss.
    allow_software: bool,
    lanes: LaneOrder,
    /// A call failed in a way that leaves the device unusable (a failed
    /// mapping, a caught wgpu panic): the next call opens a fresh one.
    broken: bool,
    /// Test hook: the next call's result mapping fails.
    fail_next_mapping: bool,
}

/// Faults a test can inject ([`GpuSampler::inject_fault`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The device is destroyed, as a driver reset or a removed GPU would
    /// lose it: the next call fails with `DeviceLost`, the one after runs
    /// on a fresh device.
    LoseDevice,
    /// The next call's readback buffer is destroyed before it is mapped:
    /// its mapping fails as it would on a device that failed mid-call.
    FailNextMapping,
}

impl GpuSampler {
    /// Opens the preferred adapter (a software one only if `allow_software`).
    /// `TOKEN_SAMPLER_LANE_ORDER` (race tests, see [`LaneOrder`]) permutes
    /// the shaders' invocations.
    pub async fn new_with(allow_software: bool) -> Result<Self> {
        let lanes = LaneOrder::from_env().map_err(SamplerError::Unsupported)?;
        Ok(Self::with_context(
            GpuContext::new(allow_software).await?,
            lanes,
            allow_software,
        ))
    }

    /// [`GpuSampler::new_blocking`] with the shaders' invocations permuted
    /// (race tests; every order gives the same results on race-free shaders).
    pub fn new_blocking_with_lanes(allow_software: bool, lanes: LaneOrder) -> Result<Self> {
        let ctx = pollster::block_on(GpuContext::new(allow_software))?;
        Ok(Self::with_context(ctx, lanes, allow_software))
    }

    /// Opens the preferred hardware adapter.
    pub async fn new() -> Result<Self> {
        Self::new_with(false).await
    }

    /// [`GpuSampler::new_with`], blocking.
    pub fn new_blocking(allow_software: bool) -> Result<Self> {
        pollster::block_on(Self::new_with(allow_software))
    }

    /// For a server that already owns a device: pipelines are built on it.
    /// A sampler on the caller's device cannot replace it once it is lost:
    /// its calls then fail with `SamplerError::DeviceLost` until the owner
    /// builds a new sampler on a new device.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        Self::with_context(
            GpuContext::from_device(device, queue),
            LaneOrder::Natural,
            false,
        )
    }

    fn with_context(ctx: GpuContext, lanes: LaneOrder, allow_software: bool) -> Self {
        let pipes = Pipelines::new(
            &ctx.device,
            &ctx.limits,
            super::context::is_software(&ctx.info),
            lanes,
        );
        let query = ctx
            .features
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| {
                ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("kernel time"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                })
            });
        GpuSampler {
            ctx,
            pipes,
            ws: Workspace::default(),
            readback: StagingPool::default(),
            calls: 0,
            query,
            wait_limit: Some(DEFAULT_WAIT_LIMIT),
            profile: false,
            profile_marks: None,
            last_profile: Vec::new(),
            last_kernel_ms: None,
            last_reads: Vec::new(),
            last_counts: CallCounts::default(),
            force_miss: false,
            uploads: Default::default(),
            allow_software,
            lanes,
            broken: false,
            fail_next_mapping: false,
        }
    }

    /// Test hook: injects a device fault (see [`Fault`]).
    #[doc(hidden)]
    pub fn inject_fault(&mut self, fault: Fault) {
        match fault {
            Fault::LoseDevice => self.ctx.device.destroy(),
            Fault::FailNextMapping => self.fail_next_mapping = true,
        }
    }

    /// Before a call: a lost or broken device is replaced by a fresh one
    /// (same adapter choice, same settings); on the caller's device
    /// ([`GpuSampler::from_device`]) that is an error instead.
    fn revive(&mut self) -> Result<()> {
        let lost = self.ctx.health.lost();
        if lost.is_none() && !self.broken {
            return Ok(());
        }
        if !self.ctx.owned {
            return Err(SamplerError::DeviceLost {
                reason: format!(
                    "the caller's device is unusable ({}); build a new sampler on a new device",
                    lost.as_deref().unwrap_or("an earlier call failed")
                ),
            });
        }
        let ctx = pollster::block_on(GpuContext::new(self.allow_software))?;
        let mut fresh = Self::with_context(ctx, self.lanes, self.allow_software);
        fresh.wait_limit = self.wait_limit;
        fresh.profile = self.profile;
        fresh.force_miss = self.force_miss;
        fresh.calls = self.calls;
        *self = fresh;
        Ok(())
    }

    /// Runs one call of the sampler under wgpu error scopes (docs/spec.md
    /// §2.3): a wgpu error becomes `SamplerError::Gpu`, a lost device
    /// `DeviceLost` (and a fresh device for the next call), a timeout
    /// `DeviceTimeout`. After any fault the reusable buffers are dropped,
    /// so the next call never meets a buffer the failed one left mapped or
    /// in flight.
    fn guarded<T>(&mut self, call: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.revive()?;
        let device = self.ctx.device.clone();
        let scopes = [
            wgpu::ErrorFilter::Validation,
            wgpu::ErrorFilter::OutOfMemory,
            wgpu::ErrorFilter::Internal,
        ]
        .map(|f| device.push_error_scope(f));
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(self)));
        let mut scoped = None;
        for scope in scopes.into_iter().rev() {
            if let Some(e) = pollster::block_on(scope.pop()) {
                scoped.get_or_insert(e);
            }
        }
        let lost = self.ctx.health.lost();
        let out = match out {
            Ok(out) => out,
            // wgpu panics on some failures of a lost device; anything else
            // is a bug of the sampler's and stays a panic.
            Err(panic) => match &lost {
                Some(_) => Err(SamplerError::DeviceLost {
                    reason: "the device failed during the call".into(),
                }),
                None => std::panic::resume_unwind(panic),
            },
        };
        let uncaptured = self.ctx.health.take_uncaptured();
        let out = match (lost, out, scoped, uncaptured) {
            (Some(reason), ..) => Err(SamplerError::DeviceLost { reason }),
            (None, Err(e), ..) if e.is_device_fault() => Err(e),
            (None, _, Some(wgpu::Error::OutOfMemory { .. }), _) => Err(SamplerError::Gpu(
                "out of device memory (try fewer rows per call)".into(),
            )),
            (None, _, Some(e), _) => Err(SamplerError::Gpu(e.to_string())),
            (None, _, None, Some(e)) => Err(SamplerError::Gpu(e)),
            (None, out, None, None) => out,
        };
        if let Err(e) = &out {
            if e.is_device_fault() {
                self.ws = Workspace::default();
                self.readback = StagingPool::default();
                self.uploads = Default::default();
                self.profile_marks = None;
                if matches!(e, SamplerError::DeviceLost { .. }) {
                    self.broken = true;
                }
            }
        }
        out
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    pub fn shader_consts(&self) -> ShaderConsts {
        self.pipes.consts
    }

    /// Reads of the logits each row of the last `sample`/`probs` call took:
    /// the statistics pass plus the scan rounds its solver asked for (docs/spec.md §9
    /// read-equivalents; `pick`'s one-tile reads are not counted).
    pub fn last_reads(&self) -> &[u32] {
        &self.last_reads
    }

    /// Dispatches, workgroups and chunks of the last recorded call, and the
    /// most reads of the logits any of its rows took (once read back).
    pub fn last_counts(&self) -> CallCounts {
        self.last_counts
    }

    /// Test hook: makes every top-p prediction miss, so that the exact
    /// fallback runs (its results must be the same, bit for bit).
    #[doc(hidden)]
    pub fn set_force_prediction_miss(&mut self, on: bool) {
        self.force_miss = on;
    }

    /// Bytes the reusable workspace holds: device buffers and the mapped
    /// upload slots.
    pub fn workspace_bytes(&self) -> u64 {
        self.ws.bytes() + self.uploads.bytes()
    }

    /// Bounds how long a call waits for the device (calls and the
    /// [`PendingResults`] they record from now on): past it the call fails
    /// with `SamplerError::DeviceTimeout` instead of waiting forever on a
    /// hung device, and the next call starts on fresh buffers. Default
    /// [`DEFAULT_WAIT_LIMIT`]; `None` waits as long as it takes.
    pub fn set_wait_limit(&mut self, limit: Option<std::time::Duration>) {
        self.wait_limit = limit;
    }

    /// Times every dispatch of the following `sample` / `probs` calls (where
    /// the device has TIMESTAMP_QUERY_INSIDE_PASSES): see
    /// [`last_profile`](Self::last_profile). The extra timestamps cost a
    /// little; benchmarks time with it off.
    pub fn set_profile(&mut self, on: bool) {
        self.profile = on;
    }

    /// Milliseconds per kind of dispatch of the last profiled call, summed
    /// over chunks, in the order first run: `stats`, `solve` (with the reads
    /// it makes itself and draw 0), `pick` (multi-draw calls), `probs`. Each
    /// span runs from
    /// the timestamp before, so it includes the barrier and the launch of its
    /// dispatch; together they make up `last_kernel_ms`. Empty when not
    /// profiled.
    pub fn last_profile(&self) -> &[(&'static str, f64)] {
        &self.last_profile
    }

    fn buf(&mut self, name: &str, words: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.ws.get(&self.ctx.device, name, words * 4, usage)
    }

    /// Rows per chunk: no binding may exceed the device's limit.
    fn binding_limit(&self) -> u64 {
        self.ctx
            .limits
            .max_storage_buffer_binding_size
            .min(self.ctx.limits.max_buffer_size)
    }

    /// Device memory a `sample` call of `rows` × `vocab` host logits (top-k +
    /// top-p, one draw, no logprobs) leaves in the workspace: the uploaded
    /// logits, per-row state, per-tile partials, candidates, histograms,
    /// round arguments and results. The workspace only grows, so this is what
    /// such a call costs the first time.
    pub fn workspace_estimate(&self, rows: usize, vocab: usize) -> Result<u64> {
        let c = &self.pipes.consts;
        let tiles = vocab.div_ceil(c.tile as usize) as u64;
        let per = self.rows_per_chunk(vocab as u64 * 4, tiles, 0)?.min(rows) as u64;
        let l = layout(per, tiles, c, 0, 0);
        let words = l.ws_words
            + l.bins_words
            + rows as u64
                * (ParamRecord::WORDS as u64 + ResultRecord::WORDS as u64 + 1 + TOPW as u64);
        Ok(words * 4 + rows as u64 * vocab as u64 * 4)
    }

    fn finish(&mut self, pending: PendingResults) -> Result<Vec<RowResult>> {
        if std::mem::take(&mut self.fail_next_mapping) {
            if let Some(b) = &pending.staging {
                b.destroy();
            }
        }
        let (parsed, kernel) = read_back(&self.ctx.device, pending)?;
        let period = self.ctx.queue.get_timestamp_period() as f64;
        self.last_kernel_ms = kernel.map(|ns| ns * period / 1e6);
        self.last_profile.clear();
        if let Some(m) = self.profile_marks.take() {
            let staging = m.staging.expect("resolved with the call");
            let n = m.labels.len() as u64;
            let words = map_read(&self.ctx.device, &staging, n * 8, self.wait_limit)?;
            let ts: Vec<u64> = words
                .chunks(2)
                .map(|w| w[0] as u64 | (w[1] as u64) << 32)
                .collect();
            for (i, label) in m.labels.iter().enumerate().skip(1) {
                let ms = ts[i].saturating_sub(ts[i - 1]) as f64 * period / 1e6;
                match self.last_profile.iter_mut().find(|(l, _)| l == label) {
                    Some((_, total)) => *total += ms,
                    None => self.last_profile.push((label, ms)),
                }
            }
        }
        let (rows, reads) = parsed?;
        self.last_counts.reads_per_row = reads.iter().copied().max().unwrap_or(0);
        self.last_reads = reads;
        Ok(rows)
    }

    /// Records sampling of logits already on the device into the caller's
    /// encoder (docs/spec.md §11). With `tokens_out`, each row's token (u32) is also
    /// written at `(buffer, byte offset)` + 4·row for the next forward pass.
    /// Submit the encoder, then call [`PendingResults::read`]. One recorded
    /// call per submission: calls share the sampler's workspace.
    pub fn encode(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        input: &BufferLogits<'_>,
        params: &[SamplingParams],
        samples: u32,
        tokens_out: Option<(&wgpu::Buffer, u64)>,
    ) -> Result<PendingResults> {
        self.guarded(|s| s.encode_call(encoder, input, params, samples, tokens_out))
    }

    fn encode_call(
        &mut self,
        encoder: &mut wgpu::CommandEncoder,
        input: &BufferLogits<'_>,
        params: &[SamplingParams],
        samples: u32,
        tokens_out: Option<(&wgpu::Buffer, u64)>,
    ) -> Result<PendingResults> {
        check_samples(samples)?;
        if input.rows == 0 || input.vocab == 0 || input.row_stride < input.vocab {
            return Err(SamplerError::Shape(format!(
                "{} rows of {} logits with row stride {}",
                input.rows, input.vocab, input.row_stride
            )));
        }
        validate_all(params, input.rows, input.vocab)?;
        let esz = input.dtype.size() as u64;
        if !input.offset.is_multiple_of(esz) {
            return Err(SamplerError::Shape(format!(
                "logits offset {} is not a multiple of the element size {esz}",
                input.offset
            )));
        }
        let need = input.offset + ((input.rows - 1) * input.row_stride + input.vocab) as u64 * esz;
        if need > input.buffer.size() {
            return Err(SamplerError::Shape(format!(
                "the logits need {need} bytes but the buffer holds {}",
                input.buffer.size()
            )));
        }
        if let Some(bm) = input.allowed_bitmask {
            let words = (input.rows * input.vocab.div_ceil(32)) as u64;
            if bm.size() < words * 4 {
                return Err(SamplerError::Shape(format!(
                    "the allowed-token bitmask needs {} bytes ({} rows × {} words) but holds {}",
                    words * 4,
                    input.rows,
                    input.vocab.div_ceil(32),
                    bm.size()
                )));
            }
        }
        if let Some((b, off)) = tokens_out {
            if off % 4 != 0 || off + 4 * input.rows as u64 > b.size() {
                return Err(SamplerError::Shape(format!(
                    "the token buffer needs {} bytes at offset {off} (4-aligned)",
                    4 * input.rows
                )));
            }
        }
        let tiles = input.vocab.div_ceil(self.pipes.consts.tile as usize) as u64;
        let ntop = params.iter().filter_map(|p| p.logprobs).max().unwrap_or(0) as u64;
        let per = self.rows_per_chunk(input.row_stride as u64 * esz, tiles, ntop)?;
        let mut chunks = Vec::new();
        let mut row0 = 0;
        while row0 < input.rows {
            let n = per.min(input.rows - row0);
            let start = input.offset + (row0 * input.row_stride) as u64 * esz;
            let aligned = start / 256 * 256;
            let end = input.offset + ((row0 + n - 1) * input.row_stride + input.vocab) as u64 * esz;
            let size = (end - aligned)
                .next_multiple_of(4)
                .min(input.buffer.size() - aligned);
            chunks.push((
                row0,
                n,
                ChunkSrc {
                    buffer: input.buffer.clone(),
                    offset: aligned,
                    size,
                    elem_off: ((start - aligned) / esz) as u32,
                },
            ));
            row0 += n;
        }
        let aux = match tokens_out {
            Some((b, off)) => AuxOut::Tokens(b, off),
            None => AuxOut::None,
        };
        self.record(
            encoder,
            input.rows,
            input.vocab,
            input.row_stride,
            input.dtype,
            params,
            samples,
            input.allowed_bitmask,
            &chunks,
            aux,
            false,
        )
    }

    /// A storage buffer on this sampler's device holding `logits` in their
    /// own element type, row after row (padded to whole words), with the
    /// [`BufferLogits`] that describes it: input for [`GpuSampler::encode`]
    /// and [`GpuSampler::sample_buffer`] that stays on the device.
    pub fn upload_buffer(&self, logits: LogitsView<'_>) -> (wgpu::Buffer, LogitsDtype) {
        let bytes = logits.bytes();
        let size = (bytes.len() as u64).next_multiple_of(4);
        let buffer = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("resident logits"),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let whole = bytes.len() / 4 * 4;
        self.ctx.queue.write_buffer(&buffer, 0, &bytes[..whole]);
        if whole < bytes.len() {
            let mut tail = [0u8; 4];
            tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
            self.ctx.queue.write_buffer(&buffer, whole as u64, &tail);
        }
        (buffer, logits.dtype())
    }

    /// Convenience: [`encode`](Self::encode) into a fresh encoder, submit, read.
    pub fn sample_buffer(
        &mut self,
        input: &BufferLogits<'_>,
        params: &[SamplingParams],
        samples: u32,
        tokens_out: Option<(&wgpu::Buffer, u64)>,
    ) -> Result<Vec<RowResult>> {
        self.guarded(|s| {
            let mut enc = s.ctx.device.create_command_encoder(&Default::default());
            let pending = s.encode_call(&mut enc, input, params, samples, tokens_out)?;
            s.ctx.queue.submit([enc.finish()]);
            s.finish(pending)
        })
    }

    /// Runs philox.wgsl on the device: for each (counter, key) the four
    /// output words and U(seed = key, step = counter.xy, d = counter.z)'s bits.
    pub fn philox_on_device(
        &mut self,
        inputs: &[([u32; 4], [u32; 2])],
    ) -> Result<Vec<([u32; 4], f32)>> {
        self.guarded(|s| s.philox_call(inputs))
    }

    fn philox_call(&mut self, inputs: &[([u32; 4], [u32; 2])]) -> Result<Vec<([u32; 4], f32)>> {
        let words: Vec<u32> = inputs
            .iter()
            .flat_map(|(c, k)| c.iter().chain(k.iter()).copied())
            .collect();
        let inp = self.buf(
            "philox_in",
            words.len() as u64,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        );
        let n_out = inputs.len() as u64 * 5;
        let out = self.buf(
            "philox_out",
            n_out,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        self.ctx
            .queue
            .write_buffer(&inp, 0, bytemuck::cast_slice(&words));
        let bg = self
            .ctx
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &self.pipes.philox_layout,
                entries: &[
                    bind_range(&inp, 0, 0, words.len() as u64 * 4),
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: out.as_entire_binding(),
                    },
                ],
            });
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(self.pipes.get(Job::PhiloxCheck, Features::ALL));
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups((inputs.len() as u32).div_ceil(64), 1, 1);
        }
        let words = read_words(&self.ctx, &mut enc, &out, n_out, self.wait_limit)?;
        Ok(words
            .chunks(5)
            .map(|w| ([w[0], w[1], w[2], w[3]], f32::from_bits(w[4])))
            .collect())
    }
}

impl Sampler for GpuSampler {
    fn kind(&self) -> BackendKind {
        BackendKind::Gpu
    }

    fn device(&self) -> String {
        self.ctx.describe()
    }

    fn sample(
        &mut self,
        logits: LogitsView<'_>,
        params: &[SamplingParams],
        samples: u32,
    ) -> Result<Vec<RowResult>> {
        self.guarded(|s| s.sample_call(logits, params, samples))
    }

    fn probs(
        &mut self,
        logits: LogitsView<'_>,
        params: &[SamplingParams],
    ) -> Result<Vec<RowProbs>> {
        self.guarded(|s| s.probs_call(logits, params))
    }

    fn last_kernel_ms(&self) -> Option<f64> {
        self.last_kernel_ms
    }

    fn last_structure(&self) -> Option<CallCounts> {
        Some(self.last_counts)
    }

    fn as_gpu(&mut self) -> Option<&mut GpuSampler> {
        Some(self)
    }

    fn stream_read_ms(&mut self, logits: LogitsView<'_>) -> Result<Option<f64>> {
        self.guarded(|s| s.stream_call(logits))
    }
}

/// The calls' bodies, run by [`GpuSampler::guarded`].
impl GpuSampler {
    fn sample_call(
        &mut self,
        logits: LogitsView<'_>,
        params: &[SamplingParams],
        samples: u32,
    ) -> Result<Vec<RowResult>> {
        check_samples(samples)?;
        validate_all(params, logits.rows(), logits.vocab())?;
        let ntop = params.iter().filter_map(|p| p.logprobs).max().unwrap_or(0) as u64;
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        let chunks = self.upload(&mut enc, logits, ntop)?;
        let pending = self.record(
            &mut enc,
            logits.rows(),
            logits.vocab(),
            logits.vocab(),
            logits.dtype(),
            params,
            samples,
            None,
            &chunks,
            AuxOut::None,
            self.profile,
        )?;
        self.ctx.queue.submit([enc.finish()]);
        self.uploads.rearm();
        self.finish(pending)
    }

    fn probs_call(
        &mut self,
        logits: LogitsView<'_>,
        params: &[SamplingParams],
    ) -> Result<Vec<RowProbs>> {
        validate_all(params, logits.rows(), logits.vocab())?;
        let v = logits.vocab();
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        let chunks = self.upload(&mut enc, logits, 0)?;
        let probs: Vec<wgpu::Buffer> = chunks
            .iter()
            .enumerate()
            .map(|(i, (_, n, _))| {
                self.ws.get(
                    &self.ctx.device,
                    &format!("probs{i}"),
                    (*n * v * 4) as u64,
                    wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                )
            })
            .collect();
        let pending = self.record(
            &mut enc,
            logits.rows(),
            v,
            v,
            logits.dtype(),
            params,
            1,
            None,
            &chunks,
            AuxOut::Probs(probs.clone()),
            self.profile,
        )?;
        let stagings: Vec<(wgpu::Buffer, u64)> = chunks
            .iter()
            .zip(&probs)
            .enumerate()
            .map(|(i, ((_, n, _), b))| {
                let size = (*n * v * 4) as u64;
                let st = self.ws.get(
                    &self.ctx.device,
                    &format!("probs_staging{i}"),
                    size,
                    READBACK,
                );
                enc.copy_buffer_to_buffer(b, 0, &st, 0, size);
                (st, size)
            })
            .collect();
        self.ctx.queue.submit([enc.finish()]);
        self.uploads.rearm();
        let rows = self.finish(pending)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut it = rows.into_iter();
        for (st, size) in &stagings {
            let words = map_read(&self.ctx.device, st, *size, self.wait_limit)?;
            for row in words.chunks(v) {
                let r = it.next().expect("one result per row");
                // docs/spec.md §3.15: `probs` draws nothing; mu is the one the cut used.
                let mu = params[out.len()].mirostat.as_ref().map(|m| m.mu());
                out.push(RowProbs {
                    probs: row.iter().map(|&w| fw(w)).collect(),
                    kept: r.kept,
                    temperature: r.temperature,
                    top_p: r.top_p,
                    entropy: r.entropy,
                    final_entropy: r.final_entropy,
                    guide_entropy: r.guide_entropy,
                    mirostat_mu: mu,
                });
            }
        }
        Ok(out)
    }

    fn stream_call(&mut self, logits: LogitsView<'_>) -> Result<Option<f64>> {
        // The upload in a submission of its own: the probe times the read only.
        let mut up = self.ctx.device.create_command_encoder(&Default::default());
        let chunks = self.upload(&mut up, logits, 0)?;
        self.ctx.queue.submit([up.finish()]);
        self.uploads.rearm();
        let out = self.buf("stream_out", 65536, wgpu::BufferUsages::STORAGE);
        let wg = self.pipes.consts.wg as u64;
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&timed_pass("stream", self.query.as_ref()));
            pass.set_pipeline(self.pipes.get(Job::Stream, Features::ALL));
            for (_, _, src) in &chunks {
                let bg = self
                    .ctx
                    .device
                    .create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &self.pipes.stream_layout,
                        entries: &[
                            bind_range(&src.buffer, 0, 0, src.size / 16 * 16),
                            wgpu::BindGroupEntry {
                                binding: 1,
                                resource: out.as_entire_binding(),
                            },
                        ],
                    });
                pass.set_bind_group(0, &bg, &[]);
                // About four vec4s per invocation, at most 8192 workgroups
                // (a few waves on a large GPU; the shader strides the rest).
                let vec4s = src.size / 16;
                let groups = vec4s.div_ceil(4 * wg).clamp(1, 8192) as u32;
                pass.dispatch_workgroups(groups, 1, 1);
            }
        }
        let Some(qs) = &self.query else {
            let t = std::time::Instant::now();
            self.ctx.queue.submit([enc.finish()]);
            readback::wait(&self.ctx.device, self.wait_limit)?;
            return Ok(Some(t.elapsed().as_secs_f64() * 1e3));
        };
        let resolve = self.ws.get(
            &self.ctx.device,
            "ts_resolve",
            16,
            wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        );
        enc.resolve_query_set(qs, 0..2, &resolve, 0);
        let ts = read_words(&self.ctx, &mut enc, &resolve, 4, self.wait_limit)?;
        let t0 = ts[0] as u64 | (ts[1] as u64) << 32;
        let t1 = ts[2] as u64 | (ts[3] as u64) << 32;
        Ok(Some(
            t1.saturating_sub(t0) as f64 * self.ctx.queue.get_timestamp_period() as f64 / 1e6,
        ))
    }
}
