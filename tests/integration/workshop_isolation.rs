//! Issue 18 (part A) through the real binary: two workshop users (alice, bob), an anonymous
//! client and the admin. Each sees and controls only their own queue entries, jobs and history;
//! interrupt, delete, clear, cancel and free act only on what the caller owns; prompt ids are
//! unique per host; another user's output and preview images are not served by `/view`; odd `POST /prompt` bodies are refused in ComfyUI's shape before ComfyUI;
//! `POST /history {clear|delete}` works (owner-filtered); sign-in required redirects the page
//! and refuses anonymous API use. Saved workflows and settings are per user (ComfyUI's
//! `--multi-user`, the host picks the `comfy-user`), shared again with isolation off.

use std::time::{Duration, Instant};

use crate::support::{ADMIN_TOKEN, Host, empty_image_workflow};
use serde_json::{Value, json};

/// Who sends a request.
#[derive(Clone, Copy)]
enum As<'a> {
    Token(&'a str),
    Anonymous,
}

async fn send(
    host: &Host,
    who: As<'_>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = Host::client();
    let mut req = match method {
        "GET" => client.get(host.url(path)),
        _ => client.post(host.url(path)),
    };
    if let As::Token(t) = who {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn get(host: &Host, who: As<'_>, path: &str) -> Value {
    let (status, v) = send(host, who, "GET", path, None).await;
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

async fn workshop(host: &Host, settings: Value) {
    let r = Host::client()
        .put(host.url("/comfyhost/api/workshop"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&settings)
        .send()
        .await
        .expect("settings");
    assert_eq!(r.status().as_u16(), 200);
}

/// A workflow that runs for `seconds` (the simulator's TestSleep) and saves an image.
fn sleeper(seconds: f64, prefix: &str) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "TestSleep", "inputs": {"value": ["1", 0], "seconds": seconds}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}}
    })
}

