//! The WGSL sources, one job per file under `shaders/`, assembled from one
//! table: a generated constants header (sizes chosen from the adapter's
//! limits), the shared prelude, then the job itself.

/// Sizes baked into the shaders. Every per-row quantity is built from tiles of
/// `tile` ids, so these depend only on the device, never on the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ShaderConsts {
    /// Invocations per workgroup.
    pub wg: u32,
    /// Ids per tile (a multiple of 32 and of `wg`).
    pub tile: u32,
    /// Candidate capacity per row (ids near a threshold, solved exactly).
    pub cap: u32,
    /// Bits of the first radix digit histogrammed in the statistics pass.
    pub ha_bits: u32,
    /// Bins of the later histogram passes.
    pub nb: u32,
    /// Invocations of the row solver's workgroup (one per row). Its work is
    /// short loops between many workgroup barriers, so a narrow group
    /// finishes sooner; it must be a power of two.
    pub solve_wg: u32,
    /// Which physical invocation plays which logical local id (and in which
    /// order workgroups take their tiles and rows): [`LaneOrder::Natural`]
    /// except in race tests. Not compiled in: a call carries it in its chunk
    /// record (`ChunkUniform::lanes`), so every order runs the same
    /// pipelines (and a software adapter compiles them once).
    pub lanes: LaneOrder,
}

/// A race detector built from a deterministic scheduler. lavapipe runs a
/// workgroup's invocations in SIMD groups of 8, switching only at barriers and
/// always in ascending invocation order, so a race between invocations of one
/// barrier interval (a higher id overwriting what a lower id has yet to read)
/// always resolves the same way there, and a real GPU's warps, running in any
/// order, are what shows it. Remapping the logical local id (and reversing the
/// workgroup order) makes the same scheduler run the shaders' invocations in
/// other orders: results that change, or a hang, under a permutation are a
/// race. Every order computes the same results on a race-free shader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LaneOrder {
    /// Logical id = physical id.
    #[default]
    Natural,
    /// WG − 1 − p, workgroups in reverse order.
    Reversed,
    /// Each physical SIMD group of 8 holds ids spread over the whole
    /// workgroup, descending; workgroups in reverse order.
    Interleaved,
    /// An odd-multiplier scramble, (37·p + 11) mod WG; workgroups in reverse
    /// order.
    Scattered,
}

impl LaneOrder {
    pub const ALL: [LaneOrder; 4] = [
        LaneOrder::Natural,
        LaneOrder::Reversed,
        LaneOrder::Interleaved,
        LaneOrder::Scattered,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LaneOrder::Natural => "natural",
            LaneOrder::Reversed => "reversed",
            LaneOrder::Interleaved => "interleaved",
            LaneOrder::Scattered => "scattered",
        }
    }

    /// The order `TOKEN_SAMPLER_LANE_ORDER` names (for running whole test
    /// binaries under a permutation); natural when unset.
    pub fn from_env() -> Result<LaneOrder, String> {
        match std::env::var("TOKEN_SAMPLER_LANE_ORDER") {
            Err(_) => Ok(LaneOrder::Natural),
            Ok(v) => LaneOrder::ALL
                .into_iter()
                .find(|o| o.name() == v.trim().to_lowercase())
                .ok_or_else(|| {
                    format!("TOKEN_SAMPLER_LANE_ORDER=`{v}`: natural, reversed, interleaved or scattered")
                }),
        }
    }

    /// The order's code in [`ChunkUniform::lanes`](super::abi::ChunkUniform).
    pub fn code(self) -> u32 {
        match self {
            LaneOrder::Natural => 0,
            LaneOrder::Reversed => 1,
            LaneOrder::Interleaved => 2,
            LaneOrder::Scattered => 3,
        }
    }
}

/// `lane(p)`: the logical local id of physical invocation p; `group(i, n)`:
/// the logical index of workgroup i of n along one dimension, in the order
/// the chunk record names (`ch.lanes`, [`LaneOrder::code`]). WG is a power
/// of two and a multiple of 8, so each map is a bijection.
const LANE_FNS: &str = "\
fn lane(p: u32) -> u32 {
    if (ch.lanes == 1u) { return WG - 1u - p; }
    if (ch.lanes == 2u) { let q = WG - 1u - p; return (q % 8u) * (WG / 8u) + q / 8u; }
    if (ch.lanes == 3u) { return (37u * p + 11u) & (WG - 1u); }
    return p;
}
fn group(i: u32, n: u32) -> u32 { return select(i, n - 1u - i, ch.lanes != 0u); }
";

