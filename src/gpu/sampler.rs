//! `GpuSampler`: the host side of the pipeline. Per call it only encodes the
//! parameters compactly (one record per row, the bias / history / prompt ids
//! and allowed ids as CSR lists), writes them, and records one compute pass:
//! per chunk of rows, the statistics pass (tiles × rows) and the row solver
//! (one workgroup per row, which reads its row again itself when a stage
//! needs it, and draws token 0), then `pick` for the other draws of a
//! multi-draw call and `probs` for a `probs` call. Only per-row results come
//! back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::context::GpuContext;
use super::pipelines::Pipelines;
use super::shaders::{Features, Job, LaneOrder, ShaderConsts};
use super::workspace::Workspace;
pub use crate::backend::CallCounts;
use crate::backend::{check_samples, BackendKind, Sampler};
pub use crate::batch::LogitsDtype;
use crate::batch::LogitsView;
use crate::error::{Result, SamplerError};
use crate::params::{
    resolve_seeds, validate_all, widen, EntropyUnit, Mapping, Order, SamplingParams,
};
use crate::result::{RowProbs, RowResult, TokenLogprob, TopLogprobs};

const MR: usize = 48;
const TR: u64 = 28;
const RES: usize = 32;
/// Word of a row's result record holding the number of the call that wrote it.
const R_CALL: usize = 26;
const NTOP_MAX: usize = 20;
/// Words of a row's top-n lists: raw and processed, (id, raw x) each.
const TOPW: usize = 4 * NTOP_MAX;
const UNIFORM_WORDS: usize = 32;
const READBACK: wgpu::BufferUsages =
    wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);
/// Rows of 2^26 ids would overflow the 64-bit top-p masses (common.wgsl).
const MAX_VOCAB: usize = 1 << 26;

