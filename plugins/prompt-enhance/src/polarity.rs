//! Which text encoders feed a sampler's `positive` input and which its `negative`, decided by
//! following links from the samplers (titles are only a fallback for encoders no sampler uses).

use std::collections::{BTreeSet, HashSet};

use comfyhost_sdk::types::{InputValue, Node, Workflow};
use comfyhost_sdk::workflow::{follow_link, node};

/// Text inputs a CLIPTextEncode-style node carries its prompt in.
pub const TEXT_INPUTS: &[&str] = &["text", "text_g", "text_l", "clip_l", "t5xxl"];

/// A node that turns prompt text into conditioning.
pub fn is_text_encoder(n: &Node) -> bool {
    n.class_type.starts_with("CLIPTextEncode")
        && n.inputs.iter().any(|i| {
            TEXT_INPUTS.contains(&i.name.as_str()) && matches!(i.value, InputValue::Text(_))
        })
}

/// Encoders reached from samplers' positive and negative inputs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Polarity {
    /// Node ids feeding a `positive` input.
    pub positive: BTreeSet<String>,
    /// Node ids feeding a `negative` input.
    pub negative: BTreeSet<String>,
    /// Positive node id -> the sampler (or guider) it feeds, for notes.
    pub feeds: Vec<(String, String)>,
}

/// Walk back from every `positive`/`negative` input (KSampler, KSamplerAdvanced, SamplerCustom,
/// CFGGuider, ...) and from `conditioning` of single-input guiders (BasicGuider).
pub fn classify(wf: &Workflow) -> Polarity {
    let mut p = Polarity::default();
    for n in &wf.nodes {
        if is_text_encoder(n) {
            continue;
        }
        let has_pair = n.inputs.iter().any(|i| i.name == "positive")
            && n.inputs.iter().any(|i| i.name == "negative");
        let consumes_as_sink = has_pair && !produces_pair(n);
        let basic_guider = n.class_type == "BasicGuider";
        for i in &n.inputs {
            let InputValue::Link(link) = &i.value else {
                continue;
            };
            let positive = (consumes_as_sink && i.name == "positive")
                || (basic_guider && i.name == "conditioning");
            let negative = consumes_as_sink && i.name == "negative";
            if !(positive || negative) {
                continue;
            }
            let mut found = BTreeSet::new();
            walk(
                wf,
                &link.node_id,
                link.output_index,
                &mut HashSet::new(),
                &mut found,
            );
            for id in found {
                if positive {
                    p.feeds.push((id.clone(), n.id.clone()));
                    p.positive.insert(id);
                } else {
                    p.negative.insert(id);
                }
            }
        }
    }
    p
}

/// Nodes that pass a positive/negative pair through (ControlNetApplyAdvanced,
/// InstructPixToPixConditioning, ...): they have both inputs and produce conditioning again,
/// output 0 = positive, 1 = negative. Samplers/guiders produce latents or a guider instead.
fn produces_pair(n: &Node) -> bool {
    let c = n.class_type.as_str();
    !(c.starts_with("KSampler") || c.starts_with("SamplerCustom") || c.ends_with("Guider"))
}

fn walk(
    wf: &Workflow,
    id: &str,
    slot: u32,
    seen: &mut HashSet<(String, u32)>,
    found: &mut BTreeSet<String>,
) {
    if !seen.insert((id.to_owned(), slot)) {
        return;
    }
    let Some(n) = node(wf, id) else { return };
    if is_text_encoder(n) {
        found.insert(n.id.clone());
        return;
    }
    let has_pair = n.inputs.iter().any(|i| i.name == "positive")
        && n.inputs.iter().any(|i| i.name == "negative");
    for i in &n.inputs {
        let InputValue::Link(link) = &i.value else {
            continue;
        };
        let follow = if has_pair {
            (slot == 0 && i.name == "positive") || (slot == 1 && i.name == "negative")
        } else {
            i.name.starts_with("conditioning")
        };
        if follow && let Some(up) = follow_link(wf, link) {
            walk(wf, &up.id, link.output_index, seen, found);
        }
    }
}

