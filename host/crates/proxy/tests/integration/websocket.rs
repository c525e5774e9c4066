//! WebSocket relay against a real in-process upstream.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use comfyhost_protocol::WsMessage;
use comfyhost_proxy::ws::{HOST_CLIENT_ID_PREFIX, HostEvent};
use comfyhost_proxy::{InjectError, ProxyState, WsTap};
use futures::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn next(ws: &mut Ws) -> Message {
    tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("no WebSocket message within 10 s")
        .expect("socket ended")
        .expect("socket error")
}

async fn next_json(ws: &mut Ws) -> Value {
    match next(ws).await {
        Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
        other => panic!("expected text, got {other:?}"),
    }
}

async fn connect(url: &str) -> Ws {
    connect_async(url).await.unwrap().0
}

#[tokio::test]
async fn text_and_binary_relay_both_ways_with_client_id_passthrough() {
    let up = start_upstream().await;
    let proxy = proxy_for(&up).await;
    let mut ws = connect(&proxy.ws_url("/ws?clientId=browser-1")).await;

    let status = next_json(&mut ws).await;
    assert_eq!(status["type"], "status");
    assert_eq!(status["data"]["sid"], "browser-1");
    let (pq, headers) = up.seen.ws_requests.lock()[0].clone();
    assert_eq!(pq, "/ws?clientId=browser-1");
    assert_eq!(headers["host"], up.authority());

    // Feature-flag handshake passes untouched.
    let flags = r#"{"type":"feature_flags","data":{"supports_preview_metadata":true}}"#;
    ws.send(Message::text(flags)).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::text(flags));

    // Binary both ways, bytes intact.
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
    ws.send(Message::binary(blob.clone())).await.unwrap();
    assert_eq!(next(&mut ws).await, Message::binary(blob));
    ws.send(Message::text("binary:70000")).await.unwrap();
    let Message::Binary(preview) = next(&mut ws).await else {
        panic!("expected binary")
    };
    assert_eq!(preview.len(), 70000);
    assert_eq!(&preview[..8], &[0, 0, 0, 1, 0, 0, 0, 2]);
    assert_eq!(preview[8 + 300], (300 % 251) as u8);

    // Ping gets a pong.
    ws.send(Message::Ping(b"hi".as_slice().into()))
        .await
        .unwrap();
    loop {
        if let Message::Pong(p) = next(&mut ws).await {
            assert_eq!(p.as_ref(), b"hi");
            break;
        }
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn browser_origin_is_rewritten_for_the_upgrade() {
    let up = start_upstream().await;
    let proxy = proxy_for(&up).await;
    let mut req = proxy
        .ws_url("/ws?clientId=o1")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("host", "localhost:9999".parse().unwrap());
    req.headers_mut()
        .insert("origin", "http://localhost:9999".parse().unwrap());
    let (mut ws, _) = connect_async(req).await.unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "status");
    let (_, headers) = up.seen.ws_requests.lock()[0].clone();
    assert_eq!(headers["origin"], format!("http://{}", up.authority()));
    assert_eq!(headers["x-forwarded-host"], "localhost:9999");

    // A foreign origin is refused before any upstream connection.
    let mut req = proxy
        .ws_url("/ws?clientId=o2")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("host", "localhost:9999".parse().unwrap());
    req.headers_mut()
        .insert("origin", "http://evil.example".parse().unwrap());
    let err = connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    assert_eq!(up.seen.ws_requests.lock().len(), 1);
}

#[tokio::test]
async fn upstream_close_code_reaches_browser() {
    let up = start_upstream().await;
    let proxy = proxy_for(&up).await;
    let mut ws = connect(&proxy.ws_url("/ws?clientId=c1")).await;
    next(&mut ws).await;
    ws.send(Message::text("close:4001")).await.unwrap();
    match next(&mut ws).await {
        Message::Close(Some(f)) => {
            assert_eq!(u16::from(f.code), 4001);
            assert_eq!(f.reason.as_str(), "bye from upstream");
        }
        other => panic!("expected close, got {other:?}"),
    }
}

