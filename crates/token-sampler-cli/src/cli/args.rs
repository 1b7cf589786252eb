//! Arguments shared by several commands: where the logits come from, how the
//! per-row parameters are assembled (defaults < preset < params file < flags,
//! docs/spec.md §8), and which backend runs.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{Map, Value};

use token_sampler::{open, open_default, BackendKind, Sampler};
use token_sampler::{preset, Batch, Order, RawDtype, SamplingParams};

#[derive(Debug, Args, Clone)]
pub struct InputArgs {
    /// Logits: .npy (f32/f16, [B, V] or [V]), .json ([[…],…] or […]; -Infinity
    /// allowed), or a raw little-endian file with --dtype and --vocab.
    #[arg(long, value_name = "FILE")]
    pub logits: PathBuf,
    /// Element type of a raw logits file.
    #[arg(long, value_name = "f32|f16|bf16", requires = "vocab")]
    pub dtype: Option<RawDtype>,
    /// Vocabulary size (row length) of a raw logits file.
    #[arg(long, value_name = "V", requires = "dtype", allow_negative_numbers = true, value_parser = unsigned::<usize>)]
    pub vocab: Option<usize>,
}

impl InputArgs {
    pub fn load(&self) -> anyhow::Result<Batch> {
        let raw = self.dtype.zip(self.vocab);
        Ok(Batch::load(&self.logits, raw)?)
    }
}

/// Per-row sampling parameters. Flags apply to every row and win over the
/// params file, which wins over the preset.
#[derive(Debug, Args, Clone, Default)]
pub struct ParamArgs {
    /// JSON parameters: one object for every row, or an array of exactly B objects.
    #[arg(long, value_name = "FILE")]
    pub params: Option<PathBuf>,
    /// A named preset (see `token-sampler presets`).
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Temperature (0 = greedy).
    #[arg(long, allow_negative_numbers = true)]
    pub temperature: Option<f32>,
    /// Top-k (0 or -1 = off).
    #[arg(long, allow_negative_numbers = true)]
    pub top_k: Option<i32>,
    /// Top-p in (0, 1] (1 = off).
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f32>,
    /// Min-p in [0, 1] (0 = off).
    #[arg(long, allow_negative_numbers = true)]
    pub min_p: Option<f32>,
    /// Truncation never leaves fewer tokens than this.
    #[arg(long, allow_negative_numbers = true, value_parser = unsigned::<u32>)]
    pub min_tokens_to_keep: Option<u32>,
    /// Repetition penalty (> 0, 1 = off).
    #[arg(long, allow_negative_numbers = true)]
    pub repetition_penalty: Option<f32>,
    /// Presence penalty (0 = off).
    #[arg(long, allow_negative_numbers = true)]
    pub presence_penalty: Option<f32>,
    /// Frequency penalty (0 = off).
    #[arg(long, allow_negative_numbers = true)]
    pub frequency_penalty: Option<f32>,
    /// Random seed for every row (default: a fresh one per row, reported back).
    #[arg(long, allow_negative_numbers = true, value_parser = unsigned::<u64>)]
    pub seed: Option<u64>,
    /// The generation step (part of the random key).
    #[arg(long, allow_negative_numbers = true, value_parser = unsigned::<u64>)]
    pub step: Option<u64>,
    /// Return this many top log-probabilities per row (≤ 20).
    #[arg(long, allow_negative_numbers = true, value_parser = unsigned::<u32>)]
    pub logprobs: Option<u32>,
    /// Stage order: standard, vllm or llama_cpp.
    #[arg(long)]
    pub order: Option<Order>,
    /// Locally typical sampling in (0, 1] (1 = off; docs/spec.md §3.11).
    #[arg(long, allow_negative_numbers = true)]
    pub typical_p: Option<f32>,
    /// Keep logits ≥ max − n·σ (≤ 0 = off; docs/spec.md §3.10).
    #[arg(long, allow_negative_numbers = true)]
    pub top_n_sigma: Option<f32>,
    /// XTC's probability threshold in [0, 1] (default 0.1; docs/spec.md §3.13).
    #[arg(long, allow_negative_numbers = true)]
    pub xtc_threshold: Option<f32>,
    /// XTC's chance per step in [0, 1] (0 = off).
    #[arg(long, allow_negative_numbers = true)]
    pub xtc_probability: Option<f32>,
    /// Drop tokens with probability < ε, in [0, 1) (0 = off; docs/spec.md §3.12).
    #[arg(long, allow_negative_numbers = true)]
    pub epsilon_cutoff: Option<f32>,
    /// Drop tokens with probability < min(η, √η·e^(−H)), in [0, 1) (0 = off).
    #[arg(long, allow_negative_numbers = true)]
    pub eta_cutoff: Option<f32>,
    /// DRY penalty multiplier (0 = off; docs/spec.md §3.14).
    #[arg(long, allow_negative_numbers = true)]
    pub dry_multiplier: Option<f32>,
    /// DRY growth base (≥ 1, default 1.75).
    #[arg(long, allow_negative_numbers = true)]
    pub dry_base: Option<f32>,
    /// DRY: repeats up to this length are free (default 2).
    #[arg(long, allow_negative_numbers = true, value_parser = unsigned::<u32>)]
    pub dry_allowed_length: Option<u32>,
    /// DRY looks at the last n tokens of prompt + history (-1 = all, 0 = off).
    #[arg(long, allow_negative_numbers = true)]
    pub dry_penalty_last_n: Option<i32>,
    /// DRY sequence breakers: token ids, comma-separated (e.g. 1,2,3).
    #[arg(long, value_name = "IDS", value_delimiter = ',', allow_negative_numbers = true, value_parser = unsigned::<u32>)]
    pub dry_sequence_breakers: Option<Vec<u32>>,
    /// Mirostat version 1 or 2 (docs/spec.md §3.15); replaces truncation.
    #[arg(long, value_name = "1|2", allow_negative_numbers = true, value_parser = mirostat_version)]
    pub mirostat: Option<u8>,
    /// Mirostat's target surprise in bits (default 5).
    #[arg(long, allow_negative_numbers = true)]
    pub mirostat_tau: Option<f32>,
    /// Mirostat's learning rate (default 0.1).
    #[arg(long, allow_negative_numbers = true)]
    pub mirostat_eta: Option<f32>,
    /// Mirostat's current mu (default 2·tau): pass the previous step's `mirostat_mu`.
    #[arg(long, allow_negative_numbers = true)]
    pub mirostat_mu: Option<f32>,
}

