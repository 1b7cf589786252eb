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
}

impl Default for ShaderConsts {
    fn default() -> Self {
        ShaderConsts {
            wg: 256,
            tile: 1024,
            cap: 2048,
            ha_bits: 12,
            nb: 256,
            solve_wg: 64,
        }
    }
}

impl ShaderConsts {
    pub fn header(&self) -> String {
        format!(
            "const WG: u32 = {}u;\nconst TILE: u32 = {}u;\nconst EPT: u32 = {}u;\nconst CAP: u32 = {}u;\n\
             const HA_BITS: u32 = {}u;\nconst HA_BINS: u32 = {}u;\nconst NB: u32 = {}u;\n",
            self.wg,
            self.tile,
            self.tile / self.wg,
            self.cap,
            self.ha_bits,
            1u32 << self.ha_bits,
            self.nb
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
        s
    }
}
