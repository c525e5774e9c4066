//! Detection and environment probing on this machine (no NVIDIA driver), with real
//! processes: a replayed `nvidia-smi`, the system `python3`, a minimal argparse `main.py`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::common::fixture_dir;
use comfyhost_gpu::env_probe::{self, ProbeTarget};
use comfyhost_gpu::{
    AttentionChoice, DetectConfig, InventorySource, ProbeError, detect, full_report,
};

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// An `nvidia-smi` that replays a recorded case; rejects `compute_cap` when `legacy`.
fn replay_smi(dir: &Path, case: &str, legacy: bool) -> PathBuf {
    let f = fixture_dir().join(case);
    let csv = f.join("nvidia-smi-query.csv");
    let banner = f.join("nvidia-smi.txt");
    let reject = if legacy {
        format!(
            "case \"$*\" in *compute_cap*) cat '{}' >&2; exit 2;; esac\n",
            f.join("nvidia-smi-query-error.txt").display()
        )
    } else {
        String::new()
    };
    script(
        dir,
        "nvidia-smi",
        &format!(
            "{reject}if [ $# -eq 0 ]; then cat '{}'; else cat '{}'; fi",
            banner.display(),
            csv.display()
        ),
    )
}

fn no_driver_config() -> DetectConfig {
    DetectConfig {
        nvml_library: Some(PathBuf::from("/nonexistent/libnvidia-ml.so.1")),
        nvidia_smi: PathBuf::from("/nonexistent/nvidia-smi"),
        ..DetectConfig::default()
    }
}

#[tokio::test]
async fn no_driver_is_cpu_mode_with_a_clear_reason() {
    let inv = detect(&no_driver_config()).await;
    assert!(inv.is_cpu_mode());
    assert_eq!(inv.source, InventorySource::None);
    let reason = inv.error.unwrap();
    assert!(reason.starts_with("no usable NVIDIA GPU"), "{reason}");
    assert!(
        reason.contains("NVML unavailable") && reason.contains("libnvidia-ml.so.1"),
        "{reason}"
    );
    assert!(reason.contains("nvidia-smi not found"), "{reason}");
    assert_eq!(inv.notes.len(), 2);
}

#[tokio::test]
async fn default_config_on_this_machine_never_fails() {
    let inv = detect(&DetectConfig::default()).await;
    if inv.is_cpu_mode() {
        let reason = inv.error.unwrap_or_default();
        assert!(
            reason.contains("libnvidia-ml.so.1") || reason.contains("NVML"),
            "{reason}"
        );
        assert!(reason.contains("nvidia-smi"), "{reason}");
    } else {
        assert!(inv.gpus.iter().all(|g| !g.name.is_empty()));
    }
}

#[tokio::test]
async fn nvidia_smi_fallback_runs_the_tool() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = DetectConfig {
        nvidia_smi: replay_smi(dir.path(), "mixed_3090_4090", false),
        ..no_driver_config()
    };
    let inv = detect(&cfg).await;
    assert_eq!(inv.source, InventorySource::NvidiaSmi);
    assert_eq!(inv.gpus.len(), 2);
    assert_eq!(
        inv.cuda_driver_version.map(|c| c.to_string()).as_deref(),
        Some("12.8")
    );
    assert!(inv.notes[0].contains("NVML unavailable"), "{:?}", inv.notes);
}

/// Drivers print warnings on stderr next to the CSV rows (an infoROM warning, a persistence
/// mode hint); they are notes, not a reason to fall back to CPU mode.
#[tokio::test]
async fn nvidia_smi_warnings_on_stderr_do_not_break_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture_dir().join("h200");
    let smi = script(
        dir.path(),
        "nvidia-smi",
        &format!(
            "echo 'WARNING: infoROM is corrupted at gpu 0000:19:00.0' >&2\n\
             if [ $# -eq 0 ]; then cat '{}'; else cat '{}'; fi",
            f.join("nvidia-smi.txt").display(),
            f.join("nvidia-smi-query.csv").display()
        ),
    );
    let cfg = DetectConfig {
        nvidia_smi: smi,
        ..no_driver_config()
    };
    let inv = detect(&cfg).await;
    assert_eq!(inv.source, InventorySource::NvidiaSmi, "{inv:?}");
    assert_eq!(inv.gpus[0].name, "NVIDIA H200");
    assert_eq!(
        inv.cuda_driver_version.map(|c| c.to_string()).as_deref(),
        Some("13.0")
    );
}

#[tokio::test]
async fn both_sources_are_reported_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = DetectConfig {
        nvidia_smi: replay_smi(dir.path(), "h200", false),
        ..no_driver_config()
    };
    let both = comfyhost_gpu::compare_sources(&cfg).await;
    assert!(both.nvml.inventory.is_none());
    assert!(
        both.nvml
            .error
            .as_deref()
            .is_some_and(|e| e.contains("libnvidia-ml")),
        "{:?}",
        both.nvml
    );
    let smi = both.nvidia_smi.inventory.expect("nvidia-smi inventory");
    assert_eq!(smi.gpus[0].vram_total_mib, Some(143771));
    assert!(both.nvidia_smi.error.is_none());
}