/// The shader's code for an element type (`Chunk.dtype`, common.wgsl).
fn dtype_code(d: LogitsDtype) -> u32 {
    match d {
        LogitsDtype::F32 => 0,
        LogitsDtype::F16 => 1,
        LogitsDtype::Bf16 => 2,
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

/// Results of a recorded call, to be read back once the caller has submitted.
///
/// Each one owns its readback buffer until it is read or dropped, so calls
/// may be recorded and submitted one after another before any is read (a
/// decode loop that feeds tokens back on the device). Every row's record
/// carries the call's number: reading a call whose submission has not run
/// is an error, never another call's results.
pub struct PendingResults {
    staging: Option<wgpu::Buffer>,
    pool: StagingPool,
    /// Bytes of results; the two GPU timestamps follow when `timed`.
    bytes: u64,
    timed: bool,
    call: u32,
    wait_limit: Option<std::time::Duration>,
    rows: usize,
    samples: u32,
    seeds: Vec<u64>,
    summary: Vec<RowSummary>,
}

/// Readback buffers not held by a [`PendingResults`].
#[derive(Clone, Default)]
struct StagingPool(Arc<Mutex<Vec<wgpu::Buffer>>>);

/// Readback buffers kept for reuse (more only while that many calls are
/// outstanding).
const POOL_KEEP: usize = 4;

impl StagingPool {
    /// A free buffer of at least `bytes`, or a new one.
    fn take(&self, device: &wgpu::Device, bytes: u64) -> wgpu::Buffer {
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

    fn give_back(&self, b: wgpu::Buffer) {
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

#[derive(Clone)]
struct RowSummary {
    dynamic: bool,
    dyn_top_p: bool,
    temperature: f64,
    top_p: f64,
    logprobs: Option<u32>,
    /// The ids a bias or penalty names: (bias, count in history, seen in
    /// history or prompt), and the penalties as the reference widens them.
    patches: BTreeMap<u32, (Option<f32>, u32, bool)>,
    penalties: [f64; 3],
}

impl RowSummary {
    /// Id's processed logit in f64 from its raw one, as the reference computes
    /// it (`reference::bias_mask_penalties`): the bias, then the penalties.
    fn processed(&self, id: u32, x: f32) -> f64 {
        let mut y = x as f64;
        if let Some(&(bias, count, seen)) = self.patches.get(&id) {
            if let Some(b) = bias {
                y += b as f64;
            }
            if seen {
                let [rep, freq, pres] = self.penalties;
                y = if y > 0.0 { y / rep } else { y * rep };
                if count > 0 {
                    y -= freq * count as f64 + pres;
                }
            }
        }
        y
    }
}

/// Timestamps written inside the pass, each after the dispatch it is named
/// for (profiling; needs TIMESTAMP_QUERY_INSIDE_PASSES).
struct Marks {
    set: wgpu::QuerySet,
    labels: Vec<&'static str>,
    staging: Option<wgpu::Buffer>,
}

impl Marks {
    fn mark(&mut self, pass: &mut wgpu::ComputePass<'_>, label: &'static str) {
        pass.write_timestamp(&self.set, self.labels.len() as u32);
        self.labels.push(label);
    }
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
}

/// Where a chunk's logits come from.
struct ChunkSrc {
    buffer: wgpu::Buffer,
    offset: u64,
    size: u64,
    elem_off: u32,
}

/// The parameters of a call, encoded for the device.
struct Encoded {
    meta: Vec<u32>,
    /// Per row: first patch entry, count.
    patches: Vec<(u32, u32)>,
    ntop: u32,
    /// What the rows use: the shader variant the call runs.
    features: Features,
    summary: Vec<RowSummary>,
}

fn f32w(x: f32) -> u32 {
    x.to_bits()
}

/// `x` as hi + lo f32s (hi = x rounded, lo = the rest rounded): ~48 bits.
fn two_float(x: f64) -> [u32; 2] {
    let hi = x as f32;
    [hi.to_bits(), ((x - hi as f64) as f32).to_bits()]
}

fn encode_params(params: &[SamplingParams], seeds: &[u64], bitmask: bool) -> Encoded {
    let b = params.len();
    let mut rows = vec![0u32; b * MR];
    let mut patch_words: Vec<u32> = Vec::new();
    let mut tail: Vec<u32> = Vec::new(); // allowed ids and LUTs, offsets fixed up below
    let mut tail_refs: Vec<(usize, usize)> = Vec::new(); // (row word index, tail offset)
    let mut patches = Vec::with_capacity(b);
    let mut ntop = 0u32;
    let mut features = Features::NONE.with(Features::ALLOW, bitmask);
    let mut summary = Vec::with_capacity(b);
    for (r, p) in params.iter().enumerate() {
        let rec = &mut rows[r * MR..(r + 1) * MR];
        let dynamic = p.dynamic_temperature.as_ref();
        let order = match p.order {
            Order::Standard => 0,
            Order::Vllm => 1,
            Order::LlamaCpp => 2,
        };
        let top_k = if p.top_k > 0 { p.top_k as u32 } else { 0 };
        let mut flags = order << 2;
        if p.allowed_token_ids.is_some() {
            flags |= 1;
        }
        if bitmask {
            flags |= 2;
        }
        // The statistics pass's histogram: key digits for a count query
        // first (top-k, min_tokens_to_keep), else bins of y for predicting a
        // top-p cut at a temperature known before the row is read.
        let hist_p = !(top_k > 0 || p.min_tokens_to_keep > 1)
            && p.top_p < 1.0
            && dynamic.is_none()
            && p.temperature > 0.0;
        if top_k > 0 || p.min_tokens_to_keep > 1 {
            flags |= 4096;
        } else if hist_p {
            flags |= 8192;
        }
        features = features
            .with(Features::HIST, flags & (4096 | 8192) != 0)
            .with(Features::ALLOW, p.allowed_token_ids.is_some());
        if let Some(d) = dynamic {
            flags |= 16;
            let kind = match d.mapping {
                Mapping::Linear { .. } => 0,
                Mapping::Sigmoid { .. } => 1,
                Mapping::Lut { .. } => 2,
                Mapping::Edt { .. } => 3,
                Mapping::LlamaCpp { .. } => 4,
            };
            flags |= kind << 5;
            flags |= match d.unit() {
                EntropyUnit::Nats => 0,
                EntropyUnit::Bits => 1,
                EntropyUnit::Normalized => 2,
            } << 8;
            if let Some(cap) = d.max_entropy {
                flags |= 1024;
                rec[20] = f32w(cap);
            }
            // Real parameters travel as two-float pairs of the f64 values the
            // reference computes with (shaders/mapping.wgsl lists the slots).
            let mut put = |slot: usize, x: f64| rec[slot..slot + 2].copy_from_slice(&two_float(x));
            if let Some(tp) = d.top_p {
                flags |= 2048;
                put(29, widen(tp.low));
                put(31, widen(tp.high) - widen(tp.low));
            }
            match &d.mapping {
                Mapping::Linear {
                    h_low,
                    h_high,
                    t_min,
                    t_max,
                } => {
                    put(21, widen(*h_low));
                    put(23, widen(*h_high) - widen(*h_low));
                    put(25, widen(*t_min));
                    put(27, widen(*t_max) - widen(*t_min));
                }
                Mapping::Sigmoid {
                    h_mid,
                    steepness,
                    t_min,
                    t_max,
                } => {
                    put(21, widen(*h_mid));
                    put(23, widen(*steepness));
                    put(25, widen(*t_min));
                    put(27, widen(*t_max) - widen(*t_min));
                }
                Mapping::Lut {
                    entropies,
                    temperatures,
                } => {
                    tail_refs.push((r * MR + 21, tail.len()));
                    for (e, t) in entropies.iter().zip(temperatures) {
                        tail.extend_from_slice(&two_float(widen(*e)));
                        tail.extend_from_slice(&two_float(widen(*t)));
                    }
                    rec[22] = entropies.len() as u32;
                }
                Mapping::Edt { t0, base, theta } => {
                    put(21, widen(*t0));
                    put(23, widen(*theta) * widen(*base).ln());
                }
                Mapping::LlamaCpp { range, exponent } => {
                    let t = widen(p.temperature);
                    let t_min = (t - widen(*range)).max(0.0);
                    put(21, t_min);
                    put(23, t + widen(*range) - t_min);
                    put(25, widen(*exponent));
                }
            }
        }
        rec[0] = flags;
        rec[1] = f32w(p.temperature);
        rec[2] = top_k;
        rec[3] = f32w(p.top_p);
        rec[4] = f32w(p.min_p);
        rec[5] = f32w(if p.min_p > 0.0 {
            widen(p.min_p).ln() as f32
        } else {
            0.0
        });
        rec[6] = p.min_tokens_to_keep;
        // The penalties as two-floats of the f64 values the reference uses.
        for (slot, lo, v) in [
            (7, 33, p.repetition_penalty),
            (8, 34, p.frequency_penalty),
            (9, 35, p.presence_penalty),
        ] {
            let [hi, low] = two_float(widen(v));
            rec[slot] = hi;
            rec[lo] = low;
        }
        rec[10] = seeds[r] as u32;
        rec[11] = (seeds[r] >> 32) as u32;
        rec[12] = p.step as u32;
        rec[13] = (p.step >> 32) as u32;
        rec[18] = p.logprobs.unwrap_or(0);
        // The statistics pass's sums are at T_A: the row's static T, or 1
        // where top-p sees the T = 1 distribution (llama.cpp order) and its
        // prediction needs the total there.
        let t_a = if dynamic.is_none()
            && p.temperature > 0.0
            && !(hist_p && p.order == Order::LlamaCpp)
        {
            p.temperature
        } else {
            1.0
        };
        rec[19] = f32w(t_a);
        if hist_p {
            rec[36] = f32w(if p.order == Order::LlamaCpp {
                1.0
            } else {
                p.temperature
            });
        }
        if let Some(allowed) = &p.allowed_token_ids {
            let mut ids = allowed.clone();
            ids.sort_unstable();
            ids.dedup();
            tail_refs.push((r * MR + 16, tail.len()));
            rec[17] = ids.len() as u32;
            tail.extend_from_slice(&ids);
        }
        // Distinct ids named by bias, history or prompt, ascending.
        let mut entries: BTreeMap<u32, (Option<f32>, u32, bool)> = BTreeMap::new();
        for (&id, &bias) in &p.logit_bias {
            entries.entry(id).or_insert((None, 0, false)).0 = Some(bias);
        }
        for t in p.penalty_tokens() {
            let e = entries.entry(t.id).or_insert((None, 0, false));
            e.1 = t.count;
            e.2 = true;
        }
        let first = (patch_words.len() / 4) as u32;
        for (id, (bias, count, seen)) in &entries {
            let cf = (count << 2) | u32::from(bias.is_some()) | (u32::from(*seen) << 1);
            patch_words.extend_from_slice(&[*id, f32w(bias.unwrap_or(0.0)), cf, r as u32]);
        }
        rec[14] = first;
        rec[15] = entries.len() as u32;
        features = features.with(Features::PATCH, !entries.is_empty());
        patches.push((first, entries.len() as u32));
        ntop = ntop.max(p.logprobs.unwrap_or(0).min(NTOP_MAX as u32));
        features = features.with(Features::TOPN, ntop > 0);
        summary.push(RowSummary {
            dynamic: dynamic.is_some(),
            dyn_top_p: dynamic.is_some_and(|d| d.top_p.is_some()),
            temperature: widen(p.temperature),
            top_p: widen(p.top_p),
            logprobs: p.logprobs,
            patches: entries,
            penalties: [
                widen(p.repetition_penalty),
                widen(p.frequency_penalty),
                widen(p.presence_penalty),
            ],
        });
    }
    let patch_base = rows.len();
    let tail_base = patch_base + patch_words.len();
    for (word, off) in tail_refs {
        rows[word] = (tail_base + off) as u32;
    }
    let mut meta = rows;
    meta.extend_from_slice(&patch_words);
    meta.extend_from_slice(&tail);
    Encoded {
        meta,
        patches,
        ntop,
        // Three variants at most (each costs a compile per job): the lean
        // ones for plain and truncating batches, everything for the rest.
        features: if features == Features::NONE || features == Features::HIST {
            features
        } else {
            Features::ALL
        },
        summary,
    }
}

/// Per-chunk workspace layout (u32 words): the patched logits, the tile
/// records, the candidates and the top-n lists in `ws`; the first-digit
/// histograms have a buffer of their own (`bins`, zero between calls).
#[derive(Clone, Copy, Default)]
struct Layout {
    tl: u64,
    cd: u64,
    tn: u64,
    pv: u64,
    ws_words: u64,
    bins_words: u64,
}

fn layout(rows: u64, tiles: u64, c: &ShaderConsts, ntop: u64, entries: u64) -> Layout {
    let mut l = Layout {
        pv: 0,
        ..Default::default()
    };
    l.tl = 2 * entries;
    l.cd = l.tl + rows * tiles * TR;
    l.tn = l.cd + rows * c.cap as u64 * 2;
    l.ws_words = l.tn + rows * tiles * 4 * ntop;
    l.bins_words = rows << c.ha_bits;
    l
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
        ))
    }

    /// [`GpuSampler::new_blocking`] with the shaders' invocations permuted
    /// (race tests; every order gives the same results on race-free shaders).
    pub fn new_blocking_with_lanes(allow_software: bool, lanes: LaneOrder) -> Result<Self> {
        let ctx = pollster::block_on(GpuContext::new(allow_software))?;
        Ok(Self::with_context(ctx, lanes))
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
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Self {
        Self::with_context(GpuContext::from_device(device, queue), LaneOrder::Natural)
    }

    fn with_context(ctx: GpuContext, lanes: LaneOrder) -> Self {
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
            wait_limit: None,
            profile: false,
            profile_marks: None,
            last_profile: Vec::new(),
            last_kernel_ms: None,
            last_reads: Vec::new(),
            last_counts: CallCounts::default(),
            force_miss: false,
        }
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

    /// Bytes of device memory the reusable workspace holds.
    pub fn workspace_bytes(&self) -> u64 {
        self.ws.bytes()
    }

    /// Bounds how long reading results waits for the device (calls and the
    /// [`PendingResults`] they record from now on): past it the read is a
    /// `SamplerError::Gpu` error instead of a wait that never ends on a hung
    /// device. `None` (the default) waits as long as it takes.
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
        let words =
            l.ws_words + l.bins_words + rows as u64 * (MR as u64 + RES as u64 + 1 + TOPW as u64);
        Ok(words * 4 + rows as u64 * vocab as u64 * 4)
    }

    fn rows_per_chunk(&self, row_bytes: u64, tiles: u64, ntop: u64) -> Result<usize> {
        let lim = self.binding_limit();
        if row_bytes + 256 > lim {
            return Err(SamplerError::Unsupported(format!(
                "one row of {row_bytes} bytes exceeds this device's storage binding limit of {lim} bytes"
            )));
        }
        let c = &self.pipes.consts;
        let ws_row = (tiles * TR + 2 * c.cap as u64 + tiles * 4 * ntop) * 4;
        let by_logits = (lim - 256) / row_bytes;
        let by_ws = (lim / 2) / ws_row;
        // Rows are the y dimension of the per-row dispatches.
        let max_groups = self.ctx.limits.max_compute_workgroups_per_dimension as u64;
        Ok(by_logits.min(by_ws).clamp(1, max_groups) as usize)
    }

    /// Records the whole call for `rows` rows into `enc`; `src(row0, rows)`
    /// gives each chunk's logits.
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
        rows: usize,
        vocab: usize,
        stride: usize,
        dtype: LogitsDtype,
        params: &[SamplingParams],
        samples: u32,
        bitmask: Option<&wgpu::Buffer>,
        chunks: &[(usize, usize, ChunkSrc)],
        aux: AuxOut<'_>,
        profile: bool,
    ) -> Result<PendingResults> {
        if vocab >= MAX_VOCAB {
            return Err(SamplerError::Unsupported(format!(
                "a vocabulary of {vocab} ids; the GPU backend handles rows of fewer than {MAX_VOCAB}"
            )));
        }
        let seeds = resolve_seeds(params);
        let e = encode_params(params, &seeds, bitmask.is_some());
        let c = self.pipes.consts;
        let tiles = vocab.div_ceil(c.tile as usize) as u64;
        let max_groups = self.ctx.limits.max_compute_workgroups_per_dimension as u64;
        if tiles > max_groups {
            return Err(SamplerError::Unsupported(format!(
                "a vocabulary of {vocab} ids is {tiles} tiles of {} ids, over this device's \
                 {max_groups} workgroups per dispatch dimension",
                c.tile
            )));
        }
        let max_rows = chunks.iter().map(|c| c.1).max().unwrap_or(1) as u64;
        let entries = e.patches.iter().map(|p| p.1 as u64).sum::<u64>();
        let l = layout(max_rows, tiles, &c, e.ntop as u64, entries);
        let s = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let meta = self.buf("meta", e.meta.len() as u64, s);
        let ws = self.buf("ws", l.ws_words, s);
        // Only ever the histograms: every word is zero between calls.
        let bins = self.buf("bins", l.bins_words, s);
        let n = samples as u64;
        let res_words = rows as u64 * RES as u64;
        let dr = res_words;
        let to = dr + rows as u64 * n;
        let out_words = to + rows as u64 * TOPW as u64;
        let lim = self.binding_limit();
        if out_words * 4 > lim {
            return Err(SamplerError::Unsupported(format!(
                "{rows} rows × {samples} draws need {} bytes of results, over this device's storage \
                 binding limit of {lim} bytes: ask for fewer draws per call",
                out_words * 4
            )));
        }
        let outb = self.buf("out", out_words, s | wgpu::BufferUsages::COPY_SRC);
        let dummy = self.buf("dummy", 4, s);
        let dummy_aux = self.buf("dummy_aux", 4, s);
        let align = self.ctx.limits.min_uniform_buffer_offset_alignment.max(256) as u64;
        let n_uni = chunks.len() as u64;
        let uni = self.ws.get(
            &self.ctx.device,
            "uniform",
            n_uni * align,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        self.calls = self.calls.wrapping_add(1);
        let call = self.calls;
        let q = &self.ctx.queue;
        q.write_buffer(&meta, 0, bytemuck::cast_slice(&e.meta));
        let mut uni_bytes = vec![0u8; (n_uni * align) as usize];
        let bm_words = vocab.div_ceil(32) as u32;
        let (aux_off, aux_stride) = match &aux {
            AuxOut::Probs(_) => (0u32, vocab as u32),
            AuxOut::Tokens(_, off) => ((*off / 4) as u32, 1),
            AuxOut::None => (0, 0),
        };
        let mut opts = 0u32;
        if matches!(aux, AuxOut::Tokens(..)) {
            opts |= 1;
        }
        if self.force_miss {
            opts |= 2;
        }
        for (ci, (row0, nrows, src)) in chunks.iter().enumerate() {
            let mut w = [0u32; UNIFORM_WORDS];
            w[..24].copy_from_slice(&[
                *row0 as u32,
                *nrows as u32,
                vocab as u32,
                stride as u32,
                src.elem_off,
                dtype_code(dtype),
                tiles as u32,
                samples,
                e.ntop,
                bm_words,
                0,
                (params.len() * MR) as u32,
                l.tl as u32,
                l.cd as u32,
                l.tn as u32,
                l.pv as u32,
                0,
                dr as u32,
                to as u32,
                call,
                aux_off,
                aux_stride,
                f32::INFINITY.to_bits(),
                opts,
            ]);
            let at = (ci as u64 * align) as usize;
            uni_bytes[at..at + UNIFORM_WORDS * 4].copy_from_slice(bytemuck::cast_slice(&w));
        }
        q.write_buffer(&uni, 0, &uni_bytes);
        let ts_resolve = self.query.as_ref().map(|_| {
            self.ws.get(
                &self.ctx.device,
                "ts_resolve",
                16,
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            )
        });
        // At most 4096 queries in a set: profile only calls that fit.
        let n_marks = 1 + chunks.len() as u64 * 4;
        let mut marks = (profile
            && self
                .ctx
                .features
                .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
            && n_marks <= 4096)
            .then(|| Marks {
                set: self.ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("dispatch times"),
                    ty: wgpu::QueryType::Timestamp,
                    count: n_marks as u32,
                }),
                labels: Vec::new(),
                staging: None,
            });
        for job in [Job::Stats, Job::Solve, Job::Pick, Job::Probs] {
            self.pipes.ensure(job, e.features);
        }
        let mut counts = CallCounts {
            chunks: chunks.len() as u32,
            ..Default::default()
        };
        {
            let mut pass = enc.begin_compute_pass(&timed_pass("sample", self.query.as_ref()));
            if let Some(m) = &mut marks {
                m.mark(&mut pass, "start");
            }
            let mut dispatch = |pass: &mut wgpu::ComputePass<'_>, job: Job, x: u32, y: u32| {
                pass.set_pipeline(self.pipes.get(job, e.features));
                pass.dispatch_workgroups(x, y, 1);
                counts.dispatches += 1;
                counts.workgroups += x as u64 * y as u64;
                if let Some(m) = &mut marks {
                    m.mark(pass, job.name());
                }
            };
            for (ci, (_, nrows, src)) in chunks.iter().enumerate() {
                let aux_buf: wgpu::BindingResource = match &aux {
                    AuxOut::Probs(bufs) => bufs[ci].as_entire_binding(),
                    AuxOut::Tokens(b, _) => b.as_entire_binding(),
                    AuxOut::None => dummy_aux.as_entire_binding(),
                };
                let bg = self
                    .ctx
                    .device
                    .create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some("chunk"),
                        layout: &self.pipes.layout,
                        entries: &[
                            bind_range(&src.buffer, 0, src.offset, src.size),
                            bind(&meta, 1),
                            bind(&ws, 2),
                            bind(&bins, 3),
                            bind(&outb, 4),
                            bind(bitmask.unwrap_or(&dummy), 5),
                            wgpu::BindGroupEntry {
                                binding: 6,
                                resource: aux_buf,
                            },
                            bind_range(&uni, 7, 0, UNIFORM_WORDS as u64 * 4),
                        ],
                    });
                let nrows = *nrows as u32;
                pass.set_bind_group(0, &bg, &[(ci as u64 * align) as u32]);
                dispatch(&mut pass, Job::Stats, tiles as u32, nrows);
                dispatch(&mut pass, Job::Solve, 1, nrows);
                if samples > 1 {
                    let groups = (samples - 1).min(1024).min(max_groups as u32);
                    dispatch(&mut pass, Job::Pick, groups, nrows);
                }
                if let AuxOut::Probs(_) = &aux {
                    dispatch(&mut pass, Job::Probs, tiles as u32, nrows);
                }
            }
        }
        self.last_counts = counts;
        if let Some(m) = &mut marks {
            let n = m.labels.len() as u64;
            let resolve = self.ws.get(
                &self.ctx.device,
                "profile_resolve",
                n * 8,
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            );
            let staging = self
                .ws
                .get(&self.ctx.device, "profile_staging", n * 8, READBACK);
            enc.resolve_query_set(&m.set, 0..n as u32, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &staging, 0, n * 8);
            m.staging = Some(staging);
        }
        self.profile_marks = marks;
        // The results, then the pass's two timestamps, in one readback
        // buffer of this call's own.
        let bytes = out_words * 4;
        let staging = self.readback.take(&self.ctx.device, bytes + 16);
        enc.copy_buffer_to_buffer(&outb, 0, &staging, 0, bytes);
        if let (Some(qs), Some(resolve)) = (&self.query, &ts_resolve) {
            enc.resolve_query_set(qs, 0..2, resolve, 0);
            enc.copy_buffer_to_buffer(resolve, 0, &staging, bytes, 16);
        }
        Ok(PendingResults {
            staging: Some(staging),
            pool: self.readback.clone(),
            bytes,
            timed: ts_resolve.is_some(),
            call,
            wait_limit: self.wait_limit,
            rows,
            samples,
            seeds,
            summary: e.summary,
        })
    }

    /// Uploads host logits chunk by chunk (each chunk its own buffer, so no
    /// binding exceeds the device's limit), in their own element type: f16
    /// and bf16 move half the bytes of f32 and are widened in the shaders.
    fn upload(
        &mut self,
        logits: LogitsView<'_>,
        ntop: u64,
    ) -> Result<Vec<(usize, usize, ChunkSrc)>> {
        let v = logits.vocab();
        let esz = logits.dtype().size();
        let tiles = v.div_ceil(self.pipes.consts.tile as usize) as u64;
        let per = self.rows_per_chunk((v * esz) as u64, tiles, ntop)?;
        let mut chunks = Vec::new();
        let mut row0 = 0;
        while row0 < logits.rows() {
            let n = per.min(logits.rows() - row0);
            let name = format!("logits{}", chunks.len());
            let bytes = logits.slice_rows(row0, row0 + n).bytes();
            // Buffer copies move whole 4-byte words: an odd count of half
            // elements gets one zero element of padding (never read).
            let size = (bytes.len() as u64).next_multiple_of(4);
            let buf = self.ws.get(
                &self.ctx.device,
                &name,
                size,
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            );
            let whole = bytes.len() / 4 * 4;
            self.ctx.queue.write_buffer(&buf, 0, &bytes[..whole]);
            if whole < bytes.len() {
                let mut tail = [0u8; 4];
                tail[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
                self.ctx.queue.write_buffer(&buf, whole as u64, &tail);
            }
            chunks.push((
                row0,
                n,
                ChunkSrc {
                    buffer: buf,
                    offset: 0,
                    size,
                    elem_off: 0,
                },
            ));
            row0 += n;
        }
        Ok(chunks)
    }

    fn finish(&mut self, pending: PendingResults) -> Result<Vec<RowResult>> {
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
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        let pending = self.encode(&mut enc, input, params, samples, tokens_out)?;
        self.ctx.queue.submit([enc.finish()]);
        self.finish(pending)
    }

    /// Runs philox.wgsl on the device: for each (counter, key) the four
    /// output words and U(seed = key, step = counter.xy, d = counter.z)'s bits.
    pub fn philox_on_device(
        &mut self,
        inputs: &[([u32; 4], [u32; 2])],
    ) -> Result<Vec<([u32; 4], f32)>> {
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

enum AuxOut<'a> {
    None,
    Probs(Vec<wgpu::Buffer>),
    Tokens(&'a wgpu::Buffer, u64),
}

/// Submits `enc` after copying `src` to a staging buffer, and reads it.
fn read_words(
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
fn start_map(staging: &wgpu::Buffer, bytes: u64) -> MapState {
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
fn take_mapped(staging: &wgpu::Buffer, bytes: u64, state: &MapState) -> Result<Vec<u32>> {
    match state.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            return Err(SamplerError::Gpu(format!(
                "mapping the results failed: {e}"
            )))
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
fn map_read(
    device: &wgpu::Device,
    staging: &wgpu::Buffer,
    bytes: u64,
    limit: Option<std::time::Duration>,
) -> Result<Vec<u32>> {
    let state = start_map(staging, bytes);
    device
        .poll(wgpu::PollType::Wait {
            submission_index: None,
            timeout: limit,
        })
        .map_err(|e| match e {
            wgpu::PollError::Timeout => SamplerError::Gpu(format!(
                "the device did not finish within {:.0} s (hung, or far slower than expected)",
                limit.unwrap_or_default().as_secs_f64()
            )),
            e => SamplerError::Gpu(format!("device poll failed: {e}")),
        })?;
    take_mapped(staging, bytes, &state)
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
        if let Err(e) = self.device.poll(wgpu::PollType::Poll) {
            return std::task::Poll::Ready(Err(SamplerError::Gpu(format!(
                "device poll failed: {e}"
            ))));
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
fn read_back(device: &wgpu::Device, mut p: PendingResults) -> Result<(Parsed, Option<f64>)> {
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

fn bind(b: &wgpu::Buffer, i: u32) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding: i,
        resource: b.as_entire_binding(),
    }
}

/// A compute pass with timestamps at its start and end when there is a query set.
fn timed_pass<'a>(
    label: &'a str,
    query: Option<&'a wgpu::QuerySet>,
) -> wgpu::ComputePassDescriptor<'a> {
    wgpu::ComputePassDescriptor {
        label: Some(label),
        timestamp_writes: query.map(|qs| wgpu::ComputePassTimestampWrites {
            query_set: qs,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }),
    }
}

/// `size` bytes of `b` from `offset` at binding `i`.
fn bind_range(b: &wgpu::Buffer, i: u32, offset: u64, size: u64) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding: i,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: b,
            offset,
            size: std::num::NonZeroU64::new(size),
        }),
    }
}

