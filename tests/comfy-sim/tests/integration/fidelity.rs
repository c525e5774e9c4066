//! Replays the recordings of real ComfyUI 0.3.64 (tests/fixtures/comfyui-transcripts) against
//! the simulator and compares status codes, bodies (exactly, after normalising ids and
//! timestamps) and WebSocket message sequences.

use std::time::Duration;

use crate::common::*;
use serde_json::{Value, json};

const ERR_RECORDINGS: &[&str] = &[
    "err_ckpt_not_found.json",
    "err_ckpt_not_found_no_output.json",
    "err_empty_prompt.json",
    "err_link_to_missing_node.json",
    "err_link_type_mismatch.json",
    "err_malformed_json.json",
    "err_missing_required_input.json",
    "err_missing_required_link.json",
    "err_no_prompt_key.json",
    "err_unknown_class_type.json",
    "err_unknown_class_type_only.json",
    "err_value_out_of_range.json",
    "err_wrong_type_value.json",
];

/// Replays one HTTP recording and checks status, content type, length and body.
async fn check_exact(sim: &Sim, name: &str) {
    let rec = recording(name);
    let (status, headers, body) = sim.replay(&rec).await;
    assert_eq!(
        status,
        rec["status"].as_u64().unwrap() as u16,
        "{name}: status"
    );
    let ct = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(
        ct.as_deref(),
        rec["headers"]["Content-Type"].as_str(),
        "{name}: content type"
    );
    // Byte-exact length (Python json.dumps formatting). Recordings with tracebacks had their
    // install path rewritten by the recorder, so their length is not comparable.
    if !rec["body"].to_string().contains("traceback") {
        assert_eq!(
            body.len() as u64,
            rec["body_len"].as_u64().unwrap(),
            "{name}: body length"
        );
    }
    match &rec["body"] {
        Value::Null => assert!(body.is_empty(), "{name}: body should be empty"),
        Value::String(s) => assert_eq!(String::from_utf8_lossy(&body), *s, "{name}"),
        expected => {
            let actual: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(&actual, expected, "{name}: body");
        }
    }
}

/// The basic phase: run1..run4, every validation error, the runtime error, history, queue, view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_phase_matches_recordings() {
    let sim = start_v0_3_64(|_, _| {}).await;
    let ids = recording("run_ids_basic.json");
    let client = ids["client_id"].as_str().unwrap();
    let (mut ws, hello) = sim.ws(Some(client)).await;
    assert_eq!(hello, ws_recording("ws_connect.jsonl")[0], "ws_connect");

    // Empty state.
    check_exact(&sim, "get_history_empty.json").await;
    check_exact(&sim, "get_queue_idle.json").await;
    check_exact(&sim, "get_prompt.json").await;

    let runs = [
        (
            "run1_post_prompt.json",
            "ws_run1.jsonl",
            "run1",
            Some("get_history_run1.json"),
        ),
        (
            "run2_cached_post_prompt.json",
            "ws_run2_cached.jsonl",
            "run2",
            Some("get_history_run2_cached.json"),
        ),
        (
            "run3_changed_post_prompt.json",
            "ws_run3_changed.jsonl",
            "run3",
            None,
        ),
        (
            "run4_custom_prompt_id_post_prompt.json",
            "ws_run4_custom_prompt_id.jsonl",
            "run4",
            None,
        ),
    ];
    for (post, ws_rec, key, history) in runs {
        let rec = recording(post);
        let (status, headers, body) = sim.replay(&rec).await;
        assert_eq!(status, 200, "{post}");
        assert_eq!(headers["content-type"], "application/json; charset=utf-8");
        let body: Value = serde_json::from_slice(&body).unwrap();
        let pid = body["prompt_id"].as_str().unwrap().to_string();
        let recorded_pid = ids[key].as_str().unwrap();
        let map = [(pid.as_str(), recorded_pid)];
        assert_eq!(normalize(&body, &map), rec["body"], "{post}: response");
        let got = until_done(&mut ws, &pid).await;
        let expected = ws_recording(ws_rec);
        assert_eq!(
            got.iter().map(|m| normalize(m, &map)).collect::<Vec<_>>(),
            expected
                .iter()
                .map(|m| normalize(m, &[]))
                .collect::<Vec<_>>(),
            "{ws_rec}"
        );
        if let Some(h) = history {
            let rec = recording(h);
            let actual = sim.get_json(&format!("/history/{pid}")).await;
            assert_eq!(
                normalize(&actual, &map),
                normalize(&rec["body"], &[]),
                "{h}"
            );
        }
    }

    // Validation errors: exact bodies, and no WebSocket message at all.
    for name in ERR_RECORDINGS {
        check_exact(&sim, name).await;
    }
    let quiet = drain(&mut ws, Duration::from_millis(300)).await;
    assert!(
        quiet.is_empty(),
        "ws_during_validation_errors: expected no messages, got {quiet:?}"
    );

    // Runtime error (ImageBatch of RGB + RGBA): number 16 like the recording.
    let rec = recording("run_runtime_error_post_prompt.json");
    let (_, _, body) = sim.replay(&rec).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    let pid = body["prompt_id"].as_str().unwrap().to_string();
    let map = [(pid.as_str(), ids["runtime_error"].as_str().unwrap())];
    assert_eq!(normalize(&body, &map), rec["body"]);
    let got = until_done(&mut ws, &pid).await;
    let expected = ws_recording("ws_run_runtime_error.jsonl");
    assert_eq!(got.len(), expected.len(), "ws_run_runtime_error: {got:#?}");
    for (i, (g, e)) in got.iter().zip(expected.iter()).enumerate() {
        if let Some(obj) = e["data"].as_object() {
            for (k, v) in obj.iter().filter(|(k, _)| {
                !["timestamp", "executed", "current_outputs"].contains(&k.as_str())
            }) {
                assert_eq!(
                    normalize(&g["data"][k], &map),
                    normalize(v, &[]),
                    "message {i} field {k}"
                );
            }
        }
        assert_eq!(
            normalize(g, &map),
            normalize(e, &[]),
            "ws_run_runtime_error message {i}"
        );
    }
    let actual = sim.get_json(&format!("/history/{pid}")).await;
    assert_eq!(
        normalize(&actual, &map),
        normalize(&recording("get_history_runtime_error.json")["body"], &[])
    );
    let last = sim.get_json("/history?max_items=1").await;
    assert_eq!(
        normalize(&last, &map),
        normalize(&recording("get_history_max_items_1.json")["body"], &[])
    );
    let all = sim.get_json("/history").await;
    assert_eq!(
        all.as_object().unwrap().len(),
        recording("get_history_all.json")["body"]
            .as_object()
            .unwrap()
            .len()
    );
    check_exact(&sim, "get_history_unknown_id.json").await;
    check_exact(&sim, "get_queue_after.json").await;
    check_exact(&sim, "get_prompt.json").await;
}

