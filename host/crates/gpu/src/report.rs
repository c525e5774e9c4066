//! The GPU report served by the host API and printed by `comfyhost gpu`.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::confirm::Confirmation;
use crate::decision::AttentionDecision;
use crate::env_probe::{EnvProbe, ProbeError, ProbeOutcome};
use crate::inventory::{GpuInventory, InventorySource, MigMode};

/// Everything known about the GPU setup (the JSON the host API serves).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuReport {
    /// Hardware.
    pub inventory: GpuInventory,
    /// Python environment; `None` when the probe failed (see `probe_error`).
    pub probe: Option<EnvProbe>,
    /// Why the environment probe failed.
    pub probe_error: Option<String>,
    /// Whether the probe came from the cache.
    pub probe_cached: bool,
    /// Flags accepted by `main.py --help`; `None` when unknown (see `accepted_flags_error`).
    pub accepted_flags: Option<BTreeSet<String>>,
    /// Why `main.py --help` could not be read.
    pub accepted_flags_error: Option<String>,
    /// The decision.
    pub decision: AttentionDecision,
    /// Set by the supervisor once ComfyUI runs ([`crate::Confirmer::confirmation`]).
    pub confirmation: Option<Confirmation>,
}

impl GpuReport {
    /// Assembles a report from its parts.
    pub fn new(inventory: GpuInventory, probe: ProbeOutcome, decision: AttentionDecision) -> Self {
        let (probe_v, probe_error) = split(probe.env);
        let (accepted_flags, accepted_flags_error) = split(probe.accepted_flags);
        Self {
            inventory,
            probe: probe_v,
            probe_error,
            probe_cached: probe.cached,
            accepted_flags,
            accepted_flags_error,
            decision,
            confirmation: None,
        }
    }
}

impl GpuReport {
    /// The GPU the decision is for (`None` in CPU mode).
    pub fn target_gpu(&self) -> Option<&crate::inventory::GpuInfo> {
        let i = self.decision.target_gpu?;
        self.inventory.gpus.iter().find(|g| g.index == i)
    }
}

fn split<T>(r: Result<T, ProbeError>) -> (Option<T>, Option<String>) {
    match r {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

fn mib(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_owned(), |m| format!("{m} MiB"))
}

impl GpuReport {
    /// Human-readable report for the CLI.
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let inv = &self.inventory;
        let src = match inv.source {
            InventorySource::Nvml => "NVML",
            InventorySource::NvidiaSmi => "nvidia-smi",
            InventorySource::None => "none",
        };
        let _ = writeln!(s, "GPUs (source: {src})");
        if inv.gpus.is_empty() {
            let _ = writeln!(
                s,
                "  CPU mode: {}",
                inv.error.as_deref().unwrap_or("no GPU detected")
            );
        }
        if let Some(d) = &inv.driver_version {
            let cuda = inv
                .cuda_driver_version
                .map_or("?".into(), |c| c.to_string());
            let _ = writeln!(s, "  driver {d}, CUDA {cuda}");
        }
        for g in &inv.gpus {
            let mig = match g.mig_mode {
                MigMode::Enabled => ", MIG enabled",
                MigMode::Disabled => ", MIG disabled",
                MigMode::NotSupported => "",
            };
            let _ = writeln!(
                s,
                "  [{}] {}  SM {}  VRAM {} total / {} free{}  {}",
                g.index,
                g.name,
                g.sm.map_or("?".into(), |c| c.to_string()),
                mib(g.vram_total_mib),
                mib(g.vram_free_mib),
                mig,
                g.uuid
            );
        }
        for n in inv.notes.iter().filter(|_| !inv.gpus.is_empty()) {
            let _ = writeln!(s, "  note: {n}");
        }
        let _ = writeln!(
            s,
            "Python environment{}",
            if self.probe_cached { " (cached)" } else { "" }
        );
        match &self.probe {
            Some(p) => {
                let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
                let _ = writeln!(
                    s,
                    "  torch {} (CUDA {}), cuda available: {}",
                    opt(&p.torch_version),
                    opt(&p.torch_cuda),
                    p.cuda_available
                );
                let _ = writeln!(
                    s,
                    "  arch list: {}",
                    if p.arch_list.is_empty() {
                        "-".into()
                    } else {
                        p.arch_list.join(" ")
                    }
                );
                let _ = writeln!(
                    s,
                    "  sageattention {}, flash_attn {}, xformers {}, triton {}",
                    opt(&p.sageattention),
                    opt(&p.flash_attn),
                    opt(&p.xformers),
                    opt(&p.triton)
                );
                for key in ["torch", "cuda", "arch_list"] {
                    if let Some(e) = p.errors.get(key) {
                        let _ = writeln!(s, "  {key} error: {e}");
                    }
                }
                for (k, v) in &p.smoke {
                    let _ = writeln!(s, "  smoke {k}: {}", v.as_deref().unwrap_or("ok"));
                }
            }
            None => {
                let e = self.probe_error.as_deref().unwrap_or("not run");
                let _ = writeln!(s, "  probe failed: {e}");
            }
        }
        match &self.accepted_flags {
            Some(f) => {
                let _ = writeln!(s, "  main.py accepts {} flags", f.len());
            }
            None => {
                let e = self.accepted_flags_error.as_deref().unwrap_or("not run");
                let _ = writeln!(s, "  main.py --help: {e}");
            }
        }
        let d = &self.decision;
        let _ = writeln!(
            s,
            "Decision: {}  flags: {}",
            d.choice,
            if d.flags.is_empty() {
                "(none)".into()
            } else {
                d.flags.join(" ")
            }
        );
        if let Some(r) = &d.refusal {
            let _ = writeln!(s, "  REFUSED: {r}");
        }
        for r in &d.reasons {
            let _ = writeln!(s, "  - {r}");
        }
        for w in &d.warnings {
            let _ = writeln!(s, "  ! {w}");
        }
        if !d.fallbacks.is_empty() {
            let f: Vec<String> = d.fallbacks.iter().map(|c| c.choice.to_string()).collect();
            let _ = writeln!(s, "  fallbacks: {}", f.join(" → "));
        }
        match &self.confirmation {
            Some(c) => {
                let _ = writeln!(s, "Confirmation: {:?}: {}", c.status, c.detail);
            }
            None => {
                let _ = writeln!(s, "Confirmation: ComfyUI not started by this report");
            }
        }
        s
    }
}
