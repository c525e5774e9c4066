//! `queue-redirect`: the first-party queue router. Decides per submission whether a prompt
//! runs on the local ComfyUI, on the least busy healthy remote ComfyUI ("pool"), on a named
//! backend or serverless endpoint, or is refused with a reason, from ordered rules in its
//! config (by authenticated user, admin or not, workflow size, node types, or an explicit
//! opt-in flag in `extra_data.comfyhost`). Fail-closed: when no allowed route is available the
//! prompt is refused, never sent somewhere nobody allowed.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod rules;

use comfyhost_sdk::hooks::queue_router::{BackendStatus, RouteDecision};
use comfyhost_sdk::prelude::*;

struct QueueRedirect;

impl QueueRouter for QueueRedirect {
    fn route(
        submission: Submission,
        backends: Vec<BackendStatus>,
    ) -> Result<RouteDecision, PluginError> {
        let config: rules::Config = config()?;
        let facts = rules::Facts::of(&submission);
        let (decision, why) = rules::decide(&config, &facts, &backends);
        info!("prompt {}: {decision:?} ({why})", submission.prompt_id);
        Ok(decision)
    }
}

comfyhost_sdk::export_queue_router!(QueueRedirect);
