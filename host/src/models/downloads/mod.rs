//! Preset installs: resumable HTTP downloads with progress, size + SHA-256 verification, a free
//! disk check before starting, pause/resume/cancel, and an atomic rename into the model folder.
//!
//! Each install is an *operation* (one preset, its files downloaded one after another). The
//! part file of `<folder>/<name>` is `<folder>/.<name>.comfyhost-part` — same directory, so
//! the final `rename` is atomic, and hidden with a non-model extension, so ComfyUI never lists
//! a half-written model. Operation state is saved as JSON in `<data>/downloads/<id>.json` at
//! every state change; after a host restart, operations that were queued or running resume
//! from their part files and paused ones stay paused.

pub mod disk;
mod origins;
pub mod transfer;
pub mod verify;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::inventory::ModelRoots;
pub use origins::DownloadOrigins;
use transfer::{Attempt, TransferError};

/// Attempts per file before the operation fails (connection cuts are retried with `Range`).
const MAX_ATTEMPTS: u32 = 6;

/// One file to install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRequest {
    /// ComfyUI model folder key.
    pub folder: String,
    /// Path relative to the folder.
    pub name: String,
    pub url: String,
    /// Bytes; 0 = unknown (workflow-declared models), then the server's length is used.
    #[serde(default)]
    pub size: u64,
    /// Lower-case hex; empty = not verifiable (workflow-declared models without a hash).
    #[serde(default)]
    pub sha256: String,
}

/// What an admin asks to install (a preset from a resolution, or declared files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallRequest {
    pub preset_id: String,
    #[serde(default)]
    pub preset_name: String,
    pub files: Vec<FileRequest>,
}

/// Lifecycle of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpState {
    Queued,
    Running,
    Paused,
    Completed,
    Failed,
    Cancelled,
}

/// Lifecycle of one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    Pending,
    Downloading,
    Verifying,
    /// Downloaded, verified and moved into place.
    Installed,
    /// Already present with the expected size.
    AlreadyPresent,
    Failed,
}

/// Why an install request is refused up front.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("the preset has no files")]
    Empty,
    #[error("file {index}: {why}")]
    BadFile { index: usize, why: String },
    #[error(
        "no models directory is known for folder `{0}` (attach mode without extra_model_paths?)"
    )]
    NoDestination(String),
    #[error(
        "not enough disk space in {path}: need {needed} bytes and the low-disk threshold of {reserve} bytes kept free, {available} available"
    )]
    InsufficientSpace {
        path: PathBuf,
        needed: u64,
        available: u64,
        /// The host-wide low-disk threshold every write must leave free.
        reserve: u64,
    },
    #[error("{0}")]
    Io(String),
}

/// Why a control action failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no download operation `{0}`")]
    NotFound(String),
    #[error("operation is {0:?}; cannot {1}")]
    WrongState(OpState, &'static str),
}

/// Persisted form of an operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Saved {
    id: String,
    preset_id: String,
    preset_name: String,
    created_ms: u64,
    state: OpState,
    error: Option<String>,
    files: Vec<SavedFile>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedFile {
    #[serde(flatten)]
    req: FileRequest,
    dest: PathBuf,
    part: PathBuf,
    state: FileState,
    /// Actual size once known (for size-0 requests).
    total: u64,
}

/// Progress of one file, as reported by the API.
#[derive(Debug, Clone, Serialize)]
pub struct FileView {
    pub folder: String,
    pub name: String,
    pub url: String,
    pub sha256: String,
    pub state: FileState,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub dest: PathBuf,
}

/// An operation as reported by the API.
#[derive(Debug, Clone, Serialize)]
pub struct OperationView {
    pub id: String,
    pub preset_id: String,
    pub preset_name: String,
    pub state: OpState,
    pub error: Option<String>,
    pub created_ms: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
    /// Bytes per second since the operation (re)started running; 0 when not running.
    pub rate_bps: u64,
    pub files: Vec<FileView>,
}

struct Operation {
    saved: Mutex<Saved>,
    done: Vec<Arc<AtomicU64>>,
    total: Vec<Arc<AtomicU64>>,
    run: Mutex<Option<Run>>,
}

