//! Template comfyhost plugin: a prompt transform that appends the admin's style (`suffix` in
//! its config) to the positive prompt of every sampler, and says so in the job's notes.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap

use comfyhost_sdk::hooks::prompt_transform::{Rewrite, TransformResult};
use comfyhost_sdk::prelude::*;
use comfyhost_sdk::workflow::{set_input, text_input, upstream_of};
use serde::Deserialize;

/// The plugin's configuration; mirrors `config.schema.json` (the host applies its defaults).
#[derive(Debug, Deserialize)]
pub struct Config {
    /// Text appended to the positive prompt.
    pub suffix: String,
}

/// Appends `config.suffix` to the text of each `CLIPTextEncode` feeding a sampler's `positive`
/// input (never the negative one). Returns the notes, empty when nothing changed.
pub fn apply(workflow: &mut Workflow, config: &Config) -> Vec<String> {
    let suffix = config.suffix.trim();
    if suffix.is_empty() {
        return Vec::new();
    }
    let mut targets: Vec<(String, String)> = Vec::new();
    for sampler in workflow
        .nodes
        .iter()
        .filter(|n| n.class_type.starts_with("KSampler"))
    {
        let Some(encoder) = upstream_of(workflow, &sampler.id, "positive") else {
            continue;
        };
        let Some(text) = text_input(encoder, "text") else {
            continue;
        };
        let already = targets.iter().any(|(id, _)| *id == encoder.id);
        if !already && !text.contains(suffix) {
            targets.push((encoder.id.clone(), format!("{}, {suffix}", text.trim_end())));
        }
    }
    let mut notes = Vec::new();
    for (id, text) in targets {
        if set_input(workflow, &id, "text", text).is_ok() {
            notes.push(format!(
                "node {id}: appended \"{suffix}\" to the positive prompt"
            ));
        }
    }
    notes
}

struct StyleSuffix;

impl PromptTransform for StyleSuffix {
    fn transform(submission: Submission) -> Result<TransformResult, PluginError> {
        let config: Config = config()?;
        let mut workflow = submission.workflow;
        let notes = apply(&mut workflow, &config);
        if notes.is_empty() {
            return Ok(TransformResult::Unchanged);
        }
        info!("prompt {}: {}", submission.prompt_id, notes.join("; "));
        Ok(TransformResult::Rewritten(Rewrite { workflow, notes }))
    }
}

comfyhost_sdk::export_prompt_transform!(StyleSuffix);

#[cfg(test)]
mod tests {
    use super::*;
    use comfyhost_sdk::testing::FakeHost;

    /// A sampler with a positive and a negative prompt.
    fn workflow() -> Workflow {
        Workflow {
            nodes: vec![
                Node::new("6", "CLIPTextEncode").with_input("text", "a cat"),
                Node::new("7", "CLIPTextEncode").with_input("text", "blurry"),
                Node::new("3", "KSampler")
                    .with_input("positive", NodeLink::new("6", 0))
                    .with_input("negative", NodeLink::new("7", 0)),
            ],
        }
    }

    fn submission() -> Submission {
        Submission {
            prompt_id: "p1".into(),
            client_id: None,
            user: None,
            workflow: workflow(),
            flags: Vec::new(),
        }
    }

    #[test]
    fn appends_to_the_positive_prompt_only() {
        let mut wf = workflow();
        let notes = apply(
            &mut wf,
            &Config {
                suffix: "cinematic".into(),
            },
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(text_input(&wf.nodes[0], "text"), Some("a cat, cinematic"));
        assert_eq!(text_input(&wf.nodes[1], "text"), Some("blurry"));
    }

    #[test]
    fn the_hook_reads_its_config_from_the_host() {
        let host = FakeHost::new()
            .config(r#"{"suffix": "oil painting"}"#)
            .install();
        let TransformResult::Rewritten(r) = StyleSuffix::transform(submission()).unwrap() else {
            panic!("expected a rewrite");
        };
        assert_eq!(
            text_input(&r.workflow.nodes[0], "text"),
            Some("a cat, oil painting")
        );
        assert!(host.logged("oil painting"));
        // Applied twice, the style is not repeated.
        let again = Submission {
            workflow: r.workflow,
            ..submission()
        };
        assert!(matches!(
            StyleSuffix::transform(again).unwrap(),
            TransformResult::Unchanged
        ));
    }
}
