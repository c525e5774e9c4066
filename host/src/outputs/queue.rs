//! The worker: takes due files from the durable queue and runs the output-sync chain on each.

use std::time::Duration;

use comfyhost_runtime::CallErrorKind;
use comfyhost_runtime::HookKind;
use comfyhost_store::{NewOutput, OutputRow, OutputState};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::backoff::{self, RateLimiter};
use super::health::ErrorType;
use super::{OutputSync, file};

/// Rows fetched per round.
const BATCH: u32 = 32;
/// Longest sleep when nothing is due (a job end or full pass wakes the worker earlier).
const IDLE: Duration = Duration::from_secs(5);

/// What one file's round through the chain came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Round {
    /// Every plugin synced or skipped it.
    Done,
    /// The source is gone.
    Gone,
    /// A file being taken back exists again (`size`, `mtime`): sync it instead.
    Back(u64, i64),
    /// Only this file must wait (still being written).
    RetryFile(String),
    /// A plugin made progress on this file (a large upload advanced): call again at once, no
    /// backoff, not a failure.
    InProgress(String),
    /// A destination failed: hold the whole queue back.
    Outage(ErrorType, String),
}

pub(super) async fn run(svc: OutputSync, cancel: CancellationToken) {
    let mut limiter = RateLimiter::new(svc.inner.config.rate_per_s);
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let sleep_for = match step(&svc, &mut limiter).await {
            Some(d) => d,
            None => continue,
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = svc.inner.wake.notified() => {}
            _ = tokio::time::sleep(sleep_for) => {}
        }
    }
}

/// Processes one batch. Returns how long to wait before the next, or `None` to go on at once.
async fn step(svc: &OutputSync, limiter: &mut RateLimiter) -> Option<Duration> {
    let inner = &svc.inner;
    let now = crate::jobs::now_ms();
    if let Some(until) = inner.state.lock().held_until_ms
        && until > now
    {
        return Some(ms(until - now));
    }
    if !inner.plugins.has_enabled(HookKind::OutputSync) {
        return Some(IDLE);
    }
    let due = match inner.store.output_due(now, BATCH) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, "output queue unreadable");
            return Some(IDLE);
        }
    };
    if due.is_empty() {
        let next = inner.store.output_next_due_ms().ok().flatten();
        return Some(next.map_or(IDLE, |t| ms(t - now).min(IDLE)));
    }
    for row in due {
        limiter.acquire().await;
        let span = tracing::info_span!("output_sync", file = %row.rel_path,
            prompt_id = row.prompt_id.as_deref().unwrap_or("-"), attempt = row.attempts + 1);
        let round = process(svc, &row).instrument(span.clone()).await;
        let _enter = span.enter();
        if let Some(hold) = settle(svc, &row, round) {
            return Some(hold);
        }
    }
    None
}

/// Runs the chain on one row and returns the verdict.
pub(super) async fn process(svc: &OutputSync, row: &OutputRow) -> Round {
    let Some(root) = &svc.inner.output_dir else {
        return Round::RetryFile("no output directory".into());
    };
    let stat = file::stat(&root.join(&row.rel_path));
    if row.state == OutputState::Removing {
        return match stat {
            Ok(None) => take_back(svc, row).await,
            Ok(Some((size, mtime))) => Round::Back(size, mtime),
            Err(e) => Round::RetryFile(format!("incomplete: cannot stat: {e}")),
        };
    }
    let (size, mtime) = match stat {
        Ok(Some(s)) => s,
        Ok(None) => return Round::Gone,
        Err(e) => return Round::RetryFile(format!("incomplete: cannot stat: {e}")),
    };
    let out = file::output_file(row, size, u64::try_from(mtime).unwrap_or(0));
    let results = svc.inner.plugins.on_output(&out).await;
    if results.is_empty() {
        // The chain emptied between the check and the call (plugin disabled): try later.
        return Round::RetryFile("no output-sync plugin enabled".into());
    }
    let now = crate::jobs::now_ms();
    let mut st = svc.inner.state.lock();
    verdict(results.iter().map(|(plugin_id, result)| {
        let kind = st.book.record(plugin_id, &row.rel_path, result, now);
        (kind, describe(plugin_id, result))
    }))
}

/// Runs the output-mirror chain on a synced file deleted at the source. The row carries the
/// size and mtime it was synced with, which is how the plugins find their records of it.
async fn take_back(svc: &OutputSync, row: &OutputRow) -> Round {
    let out = file::output_file(row, row.size, u64::try_from(row.modified_ms).unwrap_or(0));
    let results = svc.inner.plugins.on_removed(&out).await;
    if results.is_empty() {
        return Round::RetryFile("no output-sync plugin that mirrors deletions is enabled".into());
    }
    let now = crate::jobs::now_ms();
    let mut st = svc.inner.state.lock();
    verdict(results.iter().map(|(plugin_id, result)| {
        let kind = st
            .book
            .record_removal(plugin_id, &row.rel_path, result, now);
        (kind, describe(plugin_id, result))
    }))
}

