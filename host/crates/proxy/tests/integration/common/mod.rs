//! In-process upstream ("mini ComfyUI") and proxy harness for the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use comfyhost_proxy::{ProxyConfig, ProxyState, ProxyStateBuilder, router};
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// What the upstream saw, for assertions.
#[derive(Default)]
pub struct Seen {
    /// Every WebSocket upgrade request: raw path-and-query and headers.
    pub ws_requests: Mutex<Vec<(String, BTreeMap<String, String>)>>,
    /// Released by tests to let `/stream` send its second chunk.
    pub release_stream: Notify,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// Stop listening and drop every connection.
    pub fn kill(&self) {
        self.task.abort();
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn header_map(h: &HeaderMap) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in h {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        out.entry(k.as_str().to_string())
            .and_modify(|prev: &mut String| {
                prev.push_str(", ");
                prev.push_str(&v);
            })
            .or_insert(v);
    }
    out
}

/// ComfyUI 0.3.64's origin-only middleware (server.py), re-implemented independently: for a
/// loopback `Host` with an `Origin` naming another host, answer 403.
async fn comfy_origin_rule(req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .map(str::to_lowercase);
    let origin = req
        .headers()
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_lowercase);
    if let (Some(host), Some(origin)) = (host, origin) {
        let netloc = origin
            .split_once("://")
            .map(|(_, r)| r.split('/').next().unwrap().to_string())
            .unwrap_or_default();
        let host_name = host
            .rsplit_once(':')
            .map_or(host.as_str(), |(h, _)| h)
            .to_string();
        let loopback =
            host_name == "localhost" || host_name.starts_with("127.") || host_name == "[::1]";
        let origin_has_port = netloc.rsplit_once(':').is_some_and(|(_, p)| !p.is_empty());
        let host_has_port = host.rsplit_once(':').is_some();
        let host_cmp = if origin_has_port {
            host.clone()
        } else {
            host_name.clone()
        };
        let origin_cmp = if host_has_port {
            netloc.clone()
        } else {
            netloc
                .rsplit_once(':')
                .map_or(netloc.as_str(), |(h, _)| h)
                .to_string()
        };
        if loopback && !host_cmp.is_empty() && !origin_cmp.is_empty() && host_cmp != origin_cmp {
            return StatusCode::FORBIDDEN.into_response();
        }
    }
    next.run(req).await
}

/// Echo: method, raw path-and-query, headers, body length, byte sum and (if small) the body.
async fn echo(req: Request) -> Response {
    if req.headers().contains_key("upgrade") {
        // An upgrade to a path without a WebSocket route: plain 404 like aiohttp.
        return (StatusCode::NOT_FOUND, "404: Not Found").into_response();
    }
    let (parts, body) = req.into_parts();
    let mut len = 0u64;
    let mut sum = 0u64;
    let mut small = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(_) => return (StatusCode::BAD_REQUEST, "body error").into_response(),
        };
        len += chunk.len() as u64;
        sum = chunk.iter().fold(sum, |s, b| s.wrapping_add(u64::from(*b)));
        if small.len() < 4096 {
            small.extend_from_slice(&chunk[..chunk.len().min(4096 - small.len())]);
        }
    }
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let mut resp = axum::Json(json!({
        "method": parts.method.as_str(),
        "path": pq,
        "headers": header_map(&parts.headers),
        "body_len": len,
        "body_sum": sum,
        "body": String::from_utf8_lossy(&small),
    }))
    .into_response();
    let h = resp.headers_mut();
    h.insert("x-upstream", "echo".parse().unwrap());
    h.insert("connection", "x-private-hop".parse().unwrap());
    h.insert("x-private-hop", "secret".parse().unwrap());
    h.insert("keep-alive", "timeout=5".parse().unwrap());
    resp
}

async fn stream(State(seen): State<Arc<Seen>>) -> Response {
    let body = async_stream_two_chunks(seen);
    Response::new(Body::from_stream(body))
}

fn async_stream_two_chunks(
    seen: Arc<Seen>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::unfold(0u8, move |step| {
        let seen = Arc::clone(&seen);
        async move {
            match step {
                0 => Some((Ok(Bytes::from_static(b"first-chunk;")), 1)),
                1 => {
                    seen.release_stream.notified().await;
                    Some((Ok(Bytes::from_static(b"second-chunk")), 2))
                }
                _ => None,
            }
        }
    })
}

async fn redirect_rel() -> Response {
    (StatusCode::FOUND, [("location", "/target?x=1")]).into_response()
}

