//! Shadow mode on live submissions: after the active chains answered a `POST /prompt`, each
//! shadow plugin of `queue-router` / `prompt-transform` (see
//! `comfyhost_runtime::registry::ShadowInfo`) is called on the same submission in a spawned
//! task, off the request path; what it would have done is recorded next to what the active
//! chain did (store table `shadow_decisions`, a bounded ring per plugin) and never applied. A
//! shadow fault is recorded as a fault; nothing of it reaches the prompt.
//!
//! At most [`MAX_IN_FLIGHT`] submissions are being shadowed at once; beyond that a submission
//! is not shadowed (counted in [`skipped`]), so a slow shadow cannot pile up work.

mod compare;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use comfyhost_runtime::HookKind;
use comfyhost_runtime::hooks::workflow_to_wit;
use comfyhost_runtime::registry::PluginRegistry;
use comfyhost_runtime::types::{BackendStatus, Route, Submission};
use comfyhost_store::ShadowRow;
use serde_json::Value;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// Submissions shadowed at the same time, at most.
pub const MAX_IN_FLIGHT: usize = 4;

static PERMITS: OnceLock<std::sync::Arc<Semaphore>> = OnceLock::new();
static SKIPPED: AtomicU64 = AtomicU64::new(0);

/// Submissions not shadowed because [`MAX_IN_FLIGHT`] were already running.
pub fn skipped() -> u64 {
    SKIPPED.load(Ordering::Relaxed)
}

/// Hands a submission the active chains have answered to the shadow plugins. `submission` is
/// what the routers saw (after the active rewrites), `original` the workflow before them
/// (`None`: nothing rewrote it), `route` the active decision. Returns at once.
pub fn observe(
    plugins: &PluginRegistry,
    submission: &Submission,
    original: Option<&Value>,
    route: &Route,
    backends: impl FnOnce() -> Vec<BackendStatus>,
) {
    let routers = plugins.has_shadow(HookKind::QueueRouter);
    let transforms = plugins.has_shadow(HookKind::PromptTransform);
    // What the active chains could not be handed is not shadowed either.
    if (!routers && !transforms) || workflow_to_wit(&submission.workflow).is_err() {
        return;
    }
    let permits = PERMITS.get_or_init(|| std::sync::Arc::new(Semaphore::new(MAX_IN_FLIGHT)));
    let Ok(permit) = permits.clone().try_acquire_owned() else {
        SKIPPED.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(prompt_id = %submission.prompt_id, "shadow calls busy; submission not shadowed");
        return;
    };
    let plugins = plugins.clone();
    let routed = submission.clone();
    let original = original.cloned();
    let route = route.clone();
    let backends = if routers { backends() } else { Vec::new() };
    let span = tracing::info_span!("shadow", prompt_id = %submission.prompt_id);
    tokio::spawn(
        async move {
            let _permit = permit;
            if transforms {
                let mut before = routed.clone();
                if let Some(w) = &original {
                    before.workflow = w.clone();
                }
                for call in plugins.shadow_transform(&before).await {
                    let row = compare::transform_row(&before, &routed.workflow, &call);
                    record(&plugins, row);
                }
            }
            if routers {
                for call in plugins.shadow_route(&routed, &backends).await {
                    record(
                        &plugins,
                        compare::route_row(&routed.prompt_id, &route, &call),
                    );
                }
            }
        }
        .instrument(span),
    );
}

fn record(plugins: &PluginRegistry, row: ShadowRow) {
    if let Err(e) = plugins.store().record_shadow(&row) {
        tracing::warn!(plugin = %row.plugin_id, error = %e, "cannot record a shadow decision");
    }
}