/// Encoders to rewrite: reached from a positive input and never from a negative one. Encoders
/// no sampler reaches count only when their title says "positive" (and not "negative").
pub fn positive_encoders(wf: &Workflow) -> (Vec<String>, Polarity) {
    let p = classify(wf);
    let mut out: Vec<String> = p.positive.difference(&p.negative).cloned().collect();
    for n in wf.nodes.iter().filter(|n| is_text_encoder(n)) {
        if p.positive.contains(&n.id) || p.negative.contains(&n.id) {
            continue;
        }
        let title = n.title.as_deref().unwrap_or_default().to_ascii_lowercase();
        if title.contains("positive") && !title.contains("negative") {
            out.push(n.id.clone());
        }
    }
    (out, p)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use comfyhost_sdk::types::{NodeInput, NodeLink};

    fn n(id: &str, class: &str, title: Option<&str>, inputs: Vec<(&str, InputValue)>) -> Node {
        Node {
            id: id.into(),
            class_type: class.into(),
            title: title.map(Into::into),
            inputs: inputs
                .into_iter()
                .map(|(k, v)| NodeInput {
                    name: k.into(),
                    value: v,
                })
                .collect(),
        }
    }
    fn link(id: &str, slot: u32) -> InputValue {
        InputValue::Link(NodeLink {
            node_id: id.into(),
            output_index: slot,
        })
    }
    fn text(s: &str) -> InputValue {
        InputValue::Text(s.into())
    }

    #[test]
    fn misleading_titles_do_not_beat_sampler_links() {
        // Node 7 is titled "Positive" but feeds the negative input; node 6 is untitled positive.
        let wf = Workflow {
            nodes: vec![
                n(
                    "6",
                    "CLIPTextEncode",
                    Some("Negative Prompt"),
                    vec![("text", text("a cat")), ("clip", link("4", 1))],
                ),
                n(
                    "7",
                    "CLIPTextEncode",
                    Some("Positive Prompt"),
                    vec![("text", text("blurry")), ("clip", link("4", 1))],
                ),
                n(
                    "3",
                    "KSampler",
                    None,
                    vec![("positive", link("6", 0)), ("negative", link("7", 0))],
                ),
            ],
        };
        let (pos, _) = positive_encoders(&wf);
        assert_eq!(pos, ["6"]);
    }

    #[test]
    fn follows_controlnet_pairs_and_combines() {
        let wf = Workflow {
            nodes: vec![
                n("10", "CLIPTextEncode", None, vec![("text", text("pos a"))]),
                n("11", "CLIPTextEncode", None, vec![("text", text("pos b"))]),
                n("12", "CLIPTextEncode", None, vec![("text", text("neg"))]),
                n(
                    "13",
                    "ConditioningCombine",
                    None,
                    vec![
                        ("conditioning_1", link("10", 0)),
                        ("conditioning_2", link("11", 0)),
                    ],
                ),
                n(
                    "14",
                    "ControlNetApplyAdvanced",
                    None,
                    vec![
                        ("positive", link("13", 0)),
                        ("negative", link("12", 0)),
                        ("control_net", link("20", 0)),
                    ],
                ),
                n(
                    "3",
                    "KSamplerAdvanced",
                    None,
                    vec![("positive", link("14", 0)), ("negative", link("14", 1))],
                ),
            ],
        };
        let (pos, p) = positive_encoders(&wf);
        assert_eq!(pos, ["10", "11"]);
        assert_eq!(p.negative.into_iter().collect::<Vec<_>>(), ["12"]);
    }

    #[test]
    fn an_encoder_used_as_both_is_left_alone() {
        let wf = Workflow {
            nodes: vec![
                n("6", "CLIPTextEncode", None, vec![("text", text("shared"))]),
                n(
                    "3",
                    "KSampler",
                    None,
                    vec![("positive", link("6", 0)), ("negative", link("6", 0))],
                ),
            ],
        };
        assert!(positive_encoders(&wf).0.is_empty());
    }

    #[test]
    fn flux_guider_and_sdxl_encoder() {
        let wf = Workflow {
            nodes: vec![
                n(
                    "6",
                    "CLIPTextEncodeFlux",
                    None,
                    vec![
                        ("clip_l", text("a")),
                        ("t5xxl", text("a")),
                        ("guidance", InputValue::Number(3.5)),
                    ],
                ),
                n(
                    "26",
                    "FluxGuidance",
                    None,
                    vec![("conditioning", link("6", 0))],
                ),
                n(
                    "22",
                    "BasicGuider",
                    None,
                    vec![("conditioning", link("26", 0)), ("model", link("12", 0))],
                ),
            ],
        };
        assert_eq!(positive_encoders(&wf).0, ["6"]);
    }
}
