//! The `POST /prompt` interception point: identifies the user, runs the plugin chains
//! (prompt-transform, then queue-router) on a submission before any queue sees it, and carries
//! out the route: the local ComfyUI (with a fair queue number), a remote ComfyUI or a
//! serverless endpoint (through the [`RemoteRunner`]), or a ComfyUI-shaped refusal the
//! frontend shows in its usual dialog.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use comfyhost_protocol::{ComfyErrorBody, PromptRequest};
use comfyhost_proxy::{PromptDecision, PromptInterceptor, PromptRequestContext};
use comfyhost_runtime::hooks::{WorkflowError, workflow_to_wit};
use comfyhost_runtime::registry::{ChainError, PluginRegistry};
use comfyhost_runtime::types::{Route, Submission, User};
use comfyhost_runtime::{CallErrorKind, HookKind};
use futures::future::BoxFuture;
use http::StatusCode;
use serde_json::{Value, json};
use tracing::Instrument;

use crate::fair_queue::FairQueue;
use crate::jobs::{JobTracker, LocalSubmission};
use crate::models::ModelsService;
use crate::overlay::OverlayDriver;
use crate::remote::{BackendKind, RemoteJob, RemoteRunner, Submitted};
use crate::users::Identity;

/// Runs the plugin chains on every submitted prompt and executes the route.
pub struct PluginInterceptor {
    plugins: PluginRegistry,
    jobs: JobTracker,
    identity: Identity,
    fair: FairQueue,
    overlay: OverlayDriver,
    /// Answers ComfyUI's "model not in list" refusals with the preset that provides it.
    models: Arc<ModelsService>,
    /// Set once the proxy exists (the runner sends WebSocket events through it).
    remote: OnceLock<RemoteRunner>,
    /// Workshop ownership rules (prompt ids unique per host).
    isolation: OnceLock<crate::isolation::Isolation>,
    /// Refuses quarantined workflows and hears of broken forwards.
    poison: OnceLock<crate::poison::PoisonGuard>,
    /// Per-user limits (queued, per minute, nodes).
    limits: OnceLock<crate::user_limits::UserLimits>,
}

/// What the chains decided, and whether the host refused the prompt itself.
struct Outcome {
    decision: PromptDecision,
    refused_by_host: bool,
}

impl Outcome {
    fn refused(decision: PromptDecision) -> Self {
        Self {
            decision,
            refused_by_host: true,
        }
    }
    fn done(decision: PromptDecision) -> Self {
        Self {
            decision,
            refused_by_host: false,
        }
    }
}

impl PluginInterceptor {
    pub fn new(
        plugins: PluginRegistry,
        jobs: JobTracker,
        identity: Identity,
        fair: FairQueue,
        overlay: OverlayDriver,
        models: Arc<ModelsService>,
    ) -> Arc<Self> {
        Arc::new(Self {
            plugins,
            jobs,
            identity,
            fair,
            overlay,
            models,
            remote: OnceLock::new(),
            isolation: OnceLock::new(),
            poison: OnceLock::new(),
            limits: OnceLock::new(),
        })
    }

    /// Enables the poison-prompt guard (call once).
    pub fn set_poison(&self, guard: crate::poison::PoisonGuard) {
        let _ = self.poison.set(guard);
    }

    /// Enables per-user limits (call once).
    pub fn set_limits(&self, limits: crate::user_limits::UserLimits) {
        let _ = self.limits.set(limits);
    }

    /// Enables remote routes (call once, after the proxy is built).
    pub fn set_remote(&self, runner: RemoteRunner) {
        if self.remote.set(runner).is_err() {
            tracing::warn!("remote runner set twice; keeping the first");
        }
    }

    /// Enables the workshop ownership rules (call once).
    pub fn set_isolation(&self, isolation: crate::isolation::Isolation) {
        if self.isolation.set(isolation).is_err() {
            tracing::warn!("isolation set twice; keeping the first");
        }
    }

