//! Frame relay between one browser socket and its ComfyUI socket, with tap and injection.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::hub::{Registration, WsHub};
use super::tap::parse_for_tap;
use crate::upstream::UpstreamState;

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

/// What the relay needs besides the two sockets.
pub(crate) struct RelayContext {
    /// `?clientId=` of the browser socket, if it sent one.
    pub(crate) client_id: Option<String>,
    pub(crate) hub: Arc<WsHub>,
    pub(crate) upstream_state: Arc<dyn UpstreamState>,
    pub(crate) injection_queue: usize,
    pub(crate) close_grace: Duration,
}

/// Frames fed to the browser before a flush is forced.
const MAX_BATCH: usize = 64;

/// One thing to send to the browser.
enum Incoming {
    Upstream(Option<Result<Message, WsError>>),
    Injected(Utf8Bytes),
}

/// How the ComfyUI -> browser direction ended.
enum UpstreamEnd {
    /// ComfyUI sent a close frame (forwarded).
    Closed,
    /// ComfyUI's socket broke without a close frame.
    Lost(String),
    /// Writing to the browser failed.
    BrowserGone,
}

/// Relay until either side closes; the browser always gets a close frame when ComfyUI goes.
pub(crate) async fn relay<B, U>(browser: B, upstream: U, ctx: RelayContext)
where
    B: Stream<Item = Result<Message, WsError>>
        + Sink<Message, Error = WsError>
        + Unpin
        + Send
        + 'static,
    U: Stream<Item = Result<Message, WsError>>
        + Sink<Message, Error = WsError>
        + Unpin
        + Send
        + 'static,
{
    let (b_tx, b_rx) = browser.split();
    let (u_tx, u_rx) = upstream.split();
    let grace = ctx.close_grace;
    let upstream_state = Arc::clone(&ctx.upstream_state);

    let upstream_to_browser = upstream_to_browser(u_rx, b_tx, ctx);
    let browser_to_upstream = browser_to_upstream(b_rx, u_tx, grace);
    tokio::pin!(upstream_to_browser, browser_to_upstream);
    tokio::select! {
        (end, mut b_tx, client_id) = &mut upstream_to_browser => {
            if let UpstreamEnd::Lost(cause) = end {
                let snapshot = upstream_state.snapshot();
                let code = if snapshot.restarting { CloseCode::Restart } else { CloseCode::Error };
                tracing::info!(
                    client_id = client_id.as_deref().unwrap_or("-"),
                    %cause,
                    state = %snapshot.state,
                    "ComfyUI WebSocket lost; closing the browser socket"
                );
                let reason = format!("ComfyUI connection lost (state: {})", snapshot.state);
                let _ = b_tx.send(Message::Close(Some(close_frame(code, &reason)))).await;
            }
            let _ = tokio::time::timeout(grace, &mut browser_to_upstream).await;
        }
        () = &mut browser_to_upstream => {
            let _ = tokio::time::timeout(grace, &mut upstream_to_browser).await;
        }
    }
}

/// ComfyUI -> browser, plus host injections. Returns how it ended, the browser sink (so a
/// close frame can still be sent) and the clientId it relayed for.
async fn upstream_to_browser<UR, BT>(
    mut u_rx: UR,
    mut b_tx: BT,
    ctx: RelayContext,
) -> (UpstreamEnd, BT, Option<String>)
where
    UR: Stream<Item = Result<Message, WsError>> + Unpin,
    BT: Sink<Message, Error = WsError> + Unpin,
{
    let hub = ctx.hub;
    let (inject_tx, mut inject_rx) = mpsc::channel::<Utf8Bytes>(ctx.injection_queue);
    let mut registration: Option<Registration> =
        ctx.client_id.map(|id| hub.register(id, inject_tx.clone()));
    let end = 'relay: loop {
        let first = tokio::select! {
            biased;
            msg = u_rx.next() => Incoming::Upstream(msg),
            Some(text) = inject_rx.recv() => Incoming::Injected(text),
        };
        // Feed everything that is already available, then flush once: one write per burst
        // instead of one per frame.
        let mut item = Some(first);
        let mut fed = 0usize;
        while let Some(incoming) = item.take() {
            let msg = match incoming {
                Incoming::Injected(text) => Message::Text(text),
                Incoming::Upstream(Some(Ok(msg))) => msg,
                Incoming::Upstream(Some(Err(e))) => break 'relay UpstreamEnd::Lost(e.to_string()),
                Incoming::Upstream(None) => {
                    break 'relay UpstreamEnd::Lost(
                        "connection ended without a close frame".into(),
                    );
                }
            };
            match &msg {
                Message::Text(text) => observe_text(&hub, &mut registration, &inject_tx, text),
                Message::Binary(data) => {
                    if let Some(reg) = &registration
                        && hub.has_taps()
                    {
                        hub.tap_binary(reg.client_id(), data);
                    }
                }
                Message::Close(_) => {
                    let _ = b_tx.send(msg).await;
                    // Keep reading briefly so tungstenite flushes its close reply.
                    let _ = tokio::time::timeout(ctx.close_grace, async {
                        while u_rx.next().await.is_some() {}
                    })
                    .await;
                    break 'relay UpstreamEnd::Closed;
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
            if !matches!(msg, Message::Frame(_)) && b_tx.feed(msg).await.is_err() {
                break 'relay UpstreamEnd::BrowserGone;
            }
            fed += 1;
            if fed < MAX_BATCH {
                item = u_rx.next().now_or_never().map(Incoming::Upstream);
            }
        }
        if b_tx.flush().await.is_err() {
            break UpstreamEnd::BrowserGone;
        }
    };
    let client_id = registration.as_ref().map(|r| r.client_id().to_string());
    (end, b_tx, client_id)
}

/// Browser -> ComfyUI. Close frames are forwarded; a browser that vanishes without one is
/// reported to ComfyUI as `1001 going away`.
async fn browser_to_upstream<BR, UT>(mut b_rx: BR, mut u_tx: UT, grace: Duration)
where
    BR: Stream<Item = Result<Message, WsError>> + Unpin,
    UT: Sink<Message, Error = WsError> + Unpin,
{
    while let Some(msg) = b_rx.next().await {
        match msg {
            Ok(Message::Close(frame)) => {
                let _ = u_tx.send(Message::Close(frame)).await;
                // Keep reading briefly so tungstenite flushes its close reply to the browser.
                let _ = tokio::time::timeout(grace, async { while b_rx.next().await.is_some() {} })
                    .await;
                return;
            }
            Ok(Message::Frame(_)) => {}
            Ok(msg) => {
                if u_tx.send(msg).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "browser WebSocket failed");
                break;
            }
        }
    }
    let _ = u_tx
        .send(Message::Close(Some(close_frame(
            CloseCode::Away,
            "browser disconnected",
        ))))
        .await;
}

/// Learn the clientId from ComfyUI's first `status` (when the browser sent none) and feed taps.
fn observe_text(
    hub: &Arc<WsHub>,
    registration: &mut Option<Registration>,
    inject_tx: &mpsc::Sender<Utf8Bytes>,
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
}
