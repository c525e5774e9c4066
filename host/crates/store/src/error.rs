//! Errors of the store.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error (I/O, corruption, constraint).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A JSON column could not be encoded or decoded.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A key or value is over the size limits.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The plugin's key-value namespace already holds the maximum number of keys.
    #[error("key-value quota of {max_keys} keys exceeded for plugin {plugin_id}")]
    QuotaExceeded { plugin_id: String, max_keys: u64 },
    /// The plugin's keys and values would take more than its byte quota.
    #[error("key-value quota of {max_bytes} bytes exceeded for plugin {plugin_id}")]
    BytesQuotaExceeded { plugin_id: String, max_bytes: u64 },
    /// The database was written by a newer comfyhost (unknown migration version).
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew { found: u32, supported: u32 },
}
