//! Command line of the simulator: the subset of ComfyUI's `main.py` flags a supervisor passes,
//! plus `--sim-*` knobs. Unknown flags are accepted (and logged) like a newer ComfyUI would.

use std::path::PathBuf;
use std::time::Duration;

use crate::profile::Profile;

/// Everything the simulator needs to run. Build with [`SimOptions::default`] or [`SimOptions::parse`].
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// `--listen` address (ComfyUI default `127.0.0.1`; a bare `--listen` means `0.0.0.0`).
    pub listen: String,
    /// `--port` (default 8188; `0` picks a free port).
    pub port: u16,
    /// `--output-directory`.
    pub output_dir: PathBuf,
    /// `--input-directory`.
    pub input_dir: PathBuf,
    /// `--user-directory`.
    pub user_dir: PathBuf,
    /// `--temp-directory` (ComfyUI appends `temp`; we use the path as given).
    pub temp_dir: PathBuf,
    /// `--sim-models-dir`: root holding `checkpoints/`, `loras/`, `vae/`, ... (ComfyUI's `models/`).
    pub models_dir: PathBuf,
    /// `--extra-model-paths-config` (accepted and logged; its contents are not parsed).
    pub extra_model_paths_config: Vec<PathBuf>,
    /// `--cpu`.
    pub cpu: bool,
    /// `--disable-auto-launch` (accepted; the simulator never opens a browser).
    pub disable_auto_launch: bool,
    /// `--front-end-root`: a static frontend directory served at `/`.
    pub front_end_root: Option<PathBuf>,
    /// `--enable-cors-header [ORIGIN]`: disables the origin check and adds CORS headers.
    pub enable_cors_header: Option<String>,
    /// `--preview-method` (`none` disables binary previews; the simulator default is `auto`).
    pub preview_method: String,
    /// `--max-upload-size` in MB (default 100).
    pub max_upload_size_mb: u64,
    /// Attention selection flags seen (`--use-sage-attention`, ...), in order.
    pub attention_flags: Vec<String>,
    /// Flags the simulator does not know, kept verbatim (they are logged at startup).
    pub unknown_flags: Vec<String>,
    /// The argument vector as `system_stats.system.argv` reports it (`main.py` first).
    pub argv: Vec<String>,
    /// `--sim-startup-delay-ms`: pause before the server starts accepting requests.
    pub startup_delay: Duration,
    /// `--sim-node-delay-ms`: time per executed node (per step for samplers). Default 30 ms.
    pub node_delay: Duration,
    /// `--sim-crash-after-prompts N`: after N prompts ran, the next one kills the process
    /// (SIGKILL, no WebSocket close frames) while executing. Only honoured by [`crate::cli_main`].
    pub crash_after_prompts: Option<u64>,
    /// `--sim-profile {current,0.3.64}`: which ComfyUI version to imitate (default current).
    pub profile: Profile,
    /// `--sim-progress-text`: samplers also send `progress_text` (binary type 3) each step, as
    /// API nodes and some custom nodes do in a real ComfyUI. Off by default.
    pub progress_text: bool,
    /// `--multi-user`: the `comfy-user` header picks the user directory (see [`crate::users`]).
    pub multi_user: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1".into(),
            port: 8188,
            output_dir: PathBuf::from("output"),
            input_dir: PathBuf::from("input"),
            user_dir: PathBuf::from("user"),
            temp_dir: PathBuf::from("temp"),
            models_dir: PathBuf::from("models"),
            extra_model_paths_config: Vec::new(),
            cpu: false,
            disable_auto_launch: false,
            front_end_root: None,
            enable_cors_header: None,
            preview_method: "auto".into(),
            max_upload_size_mb: 100,
            attention_flags: Vec::new(),
            unknown_flags: Vec::new(),
            argv: vec!["main.py".into()],
            startup_delay: Duration::ZERO,
            node_delay: Duration::from_millis(30),
            crash_after_prompts: None,
            profile: Profile::default(),
            progress_text: false,
            multi_user: false,
        }
    }
}

/// Why a command line was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OptionsError {
    /// A flag that needs a value had none.
    #[error("argument {0}: expected one argument")]
    MissingValue(String),
    /// A value could not be parsed.
    #[error("argument {flag}: invalid value: '{value}'")]
    InvalidValue {
        /// The flag.
        flag: String,
        /// The offending value.
        value: String,
    },
    /// `--help` was asked for.
    #[error("help requested")]
    HelpRequested,
}

/// Attention flags ComfyUI knows (they pick the attention implementation).
const ATTENTION_FLAGS: &[&str] = &[
    "--use-split-cross-attention",
    "--use-quad-cross-attention",
    "--use-pytorch-cross-attention",
    "--use-sage-attention",
    "--use-flash-attention",
    "--use-ck-attention",
];

