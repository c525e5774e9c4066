//! comfy-sim: a faithful ComfyUI simulator: the current 0.33.0 by default, 0.3.64 on request
//! ([`Profile`], `--sim-profile 0.3.64`).
//!
//! It speaks ComfyUI's HTTP + WebSocket protocol (validation errors, queue, history, caching,
//! progress, previews, interrupts) with node behaviour simulated on solid-colour images, and
//! writes real PNG files. `comfyhost` runs it as its default backend
//! (`comfyhost simulate-comfyui <args>` → [`cli_main`]); integration tests use [`serve`].
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let opts = comfy_sim::SimOptions { output_dir: "/tmp/out".into(), ..Default::default() };
//! comfy_sim::serve(opts, listener).await
//! # }
//! ```

pub mod catalogue;
pub mod execution;
pub mod options;
pub mod paths;
pub mod png;
pub mod profile;
pub mod pyfmt;
pub mod pyjson;
pub mod routes;
pub mod startup;
pub mod state;
pub mod users;
pub mod validation;
pub mod ws;

use std::sync::Arc;

use anyhow::Context;

pub use options::{OptionsError, SimOptions};
pub use profile::Profile;

/// Creates the directories the simulator writes to and empties `<temp>/temp` (as ComfyUI does).
fn prepare_dirs(opts: &SimOptions) -> anyhow::Result<()> {
    for dir in [&opts.output_dir, &opts.input_dir, &opts.user_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let temp = opts.temp_dir.join("temp");
    if temp.is_dir() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    std::fs::create_dir_all(&temp).with_context(|| format!("creating {}", temp.display()))?;
    Ok(())
}

async fn serve_inner(
    opts: SimOptions,
    listener: tokio::net::TcpListener,
    allow_crash: bool,
) -> anyhow::Result<()> {
    prepare_dirs(&opts)?;
    let delay = opts.startup_delay;
    let sim = Arc::new(state::Sim::new(opts, allow_crash));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let worker = tokio::spawn(execution::worker(sim.clone()));
    let app = routes::router(sim);
    let result = axum::serve(listener, app).await.context("serving HTTP");
    worker.abort();
    result
}

/// Serves the simulator on an already bound `listener` until the task is dropped.
///
/// `--sim-crash-after-prompts` is ignored here (it would kill the calling process).
pub async fn serve(opts: SimOptions, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    serve_inner(opts, listener, false).await
}

/// Command-line entry (`comfy-sim ARGS` / `comfyhost simulate-comfyui ARGS`); returns the exit code.
pub fn cli_main(args: Vec<String>) -> i32 {
    let opts = match SimOptions::parse(&args) {
        Ok(o) => o,
        Err(OptionsError::HelpRequested) => {
            print!("{}", options::usage());
            return 0;
        }
        Err(e) => {
            eprint!("{}", options::usage());
            eprintln!("comfy-sim: error: {e}");
            return 2;
        }
    };
    let _ = tracing_subscriber::fmt()
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COMFY_SIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("comfy-sim: cannot start runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(async move {
        for line in startup::early_lines(&opts) {
            eprintln!("{line}");
        }
        if !opts.startup_delay.is_zero() {
            tokio::time::sleep(opts.startup_delay).await;
        }
        let address = opts
            .listen
            .split(',')
            .next()
            .unwrap_or("127.0.0.1")
            .trim()
            .to_string();
        let listener = match tokio::net::TcpListener::bind((address.as_str(), opts.port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "Port {} is already in use on address {address}? bind failed: {e}",
                    opts.port
                );
                return 1;
            }
        };
        let port = listener.local_addr().map_or(opts.port, |a| a.port());
        for line in startup::ready_lines(&address, port) {
            eprintln!("{line}");
        }
        let opts = SimOptions {
            startup_delay: std::time::Duration::ZERO,
            ..opts
        };
        match serve_inner(opts, listener, true).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("comfy-sim: {e:#}");
                1
            }
        }
    })
}
