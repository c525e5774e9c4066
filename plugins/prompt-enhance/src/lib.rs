//! prompt-enhance: rewrites the positive prompt text of CLIPTextEncode-style nodes in a style
//! (`detailed`, `cinematic`, `artistic`, `minimal` or a custom template), optionally through an
//! OpenAI-compatible LLM with a deadline, falling back to the static style on any failure.
//!
//! Opt-in per submission (`extra_data.comfyhost.enhance = "<style>"`, `"off"` to skip;
//! `enhance_llm = "off"` skips the LLM for that submission), per user (`user_styles`) or for
//! everyone (`default_style`). Positive vs negative is decided by the sampler links
//! ([`polarity`]); negatives are never touched. Notes name node, style and method; the host
//! keeps the original workflow in the job record.

pub mod llm;
pub mod polarity;
pub mod styles;

use std::collections::BTreeMap;

use comfyhost_sdk::hooks::prompt_transform::{Rewrite, TransformResult};
use comfyhost_sdk::prelude::*;
use serde::Deserialize;

/// The plugin configuration (`config.schema.json`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    /// Style for everyone (`None` = opt-in only).
    #[serde(default)]
    pub default_style: Option<String>,
    /// user id -> style.
    #[serde(default)]
    pub user_styles: BTreeMap<String, String>,
    /// name -> template with `{prompt}`.
    #[serde(default)]
    pub styles: BTreeMap<String, String>,
    /// Optional LLM.
    #[serde(default)]
    pub llm: Option<llm::LlmConfig>,
}

/// The style to apply: submission flag, then the user's setting, then the default.
/// `"off"`/`"none"`/empty means no rewrite.
pub fn chosen_style(cfg: &Config, s: &Submission) -> Option<String> {
    let pick = s
        .flag("enhance")
        .map(str::to_owned)
        .or_else(|| s.user_id().and_then(|u| cfg.user_styles.get(u).cloned()))
        .or_else(|| cfg.default_style.clone())?;
    let pick = pick.trim().to_ascii_lowercase();
    (!matches!(pick.as_str(), "" | "off" | "none" | "false" | "0")).then_some(pick)
}

/// How a prompt text gets rewritten (the LLM in the sandbox; a closure in tests).
pub trait Enhancer {
    /// `Ok(new text)` or `Err(why)` to fall back to the static template.
    fn enhance(&self, style: &str, template: &str, prompt: &str) -> Result<String, String>;
    /// Label for notes (`LLM <model>`).
    fn label(&self) -> String;
}

struct LlmEnhancer<'a>(&'a llm::LlmConfig);

impl Enhancer for LlmEnhancer<'_> {
    fn enhance(&self, style: &str, template: &str, prompt: &str) -> Result<String, String> {
        llm::enhance(self.0, style, template, prompt)
    }
    fn label(&self) -> String {
        format!("LLM {}", self.0.model)
    }
}

/// Rewrite the positive encoders of `wf` in `style`. Returns the notes, or `Ok(None)` when no
/// node changed. Unknown styles are a config error naming the known ones.
pub fn rewrite(
    wf: &mut Workflow,
    cfg: &Config,
    style: &str,
    enhancer: Option<&dyn Enhancer>,
) -> Result<Option<Vec<String>>, PluginError> {
    let template = styles::template(&cfg.styles, style).ok_or_else(|| {
        let mut known: Vec<&str> = styles::BUILTIN.iter().map(|(n, _)| *n).collect();
        known.extend(cfg.styles.keys().map(String::as_str));
        PluginError::InvalidInput(format!(
            "unknown enhance style `{style}` (known: {})",
            known.join(", ")
        ))
    })?;
    let (targets, polarity) = polarity::positive_encoders(wf);
    let mut notes = Vec::new();
    for id in targets {
        let feeds: Vec<&str> = polarity
            .feeds
            .iter()
            .filter(|(p, _)| *p == id)
            .map(|(_, s)| s.as_str())
            .collect();
        let Some(node) = wf.node_mut(&id) else {
            continue;
        };
        let class = node.class_type.clone();
        for input in node.inputs.iter_mut() {
            if !polarity::TEXT_INPUTS.contains(&input.name.as_str()) {
                continue;
            }
            let InputValue::Text(original) = &input.value else {
                continue;
            };
            if original.trim().is_empty() {
                continue;
            }
            let (text, how) =
                match enhancer.map(|e| (e.enhance(style, template, original), e.label())) {
                    Some((Ok(t), label)) => (t, label),
                    Some((Err(why), label)) => (
                        styles::apply(template, original),
                        format!("static template ({label} failed: {why})"),
                    ),
                    None => (
                        styles::apply(template, original),
                        "static template".to_owned(),
                    ),
                };
            if text == *original {
                continue;
            }
            let via = if feeds.is_empty() {
                "titled positive".to_owned()
            } else {
                format!("positive of {}", feeds.join(", "))
            };
            notes.push(format!(
                "node {id} ({class}.{}, {via}): style `{style}` via {how}",
                input.name
            ));
            input.value = InputValue::Text(text);
        }
    }
    Ok((!notes.is_empty()).then_some(notes))
}

struct PromptEnhance;

