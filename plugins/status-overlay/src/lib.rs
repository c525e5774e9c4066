//! `status-overlay`: turns a job's execution events into the banner the ComfyUI page shows.
//! Only real state: queued, running (where), nodes done out of the nodes that will run,
//! sampler steps, elapsed time, a friendly error; admins also get ids, backend, GPU, the time
//! since the backend last said anything, output files and the raw error.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod text;

use comfyhost_sdk::hooks::status_overlay::{ExecutionEvent, JobContext, OverlayUpdate};
use comfyhost_sdk::prelude::*;

struct StatusOverlay;

impl comfyhost_sdk::hooks::StatusOverlay for StatusOverlay {
    fn on_event(
        job: JobContext,
        event: ExecutionEvent,
    ) -> Result<Option<OverlayUpdate>, PluginError> {
        let config: text::Config = config()?;
        Ok(text::update(&config, &job, &event))
    }
}

comfyhost_sdk::export_status_overlay!(StatusOverlay);
