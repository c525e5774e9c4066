//! Prints the GPU report the way `comfyhost gpu` does.
//!
//! `cargo run -p comfyhost-gpu --example gpu_report -- <python> <comfyui-dir> [--json]`

use std::path::PathBuf;

use comfyhost_gpu::{DetectConfig, full_report};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = DetectConfig {
        python: PathBuf::from(args.first().map_or("python3", String::as_str)),
        comfyui_dir: PathBuf::from(args.get(1).map_or(".", String::as_str)),
        ..DetectConfig::default()
    };
    let report = full_report(&cfg).await;
    if args.iter().any(|a| a == "--json") {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("cannot serialise report: {e}"),
        }
    } else {
        print!("{}", report.render_text());
    }
}
