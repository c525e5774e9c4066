//! Workshop users (admin only): create (the token is shown once), list, delete.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::routes::Routes;
use crate::state::AppState;
use crate::users::UserError;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/users", list)
        .post("/users", create)
        .delete("/users/{id}", remove)
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::InvalidId | UserError::Reserved => ApiError::BadRequest(e.to_string()),
            UserError::Exists(_) => ApiError::Conflict(e.to_string()),
            UserError::Store(_) => ApiError::Internal(e.to_string()),
        }
    }
}

#[derive(Deserialize)]
struct NewUser {
    id: String,
    #[serde(default)]
    is_admin: bool,
}

async fn create(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(u): Json<NewUser>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let token = s.identity.create(&u.id, u.is_admin)?;
    s.activity(
        &s.actor(&headers),
        "user.create",
        &u.id,
        json!({"is_admin": u.is_admin}),
    );
    tracing::info!(user = %u.id, is_admin = u.is_admin, "user created");
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": u.id, "is_admin": u.is_admin, "token": token})),
    ))
}

async fn list(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(json!(s.identity.list()?)))
}

async fn remove(State(s): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if s.identity.delete(&id)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("no user {id:?}")))
    }
}
