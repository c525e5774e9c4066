//! Builds wasm plugin crates of this workspace for the tests (once per test binary), in a
//! target directory of their own so the outer `cargo test` build is never blocked.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

static BUILD_LOCK: Mutex<()> = Mutex::new(());

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Build `package` for wasm32-wasip2 and return the path of its component.
pub fn build_component(package: &str) -> PathBuf {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = workspace_root();
    let target_dir = root.join("target").join("wasm-tests");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--target",
            "wasm32-wasip2",
            "-p",
            package,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .expect("run cargo");
    assert!(status.success(), "building wasm package {package} failed");
    let file = target_dir
        .join("wasm32-wasip2")
        .join("debug")
        .join(format!("{}.wasm", package.replace('-', "_")));
    assert!(file.exists(), "{} missing after build", file.display());
    file
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
