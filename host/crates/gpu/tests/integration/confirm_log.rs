//! Confirmation from ComfyUI log lines, including the recorded 0.3.64 startup log.

use std::time::{Duration, Instant};

use crate::common::*;
use comfyhost_gpu::env_probe::parse_help_flags;
use comfyhost_gpu::{
    AttentionChoice, ConfirmEvent, ConfirmationStatus, Confirmer, DemotePolicy, DeviceSelection,
    EnvProbe, OverrideSetting, decide,
};

fn sage_decision() -> comfyhost_gpu::AttentionDecision {
    let probe = EnvProbe {
        torch_version: Some("2.8.0+cu128".into()),
        torch_cuda: Some("12.8".into()),
        arch_list: vec![
            "sm_80".into(),
            "sm_86".into(),
            "sm_90".into(),
            "sm_120".into(),
        ],
        cuda_available: true,
        sageattention: Some("2.2.0".into()),
        triton: Some("3.4.0".into()),
        ..EnvProbe::default()
    };
    let help = std::fs::read_to_string(fixture_dir().join("comfyui-0.3.64-help.txt")).unwrap();
    decide(
        &smi_inventory("rtx5090"),
        Some(&probe),
        Some(&parse_help_flags(&help)),
        &OverrideSetting::default(),
        &DeviceSelection::Default,
    )
}

#[test]
fn recorded_cpu_startup_confirms_cpu_mode() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../tests/fixtures/comfyui-transcripts/startup_log.json");
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let d = decide(
        &smi_inventory("no_gpu"),
        None,
        None,
        &OverrideSetting::default(),
        &DeviceSelection::Default,
    );
    let mut c = Confirmer::new(&d, DemotePolicy::default());
    let now = Instant::now();
    let events: Vec<ConfirmEvent> = log["first_start_log_lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| c.observe_line(l.as_str().unwrap(), now))
        .collect();
    assert_eq!(events, vec![ConfirmEvent::Confirmed(AttentionChoice::Quad)]);
    assert_eq!(c.confirmation().status, ConfirmationStatus::Confirmed);
    // Said in the decision's words (issue 23, finding 1): a `cpu` decision is confirmed as CPU
    // mode, not "ComfyUI reports quad attention" next to `cpu`.
    let detail = &c.confirmation().detail;
    assert!(detail.starts_with("ComfyUI runs on the CPU"), "{detail}");
    // The raw detection errors are the inventory's (shown once); the reason says it plainly.
    assert!(
        d.reasons
            .iter()
            .any(|r| r == "CPU mode: no NVIDIA GPU found"),
        "{:?}",
        d.reasons
    );
}

#[test]
fn sage_confirmed_then_demoted_after_repeated_fallbacks() {
    let d = sage_decision();
    assert_eq!(d.choice, AttentionChoice::Sage);
    let mut c = Confirmer::new(
        &d,
        DemotePolicy {
            threshold: 3,
            window: Duration::from_secs(60),
        },
    );
    let t0 = Instant::now();
    assert_eq!(c.observe_line("Using pytorch attention in VAE", t0), None);
    assert_eq!(
        c.observe_line("Using sage attention", t0),
        Some(ConfirmEvent::Confirmed(AttentionChoice::Sage))
    );
    let err = "Error running sage attention: CUDA error: no kernel image is available for execution on the device, using pytorch attention instead.";
    // OOM fallbacks are counted but never demote.
    for _ in 0..5 {
        assert_eq!(c.observe_line("Error running sage attention: CUDA out of memory. Tried to allocate 748.00 MiB., using pytorch attention instead.", t0), None);
    }
    // Two errors, then a gap longer than the window: the window restarts.
    assert_eq!(c.observe_line(err, t0), None);
    assert_eq!(c.observe_line(err, t0 + Duration::from_secs(1)), None);
    assert_eq!(c.observe_line(err, t0 + Duration::from_secs(120)), None);
    assert_eq!(c.observe_line(err, t0 + Duration::from_secs(121)), None);
    match c.observe_line(err, t0 + Duration::from_secs(122)) {
        Some(ConfirmEvent::Demote { to, reason }) => {
            assert_eq!(to.choice, AttentionChoice::Pytorch);
            assert!(reason.contains("no kernel image"), "{reason}");
            let next = d.demoted(reason).unwrap();
            assert_eq!(next.choice, AttentionChoice::Pytorch);
            assert!(next.flags.is_empty());
        }
        other => panic!("expected demotion, got {other:?}"),
    }
    let s = c.confirmation();
    assert_eq!(s.status, ConfirmationStatus::Demoted);
    assert_eq!(s.oom_fallbacks, 5);
    assert_eq!(s.runtime_fallbacks, 5);
    // Only one demotion per run.
    assert_eq!(c.observe_line(err, t0 + Duration::from_secs(123)), None);
}

