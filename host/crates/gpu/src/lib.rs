//! comfyhost-gpu: GPU inventory (NVML, `nvidia-smi` fallback), ComfyUI environment probe,
//! attention-backend decision, confirmation from ComfyUI's log, and the report behind
//! `comfyhost gpu` and the host API.
//!
//! Entry points: [`detect`] (never fails: CPU mode with a reason), [`full_report`]
//! (detect + probe + decide), [`decide`], [`Confirmer`].

pub mod cache_env;
pub mod confirm;
pub mod decision;
pub mod env_probe;
pub mod inventory;
pub mod nvidia_smi;
pub mod nvml;
pub mod report;

use std::path::PathBuf;
use std::time::Duration;

pub use cache_env::arch_cache_env;
pub use confirm::{
    ConfirmEvent, Confirmation, ConfirmationStatus, Confirmer, DemotePolicy, classify_line,
};
pub use decision::{
    AttentionChoice, AttentionDecision, AttentionPreference, Candidate, DeviceSelection,
    OverrideSetting, decide,
};
pub use env_probe::{EnvProbe, ProbeError, ProbeOutcome, ProbeTarget};
pub use inventory::{
    ComputeCapability, CudaVersion, GpuInfo, GpuInventory, InventorySource, MigMode,
};
pub use report::GpuReport;

/// Configuration for detection and the report.
#[derive(Debug, Clone)]
pub struct DetectConfig {
    /// NVML library to load (default `libnvidia-ml.so.1`).
    pub nvml_library: Option<PathBuf>,
    /// `nvidia-smi` binary (default `nvidia-smi` from `PATH`).
    pub nvidia_smi: PathBuf,
    /// Limit for each NVML / `nvidia-smi` call.
    pub detect_timeout: Duration,
    /// Python interpreter of the ComfyUI environment.
    pub python: PathBuf,
    /// ComfyUI checkout (contains `main.py`).
    pub comfyui_dir: PathBuf,
    /// Limit for each Python probe run (torch import can take seconds).
    pub probe_timeout: Duration,
    /// Run one tiny sage/flash call on the GPU during the probe.
    pub smoke_test: bool,
    /// Optional JSON file caching the probe across host restarts.
    pub probe_cache_file: Option<PathBuf>,
    /// `--cuda-device` / configured device list; falls back to `CUDA_VISIBLE_DEVICES`.
    pub cuda_device: Option<String>,
    /// Admin override.
    pub attention_override: OverrideSetting,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            nvml_library: None,
            nvidia_smi: PathBuf::from("nvidia-smi"),
            detect_timeout: Duration::from_secs(10),
            python: PathBuf::from("python3"),
            comfyui_dir: PathBuf::from("."),
            probe_timeout: Duration::from_secs(120),
            smoke_test: true,
            probe_cache_file: None,
            cuda_device: None,
            attention_override: OverrideSetting::default(),
        }
    }
}

impl DetectConfig {
    /// The device list ComfyUI will see: configured, else `CUDA_VISIBLE_DEVICES`.
    pub fn visible_devices(&self) -> Option<String> {
        self.cuda_device
            .clone()
            .or_else(|| std::env::var("CUDA_VISIBLE_DEVICES").ok())
    }
}

/// Detects GPUs: NVML first, `nvidia-smi` second, else CPU mode with the reasons.
/// Never panics and never fails.
pub async fn detect(cfg: &DetectConfig) -> GpuInventory {
    let mut notes = Vec::new();
    let lib = cfg.nvml_library.clone();
    let nvml = tokio::time::timeout(
        cfg.detect_timeout,
        tokio::task::spawn_blocking(move || nvml::read_snapshot(lib.as_deref())),
    )
    .await;
    match nvml {
        Ok(Ok(Ok(snapshot))) => {
            let inv = snapshot.into_inventory();
            if !inv.gpus.is_empty() {
                return inv;
            }
            notes.push(inv.error.unwrap_or_else(|| "NVML reports no GPU".into()));
        }
        Ok(Ok(Err(e))) => notes.push(format!("NVML unavailable: {e}")),
        Ok(Err(join)) => notes.push(format!("NVML probe crashed: {join}")),
        Err(_) => notes.push(format!(
            "NVML did not answer within {:?}",
            cfg.detect_timeout
        )),
    }
    match nvidia_smi::query(&cfg.nvidia_smi, cfg.detect_timeout).await {
        Ok(mut inv) if !inv.gpus.is_empty() => {
            notes.append(&mut inv.notes);
            inv.notes = notes;
            inv
        }
        Ok(inv) => {
            let reason = inv
                .error
                .unwrap_or_else(|| "nvidia-smi lists no GPU".into());
            notes.push(reason.clone());
            cpu_mode(notes, inv.driver_version, inv.cuda_driver_version)
        }
        Err(e) => {
            notes.push(format!("nvidia-smi fallback failed: {e}"));
            cpu_mode(notes, None, None)
        }
    }
}

