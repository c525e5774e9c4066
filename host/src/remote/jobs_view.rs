//! Remote jobs in the shapes of ComfyUI's jobs API (0.33.0 `comfy_execution/jobs.py`), so the
//! current frontend's queue and history panel lists them with the local ones.

use comfyhost_store::RemoteJobRow;
use serde_json::{Map, Value, json};

use crate::remote::views;

const PREVIEWABLE: &[&str] = &["images", "video", "audio", "3d", "text"];

/// `prune_dict`: leaves out `null` values.
fn pruned(pairs: Vec<(&str, Value)>) -> Value {
    Value::Object(
        pairs
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

/// The browser-facing `number` as ComfyUI shows it: an integer when it is one.
pub fn priority(number: f64) -> Value {
    if number.fract() == 0.0 && number.abs() < 9.0e15 {
        json!(number as i64)
    } else {
        json!(number)
    }
}

/// `(create_time, workflow_id)` from `extra_data`; remote jobs the backend never saw get the
/// host's last update time so that they still sort among the others.
fn metadata(extra: &Value, row: &RemoteJobRow) -> (Value, Value) {
    let create_time = extra
        .get("create_time")
        .cloned()
        .unwrap_or_else(|| json!(row.updated_ms));
    let workflow_id = extra
        .pointer("/extra_pnginfo/workflow/id")
        .cloned()
        .unwrap_or(Value::Null);
    (create_time, workflow_id)
}

/// `(outputs_count, preview_output, previewable_outputs_count)`, preferring saved outputs.
fn summary(outputs: &Value) -> (u64, Value, u64) {
    let (mut count, mut previewable) = (0, 0);
    let (mut preview, mut fallback) = (None, None);
    for (node_id, node) in outputs.as_object().into_iter().flatten() {
        for (media, items) in node.as_object().into_iter().flatten() {
            if media == "animated" {
                continue;
            }
            for item in items.as_array().into_iter().flatten() {
                let Some(map) = item.as_object() else {
                    continue;
                };
                count += 1;
                if !PREVIEWABLE.contains(&media.as_str()) {
                    continue;
                }
                previewable += 1;
                let mut enriched = map.clone();
                enriched.insert("nodeId".into(), json!(node_id));
                enriched.entry("mediaType").or_insert_with(|| json!(media));
                if map.get("type").and_then(Value::as_str) == Some("output") {
                    preview.get_or_insert(Value::Object(enriched));
                } else {
                    fallback.get_or_insert(Value::Object(enriched));
                }
            }
        }
    }
    (
        count,
        preview.or(fallback).unwrap_or(Value::Null),
        previewable,
    )
}

/// The job entry of one remote job (`include_outputs`: the `/api/jobs/{id}` form).
pub fn job(row: &RemoteJobRow, include_outputs: bool) -> Value {
    let history: Option<Value> = row
        .history_json
        .as_deref()
        .and_then(|h| serde_json::from_str(h).ok());
    let item = views::queue_item(row);
    let extra = item.get(3).cloned().unwrap_or_else(|| json!({}));
    let (create_time, workflow_id) = metadata(&extra, row);
    let Some(h) = history else {
        let status = if row.state == "running" {
            "in_progress"
        } else {
            "pending"
        };
        return pruned(vec![
            ("id", json!(row.prompt_id)),
            ("status", json!(status)),
            ("priority", priority(row.number)),
            ("create_time", create_time),
            ("outputs_count", json!(0)),
            ("previewable_outputs_count", json!(0)),
            ("workflow_id", workflow_id),
        ]);
    };
    let status_info = h.get("status").cloned().unwrap_or(Value::Null);
    let (mut start, mut end, mut error, mut interrupted) =
        (Value::Null, Value::Null, Value::Null, false);
    for m in status_info
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let (Some(name), Some(data)) = (m.get(0).and_then(Value::as_str), m.get(1)) else {
            continue;
        };
        let ts = data.get("timestamp").cloned().unwrap_or(Value::Null);
        match name {
            "execution_start" => start = ts,
            "execution_success" => end = ts,
            "execution_error" => (end, error) = (ts, data.clone()),
            "execution_interrupted" => (end, interrupted) = (ts, true),
            _ => {}
        }
    }
    let status = match status_info.get("status_str").and_then(Value::as_str) {
        Some("error") if interrupted => "cancelled",
        Some("error") => "failed",
        _ => "completed",
    };
    let outputs = h.get("outputs").cloned().unwrap_or_else(|| json!({}));
    let (count, preview, previewable) = summary(&outputs);
    let mut job = pruned(vec![
        ("id", json!(row.prompt_id)),
        ("status", json!(status)),
        ("priority", priority(row.number)),
        ("create_time", create_time),
        ("execution_start_time", start),
        ("execution_end_time", end),
        ("execution_error", error),
        ("outputs_count", json!(count)),
        ("previewable_outputs_count", json!(previewable)),
        ("preview_output", preview),
        ("workflow_id", workflow_id),
    ]);
    if include_outputs && let Some(map) = job.as_object_mut() {
        map.insert("outputs".into(), outputs);
        map.insert("execution_status".into(), status_info);
        map.insert(
            "workflow".into(),
            json!({"prompt": item.get(2).cloned().unwrap_or(Value::Null), "extra_data": extra}),
        );
    }
    job
}

/// Query of `GET /api/jobs` as ComfyUI reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobsQuery {
    /// `status` filter (all when absent).
    pub statuses: Option<Vec<String>>,
    /// `workflow_id` filter.
    pub workflow_id: Option<String>,
    /// `sort_by == execution_duration`.
    pub by_duration: bool,
    /// `sort_order == desc`.
    pub descending: bool,
    /// `limit`.
    pub limit: Option<usize>,
    /// `offset`.
    pub offset: usize,
}

