//! The wasm plugin crates of this workspace as test plugins: components come from
//! `comfyhost_test_wasm` (prebuilt by CI, or built on demand for a developer's run).

use std::path::PathBuf;

pub use comfyhost_test_wasm::workspace_root;

/// The component of wasm crate `package`.
pub fn build_component(package: &str) -> PathBuf {
    comfyhost_test_wasm::component(package)
}

/// A first-party plugin (`plugins/<package>`) as an admin drops it in: `<root>/<package>/` with
/// its own `plugin.toml`, `config.schema.json` (when it has one) and the freshly built component.
pub fn first_party_plugin(package: &str, root: &std::path::Path) -> PathBuf {
    let wasm = build_component(package);
    let dir = root.join(package);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let src = workspace_root().join("plugins").join(package);
    for f in ["plugin.toml", "config.schema.json"] {
        if src.join(f).exists() {
            std::fs::copy(src.join(f), dir.join(f)).expect("copy plugin file");
        }
    }
    std::fs::copy(&wasm, dir.join(wasm.file_name().expect("wasm name"))).expect("copy wasm");
    dir
}

/// A drop-in plugin directory: `<tmp>/<id>/plugin.toml` + the component.
pub fn plugin_dir(package: &str, manifest: &str) -> (tempfile::TempDir, PathBuf) {
    let wasm = build_component(package);
    let tmp = tempfile::tempdir().expect("tempdir");
    let id = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("id = "))
        .map(|v| v.trim_matches('"').to_string())
        .expect("manifest id");
    let dir = tmp.path().join(&id);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("plugin.toml"), manifest).expect("write manifest");
    let file_name = wasm.file_name().expect("wasm name");
    std::fs::copy(&wasm, dir.join(file_name)).expect("copy wasm");
    (tmp, dir)
}
