//! `calibrate`: the temperature reaching a target entropy (docs/spec.md §8), and
//! entropy percentiles for the linear entropy-guided mapping.

use clap::Args;
use serde_json::{json, Value};

use super::args::{InputArgs, ParamArgs};
use super::{envelope, print_json, Outcome};
use token_sampler::calibrate::{
    calibrate_mean, calibrate_rows, entropy_percentiles, Calibration, Percentiles, Unit, T_MAX,
    T_MIN, T_TOL,
};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["target", "percentiles"])))]
pub struct CalibrateArgs {
    #[command(flatten)]
    input: InputArgs,
    /// Every other parameter (top-k, top-p, min-p, penalties, order, …) stays in
    /// force; the temperature is what calibration finds.
    #[command(flatten)]
    params: ParamArgs,
    /// Target entropy of the sampled distribution π, in --unit.
    #[arg(long, value_name = "H", allow_negative_numbers = true)]
    target: Option<f64>,
    /// Unit of --target and of the printed entropies.
    #[arg(long, default_value = "nats", value_name = "bits|nats")]
    unit: Unit,
    /// One temperature for the whole file: the mean of the per-row entropies
    /// reaches the target.
    #[arg(long, requires = "target")]
    mean: bool,
    /// Per-row model entropy (T = 1, after penalties) and its 25th/75th
    /// percentiles, suggested as h_low/h_high of the linear mapping.
    #[arg(long)]
    percentiles: bool,
    /// t_min of the suggested linear mapping.
    #[arg(
        long,
        default_value_t = 0.3,
        requires = "percentiles",
        allow_negative_numbers = true
    )]
    t_min: f64,
    /// t_max of the suggested linear mapping.
    #[arg(
        long,
        default_value_t = 1.8,
        requires = "percentiles",
        allow_negative_numbers = true
    )]
    t_max: f64,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

const DEVICE: &str = "host CPU (f64 reference pipeline)";

pub fn run_calibrate(a: CalibrateArgs) -> anyhow::Result<Outcome> {
    if !(a.t_min.is_finite() && a.t_max.is_finite() && 0.0 <= a.t_min && a.t_min <= a.t_max) {
        anyhow::bail!(
            "--t-min {} / --t-max {}: expected finite temperatures with 0 ≤ t_min ≤ t_max",
            a.t_min,
            a.t_max
        );
    }
    let batch = a.input.load()?;
    let params = a.params.build(batch.rows())?;
    let mut out = envelope("reference", DEVICE);
    out.insert("unit".into(), a.unit.name().into());
    if a.percentiles {
        let p = entropy_percentiles(batch.view(), &params, a.unit)?;
        let suggested = suggestion(&p, a.t_min, a.t_max);
        if a.json {
            out.insert("percentiles".into(), serde_json::to_value(&p)?);
            out.insert("suggested".into(), suggested);
            print_json(&Value::Object(out))?;
        } else {
            print_percentiles(&p, &suggested)?;
        }
        return Ok(Outcome::Ok);
    }
    let target = a.target.expect("clap requires --target or --percentiles");
    out.insert("target".into(), target.into());
    out.insert(
        "search".into(),
        json!({"t_min": T_MIN, "t_max": T_MAX, "t_tolerance": T_TOL}),
    );
    let results: Vec<Calibration> = if a.mean {
        vec![calibrate_mean(batch.view(), &params, target, a.unit)?]
    } else {
        calibrate_rows(batch.view(), &params, target, a.unit)?
    };
    if a.json {
        let key = if a.mean { "mean" } else { "rows" };
        let value = if a.mean {
            serde_json::to_value(&results[0])?
        } else {
            serde_json::to_value(&results)?
        };
        out.insert(key.into(), value);
        print_json(&Value::Object(out))?;
    } else {
        outln!(
            "{:>16} {:>14} {:>14} {:>14} {:>6}",
            "scope",
            "temperature",
            format!("H ({})", a.unit),
            format!("target ({})", a.unit),
            "evals"
        );
        for c in &results {
            outln!(
                "{:>16} {:>14.6} {:>14.6} {:>14.6} {:>6}",
                c.scope.to_string(),
                c.temperature,
                c.entropy,
                c.target,
                c.evaluations
            );
        }
    }
    Ok(Outcome::Ok)
}

/// The linear mapping the percentiles suggest, ready to paste into a params file.
fn suggestion(p: &Percentiles, t_min: f64, t_max: f64) -> Value {
    match p.suggested_range() {
        Some((lo, hi)) => json!({
            "h_low": lo,
            "h_high": hi,
            "dynamic_temperature": {
                "unit": p.unit.name(),
                "mapping": {"kind": "linear", "h_low": lo, "h_high": hi, "t_min": t_min, "t_max": t_max}
            }
        }),
        None => json!({
            "h_low": p.p25,
            "h_high": p.p75,
            "dynamic_temperature": null,
            "note": "the 25th and 75th percentiles coincide: a linear mapping needs h_low < h_high (give rows with varied entropy)"
        }),
    }
}

fn print_percentiles(p: &Percentiles, suggested: &Value) -> anyhow::Result<()> {
    let u = p.unit;
    outln!(
        "model entropy (T = 1, after penalties) of {} rows, {u}:",
        p.rows
    );
    outln!(
        "  min {:.6}  p25 {:.6}  median {:.6}  p75 {:.6}  max {:.6}  mean {:.6}",
        p.min,
        p.p25,
        p.median,
        p.p75,
        p.max,
        p.mean
    );
    if suggested["dynamic_temperature"].is_null() {
        outln!("  {}", suggested["note"].as_str().unwrap_or_default());
    } else {
        outln!("suggested linear mapping (h_low = p25, h_high = p75):");
        outln!(
            "  {{\"dynamic_temperature\": {}}}",
            suggested["dynamic_temperature"]
        );
    }
    Ok(())
}
