//! Status overlay: turns each job's execution messages (local ComfyUI through the proxy tap,
//! remote jobs through the remote runner) into `status-overlay` plugin calls, and delivers the
//! plugins' updates to the job's own browser as `comfyhost.overlay` WebSocket messages. The
//! page renders them with a small ES module the host adds to ComfyUI's `/extensions` list
//! (`host/assets/status-overlay.js`), so nothing is installed into ComfyUI.

pub mod events;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use comfyhost_protocol::WsMessage;
use comfyhost_proxy::{HostEvent, ProxyState, WsTap};
use comfyhost_runtime::HookKind;
use comfyhost_runtime::registry::PluginRegistry;
use comfyhost_runtime::types::{ExecutionEvent, JobContext, User};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Path of the page script under the host's prefix.
pub const SCRIPT_PATH: &str = "/comfyhost/ext/status-overlay.js";
/// The script itself.
pub const SCRIPT: &str = include_str!("../../assets/status-overlay.js");

/// What the driver keeps per job.
struct JobState {
    client_id: String,
    user: Option<User>,
    backend: String,
    nodes_total: u32,
    done: std::collections::HashSet<String>,
    current: Option<String>,
    queued_at: Instant,
    last_event: Instant,
    last_progress_emit: Option<(Instant, u32)>,
    /// `class_type` of each node of the workflow (to tell sampler steps from other progress).
    classes: HashMap<String, String>,
    tx: mpsc::UnboundedSender<(ExecutionEvent, JobContext)>,
}

/// Whether a node's progress counts sampler steps (integer steps of a `*Sampler*` node);
/// other nodes report seconds, tiles or fractions that must not read as "step n/m".
fn counts_steps(class_type: Option<&str>, value: f64, max: f64) -> bool {
    class_type.is_some_and(|c| c.contains("Sampler"))
        && value.fract() == 0.0
        && max.fract() == 0.0
        && max >= 1.0
}

/// Drives status-overlay plugins. Cheap to clone.
#[derive(Clone)]
pub struct OverlayDriver {
    inner: Arc<Inner>,
}

struct Inner {
    plugins: PluginRegistry,
    proxy: OnceLock<ProxyState>,
    gpu: Option<String>,
    jobs: Mutex<HashMap<String, JobState>>,
}

impl OverlayDriver {
    /// `gpu`: the GPU name shown to admins (the local machine's; remote jobs show their backend).
    pub fn new(plugins: PluginRegistry, gpu: Option<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                plugins,
                proxy: OnceLock::new(),
                gpu,
                jobs: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Where updates go (set once the proxy exists).
    pub fn set_proxy(&self, proxy: ProxyState) {
        let _ = self.inner.proxy.set(proxy);
    }

    /// Whether the page script should be offered: some status-overlay plugin is enabled.
    pub fn enabled(&self) -> bool {
        self.inner.plugins.has_enabled(HookKind::StatusOverlay)
    }

    /// A prompt was accepted for `backend` (`local`, a backend or endpoint name).
    pub fn queued(
        &self,
        prompt_id: &str,
        client_id: Option<&str>,
        user: Option<&User>,
        backend: &str,
        workflow: &Value,
    ) {
        let Some(client_id) = client_id else { return };
        if !self.enabled() {
            return;
        }
        let nodes_total = workflow
            .as_object()
            .map_or(0, |m| u32::try_from(m.len()).unwrap_or(u32::MAX));
        let classes = workflow
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(id, node)| Some((id.clone(), node["class_type"].as_str()?.to_string())))
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let now = Instant::now();
        self.inner.jobs.lock().insert(
            prompt_id.to_string(),
            JobState {
                client_id: client_id.to_string(),
                user: user.cloned(),
                backend: backend.to_string(),
                nodes_total,
                done: Default::default(),
                current: None,
                queued_at: now,
                last_event: now,
                last_progress_emit: None,
                classes,
                tx,
            },
        );
        self.spawn_worker(prompt_id.to_string(), rx);
        self.event(prompt_id, ExecutionEvent::Queued { position: None });
    }

