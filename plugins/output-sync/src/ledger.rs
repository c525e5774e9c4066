//! What was synced where, in the plugin's kv namespace: one key per (destination, source file
//! identity). A key present means "this exact file is at this destination": the plugin never
//! copies it there again, whatever happens to the host in between.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One synced file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Where it went (`s3://bucket/key`, `/sync/alice/...`).
    pub location: String,
    /// ETag the destination returned (S3), empty for directories.
    pub etag: String,
    pub synced_ms: u64,
    /// Source guest path, for admins reading the kv.
    pub source: String,
    /// Destination-relative path it was written to (what mirror deletion removes; records
    /// written before this field existed have it empty and fall back to the template).
    #[serde(default)]
    pub rel: String,
}

/// Key for `dest` and a source identity (path, size, mtime): `v1/<dest>/<40 hex>`, well under
/// the 256-byte kv key limit whatever the path length.
pub fn key(dest: &str, guest_path: &str, size: u64, modified_ms: u64) -> String {
    let mut h = Sha256::new();
    h.update(guest_path.as_bytes());
    h.update([0]);
    h.update(size.to_le_bytes());
    h.update(modified_ms.to_le_bytes());
    let digest = hex::encode(h.finalize());
    format!("v1/{dest}/{}", &digest[..40])
}

/// Storage of records (the plugin's kv inside comfyhost; a map in tests).
pub trait Ledger {
    fn get(&self, key: &str) -> Result<Option<Record>, String>;
    fn put(&mut self, key: &str, record: &Record) -> Result<(), String>;
    fn delete(&mut self, key: &str) -> Result<(), String>;
}

/// The plugin's kv namespace.
pub struct KvLedger;

impl Ledger for KvLedger {
    fn get(&self, key: &str) -> Result<Option<Record>, String> {
        comfyhost_sdk::kv::get(key).map_err(|e| e.to_string())
    }

    fn put(&mut self, key: &str, record: &Record) -> Result<(), String> {
        comfyhost_sdk::kv::set(key, record).map_err(|e| e.to_string())
    }

    fn delete(&mut self, key: &str) -> Result<(), String> {
        comfyhost_sdk::kv::delete(key).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_every_part_of_the_identity() {
        let k = key("s3", "/output/a.png", 10, 1000);
        assert!(k.starts_with("v1/s3/") && k.len() == 6 + 40, "{k}");
        assert_eq!(k, key("s3", "/output/a.png", 10, 1000));
        assert_ne!(k, key("nas", "/output/a.png", 10, 1000));
        assert_ne!(k, key("s3", "/output/b.png", 10, 1000));
        assert_ne!(k, key("s3", "/output/a.png", 11, 1000));
        assert_ne!(k, key("s3", "/output/a.png", 10, 1001));
        assert!(key("s3", &"x".repeat(10_000), 1, 1).len() < 256);
    }
}
