//! Periodic full pass over the output directory: every regular file not yet known (or changed
//! since it was synced) is queued, so files finished while the host was down are not missed.

use std::path::Path;

use comfyhost_store::{NewOutput, Store};

use super::file;

/// What one pass found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PassReport {
    /// Regular files seen.
    pub files: u64,
    /// Files queued by this pass (new or changed).
    pub queued: u64,
    /// Files left for later because they are younger than the pass's minimum age.
    pub too_young: u64,
}

/// Walks `root` (blocking) and queues files older than `min_age_ms`. Owners stay unknown
/// (`anonymous`) unless a job end already recorded them. Hidden files and `*.partial` are
/// skipped.
pub fn run(
    root: &Path,
    store: &Store,
    now_ms: i64,
    min_age_ms: i64,
) -> std::io::Result<PassReport> {
    let mut report = PassReport::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if dir != root => {
                tracing::warn!(dir = %dir.display(), error = %e, "full pass: cannot read directory");
                continue;
            }
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name.ends_with(".partial") {
                continue;
            }
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(path);
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            let Some(rel) = path
                .strip_prefix(root)
                .ok()
                .and_then(|r| r.to_str())
                .map(|r| r.replace('\\', "/"))
            else {
                continue;
            };
            let Ok(Some((size, mtime))) = file::stat(&path) else {
                continue;
            };
            report.files += 1;
            if now_ms - mtime < min_age_ms {
                report.too_young += 1;
                continue;
            }
            let new = NewOutput {
                rel_path: rel,
                prompt_id: None,
                user_id: None,
                size,
                modified_ms: mtime,
            };
            match store.output_enqueue(&new, now_ms) {
                Ok(true) => report.queued += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(file = %new.rel_path, error = %e, "full pass: cannot queue")
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn queues_unknown_and_changed_files_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("vid")).unwrap();
        std::fs::write(dir.path().join("a.png"), b"1").unwrap();
        std::fs::write(dir.path().join("vid/b.mp4"), b"22").unwrap();
        std::fs::write(dir.path().join(".hidden"), b"x").unwrap();
        std::fs::write(dir.path().join("c.png.partial"), b"x").unwrap();
        let store = Store::open_in_memory().unwrap();
        let far = i64::MAX / 2;
        let r = run(dir.path(), &store, far, 0).unwrap();
        assert_eq!(
            r,
            PassReport {
                files: 2,
                queued: 2,
                too_young: 0
            }
        );
        assert!(store.output_get("vid/b.mp4").unwrap().is_some());
        // Second pass: nothing new.
        assert_eq!(run(dir.path(), &store, far, 0).unwrap().queued, 0);
        // A young file is left to the job-finished path.
        let now = crate::jobs::now_ms();
        let r = run(dir.path(), &store, now, 3_600_000).unwrap();
        assert_eq!((r.queued, r.too_young), (0, 2));
        assert!(run(&dir.path().join("missing"), &store, far, 0).is_err());
    }
}
