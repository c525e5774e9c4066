//! One browser socket's session: relays frames to and from ComfyUI's socket, with tap and
//! injection, and outlives ComfyUI.
//!
//! The browser's socket belongs to the host, not to ComfyUI's lifetime. When ComfyUI's socket
//! goes (crash, restart, stop) the browser socket stays open: the page gets a `status` with an
//! empty queue and a `comfyhost.comfyui` notice, host messages (a job's terminal state, the
//! overlay) still reach it, and the session reconnects to ComfyUI under the same clientId as
//! soon as ComfyUI answers again (replaying the page's `feature_flags`). The stock frontend
//! therefore never sees a close/reconnect storm while ComfyUI restarts.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use http::HeaderMap;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::host_event::HostEvent;
use super::hub::{Registration, WsHub};
use super::tap::parse_for_tap;
use super::upstream_ws::{self, UpstreamSocket, UpstreamWsError};
use crate::state::ProxyState;

/// A close frame; the reason is cut to the 123 bytes a close frame can carry.
pub(crate) fn close_frame(code: CloseCode, reason: &str) -> CloseFrame {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    CloseFrame {
        code,
        reason: Utf8Bytes::from(reason[..end].to_string()),
    }
}

/// How to open ComfyUI's side of this session again.
pub(crate) struct Reconnect {
    pub(crate) state: ProxyState,
    /// ComfyUI path and query as the browser asked (the clientId is added when missing).
    pub(crate) path_and_query: String,
    /// The browser's headers, already rewritten for ComfyUI.
    pub(crate) headers: HeaderMap,
    pub(crate) ws_config: WebSocketConfig,
}

/// What the session needs besides the two sockets.
pub(crate) struct RelayContext {
    /// `?clientId=` of the browser socket, if it sent one.
    pub(crate) client_id: Option<String>,
    pub(crate) hub: Arc<WsHub>,
    pub(crate) injection_queue: usize,
    pub(crate) close_grace: Duration,
    pub(crate) reconnect: Reconnect,
}

/// Frames fed to the browser before a flush is forced.
const MAX_BATCH: usize = 64;
/// First and longest wait between attempts to reach ComfyUI again.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(2);
/// Longest a reconnection handshake may take before the next attempt.
const RECONNECT_HANDSHAKE: Duration = Duration::from_secs(10);

type Upstream = (
    SplitSink<UpstreamSocket, Message>,
    SplitStream<UpstreamSocket>,
);

/// Why the ComfyUI side of the session ended.
enum UpstreamEnd {
    /// ComfyUI went away (no close frame, or a going-away/restart/error code): reconnect.
    Lost(String),
    /// ComfyUI closed this socket on purpose with this frame: pass it on and end.
    Closed(Option<CloseFrame>),
}

/// How the session ended.
enum SessionEnd {
    /// The browser sent a close frame (forwarded to ComfyUI when connected).
    BrowserClosed,
    /// The browser vanished or writing to it failed.
    BrowserGone,
    /// ComfyUI closed the socket on purpose; the frame went to the browser.
    UpstreamClosed,
}

/// Close codes that mean "ComfyUI is going away / restarting", not "this client is refused".
fn is_going_away(frame: Option<&CloseFrame>) -> bool {
    frame.is_none_or(|f| {
        matches!(
            f.code,
            CloseCode::Away
                | CloseCode::Abnormal
                | CloseCode::Error
                | CloseCode::Restart
                | CloseCode::Again
        )
    })
}

/// `path_and_query` with `clientId=<id>` when it carries none.
fn with_client_id(path_and_query: &str, id: &str) -> String {
    if super::client_id_from_query(path_and_query).is_some() {
        return path_and_query.to_string();
    }
    let enc: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    match path_and_query.split_once('?') {
        Some((path, "")) => format!("{path}?clientId={enc}"),
        Some(_) => format!("{path_and_query}&clientId={enc}"),
        None => format!("{path_and_query}?clientId={enc}"),
    }
}