impl Default for ShaderConsts {
    fn default() -> Self {
        ShaderConsts {
            wg: 128,
            tile: 1024,
            cap: 2048,
            ha_bits: 12,
            nb: 256,
            solve_wg: 64,
            lanes: LaneOrder::Natural,
        }
    }
}

/// The group size of a two-level workgroup sum: the least power of two
/// whose square is at least `wg` (16 for 256 invocations, 8 for 64).
fn sq_of(wg: u32) -> u32 {
    let mut sq = 1;
    while sq * sq < wg {
        sq *= 2;
    }
    sq
}

impl ShaderConsts {
    pub fn header(&self) -> String {
        assert!(
            self.tile.is_multiple_of(4 * self.wg) && self.tile / 32 <= self.wg,
            "tiles are a multiple of 4 ids per invocation and one bitmap word per invocation at most"
        );
        format!(
            "const WG: u32 = {}u;\nconst TILE: u32 = {}u;\nconst EPT: u32 = {}u;\nconst CAP: u32 = {}u;\n\
             const HA_BITS: u32 = {}u;\nconst HA_BINS: u32 = {}u;\nconst NB: u32 = {}u;\n\
             const SQ: u32 = {}u;\n",
            self.wg,
            self.tile,
            self.tile / self.wg,
            self.cap,
            self.ha_bits,
            1u32 << self.ha_bits,
            self.nb,
            sq_of(self.wg),
        )
    }
}

/// What a call's rows use, compiled in or out of a pipeline variant: code a
/// call needs no row of is not in the shader it runs (a software adapter
/// such as lavapipe runs both sides of every branch under a mask, so dead
/// code costs there as much as live code). The sampler uses three variants:
/// none, histograms only, and all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Features(pub u8);

impl Features {
    /// Bias or penalty entries (patched logits).
    pub const PATCH: Features = Features(1);
    /// Allowed-token lists or bitmasks.
    pub const ALLOW: Features = Features(2);
    /// A histogram in the statistics pass (top-k, min_tokens_to_keep, top-p prediction).
    pub const HIST: Features = Features(4);
    /// Top-n log-probabilities.
    pub const TOPN: Features = Features(8);
    pub const NONE: Features = Features(0);
    pub const ALL: Features = Features(15);

    pub fn has(self, f: Features) -> bool {
        self.0 & f.0 == f.0
    }

    pub fn with(self, f: Features, on: bool) -> Features {
        if on {
            Features(self.0 | f.0)
        } else {
            self
        }
    }

    fn header(self) -> String {
        format!(
            "const HAS_PATCH: bool = {};\nconst HAS_ALLOW: bool = {};\nconst HAS_HIST: bool = {};\nconst HAS_TOPN: bool = {};\n",
            self.has(Self::PATCH),
            self.has(Self::ALLOW),
            self.has(Self::HIST),
            self.has(Self::TOPN)
        )
    }
}

const COMMON: &str = include_str!("../../shaders/common.wgsl");
const PHILOX: &str = include_str!("../../shaders/philox.wgsl");
const MAPPING: &str = include_str!("../../shaders/mapping.wgsl");
const TWOFLOAT: &str = include_str!("../../shaders/twofloat.wgsl");

const DRAW: &str = include_str!("../../shaders/draw.wgsl");

/// Which pieces a job is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    Stats,
    Solve,
    Pick,
    Probs,
    /// The processed top-n of rows whose survivors are a band.
    BandTopn,
    Stream,
    PhiloxCheck,
}

