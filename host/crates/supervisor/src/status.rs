//! The observable side of the supervisor: states, status snapshots, events, exit records.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use serde::Serialize;

use crate::logs::LogLine;

/// Lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SupervisorState {
    /// No process; nothing will happen until `start()`.
    Stopped,
    /// Preparing directories, checking the port, or waiting for `/system_stats` to answer.
    Starting,
    /// `/system_stats` answered 200.
    Ready,
    /// SIGTERM sent (SIGKILL after the grace period); waiting for the exit.
    Stopping,
    /// Crashed; waiting before the next automatic restart.
    Backoff,
    /// Gave up (startup timeout, crash loop, bad configuration, port conflict). Only an explicit
    /// `start()`/`restart()` leaves it.
    Failed,
    /// A ComfyUI not started by us answers (attach mode, or adopted at start).
    Attached,
    /// Attach mode / adopted ComfyUI: the health check fails.
    Unreachable,
}

/// Whether the supervisor launches ComfyUI or only watches one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SupervisorMode {
    /// The supervisor launches and owns the process.
    Managed,
    /// The supervisor only health-checks a URL.
    Attach,
}

/// Identifier of a `start`/`stop`/`restart` operation; unique per supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct OpId(pub u64);

impl std::fmt::Display for OpId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "op-{}", self.0)
    }
}

/// Kind of operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// `start()`.
    Start,
    /// `stop()` (also host shutdown).
    Stop,
    /// `restart()`.
    Restart,
}

/// An operation in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OpInfo {
    /// Its id.
    pub id: OpId,
    /// Its kind.
    pub kind: OpKind,
    /// When it was accepted (Unix ms).
    pub since_unix_ms: u64,
}

/// How a child process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExitInfo {
    /// Process id of the child.
    pub pid: u32,
    /// Exit code, if it exited normally.
    pub code: Option<i32>,
    /// Signal number, if it was killed by a signal.
    pub signal: Option<i32>,
    /// Human text: `exit code 3`, `killed by signal 9 (SIGKILL)`.
    pub description: String,
    /// Whether the supervisor asked for it (stop/restart/timeout) or it was a crash.
    pub expected: bool,
    /// When the exit was observed (Unix ms).
    pub at_unix_ms: u64,
}

impl ExitInfo {
    /// Builds the record from an [`ExitStatus`].
    pub fn from_status(pid: u32, status: ExitStatus, expected: bool, at_unix_ms: u64) -> Self {
        let code = status.code();
        let signal = status.signal();
        Self {
            pid,
            code,
            signal,
            description: describe_exit(code, signal),
            expected,
            at_unix_ms,
        }
    }
}

/// `exit code N`, `killed by signal N (SIGNAME)` or `unknown exit status`.
pub fn describe_exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => match nix::sys::signal::Signal::try_from(sig) {
            Ok(name) => format!("killed by signal {sig} ({})", name.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        },
        (None, None) => "unknown exit status".to_owned(),
    }
}

/// Snapshot returned by `Supervisor::status()`; serialisable for the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SupervisorStatus {
    /// Managed or attach.
    pub mode: SupervisorMode,
    /// Current state.
    pub state: SupervisorState,
    /// When the current state was entered (Unix ms).
    pub since_unix_ms: u64,
    /// Milliseconds spent in the current state at snapshot time.
    pub elapsed_ms: u64,
    /// Why the state was entered, for `failed`, `backoff`, `unreachable`, `attached`.
    pub reason: Option<String>,
    /// ComfyUI's base URL (`http://127.0.0.1:<port>` when managed).
    pub url: String,
    /// Pid of the managed child, while one runs.
    pub pid: Option<u32>,
    /// Exact argv (empty in attach mode).
    pub command_line: Vec<String>,
    /// The same argv, shell-quoted.
    pub command_line_shell: String,
    /// Automatic restarts after crashes since the last explicit start/restart.
    pub restarts: u32,
    /// How the last child ended.
    pub last_exit: Option<ExitInfo>,
    /// ComfyUI version reported by `/system_stats`, once seen.
    pub comfyui_version: Option<String>,
    /// Delay until the next automatic restart (state `backoff`).
    pub next_restart_in_ms: Option<u64>,
    /// The operation in progress.
    pub operation: Option<OpInfo>,
    /// Last output lines while `starting`, `backoff` or `failed`; empty otherwise.
    pub last_lines: Vec<LogLine>,
}

/// Pushed to subscribers of `Supervisor::subscribe()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SupervisorEvent {
    /// An operation was accepted.
    OpStarted {
        /// Its id.
        op: OpId,
        /// Its kind.
        kind: OpKind,
    },
    /// An operation ended (`ok == false`: failed, refused or superseded; see `message`).
    OpFinished {
        /// Its id.
        op: OpId,
        /// Its kind.
        kind: OpKind,
        /// Whether it achieved what was asked.
        ok: bool,
        /// Outcome for humans.
        message: String,
    },
    /// The state changed.
    StateChanged {
        /// New state.
        state: SupervisorState,
        /// Previous state.
        previous: SupervisorState,
        /// Why (failure reason, backoff delay, health-check error…).
        reason: Option<String>,
        /// The operation that caused it, if any.
        op: Option<OpId>,
        /// Last output lines, when entering `failed`.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        last_lines: Vec<LogLine>,
        /// When (Unix ms).
        at_unix_ms: u64,
    },
    /// A child process was launched.
    Spawned {
        /// Its pid.
        pid: u32,
        /// Shell-quoted command line.
        command_line: String,
        /// 1 for the first launch after an explicit start, +1 per automatic restart.
        attempt: u32,
        /// The operation that caused it, if any.
        op: Option<OpId>,
    },
    /// A child process ended.
    Exited {
        /// How.
        exit: ExitInfo,
        /// The operation in progress, if any.
        op: Option<OpId>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_descriptions() {
        assert_eq!(describe_exit(Some(3), None), "exit code 3");
        assert_eq!(describe_exit(None, Some(9)), "killed by signal 9 (SIGKILL)");
        assert_eq!(
            describe_exit(None, Some(15)),
            "killed by signal 15 (SIGTERM)"
        );
        assert_eq!(describe_exit(None, None), "unknown exit status");
        let status = ExitStatus::from_raw(3 << 8);
        let info = ExitInfo::from_status(7, status, false, 1);
        assert_eq!((info.code, info.signal), (Some(3), None));
        let killed = ExitInfo::from_status(7, ExitStatus::from_raw(9), true, 1);
        assert_eq!((killed.code, killed.signal), (None, Some(9)));
    }

    #[test]
    fn events_serialise_with_a_type_tag() {
        let ev = SupervisorEvent::OpFinished {
            op: OpId(4),
            kind: OpKind::Restart,
            ok: true,
            message: "ready".into(),
        };
        assert_eq!(
            serde_json::to_value(&ev).unwrap(),
            serde_json::json!({"type":"op_finished","op":4,"kind":"restart","ok":true,"message":"ready"})
        );
    }
}
