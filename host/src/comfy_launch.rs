//! Turns the host configuration (and the attention decision) into the supervisor's
//! configuration: the embedded simulator, a managed ComfyUI, or attach mode.

use anyhow::Context;
use comfyhost_supervisor::{LaunchSpec, SupervisorConfig, Timings};

use crate::config::{ComfyMode, RunArgs};

/// Build the supervisor configuration. `attention_flags` come from the GPU decision and are
/// already filtered to flags this ComfyUI accepts.
pub fn supervisor_config(
    args: &RunArgs,
    attention_flags: &[String],
) -> anyhow::Result<SupervisorConfig> {
    let (spec, timings) = match args.comfy_mode() {
        ComfyMode::Attach { url } => {
            return SupervisorConfig::attach(&url).with_context(|| format!("--attach {url}"));
        }
        ComfyMode::Managed {
            python,
            comfyui_dir,
        } => {
            anyhow::ensure!(
                comfyui_dir.join("main.py").is_file(),
                "{} does not look like a ComfyUI checkout (no main.py)",
                comfyui_dir.display()
            );
            (
                LaunchSpec::comfyui(python, comfyui_dir, args.comfyui_port),
                Timings::default(),
            )
        }
        ComfyMode::Simulator => {
            let exe = std::env::current_exe().context("locating the comfyhost executable")?;
            let workdir = args.data_dir.join("comfyui");
            std::fs::create_dir_all(&workdir)
                .with_context(|| format!("creating {}", workdir.display()))?;
            let mut spec = LaunchSpec::comfyui(exe, workdir, args.comfyui_port);
            spec.args_prefix = vec!["simulate-comfyui".to_string()];
            (spec, Timings::simulator())
        }
    };
    let mut spec = spec;
    spec.output_dir = Some(args.output_dir());
    spec.input_dir = Some(args.input_dir());
    spec.user_dir = Some(args.user_dir());
    spec.temp_dir = Some(args.temp_dir());
    // Without this ComfyUI keeps its database in `<ComfyUI>/user`, shared by every instance on
    // a volume and failing when that folder is missing.
    spec.database_file = Some(args.user_dir().join("comfyui.db"));
    spec.extra_model_paths_configs = args.extra_model_paths.iter().cloned().collect();
    spec.extra_flags = attention_flags.to_vec();
    spec.extra_args = args.comfyui_extra_args();
    let mut config = SupervisorConfig::managed(spec);
    config.timings = Timings {
        startup_timeout: args.startup_timeout().unwrap_or(timings.startup_timeout),
        ..timings
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use comfyhost_supervisor::{Target, command_line};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn simulator_command_line_is_the_host_itself() {
        let args = Cli::parse_from(["comfyhost", "--data-dir", "/d", "--comfyui-port", "9000"]).run;
        let cfg = supervisor_config(&args, &["--cpu".to_string()]).unwrap();
        let Target::Managed(spec) = &cfg.target else {
            panic!("managed")
        };
        let argv = command_line(spec);
        assert_eq!(argv[1], "simulate-comfyui");
        let joined = argv[1..].join(" ");
        assert!(
            joined.contains("--listen 127.0.0.1 --port 9000"),
            "{joined}"
        );
        assert!(
            joined.contains("--output-directory /d/comfyui/output"),
            "{joined}"
        );
        assert!(joined.ends_with("--cpu"), "{joined}");
    }

    #[test]
    fn managed_requires_a_comfyui_checkout() {
        let dir = tempfile::tempdir().unwrap();
        let args =
            Cli::parse_from(["comfyhost", "--comfyui-dir", dir.path().to_str().unwrap()]).run;
        let err = supervisor_config(&args, &[]).unwrap_err();
        assert!(err.to_string().contains("main.py"), "{err}");
        std::fs::write(dir.path().join("main.py"), "").unwrap();
        let args = Cli::parse_from([
            "comfyhost",
            "--comfyui-dir",
            dir.path().to_str().unwrap(),
            "--comfyui-arg=--preview-method",
            "--comfyui-arg",
            "auto",
            "--comfyui-arg",
            "--front-end-root /a dir/with spaces",
        ])
        .run;
        let cfg = supervisor_config(&args, &[]).unwrap();
        let Target::Managed(spec) = &cfg.target else {
            panic!("managed")
        };
        assert_eq!(spec.args_prefix, ["main.py"]);
        assert_eq!(
            spec.extra_args,
            [
                "--preview-method",
                "auto",
                "--front-end-root /a dir/with spaces"
            ],
            "one argument each, verbatim"
        );
        assert_eq!(cfg.timings.startup_timeout.as_secs(), 600);
    }

    #[test]
    fn attach_mode_validates_the_url() {
        let args = Cli::parse_from(["comfyhost", "--attach", "ftp://x"]).run;
        assert!(supervisor_config(&args, &[]).is_err());
    }
}
