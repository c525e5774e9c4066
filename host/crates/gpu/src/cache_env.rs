//! Per-architecture kernel cache directories for the ComfyUI process.
//!
//! Pods with different GPUs often share one volume; compiled kernels (Triton, CUDA PTX JIT,
//! TorchInductor, torch C++ extensions) are arch specific. Partitioning by `sm_XY` lets each
//! GPU keep its own cache instead of wiping a cache another live pod is using.

use std::path::{Path, PathBuf};

use crate::inventory::GpuInfo;

/// Environment variables naming kernel caches, with one directory per architecture under
/// `base` (`base/sm_89/triton`, …; `base/cpu/…` without a GPU or with an unknown SM).
pub fn arch_cache_env(base: &Path, gpu: Option<&GpuInfo>) -> Vec<(&'static str, PathBuf)> {
    let arch = gpu
        .and_then(|g| g.sm)
        .map_or_else(|| "cpu".to_owned(), |sm| sm.sm_tag());
    let root = base.join(arch);
    vec![
        ("TRITON_CACHE_DIR", root.join("triton")),
        ("CUDA_CACHE_PATH", root.join("cuda")),
        ("TORCHINDUCTOR_CACHE_DIR", root.join("inductor")),
        ("TORCH_EXTENSIONS_DIR", root.join("torch_extensions")),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::inventory::{ComputeCapability, MigMode};

    fn gpu(sm: Option<ComputeCapability>) -> GpuInfo {
        GpuInfo {
            index: 0,
            name: "NVIDIA GeForce RTX 4090".into(),
            uuid: "GPU-1".into(),
            sm,
            vram_total_mib: None,
            vram_free_mib: None,
            mig_mode: MigMode::NotSupported,
        }
    }

    #[test]
    fn caches_are_partitioned_by_arch() {
        let base = Path::new("/workspace/.cache");
        let ada = arch_cache_env(base, Some(&gpu(Some(ComputeCapability::new(8, 9)))));
        assert_eq!(
            ada[0],
            (
                "TRITON_CACHE_DIR",
                PathBuf::from("/workspace/.cache/sm_89/triton")
            )
        );
        let bw = arch_cache_env(base, Some(&gpu(Some(ComputeCapability::new(12, 0)))));
        assert!(ada.iter().zip(&bw).all(|(a, b)| a.0 == b.0 && a.1 != b.1));
        let cpu = arch_cache_env(base, None);
        assert!(
            cpu.iter()
                .all(|(_, p)| p.starts_with("/workspace/.cache/cpu"))
        );
        assert_eq!(arch_cache_env(base, Some(&gpu(None))), cpu);
    }
}
