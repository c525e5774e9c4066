//! ComfyUI endpoints the host answers in part itself, so jobs it runs elsewhere look local:
//! `GET /queue` and `GET /history[/{id}]` include remote jobs, `GET /view` serves their outputs,
//! `POST /interrupt` and `POST /queue {delete | clear}` reach the backend that runs them. For the current
//! frontend (ComfyUI ≥ 0.6) `GET /api/jobs[/{id}]` include remote jobs in the jobs-API shapes and
//! `POST /api/jobs/{id}/cancel` / `POST /api/jobs/cancel` cancel them on their backend. Everything
//! else, and every request about local jobs, goes through the proxy unchanged. Each path is
//! also served under ComfyUI's `/api` alias.
//!
//! While ComfyUI is down (the proxy answers 502/503), the routes the frontend polls answer in
//! ComfyUI's own shapes: an empty local queue and the host's knowledge of history (remote
//! jobs), so the page stays calm instead of parsing an error body as a queue. Prompts removed
//! through `POST /queue {delete|clear}` are recorded as `cancelled`, not lost.
//!
//! Every answer and command is scoped to the caller by [`crate::isolation`]: a workshop user
//! sees and controls only their own prompts (admins everything); `POST /free` is for admins.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use crate::isolation::{Isolation, Scope, views as own};
use crate::jobs::JobTracker;
use crate::overlay::OverlayDriver;
use crate::remote::RemoteRunner;
use crate::remote::jobs_view as views_jobs;
use crate::remote::outputs::OutputCache;
use crate::remote::views;

/// Largest request body these handlers read (interrupt / queue / history commands).
const COMMAND_LIMIT: usize = 1 << 20;

#[derive(Clone)]
struct Overlay {
    remote: RemoteRunner,
    status: OverlayDriver,
    jobs: JobTracker,
    proxy: Router,
    iso: Isolation,
}

/// Routes for `prefix` (`""` or `/comfy`); merge before the proxy fallback.
pub fn router(
    prefix: &str,
    remote: RemoteRunner,
    status: OverlayDriver,
    jobs: JobTracker,
    proxy: Router,
    iso: Isolation,
) -> Router {
    let state = Overlay {
        remote,
        status,
        jobs,
        proxy,
        iso,
    };
    let mut r = Router::new().route(
        &format!("{prefix}{}", crate::overlay::SCRIPT_PATH),
        get(overlay_script),
    );
    for base in [prefix.to_string(), format!("{prefix}/api")] {
        r = r
            .route(&format!("{base}/queue"), get(queue).post(queue_command))
            .route(
                &format!("{base}/history"),
                get(history).post(history_command),
            )
            .route(&format!("{base}/history/{{prompt_id}}"), get(history_one))
            .route(&format!("{base}/view"), get(view))
            .route(&format!("{base}/interrupt"), post(interrupt))
            .route(&format!("{base}/free"), post(free))
            .route(&format!("{base}/extensions"), get(extensions));
    }
    // ComfyUI registers the jobs API with its full `/api/...` path only.
    r = r
        .route(&format!("{prefix}/api/jobs"), get(jobs_list))
        .route(
            &format!("{prefix}/api/jobs/cancel"),
            post(jobs_cancel_batch),
        )
        .route(&format!("{prefix}/api/jobs/{{job_id}}"), get(job_one))
        .route(
            &format!("{prefix}/api/jobs/{{job_id}}/cancel"),
            post(job_cancel),
        );
    r.with_state(state)
}

async fn forward(o: &Overlay, req: Request) -> Response {
    match o.proxy.clone().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// Forwards and parses a JSON answer; `Err` carries the proxy's response unchanged.
async fn forward_json(
    o: &Overlay,
    req: Request,
) -> Result<(Value, http::response::Parts), Response> {
    let resp = forward(o, req).await;
    if !resp.status().is_success() {
        return Err(resp);
    }
    let (parts, body) = resp.into_parts();
    let bytes = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => {
            return Err((StatusCode::BAD_GATEWAY, format!("upstream body: {e}")).into_response());
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(v) => Ok((v, parts)),
        Err(_) => Err(Response::from_parts(parts, Body::from(bytes))),
    }
}

/// The proxy's answer when ComfyUI cannot be reached (or broke off mid-answer).
fn comfyui_down(resp: &Response) -> bool {
    matches!(
        resp.status(),
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY
    )
}

/// ComfyUI's JSON answer shape, built by the host.
fn own_json(v: &Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        v.to_string(),
    )
        .into_response()
}

