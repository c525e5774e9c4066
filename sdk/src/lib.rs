//! # comfyhost plugin SDK
//!
//! A comfyhost plugin is a `wasm32-wasip2` component that implements one hook world of the
//! `comfyhost:plugin@0.1.0` WIT package. This crate generates the bindings for all five worlds
//! and adds typed helpers, so a plugin is a trait impl and one macro call:
//!
//! ```
//! use comfyhost_sdk::prelude::*;
//! use comfyhost_sdk::hooks::queue_router::{BackendStatus, RouteDecision};
//!
//! struct SmallOnly;
//!
//! impl QueueRouter for SmallOnly {
//!     fn route(s: Submission, _backends: Vec<BackendStatus>) -> Result<RouteDecision, PluginError> {
//!         if s.workflow.nodes.len() > 200 {
//!             return Ok(RouteDecision::Reject("workflow too large".into()));
//!         }
//!         Ok(RouteDecision::Pass)
//!     }
//! }
//!
//! comfyhost_sdk::export_queue_router!(SmallOnly);
//! ```
//!
//! Build with `cargo build --target wasm32-wasip2` (crate-type `cdylib`); see
//! `docs/writing-a-plugin.md` and the templates in `sdk/templates/` (one per hook; `comfyhost plugin new` copies them).
//!
//! Host-backed helpers ([`config()`], [`kv`], [`secret()`], [`log`], [`http`]) call the host inside the
//! sandbox. In a native build (`cargo test`) they answer from a fake host the test installs
//! (`testing::FakeHost`: config, secrets, kv, log, clock); without one, logging goes to stderr
//! and the others return typed "not running inside comfyhost" errors.

#![cfg_attr(test, allow(clippy::unwrap_used))] // tests may unwrap

pub mod bindings;
pub mod config;
mod error;
#[doc(hidden)]
pub mod export;
pub mod hooks;
mod hostcall;
pub mod http;
pub mod kv;
pub mod log;
pub mod prelude;
pub mod secrets;
pub mod submission;
pub mod system;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod workflow;

/// The host interface every world imports (raw bindings; prefer the typed helpers).
pub use bindings::shared::comfyhost::plugin::host;
/// Types shared by every hook (`workflow`, `submission`, `plugin-error`, ...).
pub use bindings::shared::comfyhost::plugin::types;

pub use config::config;
pub use secrets::secret;

/// Re-exported for code that builds JSON for HTTP bodies or kv values.
pub use serde_json;
