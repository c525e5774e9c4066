//! `comfyhost plugin …`: tools for plugin authors that need no running host.
//!
//! - `new <hook> <name>` scaffolds a plugin crate from the SDK's template for that hook;
//! - `call <dir-or-wasm>` runs one hook call in the real sandbox (same engine, limits and
//!   capability checks as the host) and prints the result, the plugin's log, time and memory;
//! - `keygen` makes a signing key, `sign <dir>` signs a plugin directory, `verify <dir>` checks
//!   a signature against a public key (see [`sign`]).

mod call;
mod scaffold;
pub mod sign;

use clap::{Args, Subcommand};

pub use call::CallArgs;
pub use scaffold::NewArgs;

/// `comfyhost plugin`.
#[derive(Debug, Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Create a plugin crate for a hook from the SDK's template.
    New(NewArgs),
    /// Run one hook call of a built plugin in the sandbox, without a host.
    Call(Box<CallArgs>),
    /// Make a signing key pair (minisign format).
    Keygen(sign::KeygenArgs),
    /// Sign a plugin directory (writes plugin.minisig and plugin.pub beside plugin.toml).
    Sign(sign::SignArgs),
    /// Check a plugin directory's signature against a public key.
    Verify(sign::VerifyArgs),
}

/// Runs `comfyhost plugin …`.
pub async fn run(args: PluginArgs) -> anyhow::Result<()> {
    match args.command {
        PluginCommand::New(a) => scaffold::run(&a),
        PluginCommand::Call(a) => call::run(*a).await,
        PluginCommand::Keygen(a) => sign::keygen(&a),
        PluginCommand::Sign(a) => sign::sign(&a),
        PluginCommand::Verify(a) => sign::verify(&a),
    }
}
