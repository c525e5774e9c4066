//! Decisions of shadow plugins (table `shadow_decisions`): what a plugin installed in shadow
//! would have answered on a live submission, next to what the active chain did. A bounded ring
//! per plugin: the oldest rows beyond [`SHADOW_RING`] are dropped on insert.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::{Store, StoreError};

/// Decisions kept per shadow plugin.
pub const SHADOW_RING: u32 = 200;

/// One recorded shadow decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowRow {
    pub plugin_id: String,
    pub prompt_id: String,
    pub hook: String,
    pub ts_ms: i64,
    /// What the active chain did (JSON, shape owned by the host).
    pub active_json: String,
    /// What the shadow plugin answered (JSON), `null` on a fault.
    pub shadow_json: String,
    pub agreed: bool,
    pub fault: Option<String>,
    pub latency_ms: i64,
}

impl Store {
    /// Records a decision and trims the plugin's ring.
    pub fn record_shadow(&self, row: &ShadowRow) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO shadow_decisions (plugin_id, prompt_id, hook, ts_ms, active_json, shadow_json, agreed, fault, latency_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                row.plugin_id,
                row.prompt_id,
                row.hook,
                row.ts_ms,
                row.active_json,
                row.shadow_json,
                row.agreed,
                row.fault,
                row.latency_ms
            ],
        )?;
        tx.execute(
            "DELETE FROM shadow_decisions WHERE plugin_id = ?1 AND seq NOT IN
             (SELECT seq FROM shadow_decisions WHERE plugin_id = ?1 ORDER BY seq DESC LIMIT ?2)",
            params![row.plugin_id, SHADOW_RING],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The plugin's most recent decisions, newest first.
    pub fn shadow_decisions(
        &self,
        plugin_id: &str,
        limit: u32,
    ) -> Result<Vec<ShadowRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT plugin_id, prompt_id, hook, ts_ms, active_json, shadow_json, agreed, fault, latency_ms
             FROM shadow_decisions WHERE plugin_id = ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![plugin_id, limit], |r| {
                Ok(ShadowRow {
                    plugin_id: r.get(0)?,
                    prompt_id: r.get(1)?,
                    hook: r.get(2)?,
                    ts_ms: r.get(3)?,
                    active_json: r.get(4)?,
                    shadow_json: r.get(5)?,
                    agreed: r.get(6)?,
                    fault: r.get(7)?,
                    latency_ms: r.get(8)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Forgets a plugin's decisions (discard, promote).
    pub fn clear_shadow(&self, plugin_id: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM shadow_decisions WHERE plugin_id = ?1",
            [plugin_id],
        )?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_newest_per_plugin() {
        let s = Store::open_in_memory().unwrap();
        for i in 0..(SHADOW_RING + 5) {
            s.record_shadow(&ShadowRow {
                plugin_id: "p".into(),
                prompt_id: format!("{i}"),
                hook: "queue-router".into(),
                ts_ms: i as i64,
                active_json: "{}".into(),
                shadow_json: "{}".into(),
                agreed: false,
                fault: None,
                latency_ms: 1,
            })
            .unwrap();
        }
        let rows = s.shadow_decisions("p", 1000).unwrap();
        assert_eq!(rows.len() as u32, SHADOW_RING);
        assert_eq!(rows[0].prompt_id, format!("{}", SHADOW_RING + 4));
    }
}
