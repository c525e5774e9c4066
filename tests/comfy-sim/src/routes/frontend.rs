//! `/` and static files: the `--front-end-root` directory when given, else a tiny index page.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::Response;

use crate::paths::safe_join;
use crate::routes::files::mime_for;
use crate::state::Sim;

const INDEX: &str = "<!DOCTYPE html>\n<html><head><title>ComfyUI</title></head>\n<body><h1>comfy-sim</h1>\n<p>A ComfyUI 0.3.64 simulator. No frontend is installed (start with <code>--front-end-root DIR</code>).</p>\n</body></html>\n";

fn not_found() -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NOT_FOUND;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r
}

async fn serve_static(sim: &Sim, rel: &str) -> Option<Response> {
    let root = sim.opts.front_end_root.as_ref()?;
    let decoded = percent_encoding::percent_decode_str(rel)
        .decode_utf8()
        .ok()?;
    let mut path = safe_join(root, decoded.trim_start_matches('/'))?;
    if path.is_dir() {
        path = path.join("index.html");
    }
    let bytes = tokio::fs::read(&path).await.ok()?;
    let mut r = Response::new(Body::from(bytes));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(mime_for(name)),
    );
    if name == "index.html" {
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    Some(r)
}

/// `GET /`.
pub async fn index(State(sim): State<Arc<Sim>>) -> Response {
    if let Some(r) = serve_static(&sim, "index.html").await {
        return r;
    }
    let mut r = Response::new(Body::from(INDEX));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Everything else: a static file or the recorded empty 404.
pub async fn fallback(State(sim): State<Arc<Sim>>, method: Method, uri: Uri) -> Response {
    if (method == Method::GET || method == Method::HEAD)
        && let Some(r) = serve_static(&sim, uri.path()).await
    {
        return r;
    }
    not_found()
}
