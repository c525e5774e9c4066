//! Hostile plugin: blocks in a host call (`std::thread::sleep` parks in `wasi:io/poll`), where
//! epoch interruption cannot reach it. Only the host's call timeout can end it.

wit_bindgen::generate!({ path: "../../../wit", world: "queue-router-plugin" });

use comfyhost::plugin::types::{PluginError, Submission};
use exports::comfyhost::plugin::queue_router::{BackendStatus, Guest, RouteDecision as Route};

struct Plugin;

impl Guest for Plugin {
    fn route(_submission: Submission, _backends: Vec<BackendStatus>) -> Result<Route, PluginError> {
        std::thread::sleep(std::time::Duration::from_secs(60));
        Ok(Route::Local)
    }
}

export!(Plugin);
