//! Remote jobs as the browser's `/queue` and `/history` show them (ComfyUI's shapes).

use comfyhost_store::RemoteJobRow;
use serde_json::{Map, Value, json};

fn request(row: &RemoteJobRow) -> Value {
    serde_json::from_str(&row.request_json).unwrap_or(Value::Null)
}

/// Output node ids of a workflow, as far as the host can tell without `/object_info`: nodes
/// nothing else links to.
fn output_nodes(prompt: &Value) -> Vec<String> {
    let Some(nodes) = prompt.as_object() else {
        return Vec::new();
    };
    let linked: std::collections::HashSet<&str> = nodes
        .values()
        .filter_map(|n| n.get("inputs").and_then(Value::as_object))
        .flat_map(|i| i.values())
        .filter_map(|v| v.as_array())
        .filter(|a| a.len() == 2 && a[1].is_u64())
        .filter_map(|a| a[0].as_str())
        .collect();
    nodes
        .keys()
        .filter(|k| !linked.contains(k.as_str()))
        .cloned()
        .collect()
}

/// `[number, prompt_id, prompt, extra_data, outputs_to_execute]`.
pub fn queue_item(row: &RemoteJobRow) -> Value {
    let req = request(row);
    let mut extra = req.get("extra_data").cloned().unwrap_or_else(|| json!({}));
    if let (Some(map), Some(c)) = (extra.as_object_mut(), &row.client_id) {
        map.insert("client_id".into(), json!(c));
    }
    json!([
        super::jobs_view::priority(row.number),
        row.prompt_id,
        req.get("prompt").cloned().unwrap_or_else(|| json!({})),
        extra,
        output_nodes(&req["prompt"]),
    ])
}

/// A `/history` entry.
pub fn history_entry(
    row: &RemoteJobRow,
    outputs: &Value,
    status_str: &str,
    completed: bool,
    messages: Value,
) -> Value {
    let meta: Map<String, Value> = outputs
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .map(|k| {
            (
                k.clone(),
                json!({"node_id": k, "display_node": k, "parent_node": null, "real_node_id": k}),
            )
        })
        .collect();
    json!({
        "prompt": queue_item(row),
        "outputs": outputs,
        "status": {"status_str": status_str, "completed": completed, "messages": messages},
        "meta": meta,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_item_lists_unlinked_nodes_as_outputs() {
        let row = RemoteJobRow {
            prompt_id: "p".into(),
            client_id: Some("c1".into()),
            number: 3.5,
            request_json: json!({
                "prompt": {
                    "1": {"class_type": "EmptyImage", "inputs": {"width": 8}},
                    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}
                },
                "extra_data": {"extra_pnginfo": {}}
            })
            .to_string(),
            ..Default::default()
        };
        let item = queue_item(&row);
        assert_eq!(item[0], 3.5);
        assert_eq!(item[3]["client_id"], "c1");
        assert_eq!(item[4], json!(["2"]));
        let h = history_entry(
            &row,
            &json!({"2": {"images": []}}),
            "success",
            true,
            json!([]),
        );
        assert_eq!(h["status"]["status_str"], "success");
        assert_eq!(h["meta"]["2"]["node_id"], "2");
    }
}
