//! Persistent per-plugin state: enabled flag, validated config, admin grants, installed and
//! previous version. The JSON columns are opaque here; the runtime owns their shape.

use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::{Store, StoreError, now_ms};

/// One row of `plugins`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRow {
    pub id: String,
    pub enabled: bool,
    pub config_json: Option<String>,
    pub grants_json: Option<String>,
    pub installed_version: Option<String>,
    pub previous_version: Option<String>,
    /// Milliseconds since the Unix epoch of the last change.
    pub updated_at: i64,
}

impl PluginRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            enabled: r.get(1)?,
            config_json: r.get(2)?,
            grants_json: r.get(3)?,
            installed_version: r.get(4)?,
            previous_version: r.get(5)?,
            updated_at: r.get(6)?,
        })
    }
}

const COLUMNS: &str =
    "id, enabled, config_json, grants_json, installed_version, previous_version, updated_at";

impl Store {
    /// The row for `id`, if the plugin was ever seen.
    pub fn plugin(&self, id: &str) -> Result<Option<PluginRow>, StoreError> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM plugins WHERE id = ?1"),
                [id],
                PluginRow::from_row,
            )
            .optional()?;
        Ok(row)
    }

    /// Every plugin row, ordered by id.
    pub fn plugins(&self) -> Result<Vec<PluginRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM plugins ORDER BY id"))?;
        let rows = stmt
            .query_map([], PluginRow::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Inserts or fully replaces a row (`updated_at` is set to now).
    pub fn upsert_plugin(&self, row: &PluginRow) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO plugins (id, enabled, config_json, grants_json, installed_version, previous_version, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(id) DO UPDATE SET enabled = excluded.enabled, config_json = excluded.config_json,
                grants_json = excluded.grants_json, installed_version = excluded.installed_version,
                previous_version = excluded.previous_version, updated_at = excluded.updated_at",
            params![
                row.id,
                row.enabled,
                row.config_json,
                row.grants_json,
                row.installed_version,
                row.previous_version,
                now_ms()
            ],
        )?;
        Ok(())
    }

    /// Sets the enabled flag, creating the row if needed.
    pub fn set_plugin_enabled(&self, id: &str, enabled: bool) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO plugins (id, enabled, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET enabled = excluded.enabled, updated_at = excluded.updated_at",
            params![id, enabled, now_ms()],
        )?;
        Ok(())
    }

    /// Stores the validated config JSON (`None` clears it), creating the row if needed.
    pub fn set_plugin_config(&self, id: &str, config_json: Option<&str>) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO plugins (id, config_json, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET config_json = excluded.config_json, updated_at = excluded.updated_at",
            params![id, config_json, now_ms()],
        )?;
        Ok(())
    }

    /// Stores the grants JSON, creating the row if needed.
    pub fn set_plugin_grants(&self, id: &str, grants_json: Option<&str>) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO plugins (id, grants_json, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET grants_json = excluded.grants_json, updated_at = excluded.updated_at",
            params![id, grants_json, now_ms()],
        )?;
        Ok(())
    }

    /// Records the installed and previous versions, creating the row if needed.
    pub fn set_plugin_versions(
        &self,
        id: &str,
        installed: Option<&str>,
        previous: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO plugins (id, installed_version, previous_version, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(id) DO UPDATE SET installed_version = excluded.installed_version,
                previous_version = excluded.previous_version, updated_at = excluded.updated_at",
            params![id, installed, previous, now_ms()],
        )?;
        Ok(())
    }

    /// Removes the plugin's row and its key-value namespace. Returns whether a row existed.
    pub fn delete_plugin(&self, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM plugin_kv WHERE plugin_id = ?1", [id])?;
        let n = tx.execute("DELETE FROM plugins WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(n > 0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn partial_setters_keep_other_columns() {
        let s = Store::open_in_memory().unwrap();
        assert!(s.plugin("a").unwrap().is_none());
        s.set_plugin_config("a", Some(r#"{"x":1}"#)).unwrap();
        s.set_plugin_grants("a", Some(r#"{"http":[]}"#)).unwrap();
        s.set_plugin_enabled("a", false).unwrap();
        s.set_plugin_versions("a", Some("0.2.0"), Some("0.1.0"))
            .unwrap();
        let row = s.plugin("a").unwrap().unwrap();
        assert!(!row.enabled);
        assert_eq!(row.config_json.as_deref(), Some(r#"{"x":1}"#));
        assert_eq!(row.grants_json.as_deref(), Some(r#"{"http":[]}"#));
        assert_eq!(row.installed_version.as_deref(), Some("0.2.0"));
        assert_eq!(row.previous_version.as_deref(), Some("0.1.0"));
        assert!(row.updated_at > 0);
    }

    #[test]
    fn new_row_defaults_to_enabled_and_list_is_sorted() {
        let s = Store::open_in_memory().unwrap();
        s.set_plugin_config("b", None).unwrap();
        s.set_plugin_config("a", None).unwrap();
        let rows = s.plugins().unwrap();
        assert_eq!(
            rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(rows.iter().all(|r| r.enabled));
    }

    #[test]
    fn delete_plugin_removes_kv_namespace() {
        let s = Store::open_in_memory().unwrap();
        s.set_plugin_enabled("a", true).unwrap();
        s.kv_set("a", "k", b"v").unwrap();
        s.kv_set("b", "k", b"v").unwrap();
        assert!(s.delete_plugin("a").unwrap());
        assert!(!s.delete_plugin("a").unwrap());
        assert_eq!(s.kv_get("a", "k").unwrap(), None);
        assert_eq!(s.kv_get("b", "k").unwrap(), Some(b"v".to_vec()));
    }
}
