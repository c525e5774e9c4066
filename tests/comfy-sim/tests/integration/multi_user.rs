//! `--multi-user` (ComfyUI's `UserManager`), both profiles: users registered with
//! `POST /users` and listed by `GET /users`; the `comfy-user` header picks the directory
//! under the user directory for `/userdata`, `/settings` (and `/api/v2/userdata` in 0.33.0);
//! unknown users get ComfyUI's answers (500 page, 401 for settings, 403 for v2 userdata).

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{self, Sim};

async fn call(
    sim: &Sim,
    method: Method,
    path: &str,
    user: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut rb = sim.http.request(method, format!("{}{path}", sim.base));
    if let Some(u) = user {
        rb = rb.header("comfy-user", u);
    }
    if let Some(b) = body {
        rb = rb.body(b.to_string());
    }
    let r = rb.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn per_user(sim: &Sim, current: bool) {
    assert_eq!(
        sim.get_json("/users").await,
        json!({"storage": "server", "users": {}})
    );
    let (s, a) = sim
        .post_json("/api/users", &json!({"username": "alice"}))
        .await;
    assert_eq!(s, 200);
    let a = a.as_str().unwrap().to_string();
    assert!(
        a.starts_with("alice_") && a.len() == "alice_".len() + 36,
        "{a}"
    );
    let (s, b) = sim.post_json("/users", &json!({"username": "bob"})).await;
    assert_eq!(s, 200);
    let b = b.as_str().unwrap().to_string();
    assert_eq!(
        sim.post_json("/users", &json!({"username": "bob"})).await,
        (400, json!({"error": "Duplicate username."}))
    );
    assert_eq!(
        sim.get_json("/api/users").await,
        json!({"storage": "server", "users": {a.clone(): "alice", b.clone(): "bob"}})
    );
    let users: Value =
        serde_json::from_slice(&std::fs::read(sim.dir.path().join("user/users.json")).unwrap())
            .unwrap();
    assert_eq!(users[&a], "alice");

    let wf = "/api/userdata/workflows%2Fw.json";
    assert_eq!(
        call(sim, Method::POST, wf, Some(&a), Some("{\"a\": 1}"))
            .await
            .0,
        200
    );
    assert!(
        sim.dir
            .path()
            .join("user")
            .join(&a)
            .join("workflows/w.json")
            .is_file()
    );
    assert_eq!(
        call(sim, Method::POST, "/settings/x", Some(&a), Some("1"))
            .await
            .0,
        200
    );
    assert_eq!(
        call(sim, Method::GET, wf, Some(&a), None).await,
        (200, "{\"a\": 1}".into())
    );
    assert_eq!(call(sim, Method::GET, wf, Some(&b), None).await.0, 404);
    assert_eq!(
        call(sim, Method::GET, "/userdata?dir=workflows", Some(&b), None)
            .await
            .0,
        404
    );
    assert_eq!(call(sim, Method::DELETE, wf, Some(&b), None).await.0, 404);
    assert_eq!(
        call(sim, Method::GET, "/settings/x", Some(&a), None)
            .await
            .1,
        "1"
    );
    assert_eq!(
        call(sim, Method::GET, "/settings", Some(&b), None).await.1,
        "{}"
    );

    // No header means `default`, which is not registered here; unknown and system users too.
    for user in [None, Some("nobody"), Some("__system")] {
        let (s, body) = call(sim, Method::GET, wf, user, None).await;
        assert_eq!(s, 500, "{user:?}");
        assert!(body.starts_with("500 Internal Server Error"), "{body}");
        assert_eq!(
            call(sim, Method::GET, "/userdata?dir=workflows", user, None)
                .await
                .0,
            500
        );
        assert_eq!(
            call(sim, Method::GET, "/settings", user, None).await,
            (401, "401: Unauthorized".into())
        );
        assert_eq!(
            call(sim, Method::POST, "/settings/x", user, Some("1"))
                .await
                .0,
            401
        );
        if current {
            assert_eq!(
                call(sim, Method::GET, "/api/v2/userdata", user, None).await,
                (403, "Invalid user specified in request".into())
            );
        }
    }
    if current {
        let (s, v2) = call(
            sim,
            Method::GET,
            "/api/v2/userdata?path=workflows",
            Some(&a),
            None,
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&v2).unwrap()[0]["path"],
            "workflows/w.json"
        );
    }
}

#[tokio::test]
async fn multi_user_keeps_each_users_data_apart() {
    let sim = common::start(|o, _| o.multi_user = true).await;
    per_user(&sim, true).await;
}

#[tokio::test]
async fn multi_user_keeps_each_users_data_apart_on_0_3_64() {
    let sim = common::start_v0_3_64(|o, _| o.multi_user = true).await;
    per_user(&sim, false).await;
}

#[tokio::test]
async fn single_user_ignores_comfy_user_and_registered_users_survive_a_restart() {
    let sim = common::start(|_, _| {}).await;
    assert_eq!(
        call(&sim, Method::POST, "/settings/x", Some("anyone"), Some("2"))
            .await
            .0,
        200
    );
    assert_eq!(
        call(&sim, Method::GET, "/settings/x", None, None).await.1,
        "2"
    );
    assert_eq!(
        sim.get_json("/users").await,
        json!({"storage": "server", "migrated": true})
    );
    std::fs::write(
        sim.dir.path().join("user/users.json"),
        r#"{"default": "default"}"#,
    )
    .unwrap();
    let path = sim.dir.path().to_path_buf();
    let again = common::start(move |o, _| {
        o.multi_user = true;
        o.user_dir = path.join("user");
    })
    .await;
    // `default` registered: requests without the header use the shared space as before.
    assert_eq!(
        call(&again, Method::GET, "/settings/x", None, None).await.1,
        "2"
    );
}
