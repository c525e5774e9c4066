//! The HTTP surface: every ComfyUI route also answers under `/api`, like `add_routes()` does.

pub mod current;
pub mod files;
pub mod frontend;
pub mod jobs;
pub mod origin;
pub mod prompt;
pub mod queue;
pub mod system;
pub mod userdata;
pub mod users;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::{any, get, post};
use serde_json::Value;

use crate::profile::Profile;
use crate::state::Sim;

/// `web.json_response(value, status=...)`: Python-formatted JSON.
pub fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut r = Response::new(Body::from(crate::pyjson::to_string(value)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// `web.Response(status=...)` with an empty body and no content type.
pub fn empty(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

/// aiohttp's unhandled-exception page.
pub fn internal_error() -> Response {
    let mut r = Response::new(Body::from(
        "500 Internal Server Error\n\nServer got itself in trouble",
    ));
    *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Plain-text response (`web.Response(text=..., status=...)`).
pub fn text(status: StatusCode, body: &str) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn api_routes(profile: Profile) -> Router<Arc<Sim>> {
    let routes = Router::new()
        .route("/ws", get(crate::ws::handler::ws_handler))
        .route("/system_stats", get(system::system_stats))
        .route("/features", get(system::features))
        .route("/embeddings", get(system::embeddings))
        .route("/extensions", get(system::extensions))
        .route("/models", get(system::models))
        .route("/models/{folder}", get(system::models_in_folder))
        .route("/object_info", get(system::object_info))
        .route("/object_info/{class}", get(system::object_info_one))
        .route("/i18n", get(system::empty_object))
        .route("/workflow_templates", get(system::empty_object))
        .route("/users", get(users::list).post(users::create))
        .route(
            "/settings",
            get(userdata::get_settings).post(userdata::post_settings),
        )
        .route(
            "/settings/{id}",
            get(userdata::get_setting).post(userdata::post_setting),
        )
        .route("/prompt", get(prompt::get_prompt).post(prompt::post_prompt))
        .route("/queue", get(queue::get_queue).post(queue::post_queue))
        .route("/interrupt", post(queue::interrupt))
        .route("/free", post(queue::free))
        .route(
            "/history",
            get(queue::get_history).post(queue::post_history),
        )
        .route("/history/{prompt_id}", get(queue::get_history_one))
        .route("/view", get(files::view))
        .route("/upload/image", post(files::upload_image))
        .route("/upload/mask", post(files::upload_image))
        .route("/userdata", get(userdata::list))
        .route(
            "/userdata/{file}",
            get(userdata::get_file)
                .post(userdata::post_file)
                .delete(userdata::delete_file),
        )
        .route("/experiment/models", get(current::experiment_models));
    if !profile.is_current() {
        return routes;
    }
    routes
        .route("/node_replacements", get(current::node_replacements))
        .route("/global_subgraphs", get(current::global_subgraphs))
        .route("/global_subgraphs/{id}", get(current::global_subgraph_one))
        .route("/v2/userdata", get(current::userdata_v2))
}

/// Routes 0.33.0 registers with their full path (not repeated under a second `/api`).
fn current_only_routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/api/jobs", get(jobs::list))
        .route("/api/jobs/cancel", post(jobs::cancel_batch))
        .route("/api/jobs/{job_id}", get(jobs::get_one))
        .route("/api/jobs/{job_id}/cancel", post(jobs::cancel_one))
        .route("/api/assets", any(current::assets_disabled))
        .route("/api/assets/{*rest}", any(current::assets_disabled))
        .route("/api/tags", get(current::assets_disabled))
        .route("/templates/{*path}", get(current::templates))
}

/// `/internal/*` (a sub-application, not repeated under `/api`).
fn internal_routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/internal/logs", get(current::internal_logs))
        .route("/internal/logs/raw", get(current::internal_logs_raw))
        .route(
            "/internal/folder_paths",
            get(current::internal_folder_paths),
        )
}

/// The full router for `sim`.
pub fn router(sim: Arc<Sim>) -> Router {
    let limit = usize::try_from(sim.opts.max_upload_size_mb.saturating_mul(1024 * 1024))
        .unwrap_or(usize::MAX);
    let profile = sim.opts.profile;
    let mut app = Router::new()
        .merge(api_routes(profile))
        .nest("/api", api_routes(profile))
        .merge(internal_routes());
    if profile.is_current() {
        app = app.merge(current_only_routes());
    }
    app.route("/", get(frontend::index))
        .fallback(frontend::fallback)
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            origin::origin_check,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(sim)
}
