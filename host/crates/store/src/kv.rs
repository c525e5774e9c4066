//! Per-plugin key-value namespaces (`plugin_kv`), with size limits, a key quota and a byte
//! quota (keys plus values).

use rusqlite::{OptionalExtension, params};

use crate::{Store, StoreError};

/// Longest key, in bytes (matches the WIT contract).
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value, in bytes (matches the WIT contract).
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Limits of one plugin's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvLimits {
    /// Most keys one plugin may hold.
    pub max_keys: u64,
    /// Most bytes (keys plus values) one plugin may hold.
    pub max_bytes: u64,
}

/// Default byte quota of one plugin's namespace.
pub const DEFAULT_KV_MAX_BYTES: u64 = 32 << 20;

impl Default for KvLimits {
    fn default() -> Self {
        Self {
            max_keys: 10_000,
            max_bytes: DEFAULT_KV_MAX_BYTES,
        }
    }
}

impl Store {
    /// Value of `key` in the plugin's namespace.
    pub fn kv_get(&self, plugin_id: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let v = self
            .conn()
            .query_row(
                "SELECT value FROM plugin_kv WHERE plugin_id = ?1 AND key = ?2",
                params![plugin_id, key],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v)
    }

    /// Inserts or replaces `key`. Replacing an existing key never counts against the quota.
    pub fn kv_set(&self, plugin_id: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(StoreError::TooLarge(format!(
                "key is {} bytes, limit {MAX_KEY_BYTES}",
                key.len()
            )));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(StoreError::TooLarge(format!(
                "value is {} bytes, limit {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        let KvLimits {
            max_keys,
            max_bytes,
        } = self.inner.kv_limits;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let others: u64 = tx.query_row(
            "SELECT COALESCE(SUM(length(CAST(key AS BLOB)) + length(value)), 0) FROM plugin_kv
             WHERE plugin_id = ?1 AND key != ?2",
            params![plugin_id, key],
            |r| r.get(0),
        )?;
        if others + (key.len() + value.len()) as u64 > max_bytes {
            return Err(StoreError::BytesQuotaExceeded {
                plugin_id: plugin_id.to_owned(),
                max_bytes,
            });
        }
        let exists: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM plugin_kv WHERE plugin_id = ?1 AND key = ?2)",
            params![plugin_id, key],
            |r| r.get(0),
        )?;
        if !exists {
            let count: u64 = tx.query_row(
                "SELECT COUNT(*) FROM plugin_kv WHERE plugin_id = ?1",
                [plugin_id],
                |r| r.get(0),
            )?;
            if count >= max_keys {
                return Err(StoreError::QuotaExceeded {
                    plugin_id: plugin_id.to_owned(),
                    max_keys,
                });
            }
        }
        tx.execute(
            "INSERT INTO plugin_kv (plugin_id, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT(plugin_id, key) DO UPDATE SET value = excluded.value",
            params![plugin_id, key, value],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes `key`; a missing key is not an error.
    pub fn kv_delete(&self, plugin_id: &str, key: &str) -> Result<(), StoreError> {
        self.conn().execute(
            "DELETE FROM plugin_kv WHERE plugin_id = ?1 AND key = ?2",
            params![plugin_id, key],
        )?;
        Ok(())
    }

    /// Keys starting with `prefix`, sorted, at most `limit`.
    pub fn kv_list(
        &self,
        plugin_id: &str,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        // Compare on the key's leading bytes: exact for any prefix, no LIKE escaping needed.
        let mut stmt = conn.prepare(
            "SELECT key FROM plugin_kv
             WHERE plugin_id = ?1 AND substr(CAST(key AS BLOB), 1, length(CAST(?2 AS BLOB))) = CAST(?2 AS BLOB)
             ORDER BY key LIMIT ?3",
        )?;
        let keys = stmt
            .query_map(params![plugin_id, prefix, limit], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(keys)
    }

    /// Number of keys the plugin holds.
    pub fn kv_count(&self, plugin_id: &str) -> Result<u64, StoreError> {
        let n = self.conn().query_row(
            "SELECT COUNT(*) FROM plugin_kv WHERE plugin_id = ?1",
            [plugin_id],
            |r| r.get(0),
        )?;
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn set_get_replace_delete() {
        let s = Store::open_in_memory().unwrap();
        assert_eq!(s.kv_get("p", "a").unwrap(), None);
        s.kv_set("p", "a", b"1").unwrap();
        s.kv_set("p", "a", b"2").unwrap();
        assert_eq!(s.kv_get("p", "a").unwrap(), Some(b"2".to_vec()));
        assert_eq!(s.kv_count("p").unwrap(), 1);
        s.kv_delete("p", "a").unwrap();
        s.kv_delete("p", "a").unwrap();
        assert_eq!(s.kv_get("p", "a").unwrap(), None);
    }

    #[test]
    fn namespaces_are_isolated() {
        let s = Store::open_in_memory().unwrap();
        s.kv_set("p1", "k", b"one").unwrap();
        s.kv_set("p2", "k", b"two").unwrap();
        assert_eq!(s.kv_get("p1", "k").unwrap(), Some(b"one".to_vec()));
        assert_eq!(s.kv_list("p2", "", 10).unwrap(), ["k"]);
    }

    #[test]
    fn list_by_prefix_sorted_and_limited() {
        let s = Store::open_in_memory().unwrap();
        for k in ["job:3", "job:1", "job:2", "jobx", "other", "job%_"] {
            s.kv_set("p", k, b"").unwrap();
        }
        assert_eq!(
            s.kv_list("p", "job:", 10).unwrap(),
            ["job:1", "job:2", "job:3"]
        );
        assert_eq!(s.kv_list("p", "job:", 2).unwrap(), ["job:1", "job:2"]);
        // LIKE wildcards in the prefix are literal
        assert_eq!(s.kv_list("p", "job%", 10).unwrap(), ["job%_"]);
        assert_eq!(s.kv_list("p", "", 100).unwrap().len(), 6);
    }

    #[test]
    fn quota_counts_new_keys_only() {
        let s = Store::open_in_memory().unwrap().with_kv_limits(KvLimits {
            max_keys: 2,
            ..KvLimits::default()
        });
        s.kv_set("p", "a", b"").unwrap();
        s.kv_set("p", "b", b"").unwrap();
        let err = s.kv_set("p", "c", b"").unwrap_err();
        assert!(
            matches!(err, StoreError::QuotaExceeded { max_keys: 2, .. }),
            "{err}"
        );
        // replacing an existing key is fine, and other plugins have their own quota
        s.kv_set("p", "a", b"new").unwrap();
        s.kv_set("q", "c", b"").unwrap();
        s.kv_delete("p", "b").unwrap();
        s.kv_set("p", "c", b"").unwrap();
    }

    #[test]
    fn byte_quota_counts_keys_and_values_and_replacements_once() {
        let s = Store::open_in_memory().unwrap().with_kv_limits(KvLimits {
            max_keys: 1000,
            max_bytes: 100,
        });
        s.kv_set("p", "a", &[0u8; 49]).unwrap(); // 50 bytes
        s.kv_set("p", "b", &[0u8; 49]).unwrap(); // 100 bytes
        let err = s.kv_set("p", "c", b"").unwrap_err();
        assert!(
            matches!(err, StoreError::BytesQuotaExceeded { max_bytes: 100, .. }),
            "{err}"
        );
        // replacing a value counts only the new one; other plugins have their own quota
        s.kv_set("p", "a", &[1u8; 49]).unwrap();
        assert!(s.kv_set("p", "a", &[1u8; 50]).is_err());
        s.kv_set("q", "c", &[0u8; 99]).unwrap();
        s.kv_delete("p", "b").unwrap();
        s.kv_set("p", "c", &[0u8; 49]).unwrap();
    }

    #[test]
    fn size_limits() {
        let s = Store::open_in_memory().unwrap();
        let long_key = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(matches!(
            s.kv_set("p", &long_key, b""),
            Err(StoreError::TooLarge(_))
        ));
        let big = vec![0u8; MAX_VALUE_BYTES + 1];
        assert!(matches!(
            s.kv_set("p", "k", &big),
            Err(StoreError::TooLarge(_))
        ));
        s.kv_set("p", &"k".repeat(MAX_KEY_BYTES), &big[..MAX_VALUE_BYTES])
            .unwrap();
    }
}
