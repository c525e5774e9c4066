//! The host's integration tests: one test binary, one module per area. Every test starts the
//! real `comfyhost` binary (see `support`), so the binary is linked once for all of them and
//! cargo-nextest runs the tests concurrently, each in its own process.
#![allow(clippy::unwrap_used)] // tests may unwrap

mod support;

mod browser_current_frontend;
mod browser_dashboard;
mod browser_overlay;
mod browser_trust;
mod browser_users;
mod browser_workshop;
mod dashboard_auth;
mod dashboard_jobs;
mod docker_entrypoint;
mod honest_failures;
mod host_plugins;
mod host_simulator;
mod machine;
mod models;
mod output_sync;
mod plugin_author;
mod plugin_trust;
mod prompt_enhance;
mod queue_load;
mod queue_redirect;
mod real_comfyui;
mod remote_current;
mod sandbox_attacks;
mod shadow_mode;
mod status_overlay;
mod workshop_isolation;
mod workshop_room;