struct Run {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    started: Instant,
    start_bytes: u64,
}

struct Inner {
    state_dir: PathBuf,
    roots: ModelRoots,
    client: reqwest::Client,
    hf_token: Option<String>,
    ops: Mutex<BTreeMap<String, Arc<Operation>>>,
    retry_delay: Duration,
    /// Origins installs may download from; `None` until the host sets it (tests, tools).
    allowed: parking_lot::RwLock<Option<DownloadOrigins>>,
}

/// Runs and tracks install operations. Cheap to clone.
#[derive(Clone)]
pub struct DownloadManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DownloadManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("DownloadManager")
            .field("state_dir", &self.inner.state_dir)
            .field("hf_token", &self.inner.hf_token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `https://huggingface.co/...` and its subdomains get the HF token.
pub fn is_huggingface(url: &str) -> bool {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .is_some_and(|h| h == "huggingface.co" || h.ends_with(".huggingface.co") || h == "hf.co")
}

fn valid_rel_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains('\\')
        && !name.contains('\0')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

impl Operation {
    fn view(&self) -> OperationView {
        let s = self.saved.lock();
        let files: Vec<FileView> = s
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| FileView {
                folder: f.req.folder.clone(),
                name: f.req.name.clone(),
                url: f.req.url.clone(),
                sha256: f.req.sha256.clone(),
                state: f.state,
                bytes_done: self.done[i].load(Ordering::Relaxed),
                bytes_total: self.total[i].load(Ordering::Relaxed),
                dest: f.dest.clone(),
            })
            .collect();
        let bytes_done: u64 = files.iter().map(|f| f.bytes_done).sum();
        let bytes_total: u64 = files.iter().map(|f| f.bytes_total).sum();
        let rate_bps = match (&*self.run.lock(), s.state) {
            (Some(r), OpState::Running) => {
                let secs = r.started.elapsed().as_secs_f64();
                if secs > 0.0 {
                    (bytes_done.saturating_sub(r.start_bytes) as f64 / secs) as u64
                } else {
                    0
                }
            }
            _ => 0,
        };
        OperationView {
            id: s.id.clone(),
            preset_id: s.preset_id.clone(),
            preset_name: s.preset_name.clone(),
            state: s.state,
            error: s.error.clone(),
            created_ms: s.created_ms,
            bytes_done,
            bytes_total,
            rate_bps,
            files,
        }
    }
}

