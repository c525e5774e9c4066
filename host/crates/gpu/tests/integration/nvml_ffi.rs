//! Exercises the NVML FFI layer (symbol loading, buffers, `nvmlMemory_t` layout, init /
//! shutdown pairing, error strings) against a shared object built here from C that
//! implements the NVML prototypes and serves the `mixed_3090_4090` recording. No NVIDIA
//! driver exists on CI machines; on GPU hosts the same code loads the real library.

use std::path::{Path, PathBuf};
use std::process::Command;

use comfyhost_gpu::nvml::{GpuLiveStats, NvmlError, NvmlSession, NvmlSnapshot, read_snapshot};
use comfyhost_gpu::{DetectConfig, InventorySource, detect};

const FAKE_NVML_C: &str = r#"
#include <string.h>
#include <stdio.h>
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
static int refs = 0;
static void record(const char *what) {
#ifdef LOG_PATH
    const char *log = LOG_PATH;
#else
    const char *log = NULL;
#endif
    if (log) { FILE *f = fopen(log, "a"); if (f) { fprintf(f, "%s %d\n", what, refs); fclose(f); } }
}
int nvmlInit_v2(void) {
#ifdef FAIL_INIT
    return 9;
#else
    refs++; record("init"); return 0;
#endif
}
int nvmlShutdown(void) { refs--; record("shutdown"); return 0; }
const char *nvmlErrorString(int r) { return r == 9 ? "Driver Not Loaded" : "Unknown Error"; }
int nvmlDeviceGetCount_v2(unsigned *c) { if (!refs) return 1; *c = 2; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned i, void **h) { if (!refs || i >= 2) return 2; *h = (void *)(size_t)(i + 1); return 0; }
static int idx(void *h) { return (int)(size_t)h - 1; }
static int put(char *b, unsigned n, const char *s) { if (n < strlen(s) + 1) return 7; strcpy(b, s); return 0; }
int nvmlDeviceGetName(void *h, char *b, unsigned n) {
    const char *v[] = {"NVIDIA GeForce RTX 3090", "NVIDIA GeForce RTX 4090"}; return put(b, n, v[idx(h)]);
}
int nvmlDeviceGetUUID(void *h, char *b, unsigned n) {
    const char *v[] = {"GPU-4f1c6f7a-1d2e-8b3a-9c4d-5e6f7a8b9c0d", "GPU-b2e5a9c1-7f3d-4e21-a8b6-0c9d1e2f3a4b"}; return put(b, n, v[idx(h)]);
}
int nvmlDeviceGetCudaComputeCapability(void *h, int *a, int *b) { *a = 8; *b = idx(h) ? 9 : 6; return 0; }
int nvmlDeviceGetMemoryInfo(void *h, nvmlMemory_t *m) {
    unsigned long long t[] = {25769803776ULL, 25757220864ULL}, f[] = {25414459968ULL, 25246687808ULL};
    m->total = t[idx(h)]; m->free = f[idx(h)]; m->used = m->total - m->free; return 0;
}
int nvmlDeviceGetMigMode(void *h, unsigned *c, unsigned *p) { (void)h; (void)c; (void)p; return 3; }
int nvmlSystemGetDriverVersion(char *b, unsigned n) { return put(b, n, "570.133.07"); }
typedef struct { unsigned gpu, memory; } nvmlUtilization_t;
int nvmlDeviceGetUtilizationRates(void *h, nvmlUtilization_t *u) { if (!refs) return 1; u->gpu = idx(h) ? 87 : 3; u->memory = 40; return 0; }
int nvmlDeviceGetTemperature(void *h, unsigned sensor, unsigned *t) { if (!refs || sensor != 0) return 2; *t = idx(h) ? 71 : 45; return 0; }
#ifdef OLD_CUDA_SYMBOL
/* Drivers before the _v2 entry point export only the unversioned one. */
int nvmlSystemGetCudaDriverVersion(int *v) { *v = 11040; return 0; }
#else
int nvmlSystemGetCudaDriverVersion_v2(int *v) { *v = 12080; return 0; }
#endif
"#;

