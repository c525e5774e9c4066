//! Template comfyhost plugin: a status overlay that shows one short line per job state
//! ("Queued", "Running 2/5", "Done", "Failed: <reason>").

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap

use comfyhost_sdk::hooks::status_overlay::{ExecutionEvent, JobContext, OverlayUpdate, Severity};
use comfyhost_sdk::prelude::*;

/// The banner for one event; `None` leaves the banner as it is.
pub fn banner(job: &JobContext, event: &ExecutionEvent) -> Option<OverlayUpdate> {
    let update = |severity, text: String, terminal| OverlayUpdate {
        severity,
        user_text: text,
        admin_detail: vec![format!("prompt {} on {}", job.prompt_id, job.backend)],
        fraction: (job.nodes_total > 0).then(|| job.nodes_done as f32 / job.nodes_total as f32),
        terminal,
    };
    Some(match event {
        ExecutionEvent::Queued(Some(pos)) => {
            update(Severity::Info, format!("Queued ({pos})"), false)
        }
        ExecutionEvent::Queued(None) => update(Severity::Info, "Queued".into(), false),
        ExecutionEvent::Started | ExecutionEvent::Executing(_) => update(
            Severity::Progress,
            format!("Running {}/{}", job.nodes_done, job.nodes_total),
            false,
        ),
        ExecutionEvent::Succeeded => update(Severity::Success, "Done".into(), true),
        ExecutionEvent::Failed(f) => update(
            Severity::Error,
            format!("Failed: {}", f.exception_message),
            true,
        ),
        ExecutionEvent::Interrupted => update(Severity::Info, "Stopped".into(), true),
        // Progress inside a node, cached nodes and outputs change nothing in one short line.
        ExecutionEvent::Progress(_) | ExecutionEvent::Cached(_) | ExecutionEvent::Executed(_) => {
            return None;
        }
    })
}

struct ShortBanner;

impl StatusOverlay for ShortBanner {
    fn on_event(
        job: JobContext,
        event: ExecutionEvent,
    ) -> Result<Option<OverlayUpdate>, PluginError> {
        Ok(banner(&job, &event))
    }
}

comfyhost_sdk::export_status_overlay!(ShortBanner);

#[cfg(test)]
mod tests {
    use super::*;
    use comfyhost_sdk::hooks::status_overlay::ExecutionFailure;

    fn job(done: u32, total: u32) -> JobContext {
        JobContext {
            prompt_id: "p1".into(),
            client_id: None,
            user: None,
            backend: "local".into(),
            gpu: None,
            nodes_total: total,
            nodes_done: done,
            elapsed_ms: 0,
            since_last_event_ms: 0,
        }
    }

    #[test]
    fn running_shows_nodes_and_a_fraction() {
        let u = banner(&job(2, 4), &ExecutionEvent::Executing("3".into())).unwrap();
        assert_eq!(u.user_text, "Running 2/4");
        assert_eq!(u.fraction, Some(0.5));
        assert!(!u.terminal);
    }

    #[test]
    fn failures_are_terminal_and_say_why() {
        let f = ExecutionFailure {
            node_id: Some("3".into()),
            node_type: Some("KSampler".into()),
            exception_type: "RuntimeError".into(),
            exception_message: "out of memory".into(),
            traceback: Vec::new(),
        };
        let u = banner(&job(1, 4), &ExecutionEvent::Failed(f)).unwrap();
        assert_eq!(u.user_text, "Failed: out of memory");
        assert!(u.terminal);
        assert!(banner(&job(1, 4), &ExecutionEvent::Cached(vec![])).is_none());
    }
}
