//! GPU detection and attention selection for the host: the `comfyhost gpu` subcommand and the
//! report made at start-up.

use std::path::PathBuf;

use clap::Args;
use comfyhost_gpu::{DetectConfig, DeviceSelection, GpuReport, OverrideSetting};

use crate::config::{ComfyMode, RunArgs};

#[derive(Debug, Clone, Args)]
pub struct GpuArgs {
    /// Python interpreter of the ComfyUI environment to probe.
    #[arg(long, env = "COMFYHOST_PYTHON", default_value = "python3")]
    pub python: PathBuf,
    /// ComfyUI checkout (for `main.py --help`).
    #[arg(long, env = "COMFYHOST_COMFYUI_DIR", default_value = ".")]
    pub comfyui_dir: PathBuf,
    /// Print JSON (what the host API returns) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also read NVML and `nvidia-smi` each on their own and show both inventories side by
    /// side (JSON: a `sources` object next to the report, with `elapsed_ms` per source and for
    /// the whole report).
    #[arg(long)]
    pub sources: bool,
}

/// `comfyhost gpu`: print the same report the host API serves.
pub async fn run(args: GpuArgs) -> anyhow::Result<()> {
    let cfg = DetectConfig {
        python: args.python,
        comfyui_dir: args.comfyui_dir,
        ..DetectConfig::default()
    };
    let started = std::time::Instant::now();
    let report = comfyhost_gpu::full_report(&cfg).await;
    let report_ms = started.elapsed().as_millis();
    let sources = if args.sources {
        Some(comfyhost_gpu::compare_sources(&cfg).await)
    } else {
        None
    };
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        if let (Some(obj), Some(src)) = (value.as_object_mut(), &sources) {
            obj.insert("sources".into(), serde_json::to_value(src)?);
            obj.insert("report_elapsed_ms".into(), serde_json::json!(report_ms));
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", report.render_text());
        if let Some(src) = &sources {
            print!("{}", render_sources(src));
            println!("report made in {report_ms} ms");
        }
    }
    Ok(())
}

/// The two backends' GPUs, one line each.
fn render_sources(src: &comfyhost_gpu::SourceComparison) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("\nSources side by side:\n");
    for (label, r) in [("NVML", &src.nvml), ("nvidia-smi", &src.nvidia_smi)] {
        match (&r.inventory, &r.error) {
            (Some(inv), _) => {
                let _ = writeln!(
                    out,
                    "  {label} ({} ms): driver {}, CUDA {}",
                    r.elapsed_ms,
                    inv.driver_version.as_deref().unwrap_or("?"),
                    inv.cuda_driver_version
                        .map_or_else(|| "?".to_owned(), |v| v.to_string())
                );
                for g in &inv.gpus {
                    let _ = writeln!(
                        out,
                        "    [{}] {} sm {} {} MiB",
                        g.index,
                        g.name,
                        g.sm.map_or_else(|| "?".to_owned(), |s| s.to_string()),
                        g.vram_total_mib
                            .map_or_else(|| "?".to_owned(), |m| m.to_string())
                    );
                }
            }
            (None, err) => {
                let _ = writeln!(
                    out,
                    "  {label} ({} ms): {}",
                    r.elapsed_ms,
                    err.as_deref().unwrap_or("no answer")
                );
            }
        }
    }
    out
}

/// The report made when the host starts, or `None` when ComfyUI is not ours to configure
/// (attach mode) or detection is switched off.
pub async fn startup_report(args: &RunArgs, over: &OverrideSetting) -> Option<GpuReport> {
    if args.no_gpu_detect {
        return None;
    }
    match args.comfy_mode() {
        ComfyMode::Attach { .. } => None,
        ComfyMode::Managed {
            python,
            comfyui_dir,
        } => {
            let cfg = DetectConfig {
                probe_cache_file: Some(args.data_dir.join("env-probe.json")),
                python,
                comfyui_dir,
                attention_override: over.clone(),
                ..DetectConfig::default()
            };
            Some(comfyhost_gpu::full_report(&cfg).await)
        }
        ComfyMode::Simulator => Some(simulator_report(over).await),
    }
}

/// The simulator has no Python environment: detect the GPUs for real, decide without a probe
/// (which selects `--cpu` without a GPU and no attention flag otherwise).
async fn simulator_report(over: &OverrideSetting) -> GpuReport {
    let cfg = DetectConfig::default();
    let inventory = comfyhost_gpu::detect(&cfg).await;
    let selection = cfg
        .visible_devices()
        .as_deref()
        .map_or(DeviceSelection::Default, DeviceSelection::parse);
    let decision = comfyhost_gpu::decide(&inventory, None, None, over, &selection);
    GpuReport {
        inventory,
        probe: None,
        probe_error: Some(
            "the embedded ComfyUI simulator has no Python environment to probe".into(),
        ),
        probe_cached: false,
        accepted_flags: None,
        accepted_flags_error: None,
        decision,
        confirmation: None,
    }
}
