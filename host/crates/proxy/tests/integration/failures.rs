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

#[tokio::test]
async fn websocket_to_dead_upstream_is_closed_with_1013() {
    let (_held, up) = dead_port().await;
    let proxy = start_proxy(
        ProxyState::builder(config(&up)).upstream_state(|| UpstreamSnapshot::new("starting")),
    )
    .await;
    let (mut ws, _) = connect_async(proxy.ws_url("/ws?clientId=x")).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("socket left hanging");
    match msg {
        Some(Ok(Message::Close(Some(f)))) => {
            assert_eq!(u16::from(f.code), 1013);
            assert_eq!(
                f.reason.as_str(),
                "ComfyUI is not running (state: starting)"
            );
        }
        other => panic!("expected close 1013, got {other:?}"),
    }
}

#[tokio::test]
async fn upstream_dying_mid_session_closes_the_browser_socket() {
    let up = start_upstream().await;
    let proxy = start_proxy(ProxyState::builder(config(&up.authority()))).await;
    let (mut ws, _) = connect_async(proxy.ws_url("/ws?clientId=d1"))
        .await
        .unwrap();
    ws.next().await.unwrap().unwrap();
    ws.send(Message::text("die")).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("socket left hanging");
    match msg {
        Some(Ok(Message::Close(Some(f)))) => {
            assert_eq!(u16::from(f.code), 1011);
            assert!(
                f.reason.as_str().starts_with("ComfyUI connection lost"),
                "{}",
                f.reason
            );
        }
        other => panic!("expected close 1011, got {other:?}"),
    }
    // The relay unregisters the socket once it wound down.
    for _ in 0..100 {
        if !proxy.state.ws().is_connected("d1") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("d1 still registered");
}

#[tokio::test]
async fn upstream_lost_during_a_planned_restart_closes_with_1012() {
    let up = start_upstream().await;
    let proxy =
        start_proxy(ProxyState::builder(config(&up.authority())).upstream_state(restarting)).await;
    let (mut ws, _) = connect_async(proxy.ws_url("/ws?clientId=k1"))
        .await
        .unwrap();
    ws.next().await.unwrap().unwrap();
    ws.send(Message::text("die")).await.unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("socket left hanging");
    match msg {
        Some(Ok(Message::Close(Some(f)))) => {
            assert_eq!(u16::from(f.code), 1012);
            assert_eq!(
                f.reason.as_str(),
                "ComfyUI connection lost (state: restarting)"
            );
        }
        other => panic!("expected close 1012, got {other:?}"),
    }
}