fn fw(w: u32) -> f64 {
    f32::from_bits(w) as f64
}

/// The per-row results, and each row's reads of the logits (the statistics
/// pass plus its scan rounds).
fn parse(words: &[u32], p: &PendingResults) -> Result<(Vec<RowResult>, Vec<u32>)> {
    let n = p.samples as usize;
    let dr = p.rows * RES;
    let to = dr + p.rows * n;
    let mut out = Vec::with_capacity(p.rows);
    let mut reads = Vec::with_capacity(p.rows);
    for r in 0..p.rows {
        let w = &words[r * RES..(r + 1) * RES];
        let sm = &p.summary[r];
        if w[R_CALL] != p.call {
            return Err(SamplerError::Gpu(format!(
                "row {r}: the results are not this call's (was the command buffer that recorded \
                 it submitted before reading?)"
            )));
        }
        if w[0] != 1 {
            return Err(row_error(r, w));
        }
        let greedy = w[19] != 0;
        let draws = words[dr + r * n..dr + (r + 1) * n].to_vec();
        let token = w[1];
        // Logprobs in f64 from raw logits (see R_TOKX in common.wgsl): the
        // reference's processed logits, relative to the max, over T, minus
        // the device's ln S.
        let (t, ln_s) = (fw(w[8]), fw(w[17]));
        let (m_raw, ln_s_raw) = (fw(w[20]), fw(w[21]));
        let m = sm.processed(w[25], f32::from_bits(w[23]));
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
        out.push(RowResult {
            token,
            draws,
            logprob: processed(token, w[3]),
            raw_logprob: raw(w[3]),
            entropy: fw(w[4]),
            varentropy: fw(w[5]),
            guide_entropy: sm.dynamic.then(|| fw(w[6])),
            final_entropy: fw(w[7]),
            temperature: if greedy {
                0.0
            } else if sm.dynamic {
                fw(w[8])
            } else {
                sm.temperature
            },
            top_p: if sm.dyn_top_p { fw(w[9]) } else { sm.top_p },
            kept: w[10],
            seed: p.seeds[r],
            top_logprobs: sm.logprobs.map(|_| TopLogprobs {
                raw: list(0, w[14]),
                processed: list(1, w[15]),
            }),
        });
        reads.push(1 + w[22]);
    }
    Ok((out, reads))
}