fn describe<T: std::fmt::Debug>(plugin_id: &str, result: &Result<T, CallErrorKind>) -> String {
    match result {
        Ok(o) => format!("{plugin_id}: {o:?}"),
        Err(e) => format!("{plugin_id}: {e}"),
    }
}

/// The file's verdict from each plugin's failure type (`None`: done with it) and message: any
/// outage holds the queue, otherwise any retry retries the file, otherwise it is done.
fn verdict(answers: impl Iterator<Item = (Option<ErrorType>, String)>) -> Round {
    let mut verdict = Round::Done;
    for (kind, msg) in answers {
        let Some(kind) = kind else { continue };
        // Outage beats a file retry, which beats progress.
        verdict = match (verdict, kind.is_outage()) {
            (Round::Outage(k, m), _) => Round::Outage(k, m),
            (_, true) => Round::Outage(kind, msg),
            (Round::RetryFile(m), false) => Round::RetryFile(m),
            (_, false) if kind == ErrorType::InProgress => Round::InProgress(msg),
            (_, false) => Round::RetryFile(msg),
        };
    }
    verdict
}

/// Stores the verdict. Returns a hold when the queue must wait for a destination.
pub(super) fn settle(svc: &OutputSync, row: &OutputRow, round: Round) -> Option<Duration> {
    let inner = &svc.inner;
    let cfg = &inner.config;
    let now = crate::jobs::now_ms();
    let stored = match &round {
        Round::Done if row.state == OutputState::Removing => {
            tracing::info!("destination copies of a deleted output taken back");
            inner.store.output_mark_removed(&row.rel_path, now)
        }
        Round::Done => inner.store.output_mark_done(&row.rel_path, now),
        Round::Back(size, mtime) => {
            tracing::info!("deleted output is back; syncing it instead of taking it back");
            let again = NewOutput {
                rel_path: row.rel_path.clone(),
                prompt_id: row.prompt_id.clone(),
                user_id: row.user_id.clone(),
                size: *size,
                modified_ms: *mtime,
            };
            inner.store.output_enqueue(&again, now).map(|_| ())
        }
        Round::Gone => {
            tracing::info!("output vanished before it was synced");
            inner.store.output_mark_gone(&row.rel_path, now)
        }
        Round::RetryFile(why) => {
            let wait = backoff::delay(row.attempts + 1, cfg.backoff_base, cfg.backoff_max);
            tracing::debug!(reason = %why, wait_ms = wait.as_millis() as u64, "output retried later");
            inner
                .store
                .output_mark_retry(&row.rel_path, now + millis(wait), why)
        }
        Round::InProgress(why) => {
            tracing::debug!(progress = %why, "output upload continues");
            inner.store.output_mark_progress(&row.rel_path, now)
        }
        Round::Outage(kind, why) => {
            let failures = {
                let mut st = inner.state.lock();
                st.consecutive_failures += 1;
                st.consecutive_failures
            };
            let hold = backoff::delay(failures, cfg.backoff_base, cfg.backoff_max);
            tracing::warn!(error_type = ?kind, reason = %why, hold_ms = hold.as_millis() as u64,
                "output sync destination failing; holding the queue");
            inner.state.lock().held_until_ms = Some(now + millis(hold));
            if let Err(e) = inner
                .store
                .output_mark_retry(&row.rel_path, now + millis(hold), why)
            {
                tracing::error!(error = %e, "cannot record retry");
            }
            return Some(hold);
        }
    };
    if let Err(e) = stored {
        tracing::error!(error = %e, "cannot record sync outcome");
    }
    // Progress proves the destination works as much as a finished file does.
    if matches!(round, Round::Done | Round::InProgress(_)) {
        let recovered = {
            let mut st = inner.state.lock();
            let was = st.consecutive_failures;
            st.consecutive_failures = 0;
            st.held_until_ms = None;
            was > 0
        };
        if recovered {
            tracing::info!("output sync destination recovered; draining the backlog");
            if let Err(e) = inner.store.output_pull_forward(now) {
                tracing::error!(error = %e, "cannot reschedule backlog");
            }
        }
    }
    None
}

fn ms(n: i64) -> Duration {
    Duration::from_millis(u64::try_from(n).unwrap_or(0))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
