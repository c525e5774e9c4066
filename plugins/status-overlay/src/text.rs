//! The texts, free of host calls so `cargo test` checks them natively.

use comfyhost_sdk::hooks::status_overlay::{
    ExecutionEvent, ExecutionFailure, JobContext, OverlayUpdate, Severity,
};
use serde::Deserialize;

/// Plugin configuration (mirrors `config.schema.json`; the host applies defaults).
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    #[serde(default = "yes")]
    pub show_backend_to_users: bool,
    #[serde(default = "sixty")]
    pub stall_after_s: u64,
}

fn yes() -> bool {
    true
}
fn sixty() -> u64 {
    60
}

fn elapsed(ms: u64) -> String {
    let s = ms / 1000;
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m {:02}s", s / 60, s % 60)
    }
}

fn place(config: &Config, job: &JobContext) -> String {
    if !config.show_backend_to_users || job.backend == "local" {
        "Running".into()
    } else {
        format!("Running on {}", job.backend)
    }
}

fn admin(config: &Config, job: &JobContext) -> Vec<String> {
    let mut lines = vec![
        format!("prompt {}", job.prompt_id),
        format!("backend {}", job.backend),
    ];
    if let Some(gpu) = &job.gpu {
        lines.push(format!("gpu {gpu}"));
    }
    if let Some(u) = &job.user {
        lines.push(format!(
            "user {}{}",
            u.id,
            if u.is_admin { " (admin)" } else { "" }
        ));
    }
    let silent = job.since_last_event_ms / 1000;
    if silent >= config.stall_after_s {
        lines.push(format!("no event from the backend for {silent}s"));
    } else {
        lines.push(format!("last event {}s ago", silent));
    }
    lines
}

/// A message a student can act on, from what ComfyUI or the host reported.
pub fn friendly(f: &ExecutionFailure) -> String {
    let msg = f.exception_message.to_lowercase();
    let t = f.exception_type.as_str();
    if msg.contains("out of memory") || t.ends_with("OutOfMemoryError") {
        return "The GPU ran out of memory. Try a smaller image size or batch, or fewer LoRAs."
            .into();
    }
    match t {
        "comfyhost.PromptLost" => return "The server running your prompt lost it. Please queue it again.".into(),
        "comfyhost.ColdStartTimeout" => return "No GPU worker became available in time. Please try again in a few minutes.".into(),
        "comfyhost.BackendUnreachable" | "comfyhost.BackendUnavailable" => {
            return "The GPU server stopped responding while running your prompt. Please queue it again.".into();
        }
        "comfyhost.NoOutputs" => return "Your prompt finished but produced no images. Check that the workflow has a Save Image node.".into(),
        "comfyhost.Rejected" => {
            let first: String = f.exception_message.chars().take(200).collect();
            return format!("Not queued: {first}");
        }
        _ => {}
    }
    let first = f
        .exception_message
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("unknown error")
        .trim();
    let first: String = first.chars().take(160).collect();
    match &f.node_type {
        Some(node) => format!("{node} failed: {first}"),
        None => format!("Your prompt failed: {first}"),
    }
}

