//! S3 multipart upload of one large file, a bounded slice per call, resumable across calls and
//! host restarts.
//!
//! A call reads one part at a time from the file (seek + read, never the whole file), uploads
//! parts until `call_budget_ms` is spent, records its progress (upload id, part size, finished
//! parts with their ETags) in the plugin's kv and answers [`Step::InProgress`]; the host calls
//! again at once and the next call resumes from the record. The last call completes the upload
//! and deletes the record. A server that no longer knows the upload (`NoSuchUpload`: aborted or
//! expired) makes it start over; a permanent failure aborts it so its parts stop costing storage.

use std::io::{Read, Seek, SeekFrom};

use comfyhost_sdk::prelude::warn;
use serde::{Deserialize, Serialize};

use crate::error::SyncError;
use crate::ledger;
use crate::sync::Source;

const MIB: u64 = 1 << 20;
/// S3's smallest part (every part but the last).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * MIB;
/// S3's largest part count.
pub const MAX_PARTS: u64 = 10_000;
/// S3's largest object.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * MIB;

/// How a file is cut into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub size: u64,
    pub part_size: u64,
    pub parts: u32,
}

/// Cuts `size` bytes into parts of `wanted` bytes (at least 5 MiB), growing the part size in
/// whole MiB when that would need more than 10 000 parts.
pub fn plan(size: u64, wanted: u64) -> Result<Plan, SyncError> {
    if size > MAX_OBJECT_SIZE {
        return Err(SyncError::Rejected(format!(
            "{size} bytes is above S3's 5 TiB object limit"
        )));
    }
    let mut part_size = wanted.clamp(MIN_PART_SIZE, MAX_PART_SIZE);
    if size.div_ceil(part_size) > MAX_PARTS {
        part_size = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    }
    let parts = size.div_ceil(part_size).max(1);
    Ok(Plan {
        size,
        part_size,
        parts: u32::try_from(parts).unwrap_or(u32::MAX),
    })
}

impl Plan {
    /// `(offset, length)` of part `n` (1-based).
    pub fn range(&self, n: u32) -> (u64, u64) {
        let offset = u64::from(n.saturating_sub(1)) * self.part_size;
        (offset, self.part_size.min(self.size.saturating_sub(offset)))
    }
}

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DonePart {
    pub n: u32,
    pub etag: String,
}

/// The kv record of an unfinished upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Object key the upload was created for.
    pub key: String,
    pub upload_id: String,
    pub size: u64,
    pub part_size: u64,
    /// Finished parts, ascending.
    pub parts: Vec<DonePart>,
    pub started_ms: u64,
}

impl Progress {
    fn plan(&self) -> Plan {
        let parts = self.size.div_ceil(self.part_size.max(1)).max(1);
        Plan {
            size: self.size,
            part_size: self.part_size.max(1),
            parts: u32::try_from(parts).unwrap_or(u32::MAX),
        }
    }

    fn has(&self, n: u32) -> bool {
        self.parts.binary_search_by_key(&n, |p| p.n).is_ok()
    }

    fn add(&mut self, n: u32, etag: String) {
        match self.parts.binary_search_by_key(&n, |p| p.n) {
            Ok(i) => self.parts[i].etag = etag,
            Err(i) => self.parts.insert(i, DonePart { n, etag }),
        }
    }
}

/// Key of the progress record for `dest` and a source identity (same identity as the ledger).
pub fn progress_key(dest: &str, source: &Source<'_>) -> String {
    format!(
        "mp/{}",
        ledger::key(dest, source.guest_path, source.size, source.modified_ms)
    )
}

/// A multipart call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartError {
    /// The server does not know the upload id (aborted or expired): start over.
    UploadGone,
    /// Anything else, classified as for a single upload.
    Sync(SyncError),
}

impl From<SyncError> for PartError {
    fn from(e: SyncError) -> Self {
        PartError::Sync(e)
    }
}

