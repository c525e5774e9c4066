//! Copies of the files a drop-in plugin runs from, so that a drop-in replaced in place can be
//! rolled back. An admin who copies new files over a plugin's directory (even with the same
//! version and other code) leaves nothing of the old version on disk; the host keeps its own
//! copy in `.loaded/<id>/` (the manifest, the component, a schema file next to the manifest and
//! the signature files), and when a scan finds the directory changed, that copy becomes
//! `.previous/<id>/`, the rollback target, exactly as an upload's replaced version does.

use std::io;
use std::path::{Path, PathBuf};

use crate::manifest::{MANIFEST_FILE, Manifest};
use crate::signing::{PUBLIC_KEY_FILE, SIGNATURE_FILE};

/// Directory (under the plugins directory) of the copies.
pub(super) const LOADED_DIR: &str = ".loaded";
/// File in a copy naming the sha256 of the component it holds.
const MARK_FILE: &str = ".sha256";

/// The copies of loaded drop-ins, one directory per plugin id.
pub(super) struct DropInSnapshots {
    root: PathBuf,
}

impl DropInSnapshots {
    pub(super) fn new(plugins_dir: &Path) -> Self {
        Self {
            root: plugins_dir.join(LOADED_DIR),
        }
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// The sha256 of the component the copy of `id` holds, if there is a copy.
    pub(super) fn sha256(&self, id: &str) -> Option<String> {
        std::fs::read_to_string(self.dir(id).join(MARK_FILE))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// Makes the copy of `id` hold the plugin files of `from` (whose component is `sha256`).
    /// Only the files a version consists of are copied, each a regular file directly in `from`.
    pub(super) fn keep(
        &self,
        id: &str,
        from: &Path,
        manifest: &Manifest,
        sha256: &str,
    ) -> io::Result<()> {
        let tmp = self.root.join(format!("{id}.tmp"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        for name in version_files(manifest) {
            let src = from.join(&name);
            // symlink_metadata: a link is not followed out of the plugin directory.
            match std::fs::symlink_metadata(&src) {
                Ok(m) if m.is_file() => {
                    std::fs::copy(&src, tmp.join(&name))?;
                }
                _ => {}
            }
        }
        std::fs::write(tmp.join(MARK_FILE), sha256)?;
        let dir = self.dir(id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::rename(&tmp, &dir)
    }

    /// Moves the copy of `id` to `previous` (replacing what was there) when it holds the
    /// component `sha256`. `false` when there is no copy or it holds other code (then there is
    /// nothing to roll back to from disk).
    pub(super) fn move_to_previous(
        &self,
        id: &str,
        sha256: &str,
        previous: &Path,
    ) -> io::Result<bool> {
        if self.sha256(id).as_deref() != Some(sha256) {
            return Ok(false);
        }
        if previous.exists() {
            std::fs::remove_dir_all(previous)?;
        }
        if let Some(parent) = previous.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::rename(self.dir(id), previous)?;
        let _ = std::fs::remove_file(previous.join(MARK_FILE));
        Ok(true)
    }
}

/// The file names one version of a plugin consists of: the manifest, the component, the schema
/// file when the manifest names one next to itself, and the signature files.
fn version_files(manifest: &Manifest) -> Vec<String> {
    let mut names = vec![
        MANIFEST_FILE.to_owned(),
        manifest.wasm_file_name(),
        SIGNATURE_FILE.to_owned(),
        PUBLIC_KEY_FILE.to_owned(),
    ];
    if let Some(schema) = &manifest.config.schema
        && !schema.contains(['/', '\\'])
        && schema != ".."
    {
        names.push(schema.clone());
    }
    names
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn manifest() -> Manifest {
        Manifest::from_toml_str(
            "id = \"snap\"\nversion = \"1.0.0\"\nname = \"Snap\"\nwit = \"0.1.0\"\n\
             hooks = [\"prompt-transform\"]\nwasm = \"snap.wasm\"\n\
             [config]\nschema = \"config.schema.json\"\n",
        )
        .unwrap()
    }

    #[test]
    fn a_copy_becomes_the_previous_version_only_for_the_code_it_holds() {
        let root = tempfile::tempdir().unwrap();
        let plugin = root.path().join("snap");
        std::fs::create_dir_all(&plugin).unwrap();
        std::fs::write(plugin.join(MANIFEST_FILE), "manifest v1").unwrap();
        std::fs::write(plugin.join("snap.wasm"), b"old code").unwrap();
        std::fs::write(plugin.join("config.schema.json"), "{}").unwrap();
        std::fs::write(plugin.join("notes.txt"), "not part of a version").unwrap();
        let snaps = DropInSnapshots::new(root.path());
        let m = manifest();
        snaps.keep("snap", &plugin, &m, "aaa").unwrap();
        assert_eq!(snaps.sha256("snap").as_deref(), Some("aaa"));

        // The admin copies new code over the directory.
        std::fs::write(plugin.join("snap.wasm"), b"new code").unwrap();
        let previous = root.path().join(".previous").join("snap");
        assert!(!snaps.move_to_previous("snap", "bbb", &previous).unwrap());
        assert!(snaps.move_to_previous("snap", "aaa", &previous).unwrap());
        assert_eq!(
            std::fs::read(previous.join("snap.wasm")).unwrap(),
            b"old code"
        );
        assert!(previous.join("config.schema.json").exists());
        assert!(!previous.join("notes.txt").exists());
        assert!(!previous.join(MARK_FILE).exists());
        assert!(snaps.sha256("snap").is_none());
    }
}