#[tokio::test]
async fn legacy_driver_retries_without_compute_cap() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = DetectConfig {
        nvidia_smi: replay_smi(dir.path(), "legacy_t4_no_compute_cap", true),
        ..no_driver_config()
    };
    let inv = detect(&cfg).await;
    assert_eq!(inv.source, InventorySource::NvidiaSmi);
    assert_eq!(
        inv.gpus[0].sm.map(|s| s.to_string()).as_deref(),
        Some("7.5")
    );
    assert!(
        inv.notes
            .iter()
            .any(|n| n.contains("derived from the GPU name")),
        "{:?}",
        inv.notes
    );
}

#[tokio::test]
async fn driver_error_and_no_devices_are_cpu_mode() {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture_dir().join("driver_error/nvidia-smi-query.csv");
    let smi = script(
        dir.path(),
        "nvidia-smi",
        &format!("cat '{}'; exit 9", f.display()),
    );
    let inv = detect(&DetectConfig {
        nvidia_smi: smi,
        ..no_driver_config()
    })
    .await;
    assert!(inv.is_cpu_mode());
    assert!(
        inv.error
            .unwrap()
            .contains("cannot talk to the NVIDIA driver")
    );
    let dir2 = tempfile::tempdir().unwrap();
    let smi = script(
        dir2.path(),
        "nvidia-smi",
        "echo 'No devices were found'; exit 6",
    );
    let inv = detect(&DetectConfig {
        nvidia_smi: smi,
        ..no_driver_config()
    })
    .await;
    assert!(inv.is_cpu_mode());
    assert!(inv.error.unwrap().contains("No devices were found"));
}

#[tokio::test]
async fn hanging_nvidia_smi_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let smi = script(dir.path(), "nvidia-smi", "exec sleep 30");
    let cfg = DetectConfig {
        nvidia_smi: smi,
        detect_timeout: Duration::from_millis(300),
        ..no_driver_config()
    };
    let inv = detect(&cfg).await;
    assert!(inv.is_cpu_mode());
    assert!(inv.error.unwrap().contains("did not answer"));
}

const MAIN_PY: &str = r#"import argparse
p = argparse.ArgumentParser()
p.add_argument("--listen", type=str, nargs="?", const="0.0.0.0")
p.add_argument("--cpu", action="store_true")
g = p.add_mutually_exclusive_group()
g.add_argument("--use-sage-attention", action="store_true")
g.add_argument("--use-pytorch-cross-attention", action="store_true")
p.add_argument("--disable-xformers", action="store_true")
p.parse_args()
"#;

fn comfy_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("main.py"), MAIN_PY).unwrap();
    d
}

fn target(dir: &Path, python: &str) -> ProbeTarget {
    ProbeTarget {
        interpreter: PathBuf::from(python),
        comfyui_dir: dir.to_path_buf(),
        timeout: Duration::from_secs(60),
        smoke_test: true,
        cuda_visible_devices: None,
        cache_file: None,
    }
}

#[tokio::test]
async fn probe_with_system_python_reports_missing_torch() {
    let d = comfy_dir();
    let p = env_probe::probe_env(&target(d.path(), "python3"))
        .await
        .unwrap();
    assert!(p.python.as_deref().is_some_and(|v| v.starts_with('3')));
    assert!(p.torch_version.is_none());
    assert!(
        p.errors
            .get("torch")
            .is_some_and(|e| e.contains("ModuleNotFoundError")),
        "{:?}",
        p.errors
    );
    assert!(p.sageattention.is_none() && p.flash_attn.is_none());
    assert!(p.smoke.is_empty(), "no CUDA: smoke test must not run");
    assert!(!p.site_packages.is_empty());
    let flags = env_probe::probe_flags(&target(d.path(), "python3"))
        .await
        .unwrap();
    for f in [
        "--help",
        "--listen",
        "--cpu",
        "--use-sage-attention",
        "--disable-xformers",
    ] {
        assert!(flags.contains(f), "{f} missing: {flags:?}");
    }
}

#[tokio::test]
async fn probe_failures_are_typed_errors() {
    let d = comfy_dir();
    let e = env_probe::probe_env(&target(d.path(), "/nonexistent/python"))
        .await
        .unwrap_err();
    assert!(matches!(e, ProbeError::Spawn { .. }), "{e}");
    let slow = script(d.path(), "slowpy", "exec sleep 30");
    let mut t = target(d.path(), slow.to_str().unwrap());
    t.timeout = Duration::from_millis(300);
    assert!(matches!(
        env_probe::probe_env(&t).await,
        Err(ProbeError::Timeout { .. })
    ));
    let silent = script(d.path(), "silentpy", "echo boom >&2; exit 3");
    let e = env_probe::probe_env(&target(d.path(), silent.to_str().unwrap()))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ProbeError::NoOutput { ref stderr_tail, .. } if stderr_tail.contains("boom")),
        "{e}"
    );
    let e = env_probe::probe_flags(&target(d.path(), silent.to_str().unwrap()))
        .await
        .unwrap_err();
    assert!(matches!(e, ProbeError::Help { .. }), "{e}");
}

