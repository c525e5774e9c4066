//! Where tests find the wasm components of this workspace's plugin crates.
//!
//! CI builds every wasm crate once (`cargo build --target wasm32-wasip2 …`, see
//! `scripts/test.sh`) and points `COMFYHOST_TEST_WASM_DIR` at
//! `<target>/wasm32-wasip2/debug`: tests read those artifacts and build nothing. Without it (a
//! developer's `cargo test -p …`), the crate is built on demand, unoptimised, into
//! `target/wasm-tests`: a target directory of its own, so the outer cargo, which may hold the
//! lock on the main one while tests run, never blocks it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable naming the directory of prebuilt components.
pub const PREBUILT_DIR_ENV: &str = "COMFYHOST_TEST_WASM_DIR";

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Where a test builds wasm crates of its own (e.g. a scaffolded plugin): the main target
/// directory when CI prebuilt the components (cargo is not running then), else
/// `target/wasm-tests` as for [`component`].
pub fn wasm_target_dir() -> PathBuf {
    match std::env::var_os(PREBUILT_DIR_ENV) {
        // <target>/wasm32-wasip2/debug
        Some(dir) => Path::new(&dir)
            .ancestors()
            .nth(2)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| workspace_root().join("target")),
        None => workspace_root().join("target").join("wasm-tests"),
    }
}

/// The component of workspace crate `package` (e.g. `queue-redirect`, `hostile-spin-loop`).
pub fn component(package: &str) -> PathBuf {
    let file_name = format!("{}.wasm", package.replace('-', "_"));
    if let Some(dir) = std::env::var_os(PREBUILT_DIR_ENV) {
        let file = Path::new(&dir).join(&file_name);
        assert!(
            file.is_file(),
            "{} is missing: {PREBUILT_DIR_ENV} is set, so the wasm crates must be built first \
             (cargo build --target wasm32-wasip2 -p {package})",
            file.display()
        );
        return file;
    }
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
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("run cargo to build a wasm test component");
    assert!(status.success(), "building wasm package {package} failed");
    let file = target_dir
        .join("wasm32-wasip2")
        .join("debug")
        .join(file_name);
    assert!(file.exists(), "{} missing after build", file.display());
    file
}