impl PromptTransform for PromptEnhance {
    fn transform(submission: Submission) -> Result<TransformResult, PluginError> {
        let cfg: Config = comfyhost_sdk::config()?;
        let Some(style) = chosen_style(&cfg, &submission) else {
            return Ok(TransformResult::Unchanged);
        };
        let use_llm = !matches!(submission.flag("enhance_llm"), Some("off" | "0" | "false"));
        let llm = cfg.llm.as_ref().filter(|_| use_llm).map(LlmEnhancer);
        let mut wf = submission.workflow;
        match rewrite(
            &mut wf,
            &cfg,
            &style,
            llm.as_ref().map(|e| e as &dyn Enhancer),
        )? {
            Some(notes) => {
                for n in &notes {
                    info!("{n}");
                }
                Ok(TransformResult::Rewritten(Rewrite {
                    workflow: wf,
                    notes,
                }))
            }
            None => Ok(TransformResult::Unchanged),
        }
    }
}

comfyhost_sdk::export_prompt_transform!(PromptEnhance);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use comfyhost_sdk::types::{NodeLink, OptionEntry};
    use comfyhost_sdk::workflow::text_input;

    fn wf() -> Workflow {
        let link = |id: &str| {
            InputValue::Link(NodeLink {
                node_id: id.into(),
                output_index: 0,
            })
        };
        let n = |id: &str, class: &str, title: &str, inputs: Vec<(&str, InputValue)>| Node {
            id: id.into(),
            class_type: class.into(),
            title: Some(title.into()),
            inputs: inputs
                .into_iter()
                .map(|(k, v)| NodeInput {
                    name: k.into(),
                    value: v,
                })
                .collect(),
        };
        Workflow {
            nodes: vec![
                n(
                    "6",
                    "CLIPTextEncode",
                    "CLIP Text Encode (Prompt)",
                    vec![
                        ("text", InputValue::Text("a red fox".into())),
                        ("clip", link("4")),
                    ],
                ),
                n(
                    "7",
                    "CLIPTextEncode",
                    "CLIP Text Encode (Prompt)",
                    vec![
                        ("text", InputValue::Text("blurry".into())),
                        ("clip", link("4")),
                    ],
                ),
                n(
                    "3",
                    "KSampler",
                    "KSampler",
                    vec![
                        ("positive", link("6")),
                        (
                            "negative",
                            InputValue::Link(NodeLink {
                                node_id: "7".into(),
                                output_index: 0,
                            }),
                        ),
                    ],
                ),
            ],
        }
    }

    fn sub(flags: &[(&str, &str)], user: Option<&str>) -> Submission {
        Submission {
            prompt_id: "p".into(),
            client_id: None,
            user: user.map(|u| User {
                id: u.into(),
                is_admin: false,
            }),
            workflow: wf(),
            flags: flags
                .iter()
                .map(|(k, v)| OptionEntry {
                    key: (*k).into(),
                    value: (*v).into(),
                })
                .collect(),
        }
    }

    struct Fixed(Result<String, String>);
    impl Enhancer for Fixed {
        fn enhance(&self, _: &str, _: &str, _: &str) -> Result<String, String> {
            self.0.clone()
        }
        fn label(&self) -> String {
            "LLM test".into()
        }
    }

    #[test]
    fn style_choice_flag_user_default() {
        let mut cfg = Config::default();
        assert_eq!(chosen_style(&cfg, &sub(&[], None)), None);
        cfg.user_styles.insert("ana".into(), "minimal".into());
        assert_eq!(
            chosen_style(&cfg, &sub(&[], Some("ana"))).as_deref(),
            Some("minimal")
        );
        assert_eq!(
            chosen_style(&cfg, &sub(&[("enhance", "Cinematic")], Some("ana"))).as_deref(),
            Some("cinematic")
        );
        assert_eq!(
            chosen_style(&cfg, &sub(&[("enhance", "off")], Some("ana"))),
            None
        );
        cfg.default_style = Some("detailed".into());
        assert_eq!(
            chosen_style(&cfg, &sub(&[], Some("bob"))).as_deref(),
            Some("detailed")
        );
    }

    #[test]
    fn static_rewrite_touches_only_the_positive() {
        let mut w = wf();
        let notes = rewrite(&mut w, &Config::default(), "cinematic", None)
            .unwrap()
            .unwrap();
        assert_eq!(
            text_input(w.node("6").unwrap(), "text"),
            Some(styles::apply(styles::BUILTIN[1].1, "a red fox").as_str())
        );
        assert_eq!(text_input(w.node("7").unwrap(), "text"), Some("blurry"));
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].contains("node 6")
                && notes[0].contains("positive of 3")
                && notes[0].contains("static"),
            "{}",
            notes[0]
        );
    }

    #[test]
    fn llm_answer_is_used_and_failure_falls_back() {
        let mut w = wf();
        let ok = Fixed(Ok("a red fox at dawn, volumetric light".into()));
        let notes = rewrite(&mut w, &Config::default(), "cinematic", Some(&ok))
            .unwrap()
            .unwrap();
        assert_eq!(
            text_input(w.node("6").unwrap(), "text"),
            Some("a red fox at dawn, volumetric light")
        );
        assert!(notes[0].contains("via LLM test"), "{}", notes[0]);

        let mut w = wf();
        let bad = Fixed(Err("request timed out".into()));
        let notes = rewrite(&mut w, &Config::default(), "cinematic", Some(&bad))
            .unwrap()
            .unwrap();
        assert!(
            text_input(w.node("6").unwrap(), "text")
                .unwrap()
                .starts_with("cinematic film still of a red fox")
        );
        assert!(
            notes[0].contains("LLM test failed: request timed out"),
            "{}",
            notes[0]
        );
    }

    #[test]
    fn unknown_style_is_an_input_error() {
        let mut w = wf();
        let e = rewrite(&mut w, &Config::default(), "baroque", None).unwrap_err();
        assert!(matches!(e, PluginError::InvalidInput(m) if m.contains("cinematic")));
    }
}
