//! Per-row sampling parameters (docs/spec.md §2) and entropy-guided
//! temperature (docs/spec.md §4).
//!
//! Every default means "off", as llama.cpp's `llama.h` documents each knob's no-op
//! value; the serde names follow vLLM/OpenAI. Unknown fields are errors. Call
//! [`SamplingParams::validate`] (the backends do) before using a row.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SamplerError};
use crate::sequence::{PenaltyTokens, SequenceState};

/// An f32 parameter as the decimal number it was written as (0.9f32 → 0.9, not
/// 0.8999999761581421), so reports and f64 maths see the value the user gave.
pub fn widen(x: f32) -> f64 {
    if x.is_finite() {
        x.to_string().parse().unwrap_or(x as f64)
    } else {
        x as f64
    }
}

/// The smallest non-zero temperature (docs/spec.md §2.1). Below it, logits
/// that differ by less than f32's smallest normal number (1.2e-38) could
/// change a weight by more than 1e-8, and GPUs may flush such differences to
/// zero.
pub const MIN_TEMPERATURE: f32 = 1e-30;
/// The largest temperature (docs/spec.md §2.1). Up to it, a logit difference
/// beyond f32's range (a spread over f32::MAX) has the weight
/// e^(−f32::MAX/T) = 0 in f64 as in f32, so an f32 backend whose difference
/// overflows to −inf still gives the reference's answer; and 1/T stays a
/// normal f32.
pub const MAX_TEMPERATURE: f32 = 1e30;

/// docs/spec.md §2.1: every value a penalty step produces (the logit after
/// the repetition penalty, the amount `frequency·c + presence`, the logit
/// after subtracting it) stays below 2^24 in magnitude. Below it the f32
/// backends hold a penalised logit to within 2^-24 of the reference's f64
/// value (the GPU computes it in two f32s, 48 bits); beyond it f64's own
/// rounding, not the parameters, would decide between neighbouring logits.
pub const PENALTY_LIMIT: f64 = 16_777_216.0;

/// Whether `t` is a temperature docs/spec.md §2.1 accepts: 0 (greedy) or in
/// [`MIN_TEMPERATURE`, `MAX_TEMPERATURE`].
pub fn temperature_in_range(t: f32) -> bool {
    t == 0.0 || (MIN_TEMPERATURE..=MAX_TEMPERATURE).contains(&t)
}

/// docs/spec.md §2.1: the temperature a mapping computed, in f64, made one
/// of those the pipeline runs at: below [`MIN_TEMPERATURE`] (or NaN) it is 0,
/// greedy (vLLM likewise samples greedily below a small epsilon), above
/// [`MAX_TEMPERATURE`] it is that bound.
pub fn computed_temperature(t: f64) -> f64 {
    if t.is_nan() || t < widen(MIN_TEMPERATURE) {
        0.0
    } else {
        t.min(widen(MAX_TEMPERATURE))
    }
}

/// docs/spec.md §2.1: a real parameter may not be subnormal in f32. A
/// subnormal f32 has fewer than 24 significant bits, so it cannot carry the
/// decimal value the caller wrote (1e-44 is stored as 9.8e-45), and f32
/// backends, GPUs above all, may flush it to 0.
fn subnormal_message(v: f32) -> Option<String> {
    v.is_subnormal().then(|| {
        format!(
            "{v} is below f32's smallest normal magnitude {:e} and cannot be held exactly; use 0 or a larger value",
            f32::MIN_POSITIVE
        )
    })
}

/// The order in which the truncation stages and temperature run (docs/spec.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// HF transformers, vLLM V0: temperature → top-k → top-p → min-p.
    #[default]
    Standard,
    /// vLLM V1: temperature → min-p → top-k → top-p.
    Vllm,
    /// llama.cpp's default chain: top-k → top-p → min-p → temperature (the
    /// truncation stages see the T = 1 distribution).
    LlamaCpp,
}

impl Order {
    pub const ALL: [Order; 3] = [Order::Standard, Order::Vllm, Order::LlamaCpp];

    pub fn name(self) -> &'static str {
        match self {
            Order::Standard => "standard",
            Order::Vllm => "vllm",
            Order::LlamaCpp => "llama_cpp",
        }
    }

    /// The truncation stages in the order this pipeline runs them
    /// (docs/spec.md §3.9); a stage whose parameter is off does nothing.
    pub fn truncation_stages(self) -> Vec<Stage> {
        use Stage::*;
        match self {
            Order::Standard => vec![TopNSigma, TopK, TopP, MinP, Typical, Epsilon, Eta, Xtc],
            Order::Vllm => vec![TopNSigma, MinP, TopK, TopP, Typical, Epsilon, Eta, Xtc],
            Order::LlamaCpp => vec![TopNSigma, TopK, Typical, TopP, MinP, Epsilon, Eta, Xtc],
        }
    }
}

impl std::str::FromStr for Order {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "standard" => Ok(Order::Standard),
            "vllm" => Ok(Order::Vllm),
            "llama_cpp" | "llama-cpp" | "llamacpp" => Ok(Order::LlamaCpp),
            other => Err(format!(
                "unknown order `{other}` (expected standard, vllm or llama_cpp)"
            )),
        }
    }
}

/// A truncation stage (docs/spec.md §3.4–3.6, §3.10–3.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    TopK,
    TopP,
    MinP,
    /// `top_n_sigma` (docs/spec.md §3.10).
    TopNSigma,
    /// `typical_p` (docs/spec.md §3.11).
    Typical,
    /// `epsilon_cutoff` (docs/spec.md §3.12).
    Epsilon,
    /// `eta_cutoff` (docs/spec.md §3.12).
    Eta,
    /// `xtc_probability` / `xtc_threshold` (docs/spec.md §3.13).
    Xtc,
}

/// Mirostat (docs/spec.md §3.15): target-surprise sampling, llama.cpp's
/// `mirostat` (version 1) and `mirostat_v2` (version 2). It replaces the
/// truncation stages; the row's updated `mu` comes back in the result
/// (`mirostat_mu`) for the caller to pass in the next step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirostat {
    /// 1 or 2.
    pub version: u8,
    /// Target surprise in bits; finite, ≥ 0.
    #[serde(default = "default_mirostat_tau")]
    pub tau: f32,
    /// Learning rate; finite, ≥ 0.
    #[serde(default = "default_mirostat_eta")]
    pub eta: f32,
    /// The current maximum surprise; `None` = 2·tau (llama.cpp's start value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mu: Option<f32>,
}

fn default_mirostat_tau() -> f32 {
    5.0
}

fn default_mirostat_eta() -> f32 {
    0.1
}

impl Mirostat {
    pub fn new(version: u8) -> Self {
        Mirostat {
            version,
            tau: default_mirostat_tau(),
            eta: default_mirostat_eta(),
            mu: None,
        }
    }

