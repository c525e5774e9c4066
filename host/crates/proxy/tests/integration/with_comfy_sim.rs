//! End to end through the proxy against the ComfyUI simulator (`comfy-sim`), the way a browser
//! uses ComfyUI: socket with its clientId, prompt with Origin, outputs via the tap, `/view`,
//! userdata with `%2F`.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use comfy_sim::SimOptions;
use comfyhost_protocol::WsMessage;
use comfyhost_proxy::{ProxyState, WsTap};
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Default)]
struct Outputs(Mutex<Vec<(String, String)>>);

impl WsTap for Outputs {
    fn on_message(&self, client_id: &str, message: &WsMessage) {
        if let WsMessage::Executed(e) = message {
            for f in e.files() {
                self.0.lock().push((client_id.to_string(), f.filename));
            }
        }
    }
}

#[tokio::test]
async fn browser_session_through_the_proxy_against_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SimOptions {
        port: 0,
        output_dir: dir.path().join("output"),
        input_dir: dir.path().join("input"),
        user_dir: dir.path().join("user"),
        temp_dir: dir.path().join("temp"),
        models_dir: dir.path().join("models"),
        node_delay: Duration::from_millis(1),
        ..SimOptions::default()
    };
    for d in ["output", "input", "user", "temp", "models"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_addr = listener.local_addr().unwrap();
    let sim = tokio::spawn(comfy_sim::serve(opts, listener));

    let outputs = Arc::new(Outputs::default());
    let cfg = config(&sim_addr.to_string()).with_prefix("/comfy").unwrap();
    let proxy = start_proxy(ProxyState::builder(cfg).tap(outputs.clone())).await;
    // What a browser on this machine sends: Host and Origin name the proxy, not ComfyUI.
    let public = format!("localhost:{}", proxy.addr.port());

    let mut req = proxy
        .ws_url("/comfy/ws?clientId=student01")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("host", public.parse().unwrap());
    req.headers_mut()
        .insert("origin", format!("http://{public}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();

    let prompt = json!({
        "client_id": "student01",
        "prompt": {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "probe"}}
        }
    });
    let req = Request::post(proxy.url("/comfy/api/prompt"))
        .header("host", &public)
        .header("origin", format!("http://{public}"))
        .header("content-type", "application/json")
        .body(Body::from(prompt.to_string()))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let prompt_id = json(&body)["prompt_id"].as_str().unwrap().to_string();

    // Wait for the end of the prompt on the browser's own socket.
    let mut kinds = Vec::new();
    let done = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                kinds.push(v["type"].as_str().unwrap_or_default().to_string());
                if v["type"] == "executing"
                    && v["data"]["node"].is_null()
                    && v["data"]["prompt_id"] == prompt_id.as_str()
                {
                    return;
                }
            }
        }
        panic!("socket ended early");
    })
    .await;
    assert!(done.is_ok(), "prompt never finished; saw {kinds:?}");
    assert!(kinds.contains(&"executed".to_string()), "{kinds:?}");

    let files = outputs.0.lock().clone();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].0, "student01");
    let (status, headers, png) = get(&proxy.url(&format!(
        "/comfy/api/view?filename={}&type=output",
        files[0].1
    )))
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // Saved workflows live under userdata with an encoded slash.
    let req = Request::post(proxy.url("/comfy/api/userdata/workflows%2Fmine.json"))
        .header("host", &public)
        .header("origin", format!("http://{public}"))
        .body(Body::from(r#"{"nodes":[]}"#))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = get(&proxy.url("/comfy/api/userdata/workflows%2Fmine.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body), json!({"nodes": []}));

    sim.abort();
}
