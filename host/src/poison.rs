//! Poison-prompt guard: when ComfyUI dies while validating or running a prompt, that prompt's
//! workflow is quarantined (by the SHA-256 of its canonical JSON, keys sorted), and a
//! resubmission is refused before ComfyUI sees it, in ComfyUI's error shape, until an admin
//! releases it (`/comfyhost/api/quarantine`). With the supervisor not counting crashes of a
//! ComfyUI that had been ready toward its crash-loop limit, one user's crashing workflow costs
//! the room one restart, not the whole session.
//!
//! Attribution: a prompt is blamed when ComfyUI exits unexpectedly while the tracker has it
//! running, or when ComfyUI's connection broke while it handled the prompt's `POST /prompt`
//! (i.e. during validation) within [`PAIRING_WINDOW`] of the exit, in either order. A prompt
//! that could not even connect (ComfyUI already down, restarting) is never blamed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use comfyhost_protocol::ComfyErrorBody;
use comfyhost_store::{NewActivity, QuarantineRow, Store};
use parking_lot::Mutex;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A broken forward and an unexpected exit this close together are the same event.
pub const PAIRING_WINDOW: Duration = Duration::from_secs(5);

/// Quarantines crashing workflows and refuses them. Cheap to clone.
#[derive(Clone)]
pub struct PoisonGuard {
    store: Store,
    recent: std::sync::Arc<Mutex<Recent>>,
}

#[derive(Default)]
struct Recent {
    /// Prompts whose forward broke, newest last.
    door_failures: VecDeque<(String, Instant)>,
    /// The last unexpected exit and its description.
    last_crash: Option<(Instant, String)>,
}

/// The workflow's JSON with every object's keys sorted, so the same workflow always hashes the
/// same whatever order the browser sent its keys in.
pub fn canonical_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = serde_json::Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // With serde_json's default map (sorted keys) this is already canonical; `sorted` keeps it
    // so if `preserve_order` is ever enabled.
    sorted(v).to_string()
}

/// Hex SHA-256 of the canonical workflow.
pub fn workflow_hash(workflow: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(workflow).as_bytes()))
}

