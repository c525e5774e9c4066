//! Confirms the attention backend from ComfyUI's own log lines and demotes it when
//! ComfyUI keeps falling back at run time.
//!
//! Wording from ComfyUI `comfy/ldm/modules/attention.py` (0.3.64 and current):
//! `Using sage attention`, `Using xformers attention`, `Using Flash Attention`,
//! `Using pytorch attention`, `Using split optimization for attention`,
//! `Using sub quadratic optimization for attention, …`, `Using Comfy Kitchen attention` (0.32+,
//! logged after the base line; `Comfy Kitchen attention is unavailable. …` before it exits); per-call fallbacks
//! `Error running sage attention: …, using pytorch attention instead.` and
//! `Flash Attention failed, using default SDPA: …`. VAE lines (`… in VAE`) are ignored.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::decision::{AttentionChoice, AttentionDecision, Candidate};

/// What one log line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSignal {
    /// ComfyUI announced the backend it selected at start.
    Selected(AttentionChoice),
    /// A per-call runtime fallback of `backend` (to PyTorch SDPA).
    RuntimeFallback {
        /// Backend that failed.
        backend: AttentionChoice,
        /// True for CUDA out-of-memory (transient, not a wrong-flag signal).
        out_of_memory: bool,
    },
    /// ComfyUI refused the backend at start and exits (`Comfy Kitchen attention is unavailable`).
    Unavailable(AttentionChoice),
}

/// Classifies one ComfyUI log line (prefixes such as timestamps are allowed).
pub fn classify_line(line: &str) -> Option<LogSignal> {
    if line.contains("Error running sage attention") {
        return Some(LogSignal::RuntimeFallback {
            backend: AttentionChoice::Sage,
            out_of_memory: line.contains("out of memory"),
        });
    }
    if line.contains("Flash Attention failed, using default SDPA") {
        return Some(LogSignal::RuntimeFallback {
            backend: AttentionChoice::Flash,
            out_of_memory: line.contains("out of memory"),
        });
    }
    if line.contains("Comfy Kitchen attention is unavailable") {
        return Some(LogSignal::Unavailable(AttentionChoice::ComfyKitchen));
    }
    let at = line.find("Using ")?;
    let rest = &line[at + "Using ".len()..];
    if rest.contains(" in VAE") {
        return None;
    }
    let lower = rest.to_ascii_lowercase();
    let choice = if lower.starts_with("comfy kitchen attention") {
        AttentionChoice::ComfyKitchen
    } else if lower.starts_with("sage attention") {
        AttentionChoice::Sage
    } else if lower.starts_with("flash attention") {
        AttentionChoice::Flash
    } else if lower.starts_with("xformers attention") {
        AttentionChoice::Xformers
    } else if lower.starts_with("pytorch attention") {
        AttentionChoice::Pytorch
    } else if lower.starts_with("split optimization for attention") {
        AttentionChoice::Split
    } else if lower.starts_with("sub quadratic optimization for attention") {
        AttentionChoice::Quad
    } else {
        return None;
    };
    Some(LogSignal::Selected(choice))
}

/// Confirmation state for the API / CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmationStatus {
    /// No `Using … attention` line seen yet.
    Pending,
    /// ComfyUI selected what was decided.
    Confirmed,
    /// ComfyUI selected something else.
    Mismatch,
    /// Repeated runtime fallbacks: restart with the next choice.
    Demoted,
}

/// Serializable confirmation summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// Status.
    pub status: ConfirmationStatus,
    /// Backend decided.
    pub expected: AttentionChoice,
    /// Backend ComfyUI reported.
    pub observed: Option<AttentionChoice>,
    /// Runtime fallbacks counted (excluding out-of-memory).
    pub runtime_fallbacks: u64,
    /// Out-of-memory fallbacks (reported, never demote).
    pub oom_fallbacks: u64,
    /// Human-readable detail.
    pub detail: String,
}

/// Events a supervisor acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmEvent {
    /// The decided backend is active.
    Confirmed(AttentionChoice),
    /// ComfyUI chose another backend than decided.
    Mismatch {
        /// Decided.
        expected: AttentionChoice,
        /// Reported.
        observed: AttentionChoice,
    },
    /// Restart ComfyUI with `to` (from [`AttentionDecision::demoted`]).
    Demote {
        /// Next option.
        to: Candidate,
        /// Why.
        reason: String,
    },
}

/// Demotion policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemotePolicy {
    /// Fallbacks within `window` that trigger a demotion.
    pub threshold: usize,
    /// Sliding window.
    pub window: Duration,
}

impl Default for DemotePolicy {
    fn default() -> Self {
        Self {
            threshold: 3,
            window: Duration::from_secs(600),
        }
    }
}

/// Watches ComfyUI's log for one run.
#[derive(Debug)]
pub struct Confirmer {
    expected: AttentionChoice,
    next: Option<Candidate>,
    policy: DemotePolicy,
    recent: VecDeque<Instant>,
    state: Confirmation,
}

impl Confirmer {
    /// Starts watching for a decision.
    pub fn new(decision: &AttentionDecision, policy: DemotePolicy) -> Self {
        Self {
            expected: decision.choice,
            next: decision.fallbacks.first().cloned(),
            policy,
            recent: VecDeque::new(),
            state: Confirmation {
                status: ConfirmationStatus::Pending,
                expected: decision.choice,
                observed: None,
                runtime_fallbacks: 0,
                oom_fallbacks: 0,
                detail: "waiting for ComfyUI's `Using … attention` line".into(),
            },
        }
    }

