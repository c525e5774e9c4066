//! Budgets shared across calls: the WASI resources of one plugin (all its concurrent calls
//! together) and the linear memory of every plugin call on the host. A call takes a lease when
//! its store is built and gives it back when the store is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::limits::{MIN_RESOURCES_PER_CALL, PluginLimits};

/// Resource slots of one plugin, shared by its concurrent calls (and kept across reloads).
#[derive(Debug)]
pub struct ResourcePool {
    free: AtomicUsize,
    total: usize,
    /// Woken whenever a lease is given back.
    released: tokio::sync::Notify,
}

impl ResourcePool {
    pub fn new(total: usize) -> Arc<Self> {
        Arc::new(Self {
            free: AtomicUsize::new(total),
            total,
            released: tokio::sync::Notify::new(),
        })
    }

    /// Slots not leased right now.
    pub fn free(&self) -> usize {
        self.free.load(Ordering::SeqCst)
    }

    /// Leases up to `want` slots; `None` when fewer than [`MIN_RESOURCES_PER_CALL`] are free
    /// (the plugin's other calls hold them).
    pub fn lease(self: &Arc<Self>, want: usize) -> Option<ResourceLease> {
        let mut free = self.free.load(Ordering::SeqCst);
        loop {
            let n = want.min(free);
            if n < MIN_RESOURCES_PER_CALL.min(want) {
                return None;
            }
            match self
                .free
                .compare_exchange(free, free - n, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => {
                    return Some(ResourceLease {
                        pool: self.clone(),
                        n,
                    });
                }
                Err(now) => free = now,
            }
        }
    }

    /// Leases up to `want` slots, waiting up to `patience` for the plugin's other calls to give
    /// some back: many concurrent calls of one plugin queue for its slots rather than fail.
    pub async fn lease_within(
        self: &Arc<Self>,
        want: usize,
        patience: std::time::Duration,
    ) -> Option<ResourceLease> {
        let until = tokio::time::Instant::now() + patience;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before trying, so a release between the try and the wait is not missed.
            released.as_mut().enable();
            if let Some(lease) = self.lease(want) {
                return Some(lease);
            }
            if tokio::time::timeout_at(until, released).await.is_err() {
                return self.lease(want);
            }
        }
    }

    /// The plugin's total.
    pub fn total(&self) -> usize {
        self.total
    }
}

/// Slots held by one call.
#[derive(Debug)]
pub struct ResourceLease {
    pool: Arc<ResourcePool>,
    n: usize,
}

impl ResourceLease {
    pub fn slots(&self) -> usize {
        self.n
    }
}

impl Drop for ResourceLease {
    fn drop(&mut self) {
        self.pool.free.fetch_add(self.n, Ordering::SeqCst);
        self.pool.released.notify_waiters();
    }
}

/// Linear memory of all plugin calls on the host together.
#[derive(Debug)]
pub struct HostMemory {
    used: AtomicU64,
    limit: u64,
}

impl HostMemory {
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            limit,
        })
    }

    /// Bytes in use by running calls.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Charges `bytes`; false (nothing charged) when that would pass the limit.
    pub fn try_charge(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                u.checked_add(bytes).filter(|n| *n <= self.limit)
            })
            .is_ok()
    }

    pub fn release(&self, bytes: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                Some(u.saturating_sub(bytes))
            });
    }
}

/// What a call needs to take its share of the shared budgets.
#[derive(Debug, Clone)]
pub struct SharedBudgets {
    pub limits: PluginLimits,
    /// The plugin's resource slots.
    pub resources: Arc<ResourcePool>,
    /// Every plugin's memory.
    pub host_memory: Arc<HostMemory>,
}

impl SharedBudgets {
    /// Budgets for tests and tools: default limits, a private pool and host memory.
    pub fn standalone() -> Self {
        let limits = PluginLimits::default();
        Self {
            resources: ResourcePool::new(limits.resources_per_plugin),
            host_memory: HostMemory::new(limits.host_memory_bytes),
            limits,
        }
    }

    /// Resources one call of a plugin with `memory_bytes` may hold: the per-call cap, lowered
    /// so that header maps at their size limit cannot hold more host memory than the plugin's
    /// own memory budget.
    pub fn resources_per_call(&self, memory_bytes: u64) -> usize {
        let by_memory = usize::try_from(memory_bytes / self.limits.http_field_bytes.max(1) as u64)
            .unwrap_or(usize::MAX);
        self.limits
            .resources_per_call
            .min(by_memory)
            .max(MIN_RESOURCES_PER_CALL)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pool_leases_and_returns() {
        let pool = ResourcePool::new(100);
        let a = pool.lease(64).unwrap();
        assert_eq!(a.slots(), 64);
        let b = pool.lease(64).unwrap();
        assert_eq!(b.slots(), 36);
        assert!(pool.lease(64).is_none(), "nothing left");
        drop(a);
        assert_eq!(pool.free(), 64);
        drop(b);
        assert_eq!(pool.free(), 100);
    }

    #[tokio::test]
    async fn concurrent_calls_queue_for_slots_instead_of_failing() {
        let pool = ResourcePool::new(32);
        let a = pool.lease(16).unwrap();
        let _b = pool.lease(16).unwrap();
        assert!(pool.lease(16).is_none());
        // Nothing comes back in time: no lease.
        assert!(
            pool.lease_within(16, std::time::Duration::from_millis(20))
                .await
                .is_none()
        );
        // A call finishing hands its slots to the one waiting.
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move {
                pool.lease_within(16, std::time::Duration::from_secs(5))
                    .await
                    .map(|l| l.slots())
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        drop(a);
        assert_eq!(waiter.await.unwrap(), Some(16));
    }

    #[test]
    fn host_memory_is_bounded() {
        let m = HostMemory::new(100);
        assert!(m.try_charge(60));
        assert!(!m.try_charge(41));
        assert!(m.try_charge(40));
        m.release(60);
        assert_eq!(m.used(), 40);
    }

    #[test]
    fn per_call_resources_follow_memory() {
        let b = SharedBudgets::standalone();
        assert_eq!(b.resources_per_call(1 << 30), 256);
        assert_eq!(b.resources_per_call(4 << 20), 64);
        assert_eq!(b.resources_per_call(0), MIN_RESOURCES_PER_CALL);
    }
}
