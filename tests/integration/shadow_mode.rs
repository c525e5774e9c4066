//! Shadow mode through the real binary (issue 21): a router installed in shadow is called on
//! live prompts after the active chain, its answers recorded and never applied; the dashboard
//! API shows agreement and faults; promote makes it the active version, discard removes it.

use std::time::Duration;

use crate::plugin_trust::{router_dir, upload};
use crate::support::wasm::{build_component, workspace_root};
use crate::support::{Host, empty_image_workflow, models_dir_with_checkpoint, sampler_workflow};
use serde_json::{Value, json};

/// The template router whose schema defaults to at most 1 node: it rejects every 2-node prompt.
pub const REJECT_ALL_SCHEMA: &str = r#"{
  "type": "object",
  "properties": { "max_nodes": { "type": "integer", "minimum": 1, "default": 1 } },
  "required": ["max_nodes"],
  "additionalProperties": false
}"#;

pub async fn submit(host: &Host) -> (u16, Value) {
    let r = Host::client()
        .post(host.url("/prompt"))
        .json(&json!({"prompt": empty_image_workflow("shadow"), "client_id": "itest-shadow"}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// The shadow entry of `id` once it has `n` decisions (shadow calls run after the response).
pub async fn decided(host: &Host, id: &str, n: u64) -> Value {
    for _ in 0..300 {
        let v = host.admin_get("/comfyhost/api/shadow").await;
        if let Some(s) = v["shadows"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["id"] == id))
            && s["summary"]["decisions"].as_u64() >= Some(n)
        {
            return s.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("shadow {id} never recorded {n} decisions");
}

#[tokio::test]
async fn a_shadow_router_rejecting_everything_leaves_prompts_running_and_promote_activates_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = router_dir(tmp.path(), "node-limit", "0.1.0", Some(REJECT_ALL_SCHEMA));
    let host = Host::builder().start().await;
    let r = upload(&host, "/comfyhost/api/shadow", &dir).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    // Not an active plugin.
    assert_eq!(host.admin_get("/comfyhost/api/plugins").await, json!([]));

    for _ in 0..4 {
        let (status, body) = submit(&host).await;
        assert_eq!(status, 200, "the shadow must not reject: {body}");
    }
    let s = decided(&host, "node-limit", 4).await;
    assert_eq!(s["summary"]["agreement_pct"], 0.0, "{s:#}");
    assert_eq!(s["summary"]["faults"], 0, "{s:#}");
    let d = &s["decisions"][0];
    assert_eq!(d["active"]["route"], "local", "{d:#}");
    assert!(
        d["shadow"]["route"]
            .as_str()
            .unwrap_or_default()
            .starts_with("reject"),
        "{d:#}"
    );

    // Promote: it is the active router now (and the shadow is gone).
    let r = host
        .admin_post("/comfyhost/api/shadow/node-limit/promote", json!({}))
        .await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["state"]["state"], "enabled", "{info:#}");
    let (status, body) = submit(&host).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["type"], "comfyhost_rejected", "{body}");
    let v = host.admin_get("/comfyhost/api/shadow").await;
    assert_eq!(v["shadows"], json!([]), "{v:#}");
}

#[tokio::test]
async fn a_trapping_shadow_never_affects_a_prompt() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("trapper");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("plugin.toml"),
        r#"
id = "trapper"
version = "0.1.0"
name = "Traps on every call"
wit = "0.1.0"
hooks = ["queue-router"]
wasm = "hostile_trapping_router.wasm"

[budget]
failure = "fail-closed"
"#,
    )
    .unwrap();
    let wasm = build_component("hostile-trapping-router");
    std::fs::copy(&wasm, dir.join("hostile_trapping_router.wasm")).unwrap();
    let host = Host::builder().start().await;
    let r = upload(&host, "/comfyhost/api/shadow", &dir).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    // More prompts than the breaker's fault limit: a shadow has no breaker to trip and no
    // policy to apply; every prompt runs.
    for _ in 0..5 {
        let (status, body) = submit(&host).await;
        assert_eq!(status, 200, "{body}");
    }
    let s = decided(&host, "trapper", 5).await;
    assert_eq!(s["summary"]["faults"], 5, "{s:#}");
    assert_eq!(s["summary"]["agreement_pct"], 0.0, "{s:#}");
    assert!(
        s["decisions"][0]["fault"]
            .as_str()
            .unwrap_or_default()
            .contains("trap"),
        "{s:#}"
    );
    assert_eq!(host.admin_get("/comfyhost/api/plugins").await, json!([]));

    let r = host
        .admin_post("/comfyhost/api/shadow/trapper/discard", json!({}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        host.admin_get("/comfyhost/api/shadow").await["shadows"],
        json!([])
    );
    assert_eq!(submit(&host).await.0, 200);
}

