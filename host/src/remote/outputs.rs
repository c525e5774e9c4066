//! The host's copy of files produced by remote jobs. A remote job's output
//! `{filename, subfolder, type}` is stored under `<root>/<prompt_id>/<type>/<subfolder>/` and
//! shown to the browser with `subfolder = "comfyhost-remote/<prompt_id>[/<subfolder>]"`, which
//! the host's `/view` serves from here (no other subfolder can reach these files, and these
//! names never collide with the local ComfyUI's own outputs).

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

/// Subfolder prefix of remote outputs as the browser sees them.
pub const REMOTE_SUBFOLDER: &str = "comfyhost-remote";

/// A file reference as ComfyUI writes it in `executed` and history `outputs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    pub filename: String,
    pub subfolder: String,
    pub folder_type: String,
}

/// Errors of the output cache.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("unsafe file name {0:?}")]
    UnsafeName(String),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Where remote outputs are kept.
#[derive(Debug, Clone)]
pub struct OutputCache {
    root: PathBuf,
}

fn safe_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0']) && !s.starts_with('.')
}

fn safe_relative(s: &str) -> bool {
    s.is_empty()
        || (Path::new(s)
            .components()
            .all(|c| matches!(c, Component::Normal(n) if n.to_str().is_some_and(safe_component)))
            && !s.contains('\\'))
}

impl FileRef {
    /// A file reference from JSON; `None` for entries that are not files.
    pub fn from_json(v: &Value) -> Option<Self> {
        Some(Self {
            filename: v.get("filename")?.as_str()?.to_string(),
            subfolder: v
                .get("subfolder")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            folder_type: v
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("output")
                .to_string(),
        })
    }

    fn check(&self) -> Result<(), OutputError> {
        if safe_component(&self.filename)
            && safe_relative(&self.subfolder)
            && matches!(self.folder_type.as_str(), "output" | "temp" | "input")
        {
            Ok(())
        } else {
            Err(OutputError::UnsafeName(format!(
                "{}/{}/{}",
                self.folder_type, self.subfolder, self.filename
            )))
        }
    }
}

impl OutputCache {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Where a remote job's file lives on this machine.
    pub fn path(&self, prompt_id: &str, file: &FileRef) -> Result<PathBuf, OutputError> {
        file.check()?;
        if !safe_component(prompt_id) {
            return Err(OutputError::UnsafeName(prompt_id.to_string()));
        }
        let mut p = self.root.join(prompt_id).join(&file.folder_type);
        if !file.subfolder.is_empty() {
            p = p.join(&file.subfolder);
        }
        Ok(p.join(&file.filename))
    }

    /// The reference the browser gets for a remote file.
    pub fn browser_ref(prompt_id: &str, file: &FileRef) -> FileRef {
        let subfolder = if file.subfolder.is_empty() {
            format!("{REMOTE_SUBFOLDER}/{prompt_id}")
        } else {
            format!("{REMOTE_SUBFOLDER}/{prompt_id}/{}", file.subfolder)
        };
        FileRef {
            filename: file.filename.clone(),
            subfolder,
            folder_type: file.folder_type.clone(),
        }
    }

    /// Maps a browser `/view` request back to a cached file; `None` when the subfolder is
    /// not a remote one (the request goes to the local ComfyUI) or names something unsafe.
    pub fn lookup(&self, filename: &str, subfolder: &str, folder_type: &str) -> Option<PathBuf> {
        let rest = subfolder
            .trim_start_matches('/')
            .strip_prefix(REMOTE_SUBFOLDER)?
            .strip_prefix('/')?;
        let (prompt_id, sub) = rest.split_once('/').unwrap_or((rest, ""));
        let file = FileRef {
            filename: filename.to_string(),
            subfolder: sub.to_string(),
            folder_type: folder_type.to_string(),
        };
        self.path(prompt_id, &file).ok()
    }

    /// Whether the subfolder names the remote namespace at all.
    pub fn is_remote_subfolder(subfolder: &str) -> bool {
        let s = subfolder.trim_start_matches('/');
        s == REMOTE_SUBFOLDER || s.starts_with(&format!("{REMOTE_SUBFOLDER}/"))
    }

    /// Stores a downloaded file (atomically: a partial file is never visible).
    pub async fn store(
        &self,
        prompt_id: &str,
        file: &FileRef,
        bytes: &[u8],
    ) -> Result<PathBuf, OutputError> {
        let path = self.path(prompt_id, file)?;
        let write_err = |source| OutputError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(write_err)?;
        }
        let tmp = path.with_extension("comfyhost-partial");
        tokio::fs::write(&tmp, bytes).await.map_err(write_err)?;
        tokio::fs::rename(&tmp, &path).await.map_err(write_err)?;
        Ok(path)
    }
}

/// Every file reference in a node's output map (`{"images": [...], "gifs": [...], ...}`).
pub fn node_files(node_output: &Value) -> Vec<FileRef> {
    node_output
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(FileRef::from_json)
        .collect()
}

/// The same node output with every file reference pointed at the host's copy.
pub fn rewrite_node_output(prompt_id: &str, node_output: &Value) -> Value {
    let mut out = node_output.clone();
    if let Some(map) = out.as_object_mut() {
        for items in map.values_mut().filter_map(Value::as_array_mut) {
            for item in items.iter_mut() {
                if let Some(file) = FileRef::from_json(item) {
                    let b = OutputCache::browser_ref(prompt_id, &file);
                    item["subfolder"] = Value::String(b.subfolder);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn browser_refs_round_trip_to_cache_paths() {
        let cache = OutputCache::new(PathBuf::from("/cache"));
        let f = FileRef {
            filename: "a.png".into(),
            subfolder: "anim".into(),
            folder_type: "output".into(),
        };
        let b = OutputCache::browser_ref("p1", &f);
        assert_eq!(b.subfolder, "comfyhost-remote/p1/anim");
        assert_eq!(
            cache.lookup("a.png", &b.subfolder, "output").unwrap(),
            PathBuf::from("/cache/p1/output/anim/a.png")
        );
        assert_eq!(
            cache.path("p1", &f).unwrap(),
            cache.lookup("a.png", &b.subfolder, "output").unwrap()
        );
        assert!(cache.lookup("a.png", "other", "output").is_none());
    }

    #[test]
    fn traversal_is_refused() {
        let cache = OutputCache::new(PathBuf::from("/cache"));
        assert!(
            cache
                .lookup("../x", "comfyhost-remote/p1", "output")
                .is_none()
        );
        assert!(
            cache
                .lookup("x", "comfyhost-remote/../etc", "output")
                .is_none()
        );
        assert!(
            cache
                .lookup("x", "comfyhost-remote/p1/../../etc", "output")
                .is_none()
        );
        assert!(
            cache
                .lookup("x", "comfyhost-remote/p1", "../output")
                .is_none()
        );
        assert!(
            cache
                .lookup(".hidden", "comfyhost-remote/p1", "output")
                .is_none()
        );
        let bad = FileRef {
            filename: "a.png".into(),
            subfolder: "/abs".into(),
            folder_type: "output".into(),
        };
        assert!(cache.path("p1", &bad).is_err());
    }

    #[test]
    fn rewrites_only_file_entries() {
        let out = json!({"images": [{"filename": "a.png", "subfolder": "", "type": "output"}], "text": ["hi"]});
        let r = rewrite_node_output("p9", &out);
        assert_eq!(r["images"][0]["subfolder"], "comfyhost-remote/p9");
        assert_eq!(r["text"][0], "hi");
        assert_eq!(node_files(&out).len(), 1);
    }
}
