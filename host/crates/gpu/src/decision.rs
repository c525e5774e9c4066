//! Attention-backend decision: a pure function of the inventory, the environment probe,
//! the flags this ComfyUI accepts and the admin override.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::env_probe::EnvProbe;
use crate::inventory::{ComputeCapability, GpuInfo, GpuInventory, MigMode};

/// Attention implementation ComfyUI runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionChoice {
    /// SageAttention (`--use-sage-attention`).
    Sage,
    /// FlashAttention (`--use-flash-attention --disable-xformers`).
    Flash,
    /// Comfy Kitchen int8 attention (`--use-ck-attention`, ComfyUI ≥ 0.32). Never picked by
    /// `auto` (it quantises attention); only when an admin forces it.
    ComfyKitchen,
    /// xformers (ComfyUI's default when importable; no flag).
    Xformers,
    /// PyTorch SDPA (ComfyUI's default on NVIDIA without xformers).
    Pytorch,
    /// Split cross attention (`--use-split-cross-attention`).
    Split,
    /// Sub-quadratic attention (`--use-quad-cross-attention`).
    Quad,
    /// No GPU: `--cpu`.
    Cpu,
}

impl fmt::Display for AttentionChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sage => "sage",
            Self::Flash => "flash",
            Self::ComfyKitchen => "comfy_kitchen",
            Self::Xformers => "xformers",
            Self::Pytorch => "pytorch",
            Self::Split => "split",
            Self::Quad => "quad",
            Self::Cpu => "cpu",
        })
    }
}

/// Admin preference for the attention backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionPreference {
    /// Decide from hardware and environment.
    #[default]
    Auto,
    /// Force a backend.
    Force(AttentionChoice),
}

/// Admin override from the host configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OverrideSetting {
    /// `auto` or `{"force": "sage"}`.
    pub attention: AttentionPreference,
    /// Extra ComfyUI flags (each still checked against `main.py --help`).
    pub extra_flags: Vec<String>,
    /// Start even when the compatibility checks refuse (turns the refusal into a warning).
    pub allow_incompatible: bool,
}

/// One ordered option: a backend and the flags that select it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    /// Backend.
    pub choice: AttentionChoice,
    /// ComfyUI flags for it.
    pub flags: Vec<String>,
}

/// Which GPU ComfyUI will use.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceSelection {
    /// Torch device 0 of an unrestricted process: GPU index 0.
    #[default]
    Default,
    /// First entry of `CUDA_VISIBLE_DEVICES` / `--cuda-device`: an index.
    Index(u32),
    /// First entry is a `GPU-…` UUID or `MIG-…` id.
    Uuid(String),
    /// Visible list is empty or `-1`: no GPU visible.
    Hidden,
}

impl DeviceSelection {
    /// Parses a `CUDA_VISIBLE_DEVICES`-style list (`"1"`, `"1,0"`, `"GPU-…"`, `""`, `"-1"`).
    pub fn parse(visible: &str) -> Self {
        let first = visible.split(',').map(str::trim).next().unwrap_or("");
        if first.is_empty() || first.starts_with('-') {
            return Self::Hidden;
        }
        if first.eq_ignore_ascii_case("all") {
            return Self::Default;
        }
        match first.parse::<u32>() {
            Ok(i) => Self::Index(i),
            Err(_) => Self::Uuid(first.to_owned()),
        }
    }

    fn pick<'a>(&self, inv: &'a GpuInventory) -> Option<&'a GpuInfo> {
        match self {
            Self::Default => inv.gpus.first(),
            Self::Index(i) => inv.gpus.iter().find(|g| g.index == *i),
            Self::Uuid(u) => inv
                .gpus
                .iter()
                .find(|g| g.uuid.eq_ignore_ascii_case(u))
                .or_else(|| {
                    // MIG-… ids name an instance of a MIG-enabled parent.
                    u.starts_with("MIG-")
                        .then(|| inv.gpus.iter().find(|g| g.mig_mode == MigMode::Enabled))
                        .flatten()
                }),
            Self::Hidden => None,
        }
    }
}

