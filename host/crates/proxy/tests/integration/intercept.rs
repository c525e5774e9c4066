//! The `POST /prompt` interception point.

use std::sync::Arc;

use crate::common::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use bytes::Bytes;
use comfyhost_protocol::ComfyErrorBody;
use comfyhost_proxy::{PromptDecision, PromptInterceptor, PromptRequestContext, ProxyState};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::{Value, json};

/// Rewrites `prompt.seed`, rejects prompts containing `"forbidden"`, panics on `"boom"`,
/// records what it saw.
#[derive(Default)]
struct Policy {
    seen: Mutex<Vec<(String, Option<String>)>>,
}

impl PromptInterceptor for Policy {
    fn intercept<'a>(
        &'a self,
        ctx: &'a PromptRequestContext,
        body: Bytes,
    ) -> BoxFuture<'a, PromptDecision> {
        Box::pin(async move {
            let user = ctx
                .headers
                .get("comfy-user")
                .map(|v| v.to_str().unwrap().to_string());
            self.seen.lock().push((ctx.path_and_query.clone(), user));
            let mut v: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(_) => return PromptDecision::Forward(body),
            };
            if v["prompt"] == "boom" {
                panic!("policy exploded");
            }
            if v["prompt"] == "forbidden" {
                let err = ComfyErrorBody::new(
                    "comfyhost_policy",
                    "Not allowed in this workshop",
                    "quota",
                );
                return PromptDecision::respond(
                    StatusCode::FORBIDDEN,
                    serde_json::to_value(err).unwrap(),
                );
            }
            v["seed_rewritten"] = json!(42);
            PromptDecision::Forward(Bytes::from(v.to_string()))
        })
    }
}

async fn setup(prefix: Option<&str>) -> (Upstream, Proxy, Arc<Policy>) {
    let up = start_upstream().await;
    let policy = Arc::new(Policy::default());
    let mut cfg = config(&up.authority());
    if let Some(p) = prefix {
        cfg = cfg.with_prefix(p).unwrap();
    }
    cfg.max_prompt_bytes = 64 * 1024;
    let proxy = start_proxy(ProxyState::builder(cfg).interceptor(policy.clone())).await;
    (up, proxy, policy)
}

fn post(url: String, body: &str) -> Request<Body> {
    Request::post(url)
        .header("comfy-user", "student07")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn interceptor_rewrites_prompt_bodies_on_both_spellings() {
    let (_up, proxy, policy) = setup(None).await;
    for path in ["/prompt", "/api/prompt"] {
        let (status, _, body) = send(post(
            proxy.url(path),
            r#"{"prompt":{"1":{}},"client_id":"c"}"#,
        ))
        .await;
        assert_eq!(status, StatusCode::OK);
        let v = json(&body);
        assert_eq!(v["path"], path);
        let forwarded: Value = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
        assert_eq!(forwarded["seed_rewritten"], 42);
        assert_eq!(forwarded["client_id"], "c");
        assert_eq!(
            v["headers"]["content-length"],
            forwarded.to_string().len().to_string()
        );
    }
    let seen = policy.seen.lock().clone();
    assert_eq!(
        seen,
        vec![
            ("/prompt".into(), Some("student07".into())),
            ("/api/prompt".into(), Some("student07".into()))
        ]
    );
}

#[tokio::test]
async fn interceptor_can_answer_itself() {
    let (_up, proxy, _) = setup(None).await;
    let (status, headers, body) =
        send(post(proxy.url("/api/prompt"), r#"{"prompt":"forbidden"}"#)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(headers["content-type"], "application/json");
    let v = json(&body);
    assert_eq!(v["error"]["type"], "comfyhost_policy");
    assert!(
        v.get("path").is_none(),
        "the upstream must not have seen it"
    );
}

#[tokio::test]
async fn encoded_or_doubled_slash_spellings_are_still_intercepted() {
    let (_up, proxy, policy) = setup(None).await;
    for path in ["/%70rompt", "//api//prompt"] {
        send(post(proxy.url(path), r#"{"prompt":{}}"#)).await;
    }
    assert_eq!(policy.seen.lock().len(), 2);
}

#[tokio::test]
async fn other_routes_and_methods_are_not_intercepted() {
    let (_up, proxy, policy) = setup(None).await;
    let (_, _, body) = get(&proxy.url("/api/prompt")).await;
    assert_eq!(json(&body)["method"], "GET");
    send(post(proxy.url("/api/queue"), r#"{"clear":true}"#)).await;
    send(post(proxy.url("/prompts"), "{}")).await;
    assert!(policy.seen.lock().is_empty());
}

#[tokio::test]
async fn prefixed_prompt_is_intercepted_after_strip() {
    let (_up, proxy, policy) = setup(Some("/comfy")).await;
    let (status, _, body) = send(post(proxy.url("/comfy/api/prompt"), r#"{"prompt":{}}"#)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["path"], "/api/prompt");
    assert_eq!(policy.seen.lock()[0].0, "/api/prompt");
}

#[tokio::test]
async fn oversized_prompt_gets_413_and_panicking_interceptor_gets_500() {
    let (_up, proxy, policy) = setup(None).await;
    let big = format!(r#"{{"prompt":"{}"}}"#, "x".repeat(70 * 1024));
    let (status, _, body) = send(post(proxy.url("/prompt"), &big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(&body)["error"]["type"], "payload_too_large");
    assert!(policy.seen.lock().is_empty());

    let (status, _, body) = send(post(proxy.url("/prompt"), r#"{"prompt":"boom"}"#)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let v = json(&body);
    assert_eq!(v["error"]["type"], "comfyhost_interceptor_failed");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("policy exploded")
    );
}
