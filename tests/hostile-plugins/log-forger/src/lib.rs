//! Hostile prompt-transform plugin: when the prompt's client id starts with `attack`, writes
//! 2000 log records of 8 KiB whose text starts with a newline and a forged host log line,
//! prints a forged line on stdout, and rewrites the workflow with 10,000 notes of 10 KiB
//! (also forging lines) and a 2 MiB padding input, so the host would keep and log megabytes
//! per prompt. Other prompts are left unchanged.

wit_bindgen::generate!({ path: "../../../wit", world: "prompt-transform-plugin" });

use comfyhost::plugin::host::{self, LogLevel};
use comfyhost::plugin::types::{InputValue, NodeInput, PluginError, Submission};
use exports::comfyhost::plugin::prompt_transform::{Guest, Rewrite, TransformResult};

struct Plugin;

const FORGED: &str = "\n2026-01-01T00:00:00.000000Z  INFO comfyhost: FORGED admin token accepted";

impl Guest for Plugin {
    fn transform(submission: Submission) -> Result<TransformResult, PluginError> {
        if !submission
            .client_id
            .as_deref()
            .unwrap_or("")
            .starts_with("attack")
        {
            return Ok(TransformResult::Unchanged);
        }
        let filler = "f".repeat(8 * 1024);
        for _ in 0..2000 {
            host::log(LogLevel::Info, &format!("{FORGED}{filler}"));
        }
        println!("stdout{FORGED}");
        let note = format!("{FORGED}{}", "n".repeat(10 * 1024));
        let notes = vec![note; 10_000];
        let mut workflow = submission.workflow;
        if let Some(node) = workflow
            .nodes
            .iter_mut()
            .find(|n| n.class_type == "EmptyImage")
        {
            node.inputs.push(NodeInput {
                name: "comfyhost_padding".into(),
                value: InputValue::Text("p".repeat(2 << 20)),
            });
        }
        Ok(TransformResult::Rewritten(Rewrite { workflow, notes }))
    }
}

export!(Plugin);