impl Job {
    pub const ALL: [Job; 7] = [
        Job::Stats,
        Job::Solve,
        Job::Pick,
        Job::Probs,
        Job::BandTopn,
        Job::Stream,
        Job::PhiloxCheck,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::Stats => "stats",
            Job::Solve => "solve",
            Job::Pick => "pick",
            Job::Probs => "probs",
            Job::BandTopn => "band_topn",
            Job::Stream => "stream",
            Job::PhiloxCheck => "philox_check",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Job::Stats => include_str!("../../shaders/stats.wgsl"),
            Job::Solve => include_str!("../../shaders/solve.wgsl"),
            Job::Pick => include_str!("../../shaders/pick.wgsl"),
            Job::Probs => include_str!("../../shaders/probs.wgsl"),
            Job::BandTopn => include_str!("../../shaders/band_topn.wgsl"),
            Job::Stream => include_str!("../../shaders/stream.wgsl"),
            Job::PhiloxCheck => include_str!("../../shaders/philox_check.wgsl"),
        }
    }

    /// The workgroup size this job is built for: the solver's for the solver
    /// and for `pick`, whose draws must repeat the solver's arithmetic.
    pub fn wg(self, consts: &ShaderConsts) -> u32 {
        match self {
            Job::Solve | Job::Pick => consts.solve_wg,
            _ => consts.wg,
        }
    }

    /// The complete WGSL source of this job for the given sizes, every
    /// feature compiled in.
    pub fn source(self, consts: &ShaderConsts) -> String {
        self.source_with(consts, Features::ALL)
    }

    /// The WGSL source of the variant with only `features` compiled in.
    pub fn source_with(self, consts: &ShaderConsts, features: Features) -> String {
        let mut s = ShaderConsts {
            wg: self.wg(consts),
            ..*consts
        }
        .header();
        s.push_str(&features.header());
        match self {
            Job::PhiloxCheck => s.push_str(PHILOX),
            Job::Stream => {}
            _ => {
                s.push_str(&super::abi::wgsl_header());
                s.push_str(COMMON);
                s.push_str(LANE_FNS);
                if matches!(self, Job::Stats | Job::Solve) {
                    s.push_str(TWOFLOAT);
                }
                if matches!(self, Job::Solve | Job::Pick) {
                    s.push_str(PHILOX);
                    s.push_str(DRAW);
                }
                if matches!(self, Job::Solve) {
                    s.push_str(MAPPING);
                }
            }
        }
        s.push_str(self.body());
        unroll_by_4(&unroll_trees(&s, self.wg(consts), consts.nb))
    }
}

