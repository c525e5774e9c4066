//! Write-behind for job records: [`Store::queue_job`] only appends the record to an in-memory
//! queue and wakes a writer thread, so a request path (`POST /prompt`) never waits on SQLite
//! (a write, a checkpoint, another process holding the lock for up to the busy timeout).
//!
//! The writer drains the queue in batches, one transaction per batch, in submission order.
//! Nothing is lost or reordered: every read of the `jobs` table and every direct job write
//! first writes what is queued (under the same connection lock), [`Store::flush_jobs`] writes
//! it on demand (shutdown), and dropping the last handle writes the rest.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use rusqlite::Connection;

use crate::jobs::upsert_job_on;
use crate::{JobRecord, Store};

/// Batches retried after a failed transaction before their records are written one by one.
const RETRIES: u32 = 3;

/// Records waiting for the writer, shared by the store handles and the writer thread.
#[derive(Default)]
pub(crate) struct JobQueue {
    state: Mutex<QueueState>,
    wake: Condvar,
}

#[derive(Default)]
struct QueueState {
    pending: Vec<JobRecord>,
    /// The writer thread runs.
    started: bool,
    /// The store is gone: the writer stops.
    closed: bool,
}

impl JobQueue {
    /// Takes everything queued.
    fn take(&self) -> Vec<JobRecord> {
        std::mem::take(&mut self.state.lock().pending)
    }

    /// Number of records not yet written.
    pub(crate) fn len(&self) -> usize {
        self.state.lock().pending.len()
    }

    /// Stops the writer thread (the store's last handle is being dropped).
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.wake.notify_all();
    }

    /// Writes every queued record on `conn` (whose lock the caller holds), in order, in one
    /// transaction. A failed batch is put back at the front of the queue and retried; after
    /// [`RETRIES`] failures its records are written one at a time (and any that still fail are
    /// logged, the way a direct write failure is).
    pub(crate) fn drain_into(&self, conn: &mut Connection) {
        let batch = self.take();
        if batch.is_empty() {
            return;
        }
        for attempt in 1..=RETRIES {
            match write_batch(conn, &batch) {
                Ok(()) => return,
                Err(e) if attempt < RETRIES => {
                    tracing::warn!(records = batch.len(), attempt, error = %e, "job record batch not written; retrying");
                }
                Err(e) => {
                    tracing::warn!(records = batch.len(), error = %e, "job record batch not written; writing one by one");
                }
            }
        }
        for job in &batch {
            if let Err(e) = upsert_job_on(conn, job) {
                tracing::error!(prompt_id = %job.prompt_id, error = %e, "cannot record job");
            }
        }
    }
}

fn write_batch(conn: &mut Connection, batch: &[JobRecord]) -> Result<(), crate::StoreError> {
    let tx = conn.transaction()?;
    for job in batch {
        upsert_job_on(&tx, job)?;
    }
    tx.commit()?;
    Ok(())
}

impl Store {
    /// Records a job without waiting for SQLite: the record is queued and written by the
    /// store's writer thread (batched). Reads of the jobs table see it at once (they write
    /// the queue first). Same merge rules as [`Store::upsert_job`].
    pub fn queue_job(&self, job: JobRecord) {
        let queue = &self.inner.jobs_queue;
        let mut state = queue.state.lock();
        state.pending.push(job);
        if !state.started {
            state.started = true;
            drop(state);
            self.spawn_job_writer();
        } else {
            drop(state);
            queue.wake.notify_one();
        }
    }

    /// Writes every queued job record now (call before shutting down).
    pub fn flush_jobs(&self) {
        let mut conn = self.inner.conn.lock();
        self.inner.jobs_queue.drain_into(&mut conn);
    }

    /// Job records queued and not yet written.
    pub fn pending_jobs(&self) -> usize {
        self.inner.jobs_queue.len()
    }

    fn spawn_job_writer(&self) {
        let queue: Arc<JobQueue> = self.inner.jobs_queue.clone();
        let store = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("comfyhost-job-writer".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                loop {
                    {
                        let mut state = queue.state.lock();
                        while state.pending.is_empty() && !state.closed {
                            queue.wake.wait(&mut state);
                        }
                        if state.closed {
                            return;
                        }
                    }
                    // A dropped store wrote its queue itself (see `Inner`'s `Drop`).
                    let Some(inner) = store.upgrade() else { return };
                    let mut conn = inner.conn.lock();
                    queue.drain_into(&mut conn);
                }
            });
        if let Err(e) = spawned {
            // Without a writer the queue is still written by every read and at shutdown.
            tracing::error!(error = %e, "cannot start the job record writer; records are written on read");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn job(id: &str, status: &str) -> JobRecord {
        JobRecord {
            prompt_id: id.into(),
            client_id: Some("c".into()),
            status: status.into(),
            submitted_ms: 1,
            workflow_json: Some("{\"1\":{}}".into()),
            ..Default::default()
        }
    }

    #[test]
    fn queued_record_is_visible_to_reads_at_once() {
        let s = Store::open_in_memory().unwrap();
        s.queue_job(job("p1", "queued"));
        let got = s.job("p1").unwrap().unwrap();
        assert_eq!(got.status, "queued");
        assert_eq!(s.recent_jobs(None, 10).unwrap().len(), 1);
    }

    #[test]
    fn queued_updates_keep_their_order_and_merge() {
        let s = Store::open_in_memory().unwrap();
        s.queue_job(job("p1", "queued"));
        s.queue_job(JobRecord {
            workflow_json: None,
            started_ms: Some(5),
            ..job("p1", "running")
        });
        // A direct write after queued ones lands after them.
        s.upsert_job(&JobRecord {
            workflow_json: None,
            finished_ms: Some(9),
            ..job("p1", "succeeded")
        })
        .unwrap();
        let got = s.job("p1").unwrap().unwrap();
        assert_eq!(got.status, "succeeded");
        assert_eq!(got.started_ms, Some(5));
        assert_eq!(got.workflow_json.as_deref(), Some("{\"1\":{}}"));
    }

    #[test]
    fn queued_records_survive_the_store_being_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            let s = Store::open(&path).unwrap();
            for i in 0..50 {
                s.queue_job(job(&format!("p{i}"), "queued"));
            }
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.recent_jobs(None, 100).unwrap().len(), 50);
    }

    #[test]
    fn flush_writes_everything_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let s = Store::open(&path).unwrap();
        s.queue_job(job("p1", "queued"));
        s.flush_jobs();
        assert_eq!(s.pending_jobs(), 0);
        // Another connection (another process) sees it.
        let other = Store::open(&path).unwrap();
        assert!(other.job("p1").unwrap().is_some());
    }

    /// Another connection holds SQLite's write lock: queueing does not wait for it, and the
    /// record is written once the lock is released (a direct write would block the caller
    /// for the busy timeout).
    #[test]
    fn queueing_does_not_wait_for_a_locked_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let s = Store::open(&path).unwrap();
        let blocker = Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        s.queue_job(job("p1", "queued"));
        // Returned while the lock is held: the record waits in the queue (or in the writer).
        blocker.execute_batch("COMMIT").unwrap();
        s.flush_jobs();
        assert_eq!(s.job("p1").unwrap().unwrap().status, "queued");
    }
}
