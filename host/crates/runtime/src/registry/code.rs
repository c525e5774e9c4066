//! The seam between the registry and compiled code: [`PluginCode`] is one compiled component
//! of one hook, [`PluginCompiler`] turns bytes into it. The production implementations are
//! [`PluginEngine`] and [`CompiledPlugin`]; the registry only speaks these traits, so its
//! chain, reload and breaker logic is the same whatever executes the hook.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::engine::{CompiledPlugin, PluginEngine};
use crate::manifest::HookKind;
use crate::sandbox::CallEnv;
use crate::types::{
    BackendStatus, ExecutionEvent, InstalledFolder, JobContext, OutputFile, OverlayUpdate,
    RemovalOutcome, Resolution, Route, Submission, SyncOutcome, TransformResult,
};
use crate::{CallErrorKind, RuntimeError};

/// Arguments of one hook call.
#[derive(Debug, Clone, Copy)]
pub enum HookInput<'a> {
    Route {
        submission: &'a Submission,
        backends: &'a [BackendStatus],
    },
    Transform {
        submission: &'a Submission,
    },
    Event {
        job: &'a JobContext,
        event: &'a ExecutionEvent,
    },
    Resolve {
        workflow: &'a serde_json::Value,
        installed: &'a [InstalledFolder],
    },
    Output {
        file: &'a OutputFile,
    },
    /// `output-mirror.on-removed` (an output-sync plugin that mirrors deletions).
    Removed {
        file: &'a OutputFile,
    },
}

impl HookInput<'_> {
    /// The hook these arguments are for.
    pub fn hook(&self) -> HookKind {
        match self {
            HookInput::Route { .. } => HookKind::QueueRouter,
            HookInput::Transform { .. } => HookKind::PromptTransform,
            HookInput::Event { .. } => HookKind::StatusOverlay,
            HookInput::Resolve { .. } => HookKind::PresetResolver,
            HookInput::Output { .. } | HookInput::Removed { .. } => HookKind::OutputSync,
        }
    }
}

/// Result of one hook call.
#[derive(Debug, Clone, PartialEq)]
pub enum HookOutput {
    Route(Route),
    Transform(TransformResult),
    Event(Option<OverlayUpdate>),
    Resolve(Resolution),
    Output(SyncOutcome),
    Removed(RemovalOutcome),
}

/// One compiled plugin component.
pub trait PluginCode: Send + Sync + 'static {
    /// Hex sha256 of the component bytes.
    fn sha256(&self) -> &str;
    /// The hook world it implements.
    fn hook(&self) -> HookKind;
    /// True for an output-sync component that also exports `output-mirror`.
    fn mirrors_removals(&self) -> bool {
        false
    }
    /// Runs one call in a fresh sandbox described by `env`.
    fn call<'a>(
        &'a self,
        env: &'a CallEnv,
        input: HookInput<'a>,
    ) -> BoxFuture<'a, Result<HookOutput, CallErrorKind>>;
}

/// Compiles component bytes for a hook.
pub trait PluginCompiler: Send + Sync + 'static {
    fn compile(
        &self,
        plugin_id: &str,
        hook: HookKind,
        wasm: &[u8],
    ) -> Result<Arc<dyn PluginCode>, RuntimeError>;
}

impl PluginCompiler for PluginEngine {
    fn compile(
        &self,
        plugin_id: &str,
        hook: HookKind,
        wasm: &[u8],
    ) -> Result<Arc<dyn PluginCode>, RuntimeError> {
        let compiled = PluginEngine::compile(self, plugin_id, hook, wasm)?;
        Ok(Arc::new(compiled))
    }
}

impl PluginCode for CompiledPlugin {
    fn sha256(&self) -> &str {
        &self.sha256
    }

    fn hook(&self) -> HookKind {
        self.hook
    }

    fn mirrors_removals(&self) -> bool {
        self.pre.mirrors_removals()
    }

    fn call<'a>(
        &'a self,
        env: &'a CallEnv,
        input: HookInput<'a>,
    ) -> BoxFuture<'a, Result<HookOutput, CallErrorKind>> {
        Box::pin(async move {
            match input {
                HookInput::Route {
                    submission,
                    backends,
                } => self
                    .route(env, submission, backends)
                    .await
                    .map(HookOutput::Route),
                HookInput::Transform { submission } => self
                    .transform(env, submission)
                    .await
                    .map(HookOutput::Transform),
                HookInput::Event { job, event } => {
                    self.on_event(env, job, event).await.map(HookOutput::Event)
                }
                HookInput::Resolve {
                    workflow,
                    installed,
                } => self
                    .resolve(env, workflow, installed)
                    .await
                    .map(HookOutput::Resolve),
                HookInput::Output { file } => {
                    self.on_output(env, file).await.map(HookOutput::Output)
                }
                HookInput::Removed { file } => {
                    self.on_removed(env, file).await.map(HookOutput::Removed)
                }
            }
        })
    }
}
