//! Models a workflow needs, through the REAL `comfyhost` binary with the preset-resolver plugin
//! installed as a granted drop-in: real workflow files (API and UI format) against a fake
//! models tree, ComfyUI's `value_not_in_list` rejection from the simulator, and preset
//! installs from a local HTTP server honouring `Range` (resume after a cut connection, bad
//! checksum rejected, pause/resume/cancel, a disk-full refusal).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::range_server::{Behaviour, RangeServer};
use crate::support::wasm::{plugin_dir, workspace_root};
use crate::support::{ADMIN_TOKEN, Host};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn fixture(name: &str) -> Value {
    let p = workspace_root().join("tests/fixtures/workflows").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("fixture json")
}

fn touch(p: &Path) {
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, b"weights").expect("write");
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The registry the tests use (same shape as plugins/preset-resolver/presets.example.json).
fn registry() -> Value {
    let file = |folder: &str, name: &str, size: u64| json!({"folder": folder, "name": name, "url": format!("http://127.0.0.1:9/{name}"), "size": size, "sha256": HASH});
    json!({"version": 1, "presets": [
        {"id": "sdxl-base", "name": "SDXL 1.0 base + VAE", "files": [
            file("checkpoints", "sd_xl_base_1.0.safetensors", 6_938_078_334),
            file("vae", "sdxl_vae.safetensors", 334_641_164)]},
        {"id": "pixel-lora", "name": "Pixel art LoRA", "files": [
            file("loras", "styles/pixel-art-xl.safetensors", 170_540_000)]},
        {"id": "flux-text-encoders", "name": "Flux text encoders", "files": [
            file("text_encoders", "t5xxl_fp8_e4m3fn.safetensors", 4_893_934_904),
            file("text_encoders", "clip_l.safetensors", 246_144_152)]}
    ]})
}

