//! A fake host for native `cargo test`: what the sandbox's `host` interface answers (config,
//! secrets, the key-value store, the log, the clock, host facts), set up per test.
//!
//! ```
//! use comfyhost_sdk::testing::FakeHost;
//!
//! let host = FakeHost::new()
//!     .config(r#"{"style": "cinematic"}"#)
//!     .secret("API_KEY", "k-123")
//!     .install();
//! // Call the plugin's hook function here: `config()`, `secret()`, `kv` and the log macros now
//! // answer from `host` on this thread.
//! comfyhost_sdk::info!("hello");
//! assert_eq!(comfyhost_sdk::secret("API_KEY").unwrap(), "k-123");
//! comfyhost_sdk::kv::set("seen", &1u32).unwrap();
//! assert_eq!(host.kv_value("seen").as_deref(), Some(&b"1"[..]));
//! assert!(host.logged("hello"));
//! ```
//!
//! The fake is per thread (each `#[test]` runs on its own) and removed when the guard returned by
//! [`FakeHost::install`] is dropped; without one, host-backed helpers report that they are not
//! running inside comfyhost. The limits are the host's: keys up to 256 bytes, values up to
//! 1 MiB, and an optional key quota.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::host::{KvError, LogLevel};
use crate::types::OptionEntry;

/// The host's key limit, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// The host's value limit, in bytes.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// One record the plugin logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its level.
    pub level: LogLevel,
    /// Its text.
    pub message: String,
}

#[derive(Debug, Default)]
struct State {
    config: Option<String>,
    secrets: BTreeMap<String, String>,
    kv: BTreeMap<String, Vec<u8>>,
    kv_quota_keys: Option<usize>,
    logs: Vec<LogRecord>,
    now_ms: Option<u64>,
    host_info: Vec<(String, String)>,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<RefCell<State>>>> = const { RefCell::new(None) };
}

/// Builder of a fake host; [`FakeHost::install`] makes it answer on this thread.
#[derive(Debug, Default)]
pub struct FakeHost {
    state: State,
}

impl FakeHost {
    /// A host with `{}` as configuration, no secrets, an empty store and no host facts.
    pub fn new() -> Self {
        Self::default()
    }

    /// The configuration JSON the plugin reads with [`crate::config()`] (as the host passes it:
    /// validated, defaults applied, so write the defaults you rely on).
    pub fn config(mut self, json: &str) -> Self {
        self.state.config = Some(json.to_owned());
        self
    }

    /// A granted secret.
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.state.secrets.insert(name.to_owned(), value.to_owned());
        self
    }

    /// A key already in the plugin's store.
    pub fn kv(mut self, key: &str, value: &[u8]) -> Self {
        self.state.kv.insert(key.to_owned(), value.to_vec());
        self
    }

    /// At most `keys` keys in the store (a `set` of a new key past it fails with the quota error).
    pub fn kv_quota(mut self, keys: usize) -> Self {
        self.state.kv_quota_keys = Some(keys);
        self
    }

    /// A fixed clock, milliseconds since the Unix epoch (default: the system clock).
    pub fn now_ms(mut self, ms: u64) -> Self {
        self.state.now_ms = Some(ms);
        self
    }

    /// A host fact ([`crate::system::host_fact`]), e.g. `("gpu", "NVIDIA H200")`.
    pub fn host_fact(mut self, key: &str, value: &str) -> Self {
        self.state
            .host_info
            .push((key.to_owned(), value.to_owned()));
        self
    }

    /// Makes this host answer on the current thread until the guard is dropped.
    pub fn install(self) -> FakeHostGuard {
        let state = Rc::new(RefCell::new(self.state));
        CURRENT.with(|c| *c.borrow_mut() = Some(state.clone()));
        FakeHostGuard { state }
    }
}

/// The installed fake host: inspect what the plugin did; dropping it uninstalls the fake.
#[derive(Debug)]
pub struct FakeHostGuard {
    state: Rc<RefCell<State>>,
}

impl FakeHostGuard {
    /// Every record logged so far.
    pub fn logs(&self) -> Vec<LogRecord> {
        self.state.borrow().logs.clone()
    }

    /// True when a logged message contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.state
            .borrow()
            .logs
            .iter()
            .any(|r| r.message.contains(text))
    }

    /// The raw bytes stored under `key`.
    pub fn kv_value(&self, key: &str) -> Option<Vec<u8>> {
        self.state.borrow().kv.get(key).cloned()
    }

    /// Every key in the store, sorted.
    pub fn kv_keys(&self) -> Vec<String> {
        self.state.borrow().kv.keys().cloned().collect()
    }
}

impl Drop for FakeHostGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| {
            let mut cur = c.borrow_mut();
            if cur.as_ref().is_some_and(|s| Rc::ptr_eq(s, &self.state)) {
                *cur = None;
            }
        });
    }
}