async fn submit(host: &Host, who: As<'_>, workflow: Value) -> String {
    let (status, v) = send(
        host,
        who,
        "POST",
        "/prompt",
        Some(json!({"prompt": workflow})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["prompt_id"].as_str().expect("prompt_id").to_string()
}

fn queue_ids(q: &Value) -> Vec<String> {
    ["queue_running", "queue_pending"]
        .iter()
        .filter_map(|k| q[*k].as_array())
        .flatten()
        .filter_map(|i| i[1].as_str().map(str::to_string))
        .collect()
}

fn job_ids(v: &Value) -> Vec<String> {
    v["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| j["id"].as_str().map(str::to_string))
        .collect()
}

async fn wait_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Queue, jobs API, interrupt, delete, clear, cancel, free and prompt-id reuse.
async fn queue_and_commands(host: &Host, current: bool) {
    let alice = host.create_user("alice").await;
    let bob = host.create_user("bob").await;
    // Anonymous visitors are one more user here.
    workshop(host, json!({"sign_in_required": false})).await;
    let (a, b, n, admin) = (
        As::Token(&alice),
        As::Token(&bob),
        As::Anonymous,
        As::Token(ADMIN_TOKEN),
    );
    let a1 = submit(host, a, sleeper(60.0, "a1")).await;
    wait_until("a1 runs", || async {
        get(host, admin, "/queue").await["queue_running"][0][1] == a1.as_str()
    })
    .await;
    let a2 = submit(host, a, sleeper(0.1, "a2")).await;
    let b1 = submit(host, b, sleeper(0.1, "b1")).await;
    let n1 = submit(host, n, sleeper(0.1, "n1")).await;

    // Each sees their own queue entries; the admin sees all (both path spellings).
    for path in ["/queue", "/api/queue"] {
        assert_eq!(
            sorted(queue_ids(&get(host, a, path).await)),
            sorted(vec![a1.clone(), a2.clone()])
        );
        assert_eq!(queue_ids(&get(host, b, path).await), vec![b1.clone()]);
        assert_eq!(queue_ids(&get(host, n, path).await), vec![n1.clone()]);
        assert_eq!(queue_ids(&get(host, admin, path).await).len(), 4);
    }
    if current {
        let list = "/api/jobs?status=in_progress,pending";
        assert_eq!(
            sorted(job_ids(&get(host, a, list).await)),
            sorted(vec![a1.clone(), a2.clone()])
        );
        assert_eq!(job_ids(&get(host, b, list).await), vec![b1.clone()]);
        assert_eq!(job_ids(&get(host, n, list).await), vec![n1.clone()]);
        assert_eq!(job_ids(&get(host, admin, list).await).len(), 4);
        let one = format!("/api/jobs/{a2}");
        assert_eq!(send(host, b, "GET", &one, None).await.0, 404);
        assert_eq!(send(host, n, "GET", &one, None).await.0, 404);
        assert_eq!(send(host, a, "GET", &one, None).await.0, 200);
        assert_eq!(send(host, admin, "GET", &one, None).await.0, 200);
        // Cancelling someone else's job does nothing.
        let cancel = format!("/api/jobs/{a2}/cancel");
        assert_eq!(send(host, b, "POST", &cancel, Some(json!({}))).await.0, 404);
        send(
            host,
            n,
            "POST",
            "/api/jobs/cancel",
            Some(json!({"job_ids": [a2]})),
        )
        .await;
        assert!(queue_ids(&get(host, a, "/queue").await).contains(&a2));
    }

    // A prompt id is unique per host: reusing another's is refused in ComfyUI's shape.
    for who in [b, n] {
        let (status, v) = send(
            host,
            who,
            "POST",
            "/prompt",
            Some(json!({"prompt": empty_image_workflow("steal"), "prompt_id": a2})),
        )
        .await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["type"], "invalid_prompt", "{v}");
        assert!(v["node_errors"].is_object());
    }

    // Interrupt: by id or with an empty body, only the owner (or an admin) stops a1.
    for who in [b, n] {
        let (s1, v1) = send(
            host,
            who,
            "POST",
            "/interrupt",
            Some(json!({"prompt_id": a1})),
        )
        .await;
        assert_eq!(s1, 403, "{v1}");
        assert_eq!(v1["error"]["type"], "comfyhost_forbidden");
        assert_eq!(
            send(host, who, "POST", "/interrupt", Some(json!({})))
                .await
                .0,
            403
        );
    }
    // `POST /free` is the admin's.
    assert_eq!(
        send(
            host,
            b,
            "POST",
            "/free",
            Some(json!({"unload_models": true}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        send(
            host,
            n,
            "POST",
            "/free",
            Some(json!({"unload_models": true}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        send(
            host,
            admin,
            "POST",
            "/free",
            Some(json!({"unload_models": true}))
        )
        .await
        .0,
        200
    );

    // Delete and clear act on the caller's prompts only.
    send(host, b, "POST", "/queue", Some(json!({"delete": [a2]}))).await;
    send(host, n, "POST", "/queue", Some(json!({"clear": true}))).await;
    send(host, b, "POST", "/api/queue", Some(json!({"clear": true}))).await;
    let all = queue_ids(&get(host, admin, "/queue").await);
    assert!(all.contains(&a1) && all.contains(&a2), "{all:?}");
    assert!(!all.contains(&b1) && !all.contains(&n1), "{all:?}");
    // The owner deletes and interrupts their own.
    send(host, a, "POST", "/queue", Some(json!({"delete": [a2]}))).await;
    assert!(!queue_ids(&get(host, admin, "/queue").await).contains(&a2));
    assert_eq!(
        send(host, a, "POST", "/interrupt", Some(json!({}))).await.0,
        200
    );
    wait_until("a1 interrupted", || async {
        queue_ids(&get(host, admin, "/queue").await).is_empty()
    })
    .await;
    // An admin interrupts anyone's.
    let b2 = submit(host, b, sleeper(60.0, "b2")).await;
    wait_until("b2 runs", || async {
        get(host, admin, "/queue").await["queue_running"][0][1] == b2.as_str()
    })
    .await;
    assert_eq!(
        send(
            host,
            admin,
            "POST",
            "/interrupt",
            Some(json!({"prompt_id": b2}))
        )
        .await
        .0,
        200
    );
    wait_until("b2 interrupted", || async {
        queue_ids(&get(host, admin, "/queue").await).is_empty()
    })
    .await;
}

/// History (GET, one entry, POST clear/delete) per user; isolation off relaxes it.
async fn history_per_user(host: &Host) {
    let alice = host.create_user("hist-alice").await;
    let bob = host.create_user("hist-bob").await;
    workshop(host, json!({"sign_in_required": false})).await;
    let (a, b, n, admin) = (
        As::Token(&alice),
        As::Token(&bob),
        As::Anonymous,
        As::Token(ADMIN_TOKEN),
    );
    let ha = submit(host, a, empty_image_workflow("ha")).await;
    let hb = submit(host, b, empty_image_workflow("hb")).await;
    let hn = submit(host, n, empty_image_workflow("hn")).await;
    wait_until("all three in history", || async {
        let h = get(host, admin, "/history").await;
        [&ha, &hb, &hn]
            .iter()
            .all(|id| h.get(id.as_str()).is_some())
    })
    .await;
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        k.sort();
        k
    };
    assert_eq!(keys(&get(host, a, "/history").await), vec![ha.clone()]);
    assert_eq!(keys(&get(host, b, "/api/history").await), vec![hb.clone()]);
    assert_eq!(keys(&get(host, n, "/history").await), vec![hn.clone()]);
    assert_eq!(keys(&get(host, admin, "/history").await).len(), 3);
    let one = format!("/history/{ha}");
    assert_eq!(get(host, b, &one).await, json!({}));
    assert_eq!(get(host, n, &one).await, json!({}));
    assert!(get(host, a, &one).await.get(&ha).is_some());
    assert!(get(host, admin, &one).await.get(&ha).is_some());
    // Alice's image: hers and the admin's to view, not bob's nor an anonymous visitor's.
    let entry = get(host, a, &one).await;
    let image = entry[&ha]["outputs"]["2"]["images"][0].clone();
    let view = format!(
        "/view?filename={}&subfolder={}&type={}",
        image["filename"].as_str().expect("filename"),
        image["subfolder"].as_str().unwrap_or(""),
        image["type"].as_str().unwrap_or("output")
    );
    wait_until("alice's output recorded as hers", || async {
        send(host, b, "GET", &view, None).await.0 == 404
    })
    .await;
    assert_eq!(send(host, n, "GET", &view, None).await.0, 404);
    assert_eq!(send(host, a, "GET", &view, None).await.0, 200);
    assert_eq!(send(host, admin, "GET", &view, None).await.0, 200);
    // Another user's delete or clear leaves alice's entry; the page's clear works (no 405).
    let (s, v) = send(host, b, "POST", "/history", Some(json!({"delete": [ha]}))).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = send(
        host,
        n,
        "POST",
        "/api/history",
        Some(json!({"clear": true})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let all = keys(&get(host, admin, "/history").await);
    assert!(
        all.contains(&ha) && all.contains(&hb) && !all.contains(&hn),
        "{all:?}"
    );
    // The owner deletes their own; an admin clears everything.
    assert_eq!(
        send(host, a, "POST", "/history", Some(json!({"delete": [ha]})))
            .await
            .0,
        200
    );
    assert!(!keys(&get(host, admin, "/history").await).contains(&ha));
    // With isolation off, bob sees what others did (a trusted room).
    workshop(host, json!({"isolation": false})).await;
    let hn2 = submit(host, n, empty_image_workflow("hn2")).await;
    wait_until("hn2 in bob's history", || async {
        get(host, b, "/history").await.get(hn2.as_str()).is_some()
    })
    .await;
    workshop(host, json!({"isolation": null})).await;
    assert_eq!(
        send(
            host,
            admin,
            "POST",
            "/history",
            Some(json!({"clear": true}))
        )
        .await
        .0,
        200
    );
    assert!(keys(&get(host, admin, "/history").await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_and_control_only_their_own_queue_and_jobs() {
    let host = Host::builder().start().await;
    queue_and_commands(&host, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_and_control_only_their_own_queue_on_0_3_64() {
    let host = Host::builder()
        .arg("--comfyui-arg=--sim-profile")
        .arg("--comfyui-arg=0.3.64")
        .start()
        .await;
    queue_and_commands(&host, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_per_user_and_post_history_clears_only_your_own() {
    let host = Host::builder().start().await;
    history_per_user(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_prompt_bodies_are_refused_before_comfyui() {
    let host = Host::builder().start().await;
    let student = host.create_user("student").await;
    let wf = empty_image_workflow("odd");
    let bodies = [
        json!({"prompt": wf, "client_id": 777, "number": -100}).to_string(),
        json!({"prompt": wf, "prompt_id": ["x"]}).to_string(),
        json!({"prompt": wf, "prompt_id": 12}).to_string(),
        json!({"prompt": [1, 2]}).to_string(),
        r#"{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": NaN}}}}"#.to_string(),
        r#"{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": Infinity}}}}"#
            .to_string(),
        json!({"prompt": wf, "extra_data": "x"}).to_string(),
    ];
    for body in &bodies {
        for token in [student.as_str(), ADMIN_TOKEN] {
            let r = Host::client()
                .post(host.url("/prompt"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("post");
            assert_eq!(r.status().as_u16(), 400, "{body}");
            let v: Value = r.json().await.expect("json");
            assert_eq!(v["error"]["type"], "invalid_prompt", "{body}: {v}");
            assert!(v["error"]["message"].is_string() && v["error"]["details"].is_string());
            assert!(v["error"]["extra_info"].is_object() && v["node_errors"].is_object());
        }
    }
    // Nothing reached ComfyUI: no queue, no history.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let h = host.admin_get("/history").await;
    assert_eq!(h, json!({}), "{h}");
    // A user's `number` is replaced by the host's: it does not jump the queue.
    let running = submit(&host, As::Token(&student), sleeper(30.0, "q0")).await;
    let first = submit(&host, As::Token(&student), sleeper(0.1, "q1")).await;
    let (s, v) = send(
        &host,
        As::Token(&student),
        "POST",
        "/prompt",
        Some(json!({"prompt": sleeper(0.1, "q2"), "number": -100, "front": true})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let jumper = v["prompt_id"].as_str().expect("id").to_string();
    let q = host.admin_get("/queue").await;
    let mut pending: Vec<(f64, String)> = q["queue_pending"]
        .as_array()
        .expect("pending")
        .iter()
        .map(|i| {
            (
                i[0].as_f64().unwrap_or(0.0),
                i[1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    pending.sort_by(|x, y| x.0.total_cmp(&y.0));
    let order: Vec<String> = pending.into_iter().map(|p| p.1).collect();
    assert_eq!(order, vec![first, jumper], "{q}");
    send(
        &host,
        As::Token(ADMIN_TOKEN),
        "POST",
        "/queue",
        Some(json!({"clear": true})),
    )
    .await;
    send(
        &host,
        As::Token(ADMIN_TOKEN),
        "POST",
        "/interrupt",
        Some(json!({"prompt_id": running})),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_required_sends_browsers_to_the_sign_in_page() {
    let host = Host::builder().start().await;
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    // No users: anonymous use works as before.
    let r = no_redirect.get(host.url("/")).send().await.expect("page");
    assert_ne!(r.status().as_u16(), 303);
    assert_eq!(
        send(&host, As::Anonymous, "GET", "/queue", None).await.0,
        200
    );
    let settings = host.admin_get("/comfyhost/api/workshop").await;
    assert_eq!(
        settings["effective"]["sign_in_required"], false,
        "{settings}"
    );

    // With a user, sign-in is required by default.
    let student = host.create_user("student").await;
    let settings = host.admin_get("/comfyhost/api/workshop").await;
    assert_eq!(
        settings["effective"]["sign_in_required"], true,
        "{settings}"
    );
    let r = no_redirect.get(host.url("/")).send().await.expect("page");
    assert_eq!(r.status().as_u16(), 303);
    let to = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert!(to.starts_with("/comfyhost/signin"), "{to}");
    let page = no_redirect.get(host.url(&to)).send().await.expect("signin");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("Sign in") && html.contains("/comfyhost/api/session"));
    for (method, path) in [
        ("GET", "/queue"),
        ("GET", "/api/jobs"),
        ("POST", "/prompt"),
        ("GET", "/history"),
    ] {
        let (status, v) = send(
            &host,
            As::Anonymous,
            method,
            path,
            Some(json!({"prompt": {}})),
        )
        .await;
        assert_eq!(status, 401, "{method} {path}: {v}");
        assert_eq!(v["error"]["type"], "comfyhost_sign_in_required", "{v}");
        assert!(v["node_errors"].is_object());
    }
    // The page's script list stays open and offers the badge with the sign-in link.
    let ext = get(&host, As::Anonymous, "/api/extensions").await;
    assert!(
        ext.as_array()
            .expect("list")
            .contains(&json!("/comfyhost/ext/signin-badge.js"))
    );
    let js = no_redirect
        .get(host.url("/comfyhost/ext/signin-badge.js"))
        .send()
        .await
        .expect("js");
    assert!(js.text().await.expect("text").contains("Sign in"));
    // A signed-in student's cookie opens the page and the API.
    let r = Host::client()
        .post(host.url("/comfyhost/api/session"))
        .json(&json!({"token": student}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    let r = no_redirect
        .get(host.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page");
    assert_ne!(r.status().as_u16(), 303);
    let r = no_redirect
        .get(host.url("/queue"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("queue");
    assert_eq!(r.status().as_u16(), 200);
    // Students cannot change the setting; the admin can turn it off.
    let r = Host::client()
        .put(host.url("/comfyhost/api/workshop"))
        .bearer_auth(&student)
        .json(&json!({"sign_in_required": false}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 403);
    workshop(&host, json!({"sign_in_required": false})).await;
    assert_eq!(
        send(&host, As::Anonymous, "GET", "/queue", None).await.0,
        200
    );
    // An unknown setting is refused, not stored.
    let r = Host::client()
        .put(host.url("/comfyhost/api/workshop"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"isolaton": false}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 400);
}

/// The `sid` of the first `status` message a socket gets, connecting with `client_id` as `token`.
async fn socket_sid(host: &Host, client_id: &str, token: Option<&str>) -> String {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = host
        .ws_url(&format!("/ws?clientId={client_id}"))
        .into_client_request()
        .expect("request");
    if let Some(t) = token {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("header"),
        );
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("ws");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_secs(5), ws.next()).await
        else {
            continue;
        };
        let v: Value = serde_json::from_str(&t).unwrap_or_default();
        if v["type"] == "status"
            && let Some(sid) = v["data"]["sid"].as_str()
        {
            return sid.to_string();
        }
    }
    panic!("no status with a sid on the socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_belongs_to_the_user_who_first_used_it() {
    let host = Host::builder().start().await;
    let alice = host.create_user("alice").await;
    let bob = host.create_user("bob").await;
    assert_eq!(
        socket_sid(&host, "alice-page", Some(&alice)).await,
        "alice-page"
    );
    let (s, v) = send(
        &host,
        As::Token(&alice),
        "POST",
        "/prompt",
        Some(json!({"prompt": empty_image_workflow("cid"), "client_id": "alice-page"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // Bob's socket with alice's id gets a fresh id; his prompt with it is refused.
    let sid = socket_sid(&host, "alice-page", Some(&bob)).await;
    assert_ne!(sid, "alice-page");
    assert!(!sid.is_empty());
    let (s, v) = send(
        &host,
        As::Token(&bob),
        "POST",
        "/prompt",
        Some(json!({"prompt": empty_image_workflow("cid"), "client_id": "alice-page"})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["type"], "invalid_prompt");
    // Alice reconnects with it; the admin may too.
    assert_eq!(
        socket_sid(&host, "alice-page", Some(&alice)).await,
        "alice-page"
    );
    assert_eq!(
        socket_sid(&host, "alice-page", Some(ADMIN_TOKEN)).await,
        "alice-page"
    );
    // Anonymous (sign-in off): a fresh id too.
    workshop(&host, json!({"sign_in_required": false})).await;
    assert_ne!(socket_sid(&host, "alice-page", None).await, "alice-page");
}

/// One request with a raw body and optional `comfy-user` header; answers status and body text.
async fn raw(
    host: &Host,
    who: As<'_>,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
    comfy_user: Option<&str>,
) -> (u16, String) {
    let mut req = Host::client().request(method, host.url(path));
    if let As::Token(t) = who {
        req = req.bearer_auth(t);
    }
    if let Some(u) = comfy_user {
        req = req.header("comfy-user", u);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

/// ComfyUI's `users.json` of the host's local ComfyUI (`{id: name}`).
fn comfy_users_file(host: &Host) -> Value {
    let dir = host
        .output_dir()
        .parent()
        .expect("comfyui dir")
        .join("user");
    serde_json::from_slice(&std::fs::read(dir.join("users.json")).expect("users.json"))
        .expect("users.json is JSON")
}

const WF: &str = "/api/userdata/workflows%2Fmine.json";

async fn user_data_per_user(host: &Host, current: bool) {
    use reqwest::Method;
    let alice = host.create_user("alice").await;
    let bob = host.create_user("bob").await;
    workshop(host, json!({"sign_in_required": false})).await;
    let (a, b) = (As::Token(&alice), As::Token(&bob));

    // The page goes straight in: no user list, so no user picker.
    let (s, users) = raw(host, a, Method::GET, "/api/users", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&users).unwrap(),
        json!({"storage": "server", "migrated": true})
    );
    let (s, _) = raw(
        host,
        b,
        Method::POST,
        "/api/users",
        Some(r#"{"username": "x"}"#),
        None,
    )
    .await;
    assert_eq!(s, 403, "students cannot register ComfyUI users");

    // Alice saves a workflow and a setting.
    let (s, body) = raw(
        host,
        a,
        Method::POST,
        &format!("{WF}?overwrite=false"),
        Some(r#"{"a": 1}"#),
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, _) = raw(
        host,
        a,
        Method::POST,
        "/api/settings/Comfy.ColorPalette",
        Some(r#""dark""#),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        raw(host, a, Method::GET, WF, None, None).await,
        (200, r#"{"a": 1}"#.to_string())
    );
    let (s, list) = raw(
        host,
        a,
        Method::GET,
        "/api/userdata?dir=workflows",
        None,
        None,
    )
    .await;
    assert_eq!(
        (s, serde_json::from_str::<Value>(&list).unwrap()),
        (200, json!(["mine.json"]))
    );
    assert_eq!(
        raw(
            host,
            a,
            Method::GET,
            "/api/settings/Comfy.ColorPalette",
            None,
            None
        )
        .await
        .1,
        r#""dark""#
    );

    // Each ComfyUI user is registered once: alice, bob (none yet), ...
    let ids = comfy_users_file(host);
    let id_of = |name: &str| {
        ids.as_object()
            .unwrap()
            .iter()
            .find(|(_, n)| n.as_str() == Some(name))
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("{name} in {ids}"))
    };
    let alice_id = id_of("comfyhost-user-alice");

    // Bob cannot read, list, overwrite or delete hers, even naming her ComfyUI user.
    for hdr in [None, Some(alice_id.as_str())] {
        assert_eq!(raw(host, b, Method::GET, WF, None, hdr).await.0, 404);
        assert_eq!(
            raw(
                host,
                b,
                Method::GET,
                "/api/userdata?dir=workflows",
                None,
                hdr
            )
            .await
            .0,
            404
        );
        assert_eq!(raw(host, b, Method::DELETE, WF, None, hdr).await.0, 404);
        assert_eq!(
            raw(
                host,
                b,
                Method::GET,
                "/api/settings/Comfy.ColorPalette",
                None,
                hdr
            )
            .await
            .1,
            "null"
        );
        let (s, all) = raw(host, b, Method::GET, "/api/settings", None, hdr).await;
        assert_eq!((s, all.as_str()), (200, "{}"));
        if current {
            let (s, v2) = raw(host, b, Method::GET, "/api/v2/userdata?path=", None, hdr).await;
            assert_eq!((s, v2.as_str()), (200, "[]"));
        }
        // Anonymous visitors are one more user.
        assert_eq!(
            raw(host, As::Anonymous, Method::GET, WF, None, hdr).await.0,
            404
        );
    }
    // Bob's own are separate: no conflict with hers, and hers are unchanged.
    let (s, _) = raw(
        host,
        b,
        Method::POST,
        &format!("{WF}?overwrite=false"),
        Some(r#"{"b": 2}"#),
        Some(&alice_id),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = raw(
        host,
        b,
        Method::POST,
        "/api/settings",
        Some(r#"{"Comfy.ColorPalette": "light"}"#),
        Some(&alice_id),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        raw(host, b, Method::GET, WF, None, None).await.1,
        r#"{"b": 2}"#
    );
    assert_eq!(
        raw(host, a, Method::GET, WF, None, None).await.1,
        r#"{"a": 1}"#
    );
    assert_eq!(
        raw(
            host,
            a,
            Method::GET,
            "/api/settings/Comfy.ColorPalette",
            None,
            None
        )
        .await
        .1,
        r#""dark""#
    );
    assert_eq!(
        raw(
            host,
            b,
            Method::GET,
            "/api/settings/Comfy.ColorPalette",
            None,
            None
        )
        .await
        .1,
        r#""light""#
    );
    if current {
        let (s, v2) = raw(
            host,
            a,
            Method::GET,
            "/api/v2/userdata?path=workflows",
            None,
            None,
        )
        .await;
        assert_eq!(s, 200);
        let v2: Value = serde_json::from_str(&v2).unwrap();
        assert_eq!(v2[0]["path"], "workflows/mine.json", "{v2}");
    }
    // Bob deletes his own; hers stays.
    assert_eq!(raw(host, b, Method::DELETE, WF, None, None).await.0, 204);
    assert_eq!(raw(host, a, Method::GET, WF, None, None).await.0, 200);
    // The admin has a space of their own while isolation is on.
    assert_eq!(
        raw(host, As::Token(ADMIN_TOKEN), Method::GET, WF, None, None)
            .await
            .0,
        404
    );
    let names: Vec<String> = comfy_users_file(host)
        .as_object()
        .unwrap()
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    for n in [
        "default",
        "comfyhost-user-alice",
        "comfyhost-user-bob",
        "comfyhost-anonymous",
        "comfyhost-admin",
    ] {
        assert_eq!(
            names.iter().filter(|x| *x == n).count(),
            1,
            "{n} once in {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_workflows_and_settings_are_per_user() {
    let host = Host::builder().start().await;
    user_data_per_user(&host, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_workflows_and_settings_are_per_user_on_0_3_64() {
    let host = Host::builder()
        .arg("--comfyui-arg=--sim-profile")
        .arg("--comfyui-arg=0.3.64")
        .start()
        .await;
    user_data_per_user(&host, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_off_shares_saved_workflows_as_before() {
    use reqwest::Method;
    let host = Host::builder().start().await;
    let alice = host.create_user("alice").await;
    let bob = host.create_user("bob").await;
    workshop(&host, json!({"isolation": false})).await;
    let (s, _) = raw(
        &host,
        As::Token(&alice),
        Method::POST,
        WF,
        Some(r#"{"a": 1}"#),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = raw(
        &host,
        As::Token(&alice),
        Method::POST,
        "/api/settings/Comfy.ColorPalette",
        Some(r#""dark""#),
        None,
    )
    .await;
    assert_eq!(s, 200);
    // Everyone shares ComfyUI's `default` user, as without comfyhost.
    for who in [As::Token(ADMIN_TOKEN), As::Token(&bob)] {
        assert_eq!(
            raw(&host, who, Method::GET, WF, None, None).await,
            (200, r#"{"a": 1}"#.to_string())
        );
        assert_eq!(
            raw(
                &host,
                who,
                Method::GET,
                "/api/settings/Comfy.ColorPalette",
                None,
                None
            )
            .await
            .1,
            r#""dark""#
        );
    }
    let user_dir = host.output_dir().parent().unwrap().join("user");
    assert!(user_dir.join("default/workflows/mine.json").is_file());
    // A client's own comfy-user header does not pick another space either.
    assert_eq!(
        raw(
            &host,
            As::Token(&bob),
            Method::GET,
            WF,
            None,
            Some("nobody")
        )
        .await
        .0,
        200
    );
}

/// A `PreviewImage` writes to ComfyUI's `temp` folder, which the store does not record: the
/// host learns the file from the `executed` message on the owner's page and `/view` serves it
/// to her and to admins only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_preview_images_are_not_served() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let host = Host::builder().start().await;
    let alice = host.create_user("alice").await;
    let bob = host.create_user("bob").await;
    workshop(&host, json!({"sign_in_required": false})).await;
    let client_id = "c3f1b2a4-0000-4000-8000-00000000a11c";
    let mut req = host
        .ws_url(&format!("/ws?clientId={client_id}"))
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {alice}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("ws");
    let workflow = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    });
    let (status, v) = send(
        &host,
        As::Token(&alice),
        "POST",
        "/prompt",
        Some(json!({"prompt": workflow, "client_id": client_id})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let image = loop {
        assert!(
            Instant::now() < deadline,
            "no executed message with the preview"
        );
        let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_secs(5), ws.next()).await
        else {
            continue;
        };
        let m: Value = serde_json::from_str(&t).unwrap_or_default();
        if m["type"] == "executed" && m["data"]["node"] == "2" {
            break m["data"]["output"]["images"][0].clone();
        }
    };
    assert_eq!(image["type"], "temp", "{image}");
    let view = format!(
        "/view?filename={}&subfolder={}&type=temp",
        image["filename"].as_str().expect("filename"),
        image["subfolder"].as_str().unwrap_or("")
    );
    assert_eq!(
        send(&host, As::Token(&bob), "GET", &view, None).await.0,
        404
    );
    assert_eq!(send(&host, As::Anonymous, "GET", &view, None).await.0, 404);
    assert_eq!(
        send(&host, As::Token(&alice), "GET", &view, None).await.0,
        200
    );
    assert_eq!(
        send(&host, As::Token(ADMIN_TOKEN), "GET", &view, None)
            .await
            .0,
        200
    );
}
