//! NVML backend: `libnvidia-ml.so.1` is loaded at run time with `libloading`, so the binary
//! runs where no NVIDIA driver exists. All `unsafe` FFI of this crate lives in this module.
//!
//! The FFI layer only fills an [`NvmlSnapshot`] with raw values; turning that into a
//! [`GpuInventory`] is a pure function tested against recorded JSON fixtures.

use std::ffi::{CStr, c_char, c_int, c_uint};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::inventory::{
    ComputeCapability, CudaVersion, GpuInfo, GpuInventory, InventorySource, MigMode,
};

/// Default soname of the NVML library shipped with the driver.
pub const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

/// Why NVML could not be used. Every variant leads to the `nvidia-smi` fallback.
#[derive(Debug, thiserror::Error)]
pub enum NvmlError {
    /// The shared library is absent (no driver installed, or not mounted into the container).
    #[error("cannot load {library}: {source}")]
    LibraryMissing {
        /// Library name or path tried.
        library: String,
        /// Loader error.
        source: libloading::Error,
    },
    /// A required symbol is missing (driver too old for this entry point).
    #[error("{library} lacks symbol {symbol}: {source}")]
    SymbolMissing {
        /// Library name or path.
        library: String,
        /// Symbol name.
        symbol: &'static str,
        /// Loader error.
        source: libloading::Error,
    },
    /// An NVML call returned an error code.
    #[error("{call} failed: {message} (nvmlReturn_t {code})")]
    Call {
        /// Function name.
        call: &'static str,
        /// Raw return code.
        code: i32,
        /// `nvmlErrorString` text, or a built-in description.
        message: String,
    },
}

/// Raw per-device values as NVML returns them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmlDevice {
    /// `nvmlDeviceGetName`.
    pub name: String,
    /// `nvmlDeviceGetUUID`.
    pub uuid: String,
    /// `nvmlDeviceGetCudaComputeCapability` major, when the call succeeded.
    pub cc_major: Option<i32>,
    /// `nvmlDeviceGetCudaComputeCapability` minor.
    pub cc_minor: Option<i32>,
    /// `nvmlMemory_t.total` in bytes.
    pub memory_total_bytes: Option<u64>,
    /// `nvmlMemory_t.free` in bytes.
    pub memory_free_bytes: Option<u64>,
    /// `nvmlDeviceGetMigMode` current mode (`1` = enabled); `None` = NOT_SUPPORTED.
    pub mig_current: Option<u32>,
}

/// Everything read from NVML in one session (also the fixture format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmlSnapshot {
    /// `nvmlSystemGetDriverVersion`.
    pub driver_version: Option<String>,
    /// `nvmlSystemGetCudaDriverVersion_v2` (e.g. `12080`).
    pub cuda_driver_version: Option<i32>,
    /// Devices in index order.
    pub devices: Vec<NvmlDevice>,
}

impl NvmlSnapshot {
    /// Converts raw NVML values into an inventory (pure; CPU mode when no device).
    pub fn into_inventory(self) -> GpuInventory {
        let gpus: Vec<GpuInfo> = self
            .devices
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let sm = match (d.cc_major, d.cc_minor) {
                    (Some(a), Some(b)) if a > 0 && b >= 0 => {
                        Some(ComputeCapability::new(a as u32, b as u32))
                    }
                    _ => crate::inventory::sm_from_name(&d.name),
                };
                GpuInfo {
                    index: i as u32,
                    name: d.name,
                    uuid: d.uuid,
                    sm,
                    vram_total_mib: d.memory_total_bytes.map(|b| b / (1024 * 1024)),
                    vram_free_mib: d.memory_free_bytes.map(|b| b / (1024 * 1024)),
                    mig_mode: match d.mig_current {
                        Some(1) => MigMode::Enabled,
                        Some(_) => MigMode::Disabled,
                        None => MigMode::NotSupported,
                    },
                }
            })
            .collect();
        let error = gpus
            .is_empty()
            .then(|| "NVML reports 0 GPUs: the driver is loaded but no device is visible to this container".to_owned());
        GpuInventory {
            source: if gpus.is_empty() {
                InventorySource::None
            } else {
                InventorySource::Nvml
            },
            gpus,
            driver_version: self.driver_version,
            cuda_driver_version: self.cuda_driver_version.and_then(CudaVersion::from_nvml),
            error,
            notes: Vec::new(),
        }
    }
}

