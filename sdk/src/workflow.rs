//! Navigation and editing of API-format workflows (the WIT `workflow` record).
//!
//! Free functions take the workflow or node explicitly; [`WorkflowExt`] and [`NodeExt`] offer
//! the same operations as methods (`wf.nodes_by_class("KSampler")`, `node.text_input("text")`).

use std::collections::{HashSet, VecDeque};

use crate::types::{InputValue, Node, NodeInput, NodeLink, PluginError, Workflow};

/// Why a workflow edit failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    /// No node has this id.
    #[error("workflow has no node with id `{0}`")]
    NodeNotFound(String),
}

impl From<WorkflowError> for PluginError {
    fn from(e: WorkflowError) -> Self {
        PluginError::InvalidInput(e.to_string())
    }
}

/// The node with this id.
pub fn node<'a>(wf: &'a Workflow, id: &str) -> Option<&'a Node> {
    wf.nodes.iter().find(|n| n.id == id)
}

/// The node with this id, for editing.
pub fn node_mut<'a>(wf: &'a mut Workflow, id: &str) -> Option<&'a mut Node> {
    wf.nodes.iter_mut().find(|n| n.id == id)
}

/// Nodes of one ComfyUI class (`KSampler`, `CheckpointLoaderSimple`, ...), in workflow order.
pub fn nodes_by_class<'a>(
    wf: &'a Workflow,
    class_type: &'a str,
) -> impl Iterator<Item = &'a Node> + 'a {
    wf.nodes.iter().filter(move |n| n.class_type == class_type)
}

/// The value of a node input, whatever its kind.
pub fn input<'a>(node: &'a Node, name: &str) -> Option<&'a InputValue> {
    node.inputs
        .iter()
        .find(|i| i.name == name)
        .map(|i| &i.value)
}

/// A string widget's value; `None` when absent or not text (e.g. linked).
pub fn text_input<'a>(node: &'a Node, name: &str) -> Option<&'a str> {
    match input(node, name)? {
        InputValue::Text(s) => Some(s),
        _ => None,
    }
}

/// An integer widget's value (seed, steps, width, ...).
pub fn integer_input(node: &Node, name: &str) -> Option<i64> {
    match input(node, name)? {
        InputValue::Integer(i) => Some(*i),
        _ => None,
    }
}

/// A numeric widget's value; integers are widened, since ComfyUI JSON does not distinguish `7` from `7.0`.
pub fn number_input(node: &Node, name: &str) -> Option<f64> {
    match input(node, name)? {
        InputValue::Number(x) => Some(*x),
        InputValue::Integer(i) => Some(*i as f64),
        _ => None,
    }
}

/// A boolean widget's value.
pub fn bool_input(node: &Node, name: &str) -> Option<bool> {
    match input(node, name)? {
        InputValue::Boolean(b) => Some(*b),
        _ => None,
    }
}

/// The link feeding an input, when it is connected.
pub fn link_input<'a>(node: &'a Node, name: &str) -> Option<&'a NodeLink> {
    match input(node, name)? {
        InputValue::Link(l) => Some(l),
        _ => None,
    }
}

/// Set an input on a node, replacing its value in place or appending it; returns the old value.
pub fn set_node_input(
    node: &mut Node,
    name: &str,
    value: impl Into<InputValue>,
) -> Option<InputValue> {
    let value = value.into();
    match node.inputs.iter_mut().find(|i| i.name == name) {
        Some(existing) => Some(std::mem::replace(&mut existing.value, value)),
        None => {
            node.inputs.push(NodeInput {
                name: name.to_owned(),
                value,
            });
            None
        }
    }
}

/// Set an input of the node `node_id`; returns the old value, or an error when the node is missing.
pub fn set_input(
    wf: &mut Workflow,
    node_id: &str,
    name: &str,
    value: impl Into<InputValue>,
) -> Result<Option<InputValue>, WorkflowError> {
    let node =
        node_mut(wf, node_id).ok_or_else(|| WorkflowError::NodeNotFound(node_id.to_owned()))?;
    Ok(set_node_input(node, name, value))
}