impl DownloadManager {
    /// Open the manager: load saved operations from `state_dir` and resume the ones that were
    /// queued or running. Must be called inside a tokio runtime.
    pub fn open(
        state_dir: PathBuf,
        roots: ModelRoots,
        hf_token: Option<String>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&state_dir)?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("comfyhost/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(std::io::Error::other)?;
        let mgr = DownloadManager {
            inner: Arc::new(Inner {
                state_dir: state_dir.clone(),
                roots,
                client,
                hf_token: hf_token.filter(|t| !t.trim().is_empty()),
                ops: Mutex::new(BTreeMap::new()),
                retry_delay: Duration::from_millis(200),
                allowed: parking_lot::RwLock::new(None),
            }),
        };
        let mut resume = Vec::new();
        for entry in std::fs::read_dir(&state_dir)?.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let saved: Saved = match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "skipping unreadable download state");
                    continue;
                }
            };
            let op = Self::operation(saved);
            let id = op.saved.lock().id.clone();
            let state = op.saved.lock().state;
            if matches!(state, OpState::Queued | OpState::Running) {
                resume.push(id.clone());
            }
            mgr.inner.ops.lock().insert(id, Arc::new(op));
        }
        for id in resume {
            tracing::info!(operation = %id, "resuming download after restart");
            mgr.start(&id);
        }
        Ok(mgr)
    }

    fn operation(saved: Saved) -> Operation {
        let done = saved
            .files
            .iter()
            .map(|f| {
                let on_disk = match f.state {
                    FileState::Installed | FileState::AlreadyPresent => f.total,
                    _ => std::fs::metadata(&f.part).map(|m| m.len()).unwrap_or(0),
                };
                Arc::new(AtomicU64::new(on_disk))
            })
            .collect();
        let total = saved
            .files
            .iter()
            .map(|f| Arc::new(AtomicU64::new(f.total)))
            .collect();
        Operation {
            saved: Mutex::new(saved),
            done,
            total,
            run: Mutex::new(None),
        }
    }

    /// Validate, check free disk space, persist and start an install. Returns the operation id.
    /// Restricts installs to `origins` (the host's `--download-origins`).
    pub fn allow_only(&self, origins: DownloadOrigins) {
        *self.inner.allowed.write() = Some(origins);
    }

    /// The allowed origins as `scheme://host:port` (empty when unrestricted).
    pub fn allowed_origins(&self) -> Vec<String> {
        self.inner
            .allowed
            .read()
            .as_ref()
            .map(DownloadOrigins::list)
            .unwrap_or_default()
    }

    pub fn install(&self, req: InstallRequest) -> Result<String, InstallError> {
        if req.files.is_empty() {
            return Err(InstallError::Empty);
        }
        let mut files = Vec::new();
        for (index, f) in req.files.iter().enumerate() {
            let bad = |why: &str| InstallError::BadFile {
                index,
                why: why.to_owned(),
            };
            if !valid_rel_name(&f.name) {
                return Err(bad(
                    "name must be a relative `/`-separated path without `..`",
                ));
            }
            let url = url::Url::parse(&f.url).map_err(|e| bad(&format!("url: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad("url must be http(s)"));
            }
            if let Some(allowed) = &*self.inner.allowed.read()
                && !allowed.allows(&url)
            {
                return Err(bad(&format!(
                    "{} is not an origin allowed for downloads (allowed: {}; see --download-origins)",
                    DownloadOrigins::origin_of(&url)
                        .map_or_else(|| url.to_string(), |o| o.to_string()),
                    allowed.describe()
                )));
            }
            if !f.sha256.is_empty()
                && (f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(bad("sha256 must be 64 hex characters"));
            }
            let dir = self
                .inner
                .roots
                .install_dir(&f.folder)
                .ok_or_else(|| InstallError::NoDestination(f.folder.clone()))?;
            let dest = dir.join(&f.name);
            let file_name = dest
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| bad("name has no file part"))?;
            let part = dest.with_file_name(format!(".{file_name}.comfyhost-part"));
            files.push(SavedFile {
                req: FileRequest {
                    sha256: f.sha256.to_ascii_lowercase(),
                    ..f.clone()
                },
                dest,
                part,
                state: FileState::Pending,
                total: f.size,
            });
        }
        self.check_space(&files)?;
        let id = uuid::Uuid::new_v4().to_string();
        let saved = Saved {
            id: id.clone(),
            preset_id: req.preset_id,
            preset_name: req.preset_name,
            created_ms: now_ms(),
            state: OpState::Queued,
            error: None,
            files,
        };
        let op = Arc::new(Self::operation(saved));
        self.persist(&op)
            .map_err(|e| InstallError::Io(e.to_string()))?;
        self.inner.ops.lock().insert(id.clone(), op);
        self.start(&id);
        Ok(id)
    }

    /// Refuse when the known remaining bytes would not fit into the free space of their
    /// filesystem with the host's low-disk threshold kept ([`crate::machine::disk_guard::fits`]).
    fn check_space(&self, files: &[SavedFile]) -> Result<(), InstallError> {
        let mut need: HashMap<u64, (PathBuf, u64)> = HashMap::new();
        for f in files {
            if f.req.size == 0 || f.dest.exists() {
                continue;
            }
            let have = std::fs::metadata(&f.part).map(|m| m.len()).unwrap_or(0);
            let anc = disk::existing_ancestor(&f.dest).ok_or_else(|| {
                InstallError::Io(format!("no existing parent of {}", f.dest.display()))
            })?;
            let dev = disk::device_of(&anc).map_err(|e| InstallError::Io(e.to_string()))?;
            let e = need.entry(dev).or_insert((anc, 0));
            e.1 = e.1.saturating_add(f.req.size.saturating_sub(have));
        }
        for (_, (path, needed)) in need {
            let available = disk::free_bytes(&path).map_err(|e| InstallError::Io(e.to_string()))?;
            if !crate::machine::disk_guard::fits(needed, available) {
                return Err(InstallError::InsufficientSpace {
                    path,
                    needed,
                    available,
                    reserve: crate::machine::disk_guard::reserve_bytes(),
                });
            }
        }
        Ok(())
    }

    fn get(&self, id: &str) -> Result<Arc<Operation>, ControlError> {
        self.inner
            .ops
            .lock()
            .get(id)
            .cloned()
            .ok_or_else(|| ControlError::NotFound(id.to_owned()))
    }

    fn persist(&self, op: &Operation) -> std::io::Result<()> {
        let saved = op.saved.lock().clone();
        let path = self.inner.state_dir.join(format!("{}.json", saved.id));
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(&saved).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(tmp, path)
    }

    fn set_state(&self, op: &Operation, state: OpState, error: Option<String>) {
        {
            let mut s = op.saved.lock();
            s.state = state;
            s.error = error;
        }
        if let Err(e) = self.persist(op) {
            tracing::warn!(error = %e, "cannot save download state");
        }
    }

    fn start(&self, id: &str) {
        let Ok(op) = self.get(id) else { return };
        let cancel = CancellationToken::new();
        let start_bytes = op.done.iter().map(|d| d.load(Ordering::Relaxed)).sum();
        self.set_state(&op, OpState::Running, None);
        let mgr = self.clone();
        let task = {
            let op = op.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move { mgr.run(op, cancel).await })
        };
        *op.run.lock() = Some(Run {
            cancel,
            task,
            started: Instant::now(),
            start_bytes,
        });
    }

    async fn run(&self, op: Arc<Operation>, cancel: CancellationToken) {
        let (id, count) = {
            let s = op.saved.lock();
            (s.id.clone(), s.files.len())
        };
        for i in 0..count {
            let file = op.saved.lock().files[i].clone();
            if matches!(file.state, FileState::Installed | FileState::AlreadyPresent) {
                continue;
            }
            match self.install_file(&op, i, &file, &cancel).await {
                Ok(state) => {
                    op.saved.lock().files[i].state = state;
                    let _ = self.persist(&op);
                }
                Err(TransferError::Interrupted) => return, // state set by pause/cancel
                Err(e) => {
                    op.saved.lock().files[i].state = FileState::Failed;
                    tracing::warn!(operation = %id, file = %file.req.name, error = %e, "download failed");
                    self.set_state(
                        &op,
                        OpState::Failed,
                        Some(format!("{}: {e}", file.req.name)),
                    );
                    return;
                }
            }
        }
        tracing::info!(operation = %id, "preset installed");
        self.set_state(&op, OpState::Completed, None);
    }

    async fn install_file(
        &self,
        op: &Operation,
        i: usize,
        f: &SavedFile,
        cancel: &CancellationToken,
    ) -> Result<FileState, TransferError> {
        if let Ok(meta) = tokio::fs::metadata(&f.dest).await {
            if f.req.size == 0 || meta.len() == f.req.size {
                op.done[i].store(meta.len(), Ordering::Relaxed);
                op.total[i].store(meta.len(), Ordering::Relaxed);
                return Ok(FileState::AlreadyPresent);
            }
            return Err(TransferError::Fatal(format!(
                "{} exists with {} bytes, expected {}; remove it first",
                f.dest.display(),
                meta.len(),
                f.req.size
            )));
        }
        if let Some(parent) = f.dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| TransferError::Fatal(format!("creating {}: {e}", parent.display())))?;
        }
        op.saved.lock().files[i].state = FileState::Downloading;
        let bearer = self
            .inner
            .hf_token
            .as_deref()
            .filter(|_| is_huggingface(&f.req.url));
        let free = if f.req.size == 0 {
            f.dest.parent().and_then(|p| disk::free_bytes(p).ok())
        } else {
            None
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = transfer::fetch(Attempt {
                client: &self.inner.client,
                url: &f.req.url,
                size: f.req.size,
                part: &f.part,
                bearer,
                done: &op.done[i],
                total: &op.total[i],
                cancel,
                free_bytes: free,
            })
            .await;
            match r {
                Ok(()) => break,
                Err(TransferError::Transient(why)) if attempt < MAX_ATTEMPTS => {
                    tracing::info!(file = %f.req.name, attempt, reason = %why, "download interrupted; resuming");
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(TransferError::Interrupted),
                        _ = tokio::time::sleep(self.inner.retry_delay * attempt) => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
        op.saved.lock().files[i].state = FileState::Verifying;
        let part = f.part.clone();
        let (digest, len) = tokio::task::spawn_blocking(move || verify::sha256_file(&part))
            .await
            .map_err(|e| TransferError::Fatal(format!("hashing task: {e}")))?
            .map_err(|e| TransferError::Fatal(format!("hashing {}: {e}", f.part.display())))?;
        let size_ok = f.req.size == 0 || len == f.req.size;
        let hash_ok = f.req.sha256.is_empty() || digest == f.req.sha256;
        if !(size_ok && hash_ok) {
            let _ = tokio::fs::remove_file(&f.part).await;
            op.done[i].store(0, Ordering::Relaxed);
            return Err(TransferError::Fatal(if size_ok {
                format!(
                    "checksum mismatch: expected sha256 {}, got {digest}",
                    f.req.sha256
                )
            } else {
                format!("size mismatch: expected {} bytes, got {len}", f.req.size)
            }));
        }
        tokio::fs::rename(&f.part, &f.dest)
            .await
            .map_err(|e| TransferError::Fatal(format!("moving into {}: {e}", f.dest.display())))?;
        op.total[i].store(len, Ordering::Relaxed);
        op.saved.lock().files[i].total = len;
        tracing::info!(file = %f.dest.display(), bytes = len, verified = !f.req.sha256.is_empty(), "model installed");
        Ok(FileState::Installed)
    }

    /// Stop a running (or queued) operation, keeping its part files.
    pub async fn pause(&self, id: &str) -> Result<OperationView, ControlError> {
        let op = self.get(id)?;
        let state = op.saved.lock().state;
        if !matches!(state, OpState::Running | OpState::Queued) {
            return Err(ControlError::WrongState(state, "pause"));
        }
        self.set_state(&op, OpState::Paused, None);
        self.stop(&op).await;
        Ok(op.view())
    }

    /// Continue a paused or failed operation from its part files.
    pub fn resume(&self, id: &str) -> Result<OperationView, ControlError> {
        let op = self.get(id)?;
        let state = op.saved.lock().state;
        if !matches!(state, OpState::Paused | OpState::Failed) {
            return Err(ControlError::WrongState(state, "resume"));
        }
        for f in op.saved.lock().files.iter_mut() {
            if f.state == FileState::Failed {
                f.state = FileState::Pending;
            }
        }
        self.start(id);
        Ok(op.view())
    }

    /// Stop an operation and delete its part files (installed files stay).
    pub async fn cancel(&self, id: &str) -> Result<OperationView, ControlError> {
        let op = self.get(id)?;
        let state = op.saved.lock().state;
        if matches!(state, OpState::Completed | OpState::Cancelled) {
            return Err(ControlError::WrongState(state, "cancel"));
        }
        self.set_state(&op, OpState::Cancelled, None);
        self.stop(&op).await;
        let parts: Vec<PathBuf> = op
            .saved
            .lock()
            .files
            .iter()
            .map(|f| f.part.clone())
            .collect();
        for (i, p) in parts.iter().enumerate() {
            if tokio::fs::remove_file(p).await.is_ok() {
                op.done[i].store(0, Ordering::Relaxed);
            }
        }
        Ok(op.view())
    }

    async fn stop(&self, op: &Operation) {
        let run = op.run.lock().take();
        if let Some(run) = run {
            run.cancel.cancel();
            let _ = run.task.await;
        }
    }

    /// One operation.
    pub fn view(&self, id: &str) -> Result<OperationView, ControlError> {
        Ok(self.get(id)?.view())
    }

    /// Every operation, newest first.
    pub fn list(&self) -> Vec<OperationView> {
        let ops: Vec<Arc<Operation>> = self.inner.ops.lock().values().cloned().collect();
        let mut views: Vec<OperationView> = ops.iter().map(|o| o.view()).collect();
        views.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(a.id.cmp(&b.id)));
        views
    }

    /// Where part files and state live (for tests and logs).
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::Response;
    use sha2::Digest;

    /// Serves `data` at `/f`, 32 KiB every 20 ms, honouring `Range: bytes=N-`; records ranges.
    async fn slow_server(data: Vec<u8>) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let data = bytes::Bytes::from(data);
        let l2 = log.clone();
        let app = axum::Router::new().route(
            "/f",
            axum::routing::get(move |h: HeaderMap| {
                let data = data.clone();
                let log = l2.clone();
                async move {
                    let range = h
                        .get(header::RANGE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    log.lock().push(range.clone());
                    let start: usize = range
                        .as_deref()
                        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
                        .unwrap_or(0);
                    let body = data.slice(start..);
                    let chunks: Vec<bytes::Bytes> = body
                        .chunks(32 * 1024)
                        .map(bytes::Bytes::copy_from_slice)
                        .collect();
                    let stream = futures::stream::unfold(chunks.into_iter(), |mut it| async move {
                        let c = it.next()?;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Some((Ok::<_, std::io::Error>(c), it))
                    });
                    let mut b = Response::builder()
                        .status(if start > 0 {
                            StatusCode::PARTIAL_CONTENT
                        } else {
                            StatusCode::OK
                        })
                        .header(header::CONTENT_LENGTH, body.len());
                    if start > 0 {
                        b = b.header(
                            header::CONTENT_RANGE,
                            format!("bytes {start}-{}/{}", data.len() - 1, data.len()),
                        );
                    }
                    b.body(Body::from_stream(stream)).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/f"), log)
    }

    #[tokio::test]
    async fn an_operation_running_at_a_crash_resumes_from_its_part_file_after_restart() {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let (url, log) = slow_server(data.clone()).await;
        let models = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let roots = ModelRoots {
            root: Some(models.path().to_owned()),
            extra: Vec::new(),
        };
        let first = DownloadManager::open(state.path().to_owned(), roots.clone(), None).unwrap();
        let id = first
            .install(InstallRequest {
                preset_id: "p".into(),
                preset_name: "P".into(),
                files: vec![FileRequest {
                    folder: "vae".into(),
                    name: "v.safetensors".into(),
                    url,
                    size: data.len() as u64,
                    sha256: hex::encode(sha2::Sha256::digest(&data)),
                }],
            })
            .unwrap();
        while first.view(&id).unwrap().bytes_done < 200_000 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        first.pause(&id).await.unwrap();
        // Make the saved state look like a crash mid-download.
        let path = state.path().join(format!("{id}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"paused\"", "\"running\"");
        std::fs::write(&path, text).unwrap();
        drop(first);

        let second = DownloadManager::open(state.path().to_owned(), roots, None).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while second.view(&id).unwrap().state != OpState::Completed {
            assert!(Instant::now() < deadline, "{:?}", second.view(&id).unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            std::fs::read(models.path().join("vae/v.safetensors")).unwrap(),
            data
        );
        let ranges = log.lock().clone();
        assert_eq!(ranges.len(), 2, "{ranges:?}");
        let resumed: u64 = ranges[1]
            .as_deref()
            .unwrap()
            .trim_start_matches("bytes=")
            .trim_end_matches('-')
            .parse()
            .unwrap();
        assert!(resumed >= 200_000, "{resumed}");
    }

    #[test]
    fn names_and_hf_hosts() {
        assert!(valid_rel_name("a/b.safetensors"));
        for bad in ["", "/abs", "a/../b", "a\\b", "a//b", "./a"] {
            assert!(!valid_rel_name(bad), "{bad}");
        }
        assert!(is_huggingface("https://huggingface.co/x/resolve/main/y"));
        assert!(is_huggingface("https://cdn-lfs.huggingface.co/x"));
        assert!(!is_huggingface("https://evilhuggingface.co/x"));
        assert!(!is_huggingface("https://huggingface.co.evil.com/x"));
    }
}