/// The bucket side of a multipart upload.
pub trait PartStore {
    /// `CreateMultipartUpload`: returns the upload id.
    fn create(&self, key: &str, content_type: &str) -> Result<String, PartError>;
    /// `UploadPart`: returns the part's ETag.
    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        n: u32,
        body: Vec<u8>,
    ) -> Result<String, PartError>;
    /// `CompleteMultipartUpload`: returns the object's ETag.
    fn complete(&self, key: &str, upload_id: &str, parts: &[DonePart])
    -> Result<String, PartError>;
    /// `AbortMultipartUpload`.
    fn abort(&self, key: &str, upload_id: &str) -> Result<(), PartError>;
}

/// Where progress records live (the plugin's kv; a map in tests).
pub trait ProgressStore {
    fn load(&self, key: &str) -> Result<Option<Progress>, String>;
    fn save(&self, key: &str, p: &Progress) -> Result<(), String>;
    fn delete(&self, key: &str) -> Result<(), String>;
}

/// The plugin's kv namespace.
pub struct KvProgress;

impl ProgressStore for KvProgress {
    fn load(&self, key: &str) -> Result<Option<Progress>, String> {
        comfyhost_sdk::kv::get(key).map_err(|e| e.to_string())
    }
    fn save(&self, key: &str, p: &Progress) -> Result<(), String> {
        comfyhost_sdk::kv::set(key, p).map_err(|e| e.to_string())
    }
    fn delete(&self, key: &str) -> Result<(), String> {
        comfyhost_sdk::kv::delete(key).map_err(|e| e.to_string())
    }
}

/// One file's upload, as one call sees it.
pub struct Upload<'a> {
    /// Object key.
    pub key: &'a str,
    /// Progress record key ([`progress_key`]).
    pub progress_key: &'a str,
    pub source: &'a Source<'a>,
    /// Wanted part size in bytes (grown by [`plan`] when needed).
    pub part_size: u64,
    /// Stop starting parts once this much time has passed in this call (one part always goes).
    pub call_budget_ms: u64,
    /// When the plugin call began (the budget is shared by every destination of the call);
    /// `None`: when [`advance`] is entered.
    pub call_started_ms: Option<u64>,
    pub now_ms: &'a dyn Fn() -> u64,
}

/// What one call achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Completed: the object's ETag.
    Done(String),
    /// `done` of `total` parts are up; call again.
    InProgress { done: u32, total: u32 },
}

fn store_err(e: String) -> SyncError {
    SyncError::Network(format!("upload progress store: {e}"))
}

/// Advances the upload of `up.source` by up to `up.call_budget_ms` worth of parts.
pub fn advance(
    up: &Upload<'_>,
    bucket: &dyn PartStore,
    records: &dyn ProgressStore,
) -> Result<Step, SyncError> {
    let start = up.call_started_ms.unwrap_or_else(|| (up.now_ms)());
    // An upload the server forgot is started over once per call; a second loss in the same
    // call is reported as transient (something keeps aborting it).
    let mut restarts = 0;
    loop {
        match advance_once(up, bucket, records, start) {
            Err(PartError::UploadGone) if restarts == 0 => {
                restarts += 1;
                records.delete(up.progress_key).map_err(store_err)?;
                warn!(
                    "upload of {} is gone at the server (aborted or expired); starting over",
                    up.source.guest_path
                );
            }
            Err(PartError::UploadGone) => {
                records.delete(up.progress_key).map_err(store_err)?;
                return Err(SyncError::Network(format!(
                    "multipart upload of {} vanished twice; retrying later",
                    up.source.guest_path
                )));
            }
            Err(PartError::Sync(e)) => return Err(e),
            Ok(step) => return Ok(step),
        }
    }
}