fn mirostat_version(s: &str) -> Result<u8, String> {
    match s.trim() {
        "1" => Ok(1),
        "2" => Ok(2),
        other => Err(format!("expected 1 or 2 (got {other})")),
    }
}

/// The value parser of every unsigned flag: a negative number says it must
/// be ≥ 0 (clap alone would call `-1` an unexpected argument), a number past
/// the type's range says so.
pub fn unsigned<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr + num_bound::Max,
{
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("must be ≥ 0 (got {t})"));
    }
    t.parse::<T>()
        .map_err(|_| format!("expected a whole number from 0 to {}", T::MAX_STR))
}

/// The largest value of each unsigned flag type, for messages.
pub mod num_bound {
    pub trait Max {
        const MAX_STR: &'static str;
    }
    impl Max for u32 {
        const MAX_STR: &'static str = "4294967295";
    }
    impl Max for u64 {
        const MAX_STR: &'static str = "18446744073709551615";
    }
    impl Max for usize {
        const MAX_STR: &'static str = "18446744073709551615";
    }
}

fn merge(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        into.insert(k.clone(), v.clone());
    }
}

impl ParamArgs {
    /// The flags that were given, as a JSON object. A real-valued flag must
    /// be a finite number (JSON has no NaN or infinity to carry it).
    fn flags(&self) -> anyhow::Result<Map<String, Value>> {
        for (name, v) in [
            ("--temperature", self.temperature),
            ("--top-p", self.top_p),
            ("--min-p", self.min_p),
            ("--repetition-penalty", self.repetition_penalty),
            ("--presence-penalty", self.presence_penalty),
            ("--frequency-penalty", self.frequency_penalty),
            ("--typical-p", self.typical_p),
            ("--top-n-sigma", self.top_n_sigma),
            ("--xtc-threshold", self.xtc_threshold),
            ("--xtc-probability", self.xtc_probability),
            ("--epsilon-cutoff", self.epsilon_cutoff),
            ("--eta-cutoff", self.eta_cutoff),
            ("--dry-multiplier", self.dry_multiplier),
            ("--dry-base", self.dry_base),
            ("--mirostat-tau", self.mirostat_tau),
            ("--mirostat-eta", self.mirostat_eta),
            ("--mirostat-mu", self.mirostat_mu),
        ] {
            if let Some(v) = v.filter(|v| !v.is_finite()) {
                bail!("{name} {v}: expected a finite number");
            }
        }
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        put("temperature", self.temperature.map(Value::from));
        put("top_k", self.top_k.map(Value::from));
        put("top_p", self.top_p.map(Value::from));
        put("min_p", self.min_p.map(Value::from));
        put(
            "min_tokens_to_keep",
            self.min_tokens_to_keep.map(Value::from),
        );
        put(
            "repetition_penalty",
            self.repetition_penalty.map(Value::from),
        );
        put("presence_penalty", self.presence_penalty.map(Value::from));
        put("frequency_penalty", self.frequency_penalty.map(Value::from));
        put("seed", self.seed.map(Value::from));
        put("step", self.step.map(Value::from));
        put("logprobs", self.logprobs.map(Value::from));
        put("order", self.order.map(|o| Value::from(o.name())));
        put("typical_p", self.typical_p.map(Value::from));
        put("top_n_sigma", self.top_n_sigma.map(Value::from));
        put("xtc_threshold", self.xtc_threshold.map(Value::from));
        put("xtc_probability", self.xtc_probability.map(Value::from));
        put("epsilon_cutoff", self.epsilon_cutoff.map(Value::from));
        put("eta_cutoff", self.eta_cutoff.map(Value::from));
        put("dry_multiplier", self.dry_multiplier.map(Value::from));
        put("dry_base", self.dry_base.map(Value::from));
        put(
            "dry_allowed_length",
            self.dry_allowed_length.map(Value::from),
        );
        put(
            "dry_penalty_last_n",
            self.dry_penalty_last_n.map(Value::from),
        );
        put(
            "dry_sequence_breakers",
            self.dry_sequence_breakers.clone().map(Value::from),
        );
        put(
            "mirostat",
            self.mirostat
                .map(|v| Value::Object(Map::from_iter([("version".into(), Value::from(v))]))),
        );
        Ok(m)
    }

