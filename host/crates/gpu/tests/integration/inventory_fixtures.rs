//! Recorded NVML and nvidia-smi outputs parse to the expected, identical inventories.

use crate::common::*;
use comfyhost_gpu::nvidia_smi::{SmiError, inventory_from_outputs, parse_query_csv};
use comfyhost_gpu::{ComputeCapability, CudaVersion, InventorySource, MigMode};

/// (case, driver, cuda, [(name, sm, total MiB, free MiB, mig)])
type Gpu = (&'static str, (u32, u32), u64, u64, MigMode);
fn expected(case: &str) -> (&'static str, (u32, u32), Vec<Gpu>) {
    use MigMode::*;
    let r4090: Gpu = (
        "NVIDIA GeForce RTX 4090",
        (8, 9),
        24564,
        24077,
        NotSupported,
    );
    let r3090: Gpu = (
        "NVIDIA GeForce RTX 3090",
        (8, 6),
        24576,
        24237,
        NotSupported,
    );
    match case {
        "no_gpu" => ("570.124.06", (12, 8), vec![]),
        "t4" => (
            "535.183.01",
            (12, 2),
            vec![("Tesla T4", (7, 5), 15360, 14913, NotSupported)],
        ),
        "a100" => (
            "550.90.07",
            (12, 4),
            vec![("NVIDIA A100-SXM4-80GB", (8, 0), 81920, 81037, Disabled)],
        ),
        "rtx3090" => ("570.133.07", (12, 8), vec![r3090]),
        "rtx4090" => ("570.124.06", (12, 8), vec![r4090]),
        "h100" => (
            "570.86.15",
            (12, 8),
            vec![("NVIDIA H100 80GB HBM3", (9, 0), 81559, 81006, Disabled)],
        ),
        "h200" => (
            "580.95.05",
            (13, 0),
            vec![("NVIDIA H200", (9, 0), 143771, 143252, Disabled)],
        ),
        "b200" => (
            "570.124.06",
            (12, 8),
            vec![("NVIDIA B200", (10, 0), 183359, 182598, Disabled)],
        ),
        "rtx5090" => (
            "570.153.02",
            (12, 8),
            vec![(
                "NVIDIA GeForce RTX 5090",
                (12, 0),
                32607,
                32111,
                NotSupported,
            )],
        ),
        "multi_2x4090" => ("570.124.06", (12, 8), vec![r4090, r4090]),
        "mixed_3090_4090" => ("570.133.07", (12, 8), vec![r3090, r4090]),
        "a100_mig" => (
            "550.90.07",
            (12, 4),
            vec![("NVIDIA A100-SXM4-40GB", (8, 0), 40960, 40338, Enabled)],
        ),
        "driver_too_old_4090" => ("535.154.05", (12, 2), vec![r4090]),
        other => panic!("no expectation for {other}"),
    }
}

#[test]
fn nvml_and_nvidia_smi_fixtures_give_the_expected_inventory() {
    for case in CASES {
        let (driver, cuda, gpus) = expected(case);
        let nvml = nvml_inventory(case);
        let smi = smi_inventory(case);
        for (src, inv) in [("nvml", &nvml), ("nvidia-smi", &smi)] {
            assert_eq!(inv.gpus.len(), gpus.len(), "{case}/{src}");
            assert_eq!(inv.is_cpu_mode(), gpus.is_empty(), "{case}/{src}");
            for (g, (name, sm, total, free, mig)) in inv.gpus.iter().zip(&gpus) {
                assert_eq!(g.name, *name, "{case}/{src}");
                assert_eq!(
                    g.sm,
                    Some(ComputeCapability::new(sm.0, sm.1)),
                    "{case}/{src}"
                );
                assert_eq!(g.vram_total_mib, Some(*total), "{case}/{src}");
                assert_eq!(g.vram_free_mib, Some(*free), "{case}/{src}");
                assert_eq!(g.mig_mode, *mig, "{case}/{src}");
                assert!(g.uuid.starts_with("GPU-"), "{case}/{src}");
            }
            if gpus.is_empty() {
                assert_eq!(inv.source, InventorySource::None);
                assert!(
                    inv.error.as_deref().is_some_and(|e| !e.is_empty()),
                    "{case}/{src}: CPU mode needs a reason"
                );
            } else {
                assert!(inv.error.is_none(), "{case}/{src}");
                assert_eq!(inv.driver_version.as_deref(), Some(driver), "{case}/{src}");
                assert_eq!(
                    inv.cuda_driver_version,
                    Some(CudaVersion::new(cuda.0, cuda.1)),
                    "{case}/{src}"
                );
            }
        }
        assert_eq!(
            nvml.source,
            if gpus.is_empty() {
                InventorySource::None
            } else {
                InventorySource::Nvml
            }
        );
        assert_eq!(
            smi.source,
            if gpus.is_empty() {
                InventorySource::None
            } else {
                InventorySource::NvidiaSmi
            }
        );
        // Both backends agree on the hardware.
        assert_eq!(nvml.gpus, smi.gpus, "{case}: NVML and nvidia-smi disagree");
    }
}

#[test]
fn heterogeneity_is_detected_only_for_mixed_boxes() {
    assert!(smi_inventory("mixed_3090_4090").is_heterogeneous());
    assert!(!smi_inventory("multi_2x4090").is_heterogeneous());
    assert!(!smi_inventory("h100").is_heterogeneous());
}

#[test]
fn legacy_driver_without_compute_cap_derives_sm_from_name() {
    let err = parse_query_csv(
        &read("legacy_t4_no_compute_cap", "nvidia-smi-query-error.txt"),
        true,
    )
    .unwrap_err();
    assert_eq!(err, SmiError::NoComputeCapField);
    let inv = inventory_from_outputs(
        &read("legacy_t4_no_compute_cap", "nvidia-smi-query.csv"),
        false,
        Some(&read("legacy_t4_no_compute_cap", "nvidia-smi.txt")),
    )
    .unwrap();
    assert_eq!(inv.gpus[0].sm, Some(ComputeCapability::new(7, 5)));
    assert_eq!(inv.gpus[0].vram_total_mib, Some(15109));
    assert_eq!(inv.driver_version.as_deref(), Some("470.256.02"));
    assert_eq!(inv.cuda_driver_version, Some(CudaVersion::new(11, 4)));
}

#[test]
fn driver_failure_output_is_an_error_not_a_panic() {
    let err = parse_query_csv(&read("driver_error", "nvidia-smi-query.csv"), true).unwrap_err();
    assert!(
        matches!(err, SmiError::Driver(ref m) if m.contains("couldn't communicate")),
        "{err}"
    );
}

/// R610 drivers renamed the banner's versions (`KMD Version`, `CUDA UMD Version`); the CUDA
/// version decides which torch builds can run, so losing it would misjudge the environment.
#[test]
fn r610_banner_still_gives_the_cuda_driver_version() {
    let inv = smi_inventory("h200_r610");
    assert_eq!(inv.gpus[0].name, "NVIDIA H200 NVL");
    assert_eq!(inv.gpus[0].sm, Some(ComputeCapability::new(9, 0)));
    assert_eq!(inv.driver_version.as_deref(), Some("610.43.02"));
    assert_eq!(inv.cuda_driver_version, Some(CudaVersion::new(13, 3)));
}
