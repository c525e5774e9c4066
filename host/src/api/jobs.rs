//! Jobs: what was submitted, where it ran, how it ended; an admin cancels any job in flight
//! (`POST /jobs/{prompt_id}/cancel`: local ones are deleted from ComfyUI's queue or
//! interrupted, remote ones cancelled on their backend).

use axum::Json;
use axum::extract::{Path, Query, State};
use comfyhost_store::JobRecord;
use serde::Deserialize;

use super::ApiError;
use super::routes::Routes;
use crate::state::AppState;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/jobs", list)
        .get("/jobs/events", events)
        .get("/jobs/{prompt_id}", one)
        .post("/jobs/{prompt_id}/cancel", cancel)
}

async fn cancel(
    State(s): State<AppState>,
    headers: axum::http::HeaderMap,
    Path(prompt_id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let done = if s.remote.cancel(&prompt_id).await {
        "cancelled on its backend"
    } else {
        match s.jobs.cancel_local(&prompt_id).await {
            Ok(Some(done)) => done,
            Ok(None) => {
                return Err(ApiError::Conflict(format!(
                    "job {prompt_id} is not queued or running (it has ended, or is not this host's)"
                )));
            }
            Err(e) => {
                return Err(ApiError::Internal(format!(
                    "ComfyUI did not take the cancellation of {prompt_id}: {e:#}"
                )));
            }
        }
    };
    s.activity(
        &s.actor(&headers),
        "job.cancel",
        &prompt_id,
        serde_json::json!({ "done": done }),
    );
    Ok(Json(
        serde_json::json!({ "prompt_id": prompt_id, "done": done }),
    ))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    100
}

async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<JobRecord>>, ApiError> {
    s.jobs
        .recent(q.limit.min(1000))
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

async fn one(
    State(s): State<AppState>,
    Path(prompt_id): Path<String>,
) -> Result<Json<JobRecord>, ApiError> {
    s.jobs
        .job(&prompt_id)
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no job {prompt_id}")))
}

/// Every job's end as a server-sent event (`event: job`), for live dashboards.
async fn events(
    State(s): State<AppState>,
) -> axum::response::sse::Sse<
    impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio_stream::StreamExt;
    let stream = tokio_stream::wrappers::BroadcastStream::new(s.jobs.subscribe_finished())
        .filter_map(|j| {
            let j = j.ok()?;
            Event::default()
                .event("job")
                .json_data(serde_json::json!({
                    "prompt_id": j.prompt_id,
                    "user_id": j.user_id,
                    "status": j.status,
                    "outputs": j.outputs.len(),
                }))
                .ok()
        })
        .map(Ok);
    Sse::new(stream).keep_alive(KeepAlive::default())
}