async fn redirect_abs(State(addr): State<SocketAddr>) -> Response {
    (
        StatusCode::FOUND,
        [("location", format!("http://{addr}/abs/target"))],
    )
        .into_response()
}

async fn ws_route(State(seen): State<Arc<Seen>>, req: Request) -> Response {
    let (mut parts, _) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    seen.ws_requests
        .lock()
        .push((pq.clone(), header_map(&parts.headers)));
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let client_id =
        url::form_urlencoded::parse(pq.split_once('?').map_or("", |(_, q)| q).as_bytes())
            .find(|(k, _)| k == "clientId")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| "minted-sid-0001".to_string());
    upgrade.on_upgrade(move |socket| ws_session(socket, client_id))
}

/// A ComfyUI-like socket: `status` with `sid` first, then commands:
/// `binary:N` -> N-byte binary frame (type 1 preview header), `close:CODE` -> close frame,
/// `die` -> drop the connection without a close frame, `executed` -> an `executed` event,
/// anything else echoed (text and binary).
async fn ws_session(mut socket: WebSocket, sid: String) {
    let status =
        json!({"type":"status","data":{"status":{"exec_info":{"queue_remaining":0}},"sid":sid}});
    if socket
        .send(Message::Text(status.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    while let Some(Ok(msg)) = socket.next().await {
        match msg {
            Message::Text(t) => {
                let t = t.as_str();
                if let Some(n) = t.strip_prefix("binary:") {
                    let n: usize = n.parse().unwrap();
                    let mut frame = vec![0, 0, 0, 1, 0, 0, 0, 2];
                    frame.extend((0..n.saturating_sub(8)).map(|i| (i % 251) as u8));
                    let _ = socket.send(Message::Binary(frame.into())).await;
                } else if let Some(code) = t.strip_prefix("close:") {
                    let frame = CloseFrame {
                        code: code.parse().unwrap(),
                        reason: "bye from upstream".into(),
                    };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    // Wait for the reply, then end.
                    while let Some(Ok(_)) = socket.next().await {}
                    return;
                } else if t == "die" {
                    return; // dropped: TCP closes with no close frame
                } else if t == "executed" {
                    let ev = json!({"type":"executed","data":{"node":"9","display_node":"9","output":{"images":[{"filename":"out.png","subfolder":"","type":"output"}]},"prompt_id":"p-1"}});
                    let _ = socket.send(Message::Text(ev.to_string().into())).await;
                } else if socket.send(Message::Text(t.into())).await.is_err() {
                    return;
                }
            }
            // A failed send ends the loop on the next read.
            Message::Binary(b) => drop(socket.send(Message::Binary(b)).await),
            Message::Close(_) => return,
            _ => {}
        }
    }
}

/// Start the mini ComfyUI on a loopback port.
pub async fn start_upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_upstream_on(listener).await
}

pub async fn start_upstream_on(listener: TcpListener) -> Upstream {
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/ws", axum::routing::get(ws_route))
        .route("/stream", axum::routing::get(stream))
        .with_state(Arc::clone(&seen))
        .route("/redirect", axum::routing::get(redirect_rel))
        .merge(
            Router::new()
                .route("/redirect_abs", axum::routing::get(redirect_abs))
                .with_state(addr),
        )
        .fallback(echo)
        .layer(middleware::from_fn(comfy_origin_rule));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Upstream { addr, seen, task }
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub state: ProxyState,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub fn url(&self, pq: &str) -> String {
        format!("http://{}{pq}", self.addr)
    }
    pub fn ws_url(&self, pq: &str) -> String {
        format!("ws://{}{pq}", self.addr)
    }
}

pub fn config(upstream: &str) -> ProxyConfig {
    let mut c = ProxyConfig::new(upstream).unwrap();
    c.ws_close_grace = Duration::from_millis(500);
    c
}

/// Serve the proxy built by `builder` on a loopback port.
pub async fn start_proxy(builder: ProxyStateBuilder) -> Proxy {
    let state = builder.build().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(state.clone());
    let task = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Proxy { addr, state, task }
}

pub async fn proxy_for(upstream: &Upstream) -> Proxy {
    start_proxy(ProxyState::builder(config(&upstream.authority()))).await
}

pub type HttpClient = Client<HttpConnector, Body>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Send a request, return status, headers and the whole body.
pub async fn send(req: axum::http::Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let resp = tokio::time::timeout(Duration::from_secs(20), client().request(req))
        .await
        .expect("request hung")
        .unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, bytes)
}

pub async fn get(url: &str) -> (StatusCode, HeaderMap, Bytes) {
    send(axum::http::Request::get(url).body(Body::empty()).unwrap()).await
}

pub fn json(bytes: &Bytes) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}