/// Runs `f` on the installed fake host, if any.
fn with<R>(f: impl FnOnce(&mut State) -> R) -> Option<R> {
    CURRENT.with(|c| c.borrow().as_ref().map(|s| f(&mut s.borrow_mut())))
}

pub(crate) fn log(level: LogLevel, message: &str) -> bool {
    with(|s| {
        s.logs.push(LogRecord {
            level,
            message: message.to_owned(),
        })
    })
    .is_some()
}

pub(crate) fn config() -> Option<String> {
    with(|s| s.config.clone().unwrap_or_else(|| "{}".into()))
}

pub(crate) fn secret(name: &str) -> Option<Option<String>> {
    with(|s| s.secrets.get(name).cloned())
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(KvError::TooLarge(format!(
            "key of {} bytes (1..={MAX_KEY_BYTES})",
            key.len()
        )));
    }
    Ok(())
}

pub(crate) fn kv_get(key: &str) -> Option<Result<Option<Vec<u8>>, KvError>> {
    with(|s| {
        check_key(key)?;
        Ok(s.kv.get(key).cloned())
    })
}

pub(crate) fn kv_set(key: &str, value: &[u8]) -> Option<Result<(), KvError>> {
    with(|s| {
        check_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(KvError::TooLarge(format!(
                "value of {} bytes (at most {MAX_VALUE_BYTES})",
                value.len()
            )));
        }
        let new_key = !s.kv.contains_key(key);
        if new_key && s.kv_quota_keys.is_some_and(|q| s.kv.len() >= q) {
            return Err(KvError::QuotaExceeded);
        }
        s.kv.insert(key.to_owned(), value.to_vec());
        Ok(())
    })
}

pub(crate) fn kv_delete(key: &str) -> Option<Result<(), KvError>> {
    with(|s| {
        check_key(key)?;
        s.kv.remove(key);
        Ok(())
    })
}

pub(crate) fn kv_list(prefix: &str, limit: u32) -> Option<Result<Vec<String>, KvError>> {
    with(|s| {
        Ok(s.kv
            .keys()
            .filter(|k| k.starts_with(prefix))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    })
}

pub(crate) fn now_ms() -> Option<u64> {
    with(|s| s.now_ms).flatten()
}

pub(crate) fn host_info() -> Option<Vec<OptionEntry>> {
    with(|s| {
        s.host_info
            .iter()
            .map(|(key, value)| OptionEntry {
                key: key.clone(),
                value: value.clone(),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Cfg {
        style: String,
    }

    #[test]
    fn host_calls_answer_from_the_installed_fake() {
        let host = FakeHost::new()
            .config(r#"{"style": "cinematic"}"#)
            .secret("API_KEY", "k")
            .kv("old", b"\"x\"")
            .now_ms(42)
            .host_fact("gpu", "NVIDIA H200")
            .install();
        let cfg: Cfg = crate::config().unwrap();
        assert_eq!(cfg.style, "cinematic");
        assert_eq!(crate::secret("API_KEY").unwrap(), "k");
        assert!(crate::secret("OTHER").is_err());
        assert_eq!(
            crate::kv::get::<String>("old").unwrap().as_deref(),
            Some("x")
        );
        crate::kv::set("count", &3u32).unwrap();
        assert_eq!(crate::kv::list("", 10).unwrap(), vec!["count", "old"]);
        crate::kv::delete("old").unwrap();
        assert_eq!(host.kv_keys(), vec!["count"]);
        assert_eq!(crate::system::now_ms(), 42);
        assert_eq!(
            crate::system::host_fact("gpu").as_deref(),
            Some("NVIDIA H200")
        );
        crate::warn!("careful: {}", 1);
        assert_eq!(
            host.logs(),
            vec![LogRecord {
                level: LogLevel::Warn,
                message: "careful: 1".into()
            }]
        );
    }

    #[test]
    fn limits_are_the_hosts() {
        let _host = FakeHost::new().kv_quota(1).install();
        crate::kv::set("a", &1u8).unwrap();
        assert!(matches!(
            crate::kv::set("b", &1u8),
            Err(crate::kv::KvError::QuotaExceeded)
        ));
        crate::kv::set("a", &2u8).unwrap(); // replacing is not a new key
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(matches!(
            crate::kv::set(&long, &1u8),
            Err(crate::kv::KvError::TooLarge(_))
        ));
        let big = vec![0u8; MAX_VALUE_BYTES + 1];
        assert!(matches!(
            crate::kv::set_bytes("a", &big),
            Err(crate::kv::KvError::TooLarge(_))
        ));
    }

    #[test]
    fn without_a_fake_the_native_build_says_so() {
        {
            let _host = FakeHost::new().install();
            assert!(crate::kv::get::<u8>("k").unwrap().is_none());
        }
        assert!(matches!(
            crate::kv::get::<u32>("k"),
            Err(crate::kv::KvError::Storage(m)) if m.contains("native build")
        ));
    }
}
