//! Hostile plugin: allocates (and touches) 1 MiB blocks until it dies. The host must stop it
//! at the memory budget.

wit_bindgen::generate!({ path: "../../../wit", world: "queue-router-plugin" });

use comfyhost::plugin::types::{PluginError, Submission};
use exports::comfyhost::plugin::queue_router::{BackendStatus, Guest, RouteDecision as Route};

struct Plugin;

impl Guest for Plugin {
    fn route(_submission: Submission, _backends: Vec<BackendStatus>) -> Result<Route, PluginError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let block = vec![0xA5u8; 1 << 20];
            hoard.push(std::hint::black_box(block));
            if hoard.len() > 1 << 16 {
                // 64 GiB: unreachable under any budget; keeps the loop provably finite.
                return Ok(Route::Reject(format!("allocated {} MiB", hoard.len())));
            }
        }
    }
}

export!(Plugin);
