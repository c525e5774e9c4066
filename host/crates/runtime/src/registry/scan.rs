//! What a drop-in scan remembers between scans so that an unchanged directory costs a few
//! `stat` calls: the sha256 of each component by file identity (size, mtime, inode; a large
//! file is not re-read and re-hashed every scan), components that failed to compile (by hash
//! and hook; a broken component is not recompiled every scan), and duplicate-id warnings
//! already raised. Also the compile guard: a size limit before reading, and a time limit after
//! which the scan gives up on a component (the compile runs on a thread of its own, so neither
//! the registry nor shutdown waits for it).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::{PluginCode, PluginCompiler};
use crate::RuntimeError;
use crate::manifest::{ConfigSchema, HookKind, Manifest};

/// File identity: a change of any of these means the bytes may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    mtime: Option<SystemTime>,
    ino: u64,
}

fn fingerprint(meta: &std::fs::Metadata) -> Fingerprint {
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let ino = 0;
    Fingerprint {
        len: meta.len(),
        mtime: meta.modified().ok(),
        ino,
    }
}

/// One plugin directory as a scan sees it, before compiling.
pub(super) struct Candidate {
    pub dir: PathBuf,
    pub dir_name: String,
    pub manifest: Manifest,
    pub schema: Option<ConfigSchema>,
    pub wasm_path: PathBuf,
    pub sha256: String,
    /// The component bytes when this scan had to read them (changed or new file).
    pub wasm: Option<Vec<u8>>,
}

/// Memory of earlier scans.
#[derive(Default)]
pub(super) struct ScanMemory {
    hashes: Mutex<HashMap<PathBuf, (Fingerprint, String)>>,
    failed: Mutex<HashMap<(String, HookKind), String>>,
    warned_duplicates: Mutex<HashSet<PathBuf>>,
}

impl ScanMemory {
    /// Reads a plugin directory: manifest and schema (small, read every time), and the
    /// component's hash (from memory when the file is unchanged; otherwise read, after a size
    /// check, and hashed).
    pub fn candidate(&self, dir: &Path, max_bytes: u64) -> Result<Candidate, RuntimeError> {
        let manifest = Manifest::load(dir)?;
        let schema = manifest.load_config_schema(dir)?;
        let wasm_path = dir.join(manifest.wasm_file_name());
        let cannot = |e: std::io::Error| {
            RuntimeError::Manifest(format!(
                "cannot read component {}: {e}",
                wasm_path.display()
            ))
        };
        let meta = std::fs::metadata(&wasm_path).map_err(cannot)?;
        check_size(meta.len(), max_bytes)?;
        let fp = fingerprint(&meta);
        let known = self
            .hashes
            .lock()
            .get(&wasm_path)
            .filter(|(f, _)| *f == fp)
            .map(|(_, sha)| sha.clone());
        let (sha256, wasm) = match known {
            Some(sha) => (sha, None),
            None => {
                let bytes = std::fs::read(&wasm_path).map_err(cannot)?;
                check_size(bytes.len() as u64, max_bytes)?;
                let sha = hex::encode(Sha256::digest(&bytes));
                self.hashes
                    .lock()
                    .insert(wasm_path.clone(), (fp, sha.clone()));
                (sha, Some(bytes))
            }
        };
        Ok(Candidate {
            dir_name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            dir: dir.to_path_buf(),
            manifest,
            schema,
            wasm_path,
            sha256,
            wasm,
        })
    }

    /// The candidate's bytes (read now when the scan used the remembered hash), checked
    /// against the hash the scan decided on.
    pub fn bytes(&self, c: &mut Candidate) -> Result<Vec<u8>, RuntimeError> {
        if let Some(b) = c.wasm.take() {
            return Ok(b);
        }
        let bytes = std::fs::read(&c.wasm_path).map_err(|e| {
            RuntimeError::Manifest(format!(
                "cannot read component {}: {e}",
                c.wasm_path.display()
            ))
        })?;
        if hex::encode(Sha256::digest(&bytes)) != c.sha256 {
            self.hashes.lock().remove(&c.wasm_path);
            return Err(RuntimeError::Manifest(format!(
                "component {} changed during the scan; retried next scan",
                c.wasm_path.display()
            )));
        }
        Ok(bytes)
    }

    /// Why the component with this hash failed to compile for `hook`, if it did before.
    pub fn failure(&self, sha256: &str, hook: HookKind) -> Option<String> {
        self.failed.lock().get(&(sha256.to_owned(), hook)).cloned()
    }

    /// Remembers a compile failure (only failures of the bytes themselves, not I/O).
    pub fn remember_failure(&self, sha256: &str, hook: HookKind, err: &RuntimeError) {
        if matches!(
            err,
            RuntimeError::Compile(_) | RuntimeError::WorldMismatch(..)
        ) {
            self.failed
                .lock()
                .insert((sha256.to_owned(), hook), err.to_string());
        }
    }

    /// True the first time `dir` is reported as a refused duplicate (until it stops being one).
    pub fn first_duplicate_warning(&self, dir: &Path) -> bool {
        self.warned_duplicates.lock().insert(dir.to_path_buf())
    }

    /// Forgets duplicate warnings for directories that are no longer duplicates.
    pub fn retain_duplicate_warnings(&self, still: &HashSet<PathBuf>) {
        self.warned_duplicates.lock().retain(|d| still.contains(d));
    }
}

fn check_size(len: u64, max_bytes: u64) -> Result<(), RuntimeError> {
    if len > max_bytes {
        return Err(RuntimeError::Compile(format!(
            "component is {len} bytes, more than the host's limit of {max_bytes} bytes"
        )));
    }
    Ok(())
}

/// Compiles on a thread of its own and waits at most `limit`. On timeout the thread is left
/// to finish in the background (wasmtime cannot cancel a compile) and the caller gets an
/// error it can remember by hash; nothing waits for that thread, not even shutdown.
pub(super) fn compile_with_limit(
    compiler: Arc<dyn PluginCompiler>,
    plugin_id: &str,
    hook: HookKind,
    wasm: Vec<u8>,
    limit: Duration,
) -> Result<Arc<dyn PluginCode>, RuntimeError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let id = plugin_id.to_owned();
    std::thread::Builder::new()
        .name("plugin-compile".into())
        .spawn(move || {
            let _ = tx.send(compiler.compile(&id, hook, &wasm));
        })
        .map_err(RuntimeError::Io)?;
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            tracing::warn!(
                plugin = plugin_id,
                ?limit,
                "component still compiling at the time limit; given up"
            );
            Err(RuntimeError::Compile(format!(
                "plugin {plugin_id}: still compiling after {} s, the host's compile time limit; given up",
                limit.as_secs()
            )))
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(RuntimeError::Compile(
            format!("plugin {plugin_id}: the compiler stopped without an answer"),
        )),
    }
}
