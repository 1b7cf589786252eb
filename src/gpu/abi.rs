//! The host ↔ shader layout, typed (docs/spec.md §9): the per-row parameter
//! record the host writes, the per-chunk record, the per-row result record
//! the host reads, and the flag bits, codes and option bits they carry. Each
//! record is a `#[repr(C)]` + `bytemuck::Pod` struct of 4-byte fields, and the
//! WGSL side — the `Chunk` struct and every `M_*`, `R_*`, `F_*`, `E_*`,
//! `OPT_*` word offset or value — is generated from these definitions
//! ([`wgsl_header`]) and prepended to every sampling shader, so the two sides
//! cannot drift apart.

use bytemuck::{Pod, Zeroable};

/// Emits a `#[repr(C)]` Pod struct of 4-byte fields and the WGSL constants of
/// its fields' word offsets (`const M_TEMP: u32 = 1u;`).
macro_rules! abi_record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty => $wgsl:ident ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Pod, Zeroable)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty ),*
        }

        impl $name {
            /// Words of one record.
            pub const WORDS: usize = std::mem::size_of::<$name>() / 4;

            /// Every field as (Rust name, WGSL constant, word offset, words),
            /// in declaration order (what tests/gpu_abi.rs round-trips
            /// through a shader).
            pub const FIELDS: &'static [(&'static str, &'static str, usize, usize)] = &[
                $( (
                    stringify!($field),
                    stringify!($wgsl),
                    std::mem::offset_of!($name, $field) / 4,
                    std::mem::size_of::<$ty>() / 4,
                ) ),*
            ];

            /// The WGSL word offset of every field.
            #[allow(dead_code)]
            fn wgsl_offsets(out: &mut String) {
                $(
                    out.push_str(&format!(
                        "const {}: u32 = {}u;\n",
                        stringify!($wgsl),
                        std::mem::offset_of!($name, $field) / 4
                    ));
                )*
            }

            /// The record as a WGSL struct of u32 fields (for a uniform).
            #[allow(dead_code)]
            fn wgsl_struct(out: &mut String, wgsl_name: &str) {
                out.push_str(&format!("struct {wgsl_name} {{\n"));
                $(
                    assert_eq!(std::mem::size_of::<$ty>(), 4, "uniform fields are single words");
                    out.push_str(&format!("    {}: u32,\n", stringify!($field)));
                )*
                out.push_str("}\n");
            }
        }
    };
}

/// The most top-n log-probabilities a row returns (`logprobs`).
pub const NTOP_MAX: usize = 20;
/// Words of a row's top-n lists in the results: raw then processed,
/// (id, raw x) pairs each.
pub const TOPW: usize = 4 * NTOP_MAX;

abi_record! {
    /// One row's parameters (in `prm`, indexed by the row's batch index).
    /// Real numbers the device must match in f64 travel as two-float pairs
    /// (hi = the f64 rounded to f32, lo = the rest rounded).
    pub struct ParamRecord {
        /// [`RowFlags`] bits with the order, mapping and unit codes.
        pub flags: u32 => M_FLAGS,
        pub temperature: f32 => M_TEMP,
        /// 0 = off.
        pub top_k: u32 => M_TOPK,
        pub top_p: f32 => M_TOPP,
        pub min_p: f32 => M_MINP,
        /// ln(min_p) of the f64 min_p (0 when off).
        pub ln_min_p: f32 => M_LNMINP,
        pub min_tokens_to_keep: u32 => M_MINKEEP,
        /// High halves of the two-float penalties (lows at `*_lo`).
        pub repetition_hi: u32 => M_REP,
        pub frequency_hi: u32 => M_FREQ,
        pub presence_hi: u32 => M_PRES,
        /// The row's seed (lo, hi).
        pub seed: [u32; 2] => M_SEED,
        /// The row's step (lo, hi).
        pub step: [u32; 2] => M_STEP,
        /// First entry of the row's bias/penalty list in the patch region, and its length.
        pub patch_first: u32 => M_PATCH_E,
        pub patch_count: u32 => M_PATCH_N,
        /// Word offset (in `prm`) of the row's sorted allowed ids, and their count.
        pub allow_offset: u32 => M_ALLOW_OFF,
        pub allow_count: u32 => M_ALLOW_N,
        pub logprobs: u32 => M_LOGPROBS,
        /// The temperature of the statistics pass's sums.
        pub t_stats: f32 => M_TA,
        /// The entropy-guided temperature's numbers ([`dyn_slot`]).
        pub dynamic: [u32; 13] => M_DYN,
        pub repetition_lo: u32 => M_REP_LO,
        pub frequency_lo: u32 => M_FREQ_LO,
        pub presence_lo: u32 => M_PRES_LO,
        /// Temperature of the top-p prediction histogram ([`RowFlags::HIST_P`]).
        pub t_predict: f32 => M_TP,
        /// Top-nσ's n (docs/spec.md §3.10; [`RowFlags::NSIGMA`]).
        pub n_sigma: f32 => M_NSIG,
        /// typical_p (docs/spec.md §3.11; [`RowFlags::TYPICAL`]).
        pub typical_p: f32 => M_TYP,
        /// ln ε and ln η of the f64 cutoffs (docs/spec.md §3.12).
        pub ln_epsilon: f32 => M_LNEPS,
        pub ln_eta: f32 => M_LNETA,
        /// ln θ of XTC's threshold (−∞ for θ = 0; docs/spec.md §3.13).
        pub ln_xtc: f32 => M_LNXTC,
        /// Mirostat's mu as a two-float pair (docs/spec.md §3.15).
        pub mirostat_mu: [u32; 2] => M_MIROMU,
        pub reserved: [u32; 4] => M_RESERVED,
    }
}

