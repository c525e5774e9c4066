//! `nvidia-smi` backend (used when NVML cannot be loaded or fails).
//!
//! Parsing is pure and tested against recorded outputs; [`query`] runs the tool under a
//! timeout and never panics.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;

use crate::inventory::{
    ComputeCapability, CudaVersion, GpuInfo, GpuInventory, InventorySource, MigMode, sm_from_name,
};

/// Query fields, with `compute_cap` (drivers ≥ R510).
pub const QUERY_FIELDS: &str =
    "index,name,uuid,compute_cap,memory.total,memory.free,driver_version,mig.mode.current";
/// Query fields for older drivers that reject `compute_cap`.
pub const QUERY_FIELDS_LEGACY: &str =
    "index,name,uuid,memory.total,memory.free,driver_version,mig.mode.current";

/// Why `nvidia-smi` gave no inventory.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SmiError {
    /// The binary is not on `PATH` (no driver userspace in this container).
    #[error("nvidia-smi not found: {0}")]
    NotFound(String),
    /// It ran but could not talk to the driver.
    #[error("nvidia-smi cannot talk to the NVIDIA driver: {0}")]
    Driver(String),
    /// It did not finish in time.
    #[error("nvidia-smi did not answer within {0:?}")]
    Timeout(Duration),
    /// This driver does not know the `compute_cap` field.
    #[error("nvidia-smi does not support the compute_cap field")]
    NoComputeCapField,
    /// A line could not be parsed.
    #[error("unparseable nvidia-smi line {line:?}: {why}")]
    Parse {
        /// The offending line.
        line: String,
        /// What was wrong.
        why: String,
    },
}

fn field(s: &str) -> Option<&str> {
    let s = s.trim();
    if s.is_empty() || s.starts_with('[') || s.eq_ignore_ascii_case("N/A") {
        None
    } else {
        Some(s)
    }
}

/// Row of the `--query-gpu` CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmiRow {
    /// GPU description.
    pub gpu: GpuInfo,
    /// Driver version column.
    pub driver_version: Option<String>,
}

/// Classifies non-CSV output (errors printed instead of rows).
fn classify_text(text: &str) -> Option<SmiError> {
    let t = text.trim();
    if t.contains("is not a valid field to query") && t.contains("compute_cap") {
        return Some(SmiError::NoComputeCapField);
    }
    if t.contains("NVIDIA-SMI has failed")
        || t.contains("couldn't communicate with the NVIDIA driver")
        || t.contains("Driver/library version mismatch")
        || t.contains("Failed to initialize NVML")
        || t.contains("Unable to determine the device handle")
    {
        let first = t.lines().next().unwrap_or(t);
        return Some(SmiError::Driver(first.to_owned()));
    }
    None
}

/// Parses `--query-gpu=… --format=csv,noheader,nounits` output. `with_compute_cap` selects
/// [`QUERY_FIELDS`] or [`QUERY_FIELDS_LEGACY`]. `No devices were found` → no rows.
pub fn parse_query_csv(text: &str, with_compute_cap: bool) -> Result<Vec<SmiRow>, SmiError> {
    if let Some(e) = classify_text(text) {
        return Err(e);
    }
    let want = if with_compute_cap { 8 } else { 7 };
    let mut rows = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("No devices were found") {
            continue;
        }
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        if cols.len() != want {
            return Err(SmiError::Parse {
                line: line.to_owned(),
                why: format!("expected {want} columns, got {}", cols.len()),
            });
        }
        let index = cols[0].parse::<u32>().map_err(|e| SmiError::Parse {
            line: line.to_owned(),
            why: format!("index: {e}"),
        })?;
        let name = cols[1].to_owned();
        let (sm, rest) = if with_compute_cap {
            (
                field(cols[3]).and_then(ComputeCapability::parse),
                &cols[4..],
            )
        } else {
            (None, &cols[3..])
        };
        let sm = sm.or_else(|| sm_from_name(&name));
        let mib = |s: &str| field(s).and_then(|v| v.parse::<u64>().ok());
        let mig_mode = match field(rest[3]) {
            Some(m) if m.eq_ignore_ascii_case("enabled") => MigMode::Enabled,
            Some(m) if m.eq_ignore_ascii_case("disabled") => MigMode::Disabled,
            _ => MigMode::NotSupported,
        };
        rows.push(SmiRow {
            gpu: GpuInfo {
                index,
                name,
                uuid: field(cols[2]).unwrap_or_default().to_owned(),
                sm,
                vram_total_mib: mib(rest[0]),
                vram_free_mib: mib(rest[1]),
                mig_mode,
            },
            driver_version: field(rest[2]).map(str::to_owned),
        });
    }
    Ok(rows)
}

