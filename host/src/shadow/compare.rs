//! What a shadow plugin would have done next to what the active chain did, as a stored row:
//! routes compared as routes (a shadow's `pass` counts as `local`, what the chain does when no
//! router decides), rewrites compared by the resulting workflow, with the text inputs either
//! side changed kept for the dashboard's diff.

use std::collections::BTreeMap;

use comfyhost_runtime::registry::ShadowCall;
use comfyhost_runtime::types::{Route, Submission, TransformResult};
use comfyhost_store::ShadowRow;
use serde_json::{Value, json};

/// Route as shown on the dashboard: `local`, `reject: <reason>`, `backend: <name>`, ...
pub fn describe(route: &Route) -> String {
    match route {
        Route::Local => "local".into(),
        Route::Pass => "pass".into(),
        Route::Reject(r) => format!("reject: {r}"),
        Route::Backend(b) => format!("backend: {b}"),
        Route::Serverless(s) => format!("serverless: {s}"),
    }
}

fn effective(route: &Route) -> &Route {
    match route {
        Route::Pass => &Route::Local,
        r => r,
    }
}

pub fn route_row(prompt_id: &str, active: &Route, call: &ShadowCall<Route>) -> ShadowRow {
    let (shadow_json, agreed, fault) = match &call.answer {
        Ok(r) => (
            json!({ "route": describe(r) }),
            effective(r) == effective(active),
            None,
        ),
        Err(e) => (Value::Null, false, Some(e.to_string())),
    };
    row(
        &call.plugin_id,
        prompt_id,
        "queue-router",
        json!({ "route": describe(active) }),
        shadow_json,
        agreed,
        fault,
        call.elapsed,
    )
}

pub fn transform_row(
    before: &Submission,
    active_result: &Value,
    call: &ShadowCall<TransformResult>,
) -> ShadowRow {
    let active_texts = texts(&before.workflow, active_result);
    let (shadow_json, agreed, fault) = match &call.answer {
        Ok(TransformResult::Unchanged) => (
            json!({ "rewritten": false, "texts": {} }),
            *active_result == before.workflow,
            None,
        ),
        Ok(TransformResult::Rewritten { workflow, notes }) => (
            json!({ "rewritten": true, "notes": notes, "texts": texts(&before.workflow, workflow) }),
            workflow == active_result,
            None,
        ),
        Err(e) => (Value::Null, false, Some(e.to_string())),
    };
    // The original text of every input either side changed, for the diff.
    let mut keys: Vec<String> = active_texts.keys().cloned().collect();
    if let Some(obj) = shadow_json.get("texts").and_then(Value::as_object) {
        keys.extend(obj.keys().cloned());
    }
    let original: BTreeMap<String, Value> = keys
        .into_iter()
        .map(|k| {
            let v = text_at(&before.workflow, &k).unwrap_or(Value::Null);
            (k, v)
        })
        .collect();
    row(
        &call.plugin_id,
        &before.prompt_id,
        "prompt-transform",
        json!({ "rewritten": *active_result != before.workflow, "texts": active_texts, "original": original }),
        shadow_json,
        agreed,
        fault,
        call.elapsed,
    )
}

/// String inputs (`<node>.<input>`) whose value differs between `before` and `after`, with
/// their value in `after`.
fn texts(before: &Value, after: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let Some(nodes) = after.as_object() else {
        return out;
    };
    for (node, body) in nodes {
        let Some(inputs) = body.get("inputs").and_then(Value::as_object) else {
            continue;
        };
        for (name, v) in inputs {
            if !v.is_string() {
                continue;
            }
            let key = format!("{node}.{name}");
            if before
                .get(node)
                .and_then(|b| b.get("inputs"))
                .and_then(|i| i.get(name))
                != Some(v)
            {
                out.insert(key, v.clone());
            }
        }
    }
    out
}

fn text_at(workflow: &Value, key: &str) -> Option<Value> {
    let (node, input) = key.split_once('.')?;
    workflow.get(node)?.get("inputs")?.get(input).cloned()
}

#[allow(clippy::too_many_arguments)]
fn row(
    plugin_id: &str,
    prompt_id: &str,
    hook: &str,
    active: Value,
    shadow: Value,
    agreed: bool,
    fault: Option<String>,
    elapsed: std::time::Duration,
) -> ShadowRow {
    ShadowRow {
        plugin_id: plugin_id.to_owned(),
        prompt_id: prompt_id.to_owned(),
        hook: hook.to_owned(),
        ts_ms: comfyhost_store::now_ms(),
        active_json: active.to_string(),
        shadow_json: shadow.to_string(),
        agreed,
        fault,
        latency_ms: i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use comfyhost_runtime::CallErrorKind;
    use std::time::Duration;

    fn call<T>(answer: Result<T, CallErrorKind>) -> ShadowCall<T> {
        ShadowCall {
            plugin_id: "p".into(),
            version: "1.0.0".into(),
            answer,
            elapsed: Duration::from_millis(3),
        }
    }

    #[test]
    fn pass_agrees_with_local_and_reject_does_not() {
        let r = route_row("x", &Route::Local, &call(Ok(Route::Pass)));
        assert!(r.agreed);
        let r = route_row("x", &Route::Local, &call(Ok(Route::Reject("no".into()))));
        assert!(!r.agreed);
        assert!(r.shadow_json.contains("reject: no"), "{}", r.shadow_json);
        let r = route_row(
            "x",
            &Route::Local,
            &call(Err(CallErrorKind::Trap("boom".into()))),
        );
        assert!(!r.agreed);
        assert!(r.fault.unwrap().contains("boom"));
    }

    #[test]
    fn rewrites_keep_the_changed_texts_both_sides() {
        let before = Submission {
            prompt_id: "x".into(),
            client_id: None,
            user: None,
            workflow: json!({"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat"}}}),
            flags: Default::default(),
        };
        let active = json!({"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat, best quality"}}});
        let shadow =
            json!({"6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat, 4k"}}});
        let r = transform_row(
            &before,
            &active,
            &call(Ok(TransformResult::Rewritten {
                workflow: shadow,
                notes: vec![],
            })),
        );
        assert!(!r.agreed);
        let a: Value = serde_json::from_str(&r.active_json).unwrap();
        let s: Value = serde_json::from_str(&r.shadow_json).unwrap();
        assert_eq!(a["texts"]["6.text"], "a cat, best quality");
        assert_eq!(a["original"]["6.text"], "a cat");
        assert_eq!(s["texts"]["6.text"], "a cat, 4k");
    }
}
