//! ComfyUI-like startup log (to stderr, bare messages, as `app/logger.py` prints them).

use crate::options::SimOptions;

/// Lines printed before the server starts listening.
pub fn early_lines(opts: &SimOptions) -> Vec<String> {
    let mut lines = Vec::new();
    for flag in &opts.unknown_flags {
        lines.push(format!(
            "[comfy-sim] accepted flag without simulated effect: {flag}"
        ));
    }
    for cfg in &opts.extra_model_paths_config {
        lines.push(format!(
            "[comfy-sim] extra model paths config accepted but not parsed: {}",
            cfg.display()
        ));
    }
    lines.push("Checkpoint files will always be loaded safely.".into());
    let ram_mb = 24106;
    lines.push(format!("Total VRAM {ram_mb} MB, total RAM {ram_mb} MB"));
    lines.push("pytorch version: 2.8.0+cu128".into());
    lines.push("Set vram state to: DISABLED".into());
    lines.push("Device: cpu".into());
    lines.push(opts.attention_line().into());
    if let Some(ck) = opts.comfy_kitchen_line() {
        lines.push(ck.into());
    }
    lines.push("Python version: 3.11.7 (main, May  9 2026, 07:35:25) [GCC 12.2.0]".into());
    lines.push(format!(
        "ComfyUI version: {}",
        opts.profile.comfyui_version()
    ));
    lines.push("ComfyUI frontend version: 1.27.10".into());
    let web_root = opts.front_end_root.as_ref().map_or_else(
        || "(comfy-sim built-in index page)".to_string(),
        |p| p.display().to_string(),
    );
    lines.push(format!("[Prompt Server] web root: {web_root}"));
    lines.push(String::new());
    lines.push("Import times for custom nodes:".into());
    lines.push(String::new());
    lines
}

/// Lines printed once listening (the last one is the readiness signal).
pub fn ready_lines(address: &str, port: u16) -> Vec<String> {
    let shown = if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_string()
    };
    vec![
        "Starting server".into(),
        String::new(),
        format!("To see the GUI go to: http://{shown}:{port}"),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn readiness_line_matches_comfyui() {
        assert_eq!(
            ready_lines("127.0.0.1", 8188)[2],
            "To see the GUI go to: http://127.0.0.1:8188"
        );
        assert_eq!(
            ready_lines("::1", 8188)[2],
            "To see the GUI go to: http://[::1]:8188"
        );
        let opts = SimOptions::parse(&["--use-sage-attention".to_string()]).unwrap();
        assert!(
            early_lines(&opts)
                .iter()
                .any(|l| l == "Using sage attention")
        );
    }
}