fn json_response(mut parts: http::response::Parts, v: &Value) -> Response {
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    Response::from_parts(parts, Body::from(v.to_string()))
}

fn query_param(req: &Request, key: &str) -> Option<String> {
    req.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    })
}

async fn queue(State(o): State<Overlay>, req: Request) -> Response {
    let scope = o.iso.scope(req.headers());
    let remote = o.remote.store_rows(true);
    let (mut v, parts) = match forward_json(&o, req).await {
        Ok(x) => x,
        Err(resp) if comfyui_down(&resp) => {
            // ComfyUI's queue lives in its memory only: while it is down, it is empty.
            let (parts, _) = own_json(&Value::Null).into_parts();
            (json!({"queue_running": [], "queue_pending": []}), parts)
        }
        Err(resp) => return resp,
    };
    for row in remote {
        let key = if row.state == "running" {
            "queue_running"
        } else {
            "queue_pending"
        };
        if let Some(list) = v.get_mut(key).and_then(Value::as_array_mut) {
            list.push(views::queue_item(&row));
        }
    }
    own::queue(&scope, &mut v);
    json_response(parts, &v)
}

async fn history(State(o): State<Overlay>, req: Request) -> Response {
    let scope = o.iso.scope(req.headers());
    let max_items = query_param(&req, "max_items").and_then(|m| m.parse::<usize>().ok());
    let (v, parts) = match forward_json(&o, req).await {
        Ok(x) => x,
        Err(resp) if comfyui_down(&resp) => {
            let (parts, _) = own_json(&Value::Null).into_parts();
            (json!({}), parts)
        }
        Err(resp) => return resp,
    };
    let mut merged: Vec<(f64, String, Value)> = Vec::new();
    if let Value::Object(local) = v {
        for (id, entry) in local {
            let n = entry["prompt"][0].as_f64().unwrap_or(0.0);
            merged.push((n, id, entry));
        }
    }
    for row in o.remote.store_rows(false) {
        if let Some(h) = row
            .history_json
            .as_deref()
            .and_then(|h| serde_json::from_str(h).ok())
        {
            merged.push((row.number, row.prompt_id, h));
        }
    }
    merged.retain(|(_, id, _)| scope.all || scope.owns(id));
    merged.sort_by(|a, b| a.0.total_cmp(&b.0));
    if let Some(max) = max_items {
        let skip = merged.len().saturating_sub(max);
        merged.drain(..skip);
    }
    let map: Map<String, Value> = merged.into_iter().map(|(_, id, e)| (id, e)).collect();
    json_response(parts, &Value::Object(map))
}

async fn history_one(
    State(o): State<Overlay>,
    axum::extract::Path(prompt_id): axum::extract::Path<String>,
    req: Request,
) -> Response {
    if !o.iso.scope(req.headers()).owns(&prompt_id) {
        // What ComfyUI answers for a prompt it does not have.
        return own_json(&json!({}));
    }
    match o.remote.history_entry(&prompt_id) {
        Some(entry) => axum::Json(json!({ prompt_id: entry })).into_response(),
        None => {
            let resp = forward(&o, req).await;
            if comfyui_down(&resp) {
                // What ComfyUI answers for a prompt it does not have.
                return own_json(&json!({}));
            }
            resp
        }
    }
}