    async fn decide(&self, ctx: &PromptRequestContext, body: Bytes) -> PromptDecision {
        // Bodies the host cannot read the way ComfyUI would (non-string ids, NaN, no prompt,
        // ...) are refused here in ComfyUI's shape: nothing reaches ComfyUI past the plugins.
        let mut request = match PromptRequest::parse(&body) {
            Ok(r) => r,
            Err(e) => {
                tracing::info!(error = %e, "unreadable prompt body refused");
                return respond(
                    StatusCode::BAD_REQUEST,
                    crate::isolation::body_check::refusal(&e),
                );
            }
        };
        // An id ComfyUI would not accept is refused before anything records or follows it.
        if let Some(Err(refusal)) = request
            .prompt_id
            .as_deref()
            .map(crate::prompt_id_check::check)
        {
            return respond(StatusCode::BAD_REQUEST, *refusal);
        }
        if let (Some(client_id), Some(iso)) = (request.client_id.as_deref(), self.isolation.get()) {
            let caller =
                crate::isolation::Caller::from_user(self.identity.identify(&ctx.headers).as_ref());
            if !iso.claim_client_id(client_id, &caller) {
                tracing::info!(client_id, "client id of another user refused");
                return respond(
                    StatusCode::BAD_REQUEST,
                    ComfyErrorBody::new(
                        "invalid_prompt",
                        "This client_id belongs to another user's page",
                        "Reload the page: it gets a client id of its own.",
                    ),
                );
            }
        }
        if let (Some(id), Some(iso)) = (request.prompt_id.as_deref(), self.isolation.get())
            && iso.scope(&ctx.headers).taken_by_other(id)
        {
            tracing::info!(prompt_id = id, "prompt id of another user's prompt refused");
            return respond(
                StatusCode::BAD_REQUEST,
                ComfyErrorBody::new(
                    "invalid_prompt",
                    "This prompt_id is already used by another prompt on this host",
                    "Prompt ids are unique per host: leave prompt_id out and the host picks one.",
                ),
            );
        }
        // The host names the prompt (ComfyUI honours a client's `prompt_id`), so the job is
        // recorded before any backend sees it and can never be silently lost.
        let prompt_id = request
            .prompt_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        request.prompt_id = Some(prompt_id.clone());
        let user = self.identity.identify(&ctx.headers);
        let span = tracing::info_span!("prompt", prompt_id = %prompt_id,
            user = user.as_ref().map_or("-", |u| u.id.as_str()));
        let client_id = request.client_id.clone();
        let user_id = user.as_ref().map(|u| u.id.clone());
        let mut applied = Vec::new();
        let outcome = self
            .run_chains(request, &prompt_id, user, &mut applied)
            .instrument(span)
            .await;
        if outcome.refused_by_host
            && let PromptDecision::Respond { body, .. } = &outcome.decision
        {
            self.jobs
                .refused(&prompt_id, client_id.as_deref(), user_id.as_deref(), body);
        }
        // What prompt-transform plugins changed, kept in the job record (the WIT's promise).
        if !applied.is_empty()
            && let Ok(notes) = serde_json::to_value(&applied)
        {
            self.jobs.transform_notes(&prompt_id, &notes);
        }
        outcome.decision
    }

