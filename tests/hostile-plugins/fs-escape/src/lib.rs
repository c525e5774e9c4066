//! Hostile plugin: probes the filesystem sandbox and reports every outcome in a
//! `route::reject` text (`name=ok:...` or `name=err:...`, separated by `;`).
//!
//! Probes: read `/data/hello.txt` (granted ro dir), read `/etc/passwd`, read
//! `/data/../outside.txt` (escape through `..`), write `/data/new.txt` (ro dir), write
//! `/scratch/new.txt` (granted rw dir), list `/`.

wit_bindgen::generate!({ path: "../../../wit", world: "queue-router-plugin" });

use comfyhost::plugin::types::{PluginError, Submission};
use exports::comfyhost::plugin::queue_router::{BackendStatus, Guest, RouteDecision as Route};

struct Plugin;

fn probe<T: std::fmt::Display, E: std::fmt::Display>(name: &str, r: Result<T, E>) -> String {
    match r {
        Ok(v) => format!("{name}=ok:{v}"),
        Err(e) => format!("{name}=err:{e}"),
    }
}

impl Guest for Plugin {
    fn route(_submission: Submission, _backends: Vec<BackendStatus>) -> Result<Route, PluginError> {
        let report = [
            probe("inside", std::fs::read_to_string("/data/hello.txt")),
            probe(
                "passwd",
                std::fs::read_to_string("/etc/passwd").map(|s| s.len()),
            ),
            probe("escape", std::fs::read_to_string("/data/../outside.txt")),
            probe(
                "ro_write",
                std::fs::write("/data/new.txt", b"x").map(|()| "written"),
            ),
            probe(
                "rw_write",
                std::fs::write("/scratch/new.txt", b"rw").map(|()| "written"),
            ),
            probe(
                "root_list",
                std::fs::read_dir("/").map(|d| d.filter_map(|e| e.ok()).count()),
            ),
        ]
        .join(";");
        Ok(Route::Reject(report))
    }
}

export!(Plugin);
