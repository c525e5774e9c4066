//! Per-plugin log ring buffer: the last [`LOG_RING_CAPACITY`] records, shared by every version
//! of the plugin (records survive hot reload).

use std::collections::VecDeque;

use parking_lot::Mutex;

use crate::capabilities::log::{PluginLogRecord, PluginLogSink};

/// Records kept per plugin.
pub const LOG_RING_CAPACITY: usize = 500;

/// A bounded in-memory log of one plugin.
#[derive(Debug, Default)]
pub struct LogRing {
    records: Mutex<VecDeque<PluginLogRecord>>,
}

impl LogRing {
    /// Oldest first.
    pub fn records(&self) -> Vec<PluginLogRecord> {
        self.records.lock().iter().cloned().collect()
    }
}

impl PluginLogSink for LogRing {
    fn record(&self, record: PluginLogRecord) {
        let mut ring = self.records.lock();
        if ring.len() == LOG_RING_CAPACITY {
            ring.pop_front();
        }
        ring.push_back(record);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::capabilities::log::PluginLogLevel;

    #[test]
    fn keeps_last_records() {
        let ring = LogRing::default();
        for i in 0..LOG_RING_CAPACITY + 3 {
            ring.record(PluginLogRecord {
                ts_ms: i as u64,
                plugin_id: "p".into(),
                prompt_id: None,
                level: PluginLogLevel::Info,
                message: format!("m{i}"),
            });
        }
        let r = ring.records();
        assert_eq!(r.len(), LOG_RING_CAPACITY);
        assert_eq!(r[0].message, "m3");
        assert_eq!(
            r.last().unwrap().message,
            format!("m{}", LOG_RING_CAPACITY + 2)
        );
    }
}
