//! Keeps the job records in the store within their retention ([`JobRetention`]): a pass at
//! start and every hour, off the async workers.

use std::time::Duration;

use comfyhost_store::{JobRetention, Store};
use tokio_util::sync::CancellationToken;

/// Time between two retention passes.
const EVERY: Duration = Duration::from_secs(3600);

pub fn spawn_job_retention(store: Store, cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let s = store.clone();
            let pass = tokio::task::spawn_blocking(move || {
                s.prune_jobs(comfyhost_store::now_ms(), JobRetention::default())
            })
            .await;
            match pass {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    tracing::info!(removed = n, "job records past their retention removed")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "job retention pass failed"),
                Err(e) => tracing::warn!(error = %e, "job retention task failed"),
            }
        }
    });
}
