//! WebSockets the host itself opens to ComfyUI (job tracking, plugin taps).
//!
//! They always use a freshly generated clientId: ComfyUI replaces the socket registered under
//! a clientId when another connects with it, so reusing a browser's id would steal that
//! browser's execution messages.

use http::HeaderMap;

use super::upstream_ws::{self, UpstreamSocket, UpstreamWsError};
use crate::state::ProxyState;

/// Prefix of every clientId the host generates for its own sockets.
pub const HOST_CLIENT_ID_PREFIX: &str = "comfyhost-";

/// A fresh clientId for a host-owned socket (`comfyhost-<32 hex>`).
pub fn new_host_client_id() -> String {
    format!("{HOST_CLIENT_ID_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

/// A WebSocket to ComfyUI owned by the host, under its own clientId.
pub struct HostSocket {
    /// The clientId ComfyUI knows this socket by; use it as `client_id` in prompts the host
    /// submits so their execution messages arrive here.
    pub client_id: String,
    /// The socket (frames exactly as ComfyUI sends them).
    pub socket: UpstreamSocket,
}

impl ProxyState {
    /// Open a host-owned WebSocket to ComfyUI under a new clientId (never a browser's).
    pub async fn connect_host_socket(&self) -> Result<HostSocket, UpstreamWsError> {
        let client_id = new_host_client_id();
        let config = self.config();
        let (socket, _) = upstream_ws::connect(
            &self.upstream(),
            &format!("/ws?clientId={client_id}"),
            HeaderMap::new(),
            config.connect_timeout,
            config.response_timeout,
            upstream_ws::ws_config(config.ws_max_message_bytes),
        )
        .await?;
        tracing::debug!(%client_id, "host WebSocket to ComfyUI open");
        Ok(HostSocket { client_id, socket })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_are_fresh_and_prefixed() {
        let a = new_host_client_id();
        assert!(a.starts_with(HOST_CLIENT_ID_PREFIX));
        assert_eq!(a.len(), HOST_CLIENT_ID_PREFIX.len() + 32);
        assert_ne!(a, new_host_client_id());
    }
}
