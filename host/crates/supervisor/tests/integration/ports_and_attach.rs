//! Port conflicts at start (refuse / adopt) and attach mode.

use crate::support::*;
use comfyhost_supervisor::{
    PortPolicy, SupervisorConfig, SupervisorMode, SupervisorState as S, Target,
};

/// Runs a second supervisor's fake ComfyUI on `fx.port` and returns it, ready.
async fn occupy_with_fake(fx: &Fixture, env: &[(&str, &str)]) -> comfyhost_supervisor::Supervisor {
    let owner = spawn(fx.config(env));
    let mut rx = owner.subscribe();
    let op = owner.start().await;
    assert!(op_outcome(&mut rx, op).await.0);
    owner
}

#[tokio::test]
async fn port_held_by_comfyui_is_refused_by_default() {
    let fx = Fixture::new();
    let owner = occupy_with_fake(&fx, &[]).await;
    let sup = spawn(fx.config(&[]));
    let mut rx = sup.subscribe();
    let op = sup.start().await;
    let (ok, message) = op_outcome(&mut rx, op).await;
    assert!(!ok);
    assert_eq!(
        message,
        format!(
            "port {} is in use by another ComfyUI (pid unknown)",
            fx.port
        )
    );
    let st = sup.status();
    assert_eq!((st.state, st.pid), (S::Failed, None));
    sup.shutdown().await;
    owner.shutdown().await;
}

#[tokio::test]
async fn port_held_by_comfyui_is_adopted_when_configured() {
    let fx = Fixture::new();
    let owner = occupy_with_fake(&fx, &[]).await;
    let mut config = fx.config(&[]);
    config.port_policy = PortPolicy::Adopt;
    let sup = spawn(config);
    let mut rx = sup.subscribe();
    let op = sup.start().await;
    let (ok, message) = op_outcome(&mut rx, op).await;
    assert!(ok, "{message}");
    let st = sup.status();
    assert_eq!((st.state, st.pid), (S::Attached, None));
    assert_eq!(st.comfyui_version.as_deref(), Some("0.3.64-fake"));
    // We did not start it, so we do not stop it.
    let stop = sup.stop().await;
    let (ok, message) = op_outcome(&mut rx, stop).await;
    assert!(
        !ok && message.contains("adopted (pid unknown)"),
        "{message}"
    );
    // When it goes away, the adopted instance is reported unreachable.
    owner.shutdown().await;
    let st = wait_state(&sup, S::Unreachable).await;
    let reason = st.reason.unwrap();
    assert!(reason.contains("/system_stats"), "{reason}");
    // A start now launches our own.
    let start = sup.start().await;
    assert!(op_outcome(&mut rx, start).await.0);
    assert!(sup.status().pid.is_some());
    sup.shutdown().await;
}

#[tokio::test]
async fn port_held_by_something_else_is_refused() {
    let fx = Fixture::new();
    let owner = occupy_with_fake(&fx, &[("FAKE_NOT_COMFY", "1")]).await;
    let mut config = fx.config(&[]);
    config.port_policy = PortPolicy::Adopt;
    let sup = spawn(config);
    let mut rx = sup.subscribe();
    let op = sup.start().await;
    let (ok, message) = op_outcome(&mut rx, op).await;
    assert!(!ok);
    assert_eq!(
        message,
        format!(
            "port {} on 127.0.0.1 is in use by another program, not ComfyUI \
             (HTTP 200 but not ComfyUI's /system_stats)",
            fx.port
        )
    );
    sup.shutdown().await;
    owner.shutdown().await;
}

#[tokio::test]
async fn attach_mode_tracks_reachability_and_refuses_commands() {
    let fx = Fixture::new();
    let mut config = SupervisorConfig::attach(&format!("http://127.0.0.1:{}", fx.port)).unwrap();
    config.timings = fast_timings();
    assert!(matches!(config.target, Target::Attach(_)));
    let sup = spawn(config);
    let st = wait_state(&sup, S::Unreachable).await;
    assert_eq!(st.mode, SupervisorMode::Attach);
    assert!(st.command_line.is_empty());

    let owner = occupy_with_fake(&fx, &[]).await;
    let st = wait_state(&sup, S::Attached).await;
    assert_eq!(st.comfyui_version.as_deref(), Some("0.3.64-fake"));
    assert_eq!(
        st.reason,
        Some(format!("attached to http://127.0.0.1:{}", fx.port))
    );

    let mut rx = sup.subscribe();
    let op = sup.restart().await;
    let (ok, message) = op_outcome(&mut rx, op).await;
    assert!(!ok && message.starts_with("attach mode:"), "{message}");

    owner.shutdown().await;
    wait_state(&sup, S::Unreachable).await;
    sup.shutdown().await;
}
