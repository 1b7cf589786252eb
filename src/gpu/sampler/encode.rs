//! Parameter encoding: one typed [`ParamRecord`] per row, then the rows'
//! bias/penalty entries and the allowed-id and table lists they point to,
//! as one word array (`prm` in the shaders); and the per-row summary the host
//! keeps to turn the device's raw results into f64 logprobs.

use std::collections::BTreeMap;

use bytemuck::Zeroable;

use super::super::abi::{
    dyn_slot, two_float, MappingCode, OrderCode, ParamRecord, RowFlags, UnitCode, NTOP_MAX, PATCH_W,
};
use super::super::shaders::Features;
use crate::params::{widen, EntropyUnit, Mapping, Mirostat, Order, SamplingParams};
use crate::reference::dry_penalties;
use crate::rng::xtc_uniform;

/// Which word of a row's record points into the list region.
enum TailRef {
    Allowed,
    Lut,
}

#[derive(Clone)]
pub(super) struct RowSummary {
    pub(super) dynamic: bool,
    pub(super) dyn_top_p: bool,
    pub(super) temperature: f64,
    pub(super) top_p: f64,
    pub(super) logprobs: Option<u32>,
    /// The ids a bias or penalty names: (bias, count in history, seen in
    /// history or prompt), and the penalties as the reference widens them.
    pub(super) patches: BTreeMap<u32, (Option<f32>, u32, bool)>,
    pub(super) penalties: [f64; 3],
    pub(super) mirostat: Option<Mirostat>,
    /// DRY's amount per id (docs/spec.md §3.14), as the reference computes it.
    pub(super) dry: BTreeMap<u32, f64>,
}

impl RowSummary {
    /// Id's processed logit in f64 from its raw one, as the reference computes
    /// it (`reference::bias_mask_penalties`): the bias, then the penalties,
    /// then DRY's amount (on a finite value only).
    pub(super) fn processed(&self, id: u32, x: f32) -> f64 {
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
        if let Some(&amount) = self.dry.get(&id) {
            if y.is_finite() {
                y -= amount;
            }
        }
        y
    }
}

/// The parameters of a call, encoded for the device.
pub(super) struct Encoded {
    pub(super) meta: Vec<u32>,
    /// Per row: first patch entry, count.
    pub(super) patches: Vec<(u32, u32)>,
    pub(super) ntop: u32,
    /// What the rows use: the shader variant the call runs.
    pub(super) features: Features,
    pub(super) summary: Vec<RowSummary>,
    /// Some row may end with a band of survivors (typical, XTC) and asks
    /// for logprobs: the call runs shaders/band_topn.wgsl after the solver.
    pub(super) band_topn: bool,
}

fn f32w(x: f32) -> u32 {
    x.to_bits()
}

