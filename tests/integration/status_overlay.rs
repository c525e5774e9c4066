//! The status overlay with the real `comfyhost` binary and the first-party `status-overlay`
//! plugin: the page script is offered through ComfyUI's `/extensions` while the plugin is
//! enabled, each browser gets `comfyhost.overlay` updates for its own jobs only (local and
//! remote), admins get the admin detail, errors are readable, and disabling the plugin takes
//! the script off the page.

use std::time::{Duration, Instant};

use crate::support::remote::{RemoteSim, backends_file};
use crate::support::wasm::first_party_plugin;
use crate::support::{ADMIN_TOKEN, Host, empty_image_workflow};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(host: &Host, client_id: &str) -> Ws {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(host.ws_url(&format!("/ws?clientId={client_id}")))
            .await
            .expect("ws");
    let _ = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    ws
}

/// Overlay updates for `prompt_id` until the terminal one.
async fn overlay_updates(ws: &mut Ws, prompt_id: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = Vec::new();
    while Instant::now() < deadline {
        let m = match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                serde_json::from_str::<Value>(t.as_str()).expect("json")
            }
            Ok(Some(Ok(_))) => continue,
            _ => break,
        };
        if m["type"] != "comfyhost.overlay" {
            continue;
        }
        assert_eq!(
            m["data"]["prompt_id"], prompt_id,
            "an update for another browser's job: {m}"
        );
        let terminal = m["data"]["terminal"] == true;
        got.push(m["data"].clone());
        if terminal {
            return got;
        }
    }
    panic!("no terminal overlay update for {prompt_id}: {got:#?}");
}

async fn submit(
    host: &Host,
    workflow: Value,
    client_id: &str,
    token: &str,
    flags: Value,
) -> String {
    let r = Host::client()
        .post(host.url("/prompt"))
        .bearer_auth(token)
        .json(&json!({"prompt": workflow, "client_id": client_id, "extra_data": {"comfyhost": flags}}))
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.expect("json");
    v["prompt_id"].as_str().expect("id").to_string()
}

async fn extensions(host: &Host) -> Vec<String> {
    let v: Value = Host::client()
        .get(host.url("/api/extensions"))
        .send()
        .await
        .expect("ext")
        .json()
        .await
        .expect("json");
    v.as_array()
        .expect("list")
        .iter()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlay_updates_reach_their_own_browser_with_honest_text() {
    let plugins = tempfile::tempdir().expect("tmp");
    let overlay_dir = first_party_plugin("status-overlay", plugins.path());
    let router_dir = first_party_plugin("queue-redirect", plugins.path());
    let remote = RemoteSim::start(&[]).await;
    let cfg = tempfile::tempdir().expect("tmp");
    let file = backends_file(
        cfg.path(),
        &format!(
            "[[comfyui]]\nname = \"gpu-a\"\nurl = \"{}\"\n[timings]\nhealth_every_ms = 200\npoll_every_ms = 100\n",
            remote.url()
        ),
    );
    let host = Host::builder()
        .plugin_dir(overlay_dir)
        .plugin_dir(router_dir)
        .arg("--backends")
        .arg(file.display().to_string())
        .start()
        .await;
    let r = Host::client()
        .put(host.url("/comfyhost/api/plugins/queue-redirect/config"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"rules": [{"flag": "route", "equals": "remote", "route": "pool"}]}))
        .send()
        .await
        .expect("config");
    assert!(r.status().is_success());

    // The page script is offered and served.
    assert!(
        extensions(&host)
            .await
            .contains(&"/comfyhost/ext/status-overlay.js".to_string())
    );
    let js = Host::client()
        .get(host.url("/comfyhost/ext/status-overlay.js"))
        .send()
        .await
        .expect("js");
    assert_eq!(js.status().as_u16(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap_or("")
            .contains("javascript")
    );
    assert!(js.text().await.expect("text").contains("comfyhost.overlay"));

    let student = {
        let r = host
            .admin_post("/comfyhost/api/users", json!({"id": "student"}))
            .await;
        r.json::<Value>().await.expect("json")["token"]
            .as_str()
            .expect("token")
            .to_string()
    };
    let mut ws_admin = connect(&host, "overlay-admin").await;
    let mut ws_student = connect(&host, "overlay-student").await;

    // Local job, admin: queued -> running n/m -> done, with admin detail.
    let pid = submit(
        &host,
        empty_image_workflow("ov"),
        "overlay-admin",
        ADMIN_TOKEN,
        json!({}),
    )
    .await;
    let ups = overlay_updates(&mut ws_admin, &pid).await;
    assert_eq!(ups[0]["user_text"], "Queued");
    assert!(
        ups.iter().any(|u| u["user_text"]
            .as_str()
            .unwrap_or("")
            .starts_with("Running · ")),
        "{ups:#?}"
    );
    assert!(
        ups.iter()
            .any(|u| u["user_text"].as_str().unwrap_or("").contains("/2 nodes")),
        "{ups:#?}"
    );
    let last = ups.last().expect("last");
    assert_eq!(last["severity"], "success");
    assert!(
        last["user_text"]
            .as_str()
            .unwrap_or("")
            .starts_with("Done in")
    );
    assert!(
        last["admin_detail"]
            .as_array()
            .is_some_and(|d| d.iter().any(|l| l == &json!(format!("prompt {pid}"))))
    );

    // Remote job, student: says where it runs, no admin detail, nothing on the admin's socket.
    let pid2 = submit(
        &host,
        empty_image_workflow("ov2"),
        "overlay-student",
        &student,
        json!({"route": "remote"}),
    )
    .await;
    let ups = overlay_updates(&mut ws_student, &pid2).await;
    assert!(
        ups.iter().any(|u| u["user_text"]
            .as_str()
            .unwrap_or("")
            .starts_with("Running on gpu-a")),
        "{ups:#?}"
    );
    assert!(
        ups.iter().all(|u| u["admin_detail"] == json!([])),
        "students get no admin detail"
    );
    assert_eq!(ups.last().expect("last")["severity"], "success");

    // An execution error is readable.
    let pid3 = submit(
        &host,
        empty_image_workflow("../escape"),
        "overlay-student",
        &student,
        json!({}),
    )
    .await;
    let ups = overlay_updates(&mut ws_student, &pid3).await;
    let last = ups.last().expect("last");
    assert_eq!(last["severity"], "error");
    assert!(
        last["user_text"]
            .as_str()
            .unwrap_or("")
            .starts_with("SaveImage failed:"),
        "{last:#}"
    );

    // Disabling the plugin takes the script off the next page load, and updates stop.
    let r = host
        .admin_post("/comfyhost/api/plugins/status-overlay/disable", json!({}))
        .await;
    assert!(r.status().is_success());
    assert!(
        !extensions(&host)
            .await
            .iter()
            .any(|e| e.contains("status-overlay"))
    );
    let pid4 = submit(
        &host,
        empty_image_workflow("ov4"),
        "overlay-admin",
        ADMIN_TOKEN,
        json!({}),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_secs(10), ws_admin.next()).await
        else {
            break;
        };
        let m: Value = serde_json::from_str(t.as_str()).expect("json");
        assert_ne!(
            m["type"], "comfyhost.overlay",
            "overlay update while disabled: {m}"
        );
        if m["type"] == "executing"
            && m["data"]["node"].is_null()
            && m["data"]["prompt_id"] == pid4.as_str()
        {
            break;
        }
    }
}
