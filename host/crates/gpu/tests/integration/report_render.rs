//! The report's JSON shape (for the API) and text rendering (for `comfyhost gpu`).

use std::collections::BTreeSet;

use crate::common::*;
use comfyhost_gpu::env_probe::parse_help_flags;
use comfyhost_gpu::{
    Confirmer, DemotePolicy, DeviceSelection, EnvProbe, GpuReport, OverrideSetting, ProbeOutcome,
    decide,
};

fn report(case: &str, probe: EnvProbe) -> GpuReport {
    let help = std::fs::read_to_string(fixture_dir().join("comfyui-0.3.64-help.txt")).unwrap();
    let flags: BTreeSet<String> = parse_help_flags(&help);
    let inventory = nvml_inventory(case);
    let decision = decide(
        &inventory,
        Some(&probe),
        Some(&flags),
        &OverrideSetting::default(),
        &DeviceSelection::Default,
    );
    let outcome = ProbeOutcome {
        env: Ok(probe),
        accepted_flags: Ok(flags),
        cached: true,
    };
    GpuReport::new(inventory, outcome, decision)
}

fn probe(arch: &[&str]) -> EnvProbe {
    EnvProbe {
        torch_version: Some("2.8.0+cu128".into()),
        torch_cuda: Some("12.8".into()),
        arch_list: arch.iter().map(|s| (*s).to_owned()).collect(),
        cuda_available: true,
        sageattention: Some("2.2.0".into()),
        triton: Some("3.4.0".into()),
        xformers: Some("0.0.32.post2".into()),
        ..EnvProbe::default()
    }
}

#[test]
fn text_report_for_a_sage_gpu() {
    let mut r = report(
        "h100",
        probe(&["sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]),
    );
    let mut c = Confirmer::new(&r.decision, DemotePolicy::default());
    c.observe_line("Using sage attention", std::time::Instant::now());
    r.confirmation = Some(c.confirmation().clone());
    let t = r.render_text();
    for want in [
        "GPUs (source: NVML)",
        "driver 570.86.15, CUDA 12.8",
        "[0] NVIDIA H100 80GB HBM3  SM 9.0  VRAM 81559 MiB total / 81006 MiB free, MIG disabled",
        "torch 2.8.0+cu128 (CUDA 12.8)",
        "sageattention 2.2.0, flash_attn -, xformers 0.0.32.post2, triton 3.4.0",
        "Decision: sage  flags: --use-sage-attention",
        "torch arch list covers sm_90 via sm_90",
        "fallbacks: xformers → pytorch",
        "Confirmation: Confirmed: ComfyUI reports sage attention",
    ] {
        assert!(t.contains(want), "missing {want:?} in\n{t}");
    }
    assert!(!t.contains("REFUSED"));
}

#[test]
fn text_report_shows_refusal_and_json_round_trips() {
    let r = report(
        "rtx5090",
        probe(&[
            "sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90",
        ]),
    );
    let t = r.render_text();
    assert!(t.contains("Decision: sage  flags: (none)"), "{t}");
    assert!(
        t.contains("REFUSED: GPU NVIDIA GeForce RTX 5090 (sm_120) is not in torch"),
        "{t}"
    );
    let json = serde_json::to_string(&r).unwrap();
    let back: GpuReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["inventory"]["gpus"][0]["sm"]["major"], 12);
    assert_eq!(v["decision"]["choice"], "sage");
    assert!(
        v["decision"]["refusal"]
            .as_str()
            .unwrap()
            .contains("no kernel image")
    );
    assert!(v["probe"]["torch_version"].is_string());
}