/// The version after the first of `labels` found in `text` (`Label: 12.8`, `Label : 12.8`).
fn version_after<'a>(text: &'a str, labels: &[&str]) -> Option<&'a str> {
    labels.iter().find_map(|label| {
        let at = text.find(label)? + label.len();
        let rest = text[at..].trim_start_matches([' ', ':', '\t']);
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        Some(&rest[..end]).filter(|v| !v.is_empty())
    })
}

/// Finds the driver's CUDA version in the `nvidia-smi` banner or `-q` output: `CUDA Version:
/// 12.8` up to R5xx, `CUDA UMD Version: 13.3` from R610 on (where the old label is gone from
/// the banner; `-q` may say `CUDA Version : Not Found`).
pub fn parse_cuda_version(text: &str) -> Option<CudaVersion> {
    version_after(text, &["CUDA Version", "CUDA UMD Version"]).and_then(CudaVersion::parse)
}

/// Finds the driver version in the banner: `Driver Version: 570.124.06`, or `KMD Version:
/// 610.43.02` from R610 on.
pub fn parse_driver_version(text: &str) -> Option<String> {
    version_after(text, &["Driver Version", "KMD Version"])
        .filter(|v| v.contains('.'))
        .map(str::to_owned)
}

/// Splits `nvidia-smi` query output into CSV rows and the warning lines some drivers print
/// among them (`WARNING: infoROM is corrupted at gpu 0000:04:00.0`, persistence-mode hints).
pub fn split_warnings(text: &str) -> (String, Vec<String>) {
    let mut csv = String::new();
    let mut warnings = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        if t.to_ascii_uppercase().starts_with("WARNING") {
            warnings.push(t.to_owned());
        } else {
            csv.push_str(line);
            csv.push('\n');
        }
    }
    (csv, warnings)
}

/// Builds an inventory from recorded outputs: the CSV and (optionally) the banner.
pub fn inventory_from_outputs(
    csv: &str,
    with_compute_cap: bool,
    banner: Option<&str>,
) -> Result<GpuInventory, SmiError> {
    let (csv, warnings) = split_warnings(csv);
    let rows = parse_query_csv(&csv, with_compute_cap)?;
    let driver_version = rows
        .iter()
        .find_map(|r| r.driver_version.clone())
        .or_else(|| banner.and_then(parse_driver_version));
    let cuda_driver_version = banner.and_then(parse_cuda_version);
    let gpus: Vec<GpuInfo> = rows.into_iter().map(|r| r.gpu).collect();
    let error = gpus.is_empty().then(|| {
        "nvidia-smi: No devices were found (driver present, no GPU visible to this container)"
            .to_owned()
    });
    Ok(GpuInventory {
        source: if gpus.is_empty() {
            InventorySource::None
        } else {
            InventorySource::NvidiaSmi
        },
        gpus,
        driver_version,
        cuda_driver_version,
        error,
        notes: warnings
            .into_iter()
            .map(|w| format!("nvidia-smi: {w}"))
            .collect(),
    })
}

async fn run(bin: &Path, args: &[&str], timeout: Duration) -> Result<String, SmiError> {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .kill_on_drop(true)
        .stdin(std::process::Stdio::null());
    let out = match tokio::time::timeout(timeout, cmd.output()).await {
        Err(_) => return Err(SmiError::Timeout(timeout)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SmiError::NotFound(format!("{}: {e}", bin.display())));
        }
        Ok(Err(e)) => {
            return Err(SmiError::Driver(format!(
                "cannot run {}: {e}",
                bin.display()
            )));
        }
        Ok(Ok(o)) => o,
    };
    // Rows come on stdout only: drivers print warnings on stderr that are not CSV.
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut text = stdout.clone();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        if let Some(e) = classify_text(&text) {
            return Err(e);
        }
        return Ok(stdout);
    }
    // Exit 6 with "No devices were found" is a valid empty answer.
    if text.contains("No devices were found") {
        return Ok(text);
    }
    if let Some(e) = classify_text(&text) {
        return Err(e);
    }
    let first = text.lines().next().unwrap_or("").trim().to_owned();
    Err(SmiError::Driver(format!(
        "exit status {}: {first}",
        out.status
    )))
}