impl JobsQuery {
    /// Parses the query pairs; `None` when a value is invalid (ComfyUI answers those itself).
    pub fn parse(pairs: &[(String, String)]) -> Option<Self> {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        let statuses = get("status").filter(|s| !s.is_empty()).map(|s| {
            s.split(',')
                .map(|p| p.trim().to_lowercase())
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
        });
        let sort_by = get("sort_by").unwrap_or("created_at").to_lowercase();
        let sort_order = get("sort_order").unwrap_or("desc").to_lowercase();
        if !matches!(sort_by.as_str(), "created_at" | "execution_duration")
            || !matches!(sort_order.as_str(), "asc" | "desc")
        {
            return None;
        }
        let limit = match get("limit") {
            None => None,
            Some(l) => Some(l.trim().parse::<usize>().ok().filter(|l| *l > 0)?),
        };
        let offset = match get("offset") {
            None => 0,
            Some(o) => usize::try_from(o.trim().parse::<i64>().ok()?).unwrap_or(0),
        };
        Some(Self {
            statuses,
            workflow_id: get("workflow_id")
                .filter(|w| !w.is_empty())
                .map(String::from),
            by_duration: sort_by == "execution_duration",
            descending: sort_order == "desc",
            limit,
            offset,
        })
    }

    /// Whether `job` passes the status and workflow filters.
    pub fn wants(&self, job: &Value) -> bool {
        let status = job.get("status").and_then(Value::as_str).unwrap_or("");
        self.statuses
            .as_ref()
            .is_none_or(|s| s.iter().any(|w| w == status))
            && self
                .workflow_id
                .as_deref()
                .is_none_or(|w| job.get("workflow_id").and_then(Value::as_str) == Some(w))
    }

    /// Sorts (stable, like Python's `sorted`) and pages; the answer's `jobs` and `pagination`.
    pub fn page(&self, mut jobs: Vec<Value>) -> Value {
        let num = |j: &Value, k: &str| j.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let key = |j: &Value| {
            if self.by_duration {
                let (s, e) = (num(j, "execution_start_time"), num(j, "execution_end_time"));
                if s != 0.0 && e != 0.0 { e - s } else { 0.0 }
            } else {
                num(j, "create_time")
            }
        };
        jobs.sort_by(|a, b| {
            let o = key(a).total_cmp(&key(b));
            if self.descending { o.reverse() } else { o }
        });
        let total = jobs.len();
        let page: Vec<Value> = jobs
            .into_iter()
            .skip(self.offset)
            .take(self.limit.unwrap_or(usize::MAX))
            .collect();
        let has_more = self.offset + page.len() < total;
        let mut out = Map::new();
        out.insert("jobs".into(), Value::Array(page));
        out.insert(
            "pagination".into(),
            json!({"offset": self.offset, "limit": self.limit, "total": total, "has_more": has_more}),
        );
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    }

    #[test]
    fn query_follows_comfyui_and_pages_after_merging() {
        let q = JobsQuery::parse(&pairs(
            "status=completed,in_progress&limit=1&offset=1&sort_order=asc",
        ));
        let Some(q) = q else { panic!("valid query") };
        assert!(q.wants(&json!({"status": "in_progress"})));
        assert!(!q.wants(&json!({"status": "pending"})));
        let page = q.page(vec![
            json!({"id": "b", "create_time": 2}),
            json!({"id": "a", "create_time": 1}),
            json!({"id": "c", "create_time": 3}),
        ]);
        assert_eq!(page["jobs"][0]["id"], "b");
        assert_eq!(
            page["pagination"],
            json!({"offset": 1, "limit": 1, "total": 3, "has_more": true})
        );
        assert!(JobsQuery::parse(&pairs("limit=0")).is_none());
        assert!(JobsQuery::parse(&pairs("sort_by=name")).is_none());
    }

    #[test]
    fn remote_rows_become_jobs_with_integer_priorities() {
        let row = RemoteJobRow {
            prompt_id: "p".into(),
            number: 4.0,
            state: "running".into(),
            request_json: json!({"prompt": {}, "extra_data": {"create_time": 5}}).to_string(),
            ..Default::default()
        };
        let j = job(&row, false);
        assert_eq!(
            j,
            json!({"id": "p", "status": "in_progress", "priority": 4, "create_time": 5, "outputs_count": 0, "previewable_outputs_count": 0})
        );
    }
}
