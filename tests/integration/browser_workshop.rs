//! Browser end-to-end for the workshop sign-in (issue 18, part A): with a workshop user and
//! sign-in required, the real ComfyUI frontend (through the real binary, headless Chromium)
//! sends an anonymous visitor to the sign-in page; the student signs in there, lands back in
//! ComfyUI with their name in the page's badge, and runs a workflow that lands in their own
//! history. Screenshots are kept under `target/test-artifacts/`.

use std::time::Duration;

use crate::support::browser::{self, Browser};
use crate::support::{Host, empty_image_workflow};
use serde_json::{Value, json};

const BADGE_TEXT: &str = "(document.getElementById('comfyhost-signin')?.innerText || '')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_student_signs_in_from_the_comfyui_page_and_runs_a_workflow() {
    let Some(pre) = browser::prereqs() else {
        return;
    };
    let host = Host::builder()
        .arg("--comfyui-arg=--front-end-root")
        .arg(format!("--comfyui-arg={}", pre.frontend.display()))
        .start()
        .await;
    let r = host
        .admin_post("/comfyhost/api/users", json!({"id": "student07"}))
        .await;
    let v: Value = r.json().await.expect("json");
    let token = v["token"].as_str().expect("token").to_string();

    let mut b = Browser::launch(&pre.chromium).await;
    // Anonymous: the ComfyUI page sends the browser to the sign-in page.
    b.navigate(&host.url("/")).await;
    b.wait_for(
        "the sign-in page",
        "location.pathname === '/comfyhost/signin' && !!document.getElementById('token')",
        Duration::from_secs(30),
    )
    .await;
    b.screenshot("workshop-signin.png").await;
    b.eval(&format!(
        "(() => {{ document.getElementById('token').value = {}; document.querySelector('#signin button').click(); return true; }})()",
        serde_json::to_string(&token).expect("token json")
    ))
    .await;
    // Back in ComfyUI, signed in, with the name in the page.
    b.wait_for(
        "the ComfyUI app",
        "!!(window.app && window.app.graph)",
        Duration::from_secs(60),
    )
    .await;
    let badge = b
        .wait_for(
            "the sign-in badge",
            &format!("{BADGE_TEXT}.includes('student07') && {BADGE_TEXT}"),
            Duration::from_secs(30),
        )
        .await;
    assert!(badge.as_str().unwrap_or("").contains("Sign out"), "{badge}");
    b.screenshot("workshop-signed-in.png").await;

    // A workflow queued from the page runs and is in the student's own history.
    let workflow = empty_image_workflow("workshop-e2e");
    b.eval(&format!(
        "(async () => {{ await window.app.loadApiJson({workflow}, 'e2e.json'); await window.app.queuePrompt(0, 1); return true; }})()"
    ))
    .await;
    let n = b
        .wait_for(
            "the prompt in the student's history",
            "fetch('/api/history').then(r => r.json()).then(h => Object.values(h).filter(e => e.status?.completed).length)",
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(n, json!(1));
    // The host recorded the job as the student's.
    let jobs = host.admin_get("/comfyhost/api/jobs").await;
    assert!(
        jobs.to_string().contains("student07"),
        "the job is not recorded as the student's: {jobs}"
    );
    // A setting the page saves lands in the student's own ComfyUI user directory (the host
    // picks `comfy-user`; the page went straight in, without ComfyUI's user picker).
    b.eval(
        "(async () => { await window.comfyAPI.api.api.storeSetting('Comfy.WorkshopCheck', 'student07'); return true; })()",
    )
    .await;
    let user_dir = host
        .output_dir()
        .parent()
        .expect("comfyui dir")
        .join("user");
    let users: Value =
        serde_json::from_slice(&std::fs::read(user_dir.join("users.json")).expect("users.json"))
            .expect("users.json");
    let id = users
        .as_object()
        .and_then(|m| m.iter().find(|(_, n)| *n == "comfyhost-user-student07"))
        .map(|(id, _)| id.clone())
        .unwrap_or_else(|| panic!("student07 is not a ComfyUI user: {users}"));
    let saved = std::fs::read_to_string(user_dir.join(&id).join("comfy.settings.json"))
        .expect("the student's settings file");
    assert!(saved.contains("Comfy.WorkshopCheck"), "{saved}");
    let shared =
        std::fs::read_to_string(user_dir.join("default/comfy.settings.json")).unwrap_or_default();
    assert!(!shared.contains("Comfy.WorkshopCheck"), "{shared}");
}
