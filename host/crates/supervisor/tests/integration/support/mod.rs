//! Shared helpers for the supervisor integration tests: a fake ComfyUI (python3) and waiters.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use comfyhost_supervisor::{
    LaunchSpec, OpId, Supervisor, SupervisorConfig, SupervisorEvent, SupervisorState,
    SupervisorStatus, Timings,
};
use tokio::sync::broadcast;

pub const FAKE: &str = include_str!("fake_comfyui.py");

/// Generous upper bound for anything a test waits for (the CI box is small and busy).
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub script: PathBuf,
    pub port: u16,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake_comfyui.py");
        std::fs::write(&script, FAKE).unwrap();
        Self {
            dir,
            script,
            port: free_port(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `python3 fake_comfyui.py --listen 127.0.0.1 --port N …` with the given FAKE_* env.
    pub fn spec(&self, env: &[(&str, &str)]) -> LaunchSpec {
        let mut spec = LaunchSpec::comfyui("python3", self.dir.path(), self.port);
        spec.args_prefix = vec![self.script.to_string_lossy().into_owned()];
        spec.output_dir = Some(self.path("out"));
        spec.user_dir = Some(self.path("user"));
        for (k, v) in env {
            spec.env.insert((*k).to_owned(), (*v).to_owned());
        }
        spec
    }

    pub fn config(&self, env: &[(&str, &str)]) -> SupervisorConfig {
        let mut config = SupervisorConfig::managed(self.spec(env));
        config.timings = fast_timings();
        config
    }
}

/// A free loopback port for a fake ComfyUI, chosen below Linux's ephemeral range
/// (32768-60999) so a port another parallel test gets from `bind(":0")` cannot take it between
/// this check and the child binding it.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() as u16).wrapping_mul(7919);
    for _ in 0..200 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 20_000 + (seed.wrapping_add(n.wrapping_mul(37)) % 12_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 20000-31999")
}

pub fn fast_timings() -> Timings {
    Timings {
        probe_interval: Duration::from_millis(50),
        probe_timeout: Duration::from_secs(1),
        startup_timeout: Duration::from_secs(20),
        stop_grace: Duration::from_secs(3),
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        stable_after: Duration::from_secs(5),
        crash_loop_max: 5,
        crash_loop_window: Duration::from_secs(60),
        attach_interval: Duration::from_millis(100),
    }
}

pub fn spawn(config: SupervisorConfig) -> Supervisor {
    Supervisor::spawn(config, Default::default()).unwrap()
}

fn dump(sup: &Supervisor) -> String {
    let logs: Vec<String> = sup
        .logs(0, 10_000)
        .lines
        .into_iter()
        .map(|l| format!("{:?} {}", l.stream, l.text))
        .collect();
    format!("status: {:#?}\nlogs:\n{}", sup.status(), logs.join("\n"))
}

pub async fn wait_state(sup: &Supervisor, state: SupervisorState) -> SupervisorStatus {
    match tokio::time::timeout(WAIT, sup.wait_for(|s| s == state)).await {
        Ok(status) if status.state == state => status,
        _ => panic!("never reached {state:?}\n{}", dump(sup)),
    }
}

/// Receives events until `pred` matches; returns every event seen, the matching one last.
pub async fn events_until(
    rx: &mut broadcast::Receiver<SupervisorEvent>,
    mut pred: impl FnMut(&SupervisorEvent) -> bool,
) -> Vec<SupervisorEvent> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let ev = rx.recv().await.unwrap();
            let done = pred(&ev);
            seen.push(ev);
            if done {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "event never came; saw {seen:#?}");
    seen
}

/// Waits for the `OpFinished` of `op`; returns `(ok, message)`.
pub async fn op_outcome(rx: &mut broadcast::Receiver<SupervisorEvent>, op: OpId) -> (bool, String) {
    let seen = events_until(
        rx,
        |e| matches!(e, SupervisorEvent::OpFinished { op: o, .. } if *o == op),
    )
    .await;
    match seen.last() {
        Some(SupervisorEvent::OpFinished { ok, message, .. }) => (*ok, message.clone()),
        _ => unreachable!(),
    }
}

pub fn read_pid(path: &Path) -> u32 {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        assert!(std::time::Instant::now() < deadline, "no pid in {path:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls until `pid` is gone (or a zombie); panics after WAIT.
pub async fn assert_gone(pid: u32) {
    let gone = tokio::time::timeout(WAIT, async {
        while comfyhost_supervisor::process_alive(pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "process {pid} is still alive");
}
