//! The queue with a scripted output-sync plugin standing in for the wasm one (the real plugin
//! runs in `tests/integration/output_sync.rs`): identity hand-over, outage hold and drain,
//! per-file retries, vanished sources.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use comfyhost_runtime::registry::{
    HookInput, HookOutput, MapSecrets, PluginCode, PluginCompiler, PluginRegistry, RegistryConfig,
};
use comfyhost_runtime::sandbox::CallEnv;
use comfyhost_runtime::types::{OutputFile, RemovalOutcome, SyncOutcome};
use comfyhost_runtime::{CallErrorKind, HookKind, RuntimeError};
use comfyhost_store::{OutputState, Store};
use futures::future::BoxFuture;
use parking_lot::Mutex;

use super::queue::{self, Round};
use super::{OutputSync, OutputsConfig};
use crate::jobs::{FinishedJob, OutputRef};

/// How the scripted destination answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Up,
    Down,
    Young,
    /// A multipart upload: `parts_left` calls answer `in-progress`, then it is synced.
    Uploading,
}

#[derive(Clone)]
struct Destination {
    mode: Arc<Mutex<Mode>>,
    seen: Arc<Mutex<Vec<OutputFile>>>,
    parts_left: Arc<Mutex<u32>>,
    /// Files the plugin was asked to take back.
    removed: Arc<Mutex<Vec<String>>>,
}

struct Scripted(Destination);

impl PluginCode for Scripted {
    fn sha256(&self) -> &str {
        "0000"
    }
    fn hook(&self) -> HookKind {
        HookKind::OutputSync
    }
    fn mirrors_removals(&self) -> bool {
        true
    }
    fn call<'a>(
        &'a self,
        _env: &'a CallEnv,
        input: HookInput<'a>,
    ) -> BoxFuture<'a, Result<HookOutput, CallErrorKind>> {
        Box::pin(async move {
            if let HookInput::Removed { file } = input {
                self.0.removed.lock().push(file.guest_path.clone());
                return Ok(HookOutput::Removed(RemovalOutcome::Removed(
                    file.guest_path.clone(),
                )));
            }
            let HookInput::Output { file } = input else {
                return Err(CallErrorKind::Trap("wrong hook".into()));
            };
            let mode = *self.0.mode.lock();
            match mode {
                Mode::Down => Ok(HookOutput::Output(SyncOutcome::RetryLater(
                    "network: s3: connection refused".into(),
                ))),
                Mode::Young => Ok(HookOutput::Output(SyncOutcome::RetryLater(
                    "incomplete: modified 5 ms ago".into(),
                ))),
                Mode::Uploading if *self.0.parts_left.lock() > 0 => {
                    let mut left = self.0.parts_left.lock();
                    *left -= 1;
                    Ok(HookOutput::Output(SyncOutcome::RetryLater(format!(
                        "in-progress: s3: part {}/4 of {}",
                        3 - *left,
                        file.guest_path
                    ))))
                }
                Mode::Up | Mode::Uploading => {
                    self.0.seen.lock().push(file.clone());
                    let user = file.user.as_ref().map_or("anonymous", |u| u.id.as_str());
                    Ok(HookOutput::Output(SyncOutcome::Synced(format!(
                        "mem://{user}/{}",
                        file.filename
                    ))))
                }
            }
        })
    }
}

struct Compiler(Destination);

impl PluginCompiler for Compiler {
    fn compile(
        &self,
        _id: &str,
        _hook: HookKind,
        _wasm: &[u8],
    ) -> Result<Arc<dyn PluginCode>, RuntimeError> {
        Ok(Arc::new(Scripted(self.0.clone())))
    }
}

