//! Syncing one file to one destination, idempotently: ledger first, then "is an identical copy
//! already there?" (covers a crash between upload and ledger write), then the copy itself.
//! And the reverse for mirror deletion: only a copy the ledger recorded, and only while the
//! destination still holds that same copy, is deleted.

use crate::error::SyncError;
use crate::ledger::{self, Ledger, Record};

/// The source file as the host described it.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub guest_path: &'a str,
    pub size: u64,
    pub modified_ms: u64,
    pub content_type: &'a str,
}

/// A destination the plugin can write to.
pub trait Sink {
    /// Human-readable location of `rel` (`s3://bucket/key`, `/sync/a/b.png`).
    fn locate(&self, rel: &str) -> String;
    /// Size and etag (empty when the destination has none) of what sits at `rel`, if anything.
    fn stat(&self, rel: &str) -> Result<Option<(u64, String)>, SyncError>;
    /// `Some(etag)` when a copy of `size` bytes already sits at `rel`.
    fn existing(&self, rel: &str, size: u64) -> Result<Option<String>, SyncError> {
        Ok(self
            .stat(rel)?
            .and_then(|(s, etag)| (s == size).then_some(etag)))
    }
    /// Copies the source to `rel`; returns the etag (empty when the destination has none).
    fn put(&self, rel: &str, source: &Source<'_>) -> Result<String, SyncError>;
    /// Deletes the object or file at `rel` (absent already is fine).
    fn remove(&self, rel: &str) -> Result<(), SyncError>;
    /// Drops any unfinished upload of `source` (a copy was found at `rel` after all).
    fn discard_partial(&self, _rel: &str, _source: &Source<'_>) {}
}

/// What happened at one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// Copied now.
    Copied(String),
    /// The ledger says it is there already.
    AlreadySynced(String),
    /// Found an identical copy (earlier run cut off before recording); recorded now.
    FoundExisting(String),
}

/// What mirror deletion did at one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undone {
    /// The recorded copy was deleted.
    Removed(String),
    /// The ledger has no copy of this file here.
    NeverSynced,
    /// The copy was already gone.
    AlreadyGone(String),
    /// Something else sits there now (another size or ETag): left alone.
    Replaced(String),
}

/// Deletes the copy of the (deleted) source file recorded under `dest`, if the destination still
/// holds exactly that copy, then forgets the record. `fallback_rel` is used for records that
/// do not carry their path.
pub fn unsync_file(
    dest: &str,
    fallback_rel: &str,
    source: &Source<'_>,
    sink: &dyn Sink,
    ledger: &mut dyn Ledger,
) -> Result<Undone, SyncError> {
    let key = ledger::key(dest, source.guest_path, source.size, source.modified_ms);
    let ledger_err = |e: String| SyncError::Network(format!("sync record store: {e}"));
    let Some(record) = ledger.get(&key).map_err(ledger_err)? else {
        return Ok(Undone::NeverSynced);
    };
    let rel = if record.rel.is_empty() {
        fallback_rel
    } else {
        record.rel.as_str()
    };
    let location = sink.locate(rel);
    let done = match sink.stat(rel)? {
        None => Undone::AlreadyGone(location),
        Some((size, etag))
            if size != source.size
                || (!record.etag.is_empty() && !etag.is_empty() && etag != record.etag) =>
        {
            Undone::Replaced(location)
        }
        Some(_) => {
            sink.remove(rel)?;
            Undone::Removed(location)
        }
    };
    ledger.delete(&key).map_err(ledger_err)?;
    Ok(done)
}

