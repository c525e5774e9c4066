//! Pre-launch file-system checks: create ComfyUI's directories and prove they are writable.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::SupervisorError;
use crate::spec::LaunchSpec;

/// Validates `spec`, checks the ComfyUI directory and extra model path configs exist, creates the
/// output/input/user/temp directories if missing and writes (then removes) a probe file in each.
///
/// Blocking (file-system calls); the supervisor runs it on the blocking pool before each launch.
pub fn prepare_dirs(spec: &LaunchSpec) -> Result<(), SupervisorError> {
    spec.validate()?;
    if !spec.comfyui_dir.is_dir() {
        return Err(SupervisorError::ComfyUiDirMissing {
            path: spec.comfyui_dir.clone(),
        });
    }
    for config in &spec.extra_model_paths_configs {
        if !config.is_file() {
            return Err(SupervisorError::ExtraModelPathsMissing {
                path: config.clone(),
            });
        }
    }
    for (role, dir) in spec.writable_dirs() {
        ensure_writable_dir(role, dir)?;
    }
    if let Some(parent) = spec.database_file.as_deref().and_then(Path::parent) {
        ensure_writable_dir("database", parent)?;
    }
    Ok(())
}

/// Creates `dir` (and parents) if missing, then checks a file can be created in it.
pub fn ensure_writable_dir(role: &'static str, dir: &Path) -> Result<(), SupervisorError> {
    if dir.exists() && !dir.is_dir() {
        return Err(SupervisorError::NotADirectory {
            role,
            path: dir.to_path_buf(),
        });
    }
    fs::create_dir_all(dir).map_err(|source| SupervisorError::DirCreate {
        role,
        path: dir.to_path_buf(),
        source,
    })?;
    let probe = dir.join(format!(".comfyhost-write-test-{}", std::process::id()));
    let written = fs::File::create(&probe).and_then(|mut f| f.write_all(b"ok"));
    // Remove even a partially written probe; a failed removal is not worth failing the launch.
    let _ = fs::remove_file(&probe);
    written.map_err(|source| SupervisorError::DirNotWritable {
        role,
        path: dir.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_in(root: &Path) -> LaunchSpec {
        let mut spec = LaunchSpec::comfyui("/usr/bin/python3", root, 8188);
        spec.output_dir = Some(root.join("a/b/output"));
        spec.input_dir = Some(root.join("input"));
        spec.user_dir = Some(root.join("user"));
        spec.temp_dir = Some(root.join("tmp"));
        spec.database_file = Some(root.join("db/comfyui.db"));
        spec
    }

    #[test]
    fn creates_missing_dirs_and_leaves_no_probe_file() {
        let root = tempfile::tempdir().unwrap();
        let spec = spec_in(root.path());
        prepare_dirs(&spec).unwrap();
        for (_, dir) in spec.writable_dirs() {
            assert!(dir.is_dir(), "{dir:?} created");
            assert_eq!(fs::read_dir(dir).unwrap().count(), 0, "{dir:?} left clean");
        }
        assert!(root.path().join("db").is_dir(), "database folder created");
        // Idempotent.
        prepare_dirs(&spec).unwrap();
    }

    #[test]
    fn file_in_place_of_dir_is_a_typed_error() {
        let root = tempfile::tempdir().unwrap();
        let mut spec = spec_in(root.path());
        let file = root.path().join("input");
        fs::write(&file, b"x").unwrap();
        spec.input_dir = Some(file.clone());
        let err = prepare_dirs(&spec).unwrap_err();
        assert!(
            matches!(&err, SupervisorError::NotADirectory { role: "input", path } if *path == file),
            "{err}"
        );
    }

    #[test]
    fn uncreatable_dir_names_the_dir() {
        let root = tempfile::tempdir().unwrap();
        let mut spec = spec_in(root.path());
        let blocker = root.path().join("blocker");
        fs::write(&blocker, b"x").unwrap();
        spec.output_dir = Some(blocker.join("out"));
        let err = prepare_dirs(&spec).unwrap_err();
        assert!(matches!(
            err,
            SupervisorError::DirCreate { role: "output", .. }
        ));
        assert!(err.to_string().contains("blocker/out"), "{err}");
    }

    #[test]
    fn unwritable_dir_is_reported_even_for_root() {
        // /proc refuses file creation for every user, root included.
        let root = tempfile::tempdir().unwrap();
        let mut spec = spec_in(root.path());
        spec.user_dir = Some("/proc".into());
        let err = prepare_dirs(&spec).unwrap_err();
        assert!(
            matches!(&err, SupervisorError::DirNotWritable { role: "user", .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("user directory /proc is not writable"),
            "{err}"
        );
    }

    #[test]
    fn missing_comfyui_dir_and_config_are_reported() {
        let root = tempfile::tempdir().unwrap();
        let mut spec = spec_in(root.path());
        spec.extra_model_paths_configs = vec![root.path().join("nope.yaml")];
        assert!(matches!(
            prepare_dirs(&spec),
            Err(SupervisorError::ExtraModelPathsMissing { .. })
        ));
        spec.comfyui_dir = root.path().join("missing");
        assert!(matches!(
            prepare_dirs(&spec),
            Err(SupervisorError::ComfyUiDirMissing { .. })
        ));
    }
}
