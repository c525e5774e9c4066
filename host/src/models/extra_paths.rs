//! `extra_model_paths.yaml` (ComfyUI `utils/extra_config.py`): top-level sections, each with an
//! optional `base_path` (`~` and `$VAR` expanded, relative to the YAML file), optional
//! `is_default`, then `folder_key: path` or `folder_key: |` with one path per line.
//! Only this subset of YAML exists in these files, so a small line parser reads it.

use std::path::{Path, PathBuf};

/// Folder key -> extra directories, in file order.
pub type ExtraPaths = Vec<(String, PathBuf)>;

/// Why a file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ExtraPathsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {what}")]
    Syntax {
        path: PathBuf,
        line: usize,
        what: String,
    },
}

/// Legacy folder names ComfyUI maps (`folder_paths.map_legacy`).
pub fn canonical_key(key: &str) -> &str {
    match key {
        "unet" => "diffusion_models",
        "clip" => "text_encoders",
        other => other,
    }
}

/// Parse one file.
pub fn load(path: &Path) -> Result<ExtraPaths, ExtraPathsError> {
    let text = std::fs::read_to_string(path).map_err(|source| ExtraPathsError::Read {
        path: path.to_owned(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    parse(&text, dir).map_err(|(line, what)| ExtraPathsError::Syntax {
        path: path.to_owned(),
        line,
        what,
    })
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
        .unwrap_or(v)
}

fn expand(v: &str) -> PathBuf {
    let mut s = v.to_owned();
    if let Some(rest) = s.strip_prefix('~')
        && let Some(home) = std::env::var_os("HOME")
    {
        s = format!("{}{rest}", home.to_string_lossy());
    }
    // $VAR and ${VAR}
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                chars.next();
            } else {
                break;
            }
        }
        if braced && chars.peek() == Some(&'}') {
            chars.next();
        }
        match std::env::var(&name) {
            Ok(v) => out.push_str(&v),
            Err(_) => {
                out.push('$');
                out.push_str(&name);
            }
        }
    }
    PathBuf::from(out)
}

struct Section {
    base: Option<PathBuf>,
    entries: Vec<(String, String)>,
}

/// Parse the text of a file living in `dir`. Errors are `(line, what)`.
pub fn parse(text: &str, dir: &Path) -> Result<ExtraPaths, (usize, String)> {
    let mut sections: Vec<Section> = Vec::new();
    let mut block: Option<(String, usize)> = None; // key of a `|` block and its indent
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let no_comment = match raw.find(" #") {
            Some(i) => &raw[..i],
            None if raw.trim_start().starts_with('#') => "",
            None => raw,
        };
        if no_comment.trim().is_empty() {
            continue;
        }
        let indent = no_comment.len() - no_comment.trim_start().len();
        if let Some((key, key_indent)) = &block {
            if indent > *key_indent {
                if let Some(sec) = sections.last_mut() {
                    sec.entries
                        .push((key.clone(), unquote(no_comment).to_owned()));
                }
                continue;
            }
            block = None;
        }
        let Some((k, v)) = no_comment.trim().split_once(':') else {
            return Err((
                line_no,
                format!("expected `key: value`, got `{}`", raw.trim()),
            ));
        };
        let (k, v) = (unquote(k).to_owned(), v.trim());
        if indent == 0 {
            if !v.is_empty() {
                return Err((line_no, format!("top-level `{k}` must start a section")));
            }
            sections.push(Section {
                base: None,
                entries: Vec::new(),
            });
            continue;
        }
        let Some(sec) = sections.last_mut() else {
            return Err((line_no, "indented entry outside a section".into()));
        };
        match k.as_str() {
            "base_path" => sec.base = Some(expand(unquote(v))),
            "is_default" => {}
            _ if v == "|" || v == "|-" || v == ">" => block = Some((k, indent)),
            _ => sec.entries.push((k, unquote(v).to_owned())),
        }
    }
    let mut out = Vec::new();
    for sec in sections {
        let base = sec
            .base
            .map(|b| if b.is_relative() { dir.join(b) } else { b });
        for (key, value) in sec.entries {
            if value.is_empty() {
                continue;
            }
            let p = expand(&value);
            let full = match (&base, p.is_relative()) {
                (Some(b), true) => b.join(p),
                (None, true) => dir.join(p),
                (_, false) => p,
            };
            out.push((canonical_key(&key).to_owned(), full));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_comfyui_example_shape() {
        let yaml = r#"
#Rename this to extra_model_paths.yaml and ComfyUI will load it
a111:
    base_path: path/to/stable-diffusion-webui/

    checkpoints: models/Stable-diffusion
    vae: models/VAE
    loras: |
         models/Lora
         models/LyCORIS
    upscale_models: |
                  models/ESRGAN
    embeddings: embeddings
comfyui:
     base_path: /mnt/models/
     is_default: true
     clip: clip/   # legacy key
     unet: "unet/"
"#;
        let got = parse(yaml, Path::new("/etc/comfy")).unwrap();
        let want: Vec<(String, PathBuf)> = vec![
            (
                "checkpoints".into(),
                "/etc/comfy/path/to/stable-diffusion-webui/models/Stable-diffusion".into(),
            ),
            (
                "vae".into(),
                "/etc/comfy/path/to/stable-diffusion-webui/models/VAE".into(),
            ),
            (
                "loras".into(),
                "/etc/comfy/path/to/stable-diffusion-webui/models/Lora".into(),
            ),
            (
                "loras".into(),
                "/etc/comfy/path/to/stable-diffusion-webui/models/LyCORIS".into(),
            ),
            (
                "upscale_models".into(),
                "/etc/comfy/path/to/stable-diffusion-webui/models/ESRGAN".into(),
            ),
            (
                "embeddings".into(),
                "/etc/comfy/path/to/stable-diffusion-webui/embeddings".into(),
            ),
            ("text_encoders".into(), "/mnt/models/clip/".into()),
            ("diffusion_models".into(), "/mnt/models/unet/".into()),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn garbage_is_a_located_error() {
        assert_eq!(parse("a:\n    - b\n", Path::new("/")).unwrap_err().0, 2);
        assert!(parse("   x: y\n", Path::new("/")).is_err());
    }
}
