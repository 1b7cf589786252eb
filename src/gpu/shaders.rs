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
    /// except in race tests.
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

    fn code(self) -> u32 {
        match self {
            LaneOrder::Natural => 0,
            LaneOrder::Reversed => 1,
            LaneOrder::Interleaved => 2,
            LaneOrder::Scattered => 3,
        }
    }
}

/// `lane(p)`: the logical local id of physical invocation p; `group(i, n)`:
/// the logical index of workgroup i of n along one dimension. WG is a power
/// of two and a multiple of 8, so each map is a bijection.
const LANE_FNS: &str = "\
fn lane(p: u32) -> u32 {
    if (LANE_ORDER == 1u) { return WG - 1u - p; }
    if (LANE_ORDER == 2u) { let q = WG - 1u - p; return (q % 8u) * (WG / 8u) + q / 8u; }
    if (LANE_ORDER == 3u) { return (37u * p + 11u) & (WG - 1u); }
    return p;
}
fn group(i: u32, n: u32) -> u32 { return select(i, n - 1u - i, LANE_ORDER != 0u); }
";

impl Default for ShaderConsts {
    fn default() -> Self {
        ShaderConsts {
            wg: 256,
            tile: 1024,
            cap: 2048,
            ha_bits: 12,
            nb: 256,
            solve_wg: 64,
            lanes: LaneOrder::Natural,
        }
    }
}

impl ShaderConsts {
    pub fn header(&self) -> String {
        format!(
            "const WG: u32 = {}u;\nconst TILE: u32 = {}u;\nconst EPT: u32 = {}u;\nconst CAP: u32 = {}u;\n\
             const HA_BITS: u32 = {}u;\nconst HA_BINS: u32 = {}u;\nconst NB: u32 = {}u;\n\
             const LANE_ORDER: u32 = {}u;\n{LANE_FNS}",
            self.wg,
            self.tile,
            self.tile / self.wg,
            self.cap,
            self.ha_bits,
            1u32 << self.ha_bits,
            self.nb,
            self.lanes.code(),
        )
    }
}

const COMMON: &str = include_str!("../../shaders/common.wgsl");
const PHILOX: &str = include_str!("../../shaders/philox.wgsl");
const MAPPING: &str = include_str!("../../shaders/mapping.wgsl");
const TWOFLOAT: &str = include_str!("../../shaders/twofloat.wgsl");

/// Which pieces a job is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Job {
    Init,
    Patch,
    Stats,
    Solve,
    Scan,
    Pick,
    Probs,
    Tokens,
    Stream,
    PhiloxCheck,
}

impl Job {
    pub const ALL: [Job; 10] = [
        Job::Init,
        Job::Patch,
        Job::Stats,
        Job::Solve,
        Job::Scan,
        Job::Pick,
        Job::Probs,
        Job::Tokens,
        Job::Stream,
        Job::PhiloxCheck,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::Init => "init",
            Job::Patch => "patch",
            Job::Stats => "stats",
            Job::Solve => "solve",
            Job::Scan => "scan",
            Job::Pick => "pick",
            Job::Probs => "probs",
            Job::Tokens => "tokens",
            Job::Stream => "stream",
            Job::PhiloxCheck => "philox_check",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Job::Init => include_str!("../../shaders/init.wgsl"),
            Job::Patch => include_str!("../../shaders/patch.wgsl"),
            Job::Stats => include_str!("../../shaders/stats.wgsl"),
            Job::Solve => include_str!("../../shaders/solve.wgsl"),
            Job::Scan => include_str!("../../shaders/scan.wgsl"),
            Job::Pick => include_str!("../../shaders/pick.wgsl"),
            Job::Probs => include_str!("../../shaders/probs.wgsl"),
            Job::Tokens => include_str!("../../shaders/tokens.wgsl"),
            Job::Stream => include_str!("../../shaders/stream.wgsl"),
            Job::PhiloxCheck => include_str!("../../shaders/philox_check.wgsl"),
        }
    }

    /// The complete WGSL source of this job for the given sizes.
    pub fn source(self, consts: &ShaderConsts) -> String {
        let mut s = match self {
            Job::Solve => ShaderConsts {
                wg: consts.solve_wg,
                ..*consts
            }
            .header(),
            _ => consts.header(),
        };
        match self {
            Job::PhiloxCheck => s.push_str(PHILOX),
            Job::Stream => {}
            _ => {
                s.push_str(COMMON);
                if matches!(self, Job::Pick) {
                    s.push_str(PHILOX);
                }
                if matches!(self, Job::Patch | Job::Solve) {
                    s.push_str(TWOFLOAT);
                }
                if matches!(self, Job::Solve) {
                    s.push_str(MAPPING);
                }
            }
        }
        s.push_str(self.body());
        if matches!(self, Job::Solve) {
            s.push_str(&state_copies());
        }
        s
    }
}

/// Words of a row's solver state (`ST` in common.wgsl).
const STATE_WORDS: usize = 64;

/// The solver's `load_state` / `store_state`, written out word by word: with
/// only constant indices into the private state array `s`, a compiler can
/// keep it in registers instead of per-invocation local memory (a loop over
/// the words would index it dynamically).
fn state_copies() -> String {
    let mut f = String::from("fn load_state(st: u32) {\n");
    for i in 0..STATE_WORDS {
        f.push_str(&format!("    s[{i}] = ws[st + {i}u];\n"));
    }
    f.push_str("}\nfn store_state(st: u32) {\n");
    for i in 0..STATE_WORDS {
        f.push_str(&format!("    ws[st + {i}u] = s[{i}];\n"));
    }
    f.push_str("}\n");
    f
}

#[cfg(test)]
mod tests {
    #[test]
    fn state_copies_cover_the_state() {
        let f = super::state_copies();
        assert!(f.contains("s[0] = ws[st + 0u];") && f.contains("s[63] = ws[st + 63u];"));
        assert!(f.contains("ws[st + 63u] = s[63];") && !f.contains("s[64]"));
        let common = include_str!("../../shaders/common.wgsl");
        assert!(common.contains(&format!("const ST: u32 = {}u;", super::STATE_WORDS)));
    }
}