/// Host with the resolver as a drop-in, its presets directory granted and a registry file in it.
async fn host_with_resolver(extra_args: &[String]) -> Host {
    let manifest =
        std::fs::read_to_string(workspace_root().join("plugins/preset-resolver/plugin.toml"))
            .expect("manifest");
    let (_tmp, dir) = plugin_dir("comfyhost-plugin-preset-resolver", &manifest);
    std::fs::copy(
        workspace_root().join("plugins/preset-resolver/config.schema.json"),
        dir.join("config.schema.json"),
    )
    .expect("schema");
    let mut b = Host::builder().plugin_dir(dir);
    for a in extra_args {
        b = b.arg(a.clone());
    }
    let host = b.start().await;
    let presets = host.data_dir.path().join("plugin-data/preset-resolver");
    std::fs::create_dir_all(&presets).expect("mkdir");
    std::fs::write(presets.join("registry.json"), registry().to_string()).expect("registry");
    let put = |path: &str, body: Value| {
        Host::client()
            .put(host.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let r = put(
        "/comfyhost/api/plugins/preset-resolver/grants",
        json!({"dirs": [{"path": "{data}", "guest": "/presets", "access": "ro"}]}),
    )
    .await
    .expect("grant");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let r = put(
        "/comfyhost/api/plugins/preset-resolver/config",
        json!({"registry_file": "/presets/registry.json"}),
    )
    .await
    .expect("config");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    host
}

async fn resolve(host: &Host, body: Value) -> Value {
    let r = host.admin_post("/comfyhost/api/models/resolve", body).await;
    let status = r.status();
    let v: Value = r.json().await.expect("json");
    assert_eq!(status, 200, "{v:#}");
    v
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|r| r["name"].as_str().expect("name").to_owned())
        .collect()
}

#[tokio::test]
async fn api_and_ui_workflows_resolve_against_a_fake_models_tree() {
    let host = host_with_resolver(&[]).await;
    // The simulator's models root: <data>/comfyui/models. `clip/` is ComfyUI's legacy name
    // for text_encoders.
    let models = host.data_dir.path().join("comfyui/models");
    touch(&models.join("checkpoints/sd_xl_base_1.0.safetensors"));
    touch(&models.join("clip/clip_l.safetensors"));

    let installed = host.admin_get("/comfyhost/api/models/installed").await;
    let te = installed
        .as_array()
        .expect("folders")
        .iter()
        .find(|f| f["folder"] == "text_encoders")
        .expect("text_encoders");
    assert_eq!(te["files"], json!(["clip_l.safetensors"]));

    // API format: checkpoint installed; LoRA, VAE, upscaler missing.
    let r = resolve(
        &host,
        json!({"workflow": fixture("sdxl_lora_upscale_api.json")}),
    )
    .await;
    assert_eq!(r["format"], "api");
    assert_eq!(r["resolver"], "preset-resolver");
    assert_eq!(r["required"].as_array().map(Vec::len), Some(4), "{r:#}");
    assert_eq!(
        names(&r["missing"]),
        [
            "styles/pixel-art-xl.safetensors",
            "sdxl_vae.safetensors",
            "4x-UltraSharp.pth"
        ]
    );
    let presets: Vec<&str> = r["presets"]
        .as_array()
        .expect("presets")
        .iter()
        .map(|p| p["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(presets, ["pixel-lora", "sdxl-base"], "{r:#}");
    let sdxl = &r["presets"][1];
    // The installed checkpoint is not downloaded again: only the VAE.
    assert_eq!(sdxl["files"].as_array().map(Vec::len), Some(1), "{sdxl:#}");
    assert_eq!(sdxl["total_bytes"], 334_641_164u64);
    assert_eq!(names(&r["unmapped"]), ["4x-UltraSharp.pth"]);
    let summary = r["summary"].as_str().expect("summary");
    assert!(
        summary.contains("install preset SDXL 1.0 base + VAE (335 MB)"),
        "{summary}"
    );
    assert!(
        summary.contains("no preset provides 4x-UltraSharp.pth"),
        "{summary}"
    );

    // UI format: bypassed LoRA ignored, clip_l found in the legacy folder, UNET and VAE
    // declared by the workflow's models[], ControlNet unmapped.
    let r = resolve(
        &host,
        json!({"workflow": fixture("flux_controlnet_ui.json")}),
    )
    .await;
    assert_eq!(r["format"], "ui");
    assert_eq!(
        names(&r["required"]),
        [
            "flux1-dev-fp8.safetensors",
            "t5xxl_fp8_e4m3fn.safetensors",
            "clip_l.safetensors",
            "ae.safetensors",
            "flux-canny-controlnet-v3.safetensors"
        ]
    );
    assert_eq!(
        names(&r["missing"]),
        [
            "flux1-dev-fp8.safetensors",
            "t5xxl_fp8_e4m3fn.safetensors",
            "ae.safetensors",
            "flux-canny-controlnet-v3.safetensors"
        ]
    );
    assert_eq!(r["presets"][0]["id"], "flux-text-encoders");
    assert_eq!(
        r["presets"][0]["files"].as_array().map(Vec::len),
        Some(1),
        "{r:#}"
    );
    let declared: Vec<&str> = r["declared"]
        .as_array()
        .expect("declared")
        .iter()
        .map(|d| d["ref"]["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(declared, ["flux1-dev-fp8.safetensors", "ae.safetensors"]);
    assert_eq!(
        r["declared"][0]["hint"]["url"],
        "http://127.0.0.1:9/models/flux1-dev-fp8.safetensors"
    );
    assert_eq!(
        names(&r["unmapped"]),
        ["flux-canny-controlnet-v3.safetensors"]
    );

    // Latency of the whole round trip (HTTP + directory walk + wasm resolver), printed only.
    let body = json!({"workflow": fixture("sdxl_lora_upscale_api.json")});
    let mut samples = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        resolve(&host, body.clone()).await;
        samples.push(t.elapsed());
    }
    samples.sort();
    eprintln!(
        "resolve round trip: p50 {:?}, p99 {:?}",
        samples[25], samples[49]
    );

    // Garbage is a 400, not a crash.
    let r = host
        .admin_post("/comfyhost/api/models/resolve", json!({"workflow": [1, 2]}))
        .await;
    assert_eq!(r.status(), 400);
    // Admin only.
    let r = Host::client()
        .post(host.url("/comfyhost/api/models/resolve"))
        .json(&json!({"workflow": {}}))
        .send()
        .await
        .expect("req");
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn comfyui_value_not_in_list_rejection_resolves_to_a_preset() {
    let host = host_with_resolver(&[]).await;
    // The fixture without its upscaler (the simulator does not implement UpscaleModelLoader).
    let mut workflow = fixture("sdxl_lora_upscale_api.json");
    let map = workflow.as_object_mut().expect("object");
    map.remove("12");
    map.remove("13");
    map["9"]["inputs"]["images"] = json!(["8", 0]);
    let r = Host::client()
        .post(host.url("/prompt"))
        .json(&json!({"prompt": workflow, "client_id": "itest-models"}))
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.expect("json");
    let errors = body["node_errors"]["4"]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("node 4 errors: {body:#}"));
    assert_eq!(errors[0]["type"], "value_not_in_list", "{body:#}");
    // The host answered in ComfyUI's own dialog: which preset provides the missing file...
    assert!(
        errors[0]["details"]
            .as_str()
            .is_some_and(|d| d.contains("comfyhost:") && d.contains("preset")),
        "{body:#}"
    );
    assert!(
        body["comfyhost"]["presets"]
            .to_string()
            .contains("sdxl-base"),
        "{body:#}"
    );
    // ...and the job ended as rejected at once (it never entered ComfyUI's queue).
    let jobs = host.admin_get("/comfyhost/api/jobs").await;
    let job = &jobs[0];
    assert_eq!(job["status"], "rejected", "{job:#}");
    assert!(
        job["error_json"]
            .as_str()
            .is_some_and(|e| e.contains("comfyui_rejected")),
        "{job:#}"
    );

    // Even if the listing disagreed, ComfyUI's word counts: put the checkpoint on disk.
    touch(
        &host
            .data_dir
            .path()
            .join("comfyui/models/checkpoints/sd_xl_base_1.0.safetensors"),
    );
    let r = resolve(&host, json!({"workflow": workflow, "comfyui_error": body})).await;
    let rejected = names(&r["rejected"]);
    assert!(
        rejected.contains(&"sd_xl_base_1.0.safetensors".to_owned()),
        "{r:#}"
    );
    assert!(names(&r["missing"]).contains(&"sd_xl_base_1.0.safetensors".to_owned()));
    let sdxl = r["presets"]
        .as_array()
        .expect("presets")
        .iter()
        .find(|p| p["id"] == "sdxl-base")
        .expect("sdxl preset");
    assert!(
        sdxl["provides"]
            .to_string()
            .contains("sd_xl_base_1.0.safetensors"),
        "{sdxl:#}"
    );
}

async fn wait_op(host: &Host, id: &str, want: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = host
            .admin_get(&format!("/comfyhost/api/models/downloads/{id}"))
            .await;
        if want.iter().any(|w| v["state"] == *w) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "operation never reached {want:?}: {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn content(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn part_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with(".comfyhost-part") {
                out.push(e.path());
            }
        }
    }
    out
}

#[tokio::test]
async fn preset_install_resumes_a_cut_download_and_moves_verified_files_into_place() {
    let server = RangeServer::start().await;
    let host = Host::builder()
        .arg("--download-origins")
        .arg(&server.base)
        .start()
        .await;
    let models = host.data_dir.path().join("comfyui/models");
    let a = content(3 << 20, 1);
    let b = content(5 << 20, 7);
    let ua = server.add("a.safetensors", a.clone(), Behaviour::Normal);
    let ub = server.add("b.safetensors", b.clone(), Behaviour::CutFirstRequest);
    let started = Instant::now();
    let r = host
        .admin_post(
            "/comfyhost/api/models/install",
            json!({"preset_id": "test", "preset_name": "Test preset", "files": [
                {"folder": "checkpoints", "name": "sub/a.safetensors", "url": ua, "size": a.len(), "sha256": sha256_hex(&a)},
                {"folder": "loras", "name": "b.safetensors", "url": ub, "size": b.len(), "sha256": sha256_hex(&b)}
            ]}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.expect("json")["operation_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let op = wait_op(&host, &id, &["completed", "failed"]).await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(op["state"], "completed", "{op:#}");
    eprintln!(
        "loopback install: {} bytes in {secs:.3}s ({:.1} MB/s, incl. one resume and sha256)",
        a.len() + b.len(),
        (a.len() + b.len()) as f64 / secs / 1e6
    );
    assert_eq!(op["bytes_done"], (a.len() + b.len()) as u64);
    assert_eq!(op["files"][0]["state"], "installed");
    assert_eq!(
        std::fs::read(models.join("checkpoints/sub/a.safetensors")).expect("a"),
        a
    );
    assert_eq!(
        std::fs::read(models.join("loras/b.safetensors")).expect("b"),
        b
    );
    assert!(part_files(&models.join("loras")).is_empty());

    // b: first request without Range was cut at half; the retry asked for the rest.
    let b_reqs: Vec<Option<String>> = server
        .requests()
        .into_iter()
        .filter(|(n, _)| n == "b.safetensors")
        .map(|(_, r)| r)
        .collect();
    assert_eq!(b_reqs.len(), 2, "{b_reqs:?}");
    assert_eq!(b_reqs[0], None);
    let resumed_at: u64 = b_reqs[1]
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .expect("range");
    assert!(
        resumed_at > 0 && resumed_at < b.len() as u64,
        "{resumed_at}"
    );

    // ComfyUI-style listing now shows them.
    let installed = host.admin_get("/comfyhost/api/models/installed").await;
    assert!(installed.to_string().contains("sub/a.safetensors"));
    // The operation is listed.
    let list = host.admin_get("/comfyhost/api/models/downloads").await;
    assert_eq!(list[0]["id"], id.as_str());

    // Plain loopback throughput (one 32 MiB file, no cut), printed only.
    let big = content(32 << 20, 5);
    let url = server.add("big.safetensors", big.clone(), Behaviour::Normal);
    let started = Instant::now();
    let r = host
        .admin_post(
            "/comfyhost/api/models/install",
            json!({"preset_id": "big", "files": [
                {"folder": "vae", "name": "big.safetensors", "url": url, "size": big.len(), "sha256": sha256_hex(&big)}]}),
        )
        .await;
    let id = r.json::<Value>().await.expect("json")["operation_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let op = wait_op(&host, &id, &["completed", "failed"]).await;
    assert_eq!(op["state"], "completed", "{op:#}");
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "loopback install of 32 MiB (download + sha256 + rename, 50 ms polling): {secs:.3}s = {:.0} MB/s",
        big.len() as f64 / secs / 1e6
    );
}

#[tokio::test]
async fn bad_checksum_is_rejected_and_nothing_is_moved_into_place() {
    let server = RangeServer::start().await;
    let host = Host::builder()
        .arg("--download-origins")
        .arg(&server.base)
        .start()
        .await;
    let models = host.data_dir.path().join("comfyui/models");
    let data = content(1 << 20, 3);
    let url = server.add("evil.safetensors", data.clone(), Behaviour::WrongBytes);
    let r = host
        .admin_post(
            "/comfyhost/api/models/install",
            json!({"preset_id": "evil", "files": [
                {"folder": "vae", "name": "evil.safetensors", "url": url, "size": data.len(), "sha256": sha256_hex(&data)}]}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.expect("json")["operation_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let op = wait_op(&host, &id, &["completed", "failed"]).await;
    assert_eq!(op["state"], "failed", "{op:#}");
    assert!(
        op["error"]
            .as_str()
            .expect("error")
            .contains("checksum mismatch"),
        "{op:#}"
    );
    assert_eq!(op["files"][0]["state"], "failed");
    assert!(!models.join("vae/evil.safetensors").exists());
    assert!(
        part_files(&models.join("vae")).is_empty(),
        "partial file left behind"
    );
}

#[tokio::test]
async fn install_larger_than_the_free_disk_space_is_refused() {
    let host = Host::builder()
        .arg("--download-origins")
        .arg("http://127.0.0.1:9")
        .start()
        .await;
    let r = host
        .admin_post(
            "/comfyhost/api/models/install",
            json!({"preset_id": "huge", "files": [
                {"folder": "checkpoints", "name": "huge.safetensors", "url": "http://127.0.0.1:9/huge",
                 "size": 10_000_000_000_000_000u64, "sha256": HASH}]}),
        )
        .await;
    assert_eq!(r.status(), 507);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["type"], "insufficient_storage", "{v:#}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("10000000000000000"),
        "{v:#}"
    );
    assert_eq!(
        host.admin_get("/comfyhost/api/models/downloads").await,
        json!([])
    );

    // Bad requests are 400s with the reason.
    let r = host
        .admin_post(
            "/comfyhost/api/models/install",
            json!({"preset_id": "x", "files": [{"folder": "vae", "name": "../../etc/passwd", "url": "http://127.0.0.1:9/x", "size": 1, "sha256": HASH}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn pause_keeps_the_part_file_resume_finishes_and_cancel_cleans_up() {
    let server = RangeServer::start().await;
    let host = Host::builder()
        .arg("--download-origins")
        .arg(&server.base)
        .start()
        .await;
    let loras = host.data_dir.path().join("comfyui/models/loras");
    let data = content(4 << 20, 9); // 64 chunks x 50 ms = ~3.2 s
    let url = server.add("slow.safetensors", data.clone(), Behaviour::Slow);
    let body = json!({"preset_id": "slow", "files": [
        {"folder": "loras", "name": "slow.safetensors", "url": url, "size": data.len(), "sha256": sha256_hex(&data)}]});
    let r = host
        .admin_post("/comfyhost/api/models/install", body.clone())
        .await;
    let id = r.json::<Value>().await.expect("json")["operation_id"]
        .as_str()
        .expect("id")
        .to_owned();

    // Wait for some progress, then pause.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = host
            .admin_get(&format!("/comfyhost/api/models/downloads/{id}"))
            .await;
        if v["bytes_done"].as_u64().unwrap_or(0) > 256 * 1024 {
            assert!(v["rate_bps"].as_u64().unwrap_or(0) > 0, "{v:#}");
            assert_eq!(v["bytes_total"], data.len() as u64);
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {v:#}");
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let r = host
        .admin_post(
            &format!("/comfyhost/api/models/downloads/{id}/pause"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let paused: Value = r.json().await.expect("json");
    assert_eq!(paused["state"], "paused");
    let parts = part_files(&loras);
    assert_eq!(parts.len(), 1);
    let kept = std::fs::metadata(&parts[0]).expect("part").len();
    assert!(kept > 0 && kept < data.len() as u64);
    // Pausing twice is a conflict.
    let r = host
        .admin_post(
            &format!("/comfyhost/api/models/downloads/{id}/pause"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 409);

    let r = host
        .admin_post(
            &format!("/comfyhost/api/models/downloads/{id}/resume"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let op = wait_op(&host, &id, &["completed", "failed"]).await;
    assert_eq!(op["state"], "completed", "{op:#}");
    assert_eq!(
        std::fs::read(loras.join("slow.safetensors")).expect("file"),
        data
    );
    let ranges: Vec<Option<String>> = server
        .requests()
        .into_iter()
        .filter(|(n, _)| n == "slow.safetensors")
        .map(|(_, r)| r)
        .collect();
    assert!(
        ranges
            .last()
            .and_then(|r| r.as_deref())
            .is_some_and(|r| r.starts_with("bytes=")),
        "{ranges:?}"
    );

    // Cancel a second install mid-way: part file removed, nothing installed.
    std::fs::remove_file(loras.join("slow.safetensors")).expect("rm");
    let r = host.admin_post("/comfyhost/api/models/install", body).await;
    let id = r.json::<Value>().await.expect("json")["operation_id"]
        .as_str()
        .expect("id")
        .to_owned();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let r = host
        .admin_post(
            &format!("/comfyhost/api/models/downloads/{id}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["state"], "cancelled");
    assert!(part_files(&loras).is_empty());
    assert!(!loras.join("slow.safetensors").exists());
    let r = host
        .admin_post("/comfyhost/api/models/downloads/nope/resume", json!({}))
        .await;
    assert_eq!(r.status(), 404);
}
