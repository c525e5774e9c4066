//! Remote backends: health, queue depth and the last error of each.

use axum::Json;
use axum::extract::State;

use super::routes::Routes;
use crate::backends::pool::BackendHealth;
use crate::state::AppState;

pub fn routes() -> Routes<AppState> {
    Routes::new().get("/backends", list)
}

async fn list(State(s): State<AppState>) -> Json<Vec<BackendHealth>> {
    Json(s.remote.pool().health())
}
