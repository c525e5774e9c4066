//! Cheap questions the host asks on hot paths.

use crate::manifest::{FailurePolicy, HookKind};
use crate::registry::info::PluginState;

impl super::PluginRegistry {
    /// Whether any plugin runs in `hook`'s chain now. Lets the host skip building a typed
    /// submission (and forward the browser's bytes untouched) when nothing would look at it.
    pub fn has_enabled(&self, hook: HookKind) -> bool {
        self.inner.slots.read().values().any(|s| {
            let l = s.current.load();
            l.code.hook() == hook && super::state_of(s, &l) == PluginState::Enabled
        })
    }

    /// Whether a prompt must go through `hook`'s chain: some plugin of it runs, or a
    /// fail-closed one that is not running keeps the hook closed (the chain then refuses).
    pub fn has_chain(&self, hook: HookKind) -> bool {
        self.inner.slots.read().values().any(|s| {
            let l = s.current.load();
            l.code.hook() == hook
                && (l.env.budget.failure == FailurePolicy::FailClosed
                    || super::state_of(s, &l) == PluginState::Enabled)
        })
    }

    /// True when an enabled output-sync plugin mirrors deletions (`output-mirror`).
    pub fn has_enabled_mirror(&self) -> bool {
        self.inner.slots.read().values().any(|s| {
            let l = s.current.load();
            l.code.hook() == HookKind::OutputSync
                && l.code.mirrors_removals()
                && super::state_of(s, &l) == PluginState::Enabled
        })
    }
}
