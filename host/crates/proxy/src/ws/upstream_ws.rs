//! Opening WebSockets to ComfyUI (for browsers and for the host's own sockets).

use std::time::Duration;

use http::uri::Authority;
use http::{HeaderMap, HeaderValue, header};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Error as WsError};

/// A WebSocket to ComfyUI.
pub type UpstreamSocket = WebSocketStream<TcpStream>;

/// Why a WebSocket to ComfyUI could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamWsError {
    /// TCP connect failed or timed out, or the handshake timed out: ComfyUI is not there.
    #[error("ComfyUI is unreachable at {upstream}: {cause}")]
    Unreachable {
        /// ComfyUI's authority.
        upstream: String,
        /// What failed.
        cause: String,
    },
    /// ComfyUI answered the upgrade with a plain HTTP response (e.g. 403, 404).
    #[error("ComfyUI refused the WebSocket upgrade with HTTP {}", .0.status())]
    Rejected(Box<http::Response<Option<Vec<u8>>>>),
    /// The handshake failed in another way.
    #[error("WebSocket handshake with ComfyUI failed: {0}")]
    Handshake(String),
}

/// Read buffer each leg of a relayed socket starts with. tungstenite allocates it up front
/// (128 KiB by default, twice per browser socket); it grows when a larger frame arrives, so a
/// small start only costs the rare big preview one reallocation (a frame's full length is
/// reserved once its header is read). 2 KiB holds a burst of progress messages.
pub(crate) const WS_READ_BUFFER: usize = 2 * 1024;
/// Bytes fed before tungstenite writes to the socket; the relay flushes after each batch
/// anyway. The buffer is allocated only when used.
pub(crate) const WS_WRITE_BUFFER: usize = 16 * 1024;

/// Limits and buffer sizes for both legs of a relayed socket: idle sockets stay small
/// (issue 24: ≤ 16 KB each), message limits stay `max_message`.
pub(crate) fn ws_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// Open `ws://{upstream}{path_and_query}` with `headers` (already rewritten for ComfyUI; the
/// handshake headers are set here).
pub(crate) async fn connect(
    upstream: &Authority,
    path_and_query: &str,
    mut headers: HeaderMap,
    connect_timeout: Duration,
    handshake_timeout: Option<Duration>,
    config: WebSocketConfig,
) -> Result<(UpstreamSocket, http::Response<Option<Vec<u8>>>), UpstreamWsError> {
    let unreachable = |cause: String| UpstreamWsError::Unreachable {
        upstream: upstream.to_string(),
        cause,
    };
    let tcp =
        match tokio::time::timeout(connect_timeout, TcpStream::connect(upstream.as_str())).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => {
                return Err(unreachable(format!(
                    "connect timed out after {connect_timeout:?}"
                )));
            }
        };
    let _ = tcp.set_nodelay(true);

    for name in [
        header::SEC_WEBSOCKET_KEY,
        header::SEC_WEBSOCKET_VERSION,
        header::SEC_WEBSOCKET_EXTENSIONS,
        header::SEC_WEBSOCKET_ACCEPT,
    ] {
        headers.remove(name);
    }
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    if let Ok(key) = HeaderValue::from_str(&generate_key()) {
        headers.insert(header::SEC_WEBSOCKET_KEY, key);
    }
    if let Ok(host) = HeaderValue::from_str(upstream.as_str()) {
        headers.insert(header::HOST, host);
    }
    let mut request = http::Request::new(());
    *request.uri_mut() = format!("ws://{upstream}{path_and_query}")
        .parse()
        .map_err(|e: http::uri::InvalidUri| UpstreamWsError::Handshake(e.to_string()))?;
    *request.headers_mut() = headers;

    let handshake = tokio_tungstenite::client_async_with_config(request, tcp, Some(config));
    let result = match handshake_timeout {
        Some(t) => tokio::time::timeout(t, handshake)
            .await
            .map_err(|_| unreachable(format!("WebSocket handshake timed out after {t:?}")))?,
        None => handshake.await,
    };
    match result {
        Ok(ok) => Ok(ok),
        Err(WsError::Http(resp)) => Err(UpstreamWsError::Rejected(resp)),
        Err(WsError::Io(e)) => Err(unreachable(e.to_string())),
        Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
            Err(unreachable("connection closed during the handshake".into()))
        }
        Err(e @ tungstenite::Error::Protocol(_)) => Err(UpstreamWsError::Handshake(e.to_string())),
        Err(e) => Err(UpstreamWsError::Handshake(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_sockets_start_with_small_buffers_and_keep_their_limits() {
        let c = ws_config(64 << 20);
        assert!(c.read_buffer_size <= 2048, "{}", c.read_buffer_size);
        assert!(c.write_buffer_size <= 16 * 1024, "{}", c.write_buffer_size);
        assert!(c.max_write_buffer_size > c.write_buffer_size);
        assert_eq!(c.max_message_size, Some(64 << 20));
        assert_eq!(c.max_frame_size, Some(64 << 20));
    }
}
