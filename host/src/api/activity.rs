//! The activity log: who changed what, newest first.

use axum::Json;
use axum::extract::{Query, State};
use comfyhost_store::Activity;
use serde::Deserialize;

use super::ApiError;
use super::routes::Routes;
use crate::state::AppState;

pub fn routes() -> Routes<AppState> {
    Routes::new().get("/activity", list)
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    200
}

async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Activity>>, ApiError> {
    s.store
        .recent_activity(q.limit.min(2000))
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}