    /// The prompt was refused before it ran (ComfyUI's validation, or ComfyUI unreachable):
    /// the banner ends with the reason instead of staying on "Queued".
    pub fn host_rejected(&self, prompt_id: &str, message: &str) {
        self.host_failure(prompt_id, "Rejected", message);
    }

    /// The job was removed on purpose (deleted from the queue, ComfyUI stopped or restarted by
    /// an admin): the banner says it was cancelled.
    pub fn host_cancelled(&self, prompt_id: &str) {
        self.event(prompt_id, ExecutionEvent::Interrupted);
    }

    /// The host itself ended a job (ComfyUI exited, or forgot the prompt).
    pub fn host_failure(&self, prompt_id: &str, kind: &str, message: &str) {
        self.event(
            prompt_id,
            ExecutionEvent::Failed(comfyhost_runtime::types::ExecutionFailure {
                node_id: None,
                node_type: None,
                exception_type: format!("comfyhost.{kind}"),
                exception_message: message.to_string(),
                traceback: Vec::new(),
            }),
        );
    }

    /// A ComfyUI message on its way to a browser (local tap or remote relay).
    pub fn observe(&self, message: &WsMessage) {
        let Some(prompt_id) = message.prompt_id() else {
            return;
        };
        if let WsMessage::Progress(p) = message {
            self.progress(
                prompt_id,
                p.node.as_deref().unwrap_or_default(),
                p.value,
                p.max,
            );
        } else if let Some(ev) = events::from_message(message) {
            self.event(prompt_id, ev);
        }
    }

    /// A `progress` message (`value`/`max` are floats for some nodes). Passed on at most every
    /// 250 ms or 5 %, and its end once; as sampler steps only for sampler nodes, otherwise as
    /// "still running this node" (no "step n/m" for seconds, tiles or fractions).
    fn progress(&self, prompt_id: &str, node: &str, value: f64, max: f64) {
        let node = node.to_string();
        let value = value.max(0.0);
        let max = max.max(0.0);
        let event = {
            let mut jobs = self.inner.jobs.lock();
            let Some(job) = jobs.get_mut(prompt_id) else {
                return;
            };
            let now = Instant::now();
            let pct = if max > 0.0 {
                ((value / max).clamp(0.0, 1.0) * 100.0) as u32
            } else {
                0
            };
            if let Some((t, last_pct)) = job.last_progress_emit
                && ((now.duration_since(t).as_millis() < 250 && pct < last_pct + 5)
                    || (pct >= 100 && last_pct >= 100))
            {
                return;
            }
            job.last_progress_emit = Some((now, pct));
            let class = job.classes.get(&node).map(String::as_str);
            if counts_steps(class, value, max) {
                ExecutionEvent::Progress {
                    node,
                    value: value as u32,
                    max: max as u32,
                }
            } else {
                ExecutionEvent::Executing { node }
            }
        };
        self.event(prompt_id, event);
    }

