//! The `POST /prompt` interception point: runs the plugin chains (prompt-transform, then
//! queue-router) on a submission before ComfyUI sees it, and turns their answers into a
//! forwarded body or a ComfyUI-shaped error the frontend shows in its usual dialog.

use std::sync::Arc;

use bytes::Bytes;
use comfyhost_protocol::{ComfyErrorBody, PromptRequest};
use comfyhost_proxy::{PromptDecision, PromptInterceptor, PromptRequestContext};
use comfyhost_runtime::HookKind;
use comfyhost_runtime::registry::PluginRegistry;
use comfyhost_runtime::types::{Route, Submission};
use futures::future::BoxFuture;
use http::StatusCode;
use serde_json::Value;
use tracing::Instrument;

use crate::jobs::JobTracker;

/// Runs the plugin chains on every submitted prompt.
pub struct PluginInterceptor {
    plugins: PluginRegistry,
    jobs: JobTracker,
}

impl PluginInterceptor {
    pub fn new(plugins: PluginRegistry, jobs: JobTracker) -> Arc<Self> {
        Arc::new(Self { plugins, jobs })
    }

    async fn decide(&self, body: Bytes) -> PromptDecision {
        // Bodies ComfyUI would reject (bad JSON, no prompt) go to ComfyUI unchanged, so the
        // browser gets ComfyUI's own answer, byte for byte.
        let Ok(mut request) = PromptRequest::parse(&body) else {
            return PromptDecision::Forward(body);
        };
        // The host names the prompt (ComfyUI honours a client's `prompt_id`), so the job is
        // recorded before ComfyUI sees it and can never be silently lost.
        let prompt_id = request
            .prompt_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        request.prompt_id = Some(prompt_id.clone());
        let span = tracing::info_span!("prompt", prompt_id = %prompt_id);
        let client_id = request.client_id.clone();
        let decision = self.run_chains(request, &prompt_id).instrument(span).await;
        if let PromptDecision::Respond { body, .. } = &decision {
            self.jobs.refused(&prompt_id, client_id.as_deref(), body);
        }
        decision
    }

    async fn run_chains(&self, mut request: PromptRequest, prompt_id: &str) -> PromptDecision {
        let mut submission = Submission {
            prompt_id: prompt_id.to_string(),
            client_id: request.client_id.clone(),
            user: None,
            workflow: Value::Object(std::mem::take(&mut request.prompt)),
            flags: request.comfyhost_flags(),
        };
        // Empty chains are skipped: no copy of the workflow, no allocation.
        if self.plugins.has_enabled(HookKind::PromptTransform) {
            match self.plugins.transform(&submission).await {
                Ok((workflow, applied)) => {
                    if !applied.is_empty() {
                        tracing::info!(plugins = ?applied, "workflow rewritten by plugins");
                    }
                    submission.workflow = workflow;
                }
                Err(e) => return plugin_failure(&e.to_string()),
            }
        }
        let route = if self.plugins.has_enabled(HookKind::QueueRouter) {
            match self.plugins.route(&submission, &[]).await {
                Ok(decision) => {
                    tracing::info!(route = ?decision.route, by = ?decision.decided_by, "routed");
                    decision.route
                }
                Err(e) => return plugin_failure(&e.to_string()),
            }
        } else {
            Route::Local
        };
        match route {
            Route::Local | Route::Pass => {
                let Value::Object(prompt) = submission.workflow else {
                    return plugin_failure("a plugin returned a workflow that is not an object");
                };
                request.prompt = prompt;
                self.jobs.submitted(
                    prompt_id,
                    request.client_id.as_deref(),
                    "local",
                    &Value::Object(request.prompt.clone()),
                );
                PromptDecision::Forward(Bytes::from(request.to_body()))
            }
            Route::Reject(reason) => respond(
                StatusCode::BAD_REQUEST,
                ComfyErrorBody::new("comfyhost_rejected", reason.clone(), reason),
            ),
            Route::Backend(name) | Route::Serverless(name) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                ComfyErrorBody::new(
                    "comfyhost_route_unavailable",
                    format!("The prompt was routed to '{name}', which this host does not have"),
                    "No remote backends or serverless endpoints are configured on this host.",
                )
                .with_extra("route", Value::String(name)),
            ),
        }
    }
}

fn respond(status: StatusCode, body: ComfyErrorBody) -> PromptDecision {
    PromptDecision::respond(status, serde_json::to_value(body).unwrap_or_default())
}

/// A fail-closed plugin failed: the prompt is not queued and the user is told why.
fn plugin_failure(detail: &str) -> PromptDecision {
    tracing::warn!(
        error = detail,
        "plugin chain failed; prompt refused (fail-closed)"
    );
    respond(
        StatusCode::SERVICE_UNAVAILABLE,
        ComfyErrorBody::new(
            "comfyhost_plugin_failed",
            "A host plugin failed while handling this prompt; it was not queued",
            detail,
        ),
    )
}

impl PromptInterceptor for PluginInterceptor {
    fn intercept<'a>(
        &'a self,
        _ctx: &'a PromptRequestContext,
        body: Bytes,
    ) -> BoxFuture<'a, PromptDecision> {
        Box::pin(self.decide(body))
    }
}
