//! The one place that calls the `host` imports.
//!
//! Inside the sandbox (`target_arch = "wasm32"`) every function calls the host. In a native build
//! (an author's `cargo test`) they answer from the [`crate::testing::FakeHost`] the test
//! installed; without one, logging goes to stderr, the clock reads the system time, and config,
//! secrets and the key-value store report [`NOT_IN_SANDBOX`] instead of inventing values.

#[cfg(not(target_arch = "wasm32"))]
use crate::host::KvError;
use crate::host::{self, LogLevel};
use crate::types::OptionEntry;

/// Why a host-backed helper fails in a native build.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
pub(crate) const NOT_IN_SANDBOX: &str = "not running inside comfyhost (native build): only the wasm32-wasip2 component can reach the host";

pub(crate) fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    if !crate::testing::log(level, message) {
        eprintln!("[plugin {level:?}] {message}");
    }
}

pub(crate) fn config() -> Option<String> {
    #[cfg(target_arch = "wasm32")]
    return Some(host::config());
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::config()
}

pub(crate) fn secret(name: &str) -> Result<Option<String>, &'static str> {
    #[cfg(target_arch = "wasm32")]
    return Ok(host::secret(name));
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::secret(name).ok_or(NOT_IN_SANDBOX)
}

pub(crate) fn kv_get(key: &str) -> Result<Option<Vec<u8>>, host::KvError> {
    #[cfg(target_arch = "wasm32")]
    return host::kv_get(key);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::kv_get(key).unwrap_or_else(not_in_sandbox)
}

pub(crate) fn kv_set(key: &str, value: &[u8]) -> Result<(), host::KvError> {
    #[cfg(target_arch = "wasm32")]
    return host::kv_set(key, value);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::kv_set(key, value).unwrap_or_else(not_in_sandbox)
}

pub(crate) fn kv_delete(key: &str) -> Result<(), host::KvError> {
    #[cfg(target_arch = "wasm32")]
    return host::kv_delete(key);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::kv_delete(key).unwrap_or_else(not_in_sandbox)
}

pub(crate) fn kv_list(prefix: &str, limit: u32) -> Result<Vec<String>, host::KvError> {
    #[cfg(target_arch = "wasm32")]
    return host::kv_list(prefix, limit);
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::kv_list(prefix, limit).unwrap_or_else(not_in_sandbox)
}

pub(crate) fn now_ms() -> u64 {
    #[cfg(target_arch = "wasm32")]
    return host::now_ms();
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::now_ms().unwrap_or_else(system_now_ms)
}

#[cfg(not(target_arch = "wasm32"))]
fn system_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn host_info() -> Vec<OptionEntry> {
    #[cfg(target_arch = "wasm32")]
    return host::host_info();
    #[cfg(not(target_arch = "wasm32"))]
    crate::testing::host_info().unwrap_or_default()
}

#[cfg(not(target_arch = "wasm32"))]
fn not_in_sandbox<T>() -> Result<T, KvError> {
    Err(KvError::Storage(NOT_IN_SANDBOX.into()))
}