    /// The `mu` this step starts from: the given one, else 2·tau.
    pub fn mu(&self) -> f64 {
        match self.mu {
            Some(mu) => widen(mu),
            None => 2.0 * widen(self.tau),
        }
    }
}

/// The unit the guide entropy is expressed in before it reaches a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntropyUnit {
    #[default]
    Nats,
    Bits,
    /// H / ln N, N the number of finite tokens considered; N = 1 gives 0.
    Normalized,
}

impl EntropyUnit {
    /// Converts an entropy in nats over `n` finite tokens into this unit.
    pub fn from_nats(self, h_nats: f64, n: usize) -> f64 {
        match self {
            EntropyUnit::Nats => h_nats,
            EntropyUnit::Bits => h_nats / std::f64::consts::LN_2,
            EntropyUnit::Normalized => {
                if n <= 1 {
                    0.0
                } else {
                    h_nats / (n as f64).ln()
                }
            }
        }
    }
}

/// The entropy → temperature rule (docs/spec.md §4). `T = t_min + (t_max − t_min)·s`
/// for `linear` and `sigmoid`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mapping {
    /// `s = clamp((H − h_low)/(h_high − h_low), 0, 1)`.
    Linear {
        h_low: f32,
        h_high: f32,
        t_min: f32,
        t_max: f32,
    },
    /// `s = 1/(1 + e^(−steepness·(H − h_mid)))`.
    Sigmoid {
        h_mid: f32,
        steepness: f32,
        t_min: f32,
        t_max: f32,
    },
    /// Piecewise-linear T over ascending entropies, clamped at both ends.
    Lut {
        entropies: Vec<f32>,
        temperatures: Vec<f32>,
    },
    /// Entropy-based dynamic temperature: `T = t0 · base^(theta / H)`; H = 0 → T = 0.
    Edt {
        t0: f32,
        #[serde(default = "default_edt_base")]
        base: f32,
        theta: f32,
    },
    /// llama.cpp's `temp_ext`: `T = t_min + (t_max − t_min)·(H / ln N)^exponent`
    /// with `t_min = max(0, temperature − range)`, `t_max = temperature + range`.
    LlamaCpp { range: f32, exponent: f32 },
}

fn default_edt_base() -> f32 {
    0.8
}

/// `{low, high}`: the entropy-driven top-p `p = low + (high − low)·s`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopPRange {
    pub low: f32,
    pub high: f32,
}

/// Entropy-guided temperature (docs/spec.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicTemperature {
    /// `nats` (default), `bits` or `normalized`. Not allowed with the `llama_cpp` mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<EntropyUnit>,
    /// Clip the guide entropy (in `unit`) to this before mapping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_entropy: Option<f32>,
    pub mapping: Mapping,
    /// Entropy-driven top-p; only with `linear`/`sigmoid`, not in `llama_cpp` order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<TopPRange>,
}

impl DynamicTemperature {
    pub fn new(mapping: Mapping) -> Self {
        DynamicTemperature {
            unit: None,
            max_entropy: None,
            mapping,
            top_p: None,
        }
    }

    pub fn unit(&self) -> EntropyUnit {
        self.unit.unwrap_or_default()
    }

    /// The guide entropy in `unit` after the `max_entropy` clip, from an entropy in
    /// nats over `n` finite tokens.
    pub fn guide(&self, h_nats: f64, n: usize) -> f64 {
        let h = self.unit().from_nats(h_nats, n);
        match self.max_entropy {
            Some(cap) => h.min(widen(cap)),
            None => h,
        }
    }

    /// `s` in [0, 1] for `linear` and `sigmoid`; `None` for the other mappings.
    pub fn strength(&self, guide: f64) -> Option<f64> {
        match self.mapping {
            Mapping::Linear { h_low, h_high, .. } => {
                let (lo, hi) = (widen(h_low), widen(h_high));
                Some(((guide - lo) / (hi - lo)).clamp(0.0, 1.0))
            }
            Mapping::Sigmoid {
                h_mid, steepness, ..
            } => Some(1.0 / (1.0 + (-widen(steepness) * (guide - widen(h_mid))).exp())),
            _ => None,
        }
    }

    /// The temperature this mapping chooses. `guide` is the clipped guide entropy
    /// in `unit` (for the `llama_cpp` mapping: nats), `h_nats` and `n` the raw
    /// entropy in nats and the number of finite tokens it was taken over,
    /// `temperature` the row's static temperature. A result of 0 means greedy.
    pub fn temperature(&self, guide: f64, h_nats: f64, n: usize, temperature: f64) -> f64 {
        computed_temperature(self.raw_temperature(guide, h_nats, n, temperature))
    }

    /// The mapping's formula before docs/spec.md §2.1's range rule.
    fn raw_temperature(&self, guide: f64, h_nats: f64, n: usize, temperature: f64) -> f64 {
        match &self.mapping {
            Mapping::Linear { t_min, t_max, .. } | Mapping::Sigmoid { t_min, t_max, .. } => {
                let s = self.strength(guide).unwrap_or(0.0);
                widen(*t_min) + (widen(*t_max) - widen(*t_min)) * s
            }
            Mapping::Lut {
                entropies,
                temperatures,
            } => lut(entropies, temperatures, guide),
            Mapping::Edt { t0, base, theta } => {
                if guide <= 0.0 {
                    0.0
                } else {
                    widen(*t0) * widen(*base).powf(widen(*theta) / guide)
                }
            }
            Mapping::LlamaCpp { range, exponent } => {
                if n <= 1 {
                    return temperature;
                }
                let t_min = (temperature - widen(*range)).max(0.0);
                let t_max = temperature + widen(*range);
                let norm = (h_nats / (n as f64).ln()).max(0.0);
                t_min + (t_max - t_min) * norm.powf(widen(*exponent))
            }
        }
    }

    /// The guide entropy in `llama_cpp` order: the survivors' entropy `h_nats`
    /// over `n` tokens, in nats for the `llama_cpp` mapping (it normalises by
    /// ln N itself), else in `unit` after the clip.
    pub fn guide_over_survivors(&self, h_nats: f64, n: usize) -> f64 {
        match self.mapping {
            Mapping::LlamaCpp { .. } => h_nats,
            _ => self.guide(h_nats, n),
        }
    }

    /// The entropy-driven top-p for a guide entropy, if configured.
    pub fn top_p(&self, guide: f64) -> Option<f64> {
        let range = self.top_p?;
        let s = self.strength(guide)?;
        Some(widen(range.low) + (widen(range.high) - widen(range.low)) * s)
    }
}

fn lut(entropies: &[f32], temperatures: &[f32], h: f64) -> f64 {
    let n = entropies.len();
    if h <= widen(entropies[0]) {
        return widen(temperatures[0]);
    }
    if h >= widen(entropies[n - 1]) {
        return widen(temperatures[n - 1]);
    }
    // Strictly ascending entropies: exactly one segment holds h.
    let i = entropies.partition_point(|&e| widen(e) <= h);
    let (e0, e1) = (widen(entropies[i - 1]), widen(entropies[i]));
    let (t0, t1) = (widen(temperatures[i - 1]), widen(temperatures[i]));
    t0 + (t1 - t0) * (h - e0) / (e1 - e0)
}