/// The node producing a linked value; `None` for a dangling link.
pub fn follow_link<'a>(wf: &'a Workflow, link: &NodeLink) -> Option<&'a Node> {
    node(wf, &link.node_id)
}

/// The node connected to `input_name` of `node_id` (e.g. the model loader feeding a KSampler's `model`).
pub fn upstream_of<'a>(wf: &'a Workflow, node_id: &str, input_name: &str) -> Option<&'a Node> {
    follow_link(wf, link_input(node(wf, node_id)?, input_name)?)
}

/// Every node `node_id` depends on, directly or transitively, nearest first. Cycles and dangling
/// links (both invalid in ComfyUI, but plugins see untrusted input) are tolerated.
pub fn ancestors<'a>(wf: &'a Workflow, node_id: &str) -> Vec<&'a Node> {
    let mut seen: HashSet<&str> = HashSet::from([node_id]);
    let mut queue: VecDeque<&Node> = node(wf, node_id).into_iter().collect();
    let mut out = Vec::new();
    while let Some(current) = queue.pop_front() {
        for i in &current.inputs {
            if let InputValue::Link(link) = &i.value
                && let Some(up) = follow_link(wf, link)
                && seen.insert(up.id.as_str())
            {
                out.push(up);
                queue.push_back(up);
            }
        }
    }
    out
}

/// Nodes that take an input from `node_id`, with the input name and the output slot used.
pub fn downstream_of<'a>(
    wf: &'a Workflow,
    node_id: &'a str,
) -> impl Iterator<Item = (&'a Node, &'a str, u32)> + 'a {
    wf.nodes.iter().flat_map(move |n| {
        n.inputs.iter().filter_map(move |i| match &i.value {
            InputValue::Link(l) if l.node_id == node_id => {
                Some((n, i.name.as_str(), l.output_index))
            }
            _ => None,
        })
    })
}

/// Method forms of the workflow functions.
pub trait WorkflowExt {
    /// See [`node`].
    fn node(&self, id: &str) -> Option<&Node>;
    /// See [`node_mut`].
    fn node_mut(&mut self, id: &str) -> Option<&mut Node>;
    /// See [`nodes_by_class`].
    fn nodes_by_class<'a>(&'a self, class_type: &'a str) -> impl Iterator<Item = &'a Node> + 'a;
    /// See [`set_input`].
    fn set_input(
        &mut self,
        node_id: &str,
        name: &str,
        value: impl Into<InputValue>,
    ) -> Result<Option<InputValue>, WorkflowError>;
    /// See [`follow_link`].
    fn follow_link(&self, link: &NodeLink) -> Option<&Node>;
    /// See [`upstream_of`].
    fn upstream_of(&self, node_id: &str, input_name: &str) -> Option<&Node>;
    /// See [`ancestors`].
    fn ancestors(&self, node_id: &str) -> Vec<&Node>;
}

impl WorkflowExt for Workflow {
    fn node(&self, id: &str) -> Option<&Node> {
        node(self, id)
    }
    fn node_mut(&mut self, id: &str) -> Option<&mut Node> {
        node_mut(self, id)
    }
    fn nodes_by_class<'a>(&'a self, class_type: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        nodes_by_class(self, class_type)
    }
    fn set_input(
        &mut self,
        node_id: &str,
        name: &str,
        value: impl Into<InputValue>,
    ) -> Result<Option<InputValue>, WorkflowError> {
        set_input(self, node_id, name, value)
    }
    fn follow_link(&self, link: &NodeLink) -> Option<&Node> {
        follow_link(self, link)
    }
    fn upstream_of(&self, node_id: &str, input_name: &str) -> Option<&Node> {
        upstream_of(self, node_id, input_name)
    }
    fn ancestors(&self, node_id: &str) -> Vec<&Node> {
        ancestors(self, node_id)
    }
}

/// Method forms of the node-input functions.
pub trait NodeExt {
    /// See [`input`].
    fn input(&self, name: &str) -> Option<&InputValue>;
    /// See [`text_input`].
    fn text_input(&self, name: &str) -> Option<&str>;
    /// See [`integer_input`].
    fn integer_input(&self, name: &str) -> Option<i64>;
    /// See [`number_input`].
    fn number_input(&self, name: &str) -> Option<f64>;
    /// See [`bool_input`].
    fn bool_input(&self, name: &str) -> Option<bool>;
    /// See [`link_input`].
    fn link_input(&self, name: &str) -> Option<&NodeLink>;
    /// See [`set_node_input`].
    fn set_input(&mut self, name: &str, value: impl Into<InputValue>) -> Option<InputValue>;
}