/// Syncs `source` to `rel` at `sink`, recording the result under `dest`.
pub fn sync_file(
    dest: &str,
    rel: &str,
    source: &Source<'_>,
    sink: &dyn Sink,
    ledger: &mut dyn Ledger,
    now_ms: u64,
) -> Result<Done, SyncError> {
    let key = ledger::key(dest, source.guest_path, source.size, source.modified_ms);
    let ledger_err = |e: String| SyncError::Network(format!("sync record store: {e}"));
    if let Some(r) = ledger.get(&key).map_err(ledger_err)? {
        return Ok(Done::AlreadySynced(r.location));
    }
    let location = sink.locate(rel);
    let record = |etag: String| Record {
        location: location.clone(),
        etag,
        synced_ms: now_ms,
        source: source.guest_path.to_owned(),
        rel: rel.to_owned(),
    };
    if let Some(etag) = sink.existing(rel, source.size)? {
        sink.discard_partial(rel, source);
        ledger.put(&key, &record(etag)).map_err(ledger_err)?;
        return Ok(Done::FoundExisting(location));
    }
    let etag = sink.put(rel, source)?;
    ledger.put(&key, &record(etag)).map_err(ledger_err)?;
    Ok(Done::Copied(location))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::{BTreeMap, HashMap};

    #[derive(Default)]
    struct MapLedger(HashMap<String, Record>, bool);
    impl Ledger for MapLedger {
        fn get(&self, key: &str) -> Result<Option<Record>, String> {
            Ok(self.0.get(key).cloned())
        }
        fn put(&mut self, key: &str, record: &Record) -> Result<(), String> {
            if self.1 {
                return Err("quota".into());
            }
            self.0.insert(key.to_owned(), record.clone());
            Ok(())
        }
        fn delete(&mut self, key: &str) -> Result<(), String> {
            self.0.remove(key);
            Ok(())
        }
    }

    /// A destination counting PUTs per object.
    #[derive(Default)]
    struct CountingSink {
        objects: RefCell<BTreeMap<String, u64>>,
        puts: RefCell<BTreeMap<String, u32>>,
        down: bool,
    }
    impl Sink for CountingSink {
        fn locate(&self, rel: &str) -> String {
            format!("mem://{rel}")
        }
        fn stat(&self, rel: &str) -> Result<Option<(u64, String)>, SyncError> {
            if self.down {
                return Err(SyncError::Network("down".into()));
            }
            Ok(self
                .objects
                .borrow()
                .get(rel)
                .map(|s| (*s, "etag".to_owned())))
        }
        fn remove(&self, rel: &str) -> Result<(), SyncError> {
            self.objects.borrow_mut().remove(rel);
            Ok(())
        }
        fn put(&self, rel: &str, source: &Source<'_>) -> Result<String, SyncError> {
            self.objects.borrow_mut().insert(rel.into(), source.size);
            *self.puts.borrow_mut().entry(rel.into()).or_default() += 1;
            Ok("etag".into())
        }
    }

    fn src(path: &str, size: u64) -> Source<'_> {
        Source {
            guest_path: path,
            size,
            modified_ms: 5,
            content_type: "image/png",
        }
    }

    #[test]
    fn second_offer_of_the_same_file_is_not_copied_again() {
        let sink = CountingSink::default();
        let mut ledger = MapLedger::default();
        let s = src("/output/a.png", 3);
        let first = sync_file("s3", "u/a.png", &s, &sink, &mut ledger, 1).unwrap();
        assert_eq!(first, Done::Copied("mem://u/a.png".into()));
        let again = sync_file("s3", "u/a.png", &s, &sink, &mut ledger, 2).unwrap();
        assert_eq!(again, Done::AlreadySynced("mem://u/a.png".into()));
        assert_eq!(sink.puts.borrow()["u/a.png"], 1);
        // A changed file (new size) is a new identity and is copied.
        sync_file(
            "s3",
            "u/a.png",
            &src("/output/a.png", 4),
            &sink,
            &mut ledger,
            3,
        )
        .unwrap();
        assert_eq!(sink.puts.borrow()["u/a.png"], 2);
    }

    #[test]
    fn copy_without_record_is_found_not_repeated() {
        // The host died after the upload, before the ledger write: the object is there.
        let sink = CountingSink::default();
        sink.objects.borrow_mut().insert("u/a.png".into(), 3);
        let mut ledger = MapLedger::default();
        let r = sync_file(
            "s3",
            "u/a.png",
            &src("/output/a.png", 3),
            &sink,
            &mut ledger,
            1,
        );
        assert_eq!(r.unwrap(), Done::FoundExisting("mem://u/a.png".into()));
        assert!(sink.puts.borrow().is_empty());
        assert_eq!(ledger.0.len(), 1);
    }

    #[test]
    fn failures_leave_no_record() {
        let sink = CountingSink {
            down: true,
            ..Default::default()
        };
        let mut ledger = MapLedger::default();
        let r = sync_file(
            "s3",
            "u/a.png",
            &src("/output/a.png", 3),
            &sink,
            &mut ledger,
            1,
        );
        assert!(matches!(r, Err(SyncError::Network(_))));
        assert!(ledger.0.is_empty());
        // A ledger that cannot write reports a transient failure (retried; the copy is then
        // found by `existing`, not repeated).
        let sink = CountingSink::default();
        let mut full = MapLedger(HashMap::new(), true);
        let r = sync_file(
            "s3",
            "u/a.png",
            &src("/output/a.png", 3),
            &sink,
            &mut full,
            1,
        );
        assert!(matches!(r, Err(SyncError::Network(m)) if m.contains("record")));
        let mut ledger = MapLedger::default();
        let r = sync_file(
            "s3",
            "u/a.png",
            &src("/output/a.png", 3),
            &sink,
            &mut ledger,
            1,
        );
        assert!(matches!(r, Ok(Done::FoundExisting(_))));
        assert_eq!(sink.puts.borrow()["u/a.png"], 1);
    }
}
