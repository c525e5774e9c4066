//! `GET /view` and `POST /upload/image` (also `/upload/mask`, without mask compositing).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Multipart, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use crate::execution::values::annotated_name;
use crate::paths::safe_join;
use crate::routes::{empty, internal_error, json_response};
use crate::state::Sim;

/// The directory of a `type` (`output`, `input`, `temp`).
pub fn dir_by_type(sim: &Sim, kind: &str) -> Option<PathBuf> {
    match kind {
        "output" => Some(sim.opts.output_dir.clone()),
        "input" => Some(sim.opts.input_dir.clone()),
        "temp" => Some(sim.opts.temp_dir.join("temp")),
        _ => None,
    }
}

/// MIME type by extension (Python `mimetypes` for the common cases).
pub fn mime_for(name: &str) -> &'static str {
    match name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .as_deref()
    {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        Some("json") => "application/json",
        Some("js" | "mjs") => "text/javascript",
        Some("css") => "text/css",
        Some("html" | "htm") => "text/html",
        Some("svg") => "image/svg+xml",
        Some("txt") => "text/plain",
        Some("mp4") => "video/mp4",
        Some("webm") => "video/webm",
        Some("woff2") => "font/woff2",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// `GET /view?filename=&type=&subfolder=`.
pub async fn view(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(raw) = q.get("filename") else {
        return empty(StatusCode::NOT_FOUND);
    };
    let (filename, annotated_dir) = annotated_name(raw);
    if filename.is_empty() {
        return empty(StatusCode::BAD_REQUEST);
    }
    if filename.starts_with('/') || filename.contains("..") {
        return empty(StatusCode::BAD_REQUEST);
    }
    let kind = annotated_dir
        .map(String::from)
        .unwrap_or_else(|| q.get("type").cloned().unwrap_or_else(|| "output".into()));
    let Some(mut dir) = dir_by_type(&sim, &kind) else {
        return empty(StatusCode::BAD_REQUEST);
    };
    if let Some(sub) = q.get("subfolder") {
        match safe_join(&dir, sub) {
            Some(d) => dir = d,
            None => return empty(StatusCode::FORBIDDEN),
        }
    }
    let base = filename.rsplit('/').next().unwrap_or(filename);
    let path = dir.join(base);
    if !path.is_file() {
        return empty(StatusCode::NOT_FOUND);
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => {
            let mut r = Response::new(Body::from(bytes));
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&format!("filename=\"{base}\"")) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(mime_for(base)),
            );
            r
        }
        Err(_) => empty(StatusCode::NOT_FOUND),
    }
}

/// `POST /upload/image` (multipart `image`, `type`, `subfolder`, `overwrite`).
pub async fn upload_image(State(sim): State<Arc<Sim>>, mut form: Multipart) -> Response {
    let mut image: Option<(String, bytes::Bytes)> = None;
    let mut fields: HashMap<String, String> = HashMap::new();
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_string();
                let file_name = field.file_name().map(String::from);
                let Ok(data) = field.bytes().await else {
                    return empty(StatusCode::BAD_REQUEST);
                };
                match (name.as_str(), file_name) {
                    ("image", Some(f)) => image = Some((f, data)),
                    _ => {
                        fields.insert(name, String::from_utf8_lossy(&data).into_owned());
                    }
                }
            }
            Ok(None) => break,
            Err(_) => return empty(StatusCode::BAD_REQUEST),
        }
    }
    let kind = fields
        .get("type")
        .cloned()
        .unwrap_or_else(|| "input".into());
    let Some(upload_dir) = dir_by_type(&sim, &kind) else {
        return internal_error();
    };
    let Some((filename, data)) = image else {
        return empty(StatusCode::BAD_REQUEST);
    };
    if filename.is_empty() {
        return empty(StatusCode::BAD_REQUEST);
    }
    let subfolder = fields.get("subfolder").cloned().unwrap_or_default();
    let Some(folder) = safe_join(&upload_dir, &subfolder) else {
        return empty(StatusCode::BAD_REQUEST);
    };
    if safe_join(&folder, &filename).is_none() || filename.contains('/') {
        return empty(StatusCode::BAD_REQUEST);
    }
    if tokio::fs::create_dir_all(&folder).await.is_err() {
        return internal_error();
    }
    let overwrite = fields
        .get("overwrite")
        .is_some_and(|o| o == "true" || o == "1");
    let (stem, ext) = match filename.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s.to_string(), format!(".{e}")),
        _ => (filename.clone(), String::new()),
    };
    let mut name = filename.clone();
    let mut duplicate = false;
    if !overwrite {
        let mut i = 1;
        while folder.join(&name).exists() {
            if tokio::fs::read(folder.join(&name))
                .await
                .is_ok_and(|existing| existing == data)
            {
                duplicate = true;
                break;
            }
            name = format!("{stem} ({i}){ext}");
            i += 1;
        }
    }
    if !duplicate && tokio::fs::write(folder.join(&name), &data).await.is_err() {
        return internal_error();
    }
    json_response(
        StatusCode::OK,
        &json!({"name": name, "subfolder": subfolder, "type": kind}),
    )
}
