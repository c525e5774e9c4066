//! Bounded, sequenced buffer of ComfyUI's output lines, with live subscribers.

use std::collections::VecDeque;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::broadcast;

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// The child's stdout.
    Stdout,
    /// The child's stderr (ComfyUI logs here unless `--log-stdout`).
    Stderr,
    /// A note from the supervisor itself (command line, exit status, restarts).
    Supervisor,
}

/// One captured line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Monotonic sequence number, starting at 0, never reused.
    pub seq: u64,
    /// Host wall-clock time the line was read, milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// Source stream.
    pub stream: LogStream,
    /// The text, without the line terminator (invalid UTF-8 replaced).
    pub text: String,
}

/// A page of buffered lines, returned by `Supervisor::logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogPage {
    /// Lines with `seq >= since_seq`, oldest first, at most `limit`.
    pub lines: Vec<LogLine>,
    /// The `since_seq` to pass next time to continue after this page.
    pub next_seq: u64,
    /// True when lines between `since_seq` and the oldest retained line were already evicted.
    pub truncated: bool,
}

/// Ring buffer of the last `capacity` lines plus a broadcast of each new line.
#[derive(Debug)]
pub struct LogRing {
    inner: Mutex<Inner>,
    live: broadcast::Sender<LogLine>,
}

#[derive(Debug)]
struct Inner {
    lines: VecDeque<LogLine>,
    capacity: usize,
    next_seq: u64,
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl LogRing {
    /// A ring keeping at most `capacity` lines (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (live, _) = broadcast::channel(1024);
        Self {
            inner: Mutex::new(Inner {
                lines: VecDeque::with_capacity(capacity.min(8192)),
                capacity,
                next_seq: 0,
            }),
            live,
        }
    }

    /// Appends a line (timestamped now) and sends it to live subscribers.
    pub fn push(&self, stream: LogStream, text: String) -> LogLine {
        let line = {
            let mut inner = self.inner.lock();
            let line = LogLine {
                seq: inner.next_seq,
                at_unix_ms: now_unix_ms(),
                stream,
                text,
            };
            inner.next_seq += 1;
            if inner.lines.len() == inner.capacity {
                inner.lines.pop_front();
            }
            inner.lines.push_back(line.clone());
            line
        };
        // No subscribers is fine.
        let _ = self.live.send(line.clone());
        line
    }

    /// Lines with `seq >= since_seq`, oldest first, at most `limit`.
    pub fn page(&self, since_seq: u64, limit: usize) -> LogPage {
        let inner = self.inner.lock();
        let oldest = inner.lines.front().map_or(inner.next_seq, |l| l.seq);
        let start = since_seq.max(oldest);
        let skip = usize::try_from(start - oldest).unwrap_or(usize::MAX);
        let lines: Vec<LogLine> = inner.lines.iter().skip(skip).take(limit).cloned().collect();
        let next_seq = lines
            .last()
            .map_or(start.min(inner.next_seq), |l| l.seq + 1);
        LogPage {
            lines,
            next_seq,
            truncated: since_seq < oldest,
        }
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<LogLine> {
        let inner = self.inner.lock();
        let skip = inner.lines.len().saturating_sub(n);
        inner.lines.iter().skip(skip).cloned().collect()
    }

    /// Subscribes to lines pushed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LogLine> {
        self.live.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_bound() {
        let ring = LogRing::new(3);
        for i in 0..5 {
            ring.push(LogStream::Stderr, format!("l{i}"));
        }
        let page = ring.page(0, 100);
        let texts: Vec<_> = page.lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["l2", "l3", "l4"]);
        assert_eq!(page.lines[0].seq, 2);
        assert!(page.truncated);
        assert_eq!(page.next_seq, 5);
        let next = ring.page(page.next_seq, 100);
        assert!(next.lines.is_empty() && !next.truncated);
        assert_eq!(next.next_seq, 5);
    }

    #[test]
    fn pages_with_limit_and_cursor() {
        let ring = LogRing::new(10);
        for i in 0..6 {
            ring.push(LogStream::Stdout, format!("l{i}"));
        }
        let p1 = ring.page(1, 2);
        assert_eq!(p1.lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [1, 2]);
        assert!(!p1.truncated);
        let p2 = ring.page(p1.next_seq, 10);
        assert_eq!(
            p2.lines.iter().map(|l| l.seq).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(ring.page(99, 10).next_seq, 6, "cursor past the end clamps");
        assert_eq!(
            ring.tail(2)
                .iter()
                .map(|l| l.text.as_str())
                .collect::<Vec<_>>(),
            ["l4", "l5"]
        );
    }

    #[tokio::test]
    async fn live_subscribers_get_new_lines() {
        let ring = LogRing::new(2);
        let mut rx = ring.subscribe();
        ring.push(LogStream::Supervisor, "hello".into());
        let line = rx.recv().await.unwrap();
        assert_eq!((line.seq, line.text.as_str()), (0, "hello"));
        assert_eq!(line.stream, LogStream::Supervisor);
    }
}
