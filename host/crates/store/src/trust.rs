//! The plugin trust policy: trusted signing keys (table `trust_keys`) and the mode (setting
//! `trust.mode`). The runtime owns what the values mean (`comfyhost_runtime::signing`).

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{Store, StoreError, now_ms};

const MODE_KEY: &str = "trust.mode";

/// One trusted key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustKeyRow {
    pub key_id: String,
    pub name: String,
    pub public_key: String,
    pub added_ms: i64,
}

impl Store {
    /// Trusted keys, ordered by name.
    pub fn trust_keys(&self) -> Result<Vec<TrustKeyRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT key_id, name, public_key, added_ms FROM trust_keys ORDER BY name, key_id",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(TrustKeyRow {
                    key_id: r.get(0)?,
                    name: r.get(1)?,
                    public_key: r.get(2)?,
                    added_ms: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Adds a key, or renames it when its id is already trusted.
    pub fn put_trust_key(
        &self,
        key_id: &str,
        name: &str,
        public_key: &str,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO trust_keys (key_id, name, public_key, added_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(key_id) DO UPDATE SET name = excluded.name, public_key = excluded.public_key",
            params![key_id, name, public_key, now_ms()],
        )?;
        Ok(())
    }

    /// Removes a key; `false` when it was not trusted.
    pub fn delete_trust_key(&self, key_id: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM trust_keys WHERE key_id = ?1", [key_id])?;
        Ok(n > 0)
    }

    /// The signing key an admin approved for a plugin: `None` when nothing was recorded,
    /// `Some(None)` when an unsigned version was approved.
    pub fn approved_signer(&self, plugin_id: &str) -> Result<Option<Option<String>>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT key_id FROM plugin_signers WHERE plugin_id = ?1",
                [plugin_id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?)
    }

    pub fn set_approved_signer(
        &self,
        plugin_id: &str,
        key_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO plugin_signers (plugin_id, key_id) VALUES (?1, ?2)
             ON CONFLICT(plugin_id) DO UPDATE SET key_id = excluded.key_id",
            params![plugin_id, key_id],
        )?;
        Ok(())
    }

    /// The stored mode (`None` when never set).
    pub fn trust_mode(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .setting(MODE_KEY)?
            .and_then(|v| v.as_str().map(str::to_owned)))
    }

    pub fn set_trust_mode(&self, mode: &str) -> Result<(), StoreError> {
        self.set_setting(MODE_KEY, &serde_json::Value::String(mode.to_owned()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_mode_round_trip() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(s.trust_mode().unwrap(), None);
        s.set_trust_mode("trusted").unwrap();
        assert_eq!(s.trust_mode().unwrap().as_deref(), Some("trusted"));
        s.put_trust_key("AB", "Workshop", "RWQ...").unwrap();
        s.put_trust_key("AB", "Renamed", "RWQ...").unwrap();
        let keys = s.trust_keys().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].name, "Renamed");
        assert!(s.delete_trust_key("AB").unwrap());
        assert!(!s.delete_trust_key("AB").unwrap());
        assert_eq!(s.approved_signer("p").unwrap(), None);
        s.set_approved_signer("p", None).unwrap();
        assert_eq!(s.approved_signer("p").unwrap(), Some(None));
        s.set_approved_signer("p", Some("AB")).unwrap();
        assert_eq!(s.approved_signer("p").unwrap(), Some(Some("AB".into())));
    }
}