/// Slots of [`ParamRecord::dynamic`] (shaders/mapping.wgsl reads them as
/// `M_DYN + slot`): `max_entropy` (f32), four mapping numbers as two-float
/// pairs (linear: h_low, h_high − h_low, t_min, t_max − t_min; sigmoid:
/// h_mid, steepness, t_min, t_max − t_min; edt: t0, θ·ln(base); llama.cpp:
/// t_min, t_max − t_min, exponent; a table: its offset and length as u32),
/// and the entropy-driven top-p's low and high − low (pairs).
pub mod dyn_slot {
    pub const MAX_ENTROPY: usize = 0;
    /// Pair k of the mapping's numbers starts at `NUMBERS + 2k`.
    pub const NUMBERS: usize = 1;
    pub const LUT_OFFSET: usize = 1;
    pub const LUT_LEN: usize = 2;
    pub const TOP_P_LOW: usize = 9;
    pub const TOP_P_SPAN: usize = 11;
}

abi_record! {
    /// The per-chunk record (`ch` in the shaders, bound read-only storage at
    /// a dynamic offset; common.wgsl says why not a uniform buffer): where a chunk's rows,
    /// logits and workspace regions are, and the call's options.
    pub struct ChunkUniform {
        /// Batch index of the chunk's first row, and its row count.
        pub row0: u32 => C_ROW0,
        pub rows: u32 => C_ROWS,
        pub vocab: u32 => C_VOCAB,
        /// Elements from one row's start to the next.
        pub stride: u32 => C_STRIDE,
        /// Element offset of row 0 in the bound logits.
        pub elem_off: u32 => C_ELEM_OFF,
        /// [`DtypeCode`].
        pub dtype: u32 => C_DTYPE,
        pub tiles: u32 => C_TILES,
        pub draws: u32 => C_DRAWS,
        pub ntop: u32 => C_NTOP,
        /// Words of one row of the packed allowed-token bitmask, and the first word.
        pub bm_words: u32 => C_BM_WORDS,
        pub bm_off: u32 => C_BM_OFF,
        /// Word offset of the patch region in `prm`.
        pub meta_patch: u32 => C_META_PATCH,
        /// Word offsets in `ws`: tile records, candidates, top-n lists, patched values.
        pub tl_base: u32 => C_TL_BASE,
        pub cd_base: u32 => C_CD_BASE,
        pub tn_base: u32 => C_TN_BASE,
        pub pv_base: u32 => C_PV_BASE,
        /// Word offsets in `outb`: result records, draws, top-n lists.
        pub res_base: u32 => C_RES_BASE,
        pub dr_base: u32 => C_DR_BASE,
        pub to_base: u32 => C_TO_BASE,
        /// The host call's number, written into every result record.
        pub call: u32 => C_CALL,
        /// Where the solver writes into `aux` (π rows or the caller's token buffer).
        pub aux_off: u32 => C_AUX_OFF,
        pub aux_stride: u32 => C_AUX_STRIDE,
        /// The bits of +∞ (WGSL has no infinite constant).
        pub inf_bits: u32 => C_INF_BITS,
        /// [`Opts`] bits.
        pub opts: u32 => C_OPTS,
        /// [`LaneOrder`](super::shaders::LaneOrder) code: which logical
        /// local id each invocation plays (race tests; 0 otherwise).
        pub lanes: u32 => C_LANES,
        pub p1: u32 => C_P1,
        pub p2: u32 => C_P2,
        pub p3: u32 => C_P3,
        pub p4: u32 => C_P4,
        pub p5: u32 => C_P5,
        pub p6: u32 => C_P6,
        pub p7: u32 => C_P7,
    }
}