/// Runs `nvidia-smi` (binary `bin`) and builds an inventory.
pub async fn query(bin: &Path, timeout: Duration) -> Result<GpuInventory, SmiError> {
    let fmt = "--format=csv,noheader,nounits";
    let q = format!("--query-gpu={QUERY_FIELDS}");
    let (csv, with_cc) = match run(bin, &[q.as_str(), fmt], timeout).await {
        Ok(t) if classify_text(&t) == Some(SmiError::NoComputeCapField) => (None, false),
        Err(SmiError::NoComputeCapField) => (None, false),
        Ok(t) => (Some(t), true),
        Err(e) => return Err(e),
    };
    let csv = match csv {
        Some(c) => c,
        None => {
            let q = format!("--query-gpu={QUERY_FIELDS_LEGACY}");
            run(bin, &[q.as_str(), fmt], timeout).await?
        }
    };
    // The banner is the only place older drivers report their CUDA version.
    let banner = run(bin, &[], timeout).await.ok();
    let mut inv = inventory_from_outputs(&csv, with_cc, banner.as_deref())?;
    if !with_cc {
        inv.notes.push(
            "this driver's nvidia-smi has no compute_cap field; compute capability derived from the GPU name"
                .to_owned(),
        );
    }
    Ok(inv)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn odd_fields_parse_to_none() {
        let csv =
            "0, NVIDIA GeForce RTX 4090, GPU-1, 8.9, [N/A], [Not Supported], 570.124.06, [N/A]\n";
        let rows = parse_query_csv(csv, true).unwrap();
        assert_eq!(rows[0].gpu.vram_total_mib, None);
        assert_eq!(rows[0].gpu.vram_free_mib, None);
        assert_eq!(rows[0].gpu.mig_mode, MigMode::NotSupported);
        assert_eq!(rows[0].gpu.sm, Some(ComputeCapability::new(8, 9)));
    }

    #[test]
    fn wrong_column_count_is_a_typed_error() {
        let err = parse_query_csv("0, foo\n", true).unwrap_err();
        assert!(matches!(err, SmiError::Parse { .. }), "{err}");
    }

    #[test]
    fn driver_failure_text_is_classified() {
        let t = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n";
        assert!(matches!(parse_query_csv(t, true), Err(SmiError::Driver(_))));
        let t = "Field \"compute_cap\" is not a valid field to query.\n";
        assert_eq!(parse_query_csv(t, true), Err(SmiError::NoComputeCapField));
    }

    #[test]
    fn banner_and_q_output_cuda_versions() {
        let b = "| NVIDIA-SMI 570.124.06             Driver Version: 570.124.06     CUDA Version: 12.8     |";
        assert_eq!(parse_cuda_version(b), Some(CudaVersion::new(12, 8)));
        assert_eq!(
            parse_cuda_version("CUDA Version                              : 13.0"),
            Some(CudaVersion::new(13, 0))
        );
        assert_eq!(parse_cuda_version("nothing here"), None);
    }

    #[test]
    fn r610_banner_names_kmd_and_cuda_umd_versions() {
        let b = "| NVIDIA-SMI 610.43.02              KMD Version: 610.43.02     CUDA UMD Version: 13.3     |";
        assert_eq!(parse_cuda_version(b), Some(CudaVersion::new(13, 3)));
        assert_eq!(parse_driver_version(b).as_deref(), Some("610.43.02"));
        let q = "Driver Version                            : 580.105.06\nCUDA Version                              : Not Found\n";
        assert_eq!(parse_cuda_version(q), None);
        assert_eq!(parse_driver_version(q).as_deref(), Some("580.105.06"));
    }

    #[test]
    fn warning_lines_among_rows_become_notes() {
        let csv = "WARNING: infoROM is corrupted at gpu 0000:04:00.0\n0, NVIDIA H200, GPU-1, 9.0, 143771, 143252, 570.133.20, Disabled\n";
        let inv = inventory_from_outputs(csv, true, None).unwrap();
        assert_eq!(inv.gpus.len(), 1);
        assert_eq!(inv.notes.len(), 1);
        assert!(inv.notes[0].contains("infoROM"), "{:?}", inv.notes);
    }

    #[tokio::test]
    async fn missing_binary_is_not_found() {
        let err = query(Path::new("/nonexistent/nvidia-smi"), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, SmiError::NotFound(_)), "{err}");
    }
}
