//! HTTP pass-through against a real in-process upstream.

use crate::common::*;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use bytes::Bytes;
use comfyhost_proxy::ProxyState;
use http_body_util::BodyExt;

#[tokio::test]
async fn raw_path_with_encoded_slash_and_query_reach_upstream_byte_identical() {
    let up = start_upstream().await;
    let proxy = proxy_for(&up).await;
    for pq in [
        "/api/userdata/workflows%2Fa.json",
        "/api/userdata/workflows%2Fsub%2Fmy%20flow.json?overwrite=true&full_info=1",
        "/view?filename=a%2Bb.png&subfolder=x%2F..%2Fy&type=output",
        "/api/userdata/a%252F.json",
    ] {
        let (status, _, body) = get(&proxy.url(pq)).await;
        assert_eq!(status, StatusCode::OK, "{pq}");
        assert_eq!(json(&body)["path"], pq);
    }
}

#[tokio::test]
async fn every_method_and_body_pass_through() {
    let up = start_upstream().await;
    let proxy = proxy_for(&up).await;
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "MOVE"] {
        let req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(proxy.url("/api/userdata/x.json"))
            .body(Body::from(format!("body-of-{method}")))
            .unwrap();
        let (status, headers, body) = send(req).await;
        assert_eq!(status, StatusCode::OK, "{method}");
        let v = json(&body);
        assert_eq!(v["method"], method);
        assert_eq!(v["body"], format!("body-of-{method}"));
        assert_eq!(headers["x-upstream"], "echo");
    }
    // HEAD: headers only.
    let req = Request::head(proxy.url("/x")).body(Body::empty()).unwrap();
    let (status, headers, body) = send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-upstream"], "echo");
    assert!(body.is_empty());
}

#[tokio::test]
async fn end_to_end_headers_pass_and_hop_by_hop_are_removed() {
    let up = start_upstream().await;
    let proxy = proxy_for(&up).await;
    let req = Request::get(proxy.url("/api/system_stats"))
        .header("comfy-user", "alice")
        .header("cookie", "session=1")
        .header("connection", "keep-alive, x-private-req")
        .header("x-private-req", "hop")
        .header("keep-alive", "timeout=9")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = send(req).await;
    assert_eq!(status, StatusCode::OK);
    let seen = &json(&body)["headers"];
    assert_eq!(seen["comfy-user"], "alice");
    assert_eq!(seen["cookie"], "session=1");
    for hop in ["x-private-req", "keep-alive", "te", "proxy-authorization"] {
        assert!(seen.get(hop).is_none(), "{hop} reached upstream: {seen}");
    }
    // Response side: upstream's hop-by-hop headers are not passed to the browser.
    assert!(headers.get("x-private-hop").is_none());
    assert!(headers.get("keep-alive").is_none());
    assert_eq!(headers["content-type"], "application/json");
}

#[tokio::test]
async fn host_and_origin_are_rewritten_so_comfyui_origin_rule_passes() {
    let up = start_upstream().await;
    let proxy = proxy_for(&up).await;
    let public_host = "localhost:7777";

    // The upstream really enforces the rule: a direct request with a loopback Host and a
    // foreign Origin is refused.
    let direct = Request::post(format!("http://{}/prompt", up.addr))
        .header("host", "127.0.0.1:8188")
        .header("origin", format!("http://{public_host}"))
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(direct).await.0, StatusCode::FORBIDDEN);

    // Through the proxy, the browser's consistent Host/Origin pair is accepted.
    let req = Request::post(proxy.url("/prompt"))
        .header("host", public_host)
        .header("origin", format!("http://{public_host}"))
        .body(Body::from("{}"))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::OK);
    let seen = &json(&body)["headers"];
    assert_eq!(seen["host"], up.authority());
    assert_eq!(seen["origin"], format!("http://{}", up.authority()));
    assert_eq!(seen["x-forwarded-host"], public_host);
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-for"], "127.0.0.1");
}

#[tokio::test]
async fn cross_site_request_is_refused_like_comfyui_would() {
    let up = start_upstream().await;
    let proxy = proxy_for(&up).await;
    let req = Request::post(proxy.url("/prompt"))
        .header("host", format!("127.0.0.1:{}", proxy.addr.port()))
        .header("origin", "http://evil.example")
        .body(Body::from("{}"))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(json(&body)["error"]["type"], "origin_mismatch");
}

