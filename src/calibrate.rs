//! Temperature calibration (docs/spec.md §8 `calibrate`): the temperature at which the
//! sampled distribution π reaches a target entropy, per row or for a whole
//! batch (mean of per-row entropies), and entropy percentiles that suggest
//! `h_low`/`h_high` for the `linear` mapping of docs/spec.md §4.
//!
//! The entropy is that of π computed by the reference pipeline
//! ([`crate::reference::process_row`]) with every other parameter of the row
//! in force — bias, mask, penalties, top-k, top-p, min-p, stage order — and
//! only the temperature replaced.
//!
//! **Monotonicity.** H(T) is non-decreasing in T, truncation included:
//! - over a fixed set of tokens, softmax(x/T) has `dH/dT = Var(x)/T³ ≥ 0`;
//! - the top-m mass of softmax(x/T) falls as T rises (`d ln mass / d(1/T) =
//!   E_top[x] − E[x] ≥ 0`), so top-p needs at least as many tokens; min-p's
//!   threshold `max + T·ln min_p` falls, so it keeps at least as many; top-k's
//!   set does not depend on T; in `llama_cpp` order no truncation sees T;
//! - a token that joins the set is the least probable one, with `−ln w ≥ ln N ≥ H`,
//!   so joining raises the entropy: `H' − H = h(w) − w·H ≥ 0`.
//!
//! So bisection is sound, but where a truncation stage admits a token, H jumps
//! upwards. A target inside such a jump is not reachable by any temperature:
//! that is [`CalibrationError::InGap`], naming the temperature of the jump and
//! the entropies on either side. Targets outside what temperatures in
//! [`T_MIN`, `T_MAX`] reach are [`CalibrationError::Unreachable`], naming the
//! reachable range.

use std::fmt;

use serde::Serialize;

use crate::batch::LogitsView;
use crate::error::SamplerError;
use crate::params::{validate_all, SamplingParams};
use crate::reference::{process_row, Overrides};

/// The bracket of temperatures searched.
pub const T_MIN: f64 = 1e-3;
pub const T_MAX: f64 = 1e3;
/// Bisection stops once the bracket is narrower than this (absolute for
/// T ≥ 1, relative below) and the entropy is within [`H_TOL`] of the target.
pub const T_TOL: f64 = 1e-6;
/// How close (in the target's unit) the entropy at the returned temperature is.
pub const H_TOL: f64 = 1e-7;

/// The unit of a target entropy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    #[default]
    Nats,
    Bits,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::Nats => "nats",
            Unit::Bits => "bits",
        }
    }

    pub fn from_nats(self, h: f64) -> f64 {
        match self {
            Unit::Nats => h,
            Unit::Bits => h / std::f64::consts::LN_2,
        }
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Unit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "nats" => Ok(Unit::Nats),
            "bits" => Ok(Unit::Bits),
            other => Err(format!("unknown unit `{other}` (expected bits or nats)")),
        }
    }
}

/// What a calibration is about: one row, or the mean over a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Row(usize),
    /// The mean of the per-row entropies of this many rows.
    Mean(usize),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Row(r) => write!(f, "row {r}"),
            Scope::Mean(n) => write!(f, "the mean over {n} rows"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error(transparent)]
    Sampler(#[from] SamplerError),

    /// No temperature in [`T_MIN`, `T_MAX`] reaches the target.
    #[error(
        "{scope}: target entropy {target} {unit} is unreachable: temperatures {t_min}..{t_max} give {h_min:.6}..{h_max:.6} {unit}"
    )]
    Unreachable {
        scope: Scope,
        target: f64,
        unit: Unit,
        h_min: f64,
        h_max: f64,
        t_min: f64,
        t_max: f64,
    },

    /// The target lies in an upward jump of H(T), where a truncation stage
    /// admits another token.
    #[error(
        "{scope}: target entropy {target} {unit} falls in a jump at T = {temperature:.6}: a truncation stage admits a token there and the entropy jumps from {below:.6} to {above:.6} {unit}"
    )]
    InGap {
        scope: Scope,
        target: f64,
        unit: Unit,
        temperature: f64,
        below: f64,
        above: f64,
    },

    /// A request that calibration cannot serve (named field).
    #[error("{scope}: invalid `{field}`: {message}")]
    Invalid {
        scope: Scope,
        field: String,
        message: String,
    },
}

