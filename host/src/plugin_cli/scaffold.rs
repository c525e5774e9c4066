//! `comfyhost plugin new <hook> <name>`: writes a plugin crate from the SDK template of that hook
//! (`sdk/templates/<hook>`, compiled into the binary), renamed to `<name>`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use comfyhost_runtime::HookKind;

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The hook: queue-router, prompt-transform, status-overlay, preset-resolver, output-sync.
    pub hook: String,
    /// The plugin's id and crate name: lowercase letters, digits and `-`, starting with a letter.
    pub name: String,
    /// Where to create the `<name>/` folder.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The comfyhost SDK crate (`sdk/` of a comfyhost checkout). Default: the SDK next to the
    /// sources this binary was built from, when that folder exists.
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

/// One template: its files, relative path and text.
struct Template {
    hook: HookKind,
    files: &'static [(&'static str, &'static str)],
}

macro_rules! template {
    ($hook:expr, $dir:literal, [$($file:literal),*]) => {
        Template {
            hook: $hook,
            files: &[$(($file, include_str!(concat!("../../../sdk/templates/", $dir, "/", $file)))),*],
        }
    };
}

const TEMPLATES: &[Template] = &[
    template!(
        HookKind::QueueRouter,
        "queue-router",
        [
            "Cargo.toml",
            "plugin.toml",
            "config.schema.json",
            "src/lib.rs"
        ]
    ),
    template!(
        HookKind::PromptTransform,
        "prompt-transform",
        [
            "Cargo.toml",
            "plugin.toml",
            "config.schema.json",
            "src/lib.rs"
        ]
    ),
    template!(
        HookKind::StatusOverlay,
        "status-overlay",
        ["Cargo.toml", "plugin.toml", "src/lib.rs"]
    ),
    template!(
        HookKind::PresetResolver,
        "preset-resolver",
        [
            "Cargo.toml",
            "plugin.toml",
            "config.schema.json",
            "src/lib.rs"
        ]
    ),
    template!(
        HookKind::OutputSync,
        "output-sync",
        ["Cargo.toml", "plugin.toml", "src/lib.rs"]
    ),
];

pub fn run(args: &NewArgs) -> anyhow::Result<()> {
    let dir = scaffold(args)?;
    let crate_file = args.name.replace('-', "_");
    println!(
        "created {} ({} plugin `{}`)\n\nnext:\n  cd {}\n  cargo test                                   # its logic, natively, with a fake host\n  cargo build --release --target wasm32-wasip2  # the component\n  comfyhost plugin call . --workflow workflow_api.json\n\ninstall: copy plugin.toml{} and target/wasm32-wasip2/release/{crate_file}.wasm into\n<data-dir>/plugins/{}/, or POST them to /comfyhost/api/plugins (docs/writing-a-plugin.md)",
        dir.display(),
        args.hook,
        args.name,
        dir.display(),
        if dir.join("config.schema.json").exists() {
            ", config.schema.json"
        } else {
            ""
        },
        args.name,
    );
    Ok(())
}

/// Writes the crate; returns its folder.
pub fn scaffold(args: &NewArgs) -> anyhow::Result<PathBuf> {
    let hook = HookKind::ALL
        .into_iter()
        .find(|h| h.as_str() == args.hook)
        .ok_or_else(|| anyhow::anyhow!("unknown hook `{}`; one of: {}", args.hook, hook_names()))?;
    check_name(&args.name)?;
    let template = TEMPLATES
        .iter()
        .find(|t| t.hook == hook)
        .ok_or_else(|| anyhow::anyhow!("no template for hook {hook}"))?;
    let sdk = sdk_path(args.sdk.as_deref())?;
    let dir = args.dir.join(&args.name);
    if dir.exists() {
        bail!(
            "{} already exists; choose another name or --dir",
            dir.display()
        );
    }
    for (file, text) in template.files {
        let text = match *file {
            "Cargo.toml" => cargo_toml(text, hook, &args.name, &sdk),
            "plugin.toml" => plugin_toml(text, hook, &args.name),
            _ => (*text).to_string(),
        };
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    std::fs::write(dir.join(".gitignore"), "/target\n")
        .with_context(|| format!("writing {}/.gitignore", dir.display()))?;
    Ok(dir)
}

fn hook_names() -> String {
    TEMPLATES
        .iter()
        .map(|t| t.hook.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A plugin id that is also a crate name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "`{name}` is not a plugin name: 1 to 64 lowercase letters, digits and `-`, starting with a letter"
        );
    }
    Ok(())
}

