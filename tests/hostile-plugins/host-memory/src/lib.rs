//! Hostile plugin taking host memory outside its linear memory and across calls. Client id
//! `attack-fields`: creates wasi:http header maps (`fields`) with 60 KiB values in a loop and
//! holds them, refusing the prompt with `fields=N err=E`. Client id `attack-mem-<MiB>`:
//! (`attack-mem-<MiB>-<anything>`): allocates and touches that many MiB of linear memory,
//! holds them for 2 s (asleep), then passes.
//! Other prompts pass.

wit_bindgen::generate!({ path: "../../../wit", world: "queue-router-plugin" });

use comfyhost::plugin::types::{PluginError, Submission};
use exports::comfyhost::plugin::queue_router::{BackendStatus, Guest, RouteDecision as Route};

struct Plugin;

impl Guest for Plugin {
    fn route(submission: Submission, _backends: Vec<BackendStatus>) -> Result<Route, PluginError> {
        let client = submission.client_id.unwrap_or_default();
        if client.starts_with("attack-fields") {
            let value = vec![b'v'; 60 * 1024];
            let mut held = Vec::new();
            let mut err = String::from("none");
            while held.len() < 1_000_000 {
                let f = wasip2::http::types::Fields::new();
                if let Err(e) = f.append("x-fill", &value) {
                    err = format!("append: {e:?}");
                    break;
                }
                held.push(f);
            }
            return Ok(Route::Reject(format!("fields={} err={err}", held.len())));
        }
        if let Some(mb) = client.strip_prefix("attack-mem-") {
            let mb: usize = mb
                .split('-')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(1);
            let mut v: Vec<u8> = Vec::new();
            if v.try_reserve_exact(mb << 20).is_err() {
                return Err(PluginError::Internal(format!(
                    "could not allocate {mb} MiB"
                )));
            }
            v.resize(mb << 20, 1);
            std::thread::sleep(std::time::Duration::from_secs(2));
            std::hint::black_box(&v);
            return Ok(Route::Pass);
        }
        Ok(Route::Pass)
    }
}

export!(Plugin);
