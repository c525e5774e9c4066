//! Signed plugins under the admin's trust policy (issue 21), through the real binary: keys made
//! and plugins signed with `comfyhost plugin keygen` / `sign`, the policy set over the admin
//! API, installs by upload and drop-in checked, refusals with their reason and an activity
//! entry, the signer shown in the plugin list, and an upgrade signed by another key waiting for
//! the admin's approval.

use std::path::{Path, PathBuf};

use crate::support::wasm::{build_component, workspace_root};
use crate::support::{ADMIN_TOKEN, Host, empty_image_workflow, host_command};
use serde_json::{Value, json};

/// `comfyhost plugin keygen`: `(public key text, secret key path, key id)`.
pub fn keygen(dir: &Path, name: &str) -> (String, PathBuf, String) {
    let out = dir.join(name);
    let o = host_command()
        .args(["plugin", "keygen", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let key_id = stdout
        .lines()
        .find_map(|l| l.strip_prefix("key id "))
        .unwrap()
        .trim()
        .to_string();
    let pk = std::fs::read_to_string(out.with_extension("pub")).unwrap();
    (pk, out.with_extension("key"), key_id)
}

/// `comfyhost plugin sign <dir> --key <key>`.
pub fn sign(dir: &Path, key: &Path) {
    let o = host_command()
        .args(["plugin", "sign"])
        .arg(dir)
        .arg("--key")
        .arg(key)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The template router (`node-limit`) at `version` in `<root>/<name>/`, with its schema.
pub fn router_dir(root: &Path, name: &str, version: &str, schema: Option<&str>) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest =
        std::fs::read_to_string(workspace_root().join("sdk/templates/queue-router/plugin.toml"))
            .unwrap()
            .replace("version = \"0.1.0\"", &format!("version = \"{version}\""));
    std::fs::write(dir.join("plugin.toml"), manifest).unwrap();
    let schema_text = match schema {
        Some(s) => s.to_string(),
        None => std::fs::read_to_string(
            workspace_root().join("sdk/templates/queue-router/config.schema.json"),
        )
        .unwrap(),
    };
    std::fs::write(dir.join("config.schema.json"), schema_text).unwrap();
    let wasm = build_component("comfyhost-template-queue-router");
    std::fs::copy(&wasm, dir.join(wasm.file_name().unwrap())).unwrap();
    dir
}

/// Uploads the plugin directory `dir` (with its signature files when present) to `path`
/// (`/comfyhost/api/plugins` or `/comfyhost/api/shadow`).
pub async fn upload(host: &Host, path: &str, dir: &Path) -> reqwest::Response {
    let manifest = std::fs::read_to_string(dir.join("plugin.toml")).unwrap();
    let wasm_name = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("wasm = "))
        .map(|v| v.split('"').nth(1).unwrap().to_string())
        .unwrap();
    let mut form = reqwest::multipart::Form::new()
        .text("manifest", manifest)
        .part(
            "wasm",
            reqwest::multipart::Part::bytes(std::fs::read(dir.join(wasm_name)).unwrap())
                .file_name("plugin.wasm"),
        );
    for (part, file) in [
        ("schema", "config.schema.json"),
        ("signature", "plugin.minisig"),
        ("public_key", "plugin.pub"),
    ] {
        if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
            form = form.text(part, text);
        }
    }
    Host::client()
        .post(host.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

pub async fn set_policy(host: &Host, mode: &str, keys: &[(&str, &str)]) {
    for (name, pk) in keys {
        let r = host
            .admin_post(
                "/comfyhost/api/trust/keys",
                json!({"name": name, "public_key": pk}),
            )
            .await;
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
    }
    let r = Host::client()
        .put(host.url("/comfyhost/api/trust"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"mode": mode}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
}

async fn refusal(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_plugin_signed_by_a_trusted_key_installs_under_trusted_and_shows_its_signer() {
    let tmp = tempfile::tempdir().unwrap();
    let (pk, key, key_id) = keygen(tmp.path(), "workshop");
    let dir = router_dir(tmp.path(), "node-limit", "0.1.0", None);
    sign(&dir, &key);
    let host = Host::builder().start().await;
    set_policy(&host, "trusted", &[("Workshop team", &pk)]).await;
    let policy = host.admin_get("/comfyhost/api/trust").await;
    assert_eq!(policy["mode"], "trusted", "{policy}");
    assert_eq!(policy["keys"][0]["key_id"], key_id.as_str(), "{policy}");

    let r = upload(&host, "/comfyhost/api/plugins", &dir).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let list = host.admin_get("/comfyhost/api/plugins").await;
    assert_eq!(list[0]["id"], "node-limit", "{list:#}");
    assert_eq!(list[0]["state"]["state"], "enabled", "{list:#}");
    assert_eq!(list[0]["signer"]["key_id"], key_id.as_str(), "{list:#}");
    assert_eq!(list[0]["signer"]["key_name"], "Workshop team", "{list:#}");
    // It runs: a 2-node workflow is under the default limit.
    let r = Host::client()
        .post(host.url("/prompt"))
        .json(&json!({"prompt": empty_image_workflow("trust"), "client_id": "itest-trust"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn unsigned_wrong_key_and_tampered_plugins_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let (pk_a, key_a, _) = keygen(tmp.path(), "a");
    let (_, key_b, id_b) = keygen(tmp.path(), "b");
    let host = Host::builder().start().await;
    set_policy(&host, "trusted", &[("Team A", &pk_a)]).await;

    let unsigned = router_dir(&tmp.path().join("u"), "node-limit", "0.1.0", None);
    let msg = refusal(upload(&host, "/comfyhost/api/plugins", &unsigned).await).await;
    assert!(msg.contains("unsigned"), "{msg}");

    let wrong = router_dir(&tmp.path().join("w"), "node-limit", "0.1.0", None);
    sign(&wrong, &key_b);
    let msg = refusal(upload(&host, "/comfyhost/api/plugins", &wrong).await).await;
    assert!(
        msg.contains(&id_b) && msg.contains("not a trusted key"),
        "{msg}"
    );

    // Signed by the trusted key, then one byte of the component changed.
    let tampered = router_dir(&tmp.path().join("t"), "node-limit", "0.1.0", None);
    sign(&tampered, &key_a);
    let wasm = tampered.join("comfyhost_template_queue_router.wasm");
    let mut bytes = std::fs::read(&wasm).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&wasm, bytes).unwrap();
    let msg = refusal(upload(&host, "/comfyhost/api/plugins", &tampered).await).await;
    assert!(msg.contains("does not match"), "{msg}");

    // Nothing was installed; each refusal is in the activity with its reason.
    assert_eq!(host.admin_get("/comfyhost/api/plugins").await, json!([]));
    let activity = host.admin_get("/comfyhost/api/activity").await.to_string();
    assert_eq!(
        activity.matches("plugin.trust_refused").count(),
        3,
        "{activity}"
    );

    // A drop-in by the wrong key is refused the same way (listed as broken, with the reason).
    let plugins = host.data_dir.path().join("plugins");
    let dropped = router_dir(&plugins, "node-limit", "0.1.0", None);
    sign(&dropped, &key_b);
    let r = host
        .admin_post("/comfyhost/api/plugins/rescan", json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let list = host.admin_get("/comfyhost/api/plugins").await;
    let err = list[0]["state"]["error"].as_str().unwrap_or_default();
    assert!(err.contains("not a trusted key"), "{list:#}");
    let activity = host.admin_get("/comfyhost/api/activity").await.to_string();
    assert!(activity.contains("drop-in"), "{activity}");
}

#[tokio::test]
async fn an_upgrade_signed_by_another_key_waits_for_approval() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, key_a, id_a) = keygen(tmp.path(), "a");
    let (_, key_b, id_b) = keygen(tmp.path(), "b");
    let host = Host::builder().start().await;
    set_policy(&host, "signed", &[]).await;

    let v1 = router_dir(&tmp.path().join("1"), "node-limit", "0.1.0", None);
    sign(&v1, &key_a);
    let r = upload(&host, "/comfyhost/api/plugins", &v1).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["state"]["state"], "enabled", "{info:#}");
    assert_eq!(info["signer"]["key_id"], id_a.as_str());

    // Same author, new version: installed and running at once.
    let v2 = router_dir(&tmp.path().join("2"), "node-limit", "0.2.0", None);
    sign(&v2, &key_a);
    let r = upload(&host, "/comfyhost/api/plugins", &v2).await;
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["state"]["state"], "enabled", "{info:#}");

    // Another key: installed, but it does not run until the admin approves it.
    let v3 = router_dir(&tmp.path().join("3"), "node-limit", "0.3.0", None);
    sign(&v3, &key_b);
    let r = upload(&host, "/comfyhost/api/plugins", &v3).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["state"]["state"], "needs_approval", "{info:#}");
    assert_eq!(info["signer"]["key_id"], id_b.as_str(), "{info:#}");
    let activity = host.admin_get("/comfyhost/api/activity").await.to_string();
    assert!(activity.contains("plugin.signer_changed"), "{activity}");

    let r = Host::client()
        .put(host.url("/comfyhost/api/plugins/node-limit/grants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["state"]["state"], "enabled", "{info:#}");
    assert_eq!(info["version"], "0.3.0");
}
