//! `presets` and `info`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};

use super::{print_json, Outcome};
use token_sampler::PRESETS;
use token_sampler::{open, open_default, BackendKind};
use token_sampler_cli::experiments::{plot, preset_parameters_figure};

#[derive(Debug, Args)]
pub struct PresetsArgs {
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
    /// Also draw the presets as bar charts (T, top-p, top-k, penalties; PNG
    /// 1200 × 800) into this file.
    #[arg(long, value_name = "FILE")]
    png: Option<PathBuf>,
    /// Also write the bar charts into DIR/presets_parameters.png.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub fn run_presets(a: PresetsArgs) -> anyhow::Result<Outcome> {
    let mut targets = Vec::new();
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        targets.push(dir.join("presets_parameters.png"));
    }
    targets.extend(a.png.iter().cloned());
    if !targets.is_empty() {
        let all: Vec<_> = PRESETS.iter().collect();
        let figure = preset_parameters_figure(
            &all,
            "presets_parameters.png",
            "Presets: temperature, top-p, top-k and penalties",
        );
        for path in &targets {
            plot::render(&figure, path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("token-sampler: wrote {}", path.display());
        }
    }
    if a.json {
        print_json(&json!({ "schema": 1, "presets": PRESETS }))?;
        return Ok(Outcome::Ok);
    }
    outln!(
        "{:<20} {:<10} {:>5} {:>6} {:>5} {:>8} {:>9}  use",
        "preset",
        "family",
        "T",
        "top_p",
        "top_k",
        "rep_pen",
        "freq_pen"
    );
    for p in PRESETS.iter() {
        outln!(
            "{:<20} {:<10} {:>5.2} {:>6.2} {:>5} {:>8.2} {:>9.2}  {}",
            p.name,
            format!("{:?}", p.family).to_lowercase(),
            p.temperature,
            p.top_p,
            p.top_k,
            p.repetition_penalty,
            p.frequency_penalty,
            p.description
        );
    }
    Ok(Outcome::Ok)
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub fn run_info(a: InfoArgs) -> anyhow::Result<Outcome> {
    let mut backends = Vec::new();
    for kind in BackendKind::ALL {
        let entry = match open(kind, true) {
            Ok(s) => json!({"backend": kind.name(), "available": true, "device": s.device()}),
            Err(e) => json!({"backend": kind.name(), "available": false, "reason": e.to_string()}),
        };
        backends.push(entry);
    }
    let default = open_default()
        .map(|(s, _)| s.kind().name().to_string())
        .unwrap_or_else(|_| "none".into());
    #[allow(unused_mut)]
    let mut out = json!({
        "schema": 1,
        "version": env!("CARGO_PKG_VERSION"),
        "rng": token_sampler::rng::RNG_SCHEME,
        "default_backend": default,
        "backends": backends,
    });
    #[cfg(feature = "gpu")]
    let gpu = token_sampler::gpu::gpu_report();
    #[cfg(feature = "gpu")]
    {
        out["gpu"] = serde_json::to_value(&gpu)?;
    }
    if a.json {
        print_json(&out)?;
    } else {
        outln!("token-sampler {}", env!("CARGO_PKG_VERSION"));
        outln!("rng: {}", token_sampler::rng::RNG_SCHEME);
        outln!("default backend: {default}");
        for b in out["backends"].as_array().unwrap() {
            match b["available"].as_bool() {
                Some(true) => {
                    outln!("  {:<10} available   {}", s(&b["backend"]), s(&b["device"]))
                }
                _ => outln!("  {:<10} unavailable {}", s(&b["backend"]), s(&b["reason"])),
            }
        }
        #[cfg(feature = "gpu")]
        print_gpu(&gpu)?;
    }
    Ok(Outcome::Ok)
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

#[cfg(feature = "gpu")]
fn print_gpu(g: &token_sampler::gpu::GpuReport) -> anyhow::Result<()> {
    outln!("gpu adapters ({}):", g.adapters.len());
    for a in &g.adapters {
        outln!(
            "  {} {} [{}, {}] driver: {} {}",
            if a.chosen { "*" } else { " " },
            a.name,
            a.backend,
            a.device_type,
            a.driver,
            a.driver_info
        );
    }
    match (&g.chosen, &g.error) {
        (Some(c), _) => outln!(
            "--backend gpu uses: {c}{}",
            if g.default_uses_it {
                " (also the default)"
            } else {
                " (software: only when asked for)"
            }
        ),
        (None, Some(e)) => outln!("--backend gpu: {e}"),
        _ => {}
    }
    if let Some(l) = &g.limits {
        outln!("limits:");
        outln!(
            "  max_storage_buffer_binding_size    {}",
            l.max_storage_buffer_binding_size
        );
        outln!("  max_buffer_size                    {}", l.max_buffer_size);
        outln!(
            "  max_compute_workgroup_storage_size {}",
            l.max_compute_workgroup_storage_size
        );
        outln!(
            "  max_compute_invocations_per_workgroup {}",
            l.max_compute_invocations_per_workgroup
        );
        outln!(
            "  max_compute_workgroup_size_x       {}",
            l.max_compute_workgroup_size_x
        );
        outln!(
            "  max_compute_workgroups_per_dimension {}",
            l.max_compute_workgroups_per_dimension
        );
        outln!(
            "  subgroup sizes                     {}..{}",
            l.subgroup_min_size,
            l.subgroup_max_size
        );
    }
    if let Some(f) = &g.features {
        let yn = |b: bool| if b { "yes" } else { "no" };
        outln!(
            "features: SHADER_F16 {}, TIMESTAMP_QUERY {}, SUBGROUP {}",
            yn(f.shader_f16),
            yn(f.timestamp_query),
            yn(f.subgroup)
        );
    }
    if let Some(c) = &g.shader_sizes {
        outln!(
            "shader sizes: {} invocations per workgroup ({} in the row solver), {}-id tiles, {} candidates, {}-bit first digit",
            c.wg, c.solve_wg, c.tile, c.cap, c.ha_bits
        );
        if c.lanes != token_sampler::gpu::LaneOrder::Natural {
            outln!(
                "lane order: {} (TOKEN_SAMPLER_LANE_ORDER, a race test)",
                c.lanes.name()
            );
        }
    }
    for w in &g.workspace {
        outln!(
            "workspace for {} × {}: {:.1} MiB",
            w.rows,
            w.vocab,
            w.bytes as f64 / (1024.0 * 1024.0)
        );
    }
    Ok(())
}
