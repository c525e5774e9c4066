//! Added latency of the proxy and WebSocket relay throughput, on loopback.
//!
//! Starts a tiny ComfyUI stand-in (GET /system_stats, POST /prompt, /ws flood) and the proxy
//! in one process, then measures the same sequential keep-alive requests direct and through
//! the proxy. Run: `cargo bench -p comfyhost-proxy --bench proxy_latency`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{Message as AxMessage, WebSocketUpgrade};
use axum::routing::{get, post};
use comfyhost_proxy::{ProxyConfig, ProxyState, router};
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

const N: usize = 3000;
const WARMUP: usize = 300;

const SYSTEM_STATS: &str = r#"{"system":{"os":"posix","ram_total":67108864000,"ram_free":60000000000,"comfyui_version":"0.3.64","required_frontend_version":"1.27.10","installed_templates_version":"0.1.95","required_templates_version":"0.1.95","python_version":"3.12.3 (main, Aug 14 2025, 17:47:21) [GCC 13.3.0]","pytorch_version":"2.8.0+cu128","embedded_python":false,"argv":["main.py","--listen","127.0.0.1","--port","8188"]},"devices":[{"name":"cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync","type":"cuda","index":0,"vram_total":25386352640,"vram_free":24000000000,"torch_vram_total":0,"torch_vram_free":0}]}"#;

async fn upstream() -> SocketAddr {
    let app = Router::new()
        .route("/system_stats", get(|| async { ([("content-type", "application/json")], SYSTEM_STATS) }))
        .route(
            "/prompt",
            post(|body: axum::body::Bytes| async move {
                let n = body.len();
                (
                    [("content-type", "application/json")],
                    format!(r#"{{"prompt_id":"8f0d7a4e-6a8e-4b8e-9c1a-{n:012}","number":{n},"node_errors":{{}}}}"#),
                )
            }),
        )
        .route("/ws", get(|ws: WebSocketUpgrade| async move { ws.on_upgrade(flood) }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// On `flood:<count>:<size>:<text|binary>` send that many frames, then `done`.
async fn flood(mut socket: axum::extract::ws::WebSocket) {
    while let Some(Ok(AxMessage::Text(cmd))) = socket.next().await {
        let parts: Vec<&str> = cmd.split(':').collect();
        let (count, size): (usize, usize) = (parts[1].parse().unwrap(), parts[2].parse().unwrap());
        let text = "x".repeat(size);
        let bin = bytes::Bytes::from(vec![7u8; size]);
        for _ in 0..count {
            let msg = if parts[3] == "text" {
                AxMessage::Text(text.clone().into())
            } else {
                AxMessage::Binary(bin.clone())
            };
            socket.feed(msg).await.unwrap();
        }
        socket.send(AxMessage::Text("done".into())).await.unwrap();
    }
}

async fn proxy(upstream: SocketAddr) -> SocketAddr {
    let state = ProxyState::new(ProxyConfig::new(&upstream.to_string()).unwrap()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

async fn measure(
    client: &Client<HttpConnector, Body>,
    addr: SocketAddr,
    post_body: Option<&str>,
) -> Vec<Duration> {
    let one = || async {
        let req = match post_body {
            None => http::Request::get(format!("http://{addr}/system_stats"))
                .body(Body::empty())
                .unwrap(),
            Some(b) => http::Request::post(format!("http://{addr}/prompt"))
                .header("content-type", "application/json")
                .body(Body::from(b.to_string()))
                .unwrap(),
        };
        let t = Instant::now();
        let resp = client.request(req).await.unwrap();
        assert!(resp.status().is_success());
        let _ = resp.into_body().collect().await.unwrap();
        t.elapsed()
    };
    for _ in 0..WARMUP {
        one().await;
    }
    let mut out = Vec::with_capacity(N);
    for _ in 0..N {
        out.push(one().await);
    }
    out.sort();
    out
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn ws_throughput(addr: SocketAddr, count: usize, size: usize, kind: &str) -> (f64, f64) {
    let (mut ws, _) = connect_async(format!("ws://{addr}/ws?clientId=bench"))
        .await
        .unwrap();
    // Warm up.
    ws.send(Message::text(format!("flood:100:{size}:{kind}")))
        .await
        .unwrap();
    while let Some(Ok(m)) = ws.next().await {
        if m == Message::text("done") {
            break;
        }
    }
    let t = Instant::now();
    ws.send(Message::text(format!("flood:{count}:{size}:{kind}")))
        .await
        .unwrap();
    let mut got = 0usize;
    while let Some(Ok(m)) = ws.next().await {
        if m == Message::text("done") {
            break;
        }
        got += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(got, count);
    (count as f64 / secs, (count * size) as f64 / secs / 1e6)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let up = upstream().await;
        let px = proxy(up).await;
        let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build_http();
        let prompt = serde_json::json!({
            "client_id": "bench",
            "prompt": (1..=12).map(|i| (i.to_string(), serde_json::json!({
                "class_type": "KSampler",
                "inputs": {"seed": 1234567 + i, "steps": 20, "cfg": 7.0, "sampler_name": "euler",
                            "scheduler": "normal", "denoise": 1.0, "model": ["4", 0]}
            }))).collect::<serde_json::Map<_, _>>(),
        })
        .to_string();

        println!("proxy_latency: N={N} sequential keep-alive requests per row (after {WARMUP} warmup), loopback");
        println!("{:<22} {:>10} {:>10} {:>10} {:>10}", "case", "p50 us", "p99 us", "+p50 us", "+p99 us");
        for (name, body) in [("GET /system_stats", None), ("POST /prompt", Some(prompt.as_str()))] {
            let direct = measure(&client, up, body).await;
            let proxied = measure(&client, px, body).await;
            let (d50, d99) = (percentile(&direct, 0.5), percentile(&direct, 0.99));
            let (p50, p99) = (percentile(&proxied, 0.5), percentile(&proxied, 0.99));
            println!("{:<22} {:>10.1} {:>10.1}", format!("{name} direct"), us(d50), us(d99));
            println!(
                "{:<22} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
                format!("{name} proxy"),
                us(p50),
                us(p99),
                us(p50) - us(d50),
                us(p99) - us(d99)
            );
        }

        println!("\nWebSocket upstream->browser relay throughput");
        println!("{:<28} {:>12} {:>10}", "case", "msgs/s", "MB/s");
        for (label, count, size, kind) in
            [("1 KiB text", 50_000, 1024, "text"), ("64 KiB binary", 5_000, 65_536, "binary")]
        {
            let (dm, dmb) = ws_throughput(up, count, size, kind).await;
            let (pm, pmb) = ws_throughput(px, count, size, kind).await;
            println!("{:<28} {:>12.0} {:>10.1}", format!("{label} direct"), dm, dmb);
            println!("{:<28} {:>12.0} {:>10.1}", format!("{label} proxy"), pm, pmb);
        }
    });
}
