//! GPU inventory types shared by the NVML and `nvidia-smi` backends.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where an inventory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InventorySource {
    /// `libnvidia-ml.so.1`, loaded at run time.
    Nvml,
    /// `nvidia-smi --query-gpu=…` (fallback when NVML is unusable).
    NvidiaSmi,
    /// No backend produced GPUs: CPU mode.
    None,
}

/// CUDA compute capability (`SM major.minor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ComputeCapability {
    /// Major version (8 for Ampere/Ada, 9 Hopper, 10/12 Blackwell).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl ComputeCapability {
    /// Creates a compute capability.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// Parses `"8.9"` (the `compute_cap` column of `nvidia-smi`).
    pub fn parse(s: &str) -> Option<Self> {
        let (a, b) = s.trim().split_once('.')?;
        Some(Self::new(a.trim().parse().ok()?, b.trim().parse().ok()?))
    }

    /// The CUDA arch tag, e.g. `sm_89`.
    pub fn sm_tag(&self) -> String {
        format!("sm_{}{}", self.major, self.minor)
    }
}

impl fmt::Display for ComputeCapability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A CUDA version such as `12.8` (driver API version or torch build).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CudaVersion {
    /// Major version.
    pub major: u32,
    /// Minor version.
    pub minor: u32,
}

impl CudaVersion {
    /// Creates a version.
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// Parses `"12.8"` or `"12.8.1"` (patch ignored).
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.trim().split('.');
        let major = it.next()?.trim().parse().ok()?;
        let minor = it.next().map_or(Some(0), |m| m.trim().parse().ok())?;
        Some(Self::new(major, minor))
    }

    /// Decodes NVML's integer encoding (`12080` = 12.8).
    pub fn from_nvml(v: i32) -> Option<Self> {
        if v <= 0 {
            return None;
        }
        let v = v as u32;
        Some(Self::new(v / 1000, (v % 1000) / 10))
    }
}

impl fmt::Display for CudaVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Multi-Instance GPU mode of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigMode {
    /// MIG is on: CUDA sees MIG instances, not the whole GPU.
    Enabled,
    /// MIG-capable, currently off.
    Disabled,
    /// The GPU has no MIG (consumer cards, pre-Ampere), or the driver did not say.
    NotSupported,
}

/// One physical GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInfo {
    /// Index as NVML / `nvidia-smi` numbers it (PCI order).
    pub index: u32,
    /// Marketing name, e.g. `NVIDIA GeForce RTX 4090`.
    pub name: String,
    /// `GPU-xxxxxxxx-…` UUID.
    pub uuid: String,
    /// Compute capability; `None` only when neither the driver nor the name table knows it.
    pub sm: Option<ComputeCapability>,
    /// Total VRAM in MiB, when reported.
    pub vram_total_mib: Option<u64>,
    /// Free VRAM in MiB, when reported.
    pub vram_free_mib: Option<u64>,
    /// MIG mode.
    pub mig_mode: MigMode,
}

/// What the machine has, or why it is in CPU mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuInventory {
    /// Backend that produced this inventory.
    pub source: InventorySource,
    /// GPUs in index order (empty in CPU mode).
    pub gpus: Vec<GpuInfo>,
    /// Kernel driver version, e.g. `570.124.06`.
    pub driver_version: Option<String>,
    /// Highest CUDA version the driver supports, e.g. `12.8`.
    pub cuda_driver_version: Option<CudaVersion>,
    /// Why there are no GPUs (set in CPU mode), human readable.
    pub error: Option<String>,
    /// What was tried before the result (e.g. why NVML was skipped).
    pub notes: Vec<String>,
}

impl GpuInventory {
    /// CPU mode with a reason.
    pub fn cpu_mode(reason: impl Into<String>, notes: Vec<String>) -> Self {
        Self {
            source: InventorySource::None,
            gpus: Vec::new(),
            driver_version: None,
            cuda_driver_version: None,
            error: Some(reason.into()),
            notes,
        }
    }

    /// True when no GPU is usable.
    pub fn is_cpu_mode(&self) -> bool {
        self.gpus.is_empty()
    }

    /// True when the GPUs differ in name or compute capability.
    pub fn is_heterogeneous(&self) -> bool {
        self.gpus
            .windows(2)
            .any(|w| w[0].name != w[1].name || w[0].sm != w[1].sm)
    }
}

