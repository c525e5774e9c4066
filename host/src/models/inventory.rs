//! What is installed: ComfyUI's model folders under the models root plus the directories of
//! `extra_model_paths.yaml`, listed the way ComfyUI's `get_filename_list` does (recursive,
//! `/`-separated names relative to the folder, model extensions only).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use comfyhost_runtime::types::InstalledFolder;

use super::extra_paths::ExtraPaths;

/// Folder keys of ComfyUI (`folder_paths.py`) with the sub-directories of `models/` each reads.
pub const FOLDERS: &[(&str, &[&str])] = &[
    ("checkpoints", &["checkpoints"]),
    ("configs", &["configs"]),
    ("loras", &["loras"]),
    ("vae", &["vae"]),
    ("text_encoders", &["text_encoders", "clip"]),
    ("diffusion_models", &["diffusion_models", "unet"]),
    ("clip_vision", &["clip_vision"]),
    ("style_models", &["style_models"]),
    ("embeddings", &["embeddings"]),
    ("diffusers", &["diffusers"]),
    ("vae_approx", &["vae_approx"]),
    ("controlnet", &["controlnet", "t2i_adapter"]),
    ("gligen", &["gligen"]),
    ("upscale_models", &["upscale_models"]),
    ("latent_upscale_models", &["latent_upscale_models"]),
    ("hypernetworks", &["hypernetworks"]),
    ("photomaker", &["photomaker"]),
    ("classifiers", &["classifiers"]),
    ("model_patches", &["model_patches"]),
    ("audio_encoders", &["audio_encoders"]),
];

/// `supported_pt_extensions`.
const MODEL_EXTENSIONS: &[&str] = &[
    "ckpt",
    "pt",
    "pt2",
    "bin",
    "pth",
    "safetensors",
    "pkl",
    "sft",
    "gguf",
];

/// Where models live on this host.
#[derive(Debug, Clone, Default)]
pub struct ModelRoots {
    /// ComfyUI's `models/` directory, when known (not in attach mode).
    pub root: Option<PathBuf>,
    /// Entries of the extra_model_paths files.
    pub extra: ExtraPaths,
}

/// Whether `key` is safe as a directory name (`[a-z0-9_]+`).
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl ModelRoots {
    /// Directories searched for `key`, primary first.
    pub fn dirs(&self, key: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(root) = &self.root {
            match FOLDERS.iter().find(|(k, _)| *k == key) {
                Some((_, subs)) => out.extend(subs.iter().map(|s| root.join(s))),
                None if valid_key(key) => out.push(root.join(key)),
                None => {}
            }
        }
        out.extend(
            self.extra
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, p)| p.clone()),
        );
        out
    }

    /// Where a download for `key` goes: the first directory of the key under the root.
    pub fn install_dir(&self, key: &str) -> Option<PathBuf> {
        if !valid_key(key) {
            return None;
        }
        self.dirs(key).into_iter().next()
    }

    /// Every folder with its files (folders with no files included, so a resolver sees the key).
    pub fn list(&self) -> Vec<InstalledFolder> {
        let mut keys: Vec<String> = FOLDERS.iter().map(|(k, _)| (*k).to_owned()).collect();
        // Custom-node folders that exist under the root (ipadapter, sams, ...) and extra keys.
        if let Some(root) = &self.root
            && let Ok(rd) = std::fs::read_dir(root)
        {
            for e in rd.flatten() {
                if let Some(name) = e.file_name().to_str()
                    && valid_key(name)
                    && e.file_type().is_ok_and(|t| t.is_dir())
                    && !FOLDERS.iter().any(|(_, subs)| subs.contains(&name))
                {
                    keys.push(name.to_owned());
                }
            }
        }
        keys.extend(self.extra.iter().map(|(k, _)| k.clone()));
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for key in keys {
            if by_key.contains_key(&key) {
                continue;
            }
            let mut files = Vec::new();
            for dir in self.dirs(&key) {
                walk(&dir, &dir, key == "diffusers", &mut files, 0);
            }
            files.sort();
            files.dedup();
            by_key.insert(key, files);
        }
        by_key
            .into_iter()
            .map(|(folder, files)| InstalledFolder { folder, files })
            .collect()
    }
}

fn walk(base: &Path, dir: &Path, any_ext: bool, out: &mut Vec<String>, depth: usize) {
    if depth > 16 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let path = e.path();
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue; // includes our own `.<name>.comfyhost-part` files
        }
        // follow symlinks like os.walk(followlinks=True)
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(base, &path, any_ext, out, depth + 1);
        } else if meta.is_file() {
            let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
            if (any_ext || ext.is_some_and(|e| MODEL_EXTENSIONS.contains(&e.as_str())))
                && let Ok(rel) = path.strip_prefix(base)
            {
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(rel.join("/"));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lists_core_legacy_custom_and_extra_folders() {
        let root = tempfile::tempdir().unwrap();
        let extra = tempfile::tempdir().unwrap();
        let w = |p: &Path| {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        };
        w(&root.path().join("checkpoints/sd15/a.safetensors"));
        w(&root.path().join("checkpoints/readme.txt"));
        w(&root.path().join("clip/t5.safetensors"));
        w(&root.path().join("ipadapter/ip.bin"));
        w(&root.path().join("loras/.x.safetensors.comfyhost-part"));
        w(&extra.path().join("l.safetensors"));
        let roots = ModelRoots {
            root: Some(root.path().to_owned()),
            extra: vec![("loras".into(), extra.path().to_owned())],
        };
        let list = roots.list();
        let get = |k: &str| {
            list.iter()
                .find(|f| f.folder == k)
                .map(|f| f.files.clone())
                .unwrap()
        };
        assert_eq!(get("checkpoints"), ["sd15/a.safetensors"]);
        assert_eq!(get("text_encoders"), ["t5.safetensors"]);
        assert_eq!(get("ipadapter"), ["ip.bin"]);
        assert_eq!(get("loras"), ["l.safetensors"]);
        assert!(get("vae").is_empty());
        assert_eq!(
            roots.install_dir("text_encoders"),
            Some(root.path().join("text_encoders"))
        );
        assert_eq!(roots.install_dir("../etc"), None);
    }
}