/// The parameters of one row. `SamplingParams::default()` leaves every stage off
/// (T = 1, plain softmax sampling).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingParams {
    /// ≥ 0; 0 = greedy, always.
    pub temperature: f32,
    /// 0, −1, or ≥ the number of finite tokens = off.
    pub top_k: i32,
    /// In (0, 1]; 1 = off.
    pub top_p: f32,
    /// In [0, 1]; 0 = off.
    pub min_p: f32,
    /// ≥ 1: top-k/top-p/min-p never leave fewer tokens.
    pub min_tokens_to_keep: u32,
    /// > 0; 1 = off. Divides positive logits, multiplies negative ones.
    pub repetition_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// Generated tokens (the caller's penalty window); all three penalties count them.
    pub history: Vec<u32>,
    /// Prompt tokens; only `repetition_penalty` counts them (as vLLM does).
    pub prompt_token_ids: Vec<u32>,
    /// Added to the logit; JSON keys are decimal token ids.
    pub logit_bias: BTreeMap<u32, f32>,
    /// Every other token is masked.
    pub allowed_token_ids: Option<Vec<u32>>,
    /// `None` = a fresh random seed for this row, reported in the result.
    pub seed: Option<u64>,
    /// The caller's count of tokens generated so far; part of the random key.
    pub step: u64,
    /// Return this many top log-probabilities (≤ 20).
    pub logprobs: Option<u32>,
    pub dynamic_temperature: Option<DynamicTemperature>,
    pub order: Order,
    /// The row's penalty inputs kept across steps (docs/spec.md §13.2) in
    /// place of `history` and `prompt_token_ids` (setting both is an error).
    /// A library-only field: JSON has `history` and `prompt_token_ids`.
    #[serde(skip)]
    pub sequence: Option<SequenceState>,
    /// Locally typical sampling (docs/spec.md §3.11); in (0, 1], 1 = off.
    #[serde(default = "one")]
    pub typical_p: f32,
    /// Keep logits ≥ max − n·σ (docs/spec.md §3.10); ≤ 0 = off; finite.
    pub top_n_sigma: f32,
    /// XTC (docs/spec.md §3.13): the chance, in [0, 1], that the step removes
    /// the likely tokens; 0 = off.
    pub xtc_probability: f32,
    /// XTC's probability threshold, in [0, 1] (above 0.5 nothing is removed).
    #[serde(default = "default_xtc_threshold")]
    pub xtc_threshold: f32,
    /// Drop tokens with p < ε (docs/spec.md §3.12); in [0, 1), 0 = off.
    pub epsilon_cutoff: f32,
    /// Drop tokens with p < min(η, √η·e^(−H)) (docs/spec.md §3.12); in [0, 1), 0 = off.
    pub eta_cutoff: f32,
    /// DRY (docs/spec.md §3.14): finite, ≥ 0; 0 = off.
    pub dry_multiplier: f32,
    /// DRY's growth base: finite, ≥ 1.
    #[serde(default = "default_dry_base")]
    pub dry_base: f32,
    /// Repeats up to this length are not penalised.
    #[serde(default = "default_dry_allowed_length")]
    pub dry_allowed_length: u32,
    /// −1 = the whole sequence, 0 = off, n > 0 = the last n tokens.
    #[serde(default = "minus_one")]
    pub dry_penalty_last_n: i32,
    /// Token ids a repeated sequence may not extend across.
    pub dry_sequence_breakers: Vec<u32>,
    /// Mirostat (docs/spec.md §3.15); `None` = off.
    pub mirostat: Option<Mirostat>,
}

fn one() -> f32 {
    1.0
}

fn minus_one() -> i32 {
    -1
}

fn default_xtc_threshold() -> f32 {
    0.1
}

fn default_dry_base() -> f32 {
    1.75
}

fn default_dry_allowed_length() -> u32 {
    2
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            min_tokens_to_keep: 1,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            history: Vec::new(),
            prompt_token_ids: Vec::new(),
            logit_bias: BTreeMap::new(),
            allowed_token_ids: None,
            seed: None,
            step: 0,
            logprobs: None,
            dynamic_temperature: None,
            order: Order::Standard,
            sequence: None,
            typical_p: 1.0,
            top_n_sigma: 0.0,
            xtc_probability: 0.0,
            xtc_threshold: default_xtc_threshold(),
            epsilon_cutoff: 0.0,
            eta_cutoff: 0.0,
            dry_multiplier: 0.0,
            dry_base: default_dry_base(),
            dry_allowed_length: default_dry_allowed_length(),
            dry_penalty_last_n: -1,
            dry_sequence_breakers: Vec::new(),
            mirostat: None,
        }
    }
}

/// The most top log-probabilities a row may ask for.
pub const MAX_LOGPROBS: u32 = 20;

impl SamplingParams {
    /// Greedy decoding.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    /// Parses one parameter object, naming `row` in any error.
    pub fn from_json_value(row: usize, value: serde_json::Value) -> Result<Self> {
        check_integers(row, &value)?;
        serde_json::from_value(value).map_err(|e| SamplerError::ParamsParse {
            row,
            message: e.to_string(),
        })
    }

    /// docs/spec.md §4 for the `standard` and `vllm` orders, where temperature is
    /// decided before truncation from the model entropy `h_nats` over `finite`
    /// tokens: `(guide entropy, T, top-p)`. A static T of 0 stays greedy (the
    /// mapping is not evaluated); T = 0 from a mapping also means greedy.
    pub fn temperature_before_truncation(
        &self,
        h_nats: f64,
        finite: usize,
    ) -> (Option<f64>, f64, f64) {
        let static_t = widen(self.temperature);
        let mut top_p = widen(self.top_p);
        let Some(d) = &self.dynamic_temperature else {
            return (None, static_t, top_p);
        };
        let g = d.guide(h_nats, finite);
        if static_t == 0.0 {
            return (Some(g), 0.0, top_p);
        }
        if let Some(dp) = d.top_p(g) {
            top_p = dp;
        }
        (Some(g), d.temperature(g, h_nats, finite, static_t), top_p)
    }

