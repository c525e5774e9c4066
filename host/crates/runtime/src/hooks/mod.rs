//! Typed hook calls: one async method per hook on [`CompiledPlugin`]. Each call builds a fresh
//! store ([`crate::sandbox`]), instantiates from the plugin's pre-instantiated component,
//! calls the export under the deadline, converts the result, and drops the store.

pub mod bindings;
mod convert;
pub mod workflow;

use std::time::Instant;

pub use workflow::{WorkflowError, workflow_from_wit, workflow_to_wit};

use crate::engine::CompiledPlugin;
use crate::error::CallErrorKind;
use crate::manifest::HookKind;
use crate::sandbox::{self, CallEnv, PluginState, Stage};
use crate::types::*;

/// Pre-instantiated component for the world of one hook kind.
#[derive(Clone)]
pub(crate) enum WorldPre {
    QueueRouter(bindings::queue_router::QueueRouterPluginPre<PluginState>),
    PromptTransform(bindings::prompt_transform::PromptTransformPluginPre<PluginState>),
    StatusOverlay(bindings::status_overlay::StatusOverlayPluginPre<PluginState>),
    PresetResolver(bindings::preset_resolver::PresetResolverPluginPre<PluginState>),
    OutputSync(bindings::output_sync::OutputSyncPluginPre<PluginState>),
    /// An output-sync plugin that also exports `output-mirror`.
    OutputSyncMirror(bindings::output_sync_mirror::OutputSyncMirrorPluginPre<PluginState>),
}

impl WorldPre {
    /// Checks that `pre`'s component exports the world of `hook` and caches its export indices.
    pub(crate) fn new(
        hook: HookKind,
        pre: wasmtime::component::InstancePre<PluginState>,
    ) -> wasmtime::Result<Self> {
        Ok(match hook {
            HookKind::QueueRouter => {
                Self::QueueRouter(bindings::queue_router::QueueRouterPluginPre::new(pre)?)
            }
            HookKind::PromptTransform => Self::PromptTransform(
                bindings::prompt_transform::PromptTransformPluginPre::new(pre)?,
            ),
            HookKind::StatusOverlay => {
                Self::StatusOverlay(bindings::status_overlay::StatusOverlayPluginPre::new(pre)?)
            }
            HookKind::PresetResolver => Self::PresetResolver(
                bindings::preset_resolver::PresetResolverPluginPre::new(pre)?,
            ),
            // The richer world first: a component that exports `output-mirror` too gets
            // deletions; one that does not is a plain output-sync plugin.
            HookKind::OutputSync => {
                match bindings::output_sync_mirror::OutputSyncMirrorPluginPre::new(pre.clone()) {
                    Ok(mirror) => Self::OutputSyncMirror(mirror),
                    Err(_) => {
                        Self::OutputSync(bindings::output_sync::OutputSyncPluginPre::new(pre)?)
                    }
                }
            }
        })
    }

    /// True when the component exports `output-mirror`.
    pub(crate) fn mirrors_removals(&self) -> bool {
        matches!(self, Self::OutputSyncMirror(_))
    }
}

/// Runs one guarded call: fresh store, instantiate, call, classify, drop the store.
macro_rules! guarded_call {
    ($env:expr, $pre:expr, |$store:ident, $inst:ident| $call:expr) => {{
        let env: &CallEnv = $env;
        let pre = $pre;
        let lease = sandbox::lease_resources(env).await?;
        let mut $store = sandbox::new_store(pre.engine(), env, lease)?;
        let started = Instant::now();
        let outcome = sandbox::guarded(env, async {
            let $inst = pre
                .instantiate_async(&mut $store)
                .await
                .map_err(Stage::Instantiate)?;
            $call.await.map_err(Stage::Call)
        })
        .await;
        sandbox::finish(&$store, env, started, outcome)?
    }};
}

fn wrong_hook(plugin: &CompiledPlugin, wanted: HookKind) -> CallErrorKind {
    CallErrorKind::Unavailable(format!(
        "plugin compiled for hook {}, called as {wanted}",
        plugin.hook
    ))
}

