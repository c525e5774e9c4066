//! A room that keeps working (issue 18, part B), through the real `comfyhost` binary and the
//! embedded simulator: prompt ids ComfyUI would refuse never reach the job tracker (finding 4),
//! wrong bearer tokens are rate-limited without locking out the correct one and "sign out
//! everywhere" ends sessions (finding 6), and connections that never send a request are closed
//! while the host keeps answering others (finding 7).

use std::time::Duration;

use crate::support::{ADMIN_TOKEN, Host, empty_image_workflow};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

async fn submit(host: &Host, body: Value) -> (u16, Value) {
    let r = Host::client()
        .post(host.url("/prompt"))
        .json(&body)
        .send()
        .await
        .expect("submit");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The job's record once `done` holds for it (bounded wait, no timing assertion).
async fn job_until(host: &Host, prompt_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = Host::client()
            .get(host.url(&format!("/comfyhost/api/jobs/{prompt_id}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("job");
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if done(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {prompt_id} never got there: {v}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_ids_comfyui_would_refuse_never_reach_the_tracker() {
    let host = Host::builder().start().await;
    for bad in ["../../x", "a/b", "q?x=1", "NOT-A-UUID"] {
        let (status, body) = submit(
            &host,
            json!({"prompt": empty_image_workflow("bad"), "prompt_id": bad, "client_id": "c1"}),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["type"], "invalid_prompt_id", "{bad}: {body}");
        assert!(body["node_errors"].is_object(), "ComfyUI's shape: {body}");
    }
    let jobs = host.admin_get("/comfyhost/api/jobs").await;
    assert_eq!(jobs.as_array().map(Vec::len), Some(0), "{jobs}");
    // A canonical UUID is honoured, recorded and followed to its end.
    let id = "4cb72d02-75df-4ec6-8808-7a3c48fbd119";
    let (status, body) = submit(
        &host,
        json!({"prompt": empty_image_workflow("ok"), "prompt_id": id, "client_id": "c1"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["prompt_id"], id);
    job_until(&host, id, |j| j["status"] == "succeeded").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_guesses_are_rate_limited_but_the_correct_token_gets_in() {
    let host = Host::builder().start().await;
    let mut statuses = Vec::new();
    for i in 0..12 {
        let r = Host::client()
            .get(host.url("/comfyhost/api/plugins"))
            .bearer_auth(format!("guessing-{i}"))
            .send()
            .await
            .expect("guess");
        statuses.push((r.status().as_u16(), r.headers().contains_key("retry-after")));
    }
    assert!(statuses[..10].iter().all(|s| s.0 == 401), "{statuses:?}");
    assert!(
        statuses[10..].iter().all(|s| s.0 == 429 && s.1),
        "{statuses:?}"
    );
    // Same address, the correct token: always in.
    assert!(host.admin_get("/comfyhost/api/plugins").await.is_array());
    // A classmate's different wrong token is not caught by someone else's guessing.
    let r = Host::client()
        .get(host.url("/comfyhost/api/plugins"))
        .bearer_auth("other-wrong-token")
        .send()
        .await
        .expect("other");
    assert_eq!(r.status().as_u16(), 401);
}

/// Signs in; returns the cookie pair and the CSRF token.
async fn login(host: &Host, token: &str) -> (String, String) {
    let r = Host::client()
        .post(host.url("/comfyhost/api/session"))
        .json(&json!({"token": token}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("cookie")
        .to_string();
    let v: Value = r.json().await.expect("json");
    (cookie, v["csrf_token"].as_str().unwrap_or("").to_string())
}

async fn whoami(host: &Host, cookie: &str) -> u16 {
    Host::client()
        .get(host.url("/comfyhost/api/session"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("whoami")
        .status()
        .as_u16()
}

async fn everywhere(host: &Host, cookie: &str, csrf: &str) -> u16 {
    Host::client()
        .post(host.url("/comfyhost/api/session/everywhere"))
        .header("cookie", cookie)
        .header("x-csrf-token", csrf)
        .send()
        .await
        .expect("everywhere")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_everywhere_ends_own_sessions_for_users_and_all_for_admins() {
    let host = Host::builder().start().await;
    let mut tokens = Vec::new();
    for id in ["alice", "bob"] {
        let r = host
            .admin_post("/comfyhost/api/users", json!({"id": id}))
            .await;
        let v: Value = r.json().await.expect("json");
        tokens.push(v["token"].as_str().expect("token").to_string());
    }
    let (alice_laptop, alice_csrf) = login(&host, &tokens[0]).await;
    let (alice_phone, _) = login(&host, &tokens[0]).await;
    let (bob, _) = login(&host, &tokens[1]).await;
    let (admin, admin_csrf) = login(&host, ADMIN_TOKEN).await;
    // Without the CSRF token a cookie cannot do it.
    assert_eq!(everywhere(&host, &alice_laptop, "").await, 403);
    assert_eq!(everywhere(&host, &alice_laptop, &alice_csrf).await, 200);
    assert_eq!(whoami(&host, &alice_laptop).await, 401);
    assert_eq!(whoami(&host, &alice_phone).await, 401);
    assert_eq!(whoami(&host, &bob).await, 200, "only alice's own sessions");
    assert_eq!(whoami(&host, &admin).await, 200);
    assert_eq!(everywhere(&host, &admin, &admin_csrf).await, 200);
    assert_eq!(whoami(&host, &bob).await, 401);
    assert_eq!(whoami(&host, &admin).await, 401);
    // Tokens still work: only sessions ended.
    assert!(host.admin_get("/comfyhost/api/plugins").await.is_array());
    let activity = host.admin_get("/comfyhost/api/activity").await;
    assert!(
        activity.to_string().contains("session.sign_out_everywhere"),
        "{activity}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_admin_token_ends_the_sessions_of_the_old_one() {
    const ROTATED: &str = "rotated-admin-token-9876543210";
    let mut host = Host::builder().start().await;
    let alice_token = host.create_user("alice").await;
    let (admin, _) = login(&host, ADMIN_TOKEN).await;
    let (alice, _) = login(&host, &alice_token).await;
    assert_eq!(whoami(&host, &admin).await, 200);
    // Restarted with the same token, sessions live on (they are in the store).
    let data = std::mem::replace(&mut host.data_dir, tempfile::tempdir().expect("tmp"));
    drop(host);
    let mut host = Host::builder().data_dir(data).start().await;
    assert_eq!(whoami(&host, &admin).await, 200, "same token: session kept");
    // Restarted with a new admin token: the old token's sessions end, the old token is refused.
    let data = std::mem::replace(&mut host.data_dir, tempfile::tempdir().expect("tmp"));
    drop(host);
    let host = Host::builder()
        .data_dir(data)
        .admin_token(ROTATED)
        .start()
        .await;
    assert_eq!(
        whoami(&host, &admin).await,
        401,
        "the old token's session ended"
    );
    let r = Host::client()
        .get(host.url("/comfyhost/api/users"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("old token");
    assert_eq!(r.status().as_u16(), 401, "the old token no longer works");
    // A student's session was not signed in with the admin token.
    assert_eq!(whoami(&host, &alice).await, 200);
    let (new_admin, _) = login(&host, ROTATED).await;
    assert_eq!(whoami(&host, &new_admin).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_while_others_are_served() {
    let host = Host::builder()
        .arg("--header-read-timeout")
        .arg("2")
        .start()
        .await;
    let addr = host
        .base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("addr")
        .to_string();
    let mut silent = Vec::new();
    for _ in 0..200 {
        silent.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    // While they are open, a normal request is answered.
    let r = Host::client()
        .get(host.url("/comfyhost/api/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(r.status().as_u16(), 200);
    // Each silent connection is closed by the host (read sees the end, or a reset).
    for mut conn in silent {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(60), conn.read(&mut buf))
            .await
            .expect("the host never closed a silent connection");
        // hyper may answer 408 before closing; then the end follows. A reset is closed too.
        if let Ok(n) = read
            && n > 0
        {
            let mut rest = Vec::new();
            let _ = conn.read_to_end(&mut rest).await;
        }
    }
    let r = Host::client()
        .get(host.url("/comfyhost/api/health"))
        .send()
        .await
        .expect("health after");
    assert_eq!(r.status().as_u16(), 200);
}

/// A chain `depth` nodes deep: the built-in simulator dies (SIGABRT) validating ~100 or more.
fn chain_workflow(depth: usize, prefix: &str) -> Value {
    let mut w = serde_json::Map::new();
    w.insert(
        "1".into(),
        json!({"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}),
    );
    for i in 2..=depth {
        w.insert(
            i.to_string(),
            json!({"class_type": "ImageBatch", "inputs": {"image1": [(i - 1).to_string(), 0], "image2": ["1", 0]}}),
        );
    }
    w.insert(
        "save".into(),
        json!({"class_type": "SaveImage", "inputs": {"images": [depth.to_string(), 0], "filename_prefix": prefix}}),
    );
    Value::Object(w)
}

async fn submit_as(host: &Host, token: &str, body: Value) -> (u16, Value, Option<String>) {
    let r = Host::client()
        .post(host.url("/prompt"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("submit");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, r.json().await.unwrap_or(Value::Null), retry)
}

async fn wait_quarantined(host: &Host, n: usize) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let q = host.admin_get("/comfyhost/api/quarantine").await;
        if q.as_array().map_or(0, Vec::len) >= n {
            return q;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {n} quarantined: {q}\n{}",
            host.output_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_workflow_is_quarantined_and_comfyui_stays_up_for_others() {
    let host = Host::builder().start().await;
    let mallory = host.create_user("mallory").await;
    let alice = host.create_user("alice").await;
    // Five different crashing workflows in a row: five crashes well within the supervisor's
    // crash-loop window, which used to leave it `failed` (503 for everyone).
    for k in 0..5 {
        host.wait_comfy("ComfyUI ready", Duration::from_secs(120), |s| {
            s["state"] == "ready"
        })
        .await;
        let (status, body, _) = submit_as(
            &host,
            &mallory,
            json!({"prompt": chain_workflow(150, &format!("deep{k}")), "client_id": "m"}),
        )
        .await;
        assert_ne!(status, 200, "the simulator should die on this: {body}");
        let q = wait_quarantined(&host, k + 1).await;
        assert_eq!(q[0]["user_id"], "mallory", "{q}");
    }
    // The same workflow again: refused before ComfyUI, in ComfyUI's shape, naming the admin.
    host.wait_comfy("ComfyUI ready", Duration::from_secs(120), |s| {
        s["state"] == "ready"
    })
    .await;
    let (status, body, _) = submit_as(
        &host,
        &mallory,
        json!({"prompt": chain_workflow(150, "deep0"), "client_id": "m"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "comfyhost_quarantined", "{body}");
    assert!(
        body["error"]["details"]
            .as_str()
            .is_some_and(|d| d.contains("admin")),
        "{body}"
    );
    assert_eq!(host.comfy_state().await["state"], "ready");
    // Another user's prompt runs.
    let (status, body, _) = submit_as(
        &host,
        &alice,
        json!({"prompt": empty_image_workflow("alice"), "client_id": "a"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = body["prompt_id"].as_str().expect("id").to_string();
    job_until(&host, &id, |j| j["status"] == "succeeded").await;
    // The admin sees them, and releases one.
    let q = host.admin_get("/comfyhost/api/quarantine").await;
    let sha = q[0]["workflow_sha256"].as_str().expect("sha").to_string();
    let r = Host::client()
        .delete(host.url(&format!("/comfyhost/api/quarantine/{sha}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("release");
    assert_eq!(r.status().as_u16(), 204);
    let after = host.admin_get("/comfyhost/api/quarantine").await;
    assert_eq!(after.as_array().map(Vec::len), Some(4));
    let activity = host.admin_get("/comfyhost/api/activity").await.to_string();
    assert!(activity.contains("workflow.quarantined"), "{activity}");
    assert!(activity.contains("workflow.released"), "{activity}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_limits_name_the_limit_and_when_to_retry() {
    let host = Host::builder().start().await;
    let student = host.create_user("student").await;
    let r = Host::client()
        .put(host.url("/comfyhost/api/limits"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"max_queued": 0, "max_per_minute": 2, "max_nodes": 5}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 200);
    let bad = Host::client()
        .put(host.url("/comfyhost/api/limits"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"max_queued": -1}))
        .send()
        .await
        .expect("put");
    assert_eq!(bad.status().as_u16(), 400);
    let limits = host.admin_get("/comfyhost/api/limits").await;
    assert_eq!(limits["limits"]["max_per_minute"], 2, "{limits}");

    let (status, body, _) = submit_as(
        &host,
        &student,
        json!({"prompt": chain_workflow(8, "big"), "client_id": "s"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["extra_info"]["limit"], "max_nodes", "{body}");
    for i in 0..2 {
        let (status, body, _) = submit_as(
            &host,
            &student,
            json!({"prompt": empty_image_workflow(&format!("s{i}")), "client_id": "s"}),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body, retry) = submit_as(
        &host,
        &student,
        json!({"prompt": empty_image_workflow("s3"), "client_id": "s"}),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["type"], "comfyhost_limit");
    assert_eq!(body["error"]["extra_info"]["limit"], "max_per_minute");
    assert!(body["node_errors"].is_object(), "ComfyUI's shape: {body}");
    let retry: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    // The admin is not limited.
    let (status, body, _) = submit_as(
        &host,
        ADMIN_TOKEN,
        json!({"prompt": empty_image_workflow("adm"), "client_id": "adm"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_created_in_bulk_with_tokens_shown_once() {
    let host = Host::builder().start().await;
    let r = host
        .admin_post(
            "/comfyhost/api/users/bulk",
            json!({"count": 3, "prefix": "class-"}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().await.expect("json");
    let users = v["users"].as_array().expect("users").clone();
    let ids: Vec<&str> = users.iter().filter_map(|u| u["id"].as_str()).collect();
    assert_eq!(ids, ["class-01", "class-02", "class-03"]);
    for u in &users {
        let token = u["token"].as_str().expect("token");
        let (cookie, _) = login(&host, token).await;
        assert_eq!(whoami(&host, &cookie).await, 200);
    }
    // A list of names; one bad name creates nobody.
    let r = host
        .admin_post(
            "/comfyhost/api/users/bulk",
            json!({"names": ["ann", "bad name"]}),
        )
        .await;
    assert_eq!(r.status().as_u16(), 400);
    let r = host
        .admin_post("/comfyhost/api/users/bulk", json!({"names": ["ann", "bo"]}))
        .await;
    assert_eq!(r.status().as_u16(), 201);
    // The same count again continues the numbering; the list shows no tokens.
    let r = host
        .admin_post(
            "/comfyhost/api/users/bulk",
            json!({"count": 1, "prefix": "class-"}),
        )
        .await;
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["users"][0]["id"], "class-04");
    let list = host.admin_get("/comfyhost/api/users").await;
    assert_eq!(list.as_array().map(Vec::len), Some(6), "{list}");
    assert!(!list.to_string().contains("token\":\""), "{list}");
}
