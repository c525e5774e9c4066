//! Plain HTTP forwarding: streaming both ways, raw path, bounded bodies, prompt interception.

use std::panic::AssertUnwindSafe;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use bytes::Bytes;
use futures::FutureExt;
use http::{HeaderValue, Method, Uri, Version, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::body_limit::LimitedBody;
use crate::error::{ProxyError, json_response};
use crate::headers::{self, ForwardedFor};
use crate::intercept::{PromptDecision, PromptRequestContext};
use crate::path::{is_prompt_route, rewrite_location};
use crate::state::ProxyState;

/// Forward `req` to ComfyUI at the raw path-and-query `upstream_pq`.
pub(crate) async fn forward(
    state: &ProxyState,
    req: Request,
    upstream_pq: &str,
    fwd: ForwardedFor<'_>,
) -> Result<Response, ProxyError> {
    let config = state.config();
    let limit = config.max_upload_bytes;
    if declared_length(req.headers()).is_some_and(|n| n > limit) {
        return Err(ProxyError::PayloadTooLarge { limit });
    }
    let (mut parts, body) = req.into_parts();

    let mut over_limit = None;
    // An intercepted prompt: what was forwarded, to hand ComfyUI's refusal back to the host.
    let mut forwarded: Option<(PromptRequestContext, Bytes)> = None;
    let body = match state.interceptor() {
        Some(interceptor) if parts.method == Method::POST && is_prompt_route(upstream_pq) => {
            let prompt_limit = config.max_prompt_bytes.min(limit);
            let bytes = buffer(body, prompt_limit).await?;
            let ctx = PromptRequestContext {
                method: parts.method.clone(),
                path_and_query: upstream_pq.to_string(),
                headers: parts.headers.clone(),
                client_addr: fwd.client,
            };
            let decision = AssertUnwindSafe(interceptor.intercept(&ctx, bytes))
                .catch_unwind()
                .await
                .map_err(|panic| ProxyError::InterceptorFailed(panic_message(&panic)))?;
            match decision {
                PromptDecision::Respond { status, body } => {
                    let mut resp = json_response(status, &body);
                    // A refusal that says when to retry says it in the header too.
                    if let Some(secs) = body["error"]["extra_info"]["retry_after_s"].as_u64() {
                        resp.headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                    }
                    return Ok(resp);
                }
                PromptDecision::Forward(bytes) => {
                    parts
                        .headers
                        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
                    forwarded = Some((ctx, bytes.clone()));
                    Body::from(bytes)
                }
            }
        }
        _ => {
            let (limited, flag) = LimitedBody::new(body, limit);
            over_limit = Some(flag);
            Body::new(limited)
        }
    };

    let upstream = state.upstream();
    let uri = Uri::builder()
        .scheme("http")
        .authority(upstream.as_str())
        .path_and_query(upstream_pq)
        .build()
        .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    headers::to_upstream(&mut parts.headers, &upstream, &fwd);
    // hyper answered any `Expect: 100-continue` on the browser side already.
    parts.headers.remove(header::EXPECT);
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    let upstream_req = Request::from_parts(parts, body);

    let sent = state.client().request(upstream_req);
    let result = match config.response_timeout {
        Some(t) => tokio::time::timeout(t, sent)
            .await
            .map_err(|_| ProxyError::Timeout {
                secs: t.as_secs(),
                upstream: upstream.to_string(),
            })?,
        None => sent.await,
    };
    let resp = match result {
        Ok(resp) => resp,
        Err(_) if over_limit.as_ref().is_some_and(|f| f.is_set()) => {
            return Err(ProxyError::PayloadTooLarge { limit });
        }
        Err(e) => {
            let snapshot = Box::new(state.upstream_state().snapshot());
            let cause = error_chain(&e);
            return Err(if e.is_connect() {
                tracing::debug!(%upstream, %cause, state = %snapshot.state, "ComfyUI unreachable");
                let error = ProxyError::Unavailable {
                    snapshot,
                    upstream: upstream.to_string(),
                    cause,
                };
                // The prompt never reached ComfyUI: the host ends its job now.
                if let (Some((ctx, sent)), Some(interceptor)) = (&forwarded, state.interceptor()) {
                    let body = serde_json::to_vec(&error.body()).unwrap_or_default();
                    let _ = AssertUnwindSafe(interceptor.refused(
                        ctx,
                        sent,
                        error.status(),
                        &Bytes::from(body),
                    ))
                    .catch_unwind()
                    .await;
                }
                error
            } else {
                tracing::warn!(%upstream, path = upstream_pq, %cause, "ComfyUI connection broke");
                // ComfyUI may have died on this prompt (the poison-prompt guard listens).
                if let (Some((ctx, sent)), Some(interceptor)) = (&forwarded, state.interceptor()) {
                    let _ = AssertUnwindSafe(interceptor.broke(ctx, sent))
                        .catch_unwind()
                        .await;
                }
                ProxyError::BrokenResponse {
                    snapshot,
                    upstream: upstream.to_string(),
                    cause,
                }
            });
        }
    };

    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    if let (Some((ctx, sent)), Some(interceptor)) = (&forwarded, state.interceptor())
        && parts.status.is_client_error()
        && declared_length(&parts.headers)
            .is_some_and(|n| n <= crate::intercept::REFUSAL_BODY_LIMIT as u64)
    {
        let answer = match Limited::new(Body::new(body), crate::intercept::REFUSAL_BODY_LIMIT)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return Err(ProxyError::BrokenResponse {
                    snapshot: Box::new(state.upstream_state().snapshot()),
                    upstream: upstream.to_string(),
                    cause: e.to_string(),
                });
            }
        };
        let replaced = AssertUnwindSafe(interceptor.refused(ctx, sent, parts.status, &answer))
            .catch_unwind()
            .await
            .unwrap_or_else(|panic| {
                tracing::error!(panic = %panic_message(&panic), "prompt refusal hook panicked; ComfyUI's answer passes unchanged");
                None
            });
        let out = replaced.unwrap_or(answer);
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
        return Ok(Response::from_parts(parts, Body::from(out)));
    }
    if let Some(loc) = parts
        .headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        && let Some(new) = rewrite_location(loc, config.prefix.as_deref(), &upstream)
        && let Ok(v) = HeaderValue::from_str(&new)
    {
        parts.headers.insert(header::LOCATION, v);
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Read a whole body, at most `limit` bytes.
async fn buffer(body: Body, limit: u64) -> Result<Bytes, ProxyError> {
    let limit_usize = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit_usize).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ProxyError::PayloadTooLarge { limit })
        }
        Err(e) => Err(ProxyError::BadRequest(format!(
            "reading the request body failed: {e}"
        ))),
    }
}

/// `error: cause: cause` (hyper-util's errors hide the useful part in `source()`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}