/// ComfyUI's `status` message with an empty queue (`sid` only on a socket's first one).
fn empty_status(sid: Option<&str>) -> Utf8Bytes {
    let mut data = json!({"status": {"exec_info": {"queue_remaining": 0}}});
    if let Some(sid) = sid {
        data["sid"] = json!(sid);
    }
    Utf8Bytes::from(json!({"type": "status", "data": data}).to_string())
}

/// `comfyhost.comfyui` notice: what the supervisor says about ComfyUI right now.
fn comfyui_notice(state: &ProxyState, connected: bool) -> Option<Utf8Bytes> {
    let snapshot = state.upstream_state().snapshot();
    let data = json!({
        "connected": connected,
        "state": if connected { "ready".to_string() } else { snapshot.state },
        "restarting": !connected && snapshot.restarting,
        "details": if connected { serde_json::Value::Null } else { snapshot.details.unwrap_or_default() },
    });
    HostEvent::new("comfyhost.comfyui", data)
        .ok()
        .map(|e| Utf8Bytes::from(e.to_text()))
}

/// Whether a browser text frame is the frontend's `feature_flags` announcement.
fn is_feature_flags(text: &str) -> bool {
    text.contains("feature_flags")
        && serde_json::from_str::<serde_json::Value>(text)
            .is_ok_and(|v| v["type"] == "feature_flags")
}