    fn event(&self, prompt_id: &str, event: ExecutionEvent) {
        let mut jobs = self.inner.jobs.lock();
        let Some(job) = jobs.get_mut(prompt_id) else {
            return;
        };
        let now = Instant::now();
        let since_last = now.duration_since(job.last_event);
        job.last_event = now;
        match &event {
            ExecutionEvent::Cached { nodes } => {
                job.nodes_total = job
                    .nodes_total
                    .saturating_sub(u32::try_from(nodes.len()).unwrap_or(0));
            }
            ExecutionEvent::Executing { node } => {
                if let Some(prev) = job.current.replace(node.clone())
                    && prev != *node
                {
                    job.done.insert(prev);
                }
            }
            ExecutionEvent::Executed { node, .. } => {
                job.done.insert(node.clone());
            }
            // Throttled in `progress`.
            ExecutionEvent::Progress { .. } => {}
            _ => {}
        }
        let ctx = JobContext {
            prompt_id: prompt_id.to_string(),
            client_id: Some(job.client_id.clone()),
            user: job.user.clone(),
            backend: job.backend.clone(),
            gpu: if job.backend == "local" {
                self.inner.gpu.clone()
            } else {
                None
            },
            nodes_total: job.nodes_total.max(1),
            nodes_done: u32::try_from(job.done.len()).unwrap_or(u32::MAX),
            elapsed_ms: u64::try_from(now.duration_since(job.queued_at).as_millis()).unwrap_or(0),
            since_last_event_ms: u64::try_from(since_last.as_millis()).unwrap_or(0),
        };
        let terminal = matches!(
            event,
            ExecutionEvent::Succeeded | ExecutionEvent::Failed(_) | ExecutionEvent::Interrupted
        );
        let _ = job.tx.send((event, ctx));
        if terminal {
            // The worker drains what is queued, then ends with the channel.
            jobs.remove(prompt_id);
        }
    }

    fn spawn_worker(
        &self,
        prompt_id: String,
        mut rx: mpsc::UnboundedReceiver<(ExecutionEvent, JobContext)>,
    ) {
        let driver = self.clone();
        let span = tracing::debug_span!("overlay", prompt_id = %prompt_id);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                // One job's events are handled in order; an update equal to the plugin's last
                // one for this job is not sent again.
                let mut last_sent: HashMap<String, Value> = HashMap::new();
                while let Some((event, ctx)) = rx.recv().await {
                    let updates = driver.inner.plugins.on_event(&ctx, &event).await;
                    for (plugin, update) in updates {
                        driver.deliver(&ctx, &plugin, update, &mut last_sent);
                    }
                }
            },
            span,
        ));
    }

    fn deliver(
        &self,
        ctx: &JobContext,
        plugin: &str,
        update: comfyhost_runtime::types::OverlayUpdate,
        last_sent: &mut HashMap<String, Value>,
    ) {
        let (Some(proxy), Some(client)) = (self.inner.proxy.get(), &ctx.client_id) else {
            return;
        };
        let is_admin = ctx.user.as_ref().is_some_and(|u| u.is_admin);
        // Admin detail (ids, backends, raw errors) goes to admins only.
        let admin_detail = if is_admin {
            json!(update.admin_detail)
        } else {
            json!([])
        };
        let data = json!({
            "prompt_id": ctx.prompt_id,
            "plugin": plugin,
            "severity": update.severity,
            "user_text": update.user_text,
            "admin_detail": admin_detail,
            "fraction": update.fraction,
            "terminal": update.terminal,
            "is_admin": is_admin,
        });
        if last_sent.get(plugin) == Some(&data) {
            return;
        }
        last_sent.insert(plugin.to_string(), data.clone());
        let Ok(ev) = HostEvent::new("comfyhost.overlay", data) else {
            return;
        };
        // A job's last word is kept for a page that is away; progress is not.
        let sent = if update.terminal {
            proxy.ws().send_or_keep(client, &ev)
        } else {
            proxy.ws().send_to(client, &ev)
        };
        if let Err(e) = sent {
            tracing::debug!(error = %e, "overlay update not delivered now");
        }
    }
}

impl WsTap for OverlayDriver {
    fn on_message(&self, _client_id: &str, message: &WsMessage) {
        if self.inner.jobs.lock().is_empty() {
            return;
        }
        self.observe(message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_integer_sampler_progress_counts_steps() {
        assert!(counts_steps(Some("KSampler"), 3.0, 20.0));
        assert!(counts_steps(Some("SamplerCustomAdvanced"), 0.0, 4.0));
        assert!(!counts_steps(Some("TestSleep"), 1.0, 20.0));
        assert!(!counts_steps(Some("KSampler"), 0.5, 20.0));
        assert!(!counts_steps(Some("KSampler"), 0.0, 0.0));
        assert!(!counts_steps(None, 3.0, 20.0));
    }
}