pub(super) fn encode_params(params: &[SamplingParams], seeds: &[u64], bitmask: bool) -> Encoded {
    let b = params.len();
    let mut records = vec![ParamRecord::zeroed(); b];
    let mut patch_words: Vec<u32> = Vec::new();
    let mut tail: Vec<u32> = Vec::new(); // allowed ids and LUTs, offsets fixed up below
    let mut tail_refs: Vec<(usize, TailRef, usize)> = Vec::new(); // (row, field, tail offset)
    let mut patches = Vec::with_capacity(b);
    let mut ntop = 0u32;
    let mut features = Features::NONE.with(Features::ALLOW, bitmask);
    let mut summary = Vec::with_capacity(b);
    let mut band_topn = false;
    for (r, p) in params.iter().enumerate() {
        let rec = &mut records[r];
        let dynamic = p.dynamic_temperature.as_ref();
        let order = match p.order {
            Order::Standard => OrderCode::Standard,
            Order::Vllm => OrderCode::Vllm,
            Order::LlamaCpp => OrderCode::LlamaCpp,
        };
        let top_k = if p.top_k > 0 { p.top_k as u32 } else { 0 };
        let mut flags = order.code() << RowFlags::ORDER_SHIFT;
        if p.allowed_token_ids.is_some() {
            flags |= RowFlags::ALLOW;
        }
        if bitmask {
            flags |= RowFlags::BITMASK;
        }
        // The statistics pass's histogram: key digits for a count query
        // first (top-k, min_tokens_to_keep), else bins of y for predicting a
        // top-p cut at a temperature known before the row is read.
        let hist_p = !(top_k > 0 || p.min_tokens_to_keep > 1)
            && p.top_p < 1.0
            && dynamic.is_none()
            && p.temperature > 0.0;
        if top_k > 0 || p.min_tokens_to_keep > 1 {
            flags |= RowFlags::HIST_A;
        } else if hist_p {
            flags |= RowFlags::HIST_P;
        }
        features = features
            .with(
                Features::HIST,
                flags & (RowFlags::HIST_A | RowFlags::HIST_P) != 0,
            )
            .with(Features::ALLOW, p.allowed_token_ids.is_some());
        if let Some(d) = dynamic {
            flags |= RowFlags::DYN;
            let kind = match d.mapping {
                Mapping::Linear { .. } => MappingCode::Linear,
                Mapping::Sigmoid { .. } => MappingCode::Sigmoid,
                Mapping::Lut { .. } => MappingCode::Lut,
                Mapping::Edt { .. } => MappingCode::Edt,
                Mapping::LlamaCpp { .. } => MappingCode::LlamaCpp,
            };
            flags |= kind.code() << RowFlags::MAPPING_SHIFT;
            let unit = match d.unit() {
                EntropyUnit::Nats => UnitCode::Nats,
                EntropyUnit::Bits => UnitCode::Bits,
                EntropyUnit::Normalized => UnitCode::Normalized,
            };
            flags |= unit.code() << RowFlags::UNIT_SHIFT;
            let dy = &mut rec.dynamic;
            if let Some(cap) = d.max_entropy {
                flags |= RowFlags::HAS_MAXENT;
                dy[dyn_slot::MAX_ENTROPY] = f32w(cap);
            }
            // Real parameters travel as two-float pairs of the f64 values the
            // reference computes with (`dyn_slot` lists the slots).
            let mut put = |slot: usize, x: f64| dy[slot..slot + 2].copy_from_slice(&two_float(x));
            if let Some(tp) = d.top_p {
                flags |= RowFlags::DYN_TOPP;
                put(dyn_slot::TOP_P_LOW, widen(tp.low));
                put(dyn_slot::TOP_P_SPAN, widen(tp.high) - widen(tp.low));
            }
            // The mapping's numbers: pair k at NUMBERS + 2k.
            let num = |k: usize| dyn_slot::NUMBERS + 2 * k;
            match &d.mapping {
                Mapping::Linear {
                    h_low,
                    h_high,
                    t_min,
                    t_max,
                } => {
                    put(num(0), widen(*h_low));
                    put(num(1), widen(*h_high) - widen(*h_low));
                    put(num(2), widen(*t_min));
                    put(num(3), widen(*t_max) - widen(*t_min));
                }
                Mapping::Sigmoid {
                    h_mid,
                    steepness,
                    t_min,
                    t_max,
                } => {
                    put(num(0), widen(*h_mid));
                    put(num(1), widen(*steepness));
                    put(num(2), widen(*t_min));
                    put(num(3), widen(*t_max) - widen(*t_min));
                }
                Mapping::Lut {
                    entropies,
                    temperatures,
                } => {
                    tail_refs.push((r, TailRef::Lut, tail.len()));
                    for (e, t) in entropies.iter().zip(temperatures) {
                        tail.extend_from_slice(&two_float(widen(*e)));
                        tail.extend_from_slice(&two_float(widen(*t)));
                    }
                    dy[dyn_slot::LUT_LEN] = entropies.len() as u32;
                }
                Mapping::Edt { t0, base, theta } => {
                    put(num(0), widen(*t0));
                    put(num(1), widen(*theta) * widen(*base).ln());
                }
                Mapping::LlamaCpp { range, exponent } => {
                    let t = widen(p.temperature);
                    let t_min = (t - widen(*range)).max(0.0);
                    put(num(0), t_min);
                    put(num(1), t + widen(*range) - t_min);
                    put(num(2), widen(*exponent));
                }
            }
        }
        rec.temperature = p.temperature;
        rec.top_k = top_k;
        rec.top_p = p.top_p;
        rec.min_p = p.min_p;
        rec.ln_min_p = if p.min_p > 0.0 {
            widen(p.min_p).ln() as f32
        } else {
            0.0
        };
        rec.min_tokens_to_keep = p.min_tokens_to_keep;
        // The penalties as two-floats of the f64 values the reference uses.
        [rec.repetition_hi, rec.repetition_lo] = two_float(widen(p.repetition_penalty));
        [rec.frequency_hi, rec.frequency_lo] = two_float(widen(p.frequency_penalty));
        [rec.presence_hi, rec.presence_lo] = two_float(widen(p.presence_penalty));
        rec.seed = [seeds[r] as u32, (seeds[r] >> 32) as u32];
        rec.step = [p.step as u32, (p.step >> 32) as u32];
        rec.logprobs = p.logprobs.unwrap_or(0);
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
        rec.t_stats = t_a;
        if hist_p {
            rec.t_predict = if p.order == Order::LlamaCpp {
                1.0
            } else {
                p.temperature
            };
        }
        // The extended samplers (docs/spec.md §3.10–3.15): flags and the
        // logs of their cutoffs as the reference computes them in f64.
        let ln32 = |x: f32| widen(x).ln() as f32;
        if p.top_n_sigma > 0.0 {
            flags |= RowFlags::NSIGMA;
            rec.n_sigma = p.top_n_sigma;
        }
        if p.typical_p < 1.0 {
            flags |= RowFlags::TYPICAL;
            rec.typical_p = p.typical_p;
        }
        if p.epsilon_cutoff > 0.0 {
            flags |= RowFlags::EPSILON;
            rec.ln_epsilon = ln32(p.epsilon_cutoff);
        }
        if p.eta_cutoff > 0.0 {
            flags |= RowFlags::ETA;
            rec.ln_eta = ln32(p.eta_cutoff);
        }
        // XTC's coin depends on the seed and step only (docs/spec.md §3.13):
        // drawn here, the device sees whether XTC runs at this step.
        if p.xtc_probability > 0.0 && xtc_uniform(seeds[r], p.step) < widen(p.xtc_probability) {
            flags |= RowFlags::XTC;
            rec.ln_xtc = ln32(p.xtc_threshold);
        }
        if let Some(ms) = &p.mirostat {
            flags |= if ms.version == 1 {
                RowFlags::MIROSTAT1
            } else {
                RowFlags::MIROSTAT2
            };
            rec.mirostat_mu = two_float(ms.mu());
        }
        rec.flags = flags;
        band_topn |=
            flags & (RowFlags::TYPICAL | RowFlags::XTC) != 0 && p.logprobs.unwrap_or(0) > 0;
        if let Some(allowed) = &p.allowed_token_ids {
            let mut ids = allowed.clone();
            ids.sort_unstable();
            ids.dedup();
            tail_refs.push((r, TailRef::Allowed, tail.len()));
            rec.allow_count = ids.len() as u32;
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
        // DRY's amounts (docs/spec.md §3.14). Every id DRY penalises is a
        // token of prompt ++ history, so already an entry; one that is not
        // (a row whose penalty inputs are a `SequenceState`) gets an entry
        // that no other penalty touches, as in the reference.
        let dry = dry_penalties(p);
        for &id in dry.keys() {
            entries.entry(id).or_insert((None, 0, false));
        }
        let first = (patch_words.len() / PATCH_W) as u32;
        for (id, (bias, count, seen)) in &entries {
            let cf = (count << 2) | u32::from(bias.is_some()) | (u32::from(*seen) << 1);
            let [dry_hi, dry_lo] = dry.get(id).map_or([0, 0], |&a| two_float(a));
            patch_words.extend_from_slice(&[
                *id,
                f32w(bias.unwrap_or(0.0)),
                cf,
                r as u32,
                dry_hi,
                dry_lo,
            ]);
        }
        rec.patch_first = first;
        rec.patch_count = entries.len() as u32;
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
            mirostat: p.mirostat.clone(),
            dry,
        });
    }
    let patch_base = b * ParamRecord::WORDS;
    let tail_base = (patch_base + patch_words.len()) as u32;
    for (r, field, off) in tail_refs {
        let at = tail_base + off as u32;
        match field {
            TailRef::Allowed => records[r].allow_offset = at,
            TailRef::Lut => records[r].dynamic[dyn_slot::LUT_OFFSET] = at,
        }
    }
    let mut meta: Vec<u32> = bytemuck::cast_slice(&records).to_vec();
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
        band_topn,
    }
}
