//! Output sync: every file a finished job produced (and every file a periodic full pass finds)
//! goes through the output-sync plugin chain until each plugin synced or skipped it.
//!
//! - `executed` messages on browser sockets ([`executed_tap`]) and job ends
//!   ([`JobTracker::subscribe_finished`]) queue their files with prompt and user id.
//! - The queue lives in SQLite (`output_files`), so a host killed mid-sync resumes where it
//!   stopped; the plugins' own records keep a resumed file from being uploaded twice.
//! - One worker calls the chain at most `rate_per_s` times a second. A file a plugin calls
//!   incomplete is retried with its own exponential backoff; a destination failure (network,
//!   throttled, auth, quota) holds the whole queue back with a growing delay and probes with one
//!   file, so an outage grows the backlog and drains when the destination is back.
//! - Health by progress per plugin, plus the backlog: `GET /comfyhost/api/outputs`.
//!
//! Plugins see the output directory at [`file::OUTPUT_GUEST_DIR`] (`/output`): their manifest
//! must declare `{output}` there and an admin must grant it (reported as `output_mounted`).
//!
//! Mirror deletion: a full pass that finds synced files gone from the output directory marks
//! them `removing`, and the worker hands each to the `output-mirror` chain (output-sync plugins
//! that export it, e.g. the first-party plugin with `mirror_deletes` on a destination). Nothing
//! is ever deleted at the source. A pass that finds more than `removal_cap` files gone at once
//! (a wiped or unmounted volume looks the same) marks none: the removals are held and shown in
//! the health report until an admin releases them (`POST /outputs/removals/release`).

pub mod backoff;
pub mod executed_tap;
pub mod file;
pub mod full_pass;
pub mod health;
mod queue;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use comfyhost_runtime::HookKind;
use comfyhost_runtime::registry::PluginRegistry;
use comfyhost_store::{NewOutput, OutputBacklog, Store};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::jobs::{FinishedJob, JobTracker};
use health::{HealthBook, PluginHealth};

pub use full_pass::PassReport;

/// Timing of the output-sync queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputsConfig {
    /// Interval of the full pass over the output directory (also run once at start).
    pub full_pass_every: Duration,
    /// Files younger than this are left to the job-finished path by the full pass (so a job's
    /// owner is known before its files are synced).
    pub full_pass_min_age: Duration,
    /// First retry delay; doubles per failure.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// Most plugin-chain calls per second (0: unlimited).
    pub rate_per_s: u32,
    /// Most synced files one full pass may find deleted and pass on for mirror deletion; more
    /// are held for an admin.
    pub removal_cap: u64,
}

impl Default for OutputsConfig {
    fn default() -> Self {
        Self {
            full_pass_every: Duration::from_secs(300),
            full_pass_min_age: Duration::from_secs(60),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            rate_per_s: 10,
            removal_cap: 20,
        }
    }
}

impl OutputsConfig {
    /// Defaults overridden by `COMFYHOST_OUTPUTS_FULL_PASS_S`, `COMFYHOST_OUTPUTS_FULL_PASS_MIN_AGE_S`,
    /// `COMFYHOST_OUTPUTS_BACKOFF_BASE_MS`, `COMFYHOST_OUTPUTS_BACKOFF_MAX_MS`,
    /// `COMFYHOST_OUTPUTS_RATE_PER_S`, `COMFYHOST_OUTPUTS_REMOVAL_CAP` (unparsable values are
    /// ignored with a warning).
    pub fn from_env() -> Self {
        fn var(name: &str) -> Option<u64> {
            let v = std::env::var(name).ok()?;
            match v.trim().parse() {
                Ok(n) => Some(n),
                Err(_) => {
                    tracing::warn!(name, value = %v, "ignoring unparsable setting");
                    None
                }
            }
        }
        let mut c = Self::default();
        if let Some(s) = var("COMFYHOST_OUTPUTS_FULL_PASS_S") {
            c.full_pass_every = Duration::from_secs(s.max(1));
        }
        if let Some(s) = var("COMFYHOST_OUTPUTS_FULL_PASS_MIN_AGE_S") {
            c.full_pass_min_age = Duration::from_secs(s);
        }
        if let Some(ms) = var("COMFYHOST_OUTPUTS_BACKOFF_BASE_MS") {
            c.backoff_base = Duration::from_millis(ms.max(1));
        }
        if let Some(ms) = var("COMFYHOST_OUTPUTS_BACKOFF_MAX_MS") {
            c.backoff_max = Duration::from_millis(ms.max(1));
        }
        if let Some(n) = var("COMFYHOST_OUTPUTS_RATE_PER_S") {
            c.rate_per_s = u32::try_from(n).unwrap_or(u32::MAX);
        }
        if let Some(n) = var("COMFYHOST_OUTPUTS_REMOVAL_CAP") {
            c.removal_cap = n;
        }
        c
    }
}

