//! Job records: one row per prompt the host accepted, updated as it runs.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::{Store, StoreError};

/// One row of `jobs`. JSON columns are opaque text owned by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub prompt_id: String,
    pub client_id: Option<String>,
    pub user_id: Option<String>,
    /// `local`, `backend`, `serverless`, `reject`.
    pub route: Option<String>,
    /// Backend or endpoint name.
    pub backend: Option<String>,
    /// `queued`, `running`, `succeeded`, `failed`, `interrupted`, ...
    pub status: String,
    pub submitted_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub error_json: Option<String>,
    pub workflow_json: Option<String>,
    pub original_workflow_json: Option<String>,
    /// What prompt-transform plugins changed: `[{"plugin_id", "notes": [...]}]` (migration 6).
    #[serde(default)]
    pub transform_notes_json: Option<String>,
}

const COLUMNS: &str = "prompt_id, client_id, user_id, route, backend, status, submitted_ms, started_ms, finished_ms, error_json, workflow_json, original_workflow_json, transform_notes_json";

impl JobRecord {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            prompt_id: r.get(0)?,
            client_id: r.get(1)?,
            user_id: r.get(2)?,
            route: r.get(3)?,
            backend: r.get(4)?,
            status: r.get(5)?,
            submitted_ms: r.get(6)?,
            started_ms: r.get(7)?,
            finished_ms: r.get(8)?,
            error_json: r.get(9)?,
            workflow_json: r.get(10)?,
            original_workflow_json: r.get(11)?,
            transform_notes_json: r.get(12)?,
        })
    }
}

/// Largest workflow JSON kept with a job record; a larger one is replaced by a note.
pub const MAX_KEPT_WORKFLOW_BYTES: usize = 1 << 20;

/// How long and how many job records are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobRetention {
    /// Records submitted longer ago than this go.
    pub max_age_ms: i64,
    /// Beyond this many records the oldest go.
    pub max_rows: u64,
}

impl Default for JobRetention {
    fn default() -> Self {
        Self {
            max_age_ms: 30 * 24 * 3600 * 1000,
            max_rows: 100_000,
        }
    }
}

fn kept_workflow(json: Option<&str>) -> Option<String> {
    let json = json?;
    if json.len() <= MAX_KEPT_WORKFLOW_BYTES {
        return Some(json.to_owned());
    }
    Some(
        serde_json::json!({
            "comfyhost_not_kept": format!(
                "workflow of {} bytes not kept (limit {MAX_KEPT_WORKFLOW_BYTES})",
                json.len()
            )
        })
        .to_string(),
    )
}

