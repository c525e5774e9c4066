//! A normal queue router: reads its config (`{"backend": "<name>"}`), counts calls in its
//! key-value namespace, logs, and routes to the configured backend when it is healthy
//! (otherwise locally).

wit_bindgen::generate!({ path: "../../../wit", world: "queue-router-plugin" });

use comfyhost::plugin::types::{PluginError, Submission};
use exports::comfyhost::plugin::queue_router::{BackendStatus, Guest, RouteDecision as Route};

struct Plugin;

use comfyhost::plugin::host::{self, LogLevel};

impl Guest for Plugin {
    fn route(submission: Submission, backends: Vec<BackendStatus>) -> Result<Route, PluginError> {
        let config: serde_json::Value = serde_json::from_str(&host::config())
            .map_err(|e| PluginError::Config(e.to_string()))?;
        let wanted = config
            .get("backend")
            .and_then(|v| v.as_str())
            .ok_or_else(|| PluginError::Config("missing string field `backend`".into()))?;
        let calls = match host::kv_get("calls") {
            Ok(Some(bytes)) => bytes
                .try_into()
                .map(u64::from_le_bytes)
                .map_err(|_| PluginError::Internal("corrupt counter".into()))?,
            Ok(None) => 0,
            Err(e) => return Err(PluginError::Internal(format!("kv-get: {e:?}"))),
        } + 1;
        host::kv_set("calls", &calls.to_le_bytes())
            .map_err(|e| PluginError::Internal(format!("kv-set: {e:?}")))?;
        host::log(
            LogLevel::Info,
            &format!(
                "prompt {} ({} nodes), call #{calls}",
                submission.prompt_id,
                submission.workflow.nodes.len()
            ),
        );
        let healthy = backends.iter().any(|b| b.name == wanted && b.healthy);
        Ok(if healthy {
            Route::Backend(wanted.to_string())
        } else {
            Route::Local
        })
    }
}

export!(Plugin);