/// The decision with everything needed to explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttentionDecision {
    /// Backend chosen.
    pub choice: AttentionChoice,
    /// Flags to append to the ComfyUI argv (empty when refused).
    pub flags: Vec<String>,
    /// Why, in order.
    pub reasons: Vec<String>,
    /// Things an admin should look at (not blocking).
    pub warnings: Vec<String>,
    /// Next options if the chosen backend fails at run time, best first.
    pub fallbacks: Vec<Candidate>,
    /// Set when ComfyUI must not be started; the message says why and what to do.
    pub refusal: Option<String>,
    /// Index of the GPU the decision is for.
    pub target_gpu: Option<u32>,
}

impl AttentionDecision {
    /// True unless refused.
    pub fn may_start(&self) -> bool {
        self.refusal.is_none()
    }

    /// The decision after a runtime demotion: the first fallback becomes the choice.
    /// `None` when there is nothing left to demote to.
    pub fn demoted(&self, reason: impl Into<String>) -> Option<AttentionDecision> {
        let (next, rest) = self.fallbacks.split_first()?;
        let mut d = self.clone();
        d.choice = next.choice;
        let extra: Vec<String> = self
            .flags
            .iter()
            .filter(|f| !self_flags(self.choice).contains(&f.as_str()))
            .cloned()
            .collect();
        d.flags = next.flags.iter().cloned().chain(extra).collect();
        d.fallbacks = rest.to_vec();
        d.reasons.push(format!(
            "demoted from {} to {}: {}",
            self.choice,
            next.choice,
            reason.into()
        ));
        Some(d)
    }
}

fn self_flags(c: AttentionChoice) -> &'static [&'static str] {
    match c {
        AttentionChoice::Sage => &["--use-sage-attention"],
        AttentionChoice::Flash => &["--use-flash-attention", "--disable-xformers"],
        AttentionChoice::ComfyKitchen => &["--use-ck-attention"],
        AttentionChoice::Pytorch => &["--use-pytorch-cross-attention"],
        AttentionChoice::Split => &["--use-split-cross-attention"],
        AttentionChoice::Quad => &["--use-quad-cross-attention"],
        AttentionChoice::Cpu => &["--cpu"],
        AttentionChoice::Xformers => &[],
    }
}

