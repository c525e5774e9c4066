//! Who may change the host: every mutating host API endpoint refuses anonymous requests (401),
//! signed-in workshop users (403, by token and by session), and an admin session without the
//! CSRF token (403); the admin session with it and the admin token succeed. Sign-in attempts
//! are rate-limited.

use crate::support::{ADMIN_TOKEN, Host};
use serde_json::{Value, json};

/// A concrete URL for a route: path parameters filled with `x`.
fn concrete(path: &str) -> String {
    let filled: Vec<String> = path
        .split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "x".to_string()
            } else {
                seg.to_string()
            }
        })
        .collect();
    format!("/comfyhost/api{}", filled.join("/"))
}

/// (method, path) of every state-changing admin endpoint, from the router's own table: a new
/// route is checked without anyone adding it here.
fn mutating() -> Vec<(String, String)> {
    let table = comfyhost::api::route_table();
    let all: Vec<(String, String)> = table
        .admin
        .iter()
        .filter(|r| r.method != http::Method::GET)
        .map(|r| (r.method.to_string(), concrete(r.path)))
        .collect();
    // The derivation sees the endpoints a hand-kept list once missed.
    for (m, p) in [
        ("POST", "/comfyhost/api/models/resolve"),
        ("POST", "/comfyhost/api/models/install"),
        ("POST", "/comfyhost/api/models/downloads/x/pause"),
        ("POST", "/comfyhost/api/models/downloads/x/resume"),
        ("POST", "/comfyhost/api/models/downloads/x/cancel"),
        ("POST", "/comfyhost/api/outputs/removals/release"),
    ] {
        assert!(
            all.iter().any(|(am, ap)| am == m && ap == p),
            "{m} {p} missing from {all:?}"
        );
    }
    all
}

/// Admin-only reads, from the same table.
fn reads() -> Vec<String> {
    comfyhost::api::route_table()
        .admin
        .iter()
        .filter(|r| r.method == http::Method::GET)
        .map(|r| concrete(r.path))
        .collect()
}

