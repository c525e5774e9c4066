//! Table-driven decision tests: every recorded inventory × environment probe.

use std::collections::BTreeSet;

use crate::common::*;
use comfyhost_gpu::env_probe::parse_help_flags;
use comfyhost_gpu::{
    AttentionChoice, AttentionPreference, DeviceSelection, EnvProbe, GpuInventory, OverrideSetting,
    decide,
};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

/// Real ComfyUI 0.3.64 `main.py --help`.
fn accepted() -> BTreeSet<String> {
    let help = std::fs::read_to_string(fixture_dir().join("comfyui-0.3.64-help.txt")).unwrap();
    parse_help_flags(&help)
}

#[derive(Clone, Copy, Debug)]
enum Torch {
    /// 2.11.0+cu130 (the H200 image; CUDA 13 builds start at sm_75).
    Cu130,
    /// 2.8.0+cu128 (Blackwell-capable).
    Cu128,
    /// 2.5.1+cu124 (no sm_100 / sm_120).
    Cu124,
    /// 2.5.1+cu121.
    Cu121,
}

fn torch_probe(t: Torch) -> EnvProbe {
    let (v, cuda, arch): (&str, &str, &[&str]) = match t {
        Torch::Cu130 => (
            "2.11.0+cu130",
            "13.0",
            &[
                "sm_75",
                "sm_80",
                "sm_86",
                "sm_90",
                "sm_100",
                "sm_120",
                "compute_120",
            ],
        ),
        Torch::Cu128 => (
            "2.8.0+cu128",
            "12.8",
            &[
                "sm_75",
                "sm_80",
                "sm_86",
                "sm_90",
                "sm_100",
                "sm_120",
                "compute_120",
            ],
        ),
        Torch::Cu124 => (
            "2.5.1+cu124",
            "12.4",
            &[
                "sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90",
            ],
        ),
        Torch::Cu121 => (
            "2.5.1+cu121",
            "12.1",
            &[
                "sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90",
            ],
        ),
    };
    EnvProbe {
        python: Some("3.11.7".into()),
        torch_version: Some(v.into()),
        torch_cuda: Some(cuda.into()),
        arch_list: s(arch),
        cuda_available: true,
        ..EnvProbe::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Env {
    Bare,
    Sage,
    SageSmokeFailed,
    Flash,
    Xformers,
    All,
}
const ENVS: [Env; 6] = [
    Env::Bare,
    Env::Sage,
    Env::SageSmokeFailed,
    Env::Flash,
    Env::Xformers,
    Env::All,
];

fn with_env(mut p: EnvProbe, e: Env) -> EnvProbe {
    let sage = |p: &mut EnvProbe| {
        p.sageattention = Some("2.2.0".into());
        p.triton = Some("3.4.0".into());
    };
    match e {
        Env::Bare => {}
        Env::Sage => sage(&mut p),
        Env::SageSmokeFailed => {
            sage(&mut p);
            p.smoke.insert("sageattention".into(), Some("RuntimeError: CUDA error: no kernel image is available for execution on the device".into()));
        }
        Env::Flash => p.flash_attn = Some("2.8.3".into()),
        Env::Xformers => p.xformers = Some("0.0.32.post2".into()),
        Env::All => {
            sage(&mut p);
            p.flash_attn = Some("2.8.3".into());
            p.xformers = Some("0.0.32.post2".into());
        }
    }
    p
}

/// GPU classes and the torch build their driver supports.
#[derive(Clone, Copy, Debug)]
enum Class {
    Cpu,
    Turing,
    SageCapable,
    Sm100,
    Refused,
}

fn class_of(case: &str) -> (Class, Torch) {
    match case {
        "no_gpu" => (Class::Cpu, Torch::Cu128),
        "t4" => (Class::Turing, Torch::Cu121),
        "a100" | "a100_mig" => (Class::SageCapable, Torch::Cu124),
        "rtx3090" | "rtx4090" | "h100" | "rtx5090" | "multi_2x4090" | "mixed_3090_4090" => {
            (Class::SageCapable, Torch::Cu128)
        }
        "h200" => (Class::SageCapable, Torch::Cu130),
        "b200" => (Class::Sm100, Torch::Cu128),
        // driver CUDA 12.2 vs torch cu128
        "driver_too_old_4090" => (Class::Refused, Torch::Cu128),
        other => panic!("unclassified {other}"),
    }
}

const SAGE: &[&str] = &["--use-sage-attention"];
const FLASH: &[&str] = &["--use-flash-attention", "--disable-xformers"];
const NONE: &[&str] = &[];

/// The table: (class, env) → (choice, flags, refused).
fn expect(class: Class, env: Env) -> (AttentionChoice, &'static [&'static str], bool) {
    use AttentionChoice::*;
    match (class, env) {
        (Class::Cpu, _) => (Cpu, &["--cpu"], false),
        (Class::Refused, _) => (
            match env {
                Env::Sage | Env::All => Sage,
                Env::Flash => Flash,
                Env::Xformers => Xformers,
                Env::Bare | Env::SageSmokeFailed => Pytorch,
            },
            NONE,
            true,
        ),
        (Class::Turing, Env::Xformers | Env::All) => (Xformers, NONE, false),
        (Class::Turing, _) => (Pytorch, NONE, false),
        (Class::SageCapable, Env::Bare | Env::SageSmokeFailed) => (Pytorch, NONE, false),
        (Class::SageCapable, Env::Sage | Env::All) => (Sage, SAGE, false),
        (Class::SageCapable, Env::Flash) => (Flash, FLASH, false),
        (Class::SageCapable, Env::Xformers) => (Xformers, NONE, false),
        (Class::Sm100, Env::Bare | Env::Sage | Env::SageSmokeFailed) => (Pytorch, NONE, false),
        (Class::Sm100, Env::Flash | Env::All) => (Flash, FLASH, false),
        (Class::Sm100, Env::Xformers) => (Xformers, NONE, false),
    }
}

fn inventories(case: &str) -> [(&'static str, GpuInventory); 2] {
    [
        ("nvml", nvml_inventory(case)),
        ("nvidia-smi", smi_inventory(case)),
    ]
}

#[test]
fn matrix_of_inventories_and_environments() {
    let acc = accepted();
    let mut rows = 0;
    for case in CASES {
        let (class, torch) = class_of(case);
        for env in ENVS {
            let probe = with_env(torch_probe(torch), env);
            for (src, inv) in inventories(case) {
                let d = decide(
                    &inv,
                    Some(&probe),
                    Some(&acc),
                    &OverrideSetting::default(),
                    &DeviceSelection::Default,
                );
                let (choice, flags, refused) = expect(class, env);
                let ctx = format!("{case}/{src}/{env:?}: {d:#?}");
                assert_eq!(d.choice, choice, "{ctx}");
                assert_eq!(d.flags, s(flags), "{ctx}");
                assert_eq!(d.refusal.is_some(), refused, "{ctx}");
                assert!(!d.reasons.is_empty(), "{ctx}");
                assert!(d.flags.iter().all(|f| acc.contains(f)), "{ctx}");
                rows += 1;
            }
        }
    }
    assert_eq!(rows, CASES.len() * ENVS.len() * 2);
}

#[test]
fn fallbacks_are_ordered_best_first() {
    let acc = accepted();
    let probe = with_env(torch_probe(Torch::Cu128), Env::All);
    let d = decide(
        &smi_inventory("rtx4090"),
        Some(&probe),
        Some(&acc),
        &OverrideSetting::default(),
        &DeviceSelection::Default,
    );
    let order: Vec<AttentionChoice> = d.fallbacks.iter().map(|c| c.choice).collect();
    assert_eq!(
        order,
        [
            AttentionChoice::Flash,
            AttentionChoice::Xformers,
            AttentionChoice::Pytorch
        ]
    );
    // With xformers installed, pytorch must be requested explicitly.
    assert_eq!(d.fallbacks[2].flags, s(&["--use-pytorch-cross-attention"]));
    let d2 = d.demoted("3 runtime fallbacks").unwrap();
    assert_eq!(d2.choice, AttentionChoice::Flash);
    assert_eq!(d2.flags, s(FLASH));
    assert!(
        d2.reasons
            .last()
            .unwrap()
            .contains("demoted from sage to flash")
    );
    let d3 = d2.demoted("x").unwrap().demoted("y").unwrap();
    assert_eq!(d3.choice, AttentionChoice::Pytorch);
    assert!(d3.demoted("z").is_none());
}

#[test]
fn rtx5090_with_cu124_torch_is_refused_with_a_clear_message() {
    for env in ENVS {
        let probe = with_env(torch_probe(Torch::Cu124), env);
        for (src, inv) in inventories("rtx5090") {
            let d = decide(
                &inv,
                Some(&probe),
                Some(&accepted()),
                &OverrideSetting::default(),
                &DeviceSelection::Default,
            );
            let r = d
                .refusal
                .as_deref()
                .unwrap_or_else(|| panic!("{src}/{env:?} not refused"));
            assert!(
                r.contains("sm_120") && r.contains("no kernel image") && r.contains("2.5.1+cu124"),
                "{r}"
            );
            assert!(d.flags.is_empty());
        }
    }
}

#[test]
fn driver_too_old_refusal_names_both_versions_and_can_be_overridden() {
    let probe = with_env(torch_probe(Torch::Cu128), Env::Sage);
    let inv = smi_inventory("driver_too_old_4090");
    let d = decide(
        &inv,
        Some(&probe),
        Some(&accepted()),
        &OverrideSetting::default(),
        &DeviceSelection::Default,
    );
    let r = d.refusal.unwrap();
    assert!(
        r.contains("535.154.05") && r.contains("CUDA 12.2") && r.contains("CUDA 12.8"),
        "{r}"
    );
    let over = OverrideSetting {
        allow_incompatible: true,
        ..OverrideSetting::default()
    };
    let d = decide(
        &inv,
        Some(&probe),
        Some(&accepted()),
        &over,
        &DeviceSelection::Default,
    );
    assert!(d.refusal.is_none());
    assert_eq!(d.flags, s(SAGE));
    assert!(d.warnings.iter().any(|w| w.contains("allow_incompatible")));
}

#[test]
fn multi_gpu_targets_the_selected_device_and_notes_heterogeneity() {
    let probe = with_env(torch_probe(Torch::Cu128), Env::Sage);
    let inv = smi_inventory("mixed_3090_4090");
    let d0 = decide(
        &inv,
        Some(&probe),
        Some(&accepted()),
        &OverrideSetting::default(),
        &DeviceSelection::Default,
    );
    assert_eq!(d0.target_gpu, Some(0));
    assert!(d0.reasons.iter().any(|r| r.contains("RTX 3090")));
    assert!(
        d0.warnings.iter().any(|w| w.contains("mixed GPUs")),
        "{:?}",
        d0.warnings
    );
    let d1 = decide(
        &inv,
        Some(&probe),
        Some(&accepted()),
        &OverrideSetting::default(),
        &DeviceSelection::parse("1"),
    );
    assert_eq!(d1.target_gpu, Some(1));
    assert!(
        d1.reasons
            .iter()
            .any(|r| r.contains("RTX 4090") && r.contains("SM 8.9"))
    );
    let uuid = inv.gpus[1].uuid.clone();
    let du = decide(
        &inv,
        Some(&probe),
        Some(&accepted()),
        &OverrideSetting::default(),
        &DeviceSelection::parse(&uuid),
    );
    assert_eq!(du.target_gpu, Some(1));
    let same = decide(
        &smi_inventory("multi_2x4090"),
        Some(&probe),
        Some(&accepted()),
        &OverrideSetting::default(),
        &DeviceSelection::Default,
    );
    assert!(!same.warnings.iter().any(|w| w.contains("mixed")));
    assert!(same.reasons.iter().any(|r| r.starts_with("2 GPUs")));
    let hidden = decide(
        &inv,
        Some(&probe),
        Some(&accepted()),
        &OverrideSetting::default(),
        &DeviceSelection::parse("-1"),
    );
    assert_eq!(hidden.choice, AttentionChoice::Cpu);
    assert_eq!(hidden.flags, s(&["--cpu"]));
}

#[test]
fn mig_enabled_is_noted() {
    let probe = with_env(torch_probe(Torch::Cu124), Env::Sage);
    let d = decide(
        &nvml_inventory("a100_mig"),
        Some(&probe),
        Some(&accepted()),
        &OverrideSetting::default(),
        &DeviceSelection::Default,
    );
    assert!(
        d.warnings.iter().any(|w| w.contains("MIG is enabled")),
        "{:?}",
        d.warnings
    );
    let d = decide(
        &nvml_inventory("a100"),
        Some(&probe),
        Some(&accepted()),
        &OverrideSetting::default(),
        &DeviceSelection::Default,
    );
    assert!(!d.warnings.iter().any(|w| w.contains("MIG")));
}

#[test]
fn flags_this_comfyui_does_not_know_are_never_passed() {
    let probe = with_env(torch_probe(Torch::Cu128), Env::All);
    let inv = smi_inventory("rtx4090");
    // An older ComfyUI without sage/flash flags.
    let mut old = accepted();
    old.remove("--use-sage-attention");
    old.remove("--use-flash-attention");
    let d = decide(
        &inv,
        Some(&probe),
        Some(&old),
        &OverrideSetting::default(),
        &DeviceSelection::Default,
    );
    assert_eq!(d.choice, AttentionChoice::Xformers);
    assert!(d.flags.is_empty());
    assert!(
        d.reasons
            .iter()
            .any(|r| r.contains("does not accept --use-sage-attention"))
    );
    // --help unreadable: no attention flag at all, but --cpu still works.
    let d = decide(
        &inv,
        Some(&probe),
        None,
        &OverrideSetting::default(),
        &DeviceSelection::Default,
    );
    assert!(d.flags.is_empty(), "{:?}", d.flags);
    assert!(d.reasons.iter().any(|r| r.contains("unverified")));
    let d = decide(
        &smi_inventory("no_gpu"),
        Some(&probe),
        None,
        &OverrideSetting::default(),
        &DeviceSelection::Default,
    );
    assert_eq!(d.flags, s(&["--cpu"]));
    // Extra admin flags are filtered the same way.
    let over = OverrideSetting {
        extra_flags: s(&["--fast", "--bogus-flag"]),
        ..OverrideSetting::default()
    };
    let d = decide(
        &inv,
        Some(&probe),
        Some(&accepted()),
        &over,
        &DeviceSelection::Default,
    );
    assert_eq!(d.flags, s(&["--use-sage-attention", "--fast"]));
    assert!(d.reasons.iter().any(|r| r.contains("--bogus-flag dropped")));
    // A refused flag's value goes with it; an accepted flag keeps its value.
    let over = OverrideSetting {
        extra_flags: s(&["--sim-node-delay-ms", "400", "--preview-size", "512"]),
        ..OverrideSetting::default()
    };
    let mut ok = accepted();
    ok.insert("--preview-size".into());
    let d = decide(
        &inv,
        Some(&probe),
        Some(&ok),
        &over,
        &DeviceSelection::Default,
    );
    assert_eq!(
        d.flags,
        s(&["--use-sage-attention", "--preview-size", "512"])
    );
    assert!(
        d.reasons
            .iter()
            .any(|r| r.contains("extra value 400 dropped with the flag before it")),
        "{:?}",
        d.reasons
    );
}

#[test]
fn admin_force_is_honoured_or_refused_when_the_package_is_missing() {
    let inv = smi_inventory("h100");
    let force = |c| OverrideSetting {
        attention: AttentionPreference::Force(c),
        ..OverrideSetting::default()
    };
    let probe = with_env(torch_probe(Torch::Cu128), Env::All);
    let d = decide(
        &inv,
        Some(&probe),
        Some(&accepted()),
        &force(AttentionChoice::Pytorch),
        &DeviceSelection::Default,
    );
    assert_eq!(d.choice, AttentionChoice::Pytorch);
    assert_eq!(d.flags, s(&["--use-pytorch-cross-attention"]));
    let d = decide(
        &inv,
        Some(&probe),
        Some(&accepted()),
        &force(AttentionChoice::Split),
        &DeviceSelection::Default,
    );
    assert_eq!(d.flags, s(&["--use-split-cross-attention"]));
    let bare = with_env(torch_probe(Torch::Cu128), Env::Bare);
    let d = decide(
        &inv,
        Some(&bare),
        Some(&accepted()),
        &force(AttentionChoice::Flash),
        &DeviceSelection::Default,
    );
    assert!(
        d.refusal
            .as_deref()
            .is_some_and(|r| r.contains("flash_attn is not importable")),
        "{d:?}"
    );
    let d = decide(
        &inv,
        Some(&bare),
        Some(&accepted()),
        &force(AttentionChoice::Cpu),
        &DeviceSelection::Default,
    );
    assert_eq!(d.flags, s(&["--cpu"]));
}

#[test]
fn cpu_only_torch_on_a_gpu_box_runs_on_cpu_with_a_warning() {
    let mut probe = torch_probe(Torch::Cu128);
    probe.torch_version = Some("2.8.0+cpu".into());
    probe.torch_cuda = None;
    probe.arch_list.clear();
    probe.cuda_available = false;
    let d = decide(
        &smi_inventory("rtx4090"),
        Some(&probe),
        Some(&accepted()),
        &OverrideSetting::default(),
        &DeviceSelection::Default,
    );
    assert_eq!(d.choice, AttentionChoice::Cpu);
    assert_eq!(d.flags, s(&["--cpu"]));
    assert!(d.warnings.iter().any(|w| w.contains("CPU-only build")));
}

#[test]
fn failed_probe_still_gives_a_decision() {
    let d = decide(
        &smi_inventory("rtx4090"),
        None,
        Some(&accepted()),
        &OverrideSetting::default(),
        &DeviceSelection::Default,
    );
    assert_eq!(d.choice, AttentionChoice::Pytorch);
    assert!(d.flags.is_empty());
    assert!(d.refusal.is_none());
    assert!(d.warnings.iter().any(|w| w.contains("probe failed")));
}

#[test]
fn real_help_output_contains_the_attention_flags() {
    let acc = accepted();
    for f in [
        "--cpu",
        "--use-sage-attention",
        "--use-flash-attention",
        "--disable-xformers",
        "--use-pytorch-cross-attention",
        "--cuda-device",
        "--fp8_e4m3fn-unet",
        "--help",
    ] {
        assert!(acc.contains(f), "{f}");
    }
    assert!(acc.len() > 80, "{}", acc.len());
}