#[tokio::test]
async fn big_upload_streams_through_and_over_limit_gets_413() {
    let up = start_upstream().await;
    let mut cfg = config(&up.authority());
    cfg.max_upload_bytes = 8 * 1024 * 1024;
    let proxy = start_proxy(ProxyState::builder(cfg)).await;

    // 6 MiB in 64 KiB chunks without Content-Length (chunked): all bytes arrive.
    let chunk = Bytes::from((0..65536u32).map(|i| (i % 253) as u8).collect::<Vec<_>>());
    let chunk_sum = chunk.iter().map(|b| u64::from(*b)).sum::<u64>();
    let chunks = 96;
    let stream = futures::stream::iter((0..chunks).map({
        let chunk = chunk.clone();
        move |_| Ok::<_, std::io::Error>(chunk.clone())
    }));
    let req = Request::post(proxy.url("/api/upload/image"))
        .body(Body::from_stream(stream))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    assert_eq!(v["body_len"], 65536 * chunks);
    assert_eq!(v["body_sum"], chunk_sum * chunks);

    // Declared too large: refused before anything is sent.
    let big = vec![0u8; 9 * 1024 * 1024];
    let req = Request::post(proxy.url("/upload/image"))
        .body(Body::from(big))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(json(&body)["error"]["type"], "payload_too_large");

    // Chunked, too large: cut off while streaming, still a 413.
    let stream = futures::stream::iter((0..160).map({
        let chunk = chunk.clone();
        move |_| Ok::<_, std::io::Error>(chunk.clone())
    }));
    let req = Request::post(proxy.url("/upload/image"))
        .body(Body::from_stream(stream))
        .unwrap();
    let (status, _, _) = send(req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn response_body_streams_without_buffering() {
    let up = start_upstream().await;
    let proxy = proxy_for(&up).await;
    let resp = client()
        .request(
            Request::get(proxy.url("/stream"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    // The first chunk arrives while the upstream is still holding the second one back.
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
        .await
        .expect("first chunk was buffered")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(first, "first-chunk;");
    up.seen.release_stream.notify_one();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "second-chunk");
}

#[tokio::test]
async fn prefix_is_stripped_raw_and_location_rewritten_back() {
    let up = start_upstream().await;
    let cfg = config(&up.authority()).with_prefix("/comfy").unwrap();
    let proxy = start_proxy(ProxyState::builder(cfg)).await;

    let (status, _, body) = get(&proxy.url("/comfy/api/userdata/workflows%2Fa.json?x=1")).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    assert_eq!(v["path"], "/api/userdata/workflows%2Fa.json?x=1");
    assert_eq!(v["headers"]["x-forwarded-prefix"], "/comfy");

    let (status, headers, _) = get(&proxy.url("/comfy/redirect")).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers["location"], "/comfy/target?x=1");
    let (status, headers, _) = get(&proxy.url("/comfy/redirect_abs")).await;
    assert_eq!(status, StatusCode::FOUND);
    assert_eq!(headers["location"], "/comfy/abs/target");

    // The bare prefix gets its trailing slash (the frontend derives its API base from it).
    let (status, headers, _) = get(&proxy.url("/comfy?x=1")).await;
    assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(headers["location"], "/comfy/?x=1");

    for outside in ["/other", "/comfyx/prompt"] {
        let (status, _, body) = get(&proxy.url(outside)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{outside}");
        assert_eq!(json(&body)["error"]["type"], "not_found");
    }
}

#[tokio::test]
async fn api_aliases_pass_as_is() {
    let up = start_upstream().await;
    let proxy = proxy_for(&up).await;
    for pq in [
        "/api/object_info",
        "/object_info",
        "/api/api/jobs",
        "/internal/logs",
    ] {
        let (_, _, body) = get(&proxy.url(pq)).await;
        assert_eq!(json(&body)["path"], pq);
    }
}

#[tokio::test]
async fn set_upstream_switches_new_requests() {
    let a = start_upstream().await;
    let b = start_upstream().await;
    let proxy = proxy_for(&a).await;
    let (_, _, body) = get(&proxy.url("/x")).await;
    assert_eq!(json(&body)["headers"]["host"], a.authority());
    proxy.state.set_upstream(b.authority().parse().unwrap());
    let (_, _, body) = get(&proxy.url("/x")).await;
    assert_eq!(json(&body)["headers"]["host"], b.authority());
}
