//! Typed errors of the supervisor.

use std::path::PathBuf;

/// Everything that can go wrong while preparing or launching ComfyUI.
///
/// The `Display` texts are meant for admins: they name the directory, port or program involved.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The ComfyUI directory (the child's working directory) does not exist or is not a directory.
    #[error("ComfyUI directory {path} does not exist or is not a directory")]
    ComfyUiDirMissing {
        /// The configured directory.
        path: PathBuf,
    },
    /// A directory handed to ComfyUI could not be created.
    #[error("cannot create {role} directory {path}: {source}")]
    DirCreate {
        /// Which directory (`output`, `input`, `user`, `temp`, `database`).
        role: &'static str,
        /// The configured directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A path handed to ComfyUI exists but is not a directory.
    #[error("{role} directory {path} exists but is not a directory")]
    NotADirectory {
        /// Which directory.
        role: &'static str,
        /// The configured path.
        path: PathBuf,
    },
    /// A directory exists but a test file cannot be written into it.
    #[error("{role} directory {path} is not writable: {source}")]
    DirNotWritable {
        /// Which directory.
        role: &'static str,
        /// The configured directory.
        path: PathBuf,
        /// The OS error from the write test.
        source: std::io::Error,
    },
    /// An `--extra-model-paths-config` file is missing or not a regular file.
    #[error("extra model paths config {path} is not a readable file")]
    ExtraModelPathsMissing {
        /// The configured file.
        path: PathBuf,
    },
    /// A path in the launch spec is not valid UTF-8, so the logged command line could not be exact.
    #[error("{role} path {path:?} is not valid UTF-8")]
    NonUtf8Path {
        /// Which path.
        role: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// The launch spec has no program.
    #[error("launch spec has an empty program")]
    EmptyProgram,
    /// An environment variable name in the launch spec is empty or contains `=` or NUL.
    #[error("invalid environment variable name {0:?}")]
    InvalidEnvName(String),
    /// Port 0 cannot be supervised (ComfyUI would pick a random port we cannot probe).
    #[error("port 0 is not allowed: ComfyUI needs a fixed internal port")]
    PortZero,
    /// The attach URL is not an absolute http(s) URL.
    #[error("invalid attach URL {url:?}: {reason}")]
    InvalidAttachUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The HTTP client for the readiness probe could not be built.
    #[error("cannot build the readiness probe HTTP client: {0}")]
    HttpClient(String),
}
