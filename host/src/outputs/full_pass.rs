//! Periodic full pass over the output directory: every regular file not yet known (or changed
//! since it was synced) is queued, so files finished while the host was down are not missed;
//! synced files no longer there are reported as vanished (for mirror deletion).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

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
    /// Synced files that are no longer in the output directory.
    pub vanished: u64,
}

/// A pass's counts plus the synced files it found deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassResult {
    pub report: PassReport,
    /// Relative paths of synced (`done`) files missing from the directory. Files under a
    /// directory the pass could not read are never listed.
    pub vanished: Vec<String>,
}

/// Walks `root` (blocking) and queues files older than `min_age_ms`. Owners stay unknown
/// (`anonymous`) unless a job end already recorded them. Hidden files and `*.partial` are
/// skipped. Synced files not found are returned as vanished; the list of synced files is read
/// before the walk, so a file synced while the walk runs is never taken for deleted.
pub fn run(
    root: &Path,
    store: &Store,
    now_ms: i64,
    min_age_ms: i64,
) -> std::io::Result<PassResult> {
    let synced = store
        .output_synced_paths()
        .map_err(|e| std::io::Error::other(format!("output records: {e}")))?;
    let mut report = PassReport::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut unreadable: Vec<PathBuf> = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if dir != root => {
                tracing::warn!(dir = %dir.display(), error = %e, "full pass: cannot read directory");
                unreadable.push(dir);
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
            seen.insert(rel.clone());
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
    let unreadable: Vec<String> = unreadable
        .iter()
        .filter_map(|d| {
            d.strip_prefix(root)
                .ok()?
                .to_str()
                .map(|r| r.replace('\\', "/"))
        })
        .collect();
    let vanished = vanished(synced, &seen, &unreadable);
    report.vanished = vanished.len() as u64;
    Ok(PassResult { report, vanished })
}

/// Synced paths neither seen nor inside a directory (relative path) the walk could not read.
fn vanished(synced: Vec<String>, seen: &HashSet<String>, unreadable: &[String]) -> Vec<String> {
    synced
        .into_iter()
        .filter(|p| {
            !seen.contains(p)
                && !unreadable.iter().any(|d| {
                    p.strip_prefix(d.as_str())
                        .is_some_and(|r| r.starts_with('/'))
                })
        })
        .collect()
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
        let r = run(dir.path(), &store, far, 0).unwrap().report;
        assert_eq!(
            r,
            PassReport {
                files: 2,
                queued: 2,
                too_young: 0,
                vanished: 0,
            }
        );
        assert!(store.output_get("vid/b.mp4").unwrap().is_some());
        // Second pass: nothing new.
        assert_eq!(run(dir.path(), &store, far, 0).unwrap().report.queued, 0);
        // A young file is left to the job-finished path.
        let now = crate::jobs::now_ms();
        let r = run(dir.path(), &store, now, 3_600_000).unwrap().report;
        assert_eq!((r.queued, r.too_young), (0, 2));
        assert!(run(&dir.path().join("missing"), &store, far, 0).is_err());
    }

    #[test]
    fn synced_files_that_are_gone_are_reported_vanished() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("keep")).unwrap();
        std::fs::write(dir.path().join("a.png"), b"1").unwrap();
        std::fs::write(dir.path().join("b.png"), b"2").unwrap();
        std::fs::write(dir.path().join("keep/c.png"), b"3").unwrap();
        let store = Store::open_in_memory().unwrap();
        let far = i64::MAX / 2;
        run(dir.path(), &store, far, 0).unwrap();
        for p in ["a.png", "b.png", "keep/c.png"] {
            store.output_mark_done(p, 1).unwrap();
        }
        // Pending (never synced) files that vanish are not mirror candidates.
        std::fs::write(dir.path().join("d.png"), b"4").unwrap();
        run(dir.path(), &store, far, 0).unwrap();
        std::fs::remove_file(dir.path().join("d.png")).unwrap();
        std::fs::remove_file(dir.path().join("a.png")).unwrap();
        let r = run(dir.path(), &store, far, 0).unwrap();
        assert_eq!(r.vanished, ["a.png"]);
        assert_eq!(r.report.vanished, 1);
    }

    #[test]
    fn files_in_unreadable_directories_are_not_vanished() {
        let synced = ["a.png", "keep/c.png", "keep/sub/d.png", "keeper/e.png"]
            .map(String::from)
            .to_vec();
        let seen = HashSet::new();
        let v = vanished(synced, &seen, &["keep".to_owned()]);
        assert_eq!(v, ["a.png", "keeper/e.png"]);
    }
}