abi_record! {
    /// One row's result (in `outb`, indexed by the row's batch index).
    /// Logprobs are computed on the host in f64 from raw logits (the token's
    /// and the argmax's) and the device's ln S, which keeps them exact where T
    /// is tiny and |logprob| is far beyond f32's resolution.
    pub struct ResultRecord {
        /// [`RowStatus`].
        pub status: u32 => R_STATUS,
        pub token: u32 => R_TOKEN,
        pub unused: u32 => R_UNUSED,
        /// Raw logit (f32 bits) of the token.
        pub token_x: u32 => R_TOKX,
        /// Entropy and varentropy (nats) at T = 1 after bias, mask and penalties.
        pub entropy: f32 => R_H,
        pub varentropy: f32 => R_VAR,
        pub guide_entropy: f32 => R_GUIDE,
        pub final_entropy: f32 => R_HF,
        pub temperature: f32 => R_T,
        pub top_p: f32 => R_TOPP,
        pub kept: u32 => R_KEPT,
        /// [`ErrorCode`], the id it is about, and the offending value (f32 bits).
        pub error_code: u32 => R_ERRC,
        pub error_index: u32 => R_ERRI,
        pub error_value: u32 => R_ERRV,
        /// Lengths of the raw and processed top-n lists.
        pub n_raw: u32 => R_NRAW,
        pub n_processed: u32 => R_NPROC,
        /// The row max and ln S of the processed distribution.
        pub max: f32 => R_M,
        pub ln_s: f32 => R_LNS,
        pub tau: u32 => R_TAU,
        /// Nonzero for a greedy row.
        pub greedy: u32 => R_GREEDY,
        /// Max and ln S of the raw logits.
        pub max_raw: f32 => R_MRAW,
        pub ln_s_raw: f32 => R_LNSRAW,
        /// The solver's reads of the row (the statistics pass not counted).
        pub passes: u32 => R_PASSES,
        /// Raw logit (f32 bits) of the row's argmax, the low half of the row
        /// max (processed logits are two-floats), and the argmax's id.
        pub argmax_x: u32 => R_ARGX,
        pub max_lo: u32 => R_MLO,
        pub argmax: u32 => R_ARG,
        /// The host call that wrote the record.
        pub call: u32 => R_CALL,
        /// The survivors are the finite ids with `tau ≤ key ≤ ceil`: a
        /// band once typical sampling or XTC has cut from above
        /// (docs/spec.md §3.11, §3.13); the largest key otherwise.
        pub ceil: u32 => R_CEIL,
        /// The id whose processed logit the sums (and `ln_s`) are relative
        /// to, and its raw logit (f32 bits): the row's argmax, or the
        /// largest survivor of a band.
        pub ref_id: u32 => R_REFID,
        pub ref_x: u32 => R_REFX,
        pub reserved: [u32; 2] => R_RESERVED,
    }
}

/// Bits and fields of [`ParamRecord::flags`].
pub struct RowFlags;

impl RowFlags {
    /// The row has an allowed-token list.
    pub const ALLOW: u32 = 1;
    /// The call has a packed allowed-token bitmask.
    pub const BITMASK: u32 = 2;
    /// [`OrderCode`] at bits 2–3.
    pub const ORDER_SHIFT: u32 = 2;
    /// Entropy-guided temperature.
    pub const DYN: u32 = 16;
    /// [`MappingCode`] at bits 5–7.
    pub const MAPPING_SHIFT: u32 = 5;
    /// [`UnitCode`] at bits 8–9.
    pub const UNIT_SHIFT: u32 = 8;
    pub const HAS_MAXENT: u32 = 1024;
    /// Entropy-driven top-p.
    pub const DYN_TOPP: u32 = 2048;
    /// The statistics pass histograms key digits (a count query follows).
    pub const HIST_A: u32 = 4096;
    /// The statistics pass histograms y in bins of T/16 (top-p prediction).
    pub const HIST_P: u32 = 8192;
    /// Top-nσ (docs/spec.md §3.10).
    pub const NSIGMA: u32 = 1 << 14;
    /// Locally typical sampling (docs/spec.md §3.11).
    pub const TYPICAL: u32 = 1 << 15;
    /// ε and η cutoffs (docs/spec.md §3.12).
    pub const EPSILON: u32 = 1 << 16;
    pub const ETA: u32 = 1 << 17;
    /// XTC runs at this step: its probability is > 0 and the row's coin
    /// (drawn on the host, docs/spec.md §3.13) fell below it.
    pub const XTC: u32 = 1 << 18;
    /// Mirostat version 1 or 2 replaces the truncation stages (docs/spec.md §3.15).
    pub const MIROSTAT1: u32 = 1 << 19;
    pub const MIROSTAT2: u32 = 1 << 20;