#[tokio::test]
async fn probe_cache_hits_and_invalidates_on_main_py_change() {
    let d = comfy_dir();
    // A private interpreter path so other tests' cache entries do not interfere.
    let py = script(d.path(), "py", "exec python3 \"$@\"");
    let mut t = target(d.path(), py.to_str().unwrap());
    t.cache_file = Some(d.path().join("probe-cache.json"));
    let first = env_probe::probe_cached(&t).await;
    assert!(!first.cached);
    assert!(first.env.is_ok() && first.accepted_flags.is_ok());
    let second = env_probe::probe_cached(&t).await;
    assert!(second.cached);
    assert_eq!(second.env, first.env);
    // The JSON file alone also serves a hit.
    env_probe::clear_memory_cache();
    assert!(env_probe::probe_cached(&t).await.cached);
    // Editing main.py (new mtime) invalidates.
    let f = std::fs::File::options()
        .write(true)
        .open(d.path().join("main.py"))
        .unwrap();
    f.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    assert!(!env_probe::probe_cached(&t).await.cached);
}

#[tokio::test]
async fn full_report_on_this_machine_is_cpu_mode() {
    let d = comfy_dir();
    let cfg = DetectConfig {
        python: PathBuf::from("python3"),
        comfyui_dir: d.path().to_path_buf(),
        ..no_driver_config()
    };
    let r = full_report(&cfg).await;
    assert_eq!(r.decision.choice, AttentionChoice::Cpu);
    // This machine's python3 has no torch: ComfyUI could not start, so the report refuses.
    let refusal = r.decision.refusal.clone().unwrap();
    assert!(
        refusal.contains("torch does not import") && refusal.contains("ModuleNotFoundError"),
        "{refusal}"
    );
    assert!(r.decision.flags.is_empty());
    let text = r.render_text();
    assert!(
        text.contains("CPU mode") && text.contains("REFUSED: torch does not import"),
        "{text}"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["decision"]["choice"], "cpu");
    assert_eq!(json["inventory"]["source"], "none");
    // With the admin escape hatch the CPU decision goes through.
    let cfg = DetectConfig {
        attention_override: comfyhost_gpu::OverrideSetting {
            allow_incompatible: true,
            ..Default::default()
        },
        ..cfg
    };
    let r = full_report(&cfg).await;
    assert!(r.decision.refusal.is_none());
    assert_eq!(r.decision.flags, vec!["--cpu".to_owned()]);
    assert!(r.render_text().contains("Decision: cpu  flags: --cpu"));
}

/// The probe's torch branch, driven by a stand-in `torch` package that exposes exactly the
/// attributes the probe reads and emits the warning a too-old driver makes torch print.
/// (No real torch/CUDA on this machine; the real path runs on GPU hosts.)
#[tokio::test]
async fn probe_reads_torch_build_and_driver_warning() {
    let d = comfy_dir();
    let pkg = d.path().join("site/torch");
    std::fs::create_dir_all(pkg.join("version")).unwrap();
    std::fs::write(
        pkg.join("__init__.py"),
        "__version__ = '2.8.0+cu128'\nfrom . import version, cuda\n",
    )
    .unwrap();
    std::fs::write(pkg.join("version/__init__.py"), "cuda = '12.8'\n").unwrap();
    std::fs::write(
        pkg.join("cuda.py"),
        "import warnings\n\
         def is_available():\n    warnings.warn('CUDA initialization: The NVIDIA driver on your system is too old (found version 12020). Please update your GPU driver.')\n    return False\n\
         def get_arch_list():\n    return []\n",
    )
    .unwrap();
    let py = script(
        d.path(),
        "py-with-torch",
        &format!(
            "PYTHONPATH='{}' exec python3 \"$@\"",
            d.path().join("site").display()
        ),
    );
    let p = env_probe::probe_env(&target(d.path(), py.to_str().unwrap()))
        .await
        .unwrap();
    assert_eq!(p.torch_version.as_deref(), Some("2.8.0+cu128"));
    assert_eq!(p.torch_cuda.as_deref(), Some("12.8"));
    assert!(!p.cuda_available);
    assert!(
        p.errors
            .get("cuda")
            .is_some_and(|e| e.contains("driver on your system is too old")),
        "{:?}",
        p.errors
    );
    // Feeds the refusal: GPU present, CUDA unavailable in torch.
    let inv = crate::common::smi_inventory("rtx4090");
    let dec = comfyhost_gpu::decide(
        &inv,
        Some(&p),
        None,
        &Default::default(),
        &Default::default(),
    );
    assert!(
        dec.refusal
            .as_deref()
            .is_some_and(|r| r.contains("too old")),
        "{dec:?}"
    );
}
