//! Lifecycle tests against real processes (a python3 fake ComfyUI).

use std::time::Duration;

use crate::support::*;
use comfyhost_supervisor::{
    LogStream, OpKind, SupervisorEvent, SupervisorMode, SupervisorState as S, process_alive,
};

#[tokio::test]
async fn start_reaches_ready_with_events_in_order_and_captured_logs() {
    let fx = Fixture::new();
    let sup = spawn(fx.config(&[("FAKE_DELAY_S", "0.3")]));
    assert_eq!(sup.status().state, S::Stopped);
    let mut events = sup.subscribe();
    let op = sup.start().await;
    // Accepted means visible: nobody can observe `stopped` after start() returned.
    let st = sup.status();
    assert_eq!(st.state, S::Starting);
    assert_eq!(
        st.operation.map(|o| (o.id, o.kind)),
        Some((op, OpKind::Start))
    );
    assert_eq!(st.mode, SupervisorMode::Managed);

    let (ok, message) = op_outcome(&mut events, op).await;
    assert!(ok, "{message}");
    assert!(message.starts_with("ComfyUI is ready after"), "{message}");

    let st = sup.status();
    assert_eq!(st.state, S::Ready);
    assert_eq!(st.comfyui_version.as_deref(), Some("0.3.64-fake"));
    assert!(st.pid.is_some() && st.operation.is_none() && st.last_lines.is_empty());
    assert_eq!(st.command_line[0], "python3");
    assert!(
        st.command_line_shell
            .contains(&format!("--port {}", fx.port))
    );
    assert!(
        fx.path("out").is_dir() && fx.path("user").is_dir(),
        "dirs created"
    );

    // Event order for one start.
    let mut rx = sup.subscribe();
    let stop = sup.stop().await;
    let seen = events_until(
        &mut rx,
        |e| matches!(e, SupervisorEvent::OpFinished { op, .. } if *op == stop),
    )
    .await;
    let kinds: Vec<String> = seen
        .iter()
        .map(|e| match e {
            SupervisorEvent::OpStarted { kind, .. } => format!("op_started:{kind:?}"),
            SupervisorEvent::OpFinished { ok, .. } => format!("op_finished:{ok}"),
            SupervisorEvent::StateChanged { state, .. } => format!("state:{state:?}"),
            SupervisorEvent::Spawned { .. } => "spawned".into(),
            SupervisorEvent::Exited { .. } => "exited".into(),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "op_started:Stop",
            "state:Stopping",
            "exited",
            "state:Stopped",
            "op_finished:true"
        ]
    );

    // Stdout and stderr lines are captured with their stream tags, in order, after the
    // supervisor's own launch note.
    let lines = sup.logs(0, 1000).lines;
    let launch = lines
        .iter()
        .position(|l| l.stream == LogStream::Supervisor && l.text.contains("launching ComfyUI"))
        .unwrap();
    let stdout = lines
        .iter()
        .position(|l| l.stream == LogStream::Stdout && l.text.starts_with("fake ComfyUI pid"))
        .unwrap();
    let gui = lines
        .iter()
        .position(|l| l.stream == LogStream::Stderr && l.text.starts_with("To see the GUI go to"))
        .unwrap();
    assert!(launch < stdout && launch < gui);
    assert!(lines.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    sup.shutdown().await;
}

#[tokio::test]
async fn first_events_of_a_start_are_ordered() {
    let fx = Fixture::new();
    let sup = spawn(fx.config(&[]));
    let mut rx = sup.subscribe();
    let op = sup.start().await;
    let seen = events_until(
        &mut rx,
        |e| matches!(e, SupervisorEvent::OpFinished { op: o, .. } if *o == op),
    )
    .await;
    let names: Vec<&str> = seen
        .iter()
        .map(|e| match e {
            SupervisorEvent::OpStarted { .. } => "op_started",
            SupervisorEvent::StateChanged {
                state: S::Starting, ..
            } => "starting",
            SupervisorEvent::Spawned { .. } => "spawned",
            SupervisorEvent::StateChanged {
                state: S::Ready, ..
            } => "ready",
            SupervisorEvent::OpFinished { .. } => "op_finished",
            _ => "other",
        })
        .collect();
    assert_eq!(
        names,
        ["op_started", "starting", "spawned", "ready", "op_finished"]
    );
    if let SupervisorEvent::Spawned { attempt, op: o, .. } = &seen[2] {
        assert_eq!((*attempt, *o), (1, Some(op)));
    }
    sup.shutdown().await;
}

#[tokio::test]
async fn startup_timeout_kills_the_child_and_fails_with_last_lines() {
    let fx = Fixture::new();
    let mut config = fx.config(&[("FAKE_NEVER_LISTEN", "1")]);
    // Long enough for python to print its first lines even on a loaded machine.
    config.timings.startup_timeout = Duration::from_secs(5);
    let sup = spawn(config);
    let mut rx = sup.subscribe();
    let op = sup.start().await;
    let seen = events_until(&mut rx, |e| matches!(e, SupervisorEvent::Spawned { .. })).await;
    let Some(SupervisorEvent::Spawned { pid, .. }) = seen.last().cloned() else {
        unreachable!()
    };
    let (ok, message) = op_outcome(&mut rx, op).await;
    assert!(!ok);
    assert_eq!(message, "startup timeout after 5 s");
    let st = sup.status();
    assert_eq!(st.state, S::Failed);
    assert_eq!(st.reason.as_deref(), Some("startup timeout after 5 s"));
    assert!(st.pid.is_none());
    assert_eq!(st.last_exit.as_ref().and_then(|e| e.signal), Some(9));
    assert!(
        st.last_lines
            .iter()
            .any(|l| l.text == "loading custom nodes forever"),
        "{:#?}",
        st.last_lines
    );
    assert_gone(pid).await;
    // Failed stays failed: no automatic restart.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sup.status().state, S::Failed);
    sup.shutdown().await;
}

#[tokio::test]
async fn crash_is_restarted_with_backoff_and_recorded() {
    let fx = Fixture::new();
    let counter = fx.path("counter");
    let counter = counter.to_str().unwrap();
    let sup = spawn(fx.config(&[
        ("FAKE_CRASH_COUNTER", counter),
        ("FAKE_CRASH_TIMES", "2"),
        ("FAKE_EXIT_CODE", "3"),
    ]));
    let mut rx = sup.subscribe();
    let op = sup.start().await;
    let seen = events_until(
        &mut rx,
        |e| matches!(e, SupervisorEvent::OpFinished { op: o, .. } if *o == op),
    )
    .await;
    let backoffs: Vec<&str> = seen
        .iter()
        .filter_map(|e| match e {
            SupervisorEvent::StateChanged {
                state: S::Backoff,
                reason,
                ..
            } => reason.as_deref(),
            _ => None,
        })
        .collect();
    assert_eq!(
        backoffs,
        [
            "ComfyUI exited unexpectedly (exit code 3); restarting in 0.1 s",
            "ComfyUI exited unexpectedly (exit code 3); restarting in 0.2 s",
        ]
    );
    let attempts: Vec<u32> = seen
        .iter()
        .filter_map(|e| match e {
            SupervisorEvent::Spawned { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 2, 3]);
    assert!(matches!(
        seen.last(),
        Some(SupervisorEvent::OpFinished { ok: true, .. })
    ));
    let st = sup.status();
    assert_eq!(st.state, S::Ready);
    assert_eq!(st.restarts, 2);
    let exit = st.last_exit.unwrap();
    assert_eq!((exit.code, exit.expected), (Some(3), false));
    assert_eq!(exit.description, "exit code 3");
    sup.shutdown().await;
}

#[tokio::test]
async fn crash_loop_fails_with_reason_and_last_lines() {
    let fx = Fixture::new();
    let mut config = fx.config(&[("FAKE_EXIT_CODE", "255")]);
    config.timings.crash_loop_max = 3;
    let sup = spawn(config);
    let mut rx = sup.subscribe();
    let op = sup.start().await;
    let (ok, message) = op_outcome(&mut rx, op).await;
    assert!(!ok);
    assert!(
        message.starts_with("crash loop: 3 unexpected exits within 60 s (last: exit code 255)"),
        "{message}"
    );
    let st = sup.status();
    assert_eq!(st.state, S::Failed);
    assert_eq!(st.restarts, 2);
    assert!(
        st.last_lines
            .iter()
            .any(|l| l.text == "Traceback: fake crash, exiting with 255"),
        "{:#?}",
        st.last_lines
    );
    // No more restarts until an explicit start.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = sup.status();
    assert_eq!(
        (later.state, later.restarts, later.pid),
        (S::Failed, 2, None)
    );
    // An explicit start clears the failure and counts afresh.
    let again = sup.start().await;
    assert_eq!(sup.status().restarts, 0);
    let (ok, _) = op_outcome(&mut rx, again).await;
    assert!(!ok);
    sup.shutdown().await;
}

#[tokio::test]
async fn stop_sends_sigterm_to_a_cooperative_child() {
    let fx = Fixture::new();
    let sup = spawn(fx.config(&[]));
    let mut rx = sup.subscribe();
    let op = sup.start().await;
    assert!(op_outcome(&mut rx, op).await.0);
    let pid = sup.status().pid.unwrap();
    let stop = sup.stop().await;
    let (ok, message) = op_outcome(&mut rx, stop).await;
    assert!(ok);
    assert_eq!(message, "stopped (exit code 0)");
    let st = sup.status();
    assert_eq!((st.state, st.pid), (S::Stopped, None));
    let exit = st.last_exit.unwrap();
    assert_eq!((exit.code, exit.expected, exit.pid), (Some(0), true, pid));
    assert!(
        sup.logs(0, 1000)
            .lines
            .iter()
            .any(|l| l.text == "got SIGTERM, exiting")
    );
    assert!(!process_alive(pid));
    // Stop again: already stopped.
    let again = sup.stop().await;
    assert_eq!(
        op_outcome(&mut rx, again).await,
        (true, "already stopped".into())
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn stop_escalates_to_sigkill_after_the_grace_period() {
    let fx = Fixture::new();
    let mut config = fx.config(&[("FAKE_IGNORE_TERM", "1")]);
    config.timings.stop_grace = Duration::from_millis(700);
    let sup = spawn(config);
    let mut rx = sup.subscribe();
    let op = sup.start().await;
    assert!(op_outcome(&mut rx, op).await.0);
    let stop = sup.stop().await;
    let (ok, message) = op_outcome(&mut rx, stop).await;
    assert!(ok);
    assert_eq!(message, "stopped (killed by signal 9 (SIGKILL))");
    let texts: Vec<String> = sup
        .logs(0, 1000)
        .lines
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert!(texts.iter().any(|t| t == "ignoring SIGTERM"), "{texts:#?}");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("did not exit within the grace period"))
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn no_orphans_after_stop_or_shutdown() {
    for via_shutdown in [false, true] {
        let fx = Fixture::new();
        let pidfile = fx.path("grandchild.pid");
        let sup = spawn(fx.config(&[("FAKE_GRANDCHILD_PID", pidfile.to_str().unwrap())]));
        let mut rx = sup.subscribe();
        let op = sup.start().await;
        assert!(op_outcome(&mut rx, op).await.0);
        let pid = sup.status().pid.unwrap();
        let grandchild = read_pid(&pidfile);
        assert!(process_alive(grandchild));
        if via_shutdown {
            sup.shutdown().await;
            assert_eq!(sup.status().state, S::Stopped);
        } else {
            let stop = sup.stop().await;
            assert!(op_outcome(&mut rx, stop).await.0);
        }
        assert_gone(pid).await;
        assert_gone(grandchild).await;
        sup.shutdown().await;
    }
}

#[tokio::test]
async fn restart_runs_a_new_process() {
    let fx = Fixture::new();
    let sup = spawn(fx.config(&[]));
    let mut rx = sup.subscribe();
    let op = sup.start().await;
    assert!(op_outcome(&mut rx, op).await.0);
    let first = sup.status().pid.unwrap();
    let restart = sup.restart().await;
    assert_eq!(sup.status().state, S::Stopping);
    let (ok, _) = op_outcome(&mut rx, restart).await;
    assert!(ok);
    let st = sup.status();
    assert_eq!(st.state, S::Ready);
    assert_ne!(st.pid, Some(first));
    assert_eq!(st.restarts, 0, "explicit restarts are not crash restarts");
    assert!(st.last_exit.unwrap().expected);
    assert!(!process_alive(first));
    sup.shutdown().await;
}

#[tokio::test]
async fn restart_with_flags_relaunches_with_the_new_command_line() {
    let fx = Fixture::new();
    let sup = spawn(fx.config(&[]));
    let mut rx = sup.subscribe();
    let op = sup.start().await;
    assert!(op_outcome(&mut rx, op).await.0);
    assert!(
        !sup.status()
            .command_line
            .iter()
            .any(|a| a == "--use-pytorch-cross-attention")
    );
    let op = sup
        .restart_with_flags(vec!["--use-pytorch-cross-attention".to_string()])
        .await;
    assert!(op_outcome(&mut rx, op).await.0);
    let st = sup.status();
    assert_eq!(st.state, S::Ready);
    assert_eq!(
        st.command_line.last().map(String::as_str),
        Some("--use-pytorch-cross-attention"),
        "{:?}",
        st.command_line
    );
    sup.shutdown().await;
}

#[tokio::test]
async fn stop_during_backoff_cancels_the_restart_and_supersedes_start() {
    let fx = Fixture::new();
    let mut config = fx.config(&[("FAKE_EXIT_CODE", "7")]);
    config.timings.backoff_initial = Duration::from_secs(30);
    config.timings.backoff_max = Duration::from_secs(30);
    let sup = spawn(config);
    let mut rx = sup.subscribe();
    let start = sup.start().await;
    let st = wait_state(&sup, S::Backoff).await;
    assert!(st.next_restart_in_ms.is_some_and(|ms| ms > 20_000));
    assert!(
        st.last_lines
            .iter()
            .any(|l| l.text.contains("exiting with 7"))
    );
    let stop = sup.stop().await;
    assert_eq!(sup.status().state, S::Stopped);
    assert_eq!(
        op_outcome(&mut rx, start).await,
        (false, format!("superseded by stop {stop}"))
    );
    assert_eq!(op_outcome(&mut rx, stop).await, (true, "stopped".into()));
    sup.shutdown().await;
}

#[tokio::test]
async fn missing_program_and_unwritable_dir_fail_clearly() {
    let fx = Fixture::new();
    let mut config = fx.config(&[]);
    if let comfyhost_supervisor::Target::Managed(spec) = &mut config.target {
        spec.program = fx.path("no-such-python");
    }
    let sup = spawn(config);
    let mut rx = sup.subscribe();
    let op = sup.start().await;
    let (ok, message) = op_outcome(&mut rx, op).await;
    assert!(!ok);
    assert!(
        message.starts_with("cannot launch ") && message.contains("no-such-python"),
        "{message}"
    );
    assert_eq!(sup.status().state, S::Failed);
    sup.shutdown().await;

    let mut config = fx.config(&[]);
    if let comfyhost_supervisor::Target::Managed(spec) = &mut config.target {
        spec.temp_dir = Some("/proc".into());
    }
    let sup = spawn(config);
    let mut rx = sup.subscribe();
    let op = sup.start().await;
    let (ok, message) = op_outcome(&mut rx, op).await;
    assert!(!ok);
    assert!(
        message.starts_with("temp directory /proc is not writable"),
        "{message}"
    );
    assert_eq!(sup.status().reason.as_deref(), Some(message.as_str()));
    sup.shutdown().await;
}

#[tokio::test]
async fn commands_after_shutdown_finish_with_an_error() {
    let fx = Fixture::new();
    let sup = spawn(fx.config(&[]));
    sup.shutdown().await;
    let mut rx = sup.subscribe();
    let op = sup.start().await;
    assert_eq!(
        op_outcome(&mut rx, op).await,
        (false, "the supervisor has shut down".into())
    );
}

#[tokio::test]
async fn host_cancellation_token_stops_the_child() {
    let fx = Fixture::new();
    let token = tokio_util::sync::CancellationToken::new();
    let sup = comfyhost_supervisor::Supervisor::spawn(fx.config(&[]), token.clone()).unwrap();
    let mut rx = sup.subscribe();
    let op = sup.start().await;
    assert!(op_outcome(&mut rx, op).await.0);
    let pid = sup.status().pid.unwrap();
    token.cancel();
    let st = wait_state(&sup, S::Stopped).await;
    assert_eq!(st.reason.as_deref(), Some("host shut down"));
    assert_gone(pid).await;
    sup.shutdown().await;
}

#[tokio::test]
async fn stop_while_starting_supersedes_the_start() {
    let fx = Fixture::new();
    let sup = spawn(fx.config(&[("FAKE_NEVER_LISTEN", "1")]));
    let mut rx = sup.subscribe();
    let start = sup.start().await;
    let seen = events_until(&mut rx, |e| matches!(e, SupervisorEvent::Spawned { .. })).await;
    let Some(SupervisorEvent::Spawned { pid, .. }) = seen.last().cloned() else {
        unreachable!()
    };
    let stop = sup.stop().await;
    assert_eq!(
        op_outcome(&mut rx, start).await,
        (false, format!("superseded by stop {stop}"))
    );
    let (ok, message) = op_outcome(&mut rx, stop).await;
    assert!(ok, "{message}");
    assert_eq!(sup.status().state, S::Stopped);
    assert_gone(pid).await;
    sup.shutdown().await;
}

#[tokio::test]
async fn start_during_stopping_runs_after_the_exit() {
    let fx = Fixture::new();
    let mut config = fx.config(&[("FAKE_IGNORE_TERM", "1")]);
    config.timings.stop_grace = Duration::from_millis(500);
    let sup = spawn(config);
    let mut rx = sup.subscribe();
    let first = sup.start().await;
    assert!(op_outcome(&mut rx, first).await.0);
    let old_pid = sup.status().pid.unwrap();
    let stop = sup.stop().await;
    let start = sup.start().await;
    assert_eq!(sup.status().state, S::Stopping);
    assert!(op_outcome(&mut rx, stop).await.0);
    let (ok, message) = op_outcome(&mut rx, start).await;
    assert!(ok, "{message}");
    let st = sup.status();
    assert_eq!(st.state, S::Ready);
    assert_ne!(st.pid, Some(old_pid));
    sup.shutdown().await;
}
