//! Per-user filters over ComfyUI's JSON answers (current and 0.3.64 shapes): the queue
//! (`[number, prompt_id, ...]` items), history (a map keyed by prompt id), the jobs API list
//! (`{"id": ...}` items), and the ids named by delete/cancel commands. Each keeps only what
//! the [`Scope`] may see; a scope that sees everything leaves the value unchanged.

use serde_json::Value;

use super::Scope;

/// Keeps the caller's own `queue_running` / `queue_pending` items.
pub fn queue(scope: &Scope, v: &mut Value) {
    if scope.all {
        return;
    }
    for key in ["queue_running", "queue_pending"] {
        if let Some(list) = v.get_mut(key).and_then(Value::as_array_mut) {
            list.retain(|item| {
                item.get(1)
                    .and_then(Value::as_str)
                    .is_some_and(|id| scope.owns(id))
            });
        }
    }
}

/// Keeps the caller's own history entries.
pub fn history(scope: &Scope, v: &mut Value) {
    if scope.all {
        return;
    }
    if let Some(map) = v.as_object_mut() {
        map.retain(|id, _| scope.owns(id));
    }
}

/// Keeps the caller's own jobs of a jobs-API list.
pub fn jobs(scope: &Scope, jobs: &mut Vec<Value>) {
    if scope.all {
        return;
    }
    jobs.retain(|j| {
        j.get("id")
            .and_then(Value::as_str)
            .is_some_and(|id| scope.owns(id))
    });
}

/// The ids among `ids` the caller may act on (non-strings are kept for ComfyUI to judge
/// only when the scope sees everything).
pub fn own_ids(scope: &Scope, ids: &[Value]) -> Vec<Value> {
    ids.iter()
        .filter(|id| scope.all || id.as_str().is_some_and(|s| scope.owns(s)))
        .cloned()
        .collect()
}

/// Prompt ids of the pending (or also running) queue items in a `GET /queue` answer.
pub fn queue_ids(v: &Value, running_too: bool) -> Vec<String> {
    let keys: &[&str] = if running_too {
        &["queue_running", "queue_pending"]
    } else {
        &["queue_pending"]
    };
    keys.iter()
        .filter_map(|k| v.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(|item| item.get(1).and_then(Value::as_str).map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AdminAuth;
    use crate::isolation::{Caller, Isolation};
    use crate::users::Identity;
    use comfyhost_store::{JobRecord, Store};
    use serde_json::json;

    fn scope_for(caller: Caller) -> Scope {
        let store = Store::open_in_memory().unwrap();
        for (id, user) in [("a", Some("alice")), ("b", Some("bob")), ("n", None)] {
            store
                .upsert_job(&JobRecord {
                    prompt_id: id.into(),
                    user_id: user.map(str::to_string),
                    ..Default::default()
                })
                .unwrap();
        }
        let iso = Isolation::new(
            Identity::new(
                AdminAuth::from_token("admin-token-0123456789"),
                store.clone(),
            ),
            store,
        );
        let mut s = iso.scope(&http::HeaderMap::new());
        s.all = caller.is_admin();
        s.caller = caller;
        s
    }

    #[test]
    fn queue_history_and_jobs_keep_only_the_callers() {
        let alice = scope_for(Caller::User("alice".into()));
        let mut q = json!({"queue_running": [[0, "b", {}, {}, []]],
                           "queue_pending": [[1, "a", {}, {}, []], [2, "n", {}, {}, []]]});
        queue(&alice, &mut q);
        assert_eq!(queue_ids(&q, true), vec!["a".to_string()]);
        let mut h = json!({"a": {}, "b": {}, "n": {}, "unknown": {}});
        history(&alice, &mut h);
        assert_eq!(h, json!({"a": {}}));
        let mut j = vec![json!({"id": "a"}), json!({"id": "b"}), json!({"id": 7})];
        jobs(&alice, &mut j);
        assert_eq!(j, vec![json!({"id": "a"})]);
        assert_eq!(
            own_ids(&alice, &[json!("a"), json!("b"), json!(3)]),
            vec![json!("a")]
        );

        let anon = scope_for(Caller::Anonymous);
        let mut h = json!({"a": {}, "b": {}, "n": {}});
        history(&anon, &mut h);
        assert_eq!(h, json!({"n": {}}));

        let admin = scope_for(Caller::Admin("admin".into()));
        let mut h = json!({"a": {}, "b": {}, "unknown": {}});
        history(&admin, &mut h);
        assert_eq!(h.as_object().unwrap().len(), 3);
    }
}