/// Relay until the browser leaves (or ComfyUI closes it on purpose). `upstream` is `None`
/// when ComfyUI could not be reached at connect time.
pub(crate) async fn relay<B>(browser: B, upstream: Option<UpstreamSocket>, ctx: RelayContext)
where
    B: Stream<Item = Result<Message, WsError>>
        + Sink<Message, Error = WsError>
        + Unpin
        + Send
        + 'static,
{
    let RelayContext {
        client_id,
        hub,
        injection_queue,
        close_grace,
        reconnect,
    } = ctx;
    let (mut b_tx, mut b_rx) = browser.split();
    let (inject_tx, mut inject_rx) = mpsc::channel::<Message>(injection_queue);
    let mut registration: Option<Registration> =
        client_id.map(|id| hub.register(id, inject_tx.clone()));
    let mut upstream: Option<Upstream> = upstream.map(StreamExt::split);
    let mut client_flags: Option<Utf8Bytes> = None;

    if upstream.is_none() {
        // ComfyUI is down: the host speaks for it, with a clientId of its own minting when
        // the page sent none (as ComfyUI would: a uuid4 in hex).
        let id = match &registration {
            Some(r) => r.client_id().to_string(),
            None => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                registration = Some(hub.register(id.clone(), inject_tx.clone()));
                id
            }
        };
        let mut first = vec![Message::Text(empty_status(Some(&id)))];
        first.extend(comfyui_notice(&reconnect.state, false).map(Message::Text));
        for m in first {
            if b_tx.feed(m).await.is_err() {
                return;
            }
        }
        if b_tx.flush().await.is_err() {
            return;
        }
    }

    let mut retry = RETRY_FIRST;
    let end = loop {
        match upstream.as_mut() {
            Some((u_tx, u_rx)) => {
                let step = connected_step(
                    &hub,
                    &mut registration,
                    &inject_tx,
                    &mut inject_rx,
                    &mut b_tx,
                    &mut b_rx,
                    u_tx,
                    u_rx,
                    &mut client_flags,
                    close_grace,
                )
                .await;
                match step {
                    Step::Continue => {}
                    Step::End(end) => break end,
                    Step::UpstreamEnded(UpstreamEnd::Closed(frame)) => {
                        let _ = b_tx.send(Message::Close(frame)).await;
                        break SessionEnd::UpstreamClosed;
                    }
                    Step::UpstreamEnded(UpstreamEnd::Lost(cause)) => {
                        upstream = None;
                        retry = RETRY_FIRST;
                        let id = match &registration {
                            Some(r) => r.client_id().to_string(),
                            None => {
                                let id = uuid::Uuid::new_v4().simple().to_string();
                                registration = Some(hub.register(id.clone(), inject_tx.clone()));
                                id
                            }
                        };
                        let snapshot = reconnect.state.upstream_state().snapshot();
                        tracing::info!(
                            client_id = %id,
                            %cause,
                            state = %snapshot.state,
                            "ComfyUI WebSocket lost; the browser socket stays open and reconnects"
                        );
                        let mut notice = vec![Message::Text(empty_status(None))];
                        notice.extend(comfyui_notice(&reconnect.state, false).map(Message::Text));
                        if send_all(&mut b_tx, notice).await.is_err() {
                            break SessionEnd::BrowserGone;
                        }
                    }
                }
            }
            None => {
                tokio::select! {
                    Some(frame) = inject_rx.recv() => {
                        if b_tx.send(frame).await.is_err() {
                            break SessionEnd::BrowserGone;
                        }
                    }
                    msg = b_rx.next() => match msg {
                        Some(Ok(Message::Close(frame))) => {
                            let _ = b_tx.send(Message::Close(frame)).await;
                            break SessionEnd::BrowserClosed;
                        }
                        Some(Ok(Message::Text(t))) if is_feature_flags(&t) => client_flags = Some(t),
                        // Nothing to send them to; ComfyUI gets the flags on reconnection.
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break SessionEnd::BrowserGone,
                    },
                    () = tokio::time::sleep(retry) => {
                        retry = (retry * 2).min(RETRY_MAX);
                        let id = registration.as_ref().map(|r| r.client_id().to_string());
                        // Boxed: the connect-and-handshake state is large and rare; kept inline it
                        // would size every idle session's task for it.
                        if let Some(mut socket) = Box::pin(reconnect_upstream(&reconnect, id.as_deref())).await {
                            if let Some(flags) = &client_flags {
                                let _ = socket.send(Message::Text(flags.clone())).await;
                            }
                            tracing::info!(client_id = id.as_deref().unwrap_or("-"), "browser socket reconnected to ComfyUI");
                            upstream = Some(socket.split());
                            let notice: Vec<Message> = comfyui_notice(&reconnect.state, true)
                                .map(Message::Text)
                                .into_iter()
                                .collect();
                            if send_all(&mut b_tx, notice).await.is_err() {
                                break SessionEnd::BrowserGone;
                            }
                        }
                    }
                }
            }
        }
    };

    // Wind down: tell the side still there, and give close handshakes a moment.
    if let Some((mut u_tx, mut u_rx)) = upstream {
        match end {
            SessionEnd::BrowserGone => {
                let _ = u_tx
                    .send(Message::Close(Some(close_frame(
                        CloseCode::Away,
                        "browser disconnected",
                    ))))
                    .await;
            }
            SessionEnd::BrowserClosed | SessionEnd::UpstreamClosed => {}
        }
        let _ =
            tokio::time::timeout(close_grace, async { while u_rx.next().await.is_some() {} }).await;
    }
    if matches!(end, SessionEnd::UpstreamClosed | SessionEnd::BrowserClosed) {
        let _ =
            tokio::time::timeout(close_grace, async { while b_rx.next().await.is_some() {} }).await;
    }
    drop(registration);
}

async fn send_all<BT>(b_tx: &mut BT, messages: Vec<Message>) -> Result<(), WsError>
where
    BT: Sink<Message, Error = WsError> + Unpin,
{
    for m in messages {
        b_tx.feed(m).await?;
    }
    b_tx.flush().await
}

