//! Conformance against a real ComfyUI (not run by default: it needs a ComfyUI checkout and a
//! Python environment with torch; see shared/REAL_COMFYUI.md). Run with
//! `COMFYUI_DIR=… COMFYUI_PYTHON=… cargo test -p comfyhost-supervisor --test real_comfyui -- --ignored`.

use std::time::Duration;

use crate::support::*;
use comfyhost_supervisor::{
    LaunchSpec, LogStream, SupervisorConfig, SupervisorState as S, Timings, process_alive,
};

#[tokio::test]
#[ignore = "needs a real ComfyUI: set COMFYUI_DIR and COMFYUI_PYTHON"]
async fn real_comfyui_start_ready_stop() {
    let dir = std::env::var("COMFYUI_DIR").expect("COMFYUI_DIR is required for this test");
    let python = std::env::var("COMFYUI_PYTHON").expect("COMFYUI_PYTHON is required");
    let data = tempfile::tempdir().unwrap();
    let mut spec = LaunchSpec::comfyui(python, dir, free_port());
    spec.output_dir = Some(data.path().join("output"));
    spec.input_dir = Some(data.path().join("input"));
    spec.user_dir = Some(data.path().join("user"));
    spec.temp_dir = Some(data.path().join("temp"));
    spec.database_file = Some(data.path().join("user/comfyui.db"));
    spec.extra_flags = vec!["--cpu".into(), "--disable-auto-launch".into()];
    let mut config = SupervisorConfig::managed(spec);
    config.timings = Timings {
        startup_timeout: Duration::from_secs(180),
        ..Timings::default()
    };
    let sup = spawn(config);
    let mut rx = sup.subscribe();
    let op = sup.start().await;
    let started = std::time::Instant::now();
    let st = tokio::time::timeout(Duration::from_secs(200), sup.wait_for(|s| s != S::Starting))
        .await
        .unwrap();
    assert_eq!(st.state, S::Ready, "{st:#?}");
    let (ok, message) = op_outcome(&mut rx, op).await;
    assert!(ok, "{message}");
    eprintln!(
        "ready: {message} (wall {:.2} s)",
        started.elapsed().as_secs_f64()
    );
    eprintln!("version: {:?}", st.comfyui_version);
    assert!(
        st.comfyui_version.is_some(),
        "real ComfyUI reports its version"
    );
    let lines = sup.logs(0, 5000).lines;
    assert!(
        lines
            .iter()
            .any(|l| l.stream == LogStream::Stderr && l.text.starts_with("To see the GUI go to:")),
        "ComfyUI logs to stderr"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.text.contains("Failed to initialize database")),
        "--database-url puts the DB where we can write"
    );
    assert!(data.path().join("user/comfyui.db").is_file());
    let pid = st.pid.unwrap();
    let stop = sup.stop().await;
    let t = std::time::Instant::now();
    let (ok, message) = op_outcome(&mut rx, stop).await;
    eprintln!("stop: {message} after {:.2} s", t.elapsed().as_secs_f64());
    assert!(ok);
    for l in sup.logs(0, 5000).lines.iter().rev().take(8).rev() {
        eprintln!("  {:?} {}", l.stream, l.text);
    }
    assert!(!process_alive(pid));
    sup.shutdown().await;
}