    /// The JSON name of the first sampler of docs/spec.md §3.10–3.15 this
    /// row turns on, if any.
    pub fn extended_sampler_field(&self) -> Option<&'static str> {
        if self.typical_p != 1.0 {
            Some("typical_p")
        } else if self.top_n_sigma > 0.0 {
            Some("top_n_sigma")
        } else if self.xtc_probability > 0.0 {
            Some("xtc_probability")
        } else if self.epsilon_cutoff > 0.0 {
            Some("epsilon_cutoff")
        } else if self.eta_cutoff > 0.0 {
            Some("eta_cutoff")
        } else if self.dry_active() {
            Some("dry_multiplier")
        } else if self.mirostat.is_some() {
            Some("mirostat")
        } else {
            None
        }
    }

    /// Whether any of typical, top-nσ, XTC, ε, η, DRY or mirostat is on.
    pub fn uses_extended_samplers(&self) -> bool {
        self.extended_sampler_field().is_some()
    }

    /// Whether the DRY penalty (docs/spec.md §3.14) can act.
    pub fn dry_active(&self) -> bool {
        self.dry_multiplier > 0.0 && self.dry_penalty_last_n != 0
    }

    /// Whether any penalty is active.
    pub fn has_penalties(&self) -> bool {
        let (any_token, any_history) = match &self.sequence {
            Some(s) => (s.distinct() > 0, s.has_history()),
            None => (
                !(self.history.is_empty() && self.prompt_token_ids.is_empty()),
                !self.history.is_empty(),
            ),
        };
        (self.repetition_penalty != 1.0 && any_token)
            || ((self.presence_penalty != 0.0 || self.frequency_penalty != 0.0) && any_history)
    }

    /// The penalty inputs (docs/spec.md §3.2): every distinct id of history ∪
    /// prompt, ascending, with its count in the history and whether the prompt
    /// holds it. Read as kept from [`SamplingParams::sequence`], else counted
    /// from `history` and `prompt_token_ids`.
    pub fn penalty_tokens(&self) -> PenaltyTokens<'_> {
        match &self.sequence {
            Some(s) => PenaltyTokens::from_state(s),
            None => PenaltyTokens::from_lists(&self.history, &self.prompt_token_ids),
        }
    }

    /// Records the token this row just generated, for the next step
    /// (docs/spec.md §13.2): it joins the penalty inputs (the
    /// [`SequenceState`] when the row has one, else `history`), and `step`
    /// advances by one, so the next draw uses a fresh random key. Neither path
    /// copies the history.
    pub fn accept(&mut self, token: u32) {
        match &mut self.sequence {
            Some(s) => s.accept(token),
            None => self.history.push(token),
        }
        self.step += 1;
    }

    /// Checks every field against docs/spec.md §2 and §4 for a vocabulary of `vocab`
    /// tokens; the error names `row` and the field.
    pub fn validate(&self, row: usize, vocab: usize) -> Result<()> {
        let err = |field: &str, msg: String| Err(SamplerError::param(row, field, msg));
        let t = self.temperature;
        if !(t.is_finite() && t >= 0.0) {
            return err("temperature", format!("{t} (must be finite and >= 0)"));
        }
        if !temperature_in_range(t) {
            return err("temperature", temperature_message(t));
        }
        // docs/spec.md §2.1: no real parameter is subnormal.
        for (field, v) in [
            ("top_p", self.top_p),
            ("min_p", self.min_p),
            ("repetition_penalty", self.repetition_penalty),
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if let Some(m) = subnormal_message(v) {
                return err(field, m);
            }
        }
        if self.top_k < -1 {
            return err("top_k", format!("{} (must be >= -1)", self.top_k));
        }
        let p = self.top_p;
        if !(p > 0.0 && p <= 1.0) {
            return err("top_p", format!("{p} (must be in (0, 1])"));
        }
        let mp = self.min_p;
        if !(0.0..=1.0).contains(&mp) {
            return err("min_p", format!("{mp} (must be in [0, 1])"));
        }
        if self.min_tokens_to_keep < 1 {
            return err("min_tokens_to_keep", "0 (must be >= 1)".into());
        }
        let r = self.repetition_penalty;
        if !(r.is_finite() && r > 0.0) {
            return err(
                "repetition_penalty",
                format!("{r} (must be finite and > 0)"),
            );
        }
        if !self.presence_penalty.is_finite() {
            return err(
                "presence_penalty",
                format!("{} (must be finite)", self.presence_penalty),
            );
        }
        if !self.frequency_penalty.is_finite() {
            return err(
                "frequency_penalty",
                format!("{} (must be finite)", self.frequency_penalty),
            );
        }
        check_ids(row, "history", &self.history, vocab)?;
        check_ids(row, "prompt_token_ids", &self.prompt_token_ids, vocab)?;
        if let Some(state) = &self.sequence {
            if !(self.history.is_empty() && self.prompt_token_ids.is_empty()) {
                let field = if self.history.is_empty() {
                    "prompt_token_ids"
                } else {
                    "history"
                };
                return err(
                    field,
                    "given with a sequence state, which holds the penalty inputs; use one".into(),
                );
            }
            // Ids are checked once, at the largest (O(log d)).
            if let Some(id) = state.max_id().filter(|&id| id as usize >= vocab) {
                let (list, position) = state.locate(id);
                return Err(SamplerError::TokenOutOfRange {
                    row,
                    field: format!("sequence.{list}"),
                    position,
                    id: id as u64,
                    vocab,
                });
            }
        }
        for (position, (&id, &b)) in self.logit_bias.iter().enumerate() {
            if id as usize >= vocab {
                return Err(SamplerError::TokenOutOfRange {
                    row,
                    field: "logit_bias".into(),
                    position,
                    id: id as u64,
                    vocab,
                });
            }
            if !b.is_finite() {
                return err(
                    &format!("logit_bias[\"{id}\"]"),
                    format!("{b} (must be finite)"),
                );
            }
            if let Some(m) = subnormal_message(b) {
                return err(&format!("logit_bias[\"{id}\"]"), m);
            }
        }
        if let Some(allowed) = &self.allowed_token_ids {
            if allowed.is_empty() {
                return err(
                    "allowed_token_ids",
                    "empty list (use null to allow every token)".into(),
                );
            }
            check_ids(row, "allowed_token_ids", allowed, vocab)?;
        }
        if let Some(n) = self.logprobs {
            if n > MAX_LOGPROBS {
                return err("logprobs", format!("{n} (must be <= {MAX_LOGPROBS})"));
            }
        }
        if let Some(dynamic) = &self.dynamic_temperature {
            self.validate_dynamic(row, dynamic)?;
            self.validate_dynamic_extremes(row, dynamic)?;
        }
        self.validate_extended(row, vocab)
    }

    /// docs/spec.md §3.10–3.15: the extended samplers' ranges,
    /// §2.1's no-subnormal rule, and the combinations refused rather than
    /// silently ignored.
    fn validate_extended(&self, row: usize, vocab: usize) -> Result<()> {
        let err = |field: &str, msg: String| Err(SamplerError::param(row, field, msg));
        let mut reals = vec![
            ("typical_p", self.typical_p),
            ("top_n_sigma", self.top_n_sigma),
            ("xtc_probability", self.xtc_probability),
            ("xtc_threshold", self.xtc_threshold),
            ("epsilon_cutoff", self.epsilon_cutoff),
            ("eta_cutoff", self.eta_cutoff),
            ("dry_multiplier", self.dry_multiplier),
            ("dry_base", self.dry_base),
        ];
        if let Some(m) = &self.mirostat {
            reals.push(("mirostat.tau", m.tau));
            reals.push(("mirostat.eta", m.eta));
            if let Some(mu) = m.mu {
                reals.push(("mirostat.mu", mu));
            }
        }
        for (field, v) in &reals {
            if let Some(m) = subnormal_message(*v) {
                return err(field, m);
            }
        }
        let v = self.typical_p;
        if !(v > 0.0 && v <= 1.0) {
            return err("typical_p", format!("{v} (must be in (0, 1])"));
        }
        if !self.top_n_sigma.is_finite() {
            return err(
                "top_n_sigma",
                format!("{} (must be finite; <= 0 is off)", self.top_n_sigma),
            );
        }
        for (field, v) in [
            ("xtc_probability", self.xtc_probability),
            ("xtc_threshold", self.xtc_threshold),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return err(field, format!("{v} (must be in [0, 1])"));
            }
        }
        for (field, v) in [
            ("epsilon_cutoff", self.epsilon_cutoff),
            ("eta_cutoff", self.eta_cutoff),
        ] {
            if !(0.0..1.0).contains(&v) {
                return err(field, format!("{v} (must be in [0, 1))"));
            }
        }
        let dm = self.dry_multiplier;
        if !(dm.is_finite() && dm >= 0.0) {
            return err("dry_multiplier", format!("{dm} (must be finite and >= 0)"));
        }
        let db = self.dry_base;
        if !(db.is_finite() && db >= 1.0) {
            return err(
                "dry_base",
                format!("{db} (must be finite and >= 1; llama.cpp's dry turns itself off below 1)"),
            );
        }
        if self.dry_penalty_last_n < -1 {
            return err(
                "dry_penalty_last_n",
                format!(
                    "{} (must be -1 for the whole sequence, 0 for off, or > 0)",
                    self.dry_penalty_last_n
                ),
            );
        }
        check_ids(
            row,
            "dry_sequence_breakers",
            &self.dry_sequence_breakers,
            vocab,
        )?;
        if self.dry_active() && self.sequence.is_some() {
            return err(
                "dry_multiplier",
                "DRY needs the row's token sequence, which a sequence state does not keep; pass prompt_token_ids and history instead".into(),
            );
        }
        if let Some(m) = &self.mirostat {
            if !(m.version == 1 || m.version == 2) {
                return err(
                    "mirostat.version",
                    format!("{} (must be 1 or 2)", m.version),
                );
            }
            for (field, v) in [("mirostat.tau", m.tau), ("mirostat.eta", m.eta)] {
                if !(v.is_finite() && v >= 0.0) {
                    return err(field, format!("{v} (must be finite and >= 0)"));
                }
            }
            if let Some(mu) = m.mu {
                if !mu.is_finite() {
                    return err("mirostat.mu", format!("{mu} (must be finite)"));
                }
            }
            // Mirostat replaces the truncation stages (docs/spec.md §3.15):
            // a stage set beside it would be ignored, so it is an error.
            let ignored = [
                ("top_k", self.top_k > 0),
                ("top_p", self.top_p != 1.0),
                ("min_p", self.min_p > 0.0),
                ("typical_p", self.typical_p != 1.0),
                ("top_n_sigma", self.top_n_sigma > 0.0),
                ("xtc_probability", self.xtc_probability > 0.0),
                ("epsilon_cutoff", self.epsilon_cutoff > 0.0),
                ("eta_cutoff", self.eta_cutoff > 0.0),
                ("dynamic_temperature", self.dynamic_temperature.is_some()),
            ];
            if let Some((field, _)) = ignored.iter().find(|(_, on)| *on) {
                return err(
                    field,
                    "set with mirostat, which replaces the truncation stages and dynamic temperature; use one".into(),
                );
            }
        }
        Ok(())
    }

    /// docs/spec.md §2.1 for a mapping: no number is subnormal, every
    /// temperature it names is 0 or within the temperature range, and the
    /// `llama_cpp` mapping's largest T (temperature + range) is too.
    fn validate_dynamic_extremes(&self, row: usize, d: &DynamicTemperature) -> Result<()> {
        let err = |name: String, msg: String| {
            Err(SamplerError::param(
                row,
                &format!("dynamic_temperature.{name}"),
                msg,
            ))
        };
        let mut numbers: Vec<(String, f32)> = Vec::new();
        let mut temperatures: Vec<(String, f32)> = Vec::new();
        if let Some(cap) = d.max_entropy {
            numbers.push(("max_entropy".into(), cap));
        }
        if let Some(range) = d.top_p {
            numbers.push(("top_p.low".into(), range.low));
            numbers.push(("top_p.high".into(), range.high));
        }
        match &d.mapping {
            Mapping::Linear {
                h_low,
                h_high,
                t_min,
                t_max,
            } => {
                numbers.push(("mapping.h_low".into(), *h_low));
                numbers.push(("mapping.h_high".into(), *h_high));
                temperatures.push(("mapping.t_min".into(), *t_min));
                temperatures.push(("mapping.t_max".into(), *t_max));
            }
            Mapping::Sigmoid {
                h_mid,
                steepness,
                t_min,
                t_max,
            } => {
                numbers.push(("mapping.h_mid".into(), *h_mid));
                numbers.push(("mapping.steepness".into(), *steepness));
                temperatures.push(("mapping.t_min".into(), *t_min));
                temperatures.push(("mapping.t_max".into(), *t_max));
            }
            Mapping::Lut {
                entropies,
                temperatures: ts,
            } => {
                for (i, &e) in entropies.iter().enumerate() {
                    numbers.push((format!("mapping.entropies[{i}]"), e));
                }
                for (i, &t) in ts.iter().enumerate() {
                    temperatures.push((format!("mapping.temperatures[{i}]"), t));
                }
            }
            Mapping::Edt { t0, base, theta } => {
                temperatures.push(("mapping.t0".into(), *t0));
                numbers.push(("mapping.base".into(), *base));
                numbers.push(("mapping.theta".into(), *theta));
            }
            Mapping::LlamaCpp { range, exponent } => {
                numbers.push(("mapping.range".into(), *range));
                numbers.push(("mapping.exponent".into(), *exponent));
            }
        }
        for (name, v) in numbers.iter().chain(&temperatures) {
            if let Some(m) = subnormal_message(*v) {
                return err(name.clone(), m);
            }
        }
        for (name, t) in temperatures {
            if !temperature_in_range(t) {
                return err(name, temperature_message(t));
            }
        }
        // Differences of entropies a mapping divides by are f32 values too.
        let span = |lo: f32, hi: f32| widen(hi) - widen(lo) > f32::MAX as f64;
        match &d.mapping {
            Mapping::Linear { h_low, h_high, .. } if span(*h_low, *h_high) => {
                return err(
                    "mapping.h_high".into(),
                    format!(
                        "h_high − h_low = {:e} is beyond f32's range",
                        widen(*h_high) - widen(*h_low)
                    ),
                );
            }
            Mapping::Lut { entropies, .. } => {
                if let Some(i) =
                    (1..entropies.len()).find(|&i| span(entropies[i - 1], entropies[i]))
                {
                    return err(
                        format!("mapping.entropies[{i}]"),
                        format!(
                            "{}: the step from the previous entropy is beyond f32's range",
                            entropies[i]
                        ),
                    );
                }
            }
            _ => {}
        }
        if let Mapping::LlamaCpp { range, .. } = d.mapping {
            let t_max = widen(self.temperature) + widen(range);
            if self.temperature != 0.0 && t_max > widen(MAX_TEMPERATURE) {
                return err(
                    "mapping.range".into(),
                    format!(
                        "{range}: temperature + range = {t_max:e} is above the largest temperature {MAX_TEMPERATURE:e}"
                    ),
                );
            }
        }
        Ok(())
    }

    fn validate_dynamic(&self, row: usize, d: &DynamicTemperature) -> Result<()> {
        let field = |name: &str| format!("dynamic_temperature.{name}");
        let err = |name: &str, msg: String| Err(SamplerError::param(row, &field(name), msg));
        let finite = |name: &str, v: f32| -> Result<()> {
            if v.is_finite() {
                Ok(())
            } else {
                Err(SamplerError::param(
                    row,
                    &field(name),
                    format!("{v} (must be finite)"),
                ))
            }
        };
        let t_range = |t_min: f32, t_max: f32| -> Result<()> {
            finite("mapping.t_min", t_min)?;
            finite("mapping.t_max", t_max)?;
            if !(0.0 <= t_min && t_min <= t_max) {
                return Err(SamplerError::param(
                    row,
                    &field("mapping.t_min"),
                    format!("t_min {t_min}, t_max {t_max} (need 0 <= t_min <= t_max)"),
                ));
            }
            Ok(())
        };
        if let Some(cap) = d.max_entropy {
            if !(cap.is_finite() && cap >= 0.0) {
                return err("max_entropy", format!("{cap} (must be finite and >= 0)"));
            }
        }
        match &d.mapping {
            Mapping::Linear {
                h_low,
                h_high,
                t_min,
                t_max,
            } => {
                finite("mapping.h_low", *h_low)?;
                finite("mapping.h_high", *h_high)?;
                if h_low >= h_high {
                    return err(
                        "mapping.h_low",
                        format!("h_low {h_low} must be < h_high {h_high}"),
                    );
                }
                t_range(*t_min, *t_max)?;
            }
            Mapping::Sigmoid {
                h_mid,
                steepness,
                t_min,
                t_max,
            } => {
                finite("mapping.h_mid", *h_mid)?;
                if !(steepness.is_finite() && *steepness > 0.0) {
                    return err(
                        "mapping.steepness",
                        format!("{steepness} (must be finite and > 0)"),
                    );
                }
                t_range(*t_min, *t_max)?;
            }
            Mapping::Lut {
                entropies,
                temperatures,
            } => {
                if entropies.is_empty() || entropies.len() != temperatures.len() {
                    return err(
                        "mapping.entropies",
                        format!(
                            "{} entropies and {} temperatures (need the same non-zero length)",
                            entropies.len(),
                            temperatures.len()
                        ),
                    );
                }
                for (i, &e) in entropies.iter().enumerate() {
                    finite(&format!("mapping.entropies[{i}]"), e)?;
                    if i > 0 && e <= entropies[i - 1] {
                        return err(
                            &format!("mapping.entropies[{i}]"),
                            format!("{e} (entropies must be strictly ascending)"),
                        );
                    }
                }
                for (i, &t) in temperatures.iter().enumerate() {
                    if !(t.is_finite() && t >= 0.0) {
                        return err(
                            &format!("mapping.temperatures[{i}]"),
                            format!("{t} (must be finite and >= 0)"),
                        );
                    }
                }
            }
            Mapping::Edt { t0, base, theta } => {
                if !(t0.is_finite() && *t0 >= 0.0) {
                    return err("mapping.t0", format!("{t0} (must be finite and >= 0)"));
                }
                if !(*base > 0.0 && *base < 1.0) {
                    return err("mapping.base", format!("{base} (must be in (0, 1))"));
                }
                if !(theta.is_finite() && *theta > 0.0) {
                    return err("mapping.theta", format!("{theta} (must be finite and > 0)"));
                }
            }
            Mapping::LlamaCpp { range, exponent } => {
                if !(range.is_finite() && *range >= 0.0) {
                    return err(
                        "mapping.range",
                        format!("{range} (must be finite and >= 0)"),
                    );
                }
                if !(exponent.is_finite() && *exponent > 0.0) {
                    return err(
                        "mapping.exponent",
                        format!("{exponent} (must be finite and > 0)"),
                    );
                }
                if d.unit.is_some() {
                    return err(
                        "unit",
                        "not allowed with the llama_cpp mapping (it always uses H / ln N)".into(),
                    );
                }
                if d.max_entropy.is_some() {
                    return err(
                        "max_entropy",
                        "not allowed with the llama_cpp mapping".into(),
                    );
                }
            }
        }
        if let Some(range) = d.top_p {
            for (name, v) in [("top_p.low", range.low), ("top_p.high", range.high)] {
                if !(v > 0.0 && v <= 1.0) {
                    return err(name, format!("{v} (must be in (0, 1])"));
                }
            }
            if !matches!(d.mapping, Mapping::Linear { .. } | Mapping::Sigmoid { .. }) {
                return err(
                    "top_p",
                    "entropy-driven top_p needs the linear or sigmoid mapping".into(),
                );
            }
            if self.order == Order::LlamaCpp {
                return err(
                    "top_p",
                    "entropy-driven top_p is not available in llama_cpp order".into(),
                );
            }
            if self.top_p != 1.0 {
                return err(
                    "top_p",
                    format!(
                        "both the static top_p ({}) and dynamic_temperature.top_p are set; use one",
                        self.top_p
                    ),
                );
            }
        }
        Ok(())
    }
}

