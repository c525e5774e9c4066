//! The plugin trust policy: mode (`any`, `signed`, `trusted`) and trusted signing keys with
//! names. Checked on every install (upload and drop-in); see `comfyhost_runtime::signing`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use comfyhost_runtime::signing::{TrustMode, parse_public_key};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::routes::Routes;
use crate::state::AppState;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/trust", policy)
        .put("/trust", set_mode)
        .post("/trust/keys", add_key)
        .delete("/trust/keys/{key_id}", remove_key)
}

fn store_err(e: comfyhost_store::StoreError) -> ApiError {
    ApiError::Internal(e.to_string())
}

async fn policy(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let policy = s.plugins.trust_policy()?;
    let keys = s.store.trust_keys().map_err(store_err)?;
    Ok(Json(json!({ "mode": policy.mode, "keys": keys })))
}

#[derive(Debug, Deserialize)]
struct ModeBody {
    mode: String,
}

async fn set_mode(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<ModeBody>,
) -> Result<Json<Value>, ApiError> {
    let mode: TrustMode = body.mode.parse().map_err(ApiError::BadRequest)?;
    s.store
        .set_trust_mode(&mode.to_string())
        .map_err(store_err)?;
    s.activity(
        &s.actor(&headers),
        "trust.mode",
        &mode.to_string(),
        Value::Null,
    );
    policy(State(s)).await
}

#[derive(Debug, Deserialize)]
struct KeyBody {
    name: String,
    /// A minisign public key file's text, or its base64 line.
    public_key: String,
}

async fn add_key(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<KeyBody>,
) -> Result<Json<Value>, ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::BadRequest(
            "a trusted key needs a name of 1 to 100 characters".into(),
        ));
    }
    let (line, key_id) = parse_public_key(&body.public_key)
        .map_err(|e| ApiError::BadRequest(format!("public_key: {e}")))?;
    s.store
        .put_trust_key(&key_id, name, &line)
        .map_err(store_err)?;
    s.activity(
        &s.actor(&headers),
        "trust.key_added",
        &key_id,
        json!({ "name": name }),
    );
    policy(State(s)).await
}

async fn remove_key(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(key_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if !s.store.delete_trust_key(&key_id).map_err(store_err)? {
        return Err(ApiError::NotFound(format!("no trusted key {key_id}")));
    }
    s.activity(
        &s.actor(&headers),
        "trust.key_removed",
        &key_id,
        Value::Null,
    );
    policy(State(s)).await
}