pub type Result<T, E = CalibrationError> = std::result::Result<T, E>;

/// A calibrated temperature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    pub scope: Scope,
    pub temperature: f64,
    /// The entropy at `temperature`, in `unit`.
    pub entropy: f64,
    pub target: f64,
    pub unit: Unit,
    /// Entropy evaluations the search took.
    pub evaluations: u32,
}

/// The entropy of π (nats) for row `row` at temperature `t` (> 0), every other
/// parameter as given.
pub fn entropy_at(row: usize, logits: &[f32], params: &SamplingParams, t: f64) -> Result<f64> {
    let p = static_params(row, params)?;
    let pr = process_row(
        row,
        logits,
        &p,
        Overrides {
            temperature: Some(t),
            top_p: None,
        },
    )?;
    Ok(pr.final_entropy)
}

/// The row's parameters with a non-zero static temperature (replaced by the
/// override) and no dynamic temperature.
fn static_params(row: usize, params: &SamplingParams) -> Result<SamplingParams> {
    if params.dynamic_temperature.is_some() {
        return Err(CalibrationError::Invalid {
            scope: Scope::Row(row),
            field: "dynamic_temperature".into(),
            message: "calibration finds one static temperature; remove dynamic_temperature".into(),
        });
    }
    Ok(SamplingParams {
        temperature: 1.0,
        ..params.clone()
    })
}

fn check_target(scope: Scope, target: f64) -> Result<()> {
    if !(target.is_finite() && target >= 0.0) {
        return Err(CalibrationError::Invalid {
            scope,
            field: "target".into(),
            message: format!("{target} (must be finite and >= 0)"),
        });
    }
    Ok(())
}

/// Bisection of a non-decreasing `h` for `target` on [`T_MIN`, `T_MAX`].
fn bisect(
    scope: Scope,
    target: f64,
    unit: Unit,
    mut h: impl FnMut(f64) -> Result<f64>,
) -> Result<Calibration> {
    check_target(scope, target)?;
    let evaluations = std::cell::Cell::new(0u32);
    let mut eval = |t: f64| {
        evaluations.set(evaluations.get() + 1);
        h(t)
    };
    let (h_min, h_max) = (eval(T_MIN)?, eval(T_MAX)?);
    if target < h_min - H_TOL || target > h_max + H_TOL {
        return Err(CalibrationError::Unreachable {
            scope,
            target,
            unit,
            h_min,
            h_max,
            t_min: T_MIN,
            t_max: T_MAX,
        });
    }
    let (mut lo, mut hi) = (T_MIN, T_MAX);
    let (mut h_lo, mut h_hi) = (h_min, h_max);
    // Geometric steps first (the bracket spans six decades), then arithmetic.
    loop {
        let mid = if hi / lo > 2.0 {
            (lo * hi).sqrt()
        } else {
            0.5 * (lo + hi)
        };
        if !(mid > lo && mid < hi) {
            break; // the bracket cannot shrink further in f64
        }
        let h_mid = eval(mid)?;
        if h_mid < target {
            lo = mid;
            h_lo = h_mid;
        } else {
            hi = mid;
            h_hi = h_mid;
        }
        let narrow = hi - lo <= T_TOL * lo.min(1.0);
        let close = (h_mid - target).abs() <= H_TOL;
        if narrow && close {
            break;
        }
    }
    let t = 0.5 * (lo + hi);
    let h_t = eval(t)?;
    // Without a jump, H(lo) ≤ target ≤ H(hi) pins H(t) to the target; a jump
    // leaves both ends away from it however narrow the bracket.
    let (t, h_t) = [(t, h_t), (lo, h_lo), (hi, h_hi)]
        .into_iter()
        .min_by(|a, b| (a.1 - target).abs().total_cmp(&(b.1 - target).abs()))
        .expect("three candidates");
    if (h_t - target).abs() > H_TOL.max(1e-9 * target) {
        return Err(CalibrationError::InGap {
            scope,
            target,
            unit,
            temperature: t,
            below: h_lo,
            above: h_hi,
        });
    }
    Ok(Calibration {
        scope,
        temperature: t,
        entropy: h_t,
        target,
        unit,
        evaluations: evaluations.get(),
    })
}