impl NodeExt for Node {
    fn input(&self, name: &str) -> Option<&InputValue> {
        input(self, name)
    }
    fn text_input(&self, name: &str) -> Option<&str> {
        text_input(self, name)
    }
    fn integer_input(&self, name: &str) -> Option<i64> {
        integer_input(self, name)
    }
    fn number_input(&self, name: &str) -> Option<f64> {
        number_input(self, name)
    }
    fn bool_input(&self, name: &str) -> Option<bool> {
        bool_input(self, name)
    }
    fn link_input(&self, name: &str) -> Option<&NodeLink> {
        link_input(self, name)
    }
    fn set_input(&mut self, name: &str, value: impl Into<InputValue>) -> Option<InputValue> {
        set_node_input(self, name, value)
    }
}

impl From<&str> for InputValue {
    fn from(s: &str) -> Self {
        InputValue::Text(s.to_owned())
    }
}
impl From<String> for InputValue {
    fn from(s: String) -> Self {
        InputValue::Text(s)
    }
}
impl From<i64> for InputValue {
    fn from(i: i64) -> Self {
        InputValue::Integer(i)
    }
}
impl From<f64> for InputValue {
    fn from(x: f64) -> Self {
        InputValue::Number(x)
    }
}
impl From<bool> for InputValue {
    fn from(b: bool) -> Self {
        InputValue::Boolean(b)
    }
}
impl From<NodeLink> for InputValue {
    fn from(l: NodeLink) -> Self {
        InputValue::Link(l)
    }
}

impl NodeLink {
    /// A link to output slot `output_index` of node `node_id` (`["4", 0]` in ComfyUI JSON).
    pub fn new(node_id: impl Into<String>, output_index: u32) -> Self {
        NodeLink {
            node_id: node_id.into(),
            output_index,
        }
    }
}

impl Node {
    /// A node with no inputs yet; add them with [`NodeExt::set_input`].
    pub fn new(id: impl Into<String>, class_type: impl Into<String>) -> Self {
        Node {
            id: id.into(),
            class_type: class_type.into(),
            title: None,
            inputs: Vec::new(),
        }
    }

