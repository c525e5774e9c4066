//! Hostile plugin with a read-only grant on `/in` and a read-write one on `/data`. Client id
//! `attack-fds...`: opens `/in/probe.txt` again and again, holding every handle, and refuses
//! the prompt with `opened=N err=E` if the host ever lets it stop on its own. Client id
//! `attack-links...`: tries symlinks in `/data` that point outside it (absolute, `..`) and one
//! that stays inside, refusing the prompt with `abs=..;up=..;inside=..`. Other prompts pass.

wit_bindgen::generate!({ path: "../../../wit", world: "queue-router-plugin" });

use comfyhost::plugin::types::{PluginError, Submission};
use exports::comfyhost::plugin::queue_router::{BackendStatus, Guest, RouteDecision as Route};

struct Plugin;

#[allow(deprecated)] // `soft_link` is the stable way to make a symlink on WASI
fn link(target: &str, at: &str) -> String {
    match std::fs::soft_link(target, at) {
        Ok(()) => "ok".into(),
        Err(e) => format!("err:{e}"),
    }
}

impl Guest for Plugin {
    fn route(submission: Submission, _backends: Vec<BackendStatus>) -> Result<Route, PluginError> {
        let client = submission.client_id.unwrap_or_default();
        let id = &submission.prompt_id;
        if client.starts_with("attack-links") {
            return Ok(Route::Reject(format!(
                "abs={};up={};inside={}",
                link("/etc/passwd", &format!("/data/abs-{id}")),
                link("../../../../../../etc/passwd", &format!("/data/up-{id}")),
                link("inside.txt", &format!("/data/inside-{id}")),
            )));
        }
        if !client.starts_with("attack-fds") {
            return Ok(Route::Pass);
        }
        let mut held = Vec::new();
        let mut err = String::from("none");
        while held.len() < 100_000 {
            match std::fs::File::open("/in/probe.txt") {
                Ok(f) => held.push(f),
                Err(e) => {
                    err = e.to_string();
                    break;
                }
            }
        }
        Ok(Route::Reject(format!("opened={} err={err}", held.len())))
    }
}

export!(Plugin);