    async fn run_chains(
        &self,
        mut request: PromptRequest,
        prompt_id: &str,
        user: Option<User>,
        applied_transforms: &mut Vec<comfyhost_runtime::registry::AppliedTransform>,
    ) -> Outcome {
        let mut submission = Submission {
            prompt_id: prompt_id.to_string(),
            client_id: request.client_id.clone(),
            user: user.clone(),
            workflow: Value::Object(std::mem::take(&mut request.prompt)),
            flags: request.comfyhost_flags(),
        };
        // Per-user limits, before any plugin spends time on it (admins are not limited).
        if let Some(limits) = self.limits.get()
            && !user.as_ref().is_some_and(|u| u.is_admin)
        {
            let lane = match (&user, &request.client_id) {
                (Some(u), _) => u.id.clone(),
                (None, Some(c)) => format!("client:{c}"),
                (None, None) => "anonymous".into(),
            };
            let nodes = submission.workflow.as_object().map_or(0, |m| m.len());
            if let Err(r) = limits.admit(&lane, nodes, self.fair.pending_in(&lane)) {
                return Outcome::refused(respond(r.status, *r.body));
            }
        }
        let mut original = None;
        let transform = self.plugins.has_chain(HookKind::PromptTransform);
        let router = self.plugins.has_chain(HookKind::QueueRouter);
        // What plugins cannot even be handed (not an API-format workflow) is refused here,
        // before any plugin runs, the way ComfyUI refuses it: it never counts against a plugin.
        if (transform || router)
            && let Err(e) = workflow_to_wit(&submission.workflow)
        {
            return Outcome::refused(not_a_workflow(&e));
        }
        // Empty chains are skipped: no copy of the workflow, no allocation.
        if transform {
            match self.plugins.transform(&submission).await {
                Ok((workflow, applied)) => {
                    if !applied.is_empty() {
                        tracing::info!(plugins = ?applied, "workflow rewritten by plugins");
                        original = Some(std::mem::replace(&mut submission.workflow, workflow));
                        *applied_transforms = applied;
                    }
                }
                Err(e) => return Outcome::refused(chain_refusal(&e)),
            }
        }
        let route = if router {
            let backends = self
                .remote
                .get()
                .map(|r| r.pool().statuses())
                .unwrap_or_default();
            match self.plugins.route(&submission, &backends).await {
                Ok(decision) => {
                    tracing::info!(route = ?decision.route, by = ?decision.decided_by, "routed");
                    decision.route
                }
                Err(e) => return Outcome::refused(chain_refusal(&e)),
            }
        } else {
            Route::Local
        };
        crate::shadow::observe(
            &self.plugins,
            &submission,
            original.as_ref(),
            &route,
            || {
                self.remote
                    .get()
                    .map(|r| r.pool().statuses())
                    .unwrap_or_default()
            },
        );
        let Value::Object(prompt) = submission.workflow else {
            return Outcome::refused(plugin_failure(
                "a plugin returned a workflow that is not an object",
            ));
        };
        request.prompt = prompt;
        let lane = match (&user, &request.client_id) {
            (Some(u), _) => u.id.clone(),
            (None, Some(c)) => format!("client:{c}"),
            (None, None) => "anonymous".into(),
        };
        // Admins may still jump the queue with ComfyUI's own `front`/`number`; nobody else.
        let admin_override = user.as_ref().is_some_and(|u| u.is_admin)
            && (request.rest.contains_key("front") || request.rest.contains_key("number"));
        let number = self.fair.assign(&lane, prompt_id);
        match route {
            Route::Local | Route::Pass => {
                if !admin_override {
                    request.rest.remove("front");
                    request.rest.insert("number".into(), json!(number));
                }
                let workflow = Value::Object(request.prompt.clone());
                if let Some(Err(refusal)) = self.poison.get().map(|p| p.check(&workflow)) {
                    return Outcome::refused(respond(StatusCode::BAD_REQUEST, *refusal));
                }
                self.jobs.submitted(LocalSubmission {
                    prompt_id,
                    client_id: request.client_id.as_deref(),
                    user_id: user.as_ref().map(|u| u.id.as_str()),
                    workflow: &workflow,
                    original_workflow: original.as_ref(),
                });
                self.overlay.queued(
                    prompt_id,
                    request.client_id.as_deref(),
                    user.as_ref(),
                    "local",
                    &workflow,
                );
                Outcome::done(PromptDecision::Forward(Bytes::from(request.to_body())))
            }
            Route::Reject(reason) => Outcome::refused(respond(
                StatusCode::BAD_REQUEST,
                ComfyErrorBody::new("comfyhost_rejected", reason.clone(), reason),
            )),
            Route::Backend(name) => {
                self.run_remote(request, prompt_id, user, number, BackendKind::Comfyui, name)
                    .await
            }
            Route::Serverless(name) => {
                self.run_remote(
                    request,
                    prompt_id,
                    user,
                    number,
                    BackendKind::Serverless,
                    name,
                )
                .await
            }
        }
    }

