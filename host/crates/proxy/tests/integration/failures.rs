//! ComfyUI down, restarting or dying mid-session: fast, explicit answers; no hanging sockets.

use std::time::Duration;

use crate::common::*;
use axum::http::StatusCode;
use comfyhost_proxy::{ProxyState, UpstreamSnapshot};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;

/// A loopback port with nothing listening. The returned socket is bound but never listens:
/// connecting is refused, and while it lives no parallel test can take the port (releasing a
/// probed port instead let another test's server answer on it).
async fn dead_port() -> (tokio::net::TcpSocket, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr.to_string())
}

fn restarting() -> UpstreamSnapshot {
    UpstreamSnapshot {
        state: "restarting".into(),
        restarting: true,
        details: Some(json!({"attempt": 2})),
    }
}

#[tokio::test]
async fn upstream_down_gives_503_json_with_supervisor_state() {
    let (_held, up) = dead_port().await;
    let proxy = start_proxy(ProxyState::builder(config(&up)).upstream_state(restarting)).await;
    let (status, headers, body) =
        tokio::time::timeout(Duration::from_secs(5), get(&proxy.url("/api/system_stats")))
            .await
            .expect("the proxy hung on a dead upstream");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["content-type"], "application/json");
    let v = json(&body);
    assert_eq!(v["error"]["type"], "comfyui_unavailable");
    assert_eq!(
        v["error"]["message"],
        "ComfyUI is not running (state: restarting)"
    );
    assert!(!v["error"]["details"].as_str().unwrap().is_empty());
    assert_eq!(v["error"]["extra_info"]["supervisor"]["attempt"], 2);
    assert_eq!(v["error"]["extra_info"]["upstream"], up);
}

#[tokio::test]
async fn upstream_that_accepts_but_never_answers_times_out_with_504() {
    // A listener that accepts connections and never reads or writes.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    let mut cfg = config(&addr.to_string());
    cfg.response_timeout = Some(Duration::from_millis(300));
    let proxy = start_proxy(ProxyState::builder(cfg)).await;
    let (status, _, body) = get(&proxy.url("/object_info")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(json(&body)["error"]["type"], "comfyui_timeout");
    hold.abort();
}

#[tokio::test]
async fn upstream_that_comes_back_is_used_again() {
    let (held, port) = dead_port().await;
    let proxy = start_proxy(ProxyState::builder(config(&port))).await;
    assert_eq!(
        get(&proxy.url("/x")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    drop(held);
    let up = start_upstream_on(TcpListener::bind(&port).await.unwrap()).await;
    let (status, _, body) = get(&proxy.url("/x")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["headers"]["host"], up.authority());
}

/// Next text frame as JSON (pings and binary frames skipped).
async fn next_text(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> serde_json::Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no frame within 5 s")
            .expect("socket open")
            .expect("frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(f) => panic!("the browser socket was closed: {f:?}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn websocket_to_dead_upstream_stays_open_and_connects_when_comfyui_is_back() {
    let (held, up) = dead_port().await;
    let proxy = start_proxy(
        ProxyState::builder(config(&up)).upstream_state(|| UpstreamSnapshot::new("starting")),
    )
    .await;
    let (mut ws, _) = connect_async(proxy.ws_url("/ws?clientId=x")).await.unwrap();
    // The host speaks for ComfyUI: its status with an empty queue, then why.
    let status = next_text(&mut ws).await;
    assert_eq!(status["type"], "status");
    assert_eq!(status["data"]["sid"], "x");
    assert_eq!(status["data"]["status"]["exec_info"]["queue_remaining"], 0);
    let notice = next_text(&mut ws).await;
    assert_eq!(notice["type"], "comfyhost.comfyui");
    assert_eq!(notice["data"]["state"], "starting");
    assert_eq!(notice["data"]["connected"], false);
    // Host messages reach it while ComfyUI is down.
    let ev = comfyhost_proxy::HostEvent::new("comfyhost.hello", json!(1)).unwrap();
    proxy.state.ws().send_to("x", &ev).unwrap();
    assert_eq!(next_text(&mut ws).await["type"], "comfyhost.hello");
    // The page's feature flags are remembered for ComfyUI.
    ws.send(Message::text(
        json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}}).to_string(),
    ))
    .await
    .unwrap();

    // ComfyUI comes back on its port: the same socket is connected under the same clientId.
    drop(held);
    let upstream = start_upstream_on(TcpListener::bind(&up).await.unwrap()).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_text(&mut ws).await);
        if seen.iter().any(|m| m["type"] == "feature_flags") {
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|m| m["type"] == "comfyhost.comfyui" && m["data"]["connected"] == true),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|m| m["type"] == "status" && m["data"]["sid"] == "x"),
        "{seen:?}"
    );
    // The simulated ComfyUI echoes: the replayed feature flags came back.
    assert!(
        seen.iter().any(|m| m["type"] == "feature_flags"),
        "{seen:?}"
    );
    assert_eq!(upstream.seen.ws_requests.lock().len(), 1);
    assert_eq!(upstream.seen.ws_requests.lock()[0].0, "/ws?clientId=x");
    ws.send(Message::text("echo me")).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => assert_eq!(t.as_str(), "echo me"),
        other => panic!("no echo: {other:?}"),
    }
}

#[tokio::test]
async fn upstream_dying_mid_session_keeps_the_browser_socket_and_reconnects() {
    let (held, port) = dead_port().await;
    drop(held);
    let listener = TcpListener::bind(&port).await.unwrap();
    let up = start_upstream_on(listener).await;
    let proxy = start_proxy(ProxyState::builder(config(&port)).upstream_state(restarting)).await;
    let (mut ws, _) = connect_async(proxy.ws_url("/ws?clientId=d1"))
        .await
        .unwrap();
    ws.next().await.unwrap().unwrap();
    ws.send(Message::text("die")).await.unwrap();
    // Not closed: ComfyUI's queue is reported empty, and why.
    let status = next_text(&mut ws).await;
    assert_eq!(status["type"], "status", "{status}");
    assert_eq!(status["data"]["status"]["exec_info"]["queue_remaining"], 0);
    let notice = next_text(&mut ws).await;
    assert_eq!(notice["type"], "comfyhost.comfyui");
    assert_eq!(notice["data"]["state"], "restarting");
    assert_eq!(notice["data"]["restarting"], true);
    assert!(proxy.state.ws().is_connected("d1"));
    // The simulated ComfyUI is still listening: the session reconnects to it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while up.seen.ws_requests.lock().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no reconnection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.seen.ws_requests.lock()[1].0, "/ws?clientId=d1");
    let back = next_text(&mut ws).await;
    assert_eq!(back["type"], "comfyhost.comfyui");
    assert_eq!(back["data"]["connected"], true);

    // A page that closes its socket is unregistered.
    ws.close(None).await.unwrap();
    for _ in 0..100 {
        if !proxy.state.ws().is_connected("d1") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("d1 still registered");
}

#[tokio::test]
async fn a_page_without_client_id_gets_a_minted_one_while_comfyui_is_down() {
    let (_held, up) = dead_port().await;
    let proxy = start_proxy(ProxyState::builder(config(&up))).await;
    let (mut ws, _) = connect_async(proxy.ws_url("/ws")).await.unwrap();
    let status = next_text(&mut ws).await;
    let sid = status["data"]["sid"].as_str().unwrap().to_string();
    assert_eq!(sid.len(), 32, "{sid}");
    assert!(proxy.state.ws().is_connected(&sid));
}
