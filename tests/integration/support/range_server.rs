//! A local HTTP file server for download tests: honours `Range: bytes=N-` with 206 and
//! `Content-Range`, and per file can cut the connection mid-body on the first request, serve
//! wrong bytes, or trickle slowly. It records every request's `Range` header.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

/// Behaviour of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    /// First request: full Content-Length, half the body, then the connection drops.
    CutFirstRequest,
    /// Serve bytes that differ from the registered content (same length).
    WrongBytes,
    /// Send 64 KiB chunks with 50 ms pauses.
    Slow,
}

/// `(file name, Range header)` per request, in arrival order.
type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

#[derive(Clone, Default)]
struct Shared {
    files: Arc<Mutex<HashMap<String, (Bytes, Behaviour)>>>,
    log: RequestLog,
}

pub struct RangeServer {
    pub base: String,
    shared: Shared,
}

impl RangeServer {
    pub async fn start() -> Self {
        let shared = Shared::default();
        let app = Router::new()
            .route("/files/{name}", get(serve))
            .with_state(shared.clone());
        let (port, _task) = crate::support::serve_on_free_port(app).await;
        RangeServer {
            base: format!("http://127.0.0.1:{port}"),
            shared,
        }
    }

    /// Register a file; returns its URL.
    pub fn add(&self, name: &str, content: Vec<u8>, behaviour: Behaviour) -> String {
        self.shared
            .files
            .lock()
            .expect("files")
            .insert(name.to_owned(), (Bytes::from(content), behaviour));
        format!("{}/files/{name}", self.base)
    }

    /// `(file, Range header)` of every request so far.
    pub fn requests(&self) -> Vec<(String, Option<String>)> {
        self.shared.log.lock().expect("log").clone()
    }
}

async fn serve(State(s): State<Shared>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let first = {
        let mut log = s.log.lock().expect("log");
        let first = !log.iter().any(|(n, _)| *n == name);
        log.push((name.clone(), range.clone()));
        first
    };
    let Some((content, behaviour)) = s.files.lock().expect("files").get(&name).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let content = if behaviour == Behaviour::WrongBytes {
        Bytes::from(content.iter().map(|b| b ^ 0x5a).collect::<Vec<u8>>())
    } else {
        content
    };
    let len = content.len() as u64;
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<u64>().ok());
    let (status, body_bytes, extra) = match start {
        Some(s) if s >= len => {
            return (
                StatusCode::RANGE_NOT_SATISFIABLE,
                [(header::CONTENT_RANGE, format!("bytes */{len}"))],
            )
                .into_response();
        }
        Some(s) => (
            StatusCode::PARTIAL_CONTENT,
            content.slice(s as usize..),
            Some(format!("bytes {s}-{}/{len}", len - 1)),
        ),
        None => (StatusCode::OK, content, None),
    };
    let declared = body_bytes.len();
    let body = match behaviour {
        Behaviour::CutFirstRequest if first => {
            let half = body_bytes.slice(..declared / 2);
            let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
                Ok(half),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "cut by test server",
                )),
            ];
            Body::from_stream(futures::stream::iter(chunks))
        }
        Behaviour::Slow => {
            let chunks: Vec<Bytes> = body_bytes
                .chunks(64 * 1024)
                .map(Bytes::copy_from_slice)
                .collect();
            let stream = futures::stream::unfold(chunks.into_iter(), |mut it| async move {
                let next = it.next()?;
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((Ok::<Bytes, std::io::Error>(next), it))
            });
            Body::from_stream(stream)
        }
        _ => Body::from(body_bytes),
    };
    let mut resp = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, declared)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    if let Some(cr) = extra {
        resp = resp.header(header::CONTENT_RANGE, cr);
    }
    resp.body(body).expect("response")
}
