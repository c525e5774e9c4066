//! Logging setup: `RUST_LOG` filter (default `info`), human-readable lines on stderr, or JSON
//! lines with `COMFYHOST_LOG_FORMAT=json`.

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("COMFYHOST_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: ignore the error.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
