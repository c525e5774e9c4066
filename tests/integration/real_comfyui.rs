//! Opt-in: the real `comfyhost` binary supervising and proxying a REAL ComfyUI (CPU).
//! Set `COMFYHOST_REAL_COMFYUI_DIR` (a ComfyUI checkout) and `COMFYHOST_REAL_PYTHON` (its venv
//! interpreter), see `../shared/REAL_COMFYUI.md`; without them the test prints why it skips.
//! The variables pick the version: a 0.3.64 checkout or the current 0.33.0 (its last section);
//! both pass.
//! Includes the kill -9 case: the page's socket stays open through the restart.

use std::time::Duration;

use crate::support::{Host, empty_image_workflow};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn real_comfyui_behind_the_host() {
    let (Ok(dir), Ok(python)) = (
        std::env::var("COMFYHOST_REAL_COMFYUI_DIR"),
        std::env::var("COMFYHOST_REAL_PYTHON"),
    ) else {
        eprintln!(
            "SKIPPED real_comfyui_behind_the_host: set COMFYHOST_REAL_COMFYUI_DIR and \
             COMFYHOST_REAL_PYTHON to run it against a real ComfyUI"
        );
        return;
    };
    let host = Host::builder()
        .arg("--comfyui-dir")
        .arg(dir)
        .arg("--python")
        .arg(python)
        .no_wait()
        .start()
        .await;
    let ready = host
        .wait_comfy("real ComfyUI ready", Duration::from_secs(240), |s| {
            s["state"] == "ready" || s["state"] == "failed"
        })
        .await;
    assert_eq!(ready["state"], "ready", "{ready:#}");
    let cmd = ready["command_line"].to_string();
    assert!(cmd.contains("main.py") && cmd.contains("--cpu"), "{cmd}");

    // The GPU report probed the real environment.
    let gpu = host.admin_get("/comfyhost/api/gpu").await;
    assert!(gpu["probe"]["torch_version"].is_string(), "{gpu:#}");

    let client_id = "itest-real";
    let (mut ws, _) =
        tokio_tungstenite::connect_async(host.ws_url(&format!("/ws?clientId={client_id}")))
            .await
            .expect("ws through the host");
    let r = Host::client()
        .post(host.url("/api/prompt"))
        .json(&json!({"prompt": empty_image_workflow("real"), "client_id": client_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let mut filename = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("execution within 60 s")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "executed" {
                filename = v["data"]["output"]["images"][0]["filename"]
                    .as_str()
                    .map(str::to_string);
            }
            if v["type"] == "execution_success" {
                break;
            }
            assert_ne!(v["type"], "execution_error", "{v:#}");
        }
    }
    let filename = filename.expect("an image output");
    let r = Host::client()
        .get(host.url(&format!("/view?filename={filename}&type=output")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(&r.bytes().await.unwrap()[..4], b"\x89PNG");

    // kill -9 of the real ComfyUI while a prompt runs: the page's socket stays open, gets the
    // job's failure at once, and is connected again when ComfyUI is back.
    let slow = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 31, "sigma": 10.0}},
        "3": {"class_type": "ImageBlur", "inputs": {"image": ["2", 0], "blur_radius": 31, "sigma": 10.0}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "realkill"}}
    });
    let r = Host::client()
        .post(host.url("/api/prompt"))
        .json(&json!({"prompt": slow, "client_id": client_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let killed_id: Value = r.json().await.unwrap();
    let killed_id = killed_id["prompt_id"].as_str().unwrap().to_string();
    let pid = host.comfy_state().await["pid"].as_i64().expect("pid") as i32;
    // SAFETY: SIGKILL to the real ComfyUI the host supervises.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the job's failure within 10 s of the kill")
            .expect("the page's socket stays open")
            .expect("frame");
        match msg {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "comfyhost.job_ended"
                    && v["data"]["prompt_id"] == killed_id.as_str()
                {
                    // Finished before the kill landed, or failed by it: both are honest.
                    assert!(
                        v["data"]["status"] == "failed" || v["data"]["status"] == "succeeded",
                        "{v:#}"
                    );
                    break;
                }
            }
            Message::Close(f) => panic!("the page's socket was closed: {f:?}"),
            _ => {}
        }
    }
    host.wait_comfy("real ComfyUI back", Duration::from_secs(240), |s| {
        s["state"] == "ready" && s["restarts"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("reconnected within 30 s of ComfyUI being ready")
            .expect("open")
            .expect("frame");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "comfyhost.comfyui" && v["data"]["connected"] == true {
                break;
            }
        }
    }
}
