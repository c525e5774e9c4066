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

/// True when a symlink at `link` (relative to a directory descriptor) pointing at `target`
/// stays inside that directory when resolved by name: the target is relative and its `..`
/// never climbs above the directory. Anything else would leave a link on disk that leads
/// ComfyUI, output sync or an admin's tools outside the grant.
pub fn symlink_stays_inside(target: &str, link: &str) -> bool {
    if target.is_empty() || target.starts_with('/') || target.contains('\0') {
        return false;
    }
    // Depth of the directory holding the link, below the descriptor's directory, then the
    // target walked from there; neither may climb above the descriptor's directory.
    let mut parts: Vec<&str> = link.split('/').filter(|p| !p.is_empty()).collect();
    parts.pop();
    descend(0, parts.into_iter())
        .and_then(|depth| descend(depth, target.split('/').filter(|p| !p.is_empty())))
        .is_some()
}

/// `depth` after walking `parts` (`.` stays, `..` climbs, a name descends); `None` as soon as it
/// would climb above 0.
fn descend<'a>(mut depth: i64, parts: impl Iterator<Item = &'a str>) -> Option<i64> {
    for p in parts {
        match p {
            "." => {}
            ".." => depth -= 1,
            _ => depth += 1,
        }
        if depth < 0 {
            return None;
        }
    }
    Some(depth)
}

/// Replaces `wasi:filesystem`'s `symlink-at` with one that refuses links leading outside the
/// directory they are made in ([`symlink_stays_inside`]); the rest goes to wasmtime-wasi.
pub fn refuse_escaping_symlinks<T: wasmtime_wasi::WasiView + 'static>(
    linker: &mut wasmtime::component::Linker<T>,
) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::filesystem::WasiFilesystemView;
    use wasmtime_wasi::p2::bindings::filesystem::types::{
        Descriptor, ErrorCode, Host as _, HostDescriptor as _,
    };
    linker.allow_shadowing(true);
    let mut types = linker.instance(WASI_FILESYSTEM_TYPES)?;
    types.func_wrap_async(
        "[method]descriptor.symlink-at",
        |mut store: wasmtime::StoreContextMut<'_, T>,
         (fd, target, link): (Resource<Descriptor>, String, String)| {
            Box::new(async move {
                if !symlink_stays_inside(&target, &link) {
                    tracing::warn!(target = %target, link = %link, "plugin symlink pointing outside its directory refused");
                    return Ok((Err(ErrorCode::NotPermitted),));
                }
                let mut view = store.data_mut().filesystem();
                match view.symlink_at(fd, target, link).await {
                    Ok(()) => Ok((Ok(()),)),
                    Err(e) => Ok((Err(view.convert_error_code(e)?),)),
                }
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The `wasi:filesystem/types` instance name wasmtime-wasi links (guests importing an older
/// 0.2.x are matched to it by semver).
const WASI_FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_must_stay_inside_their_directory() {
        assert!(symlink_stays_inside("a.png", "link"));
        assert!(symlink_stays_inside("../a.png", "sub/link"));
        assert!(symlink_stays_inside("./x/../y", "link"));
        assert!(!symlink_stays_inside("/etc/passwd", "link"));
        assert!(!symlink_stays_inside("../secret", "link"));
        assert!(!symlink_stays_inside("../../x", "sub/link"));
        assert!(!symlink_stays_inside("x/../../y", "link"));
        assert!(!symlink_stays_inside("", "link"));
        assert!(!symlink_stays_inside("a", "../link"));
    }
}