    async fn run_remote(
        &self,
        request: PromptRequest,
        prompt_id: &str,
        user: Option<User>,
        number: i64,
        kind: BackendKind,
        name: String,
    ) -> Outcome {
        let Some(runner) = self.remote.get().filter(|r| !r.pool().is_empty()) else {
            return Outcome::refused(respond(
                StatusCode::SERVICE_UNAVAILABLE,
                ComfyErrorBody::new(
                    "comfyhost_route_unavailable",
                    format!("The prompt was routed to '{name}', which this host does not have"),
                    "No remote backends or serverless endpoints are configured on this host.",
                )
                .with_extra("route", Value::String(name)),
            ));
        };
        let client_id = request.client_id.clone();
        let workflow = Value::Object(request.prompt.clone());
        let body: Value = serde_json::from_slice(&request.to_body()).unwrap_or(Value::Null);
        // Before submitting: a fast backend's first events may beat the submission's answer.
        self.overlay.queued(
            prompt_id,
            client_id.as_deref(),
            user.as_ref(),
            &name,
            &workflow,
        );
        let job = RemoteJob {
            prompt_id: prompt_id.to_string(),
            client_id,
            user_id: user.map(|u| u.id),
            number,
            request: body,
        };
        match runner.submit(job, kind, &name).await {
            Submitted::Accepted => Outcome::done(PromptDecision::respond(
                StatusCode::OK,
                json!({"prompt_id": prompt_id, "number": number, "node_errors": {}}),
            )),
            // The runner recorded the job's end itself.
            Submitted::Refused { status, body } => {
                self.fair.done(prompt_id);
                self.overlay
                    .host_rejected(prompt_id, &crate::jobs::rejection_message(&body));
                Outcome::done(PromptDecision::respond(status, body))
            }
        }
    }
}

/// Longest the host spends finding presets for a refused prompt before answering anyway.
const RESOLVE_ON_REFUSAL: std::time::Duration = std::time::Duration::from_secs(3);

impl PluginInterceptor {
    /// ComfyUI refused a forwarded prompt. The job ends now (not "lost" later); when the refusal
    /// names model files that are not installed (`value_not_in_list` on a loader input), each
    /// such error's `details` also says which preset provides the file, and the answer carries
    /// the whole resolution under `comfyhost` (ComfyUI's fields are otherwise unchanged).
    async fn on_refused(
        &self,
        forwarded: &Bytes,
        status: StatusCode,
        answer: &Bytes,
    ) -> Option<Bytes> {
        let request = PromptRequest::parse(forwarded).ok()?;
        let prompt_id = request.prompt_id.clone()?;
        let mut body: Value = serde_json::from_slice(answer)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(answer).into_owned()));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            self.jobs.unreachable(&prompt_id, &body);
            return None;
        }
        // Ends the job and the page's banner with ComfyUI's reason.
        self.jobs.rejected_by_comfyui(&prompt_id, &body);
        if !body.to_string().contains("value_not_in_list") {
            return None;
        }
        let workflow = Value::Object(request.prompt);
        let resolution = match tokio::time::timeout(
            RESOLVE_ON_REFUSAL,
            self.models.resolve(&workflow, Some(&body)),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(prompt_id, error = %e, "no preset answer for a refused prompt");
                return None;
            }
            Err(_) => {
                tracing::warn!(
                    prompt_id,
                    "preset resolution took too long; ComfyUI's answer passes unchanged"
                );
                return None;
            }
        };
        if resolution.rejected.is_empty() && resolution.missing.is_empty() {
            return None;
        }
        let note = format!("comfyhost: {}", resolution.summary);
        if let Some(nodes) = body.get_mut("node_errors").and_then(Value::as_object_mut) {
            for errors in nodes
                .values_mut()
                .filter_map(|n| n.get_mut("errors").and_then(Value::as_array_mut))
            {
                for e in errors
                    .iter_mut()
                    .filter(|e| e["type"] == "value_not_in_list")
                {
                    let details = e["details"].as_str().unwrap_or_default();
                    e["details"] = Value::String(format!("{details}\n{note}"));
                }
            }
        }
        if let Some(map) = body.as_object_mut() {
            map.insert(
                "comfyhost".into(),
                serde_json::to_value(&resolution).unwrap_or(Value::Null),
            );
        }
        tracing::info!(prompt_id, summary = %resolution.summary, "refused prompt answered with presets");
        Some(Bytes::from(body.to_string()))
    }
}