#[test]
fn other_backend_reported_is_a_mismatch() {
    let d = sage_decision();
    let mut c = Confirmer::new(&d, DemotePolicy::default());
    assert_eq!(
        c.observe_line("Using xformers attention", Instant::now()),
        Some(ConfirmEvent::Mismatch {
            expected: AttentionChoice::Sage,
            observed: AttentionChoice::Xformers
        })
    );
    assert_eq!(c.confirmation().status, ConfirmationStatus::Mismatch);
}

fn probe_with_ck(ck: Option<bool>) -> EnvProbe {
    EnvProbe {
        torch_version: Some("2.8.0+cu128".into()),
        torch_cuda: Some("12.8".into()),
        arch_list: vec![
            "sm_80".into(),
            "sm_86".into(),
            "sm_90".into(),
            "sm_120".into(),
        ],
        cuda_available: true,
        comfy_kitchen_attention: ck,
        ..EnvProbe::default()
    }
}

fn forced_ck(help_fixture: &str, ck: Option<bool>) -> comfyhost_gpu::AttentionDecision {
    let help = std::fs::read_to_string(fixture_dir().join(help_fixture)).unwrap();
    decide(
        &smi_inventory("rtx5090"),
        Some(&probe_with_ck(ck)),
        Some(&parse_help_flags(&help)),
        &OverrideSetting {
            attention: comfyhost_gpu::AttentionPreference::Force(AttentionChoice::ComfyKitchen),
            ..OverrideSetting::default()
        },
        &DeviceSelection::Default,
    )
}

#[test]
fn comfy_kitchen_is_decided_only_where_comfyui_and_the_package_support_it() {
    // 0.33.0 accepts --use-ck-attention (recorded `main.py --help`).
    let d = forced_ck("comfyui-0.33.0-help.txt", Some(true));
    assert_eq!(d.choice, AttentionChoice::ComfyKitchen, "{d:?}");
    assert!(d.flags.contains(&"--use-ck-attention".to_string()));
    assert!(d.refusal.is_none(), "{d:?}");
    // Auto never picks it.
    let help = std::fs::read_to_string(fixture_dir().join("comfyui-0.33.0-help.txt")).unwrap();
    let auto = decide(
        &smi_inventory("rtx5090"),
        Some(&probe_with_ck(Some(true))),
        Some(&parse_help_flags(&help)),
        &OverrideSetting::default(),
        &DeviceSelection::Default,
    );
    assert_ne!(auto.choice, AttentionChoice::ComfyKitchen);
    // 0.3.64 has no such flag: dropped, not passed.
    let old = forced_ck("comfyui-0.3.64-help.txt", Some(true));
    assert_ne!(old.choice, AttentionChoice::ComfyKitchen);
    assert!(!old.flags.contains(&"--use-ck-attention".to_string()));
    // Without int8 attention in comfy_kitchen ComfyUI would exit: refused with the reason.
    let missing = forced_ck("comfyui-0.33.0-help.txt", Some(false));
    assert!(
        missing
            .refusal
            .as_deref()
            .is_some_and(|r| r.contains("comfy_kitchen")),
        "{missing:?}"
    );
}

#[test]
fn comfy_kitchen_line_confirms_after_the_base_attention_line() {
    assert_eq!(
        comfyhost_gpu::classify_line("[INFO] Using Comfy Kitchen attention"),
        Some(comfyhost_gpu::confirm::LogSignal::Selected(
            AttentionChoice::ComfyKitchen
        ))
    );
    let d = forced_ck("comfyui-0.33.0-help.txt", Some(true));
    let mut c = Confirmer::new(&d, DemotePolicy::default());
    let now = Instant::now();
    assert_eq!(c.observe_line("[INFO] Using pytorch attention", now), None);
    assert_eq!(c.confirmation().status, ConfirmationStatus::Pending);
    assert_eq!(
        c.observe_line("[INFO] Using Comfy Kitchen attention", now),
        Some(ConfirmEvent::Confirmed(AttentionChoice::ComfyKitchen))
    );
}

#[test]
fn recorded_comfy_kitchen_unavailable_log_is_a_mismatch_with_the_reason() {
    // Real 0.33.0 on CPU with --use-ck-attention: base line, then the error, then exit.
    let log =
        std::fs::read_to_string(fixture_dir().join("comfyui-0.33.0-ck-unavailable.log")).unwrap();
    let d = forced_ck("comfyui-0.33.0-help.txt", Some(true));
    let mut c = Confirmer::new(&d, DemotePolicy::default());
    let now = Instant::now();
    for line in log.lines() {
        c.observe_line(line, now);
    }
    assert_eq!(c.confirmation().status, ConfirmationStatus::Mismatch);
    assert!(
        c.confirmation().detail.contains("unavailable"),
        "{:?}",
        c.confirmation()
    );
}
