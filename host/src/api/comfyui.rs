//! ComfyUI lifecycle over the API: state, start/stop/restart (answered at once with an
//! operation id; progress arrives as events), logs, and a server-sent event stream.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::routes::Routes;
use crate::state::AppState;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/comfyui", status)
        .post("/comfyui/start", start)
        .post("/comfyui/stop", stop)
        .post("/comfyui/restart", restart)
        .get("/comfyui/logs", logs)
        .get("/comfyui/events", events)
}

async fn status(State(s): State<AppState>) -> Json<comfyhost_supervisor::SupervisorStatus> {
    Json(s.supervisor.status())
}

fn accepted(op: comfyhost_supervisor::OpId) -> (StatusCode, Json<serde_json::Value>) {
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "op_id": op })),
    )
}

async fn start(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> (StatusCode, Json<serde_json::Value>) {
    s.activity(
        &s.actor(&headers),
        "comfyui.start",
        "comfyui",
        serde_json::json!({}),
    );
    accepted(s.supervisor.start().await)
}

async fn stop(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> (StatusCode, Json<serde_json::Value>) {
    s.activity(
        &s.actor(&headers),
        "comfyui.stop",
        "comfyui",
        serde_json::json!({}),
    );
    accepted(s.supervisor.stop().await)
}

async fn restart(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> (StatusCode, Json<serde_json::Value>) {
    s.activity(
        &s.actor(&headers),
        "comfyui.restart",
        "comfyui",
        serde_json::json!({}),
    );
    accepted(s.supervisor.restart().await)
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    since: u64,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    500
}

async fn logs(
    State(s): State<AppState>,
    Query(q): Query<LogQuery>,
) -> Json<comfyhost_supervisor::LogPage> {
    Json(s.supervisor.logs(q.since, q.limit.min(5000)))
}

/// Supervisor events as SSE (`event: supervisor`), log lines as `event: log`.
async fn events(State(s): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let sup = BroadcastStream::new(s.supervisor.subscribe()).filter_map(|e| {
        e.ok()
            .and_then(|e| Event::default().event("supervisor").json_data(e).ok())
    });
    let logs = BroadcastStream::new(s.supervisor.subscribe_logs()).filter_map(|l| {
        l.ok()
            .and_then(|l| Event::default().event("log").json_data(l).ok())
    });
    Sse::new(sup.merge(logs).map(Ok)).keep_alive(KeepAlive::default())
}