// --- FFI ------------------------------------------------------------------------------------

type NvmlReturn = c_int;
type NvmlDeviceHandle = *mut std::ffi::c_void;
const NVML_SUCCESS: NvmlReturn = 0;
const NVML_ERROR_NOT_SUPPORTED: NvmlReturn = 3;
/// `NVML_DEVICE_NAME_V2_BUFFER_SIZE`, also enough for UUIDs and driver versions.
const STRING_BUFFER: usize = 96;

#[repr(C)]
#[derive(Default)]
struct NvmlMemory {
    total: u64,
    free: u64,
    used: u64,
}

type FnVoid = unsafe extern "C" fn() -> NvmlReturn;
type FnCount = unsafe extern "C" fn(*mut c_uint) -> NvmlReturn;
type FnHandle = unsafe extern "C" fn(c_uint, *mut NvmlDeviceHandle) -> NvmlReturn;
type FnDevString = unsafe extern "C" fn(NvmlDeviceHandle, *mut c_char, c_uint) -> NvmlReturn;
type FnCc = unsafe extern "C" fn(NvmlDeviceHandle, *mut c_int, *mut c_int) -> NvmlReturn;
type FnMem = unsafe extern "C" fn(NvmlDeviceHandle, *mut NvmlMemory) -> NvmlReturn;
type FnMig = unsafe extern "C" fn(NvmlDeviceHandle, *mut c_uint, *mut c_uint) -> NvmlReturn;
type FnSysString = unsafe extern "C" fn(*mut c_char, c_uint) -> NvmlReturn;
type FnInt = unsafe extern "C" fn(*mut c_int) -> NvmlReturn;
type FnErrStr = unsafe extern "C" fn(NvmlReturn) -> *const c_char;
type FnUtil = unsafe extern "C" fn(NvmlDeviceHandle, *mut NvmlUtilization) -> NvmlReturn;
type FnTemp = unsafe extern "C" fn(NvmlDeviceHandle, c_uint, *mut c_uint) -> NvmlReturn;

/// `nvmlUtilization_t`: percent of time the GPU / its memory were busy over the last sample
/// period.
#[repr(C)]
#[derive(Default)]
struct NvmlUtilization {
    gpu: c_uint,
    memory: c_uint,
}

/// `NVML_TEMPERATURE_GPU`: the GPU die sensor.
const NVML_TEMPERATURE_GPU: c_uint = 0;

/// Resolved entry points. Function pointers are copied out of `libloading::Symbol`s; they
/// stay valid as long as `_lib` (kept alive in this struct) is not dropped.
struct Api {
    init: FnVoid,
    shutdown: FnVoid,
    count: FnCount,
    handle: FnHandle,
    name: FnDevString,
    uuid: FnDevString,
    cc: FnCc,
    mem: FnMem,
    mig: Option<FnMig>,
    driver: FnSysString,
    /// `nvmlSystemGetCudaDriverVersion_v2`, else the unversioned symbol (older drivers).
    cuda: Option<FnInt>,
    err_str: Option<FnErrStr>,
    util: Option<FnUtil>,
    temp: Option<FnTemp>,
    _lib: libloading::Library,
}

