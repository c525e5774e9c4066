//! Clock and host facts.

use crate::types::OptionEntry;

/// Wall-clock time, milliseconds since the Unix epoch (the host's clock inside the sandbox).
pub fn now_ms() -> u64 {
    crate::hostcall::now_ms()
}

/// Host facts (host version, ComfyUI state, GPU name) as the host lists them; empty natively.
pub fn host_info() -> Vec<OptionEntry> {
    crate::hostcall::host_info()
}

/// One host fact by key.
pub fn host_fact(key: &str) -> Option<String> {
    host_info()
        .into_iter()
        .find(|e| e.key == key)
        .map(|e| e.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_clock_is_after_2024() {
        assert!(now_ms() > 1_704_067_200_000);
        assert_eq!(host_fact("gpu"), None);
    }
}
