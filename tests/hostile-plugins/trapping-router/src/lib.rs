//! Hostile plugin: a queue router that traps (`unreachable`) on every call. Fail-closed, it
//! must trip its breaker and then keep the hook closed (prompts refused), never be skipped.

wit_bindgen::generate!({ path: "../../../wit", world: "queue-router-plugin" });

use comfyhost::plugin::types::{PluginError, Submission};
use exports::comfyhost::plugin::queue_router::{BackendStatus, Guest, RouteDecision as Route};

struct Plugin;

impl Guest for Plugin {
    fn route(_submission: Submission, _backends: Vec<BackendStatus>) -> Result<Route, PluginError> {
        std::process::abort()
    }
}

export!(Plugin);
