//! Per-plugin key-value store capability.

/// Errors a key-value backend reports; mapped to the WIT `kv-error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("quota exceeded")]
    QuotaExceeded,
    #[error("storage: {0}")]
    Storage(String),
}

/// Storage behind the `kv-*` host imports. Implemented by the SQLite store in the host and by
/// [`MemoryKv`] for tests. Every method is scoped by plugin id.
pub trait KvStore: Send + Sync + 'static {
    fn get(&self, plugin_id: &str, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    fn set(&self, plugin_id: &str, key: &str, value: &[u8]) -> Result<(), KvError>;
    fn delete(&self, plugin_id: &str, key: &str) -> Result<(), KvError>;
    fn list(&self, plugin_id: &str, prefix: &str, limit: u32) -> Result<Vec<String>, KvError>;
}

/// Longest key a plugin may use, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value a plugin may store, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most keys one `kv-list` call returns, whatever limit the plugin asks for.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// Checks a key against [`MAX_KEY_BYTES`] (and rejects the empty key).
pub fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::TooLarge("key must not be empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::TooLarge(format!(
            "key is {} bytes, the limit is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(())
}

/// Checks a value against [`MAX_VALUE_BYTES`].
pub fn check_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::TooLarge(format!(
            "value is {} bytes, the limit is {MAX_VALUE_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

/// In-memory [`KvStore`] (tests, benchmarks, and hosts run without a database). Namespaces
/// are separated by plugin id; an optional per-plugin byte quota mirrors the SQLite store.
#[derive(Debug, Default)]
pub struct MemoryKv {
    map: parking_lot::Mutex<std::collections::BTreeMap<(String, String), Vec<u8>>>,
    quota_bytes: Option<usize>,
}

impl MemoryKv {
    /// An empty store without a quota.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store where each plugin may keep at most `quota_bytes` of keys plus values.
    pub fn with_quota(quota_bytes: usize) -> Self {
        Self {
            map: Default::default(),
            quota_bytes: Some(quota_bytes),
        }
    }

    fn used_bytes(
        map: &std::collections::BTreeMap<(String, String), Vec<u8>>,
        plugin_id: &str,
        except_key: &str,
    ) -> usize {
        map.iter()
            .filter(|((p, k), _)| p == plugin_id && k != except_key)
            .map(|((_, k), v)| k.len() + v.len())
            .sum()
    }
}

impl KvStore for MemoryKv {
    fn get(&self, plugin_id: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        Ok(self
            .map
            .lock()
            .get(&(plugin_id.to_owned(), key.to_owned()))
            .cloned())
    }

    fn set(&self, plugin_id: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        check_key(key)?;
        check_value(value)?;
        let mut map = self.map.lock();
        if let Some(quota) = self.quota_bytes
            && Self::used_bytes(&map, plugin_id, key) + key.len() + value.len() > quota
        {
            return Err(KvError::QuotaExceeded);
        }
        map.insert((plugin_id.to_owned(), key.to_owned()), value.to_vec());
        Ok(())
    }

    fn delete(&self, plugin_id: &str, key: &str) -> Result<(), KvError> {
        check_key(key)?;
        self.map
            .lock()
            .remove(&(plugin_id.to_owned(), key.to_owned()));
        Ok(())
    }

    fn list(&self, plugin_id: &str, prefix: &str, limit: u32) -> Result<Vec<String>, KvError> {
        let limit = limit.min(MAX_LIST_LIMIT) as usize;
        let map = self.map.lock();
        Ok(map
            .range((plugin_id.to_owned(), prefix.to_owned())..)
            .take_while(|((p, k), _)| p == plugin_id && k.starts_with(prefix))
            .map(|((_, k), _)| k.clone())
            .take(limit)
            .collect())
    }
}

/// The SQLite store is the production key-value backend: namespaces are rows keyed by plugin
/// id, with the store's key and byte quotas. Its methods block (SQLite, one connection behind
/// a mutex): the host imports call them through [`off_runtime`].
impl KvStore for comfyhost_store::Store {
    fn get(&self, plugin_id: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        check_key(key)?;
        self.kv_get(plugin_id, key).map_err(kv_error)
    }

    fn set(&self, plugin_id: &str, key: &str, value: &[u8]) -> Result<(), KvError> {
        check_key(key)?;
        check_value(value)?;
        self.kv_set(plugin_id, key, value).map_err(kv_error)
    }

    fn delete(&self, plugin_id: &str, key: &str) -> Result<(), KvError> {
        check_key(key)?;
        self.kv_delete(plugin_id, key).map_err(kv_error)
    }

    fn list(&self, plugin_id: &str, prefix: &str, limit: u32) -> Result<Vec<String>, KvError> {
        self.kv_list(plugin_id, prefix, limit.min(MAX_LIST_LIMIT))
            .map_err(kv_error)
    }
}

/// Runs a blocking key-value operation on tokio's blocking pool, so a plugin writing large
/// values in a loop never stalls the async workers that serve HTTP.
pub async fn off_runtime<T: Send + 'static>(
    op: impl FnOnce() -> Result<T, KvError> + Send + 'static,
) -> Result<T, KvError> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::spawn_blocking(op)
            .await
            .unwrap_or_else(|e| Err(KvError::Storage(format!("key-value task failed: {e}")))),
        Err(_) => op(),
    }
}

fn kv_error(e: comfyhost_store::StoreError) -> KvError {
    match e {
        comfyhost_store::StoreError::TooLarge(m) => KvError::TooLarge(m),
        comfyhost_store::StoreError::QuotaExceeded { .. }
        | comfyhost_store::StoreError::BytesQuotaExceeded { .. } => KvError::QuotaExceeded,
        other => KvError::Storage(other.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn memory_kv_is_scoped_by_plugin_and_sorted() {
        let kv = MemoryKv::new();
        kv.set("a", "k2", b"2").unwrap();
        kv.set("a", "k1", b"1").unwrap();
        kv.set("a", "other", b"x").unwrap();
        kv.set("b", "k1", b"b").unwrap();
        assert_eq!(kv.get("a", "k1").unwrap(), Some(b"1".to_vec()));
        assert_eq!(kv.get("b", "k1").unwrap(), Some(b"b".to_vec()));
        assert_eq!(kv.list("a", "k", 10).unwrap(), vec!["k1", "k2"]);
        assert_eq!(kv.list("a", "k", 1).unwrap(), vec!["k1"]);
        kv.delete("a", "k1").unwrap();
        kv.delete("a", "missing").unwrap();
        assert_eq!(kv.get("a", "k1").unwrap(), None);
    }

    #[test]
    fn limits_are_enforced() {
        let kv = MemoryKv::with_quota(10);
        let long_key = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(matches!(
            kv.set("a", &long_key, b""),
            Err(KvError::TooLarge(_))
        ));
        assert!(matches!(kv.get("a", ""), Err(KvError::TooLarge(_))));
        let big = vec![0u8; MAX_VALUE_BYTES + 1];
        assert!(matches!(check_value(&big), Err(KvError::TooLarge(_))));
        kv.set("a", "k", b"123456789").unwrap();
        assert_eq!(kv.set("a", "j", b"123456789"), Err(KvError::QuotaExceeded));
        // replacing a key does not count its old value twice
        kv.set("a", "k", b"987654321").unwrap();
    }
}
