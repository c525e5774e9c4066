//! axe-core (from npm; `scripts/test.sh` unpacks it and sets `COMFYHOST_AXE_JS`) injected into
//! a page through the DevTools client, for the dashboard's accessibility checks. Tests skip
//! the check with a message when it is not there, unless `COMFYHOST_REQUIRE_BROWSER=1` (CI).

use std::path::PathBuf;

use serde_json::Value;

use super::browser::Browser;

/// `axe.min.js`: `$COMFYHOST_AXE_JS`, else `$CARGO_TARGET_DIR` or `target/` under
/// `axe-core-*/package/`. `None` (after printing why) when it is missing.
pub fn source() -> Option<String> {
    let explicit = std::env::var_os("COMFYHOST_AXE_JS").map(PathBuf::from);
    let found = explicit.clone().or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| super::wasm::workspace_root().join("target"));
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&target)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("axe-core"))
            })
            .collect();
        dirs.sort();
        dirs.into_iter()
            .rev()
            .map(|d| d.join("package/axe.min.js"))
            .find(|p| p.exists())
    });
    match found.and_then(|p| std::fs::read_to_string(p).ok()) {
        Some(js) => Some(js),
        None => {
            let why = "axe-core unavailable: accessibility check skipped (scripts/test.sh installs it with `npm pack axe-core`; or set COMFYHOST_AXE_JS to axe.min.js)";
            assert!(
                std::env::var("COMFYHOST_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "{why} but COMFYHOST_REQUIRE_BROWSER=1"
            );
            eprintln!("{why}");
            None
        }
    }
}

/// Runs axe-core's WCAG 2 A/AA rules on the current page (injecting it first when the page
/// does not have it) and returns the serious and critical violations, each as
/// `{id, impact, help, nodes: ["selector: summary", ...]}`.
pub async fn serious_violations(b: &mut Browser, axe_js: &str) -> Vec<Value> {
    if b.eval("typeof window.axe === 'undefined'").await == Value::Bool(true) {
        b.eval(&format!("{axe_js};\ntrue")).await;
    }
    let v = b
        .eval(
            "axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa'] }, resultTypes: ['violations'] })\
             .then(r => r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')\
             .map(v => ({ id: v.id, impact: v.impact, help: v.help, \
                          nodes: v.nodes.slice(0, 8).map(n => n.target.join(' ') + ': ' + (n.failureSummary || '').replace(/\\s+/g, ' ')) })))",
        )
        .await;
    v.as_array().cloned().unwrap_or_default()
}