fn respond(status: StatusCode, body: ComfyErrorBody) -> PromptDecision {
    PromptDecision::respond(status, serde_json::to_value(body).unwrap_or_default())
}

/// A submission the host cannot hand to plugins: ComfyUI's own `invalid_prompt` answer (the
/// same words ComfyUI uses for a node without `class_type`).
fn not_a_workflow(e: &WorkflowError) -> PromptDecision {
    tracing::info!(error = %e, "submission is not an API-format workflow; refused before any plugin");
    let body = match e {
        WorkflowError::MissingClassType(id) => ComfyErrorBody::new(
            "invalid_prompt",
            "Cannot execute because a node is missing the class_type property.",
            format!("Node ID '#{id}'"),
        ),
        other => ComfyErrorBody::new(
            "invalid_prompt",
            "Cannot execute because the prompt is not a valid API-format workflow.",
            other.to_string(),
        ),
    };
    respond(StatusCode::BAD_REQUEST, body)
}

/// A fail-closed chain stopped: the plugin's own refusal (400, its words), a fail-closed
/// plugin that is not running (503), or a plugin fault (503).
fn chain_refusal(e: &ChainError) -> PromptDecision {
    let plugin = e.0.plugin_id.as_str();
    match &e.0.kind {
        CallErrorKind::Plugin(reason) => {
            tracing::info!(plugin, reason = %reason, "prompt refused by a plugin");
            respond(
                StatusCode::BAD_REQUEST,
                ComfyErrorBody::new(
                    "comfyhost_rejected",
                    format!("The host plugin {plugin} refused this prompt"),
                    reason.clone(),
                )
                .with_extra("plugin", Value::String(plugin.to_owned())),
            )
        }
        CallErrorKind::Unavailable(detail) => {
            tracing::warn!(plugin, detail = %detail, "prompt refused: fail-closed plugin not running");
            respond(
                StatusCode::SERVICE_UNAVAILABLE,
                ComfyErrorBody::new(
                    "comfyhost_plugin_unavailable",
                    format!(
                        "Prompts are paused on this host: the required plugin {plugin} is switched off. Ask the workshop admin."
                    ),
                    detail.clone(),
                )
                .with_extra("plugin", Value::String(plugin.to_owned())),
            )
        }
        _ => plugin_failure(&e.to_string()),
    }
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
        ctx: &'a PromptRequestContext,
        body: Bytes,
    ) -> BoxFuture<'a, PromptDecision> {
        Box::pin(self.decide(ctx, body))
    }

    fn refused<'a>(
        &'a self,
        _ctx: &'a PromptRequestContext,
        forwarded: &'a Bytes,
        status: StatusCode,
        answer: &'a Bytes,
    ) -> BoxFuture<'a, Option<Bytes>> {
        Box::pin(self.on_refused(forwarded, status, answer))
    }

    fn broke<'a>(
        &'a self,
        _ctx: &'a PromptRequestContext,
        forwarded: &'a Bytes,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let (Some(poison), Ok(request)) =
                (self.poison.get(), PromptRequest::parse(forwarded))
                && let Some(id) = request.prompt_id.as_deref()
            {
                poison.forward_broke(id);
            }
        })
    }
}