struct Fixture {
    svc: OutputSync,
    store: Store,
    dest: Destination,
    output: tempfile::TempDir,
    _plugins: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let output = tempfile::tempdir().unwrap();
    let plugins = tempfile::tempdir().unwrap();
    let store = Store::open_in_memory().unwrap();
    let dest = Destination {
        mode: Arc::new(Mutex::new(Mode::Up)),
        seen: Arc::new(Mutex::new(Vec::new())),
        parts_left: Arc::new(Mutex::new(0)),
        removed: Arc::new(Mutex::new(Vec::new())),
    };
    let reg = PluginRegistry::new(
        RegistryConfig {
            plugins_dir: plugins.path().join("plugins"),
            dir_roots: Default::default(),
            breaker: Default::default(),
            host_info: vec![],
            limits: Default::default(),
        },
        Arc::new(Compiler(dest.clone())),
        store.clone(),
        Arc::new(MapSecrets::default()),
    )
    .unwrap();
    reg.install(
        "id = \"sync\"\nversion = \"0.1.0\"\nname = \"s\"\nwit = \"0.1.0\"\nhooks = [\"output-sync\"]\n",
        b"script",
        None,
    )
    .unwrap();
    let config = OutputsConfig {
        backoff_base: Duration::from_millis(40),
        backoff_max: Duration::from_millis(200),
        rate_per_s: 0,
        removal_cap: 2,
        ..OutputsConfig::default()
    };
    let svc = OutputSync::new(store.clone(), reg, Some(output.path().to_owned()), config);
    Fixture {
        svc,
        store,
        dest,
        output,
        _plugins: plugins,
    }
}

fn job(f: &Fixture, prompt: &str, user: Option<&str>, files: &[&str]) -> FinishedJob {
    let outputs = files
        .iter()
        .map(|name| {
            std::fs::write(f.output.path().join(name), name.as_bytes()).unwrap();
            OutputRef {
                node_id: "9".into(),
                filename: (*name).into(),
                subfolder: String::new(),
                folder_type: "output".into(),
                local_path: Some(f.output.path().join(name)),
            }
        })
        .collect();
    FinishedJob {
        prompt_id: prompt.into(),
        client_id: None,
        user_id: user.map(str::to_owned),
        status: "succeeded".into(),
        outputs,
    }
}

async fn drain(f: &Fixture) {
    for _ in 0..50 {
        for row in f.store.output_due(i64::MAX, 100).unwrap() {
            let round = queue::process(&f.svc, &row).await;
            queue::settle(&f.svc, &row, round);
        }
        let b = f.store.output_backlog().unwrap();
        if b.pending == 0 && b.removing == 0 {
            return;
        }
    }
    panic!("backlog did not drain");
}

#[tokio::test]
async fn each_file_reaches_the_chain_with_its_own_user() {
    let f = fixture();
    assert_eq!(
        f.svc
            .record_finished(&job(&f, "p-a", Some("alice"), &["a1.png", "a2.png"])),
        2
    );
    assert_eq!(
        f.svc
            .record_finished(&job(&f, "p-b", Some("bob"), &["b1.png"])),
        1
    );
    assert_eq!(f.svc.record_finished(&job(&f, "p-n", None, &["n1.png"])), 1);
    // Not succeeded: nothing queued.
    let mut failed = job(&f, "p-x", Some("eve"), &["x.png"]);
    failed.status = "failed".into();
    assert_eq!(f.svc.record_finished(&failed), 0);
    drain(&f).await;
    let seen = f.dest.seen.lock().clone();
    let owner = |name: &str| {
        let file = seen.iter().find(|s| s.filename == name).unwrap();
        assert_eq!(file.guest_path, format!("/output/{name}"));
        (
            file.user.as_ref().map(|u| u.id.clone()),
            file.prompt_id.clone(),
        )
    };
    assert_eq!(owner("a1.png"), (Some("alice".into()), Some("p-a".into())));
    assert_eq!(owner("a2.png"), (Some("alice".into()), Some("p-a".into())));
    assert_eq!(owner("b1.png"), (Some("bob".into()), Some("p-b".into())));
    assert_eq!(owner("n1.png"), (None, Some("p-n".into())));
    assert_eq!(seen.len(), 4, "each file offered once");
    let h = f.svc.health().unwrap();
    assert_eq!(h.backlog.done, 4);
    assert_eq!(h.plugins[0].synced, 4);
    assert_eq!(
        h.plugins[0]
            .last_synced_to
            .as_deref()
            .map(|s| s.starts_with("mem://")),
        Some(true)
    );
    // A full pass afterwards finds nothing new and does not re-own the files.
    let report = f.svc.full_pass_now().await.unwrap();
    assert_eq!(report.queued, 0);
    assert_eq!(
        f.store
            .output_get("b1.png")
            .unwrap()
            .unwrap()
            .user_id
            .as_deref(),
        Some("bob")
    );
}

