//! Errors of the plugin runtime.

use std::time::Duration;

/// Why a single hook call failed. Every variant fails only that call; the registry counts it
/// toward the plugin's crash-loop breaker and applies the hook's failure policy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("plugin {plugin_id} {hook}: {kind}")]
pub struct CallError {
    pub plugin_id: String,
    pub hook: String,
    pub kind: CallErrorKind,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallErrorKind {
    /// Wasm kept running past the deadline and the epoch interrupt stopped it.
    #[error("deadline of {0:?} exceeded while running")]
    Deadline(Duration),
    /// The guest was parked in a host call (HTTP, sleep, ...) past the deadline; the call
    /// future was dropped by the tokio timeout.
    #[error("deadline of {0:?} exceeded while blocked in a host call")]
    BlockedTimeout(Duration),
    /// The guest tried to grow memory past its cap.
    #[error("memory limit of {limit_bytes} bytes exceeded")]
    MemoryLimit { limit_bytes: u64 },
    /// Any other trap (panic, unreachable, out-of-bounds, ...).
    #[error("trap: {0}")]
    Trap(String),
    /// The plugin returned its own typed error.
    #[error("plugin error: {0}")]
    Plugin(String),
    /// The plugin returned something the host cannot accept (bad workflow JSON, ...).
    #[error("invalid output: {0}")]
    InvalidOutput(String),
    /// The host could not hand its input to the plugin (e.g. a submitted workflow that is not
    /// API format). Nothing ran in the plugin.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Instantiation failed (pool exhausted, link error).
    #[error("instantiate: {0}")]
    Instantiate(String),
    /// The plugin is disabled or tripped its breaker.
    #[error("plugin unavailable: {0}")]
    Unavailable(String),
}

impl CallErrorKind {
    /// A fault of the plugin itself: a trap or panic, a deadline, the memory cap, a malformed
    /// answer. Only faults count toward the crash-loop breaker. A plugin's own returned error
    /// is a decision about this input; bad input the host could not even hand over, a busy
    /// instance pool and an unavailable plugin are not the plugin's doing.
    pub fn is_fault(&self) -> bool {
        match self {
            CallErrorKind::Deadline(_)
            | CallErrorKind::BlockedTimeout(_)
            | CallErrorKind::MemoryLimit { .. }
            | CallErrorKind::Trap(_)
            | CallErrorKind::InvalidOutput(_) => true,
            CallErrorKind::Plugin(_)
            | CallErrorKind::InvalidInput(_)
            | CallErrorKind::Instantiate(_)
            | CallErrorKind::Unavailable(_) => false,
        }
    }
}

/// Errors of runtime management (install, compile, manifest, store).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid manifest: {0}")]
    Manifest(String),
    #[error("compile failed: {0}")]
    Compile(String),
    #[error("plugin {0} does not implement the world for hook {1}")]
    WorldMismatch(String, String),
    #[error("plugin not found: {0}")]
    NotFound(String),
    #[error("invalid config: {0}")]
    Config(String),
    #[error("store: {0}")]
    Store(String),
    /// The version fails the admin's trust policy (unsigned, untrusted key, bad signature).
    #[error("{0}")]
    Trust(String),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}
