//! Recording a call: the per-chunk workspace layout, the upload of host
//! logits, the typed [`ChunkUniform`] of every chunk, and the compute pass
//! (statistics, solve, then pick / probs where the call needs them).

use bytemuck::Zeroable;

use super::super::abi::{ChunkUniform, Opts, ParamRecord, ResultRecord, TOPW};
use super::super::shaders::{Job, ShaderConsts};
use super::encode::encode_params;
use super::readback::PendingResults;
use super::{dtype_code, CallCounts, GpuSampler, LogitsDtype, MAX_VOCAB, READBACK, TR};
use crate::batch::LogitsView;
use crate::error::{Result, SamplerError};
use crate::params::{resolve_seeds, SamplingParams};

/// Timestamps written inside the pass, each after the dispatch it is named
/// for (profiling; needs TIMESTAMP_QUERY_INSIDE_PASSES).
pub(super) struct Marks {
    pub(super) set: wgpu::QuerySet,
    pub(super) labels: Vec<&'static str>,
    pub(super) staging: Option<wgpu::Buffer>,
}

impl Marks {
    pub(super) fn mark(&mut self, pass: &mut wgpu::ComputePass<'_>, label: &'static str) {
        pass.write_timestamp(&self.set, self.labels.len() as u32);
        self.labels.push(label);
    }
}

/// Where a chunk's logits come from.
pub(super) struct ChunkSrc {
    pub(super) buffer: wgpu::Buffer,
    pub(super) offset: u64,
    pub(super) size: u64,
    pub(super) elem_off: u32,
}

/// Words of one candidate (shaders/common.wgsl `CW`): its key and its
/// processed logit as a two-float.
const CAND_WORDS: u64 = 3;

/// Per-chunk workspace layout (u32 words): the patched logits, the tile
/// records, the candidates and the top-n lists in `ws`; the first-digit
/// histograms have a buffer of their own (`bins`, zero between calls).
#[derive(Clone, Copy, Default)]
pub(super) struct Layout {
    pub(super) tl: u64,
    pub(super) cd: u64,
    pub(super) tn: u64,
    pub(super) pv: u64,
    pub(super) ws_words: u64,
    pub(super) bins_words: u64,
}

pub(super) fn layout(rows: u64, tiles: u64, c: &ShaderConsts, ntop: u64, entries: u64) -> Layout {
    let mut l = Layout {
        pv: 0,
        ..Default::default()
    };
    l.tl = 2 * entries;
    l.cd = l.tl + rows * tiles * TR;
    l.tn = l.cd + rows * c.cap as u64 * CAND_WORDS;
    l.ws_words = l.tn + rows * tiles * 4 * ntop;
    l.bins_words = rows << c.ha_bits;
    l
}

pub(super) enum AuxOut<'a> {
    None,
    Probs(Vec<wgpu::Buffer>),
    Tokens(&'a wgpu::Buffer, u64),
}

pub(super) fn bind(b: &wgpu::Buffer, i: u32) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding: i,
        resource: b.as_entire_binding(),
    }
}

/// A compute pass with timestamps at its start and end when there is a query set.
pub(super) fn timed_pass<'a>(
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
pub(super) fn bind_range(
    b: &wgpu::Buffer,
    i: u32,
    offset: u64,
    size: u64,
) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding: i,
        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: b,
            offset,
            size: std::num::NonZeroU64::new(size),
        }),
    }
}

impl GpuSampler {
    pub(super) fn rows_per_chunk(&self, row_bytes: u64, tiles: u64, ntop: u64) -> Result<usize> {
        let lim = self.binding_limit();
        if row_bytes + 256 > lim {
            return Err(SamplerError::Unsupported(format!(
                "one row of {row_bytes} bytes exceeds this device's storage binding limit of {lim} bytes"
            )));
        }
        let c = &self.pipes.consts;
        let ws_row = (tiles * TR + CAND_WORDS * c.cap as u64 + tiles * 4 * ntop) * 4;
        let by_logits = (lim - 256) / row_bytes;
        let by_ws = (lim / 2) / ws_row;
        // Rows are the y dimension of the per-row dispatches.
        let max_groups = self.ctx.limits.max_compute_workgroups_per_dimension as u64;
        Ok(by_logits.min(by_ws).clamp(1, max_groups) as usize)
    }

    /// Records the whole call for `rows` rows into `enc`; `src(row0, rows)`
    /// gives each chunk's logits.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn record(
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
        let res_words = rows as u64 * ResultRecord::WORDS as u64;
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
        // Each chunk's record at a dynamic offset of a read-only storage
        // binding (common.wgsl: why not a uniform buffer).
        let align = (self.ctx.limits.min_storage_buffer_offset_alignment as u64).max(256);
        let n_uni = chunks.len() as u64;
        let uni = self.ws.get(
            &self.ctx.device,
            "uniform",
            n_uni * align,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
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
            opts |= Opts::TOKENS;
        }
        if self.force_miss {
            opts |= Opts::MISS;
        }
        for (ci, (row0, nrows, src)) in chunks.iter().enumerate() {
            let u = ChunkUniform {
                row0: *row0 as u32,
                rows: *nrows as u32,
                vocab: vocab as u32,
                stride: stride as u32,
                elem_off: src.elem_off,
                dtype: dtype_code(dtype).code(),
                tiles: tiles as u32,
                draws: samples,
                ntop: e.ntop,
                bm_words,
                meta_patch: (params.len() * ParamRecord::WORDS) as u32,
                tl_base: l.tl as u32,
                cd_base: l.cd as u32,
                tn_base: l.tn as u32,
                pv_base: l.pv as u32,
                dr_base: dr as u32,
                to_base: to as u32,
                call,
                aux_off,
                aux_stride,
                inf_bits: f32::INFINITY.to_bits(),
                opts,
                lanes: c.lanes.code(),
                ..ChunkUniform::zeroed()
            };
            let at = (ci as u64 * align) as usize;
            uni_bytes[at..at + ChunkUniform::WORDS * 4].copy_from_slice(bytemuck::bytes_of(&u));
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
        if e.band_topn {
            self.pipes.ensure(Job::BandTopn, e.features);
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
                            bind_range(&uni, 7, 0, ChunkUniform::WORDS as u64 * 4),
                        ],
                    });
                let nrows = *nrows as u32;
                pass.set_bind_group(0, &bg, &[(ci as u64 * align) as u32]);
                dispatch(&mut pass, Job::Stats, tiles as u32, nrows);
                dispatch(&mut pass, Job::Solve, 1, nrows);
                if e.band_topn {
                    dispatch(&mut pass, Job::BandTopn, 1, nrows);
                }
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
    /// Uploads host logits chunk by chunk (each chunk its own buffer, so no
    /// binding exceeds the device's limit), in their own element type: f16
    /// and bf16 move half the bytes of f32 and are widened in the shaders.
    /// The bytes go through the mapped upload ring; the copies are recorded
    /// into `enc` (call [`super::upload::UploadRing::rearm`] after submitting it).
    pub(super) fn upload(
        &mut self,
        enc: &mut wgpu::CommandEncoder,
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
            let size = (bytes.len() as u64).next_multiple_of(4);
            let buf = self.ws.get(
                &self.ctx.device,
                &name,
                size,
                wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            );
            self.uploads.stage(
                &self.ctx.device,
                enc,
                chunks.len(),
                bytes,
                &buf,
                self.wait_limit,
            )?;
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
}