#[tokio::test]
async fn outage_holds_the_queue_then_the_backlog_drains() {
    let f = fixture();
    *f.dest.mode.lock() = Mode::Down;
    f.svc
        .record_finished(&job(&f, "p1", None, &["1.png", "2.png", "3.png"]));
    let rows = f.store.output_due(i64::MAX, 10).unwrap();
    let round = queue::process(&f.svc, &rows[0]).await;
    assert!(
        matches!(round, Round::Outage(super::health::ErrorType::Network, _)),
        "{round:?}"
    );
    let hold = queue::settle(&f.svc, &rows[0], round).unwrap();
    assert_eq!(hold, Duration::from_millis(40));
    let h = f.svc.health().unwrap();
    assert_eq!(h.backlog.pending, 3);
    assert_eq!(h.consecutive_failures, 1);
    assert!(h.held_until_ms.is_some());
    let err = h.plugins[0].last_error.clone().unwrap();
    assert_eq!(err.kind, super::health::ErrorType::Network);
    // A second failure doubles the hold.
    let round = queue::process(&f.svc, &rows[1]).await;
    assert_eq!(
        queue::settle(&f.svc, &rows[1], round),
        Some(Duration::from_millis(80))
    );
    // Endpoint back: the next probe succeeds, the hold lifts, everything drains.
    *f.dest.mode.lock() = Mode::Up;
    drain(&f).await;
    let h = f.svc.health().unwrap();
    assert_eq!((h.backlog.pending, h.backlog.done), (0, 3));
    assert_eq!((h.consecutive_failures, h.held_until_ms), (0, None));
    assert_eq!(f.dest.seen.lock().len(), 3);
}

#[tokio::test]
async fn incomplete_files_retry_alone_and_vanished_ones_are_gone() {
    let f = fixture();
    *f.dest.mode.lock() = Mode::Young;
    f.svc
        .record_finished(&job(&f, "p1", None, &["young.png", "lost.png"]));
    let rows = f.store.output_due(i64::MAX, 10).unwrap();
    let young = rows.iter().find(|r| r.rel_path == "young.png").unwrap();
    let round = queue::process(&f.svc, young).await;
    assert!(matches!(round, Round::RetryFile(_)), "{round:?}");
    assert_eq!(queue::settle(&f.svc, young, round), None, "no queue hold");
    let row = f.store.output_get("young.png").unwrap().unwrap();
    assert_eq!(row.attempts, 1);
    assert!(row.next_attempt_ms > crate::jobs::now_ms());
    // The source of the other one disappears: marked gone, never an error.
    std::fs::remove_file(f.output.path().join("lost.png")).unwrap();
    let lost = f.store.output_get("lost.png").unwrap().unwrap();
    let round = queue::process(&f.svc, &lost).await;
    assert_eq!(round, Round::Gone);
    queue::settle(&f.svc, &lost, round);
    assert_eq!(
        f.store.output_get("lost.png").unwrap().unwrap().state,
        OutputState::Gone
    );
}

#[tokio::test]
async fn paths_leaving_the_output_dir_are_not_queued() {
    let f = fixture();
    let mut j = job(&f, "p1", None, &["ok.png"]);
    j.outputs[0].subfolder = "../..".into();
    assert_eq!(f.svc.record_finished(&j), 0);
}

