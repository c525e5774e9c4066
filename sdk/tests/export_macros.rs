//! Every export macro expands in an author's crate (here: an integration-test crate) and, in a
//! native build, checks that the type implements the hook trait.
#![allow(clippy::unwrap_used)] // tests may unwrap

use comfyhost_sdk::hooks::output_mirror::RemovalOutcome;
use comfyhost_sdk::hooks::output_sync::{OutputFile, SyncOutcome};
use comfyhost_sdk::hooks::preset_resolver::{InstalledFolder, Resolution};
use comfyhost_sdk::hooks::prompt_transform::{Rewrite, TransformResult};
use comfyhost_sdk::hooks::queue_router::{BackendStatus, RouteDecision};
use comfyhost_sdk::hooks::status_overlay::{ExecutionEvent, JobContext, OverlayUpdate};
use comfyhost_sdk::prelude::*;

struct Router;
impl QueueRouter for Router {
    fn route(s: Submission, backends: Vec<BackendStatus>) -> Result<RouteDecision, PluginError> {
        Ok(match backends.iter().find(|b| b.healthy) {
            Some(b) if s.flag("route") == Some("remote") => RouteDecision::Backend(b.name.clone()),
            _ => RouteDecision::Pass,
        })
    }
}
comfyhost_sdk::export_queue_router!(Router);

struct Seeder;
impl PromptTransform for Seeder {
    fn transform(s: Submission) -> Result<TransformResult, PluginError> {
        let mut wf = s.workflow;
        let ids: Vec<String> = wf
            .nodes_by_class("KSampler")
            .map(|n| n.id.clone())
            .collect();
        if ids.is_empty() {
            return Ok(TransformResult::Unchanged);
        }
        for id in &ids {
            wf.set_input(id, "seed", 0i64)?;
        }
        Ok(TransformResult::Rewritten(Rewrite {
            workflow: wf,
            notes: vec![format!("fixed {} seeds", ids.len())],
        }))
    }
}
comfyhost_sdk::export_prompt_transform!(Seeder);

struct Overlay;
impl StatusOverlay for Overlay {
    fn on_event(
        _job: JobContext,
        _event: ExecutionEvent,
    ) -> Result<Option<OverlayUpdate>, PluginError> {
        Ok(None)
    }
}
comfyhost_sdk::export_status_overlay!(Overlay);

struct Resolver;
impl PresetResolver for Resolver {
    fn resolve(_wf: Workflow, _installed: Vec<InstalledFolder>) -> Result<Resolution, PluginError> {
        Ok(Resolution {
            required: vec![],
            missing: vec![],
            presets: vec![],
            unmapped: vec![],
        })
    }
}
comfyhost_sdk::export_preset_resolver!(Resolver);

struct Sync;
impl OutputSync for Sync {
    fn on_output(file: OutputFile) -> Result<SyncOutcome, PluginError> {
        Ok(SyncOutcome::Skipped(format!(
            "{} not synced in tests",
            file.filename
        )))
    }
}
comfyhost_sdk::export_output_sync!(Sync);

struct Mirror;
impl OutputSync for Mirror {
    fn on_output(file: OutputFile) -> Result<SyncOutcome, PluginError> {
        Ok(SyncOutcome::Synced(file.guest_path))
    }
}
impl OutputMirror for Mirror {
    fn on_removed(file: OutputFile) -> Result<RemovalOutcome, PluginError> {
        Ok(RemovalOutcome::Kept(format!(
            "{} never synced",
            file.filename
        )))
    }
}
comfyhost_sdk::export_output_sync_mirror!(Mirror);

fn submission(flags: &[(&str, &str)], wf: Workflow) -> Submission {
    Submission {
        prompt_id: "p".into(),
        client_id: None,
        user: None,
        workflow: wf,
        flags: flags
            .iter()
            .map(|(k, v)| OptionEntry {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect(),
    }
}

#[test]
fn exported_router_is_callable_natively() {
    use comfyhost_sdk::hooks::queue_router::BackendKind;
    let backends = vec![BackendStatus {
        name: "gpu-2".into(),
        kind: BackendKind::Comfyui,
        healthy: true,
        queue_pending: 0,
        queue_running: 0,
    }];
    let wf = Workflow { nodes: vec![] };
    assert_eq!(
        Router::route(
            submission(&[("route", "remote")], wf.clone()),
            backends.clone()
        )
        .unwrap(),
        RouteDecision::Backend("gpu-2".into())
    );
    assert_eq!(
        Router::route(submission(&[], wf), backends).unwrap(),
        RouteDecision::Pass
    );
}

#[test]
fn exported_transform_rewrites_natively() {
    let wf = Workflow {
        nodes: vec![
            Node::new("3", "KSampler").with_input("seed", 99i64),
            Node::new("4", "VAEDecode"),
        ],
    };
    match Seeder::transform(submission(&[], wf)).unwrap() {
        TransformResult::Rewritten(r) => {
            assert_eq!(r.workflow.node("3").unwrap().integer_input("seed"), Some(0));
            assert_eq!(r.notes, ["fixed 1 seeds"]);
        }
        TransformResult::Unchanged => panic!("expected a rewrite"),
    }
    let untouched = Workflow {
        nodes: vec![Node::new("4", "VAEDecode")],
    };
    assert_eq!(
        Seeder::transform(submission(&[], untouched)).unwrap(),
        TransformResult::Unchanged
    );
}

#[test]
fn exported_mirror_answers_both_hooks_natively() {
    let file = OutputFile {
        guest_path: "/output/a.png".into(),
        filename: "a.png".into(),
        subfolder: String::new(),
        kind: comfyhost_sdk::hooks::output_sync::OutputKind::Image,
        size: 3,
        modified_ms: 1,
        prompt_id: None,
        user: None,
    };
    assert_eq!(
        Mirror::on_output(file.clone()).unwrap(),
        SyncOutcome::Synced("/output/a.png".into())
    );
    assert_eq!(
        Mirror::on_removed(file).unwrap(),
        RemovalOutcome::Kept("a.png never synced".into())
    );
}
