//! The public handle: [`Supervisor`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::actor::{Actor, Channels, Command, Published};
use crate::config::SupervisorConfig;
use crate::error::SupervisorError;
use crate::logs::{LogLine, LogPage, LogRing, now_unix_ms};
use crate::probe::Prober;
use crate::status::{OpId, OpKind, SupervisorEvent, SupervisorState, SupervisorStatus};

/// Handle to the supervisor task. Cheap to share behind an `Arc`; all methods take `&self`.
///
/// ```no_run
/// # async fn demo() -> Result<(), comfyhost_supervisor::SupervisorError> {
/// use comfyhost_supervisor::{LaunchSpec, Supervisor, SupervisorConfig};
/// let spec = LaunchSpec::comfyui("/opt/venv/bin/python", "/opt/ComfyUI", 8188);
/// let sup = Supervisor::spawn(SupervisorConfig::managed(spec), Default::default())?;
/// let mut events = sup.subscribe();
/// let op = sup.start().await; // returns once accepted; progress arrives as events
/// # let _ = (op, &mut events);
/// sup.shutdown().await; // SIGTERM, grace, SIGKILL: no orphan
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Supervisor {
    commands: mpsc::UnboundedSender<Command>,
    status: watch::Receiver<Published>,
    events: broadcast::Sender<SupervisorEvent>,
    logs: Arc<LogRing>,
    next_op: AtomicU64,
    cancel: CancellationToken,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    tail_lines: usize,
    base_url: String,
}

impl Supervisor {
    /// Validates `config` and starts the supervisor task (ComfyUI itself is not started until
    /// [`Supervisor::start`]; attach mode begins health checks at once). Cancelling `cancel`
    /// (e.g. the host's shutdown token) stops the child gracefully, like [`Supervisor::shutdown`].
    /// Must be called inside a tokio runtime.
    pub fn spawn(
        config: SupervisorConfig,
        cancel: CancellationToken,
    ) -> Result<Self, SupervisorError> {
        let prober = Prober::new(config.timings.probe_timeout)?;
        let logs = Arc::new(LogRing::new(config.log_capacity));
        let (events, _) = broadcast::channel(256);
        let tail_lines = config.status_tail_lines;
        let base_url = config.base_url();
        let placeholder = Published {
            status: SupervisorStatus {
                mode: crate::status::SupervisorMode::Managed,
                state: SupervisorState::Stopped,
                since_unix_ms: now_unix_ms(),
                elapsed_ms: 0,
                reason: None,
                url: base_url.clone(),
                pid: None,
                command_line: Vec::new(),
                command_line_shell: String::new(),
                restarts: 0,
                last_exit: None,
                comfyui_version: None,
                next_restart_in_ms: None,
                operation: None,
                last_lines: Vec::new(),
            },
            next_restart_at_ms: None,
        };
        let (status_tx, status) = watch::channel(placeholder);
        let actor = Actor::new(
            config,
            prober,
            Channels {
                status_tx,
                events: events.clone(),
                logs: logs.clone(),
            },
        )?;
        let (commands, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(actor.run(rx, cancel.clone()));
        Ok(Self {
            commands,
            status,
            events,
            logs,
            next_op: AtomicU64::new(1),
            cancel,
            task: tokio::sync::Mutex::new(Some(task)),
            tail_lines,
            base_url,
        })
    }

    async fn request(&self, kind: OpKind) -> OpId {
        self.request_with(kind, None).await
    }

    async fn request_with(&self, kind: OpKind, extra_flags: Option<Vec<String>>) -> OpId {
        let id = OpId(self.next_op.fetch_add(1, Ordering::Relaxed));
        let (ack, acked) = oneshot::channel();
        let sent = self
            .commands
            .send(Command {
                id,
                kind,
                extra_flags,
                ack,
            })
            .is_ok();
        if !sent || acked.await.is_err() {
            let _ = self.events.send(SupervisorEvent::OpFinished {
                op: id,
                kind,
                ok: false,
                message: "the supervisor has shut down".to_owned(),
            });
        }
        id
    }

    /// Starts ComfyUI. Returns as soon as the supervisor accepted the request (the state is
    /// `starting` by then, or the op already finished); `OpFinished` follows on
    /// [`Supervisor::subscribe`] when it is ready or failed. Clears `failed` and resets crash
    /// counting.
    pub async fn start(&self) -> OpId {
        self.request(OpKind::Start).await
    }

    /// Stops ComfyUI: SIGTERM to its process group, SIGKILL after the grace period. Also cancels
    /// a pending restart and clears `failed`.
    pub async fn stop(&self) -> OpId {
        self.request(OpKind::Stop).await
    }

    /// Stops (if running) and starts again; finishes when ready again.
    pub async fn restart(&self) -> OpId {
        self.request(OpKind::Restart).await
    }

    /// Restarts with new `extra_flags` (the attention flags), e.g. to demote from an attention
    /// backend ComfyUI keeps falling back from. The new command line is logged and reported in
    /// the status like any other.
    pub async fn restart_with_flags(&self, extra_flags: Vec<String>) -> OpId {
        self.request_with(OpKind::Restart, Some(extra_flags)).await
    }

    /// Current snapshot, with elapsed time and (while starting / backoff / failed) the last
    /// output lines.
    pub fn status(&self) -> SupervisorStatus {
        let published = self.status.borrow().clone();
        let mut status = published.status;
        let now = now_unix_ms();
        status.elapsed_ms = now.saturating_sub(status.since_unix_ms);
        status.next_restart_in_ms = published
            .next_restart_at_ms
            .map(|at| at.saturating_sub(now));
        if matches!(
            status.state,
            SupervisorState::Starting | SupervisorState::Backoff | SupervisorState::Failed
        ) {
            status.last_lines = self.logs.tail(self.tail_lines);
        }
        status
    }

    /// Waits until the state satisfies `pred` and returns that snapshot; returns the last
    /// snapshot if the supervisor task ended first.
    pub async fn wait_for(
        &self,
        mut pred: impl FnMut(SupervisorState) -> bool,
    ) -> SupervisorStatus {
        let mut rx = self.status.clone();
        // An error means the actor is gone: the last value is final.
        let _ = rx.wait_for(|p| pred(p.status.state)).await;
        self.status()
    }

    /// Lifecycle and operation events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SupervisorEvent> {
        self.events.subscribe()
    }

    /// ComfyUI output lines (and supervisor notes) from now on.
    pub fn subscribe_logs(&self) -> broadcast::Receiver<LogLine> {
        self.logs.subscribe()
    }

    /// Buffered lines with `seq >= since_seq`, at most `limit`; pass `next_seq` back to continue.
    pub fn logs(&self, since_seq: u64, limit: usize) -> LogPage {
        self.logs.page(since_seq, limit)
    }

    /// ComfyUI's base URL, e.g. `http://127.0.0.1:8188`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Stops the child gracefully (SIGTERM, grace, SIGKILL) and ends the supervisor task.
    /// Idempotent; later commands finish with `ok: false`.
    pub async fn shutdown(&self) {
        self.cancel.cancel();
        let task = self.task.lock().await.take();
        if let Some(task) = task
            && let Err(e) = task.await
        {
            tracing::error!(target: "comfyhost::supervisor", error = %e, "supervisor task failed");
        }
    }
}
