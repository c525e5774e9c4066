//! Sandboxed WebAssembly plugin runtime for comfyhost.
//!
//! Layout (one concern per module):
//! - [`manifest`]: `plugin.toml` parsing and validation.
//! - [`grants`]: what an admin granted, and the effective capabilities (declared ∧ granted).
//! - [`engine`]: the wasmtime engine (pooling allocator with on-demand fallback, epoch ticker),
//!   compile-on-install with an artifact cache keyed by the engine's compatibility hash.
//! - [`sandbox`]: the per-call `Store` (limits, WASI context with granted preopens only,
//!   wasi:http allow-list, host imports) and deadline enforcement (epoch + tokio timeout).
//! - [`hooks`]: typed calls for each hook world, converting between host types and bindings.
//! - [`capabilities`]: one module per capability (http, fs, kv, secrets, log).
//! - [`breaker`]: crash-loop breaker.
//! - [`limits`]: host-side limits (component size, compile time, WASI resources, total memory).
//! - [`registry`]: installed plugins, enablement, hot reload, rollback, ordered chains, discovery.
//! - [`types`]: host-side types of the hook contract (the core never depends on generated bindings).

pub mod breaker;
pub mod capabilities;
pub mod engine;
pub mod error;
pub mod grants;
pub mod hooks;
pub mod limits;
pub mod manifest;
pub mod readable;
pub mod registry;
pub mod sandbox;
pub mod signing;
pub mod types;

pub use error::{CallError, CallErrorKind, RuntimeError};
pub use manifest::{HookKind, Manifest};
