//! Plugin management: list, inspect, install (multipart upload), enable/disable, grants
//! (approve/revoke), config, rollback, rescan of the drop-in directory, logs.

use axum::Json;
use axum::extract::{Multipart, Path, State};
use comfyhost_runtime::RuntimeError;
use comfyhost_runtime::grants::Grants;
use comfyhost_runtime::registry::PluginInfo;
use comfyhost_runtime::signing::SignatureFiles;
use serde_json::Value;

use super::ApiError;
use super::routes::Routes;
use crate::state::AppState;

/// Largest component accepted by the install API.
pub(super) const MAX_UPLOAD: usize = 64 << 20;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/plugins", list)
        .post("/plugins", install)
        .post("/plugins/rescan", rescan)
        .get("/plugins/{id}", one)
        .post("/plugins/{id}/enable", enable)
        .post("/plugins/{id}/disable", disable)
        .post("/plugins/{id}/rollback", rollback)
        .put("/plugins/{id}/grants", grants)
        .put("/plugins/{id}/config", config)
        .get("/plugins/{id}/logs", logs)
        .map_router(|r| r.layer(axum::extract::DefaultBodyLimit::max(MAX_UPLOAD)))
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::NotFound(_) => ApiError::NotFound(e.to_string()),
            RuntimeError::Manifest(_)
            | RuntimeError::Compile(_)
            | RuntimeError::WorldMismatch(..)
            | RuntimeError::Config(_)
            | RuntimeError::Trust(_) => ApiError::BadRequest(e.to_string()),
            RuntimeError::Store(_) | RuntimeError::Io(_) => ApiError::Internal(e.to_string()),
        }
    }
}

/// Registry admin operations compile and touch files: run them off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("task failed: {e}")))?
        .map_err(ApiError::from)
}

async fn list(State(s): State<AppState>) -> Json<Vec<PluginInfo>> {
    Json(s.plugins.list())
}

async fn one(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PluginInfo>, ApiError> {
    Ok(Json(s.plugins.get(&id)?))
}

async fn logs(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let records = s.plugins.logs(&id)?;
    Ok(Json(serde_json::to_value(records).unwrap_or_default()))
}

async fn enable(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PluginInfo>, ApiError> {
    Ok(Json(blocking(move || s.plugins.enable(&id)).await?))
}

async fn disable(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PluginInfo>, ApiError> {
    Ok(Json(blocking(move || s.plugins.disable(&id)).await?))
}

async fn rollback(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PluginInfo>, ApiError> {
    Ok(Json(blocking(move || s.plugins.rollback(&id)).await?))
}

async fn grants(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(grants): Json<Grants>,
) -> Result<Json<PluginInfo>, ApiError> {
    Ok(Json(blocking(move || s.plugins.grant(&id, grants)).await?))
}

async fn config(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Json(config): Json<Value>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        blocking(move || s.plugins.set_config(&id, &config)).await?,
    ))
}

async fn rescan(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let report = blocking(move || s.plugins.discover()).await?;
    Ok(Json(serde_json::json!({
        "loaded": report.loaded,
        "unchanged": report.unchanged,
        "removed": report.removed,
        "broken": report.broken,
    })))
}

/// `multipart/form-data` with parts `manifest` (plugin.toml text), `wasm` (the component),
/// optionally `schema` (the config JSON Schema the manifest names; an empty part counts as
/// absent), and optionally `signature` (plugin.minisig) and `public_key` (plugin.pub).
async fn install(State(s): State<AppState>, form: Multipart) -> Result<Json<PluginInfo>, ApiError> {
    let u = read_upload(form).await?;
    let info = blocking(move || {
        s.plugins
            .install_signed(&u.manifest, &u.wasm, u.schema.as_deref(), u.signature)
    })
    .await?;
    tracing::info!(plugin = %info.id, version = %info.version, state = ?info.state, "plugin installed");
    Ok(Json(info))
}

/// One uploaded plugin version.
pub(crate) struct Upload {
    pub manifest: String,
    pub wasm: bytes::Bytes,
    pub schema: Option<String>,
    pub signature: Option<SignatureFiles>,
}

/// Reads the install form (see [`install`]).
pub(crate) async fn read_upload(mut form: Multipart) -> Result<Upload, ApiError> {
    let (mut manifest, mut wasm, mut schema) = (None, None, None);
    let (mut signature, mut public_key) = (None, None);
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::BadRequest(format!("bad multipart body: {e}")))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| ApiError::BadRequest(format!("reading part {name}: {e}")))?;
        match name.as_str() {
            "manifest" => manifest = Some(text(&name, bytes)?),
            // A form's empty file field arrives as an empty part: the same as no schema.
            "schema" => schema = Some(text(&name, bytes)?).filter(|t| !t.trim().is_empty()),
            "wasm" => wasm = Some(bytes),
            "signature" => signature = Some(text(&name, bytes)?).filter(|t| !t.trim().is_empty()),
            "public_key" => public_key = Some(text(&name, bytes)?),
            other => return Err(ApiError::BadRequest(format!("unexpected part '{other}'"))),
        }
    }
    Ok(Upload {
        manifest: manifest.ok_or_else(|| ApiError::BadRequest("missing part 'manifest'".into()))?,
        wasm: wasm.ok_or_else(|| ApiError::BadRequest("missing part 'wasm'".into()))?,
        schema,
        signature: signature.map(|signature| SignatureFiles {
            signature,
            public_key: public_key.unwrap_or_default(),
        }),
    })
}

fn text(name: &str, bytes: bytes::Bytes) -> Result<String, ApiError> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::BadRequest(format!("part '{name}' is not UTF-8")))
}
