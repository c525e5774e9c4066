//! Per-call resource limiter: caps linear memory at the hook's budget and remembers that it
//! did, so a memory-limit trap can be told apart from other traps (a growth failure is not a
//! `wasmtime::Trap` variant). Growth is also charged to the host-wide budget of all plugin
//! calls ([`HostMemory`]); the charge is given back when the store is dropped.

use std::sync::Arc;

use wasmtime::ResourceLimiter;

use super::budget::HostMemory;

/// Most table elements a plugin may grow a table to.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Memory cap for one call; `hit` is set when the guest asked for more.
#[derive(Debug)]
pub struct CallLimiter {
    memory_bytes: u64,
    hit: bool,
    peak: u64,
    host: Option<Arc<HostMemory>>,
    charged: u64,
}

impl CallLimiter {
    /// A limiter allowing each linear memory to grow to `memory_bytes`.
    pub fn new(memory_bytes: u64) -> Self {
        Self {
            memory_bytes,
            hit: false,
            peak: 0,
            host: None,
            charged: 0,
        }
    }

    /// Same, and every growth is charged to `host` (refused when the host budget is spent).
    pub fn with_host_memory(memory_bytes: u64, host: Arc<HostMemory>) -> Self {
        Self {
            host: Some(host),
            ..Self::new(memory_bytes)
        }
    }

    /// Bytes this call charged to the host budget so far.
    pub fn charged(&self) -> u64 {
        self.charged
    }

    /// True once a memory growth was refused during this call.
    pub fn memory_limit_hit(&self) -> bool {
        self.hit
    }

    /// The largest linear memory size granted during this call, in bytes.
    pub fn peak_memory_bytes(&self) -> u64 {
        self.peak
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_bytes {
            self.hit = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit: growing linear memory from {current} to {desired} bytes exceeds the budget of {} bytes",
                self.memory_bytes
            )));
        }
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        if let Some(host) = &self.host {
            let delta = (desired as u64).saturating_sub(current as u64);
            if !host.try_charge(delta) {
                self.hit = true;
                return Err(wasmtime::Error::msg(format!(
                    "memory limit: growing linear memory by {delta} bytes would pass the host's total for all plugin calls ({} of {} bytes in use)",
                    host.used(),
                    host.limit()
                )));
            }
            self.charged += delta;
        }
        self.peak = self.peak.max(desired as u64);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        // The allocator refused (e.g. the pool's per-memory cap is below the budget): it is
        // still the guest running out of memory.
        self.hit = true;
        Err(error.context("memory limit: the allocator refused to grow linear memory"))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

impl Drop for CallLimiter {
    fn drop(&mut self) {
        if let Some(host) = &self.host {
            host.release(self.charged);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn growth_is_charged_to_the_host_budget_and_given_back() {
        let host = HostMemory::new(3 << 20);
        let mut a = CallLimiter::with_host_memory(2 << 20, host.clone());
        let mut b = CallLimiter::with_host_memory(2 << 20, host.clone());
        assert!(a.memory_growing(0, 2 << 20, None).unwrap());
        assert!(b.memory_growing(0, 1 << 20, None).unwrap());
        assert!(
            b.memory_growing(1 << 20, 2 << 20, None).is_err(),
            "host total reached"
        );
        assert!(b.memory_limit_hit());
        assert_eq!(host.used(), 3 << 20);
        drop(a);
        assert_eq!(host.used(), 1 << 20);
        drop(b);
        assert_eq!(host.used(), 0);
    }

    #[test]
    fn growth_past_budget_traps_and_sets_flag() {
        let mut l = CallLimiter::new(1 << 20);
        assert!(l.memory_growing(0, 1 << 20, None).unwrap());
        assert!(!l.memory_limit_hit());
        assert!(l.memory_growing(1 << 20, (1 << 20) + 65536, None).is_err());
        assert!(l.memory_limit_hit());
    }

    #[test]
    fn module_maximum_is_respected() {
        let mut l = CallLimiter::new(1 << 30);
        assert!(!l.memory_growing(0, 2 << 20, Some(1 << 20)).unwrap());
        assert!(!l.memory_limit_hit());
    }
}