/// What `GET /comfyhost/api/outputs` shows.
#[derive(Debug, Clone, Serialize)]
pub struct OutputsHealth {
    /// False in attach mode (no local output directory) or with no output-sync plugin enabled.
    pub active: bool,
    pub output_dir: Option<PathBuf>,
    pub backlog: OutputBacklog,
    /// Set while a destination failure holds the queue back.
    pub held_until_ms: Option<i64>,
    /// Destination failures in a row (resets on success).
    pub consecutive_failures: u32,
    pub last_full_pass_ms: Option<i64>,
    pub last_full_pass: Option<PassReport>,
    /// True when an enabled output-sync plugin mirrors deletions.
    pub mirror_active: bool,
    pub removal_cap: u64,
    /// Set while more deleted files than `removal_cap` wait for an admin's release.
    pub removals_held: Option<HeldRemovals>,
    pub plugins: Vec<PluginHealth>,
}

/// Deletions a full pass found but did not pass on (more than the cap at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldRemovals {
    /// Synced files missing from the output directory.
    pub count: u64,
    pub cap: u64,
    /// A few of them, to judge whether this is a real clean-up or a missing volume.
    pub sample: Vec<String>,
    /// When a pass first held them.
    pub since_ms: i64,
}

/// How many paths a held report shows.
const HELD_SAMPLE: usize = 10;

/// The output-sync service. Cheap to clone.
#[derive(Clone)]
pub struct OutputSync {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    plugins: PluginRegistry,
    output_dir: Option<PathBuf>,
    config: OutputsConfig,
    wake: Notify,
    state: Mutex<RunState>,
}

#[derive(Default)]
struct RunState {
    book: HealthBook,
    held_until_ms: Option<i64>,
    consecutive_failures: u32,
    last_full_pass_ms: Option<i64>,
    last_full_pass: Option<PassReport>,
    removals_held: Option<HeldRemovals>,
    /// An admin released held removals: the next pass passes on up to this many (what the
    /// admin saw plus the cap, so a volume that vanishes after the release is still held).
    release_up_to: Option<u64>,
}

