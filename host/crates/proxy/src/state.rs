//! Shared proxy state: configuration, pooled upstream client, hooks.

use std::sync::Arc;

use axum::body::Body;
use http::uri::Authority;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::{ConfigError, ProxyConfig};
use crate::intercept::PromptInterceptor;
use crate::upstream::{UnknownState, UpstreamState, UpstreamTarget};
use crate::ws::{WsHub, WsTap};

pub(crate) type UpstreamClient = Client<HttpConnector, Body>;

/// Everything the proxy needs; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct ProxyState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ProxyConfig,
    target: UpstreamTarget,
    client: UpstreamClient,
    upstream_state: Arc<dyn UpstreamState>,
    interceptor: Option<Arc<dyn PromptInterceptor>>,
    hub: Arc<WsHub>,
}

/// Builds a [`ProxyState`].
pub struct ProxyStateBuilder {
    config: ProxyConfig,
    upstream_state: Arc<dyn UpstreamState>,
    interceptor: Option<Arc<dyn PromptInterceptor>>,
    taps: Vec<Arc<dyn WsTap>>,
}

impl ProxyStateBuilder {
    /// Supervisor state quoted in "ComfyUI is not running" errors (default: `"unknown"`).
    pub fn upstream_state(mut self, provider: impl UpstreamState) -> Self {
        self.upstream_state = Arc::new(provider);
        self
    }

    /// Hook for `POST /prompt` and `/api/prompt`.
    pub fn interceptor(mut self, interceptor: Arc<dyn PromptInterceptor>) -> Self {
        self.interceptor = Some(interceptor);
        self
    }

    /// Add a tap on ComfyUI -> browser WebSocket messages.
    pub fn tap(mut self, tap: Arc<dyn WsTap>) -> Self {
        self.taps.push(tap);
        self
    }

    /// Validate the configuration and build the state.
    pub fn build(self) -> Result<ProxyState, ConfigError> {
        self.config.validate()?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(self.config.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.config.pool_idle_timeout)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(ProxyState {
            inner: Arc::new(Inner {
                target: UpstreamTarget::new(self.config.upstream.clone()),
                config: self.config,
                client,
                upstream_state: self.upstream_state,
                interceptor: self.interceptor,
                hub: Arc::new(WsHub::new(self.taps)),
            }),
        })
    }
}

impl ProxyState {
    /// Start building a state for `config`.
    pub fn builder(config: ProxyConfig) -> ProxyStateBuilder {
        ProxyStateBuilder {
            config,
            upstream_state: Arc::new(UnknownState),
            interceptor: None,
            taps: Vec::new(),
        }
    }

    /// A state with no hooks.
    pub fn new(config: ProxyConfig) -> Result<Self, ConfigError> {
        Self::builder(config).build()
    }

    /// The configuration (its `upstream` is the initial one; see [`ProxyState::upstream`]).
    pub fn config(&self) -> &ProxyConfig {
        &self.inner.config
    }

    /// ComfyUI's current authority.
    pub fn upstream(&self) -> Arc<Authority> {
        self.inner.target.get()
    }

    /// Point the proxy at another ComfyUI (attach mode, port change). New requests and new
    /// WebSockets use it; running WebSockets stay on the old one until they close.
    pub fn set_upstream(&self, authority: Authority) {
        tracing::info!(upstream = %authority, "proxy upstream switched");
        self.inner.target.set(authority);
    }

    /// Registry of relayed browser sockets: inject `comfyhost.*` messages here.
    pub fn ws(&self) -> &WsHub {
        &self.inner.hub
    }

    pub(crate) fn hub(&self) -> Arc<WsHub> {
        Arc::clone(&self.inner.hub)
    }

    pub(crate) fn client(&self) -> &UpstreamClient {
        &self.inner.client
    }

    pub(crate) fn upstream_state(&self) -> Arc<dyn UpstreamState> {
        Arc::clone(&self.inner.upstream_state)
    }

    pub(crate) fn interceptor(&self) -> Option<&Arc<dyn PromptInterceptor>> {
        self.inner.interceptor.as_ref()
    }
}
