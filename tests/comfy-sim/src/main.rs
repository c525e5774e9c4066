//! `comfy-sim` binary: a ComfyUI 0.3.64 look-alike for tests and the embedded default backend.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(comfy_sim::cli_main(args));
}