/// Every per-invocation element loop `for (var j = 0u; j < EPT; j++) { … }`
/// (EPT is a multiple of 4; the bodies have no `break` or `continue`) as a
/// loop over groups of four with the body written out four times: a quarter
/// of the loop iterations (see [`unroll_trees`] on why they are counted) and
/// four independent loads in flight per iteration.
pub fn unroll_by_4(src: &str) -> String {
    const HEAD: &str = "for (var j = 0u; j < EPT; j++) {";
    let mut out = String::with_capacity(src.len() * 2);
    let mut rest = src;
    while let Some(at) = rest.find(HEAD) {
        out.push_str(&rest[..at]);
        let open = at + HEAD.len() - 1;
        let close = matching_brace(rest, open);
        let body = &rest[open + 1..close];
        out.push_str("for (var j4 = 0u; j4 < EPT; j4 += 4u) {\n");
        for k in 0..4 {
            out.push_str(&format!("{{ let j = j4 + {k}u;{body}}}\n"));
        }
        out.push('}');
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The offset of the `}` closing the `{` at `open`.
fn matching_brace(src: &str, open: usize) -> usize {
    let mut depth = 0usize;
    for (i, ch) in src[open..].char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return open + i;
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced braces in a shader")
}

/// Writes out the workgroup reduction and scan trees (`for (var s = WG / 2u;
/// s > 0u; s >>= 1u) { … }` and `for (var s = 1u; s < WG; s <<= 1u) { … }`,
/// `st` as the variable too; the upper bound may also be `NB`) and the
/// serial steps of the two-level reductions (`for (var q = 1u; q < SQ; q++)
/// { … }`, bounds `SQ` or `WG / SQ`, from 0 or 1, `k` as the variable too)
/// as straight-line steps for this workgroup size: no loop
/// counters, and no loop iterations — lavapipe ends every loop of a shader
/// invocation once all its loops together have iterated 65 535 times, and the
/// row solver's own reads need that budget.
pub fn unroll_trees(src: &str, wg: u32, nb: u32) -> String {
    let mut out = String::with_capacity(src.len() * 2);
    let mut rest = src;
    while let Some((at, var, steps)) = next_tree(rest, wg, nb) {
        out.push_str(&rest[..at]);
        let open = at + rest[at..].find('{').expect("loop body");
        let close = matching_brace(rest, open);
        let body = &rest[open + 1..close];
        for v in steps {
            out.push_str(&format!("{{ let {var} = {v}u;{body}}}\n"));
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The next tree loop in `src`: its offset, variable and step values.
fn next_tree(src: &str, wg: u32, nb: u32) -> Option<(usize, String, Vec<u32>)> {
    let mut best: Option<(usize, String, Vec<u32>)> = None;
    // The serial steps of the two-level reductions and scans (common.wgsl):
    // `for (var q = A; q < SQ; q++)` and `… q < WG / SQ; …`, A 0 or 1.
    let sq = sq_of(wg);
    for var in ["q", "k"] {
        for (from, bound, n) in [
            (0, "SQ", sq),
            (1, "SQ", sq),
            (0, "WG / SQ", wg / sq),
            (1, "WG / SQ", wg / sq),
        ] {
            let pat = format!("for (var {var} = {from}u; {var} < {bound}; {var}++) {{");
            if let Some(at) = src.find(&pat) {
                if best.as_ref().is_none_or(|b| at < b.0) {
                    best = Some((at, var.to_string(), (from..n).collect()));
                }
            }
        }
    }
    for var in ["s", "st"] {
        let down = format!("for (var {var} = WG / 2u; {var} > 0u; {var} >>= 1u) {{");
        let down_nb = format!("for (var {var} = NB / 2u; {var} > 0u; {var} >>= 1u) {{");
        let up = format!("for (var {var} = 1u; {var} < WG; {var} <<= 1u) {{");
        let mut halves: Vec<u32> =
            std::iter::successors(Some(wg / 2), |&x| (x > 1).then_some(x / 2))
                .filter(|&x| x > 0)
                .collect();
        let nb_halves: Vec<u32> =
            std::iter::successors(Some(nb / 2), |&x| (x > 1).then_some(x / 2)).collect();
        for (pat, steps) in [
            (down, halves.clone()),
            (down_nb, nb_halves),
            (up, {
                halves.reverse();
                halves.clone()
            }),
        ] {
            if let Some(at) = src.find(&pat) {
                if best.as_ref().is_none_or(|b| at < b.0) {
                    best = Some((at, var.to_string(), steps));
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_unroll_to_straight_steps() {
        let src = "a\nfor (var s = WG / 2u; s > 0u; s >>= 1u) {\n    if (x) { y(s); }\n}\nb\nfor (var st = 1u; st < WG; st <<= 1u) { z(st); }\nc";
        let out = unroll_trees(src, 8, 256);
        assert_eq!(
            out,
            "a\n{ let s = 4u;\n    if (x) { y(s); }\n}\n{ let s = 2u;\n    if (x) { y(s); }\n}\n{ let s = 1u;\n    if (x) { y(s); }\n}\n\nb\n{ let st = 1u; z(st); }\n{ let st = 2u; z(st); }\n{ let st = 4u; z(st); }\n\nc"
        );
    }

    #[test]
    fn serial_steps_unroll_for_the_workgroup_size() {
        assert_eq!((sq_of(256), sq_of(64), sq_of(8), sq_of(1)), (16, 8, 4, 1));
        let src =
            "for (var q = 1u; q < SQ; q++) { a(q); }|for (var k = 0u; k < WG / SQ; k++) { b(k); }";
        let out = unroll_trees(src, 8, 256);
        assert_eq!(
            out,
            "{ let q = 1u; a(q); }\n{ let q = 2u; a(q); }\n{ let q = 3u; a(q); }\n|{ let k = 0u; b(k); }\n{ let k = 1u; b(k); }\n"
        );
    }

    #[test]
    fn no_tree_loop_survives_assembly() {
        let c = ShaderConsts::default();
        for job in Job::ALL {
            let src = job.source(&c);
            assert!(
                !src.contains("s >>= 1u) {") && !src.contains("<<= 1u) {"),
                "{}",
                job.name()
            );
            assert!(!src.contains("j < EPT; j++"), "{}", job.name());
            // The statistics pass's wg_sum2 keeps its serial steps as loops
            // on purpose (common.wgsl `from1`); nothing else does.
            let kept = ["from1(); q < SQ;", "from1(); q < WG / SQ;"];
            assert_eq!(
                kept.iter().all(|k| src.contains(k)),
                matches!(job, Job::Stats),
                "{}",
                job.name()
            );
            let rest = kept.iter().fold(src.clone(), |s, k| s.replace(k, ""));
            assert!(
                !rest.contains("< SQ;") && !rest.contains("< WG / SQ;"),
                "{}",
                job.name()
            );
        }
    }
}
