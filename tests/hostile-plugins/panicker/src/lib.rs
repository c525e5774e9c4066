//! Hostile plugin: panics in `route` (a trap for the host; the message goes to stderr).

wit_bindgen::generate!({ path: "../../../wit", world: "queue-router-plugin" });

use comfyhost::plugin::types::{PluginError, Submission};
use exports::comfyhost::plugin::queue_router::{BackendStatus, Guest, RouteDecision as Route};

struct Plugin;

impl Guest for Plugin {
    fn route(submission: Submission, _backends: Vec<BackendStatus>) -> Result<Route, PluginError> {
        panic!("panicker plugin refuses prompt {}", submission.prompt_id);
    }
}

export!(Plugin);