    /// Builder form of [`NodeExt::set_input`].
    pub fn with_input(mut self, name: &str, value: impl Into<InputValue>) -> Self {
        set_node_input(&mut self, name, value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default text-to-image graph: checkpoint -> two prompts -> latent -> sampler -> decode -> save.
    fn txt2img() -> Workflow {
        Workflow {
            nodes: vec![
                Node::new("4", "CheckpointLoaderSimple")
                    .with_input("ckpt_name", "sd15.safetensors"),
                Node::new("6", "CLIPTextEncode")
                    .with_input("text", "a cat")
                    .with_input("clip", NodeLink::new("4", 1)),
                Node::new("7", "CLIPTextEncode")
                    .with_input("text", "blurry")
                    .with_input("clip", NodeLink::new("4", 1)),
                Node::new("5", "EmptyLatentImage")
                    .with_input("width", 512i64)
                    .with_input("height", 512i64),
                Node::new("3", "KSampler")
                    .with_input("seed", 42i64)
                    .with_input("cfg", 7i64)
                    .with_input("denoise", 1.0)
                    .with_input("model", NodeLink::new("4", 0))
                    .with_input("positive", NodeLink::new("6", 0))
                    .with_input("negative", NodeLink::new("7", 0))
                    .with_input("latent_image", NodeLink::new("5", 0)),
                Node::new("8", "VAEDecode")
                    .with_input("samples", NodeLink::new("3", 0))
                    .with_input("vae", NodeLink::new("4", 2)),
                Node::new("9", "SaveImage")
                    .with_input("images", NodeLink::new("8", 0))
                    .with_input("add_watermark", false),
            ],
        }
    }

    #[test]
    fn finds_nodes_by_id_and_class() {
        let wf = txt2img();
        assert_eq!(
            wf.node("3").map(|n| n.class_type.as_str()),
            Some("KSampler")
        );
        assert!(wf.node("404").is_none());
        let prompts: Vec<&str> = wf
            .nodes_by_class("CLIPTextEncode")
            .map(|n| n.id.as_str())
            .collect();
        assert_eq!(prompts, ["6", "7"]);
        assert_eq!(wf.nodes_by_class("NoSuchNode").count(), 0);
    }

    #[test]
    fn typed_inputs_return_none_for_other_kinds() {
        let wf = txt2img();
        let sampler = wf.node("3").unwrap();
        assert_eq!(sampler.integer_input("seed"), Some(42));
        assert_eq!(
            sampler.number_input("cfg"),
            Some(7.0),
            "integers widen to numbers"
        );
        assert_eq!(sampler.number_input("denoise"), Some(1.0));
        assert_eq!(sampler.integer_input("denoise"), None);
        assert_eq!(sampler.text_input("model"), None, "a link is not text");
        assert_eq!(sampler.link_input("model"), Some(&NodeLink::new("4", 0)));
        assert_eq!(sampler.input("missing"), None);
        assert_eq!(wf.node("6").unwrap().text_input("text"), Some("a cat"));
        assert_eq!(
            wf.node("9").unwrap().bool_input("add_watermark"),
            Some(false)
        );
    }

    #[test]
    fn follows_links_upstream_and_downstream() {
        let wf = txt2img();
        assert_eq!(
            wf.upstream_of("3", "model").map(|n| n.id.as_str()),
            Some("4")
        );
        assert_eq!(
            wf.upstream_of("3", "seed"),
            None,
            "widget inputs have no upstream"
        );
        assert_eq!(wf.upstream_of("404", "model"), None);
        let down: Vec<(&str, &str, u32)> = downstream_of(&wf, "4")
            .map(|(n, i, o)| (n.id.as_str(), i, o))
            .collect();
        assert_eq!(
            down,
            [
                ("6", "clip", 1),
                ("7", "clip", 1),
                ("3", "model", 0),
                ("8", "vae", 2)
            ]
        );
        let dangling = NodeLink::new("99", 0);
        assert_eq!(wf.follow_link(&dangling), None);
    }

    #[test]
    fn ancestors_are_nearest_first_and_unique() {
        let wf = txt2img();
        let ids: Vec<&str> = wf.ancestors("9").iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["8", "3", "4", "6", "7", "5"]);
        assert!(wf.ancestors("4").is_empty());
        assert!(wf.ancestors("404").is_empty());
    }

    #[test]
    fn ancestors_terminate_on_cycles() {
        let wf = Workflow {
            nodes: vec![
                Node::new("a", "X").with_input("in", NodeLink::new("b", 0)),
                Node::new("b", "X")
                    .with_input("in", NodeLink::new("a", 0))
                    .with_input("ghost", NodeLink::new("zz", 0)),
            ],
        };
        let ids: Vec<&str> = wf.ancestors("a").iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["b"]);
    }

    #[test]
    fn set_input_replaces_in_place_or_appends() {
        let mut wf = txt2img();
        let old = wf.set_input("3", "seed", 7i64).unwrap();
        assert_eq!(old, Some(InputValue::Integer(42)));
        let sampler = wf.node("3").unwrap();
        assert_eq!(sampler.inputs[0].name, "seed", "input order is kept");
        assert_eq!(sampler.integer_input("seed"), Some(7));

        assert_eq!(wf.set_input("3", "scheduler", "karras").unwrap(), None);
        assert_eq!(
            wf.node("3").unwrap().inputs.last().map(|i| i.name.as_str()),
            Some("scheduler")
        );
    }

    #[test]
    fn set_input_on_missing_node_is_a_typed_error() {
        let mut wf = txt2img();
        let err = wf.set_input("404", "seed", 1i64).unwrap_err();
        assert_eq!(err, WorkflowError::NodeNotFound("404".into()));
        assert!(
            matches!(PluginError::from(err), PluginError::InvalidInput(m) if m.contains("404"))
        );
    }
}
