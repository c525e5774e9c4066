//! What to launch: [`LaunchSpec`] and the single function that turns it into a command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::SupervisorError;

/// The address ComfyUI listens on. Always loopback: comfyhost proxies everything that is public.
pub const LISTEN_ADDR: &str = "127.0.0.1";

/// How to launch ComfyUI (or anything that speaks its HTTP API, such as the embedded simulator).
///
/// [`command_line`] turns it into argv; that exact argv is logged and exposed in the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The executable: a venv's `python`, or the host's own executable for the simulator.
    pub program: PathBuf,
    /// Arguments placed right after the program, e.g. `["main.py"]` or `["simulate-comfyui"]`.
    pub args_prefix: Vec<String>,
    /// The ComfyUI checkout; the child's working directory. Must exist.
    pub comfyui_dir: PathBuf,
    /// Internal port (`--port`); ComfyUI listens on [`LISTEN_ADDR`] only.
    pub port: u16,
    /// `--output-directory`, created if missing.
    pub output_dir: Option<PathBuf>,
    /// `--input-directory`, created if missing.
    pub input_dir: Option<PathBuf>,
    /// `--user-directory`, created if missing (ComfyUI requires it to exist).
    pub user_dir: Option<PathBuf>,
    /// `--temp-directory`, created if missing. Note: ComfyUI uses `<dir>/temp` below it and wipes
    /// that subfolder at startup, so point it at a local, per-instance location.
    pub temp_dir: Option<PathBuf>,
    /// ComfyUI's SQLite file, passed as `--database-url sqlite:///<path>`; its directory is
    /// created if missing. Set it (e.g. to `<user_dir>/comfyui.db`): without it ComfyUI 0.3.64
    /// uses `<comfyui_dir>/user/comfyui.db` even with `--user-directory`, which fails when that
    /// folder does not exist and is shared between instances when it does.
    pub database_file: Option<PathBuf>,
    /// `--extra-model-paths-config`, one flag per file; each file must exist.
    pub extra_model_paths_configs: Vec<PathBuf>,
    /// Flags chosen by other parts of the host (e.g. `--use-sage-attention`), placed after the
    /// directory flags.
    pub extra_flags: Vec<String>,
    /// Arguments from the admin's configuration, appended verbatim at the very end.
    pub extra_args: Vec<String>,
    /// Environment additions for the child (the host's environment is inherited).
    /// `PYTHONUNBUFFERED=1` is added unless set here, so output lines arrive promptly.
    pub env: BTreeMap<String, String>,
}

impl LaunchSpec {
    /// A spec for `python main.py` in `comfyui_dir` on `port`, with no optional flags.
    pub fn comfyui(python: impl Into<PathBuf>, comfyui_dir: impl Into<PathBuf>, port: u16) -> Self {
        Self {
            program: python.into(),
            args_prefix: vec!["main.py".to_owned()],
            comfyui_dir: comfyui_dir.into(),
            port,
            output_dir: None,
            input_dir: None,
            user_dir: None,
            temp_dir: None,
            database_file: None,
            extra_model_paths_configs: Vec::new(),
            extra_flags: Vec::new(),
            extra_args: Vec::new(),
            env: BTreeMap::new(),
        }
    }

    /// The base URL the readiness probe and the proxy use: `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{LISTEN_ADDR}:{}", self.port)
    }

    /// The directories ComfyUI writes to, with their role names, in flag order.
    pub fn writable_dirs(&self) -> Vec<(&'static str, &Path)> {
        [
            ("output", self.output_dir.as_deref()),
            ("input", self.input_dir.as_deref()),
            ("user", self.user_dir.as_deref()),
            ("temp", self.temp_dir.as_deref()),
        ]
        .into_iter()
        .filter_map(|(role, dir)| dir.map(|d| (role, d)))
        .collect()
    }

    /// Checks what can be checked without touching the file system: non-empty program, port ≠ 0,
    /// UTF-8 paths (so the logged command line is exact) and valid env names.
    pub fn validate(&self) -> Result<(), SupervisorError> {
        if self.program.as_os_str().is_empty() {
            return Err(SupervisorError::EmptyProgram);
        }
        if self.port == 0 {
            return Err(SupervisorError::PortZero);
        }
        let mut paths: Vec<(&'static str, &Path)> = vec![
            ("program", self.program.as_path()),
            ("ComfyUI", self.comfyui_dir.as_path()),
        ];
        paths.extend(self.writable_dirs());
        if let Some(db) = &self.database_file {
            paths.push(("database", db.as_path()));
        }
        paths.extend(
            self.extra_model_paths_configs
                .iter()
                .map(|p| ("extra model paths config", p.as_path())),
        );
        for (role, path) in paths {
            if path.to_str().is_none() {
                return Err(SupervisorError::NonUtf8Path {
                    role,
                    path: path.to_path_buf(),
                });
            }
        }
        for name in self.env.keys() {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(SupervisorError::InvalidEnvName(name.clone()));
            }
        }
        Ok(())
    }
}

