//! The plugin's persistent key-value namespace, with typed JSON values.
//!
//! Keys are at most 256 bytes and values at most 1 MiB (host limits); the namespace has a quota
//! from the host configuration. Each plugin sees only its own keys.

use serde::{Serialize, de::DeserializeOwned};

use crate::host;
use crate::types::PluginError;

/// Why a key-value operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// Key or value over the host's size limits.
    #[error("kv key or value too large: {0}")]
    TooLarge(String),
    /// The plugin's namespace is full.
    #[error("kv namespace quota exceeded")]
    QuotaExceeded,
    /// The host's storage failed (the operation may be retried), or there is no host (native build).
    #[error("kv storage failed: {0}")]
    Storage(String),
    /// The stored bytes are not JSON of the requested type.
    #[error("kv value under `{key}` does not decode: {source}")]
    Decode {
        /// The key read.
        key: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The value does not serialize to JSON.
    #[error("kv value for `{key}` does not encode: {source}")]
    Encode {
        /// The key written.
        key: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

impl From<host::KvError> for KvError {
    fn from(e: host::KvError) -> Self {
        match e {
            host::KvError::TooLarge(m) => KvError::TooLarge(m),
            host::KvError::QuotaExceeded => KvError::QuotaExceeded,
            host::KvError::Storage(m) => KvError::Storage(m),
        }
    }
}

impl From<KvError> for PluginError {
    fn from(e: KvError) -> Self {
        PluginError::Internal(e.to_string())
    }
}

/// Read and decode a JSON value; `Ok(None)` when the key is absent.
pub fn get<T: DeserializeOwned>(key: &str) -> Result<Option<T>, KvError> {
    get_bytes(key)?.map(|bytes| decode(key, &bytes)).transpose()
}

/// Encode `value` as JSON and store it under `key` (insert or replace).
pub fn set<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), KvError> {
    set_bytes(key, &encode(key, value)?)
}

/// Read raw bytes.
pub fn get_bytes(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    Ok(crate::hostcall::kv_get(key)?)
}

/// Store raw bytes.
pub fn set_bytes(key: &str, value: &[u8]) -> Result<(), KvError> {
    Ok(crate::hostcall::kv_set(key, value)?)
}

/// Delete a key; deleting a missing key is not an error.
pub fn delete(key: &str) -> Result<(), KvError> {
    Ok(crate::hostcall::kv_delete(key)?)
}

/// Keys starting with `prefix`, sorted, at most `limit`.
pub fn list(prefix: &str, limit: u32) -> Result<Vec<String>, KvError> {
    Ok(crate::hostcall::kv_list(prefix, limit)?)
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, KvError> {
    serde_json::from_slice(bytes).map_err(|source| KvError::Decode {
        key: key.to_owned(),
        source,
    })
}

fn encode<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>, KvError> {
    serde_json::to_vec(value).map_err(|source| KvError::Encode {
        key: key.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn json_round_trip() {
        let v: BTreeMap<String, u32> = [("a".to_string(), 1), ("b".to_string(), 2)].into();
        let bytes = encode("k", &v).unwrap();
        let back: BTreeMap<String, u32> = decode("k", &bytes).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn wrong_type_is_a_decode_error_naming_the_key() {
        let err = decode::<u32>("counter", br#""text""#).unwrap_err();
        assert!(matches!(&err, KvError::Decode { key, .. } if key == "counter"));
        assert!(err.to_string().contains("counter"));
    }

    #[test]
    fn unencodable_value_is_an_encode_error() {
        let mut m = BTreeMap::new();
        m.insert(vec![1u8], 1u8); // JSON object keys must be strings
        assert!(matches!(encode("k", &m), Err(KvError::Encode { .. })));
    }

    #[test]
    fn host_errors_map_one_to_one() {
        assert!(matches!(
            KvError::from(host::KvError::QuotaExceeded),
            KvError::QuotaExceeded
        ));
        assert!(matches!(
            KvError::from(host::KvError::TooLarge("k".into())),
            KvError::TooLarge(_)
        ));
        let p = PluginError::from(KvError::QuotaExceeded);
        assert!(matches!(p, PluginError::Internal(m) if m.contains("quota")));
    }

    #[test]
    fn native_build_reports_missing_host() {
        assert!(matches!(get::<u32>("k"), Err(KvError::Storage(m)) if m.contains("native build")));
    }
}