/// One backend's answer for [`compare_sources`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceReading {
    /// The inventory it produced.
    pub inventory: Option<GpuInventory>,
    /// Why it produced none.
    pub error: Option<String>,
    /// How long it took.
    pub elapsed_ms: u64,
}

/// NVML's and `nvidia-smi`'s inventories side by side (detection uses the first that works;
/// `comfyhost gpu --sources` shows both, to check one against the other on a real machine).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceComparison {
    /// `libnvidia-ml.so.1`.
    pub nvml: SourceReading,
    /// `nvidia-smi --query-gpu`.
    pub nvidia_smi: SourceReading,
}

/// Reads both backends, each under the detection timeout. Never fails.
pub async fn compare_sources(cfg: &DetectConfig) -> SourceComparison {
    let started = std::time::Instant::now();
    let lib = cfg.nvml_library.clone();
    let nvml = tokio::time::timeout(
        cfg.detect_timeout,
        tokio::task::spawn_blocking(move || nvml::read_snapshot(lib.as_deref())),
    )
    .await;
    let (inventory, error) = match nvml {
        Ok(Ok(Ok(snapshot))) => (Some(snapshot.into_inventory()), None),
        Ok(Ok(Err(e))) => (None, Some(e.to_string())),
        Ok(Err(join)) => (None, Some(format!("NVML probe crashed: {join}"))),
        Err(_) => (
            None,
            Some(format!("no answer within {:?}", cfg.detect_timeout)),
        ),
    };
    let nvml = SourceReading {
        inventory,
        error,
        elapsed_ms: elapsed_ms(started),
    };
    let started = std::time::Instant::now();
    let (inventory, error) = match nvidia_smi::query(&cfg.nvidia_smi, cfg.detect_timeout).await {
        Ok(inv) => (Some(inv), None),
        Err(e) => (None, Some(e.to_string())),
    };
    SourceComparison {
        nvml,
        nvidia_smi: SourceReading {
            inventory,
            error,
            elapsed_ms: elapsed_ms(started),
        },
    }
}

fn elapsed_ms(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn cpu_mode(notes: Vec<String>, driver: Option<String>, cuda: Option<CudaVersion>) -> GpuInventory {
    let reason = format!("no usable NVIDIA GPU ({})", notes.join("; "));
    tracing::info!(%reason, "GPU detection");
    let mut inv = GpuInventory::cpu_mode(reason, notes);
    inv.driver_version = driver;
    inv.cuda_driver_version = cuda;
    inv
}

/// Detects, probes (cached) and decides. The host serves this over its API and
/// `comfyhost gpu` prints [`GpuReport::render_text`].
pub async fn full_report(cfg: &DetectConfig) -> GpuReport {
    let visible = cfg.visible_devices();
    let target = ProbeTarget {
        interpreter: cfg.python.clone(),
        comfyui_dir: cfg.comfyui_dir.clone(),
        timeout: cfg.probe_timeout,
        smoke_test: cfg.smoke_test,
        cuda_visible_devices: visible.clone(),
        cache_file: cfg.probe_cache_file.clone(),
    };
    let (inventory, outcome) = tokio::join!(detect(cfg), env_probe::probe_cached(&target));
    let selection = visible
        .as_deref()
        .map_or(DeviceSelection::Default, DeviceSelection::parse);
    let decision = decide(
        &inventory,
        outcome.env.as_ref().ok(),
        outcome.accepted_flags.as_ref().ok(),
        &cfg.attention_override,
        &selection,
    );
    GpuReport::new(inventory, outcome, decision)
}