async fn send(
    host: &Host,
    method: &str,
    path: &str,
    body: &Value,
    headers: &[(&str, String)],
) -> u16 {
    let client = Host::client();
    let mut req = match method {
        "POST" => client.post(host.url(path)),
        "PUT" => client.put(host.url(path)),
        "DELETE" => client.delete(host.url(path)),
        _ => client.get(host.url(path)),
    };
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    if method != "GET" && method != "DELETE" {
        req = req.json(body);
    }
    req.send().await.expect("request").status().as_u16()
}

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
        .expect("cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(token),
        "the cookie carries a session id, not the token"
    );
    let session = cookie.split(';').next().expect("pair").to_string();
    let v: Value = r.json().await.expect("json");
    (session, v["csrf_token"].as_str().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_change_the_host() {
    let host = Host::builder().start().await;
    let r = host
        .admin_post("/comfyhost/api/users", json!({"id": "student"}))
        .await;
    let student: Value = r.json().await.expect("json");
    let student_token = student["token"].as_str().expect("token").to_string();
    let (student_cookie, student_csrf) = login(&host, &student_token).await;
    let (admin_cookie, admin_csrf) = login(&host, ADMIN_TOKEN).await;

    let body = json!({});
    for (i, (method, path)) in mutating().into_iter().enumerate() {
        let (method, path) = (method.as_str(), path.as_str());
        let anon = send(&host, method, path, &body, &[]).await;
        assert_eq!(anon, 401, "anonymous {method} {path}");
        // A different wrong token each time: repeated guesses at one token are rate-limited.
        let bad = send(
            &host,
            method,
            path,
            &body,
            &[("authorization", format!("Bearer {i:06}-not-a-token"))],
        )
        .await;
        assert_eq!(bad, 401, "bad token {method} {path}");
        let by_token = send(
            &host,
            method,
            path,
            &body,
            &[("authorization", format!("Bearer {student_token}"))],
        )
        .await;
        assert_eq!(by_token, 403, "student token {method} {path}");
        let by_session = send(
            &host,
            method,
            path,
            &body,
            &[
                ("cookie", student_cookie.clone()),
                ("x-csrf-token", student_csrf.clone()),
            ],
        )
        .await;
        assert_eq!(by_session, 403, "student session {method} {path}");
        let no_csrf = send(
            &host,
            method,
            path,
            &body,
            &[("cookie", admin_cookie.clone())],
        )
        .await;
        assert_eq!(no_csrf, 403, "admin session without CSRF {method} {path}");
        let wrong_csrf = send(
            &host,
            method,
            path,
            &body,
            &[
                ("cookie", admin_cookie.clone()),
                ("x-csrf-token", "0".repeat(admin_csrf.len())),
            ],
        )
        .await;
        assert_eq!(
            wrong_csrf, 403,
            "admin session with a wrong CSRF token {method} {path}"
        );
    }
    for path in reads() {
        let path = path.as_str();
        assert_eq!(
            send(&host, "GET", path, &json!({}), &[]).await,
            401,
            "anonymous GET {path}"
        );
        let s = send(
            &host,
            "GET",
            path,
            &json!({}),
            &[("cookie", student_cookie.clone())],
        )
        .await;
        assert_eq!(s, 403, "student GET {path}");
        let a = send(
            &host,
            "GET",
            path,
            &json!({}),
            &[("cookie", admin_cookie.clone())],
        )
        .await;
        // Past authorization: 200, or 404 for a made-up id.
        assert!(a == 200 || a == 404, "admin session GET {path}: {a}");
    }
    // The admin session with its CSRF token may change things; the change is in the activity log.
    let ok = send(
        &host,
        "POST",
        "/comfyhost/api/users",
        &json!({"id": "student2"}),
        &[
            ("cookie", admin_cookie.clone()),
            ("x-csrf-token", admin_csrf.clone()),
        ],
    )
    .await;
    assert_eq!(ok, 201);
    let activity = host.admin_get("/comfyhost/api/activity").await;
    assert!(
        activity
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["action"] == "user.create"
                && e["target"] == "student2"
                && e["actor"] == "admin")),
        "{activity:#}"
    );
    // Workshop users still use ComfyUI through the host.
    let r = Host::client()
        .get(host.url("/system_stats"))
        .header("cookie", student_cookie.clone())
        .send()
        .await
        .expect("stats");
    assert_eq!(r.status().as_u16(), 200);
    // Signing out ends the session.
    let out = send(
        &host,
        "DELETE",
        "/comfyhost/api/session",
        &json!({}),
        &[("cookie", admin_cookie.clone())],
    )
    .await;
    assert_eq!(out, 204);
    assert_eq!(
        send(
            &host,
            "GET",
            "/comfyhost/api/plugins",
            &json!({}),
            &[("cookie", admin_cookie)]
        )
        .await,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_attempts_are_rate_limited() {
    let host = Host::builder().start().await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = Host::client()
            .post(host.url("/comfyhost/api/session"))
            .json(&json!({"token": "guess"}))
            .send()
            .await
            .expect("login");
        statuses.push((
            r.status().as_u16(),
            r.headers().get("retry-after").is_some(),
        ));
    }
    assert!(
        statuses[..10].iter().all(|(s, _)| *s == 401),
        "{statuses:?}"
    );
    assert!(
        statuses[10..].iter().all(|(s, retry)| *s == 429 && *retry),
        "{statuses:?}"
    );
    // The right token still gets in from this address (a class behind one NAT shares it).
    let r = Host::client()
        .post(host.url("/comfyhost/api/session"))
        .json(&json!({"token": ADMIN_TOKEN}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status().as_u16(), 200);
    // Bearer API access is unaffected.
    assert!(host.admin_get("/comfyhost/api/plugins").await.is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attention_override_is_validated_stored_and_applied_on_restart() {
    let host = Host::builder().start().await;
    let put = |body: Value| {
        let url = host.url("/comfyhost/api/gpu/override");
        async move {
            Host::client()
                .put(url)
                .bearer_auth(ADMIN_TOKEN)
                .json(&body)
                .send()
                .await
                .expect("put")
        }
    };
    let bad = put(json!({"attention": {"force": "warp-drive"}})).await;
    assert_eq!(bad.status().as_u16(), 400);
    let bad: Value = bad.json().await.expect("json");
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("override"),
        "{bad}"
    );

    let r = put(
        json!({"attention": "auto", "extra_flags": ["--disable-smart-memory"], "restart": true}),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.expect("json");
    // The simulator has no `main.py --help` to check flags against, so the extra flag is
    // dropped, with the reason in the decision (a real ComfyUI keeps flags it accepts).
    let reasons = v["decision"]["reasons"].to_string();
    assert!(reasons.contains("--disable-smart-memory dropped"), "{v:#}");
    assert!(v["restart_op"].is_number(), "{v:#}");
    assert_eq!(
        host.admin_get("/comfyhost/api/gpu/override").await["extra_flags"],
        json!(["--disable-smart-memory"])
    );
    // ComfyUI restarts with the decision's flags.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let st = host.comfy_state().await;
        if st["state"] == "ready" && st["command_line"].to_string().contains("--cpu") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{st:#}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The stored override is what the next start decides with.
    let mut host = host;
    let data = std::mem::replace(&mut host.data_dir, tempfile::tempdir().expect("tmp"));
    drop(host);
    let host = Host::builder().data_dir(data).start().await;
    let gpu = host.admin_get("/comfyhost/api/gpu").await;
    assert!(
        gpu["decision"]["reasons"]
            .to_string()
            .contains("--disable-smart-memory dropped"),
        "{gpu:#}"
    );
    let activity = host.admin_get("/comfyhost/api/activity").await;
    assert!(
        activity
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["action"] == "gpu.override"))
    );
}