    /// Current summary.
    pub fn confirmation(&self) -> &Confirmation {
        &self.state
    }

    fn matches(&self, observed: AttentionChoice) -> bool {
        observed == self.expected
            // With --cpu ComfyUI reports sub-quadratic (0.3.64) or pytorch attention.
            || (self.expected == AttentionChoice::Cpu
                && matches!(observed, AttentionChoice::Quad | AttentionChoice::Pytorch | AttentionChoice::Split))
    }

    /// Feeds one log line observed at `now`.
    pub fn observe_line(&mut self, line: &str, now: Instant) -> Option<ConfirmEvent> {
        match classify_line(line)? {
            LogSignal::Selected(observed) => {
                if self.state.observed.is_some() {
                    return None; // first announcement wins (later ones are model reloads)
                }
                if self.expected == AttentionChoice::ComfyKitchen
                    && observed != AttentionChoice::ComfyKitchen
                {
                    // 0.33.0 logs the base attention first, then "Using Comfy Kitchen attention".
                    self.state.detail = format!(
                        "ComfyUI reports {observed} attention; waiting for the Comfy Kitchen line"
                    );
                    return None;
                }
                self.state.observed = Some(observed);
                if self.matches(observed) {
                    self.state.status = ConfirmationStatus::Confirmed;
                    self.state.detail = if self.expected == AttentionChoice::Cpu {
                        // Said in the decision's terms: a CPU decision is confirmed by ComfyUI's
                        // CPU attention, not "confirmed — quad attention" next to `cpu`.
                        format!(
                            "ComfyUI runs on the CPU, as decided (its log names {observed} attention, the one it uses on the CPU)"
                        )
                    } else {
                        format!("ComfyUI reports {observed} attention, as decided")
                    };
                    Some(ConfirmEvent::Confirmed(observed))
                } else {
                    self.state.status = ConfirmationStatus::Mismatch;
                    self.state.detail =
                        format!("decided {} but ComfyUI reports {observed}", self.expected);
                    tracing::warn!(expected = %self.expected, %observed, "attention backend mismatch");
                    Some(ConfirmEvent::Mismatch {
                        expected: self.expected,
                        observed,
                    })
                }
            }
            LogSignal::Unavailable(backend) => {
                self.state.status = ConfirmationStatus::Mismatch;
                self.state.detail = format!(
                    "ComfyUI reports {backend} attention unavailable and exits: install a Comfy Kitchen build with attention support or set the override to auto"
                );
                tracing::warn!(expected = %self.expected, %backend, "attention backend unavailable");
                None
            }
            LogSignal::RuntimeFallback {
                backend,
                out_of_memory,
            } => {
                if out_of_memory {
                    self.state.oom_fallbacks += 1;
                    return None;
                }
                self.state.runtime_fallbacks += 1;
                if backend != self.expected || self.state.status == ConfirmationStatus::Demoted {
                    return None;
                }
                self.recent.push_back(now);
                while self
                    .recent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > self.policy.window)
                {
                    self.recent.pop_front();
                }
                if self.recent.len() < self.policy.threshold {
                    return None;
                }
                let to = self.next.clone()?;
                let reason = format!(
                    "ComfyUI logged {} {backend} runtime fallbacks within {} s (`{}`)",
                    self.recent.len(),
                    self.policy.window.as_secs(),
                    line.trim().chars().take(160).collect::<String>()
                );
                self.state.status = ConfirmationStatus::Demoted;
                self.state.detail = format!("demote {backend} → {}: {reason}", to.choice);
                tracing::warn!(from = %backend, to = %to.choice, "demoting attention backend");
                Some(ConfirmEvent::Demote { to, reason })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn classifies_real_comfyui_lines() {
        use AttentionChoice::*;
        let cases = [
            ("Using sage attention", Some(LogSignal::Selected(Sage))),
            (
                "Using pytorch attention",
                Some(LogSignal::Selected(Pytorch)),
            ),
            ("Using Flash Attention", Some(LogSignal::Selected(Flash))),
            (
                "Using xformers attention",
                Some(LogSignal::Selected(Xformers)),
            ),
            (
                "Using split optimization for attention",
                Some(LogSignal::Selected(Split)),
            ),
            (
                "Using sub quadratic optimization for attention, if you have memory or speed issues try using: --use-split-cross-attention",
                Some(LogSignal::Selected(Quad)),
            ),
            ("Using pytorch attention in VAE", None),
            ("Using xformers attention in VAE", None),
            (
                "[2026-07-12 02:10:24.500] Error running sage attention: CUDA error: no kernel image is available for execution on the device",
                Some(LogSignal::RuntimeFallback {
                    backend: Sage,
                    out_of_memory: false,
                }),
            ),
            (
                "Error running sage attention: CUDA out of memory. Tried to allocate 748.00 MiB.",
                Some(LogSignal::RuntimeFallback {
                    backend: Sage,
                    out_of_memory: true,
                }),
            ),
            (
                "Flash Attention failed, using default SDPA: boom",
                Some(LogSignal::RuntimeFallback {
                    backend: Flash,
                    out_of_memory: false,
                }),
            ),
            ("got prompt", None),
        ];
        for (line, want) in cases {
            assert_eq!(classify_line(line), want, "{line}");
        }
    }
}
