//! Quarantined workflows: a workflow (by the SHA-256 of its canonical JSON) that was being
//! validated or run when ComfyUI died is refused until an admin releases it, so one user's
//! crashing workflow cannot keep ComfyUI down for the room.

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{Store, StoreError};

/// One quarantined workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRow {
    pub workflow_sha256: String,
    /// The prompt that was at ComfyUI when it died.
    pub prompt_id: String,
    pub user_id: Option<String>,
    /// How ComfyUI died (exit description) and when in the prompt's life.
    pub reason: String,
    /// Nodes in the workflow.
    pub nodes: i64,
    pub created_ms: i64,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<QuarantineRow> {
    Ok(QuarantineRow {
        workflow_sha256: r.get(0)?,
        prompt_id: r.get(1)?,
        user_id: r.get(2)?,
        reason: r.get(3)?,
        nodes: r.get(4)?,
        created_ms: r.get(5)?,
    })
}

impl Store {
    /// Quarantines a workflow; `false` when it already was (the first entry is kept).
    pub fn quarantine_workflow(&self, q: &QuarantineRow) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "INSERT OR IGNORE INTO quarantined_workflows
             (workflow_sha256, prompt_id, user_id, reason, nodes, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                q.workflow_sha256,
                q.prompt_id,
                q.user_id,
                q.reason,
                q.nodes,
                q.created_ms
            ],
        )?;
        Ok(n == 1)
    }

    pub fn quarantined_workflow(&self, sha256: &str) -> Result<Option<QuarantineRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT workflow_sha256, prompt_id, user_id, reason, nodes, created_ms
                 FROM quarantined_workflows WHERE workflow_sha256 = ?1",
                [sha256],
                row,
            )
            .optional()?)
    }

    /// Newest first.
    pub fn quarantined_workflows(&self) -> Result<Vec<QuarantineRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT workflow_sha256, prompt_id, user_id, reason, nodes, created_ms
             FROM quarantined_workflows ORDER BY created_ms DESC LIMIT 1000",
        )?;
        let rows = stmt.query_map([], row)?.collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Releases a workflow; `false` when it was not quarantined.
    pub fn release_workflow(&self, sha256: &str) -> Result<bool, StoreError> {
        Ok(self.conn().execute(
            "DELETE FROM quarantined_workflows WHERE workflow_sha256 = ?1",
            [sha256],
        )? == 1)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quarantine_round_trip() {
        let s = Store::open_in_memory().unwrap();
        let q = QuarantineRow {
            workflow_sha256: "ab".into(),
            prompt_id: "p".into(),
            user_id: Some("u".into()),
            reason: "SIGABRT".into(),
            nodes: 120,
            created_ms: 1,
        };
        assert!(s.quarantine_workflow(&q).unwrap());
        assert!(!s.quarantine_workflow(&q).unwrap());
        assert_eq!(s.quarantined_workflow("ab").unwrap(), Some(q.clone()));
        assert_eq!(s.quarantined_workflows().unwrap(), vec![q]);
        assert!(s.release_workflow("ab").unwrap());
        assert!(!s.release_workflow("ab").unwrap());
        assert!(s.quarantined_workflow("ab").unwrap().is_none());
    }
}
