//! The data of a per-call `Store`: WASI context, wasi:http context, limiter, and the `host`
//! imports implemented against the call's [`CallEnv`].

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::CallEnv;
use super::budget::ResourceLease;
use super::limiter::CallLimiter;
use crate::capabilities::http::AllowListHooks;
use crate::capabilities::kv::{self, KvError, MAX_LIST_LIMIT};
use crate::capabilities::log::{GuestOutput, PluginLogLevel, emit, now_ms};
use crate::capabilities::secrets;
use crate::hooks::bindings::host_api::{self, LogLevel};
use crate::hooks::bindings::wit_types::OptionEntry;

/// Most `log` records one call may write; later ones are dropped (noted once).
pub const MAX_LOG_RECORDS_PER_CALL: u32 = 1000;
/// Most bytes of `log` messages one call may write; later records are dropped (noted once).
pub const MAX_LOG_BYTES_PER_CALL: usize = 64 * 1024;

/// Store data of one hook call. Built fresh for every call and dropped with the store.
pub struct PluginState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) http_hooks: AllowListHooks,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: CallLimiter,
    pub(crate) env: CallEnv,
    pub(crate) stdout: GuestOutput,
    pub(crate) stderr: GuestOutput,
    /// When the epoch deadline callback last ran, i.e. the guest was last seen executing wasm.
    pub(crate) last_epoch_check: Option<std::time::Instant>,
    log_records: u32,
    log_bytes: usize,
    log_dropped_noted: bool,
    /// The call's share of the plugin's WASI resources (the table's capacity).
    _resources: ResourceLease,
}

impl PluginState {
    pub(crate) fn new(
        wasi: WasiCtx,
        http_hooks: AllowListHooks,
        env: CallEnv,
        stdout: GuestOutput,
        stderr: GuestOutput,
        resources: ResourceLease,
    ) -> Self {
        let limiter =
            CallLimiter::with_host_memory(env.budget.memory_bytes, env.budgets.host_memory.clone());
        let mut table = ResourceTable::new();
        table.set_max_capacity(resources.slots());
        let mut http = WasiHttpCtx::new();
        http.set_field_size_limit(env.budgets.limits.http_field_bytes);
        Self {
            wasi,
            http,
            http_hooks,
            table,
            limiter,
            env,
            stdout,
            stderr,
            last_epoch_check: None,
            log_records: 0,
            log_bytes: 0,
            log_dropped_noted: false,
            _resources: resources,
        }
    }

    /// True once the guest tried to grow memory past its budget.
    pub fn memory_limit_hit(&self) -> bool {
        self.limiter.memory_limit_hit()
    }

    /// The largest linear memory the guest had during this call, in bytes.
    pub fn peak_memory_bytes(&self) -> u64 {
        self.limiter.peak_memory_bytes()
    }

    /// Emits partial lines the guest left on stdout/stderr.
    pub(crate) fn flush_output(&self) {
        self.stdout.flush_pending();
        self.stderr.flush_pending();
    }

    fn kv_error(e: KvError) -> host_api::KvError {
        match e {
            KvError::TooLarge(m) => host_api::KvError::TooLarge(m),
            KvError::QuotaExceeded => host_api::KvError::QuotaExceeded,
            KvError::Storage(m) => host_api::KvError::Storage(m),
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl host_api::Host for PluginState {
    async fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.log_records = self.log_records.saturating_add(1);
        self.log_bytes = self.log_bytes.saturating_add(message.len());
        let env = &self.env;
        if self.log_records > MAX_LOG_RECORDS_PER_CALL || self.log_bytes > MAX_LOG_BYTES_PER_CALL {
            if !self.log_dropped_noted {
                self.log_dropped_noted = true;
                emit(
                    &*env.log,
                    &env.plugin_id,
                    env.prompt_id.as_deref(),
                    PluginLogLevel::Warn,
                    format!(
                        "more than {MAX_LOG_RECORDS_PER_CALL} log records or {MAX_LOG_BYTES_PER_CALL} bytes of log in one call; the rest are dropped"
                    ),
                );
            }
            return Ok(());
        }
        let level = match level {
            LogLevel::Trace => PluginLogLevel::Trace,
            LogLevel::Debug => PluginLogLevel::Debug,
            LogLevel::Info => PluginLogLevel::Info,
            LogLevel::Warn => PluginLogLevel::Warn,
            LogLevel::Error => PluginLogLevel::Error,
        };
        emit(
            &*env.log,
            &env.plugin_id,
            env.prompt_id.as_deref(),
            level,
            message,
        );
        Ok(())
    }

    async fn config(&mut self) -> wasmtime::Result<String> {
        Ok(self.env.config_json.to_string())
    }

    async fn secret(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(secrets::lookup(&self.env.caps, &self.env.secrets, &name))
    }

    async fn kv_get(
        &mut self,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, host_api::KvError>> {
        let (store, plugin) = (self.env.kv.clone(), self.env.plugin_id.clone());
        let r = kv::off_runtime(move || {
            kv::check_key(&key)?;
            store.get(&plugin, &key)
        })
        .await;
        Ok(r.map_err(Self::kv_error))
    }

    async fn kv_set(
        &mut self,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), host_api::KvError>> {
        let (store, plugin) = (self.env.kv.clone(), self.env.plugin_id.clone());
        let r = kv::off_runtime(move || {
            kv::check_key(&key)?;
            kv::check_value(&value)?;
            store.set(&plugin, &key, &value)
        })
        .await;
        Ok(r.map_err(Self::kv_error))
    }

    async fn kv_delete(&mut self, key: String) -> wasmtime::Result<Result<(), host_api::KvError>> {
        let (store, plugin) = (self.env.kv.clone(), self.env.plugin_id.clone());
        let r = kv::off_runtime(move || {
            kv::check_key(&key)?;
            store.delete(&plugin, &key)
        })
        .await;
        Ok(r.map_err(Self::kv_error))
    }

    async fn kv_list(
        &mut self,
        prefix: String,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<String>, host_api::KvError>> {
        if prefix.len() > kv::MAX_KEY_BYTES {
            return Ok(Err(host_api::KvError::TooLarge(format!(
                "prefix is {} bytes, the limit is {}",
                prefix.len(),
                kv::MAX_KEY_BYTES
            ))));
        }
        let (store, plugin) = (self.env.kv.clone(), self.env.plugin_id.clone());
        let r =
            kv::off_runtime(move || store.list(&plugin, &prefix, limit.min(MAX_LIST_LIMIT))).await;
        Ok(r.map_err(Self::kv_error))
    }

    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(now_ms())
    }

    async fn host_info(&mut self) -> wasmtime::Result<Vec<OptionEntry>> {
        Ok(self
            .env
            .host_info
            .iter()
            .map(|(k, v)| OptionEntry {
                key: k.clone(),
                value: v.clone(),
            })
            .collect())
    }
}
