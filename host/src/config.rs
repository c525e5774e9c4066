//! Host configuration: command-line flags with `COMFYHOST_*` environment equivalents.
//!
//! Defaults give a working host on a fresh machine: it listens on 127.0.0.1:8188, keeps its
//! state under `./.comfyhost`, and runs the embedded ComfyUI simulator when no real ComfyUI is
//! configured (`--comfyui-dir` to manage a real one, `--attach` to proxy an existing one).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// How the host obtains a ComfyUI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComfyMode {
    /// Run the built-in simulator (this same binary, `simulate-comfyui`).
    Simulator,
    /// Supervise a real ComfyUI checkout with the given Python interpreter.
    Managed {
        python: PathBuf,
        comfyui_dir: PathBuf,
    },
    /// Manage nothing; proxy an existing ComfyUI.
    Attach { url: String },
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Address browsers connect to.
    #[arg(long, env = "COMFYHOST_LISTEN", default_value = "127.0.0.1:8188")]
    pub listen: SocketAddr,

    /// Directory for the host's database, plugin cache and (simulator) ComfyUI folders.
    #[arg(long, env = "COMFYHOST_DATA_DIR", default_value = ".comfyhost")]
    pub data_dir: PathBuf,

    /// SQLite database (plugin state, grants, config, users, sessions, jobs, activity).
    /// Default `<data-dir>/comfyhost.db`.
    #[arg(long, env = "COMFYHOST_DATABASE")]
    pub database: Option<PathBuf>,

    /// Drop-in plugins directory (`<dir>/<plugin>/plugin.toml` + `.wasm`). Defaults to
    /// `<data-dir>/plugins`.
    #[arg(long, env = "COMFYHOST_PLUGINS_DIR")]
    pub plugins_dir: Option<PathBuf>,

    /// Compiled plugin artifacts (`<dir>/<engine-hash>/<sha256>.cwasm`), keyed by the code's
    /// hash, so several hosts can share one. Default `<data-dir>/cache/plugins`.
    #[arg(long, env = "COMFYHOST_PLUGIN_CACHE_DIR")]
    pub plugin_cache_dir: Option<PathBuf>,

    /// Seconds between scans of the drop-in plugins directory (new or changed plugins are
    /// loaded, removed ones dropped); 0 scans only at start and on `POST /plugins/rescan`.
    #[arg(
        long = "plugins-rescan",
        env = "COMFYHOST_PLUGINS_RESCAN",
        default_value_t = 5
    )]
    pub plugins_rescan_s: u64,

    /// Linear memory all concurrent plugin calls may hold together, in MiB; a call that would
    /// pass it fails with a memory-limit error (each call also has its manifest's own cap).
    #[arg(
        long = "plugin-memory-total-mb",
        env = "COMFYHOST_PLUGIN_MEMORY_TOTAL_MB",
        default_value_t = 2048
    )]
    pub plugin_memory_total_mb: u64,

    /// Bytes (keys plus values) each plugin may keep in its key-value store, in MiB.
    #[arg(
        long = "plugin-kv-quota-mb",
        env = "COMFYHOST_PLUGIN_KV_QUOTA_MB",
        default_value_t = 32
    )]
    pub plugin_kv_quota_mb: u64,

    /// Origins (`scheme://host:port`, comma-separated) that model downloads may come from,
    /// including presets a preset-resolver plugin proposes. Anything else is refused.
    #[arg(
        long = "download-origins",
        env = "COMFYHOST_DOWNLOAD_ORIGINS",
        value_delimiter = ',',
        default_value = "https://huggingface.co:443"
    )]
    pub download_origins: Vec<String>,

    /// Remote ComfyUI servers and serverless endpoints that queue routers may send prompts to
    /// (TOML; see `docs/queue-redirect.md`). Without it every prompt runs locally.
    #[arg(long, env = "COMFYHOST_BACKENDS")]
    pub backends: Option<PathBuf>,

    /// A real ComfyUI checkout to supervise (contains `main.py`). Without it (and without
    /// `--attach`) the embedded simulator runs.
    #[arg(long, env = "COMFYHOST_COMFYUI_DIR")]
    pub comfyui_dir: Option<PathBuf>,

    /// Python interpreter for the managed ComfyUI.
    #[arg(long, env = "COMFYHOST_PYTHON", default_value = "python3")]
    pub python: PathBuf,

    /// Proxy an existing ComfyUI at this URL and manage nothing (e.g. http://127.0.0.1:8189).
    #[arg(long, env = "COMFYHOST_ATTACH", conflicts_with = "comfyui_dir")]
    pub attach: Option<String>,

    /// Port ComfyUI listens on, on 127.0.0.1 only.
    #[arg(long, env = "COMFYHOST_COMFYUI_PORT", default_value_t = 8189)]
    pub comfyui_port: u16,

    /// ComfyUI folders; default to `<data-dir>/comfyui/{output,input,user,temp}`.
    #[arg(long, env = "COMFYHOST_OUTPUT_DIR")]
    pub output_dir: Option<PathBuf>,
    #[arg(long, env = "COMFYHOST_INPUT_DIR")]
    pub input_dir: Option<PathBuf>,
    #[arg(long, env = "COMFYHOST_USER_DIR")]
    pub user_dir: Option<PathBuf>,
    #[arg(long, env = "COMFYHOST_TEMP_DIR")]
    pub temp_dir: Option<PathBuf>,

    /// An `extra_model_paths.yaml` passed to ComfyUI.
    #[arg(long, env = "COMFYHOST_EXTRA_MODEL_PATHS")]
    pub extra_model_paths: Option<PathBuf>,

    /// One extra argument for ComfyUI's command line, verbatim (repeat the flag for each:
    /// `--comfyui-arg --lowvram --comfyui-arg --preview-method --comfyui-arg auto`). The
    /// environment variable `COMFYHOST_COMFYUI_ARGS` adds whitespace-separated arguments.
    #[arg(long = "comfyui-arg", allow_hyphen_values = true, action = clap::ArgAction::Append)]
    pub comfyui_args: Vec<String>,

    /// Seconds to wait for ComfyUI to answer `/system_stats` before declaring it failed
    /// (default 600 for a real ComfyUI, 30 for the simulator).
    #[arg(long = "startup-timeout", env = "COMFYHOST_STARTUP_TIMEOUT")]
    pub startup_timeout_s: Option<u64>,

    /// Serve everything under this path prefix (e.g. `/comfy` behind a reverse proxy).
    #[arg(long, env = "COMFYHOST_PREFIX")]
    pub prefix: Option<String>,

    /// Skip GPU detection and attention selection (ComfyUI gets no attention flags).
    /// The variable takes `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`.
    #[arg(
        long,
        env = "COMFYHOST_NO_GPU_DETECT",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub no_gpu_detect: bool,

    /// Milliseconds between readings of the machine (CPU, memory, load, the host and ComfyUI
    /// processes, volumes, GPUs) for the System page and `/metrics`; 0 switches the sampler
    /// off (the low-disk guard still checks the output volume every 10 s).
    #[arg(
        long = "system-sample-ms",
        env = "COMFYHOST_SYSTEM_SAMPLE_MS",
        default_value_t = 10_000
    )]
    pub system_sample_ms: u64,

    /// Free space (MiB) to keep on the output volume: below it the admin is warned and users
    /// see a notice; preset downloads that would not leave it free are refused.
    #[arg(
        long = "low-disk-threshold-mib",
        env = "COMFYHOST_LOW_DISK_THRESHOLD_MIB",
        default_value_t = 2048
    )]
    pub low_disk_threshold_mib: u64,

    /// Restart ComfyUI between jobs when its process tree's resident memory passes this many
    /// MiB (off by default).
    #[arg(
        long = "comfyui-memory-limit-mib",
        env = "COMFYHOST_COMFYUI_MEMORY_LIMIT_MIB"
    )]
    pub comfyui_memory_limit_mib: Option<u64>,

    /// A token that may read `/metrics` (and nothing else); admins can always read it.
    #[arg(long, env = "COMFYHOST_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Admin token for the host API. Without it one is generated at first start, printed once,
    /// and only its hash is kept.
    #[arg(long, env = "COMFYHOST_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Seconds a connection may take to send a complete request head, and may stay idle
    /// between requests, before it is closed (upgraded WebSockets are not affected).
    #[arg(
        long = "header-read-timeout",
        env = "COMFYHOST_HEADER_READ_TIMEOUT",
        default_value_t = 30
    )]
    pub header_read_timeout: u64,
}