/// Opens ComfyUI's socket again under the session's clientId; `None` while it is not there.
async fn reconnect_upstream(
    reconnect: &Reconnect,
    client_id: Option<&str>,
) -> Option<UpstreamSocket> {
    let config = reconnect.state.config();
    let pq = match client_id {
        Some(id) => with_client_id(&reconnect.path_and_query, id),
        None => reconnect.path_and_query.clone(),
    };
    let handshake = config
        .response_timeout
        .map_or(RECONNECT_HANDSHAKE, |t| t.min(RECONNECT_HANDSHAKE));
    match upstream_ws::connect(
        &reconnect.state.upstream(),
        &pq,
        reconnect.headers.clone(),
        config.connect_timeout,
        Some(handshake),
        reconnect.ws_config,
    )
    .await
    {
        Ok((socket, _)) => Some(socket),
        Err(UpstreamWsError::Unreachable { .. }) => None,
        Err(e) => {
            tracing::debug!(error = %e, "reconnecting a browser socket to ComfyUI failed");
            None
        }
    }
}

/// One round while ComfyUI's socket is open.
enum Step {
    Continue,
    End(SessionEnd),
    UpstreamEnded(UpstreamEnd),
}

/// One thing to handle while connected.
enum Incoming {
    Upstream(Option<Result<Message, WsError>>),
    Injected(Message),
    Browser(Option<Result<Message, WsError>>),
}

