//! The seam between the remote runner and the kinds of remote it can run a job on. Every kind
//! ([`ComfyPool`]: a remote ComfyUI of the pool, [`ServerlessEndpoints`]: a RunPod-compatible
//! endpoint) implements [`RemoteBackend`]: submit a job, pick it up again after a restart,
//! cancel it, and health-check one configured backend. [`for_kind`] matches the kind enum
//! exhaustively, so a new kind cannot fall through to another kind's code.

use comfyhost_store::{BackendKind, RemoteJobRow};
use futures::future::BoxFuture;

use super::{RemoteJob, RemoteRunner, Submitted, comfy, serverless};
use crate::backends::BackendPool;

/// What one health check found: jobs waiting and running on the backend, and what it says
/// it is (a remote ComfyUI's `/system_stats`; `None` when it did not say).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueueLoad {
    pub pending: u32,
    pub running: u32,
    pub comfyui_version: Option<String>,
    pub required_frontend_version: Option<String>,
}

/// One kind of remote backend.
pub trait RemoteBackend: Send + Sync {
    /// The kind stored with each job it runs.
    fn kind(&self) -> BackendKind;

    /// Runs `job` on the backend named `name` (or a fallback of the same kind). The runner
    /// records the job; the answer is what the browser's `/prompt` gets.
    fn submit<'a>(
        &'a self,
        runner: &'a RemoteRunner,
        job: RemoteJob,
        name: &'a str,
    ) -> BoxFuture<'a, Submitted>;

    /// Follows a job found unfinished at start until it ends.
    fn resume(&self, runner: &RemoteRunner, row: RemoteJobRow);

    /// Asks the backend to stop (running) or drop (pending) the job.
    fn cancel<'a>(&'a self, runner: &'a RemoteRunner, row: &'a RemoteJobRow) -> BoxFuture<'a, ()>;

    /// Checks the backend named `name` once.
    fn health<'a>(
        &'a self,
        pool: &'a BackendPool,
        name: &'a str,
    ) -> BoxFuture<'a, Result<QueueLoad, String>>;
}

/// Remote ComfyUI instances of the backend pool ([`comfy`]).
pub struct ComfyPool;

/// RunPod-compatible serverless endpoints ([`serverless`]).
pub struct ServerlessEndpoints;

/// The implementation for `kind`.
pub fn for_kind(kind: BackendKind) -> &'static dyn RemoteBackend {
    match kind {
        BackendKind::Comfyui => &ComfyPool,
        BackendKind::Serverless => &ServerlessEndpoints,
    }
}

impl RemoteBackend for ComfyPool {
    fn kind(&self) -> BackendKind {
        BackendKind::Comfyui
    }

    fn submit<'a>(
        &'a self,
        runner: &'a RemoteRunner,
        job: RemoteJob,
        name: &'a str,
    ) -> BoxFuture<'a, Submitted> {
        Box::pin(comfy::submit(runner, job, name))
    }

    fn resume(&self, runner: &RemoteRunner, row: RemoteJobRow) {
        comfy::resume(runner, row);
    }

    fn cancel<'a>(&'a self, runner: &'a RemoteRunner, row: &'a RemoteJobRow) -> BoxFuture<'a, ()> {
        Box::pin(comfy::cancel(runner, row))
    }

    fn health<'a>(
        &'a self,
        pool: &'a BackendPool,
        name: &'a str,
    ) -> BoxFuture<'a, Result<QueueLoad, String>> {
        Box::pin(comfy::health(pool, name))
    }
}

impl RemoteBackend for ServerlessEndpoints {
    fn kind(&self) -> BackendKind {
        BackendKind::Serverless
    }

    fn submit<'a>(
        &'a self,
        runner: &'a RemoteRunner,
        job: RemoteJob,
        name: &'a str,
    ) -> BoxFuture<'a, Submitted> {
        Box::pin(serverless::submit(runner, job, name))
    }

    fn resume(&self, runner: &RemoteRunner, row: RemoteJobRow) {
        serverless::resume(runner, row);
    }

    fn cancel<'a>(&'a self, runner: &'a RemoteRunner, row: &'a RemoteJobRow) -> BoxFuture<'a, ()> {
        Box::pin(serverless::cancel(runner, row))
    }

    fn health<'a>(
        &'a self,
        pool: &'a BackendPool,
        name: &'a str,
    ) -> BoxFuture<'a, Result<QueueLoad, String>> {
        Box::pin(serverless::health(pool, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_implementation() {
        for kind in [BackendKind::Comfyui, BackendKind::Serverless] {
            assert_eq!(for_kind(kind).kind(), kind);
        }
    }
}
