//! A job's start as ComfyUI announces it (`execution_start` on a browser socket), recorded in
//! the job so the dashboard can show how long it waited and how long it ran, also for a job
//! that ran between two polls of ComfyUI's queue.

use comfyhost_protocol::WsMessage;
use comfyhost_proxy::ws::WsTap;

use crate::jobs::{JobTracker, now_ms};

/// The proxy tap; the tracker ignores prompts it does not follow (remote or foreign ones).
pub struct JobStartTap(pub JobTracker);

/// When the start happened: ComfyUI's timestamp (ms since the epoch), or now when it is
/// missing or not plausible.
pub fn start_ms(timestamp: u64, now: i64) -> i64 {
    i64::try_from(timestamp)
        .ok()
        .filter(|t| *t > 0 && *t <= now.saturating_add(60_000))
        .unwrap_or(now)
}

impl WsTap for JobStartTap {
    fn on_message(&self, _client_id: &str, message: &WsMessage) {
        if let WsMessage::ExecutionStart(m) = message {
            self.0
                .started(&m.prompt_id, start_ms(m.timestamp, now_ms()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comfyui_timestamps_are_used_when_plausible() {
        assert_eq!(
            start_ms(1_795_418_347_739, 1_795_418_348_000),
            1_795_418_347_739
        );
        assert_eq!(start_ms(0, 5_000), 5_000);
        assert_eq!(start_ms(u64::MAX, 5_000), 5_000);
        assert_eq!(start_ms(999_999, 5_000), 5_000, "in the future");
    }
}