    /// `--mirostat-tau/-eta/-mu` go into the row's `mirostat` object (from
    /// `--mirostat`, the params file or the preset); without one they are an
    /// error, not ignored.
    fn mirostat_fields(&self, row: usize, obj: &mut Map<String, Value>) -> anyhow::Result<()> {
        let fields = [
            ("tau", "--mirostat-tau", self.mirostat_tau),
            ("eta", "--mirostat-eta", self.mirostat_eta),
            ("mu", "--mirostat-mu", self.mirostat_mu),
        ];
        for (key, flag, v) in fields {
            let Some(v) = v else { continue };
            match obj.get_mut("mirostat") {
                Some(Value::Object(m)) => {
                    m.insert(key.into(), Value::from(v));
                }
                _ => bail!(
                    "row {row}: {flag} needs --mirostat 1|2 (or a mirostat object in --params)"
                ),
            }
        }
        Ok(())
    }

    /// One `SamplingParams` per row: defaults < preset < params file < flags.
    pub fn build(&self, rows: usize) -> anyhow::Result<Vec<SamplingParams>> {
        let mut base = Map::new();
        if let Some(name) = &self.preset {
            let p = preset(name)?;
            merge(
                &mut base,
                p.to_json().as_object().expect("preset is an object"),
            );
        }
        let mut per_row = vec![base; rows];
        if let Some(path) = &self.params {
            let file = read_params_file(path)?;
            match file {
                Value::Object(obj) => per_row.iter_mut().for_each(|r| merge(r, &obj)),
                Value::Array(items) => {
                    if items.len() != rows {
                        bail!(
                            "{}: {} parameter objects for {} rows of logits (give one object, or exactly one per row)",
                            path.display(),
                            items.len(),
                            rows
                        );
                    }
                    for (row, (dst, item)) in per_row.iter_mut().zip(items).enumerate() {
                        match item {
                            Value::Object(obj) => merge(dst, &obj),
                            other => bail!(
                                "{}: row {row}: expected a parameter object, found {}",
                                path.display(),
                                kind_of(&other)
                            ),
                        }
                    }
                }
                other => bail!(
                    "{}: expected a parameter object or an array of them, found {}",
                    path.display(),
                    kind_of(&other)
                ),
            }
        }
        let flags = self.flags()?;
        per_row
            .into_iter()
            .enumerate()
            .map(|(row, mut obj)| {
                merge(&mut obj, &flags);
                self.mirostat_fields(row, &mut obj)?;
                Ok(SamplingParams::from_json_value(row, Value::Object(obj))?)
            })
            .collect()
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn read_params_file(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read params file {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))
}

#[derive(Debug, Args, Clone, Default)]
pub struct BackendArgs {
    /// reference, cpu or gpu. Default: gpu on a hardware adapter, else cpu.
    /// An explicit `gpu` also accepts a software adapter (lavapipe).
    #[arg(long)]
    pub backend: Option<BackendKind>,
}

impl BackendArgs {
    /// Opens the chosen backend and says on stderr which one runs.
    pub fn open(&self) -> anyhow::Result<Box<dyn Sampler>> {
        match self.backend {
            Some(kind) => {
                let s = open(kind, true)?;
                eprintln!("token-sampler: backend {} on {}", kind, s.device());
                Ok(s)
            }
            None => {
                let (s, why) = open_default()?;
                eprintln!("token-sampler: {why} (default; choose with --backend)");
                Ok(s)
            }
        }
    }
}
