//! Integration tests of this crate: one test binary, one module per area (linked once;
//! cargo-nextest runs the tests concurrently, each in its own process).
#![allow(clippy::unwrap_used)] // tests may unwrap

mod common;

mod cli;
mod current_fidelity;
mod features;
mod fidelity;
mod multi_user;
mod testpack;