impl CompiledPlugin {
    /// `queue-router.route`.
    pub async fn route(
        &self,
        env: &CallEnv,
        sub: &Submission,
        backends: &[BackendStatus],
    ) -> Result<Route, CallErrorKind> {
        let WorldPre::QueueRouter(pre) = &self.pre else {
            return Err(wrong_hook(self, HookKind::QueueRouter));
        };
        let sub = convert::submission(sub)?;
        let backends = convert::backends(backends);
        let r = guarded_call!(env, pre, |store, inst| inst
            .comfyhost_plugin_queue_router()
            .call_route(&mut store, &sub, &backends));
        r.map(convert::route).map_err(convert::plugin_error)
    }

    /// `prompt-transform.transform`.
    pub async fn transform(
        &self,
        env: &CallEnv,
        sub: &Submission,
    ) -> Result<TransformResult, CallErrorKind> {
        let WorldPre::PromptTransform(pre) = &self.pre else {
            return Err(wrong_hook(self, HookKind::PromptTransform));
        };
        let sub = convert::submission(sub)?;
        let r = guarded_call!(env, pre, |store, inst| inst
            .comfyhost_plugin_prompt_transform()
            .call_transform(&mut store, &sub));
        convert::transform_result(r.map_err(convert::plugin_error)?)
    }

    /// `status-overlay.on-event`.
    pub async fn on_event(
        &self,
        env: &CallEnv,
        job: &JobContext,
        ev: &ExecutionEvent,
    ) -> Result<Option<OverlayUpdate>, CallErrorKind> {
        let WorldPre::StatusOverlay(pre) = &self.pre else {
            return Err(wrong_hook(self, HookKind::StatusOverlay));
        };
        let job = convert::job(job);
        let ev = convert::event(ev);
        let r = guarded_call!(env, pre, |store, inst| inst
            .comfyhost_plugin_status_overlay()
            .call_on_event(&mut store, &job, &ev));
        r.map_err(convert::plugin_error)?
            .map(convert::overlay)
            .transpose()
    }

    /// `preset-resolver.resolve`.
    pub async fn resolve(
        &self,
        env: &CallEnv,
        workflow: &serde_json::Value,
        installed: &[InstalledFolder],
    ) -> Result<Resolution, CallErrorKind> {
        let WorldPre::PresetResolver(pre) = &self.pre else {
            return Err(wrong_hook(self, HookKind::PresetResolver));
        };
        let wf = convert::workflow_in(workflow)?;
        let installed = convert::installed(installed);
        let r = guarded_call!(env, pre, |store, inst| inst
            .comfyhost_plugin_preset_resolver()
            .call_resolve(&mut store, &wf, &installed));
        r.map(convert::resolution).map_err(convert::plugin_error)
    }

    /// `output-sync.on-output`.
    pub async fn on_output(
        &self,
        env: &CallEnv,
        file: &OutputFile,
    ) -> Result<SyncOutcome, CallErrorKind> {
        let file = convert::output_file(file);
        match &self.pre {
            WorldPre::OutputSync(pre) => {
                let r = guarded_call!(env, pre, |store, inst| inst
                    .comfyhost_plugin_output_sync()
                    .call_on_output(&mut store, &file));
                r.map(convert::sync_outcome).map_err(convert::plugin_error)
            }
            WorldPre::OutputSyncMirror(pre) => {
                let r = guarded_call!(env, pre, |store, inst| inst
                    .comfyhost_plugin_output_sync()
                    .call_on_output(&mut store, &file));
                r.map(convert::mirror_sync_outcome)
                    .map_err(convert::plugin_error)
            }
            _ => Err(wrong_hook(self, HookKind::OutputSync)),
        }
    }

    /// `output-mirror.on-removed` (only plugins of the `output-sync-mirror-plugin` world).
    pub async fn on_removed(
        &self,
        env: &CallEnv,
        file: &OutputFile,
    ) -> Result<RemovalOutcome, CallErrorKind> {
        let WorldPre::OutputSyncMirror(pre) = &self.pre else {
            return Err(CallErrorKind::Unavailable(format!(
                "plugin compiled for hook {} does not export output-mirror",
                self.hook
            )));
        };
        let file = convert::output_file(file);
        let r = guarded_call!(env, pre, |store, inst| inst
            .comfyhost_plugin_output_mirror()
            .call_on_removed(&mut store, &file));
        r.map(convert::removal_outcome)
            .map_err(convert::plugin_error)
    }
}
