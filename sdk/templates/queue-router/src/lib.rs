//! Template comfyhost plugin: a queue router that refuses workflows with more nodes than the
//! admin allows (`max_nodes` in its config) and otherwise lets the next router decide.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap

use comfyhost_sdk::hooks::queue_router::{BackendStatus, RouteDecision};
use comfyhost_sdk::prelude::*;
use serde::Deserialize;

/// The plugin's configuration; mirrors `config.schema.json` (the host applies its defaults).
#[derive(Debug, Deserialize)]
pub struct Config {
    /// Largest workflow accepted, in nodes.
    pub max_nodes: usize,
}

/// The decision, kept free of host calls so `cargo test` checks it natively.
pub fn decide(workflow: &Workflow, config: &Config) -> RouteDecision {
    let nodes = workflow.nodes.len();
    if nodes > config.max_nodes {
        RouteDecision::Reject(format!(
            "This workflow has {nodes} nodes; this server accepts at most {}.",
            config.max_nodes
        ))
    } else {
        RouteDecision::Pass
    }
}

struct NodeLimit;

impl QueueRouter for NodeLimit {
    fn route(
        submission: Submission,
        _backends: Vec<BackendStatus>,
    ) -> Result<RouteDecision, PluginError> {
        let config: Config = config()?;
        let decision = decide(&submission.workflow, &config);
        if let RouteDecision::Reject(why) = &decision {
            info!("prompt {} rejected: {why}", submission.prompt_id);
        }
        Ok(decision)
    }
}

comfyhost_sdk::export_queue_router!(NodeLimit);

#[cfg(test)]
mod tests {
    use super::*;

    fn workflow(nodes: usize) -> Workflow {
        Workflow {
            nodes: (0..nodes)
                .map(|i| Node::new(i.to_string(), "KSampler"))
                .collect(),
        }
    }

    #[test]
    fn passes_workflows_up_to_the_limit() {
        let config: Config = comfyhost_sdk::config::parse(r#"{"max_nodes": 3}"#).unwrap();
        assert_eq!(decide(&workflow(0), &config), RouteDecision::Pass);
        assert_eq!(decide(&workflow(3), &config), RouteDecision::Pass);
    }

    #[test]
    fn rejects_larger_workflows_with_a_readable_reason() {
        let config = Config { max_nodes: 3 };
        match decide(&workflow(4), &config) {
            RouteDecision::Reject(why) => assert!(
                why.contains("4 nodes") && why.contains("at most 3"),
                "{why}"
            ),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn config_without_max_nodes_is_a_config_error() {
        let err = comfyhost_sdk::config::parse::<Config>("{}").unwrap_err();
        assert!(matches!(err, PluginError::Config(_)), "{err:?}");
    }
}
