//! Jobs the host runs on a remote ComfyUI or a serverless endpoint. Enough is kept to pick a
//! job up again after a host restart (which backend, the remote id, the original request) and
//! to answer the browser's `/history` and `/queue` for it afterwards.

use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::{BackendKind, Store, StoreError};

/// One remote job as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoteJobRow {
    pub prompt_id: String,
    /// Which kind of remote runs it (stored as `comfyui` / `serverless`).
    pub kind: BackendKind,
    /// Backend or endpoint name from the host configuration.
    pub backend: String,
    /// The remote's own id (serverless job id); `None` until the remote accepted it.
    pub remote_id: Option<String>,
    pub client_id: Option<String>,
    pub user_id: Option<String>,
    /// Queue number shown to the browser.
    pub number: f64,
    /// `submitting`, `queued`, `running`, `succeeded`, `failed`, `interrupted`.
    pub state: String,
    /// The `/prompt` request as forwarded (`prompt`, `extra_data`, ...).
    pub request_json: String,
    /// The history entry the host serves for this prompt once it ended.
    pub history_json: Option<String>,
    pub updated_ms: i64,
}

const COLUMNS: &str = "prompt_id, kind, backend, remote_id, client_id, user_id, number, state, request_json, history_json, updated_ms";

impl RemoteJobRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            prompt_id: r.get(0)?,
            kind: r.get(1)?,
            backend: r.get(2)?,
            remote_id: r.get(3)?,
            client_id: r.get(4)?,
            user_id: r.get(5)?,
            number: r.get(6)?,
            state: r.get(7)?,
            request_json: r.get(8)?,
            history_json: r.get(9)?,
            updated_ms: r.get(10)?,
        })
    }

    /// Still queued or running somewhere (or not yet accepted).
    pub fn is_unfinished(&self) -> bool {
        matches!(self.state.as_str(), "submitting" | "queued" | "running")
    }
}

impl Store {
    /// Inserts or replaces a remote job.
    pub fn put_remote_job(&self, job: &RemoteJobRow) -> Result<(), StoreError> {
        self.conn().execute(
            &format!(
                "INSERT OR REPLACE INTO remote_jobs ({COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ),
            params![
                job.prompt_id,
                job.kind,
                job.backend,
                job.remote_id,
                job.client_id,
                job.user_id,
                job.number,
                job.state,
                job.request_json,
                job.history_json,
                crate::now_ms()
            ],
        )?;
        Ok(())
    }

    pub fn remote_job(&self, prompt_id: &str) -> Result<Option<RemoteJobRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM remote_jobs WHERE prompt_id = ?1"),
                [prompt_id],
                RemoteJobRow::from_row,
            )
            .optional()?)
    }

    /// Remote jobs, newest first; only unfinished ones when `unfinished_only`.
    pub fn remote_jobs(
        &self,
        unfinished_only: bool,
        limit: u32,
    ) -> Result<Vec<RemoteJobRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM remote_jobs
             WHERE (?1 = 0 OR state IN ('submitting', 'queued', 'running'))
             ORDER BY number DESC LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(
                params![i64::from(unfinished_only), limit],
                RemoteJobRow::from_row,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Forgets remote jobs (ComfyUI's `POST /history {clear|delete}`); returns how many.
    pub fn delete_remote_jobs(&self, prompt_ids: Option<&[String]>) -> Result<usize, StoreError> {
        let conn = self.conn();
        match prompt_ids {
            None => Ok(conn.execute(
                "DELETE FROM remote_jobs WHERE state NOT IN ('submitting', 'queued', 'running')",
                [],
            )?),
            Some(ids) => {
                let mut n = 0;
                for id in ids {
                    n += conn.execute(
                        "DELETE FROM remote_jobs WHERE prompt_id = ?1
                         AND state NOT IN ('submitting', 'queued', 'running')",
                        [id],
                    )?;
                }
                Ok(n)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn job(id: &str, number: f64, state: &str) -> RemoteJobRow {
        RemoteJobRow {
            prompt_id: id.into(),
            kind: BackendKind::Comfyui,
            backend: "gpu-a".into(),
            number,
            state: state.into(),
            request_json: "{}".into(),
            ..Default::default()
        }
    }

    #[test]
    fn remote_jobs_round_trip_and_filter_unfinished() {
        let s = Store::open_in_memory().unwrap();
        s.put_remote_job(&job("a", 1.0, "running")).unwrap();
        s.put_remote_job(&job("b", 2.0, "succeeded")).unwrap();
        let mut c = job("c", 3.0, "queued");
        c.remote_id = Some("r-1".into());
        s.put_remote_job(&c).unwrap();
        let unfinished: Vec<String> = s
            .remote_jobs(true, 10)
            .unwrap()
            .into_iter()
            .map(|j| j.prompt_id)
            .collect();
        assert_eq!(unfinished, ["c", "a"]);
        assert_eq!(s.remote_jobs(false, 10).unwrap().len(), 3);
        assert_eq!(
            s.remote_job("c").unwrap().unwrap().remote_id.as_deref(),
            Some("r-1")
        );
        // Only finished jobs can be forgotten.
        assert_eq!(s.delete_remote_jobs(None).unwrap(), 1);
        assert_eq!(s.delete_remote_jobs(Some(&["a".into()])).unwrap(), 0);
        assert!(s.remote_job("b").unwrap().is_none());
    }
}
