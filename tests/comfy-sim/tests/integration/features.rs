//! Upload, userdata, model combos, sampler progress and binary previews.

use crate::common::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

fn sampler_prompt(client: &str) -> Value {
    json!({
        "client_id": client,
        "prompt": {
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sim.safetensors"}},
            "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
            "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
            "3": {"class_type": "KSampler", "inputs": {"seed": 42, "steps": 4, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "sd/ComfyUI", "images": ["8", 0]}}
        }
    })
}

fn with_checkpoint(o: &mut comfy_sim::SimOptions, dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("models/checkpoints")).unwrap();
    std::fs::write(
        dir.join("models/checkpoints/sim.safetensors"),
        b"not really a model",
    )
    .unwrap();
    o.models_dir = dir.join("models");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampler_reports_steps_and_sends_binary_previews() {
    let sim = start(with_checkpoint).await;
    assert_eq!(
        sim.get_json("/models/checkpoints").await,
        json!(["sim.safetensors"])
    );
    let (mut plain, _) = sim.ws(Some("plain")).await;
    let (status, body) = sim.post_json("/prompt", &sampler_prompt("plain")).await;
    assert_eq!(status, 200, "{body}");
    let pid = body["prompt_id"].as_str().unwrap().to_string();
    let mut previews = 0;
    let mut progress = Vec::new();
    loop {
        match next_frame(&mut plain).await.expect("frame") {
            Message::Binary(b) => {
                assert_eq!(&b[..8], &[0, 0, 0, 1, 0, 0, 0, 2], "PREVIEW_IMAGE, PNG");
                assert_eq!(&b[8..12], b"\x89PNG");
                previews += 1;
            }
            Message::Text(t) => {
                let m: Value = serde_json::from_str(t.as_str()).unwrap();
                if m["type"] == "progress" {
                    progress.push((m["data"]["value"].clone(), m["data"]["max"].clone()));
                }
                if m["type"] == "executing" && m["data"]["node"].is_null() {
                    break;
                }
            }
            _ => {}
        }
    }
    assert_eq!(previews, 4);
    assert_eq!(
        progress,
        (1..=4).map(|i| (json!(i), json!(4))).collect::<Vec<_>>()
    );
    let h = sim.get_json(&format!("/history/{pid}")).await;
    assert_eq!(
        h[&pid]["outputs"]["9"]["images"][0],
        json!({"filename": "ComfyUI_00001_.png", "subfolder": "sd", "type": "output"})
    );
    assert!(
        sim.dir
            .path()
            .join("output/sd/ComfyUI_00001_.png")
            .is_file()
    );

    // A client announcing supports_preview_metadata gets type-4 frames.
    let (mut meta, _) = sim.ws(Some("meta")).await;
    send_text(
        &mut meta,
        &json!({"type": "feature_flags", "data": {"supports_preview_metadata": true}}),
    )
    .await;
    let mut p = sampler_prompt("meta");
    p["prompt"]["3"]["inputs"]["seed"] = json!(7);
    let (status, _) = sim.post_json("/prompt", &p).await;
    assert_eq!(status, 200);
    loop {
        if let Message::Binary(b) = next_frame(&mut meta).await.expect("frame") {
            assert_eq!(&b[..4], &[0, 0, 0, 4]);
            let len = u32::from_be_bytes(b[4..8].try_into().unwrap()) as usize;
            let m: Value = serde_json::from_slice(&b[8..8 + len]).unwrap();
            assert_eq!(m["node_id"], "3");
            assert_eq!(m["image_type"], "image/png");
            break;
        }
    }
}

