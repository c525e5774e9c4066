//! Filesystem capability: the guest sees only the granted directories, as WASI preopens.

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::grants::EffectiveCaps;
use crate::manifest::DirAccess;

/// WASI permissions for a granted access mode.
pub fn perms(access: DirAccess) -> FsPerms {
    match access {
        DirAccess::Ro => FsPerms::ReadOnly,
        DirAccess::Rw => FsPerms::ReadWrite,
    }
}

/// Preopens every granted directory (and nothing else) in `builder`.
///
/// Fails when a granted host directory cannot be opened (deleted since the grant, permissions):
/// the call then fails instead of running with fewer directories than the plugin expects.
pub fn preopen_granted(builder: &mut WasiCtxBuilder, caps: &EffectiveCaps) -> Result<(), String> {
    for dir in &caps.dirs {
        builder
            .preopened_dir(&dir.host_path, &dir.guest, perms(dir.access))
            .map_err(|e| {
                format!(
                    "cannot open granted directory {} (guest {}): {e}",
                    dir.host_path.display(),
                    dir.guest
                )
            })?;
    }
    Ok(())
}
