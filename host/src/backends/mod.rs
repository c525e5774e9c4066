//! Execution backends other than the local ComfyUI: remote ComfyUI servers and
//! RunPod-compatible serverless endpoints, configured in a TOML file (`--backends`) and
//! health-checked in the background so routers can pick the least busy one.

pub mod config;
pub mod pool;

pub use config::{BackendsConfig, ComfyBackend, ServerlessBackend, Timings};
pub use pool::BackendPool;
