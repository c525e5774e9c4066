//! The actor: one task owns the child process and the lifecycle state; everything else talks to
//! it through messages. Slow work (directory preparation, port check, probes) runs in helper
//! tasks that report back tagged with the attempt generation, so stale reports are ignored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use reqwest::Url;
use tokio::process::Child;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::backoff::{CrashTracker, CrashVerdict};
use crate::config::{PortPolicy, SupervisorConfig, Target};
use crate::dirs::prepare_dirs;
use crate::error::SupervisorError;
use crate::line_reader::read_lines;
use crate::logs::{LogRing, LogStream, now_unix_ms};
use crate::probe::{PortCheck, ProbeOutcome, Prober, check_port};
use crate::process::{signal_group, spawn_child};
use crate::spec::{LaunchSpec, command_line, shell_join};
use crate::status::{
    ExitInfo, OpId, OpInfo, OpKind, SupervisorEvent, SupervisorMode, SupervisorState,
    SupervisorStatus, describe_exit,
};

/// A request from the handle. `ack` fires once the actor has applied the immediate effect.
pub(crate) struct Command {
    pub id: OpId,
    pub kind: OpKind,
    /// For a restart: replace the spec's `extra_flags` first (attention demotion).
    pub extra_flags: Option<Vec<String>>,
    pub ack: oneshot::Sender<()>,
}

/// What the actor publishes through the watch channel.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    /// The snapshot, without the fields computed at read time.
    pub status: SupervisorStatus,
    /// Absolute time of the next automatic restart (Unix ms).
    pub next_restart_at_ms: Option<u64>,
}

/// Reports from helper tasks.
enum Internal {
    Preflight {
        generation: u64,
        result: Result<PortCheck, String>,
    },
    Ready {
        generation: u64,
        version: Option<String>,
    },
    Health {
        generation: u64,
        outcome: ProbeOutcome,
    },
}

/// What follows the exit of a child we asked to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AfterExit {
    Stopped,
    Restart,
    Fail(String),
    Shutdown,
}

struct Running {
    child: Child,
    pid: u32,
}

/// Channels shared between the actor and the handle.
pub(crate) struct Channels {
    pub status_tx: watch::Sender<Published>,
    pub events: broadcast::Sender<SupervisorEvent>,
    pub logs: Arc<LogRing>,
}

pub(crate) struct Actor {
    config: SupervisorConfig,
    spec: Option<LaunchSpec>,
    argv: Vec<String>,
    argv_shell: String,
    /// Probe base (trailing slash): the attach URL or `http://127.0.0.1:<port>/`.
    probe_base: Url,
    prober: Prober,
    ch: Channels,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,

    state: SupervisorState,
    since_ms: u64,
    reason: Option<String>,
    /// Bumped for every attempt / health loop; reports with another value are stale.
    generation: u64,
    /// Cancels the helper tasks of the current generation.
    helpers: CancellationToken,
    child: Option<Running>,
    /// Startup timeout, stop grace or backoff end, depending on the state.
    deadline: Option<Instant>,
    next_restart_at_ms: Option<u64>,
    op: Option<OpInfo>,
    queued_start: Option<OpInfo>,
    after_exit: AfterExit,
    crashes: CrashTracker,
    restarts: u32,
    attempt: u32,
    attempt_started: Instant,
    ready_at: Option<Instant>,
    last_exit: Option<ExitInfo>,
    version: Option<String>,
    adopted: bool,
    shutting_down: bool,
}

fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