impl Api {
    fn load(library: &str) -> Result<Self, NvmlError> {
        // SAFETY: loading libnvidia-ml runs its ELF initialisers; NVML is designed to be
        // dlopen'ed by monitoring tools and has no initialiser side effects beyond setup.
        let lib = unsafe { libloading::Library::new(library) }.map_err(|source| {
            NvmlError::LibraryMissing {
                library: library.to_owned(),
                source,
            }
        })?;
        macro_rules! sym {
            ($name:literal, $ty:ty) => {{
                // SAFETY: the type matches the prototype in nvml.h for this symbol name.
                let s: Result<libloading::Symbol<'_, $ty>, _> = unsafe { lib.get($name) };
                s.map(|s| *s).map_err(|source| NvmlError::SymbolMissing {
                    library: library.to_owned(),
                    symbol: std::str::from_utf8($name)
                        .unwrap_or("?")
                        .trim_end_matches('\0'),
                    source,
                })
            }};
        }
        let api = Api {
            init: sym!(b"nvmlInit_v2\0", FnVoid)?,
            shutdown: sym!(b"nvmlShutdown\0", FnVoid)?,
            count: sym!(b"nvmlDeviceGetCount_v2\0", FnCount)?,
            handle: sym!(b"nvmlDeviceGetHandleByIndex_v2\0", FnHandle)?,
            name: sym!(b"nvmlDeviceGetName\0", FnDevString)?,
            uuid: sym!(b"nvmlDeviceGetUUID\0", FnDevString)?,
            cc: sym!(b"nvmlDeviceGetCudaComputeCapability\0", FnCc)?,
            mem: sym!(b"nvmlDeviceGetMemoryInfo\0", FnMem)?,
            mig: sym!(b"nvmlDeviceGetMigMode\0", FnMig).ok(),
            driver: sym!(b"nvmlSystemGetDriverVersion\0", FnSysString)?,
            cuda: sym!(b"nvmlSystemGetCudaDriverVersion_v2\0", FnInt)
                .or_else(|_| sym!(b"nvmlSystemGetCudaDriverVersion\0", FnInt))
                .ok(),
            err_str: sym!(b"nvmlErrorString\0", FnErrStr).ok(),
            util: sym!(b"nvmlDeviceGetUtilizationRates\0", FnUtil).ok(),
            temp: sym!(b"nvmlDeviceGetTemperature\0", FnTemp).ok(),
            _lib: lib,
        };
        Ok(api)
    }

    fn check(&self, call: &'static str, code: NvmlReturn) -> Result<(), NvmlError> {
        if code == NVML_SUCCESS {
            return Ok(());
        }
        let message = match self.err_str {
            Some(f) => {
                // SAFETY: nvmlErrorString returns a pointer to a static NUL-terminated string
                // (or NULL, checked below) for any code.
                let p = unsafe { f(code) };
                if p.is_null() {
                    builtin_message(code).to_owned()
                } else {
                    // SAFETY: non-null, static, NUL-terminated per the NVML contract.
                    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
                }
            }
            None => builtin_message(code).to_owned(),
        };
        Err(NvmlError::Call {
            call,
            code,
            message,
        })
    }
}

fn builtin_message(code: NvmlReturn) -> &'static str {
    match code {
        1 => "NVML not initialised",
        2 => "invalid argument",
        3 => "not supported",
        4 => "insufficient permissions",
        9 => "driver not loaded",
        12 => "NVML shared library not found",
        15 => "GPU is lost",
        18 => "driver/library version mismatch (reboot or reload the kernel module)",
        _ => "unknown NVML error",
    }
}

