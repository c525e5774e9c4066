//! Confirms the attention choice from ComfyUI's own log lines (`Using sage attention`, ...)
//! and records runtime fallbacks (`Error running sage attention`) in the GPU report.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use comfyhost_gpu::{ConfirmEvent, Confirmer, DemotePolicy, GpuReport};
use comfyhost_supervisor::Supervisor;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

pub fn spawn(
    supervisor: &Arc<Supervisor>,
    report: Arc<RwLock<Option<GpuReport>>>,
    cancel: CancellationToken,
) {
    let decision = match report.read() {
        Ok(r) => match r.as_ref() {
            Some(r) => r.decision.clone(),
            None => return,
        },
        Err(_) => return,
    };
    let mut lines = supervisor.subscribe_logs();
    let supervisor = supervisor.clone();
    tokio::spawn(async move {
        let mut confirmer = Confirmer::new(&decision, DemotePolicy::default());
        loop {
            let line = tokio::select! {
                _ = cancel.cancelled() => return,
                l = lines.recv() => l,
            };
            let line = match line {
                Ok(l) => l,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            let event = confirmer.observe_line(&line.text, Instant::now());
            if event.is_none() {
                continue;
            }
            let demoted = match &event {
                Some(ConfirmEvent::Demote { reason, .. }) => demote(&report, reason.clone()),
                _ => None,
            };
            if let Ok(mut r) = report.write()
                && let Some(r) = r.as_mut()
            {
                r.confirmation = Some(confirmer.confirmation().clone());
            }
            if let Some(decision) = demoted {
                tracing::warn!(
                    choice = ?decision.choice,
                    flags = ?decision.flags,
                    "ComfyUI keeps falling back from the chosen attention; restarting with the next choice"
                );
                confirmer = Confirmer::new(&decision, DemotePolicy::default());
                supervisor.restart_with_flags(decision.flags).await;
            }
        }
    });
}

/// Replace the report's decision with the next fallback; `None` when there is none left.
fn demote(
    report: &RwLock<Option<GpuReport>>,
    reason: String,
) -> Option<comfyhost_gpu::AttentionDecision> {
    let mut guard = report.write().ok()?;
    let r = guard.as_mut()?;
    let next = r.decision.demoted(reason)?;
    r.decision = next.clone();
    Some(next)
}