impl PoisonGuard {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            recent: Default::default(),
        }
    }

    /// `Err` with the refusal when this workflow is quarantined.
    pub fn check(&self, workflow: &Value) -> Result<(), Box<ComfyErrorBody>> {
        let hash = workflow_hash(workflow);
        match self.store.quarantined_workflow(&hash) {
            Ok(None) => Ok(()),
            Ok(Some(q)) => Err(Box::new(
                ComfyErrorBody::new(
                "comfyhost_quarantined",
                "This workflow crashed ComfyUI and is quarantined",
                format!(
                    "ComfyUI died while handling this same workflow before ({}), so it is refused \
                     to keep ComfyUI up for everyone. Change the workflow, or ask an admin to \
                     release it (dashboard: Jobs, quarantined workflows; workflow {}).",
                    q.reason,
                    &hash[..12]
                ),
            )
                .with_extra("workflow_sha256", Value::String(hash)),
            )),
            Err(e) => {
                // A store failure must not stop the room from working.
                tracing::error!(error = %e, "cannot check the quarantine");
                Ok(())
            }
        }
    }

    /// ComfyUI's connection broke while it handled `prompt_id`'s `POST /prompt`.
    pub fn forward_broke(&self, prompt_id: &str) {
        let now = Instant::now();
        let crash = {
            let mut r = self.recent.lock();
            r.door_failures
                .retain(|(_, t)| now.duration_since(*t) < PAIRING_WINDOW);
            r.door_failures.push_back((prompt_id.to_string(), now));
            r.last_crash
                .as_ref()
                .filter(|(t, _)| now.duration_since(*t) < PAIRING_WINDOW)
                .map(|(_, d)| d.clone())
        };
        if let Some(description) = crash {
            self.quarantine(prompt_id, &format!("{description}, during validation"));
        }
    }

    /// ComfyUI exited unexpectedly (`description`) while `running` were running.
    pub fn crashed(&self, description: &str, running: &[String]) {
        let now = Instant::now();
        let at_door: Vec<String> = {
            let mut r = self.recent.lock();
            r.last_crash = Some((now, description.to_string()));
            r.door_failures
                .retain(|(_, t)| now.duration_since(*t) < PAIRING_WINDOW);
            r.door_failures.drain(..).map(|(id, _)| id).collect()
        };
        for id in at_door {
            self.quarantine(&id, &format!("{description}, during validation"));
        }
        for id in running {
            self.quarantine(id, &format!("{description}, while running"));
        }
    }

    fn quarantine(&self, prompt_id: &str, reason: &str) {
        let job = match self.store.job(prompt_id) {
            Ok(Some(j)) => j,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(prompt_id, error = %e, "cannot read the job to quarantine");
                return;
            }
        };
        let Some(workflow) = job
            .workflow_json
            .as_deref()
            .and_then(|w| serde_json::from_str::<Value>(w).ok())
        else {
            tracing::warn!(
                prompt_id,
                "no workflow kept for a crashing prompt; not quarantined"
            );
            return;
        };
        let row = QuarantineRow {
            workflow_sha256: workflow_hash(&workflow),
            prompt_id: prompt_id.to_string(),
            user_id: job.user_id.clone(),
            reason: reason.to_string(),
            nodes: workflow.as_object().map_or(0, |m| m.len() as i64),
            created_ms: crate::jobs::now_ms(),
        };
        match self.store.quarantine_workflow(&row) {
            Ok(true) => {
                tracing::warn!(prompt_id, workflow = %row.workflow_sha256, reason,
                    "workflow quarantined: ComfyUI died handling it");
                let entry = NewActivity {
                    actor: "system".into(),
                    action: "workflow.quarantined".into(),
                    target: row.workflow_sha256.clone(),
                    detail: json!({"prompt_id": prompt_id, "user": job.user_id, "reason": reason}),
                };
                if let Err(e) = self.store.record_activity(&entry) {
                    tracing::error!(error = %e, "cannot record activity");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::error!(prompt_id, error = %e, "cannot quarantine a workflow"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_ignores_key_order() {
        let a: Value =
            serde_json::from_str(r#"{"1": {"inputs": {"a": 1, "b": 2}, "class_type": "X"}}"#)
                .unwrap();
        let b: Value =
            serde_json::from_str(r#"{"1": {"class_type": "X", "inputs": {"b": 2, "a": 1}}}"#)
                .unwrap();
        assert_eq!(workflow_hash(&a), workflow_hash(&b));
        let c = json!({"1": {"class_type": "X", "inputs": {"b": 3, "a": 1}}});
        assert_ne!(workflow_hash(&a), workflow_hash(&c));
    }

    fn store_with_job(id: &str, workflow: &Value) -> Store {
        let store = Store::open_in_memory().unwrap();
        store
            .upsert_job(&comfyhost_store::JobRecord {
                prompt_id: id.into(),
                client_id: None,
                user_id: Some("mallory".into()),
                route: Some("local".into()),
                backend: None,
                status: "queued".into(),
                submitted_ms: 1,
                started_ms: None,
                finished_ms: None,
                error_json: None,
                workflow_json: Some(workflow.to_string()),
                original_workflow_json: None,
                transform_notes_json: None,
            })
            .unwrap();
        store
    }

    #[test]
    fn a_broken_forward_next_to_a_crash_quarantines_in_either_order() {
        let wf = json!({"1": {"class_type": "EmptyImage", "inputs": {}}});
        for crash_first in [true, false] {
            let store = store_with_job("p1", &wf);
            let guard = PoisonGuard::new(store.clone());
            assert!(guard.check(&wf).is_ok());
            if crash_first {
                guard.crashed("signal 6 (SIGABRT)", &[]);
                guard.forward_broke("p1");
            } else {
                guard.forward_broke("p1");
                guard.crashed("signal 6 (SIGABRT)", &[]);
            }
            let err = guard.check(&wf).expect_err("quarantined");
            assert_eq!(err.error.kind, "comfyhost_quarantined");
            let rows = store.quarantined_workflows().unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].user_id.as_deref(), Some("mallory"));
            assert!(store.release_workflow(&rows[0].workflow_sha256).unwrap());
            assert!(guard.check(&wf).is_ok());
        }
    }

    #[test]
    fn a_broken_forward_without_a_crash_blames_nobody() {
        let wf = json!({"1": {"class_type": "EmptyImage", "inputs": {}}});
        let store = store_with_job("p1", &wf);
        let guard = PoisonGuard::new(store.clone());
        guard.forward_broke("p1");
        assert!(guard.check(&wf).is_ok());
        guard.crashed("exit code 1", &["p1".to_string()]);
        assert!(guard.check(&wf).is_err(), "running when it died");
    }
}