/// Builds the full argv (program first) for `spec`. The supervisor spawns exactly this.
///
/// Order: program, `args_prefix`, `--listen 127.0.0.1 --port N`, directory flags (output, input,
/// user, temp), `--database-url`, one `--extra-model-paths-config` per file, `extra_flags`, `extra_args`.
/// Paths are rendered lossily; [`LaunchSpec::validate`] rejects non-UTF-8 paths before a launch.
pub fn command_line(spec: &LaunchSpec) -> Vec<String> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    let mut argv = vec![path(&spec.program)];
    argv.extend(spec.args_prefix.iter().cloned());
    argv.extend([
        "--listen".to_owned(),
        LISTEN_ADDR.to_owned(),
        "--port".to_owned(),
        spec.port.to_string(),
    ]);
    let dir_flags = [
        ("--output-directory", &spec.output_dir),
        ("--input-directory", &spec.input_dir),
        ("--user-directory", &spec.user_dir),
        ("--temp-directory", &spec.temp_dir),
    ];
    for (flag, dir) in dir_flags {
        if let Some(dir) = dir {
            argv.push(flag.to_owned());
            argv.push(path(dir));
        }
    }
    if let Some(db) = &spec.database_file {
        argv.push("--database-url".to_owned());
        argv.push(format!("sqlite:///{}", path(db)));
    }
    for config in &spec.extra_model_paths_configs {
        argv.push("--extra-model-paths-config".to_owned());
        argv.push(path(config));
    }
    argv.extend(spec.extra_flags.iter().cloned());
    argv.extend(spec.extra_args.iter().cloned());
    argv
}

/// Quotes one word for a POSIX shell; words made only of safe characters are left as they are.
pub fn shell_quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Joins argv into one shell-quoted line, suitable for logs and copy-paste into a terminal.
pub fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_spec() -> LaunchSpec {
        let mut spec = LaunchSpec::comfyui("/opt/venv/bin/python", "/opt/ComfyUI", 8188);
        spec.output_dir = Some("/data/out/alice".into());
        spec.input_dir = Some("/data/in/alice".into());
        spec.user_dir = Some("/data/user/alice".into());
        spec.temp_dir = Some("/tmp/comfy temp".into());
        spec.database_file = Some("/data/user/alice/comfyui.db".into());
        spec.extra_model_paths_configs = vec!["/etc/a.yaml".into(), "/etc/b.yaml".into()];
        spec.extra_flags = vec!["--use-sage-attention".into()];
        spec.extra_args = vec!["--preview-method".into(), "auto".into()];
        spec
    }

    #[test]
    fn command_line_golden_full() {
        let argv = command_line(&full_spec());
        assert_eq!(
            argv,
            [
                "/opt/venv/bin/python",
                "main.py",
                "--listen",
                "127.0.0.1",
                "--port",
                "8188",
                "--output-directory",
                "/data/out/alice",
                "--input-directory",
                "/data/in/alice",
                "--user-directory",
                "/data/user/alice",
                "--temp-directory",
                "/tmp/comfy temp",
                "--database-url",
                "sqlite:////data/user/alice/comfyui.db",
                "--extra-model-paths-config",
                "/etc/a.yaml",
                "--extra-model-paths-config",
                "/etc/b.yaml",
                "--use-sage-attention",
                "--preview-method",
                "auto",
            ]
        );
        assert_eq!(
            shell_join(&argv),
            "/opt/venv/bin/python main.py --listen 127.0.0.1 --port 8188 \
             --output-directory /data/out/alice --input-directory /data/in/alice \
             --user-directory /data/user/alice --temp-directory '/tmp/comfy temp' \
             --database-url sqlite:////data/user/alice/comfyui.db \
             --extra-model-paths-config /etc/a.yaml --extra-model-paths-config /etc/b.yaml \
             --use-sage-attention --preview-method auto"
        );
    }

    #[test]
    fn command_line_golden_minimal_simulator() {
        let mut spec = LaunchSpec::comfyui("/usr/bin/comfyhost", "/srv", 18188);
        spec.args_prefix = vec!["simulate-comfyui".into()];
        assert_eq!(
            command_line(&spec),
            [
                "/usr/bin/comfyhost",
                "simulate-comfyui",
                "--listen",
                "127.0.0.1",
                "--port",
                "18188"
            ]
        );
        assert_eq!(spec.base_url(), "http://127.0.0.1:18188");
    }

    #[test]
    fn shell_quote_cases() {
        assert_eq!(shell_quote("abc-1.2/x=y"), "abc-1.2/x=y");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
        assert_eq!(shell_quote("a\nb"), "'a\nb'");
    }

    #[test]
    fn validate_rejects_bad_specs() {
        let mut spec = full_spec();
        assert!(spec.validate().is_ok());
        spec.port = 0;
        assert!(matches!(spec.validate(), Err(SupervisorError::PortZero)));
        let mut spec = full_spec();
        spec.program = PathBuf::new();
        assert!(matches!(
            spec.validate(),
            Err(SupervisorError::EmptyProgram)
        ));
        let mut spec = full_spec();
        spec.env.insert("A=B".into(), "x".into());
        assert!(matches!(
            spec.validate(),
            Err(SupervisorError::InvalidEnvName(_))
        ));
        let mut spec = full_spec();
        use std::os::unix::ffi::OsStrExt;
        spec.output_dir = Some(PathBuf::from(std::ffi::OsStr::from_bytes(b"/tmp/\xff")));
        let err = spec.validate().unwrap_err();
        assert!(err.to_string().contains("output path"), "{err}");
    }
}
