//! ComfyUI's HTTP and WebSocket protocol as typed serde structs (ComfyUI 0.3.64).
//!
//! Everything in comfyhost that reads or writes ComfyUI messages speaks these types; the field
//! sets are checked against recordings of the real server (`tests/fixtures`).

pub mod binary;
pub mod errors;
pub mod prompt;
pub mod ws;

pub use errors::{ComfyErrorBody, ErrorDetail};
pub use prompt::{PromptAccepted, PromptRequest, PromptRequestError};
pub use ws::WsMessage;
