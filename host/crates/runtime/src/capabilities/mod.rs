//! One module per capability: each owns its grant check and its wiring into the per-call store.

pub mod fs;
pub mod http;
pub mod kv;
pub mod log;
pub mod secrets;