fn build(dir: &Path, name: &str, defines: &[&str]) -> PathBuf {
    let src = dir.join("fake_nvml.c");
    std::fs::write(&src, FAKE_NVML_C).unwrap();
    let out = dir.join(name);
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-O1", "-o"])
        .arg(&out)
        .args(defines)
        .arg(&src)
        .status()
        .expect(
            "a C compiler (`cc`, also rustc's linker) is needed to build the NVML test library",
        );
    assert!(status.success());
    out
}

#[test]
fn ffi_reads_every_field_and_pairs_init_with_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let define = format!("-DLOG_PATH=\"{}\"", log.display());
    let lib = build(dir.path(), "libnvidia-ml-test.so", &[&define]);
    let snap = read_snapshot(Some(&lib)).unwrap();
    let recorded: NvmlSnapshot =
        serde_json::from_str(&crate::common::read("mixed_3090_4090", "nvml.json")).unwrap();
    assert_eq!(snap, recorded);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "init 1\nshutdown 0\n"
    );
    assert_eq!(
        snap.into_inventory().gpus,
        crate::common::smi_inventory("mixed_3090_4090").gpus
    );
}

#[test]
fn ffi_init_failure_is_a_typed_error_with_nvml_message() {
    let dir = tempfile::tempdir().unwrap();
    let lib = build(dir.path(), "libnvidia-ml-fail.so", &["-DFAIL_INIT"]);
    match read_snapshot(Some(&lib)) {
        Err(NvmlError::Call {
            call,
            code,
            message,
        }) => {
            assert_eq!(
                (call, code, message.as_str()),
                ("nvmlInit_v2", 9, "Driver Not Loaded")
            );
        }
        other => panic!("expected a Call error, got {other:?}"),
    }
}

#[tokio::test]
async fn detect_prefers_nvml_when_it_loads() {
    let dir = tempfile::tempdir().unwrap();
    let lib = build(dir.path(), "libnvidia-ml-detect.so", &[]);
    let cfg = DetectConfig {
        nvml_library: Some(lib),
        nvidia_smi: PathBuf::from("/nonexistent/nvidia-smi"),
        ..DetectConfig::default()
    };
    let inv = detect(&cfg).await;
    assert_eq!(inv.source, InventorySource::Nvml);
    assert_eq!(inv.gpus.len(), 2);
    assert_eq!(
        inv.cuda_driver_version.map(|v| v.to_string()).as_deref(),
        Some("12.8")
    );
    assert!(inv.error.is_none() && inv.notes.is_empty());
}

#[test]
fn driver_without_the_v2_cuda_version_symbol_still_reads_devices() {
    let dir = tempfile::tempdir().unwrap();
    let lib = build(dir.path(), "libnvidia-ml-old.so", &["-DOLD_CUDA_SYMBOL"]);
    let snap = read_snapshot(Some(&lib)).unwrap();
    assert_eq!(snap.devices.len(), 2);
    assert_eq!(snap.cuda_driver_version, Some(11040));
}

#[test]
fn live_session_samples_utilisation_memory_and_temperature() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let define = format!("-DLOG_PATH=\"{}\"", log.display());
    let lib = build(dir.path(), "libnvidia-ml-live.so", &[&define]);
    let session = NvmlSession::open(Some(&lib)).unwrap();
    let first = session.sample().unwrap();
    assert_eq!(
        session.sample().unwrap(),
        first,
        "sampling twice reuses one session"
    );
    assert_eq!(
        first[1],
        GpuLiveStats {
            index: 1,
            name: "NVIDIA GeForce RTX 4090".into(),
            utilization_percent: Some(87),
            memory_used_bytes: Some(25757220864 - 25246687808),
            memory_total_bytes: Some(25757220864),
            temperature_celsius: Some(71),
        }
    );
    assert_eq!(first[0].utilization_percent, Some(3));
    drop(session);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "init 1\nshutdown 0\n"
    );
}