impl Actor {
    pub(crate) fn new(
        config: SupervisorConfig,
        prober: Prober,
        ch: Channels,
    ) -> Result<Self, SupervisorError> {
        let (spec, argv, probe_base) = match &config.target {
            Target::Managed(spec) => {
                spec.validate()?;
                let argv = command_line(spec);
                let url = format!("{}/", spec.base_url());
                let base = Url::parse(&url).map_err(|e| SupervisorError::InvalidAttachUrl {
                    url,
                    reason: e.to_string(),
                })?;
                (Some(spec.clone()), argv, base)
            }
            Target::Attach(url) => (None, Vec::new(), url.clone()),
        };
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let state = if spec.is_some() {
            SupervisorState::Stopped
        } else {
            SupervisorState::Unreachable
        };
        let argv_shell = shell_join(&argv);
        let mut actor = Self {
            config,
            spec,
            argv,
            argv_shell,
            probe_base,
            prober,
            ch,
            internal_tx,
            internal_rx,
            state,
            since_ms: now_unix_ms(),
            reason: None,
            generation: 0,
            helpers: CancellationToken::new(),
            child: None,
            deadline: None,
            next_restart_at_ms: None,
            op: None,
            queued_start: None,
            after_exit: AfterExit::Stopped,
            crashes: CrashTracker::default(),
            restarts: 0,
            attempt: 0,
            attempt_started: Instant::now(),
            ready_at: None,
            last_exit: None,
            version: None,
            adopted: false,
            shutting_down: false,
        };
        if actor.spec.is_none() {
            actor.reason = Some("waiting for the first health check".to_owned());
        }
        actor.publish();
        Ok(actor)
    }

    /// The initial published value (before the actor runs).
    pub(crate) fn snapshot(&self) -> Published {
        Published {
            status: SupervisorStatus {
                mode: if self.spec.is_some() {
                    SupervisorMode::Managed
                } else {
                    SupervisorMode::Attach
                },
                state: self.state,
                since_unix_ms: self.since_ms,
                elapsed_ms: 0,
                reason: self.reason.clone(),
                url: self.config.base_url(),
                pid: self.child.as_ref().map(|c| c.pid),
                command_line: self.argv.clone(),
                command_line_shell: self.argv_shell.clone(),
                restarts: self.restarts,
                last_exit: self.last_exit.clone(),
                comfyui_version: self.version.clone(),
                next_restart_in_ms: None,
                operation: self.op,
                last_lines: Vec::new(),
            },
            next_restart_at_ms: self.next_restart_at_ms,
        }
    }

    fn publish(&self) {
        self.ch.status_tx.send_replace(self.snapshot());
    }

    fn emit(&self, event: SupervisorEvent) {
        // No subscribers is fine.
        let _ = self.ch.events.send(event);
    }

    fn note(&self, text: String) {
        self.ch.logs.push(LogStream::Supervisor, text);
    }