#[tokio::test]
async fn view_serves_real_pngs_and_refuses_bad_paths() {
    let sim = start_v0_3_64(|_, _| {}).await;
    let rec = recording("run1_post_prompt.json");
    let (mut ws, _) = sim.ws(Some("lab-488d4197bb8243b4a6b872fadaf51000")).await;
    let (_, _, body) = sim.replay(&rec).await;
    let pid = serde_json::from_slice::<Value>(&body).unwrap()["prompt_id"]
        .as_str()
        .unwrap()
        .to_string();
    until_done(&mut ws, &pid).await;

    let view = recording("get_view_run1.json");
    let (status, headers, bytes) = sim.replay(&view).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(
        headers["content-disposition"],
        view["headers"]["Content-Disposition"].as_str().unwrap()
    );
    assert_eq!(hex8(&bytes), view["first8_hex"].as_str().unwrap());
    assert_eq!(comfy_sim::png::read_header(&bytes), Some((64, 64, 3)));
    assert!(sim.dir.path().join("output/probe_00001_.png").is_file());
    // The prompt is embedded like ComfyUI's SaveImage does.
    assert!(bytes.windows(7).any(|w| w == b"tEXtpro"));

    let missing = recording("get_view_missing.json");
    let (status, headers, bytes) = sim.replay(&missing).await;
    assert_eq!(status, 404);
    assert_eq!(headers["content-length"], "0");
    assert!(bytes.is_empty());
    for (path, code) in [
        ("/view?filename=../secret.png&type=output", 400),
        ("/view?filename=/etc/passwd", 400),
        (
            "/view?filename=probe_00001_.png&subfolder=../..&type=output",
            403,
        ),
        ("/view?filename=probe_00001_.png&type=bogus", 400),
    ] {
        let (s, _, _) = sim.request("GET", path, &json!({})).await;
        assert_eq!(s, code, "{path}");
    }
}