    const WGSL: [(&'static str, u32); 17] = [
        ("F_ALLOW", Self::ALLOW),
        ("F_BITMASK", Self::BITMASK),
        ("F_ORDER_SHIFT", Self::ORDER_SHIFT),
        ("F_DYN", Self::DYN),
        ("F_MAP_SHIFT", Self::MAPPING_SHIFT),
        ("F_UNIT_SHIFT", Self::UNIT_SHIFT),
        ("F_HAS_MAXENT", Self::HAS_MAXENT),
        ("F_DYN_TOPP", Self::DYN_TOPP),
        ("F_HIST_A", Self::HIST_A),
        ("F_HIST_P", Self::HIST_P),
        ("F_NSIGMA", Self::NSIGMA),
        ("F_TYPICAL", Self::TYPICAL),
        ("F_EPSILON", Self::EPSILON),
        ("F_ETA", Self::ETA),
        ("F_XTC", Self::XTC),
        ("F_MIRO1", Self::MIROSTAT1),
        ("F_MIRO2", Self::MIROSTAT2),
    ];
}

/// Bits of [`ChunkUniform::opts`].
pub struct Opts;

impl Opts {
    /// The solver writes each row's token into `aux` (the caller's buffer).
    pub const TOKENS: u32 = 1;
    /// Test hook: every top-p prediction misses (the exact fallback runs).
    pub const MISS: u32 = 2;