fn sdk_path(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => {
            let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
            if !built_from.join("Cargo.toml").exists() {
                bail!(
                    "where is the comfyhost SDK? pass --sdk <path to the sdk/ folder of a comfyhost checkout>"
                );
            }
            built_from
        }
    };
    let path = path
        .canonicalize()
        .with_context(|| format!("the SDK folder {}", path.display()))?;
    anyhow::ensure!(
        path.join("Cargo.toml").exists(),
        "{} has no Cargo.toml: --sdk must name the SDK crate folder",
        path.display()
    );
    Ok(path)
}

fn cargo_toml(text: &str, hook: HookKind, name: &str, sdk: &Path) -> String {
    let mut out = text
        .replace(
            &format!("name = \"comfyhost-template-{hook}\""),
            &format!("name = \"{name}\""),
        )
        .replace(
            "comfyhost-sdk = { path = \"../..\" }",
            &format!(
                "comfyhost-sdk = {{ path = {:?} }}",
                sdk.display().to_string()
            ),
        );
    // Its own workspace, so it builds wherever it is created (also inside another workspace).
    out.push_str("\n[workspace]\n");
    out
}

fn plugin_toml(text: &str, hook: HookKind, name: &str) -> String {
    let template_wasm = format!(
        "comfyhost_template_{}.wasm",
        hook.as_str().replace('-', "_")
    );
    let title: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ");
    text.lines()
        .map(|line| {
            if line.starts_with("id = ") {
                format!("id = \"{name}\"")
            } else if line.starts_with("name = ") {
                format!("name = \"{title}\"")
            } else if line.starts_with("wasm = ") {
                line.replace(&template_wasm, &format!("{}.wasm", name.replace('-', "_")))
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use comfyhost_runtime::manifest::Manifest;

    #[test]
    fn every_hook_has_a_template_that_renames_cleanly() {
        for t in TEMPLATES {
            let tmp = tempfile::tempdir().unwrap();
            let args = NewArgs {
                hook: t.hook.as_str().into(),
                name: "my-plugin".into(),
                dir: tmp.path().into(),
                sdk: None,
            };
            let dir = scaffold(&args).unwrap();
            let manifest = Manifest::load(&dir).unwrap();
            assert_eq!(manifest.id, "my-plugin");
            assert_eq!(manifest.name, "My Plugin");
            assert_eq!(manifest.hook(), t.hook);
            assert_eq!(manifest.wasm_file_name(), "my_plugin.wasm");
            let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
            assert!(cargo.contains("name = \"my-plugin\""), "{cargo}");
            assert!(!cargo.contains("\"../..\""), "{cargo}");
            assert!(cargo.contains("[workspace]"), "{cargo}");
            // Twice into the same place is refused, nothing overwritten.
            assert!(scaffold(&args).is_err());
        }
    }

    #[test]
    fn bad_names_and_hooks_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for (hook, name) in [
            ("prompt-transform", "My_Plugin"),
            ("prompt-transform", "-x"),
            ("prompt-transform", "9lives"),
            ("teleport", "ok-name"),
        ] {
            let args = NewArgs {
                hook: hook.into(),
                name: name.into(),
                dir: tmp.path().into(),
                sdk: None,
            };
            assert!(scaffold(&args).is_err(), "{hook} {name}");
        }
    }
}