fn row_error(row: usize, w: &[u32]) -> SamplerError {
    let index = w[12] as usize;
    let value = f32::from_bits(w[13]);
    let non_finite = |field: &str| SamplerError::NonFiniteLogit {
        row,
        index,
        field: field.into(),
        value: value as f64,
    };
    match w[11] {
        1 => SamplerError::InvalidLogit { row, index, value },
        2 => non_finite("logit_bias"),
        3 => non_finite("repetition_penalty"),
        4 => non_finite("frequency_penalty/presence_penalty"),
        5 => SamplerError::AllMasked { row },
        6 => SamplerError::Gpu(format!(
            "row {row}: the row solver gave up after its bound on steps (a bug: please report it)"
        )),
        code => SamplerError::Gpu(format!(
            "row {row}: no result (status {}, code {code})",
            w[0]
        )),
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
        check_samples(samples)?;
        validate_all(params, logits.rows(), logits.vocab())?;
        let ntop = params.iter().filter_map(|p| p.logprobs).max().unwrap_or(0) as u64;
        let chunks = self.upload(logits, ntop)?;
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
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
        self.finish(pending)
    }

    fn probs(
        &mut self,
        logits: LogitsView<'_>,
        params: &[SamplingParams],
    ) -> Result<Vec<RowProbs>> {
        validate_all(params, logits.rows(), logits.vocab())?;
        let v = logits.vocab();
        let chunks = self.upload(logits, 0)?;
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
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
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
        let rows = self.finish(pending)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut it = rows.into_iter();
        for (st, size) in &stagings {
            let words = map_read(&self.ctx.device, st, *size, self.wait_limit)?;
            for row in words.chunks(v) {
                let r = it.next().expect("one result per row");
                out.push(RowProbs {
                    probs: row.iter().map(|&w| fw(w)).collect(),
                    kept: r.kept,
                    temperature: r.temperature,
                    top_p: r.top_p,
                    entropy: r.entropy,
                    final_entropy: r.final_entropy,
                    guide_entropy: r.guide_entropy,
                });
            }
        }
        Ok(out)
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
        let chunks = self.upload(logits, 0)?;
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
            self.ctx
                .device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| SamplerError::Gpu(e.to_string()))?;
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