impl OutputSync {
    /// A service over `output_dir` (`None` in attach mode: it then only reports itself idle).
    pub fn new(
        store: Store,
        plugins: PluginRegistry,
        output_dir: Option<PathBuf>,
        config: OutputsConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                plugins,
                output_dir,
                config,
                wake: Notify::new(),
                state: Mutex::new(RunState::default()),
            }),
        }
    }

    /// Starts the job listener, the full pass and the worker until `cancel`.
    pub fn spawn(&self, jobs: &JobTracker, cancel: CancellationToken) {
        if self.inner.output_dir.is_none() {
            tracing::info!("output sync idle: no local output directory (attach mode)");
            return;
        }
        let mut finished = jobs.subscribe_finished();
        let me = self.clone();
        let stop = cancel.clone();
        tokio::spawn(async move {
            loop {
                let job = tokio::select! {
                    _ = stop.cancelled() => return,
                    r = finished.recv() => r,
                };
                match job {
                    Ok(job) => {
                        me.record_finished(&job);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            missed = n,
                            "output sync missed job ends; running a full pass"
                        );
                        me.full_pass_now().await;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let me = self.clone();
        let stop = cancel.clone();
        tokio::spawn(async move {
            loop {
                me.full_pass_now().await;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(me.inner.config.full_pass_every) => {}
                }
            }
        });
        let me = self.clone();
        tokio::spawn(async move { queue::run(me, cancel).await });
    }

    /// Queues the files of a finished job (with its prompt and user id). Returns how many were
    /// queued. Files outside the managed output directory are ignored.
    pub fn record_finished(&self, job: &FinishedJob) -> usize {
        if job.status != "succeeded" {
            return 0;
        }
        self.record_files(&job.prompt_id, job.user_id.as_deref(), &job.outputs)
    }

    /// Queues files a job wrote (announced by a node, or listed at the job's end) with the
    /// job's prompt and user id; a file already known only gets its missing owner filled in.
    /// Returns how many were newly queued.
    pub fn record_files(
        &self,
        prompt_id: &str,
        user_id: Option<&str>,
        files: &[crate::jobs::OutputRef],
    ) -> usize {
        let Some(root) = &self.inner.output_dir else {
            return 0;
        };
        let span = tracing::info_span!("output_sync_job", prompt_id = %prompt_id);
        let _enter = span.enter();
        let now = crate::jobs::now_ms();
        let mut queued = 0;
        for out in files.iter().filter(|o| o.folder_type == "output") {
            let Some(rel) = file::rel_path(&out.subfolder, &out.filename) else {
                tracing::warn!(subfolder = %out.subfolder, filename = %out.filename, "output path leaves the output directory; ignored");
                continue;
            };
            let (size, mtime) = match file::stat(&root.join(&rel)) {
                Ok(Some(s)) => s,
                Ok(None) => {
                    tracing::warn!(file = %rel, "finished job's output is not on disk; the full pass will pick it up if it appears");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(file = %rel, error = %e, "cannot stat output");
                    continue;
                }
            };
            let new = NewOutput {
                rel_path: rel,
                prompt_id: Some(prompt_id.to_owned()),
                user_id: user_id.map(str::to_owned),
                size,
                modified_ms: mtime,
            };
            match self.inner.store.output_enqueue(&new, now) {
                Ok(true) => queued += 1,
                Ok(false) => {}
                Err(e) => tracing::error!(file = %new.rel_path, error = %e, "cannot queue output"),
            }
        }
        if queued > 0 {
            tracing::debug!(queued, "outputs queued for sync");
            self.inner.wake.notify_one();
        }
        queued
    }

    /// Runs one full pass now (off the async workers).
    pub async fn full_pass_now(&self) -> Option<PassReport> {
        let root = self.inner.output_dir.clone()?;
        let store = self.inner.store.clone();
        let min_age =
            i64::try_from(self.inner.config.full_pass_min_age.as_millis()).unwrap_or(i64::MAX);
        let now = crate::jobs::now_ms();
        let result = tokio::task::spawn_blocking(move || {
            if !root.exists() {
                return Ok(full_pass::PassResult::default());
            }
            full_pass::run(&root, &store, now, min_age)
        })
        .await;
        match result {
            Ok(Ok(pass)) => {
                let report = pass.report;
                {
                    let mut st = self.inner.state.lock();
                    st.last_full_pass_ms = Some(now);
                    st.last_full_pass = Some(report);
                }
                self.pass_on_removals(pass.vanished, now);
                if report.queued > 0 {
                    tracing::info!(
                        queued = report.queued,
                        files = report.files,
                        "full pass queued outputs"
                    );
                    self.inner.wake.notify_one();
                }
                Some(report)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "full pass over the output directory failed");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "full pass task failed");
                None
            }
        }
    }

    /// Marks synced files found deleted as `removing` (when a plugin mirrors deletions), or
    /// holds them when there are more than the cap and no admin released them.
    fn pass_on_removals(&self, vanished: Vec<String>, now: i64) {
        let mut st = self.inner.state.lock();
        if vanished.is_empty() {
            st.removals_held = None;
            st.release_up_to = None;
            return;
        }
        if !self.inner.plugins.has_enabled_mirror() {
            // Nobody would act on them: nothing to hold either.
            st.removals_held = None;
            st.release_up_to = None;
            return;
        }
        let count = vanished.len() as u64;
        let cap = self.inner.config.removal_cap;
        let allowed = st.release_up_to.map_or(cap, |n| n.max(cap));
        if count > allowed {
            if st.removals_held.as_ref().map(|h| h.count) != Some(count) {
                tracing::warn!(
                    count,
                    cap,
                    "synced outputs vanished from the output directory; more than the removal \
                     cap, so no destination copy is deleted until an admin releases them"
                );
            }
            let since_ms = st.removals_held.as_ref().map_or(now, |h| h.since_ms);
            st.removals_held = Some(HeldRemovals {
                count,
                cap,
                sample: vanished.iter().take(HELD_SAMPLE).cloned().collect(),
                since_ms,
            });
            return;
        }
        st.removals_held = None;
        st.release_up_to = None;
        drop(st);
        match self.inner.store.output_mark_removing(&vanished, now) {
            Ok(n) => {
                tracing::info!(
                    removing = n,
                    "synced outputs deleted at the source; taking back destination copies"
                );
                self.inner.wake.notify_one();
            }
            Err(e) => tracing::error!(error = %e, "cannot record deleted outputs"),
        }
    }

    /// An admin's go-ahead for held removals: runs a pass now that passes them on (up to the
    /// count the admin saw plus the cap). Returns the held report that was released (`None`:
    /// nothing was held).
    pub async fn release_removals(&self) -> Option<HeldRemovals> {
        let held = {
            let mut st = self.inner.state.lock();
            let held = st.removals_held.clone()?;
            st.release_up_to = Some(held.count.saturating_add(held.cap));
            held
        };
        self.full_pass_now().await;
        Some(held)
    }

    /// Health by progress.
    pub fn health(&self) -> Result<OutputsHealth, comfyhost_store::StoreError> {
        let backlog = self.inner.store.output_backlog()?;
        self.refresh_mounts();
        let st = self.inner.state.lock();
        Ok(OutputsHealth {
            active: self.inner.output_dir.is_some()
                && self.inner.plugins.has_enabled(HookKind::OutputSync),
            output_dir: self.inner.output_dir.clone(),
            backlog,
            held_until_ms: st.held_until_ms,
            consecutive_failures: st.consecutive_failures,
            last_full_pass_ms: st.last_full_pass_ms,
            last_full_pass: st.last_full_pass,
            mirror_active: self.inner.plugins.has_enabled_mirror(),
            removal_cap: self.inner.config.removal_cap,
            removals_held: st.removals_held.clone(),
            plugins: st.book.snapshot(),
        })
    }

    /// Notes, per output-sync plugin, whether `{output}` is mounted where files are announced.
    fn refresh_mounts(&self) {
        let Some(root) = &self.inner.output_dir else {
            return;
        };
        let infos = self.inner.plugins.list();
        let mut st = self.inner.state.lock();
        for info in infos
            .iter()
            .filter(|i| i.hooks.contains(&HookKind::OutputSync))
        {
            let mounted = info
                .effective
                .dirs
                .iter()
                .any(|d| d.guest == file::OUTPUT_GUEST_DIR && d.host_path == *root);
            st.book.set_mounted(&info.id, mounted);
        }
    }
}

#[cfg(test)]
mod tests;
