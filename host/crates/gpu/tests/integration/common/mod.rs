//! Shared fixture loading for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use comfyhost_gpu::GpuInventory;
use comfyhost_gpu::nvidia_smi::inventory_from_outputs;
use comfyhost_gpu::nvml::NvmlSnapshot;

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn read(case: &str, file: &str) -> String {
    let p = fixture_dir().join(case).join(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Inventory from the recorded NVML snapshot.
pub fn nvml_inventory(case: &str) -> GpuInventory {
    let snap: NvmlSnapshot = serde_json::from_str(&read(case, "nvml.json")).unwrap();
    snap.into_inventory()
}

/// Inventory from the recorded `nvidia-smi` query CSV + banner.
pub fn smi_inventory(case: &str) -> GpuInventory {
    inventory_from_outputs(
        &read(case, "nvidia-smi-query.csv"),
        true,
        Some(&read(case, "nvidia-smi.txt")),
    )
    .unwrap()
}

/// Cases that have both NVML and nvidia-smi recordings.
pub const CASES: &[&str] = &[
    "no_gpu",
    "t4",
    "a100",
    "rtx3090",
    "rtx4090",
    "h100",
    "h200",
    "b200",
    "rtx5090",
    "multi_2x4090",
    "mixed_3090_4090",
    "a100_mig",
    "driver_too_old_4090",
];
