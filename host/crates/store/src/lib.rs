//! SQLite persistence for comfyhost: plugin state, plugin key-value namespaces, the admin
//! activity log, job records (local and remote) and workshop users.
//!
//! One [`Store`] wraps one `rusqlite::Connection` behind a `parking_lot::Mutex`. Every method
//! holds the lock only for one short statement (or one small transaction), so callers on tokio
//! worker threads may call it directly; nothing here does I/O other than SQLite's own. The
//! database runs in WAL mode with `synchronous=NORMAL` and a busy timeout, and its schema is
//! versioned by [`migrations`]. Job records from request paths go through a write-behind
//! queue ([`Store::queue_job`], written in batches by a writer thread; reads see it at once).

mod activity;
mod backend_kind;
mod error;
mod job_writer;
mod jobs;
mod kv;
pub mod migrations;
mod outputs;
mod plugins;
mod quarantine;
mod remote_jobs;
mod sessions;
mod shadow;
mod trust;
mod users;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use rusqlite::Connection;

pub use activity::{Activity, ActivityRetention, NewActivity};
pub use backend_kind::BackendKind;
pub use error::StoreError;
pub use jobs::{JobRecord, JobRetention, MAX_KEPT_WORKFLOW_BYTES};
pub use kv::{DEFAULT_KV_MAX_BYTES, KvLimits, MAX_KEY_BYTES, MAX_VALUE_BYTES};
pub use outputs::{NewOutput, OutputBacklog, OutputRow, OutputState};
pub use plugins::PluginRow;
pub use quarantine::QuarantineRow;
pub use remote_jobs::RemoteJobRow;
pub use sessions::SessionRow;
pub use shadow::{SHADOW_RING, ShadowRow};
pub use trust::TrustKeyRow;
pub use users::UserRow;

/// Handle to the comfyhost database. Cheap to clone (an `Arc` inside); all clones share one
/// connection.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    kv_limits: KvLimits,
    retention: Mutex<ActivityRetention>,
    /// Job records waiting for the writer thread ([`Store::queue_job`]).
    jobs_queue: Arc<job_writer::JobQueue>,
}

impl Drop for Inner {
    /// The last handle is gone: what is still queued is written now.
    fn drop(&mut self) {
        self.jobs_queue.close();
        self.jobs_queue.drain_into(self.conn.get_mut());
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("kv_limits", &self.inner.kv_limits)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database at `path`, switches it to WAL and applies pending
    /// migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let conn = Connection::open(path.as_ref())?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Self::from_connection(conn)
    }

    /// An in-memory database (tests, `--ephemeral` runs).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(mut conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::apply(&mut conn)?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                kv_limits: KvLimits::default(),
                retention: Mutex::new(ActivityRetention::default()),
                jobs_queue: Arc::default(),
            }),
        })
    }

    /// Same database, different per-plugin key-value limits. Call right after opening, before
    /// cloning the handle (the limits live in the shared handle).
    pub fn with_kv_limits(mut self, limits: KvLimits) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.kv_limits = limits,
            None => {
                tracing::warn!("Store::with_kv_limits called on a shared handle; limits unchanged")
            }
        }
        self
    }

    /// Schema version after migrations.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        migrations::current_version(&self.inner.conn.lock())
    }

    fn conn(&self) -> parking_lot::MutexGuard<'_, Connection> {
        self.inner.conn.lock()
    }

    /// The connection, with every queued job record written first: for reads and direct
    /// writes of the `jobs` table, so they see (and come after) what [`Store::queue_job`] took.
    fn jobs_conn(&self) -> parking_lot::MutexGuard<'_, Connection> {
        let mut conn = self.inner.conn.lock();
        self.inner.jobs_queue.drain_into(&mut conn);
        conn
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
