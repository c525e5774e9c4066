//! `comfyhost`: runs beside ComfyUI, supervises it, proxies its API and runs sandboxed wasm
//! plugins. Subcommands: `run` (default), `gpu` (GPU + attention report), `plugin` (author
//! tools: `new`, `call`), and the internal
//! `simulate-comfyui` (the embedded ComfyUI simulator the host launches when no real ComfyUI is
//! configured).

use clap::{Parser, Subcommand};

use comfyhost::config::RunArgs;

#[derive(Parser)]
#[command(
    name = "comfyhost",
    version,
    about = "Sandboxed plugin host and supervisor for ComfyUI"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Supervise ComfyUI (or the simulator), proxy it, and run plugins (the default).
    Run(Box<RunArgs>),
    /// Print the GPU inventory, the attention decision and its reasons.
    Gpu(comfyhost::gpu_cli::GpuArgs),
    /// Plugin author tools: scaffold a plugin, run one hook call without a host.
    Plugin(comfyhost::plugin_cli::PluginArgs),
    /// Run the built-in ComfyUI simulator (what the host launches when no ComfyUI is configured).
    #[command(hide = true, disable_help_flag = true)]
    SimulateComfyui {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> std::process::ExitCode {
    comfyhost::memory::tune_allocator();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::SimulateComfyui { args }) => {
            let mut argv = vec!["comfy-sim".to_string()];
            argv.extend(args);
            exit_code(comfy_sim::cli_main(argv))
        }
        Some(Command::Gpu(args)) => run_async(comfyhost::gpu_cli::run(args)),
        Some(Command::Plugin(args)) => run_async(comfyhost::plugin_cli::run(args)),
        Some(Command::Run(args)) => run_async(comfyhost::app::run(*args)),
        None => run_async(comfyhost::app::run(cli.run)),
    }
}

fn run_async(fut: impl std::future::Future<Output = anyhow::Result<()>>) -> std::process::ExitCode {
    comfyhost::telemetry::init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("comfyhost: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match rt.block_on(fut) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("comfyhost: {e:#}");
            std::process::ExitCode::FAILURE
        }
    };
    // Do not wait for blocking tasks still running (a plugin compile, a kv write): shutdown
    // stays prompt whatever a plugin does.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    code
}

fn exit_code(code: i32) -> std::process::ExitCode {
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