/// Reads a NUL-terminated string written by NVML into `buf`.
fn buf_to_string(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Loads NVML and reads every device. Blocking: call from `spawn_blocking`.
pub fn read_snapshot(library: Option<&Path>) -> Result<NvmlSnapshot, NvmlError> {
    let lib_name = library.map_or_else(|| NVML_LIBRARY.to_owned(), |p| p.display().to_string());
    let api = Api::load(&lib_name)?;
    // SAFETY: nvmlInit_v2 takes no arguments; it is reference counted and paired with the
    // nvmlShutdown below on every path.
    api.check("nvmlInit_v2", unsafe { (api.init)() })?;
    let result = read_with(&api);
    // SAFETY: balanced with the successful nvmlInit_v2 above.
    let _ = unsafe { (api.shutdown)() };
    result
}

fn read_with(api: &Api) -> Result<NvmlSnapshot, NvmlError> {
    let mut buf = [0 as c_char; STRING_BUFFER];
    // SAFETY: buf is writable for STRING_BUFFER bytes, the length passed.
    let driver_version = match unsafe { (api.driver)(buf.as_mut_ptr(), STRING_BUFFER as c_uint) } {
        NVML_SUCCESS => Some(buf_to_string(&buf)),
        _ => None,
    };
    let mut cuda: c_int = 0;
    let cuda_driver_version = api.cuda.and_then(|f| {
        // SAFETY: `cuda` is a valid out-pointer.
        (unsafe { f(&mut cuda) } == NVML_SUCCESS).then_some(cuda)
    });
    let mut count: c_uint = 0;
    // SAFETY: `count` is a valid out-pointer.
    api.check("nvmlDeviceGetCount_v2", unsafe { (api.count)(&mut count) })?;
    let mut devices = Vec::with_capacity(count as usize);
    for i in 0..count {
        let mut h: NvmlDeviceHandle = std::ptr::null_mut();
        // SAFETY: `i` < count and `h` is a valid out-pointer.
        api.check("nvmlDeviceGetHandleByIndex_v2", unsafe {
            (api.handle)(i, &mut h)
        })?;
        let mut name_buf = [0 as c_char; STRING_BUFFER];
        // SAFETY: h is a handle NVML just returned; the buffer is STRING_BUFFER long.
        api.check("nvmlDeviceGetName", unsafe {
            (api.name)(h, name_buf.as_mut_ptr(), STRING_BUFFER as c_uint)
        })?;
        let mut uuid_buf = [0 as c_char; STRING_BUFFER];
        // SAFETY: as above.
        let uuid_rc = unsafe { (api.uuid)(h, uuid_buf.as_mut_ptr(), STRING_BUFFER as c_uint) };
        let (mut major, mut minor): (c_int, c_int) = (0, 0);
        // SAFETY: valid handle and out-pointers.
        let cc_ok = unsafe { (api.cc)(h, &mut major, &mut minor) } == NVML_SUCCESS;
        let mut mem = NvmlMemory::default();
        // SAFETY: `mem` has the layout of nvmlMemory_t (v1: three unsigned long long).
        let mem_ok = unsafe { (api.mem)(h, &mut mem) } == NVML_SUCCESS;
        let mig_current = api.mig.and_then(|f| {
            let (mut cur, mut pending): (c_uint, c_uint) = (0, 0);
            // SAFETY: valid handle and out-pointers.
            match unsafe { f(h, &mut cur, &mut pending) } {
                NVML_SUCCESS => Some(cur),
                NVML_ERROR_NOT_SUPPORTED => None,
                _ => None,
            }
        });
        devices.push(NvmlDevice {
            name: buf_to_string(&name_buf),
            uuid: if uuid_rc == NVML_SUCCESS {
                buf_to_string(&uuid_buf)
            } else {
                String::new()
            },
            cc_major: cc_ok.then_some(major),
            cc_minor: cc_ok.then_some(minor),
            memory_total_bytes: mem_ok.then_some(mem.total),
            memory_free_bytes: mem_ok.then_some(mem.free),
            mig_current,
        });
    }
    Ok(NvmlSnapshot {
        driver_version,
        cuda_driver_version,
        devices,
    })
}

/// Live values of one GPU, sampled for the host's System page and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuLiveStats {
    /// NVML index.
    pub index: u32,
    /// Marketing name.
    pub name: String,
    /// Percent of the last sample period the GPU was busy.
    pub utilization_percent: Option<u32>,
    /// Bytes in use.
    pub memory_used_bytes: Option<u64>,
    /// Total bytes.
    pub memory_total_bytes: Option<u64>,
    /// Die temperature.
    pub temperature_celsius: Option<u32>,
}

/// NVML kept loaded and initialised for periodic sampling (the inventory reads it once with
/// [`read_snapshot`]). Dropping it shuts NVML down.
pub struct NvmlSession {
    api: Api,
}

impl std::fmt::Debug for NvmlSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlSession").finish_non_exhaustive()
    }
}

impl NvmlSession {
    /// Loads and initialises NVML. Blocking.
    pub fn open(library: Option<&Path>) -> Result<Self, NvmlError> {
        let lib_name = library.map_or_else(|| NVML_LIBRARY.to_owned(), |p| p.display().to_string());
        let api = Api::load(&lib_name)?;
        // SAFETY: nvmlInit_v2 takes no arguments; balanced by nvmlShutdown in Drop.
        api.check("nvmlInit_v2", unsafe { (api.init)() })?;
        Ok(Self { api })
    }

