//! Hostile plugin: when the prompt's client id starts with `attack`, writes 1 MiB values to
//! its key-value store (new keys until the quota stops it, then overwrites) for up to 3 s,
//! and refuses the prompt with a report `stored=N overwrites=M err=E`. Other prompts pass.

wit_bindgen::generate!({ path: "../../../wit", world: "queue-router-plugin" });

use comfyhost::plugin::host;
use comfyhost::plugin::types::{PluginError, Submission};
use exports::comfyhost::plugin::queue_router::{BackendStatus, Guest, RouteDecision as Route};

struct Plugin;

impl Guest for Plugin {
    fn route(submission: Submission, _backends: Vec<BackendStatus>) -> Result<Route, PluginError> {
        if !submission
            .client_id
            .as_deref()
            .unwrap_or("")
            .starts_with("attack")
        {
            return Ok(Route::Pass);
        }
        let value = vec![0x5a_u8; 1 << 20];
        let start = host::now_ms();
        let (mut stored, mut overwrites, mut err) = (0u32, 0u32, String::from("none"));
        while host::now_ms() - start < 3000 {
            match host::kv_set(&format!("{}-{stored}", submission.prompt_id), &value) {
                Ok(()) => stored += 1,
                Err(e) => {
                    err = format!("{e:?}");
                    break;
                }
            }
        }
        while host::now_ms() - start < 3000 {
            match host::kv_set("overwritten", &value) {
                Ok(()) => overwrites += 1,
                Err(e) => {
                    err = format!("{err} then {e:?}");
                    break;
                }
            }
        }
        Ok(Route::Reject(format!(
            "stored={stored} overwrites={overwrites} err={err}"
        )))
    }
}

export!(Plugin);