fn hex8(b: &[u8]) -> String {
    b.iter().take(8).map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn informational_routes_match_recordings() {
    let sim = start_v0_3_64(|_, _| {}).await;
    for name in [
        "get_embeddings.json",
        "get_extensions.json",
        "get_features.json",
        "get_models.json",
        "get_models_checkpoints.json",
        "get_object_info_NoSuchNode.json",
        "get_object_info_EmptyImage.json",
        "get_object_info_SaveImage.json",
        "get_object_info_KSampler.json",
        "get_object_info_CheckpointLoaderSimple.json",
        "post_free.json",
        "post_interrupt_nobody.json",
        "post_interrupt_prompt_id.json",
        "post_queue_clear.json",
        "post_queue_delete.json",
    ] {
        check_exact(&sim, name).await;
    }
    // 404 for unknown routes: empty body, like aiohttp behind ComfyUI's static route.
    let rec = recording("get_404.json");
    let (status, headers, body) = sim.replay(&rec).await;
    assert_eq!(status, 404);
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert!(body.is_empty());

    // system_stats: same keys and types (values are machine-specific).
    for name in ["get_system_stats.json", "get_api_system_stats.json"] {
        let rec = recording(name);
        let (status, _, body) = sim.replay(&rec).await;
        assert_eq!(status, 200);
        let actual: Value = serde_json::from_slice(&body).unwrap();
        assert_same_shape(&actual, &rec["body"], name);
        assert_eq!(actual["system"]["comfyui_version"], "0.3.64");
    }
    // /object_info lists every class and agrees with /object_info/{class}.
    let all = sim.get_json("/api/object_info").await;
    let meta = recording("get_object_info_meta.json");
    assert_eq!(
        all["EmptyImage"],
        recording("get_object_info_EmptyImage.json")["body"]["EmptyImage"]
    );
    for k in meta["first_20_keys"].as_array().unwrap().iter().take(3) {
        assert!(all.get(k.as_str().unwrap()).is_some(), "{k}");
    }
    let (s, _) = sim.post_json("/api/history", &json!({"clear": true})).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn websocket_connect_variants_match_recordings() {
    let sim = start_v0_3_64(|_, _| {}).await;
    let (_, hello) = sim.ws(None).await;
    let rec = &ws_recording("ws_anonymous_connect.jsonl")[0];
    assert_same_shape(&hello, rec, "ws_anonymous_connect");
    let sid = hello["data"]["sid"].as_str().unwrap();
    assert!(
        sid.len() == 32 && sid.chars().all(|c| c.is_ascii_hexdigit()),
        "uuid4().hex sid: {sid}"
    );

    let rec = ws_recording("ws_feature_flags_negotiation.jsonl");
    let (mut ws, hello) = sim.ws(Some("ff-50a2bba5")).await;
    assert_eq!(hello, rec[0]);
    send_text(
        &mut ws,
        &json!({"type": "feature_flags", "data": {"supports_preview_metadata": true, "supports_manager_v4_ui": true}}),
    )
    .await;
    assert_eq!(next_text(&mut ws).await.unwrap(), rec[1]);
    // Only the first message negotiates.
    send_text(&mut ws, &json!({"type": "feature_flags", "data": {}})).await;
    assert!(drain(&mut ws, Duration::from_millis(200)).await.is_empty());
}

/// Prompts of one client are invisible (except `status`) to others; a reused clientId takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_messages_go_only_to_the_submitting_client() {
    let sim = start_v0_3_64(|_, _| {}).await;
    let (mut other, _) = sim.ws(Some("observer")).await;
    let (mut old, _) = sim.ws(Some("student")).await;
    let (mut new, _) = sim.ws(Some("student")).await;
    let mut req = recording("run1_post_prompt.json")["request"]["json"].clone();
    req["client_id"] = json!("student");
    let (status, body) = sim.post_json("/prompt", &req).await;
    assert_eq!(status, 200);
    let pid = body["prompt_id"].as_str().unwrap();
    let got = until_done(&mut new, pid).await;
    assert!(got.iter().any(|m| m["type"] == "executed"));
    let seen = drain(&mut other, Duration::from_millis(300)).await;
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|m| m["type"] == "status"),
        "observer saw {seen:?}"
    );
    let stale = drain(&mut old, Duration::from_millis(100)).await;
    assert!(stale.is_empty(), "replaced socket got {stale:?}");
}

/// Host/Origin mismatch on a loopback Host is refused like ComfyUI's origin middleware.
#[tokio::test]
async fn mismatched_origin_gets_403() {
    let sim = start_v0_3_64(|_, _| {}).await;
    let url = format!("{}/prompt", sim.base);
    let bad = sim
        .http
        .get(&url)
        .header("Origin", "https://comfy.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 403);
    let good = sim
        .http
        .get(&url)
        .header("Origin", sim.base.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    let (_, cors) = {
        let s = start_v0_3_64(|o, _| o.enable_cors_header = Some("*".into())).await;
        let r = s
            .http
            .get(format!("{}/prompt", s.base))
            .header("Origin", "https://x.example")
            .send()
            .await
            .unwrap();
        (s, r)
    };
    assert_eq!(cors.status(), 200);
    assert_eq!(cors.headers()["access-control-allow-origin"], "*");
}
