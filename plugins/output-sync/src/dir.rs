//! Directory destination (local disk or a mounted network share): the plugin writes under a
//! granted read-write directory, through a `.partial` file renamed into place, so a reader
//! never sees half a file.

use std::path::{Path, PathBuf};

use crate::error::{SyncError, classify_io};
use crate::sync::{Sink, Source};

/// A granted directory, by its guest path.
pub struct DirSink<'a> {
    pub root: &'a str,
}

impl DirSink<'_> {
    fn path(&self, rel: &str) -> PathBuf {
        Path::new(self.root).join(rel)
    }

    fn check_root(&self) -> Result<(), SyncError> {
        match std::fs::metadata(self.root) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(SyncError::Config(format!(
                "{} is not a directory",
                self.root
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SyncError::Config(format!(
                "destination directory {} is not mounted: declare it under [[capabilities.dirs]] (access rw) and have an admin grant it",
                self.root
            ))),
            Err(e) => Err(classify_io(&e, self.root)),
        }
    }
}

impl Sink for DirSink<'_> {
    fn locate(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    fn stat(&self, rel: &str) -> Result<Option<(u64, String)>, SyncError> {
        self.check_root()?;
        match std::fs::metadata(self.path(rel)) {
            Ok(m) if m.is_file() => Ok(Some((m.len(), String::new()))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(classify_io(&e, &self.locate(rel))),
        }
    }

    /// Deletes the file, then the directories the template made for it while they are empty
    /// (never the destination root).
    fn remove(&self, rel: &str) -> Result<(), SyncError> {
        self.check_root()?;
        let path = self.path(rel);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(classify_io(&e, &self.locate(rel))),
        }
        let root = Path::new(self.root);
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| d.starts_with(root) && *d != root) {
            if std::fs::remove_dir(d).is_err() {
                break; // not empty (or not ours to judge): stop climbing
            }
            dir = d.parent();
        }
        Ok(())
    }

    fn put(&self, rel: &str, source: &Source<'_>) -> Result<String, SyncError> {
        let dest = self.path(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| classify_io(&e, &parent.display().to_string()))?;
        }
        let partial = dest.with_file_name(format!(
            "{}.partial",
            dest.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let copied = match std::fs::copy(source.guest_path, &partial) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let _ = std::fs::remove_file(&partial);
                return Err(SyncError::Config(format!(
                    "cannot read {} (or write {}): {e}",
                    source.guest_path,
                    partial.display()
                )));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(classify_io(&e, &partial.display().to_string()));
            }
        };
        if copied != source.size {
            let _ = std::fs::remove_file(&partial);
            return Err(SyncError::Network(format!(
                "{} changed size while copying ({copied} != {})",
                source.guest_path, source.size
            )));
        }
        std::fs::rename(&partial, &dest).map_err(|e| classify_io(&e, &self.locate(rel)))?;
        Ok(String::new())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn copies_into_place_and_sees_the_copy() {
        let src_dir = tempfile::tempdir().unwrap();
        let dst_dir = tempfile::tempdir().unwrap();
        let src = src_dir.path().join("a.png");
        std::fs::write(&src, b"12345").unwrap();
        let root = dst_dir.path().to_str().unwrap().to_owned();
        let sink = DirSink { root: &root };
        let source = Source {
            guest_path: src.to_str().unwrap(),
            size: 5,
            modified_ms: 1,
            content_type: "image/png",
        };
        assert_eq!(sink.existing("u/d/a.png", 5).unwrap(), None);
        sink.put("u/d/a.png", &source).unwrap();
        assert_eq!(
            std::fs::read(dst_dir.path().join("u/d/a.png")).unwrap(),
            b"12345"
        );
        assert!(!dst_dir.path().join("u/d/a.png.partial").exists());
        assert_eq!(sink.existing("u/d/a.png", 5).unwrap(), Some(String::new()));
        assert_eq!(sink.existing("u/d/a.png", 6).unwrap(), None);
        // A size mismatch (still growing) is refused and leaves nothing behind.
        let growing = Source { size: 9, ..source };
        assert!(matches!(
            sink.put("u/d/b.png", &growing),
            Err(SyncError::Network(_))
        ));
        assert!(!dst_dir.path().join("u/d/b.png").exists());
        assert!(!dst_dir.path().join("u/d/b.png.partial").exists());
    }

    #[test]
    fn remove_deletes_the_file_and_its_empty_directories_only() {
        let dst_dir = tempfile::tempdir().unwrap();
        let root = dst_dir.path().to_str().unwrap().to_owned();
        let sink = DirSink { root: &root };
        std::fs::create_dir_all(dst_dir.path().join("u/d1")).unwrap();
        std::fs::create_dir_all(dst_dir.path().join("u/d2")).unwrap();
        std::fs::write(dst_dir.path().join("u/d1/a.png"), b"1").unwrap();
        std::fs::write(dst_dir.path().join("u/d2/b.png"), b"22").unwrap();
        assert_eq!(sink.stat("u/d2/b.png").unwrap(), Some((2, String::new())));
        sink.remove("u/d1/a.png").unwrap();
        assert!(!dst_dir.path().join("u/d1").exists());
        assert!(dst_dir.path().join("u/d2/b.png").exists());
        sink.remove("u/d2/b.png").unwrap();
        assert!(!dst_dir.path().join("u").exists());
        assert!(dst_dir.path().exists());
        // Already gone is fine.
        sink.remove("u/d2/b.png").unwrap();
        assert_eq!(sink.stat("u/d2/b.png").unwrap(), None);
    }

    #[test]
    fn missing_root_is_a_config_error() {
        let sink = DirSink {
            root: "/definitely/not/mounted",
        };
        assert!(matches!(
            sink.existing("a", 1),
            Err(SyncError::Config(m)) if m.contains("capabilities.dirs")
        ));
    }
}