    /// Utilisation, memory and temperature of every device. Blocking (a few ms).
    pub fn sample(&self) -> Result<Vec<GpuLiveStats>, NvmlError> {
        let api = &self.api;
        let mut count: c_uint = 0;
        // SAFETY: `count` is a valid out-pointer.
        api.check("nvmlDeviceGetCount_v2", unsafe { (api.count)(&mut count) })?;
        let mut out = Vec::with_capacity(count as usize);
        for i in 0..count {
            let mut h: NvmlDeviceHandle = std::ptr::null_mut();
            // SAFETY: `i` < count and `h` is a valid out-pointer.
            api.check("nvmlDeviceGetHandleByIndex_v2", unsafe {
                (api.handle)(i, &mut h)
            })?;
            let mut name_buf = [0 as c_char; STRING_BUFFER];
            // SAFETY: valid handle; the buffer is STRING_BUFFER long.
            let name_ok = unsafe { (api.name)(h, name_buf.as_mut_ptr(), STRING_BUFFER as c_uint) }
                == NVML_SUCCESS;
            let mut mem = NvmlMemory::default();
            // SAFETY: `mem` has the layout of nvmlMemory_t (v1).
            let mem_ok = unsafe { (api.mem)(h, &mut mem) } == NVML_SUCCESS;
            let utilization_percent = api.util.and_then(|f| {
                let mut u = NvmlUtilization::default();
                // SAFETY: valid handle and out-pointer of nvmlUtilization_t's layout.
                (unsafe { f(h, &mut u) } == NVML_SUCCESS).then_some(u.gpu)
            });
            let temperature_celsius = api.temp.and_then(|f| {
                let mut t: c_uint = 0;
                // SAFETY: valid handle, sensor id and out-pointer.
                (unsafe { f(h, NVML_TEMPERATURE_GPU, &mut t) } == NVML_SUCCESS).then_some(t)
            });
            out.push(GpuLiveStats {
                index: i,
                name: if name_ok {
                    buf_to_string(&name_buf)
                } else {
                    String::new()
                },
                utilization_percent,
                memory_used_bytes: mem_ok.then_some(mem.used),
                memory_total_bytes: mem_ok.then_some(mem.total),
                temperature_celsius,
            });
        }
        Ok(out)
    }
}

impl Drop for NvmlSession {
    fn drop(&mut self) {
        // SAFETY: balanced with the successful nvmlInit_v2 in `open`.
        let _ = unsafe { (self.api.shutdown)() };
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_is_a_typed_error() {
        let err = read_snapshot(Some(Path::new("/nonexistent/libnvidia-ml.so.1")))
            .expect_err("no such library");
        assert!(matches!(err, NvmlError::LibraryMissing { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/libnvidia-ml.so.1"));
    }

    #[test]
    fn library_without_nvml_symbols_is_a_typed_error() {
        // libc exists everywhere and has none of the NVML symbols.
        let err = read_snapshot(Some(Path::new("libc.so.6"))).expect_err("not NVML");
        match err {
            NvmlError::SymbolMissing { symbol, .. } => assert_eq!(symbol, "nvmlInit_v2"),
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn a_live_session_needs_the_library() {
        let err = NvmlSession::open(Some(Path::new("/nonexistent/libnvidia-ml.so.1")))
            .expect_err("no such library");
        assert!(matches!(err, NvmlError::LibraryMissing { .. }), "{err}");
    }

    #[test]
    fn empty_snapshot_is_cpu_mode_with_reason() {
        let inv = NvmlSnapshot {
            driver_version: Some("570.124.06".into()),
            cuda_driver_version: Some(12080),
            devices: vec![],
        }
        .into_inventory();
        assert!(inv.is_cpu_mode());
        assert_eq!(inv.source, InventorySource::None);
        assert!(inv.error.as_deref().is_some_and(|e| e.contains("0 GPUs")));
    }
}