/// The banner update for one event; `None` leaves the banner as it is.
pub fn update(config: &Config, job: &JobContext, event: &ExecutionEvent) -> Option<OverlayUpdate> {
    let total = job.nodes_total.max(1);
    let nodes = |done: u32| format!("{}/{} nodes", done.min(total), total);
    let fraction =
        |extra: f32| Some(((job.nodes_done as f32 + extra) / total as f32).clamp(0.0, 1.0));
    let mut detail = admin(config, job);
    // "Running on gpu-a · 3/7 nodes · 1m 05s", between nodes.
    let running = || {
        (
            Severity::Progress,
            format!(
                "{} · {} · {}",
                place(config, job),
                nodes(job.nodes_done),
                elapsed(job.elapsed_ms)
            ),
            fraction(0.0),
            false,
        )
    };
    let (severity, user_text, frac, terminal) = match event {
        ExecutionEvent::Queued(pos) => (
            Severity::Info,
            match pos {
                Some(p) => format!("Queued (position {p})"),
                None => "Queued".into(),
            },
            None,
            false,
        ),
        ExecutionEvent::Started => running(),
        ExecutionEvent::Cached(cached) => {
            detail.push(format!("{} nodes from cache", cached.len()));
            running()
        }
        ExecutionEvent::Executing(node) => {
            detail.push(format!("executing node {node}"));
            running()
        }
        ExecutionEvent::Progress(p) => {
            let step = if p.max > 0 {
                p.value as f32 / p.max as f32
            } else {
                0.0
            };
            detail.push(format!("node {} step {}/{}", p.node_id, p.value, p.max));
            (
                Severity::Progress,
                format!(
                    "{} · {} · step {}/{} · {}",
                    place(config, job),
                    nodes(job.nodes_done),
                    p.value,
                    p.max,
                    elapsed(job.elapsed_ms)
                ),
                fraction(step),
                false,
            )
        }
        ExecutionEvent::Executed((node, files)) => {
            if files.is_empty() {
                return None;
            }
            detail.push(format!("node {node} wrote {}", files.join(", ")));
            running()
        }
        ExecutionEvent::Succeeded => (
            Severity::Success,
            format!("Done in {}", elapsed(job.elapsed_ms)),
            Some(1.0),
            true,
        ),
        ExecutionEvent::Failed(f) => {
            detail.push(format!("{}: {}", f.exception_type, f.exception_message));
            if let (Some(id), Some(t)) = (&f.node_id, &f.node_type) {
                detail.push(format!("node {id} ({t})"));
            }
            detail.extend(
                f.traceback
                    .iter()
                    .rev()
                    .take(3)
                    .rev()
                    .map(|l| l.trim_end().to_string()),
            );
            (Severity::Error, friendly(f), None, true)
        }
        ExecutionEvent::Interrupted => (
            Severity::Info,
            format!("Cancelled after {}", elapsed(job.elapsed_ms)),
            None,
            true,
        ),
    };
    Some(OverlayUpdate {
        severity,
        user_text,
        admin_detail: detail,
        fraction: frac,
        terminal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use comfyhost_sdk::hooks::status_overlay::NodeProgress;

    fn cfg() -> Config {
        Config {
            show_backend_to_users: true,
            stall_after_s: 60,
        }
    }

    fn job(backend: &str, done: u32, total: u32) -> JobContext {
        JobContext {
            prompt_id: "p1".into(),
            client_id: Some("c".into()),
            user: None,
            backend: backend.into(),
            gpu: Some("NVIDIA H100".into()),
            nodes_total: total,
            nodes_done: done,
            elapsed_ms: 75_000,
            since_last_event_ms: 500,
        }
    }

    #[test]
    fn running_text_says_where_how_far_and_how_long() {
        let u = update(
            &cfg(),
            &job("gpu-a", 2, 7),
            &ExecutionEvent::Executing("3".into()),
        )
        .unwrap();
        assert_eq!(u.user_text, "Running on gpu-a · 2/7 nodes · 1m 15s");
        assert!(!u.terminal);
        let p = update(
            &cfg(),
            &job("local", 2, 4),
            &ExecutionEvent::Progress(NodeProgress {
                node_id: "3".into(),
                value: 10,
                max: 20,
            }),
        )
        .unwrap();
        assert_eq!(p.user_text, "Running · 2/4 nodes · step 10/20 · 1m 15s");
        assert_eq!(p.fraction, Some(0.625));
        assert!(p.admin_detail.iter().any(|l| l == "gpu NVIDIA H100"));
    }

    #[test]
    fn errors_are_readable_and_keep_the_raw_detail_for_admins() {
        let f = ExecutionFailure {
            node_id: Some("3".into()),
            node_type: Some("KSampler".into()),
            exception_type: "torch.OutOfMemoryError".into(),
            exception_message: "CUDA out of memory. Tried to allocate 2.00 GiB".into(),
            traceback: vec!["a".into(), "b".into()],
        };
        let u = update(&cfg(), &job("local", 1, 7), &ExecutionEvent::Failed(f)).unwrap();
        assert!(u.user_text.starts_with("The GPU ran out of memory"));
        assert!(u.terminal);
        assert!(
            u.admin_detail
                .iter()
                .any(|l| l.contains("Tried to allocate"))
        );
        let lost = ExecutionFailure {
            node_id: None,
            node_type: None,
            exception_type: "comfyhost.PromptLost".into(),
            exception_message: "x".into(),
            traceback: vec![],
        };
        assert!(friendly(&lost).contains("queue it again"));
        let refused = ExecutionFailure {
            node_id: None,
            node_type: None,
            exception_type: "comfyhost.Rejected".into(),
            exception_message: "Prompt outputs failed validation: Value not in list".into(),
            traceback: vec![],
        };
        assert_eq!(
            friendly(&refused),
            "Not queued: Prompt outputs failed validation: Value not in list"
        );
        let other = ExecutionFailure {
            node_id: Some("9".into()),
            node_type: Some("SaveImage".into()),
            exception_type: "Exception".into(),
            exception_message:
                "**** ERROR: Saving image outside the output folder is not allowed.\n more".into(),
            traceback: vec![],
        };
        assert_eq!(
            friendly(&other),
            "SaveImage failed: **** ERROR: Saving image outside the output folder is not allowed."
        );
    }

    #[test]
    fn a_silent_backend_is_flagged_for_admins() {
        let mut j = job("gpu-a", 1, 3);
        j.since_last_event_ms = 90_000;
        let u = update(&cfg(), &j, &ExecutionEvent::Started).unwrap();
        assert!(
            u.admin_detail
                .iter()
                .any(|l| l.contains("no event from the backend for 90s"))
        );
        let done = update(&cfg(), &j, &ExecutionEvent::Succeeded).unwrap();
        assert_eq!(done.user_text, "Done in 1m 15s");
        assert_eq!(done.fraction, Some(1.0));
    }
}
