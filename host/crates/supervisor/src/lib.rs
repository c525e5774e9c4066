//! comfyhost-supervisor: ComfyUI's lifecycle.
//!
//! [`Supervisor`] launches ComfyUI from a [`LaunchSpec`] (exact argv from [`command_line`]),
//! waits for `GET http://127.0.0.1:<port>/system_stats` to answer 200, captures its output into a
//! ring buffer, restarts it with exponential backoff after crashes (giving up on a crash loop),
//! stops it with SIGTERM → SIGKILL on its process group, and never leaves orphans. In attach mode
//! ([`SupervisorConfig::attach`]) it only health-checks a URL.
//!
//! States: `stopped → starting → ready → stopping/failed`, plus `backoff` between crash restarts
//! and `attached`/`unreachable` for a ComfyUI it does not own. Commands return an [`OpId`] as soon
//! as they are accepted; progress arrives as [`SupervisorEvent`]s.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod actor;
mod backoff;
mod config;
mod dirs;
mod error;
mod line_reader;
mod logs;
mod probe;
mod process;
mod spec;
mod status;
mod supervisor;

pub use backoff::backoff_delay;
pub use config::{PortPolicy, SupervisorConfig, Target, Timings};
pub use dirs::{ensure_writable_dir, prepare_dirs};
pub use error::SupervisorError;
pub use logs::{LogLine, LogPage, LogStream};
pub use probe::{ProbeOutcome, Prober, classify_body};
pub use process::process_alive;
pub use spec::{LISTEN_ADDR, LaunchSpec, command_line, shell_join, shell_quote};
pub use status::{
    ExitInfo, OpId, OpInfo, OpKind, SupervisorEvent, SupervisorMode, SupervisorState,
    SupervisorStatus,
};
pub use supervisor::Supervisor;