/// The integer fields and the ranges their types hold. serde's own message
/// for 2^64 or −1 ("invalid type: floating point …, expected u64") names
/// neither the field nor what it expects.
const INTEGER_FIELDS: [(&str, i128, i128); 7] = [
    ("seed", 0, u64::MAX as i128),
    ("step", 0, u64::MAX as i128),
    ("top_k", i32::MIN as i128, i32::MAX as i128),
    ("min_tokens_to_keep", 0, u32::MAX as i128),
    ("logprobs", 0, u32::MAX as i128),
    ("dry_allowed_length", 0, u32::MAX as i128),
    ("dry_penalty_last_n", i32::MIN as i128, i32::MAX as i128),
];
const ID_LISTS: [&str; 4] = [
    "history",
    "prompt_token_ids",
    "allowed_token_ids",
    "dry_sequence_breakers",
];

fn check_integers(row: usize, value: &serde_json::Value) -> Result<()> {
    let Some(obj) = value.as_object() else {
        return Ok(());
    };
    let whole = |v: &serde_json::Value, lo: i128, hi: i128| match v {
        serde_json::Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .is_some_and(|x| (lo..=hi).contains(&x)),
        // Other types get serde's message, which names the type expected.
        _ => true,
    };
    let bad = |field: String, v: &serde_json::Value, lo: i128, hi: i128| {
        Err(SamplerError::ParamsParse {
            row,
            message: format!("`{field}`: {v} is not a whole number from {lo} to {hi}"),
        })
    };
    for (name, lo, hi) in INTEGER_FIELDS {
        if let Some(v) = obj.get(name).filter(|v| !whole(v, lo, hi)) {
            return bad(name.to_string(), v, lo, hi);
        }
    }
    if let Some(serde_json::Value::Object(m)) = obj.get("mirostat") {
        if let Some(v) = m.get("version").filter(|v| !whole(v, 1, 2)) {
            return Err(SamplerError::ParamsParse {
                row,
                message: format!("`mirostat.version`: {v} is not 1 or 2"),
            });
        }
    }
    for name in ID_LISTS {
        if let Some(serde_json::Value::Array(items)) = obj.get(name) {
            let hi = u32::MAX as i128;
            if let Some((i, v)) = items.iter().enumerate().find(|(_, v)| !whole(v, 0, hi)) {
                return bad(format!("{name}[{i}]"), v, 0, hi);
            }
        }
    }
    Ok(())
}

