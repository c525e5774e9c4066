//! Output files and their sync state (`output_files`, migration 3): which job/user produced a
//! file (filled when jobs finish), and the durable backlog of files the output-sync chain has
//! not finished with. A host killed mid-sync finds its pending rows here on restart.

use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;

use crate::{Store, StoreError};

/// Where a file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputState {
    /// Waiting for (another) attempt.
    Pending,
    /// Every output-sync plugin synced or deliberately skipped it.
    Done,
    /// The source disappeared before it was synced (never deleted by us).
    Gone,
    /// Synced, then deleted at the source: waiting for the output-mirror chain to take back
    /// the destination copies.
    Removing,
    /// The output-mirror chain finished with a deleted file.
    Removed,
}

impl OutputState {
    fn as_str(self) -> &'static str {
        match self {
            OutputState::Pending => "pending",
            OutputState::Done => "done",
            OutputState::Gone => "gone",
            OutputState::Removing => "removing",
            OutputState::Removed => "removed",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "done" => OutputState::Done,
            "gone" => OutputState::Gone,
            "removing" => OutputState::Removing,
            "removed" => OutputState::Removed,
            _ => OutputState::Pending,
        }
    }
}

/// A file to enqueue (from a finished job, or found by a full pass).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutput {
    /// Path relative to the output directory, `/`-separated.
    pub rel_path: String,
    pub prompt_id: Option<String>,
    pub user_id: Option<String>,
    pub size: u64,
    pub modified_ms: i64,
}

/// One row of `output_files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputRow {
    pub rel_path: String,
    pub prompt_id: Option<String>,
    pub user_id: Option<String>,
    pub size: u64,
    pub modified_ms: i64,
    pub state: OutputState,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub enqueued_ms: i64,
    pub done_ms: Option<i64>,
}

/// Backlog counts for health reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutputBacklog {
    /// Rows waiting for an attempt.
    pub pending: u64,
    /// Pending rows that failed at least once.
    pub retrying: u64,
    /// Enqueue time of the oldest pending row.
    pub oldest_pending_ms: Option<i64>,
    pub done: u64,
    pub gone: u64,
    /// Deleted at the source, destination copies not yet taken back.
    pub removing: u64,
    pub removed: u64,
}

const COLUMNS: &str = "rel_path, prompt_id, user_id, size, modified_ms, state, attempts, \
                       next_attempt_ms, last_error, enqueued_ms, done_ms";

fn row(r: &Row<'_>) -> rusqlite::Result<OutputRow> {
    let state: String = r.get(5)?;
    Ok(OutputRow {
        rel_path: r.get(0)?,
        prompt_id: r.get(1)?,
        user_id: r.get(2)?,
        size: r.get::<_, i64>(3)?.max(0) as u64,
        modified_ms: r.get(4)?,
        state: OutputState::parse(&state),
        attempts: r.get(6)?,
        next_attempt_ms: r.get(7)?,
        last_error: r.get(8)?,
        enqueued_ms: r.get(9)?,
        done_ms: r.get(10)?,
    })
}