    const WGSL: [(&'static str, u32); 2] = [("OPT_TOKENS", Self::TOKENS), ("OPT_MISS", Self::MISS)];
}

/// Emits a `#[repr(u32)]` enum of codes and the WGSL constants of its values.
macro_rules! abi_codes {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $value:literal => $wgsl:ident ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name { $( $(#[$vmeta])* $variant = $value ),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn code(self) -> u32 {
                self as u32
            }

            pub fn from_code(code: u32) -> Option<$name> {
                $name::ALL.iter().copied().find(|v| v.code() == code)
            }

            fn wgsl(out: &mut String) {
                $( out.push_str(&format!("const {}: u32 = {}u;\n", stringify!($wgsl), $value)); )*
            }
        }
    };
}

abi_codes! {
    /// The stage order of a row (bits 2–3 of the flags).
    pub enum OrderCode {
        Standard = 0 => ORDER_STANDARD,
        Vllm = 1 => ORDER_VLLM,
        LlamaCpp = 2 => ORDER_LLAMA_CPP,
    }
}

abi_codes! {
    /// The entropy → temperature mapping (bits 5–7 of the flags).
    pub enum MappingCode {
        Linear = 0 => K_LINEAR,
        Sigmoid = 1 => K_SIGMOID,
        Lut = 2 => K_LUT,
        Edt = 3 => K_EDT,
        LlamaCpp = 4 => K_LLAMA,
    }
}

abi_codes! {
    /// The entropy unit of a mapping (bits 8–9 of the flags).
    pub enum UnitCode {
        Nats = 0 => UNIT_NATS,
        Bits = 1 => UNIT_BITS,
        Normalized = 2 => UNIT_NORMALIZED,
    }
}

abi_codes! {
    /// Element type of the bound logits ([`ChunkUniform::dtype`]).
    pub enum DtypeCode {
        F32 = 0 => DTYPE_F32,
        F16 = 1 => DTYPE_F16,
        Bf16 = 2 => DTYPE_BF16,
    }
}

abi_codes! {
    /// [`ResultRecord::status`].
    pub enum RowStatus {
        Ok = 1 => ROW_OK,
        Error = 2 => ROW_ERROR,
    }
}

abi_codes! {
    /// Why a row failed ([`ResultRecord::error_code`]).
    pub enum ErrorCode {
        /// A NaN or +inf logit.
        Logit = 1 => E_LOGIT,
        /// A bias made a logit non-finite.
        Bias = 2 => E_BIAS,
        /// The repetition penalty did.
        Repetition = 3 => E_REP,
        /// The frequency or presence penalty did.
        FrequencyPresence = 4 => E_FREQ,
        /// Nothing survived the mask.
        AllMasked = 5 => E_MASKED,
        /// The solver ran out of its bound on steps (a bug).
        Rounds = 6 => E_ROUNDS,
        /// The DRY penalty did (docs/spec.md §3.14).
        Dry = 7 => E_DRY,
    }
}

/// Words per patch entry (an id a bias, the history or the prompt names) in
/// the parameter words: `[id, bias f32 bits, cf = (count << 2) | (seen << 1)
/// | has_bias, row, dry_hi, dry_lo]`, the last two the two-float of the id's
/// DRY amount (docs/spec.md §3.14), zeros when it has none.
pub const PATCH_W: usize = 6;

/// The WGSL text of the whole layout, prepended to every sampling shader.
pub fn wgsl_header() -> String {
    let mut s = String::from("// Generated from src/gpu/abi.rs: do not edit in the shaders.\n");
    ChunkUniform::wgsl_struct(&mut s, "Chunk");
    s.push_str(&format!("const MR: u32 = {}u;\n", ParamRecord::WORDS));
    ParamRecord::wgsl_offsets(&mut s);
    s.push_str(&format!("const RES: u32 = {}u;\n", ResultRecord::WORDS));
    ResultRecord::wgsl_offsets(&mut s);
    s.push_str(&format!("const TOPW: u32 = {TOPW}u;\n"));
    s.push_str(&format!("const PATCH_W: u32 = {PATCH_W}u;\n"));
    for (name, v) in RowFlags::WGSL.iter().chain(Opts::WGSL.iter()) {
        s.push_str(&format!("const {name}: u32 = {v}u;\n"));
    }
    OrderCode::wgsl(&mut s);
    MappingCode::wgsl(&mut s);
    UnitCode::wgsl(&mut s);
    DtypeCode::wgsl(&mut s);
    RowStatus::wgsl(&mut s);
    ErrorCode::wgsl(&mut s);
    s
}

/// `x` as the two-float pair (hi, lo): hi = x rounded to f32, lo = the rest
/// rounded (about 48 bits of x).
pub fn two_float(x: f64) -> [u32; 2] {
    let hi = x as f32;
    [hi.to_bits(), ((x - hi as f64) as f32).to_bits()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_sizes_are_the_shaders_strides() {
        assert_eq!(ParamRecord::WORDS, 48);
        assert_eq!(ChunkUniform::WORDS, 32);
        assert_eq!(ResultRecord::WORDS, 32);
        assert_eq!(std::mem::offset_of!(ParamRecord, dynamic) / 4, 20);
        assert_eq!(std::mem::offset_of!(ParamRecord, t_predict) / 4, 36);
        assert_eq!(std::mem::offset_of!(ResultRecord, call) / 4, 26);
    }

    #[test]
    fn header_names_every_field_once() {
        let h = wgsl_header();
        for name in [
            "const M_TEMP: u32 = 1u;",
            "const M_DYN: u32 = 20u;",
            "const R_ARG: u32 = 25u;",
            "const PATCH_W: u32 = 6u;",
        ] {
            assert_eq!(h.matches(name).count(), 1, "{name} in\n{h}");
        }
        assert!(h.contains("struct Chunk {\n    row0: u32,"));
        assert!(h.contains("const E_ROUNDS: u32 = 6u;"));
        assert_eq!(ErrorCode::from_code(5), Some(ErrorCode::AllMasked));
        assert_eq!(ErrorCode::from_code(7), Some(ErrorCode::Dry));
        assert_eq!(ErrorCode::from_code(8), None);
    }

    #[test]
    fn fields_tile_each_record_without_gaps() {
        for (fields, words) in [
            (ParamRecord::FIELDS, ParamRecord::WORDS),
            (ChunkUniform::FIELDS, ChunkUniform::WORDS),
            (ResultRecord::FIELDS, ResultRecord::WORDS),
        ] {
            let mut next = 0;
            for &(_, _, off, n) in fields {
                assert_eq!(off, next);
                next += n;
            }
            assert_eq!(next, words);
        }
    }

    #[test]
    fn two_floats_carry_the_rest() {
        let x = std::f64::consts::PI;
        let [hi, lo] = two_float(x);
        let back = f32::from_bits(hi) as f64 + f32::from_bits(lo) as f64;
        assert!((back - x).abs() < 1e-14);
    }
}
