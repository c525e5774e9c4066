//! Integration tests of this crate: one test binary, one module per area (linked once;
//! cargo-nextest runs the tests concurrently, each in its own process).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

mod confirm_log;
mod decision_matrix;
mod detect_and_probe;
mod inventory_fixtures;
mod nvml_ffi;
mod report_render;
