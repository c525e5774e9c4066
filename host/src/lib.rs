//! The comfyhost host: configuration, wiring of supervisor, proxy, plugin runtime, store and
//! the host API. The binary (`main.rs`) is a thin CLI over [`app::run`].

pub mod api;
pub mod app;
pub mod auth;
pub mod backends;
pub mod comfy_launch;
pub mod comfy_routes;
pub mod config;
pub mod dashboard;
pub mod fair_queue;
pub mod gpu_cli;
pub mod gpu_confirm;
pub mod intercept;
pub mod jobs;
pub mod machine;
pub mod memory;
pub mod metrics;
pub mod models;
pub mod outputs;
pub mod overlay;
pub mod plugin_cli;
pub mod plugins_setup;
pub mod remote;
pub mod retention;
pub mod serve_early;
pub mod state;
pub mod telemetry;
pub mod users;