fn temperature_message(t: f32) -> String {
    format!(
        "{t:e} is outside the temperatures f32 arithmetic handles exactly: use 0 (greedy) or a value in [{MIN_TEMPERATURE:e}, {MAX_TEMPERATURE:e}]"
    )
}

fn check_ids(row: usize, field: &str, ids: &[u32], vocab: usize) -> Result<()> {
    match ids.iter().position(|&id| id as usize >= vocab) {
        Some(position) => Err(SamplerError::TokenOutOfRange {
            row,
            field: field.to_string(),
            position,
            id: ids[position] as u64,
            vocab,
        }),
        None => Ok(()),
    }
}

/// Checks a whole batch of parameters against `rows` × `vocab`.
pub fn validate_all(params: &[SamplingParams], rows: usize, vocab: usize) -> Result<()> {
    if params.len() != rows {
        return Err(SamplerError::Shape(format!(
            "{} parameter objects for {} rows (give one per row)",
            params.len(),
            rows
        )));
    }
    params
        .iter()
        .enumerate()
        .try_for_each(|(row, p)| p.validate(row, vocab))
}

/// The seed each row uses: its own, or a fresh one drawn with `rand` (reported
/// back in the result so the draw can be repeated).
pub fn resolve_seeds(params: &[SamplingParams]) -> Vec<u64> {
    params
        .iter()
        .map(|p| p.seed.unwrap_or_else(rand::random::<u64>))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_off_and_round_trip() {
        let p: SamplingParams = serde_json::from_str("{}").unwrap();
        assert_eq!(p, SamplingParams::default());
        let back: SamplingParams =
            serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn unknown_fields_are_errors() {
        let e = SamplingParams::from_json_value(3, serde_json::json!({"temprature": 0.5}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 3") && e.contains("temprature"), "{e}");
        let e = SamplingParams::from_json_value(
            0,
            serde_json::json!({"dynamic_temperature": {"mapping": {"kind": "edt", "t0": 1, "theta": 1, "bogus": 2}}}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn logit_bias_keys_are_decimal_strings() {
        let p: SamplingParams =
            serde_json::from_str(r#"{"logit_bias": {"5": -1.5, "12": 2}}"#).unwrap();
        assert_eq!(p.logit_bias.get(&5), Some(&-1.5));
        assert_eq!(p.logit_bias.get(&12), Some(&2.0));
        assert!(serde_json::from_str::<SamplingParams>(r#"{"logit_bias": {"x": 1}}"#).is_err());
    }

    #[test]
    fn validation_names_row_and_field() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (serde_json::json!({"temperature": -0.1}), "temperature"),
            (serde_json::json!({"top_k": -2}), "top_k"),
            (serde_json::json!({"top_p": 0.0}), "top_p"),
            (serde_json::json!({"top_p": 1.5}), "top_p"),
            (serde_json::json!({"min_p": 1.5}), "min_p"),
            (
                serde_json::json!({"min_tokens_to_keep": 0}),
                "min_tokens_to_keep",
            ),
            (
                serde_json::json!({"repetition_penalty": 0.0}),
                "repetition_penalty",
            ),
            (serde_json::json!({"history": [1, 99]}), "history"),
            (
                serde_json::json!({"prompt_token_ids": [10]}),
                "prompt_token_ids",
            ),
            (serde_json::json!({"logit_bias": {"10": 1.0}}), "logit_bias"),
            (
                serde_json::json!({"allowed_token_ids": []}),
                "allowed_token_ids",
            ),
            (
                serde_json::json!({"allowed_token_ids": [3, 10]}),
                "allowed_token_ids",
            ),
            (serde_json::json!({"logprobs": 21}), "logprobs"),
            (
                serde_json::json!({"dynamic_temperature": {"mapping": {"kind": "linear", "h_low": 2, "h_high": 1, "t_min": 0, "t_max": 1}}}),
                "h_low",
            ),
            (
                serde_json::json!({"dynamic_temperature": {"mapping": {"kind": "linear", "h_low": 0, "h_high": 1, "t_min": 2, "t_max": 1}}}),
                "t_min",
            ),
            (
                serde_json::json!({"dynamic_temperature": {"mapping": {"kind": "sigmoid", "h_mid": 0, "steepness": 0, "t_min": 0, "t_max": 1}}}),
                "steepness",
            ),
            (
                serde_json::json!({"dynamic_temperature": {"mapping": {"kind": "lut", "entropies": [1, 1], "temperatures": [0, 1]}}}),
                "entropies[1]",
            ),
            (
                serde_json::json!({"dynamic_temperature": {"mapping": {"kind": "lut", "entropies": [1], "temperatures": [0, 1]}}}),
                "entropies",
            ),
            (
                serde_json::json!({"dynamic_temperature": {"mapping": {"kind": "edt", "t0": 1, "base": 1.0, "theta": 1}}}),
                "base",
            ),
            (
                serde_json::json!({"dynamic_temperature": {"unit": "bits", "mapping": {"kind": "llama_cpp", "range": 0.5, "exponent": 1}}}),
                "unit",
            ),
            (
                serde_json::json!({"dynamic_temperature": {"max_entropy": 2, "mapping": {"kind": "llama_cpp", "range": 0.5, "exponent": 1}}}),
                "max_entropy",
            ),
            (
                serde_json::json!({"top_p": 0.9, "dynamic_temperature": {"top_p": {"low": 0.8, "high": 0.95}, "mapping": {"kind": "linear", "h_low": 0, "h_high": 1, "t_min": 0, "t_max": 1}}}),
                "top_p",
            ),
            (
                serde_json::json!({"dynamic_temperature": {"top_p": {"low": 0.8, "high": 0.95}, "mapping": {"kind": "edt", "t0": 1, "theta": 1}}}),
                "top_p",
            ),
            (
                serde_json::json!({"order": "llama_cpp", "dynamic_temperature": {"top_p": {"low": 0.8, "high": 0.95}, "mapping": {"kind": "linear", "h_low": 0, "h_high": 1, "t_min": 0, "t_max": 1}}}),
                "top_p",
            ),
        ];
        for (value, field) in cases {
            let p = SamplingParams::from_json_value(7, value.clone()).unwrap();
            let e = p.validate(7, 10).unwrap_err().to_string();
            assert!(e.contains("row 7") && e.contains(field), "{value}: {e}");
        }
    }

    #[test]
    fn extended_samplers_validate_with_row_and_field() {
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (serde_json::json!({"typical_p": 0.0}), "typical_p"),
            (serde_json::json!({"typical_p": 1.5}), "typical_p"),
            (serde_json::json!({"typical_p": 1e-40}), "typical_p"),
            (
                serde_json::json!({"xtc_probability": 1.5}),
                "xtc_probability",
            ),
            (serde_json::json!({"xtc_threshold": -0.1}), "xtc_threshold"),
            (serde_json::json!({"epsilon_cutoff": 1.0}), "epsilon_cutoff"),
            (serde_json::json!({"eta_cutoff": -0.5}), "eta_cutoff"),
            (serde_json::json!({"dry_multiplier": -1}), "dry_multiplier"),
            (serde_json::json!({"dry_base": 0.5}), "dry_base"),
            (
                serde_json::json!({"dry_penalty_last_n": -2}),
                "dry_penalty_last_n",
            ),
            (
                serde_json::json!({"dry_sequence_breakers": [1, 10]}),
                "dry_sequence_breakers",
            ),
            (
                serde_json::json!({"mirostat": {"version": 2, "tau": -1}}),
                "mirostat.tau",
            ),
            (
                serde_json::json!({"mirostat": {"version": 1, "eta": 1e-42}}),
                "mirostat.eta",
            ),
            (
                serde_json::json!({"mirostat": {"version": 2}, "top_k": 5}),
                "top_k",
            ),
            (
                serde_json::json!({"mirostat": {"version": 2}, "xtc_probability": 0.5}),
                "xtc_probability",
            ),
        ];
        for (value, field) in cases {
            let p = SamplingParams::from_json_value(4, value.clone()).unwrap();
            let e = p.validate(4, 10).unwrap_err().to_string();
            assert!(e.contains("row 4") && e.contains(field), "{value}: {e}");
        }
        let p = SamplingParams {
            mirostat: Some(Mirostat::new(3)),
            ..Default::default()
        };
        let e = p.validate(0, 10).unwrap_err().to_string();
        assert!(e.contains("mirostat.version"), "{e}");
        let p = SamplingParams {
            top_n_sigma: f32::INFINITY,
            ..Default::default()
        };
        let e = p.validate(0, 10).unwrap_err().to_string();
        assert!(e.contains("top_n_sigma"), "{e}");
        let p = SamplingParams {
            dry_multiplier: 0.8,
            sequence: Some(SequenceState::new(&[1, 2])),
            ..Default::default()
        };
        let e = p.validate(0, 10).unwrap_err().to_string();
        assert!(
            e.contains("dry_multiplier") && e.contains("sequence"),
            "{e}"
        );
        // Integers out of their type name the field.
        let e = SamplingParams::from_json_value(2, serde_json::json!({"dry_allowed_length": -1}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("dry_allowed_length"), "{e}");
        let e =
            SamplingParams::from_json_value(2, serde_json::json!({"mirostat": {"version": 300}}))
                .unwrap_err()
                .to_string();
        assert!(e.contains("row 2") && e.contains("mirostat.version"), "{e}");
        let e = SamplingParams::from_json_value(
            2,
            serde_json::json!({"mirostat": {"version": 2, "bogus": 1}}),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn extended_defaults_and_the_guard() {
        let p: SamplingParams =
            serde_json::from_str(r#"{"mirostat": {"version": 2}, "dry_sequence_breakers": [3]}"#)
                .unwrap();
        let m = p.mirostat.clone().unwrap();
        assert_eq!((m.tau, m.eta, m.mu), (5.0, 0.1, None));
        assert_eq!(m.mu(), 10.0);
        assert_eq!(p.xtc_threshold, 0.1);
        assert_eq!(p.dry_base, 1.75);
        assert_eq!(p.dry_allowed_length, 2);
        assert_eq!(p.dry_penalty_last_n, -1);
        assert!(p.validate(0, 10).is_ok());
        assert!(!SamplingParams::default().uses_extended_samplers());
        // The threshold alone, or DRY with no window, turns nothing on.
        let quiet = SamplingParams {
            xtc_threshold: 0.3,
            dry_multiplier: 1.0,
            dry_penalty_last_n: 0,
            ..Default::default()
        };
        assert!(!quiet.uses_extended_samplers());
        for (p, field) in [
            (
                SamplingParams {
                    typical_p: 0.9,
                    ..Default::default()
                },
                "typical_p",
            ),
            (
                SamplingParams {
                    top_n_sigma: 1.0,
                    ..Default::default()
                },
                "top_n_sigma",
            ),
            (
                SamplingParams {
                    xtc_probability: 0.5,
                    ..Default::default()
                },
                "xtc_probability",
            ),
            (
                SamplingParams {
                    epsilon_cutoff: 0.01,
                    ..Default::default()
                },
                "epsilon_cutoff",
            ),
            (
                SamplingParams {
                    dry_multiplier: 0.8,
                    ..Default::default()
                },
                "dry_multiplier",
            ),
            (
                SamplingParams {
                    mirostat: Some(Mirostat::new(1)),
                    ..Default::default()
                },
                "mirostat",
            ),
        ] {
            assert_eq!(p.extended_sampler_field(), Some(field));
        }
        // Every order runs every stage once.
        for order in Order::ALL {
            let mut stages = order.truncation_stages();
            assert_eq!(stages.len(), 8);
            stages.sort_by_key(|s| format!("{s:?}"));
            stages.dedup();
            assert_eq!(stages.len(), 8, "{order:?}");
        }
    }

    #[test]
    fn lut_interpolates_and_clamps() {
        let e = [0.0, 1.0, 3.0];
        let t = [0.25, 1.0, 0.0];
        assert_eq!(lut(&e, &t, -1.0), 0.25);
        assert_eq!(lut(&e, &t, 5.0), 0.0);
        assert!((lut(&e, &t, 0.5) - 0.625).abs() < 1e-12);
        assert!((lut(&e, &t, 2.0) - 0.5).abs() < 1e-12);
        assert_eq!(lut(&e, &t, 1.0), 1.0);
    }
}