fn advance_once(
    up: &Upload<'_>,
    bucket: &dyn PartStore,
    records: &dyn ProgressStore,
    start: u64,
) -> Result<Step, PartError> {
    let src = up.source;
    let mut progress = match records.load(up.progress_key).map_err(store_err)? {
        Some(p) if p.key == up.key && p.size == src.size && p.part_size >= 1 => p,
        Some(stale) => {
            // Same source, another object key (template or prefix changed): drop the old one.
            let _ = bucket.abort(&stale.key, &stale.upload_id);
            records.delete(up.progress_key).map_err(store_err)?;
            fresh(up, bucket, records)?
        }
        None => fresh(up, bucket, records)?,
    };
    let plan = progress.plan();
    let mut file = std::fs::File::open(src.guest_path)
        .map_err(|e| SyncError::Config(format!("open {}: {e}", src.guest_path)))?;
    let len = file
        .metadata()
        .map_err(|e| SyncError::Config(format!("stat {}: {e}", src.guest_path)))?
        .len();
    if len != src.size {
        return Err(give_up(
            up,
            bucket,
            records,
            &progress,
            SyncError::Network(format!(
                "{} changed size while uploading ({len} != {})",
                src.guest_path, src.size
            )),
        ));
    }
    let mut slowest = 0u64;
    let mut sent = 0u32;
    for n in 1..=plan.parts {
        if progress.has(n) {
            continue;
        }
        let elapsed = (up.now_ms)().saturating_sub(start);
        if sent > 0 && elapsed.saturating_add(slowest) > up.call_budget_ms {
            return Ok(Step::InProgress {
                done: progress.parts.len() as u32,
                total: plan.parts,
            });
        }
        let part_start = (up.now_ms)();
        let body = read_part(&mut file, &plan, n, src.guest_path)?;
        let etag = match bucket.upload_part(up.key, &progress.upload_id, n, body) {
            Ok(etag) => etag,
            Err(PartError::Sync(e)) if !e.is_transient() => {
                return Err(give_up(up, bucket, records, &progress, e));
            }
            Err(e) => return Err(e),
        };
        progress.add(n, etag);
        records
            .save(up.progress_key, &progress)
            .map_err(store_err)?;
        sent += 1;
        slowest = slowest.max((up.now_ms)().saturating_sub(part_start));
    }
    let etag = match bucket.complete(up.key, &progress.upload_id, &progress.parts) {
        Ok(etag) => etag,
        Err(PartError::Sync(e)) if !e.is_transient() => {
            return Err(give_up(up, bucket, records, &progress, e));
        }
        Err(e) => return Err(e),
    };
    records.delete(up.progress_key).map_err(store_err)?;
    Ok(Step::Done(etag))
}

/// Creates the upload and records it before any part is sent.
fn fresh(
    up: &Upload<'_>,
    bucket: &dyn PartStore,
    records: &dyn ProgressStore,
) -> Result<Progress, PartError> {
    let plan = plan(up.source.size, up.part_size)?;
    let upload_id = bucket.create(up.key, up.source.content_type)?;
    let p = Progress {
        key: up.key.to_owned(),
        upload_id,
        size: plan.size,
        part_size: plan.part_size,
        parts: Vec::new(),
        started_ms: (up.now_ms)(),
    };
    records.save(up.progress_key, &p).map_err(store_err)?;
    Ok(p)
}

/// Reads part `n` of `plan` from `file`.
fn read_part(
    file: &mut std::fs::File,
    plan: &Plan,
    n: u32,
    path: &str,
) -> Result<Vec<u8>, SyncError> {
    let (offset, len) = plan.range(n);
    let mut buf = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut buf))
        .map_err(|e| SyncError::Network(format!("read part {n} of {path}: {e}")))?;
    Ok(buf)
}

