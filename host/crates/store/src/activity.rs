//! Admin activity log (who did what to which plugin/backend/job), with retention by row count
//! and by age applied on every insert.

use rusqlite::{Row, params};
use serde::{Deserialize, Serialize};

use crate::{Store, StoreError, now_ms};

/// How much activity to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityRetention {
    /// Newest rows kept; older rows are deleted.
    pub max_rows: u64,
    /// Rows older than this many milliseconds are deleted.
    pub max_age_ms: i64,
}

impl Default for ActivityRetention {
    fn default() -> Self {
        Self {
            max_rows: 10_000,
            max_age_ms: 30 * 24 * 60 * 60 * 1000,
        }
    }
}

/// An activity entry to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewActivity {
    /// `admin:<name>`, `system`, `plugin:<id>`, ...
    pub actor: String,
    /// Verb, e.g. `plugin.enable`, `plugin.breaker_tripped`.
    pub action: String,
    /// What it acted on, e.g. a plugin id.
    pub target: String,
    pub detail: serde_json::Value,
}

/// A recorded activity entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    pub id: i64,
    pub ts_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
}

impl Activity {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        let detail: String = r.get(5)?;
        Ok(Self {
            id: r.get(0)?,
            ts_ms: r.get(1)?,
            actor: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
        })
    }
}

impl Store {
    /// Changes the retention applied on later inserts and by [`Store::prune_activity`].
    pub fn set_activity_retention(&self, retention: ActivityRetention) {
        *self.inner.retention.lock() = retention;
    }

    /// Records an entry at the current time and applies retention. Returns the new row id.
    pub fn record_activity(&self, entry: &NewActivity) -> Result<i64, StoreError> {
        self.record_activity_at(entry, now_ms())
    }

    /// Records an entry with an explicit timestamp (imports, tests) and applies retention
    /// relative to that timestamp.
    pub fn record_activity_at(&self, entry: &NewActivity, ts_ms: i64) -> Result<i64, StoreError> {
        let detail = serde_json::to_string(&entry.detail)?;
        let retention = *self.inner.retention.lock();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO activity (ts_ms, actor, action, target, detail_json) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![ts_ms, entry.actor, entry.action, entry.target, detail],
        )?;
        let id = tx.last_insert_rowid();
        prune(&tx, retention, ts_ms)?;
        tx.commit()?;
        Ok(id)
    }

    /// Applies retention relative to `now_ms`; returns the number of rows deleted.
    pub fn prune_activity(&self, now_ms: i64) -> Result<usize, StoreError> {
        let retention = *self.inner.retention.lock();
        let conn = self.conn();
        prune(&conn, retention, now_ms)
    }

    /// Newest entries first, at most `limit`.
    pub fn recent_activity(&self, limit: u32) -> Result<Vec<Activity>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, ts_ms, actor, action, target, detail_json FROM activity ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt
            .query_map([limit], Activity::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

fn prune(
    conn: &rusqlite::Connection,
    retention: ActivityRetention,
    now_ms: i64,
) -> Result<usize, StoreError> {
    let by_age = conn.execute(
        "DELETE FROM activity WHERE ts_ms < ?1",
        [now_ms.saturating_sub(retention.max_age_ms)],
    )?;
    let offset = i64::try_from(retention.max_rows).unwrap_or(i64::MAX);
    let by_count = conn.execute(
        "DELETE FROM activity WHERE id <= (SELECT id FROM activity ORDER BY id DESC LIMIT 1 OFFSET ?1)",
        [offset],
    )?;
    Ok(by_age + by_count)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(n: u32) -> NewActivity {
        NewActivity {
            actor: "admin:ana".into(),
            action: "plugin.enable".into(),
            target: format!("p{n}"),
            detail: serde_json::json!({ "n": n }),
        }
    }

    #[test]
    fn records_and_lists_newest_first() {
        let s = Store::open_in_memory().unwrap();
        s.record_activity(&entry(1)).unwrap();
        s.record_activity(&entry(2)).unwrap();
        let rows = s.recent_activity(10).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].target, "p2");
        assert_eq!(rows[0].detail, serde_json::json!({ "n": 2 }));
        assert_eq!(rows[1].actor, "admin:ana");
    }

    #[test]
    fn retention_by_count_keeps_newest() {
        let s = Store::open_in_memory().unwrap();
        s.set_activity_retention(ActivityRetention {
            max_rows: 3,
            max_age_ms: i64::MAX,
        });
        for n in 0..10 {
            s.record_activity(&entry(n)).unwrap();
        }
        let targets: Vec<_> = s
            .recent_activity(100)
            .unwrap()
            .into_iter()
            .map(|a| a.target)
            .collect();
        assert_eq!(targets, ["p9", "p8", "p7"]);
    }

    #[test]
    fn retention_by_age() {
        let s = Store::open_in_memory().unwrap();
        s.set_activity_retention(ActivityRetention {
            max_rows: 1000,
            max_age_ms: 1_000,
        });
        s.record_activity_at(&entry(1), 10_000).unwrap();
        s.record_activity_at(&entry(2), 10_500).unwrap();
        assert_eq!(s.recent_activity(10).unwrap().len(), 2);
        // 11_200 - 1_000 = 10_200: the first entry is now too old
        s.record_activity_at(&entry(3), 11_200).unwrap();
        let targets: Vec<_> = s
            .recent_activity(10)
            .unwrap()
            .into_iter()
            .map(|a| a.target)
            .collect();
        assert_eq!(targets, ["p3", "p2"]);
        assert_eq!(s.prune_activity(20_000).unwrap(), 2);
        assert!(s.recent_activity(10).unwrap().is_empty());
    }
}