impl Store {
    /// Records a file. New file: pending, due now. Known file with a different size or mtime
    /// (rewritten), or one recorded as deleted (`removing`/`removed`: it is back): pending
    /// again. Known identical file: only fills a missing owner (a job end arriving after a full
    /// pass found the file); its state is left alone. Returns true when the file is (newly)
    /// pending.
    pub fn output_enqueue(&self, f: &NewOutput, now_ms: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let existing: Option<(i64, i64, String)> = tx
            .query_row(
                "SELECT size, modified_ms, state FROM output_files WHERE rel_path = ?1",
                [&f.rel_path],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let size = i64::try_from(f.size).unwrap_or(i64::MAX);
        let newly_pending = match existing {
            None => {
                tx.execute(
                    "INSERT INTO output_files (rel_path, prompt_id, user_id, size, modified_ms, state,
                         attempts, next_attempt_ms, enqueued_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', 0, ?6, ?6)",
                    params![f.rel_path, f.prompt_id, f.user_id, size, f.modified_ms, now_ms],
                )?;
                true
            }
            Some((s, m, st))
                if s != size
                    || m != f.modified_ms
                    || matches!(
                        OutputState::parse(&st),
                        OutputState::Removing | OutputState::Removed
                    ) =>
            {
                tx.execute(
                    "UPDATE output_files SET size = ?2, modified_ms = ?3, state = 'pending',
                         attempts = 0, next_attempt_ms = ?4, last_error = NULL, enqueued_ms = ?4,
                         done_ms = NULL,
                         prompt_id = COALESCE(?5, prompt_id), user_id = COALESCE(?6, user_id)
                     WHERE rel_path = ?1",
                    params![
                        f.rel_path,
                        size,
                        f.modified_ms,
                        now_ms,
                        f.prompt_id,
                        f.user_id
                    ],
                )?;
                true
            }
            Some(_) => {
                tx.execute(
                    "UPDATE output_files SET prompt_id = COALESCE(prompt_id, ?2),
                         user_id = COALESCE(user_id, ?3)
                     WHERE rel_path = ?1",
                    params![f.rel_path, f.prompt_id, f.user_id],
                )?;
                false
            }
        };
        tx.commit()?;
        Ok(newly_pending)
    }

    /// The row of one file.
    pub fn output_get(&self, rel_path: &str) -> Result<Option<OutputRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM output_files WHERE rel_path = ?1"),
                [rel_path],
                row,
            )
            .optional()?)
    }

    /// Rows waiting for the chain (`pending` to sync, `removing` to take back) due at
    /// `now_ms`, earliest first.
    pub fn output_due(&self, now_ms: i64, limit: u32) -> Result<Vec<OutputRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM output_files
             WHERE state IN ('pending', 'removing') AND next_attempt_ms <= ?1
             ORDER BY next_attempt_ms, rel_path LIMIT ?2"
        ))?;
        let rows = stmt
            .query_map(params![now_ms, limit], row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// When the next pending row is due (`None`: nothing pending).
    pub fn output_next_due_ms(&self) -> Result<Option<i64>, StoreError> {
        Ok(self.conn().query_row(
            "SELECT MIN(next_attempt_ms) FROM output_files WHERE state IN ('pending', 'removing')",
            [],
            |r| r.get(0),
        )?)
    }

    /// Every plugin finished with the file.
    pub fn output_mark_done(&self, rel_path: &str, now_ms: i64) -> Result<(), StoreError> {
        self.set_output_final(rel_path, OutputState::Done, now_ms)
    }

    /// The source disappeared before it was synced.
    pub fn output_mark_gone(&self, rel_path: &str, now_ms: i64) -> Result<(), StoreError> {
        self.set_output_final(rel_path, OutputState::Gone, now_ms)
    }

    /// The output-mirror chain finished with a deleted file.
    pub fn output_mark_removed(&self, rel_path: &str, now_ms: i64) -> Result<(), StoreError> {
        self.set_output_final(rel_path, OutputState::Removed, now_ms)
    }

    /// Paths of every synced (`done`) file, for the full pass to notice deletions.
    pub fn output_synced_paths(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT rel_path FROM output_files WHERE state = 'done'")?;
        let rows = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(rows)
    }

    /// Synced files found deleted at the source: `removing`, due now. Rows no longer `done`
    /// are left alone. Returns how many changed.
    pub fn output_mark_removing(&self, paths: &[String], now_ms: i64) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut n = 0;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE output_files SET state = 'removing', attempts = 0, next_attempt_ms = ?2,
                     last_error = NULL, enqueued_ms = ?2, done_ms = NULL
                 WHERE rel_path = ?1 AND state = 'done'",
            )?;
            for p in paths {
                n += stmt.execute(params![p, now_ms])? as u64;
            }
        }
        tx.commit()?;
        Ok(n)
    }

    fn set_output_final(
        &self,
        rel_path: &str,
        state: OutputState,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE output_files SET state = ?2, done_ms = ?3 WHERE rel_path = ?1",
            params![rel_path, state.as_str(), now_ms],
        )?;
        Ok(())
    }

    /// Another attempt is needed at `next_attempt_ms`; `attempts` grows by one.
    pub fn output_mark_retry(
        &self,
        rel_path: &str,
        next_attempt_ms: i64,
        error: &str,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE output_files SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3
             WHERE rel_path = ?1 AND state IN ('pending', 'removing')",
            params![rel_path, next_attempt_ms, error],
        )?;
        Ok(())
    }

    /// A plugin made progress on the file (a multipart upload advanced) and wants another call
    /// at `next_attempt_ms`: not a failure, so `attempts` and `last_error` are cleared.
    pub fn output_mark_progress(
        &self,
        rel_path: &str,
        next_attempt_ms: i64,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "UPDATE output_files SET attempts = 0, next_attempt_ms = ?2, last_error = NULL
             WHERE rel_path = ?1 AND state = 'pending'",
            params![rel_path, next_attempt_ms],
        )?;
        Ok(())
    }

    /// Moves every pending row due later than `at_ms` to `at_ms` (an outage ended: drain now).
    pub fn output_pull_forward(&self, at_ms: i64) -> Result<u64, StoreError> {
        let n = self.conn().execute(
            "UPDATE output_files SET next_attempt_ms = ?1
             WHERE state IN ('pending', 'removing') AND next_attempt_ms > ?1",
            [at_ms],
        )?;
        Ok(n as u64)
    }

    /// Counts for the health report.
    pub fn output_backlog(&self) -> Result<OutputBacklog, StoreError> {
        Ok(self.conn().query_row(
            "SELECT
                COALESCE(SUM(state = 'pending'), 0),
                COALESCE(SUM(state = 'pending' AND attempts > 0), 0),
                MIN(CASE WHEN state = 'pending' THEN enqueued_ms END),
                COALESCE(SUM(state = 'done'), 0),
                COALESCE(SUM(state = 'gone'), 0),
                COALESCE(SUM(state = 'removing'), 0),
                COALESCE(SUM(state = 'removed'), 0)
             FROM output_files",
            [],
            |r| {
                Ok(OutputBacklog {
                    pending: r.get::<_, i64>(0)?.max(0) as u64,
                    retrying: r.get::<_, i64>(1)?.max(0) as u64,
                    oldest_pending_ms: r.get(2)?,
                    done: r.get::<_, i64>(3)?.max(0) as u64,
                    gone: r.get::<_, i64>(4)?.max(0) as u64,
                    removing: r.get::<_, i64>(5)?.max(0) as u64,
                    removed: r.get::<_, i64>(6)?.max(0) as u64,
                })
            },
        )?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn new(rel: &str, user: Option<&str>, size: u64, mtime: i64) -> NewOutput {
        NewOutput {
            rel_path: rel.into(),
            prompt_id: user.map(|_| "p1".into()),
            user_id: user.map(str::to_owned),
            size,
            modified_ms: mtime,
        }
    }

    #[test]
    fn enqueue_is_idempotent_and_fills_owner_later() {
        let s = Store::open_in_memory().unwrap();
        // Full pass finds the file first (owner unknown), the job end names the owner.
        assert!(s.output_enqueue(&new("a.png", None, 3, 10), 100).unwrap());
        assert!(
            !s.output_enqueue(&new("a.png", Some("alice"), 3, 10), 101)
                .unwrap()
        );
        let r = s.output_get("a.png").unwrap().unwrap();
        assert_eq!(r.user_id.as_deref(), Some("alice"));
        assert_eq!(r.state, OutputState::Pending);
        assert_eq!(r.enqueued_ms, 100);
        // A known owner is never overwritten by a later enqueue.
        s.output_enqueue(&new("a.png", Some("bob"), 3, 10), 102)
            .unwrap();
        assert_eq!(
            s.output_get("a.png").unwrap().unwrap().user_id.as_deref(),
            Some("alice")
        );
        // Done stays done for the same identity...
        s.output_mark_done("a.png", 200).unwrap();
        assert!(!s.output_enqueue(&new("a.png", None, 3, 10), 300).unwrap());
        assert_eq!(
            s.output_get("a.png").unwrap().unwrap().state,
            OutputState::Done
        );
        // ...and a rewritten file is pending again.
        assert!(s.output_enqueue(&new("a.png", None, 4, 11), 400).unwrap());
        let r = s.output_get("a.png").unwrap().unwrap();
        assert_eq!((r.state, r.attempts, r.size), (OutputState::Pending, 0, 4));
    }

    #[test]
    fn due_retry_and_backlog() {
        let s = Store::open_in_memory().unwrap();
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            s.output_enqueue(&new(name, None, 1, 1), 100 + i as i64)
                .unwrap();
        }
        let due = s.output_due(101, 10).unwrap();
        assert_eq!(
            due.iter().map(|r| r.rel_path.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        s.output_mark_retry("a", 5000, "network: down").unwrap();
        s.output_mark_done("b", 150).unwrap();
        s.output_mark_gone("c", 150).unwrap();
        let b = s.output_backlog().unwrap();
        assert_eq!(
            b,
            OutputBacklog {
                pending: 1,
                retrying: 1,
                oldest_pending_ms: Some(100),
                done: 1,
                gone: 1,
                removing: 0,
                removed: 0,
            }
        );
        assert_eq!(s.output_next_due_ms().unwrap(), Some(5000));
        assert!(s.output_due(4999, 10).unwrap().is_empty());
        let a = s.output_get("a").unwrap().unwrap();
        assert_eq!(
            (a.attempts, a.last_error.as_deref()),
            (1, Some("network: down"))
        );
        assert_eq!(s.output_pull_forward(200).unwrap(), 1);
        assert_eq!(s.output_due(200, 10).unwrap().len(), 1);
        // Retry of a finished row changes nothing.
        s.output_mark_retry("b", 9, "x").unwrap();
        assert_eq!(s.output_get("b").unwrap().unwrap().attempts, 0);
        // Progress is not a failure: due again, attempts and error cleared.
        s.output_mark_progress("a", 300).unwrap();
        let a = s.output_get("a").unwrap().unwrap();
        assert_eq!(
            (a.attempts, a.next_attempt_ms, a.last_error),
            (0, 300, None)
        );
        assert_eq!(s.output_backlog().unwrap().retrying, 0);
        s.output_mark_progress("b", 9).unwrap();
        assert_eq!(s.output_get("b").unwrap().unwrap().state, OutputState::Done);
    }

    #[test]
    fn deleted_sources_go_through_removing_and_come_back() {
        let s = Store::open_in_memory().unwrap();
        for name in ["a", "b", "c"] {
            s.output_enqueue(&new(name, Some("u"), 1, 1), 10).unwrap();
        }
        s.output_mark_done("a", 20).unwrap();
        s.output_mark_done("b", 20).unwrap();
        let mut synced = s.output_synced_paths().unwrap();
        synced.sort();
        assert_eq!(synced, ["a", "b"]);
        // Only synced rows turn `removing`; "c" is still pending.
        let paths = vec!["a".to_owned(), "c".to_owned()];
        assert_eq!(s.output_mark_removing(&paths, 30).unwrap(), 1);
        let a = s.output_get("a").unwrap().unwrap();
        assert_eq!((a.state, a.next_attempt_ms), (OutputState::Removing, 30));
        // Removals are due like uploads, and retried like them.
        let due: Vec<_> = s.output_due(30, 10).unwrap();
        assert_eq!(due.iter().filter(|r| r.rel_path == "a").count(), 1);
        s.output_mark_retry("a", 99, "network: down").unwrap();
        assert_eq!(s.output_get("a").unwrap().unwrap().attempts, 1);
        assert_eq!(s.output_backlog().unwrap().removing, 1);
        s.output_mark_removed("a", 100).unwrap();
        let b = s.output_backlog().unwrap();
        assert_eq!((b.removing, b.removed, b.done), (0, 1, 1));
        // The same file written again (same size and time, even) is synced again.
        assert!(s.output_enqueue(&new("a", None, 1, 1), 200).unwrap());
        assert_eq!(
            s.output_get("a").unwrap().unwrap().state,
            OutputState::Pending
        );
    }

    #[test]
    fn backlog_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            let s = Store::open(&path).unwrap();
            s.output_enqueue(&new("x/y.png", Some("u"), 9, 9), 1)
                .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let due = s.output_due(i64::MAX, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].user_id.as_deref(), Some("u"));
    }
}