impl Store {
    /// Inserts a job or updates it. On update, `status` always takes the new value, and every
    /// optional column takes the new value only when it is `Some`, so a later partial record
    /// (e.g. status + `finished_ms`) never erases what an earlier one set. `submitted_ms` keeps
    /// its first value.
    ///
    /// Workflows larger than [`MAX_KEPT_WORKFLOW_BYTES`] are not kept (a short JSON note takes
    /// their place); the host removes records past [`JobRetention`] with [`Store::prune_jobs`].
    pub fn upsert_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        upsert_job_on(&self.jobs_conn(), job)
    }

    /// Records what prompt-transform plugins changed in a job (`notes_json`, a JSON array).
    /// Returns whether the job existed.
    pub fn set_job_transform_notes(
        &self,
        prompt_id: &str,
        notes_json: &str,
    ) -> Result<bool, StoreError> {
        let n = self.jobs_conn().execute(
            "UPDATE jobs SET transform_notes_json = ?2 WHERE prompt_id = ?1",
            params![prompt_id, notes_json],
        )?;
        Ok(n > 0)
    }

    /// Deletes job records past `retention` (by submission time, then by count). Returns how
    /// many went.
    pub fn prune_jobs(&self, now_ms: i64, retention: JobRetention) -> Result<usize, StoreError> {
        let conn = self.jobs_conn();
        let mut n = conn.execute(
            "DELETE FROM jobs WHERE submitted_ms < ?1",
            [now_ms.saturating_sub(retention.max_age_ms)],
        )?;
        n += conn.execute(
            "DELETE FROM jobs WHERE prompt_id IN (SELECT prompt_id FROM jobs
               ORDER BY submitted_ms DESC LIMIT -1 OFFSET ?1)",
            [retention.max_rows],
        )?;
        Ok(n)
    }

    /// The job with this prompt id.
    pub fn job(&self, prompt_id: &str) -> Result<Option<JobRecord>, StoreError> {
        let row = self
            .jobs_conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM jobs WHERE prompt_id = ?1"),
                [prompt_id],
                JobRecord::from_row,
            )
            .optional()?;
        Ok(row)
    }

    /// Who submitted a job: `None` when the host has no record of it, `Some(None)` for an
    /// anonymous submission (workshop isolation reads only this column).
    pub fn job_owner(&self, prompt_id: &str) -> Result<Option<Option<String>>, StoreError> {
        let row = self
            .jobs_conn()
            .query_row(
                "SELECT user_id FROM jobs WHERE prompt_id = ?1",
                [prompt_id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?;
        Ok(row)
    }

    /// Newest jobs first (by submission time), optionally only one user's.
    pub fn recent_jobs(
        &self,
        user_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let conn = self.jobs_conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE (?1 IS NULL OR user_id = ?1)
             ORDER BY submitted_ms DESC, prompt_id LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![user_id, limit], JobRecord::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

/// One job upsert on `conn` (the caller holds the store's lock).
pub(crate) fn upsert_job_on(conn: &Connection, job: &JobRecord) -> Result<(), StoreError> {
    let workflow_json = kept_workflow(job.workflow_json.as_deref());
    let original_workflow_json = kept_workflow(job.original_workflow_json.as_deref());
    conn.prepare_cached(
        "INSERT INTO jobs (prompt_id, client_id, user_id, route, backend, status, submitted_ms,
                           started_ms, finished_ms, error_json, workflow_json, original_workflow_json,
                           transform_notes_json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT(prompt_id) DO UPDATE SET
            client_id = COALESCE(excluded.client_id, jobs.client_id),
            user_id = COALESCE(excluded.user_id, jobs.user_id),
            route = COALESCE(excluded.route, jobs.route),
            backend = COALESCE(excluded.backend, jobs.backend),
            status = excluded.status,
            started_ms = COALESCE(excluded.started_ms, jobs.started_ms),
            finished_ms = COALESCE(excluded.finished_ms, jobs.finished_ms),
            error_json = COALESCE(excluded.error_json, jobs.error_json),
            workflow_json = COALESCE(excluded.workflow_json, jobs.workflow_json),
            original_workflow_json = COALESCE(excluded.original_workflow_json, jobs.original_workflow_json),
            transform_notes_json = COALESCE(excluded.transform_notes_json, jobs.transform_notes_json)",
    )?
    .execute(params![
            job.prompt_id,
            job.client_id,
            job.user_id,
            job.route,
            job.backend,
            job.status,
            job.submitted_ms,
            job.started_ms,
            job.finished_ms,
            job.error_json,
            workflow_json,
            original_workflow_json,
            job.transform_notes_json
        ])?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn upsert_merges_partial_updates() {
        let s = Store::open_in_memory().unwrap();
        s.upsert_job(&JobRecord {
            prompt_id: "p1".into(),
            client_id: Some("c".into()),
            user_id: Some("u1".into()),
            route: Some("local".into()),
            status: "queued".into(),
            submitted_ms: 100,
            workflow_json: Some("{}".into()),
            ..Default::default()
        })
        .unwrap();
        s.upsert_job(&JobRecord {
            prompt_id: "p1".into(),
            status: "succeeded".into(),
            submitted_ms: 999,
            started_ms: Some(110),
            finished_ms: Some(200),
            ..Default::default()
        })
        .unwrap();
        let j = s.job("p1").unwrap().unwrap();
        assert_eq!(j.status, "succeeded");
        assert_eq!(j.submitted_ms, 100);
        assert_eq!(j.client_id.as_deref(), Some("c"));
        assert_eq!(j.route.as_deref(), Some("local"));
        assert_eq!(j.workflow_json.as_deref(), Some("{}"));
        assert_eq!((j.started_ms, j.finished_ms), (Some(110), Some(200)));
        assert!(s.job("nope").unwrap().is_none());
    }

    #[test]
    fn transform_notes_are_kept_with_the_job() {
        let s = Store::open_in_memory().unwrap();
        s.upsert_job(&JobRecord {
            prompt_id: "p1".into(),
            status: "queued".into(),
            submitted_ms: 1,
            ..Default::default()
        })
        .unwrap();
        let notes = r#"[{"plugin_id":"prompt-enhance","notes":["style cinematic"]}]"#;
        assert!(s.set_job_transform_notes("p1", notes).unwrap());
        assert!(!s.set_job_transform_notes("nope", notes).unwrap());
        // A later partial update keeps them.
        s.upsert_job(&JobRecord {
            prompt_id: "p1".into(),
            status: "succeeded".into(),
            submitted_ms: 2,
            ..Default::default()
        })
        .unwrap();
        let j = s.job("p1").unwrap().unwrap();
        assert_eq!(j.transform_notes_json.as_deref(), Some(notes));
        assert_eq!(s.recent_jobs(None, 1).unwrap()[0], j);
    }

    #[test]
    fn huge_workflows_are_not_kept_and_old_records_are_pruned() {
        let s = Store::open_in_memory().unwrap();
        let huge = format!("{{\"x\":\"{}\"}}", "a".repeat(MAX_KEPT_WORKFLOW_BYTES));
        s.upsert_job(&JobRecord {
            prompt_id: "big".into(),
            status: "queued".into(),
            submitted_ms: 1_000,
            workflow_json: Some(huge.clone()),
            original_workflow_json: Some("{}".into()),
            ..Default::default()
        })
        .unwrap();
        let j = s.job("big").unwrap().unwrap();
        let kept = j.workflow_json.unwrap();
        assert!(kept.len() < 200 && kept.contains("not kept"), "{kept}");
        assert_eq!(j.original_workflow_json.as_deref(), Some("{}"));
        for (id, ts) in [("old", 1_000), ("mid", 5_000), ("new", 9_000)] {
            s.upsert_job(&JobRecord {
                prompt_id: id.into(),
                status: "succeeded".into(),
                submitted_ms: ts,
                ..Default::default()
            })
            .unwrap();
        }
        let retention = JobRetention {
            max_age_ms: 6_000,
            max_rows: 2,
        };
        // "big" and "old" are too old; of the rest, two are kept.
        assert_eq!(s.prune_jobs(10_000, retention).unwrap(), 2);
        assert!(s.job("mid").unwrap().is_some() && s.job("new").unwrap().is_some());
        let retention = JobRetention {
            max_rows: 1,
            ..retention
        };
        assert_eq!(s.prune_jobs(10_000, retention).unwrap(), 1);
        assert!(s.job("mid").unwrap().is_none());
    }

    #[test]
    fn recent_jobs_filters_by_user_newest_first() {
        let s = Store::open_in_memory().unwrap();
        for (id, user, ts) in [("a", "u1", 1), ("b", "u2", 2), ("c", "u1", 3)] {
            s.upsert_job(&JobRecord {
                prompt_id: id.into(),
                user_id: Some(user.into()),
                status: "queued".into(),
                submitted_ms: ts,
                ..Default::default()
            })
            .unwrap();
        }
        let ids = |v: Vec<JobRecord>| v.into_iter().map(|j| j.prompt_id).collect::<Vec<_>>();
        assert_eq!(ids(s.recent_jobs(Some("u1"), 10).unwrap()), ["c", "a"]);
        assert_eq!(ids(s.recent_jobs(None, 2).unwrap()), ["c", "b"]);
    }
}