/// The temperature of every row that brings its π to `target` (in `unit`).
/// Stops at the first row that cannot reach it.
pub fn calibrate_rows(
    logits: LogitsView<'_>,
    params: &[SamplingParams],
    target: f64,
    unit: Unit,
) -> Result<Vec<Calibration>> {
    validate_all(params, logits.rows(), logits.vocab())?;
    (0..logits.rows())
        .map(|r| {
            let x = &*logits.row(r);
            bisect(Scope::Row(r), target, unit, |t| {
                Ok(unit.from_nats(entropy_at(r, x, &params[r], t)?))
            })
        })
        .collect()
}

/// One temperature for every row such that the mean of the per-row entropies
/// reaches `target` (in `unit`).
pub fn calibrate_mean(
    logits: LogitsView<'_>,
    params: &[SamplingParams],
    target: f64,
    unit: Unit,
) -> Result<Calibration> {
    validate_all(params, logits.rows(), logits.vocab())?;
    let b = logits.rows();
    if b == 0 {
        return Err(SamplerError::Shape("no rows to calibrate".into()).into());
    }
    bisect(Scope::Mean(b), target, unit, |t| {
        let mut sum = 0.0;
        for (r, p) in params.iter().enumerate() {
            sum += entropy_at(r, &logits.row(r), p, t)?;
        }
        Ok(unit.from_nats(sum / b as f64))
    })
}

/// The `q`-quantile (0 ≤ q ≤ 1) of ascending `sorted` values, linear
/// interpolation between closest ranks (rank `q·(n − 1)`, numpy's default).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let rank = q.clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// Per-row model entropies and their spread.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Percentiles {
    pub unit: Unit,
    pub rows: usize,
    pub min: f64,
    pub p25: f64,
    pub median: f64,
    pub p75: f64,
    pub max: f64,
    pub mean: f64,
    /// Each row's entropy, in row order.
    pub entropies: Vec<f64>,
}

impl Percentiles {
    /// `h_low`/`h_high` for the `linear` mapping (the 25th/75th percentiles),
    /// or `None` when they coincide (a linear mapping needs `h_low < h_high`).
    pub fn suggested_range(&self) -> Option<(f64, f64)> {
        (self.p75 > self.p25).then_some((self.p25, self.p75))
    }
}

/// The entropy of every row's model distribution — softmax of the logits after
/// bias, mask and penalties at T = 1, the guide entropy of the `standard` and
/// `vllm` orders (docs/spec.md §4) — and its percentiles.
pub fn entropy_percentiles(
    logits: LogitsView<'_>,
    params: &[SamplingParams],
    unit: Unit,
) -> Result<Percentiles> {
    validate_all(params, logits.rows(), logits.vocab())?;
    if logits.rows() == 0 {
        return Err(SamplerError::Shape("no rows".into()).into());
    }
    let entropies = (0..logits.rows())
        .map(|r| {
            let pr = process_row(r, &logits.row(r), &params[r], Overrides::default())?;
            Ok(unit.from_nats(pr.entropy))
        })
        .collect::<Result<Vec<f64>>>()?;
    let mut sorted = entropies.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(Percentiles {
        unit,
        rows: sorted.len(),
        min: sorted[0],
        p25: percentile(&sorted, 0.25),
        median: percentile(&sorted, 0.5),
        p75: percentile(&sorted, 0.75),
        max: sorted[sorted.len() - 1],
        mean: entropies.iter().sum::<f64>() / entropies.len() as f64,
        entropies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_linearly() {
        // numpy.percentile([1, 2, 4, 8], [25, 50, 75]) = [1.75, 3.0, 5.0]
        let v = [1.0, 2.0, 4.0, 8.0];
        assert!((percentile(&v, 0.25) - 1.75).abs() < 1e-12);
        assert!((percentile(&v, 0.5) - 3.0).abs() < 1e-12);
        assert!((percentile(&v, 0.75) - 5.0).abs() < 1e-12);
        assert_eq!(percentile(&[3.0], 0.25), 3.0);
    }
}
