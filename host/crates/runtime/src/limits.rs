//! Host-side limits that bound what plugins can take from the host outside their own linear
//! memory and deadline: component size and compile time, WASI resources (open files, streams,
//! HTTP header maps) per call and per plugin, and linear memory across all concurrent calls.
//! Every limit and its default is listed in `docs/architecture.md`.

use std::time::Duration;

/// Largest component the host reads or compiles (drop-in or install API).
pub const DEFAULT_MAX_COMPONENT_BYTES: u64 = 64 << 20;
/// Longest a component may take to compile before the host gives up on it.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(60);

/// WASI resources (files, directories, streams, HTTP fields, requests, ...) one call may hold
/// at once. Each open file is one resource, so this is also the per-call cap on open files.
pub const DEFAULT_RESOURCES_PER_CALL: usize = 256;
/// WASI resources all concurrent calls of one plugin may hold together.
pub const DEFAULT_RESOURCES_PER_PLUGIN: usize = 1024;
/// Linear memory of all concurrent plugin calls together.
pub const DEFAULT_HOST_MEMORY_BYTES: u64 = 2 << 30;
/// Bytes of one wasi:http `fields` (header map) the host keeps for a guest. Host memory held
/// in header maps is at most this times the call's resource cap, and the per-call resource cap
/// is lowered so that this product stays within the call's memory budget.
pub const DEFAULT_HTTP_FIELD_BYTES: usize = 64 * 1024;
/// Fewest resources a call gets (a wasip2 guest needs a few for stdio and preopens).
pub const MIN_RESOURCES_PER_CALL: usize = 16;

/// The host's plugin limits (a host setting; see each field's `DEFAULT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    pub max_component_bytes: u64,
    pub compile_timeout: Duration,
    pub resources_per_call: usize,
    pub resources_per_plugin: usize,
    pub host_memory_bytes: u64,
    pub http_field_bytes: usize,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            max_component_bytes: DEFAULT_MAX_COMPONENT_BYTES,
            compile_timeout: DEFAULT_COMPILE_TIMEOUT,
            resources_per_call: DEFAULT_RESOURCES_PER_CALL,
            resources_per_plugin: DEFAULT_RESOURCES_PER_PLUGIN,
            host_memory_bytes: DEFAULT_HOST_MEMORY_BYTES,
            http_field_bytes: DEFAULT_HTTP_FIELD_BYTES,
        }
    }
}
