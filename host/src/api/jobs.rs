//! Jobs: what was submitted, where it ran, how it ended.

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
