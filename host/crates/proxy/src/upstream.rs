//! Where ComfyUI is (switchable at run time) and what the supervisor says about it.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::uri::Authority;
use serde_json::Value;

/// What the supervisor knows about ComfyUI, quoted in errors when it cannot be reached.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamSnapshot {
    /// Supervisor state name, e.g. `"starting"`, `"running"`, `"restarting"`, `"crashed"`.
    pub state: String,
    /// ComfyUI is expected back soon (a planned restart). WebSockets cut by it close with
    /// `1012 Service Restart` instead of `1011`.
    pub restarting: bool,
    /// Extra JSON for the error body (`error.extra_info.supervisor`), e.g. exit code, last log line.
    pub details: Option<Value>,
}

impl UpstreamSnapshot {
    /// A snapshot with only a state name.
    pub fn new(state: impl Into<String>) -> Self {
        Self {
            state: state.into(),
            restarting: false,
            details: None,
        }
    }
}

/// Source of [`UpstreamSnapshot`]s, called only on the error path (so it may take a lock).
///
/// Any `Fn() -> UpstreamSnapshot` closure implements it.
pub trait UpstreamState: Send + Sync + 'static {
    /// The supervisor's current view of ComfyUI.
    fn snapshot(&self) -> UpstreamSnapshot;
}

impl<F> UpstreamState for F
where
    F: Fn() -> UpstreamSnapshot + Send + Sync + 'static,
{
    fn snapshot(&self) -> UpstreamSnapshot {
        self()
    }
}

/// Used when the host installs no [`UpstreamState`].
pub(crate) struct UnknownState;

impl UpstreamState for UnknownState {
    fn snapshot(&self) -> UpstreamSnapshot {
        UpstreamSnapshot::new("unknown")
    }
}

/// ComfyUI's current authority, readable without locks on every request.
pub(crate) struct UpstreamTarget {
    authority: ArcSwap<Authority>,
}

impl UpstreamTarget {
    pub(crate) fn new(authority: Authority) -> Self {
        Self {
            authority: ArcSwap::from_pointee(authority),
        }
    }

    pub(crate) fn get(&self) -> Arc<Authority> {
        self.authority.load_full()
    }

    pub(crate) fn set(&self, authority: Authority) {
        self.authority.store(Arc::new(authority));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closures_are_state_providers() {
        let provider: Arc<dyn UpstreamState> = Arc::new(|| UpstreamSnapshot::new("starting"));
        assert_eq!(provider.snapshot().state, "starting");
        assert_eq!(UnknownState.snapshot().state, "unknown");
    }

    #[test]
    fn target_switches() {
        let t = UpstreamTarget::new("127.0.0.1:1".parse().unwrap());
        t.set("127.0.0.1:2".parse().unwrap());
        assert_eq!(t.get().as_str(), "127.0.0.1:2");
    }
}
