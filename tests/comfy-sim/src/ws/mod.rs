//! The `/ws` endpoint: a hub of connected clients (keyed by `clientId`/sid) and the socket task.

pub mod handler;
pub mod hub;

pub use hub::{Hub, Outgoing};
