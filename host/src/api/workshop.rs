//! Workshop settings (admin only): `GET /workshop` answers what is stored and what is in
//! effect; `PUT /workshop` changes `sign_in_required` and/or `isolation` (`null` restores the
//! default: sign-in required as soon as users exist, isolation on).

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Map, Value, json};

use super::ApiError;
use super::routes::Routes;
use crate::isolation::{Isolation, WorkshopSettings};
use crate::state::AppState;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/workshop", get_settings)
        .put("/workshop", put_settings)
}

fn answer(s: &AppState) -> Json<Value> {
    let stored = WorkshopSettings::load(&s.store);
    let effective = Isolation::new(s.identity.clone(), s.store.clone()).settings();
    Json(json!({"stored": stored, "effective": effective}))
}

async fn get_settings(State(s): State<AppState>) -> Json<Value> {
    answer(&s)
}

async fn put_settings(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(change): Json<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    // Fields left out keep their stored value; `null` restores the default.
    let mut merged = serde_json::to_value(WorkshopSettings::load(&s.store))
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    for (k, v) in change {
        merged.insert(k, v);
    }
    let next: WorkshopSettings = serde_json::from_value(Value::Object(merged))
        .map_err(|e| ApiError::BadRequest(format!("workshop settings: {e}")))?;
    next.save(&s.store)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    s.activity(
        &s.actor(&headers),
        "workshop.settings",
        "",
        serde_json::to_value(&next).unwrap_or_default(),
    );
    tracing::info!(settings = ?next, "workshop settings changed");
    Ok(answer(&s))
}