#[tokio::test]
async fn upstream_http_refusal_of_the_upgrade_is_passed_on() {
    let up = start_upstream().await;
    let proxy = proxy_for(&up).await;
    let err = connect_async(proxy.ws_url("/not-a-socket"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
}

#[derive(Default)]
struct RecordingTap {
    events: Mutex<Vec<(String, String)>>,
    binaries: Mutex<Vec<(String, usize)>>,
    closed: Mutex<Vec<String>>,
}

impl WsTap for RecordingTap {
    fn on_message(&self, client_id: &str, message: &WsMessage) {
        self.events
            .lock()
            .push((client_id.to_string(), message.kind().to_string()));
        if let WsMessage::Executed(e) = message {
            self.events.lock().push((
                client_id.to_string(),
                format!("file:{}", e.files()[0].filename),
            ));
        }
    }
    fn on_binary(&self, client_id: &str, frame: &bytes::Bytes) {
        self.binaries
            .lock()
            .push((client_id.to_string(), frame.len()));
    }
    fn on_close(&self, client_id: &str) {
        self.closed.lock().push(client_id.to_string());
    }
}

#[tokio::test]
async fn tap_sees_upstream_messages_per_client() {
    let up = start_upstream().await;
    let tap = Arc::new(RecordingTap::default());
    let proxy = start_proxy(ProxyState::builder(config(&up.authority())).tap(tap.clone())).await;
    let mut a = connect(&proxy.ws_url("/ws?clientId=alice")).await;
    let mut b = connect(&proxy.ws_url("/ws?clientId=bob")).await;
    next(&mut a).await;
    next(&mut b).await;
    a.send(Message::text("executed")).await.unwrap();
    assert_eq!(next_json(&mut a).await["type"], "executed");
    b.send(Message::text("binary:100")).await.unwrap();
    next(&mut b).await;
    b.close(None).await.unwrap();
    while b.next().await.is_some() {}

    let events = tap.events.lock().clone();
    assert!(events.contains(&("alice".into(), "status".into())));
    assert!(events.contains(&("bob".into(), "status".into())));
    assert!(events.contains(&("alice".into(), "executed".into())));
    assert!(events.contains(&("alice".into(), "file:out.png".into())));
    assert!(!events.iter().any(|(c, k)| c == "bob" && k == "executed"));
    assert_eq!(tap.binaries.lock().clone(), vec![("bob".to_string(), 100)]);
    // Close is reported once the relay task winds down.
    for _ in 0..100 {
        if tap.closed.lock().contains(&"bob".to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tap.closed.lock().clone(), vec!["bob".to_string()]);
}

#[tokio::test]
async fn injection_reaches_only_that_browser_and_is_namespaced() {
    let up = start_upstream().await;
    let proxy = proxy_for(&up).await;
    let mut a = connect(&proxy.ws_url("/ws?clientId=alice")).await;
    let mut b = connect(&proxy.ws_url("/ws?clientId=bob")).await;
    next(&mut a).await;
    next(&mut b).await;

    let ev = HostEvent::new(
        "comfyhost.status",
        json!({"gpu": "warming up", "eta_s": 12}),
    )
    .unwrap();
    proxy.state.ws().send_to("alice", &ev).unwrap();
    let got = next_json(&mut a).await;
    assert_eq!(
        got,
        json!({"type": "comfyhost.status", "data": {"gpu": "warming up", "eta_s": 12}})
    );

    // bob got nothing injected: his next message is the echo of what he sends.
    b.send(Message::text("ping-bob")).await.unwrap();
    assert_eq!(next(&mut b).await, Message::text("ping-bob"));

    assert!(HostEvent::new("executed", Value::Null).is_err());
    assert_eq!(
        proxy.state.ws().send_to("nobody", &ev),
        Err(InjectError::NotConnected("nobody".into()))
    );
    let mut clients = proxy.state.ws().clients();
    clients.sort();
    assert_eq!(clients, ["alice", "bob"]);
    assert_eq!(proxy.state.ws().broadcast(&ev), 2);
    assert_eq!(next_json(&mut b).await["type"], "comfyhost.status");
}

#[tokio::test]
async fn socket_without_client_id_is_registered_under_the_minted_sid() {
    let up = start_upstream().await;
    let proxy = proxy_for(&up).await;
    let mut ws = connect(&proxy.ws_url("/ws")).await;
    assert_eq!(next_json(&mut ws).await["data"]["sid"], "minted-sid-0001");
    let ev = HostEvent::new("comfyhost.hello", json!(1)).unwrap();
    proxy.state.ws().send_to("minted-sid-0001", &ev).unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "comfyhost.hello");
}

#[tokio::test]
async fn host_socket_uses_its_own_client_id() {
    let up = start_upstream().await;
    let proxy = proxy_for(&up).await;
    let mut browser = connect(&proxy.ws_url("/ws?clientId=browser-7")).await;
    next(&mut browser).await;
    let mut host = proxy.state.connect_host_socket().await.unwrap();
    assert!(host.client_id.starts_with(HOST_CLIENT_ID_PREFIX));
    let Some(Ok(Message::Text(t))) = host.socket.next().await else {
        panic!()
    };
    let v: Value = serde_json::from_str(t.as_str()).unwrap();
    assert_eq!(v["data"]["sid"], host.client_id.as_str());
    let paths: Vec<String> = up
        .seen
        .ws_requests
        .lock()
        .iter()
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(
        paths,
        [
            "/ws?clientId=browser-7".to_string(),
            format!("/ws?clientId={}", host.client_id)
        ]
    );
    // The browser's socket is untouched.
    browser.send(Message::text("still-here")).await.unwrap();
    assert_eq!(next(&mut browser).await, Message::text("still-here"));
}

#[tokio::test]
async fn prefixed_websocket_path_is_stripped() {
    let up = start_upstream().await;
    let cfg = config(&up.authority()).with_prefix("/comfy").unwrap();
    let proxy = start_proxy(ProxyState::builder(cfg)).await;
    let mut ws = connect(&proxy.ws_url("/comfy/ws?clientId=p1")).await;
    assert_eq!(next_json(&mut ws).await["data"]["sid"], "p1");
    assert_eq!(up.seen.ws_requests.lock()[0].0, "/ws?clientId=p1");
}
