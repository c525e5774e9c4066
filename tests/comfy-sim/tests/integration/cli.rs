//! The `comfy-sim` binary: startup log, readiness line, unknown flags, crash knob.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::next_text;
use serde_json::json;

/// Spawns the binary, returns (child, port, stderr lines up to the readiness line).
#[allow(clippy::zombie_processes)] // the caller waits on the returned child
fn spawn(
    extra: &[&str],
    dir: &std::path::Path,
) -> (
    Child,
    u16,
    Vec<String>,
    BufReader<std::process::ChildStderr>,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_comfy-sim"))
        .args([
            "--listen",
            "127.0.0.1",
            "--port",
            "0",
            "--cpu",
            "--disable-auto-launch",
        ])
        .arg("--output-directory")
        .arg(dir.join("out"))
        .arg("--input-directory")
        .arg(dir.join("in"))
        .arg("--user-directory")
        .arg(dir.join("user"))
        .arg("--temp-directory")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "exited early: {lines:?}"
        );
        let line = line.trim_end().to_string();
        if let Some(addr) = line.strip_prefix("To see the GUI go to: http://127.0.0.1:") {
            let port = addr.parse().unwrap();
            lines.push(line);
            return (child, port, lines, reader);
        }
        lines.push(line);
    }
}

#[test]
fn help_lists_flags_and_bad_flags_fail() {
    let out = Command::new(env!("CARGO_BIN_EXE_comfy-sim"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--port",
        "--front-end-root",
        "--sim-node-delay-ms",
        "--sim-crash-after-prompts",
    ] {
        assert!(text.contains(flag), "{flag}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_comfy-sim"))
        .args(["--port", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn startup_log_has_attention_and_readiness_lines_and_accepts_unknown_flags() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, lines, _) = spawn(
        &["--use-sage-attention", "--reserve-vram", "1.5", "--fast"],
        dir.path(),
    );
    assert!(
        lines.iter().any(|l| l == "Using sage attention"),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l == "ComfyUI version: 0.33.0"),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.contains("--reserve-vram 1.5")));
    let stats: serde_json::Value =
        reqwest::get(format!("http://127.0.0.1:{port}/api/system_stats"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert!(
        stats["system"]["argv"]
            .as_array()
            .unwrap()
            .contains(&json!("--use-sage-attention"))
    );
    assert_eq!(stats["system"]["comfyui_version"], "0.33.0");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn the_0_3_64_profile_is_selectable_and_comfy_kitchen_is_logged_by_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, lines, _) = spawn(&["--sim-profile", "0.3.64"], dir.path());
    assert!(
        lines.iter().any(|l| l == "ComfyUI version: 0.3.64"),
        "{lines:?}"
    );
    let jobs = reqwest::get(format!("http://127.0.0.1:{port}/api/jobs"))
        .await
        .unwrap();
    assert_eq!(jobs.status().as_u16(), 404, "0.3.64 has no jobs API");
    child.kill().unwrap();
    child.wait().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let (mut child, _, lines, _) = spawn(&["--cpu", "--use-ck-attention"], dir.path());
    let base = lines
        .iter()
        .position(|l| l.starts_with("Using sub quadratic"));
    let ck = lines
        .iter()
        .position(|l| l == "Using Comfy Kitchen attention");
    assert!(base.is_some() && ck > base, "{lines:?}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn crash_knob_kills_the_process_without_close_frames() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port, _, _stderr) = spawn(
        &["--sim-crash-after-prompts", "1", "--sim-node-delay-ms", "1"],
        dir.path(),
    );
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/ws?clientId=k"))
            .await
            .unwrap();
    let _ = next_text(&mut ws).await;
    let http = reqwest::Client::new();
    let prompt = |color: i64| {
        json!({"client_id": "k", "prompt": {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "k"}}
        }})
    };
    let first: serde_json::Value = http
        .post(format!("http://127.0.0.1:{port}/prompt"))
        .json(&prompt(1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    crate::common::until_done(&mut ws, first["prompt_id"].as_str().unwrap()).await;
    let _ = http
        .post(format!("http://127.0.0.1:{port}/prompt"))
        .json(&prompt(2))
        .send()
        .await;
    // The socket ends without a close frame (abnormal closure).
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        use futures::StreamExt;
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => return "close frame",
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return "abnormal",
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(end, "abnormal");
    let status = child.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status:?}");
    // Output files stay.
    assert!(dir.path().join("out/k_00001_.png").is_file());
}