/// Usage text printed by `--help`.
pub fn usage() -> String {
    "usage: comfy-sim [-h] [--listen [IP]] [--port PORT] [--output-directory DIR]\n\
     \x20                [--input-directory DIR] [--user-directory DIR] [--temp-directory DIR]\n\
     \x20                [--extra-model-paths-config PATH] [--cpu] [--disable-auto-launch]\n\
     \x20                [--multi-user]\n\
     \x20                [--front-end-root DIR] [--enable-cors-header [ORIGIN]]\n\
     \x20                [--preview-method {none,auto,latent2rgb,taesd}] [--max-upload-size MB]\n\
     \x20                [--use-split-cross-attention | --use-quad-cross-attention |\n\
     \x20                 --use-pytorch-cross-attention | --use-sage-attention | --use-flash-attention |\n\
     \x20                 --use-ck-attention]\n\
     \x20                [--sim-startup-delay-ms MS] [--sim-node-delay-ms MS]\n\
     \x20                [--sim-crash-after-prompts N] [--sim-models-dir DIR]\n\
     \x20                [--sim-profile {current,0.3.64}] [--sim-progress-text]\n\
     \n\
     A ComfyUI simulator (0.33.0 by default, 0.3.64 with --sim-profile 0.3.64).\n\
     Unknown flags are accepted and logged.\n"
        .to_string()
}

impl SimOptions {
    /// Parses a ComfyUI-style command line (without the program name).
    pub fn parse(args: &[String]) -> Result<Self, OptionsError> {
        let mut o = SimOptions {
            argv: std::iter::once("main.py".to_string())
                .chain(args.iter().cloned())
                .collect(),
            ..SimOptions::default()
        };
        let mut i = 0;
        while i < args.len() {
            let raw = &args[i];
            i += 1;
            let (flag, inline) = match raw.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (raw.clone(), None),
            };
            // Takes the flag's value: inline `--x=v` or the next token.
            let mut value = |required: bool| -> Result<Option<String>, OptionsError> {
                if let Some(v) = inline.clone() {
                    return Ok(Some(v));
                }
                match args.get(i) {
                    Some(next) if !next.starts_with("--") => {
                        i += 1;
                        Ok(Some(next.clone()))
                    }
                    _ if required => Err(OptionsError::MissingValue(flag.clone())),
                    _ => Ok(None),
                }
            };
            match flag.as_str() {
                "-h" | "--help" => return Err(OptionsError::HelpRequested),
                "--listen" => o.listen = value(false)?.unwrap_or_else(|| "0.0.0.0".into()),
                "--port" => o.port = parse_num(&flag, value(true)?)?,
                "--output-directory" => o.output_dir = path(value(true)?),
                "--input-directory" => o.input_dir = path(value(true)?),
                "--user-directory" => o.user_dir = path(value(true)?),
                "--temp-directory" => o.temp_dir = path(value(true)?),
                "--sim-models-dir" => o.models_dir = path(value(true)?),
                "--extra-model-paths-config" => o.extra_model_paths_config.push(path(value(true)?)),
                "--front-end-root" => o.front_end_root = Some(path(value(true)?)),
                "--enable-cors-header" => {
                    o.enable_cors_header = Some(value(false)?.unwrap_or_else(|| "*".into()))
                }
                "--preview-method" => o.preview_method = value(true)?.unwrap_or_default(),
                "--max-upload-size" => o.max_upload_size_mb = parse_num(&flag, value(true)?)?,
                "--cpu" => o.cpu = true,
                "--multi-user" => o.multi_user = true,
                "--disable-auto-launch" => o.disable_auto_launch = true,
                "--sim-startup-delay-ms" => {
                    o.startup_delay = Duration::from_millis(parse_num(&flag, value(true)?)?)
                }
                "--sim-node-delay-ms" => {
                    o.node_delay = Duration::from_millis(parse_num(&flag, value(true)?)?)
                }
                "--sim-progress-text" => o.progress_text = true,
                "--sim-crash-after-prompts" => {
                    o.crash_after_prompts = Some(parse_num(&flag, value(true)?)?)
                }
                "--sim-profile" => {
                    let v = value(true)?.unwrap_or_default();
                    o.profile = v.parse().map_err(|_| OptionsError::InvalidValue {
                        flag: flag.clone(),
                        value: v,
                    })?;
                }
                "--use-ck-attention" if !o.profile.is_current() => {
                    // 0.3.64's argparse has no Comfy Kitchen flag: kept as unknown.
                    o.unknown_flags.push(raw.clone());
                }
                f if ATTENTION_FLAGS.contains(&f) => o.attention_flags.push(f.to_string()),
                _ => {
                    // Unknown: keep it (and a following value, if any) verbatim.
                    let mut kept = raw.clone();
                    if inline.is_none()
                        && raw.starts_with("--")
                        && let Some(v) = value(false)?
                    {
                        kept = format!("{raw} {v}");
                    }
                    o.unknown_flags.push(kept);
                }
            }
        }
        Ok(o)
    }

    /// The attention log line ComfyUI prints for these flags.
    pub fn attention_line(&self) -> &'static str {
        let has = |f: &str| self.attention_flags.iter().any(|a| a == f);
        if has("--use-sage-attention") {
            "Using sage attention"
        } else if has("--use-flash-attention") {
            "Using Flash Attention"
        } else if has("--use-split-cross-attention") {
            "Using split optimization for attention"
        } else if has("--use-quad-cross-attention")
            || (self.cpu && !has("--use-pytorch-cross-attention"))
        {
            "Using sub quadratic optimization for attention, if you have memory or speed issues try using: --use-split-cross-attention"
        } else {
            "Using pytorch attention"
        }
    }

    /// The line 0.33.0 logs after the base attention line when `--use-ck-attention` is given
    /// (Comfy Kitchen replaces whichever attention was picked).
    pub fn comfy_kitchen_line(&self) -> Option<&'static str> {
        self.attention_flags
            .iter()
            .any(|f| f == "--use-ck-attention")
            .then_some("Using Comfy Kitchen attention")
    }

    /// Whether binary preview frames are sent during sampling.
    pub fn previews_enabled(&self) -> bool {
        self.preview_method != "none"
    }
}

