//! ComfyUI's `folder_paths`: model folder keys, file listings and safe path joins.

use std::path::{Component, Path, PathBuf};

/// Folder keys in the order `GET /models` reports them (recorded from 0.3.64).
pub const FOLDER_KEYS: &[&str] = &[
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "custom_nodes",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
];

/// Model file extensions ComfyUI lists (`supported_pt_extensions`).
const MODEL_EXTENSIONS: &[&str] = &[
    "ckpt",
    "pt",
    "pt2",
    "bin",
    "pth",
    "safetensors",
    "pkl",
    "sft",
];

/// Sub-directories of the models root that make up one folder key.
pub fn subdirs(key: &str) -> &[&str] {
    match key {
        "text_encoders" => &["text_encoders", "clip"],
        "diffusion_models" => &["unet", "diffusion_models"],
        "controlnet" => &["controlnet", "t2i_adapter"],
        "checkpoints" => &["checkpoints"],
        "configs" => &["configs"],
        "loras" => &["loras"],
        "vae" => &["vae"],
        "clip_vision" => &["clip_vision"],
        "style_models" => &["style_models"],
        "embeddings" => &["embeddings"],
        "diffusers" => &["diffusers"],
        "vae_approx" => &["vae_approx"],
        "gligen" => &["gligen"],
        "upscale_models" => &["upscale_models"],
        "hypernetworks" => &["hypernetworks"],
        "photomaker" => &["photomaker"],
        "classifiers" => &["classifiers"],
        "model_patches" => &["model_patches"],
        "audio_encoders" => &["audio_encoders"],
        _ => &[],
    }
}

/// Whether `key` is a known folder key.
pub fn is_folder_key(key: &str) -> bool {
    FOLDER_KEYS.contains(&key)
}

/// Sorted, `/`-separated relative names of the model files under `key` (like `get_filename_list`).
pub fn list_models(models_root: &Path, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for sub in subdirs(key) {
        let dir = models_root.join(sub);
        walk(&dir, &dir, &mut out, &|name: &str| {
            let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
            match key {
                "configs" => ext.as_deref() == Some("yaml"),
                "diffusers" => true,
                _ => ext.is_some_and(|e| MODEL_EXTENSIONS.contains(&e.as_str())),
            }
        });
    }
    out.sort();
    out.dedup();
    out
}

/// Sorted names of the plain files directly inside `dir` (the `LoadImage` list).
pub fn list_files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Recursive relative file names under `dir` (used by `/userdata?recurse=true`).
pub fn list_tree(dir: &Path, recurse: bool) -> Vec<String> {
    let mut out = Vec::new();
    if recurse {
        walk(dir, dir, &mut out, &|_| true);
    } else {
        out = list_files(dir);
    }
    out.sort();
    out
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>, keep: &dyn Fn(&str) -> bool) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in rd.filter_map(Result::ok) {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            walk(root, &path, out, keep);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            if keep(&rel) {
                out.push(rel);
            }
        }
    }
}

/// Joins a user-supplied relative path under `root`, refusing absolute paths and `..` escapes.
pub fn safe_join(root: &Path, rel: &str) -> Option<PathBuf> {
    let rel_path = Path::new(rel);
    let mut out = root.to_path_buf();
    for comp in rel_path.components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lists_model_files_recursively_and_filters_extensions() {
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("checkpoints/sd");
        std::fs::create_dir_all(&ck).unwrap();
        std::fs::write(ck.join("b.safetensors"), b"x").unwrap();
        std::fs::write(dir.path().join("checkpoints/a.ckpt"), b"x").unwrap();
        std::fs::write(dir.path().join("checkpoints/readme.txt"), b"x").unwrap();
        assert_eq!(
            list_models(dir.path(), "checkpoints"),
            vec!["a.ckpt", "sd/b.safetensors"]
        );
        assert!(list_models(dir.path(), "loras").is_empty());
    }

    #[test]
    fn safe_join_refuses_escapes() {
        let root = Path::new("/srv/out");
        assert_eq!(
            safe_join(root, "a/b.png"),
            Some(PathBuf::from("/srv/out/a/b.png"))
        );
        assert_eq!(safe_join(root, "../etc/passwd"), None);
        assert_eq!(safe_join(root, "/etc/passwd"), None);
        assert_eq!(safe_join(root, ""), Some(PathBuf::from("/srv/out")));
    }
}