/// Flags selecting `choice`. Pytorch needs an explicit flag only when xformers is installed
/// (ComfyUI would otherwise pick xformers by itself).
pub fn flags_for(choice: AttentionChoice, xformers_installed: bool) -> Vec<String> {
    match choice {
        AttentionChoice::Pytorch if !xformers_installed => Vec::new(),
        c => self_flags(c).iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// SageAttention 2 dispatches on these architectures (`sageattn()`); sm_100 has no branch.
fn sage_supported(sm: ComputeCapability) -> bool {
    sm.major == 8 || sm == ComputeCapability::new(9, 0) || sm.major == 12
}

/// Does `torch.cuda.get_arch_list()` cover `sm`? SASS runs on the same major with an equal
/// or higher minor; PTX (`compute_XY`) JIT-compiles for any newer GPU. Arch-specific
/// variants (`sm_90a`) only run on exactly that GPU.
pub fn arch_covers(arch_list: &[String], sm: ComputeCapability) -> Option<String> {
    let parse = |s: &str| -> Option<(u32, u32, bool)> {
        let digits: String = s.chars().filter(char::is_ascii_digit).collect();
        if digits.len() < 2 {
            return None;
        }
        let (maj, min) = digits.split_at(digits.len() - 1);
        Some((
            maj.parse().ok()?,
            min.parse().ok()?,
            s.ends_with('a') || s.ends_with('f'),
        ))
    };
    let mut sass: Option<(u32, String)> = None;
    let mut ptx: Option<((u32, u32), String)> = None;
    for a in arch_list {
        let Some((maj, min, specific)) = parse(a) else {
            continue;
        };
        if a.starts_with("sm_") {
            let exact = maj == sm.major && min == sm.minor;
            if (exact || (!specific && maj == sm.major && min <= sm.minor))
                && sass.as_ref().is_none_or(|(m, _)| min > *m)
            {
                sass = Some((min, a.clone()));
            }
        } else if a.starts_with("compute_")
            && !specific
            && (maj, min) <= (sm.major, sm.minor)
            && ptx.as_ref().is_none_or(|(v, _)| (maj, min) > *v)
        {
            ptx = Some(((maj, min), a.clone()));
        }
    }
    sass.map(|(_, a)| a).or(ptx.map(|(_, a)| a))
}

/// Chooses the attention backend and ComfyUI flags.
///
/// `probe` is `None` when the environment probe failed; `accepted_flags` is `None` when
/// `main.py --help` could not be read (then only `--cpu` is passed, never an unverified
/// attention flag).
pub fn decide(
    inventory: &GpuInventory,
    probe: Option<&EnvProbe>,
    accepted_flags: Option<&BTreeSet<String>>,
    over: &OverrideSetting,
    device: &DeviceSelection,
) -> AttentionDecision {
    let mut reasons = Vec::new();
    let mut warnings = Vec::new();
    let xformers = probe.is_some_and(|p| p.xformers.is_some());
    let gpu = device.pick(inventory);

    if inventory.gpus.len() > 1 {
        let desc: Vec<String> = inventory
            .gpus
            .iter()
            .map(|g| {
                format!(
                    "{}: {} ({})",
                    g.index,
                    g.name,
                    g.sm.map_or("sm ?".into(), |s| s.sm_tag())
                )
            })
            .collect();
        let note = format!(
            "{} GPUs [{}]; ComfyUI uses one",
            inventory.gpus.len(),
            desc.join(", ")
        );
        if inventory.is_heterogeneous() {
            warnings.push(format!(
                "mixed GPUs: {note}; this decision is only valid for that one (start ComfyUI with CUDA_DEVICE_ORDER=PCI_BUS_ID so CUDA indexes match nvidia-smi/NVML)"
            ));
        } else {
            reasons.push(note);
        }
    }

    // --- CPU mode -------------------------------------------------------------------------
    let cpu_reason = match (gpu, device) {
        (None, DeviceSelection::Hidden) => Some("CUDA_VISIBLE_DEVICES hides every GPU".to_owned()),
        // The raw NVML / nvidia-smi errors stay in the inventory (shown once, as details).
        (None, _) if inventory.gpus.is_empty() => Some("no NVIDIA GPU found".to_owned()),
        (None, sel) => Some(format!("selected GPU {sel:?} is not in the inventory")),
        (Some(_), _) => match probe {
            Some(p) if p.torch_version.is_some() && p.torch_cuda.is_none() => Some(format!(
                "torch {} is a CPU-only build (torch.version.cuda is None); install a CUDA build of torch to use the GPU",
                p.torch_version.as_deref().unwrap_or("?")
            )),
            _ => None,
        },
    };
    let forced = match over.attention {
        AttentionPreference::Force(c) => Some(c),
        AttentionPreference::Auto => None,
    };
    let cpu_why = cpu_reason
        .clone()
        .or_else(|| (forced == Some(AttentionChoice::Cpu)).then(|| "forced by admin".into()));
    let gpu = match (gpu, cpu_why) {
        (Some(g), None) => g,
        (_, why) => {
            let why = why.unwrap_or_else(|| "no GPU selected".into());
            reasons.push(format!("CPU mode: {why}"));
            if !inventory.gpus.is_empty() && cpu_reason.is_some() {
                warnings.push(format!(
                    "a GPU is present but ComfyUI will run on the CPU: {why}"
                ));
            }
            if forced.is_some_and(|c| c != AttentionChoice::Cpu) {
                warnings.push("attention override ignored: no usable GPU".into());
            }
            let refusal = probe.and_then(torch_missing);
            let refusal = match refusal {
                Some(r) if over.allow_incompatible => {
                    warnings.push(format!("{r} (allow_incompatible is set: starting anyway)"));
                    None
                }
                r => r,
            };
            return finish(
                AttentionChoice::Cpu,
                Vec::new(),
                reasons,
                warnings,
                refusal,
                accepted_flags,
                over,
                xformers,
            );
        }
    };
    let sm_text = gpu
        .sm
        .map_or_else(|| "unknown SM".to_owned(), |s| format!("SM {s}"));
    reasons.push(format!(
        "target GPU {}: {} ({sm_text})",
        gpu.index, gpu.name
    ));
    if gpu.mig_mode == MigMode::Enabled {
        warnings.push(format!(
            "MIG is enabled on GPU {}: CUDA sees MIG instances, not the whole GPU; ComfyUI gets one instance's memory and SMs (set CUDA_VISIBLE_DEVICES to a MIG-… id to pick one)",
            gpu.index
        ));
    }

    // --- compatibility (the "no kernel image" class) --------------------------------------
    let mut refusal: Option<String> = None;
    match probe {
        None => warnings.push(
            "environment probe failed: compatibility not checked, no attention package assumed"
                .into(),
        ),
        Some(p) => {
            refusal = torch_missing(p);
            if let (Some(drv), Some(tc)) = (inventory.cuda_driver_version, p.torch_cuda_version())
                && drv < tc
            {
                refusal.get_or_insert(format!(
                    "driver {} supports CUDA {drv} but torch {} was built for CUDA {tc}: CUDA minor-version compatibility covers only part of the runtime, and PTX JIT (Triton, SageAttention, torch.compile) fails with \"the provided PTX was compiled with an unsupported toolchain\". Upgrade the NVIDIA driver to one supporting CUDA {tc}, or install a torch build for CUDA ≤ {drv}",
                    inventory.driver_version.as_deref().unwrap_or("?"),
                    p.torch_version.as_deref().unwrap_or("?")
                ));
            }
            if inventory.cuda_driver_version.is_none() && p.torch_cuda.is_some() {
                warnings.push(
                    "driver CUDA version unknown: driver vs torch CUDA compatibility not checked"
                        .into(),
                );
            }
            if let Some(sm) = gpu.sm
                && p.torch_cuda.is_some()
            {
                if p.arch_list.is_empty() {
                    warnings.push("torch.cuda.get_arch_list() is empty (CUDA not initialised in the probe); arch coverage not checked".into());
                } else {
                    match arch_covers(&p.arch_list, sm) {
                        Some(a) if a.starts_with("compute_") => warnings.push(format!(
                            "torch has no {} kernels; PTX {a} will be JIT-compiled (slow first start)",
                            sm.sm_tag()
                        )),
                        Some(a) => reasons.push(format!("torch arch list covers {} via {a}", sm.sm_tag())),
                        None => {
                            refusal.get_or_insert(format!(
                                "GPU {} ({}) is not in torch {}'s arch list [{}]: CUDA would fail with \"no kernel image is available for execution on the device\". Install a torch build that includes {} (e.g. a cu128+ wheel for Blackwell)",
                                gpu.name,
                                sm.sm_tag(),
                                p.torch_version.as_deref().unwrap_or("?"),
                                p.arch_list.join(", "),
                                sm.sm_tag()
                            ));
                        }
                    }
                }
            }
            if refusal.is_none() && p.torch_cuda.is_some() && !p.cuda_available {
                refusal = Some(format!(
                    "torch.cuda.is_available() is False although the driver reports a GPU{}",
                    p.errors
                        .get("cuda")
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    if let Some(r) = refusal.take() {
        if over.allow_incompatible {
            warnings.push(format!("{r} (allow_incompatible is set: starting anyway)"));
        } else {
            refusal = Some(r);
        }
    }

    // --- candidates -----------------------------------------------------------------------
    let mut candidates: Vec<AttentionChoice> = Vec::new();
    if let Some(p) = probe {
        let sm = gpu.sm;
        match (&p.sageattention, sm) {
            (None, _) => reasons.push("sageattention is not importable".into()),
            (Some(_), None) => reasons.push("SM unknown: sage not chosen".into()),
            (Some(_), Some(s)) if s.major < 8 => reasons.push(format!("SM {s} < 8.0: SageAttention has no kernels (no sage)")),
            (Some(_), Some(s)) if !sage_supported(s) => reasons.push(format!(
                "SM {s}: sageattn() has no dispatch branch for {} (every call would fall back), sage avoided",
                s.sm_tag()
            )),
            (Some(v), Some(s)) => match p.smoke_result("sageattention") {
                Some(Err(e)) => reasons.push(format!("sageattention {v} failed its smoke test: {e}")),
                _ if p.triton.is_none() => reasons.push(format!("sageattention {v} present but triton is not importable")),
                r => {
                    reasons.push(format!(
                        "sageattention {v} importable{} and SM {s} is supported",
                        if r.is_some() { " and passed a smoke test" } else { "" }
                    ));
                    if r.is_none() {
                        warnings.push("sage not smoke-tested on the GPU; runtime fallbacks will demote it".into());
                    }
                    if v.starts_with("1.") {
                        warnings.push(format!("sageattention {v} is the Triton-only 1.x; 2.x is recommended"));
                    }
                    candidates.push(AttentionChoice::Sage);
                }
            },
        }
        match (&p.flash_attn, sm) {
            (None, _) => {}
            (Some(_), Some(s)) if s.major < 8 => {
                reasons.push(format!("SM {s} < 8.0: flash-attn 2 unsupported (no flash)"))
            }
            (Some(v), s) => match p.smoke_result("flash_attn") {
                Some(Err(e)) => reasons.push(format!("flash-attn {v} failed its smoke test: {e}")),
                r => {
                    reasons.push(format!(
                        "flash-attn {v} importable{}",
                        if r.is_some() {
                            " and passed a smoke test"
                        } else {
                            ""
                        }
                    ));
                    if r.is_none() && s.is_some_and(|s| s.major >= 10) {
                        warnings.push(format!("flash-attn kernels for {} not verified (wheel must be built with CUDA ≥ 12.8 for Blackwell)", s.map_or(String::new(), |s| s.sm_tag())));
                    }
                    candidates.push(AttentionChoice::Flash);
                }
            },
        }
        if let Some(v) = &p.xformers {
            reasons.push(format!(
                "xformers {v} importable (ComfyUI's default when present)"
            ));
            candidates.push(AttentionChoice::Xformers);
        }
    }
    candidates.push(AttentionChoice::Pytorch);

    let chosen = match forced {
        Some(c) => {
            reasons.push(format!("{c} forced by admin override"));
            let missing = probe.and_then(|p| match c {
                AttentionChoice::Sage if p.sageattention.is_none() => Some("sageattention"),
                AttentionChoice::Flash if p.flash_attn.is_none() => Some("flash_attn"),
                AttentionChoice::Xformers if p.xformers.is_none() => Some("xformers"),
                AttentionChoice::ComfyKitchen if p.comfy_kitchen_attention != Some(true) => {
                    Some("comfy_kitchen (with int8 attention)")
                }
                _ => None,
            });
            if let Some(pkg) = missing {
                refusal.get_or_insert(format!(
                    "admin forced {c} but {pkg} is not importable: ComfyUI would exit(-1) at start. Install it or set the override to auto"
                ));
            }
            candidates.retain(|x| *x != c);
            candidates.insert(0, c);
            c
        }
        None => candidates[0],
    };
    let mut d = finish(
        chosen,
        candidates,
        reasons,
        warnings,
        refusal,
        accepted_flags,
        over,
        xformers,
    );
    d.target_gpu = Some(gpu.index);
    d
}

/// Refusal when torch itself does not import (ComfyUI cannot start in any mode).
fn torch_missing(p: &EnvProbe) -> Option<String> {
    p.torch_version.is_none().then(|| {
        format!(
            "torch does not import in the ComfyUI environment ({}): ComfyUI cannot start. Install torch into that environment",
            p.errors.get("torch").map_or("unknown error", String::as_str)
        )
    })
}

/// Applies flag verification, builds fallbacks and extra flags.
#[allow(clippy::too_many_arguments)]
fn finish(
    preferred: AttentionChoice,
    candidates: Vec<AttentionChoice>,
    mut reasons: Vec<String>,
    warnings: Vec<String>,
    refusal: Option<String>,
    accepted: Option<&BTreeSet<String>>,
    over: &OverrideSetting,
    xformers: bool,
) -> AttentionDecision {
    let ok = |f: &String| match accepted {
        Some(a) => a.contains(f),
        None => f == "--cpu",
    };
    let mut order = if candidates.is_empty() {
        vec![preferred]
    } else {
        candidates
    };
    if !order.contains(&preferred) {
        order.insert(0, preferred);
    }
    let mut usable: Vec<Candidate> = Vec::new();
    for c in order {
        let flags = flags_for(c, xformers);
        if let Some(bad) = flags.iter().find(|f| !ok(f)) {
            reasons.push(match accepted {
                Some(_) => format!("{c} dropped: this ComfyUI does not accept {bad}"),
                None => format!("{c} dropped: `main.py --help` unreadable, {bad} unverified"),
            });
            continue;
        }
        usable.push(Candidate { choice: c, flags });
    }
    let (choice, mut flags, fallbacks) = match usable.split_first() {
        Some((first, rest)) => (first.choice, first.flags.clone(), rest.to_vec()),
        None => {
            reasons.push("no verifiable attention flag: passing none (ComfyUI default)".into());
            (
                if preferred == AttentionChoice::Cpu {
                    AttentionChoice::Cpu
                } else {
                    AttentionChoice::Pytorch
                },
                Vec::new(),
                Vec::new(),
            )
        }
    };
    if choice != preferred {
        reasons.push(format!("using {choice} instead of {preferred}"));
    } else {
        reasons.push(format!("chosen: {choice}"));
    }
    // A value (`400` in `--preview-size 400`) goes with the flag before it: kept with an
    // accepted flag, dropped with a refused one (never left behind as a stray argument).
    let mut last_flag_kept: Option<bool> = None;
    for f in &over.extra_flags {
        let name = f.split('=').next().unwrap_or(f).to_owned();
        if !name.starts_with("--") {
            match last_flag_kept {
                Some(true) => flags.push(f.clone()),
                Some(false) => {
                    reasons.push(format!("extra value {f} dropped with the flag before it"))
                }
                None => reasons.push(format!("extra value {f} dropped: it follows no flag")),
            }
        } else if accepted.is_some_and(|a| a.contains(&name)) {
            if !flags.contains(f) {
                flags.push(f.clone());
            }
            last_flag_kept = Some(true);
        } else {
            reasons.push(format!(
                "extra flag {f} dropped: not accepted by this ComfyUI"
            ));
            last_flag_kept = Some(false);
        }
    }
    let refused = refusal.is_some();
    AttentionDecision {
        choice,
        flags: if refused { Vec::new() } else { flags },
        reasons,
        warnings,
        fallbacks,
        refusal,
        target_gpu: None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn arch(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn arch_coverage_rules() {
        let cu124 = arch(&[
            "sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90",
        ]);
        assert_eq!(
            arch_covers(&cu124, ComputeCapability::new(8, 9)).as_deref(),
            Some("sm_86")
        );
        assert_eq!(arch_covers(&cu124, ComputeCapability::new(12, 0)), None);
        assert_eq!(arch_covers(&cu124, ComputeCapability::new(10, 0)), None);
        let ptx = arch(&["sm_80", "sm_90", "compute_90"]);
        assert_eq!(
            arch_covers(&ptx, ComputeCapability::new(12, 0)).as_deref(),
            Some("compute_90")
        );
        assert_eq!(
            arch_covers(&arch(&["sm_90a"]), ComputeCapability::new(9, 0)).as_deref(),
            Some("sm_90a")
        );
        assert_eq!(
            arch_covers(&arch(&["sm_90a"]), ComputeCapability::new(12, 0)),
            None
        );
        assert_eq!(
            arch_covers(&arch(&["sm_120"]), ComputeCapability::new(12, 0)).as_deref(),
            Some("sm_120")
        );
    }

    #[test]
    fn device_selection_parsing() {
        assert_eq!(DeviceSelection::parse("1,0"), DeviceSelection::Index(1));
        assert_eq!(DeviceSelection::parse(""), DeviceSelection::Hidden);
        assert_eq!(DeviceSelection::parse("-1"), DeviceSelection::Hidden);
        assert_eq!(DeviceSelection::parse("all"), DeviceSelection::Default);
        assert_eq!(
            DeviceSelection::parse("GPU-abc"),
            DeviceSelection::Uuid("GPU-abc".into())
        );
    }

    #[test]
    fn override_serde_shape() {
        let o: OverrideSetting =
            serde_json::from_str(r#"{"attention":{"force":"flash"},"extra_flags":["--fast"]}"#)
                .unwrap();
        assert_eq!(
            o.attention,
            AttentionPreference::Force(AttentionChoice::Flash)
        );
        let o: OverrideSetting = serde_json::from_str(r#"{"attention":"auto"}"#).unwrap();
        assert_eq!(o.attention, AttentionPreference::Auto);
    }
}