    /// Runs until shutdown (token cancelled or every handle dropped) and the child is gone.
    pub(crate) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        cancel: CancellationToken,
    ) {
        if self.spec.is_none() {
            self.start_health_loop();
        }
        let mut commands_open = true;
        loop {
            let deadline = self.deadline;
            tokio::select! {
                biased;
                _ = cancel.cancelled(), if !self.shutting_down => self.begin_shutdown(),
                cmd = commands.recv(), if commands_open => match cmd {
                    Some(cmd) => {
                        if let Some(flags) = cmd.extra_flags {
                            self.set_extra_flags(flags);
                        }
                        self.on_command(cmd.id, cmd.kind);
                        let _ = cmd.ack.send(());
                    }
                    None => {
                        commands_open = false;
                        if !self.shutting_down {
                            self.begin_shutdown();
                        }
                    }
                },
                Some(msg) = self.internal_rx.recv() => self.on_internal(msg),
                res = wait_child(&mut self.child) => self.on_child_exit(res),
                _ = sleep_until_opt(deadline) => self.on_deadline(),
            }
            self.publish();
            if self.shutting_down && self.child.is_none() {
                break;
            }
        }
        self.helpers.cancel();
        tracing::info!(target: "comfyhost::supervisor", "supervisor stopped");
    }

    // ----- state helpers -------------------------------------------------------------------

    fn set_state(&mut self, state: SupervisorState, reason: Option<String>) {
        if state == self.state && reason == self.reason {
            return;
        }
        let previous = self.state;
        self.state = state;
        self.since_ms = now_unix_ms();
        self.reason = reason.clone();
        if state != SupervisorState::Backoff {
            self.next_restart_at_ms = None;
        }
        let last_lines = if state == SupervisorState::Failed {
            self.ch.logs.tail(self.config.status_tail_lines)
        } else {
            Vec::new()
        };
        tracing::info!(
            target: "comfyhost::supervisor",
            ?previous,
            ?state,
            reason = reason.as_deref().unwrap_or(""),
            "ComfyUI state changed"
        );
        self.emit(SupervisorEvent::StateChanged {
            state,
            previous,
            reason,
            op: self.op.map(|o| o.id),
            last_lines,
            at_unix_ms: self.since_ms,
        });
        self.publish();
    }

    fn finish_now(&self, op: OpInfo, ok: bool, message: impl Into<String>) {
        let message = message.into();
        tracing::debug!(target: "comfyhost::supervisor", op = %op.id, ?op.kind, ok, %message, "operation finished");
        self.emit(SupervisorEvent::OpFinished {
            op: op.id,
            kind: op.kind,
            ok,
            message,
        });
    }

    fn finish_op(&mut self, ok: bool, message: impl Into<String>) {
        if let Some(op) = self.op.take() {
            self.finish_now(op, ok, message);
        }
    }

    fn take_op(&mut self, op: OpInfo) {
        if let Some(old) = self.op.replace(op) {
            self.finish_now(
                old,
                false,
                format!("superseded by {:?} {}", op.kind, op.id).to_lowercase(),
            );
        }
    }

    fn explicit_reset(&mut self) {
        self.crashes.reset();
        self.restarts = 0;
        self.attempt = 0;
    }

    fn new_generation(&mut self) -> u64 {
        self.helpers.cancel();
        self.helpers = CancellationToken::new();
        self.generation += 1;
        self.generation
    }

    fn port(&self) -> u16 {
        self.spec.as_ref().map_or(0, |s| s.port)
    }

    fn fail(&mut self, reason: String) {
        self.new_generation();
        self.deadline = None;
        self.ready_at = None;
        self.note(format!("failed: {reason}"));
        tracing::warn!(target: "comfyhost::supervisor", %reason, "ComfyUI failed");
        self.set_state(SupervisorState::Failed, Some(reason.clone()));
        self.finish_op(false, reason);
        self.run_queued_start();
    }

    fn run_queued_start(&mut self) {
        if let Some(op) = self.queued_start.take() {
            self.take_op(op);
            self.explicit_reset();
            self.begin_attempt();
        }
    }

    // ----- commands ------------------------------------------------------------------------

    /// Replaces the launch spec's `extra_flags`; the next launch uses them. The command line
    /// stays built by `command_line` alone.
    fn set_extra_flags(&mut self, flags: Vec<String>) {
        let Some(spec) = self.spec.as_mut() else {
            return;
        };
        spec.extra_flags = flags;
        self.argv = command_line(spec);
        self.argv_shell = shell_join(&self.argv);
        tracing::info!(target: "comfyhost::supervisor", command_line = %self.argv_shell, "launch flags changed");
    }

    fn on_command(&mut self, id: OpId, kind: OpKind) {
        let op = OpInfo {
            id,
            kind,
            since_unix_ms: now_unix_ms(),
        };
        tracing::info!(target: "comfyhost::supervisor", op = %id, ?kind, state = ?self.state, "operation requested");
        self.emit(SupervisorEvent::OpStarted { op: id, kind });
        if self.shutting_down {
            self.finish_now(op, false, "the host is shutting down");
            return;
        }
        if self.spec.is_none() {
            let msg = format!(
                "attach mode: the ComfyUI at {} is not managed by this host",
                self.config.base_url()
            );
            self.finish_now(op, false, msg);
            return;
        }
        match kind {
            OpKind::Start => self.cmd_start(op),
            OpKind::Stop => self.cmd_stop(op),
            OpKind::Restart => self.cmd_restart(op),
        }
    }

    fn adopted_refusal(&self) -> String {
        format!(
            "the ComfyUI on port {} was already running and was adopted (pid unknown); \
             it can only be stopped where it was started",
            self.port()
        )
    }

    fn cmd_start(&mut self, op: OpInfo) {
        use SupervisorState as S;
        match self.state {
            S::Stopped | S::Failed | S::Unreachable | S::Backoff => {
                self.take_op(op);
                self.explicit_reset();
                self.begin_attempt();
            }
            S::Starting => self.finish_now(op, true, "already starting"),
            S::Ready => self.finish_now(op, true, "already running"),
            S::Attached => self.finish_now(op, true, "already running (adopted, pid unknown)"),
            S::Stopping => {
                if self.after_exit == AfterExit::Restart {
                    self.finish_now(op, true, "a restart is already in progress");
                } else if let Some(old) = self.queued_start.replace(op) {
                    self.finish_now(old, false, format!("superseded by start {}", op.id));
                }
            }
        }
    }

    fn cmd_stop(&mut self, op: OpInfo) {
        use SupervisorState as S;
        if let Some(queued) = self.queued_start.take() {
            self.finish_now(queued, false, format!("cancelled by stop {}", op.id));
        }
        match self.state {
            S::Stopped => self.finish_now(op, true, "already stopped"),
            S::Failed => {
                self.set_state(S::Stopped, None);
                self.finish_now(op, true, "cleared the failed state");
            }
            S::Attached => {
                let msg = self.adopted_refusal();
                self.finish_now(op, false, msg);
            }
            S::Unreachable | S::Backoff => {
                self.take_op(op);
                self.new_generation();
                self.deadline = None;
                self.adopted = false;
                self.set_state(S::Stopped, None);
                self.finish_op(true, "stopped");
            }
            S::Starting if self.child.is_none() => {
                self.take_op(op);
                self.new_generation();
                self.deadline = None;
                self.set_state(S::Stopped, None);
                self.finish_op(true, "stopped before launch");
            }
            S::Starting | S::Ready => {
                self.take_op(op);
                self.begin_stop(AfterExit::Stopped);
            }
            S::Stopping => {
                if self.after_exit == AfterExit::Restart {
                    self.after_exit = AfterExit::Stopped;
                    self.take_op(op);
                } else {
                    self.finish_now(op, true, "already stopping");
                }
            }
        }
    }

    fn cmd_restart(&mut self, op: OpInfo) {
        use SupervisorState as S;
        if let Some(queued) = self.queued_start.take() {
            self.finish_now(queued, false, format!("superseded by restart {}", op.id));
        }
        match self.state {
            S::Attached => {
                let msg = self.adopted_refusal();
                self.finish_now(op, false, msg);
            }
            S::Starting | S::Ready if self.child.is_some() => {
                self.take_op(op);
                self.begin_stop(AfterExit::Restart);
            }
            S::Stopping => {
                self.take_op(op);
                self.after_exit = AfterExit::Restart;
            }
            _ => {
                self.take_op(op);
                self.explicit_reset();
                self.begin_attempt();
            }
        }
    }

    // ----- lifecycle steps -----------------------------------------------------------------

    fn begin_attempt(&mut self) {
        let Some(spec) = self.spec.clone() else {
            return;
        };
        let generation = self.new_generation();
        self.attempt += 1;
        self.attempt_started = Instant::now();
        self.ready_at = None;
        self.adopted = false;
        self.deadline = Some(Instant::now() + self.config.timings.startup_timeout);
        let reason = (self.attempt > 1).then(|| format!("automatic restart {}", self.restarts));
        self.set_state(SupervisorState::Starting, reason);
        let prober = self.prober.clone();
        let tx = self.internal_tx.clone();
        let cancel = self.helpers.clone();
        tokio::spawn(async move {
            let port = spec.port;
            let work = async move {
                match tokio::task::spawn_blocking(move || prepare_dirs(&spec)).await {
                    Ok(Ok(())) => Ok(check_port(port, &prober).await),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(format!("directory preparation did not finish: {e}")),
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => {}
                result = work => {
                    let _ = tx.send(Internal::Preflight { generation, result });
                }
            }
        });
    }

    fn on_preflight(&mut self, result: Result<PortCheck, String>) {
        let port = self.port();
        match result {
            Err(reason) => self.fail(reason),
            Ok(PortCheck::Free) => self.launch(),
            Ok(PortCheck::ComfyUi { version }) => match self.config.port_policy {
                PortPolicy::Adopt => {
                    self.deadline = None;
                    self.adopted = true;
                    self.version = version;
                    let reason =
                        format!("adopted the ComfyUI already running on port {port} (pid unknown)");
                    self.note(reason.clone());
                    self.set_state(SupervisorState::Attached, Some(reason.clone()));
                    self.finish_op(true, reason);
                    self.start_health_loop();
                }
                PortPolicy::Refuse => {
                    self.fail(format!(
                        "port {port} is in use by another ComfyUI (pid unknown)"
                    ));
                }
            },
            Ok(PortCheck::Other(what)) => self.fail(format!(
                "port {port} on 127.0.0.1 is in use by another program, not ComfyUI ({what})"
            )),
        }
    }

    fn launch(&mut self) {
        let Some(spec) = self.spec.clone() else {
            return;
        };
        self.note(format!(
            "launching ComfyUI (attempt {}) in {}: {}",
            self.attempt,
            spec.comfyui_dir.display(),
            self.argv_shell
        ));
        let mut child = match spawn_child(&spec, &self.argv) {
            Ok(child) => child,
            Err(e) => {
                let program = self.argv.first().cloned().unwrap_or_default();
                self.fail(format!("cannot launch {program}: {e}"));
                return;
            }
        };
        let pid = child.id().unwrap_or(0);
        let env_keys: Vec<&str> = spec.env.keys().map(String::as_str).collect();
        tracing::info!(
            target: "comfyhost::supervisor",
            pid,
            attempt = self.attempt,
            command_line = %self.argv_shell,
            cwd = %spec.comfyui_dir.display(),
            env_added = ?env_keys,
            "launched ComfyUI"
        );
        if let Some(out) = child.stdout.take() {
            let logs = self.ch.logs.clone();
            tokio::spawn(read_lines(tokio::io::BufReader::new(out), move |l| {
                logs.push(LogStream::Stdout, l);
            }));
        }
        if let Some(err) = child.stderr.take() {
            let logs = self.ch.logs.clone();
            tokio::spawn(read_lines(tokio::io::BufReader::new(err), move |l| {
                logs.push(LogStream::Stderr, l);
            }));
        }
        self.child = Some(Running { child, pid });
        self.emit(SupervisorEvent::Spawned {
            pid,
            command_line: self.argv_shell.clone(),
            attempt: self.attempt,
            op: self.op.map(|o| o.id),
        });
        self.start_ready_probe();
    }

    fn start_ready_probe(&self) {
        let generation = self.generation;
        let prober = self.prober.clone();
        let base = self.probe_base.clone();
        let interval = self.config.timings.probe_interval;
        let tx = self.internal_tx.clone();
        let cancel = self.helpers.clone();
        tokio::spawn(async move {
            let poll = async {
                loop {
                    let outcome = prober.probe(&base).await;
                    if outcome.is_ok() {
                        let version = match outcome {
                            ProbeOutcome::ComfyUi { version } => version,
                            _ => None,
                        };
                        let _ = tx.send(Internal::Ready {
                            generation,
                            version,
                        });
                        return;
                    }
                    tokio::time::sleep(interval).await;
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = poll => {}
            }
        });
    }

    fn start_health_loop(&mut self) {
        let generation = if self.adopted {
            // The adoption happened within the current attempt's generation; keep it.
            self.generation
        } else {
            self.new_generation()
        };
        let prober = self.prober.clone();
        let base = self.probe_base.clone();
        let interval = self.config.timings.attach_interval;
        let tx = self.internal_tx.clone();
        let cancel = self.helpers.clone();
        tokio::spawn(async move {
            let poll = async {
                loop {
                    let outcome = prober.probe(&base).await;
                    if tx
                        .send(Internal::Health {
                            generation,
                            outcome,
                        })
                        .is_err()
                    {
                        return;
                    }
                    tokio::time::sleep(interval).await;
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = poll => {}
            }
        });
    }

    fn begin_stop(&mut self, after: AfterExit) {
        self.after_exit = after;
        // Stop the readiness probe; exit handling decides what comes next.
        self.new_generation();
        let Some(pid) = self.child.as_ref().map(|c| c.pid) else {
            return;
        };
        let grace = self.config.timings.stop_grace;
        self.note(format!(
            "sending SIGTERM to process group {pid} (SIGKILL after {})",
            fmt_duration(grace)
        ));
        if let Err(e) = signal_group(pid, Signal::SIGTERM) {
            tracing::warn!(target: "comfyhost::supervisor", pid, error = %e, "SIGTERM failed");
        }
        self.deadline = Some(Instant::now() + grace);
        self.set_state(SupervisorState::Stopping, None);
    }

    fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        if let Some(queued) = self.queued_start.take() {
            self.finish_now(queued, false, "the host is shutting down");
        }
        self.finish_op(false, "the host is shutting down");
        if self.child.is_some() {
            if self.state == SupervisorState::Stopping {
                self.after_exit = AfterExit::Shutdown;
            } else {
                self.begin_stop(AfterExit::Shutdown);
            }
        } else {
            self.new_generation();
            self.deadline = None;
            if self.spec.is_some() {
                self.set_state(SupervisorState::Stopped, Some("host shut down".to_owned()));
            }
        }
    }

    // ----- reports -------------------------------------------------------------------------

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::Preflight { generation, result } => {
                if generation == self.generation
                    && self.state == SupervisorState::Starting
                    && self.child.is_none()
                {
                    self.on_preflight(result);
                }
            }
            Internal::Ready {
                generation,
                version,
            } => {
                if generation == self.generation
                    && self.state == SupervisorState::Starting
                    && self.child.is_some()
                {
                    self.on_ready(version);
                }
            }
            Internal::Health {
                generation,
                outcome,
            } => {
                if generation == self.generation
                    && matches!(
                        self.state,
                        SupervisorState::Attached | SupervisorState::Unreachable
                    )
                {
                    self.on_health(outcome);
                }
            }
        }
    }

    fn on_ready(&mut self, version: Option<String>) {
        let took = self.attempt_started.elapsed();
        self.deadline = None;
        self.ready_at = Some(Instant::now());
        if version.is_some() {
            self.version = version;
        }
        let msg = format!("ComfyUI is ready after {:.2} s", took.as_secs_f64());
        self.note(msg.clone());
        self.set_state(SupervisorState::Ready, None);
        self.finish_op(true, msg);
    }

    fn on_health(&mut self, outcome: ProbeOutcome) {
        match outcome {
            ProbeOutcome::ComfyUi { version } => {
                if version.is_some() {
                    self.version = version;
                }
                let reason = if self.adopted {
                    format!(
                        "adopted the ComfyUI already running on port {} (pid unknown)",
                        self.port()
                    )
                } else {
                    format!("attached to {}", self.config.base_url())
                };
                self.set_state(SupervisorState::Attached, Some(reason));
            }
            other => self.set_state(SupervisorState::Unreachable, Some(other.describe())),
        }
    }

    fn on_child_exit(&mut self, res: std::io::Result<std::process::ExitStatus>) {
        let Some(Running { pid, .. }) = self.child.take() else {
            return;
        };
        let expected = self.state == SupervisorState::Stopping;
        let at = now_unix_ms();
        let exit = match res {
            Ok(status) => ExitInfo::from_status(pid, status, expected, at),
            Err(e) => ExitInfo {
                pid,
                code: None,
                signal: None,
                description: format!("{} (waiting failed: {e})", describe_exit(None, None)),
                expected,
                at_unix_ms: at,
            },
        };
        // Whatever the child left in its process group goes with it: no orphans.
        if let Err(e) = signal_group(pid, Signal::SIGKILL) {
            tracing::debug!(target: "comfyhost::supervisor", pid, error = %e, "group cleanup failed");
        }
        self.new_generation();
        self.deadline = None;
        self.note(format!("ComfyUI (pid {pid}) exited: {}", exit.description));
        tracing::info!(target: "comfyhost::supervisor", pid, exit = %exit.description, expected, "ComfyUI exited");
        self.emit(SupervisorEvent::Exited {
            exit: exit.clone(),
            op: self.op.map(|o| o.id),
        });
        let description = exit.description.clone();
        self.last_exit = Some(exit);
        match self.state {
            SupervisorState::Stopping => {
                match std::mem::replace(&mut self.after_exit, AfterExit::Stopped) {
                    AfterExit::Stopped => {
                        self.set_state(SupervisorState::Stopped, None);
                        self.finish_op(true, format!("stopped ({description})"));
                        self.run_queued_start();
                    }
                    AfterExit::Restart => {
                        self.explicit_reset();
                        self.begin_attempt();
                    }
                    AfterExit::Fail(reason) => self.fail(reason),
                    AfterExit::Shutdown => {
                        self.set_state(SupervisorState::Stopped, Some("host shut down".to_owned()));
                    }
                }
            }
            SupervisorState::Starting | SupervisorState::Ready => self.on_crash(description),
            _ => {}
        }
    }

    fn on_crash(&mut self, description: String) {
        let ready_for = self.ready_at.map(|t| t.elapsed());
        self.ready_at = None;
        let timings = self.config.timings.clone();
        match self.crashes.record(Instant::now(), ready_for, &timings) {
            CrashVerdict::RestartAfter(delay) => {
                self.deadline = Some(Instant::now() + delay);
                self.next_restart_at_ms =
                    Some(now_unix_ms() + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
                let reason = format!(
                    "ComfyUI exited unexpectedly ({description}); restarting in {}",
                    fmt_duration(delay)
                );
                self.note(reason.clone());
                self.set_state(SupervisorState::Backoff, Some(reason));
            }
            CrashVerdict::CrashLoop { crashes } => self.fail(format!(
                "crash loop: {crashes} unexpected exits within {} (last: {description}); \
                 not restarting until an explicit start",
                fmt_duration(timings.crash_loop_window)
            )),
        }
    }

    fn on_deadline(&mut self) {
        self.deadline = None;
        match self.state {
            SupervisorState::Starting => {
                let reason = format!(
                    "startup timeout after {}",
                    fmt_duration(self.config.timings.startup_timeout)
                );
                match self.child.as_ref().map(|c| c.pid) {
                    Some(pid) => {
                        self.note(format!("{reason}; killing process group {pid}"));
                        if let Err(e) = signal_group(pid, Signal::SIGKILL) {
                            tracing::warn!(target: "comfyhost::supervisor", pid, error = %e, "SIGKILL failed");
                        }
                        self.new_generation();
                        self.after_exit = AfterExit::Fail(reason.clone());
                        self.set_state(SupervisorState::Stopping, Some(reason));
                    }
                    None => self.fail(reason),
                }
            }
            SupervisorState::Stopping => {
                if let Some(pid) = self.child.as_ref().map(|c| c.pid) {
                    self.note(format!(
                        "ComfyUI (pid {pid}) did not exit within the grace period; sending SIGKILL"
                    ));
                    tracing::warn!(target: "comfyhost::supervisor", pid, "stop grace expired, SIGKILL");
                    if let Err(e) = signal_group(pid, Signal::SIGKILL) {
                        tracing::warn!(target: "comfyhost::supervisor", pid, error = %e, "SIGKILL failed");
                    }
                }
            }
            SupervisorState::Backoff => {
                self.restarts += 1;
                self.note(format!("automatic restart {}", self.restarts));
                self.begin_attempt();
            }
            _ => {}
        }
    }
}

async fn wait_child(child: &mut Option<Running>) -> std::io::Result<std::process::ExitStatus> {
    match child {
        Some(running) => running.child.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
