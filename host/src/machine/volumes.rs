//! The volumes the host writes to or reads models from, and their free/total space.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// A directory the host depends on, with the role it plays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// `data`, `output`, `input`, `temp`, `models`, `models:<folder>`.
    pub role: String,
    pub path: PathBuf,
}

/// Free and total space of the filesystem holding one or more watched directories.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeUsage {
    /// Where the filesystem is mounted (`/` when unknown).
    pub mount_point: PathBuf,
    /// The roles of the watched directories on it (`output`, `models`, ...).
    pub roles: Vec<String>,
    /// The watched directories on it.
    pub paths: Vec<PathBuf>,
    pub total_bytes: u64,
    /// Available to unprivileged users.
    pub free_bytes: u64,
}

/// The mount point holding `path`: the longest mount point that is a prefix of it.
pub fn mount_of<'a>(mounts: impl Iterator<Item = &'a Path>, path: &Path) -> Option<PathBuf> {
    mounts
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.components().count())
        .map(Path::to_path_buf)
}

/// The nearest existing ancestor, made absolute and free of symlinks (a model folder may not
/// exist yet; its space is its parent's).
pub fn resolve(path: &Path) -> Option<PathBuf> {
    let existing = path.ancestors().find(|p| p.exists())?;
    std::fs::canonicalize(existing).ok()
}

/// Groups watched directories by the filesystem they live on and reads its space from
/// `sysinfo`'s disk list. A directory on no listed mount (rare in containers) is measured
/// with `statvfs` and shown under its own path.
pub fn usage(disks: &sysinfo::Disks, watched: &[Watched]) -> Vec<VolumeUsage> {
    let mut out: Vec<VolumeUsage> = Vec::new();
    for w in watched {
        let Some(real) = resolve(&w.path) else {
            continue;
        };
        let mount = mount_of(disks.iter().map(sysinfo::Disk::mount_point), &real);
        let (mount_point, total, free) = match mount.as_ref().and_then(|m| {
            disks
                .iter()
                .find(|d| d.mount_point() == m)
                .map(|d| (m.clone(), d.total_space(), d.available_space()))
        }) {
            Some(found) => found,
            None => match statvfs_space(&real) {
                Some((total, free)) => (real.clone(), total, free),
                None => continue,
            },
        };
        match out.iter_mut().find(|v| v.mount_point == mount_point) {
            Some(v) => {
                if !v.roles.contains(&w.role) {
                    v.roles.push(w.role.clone());
                }
                if !v.paths.contains(&w.path) {
                    v.paths.push(w.path.clone());
                }
            }
            None => out.push(VolumeUsage {
                mount_point,
                roles: vec![w.role.clone()],
                paths: vec![w.path.clone()],
                total_bytes: total,
                free_bytes: free,
            }),
        }
    }
    out
}

/// Total and available bytes of the filesystem holding `path`.
pub fn statvfs_space(path: &Path) -> Option<(u64, u64)> {
    let crate::models::downloads::disk::Space { free, total } =
        crate::models::downloads::disk::space(path).ok()?;
    Some((total, free))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_mount_prefix_wins() {
        let mounts = [
            Path::new("/"),
            Path::new("/data"),
            Path::new("/data/models"),
        ];
        let m = |p: &str| mount_of(mounts.iter().copied(), Path::new(p));
        assert_eq!(
            m("/data/models/checkpoints"),
            Some(PathBuf::from("/data/models"))
        );
        assert_eq!(m("/data/output"), Some(PathBuf::from("/data")));
        // component-wise, not string prefix: /database is not under /data
        assert_eq!(m("/database"), Some(PathBuf::from("/")));
    }

    #[test]
    fn directories_on_one_filesystem_share_a_volume() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("output");
        std::fs::create_dir_all(&out).unwrap();
        let watched = vec![
            Watched {
                role: "output".into(),
                path: out,
            },
            Watched {
                role: "models".into(),
                path: dir.path().join("models/not-yet"),
            },
        ];
        let disks = sysinfo::Disks::new_with_refreshed_list().unwrap();
        let v = usage(&disks, &watched);
        assert_eq!(v.len(), 1, "{v:?}");
        assert_eq!(v[0].roles, vec!["output", "models"]);
        assert!(v[0].total_bytes >= v[0].free_bytes && v[0].total_bytes > 0);
    }
}