/// A permanent failure: aborts the upload (best effort; its parts would cost storage until a
/// lifecycle rule removes them) and forgets it. Auth failures keep it: an admin fixes the
/// credentials and the upload resumes.
fn give_up(
    up: &Upload<'_>,
    bucket: &dyn PartStore,
    records: &dyn ProgressStore,
    progress: &Progress,
    e: SyncError,
) -> PartError {
    if matches!(e, SyncError::Auth(_)) {
        return PartError::Sync(e);
    }
    if let Err(abort) = bucket.abort(&progress.key, &progress.upload_id) {
        warn!(
            "abort of upload {} for {} failed: {abort:?}",
            progress.upload_id, up.source.guest_path
        );
    }
    if let Err(del) = records.delete(up.progress_key) {
        return PartError::Sync(store_err(del));
    }
    PartError::Sync(e)
}

/// Aborts and forgets any unfinished upload recorded for this source (the object turned out to
/// be there already).
pub fn discard(progress_key: &str, bucket: &dyn PartStore, records: &dyn ProgressStore) {
    if let Ok(Some(p)) = records.load(progress_key) {
        let _ = bucket.abort(&p.key, &p.upload_id);
        let _ = records.delete(progress_key);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::{BTreeMap, HashMap};

    #[test]
    fn plans_parts_within_s3_limits() {
        // 40 MiB in 5 MiB parts: 8 full parts.
        let p = plan(40 * MIB, 5 * MIB).unwrap();
        assert_eq!((p.part_size, p.parts), (5 * MIB, 8));
        assert_eq!(p.range(8), (35 * MIB, 5 * MIB));
        // A short last part.
        let p = plan(17 * MIB + 3, 8 * MIB).unwrap();
        assert_eq!(p.parts, 3);
        assert_eq!(p.range(1), (0, 8 * MIB));
        assert_eq!(p.range(3), (16 * MIB, MIB + 3));
        // Below S3's minimum part size: raised to 5 MiB.
        assert_eq!(plan(12 * MIB, MIB).unwrap().part_size, 5 * MIB);
        // Exactly 10 000 parts keeps the size; one byte more grows it by a whole MiB.
        let p = plan(10_000 * 8 * MIB, 8 * MIB).unwrap();
        assert_eq!((p.part_size, p.parts), (8 * MIB, 10_000));
        let p = plan(10_000 * 8 * MIB + 1, 8 * MIB).unwrap();
        assert_eq!(p.part_size, 9 * MIB);
        assert!(u64::from(p.parts) <= MAX_PARTS);
        // 5 TiB, S3's largest object: 525 MiB parts, still at most 10 000.
        let p = plan(MAX_OBJECT_SIZE, 8 * MIB).unwrap();
        assert!(u64::from(p.parts) <= MAX_PARTS && p.part_size <= MAX_PART_SIZE);
        assert_eq!(p.part_size, 525 * MIB);
        let (off, len) = p.range(p.parts);
        assert_eq!(off + len, MAX_OBJECT_SIZE);
        assert!(matches!(
            plan(MAX_OBJECT_SIZE + 1, 8 * MIB),
            Err(SyncError::Rejected(_))
        ));
        // Every byte is covered once, for awkward sizes too.
        for size in [1, 5 * MIB - 1, 5 * MIB, 5 * MIB + 1, 123_456_789] {
            let p = plan(size, 5 * MIB).unwrap();
            let total: u64 = (1..=p.parts).map(|n| p.range(n).1).sum();
            assert_eq!(total, size);
            assert!((1..p.parts).all(|n| p.range(n).1 >= MIN_PART_SIZE));
        }
    }

    #[test]
    fn progress_record_round_trips_and_keys_follow_the_ledger() {
        let mut p = Progress {
            key: "comfy/alice/a.mp4".into(),
            upload_id: "id+/=".into(),
            size: 40 * MIB,
            part_size: 5 * MIB,
            parts: vec![],
            started_ms: 7,
        };
        p.add(3, "\"c\"".into());
        p.add(1, "\"a\"".into());
        p.add(3, "\"c2\"".into());
        assert_eq!(
            p.parts,
            vec![
                DonePart {
                    n: 1,
                    etag: "\"a\"".into()
                },
                DonePart {
                    n: 3,
                    etag: "\"c2\"".into()
                }
            ]
        );
        assert!(p.has(1) && !p.has(2));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Progress>(&json).unwrap(), p);
        assert_eq!(p.plan().parts, 8);
        let s = src("/output/a.mp4", 10);
        let k = progress_key("s3", &s);
        assert_eq!(
            k,
            format!("mp/{}", ledger::key("s3", "/output/a.mp4", 10, 5))
        );
        assert!(k.len() < 256);
        // 10 000 parts with S3-style ETags stay under the 1 MiB kv value limit.
        for n in 1..=10_000 {
            p.add(n, format!("\"{:032x}\"", n));
        }
        assert!(serde_json::to_vec(&p).unwrap().len() < 1 << 20);
    }

    /// An in-memory bucket that assembles parts like S3 does, and a clock that advances one
    /// second per part.
    #[derive(Default)]
    struct FakeBucket {
        clock: Cell<u64>,
        next_id: Cell<u32>,
        uploads: RefCell<HashMap<String, BTreeMap<u32, Vec<u8>>>>,
        objects: RefCell<HashMap<String, Vec<u8>>>,
        part_calls: Cell<u32>,
        aborted: RefCell<Vec<String>>,
        /// Part number whose upload answers this error (once).
        fail_part: RefCell<Option<(u32, SyncError)>>,
    }

    impl PartStore for FakeBucket {
        fn create(&self, _key: &str, _ct: &str) -> Result<String, PartError> {
            let id = format!("up{}", self.next_id.get());
            self.next_id.set(self.next_id.get() + 1);
            self.uploads
                .borrow_mut()
                .insert(id.clone(), BTreeMap::new());
            Ok(id)
        }
        fn upload_part(
            &self,
            _key: &str,
            upload_id: &str,
            n: u32,
            body: Vec<u8>,
        ) -> Result<String, PartError> {
            self.clock.set(self.clock.get() + 1000);
            self.part_calls.set(self.part_calls.get() + 1);
            let fail = self.fail_part.borrow().clone();
            if let Some((at, e)) = fail
                && at == n
            {
                *self.fail_part.borrow_mut() = None;
                return Err(PartError::Sync(e));
            }
            let mut ups = self.uploads.borrow_mut();
            let parts = ups.get_mut(upload_id).ok_or(PartError::UploadGone)?;
            let etag = format!("\"{}-{}\"", n, body.len());
            parts.insert(n, body);
            Ok(etag)
        }
        fn complete(
            &self,
            key: &str,
            upload_id: &str,
            parts: &[DonePart],
        ) -> Result<String, PartError> {
            let stored = self
                .uploads
                .borrow_mut()
                .remove(upload_id)
                .ok_or(PartError::UploadGone)?;
            let mut object = Vec::new();
            for p in parts {
                let body = &stored[&p.n];
                assert_eq!(p.etag, format!("\"{}-{}\"", p.n, body.len()));
                object.extend_from_slice(body);
            }
            assert_eq!(parts.len(), stored.len(), "every uploaded part is listed");
            self.objects.borrow_mut().insert(key.into(), object);
            Ok(format!("\"mp-{}\"", parts.len()))
        }
        fn abort(&self, _key: &str, upload_id: &str) -> Result<(), PartError> {
            self.aborted.borrow_mut().push(upload_id.into());
            self.uploads
                .borrow_mut()
                .remove(upload_id)
                .map(|_| ())
                .ok_or(PartError::UploadGone)
        }
    }

    #[derive(Default)]
    struct MapRecords(RefCell<HashMap<String, Progress>>);
    impl ProgressStore for MapRecords {
        fn load(&self, key: &str) -> Result<Option<Progress>, String> {
            Ok(self.0.borrow().get(key).cloned())
        }
        fn save(&self, key: &str, p: &Progress) -> Result<(), String> {
            self.0.borrow_mut().insert(key.into(), p.clone());
            Ok(())
        }
        fn delete(&self, key: &str) -> Result<(), String> {
            self.0.borrow_mut().remove(key);
            Ok(())
        }
    }

    fn src(path: &str, size: u64) -> Source<'_> {
        Source {
            guest_path: path,
            size,
            modified_ms: 5,
            content_type: "video/mp4",
        }
    }

    /// A file of `size` pseudo-random bytes.
    fn file(size: usize) -> (tempfile::TempDir, String, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        let mut x = 0x9e37_79b9_u32;
        let bytes: Vec<u8> = (0..size)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        std::fs::write(&path, &bytes).unwrap();
        let path = path.to_str().unwrap().to_owned();
        (dir, path, bytes)
    }

    /// Calls `advance` until done, like the host does; returns the steps seen.
    fn drive(
        bucket: &FakeBucket,
        records: &MapRecords,
        source: &Source<'_>,
        budget_ms: u64,
    ) -> Vec<Step> {
        let pk = progress_key("s3", source);
        let now = || bucket.clock.get();
        let up = Upload {
            key: "comfy/a/clip.mp4",
            progress_key: &pk,
            source,
            part_size: 5 * MIB,
            call_budget_ms: budget_ms,
            call_started_ms: None,
            now_ms: &now,
        };
        let mut steps = Vec::new();
        for _ in 0..100 {
            let step = advance(&up, bucket, records).unwrap();
            steps.push(step.clone());
            if matches!(step, Step::Done(_)) {
                return steps;
            }
        }
        panic!("upload did not finish: {steps:?}");
    }

    #[test]
    fn uploads_in_bounded_calls_and_assembles_the_exact_bytes() {
        let (_d, path, bytes) = file((12 * MIB + 77) as usize);
        let s = src(&path, bytes.len() as u64);
        let bucket = FakeBucket::default();
        let records = MapRecords::default();
        // 1.5 s budget, 1 s per part: the second part would overrun, so one part per call.
        let steps = drive(&bucket, &records, &s, 1500);
        assert_eq!(
            steps,
            vec![
                Step::InProgress { done: 1, total: 3 },
                Step::InProgress { done: 2, total: 3 },
                Step::Done("\"mp-3\"".into()),
            ]
        );
        assert_eq!(bucket.objects.borrow()["comfy/a/clip.mp4"], bytes);
        assert_eq!(bucket.part_calls.get(), 3, "no part sent twice");
        assert!(records.0.borrow().is_empty(), "progress record deleted");
        // A budget of 0 still makes progress: one part per call.
        let bucket = FakeBucket::default();
        assert_eq!(drive(&bucket, &records, &s, 0).len(), 3);
        // A large budget does it in one call.
        let bucket = FakeBucket::default();
        assert_eq!(drive(&bucket, &records, &s, 60_000).len(), 1);
    }

    #[test]
    fn resumes_from_the_record_and_starts_over_when_the_upload_is_gone() {
        let (_d, path, bytes) = file((15 * MIB) as usize);
        let s = src(&path, bytes.len() as u64);
        let pk = progress_key("s3", &s);
        let bucket = FakeBucket::default();
        let records = MapRecords::default();
        let now = || bucket.clock.get();
        let up = Upload {
            key: "comfy/a/clip.mp4",
            progress_key: &pk,
            source: &s,
            part_size: 5 * MIB,
            call_budget_ms: 0,
            call_started_ms: None,
            now_ms: &now,
        };
        assert_eq!(
            advance(&up, &bucket, &records).unwrap(),
            Step::InProgress { done: 1, total: 3 }
        );
        // "Host restart": a new call with only the kv record resumes at part 2.
        let saved = records.0.borrow()[&pk].clone();
        assert_eq!(saved.parts.len(), 1);
        assert_eq!(
            advance(&up, &bucket, &records).unwrap(),
            Step::InProgress { done: 2, total: 3 }
        );
        assert_eq!(bucket.part_calls.get(), 2);
        // The server forgets the upload (lifecycle rule, manual abort): start over.
        bucket.uploads.borrow_mut().clear();
        assert_eq!(
            advance(&up, &bucket, &records).unwrap(),
            Step::InProgress { done: 1, total: 3 }
        );
        assert_ne!(records.0.borrow()[&pk].upload_id, saved.upload_id);
        let steps = drive(&bucket, &records, &s, 0);
        assert!(matches!(steps.last(), Some(Step::Done(_))));
        assert_eq!(bucket.objects.borrow()["comfy/a/clip.mp4"], bytes);
    }

    #[test]
    fn transient_failures_keep_progress_and_permanent_ones_abort() {
        let (_d, path, bytes) = file((11 * MIB) as usize);
        let s = src(&path, bytes.len() as u64);
        let pk = progress_key("s3", &s);
        let bucket = FakeBucket::default();
        let records = MapRecords::default();
        let now = || bucket.clock.get();
        let up = Upload {
            key: "comfy/a/clip.mp4",
            progress_key: &pk,
            source: &s,
            part_size: 5 * MIB,
            call_budget_ms: 60_000,
            call_started_ms: None,
            now_ms: &now,
        };
        *bucket.fail_part.borrow_mut() = Some((2, SyncError::Network("reset".into())));
        assert_eq!(
            advance(&up, &bucket, &records),
            Err(SyncError::Network("reset".into()))
        );
        assert_eq!(records.0.borrow()[&pk].parts.len(), 1, "part 1 kept");
        assert!(matches!(
            advance(&up, &bucket, &records).unwrap(),
            Step::Done(_)
        ));
        assert_eq!(bucket.part_calls.get(), 4, "1, 2 (failed), 2, 3");
        assert_eq!(bucket.objects.borrow()["comfy/a/clip.mp4"], bytes);

        // Quota: the upload is aborted and forgotten so its parts stop costing storage.
        let bucket = FakeBucket::default();
        let records = MapRecords::default();
        let now = || bucket.clock.get();
        let up = Upload { now_ms: &now, ..up };
        *bucket.fail_part.borrow_mut() = Some((2, SyncError::Quota("full".into())));
        assert!(matches!(
            advance(&up, &bucket, &records),
            Err(SyncError::Quota(_))
        ));
        assert_eq!(bucket.aborted.borrow().len(), 1);
        assert!(records.0.borrow().is_empty());
        // Auth: kept, so fixed credentials resume it.
        *bucket.fail_part.borrow_mut() = Some((2, SyncError::Auth("403".into())));
        assert!(matches!(
            advance(&up, &bucket, &records),
            Err(SyncError::Auth(_))
        ));
        assert_eq!(records.0.borrow()[&pk].parts.len(), 1);
        // Found at the destination after all: the leftover upload is aborted and forgotten.
        discard(&pk, &bucket, &records);
        assert_eq!(bucket.aborted.borrow().len(), 2);
        assert!(records.0.borrow().is_empty());
    }

    #[test]
    fn a_source_that_changes_size_abandons_the_upload() {
        let (_d, path, bytes) = file((11 * MIB) as usize);
        let s = src(&path, bytes.len() as u64);
        let pk = progress_key("s3", &s);
        let bucket = FakeBucket::default();
        let records = MapRecords::default();
        let now = || bucket.clock.get();
        let up = Upload {
            key: "comfy/a/clip.mp4",
            progress_key: &pk,
            source: &s,
            part_size: 5 * MIB,
            call_budget_ms: 0,
            call_started_ms: None,
            now_ms: &now,
        };
        advance(&up, &bucket, &records).unwrap();
        std::fs::write(&path, b"rewritten").unwrap();
        let r = advance(&up, &bucket, &records);
        assert!(
            matches!(&r, Err(SyncError::Network(m)) if m.contains("changed size")),
            "{r:?}"
        );
        assert_eq!(bucket.aborted.borrow().len(), 1);
        assert!(records.0.borrow().is_empty());
    }
}
