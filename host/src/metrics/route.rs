//! `GET <prefix>/metrics`, the proxy timing layer, and the tasks that count jobs and ComfyUI
//! starts from the host's event streams.

use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::live::{LiveSources, render};
use crate::users::Identity;

/// Who may scrape: admins (token or session), or whoever holds the metrics token.
#[derive(Clone)]
pub struct MetricsRoute {
    pub sources: LiveSources,
    pub identity: Identity,
    /// SHA-256 of `--metrics-token`.
    pub token_sha256: Option<[u8; 32]>,
}

impl MetricsRoute {
    pub fn new(sources: LiveSources, identity: Identity, token: Option<&str>) -> Self {
        Self {
            sources,
            identity,
            token_sha256: token
                .filter(|t| !t.is_empty())
                .map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    fn allowed(&self, headers: &axum::http::HeaderMap) -> Result<(), StatusCode> {
        let presented = crate::users::bearer_token(headers);
        if let (Some(t), Some(want)) = (presented, &self.token_sha256) {
            let got: [u8; 32] = Sha256::digest(t.as_bytes()).into();
            if got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0 {
                return Ok(());
            }
        }
        match self.identity.credential(headers) {
            Some(c) if c.user().is_admin => Ok(()),
            Some(_) => Err(StatusCode::FORBIDDEN),
            None => Err(StatusCode::UNAUTHORIZED),
        }
    }
}

/// The `/metrics` route under `prefix`.
pub fn router(prefix: &str, state: MetricsRoute) -> Router {
    Router::new()
        .route(&format!("{prefix}/metrics"), get(scrape))
        .with_state(state)
}

async fn scrape(State(m): State<MetricsRoute>, headers: axum::http::HeaderMap) -> Response {
    if let Err(status) = m.allowed(&headers) {
        let message = if status == StatusCode::FORBIDDEN {
            "admins only (or the metrics token)"
        } else {
            "send Authorization: Bearer <admin token or metrics token>"
        };
        return (
            status,
            axum::Json(serde_json::json!({"error": {"type": "unauthorized", "message": message}})),
        )
            .into_response();
    }
    let sources = m.sources.clone();
    match tokio::task::spawn_blocking(move || render(&sources)).await {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "metrics encoding failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "metrics task failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Middleware around ComfyUI's endpoints: counts requests and times them to the response head.
pub async fn track_proxy(req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let resp = next.run(req).await;
    super::proxy_request(&method, resp.status().as_u16(), started.elapsed());
    resp
}

/// Counts job ends (local and remote, from the tracker's broadcast) and ComfyUI starts.
pub fn spawn_event_counters(
    jobs: &crate::jobs::JobTracker,
    store: comfyhost_store::Store,
    supervisor: &comfyhost_supervisor::Supervisor,
    cancel: CancellationToken,
) {
    let mut finished = jobs.subscribe_finished();
    let c = cancel.clone();
    tokio::spawn(async move {
        loop {
            let job = tokio::select! {
                _ = c.cancelled() => return,
                r = finished.recv() => r,
            };
            match job {
                Ok(job) => {
                    let route = store
                        .job(&job.prompt_id)
                        .ok()
                        .flatten()
                        .and_then(|j| j.route)
                        .unwrap_or_else(|| "local".into());
                    super::job_ended(&route, &job.status);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "metrics missed job ends");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let mut events = supervisor.subscribe();
    // The first ComfyUI may already run (it starts before this task).
    let initial = supervisor.status().pid;
    if initial.is_some() {
        super::comfyui_spawned();
    }
    tokio::spawn(async move {
        loop {
            let ev = tokio::select! {
                _ = cancel.cancelled() => return,
                r = events.recv() => r,
            };
            match ev {
                Ok(comfyhost_supervisor::SupervisorEvent::Spawned { pid, .. })
                    if Some(pid) != initial =>
                {
                    super::comfyui_spawned();
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}
