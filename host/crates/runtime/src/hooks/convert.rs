//! Host types (`crate::types`) <-> generated WIT bindings, for every hook.

use super::bindings::wit_types as wt;
use super::bindings::{
    output_sync::exports::comfyhost::plugin::output_sync as os,
    output_sync_mirror::exports::comfyhost::plugin::output_mirror as om,
    output_sync_mirror::exports::comfyhost::plugin::output_sync as osm,
    preset_resolver::exports::comfyhost::plugin::preset_resolver as pr,
    prompt_transform::exports::comfyhost::plugin::prompt_transform as pt,
    queue_router::exports::comfyhost::plugin::queue_router as qr,
    status_overlay::exports::comfyhost::plugin::status_overlay as so,
};
use super::workflow::{workflow_from_wit, workflow_to_wit};
use crate::error::CallErrorKind;
use crate::types::*;

pub(crate) fn plugin_error(e: wt::PluginError) -> CallErrorKind {
    CallErrorKind::Plugin(match e {
        wt::PluginError::InvalidInput(m) => format!("invalid input: {m}"),
        wt::PluginError::Config(m) => format!("config: {m}"),
        wt::PluginError::Upstream(m) => format!("upstream: {m}"),
        wt::PluginError::Internal(m) => format!("internal: {m}"),
    })
}

fn user(u: &Option<User>) -> Option<wt::User> {
    u.as_ref().map(|u| wt::User {
        id: u.id.clone(),
        is_admin: u.is_admin,
    })
}

pub(crate) fn workflow_in(v: &serde_json::Value) -> Result<wt::Workflow, CallErrorKind> {
    workflow_to_wit(v).map_err(|e| CallErrorKind::InvalidInput(e.to_string()))
}