#[tokio::test]
async fn in_progress_uploads_are_called_again_at_once_without_counting_failures() {
    let f = fixture();
    *f.dest.mode.lock() = Mode::Uploading;
    *f.dest.parts_left.lock() = 3;
    f.svc.record_finished(&job(&f, "p1", None, &["clip.mp4"]));
    for k in 1..=3 {
        let row = f.store.output_get("clip.mp4").unwrap().unwrap();
        let before = crate::jobs::now_ms();
        let round = queue::process(&f.svc, &row).await;
        assert!(
            matches!(&round, Round::InProgress(m) if m.contains(&format!("part {k}/4"))),
            "{round:?}"
        );
        assert_eq!(queue::settle(&f.svc, &row, round), None, "no queue hold");
        let row = f.store.output_get("clip.mp4").unwrap().unwrap();
        // Due again at once: no backoff, and no attempt counted.
        assert_eq!(row.attempts, 0);
        assert!(row.next_attempt_ms <= crate::jobs::now_ms() && row.next_attempt_ms >= before);
        let h = f.svc.health().unwrap();
        assert_eq!(h.consecutive_failures, 0);
        let p = &h.plugins[0];
        assert_eq!((p.retries, p.failures, &p.last_error), (0, 0, &None));
        let up = p.uploading.as_ref().unwrap();
        assert_eq!(up.file, "clip.mp4");
        assert!(up.progress.starts_with("in-progress:"), "{up:?}");
        assert_eq!(h.backlog.retrying, 0);
    }
    drain(&f).await;
    let h = f.svc.health().unwrap();
    assert_eq!((h.backlog.done, h.plugins[0].synced), (1, 1));
    assert_eq!(h.plugins[0].uploading, None);
    // A failure after progress still backs off and holds the queue as before.
    *f.dest.mode.lock() = Mode::Down;
    f.svc.record_finished(&job(&f, "p2", None, &["b.png"]));
    let row = f.store.output_get("b.png").unwrap().unwrap();
    let round = queue::process(&f.svc, &row).await;
    assert!(matches!(round, Round::Outage(..)), "{round:?}");
}

#[tokio::test]
async fn deletions_above_the_cap_wait_for_a_release_that_covers_what_the_admin_saw() {
    let f = fixture();
    let names: Vec<String> = (0..10).map(|i| format!("f{i}.png")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    f.svc.record_finished(&job(&f, "p", Some("alice"), &refs));
    drain(&f).await;
    assert_eq!(f.store.output_backlog().unwrap().done, 10);
    let gone = |from: usize, to: usize| {
        for n in &names[from..to] {
            std::fs::remove_file(f.output.path().join(n)).unwrap();
        }
    };
    // Two at once (the cap): passed on without asking.
    gone(0, 2);
    f.svc.full_pass_now().await.unwrap();
    drain(&f).await;
    assert_eq!(f.dest.removed.lock().len(), 2);
    assert!(f.svc.health().unwrap().removals_held.is_none());
    // Three at once: held, nothing taken back.
    gone(2, 5);
    f.svc.full_pass_now().await.unwrap();
    drain(&f).await;
    let held = f.svc.health().unwrap().removals_held.unwrap();
    assert_eq!((held.count, held.cap), (3, 2));
    assert_eq!(f.dest.removed.lock().len(), 2);
    assert_eq!(f.store.output_backlog().unwrap().removing, 0);
    // More vanish before the admin acts: the release covers what was seen plus the cap (5),
    // not the 8 missing now.
    gone(5, 10);
    let released = f.svc.release_removals().await.unwrap();
    assert_eq!(released.count, 3);
    drain(&f).await;
    assert_eq!(
        f.dest.removed.lock().len(),
        2,
        "a release is not a blank cheque"
    );
    assert_eq!(f.svc.health().unwrap().removals_held.unwrap().count, 8);
    // Releasing what is held now lets all 8 through; the hold is gone.
    f.svc.release_removals().await.unwrap();
    drain(&f).await;
    assert_eq!(f.dest.removed.lock().len(), 10);
    let h = f.svc.health().unwrap();
    assert!(h.removals_held.is_none());
    assert_eq!((h.backlog.removed, h.backlog.done), (10, 0));
    // Nothing left to release.
    assert!(f.svc.release_removals().await.is_none());
}
