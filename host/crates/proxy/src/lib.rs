//! Transparent reverse proxy in front of ComfyUI, with interception points for the host.
//!
//! - **HTTP**: any method and path, forwarded with the raw (never decoded) path and query,
//!   streaming bodies both ways over a pooled keep-alive client. Hop-by-hop headers are
//!   dropped; `Host` becomes ComfyUI's authority and `Origin` (when sent) becomes
//!   `http://<authority>`, after the proxy applied ComfyUI's own Host/Origin check to the
//!   browser's request. `X-Forwarded-For/Proto/Host/Prefix` are added. Bodies over
//!   [`ProxyConfig::max_upload_bytes`] get `413`.
//! - **Prefix**: with [`ProxyConfig::prefix`] (`/comfy`) the prefix is stripped byte for byte
//!   and `Location` headers are put back under it.
//! - **WebSocket**: see [`ws`]; per-client taps ([`WsTap`]) and `comfyhost.*` injection
//!   ([`WsHub::send_to`]). Host-owned sockets use their own clientId
//!   ([`ProxyState::connect_host_socket`]).
//! - **Interception**: `POST /prompt` and `/api/prompt` go through the
//!   [`PromptInterceptor`]. Finished outputs are observed through the tap (`executed`),
//!   there is no separate output hook.
//! - **Failures**: ComfyUI down -> `503` with `{"error":{"type":"comfyui_unavailable",...}}`
//!   quoting the supervisor state ([`UpstreamState`]); broken response -> `502`; no response
//!   headers within [`ProxyConfig::response_timeout`] -> `504`. A page load (`GET` accepting
//!   `text/html`) while ComfyUI is down gets a small `503` page instead that says whether
//!   ComfyUI is starting, restarting, stopped or failed, with the reason, and reloads itself.
//!
//! Mount with [`router`].

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod body_limit;
mod config;
mod error;
mod headers;
mod http_forward;
mod intercept;
mod path;
mod router;
mod state;
mod unavailable_page;
mod upstream;
pub mod ws;

pub use config::{ConfigError, DEFAULT_MAX_UPLOAD_BYTES, ProxyConfig, parse_authority};
pub use error::ProxyError;
pub use intercept::{PromptDecision, PromptInterceptor, PromptRequestContext, REFUSAL_BODY_LIMIT};
pub use router::router;
pub use state::{ProxyState, ProxyStateBuilder};
pub use upstream::{UpstreamSnapshot, UpstreamState};
pub use ws::{HostEvent, HostSocket, InjectError, WsHub, WsTap};
