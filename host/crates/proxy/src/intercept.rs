//! Interception point for `POST /prompt` (and `/api/prompt`).
//!
//! The proxy buffers the body (bounded by `max_prompt_bytes`) and asks the host's
//! [`PromptInterceptor`] what to do. There is deliberately no output hook here: finished
//! outputs are seen through the WebSocket tap ([`crate::WsTap`]) as `executed` events.

use std::net::SocketAddr;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderMap, Method, StatusCode};
use serde_json::Value;

/// The browser request a prompt arrived with.
#[derive(Debug, Clone)]
pub struct PromptRequestContext {
    /// Always `POST`.
    pub method: Method,
    /// Raw path and query as ComfyUI will see it (prefix stripped, never decoded):
    /// `/prompt` or `/api/prompt`.
    pub path_and_query: String,
    /// The browser's headers, before any rewriting (`Comfy-User`, cookies, `Origin`...).
    pub headers: HeaderMap,
    /// The browser's address, when the host serves with `ConnectInfo<SocketAddr>`.
    pub client_addr: Option<SocketAddr>,
}

/// What to do with an intercepted prompt.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptDecision {
    /// Send this body to ComfyUI (the original bytes or a rewritten prompt).
    Forward(Bytes),
    /// Answer the browser directly; ComfyUI never sees the prompt. For rejections use
    /// ComfyUI's error shape (`comfyhost_protocol::ComfyErrorBody`) so the frontend shows it.
    Respond {
        /// HTTP status.
        status: StatusCode,
        /// JSON body.
        body: Value,
    },
}

impl PromptDecision {
    /// Shorthand for [`PromptDecision::Respond`].
    pub fn respond(status: StatusCode, body: Value) -> Self {
        PromptDecision::Respond { status, body }
    }
}

/// Sees every `POST /prompt` before ComfyUI does.
///
/// Runs on the request's task: keep it bounded in time. A panic is caught and answered with
/// `500 comfyhost_interceptor_failed` (the prompt is not queued).
pub trait PromptInterceptor: Send + Sync + 'static {
    /// Decide what happens to `body` (the raw request bytes, normally JSON).
    fn intercept<'a>(
        &'a self,
        ctx: &'a PromptRequestContext,
        body: Bytes,
    ) -> BoxFuture<'a, PromptDecision>;

    /// ComfyUI refused a prompt this interceptor forwarded (a 4xx answer of at most
    /// [`REFUSAL_BODY_LIMIT`] bytes). `forwarded` is the body sent; `answer` ComfyUI's. Return a
    /// replacement answer (same status) to add what the host knows, or `None` to pass
    /// ComfyUI's bytes unchanged (the default).
    ///
    /// Also called with `503` and the proxy's own error body when ComfyUI could not be
    /// reached at all (the prompt never got there); the return value is ignored then.
    fn refused<'a>(
        &'a self,
        ctx: &'a PromptRequestContext,
        forwarded: &'a Bytes,
        status: http::StatusCode,
        answer: &'a Bytes,
    ) -> BoxFuture<'a, Option<Bytes>> {
        let _ = (ctx, forwarded, status, answer);
        Box::pin(async { None })
    }

    /// The connection to ComfyUI broke while it handled a prompt this interceptor forwarded
    /// (no answer came): ComfyUI may have died on it. `forwarded` is the body sent.
    fn broke<'a>(
        &'a self,
        ctx: &'a PromptRequestContext,
        forwarded: &'a Bytes,
    ) -> BoxFuture<'a, ()> {
        let _ = (ctx, forwarded);
        Box::pin(async {})
    }
}

/// Largest refusal body handed to [`PromptInterceptor::refused`]; bigger ones pass untouched.
pub const REFUSAL_BODY_LIMIT: usize = 1 << 20;