impl RunArgs {
    /// ComfyUI's extra arguments: `COMFYHOST_COMFYUI_ARGS` (split on whitespace), then each
    /// `--comfyui-arg` as given.
    pub fn comfyui_extra_args(&self) -> Vec<String> {
        let from_env = std::env::var("COMFYHOST_COMFYUI_ARGS").unwrap_or_default();
        from_env
            .split_whitespace()
            .map(str::to_string)
            .chain(self.comfyui_args.iter().filter(|a| !a.is_empty()).cloned())
            .collect()
    }

    pub fn comfy_mode(&self) -> ComfyMode {
        if let Some(url) = &self.attach {
            ComfyMode::Attach { url: url.clone() }
        } else if let Some(dir) = &self.comfyui_dir {
            ComfyMode::Managed {
                python: self.python.clone(),
                comfyui_dir: dir.clone(),
            }
        } else {
            ComfyMode::Simulator
        }
    }

    pub fn plugin_cache_dir(&self) -> PathBuf {
        self.plugin_cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("cache").join("plugins"))
    }

    pub fn plugins_dir(&self) -> PathBuf {
        self.plugins_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("plugins"))
    }

    fn comfy_subdir(&self, explicit: &Option<PathBuf>, name: &str) -> PathBuf {
        explicit
            .clone()
            .unwrap_or_else(|| self.data_dir.join("comfyui").join(name))
    }

    pub fn output_dir(&self) -> PathBuf {
        self.comfy_subdir(&self.output_dir, "output")
    }
    pub fn input_dir(&self) -> PathBuf {
        self.comfy_subdir(&self.input_dir, "input")
    }
    pub fn user_dir(&self) -> PathBuf {
        self.comfy_subdir(&self.user_dir, "user")
    }
    pub fn temp_dir(&self) -> PathBuf {
        self.comfy_subdir(&self.temp_dir, "temp")
    }

    /// The configured startup timeout, if any (else the mode's default applies).
    pub fn startup_timeout(&self) -> Option<Duration> {
        self.startup_timeout_s.map(Duration::from_secs)
    }

    /// The sampler's interval, `None` when switched off.
    pub fn system_sample_interval(&self) -> Option<Duration> {
        (self.system_sample_ms > 0).then(|| Duration::from_millis(self.system_sample_ms.max(100)))
    }

    /// The prefix normalised to `/x/y` (no trailing slash), or `None`.
    pub fn normalized_prefix(&self) -> Option<String> {
        let p = self.prefix.as_deref()?.trim_matches('/');
        (!p.is_empty()).then(|| format!("/{p}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    fn parse(args: &[&str]) -> RunArgs {
        Cli::try_parse_from(std::iter::once("comfyhost").chain(args.iter().copied()))
            .unwrap()
            .run
    }

    #[test]
    fn defaults_run_the_simulator() {
        let a = parse(&[]);
        assert_eq!(a.comfy_mode(), ComfyMode::Simulator);
        assert_eq!(a.listen.port(), 8188);
        assert_eq!(a.output_dir(), PathBuf::from(".comfyhost/comfyui/output"));
        assert_eq!(a.plugins_dir(), PathBuf::from(".comfyhost/plugins"));
    }

    #[test]
    fn managed_and_attach_modes() {
        let a = parse(&[
            "--comfyui-dir",
            "/opt/ComfyUI",
            "--python",
            "/venv/bin/python",
        ]);
        assert_eq!(
            a.comfy_mode(),
            ComfyMode::Managed {
                python: "/venv/bin/python".into(),
                comfyui_dir: "/opt/ComfyUI".into()
            }
        );
        let a = parse(&["--attach", "http://127.0.0.1:9000"]);
        assert!(matches!(a.comfy_mode(), ComfyMode::Attach { .. }));
        assert!(Cli::try_parse_from(["comfyhost", "--attach", "x", "--comfyui-dir", "y"]).is_err());
    }

    #[test]
    fn prefix_is_normalised() {
        assert_eq!(
            parse(&["--prefix", "comfy/"])
                .normalized_prefix()
                .as_deref(),
            Some("/comfy")
        );
        assert_eq!(parse(&["--prefix", "/"]).normalized_prefix(), None);
    }

    #[test]
    fn no_gpu_detect_takes_boolish_env_values() {
        for (v, want) in [
            ("1", true),
            ("true", true),
            ("yes", true),
            ("0", false),
            ("off", false),
        ] {
            // SAFETY: only this test reads the variable, and it sets it before parsing.
            unsafe { std::env::set_var("COMFYHOST_NO_GPU_DETECT", v) };
            assert_eq!(parse(&[]).no_gpu_detect, want, "{v}");
        }
        unsafe { std::env::remove_var("COMFYHOST_NO_GPU_DETECT") };
        assert!(parse(&["--no-gpu-detect"]).no_gpu_detect);
    }

    #[test]
    fn wrong_flag_values_are_clear_errors() {
        let err = Cli::try_parse_from(["comfyhost", "--listen", "nope"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("--listen"));
    }
}