/// The template prompt-transform (`style-suffix`) at `version`, appending `suffix` by default.
fn transform_dir(root: &std::path::Path, version: &str, suffix: &str) -> std::path::PathBuf {
    let src = workspace_root().join("sdk/templates/prompt-transform");
    let dir = root.join("style-suffix");
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = std::fs::read_to_string(src.join("plugin.toml"))
        .unwrap()
        .replace("version = \"0.1.0\"", &format!("version = \"{version}\""));
    std::fs::write(dir.join("plugin.toml"), manifest).unwrap();
    let schema = std::fs::read_to_string(src.join("config.schema.json"))
        .unwrap()
        .replace("masterpiece, best quality", suffix);
    std::fs::write(dir.join("config.schema.json"), schema).unwrap();
    let wasm = build_component("comfyhost-template-prompt-transform");
    std::fs::copy(&wasm, dir.join(wasm.file_name().unwrap())).unwrap();
    dir
}

#[tokio::test]
async fn a_shadow_transform_records_the_text_it_would_have_written_and_rewrites_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let models = models_dir_with_checkpoint();
    let host = Host::builder()
        .arg("--comfyui-arg=--sim-models-dir")
        .arg(format!("--comfyui-arg={}", models.path().display()))
        .start()
        .await;
    let active = transform_dir(&tmp.path().join("a"), "0.1.0", "best quality");
    let r = upload(&host, "/comfyhost/api/plugins", &active).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let shadow = transform_dir(&tmp.path().join("s"), "0.2.0", "film grain");
    let r = upload(&host, "/comfyhost/api/shadow", &shadow).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    let r = Host::client()
        .post(host.url("/prompt"))
        .json(&json!({"prompt": sampler_workflow(), "client_id": "itest-shadow-t"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let s = decided(&host, "style-suffix", 1).await;
    let d = &s["decisions"][0];
    assert_eq!(d["agreed"], false, "{d:#}");
    let texts = |side: &str| d[side]["texts"].as_object().cloned().unwrap_or_default();
    let (a, sh) = (texts("active"), texts("shadow"));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        sh.keys().collect::<Vec<_>>(),
        "{d:#}"
    );
    let key = a.keys().next().expect("a changed text input").clone();
    assert!(a[&key].as_str().unwrap().ends_with("best quality"), "{d:#}");
    assert!(sh[&key].as_str().unwrap().ends_with("film grain"), "{d:#}");
    let original = d["active"]["original"][&key].as_str().unwrap_or_default();
    assert!(
        !original.contains("best quality") && !original.is_empty(),
        "{d:#}"
    );
    // What ran is the active chain's rewrite: the job keeps the workflow that was queued.
    let job = host
        .admin_get(&format!(
            "/comfyhost/api/jobs/{}",
            d["prompt_id"].as_str().unwrap()
        ))
        .await
        .to_string();
    assert!(
        job.contains("best quality") && !job.contains("film grain"),
        "{job}"
    );
}