/// Compute capability from a GPU name, for drivers whose `nvidia-smi` lacks `compute_cap`
/// (added around R510). Most specific patterns first. A pattern marked `family` matches any
/// model number continuing it (`RTX 50` → `RTX 5090`); otherwise the model number must end
/// there (`A10` matches `A10G` but not `A100`).
pub fn sm_from_name(name: &str) -> Option<ComputeCapability> {
    const TABLE: &[(&str, bool, u32, u32)] = &[
        ("RTX PRO 6000 BLACKWELL", false, 12, 0),
        ("RTX 50", true, 12, 0),
        ("GB200", false, 10, 0),
        ("B200", false, 10, 0),
        ("B100", false, 10, 0),
        ("GH200", false, 9, 0),
        ("H200", false, 9, 0),
        ("H100", false, 9, 0),
        ("H800", false, 9, 0),
        ("H20", false, 9, 0),
        ("L40", false, 8, 9),
        ("L4", false, 8, 9),
        ("RTX 6000 ADA", false, 8, 9),
        ("RTX 40", true, 8, 9),
        ("A100", false, 8, 0),
        ("A800", false, 8, 0),
        ("A30", false, 8, 0),
        ("A40", false, 8, 6),
        ("A10", false, 8, 6),
        ("A16", false, 8, 6),
        ("A2", false, 8, 6),
        ("RTX A", true, 8, 6),
        ("RTX 30", true, 8, 6),
        ("T4", false, 7, 5),
        ("QUADRO RTX", true, 7, 5),
        ("TITAN RTX", false, 7, 5),
        ("RTX 20", true, 7, 5),
        ("GTX 16", true, 7, 5),
        ("V100", false, 7, 0),
        ("TITAN V", false, 7, 0),
        ("P100", false, 6, 0),
        ("P40", false, 6, 1),
        ("P4", false, 6, 1),
        ("GTX 10", true, 6, 1),
    ];
    let upper = name.to_ascii_uppercase();
    TABLE
        .iter()
        .find(|(pat, family, _, _)| matches_model(&upper, pat, *family))
        .map(|&(_, _, a, b)| ComputeCapability::new(a, b))
}

/// `pat` starts a word in `hay`; unless `family`, it is not followed by another digit.
fn matches_model(hay: &str, pat: &str, family: bool) -> bool {
    let bytes = hay.as_bytes();
    hay.match_indices(pat).any(|(at, _)| {
        let before_ok = at == 0 || !bytes[at - 1].is_ascii_alphanumeric();
        let after_ok = family
            || bytes
                .get(at + pat.len())
                .is_none_or(|c| !c.is_ascii_digit());
        before_ok && after_ok
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sm_table_matches_real_names() {
        let cases = [
            ("Tesla T4", Some((7, 5))),
            ("NVIDIA A100-SXM4-80GB", Some((8, 0))),
            ("NVIDIA A10", Some((8, 6))),
            ("NVIDIA A10G", Some((8, 6))),
            ("NVIDIA GeForce RTX 3090", Some((8, 6))),
            ("NVIDIA GeForce RTX 4090", Some((8, 9))),
            ("NVIDIA L40S", Some((8, 9))),
            ("NVIDIA L4", Some((8, 9))),
            ("NVIDIA H100 80GB HBM3", Some((9, 0))),
            ("NVIDIA H200", Some((9, 0))),
            ("NVIDIA H200 NVL", Some((9, 0))),
            ("NVIDIA GH200 480GB", Some((9, 0))),
            ("NVIDIA H20", Some((9, 0))),
            ("NVIDIA H100 NVL", Some((9, 0))),
            ("NVIDIA B200", Some((10, 0))),
            ("NVIDIA GeForce RTX 5090", Some((12, 0))),
            (
                "NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
                Some((12, 0)),
            ),
            ("Tesla V100-SXM2-16GB", Some((7, 0))),
            ("Mystery Accelerator", None),
        ];
        for (name, want) in cases {
            let got = sm_from_name(name).map(|c| (c.major, c.minor));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn cuda_version_parsing() {
        assert_eq!(CudaVersion::parse("12.8"), Some(CudaVersion::new(12, 8)));
        assert_eq!(CudaVersion::parse("11.4.2"), Some(CudaVersion::new(11, 4)));
        assert_eq!(CudaVersion::parse("x"), None);
        assert_eq!(CudaVersion::from_nvml(12080), Some(CudaVersion::new(12, 8)));
        assert_eq!(CudaVersion::from_nvml(13000), Some(CudaVersion::new(13, 0)));
        assert_eq!(CudaVersion::from_nvml(0), None);
        assert_eq!(
            ComputeCapability::parse("12.0").map(|c| c.sm_tag()),
            Some("sm_120".into())
        );
    }
}