fn path(v: Option<String>) -> PathBuf {
    PathBuf::from(v.unwrap_or_default())
}

fn parse_num<T: std::str::FromStr>(flag: &str, v: Option<String>) -> Result<T, OptionsError> {
    let v = v.unwrap_or_default();
    v.parse().map_err(|_| OptionsError::InvalidValue {
        flag: flag.to_string(),
        value: v,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn parses_supervisor_flags_and_keeps_unknown_ones() {
        let o = SimOptions::parse(&args(
            "--listen 127.0.0.1 --port 0 --cpu --disable-auto-launch --use-sage-attention --reserve-vram 2 --fast --sim-node-delay-ms 5 --output-directory /tmp/o",
        ))
        .unwrap();
        assert_eq!(o.port, 0);
        assert!(o.cpu);
        assert_eq!(o.attention_line(), "Using sage attention");
        assert_eq!(o.unknown_flags, vec!["--reserve-vram 2", "--fast"]);
        assert_eq!(o.node_delay, Duration::from_millis(5));
        assert_eq!(o.output_dir, PathBuf::from("/tmp/o"));
        assert_eq!(o.argv[0], "main.py");
    }

    #[test]
    fn bare_listen_means_all_interfaces_and_bad_port_is_an_error() {
        let o = SimOptions::parse(&args("--listen --port=9000")).unwrap();
        assert_eq!(o.listen, "0.0.0.0");
        assert_eq!(o.port, 9000);
        assert!(matches!(
            SimOptions::parse(&args("--port abc")),
            Err(OptionsError::InvalidValue { .. })
        ));
        assert!(matches!(
            SimOptions::parse(&args("--port")),
            Err(OptionsError::MissingValue(f)) if f == "--port"
        ));
    }

    #[test]
    fn attention_defaults_follow_comfyui() {
        let cpu = SimOptions::parse(&args("--cpu")).unwrap();
        assert!(cpu.attention_line().starts_with("Using sub quadratic"));
        let gpu = SimOptions::parse(&[]).unwrap();
        assert_eq!(gpu.attention_line(), "Using pytorch attention");
        assert_eq!(gpu.comfy_kitchen_line(), None);
    }

    #[test]
    fn comfy_kitchen_attention_is_known_to_the_current_profile_only() {
        let ck = SimOptions::parse(&args("--cpu --use-ck-attention")).unwrap();
        assert_eq!(
            ck.comfy_kitchen_line(),
            Some("Using Comfy Kitchen attention")
        );
        assert!(ck.unknown_flags.is_empty());
        let old = SimOptions::parse(&args("--sim-profile 0.3.64 --use-ck-attention")).unwrap();
        assert_eq!(old.comfy_kitchen_line(), None);
        assert_eq!(old.unknown_flags, vec!["--use-ck-attention"]);
        assert!(SimOptions::parse(&args("--sim-profile 9.9")).is_err());
    }
}