async fn view(State(o): State<Overlay>, req: Request) -> Response {
    let subfolder = query_param(&req, "subfolder").unwrap_or_default();
    {
        let filename = query_param(&req, "filename").unwrap_or_default();
        let folder_type = query_param(&req, "type").unwrap_or_else(|| "output".into());
        if !o
            .iso
            .scope(req.headers())
            .may_view(&filename, &subfolder, &folder_type)
        {
            // What ComfyUI answers for a file it does not have.
            return StatusCode::NOT_FOUND.into_response();
        }
    }
    if !OutputCache::is_remote_subfolder(&subfolder) {
        return forward(&o, req).await;
    }
    let filename = query_param(&req, "filename").unwrap_or_default();
    let folder_type = query_param(&req, "type").unwrap_or_else(|| "output".into());
    let Some(path) = o.remote.cache().lookup(&filename, &subfolder, &folder_type) else {
        return (StatusCode::BAD_REQUEST, "invalid file reference").into_response();
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let mime = mime_for(&filename);
            (
                [
                    (header::CONTENT_TYPE, mime),
                    (header::CONTENT_DISPOSITION, "inline"),
                ],
                bytes,
            )
                .into_response()
        }
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

fn mime_for(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "wav" => "audio/wav",
        "mp3" => "audio/mpeg",
        "flac" => "audio/flac",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// Splits a command request: reads its JSON body, and rebuilds the request to forward.
async fn read_command(req: Request) -> Result<(Value, Request), Response> {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, COMMAND_LIMIT)
        .await
        .map_err(|e| (StatusCode::PAYLOAD_TOO_LARGE, e.to_string()).into_response())?;
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((v, Request::from_parts(parts, Body::from(bytes))))
}

/// `POST /interrupt`: with a `prompt_id`, only its owner (or an admin) may interrupt it; with
/// none, ComfyUI interrupts whatever runs, so a user may only when they own what runs (the
/// request then names it, so a prompt that started meanwhile is not hit).
async fn interrupt(State(o): State<Overlay>, req: Request) -> Response {
    let scope = o.iso.scope(req.headers());
    let path = req.uri().path().to_string();
    let (mut cmd, req) = match read_command(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut req = req;
    match cmd.get("prompt_id").and_then(Value::as_str) {
        Some(id) => {
            if !scope.owns(id) {
                return crate::isolation::forbidden(
                    "You can only interrupt your own prompts",
                    &format!("prompt {id} is not yours"),
                );
            }
            if o.remote.cancel(id).await {
                return StatusCode::OK.into_response();
            }
        }
        None if !scope.all => {
            let running = local_queue(&o, &path, "interrupt")
                .await
                .and_then(|q| q["queue_running"][0][1].as_str().map(str::to_string));
            match running {
                // Nothing runs locally: nothing to interrupt (ComfyUI answers 200 too).
                None => return StatusCode::OK.into_response(),
                Some(id) if scope.owns(&id) => {
                    if let Some(map) = cmd.as_object_mut() {
                        map.insert("prompt_id".into(), Value::String(id));
                    } else {
                        cmd = json!({ "prompt_id": id });
                    }
                    req = with_body(req, &cmd);
                }
                Some(_) => {
                    return crate::isolation::forbidden(
                        "You can only interrupt your own prompts",
                        "what runs now is someone else's prompt",
                    );
                }
            }
        }
        None => {}
    }
    forward(&o, req).await
}

/// `POST /free` unloads models for everyone: admins only while isolation is on.
async fn free(State(o): State<Overlay>, req: Request) -> Response {
    if !o.iso.scope(req.headers()).all {
        return crate::isolation::forbidden(
            "Only the workshop admin can free ComfyUI's memory",
            "POST /free unloads models for every user",
        );
    }
    forward(&o, req).await
}

/// ComfyUI's own `GET /queue` (local prompts only), asked next to a command at `path`.
async fn local_queue(o: &Overlay, path: &str, command: &str) -> Option<Value> {
    let queue_path = format!("{}queue", path.strip_suffix(command)?);
    let req = Request::builder()
        .method(http::Method::GET)
        .uri(queue_path)
        .body(Body::empty())
        .ok()?;
    forward_json(o, req).await.ok().map(|(v, _)| v)
}

/// The request with a new JSON body.
fn with_body(req: Request, body: &Value) -> Request {
    let (mut parts, _) = req.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    Request::from_parts(parts, Body::from(body.to_string()))
}

/// `POST /history {clear | delete}`: a user's `clear` deletes their own entries only, and
/// `delete` ignores ids that are not theirs.
async fn history_command(State(o): State<Overlay>, req: Request) -> Response {
    let scope = o.iso.scope(req.headers());
    let path = req.uri().path().to_string();
    let (cmd, req) = match read_command(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    if scope.all {
        return forward(&o, req).await;
    }
    let Value::Object(mut map) = cmd else {
        // ComfyUI judges what is not an object.
        return forward(&o, req).await;
    };
    let mut delete = match map.remove("delete") {
        Some(Value::Array(ids)) => own::own_ids(&scope, &ids),
        Some(_) | None => Vec::new(),
    };
    let clear = map
        .remove("clear")
        .is_some_and(|c| c.as_bool().unwrap_or(!c.is_null()));
    if clear {
        let history_path = path.clone();
        let listed = Request::builder()
            .method(http::Method::GET)
            .uri(history_path)
            .body(Body::empty())
            .ok();
        if let Some(listed) = listed
            && let Ok((Value::Object(h), _)) = forward_json(&o, listed).await
        {
            delete.extend(
                h.keys()
                    .filter(|id| scope.owns(id))
                    .map(|id| Value::String(id.clone())),
            );
        }
    }
    map.insert("delete".into(), Value::Array(delete));
    forward(&o, with_body(req, &Value::Object(map))).await
}

async fn queue_command(State(o): State<Overlay>, req: Request) -> Response {
    let scope = o.iso.scope(req.headers());
    let path = req.uri().path().to_string();
    let (cmd, req) = match read_command(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (cmd, req) = match scoped_queue_command(&o, &scope, &path, cmd.clone()).await {
        Some(own_cmd) => {
            let req = with_body(req, &own_cmd);
            (own_cmd, req)
        }
        None => (cmd, req),
    };
    let mut local = Vec::new();
    if let Some(ids) = cmd.get("delete").and_then(Value::as_array) {
        for id in ids.iter().filter_map(Value::as_str) {
            if !o.remote.cancel(id).await {
                local.push(id.to_string());
            }
        }
    }
    let clear = cmd.get("clear").and_then(Value::as_bool) == Some(true);
    // `{"clear": true}` empties the pending queue, remote jobs that have not started included
    // (like ComfyUI, it leaves the running ones alone).
    if clear {
        for row in o.remote.store_rows(true) {
            if row.state != "running" {
                o.remote.cancel(&row.prompt_id).await;
            }
        }
    }
    let resp = forward(&o, req).await;
    if resp.status().is_success() {
        // Gone from ComfyUI's queue on purpose: the tracker ends them `cancelled` once
        // ComfyUI no longer lists them (a running prompt is not deleted by ComfyUI).
        if !local.is_empty() {
            o.jobs
                .cancel_requested(&local, "deleted from the queue (POST /queue delete)");
        }
        if clear {
            o.jobs
                .cancel_requested_all_pending("the queue was cleared (POST /queue clear)");
        }
    }
    resp
}

/// A user's `POST /queue` command, limited to their own prompts: `delete` keeps their ids,
/// `clear` becomes a `delete` of their pending prompts (local and remote). `None`: unchanged.
async fn scoped_queue_command(o: &Overlay, scope: &Scope, path: &str, cmd: Value) -> Option<Value> {
    if scope.all {
        return None;
    }
    let Value::Object(mut map) = cmd else {
        return None;
    };
    let mut delete = match map.remove("delete") {
        Some(Value::Array(ids)) => own::own_ids(scope, &ids),
        Some(_) | None => Vec::new(),
    };
    if map.remove("clear").and_then(|c| c.as_bool()) == Some(true) {
        if let Some(q) = local_queue(o, path, "queue").await {
            delete.extend(
                own::queue_ids(&q, false)
                    .into_iter()
                    .filter(|id| scope.owns(id))
                    .map(Value::String),
            );
        }
        delete.extend(
            o.remote
                .store_rows(true)
                .into_iter()
                .filter(|r| r.state != "running" && scope.owns(&r.prompt_id))
                .map(|r| Value::String(r.prompt_id)),
        );
    }
    map.insert("delete".into(), Value::Array(delete));
    Some(Value::Object(map))
}

/// `GET /api/jobs`: the local ComfyUI's jobs (asked without paging) plus the remote ones,
/// filtered, sorted and paged as ComfyUI does. Invalid queries get the local ComfyUI's answer.
async fn jobs_list(State(o): State<Overlay>, req: Request) -> Response {
    let scope = o.iso.scope(req.headers());
    let pairs: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let Some(query) = views_jobs::JobsQuery::parse(&pairs) else {
        return forward(&o, req).await;
    };
    let (mut parts, body) = req.into_parts();
    let unpaged: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().filter(|(k, _)| k != "limit" && k != "offset"))
        .finish();
    let path = parts.uri.path().to_string();
    let uri = if unpaged.is_empty() {
        path
    } else {
        format!("{path}?{unpaged}")
    };
    match uri.parse() {
        Ok(u) => parts.uri = u,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    }
    let (v, parts) = match forward_json(&o, Request::from_parts(parts, body)).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    let mut jobs: Vec<Value> = v
        .get("jobs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    jobs.extend(
        o.remote
            .store_rows(false)
            .iter()
            .map(|row| views_jobs::job(row, false))
            .filter(|j| query.wants(j)),
    );
    own::jobs(&scope, &mut jobs);
    json_response(parts, &query.page(jobs))
}

/// `GET /api/jobs/{id}`: a remote job from the host's store, anything else from ComfyUI.
async fn job_one(
    State(o): State<Overlay>,
    axum::extract::Path(job_id): axum::extract::Path<String>,
    req: Request,
) -> Response {
    if !o.iso.scope(req.headers()).owns(&job_id) {
        return job_not_found();
    }
    match o.remote.store_row(&job_id) {
        Some(row) => axum::Json(views_jobs::job(&row, true)).into_response(),
        None => forward(&o, req).await,
    }
}

/// `POST /api/jobs/{id}/cancel`: a remote job is cancelled on its backend.
async fn job_cancel(
    State(o): State<Overlay>,
    axum::extract::Path(job_id): axum::extract::Path<String>,
    req: Request,
) -> Response {
    if !o.iso.scope(req.headers()).owns(&job_id) {
        return job_not_found();
    }
    if o.remote.cancel(&job_id).await {
        return axum::Json(json!({"cancelled": true})).into_response();
    }
    forward(&o, req).await
}

/// `POST /api/jobs/cancel {"job_ids": [...]}`: remote ids are cancelled on their backends, the
/// rest go to the local ComfyUI (which also validates them).
async fn jobs_cancel_batch(State(o): State<Overlay>, req: Request) -> Response {
    let scope = o.iso.scope(req.headers());
    let (cmd, req) = match read_command(req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(ids) = cmd.get("job_ids").and_then(Value::as_array) else {
        return forward(&o, req).await;
    };
    let ids = own::own_ids(&scope, ids);
    if ids.is_empty() && !scope.all {
        return axum::Json(json!({"cancelled": false})).into_response();
    }
    let ids = &ids;
    let mut remote_cancelled = false;
    let mut local: Vec<Value> = Vec::new();
    for id in ids {
        match id.as_str() {
            Some(s) if o.remote.is_active(s) => remote_cancelled |= o.remote.cancel(s).await,
            _ => local.push(id.clone()),
        }
    }
    if local.is_empty() {
        return axum::Json(json!({"cancelled": remote_cancelled})).into_response();
    }
    let (mut parts, _) = req.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let body = json!({ "job_ids": local }).to_string();
    let req = Request::from_parts(parts, Body::from(body));
    if !remote_cancelled {
        return forward(&o, req).await;
    }
    match forward_json(&o, req).await {
        Ok((_, parts)) => json_response(parts, &json!({"cancelled": true})),
        Err(resp) => resp,
    }
}

/// ComfyUI's answer for a job it does not have (also for another user's job).
fn job_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"error": "Job not found"})),
    )
        .into_response()
}

async fn overlay_script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        crate::overlay::SCRIPT,
    )
        .into_response()
}

/// ComfyUI's list of extension scripts, plus the host's overlay while it is enabled (so
/// disabling the plugin removes the banner on the next page load).
async fn extensions(State(o): State<Overlay>, req: Request) -> Response {
    let (mut v, parts) = match forward_json(&o, req).await {
        Ok(x) => x,
        Err(resp) => return resp,
    };
    if let Some(list) = v.as_array_mut() {
        if o.status.enabled() {
            list.push(json!(crate::overlay::SCRIPT_PATH));
        }
        // Who is signed in (or a "Sign in" link), on every page.
        list.push(json!(crate::isolation::gate::BADGE_PATH));
    }
    json_response(parts, &v)
}
