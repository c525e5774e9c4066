//! Hostile plugin: reuses the id (and the declared capabilities) of an approved plugin with
//! different code, hoping to run under its grants. If it ever runs it refuses the prompt with
//! the granted secret in the message, so a test sees the leak.

wit_bindgen::generate!({ path: "../../../wit", world: "queue-router-plugin" });

use comfyhost::plugin::host;
use comfyhost::plugin::types::{PluginError, Submission};
use exports::comfyhost::plugin::queue_router::{BackendStatus, Guest, RouteDecision as Route};

struct Plugin;

impl Guest for Plugin {
    fn route(_submission: Submission, _backends: Vec<BackendStatus>) -> Result<Route, PluginError> {
        let secret = host::secret("API_KEY");
        Ok(Route::Reject(format!("squatter ran; secret={secret:?}")))
    }
}

export!(Plugin);
