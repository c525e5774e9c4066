//! The low-disk guard: one free-space rule for the whole host.
//!
//! The admin sets a threshold (`--low-disk-threshold-mib`, or live through
//! `PUT /comfyhost/api/system/low-disk`). Below it on the output volume the admin is warned
//! (dashboard banner, activity entry) and users see a notice in the status overlay. Preset
//! downloads refuse to start when a file would not fit with the threshold still free
//! ([`fits`]); output sync is not affected.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::Serialize;

use super::volumes::VolumeUsage;

/// The threshold every free-space check of the host keeps (bytes). Process-wide so the
/// download manager applies the same rule without being wired to the monitor.
static RESERVE_BYTES: AtomicU64 = AtomicU64::new(0);

/// The free space every write the host starts must leave.
pub fn reserve_bytes() -> u64 {
    RESERVE_BYTES.load(Ordering::Relaxed)
}

/// Whether `needed` more bytes fit into `available` with the reserve kept.
pub fn fits(needed: u64, available: u64) -> bool {
    needed.saturating_add(reserve_bytes()) <= available
}

/// The output volume is below the threshold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LowDisk {
    pub since_ms: i64,
    pub mount_point: PathBuf,
    pub free_bytes: u64,
    pub threshold_bytes: u64,
}

/// A change the monitor reports (activity, overlay notice, log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    BecameLow(LowDisk),
    Recovered {
        free_bytes: u64,
        threshold_bytes: u64,
    },
    Unchanged,
}

/// The guard's state.
#[derive(Debug)]
pub struct DiskGuard {
    low: Mutex<Option<LowDisk>>,
}

impl DiskGuard {
    pub fn new(threshold_bytes: u64) -> Self {
        RESERVE_BYTES.store(threshold_bytes, Ordering::Relaxed);
        Self {
            low: Mutex::new(None),
        }
    }

    pub fn threshold_bytes(&self) -> u64 {
        reserve_bytes()
    }

    pub fn set_threshold(&self, bytes: u64) {
        RESERVE_BYTES.store(bytes, Ordering::Relaxed);
    }

    pub fn low(&self) -> Option<LowDisk> {
        self.low.lock().clone()
    }

    /// Compares the output volume's free space with the threshold.
    pub fn evaluate(&self, output: Option<&VolumeUsage>, now_ms: i64) -> Transition {
        let threshold = self.threshold_bytes();
        let mut low = self.low.lock();
        let Some(v) = output else {
            return Transition::Unchanged;
        };
        match (&mut *low, v.free_bytes < threshold) {
            (None, true) => {
                let l = LowDisk {
                    since_ms: now_ms,
                    mount_point: v.mount_point.clone(),
                    free_bytes: v.free_bytes,
                    threshold_bytes: threshold,
                };
                *low = Some(l.clone());
                Transition::BecameLow(l)
            }
            (Some(l), true) => {
                l.free_bytes = v.free_bytes;
                l.threshold_bytes = threshold;
                Transition::Unchanged
            }
            (Some(_), false) => {
                *low = None;
                Transition::Recovered {
                    free_bytes: v.free_bytes,
                    threshold_bytes: threshold,
                }
            }
            (None, false) => Transition::Unchanged,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vol(free: u64) -> VolumeUsage {
        VolumeUsage {
            mount_point: "/data".into(),
            roles: vec!["output".into()],
            paths: vec!["/data/output".into()],
            total_bytes: 1000,
            free_bytes: free,
        }
    }

    // One test: the reserve is process-wide.
    #[test]
    fn transitions_and_the_shared_fit_rule() {
        let g = DiskGuard::new(100);
        assert_eq!(g.evaluate(Some(&vol(500)), 1), Transition::Unchanged);
        assert!(matches!(
            g.evaluate(Some(&vol(99)), 2),
            Transition::BecameLow(LowDisk {
                free_bytes: 99,
                threshold_bytes: 100,
                ..
            })
        ));
        assert_eq!(g.evaluate(Some(&vol(50)), 3), Transition::Unchanged);
        assert_eq!(g.low().unwrap().free_bytes, 50);
        assert_eq!(g.low().unwrap().since_ms, 2);
        g.set_threshold(10);
        assert_eq!(
            g.evaluate(Some(&vol(50)), 4),
            Transition::Recovered {
                free_bytes: 50,
                threshold_bytes: 10
            }
        );
        assert!(g.low().is_none());
        assert!(fits(40, 50) && !fits(41, 50));
        g.set_threshold(0);
        assert!(fits(50, 50));
    }
}