#[tokio::test]
async fn missing_checkpoint_reports_the_model_list() {
    let sim = start(with_checkpoint).await;
    let mut p = sampler_prompt("x");
    p["prompt"]["4"]["inputs"]["ckpt_name"] = json!("sdxl.safetensors");
    let (status, body) = sim.post_json("/prompt", &p).await;
    assert_eq!(status, 400);
    let e = &body["node_errors"]["4"]["errors"][0];
    assert_eq!(e["type"], "value_not_in_list");
    assert_eq!(
        e["details"],
        "ckpt_name: 'sdxl.safetensors' not in ['sim.safetensors']"
    );
    assert_eq!(body["node_errors"]["4"]["dependent_outputs"], json!(["9"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_then_load_image_and_preview() {
    let sim = start(|_, _| {}).await;
    let png = comfy_sim::png::solid(32, 16, [10, 20, 30, 255], 4, &[]);
    let boundary = "simboundary7d1f";
    let form = || {
        let mut body = Vec::new();
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"cat.png\"\r\nContent-Type: image/png\r\n\r\n").as_bytes());
        body.extend_from_slice(&png);
        body.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"type\"\r\n\r\ninput\r\n--{boundary}--\r\n").as_bytes());
        body
    };
    let ct = format!("multipart/form-data; boundary={boundary}");
    let r = sim
        .http
        .post(format!("{}/upload/image", sim.base))
        .header("content-type", &ct)
        .body(form())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"name": "cat.png", "subfolder": "", "type": "input"})
    );
    // Same bytes again: duplicate detection keeps the name.
    let r = sim
        .http
        .post(format!("{}/api/upload/image", sim.base))
        .header("content-type", &ct)
        .body(form())
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["name"], "cat.png");
    let info = sim.get_json("/object_info/LoadImage").await;
    assert_eq!(
        info["LoadImage"]["input"]["required"]["image"][0],
        json!(["cat.png"])
    );

    let (mut ws, _) = sim.ws(Some("u")).await;
    let (status, body) = sim
        .post_json(
            "/prompt",
            &json!({"client_id": "u", "prompt": {
                "1": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},
                "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
            }}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let pid = body["prompt_id"].as_str().unwrap();
    let got = until_done(&mut ws, pid).await;
    let executed = got.iter().find(|m| m["type"] == "executed").unwrap();
    let img = &executed["data"]["output"]["images"][0];
    assert_eq!(img["type"], "temp");
    let name = img["filename"].as_str().unwrap();
    assert!(
        name.starts_with("ComfyUI_temp_") && name.ends_with("_00001_.png"),
        "{name}"
    );
    let (s, _, bytes) = sim
        .request(
            "GET",
            &format!("/view?filename={name}&type=temp"),
            &json!({}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(comfy_sim::png::read_header(&bytes), Some((32, 16, 3)));
}

#[tokio::test]
async fn userdata_accepts_encoded_slashes() {
    let sim = start(|_, _| {}).await;
    let url = format!("{}/api/userdata/workflows%2Fa.json", sim.base);
    let r = sim
        .http
        .post(&url)
        .body(r#"{"nodes": []}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!("workflows/a.json"));
    let r = sim.http.get(&url).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), r#"{"nodes": []}"#);
    assert_eq!(
        sim.get_json("/userdata?dir=workflows").await,
        json!(["a.json"])
    );
    let r = sim
        .http
        .post(format!("{url}?overwrite=false"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = sim
        .http
        .get(format!("{}/userdata/..%2F..%2Fetc%2Fpasswd", sim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = sim
        .http
        .get(format!("{}/userdata?dir=nope", sim.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = sim.http.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_delete_and_clear() {
    let sim = start(|_, _| {}).await;
    let (mut ws, _) = sim.ws(Some("h")).await;
    let mut ids = Vec::new();
    for color in [1, 2, 3] {
        let (_, body) = sim
            .post_json(
                "/prompt",
                &json!({"client_id": "h", "prompt": {
                    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 2, "color": color}},
                    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "h"}}
                }}),
            )
            .await;
        let pid = body["prompt_id"].as_str().unwrap().to_string();
        until_done(&mut ws, &pid).await;
        ids.push(pid);
    }
    let h = sim.get_json("/history?max_items=2").await;
    assert_eq!(
        h.as_object().unwrap().keys().cloned().collect::<Vec<_>>(),
        ids[1..].to_vec()
    );
    // batch_size 2 → two files per run, counters continue across runs.
    assert_eq!(
        h[&ids[2]]["outputs"]["2"]["images"][1]["filename"],
        "h_00006_.png"
    );
    sim.post_json("/history", &json!({"delete": [ids[0]]}))
        .await;
    assert_eq!(sim.get_json("/history").await.as_object().unwrap().len(), 2);
    sim.post_json("/history", &json!({"clear": true})).await;
    assert_eq!(sim.get_json("/history").await, json!({}));
}
