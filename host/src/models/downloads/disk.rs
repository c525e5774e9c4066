//! Free disk space (`statvfs`) and grouping of destinations by filesystem.

use std::path::{Path, PathBuf};

/// The nearest existing ancestor of `path` (a download's folder may not exist yet).
pub fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors().find(|p| p.exists()).map(Path::to_path_buf)
}

/// Bytes available to unprivileged users on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    space(path).map(|s| s.free)
}

/// Free (to unprivileged users) and total bytes of the filesystem holding `path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub free: u64,
    pub total: u64,
}

/// One `statvfs` of the filesystem holding `path`.
pub fn space(path: &Path) -> std::io::Result<Space> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: an all-zero `statvfs` is a valid value of this plain C struct.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `s` a valid, writable `statvfs`.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::useless_conversion)] // c_ulong / fsblkcnt_t widths differ by platform
    let (avail, blocks, block_size) = (
        u64::from(s.f_bavail),
        u64::from(s.f_blocks),
        u64::from(s.f_frsize),
    );
    Ok(Space {
        free: avail.saturating_mul(block_size),
        total: blocks.saturating_mul(block_size),
    })
}

/// Device id of the filesystem holding `path` (files on one device share free space).
pub fn device_of(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.dev())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reports_space_of_an_existing_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c.safetensors");
        assert_eq!(existing_ancestor(&deep).as_deref(), Some(dir.path()));
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(free_bytes(Path::new("/definitely/not/here")).is_err());
    }
}