#[allow(clippy::too_many_arguments)]
async fn connected_step<BT, BR>(
    hub: &Arc<WsHub>,
    registration: &mut Option<Registration>,
    inject_tx: &mpsc::Sender<Message>,
    inject_rx: &mut mpsc::Receiver<Message>,
    b_tx: &mut BT,
    b_rx: &mut BR,
    u_tx: &mut SplitSink<UpstreamSocket, Message>,
    u_rx: &mut SplitStream<UpstreamSocket>,
    client_flags: &mut Option<Utf8Bytes>,
    close_grace: Duration,
) -> Step
where
    BT: Sink<Message, Error = WsError> + Unpin,
    BR: Stream<Item = Result<Message, WsError>> + Unpin,
{
    let first = tokio::select! {
        biased;
        msg = u_rx.next() => Incoming::Upstream(msg),
        Some(frame) = inject_rx.recv() => Incoming::Injected(frame),
        msg = b_rx.next() => Incoming::Browser(msg),
    };
    if let Incoming::Browser(msg) = first {
        return match msg {
            Some(Ok(Message::Close(frame))) => {
                let _ = u_tx.send(Message::Close(frame)).await;
                Step::End(SessionEnd::BrowserClosed)
            }
            Some(Ok(Message::Frame(_))) => Step::Continue,
            Some(Ok(msg)) => {
                if let Message::Text(t) = &msg
                    && is_feature_flags(t)
                {
                    *client_flags = Some(t.clone());
                }
                match u_tx.send(msg).await {
                    Ok(()) => Step::Continue,
                    Err(e) => Step::UpstreamEnded(UpstreamEnd::Lost(e.to_string())),
                }
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "browser WebSocket failed");
                Step::End(SessionEnd::BrowserGone)
            }
            None => Step::End(SessionEnd::BrowserGone),
        };
    }
    // Feed everything that is already available, then flush once: one write per burst
    // instead of one per frame.
    let mut item = Some(first);
    let mut fed = 0usize;
    while let Some(incoming) = item.take() {
        let msg = match incoming {
            Incoming::Injected(frame) => frame,
            Incoming::Upstream(Some(Ok(msg))) => msg,
            Incoming::Upstream(Some(Err(e))) => {
                let _ = b_tx.flush().await;
                return Step::UpstreamEnded(UpstreamEnd::Lost(e.to_string()));
            }
            Incoming::Upstream(None) => {
                let _ = b_tx.flush().await;
                return Step::UpstreamEnded(UpstreamEnd::Lost(
                    "connection ended without a close frame".into(),
                ));
            }
            Incoming::Browser(_) => break,
        };
        match &msg {
            Message::Text(text) => observe_text(hub, registration, inject_tx, text),
            Message::Binary(data) => {
                if let Some(reg) = registration.as_ref()
                    && hub.has_taps()
                {
                    hub.tap_binary(reg.client_id(), data);
                }
            }
            Message::Close(frame) => {
                let frame = frame.clone();
                let _ = b_tx.flush().await;
                // Keep reading briefly so tungstenite flushes its close reply.
                let _ = tokio::time::timeout(close_grace, async {
                    while u_rx.next().await.is_some() {}
                })
                .await;
                return Step::UpstreamEnded(if is_going_away(frame.as_ref()) {
                    UpstreamEnd::Lost(format!(
                        "ComfyUI closed the socket ({})",
                        frame
                            .as_ref()
                            .map_or("no code".to_string(), |f| f.code.to_string())
                    ))
                } else {
                    UpstreamEnd::Closed(frame)
                });
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
        if !matches!(msg, Message::Frame(_)) && b_tx.feed(msg).await.is_err() {
            return Step::End(SessionEnd::BrowserGone);
        }
        fed += 1;
        if fed < MAX_BATCH {
            item = u_rx.next().now_or_never().map(Incoming::Upstream);
        }
    }
    if b_tx.flush().await.is_err() {
        return Step::End(SessionEnd::BrowserGone);
    }
    Step::Continue
}

/// Learn the clientId from ComfyUI's first `status` (when the browser sent none) and feed taps.
fn observe_text(
    hub: &Arc<WsHub>,
    registration: &mut Option<Registration>,
    inject_tx: &mpsc::Sender<Message>,
    text: &Utf8Bytes,
) {
    if registration.is_none()
        && let comfyhost_protocol::WsMessage::Status(status) = parse_for_tap(text)
        && let Some(sid) = status.sid
    {
        *registration = Some(hub.register(sid, inject_tx.clone()));
    }
    if let Some(reg) = registration
        && hub.has_taps()
    {
        hub.tap_text(reg.client_id(), &parse_for_tap(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let long = "é".repeat(100);
        let f = close_frame(CloseCode::Again, &long);
        assert!(f.reason.len() <= 123);
        assert_eq!(f.reason.len() % 2, 0);
        assert_eq!(u16::from(f.code), 1013);
    }

    #[test]
    fn client_id_is_added_only_when_missing() {
        assert_eq!(with_client_id("/ws", "a b"), "/ws?clientId=a+b");
        assert_eq!(with_client_id("/ws?", "x"), "/ws?clientId=x");
        assert_eq!(with_client_id("/ws?x=1", "y"), "/ws?x=1&clientId=y");
        assert_eq!(with_client_id("/ws?clientId=z", "y"), "/ws?clientId=z");
    }

    #[test]
    fn only_going_away_codes_reconnect() {
        assert!(is_going_away(None));
        assert!(is_going_away(Some(&close_frame(CloseCode::Away, ""))));
        assert!(is_going_away(Some(&close_frame(CloseCode::Restart, ""))));
        assert!(!is_going_away(Some(&close_frame(CloseCode::Policy, ""))));
        assert!(!is_going_away(Some(&close_frame(
            CloseCode::from(4001),
            ""
        ))));
    }

    #[test]
    fn empty_status_is_comfyui_shaped() {
        let v: serde_json::Value = serde_json::from_str(&empty_status(Some("abc"))).unwrap();
        assert_eq!(v["type"], "status");
        assert_eq!(v["data"]["status"]["exec_info"]["queue_remaining"], 0);
        assert_eq!(v["data"]["sid"], "abc");
        let v: serde_json::Value = serde_json::from_str(&empty_status(None)).unwrap();
        assert!(v["data"].get("sid").is_none());
    }

    #[test]
    fn feature_flags_are_recognised() {
        assert!(is_feature_flags(
            r#"{"type":"feature_flags","data":{"supports_preview_metadata":true}}"#
        ));
        assert!(!is_feature_flags(
            r#"{"type":"other","data":"feature_flags"}"#
        ));
    }
}