pub(crate) fn submission(s: &Submission) -> Result<wt::Submission, CallErrorKind> {
    Ok(wt::Submission {
        prompt_id: s.prompt_id.clone(),
        client_id: s.client_id.clone(),
        user: user(&s.user),
        workflow: workflow_in(&s.workflow)?,
        flags: s
            .flags
            .iter()
            .map(|(k, v)| wt::OptionEntry {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
    })
}

pub(crate) fn backends(b: &[BackendStatus]) -> Vec<qr::BackendStatus> {
    b.iter()
        .map(|b| qr::BackendStatus {
            name: b.name.clone(),
            kind: match b.kind {
                BackendKind::Comfyui => qr::BackendKind::Comfyui,
                BackendKind::Serverless => qr::BackendKind::Serverless,
            },
            healthy: b.healthy,
            queue_pending: b.queue_pending,
            queue_running: b.queue_running,
        })
        .collect()
}

pub(crate) fn route(r: qr::RouteDecision) -> Route {
    match r {
        qr::RouteDecision::Local => Route::Local,
        qr::RouteDecision::Backend(n) => Route::Backend(n),
        qr::RouteDecision::Serverless(n) => Route::Serverless(n),
        qr::RouteDecision::Reject(m) => Route::Reject(m),
        qr::RouteDecision::Pass => Route::Pass,
    }
}

/// Most notes kept from one rewrite.
pub const MAX_TRANSFORM_NOTES: usize = 16;
/// Longest note kept, in bytes.
pub const MAX_TRANSFORM_NOTE_BYTES: usize = 512;

/// A rewrite's notes as the host keeps and logs them: at most [`MAX_TRANSFORM_NOTES`], each
/// cut to [`MAX_TRANSFORM_NOTE_BYTES`] with control characters escaped.
pub(crate) fn cap_notes(notes: Vec<String>) -> Vec<String> {
    use crate::capabilities::log::{escape_controls, truncate_to};
    let total = notes.len();
    let mut kept: Vec<String> = notes
        .into_iter()
        .take(MAX_TRANSFORM_NOTES)
        .map(|n| {
            let n = truncate_to(n, MAX_TRANSFORM_NOTE_BYTES);
            truncate_to(escape_controls(&n).into_owned(), MAX_TRANSFORM_NOTE_BYTES)
        })
        .collect();
    if total > MAX_TRANSFORM_NOTES {
        kept.push(format!(
            "…{} more notes not kept",
            total - MAX_TRANSFORM_NOTES
        ));
    }
    kept
}

pub(crate) fn transform_result(r: pt::TransformResult) -> Result<TransformResult, CallErrorKind> {
    Ok(match r {
        pt::TransformResult::Unchanged => TransformResult::Unchanged,
        pt::TransformResult::Rewritten(rw) => TransformResult::Rewritten {
            workflow: workflow_from_wit(&rw.workflow)
                .map_err(|e| CallErrorKind::InvalidOutput(e.to_string()))?,
            notes: cap_notes(rw.notes),
        },
    })
}

pub(crate) fn job(j: &JobContext) -> so::JobContext {
    so::JobContext {
        prompt_id: j.prompt_id.clone(),
        client_id: j.client_id.clone(),
        user: user(&j.user),
        backend: j.backend.clone(),
        gpu: j.gpu.clone(),
        nodes_total: j.nodes_total,
        nodes_done: j.nodes_done,
        elapsed_ms: j.elapsed_ms,
        since_last_event_ms: j.since_last_event_ms,
    }
}

pub(crate) fn event(e: &ExecutionEvent) -> so::ExecutionEvent {
    match e {
        ExecutionEvent::Queued { position } => so::ExecutionEvent::Queued(*position),
        ExecutionEvent::Started => so::ExecutionEvent::Started,
        ExecutionEvent::Cached { nodes } => so::ExecutionEvent::Cached(nodes.clone()),
        ExecutionEvent::Executing { node } => so::ExecutionEvent::Executing(node.clone()),
        ExecutionEvent::Progress { node, value, max } => {
            so::ExecutionEvent::Progress(so::NodeProgress {
                node_id: node.clone(),
                value: *value,
                max: *max,
            })
        }
        ExecutionEvent::Executed { node, files } => {
            so::ExecutionEvent::Executed((node.clone(), files.clone()))
        }
        ExecutionEvent::Succeeded => so::ExecutionEvent::Succeeded,
        ExecutionEvent::Failed(f) => so::ExecutionEvent::Failed(so::ExecutionFailure {
            node_id: f.node_id.clone(),
            node_type: f.node_type.clone(),
            exception_type: f.exception_type.clone(),
            exception_message: f.exception_message.clone(),
            traceback: f.traceback.clone(),
        }),
        ExecutionEvent::Interrupted => so::ExecutionEvent::Interrupted,
    }
}

pub(crate) fn overlay(u: so::OverlayUpdate) -> Result<OverlayUpdate, CallErrorKind> {
    let fraction = match u.fraction {
        Some(f) if !(0.0..=1.0).contains(&f) => {
            return Err(CallErrorKind::InvalidOutput(format!(
                "overlay fraction {f} is outside 0.0..=1.0"
            )));
        }
        other => other,
    };
    Ok(OverlayUpdate {
        severity: match u.severity {
            so::Severity::Info => Severity::Info,
            so::Severity::Progress => Severity::Progress,
            so::Severity::Success => Severity::Success,
            so::Severity::Error => Severity::Error,
        },
        user_text: u.user_text,
        admin_detail: u.admin_detail,
        fraction,
        terminal: u.terminal,
    })
}

pub(crate) fn installed(i: &[InstalledFolder]) -> Vec<pr::InstalledFolder> {
    i.iter()
        .map(|f| pr::InstalledFolder {
            folder: f.folder.clone(),
            files: f.files.clone(),
        })
        .collect()
}

fn model_ref(m: pr::ModelRef) -> ModelRef {
    ModelRef {
        folder: m.folder,
        name: m.name,
        node_id: m.node_id,
        class_type: m.class_type,
        input_name: m.input_name,
    }
}

pub(crate) fn resolution(r: pr::Resolution) -> Resolution {
    Resolution {
        required: r.required.into_iter().map(model_ref).collect(),
        missing: r.missing.into_iter().map(model_ref).collect(),
        presets: r
            .presets
            .into_iter()
            .map(|p| PresetPlan {
                id: p.id,
                name: p.name,
                files: p
                    .files
                    .into_iter()
                    .map(|f| PresetFile {
                        folder: f.folder,
                        name: f.name,
                        url: f.url,
                        size: f.size,
                        sha256: f.sha256,
                    })
                    .collect(),
                provides: p.provides,
            })
            .collect(),
        unmapped: r.unmapped.into_iter().map(model_ref).collect(),
    }
}

pub(crate) fn output_file(f: &OutputFile) -> wt::OutputFile {
    wt::OutputFile {
        guest_path: f.guest_path.clone(),
        filename: f.filename.clone(),
        subfolder: f.subfolder.clone(),
        kind: match f.kind {
            OutputKind::Image => wt::OutputKind::Image,
            OutputKind::Video => wt::OutputKind::Video,
            OutputKind::Audio => wt::OutputKind::Audio,
            OutputKind::Other => wt::OutputKind::Other,
        },
        size: f.size,
        modified_ms: f.modified_ms,
        prompt_id: f.prompt_id.clone(),
        user: user(&f.user),
    }
}

pub(crate) fn sync_outcome(o: os::SyncOutcome) -> SyncOutcome {
    match o {
        os::SyncOutcome::Synced(m) => SyncOutcome::Synced(m),
        os::SyncOutcome::Skipped(m) => SyncOutcome::Skipped(m),
        os::SyncOutcome::RetryLater(m) => SyncOutcome::RetryLater(m),
    }
}

/// The same variant as generated for the mirror world.
pub(crate) fn mirror_sync_outcome(o: osm::SyncOutcome) -> SyncOutcome {
    match o {
        osm::SyncOutcome::Synced(m) => SyncOutcome::Synced(m),
        osm::SyncOutcome::Skipped(m) => SyncOutcome::Skipped(m),
        osm::SyncOutcome::RetryLater(m) => SyncOutcome::RetryLater(m),
    }
}

pub(crate) fn removal_outcome(o: om::RemovalOutcome) -> RemovalOutcome {
    match o {
        om::RemovalOutcome::Removed(m) => RemovalOutcome::Removed(m),
        om::RemovalOutcome::Kept(m) => RemovalOutcome::Kept(m),
        om::RemovalOutcome::RetryLater(m) => RemovalOutcome::RetryLater(m),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn transform_notes_are_capped_and_escaped() {
        let notes: Vec<String> = (0..10_000)
            .map(|i| format!("note {i}\nFORGED {}", "x".repeat(100_000)))
            .collect();
        let kept = cap_notes(notes);
        assert_eq!(kept.len(), MAX_TRANSFORM_NOTES + 1);
        assert!(
            kept.iter()
                .all(|n| n.len() <= MAX_TRANSFORM_NOTE_BYTES + 20)
        );
        assert!(kept.iter().all(|n| !n.contains('\n')));
        assert!(kept[0].starts_with("note 0\\nFORGED"), "{}", kept[0]);
        assert!(kept.last().unwrap().contains("9984 more"));
    }
}
