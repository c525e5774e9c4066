//! One attempt at fetching one file into its `.part` file, resuming with `Range` from the bytes
//! already there. The caller retries transient failures and verifies the result.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// What one attempt ended with (besides success).
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// Paused or cancelled by an admin (or the host shutting down).
    #[error("interrupted")]
    Interrupted,
    /// Worth retrying from where the part file ends (connection cut, 5xx, 429, short body).
    #[error("{0}")]
    Transient(String),
    /// Retrying cannot help (401/403/404, too large, local I/O error, disk full).
    #[error("{0}")]
    Fatal(String),
}

/// Inputs of one attempt.
pub struct Attempt<'a> {
    pub client: &'a reqwest::Client,
    pub url: &'a str,
    /// Expected size; 0 = unknown (taken from the response).
    pub size: u64,
    pub part: &'a Path,
    /// Bearer token to send (Hugging Face URLs only; chosen by the caller).
    pub bearer: Option<&'a str>,
    /// Bytes of this file on disk, updated as chunks land.
    pub done: &'a Arc<AtomicU64>,
    /// Total size, set from Content-Length/Content-Range when `size` is 0.
    pub total: &'a Arc<AtomicU64>,
    pub cancel: &'a CancellationToken,
    /// Refuse a response whose remaining bytes exceed this (free disk space check for files
    /// of unknown size).
    pub free_bytes: Option<u64>,
}

/// `bytes <start>-<end>/<total>` -> (start, total).
fn content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// Run one attempt. `Ok(())` means the part file holds the whole body the server sent.
pub async fn fetch(a: Attempt<'_>) -> Result<(), TransferError> {
    let mut offset = match tokio::fs::metadata(a.part).await {
        Ok(m) => m.len(),
        Err(_) => 0,
    };
    if a.size > 0 && offset > a.size {
        offset = 0; // corrupt leftover: start over
    }
    if a.size > 0 && offset == a.size {
        a.done.store(offset, Ordering::Relaxed);
        return Ok(());
    }
    let mut req = a.client.get(a.url);
    if offset > 0 {
        req = req.header(http::header::RANGE, format!("bytes={offset}-"));
    }
    if let Some(token) = a.bearer {
        req = req.bearer_auth(token);
    }
    let resp = tokio::select! {
        _ = a.cancel.cancelled() => return Err(TransferError::Interrupted),
        r = req.send() => r.map_err(|e| TransferError::Transient(format!("request failed: {e}")))?,
    };
    let status = resp.status().as_u16();
    let append = match status {
        206 => {
            let start = resp
                .headers()
                .get(http::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(content_range);
            match start {
                Some((s, total)) if s == offset => {
                    if a.size == 0
                        && let Some(t) = total
                    {
                        a.total.store(t, Ordering::Relaxed);
                    }
                    true
                }
                _ => {
                    // Unexpected range: drop what we have and ask for everything next time.
                    let _ = tokio::fs::remove_file(a.part).await;
                    return Err(TransferError::Transient(
                        "server answered a different range than requested; restarting".into(),
                    ));
                }
            }
        }
        200 => false,
        416 if a.size > 0 && offset == a.size => return Ok(()),
        416 => {
            let _ = tokio::fs::remove_file(a.part).await;
            return Err(TransferError::Transient(
                "range not satisfiable; restarting from zero".into(),
            ));
        }
        401 | 403 => {
            return Err(TransferError::Fatal(format!(
                "HTTP {status}: not authorized (gated model? set COMFYHOST_HF_TOKEN for huggingface.co)"
            )));
        }
        429 | 500..=599 => return Err(TransferError::Transient(format!("HTTP {status}"))),
        other => return Err(TransferError::Fatal(format!("HTTP {other}"))),
    };
    if !append {
        offset = 0;
        if a.size == 0
            && let Some(len) = resp.content_length()
        {
            a.total.store(len, Ordering::Relaxed);
        }
    }
    let remaining = resp.content_length();
    if let (Some(free), Some(rem)) = (a.free_bytes, remaining)
        && rem > free
    {
        return Err(TransferError::Fatal(format!(
            "not enough disk space: {rem} bytes to download, {free} available"
        )));
    }
    if a.size > 0
        && let Some(rem) = remaining
        && offset + rem > a.size
    {
        return Err(TransferError::Fatal(format!(
            "server sends {} bytes but the preset says {}",
            offset + rem,
            a.size
        )));
    }
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(a.part)
        .await
        .map_err(|e| TransferError::Fatal(format!("opening {}: {e}", a.part.display())))?;
    let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
    let mut written = offset;
    a.done.store(written, Ordering::Relaxed);
    let mut body = resp.bytes_stream();
    let result = loop {
        let chunk = tokio::select! {
            _ = a.cancel.cancelled() => break Err(TransferError::Interrupted),
            c = body.next() => c,
        };
        match chunk {
            None => break Ok(()),
            Some(Err(e)) => {
                break Err(TransferError::Transient(format!(
                    "connection lost after {written} bytes: {e}"
                )));
            }
            Some(Ok(bytes)) => {
                written += bytes.len() as u64;
                if a.size > 0 && written > a.size {
                    break Err(TransferError::Fatal(format!(
                        "server sent more than the expected {} bytes",
                        a.size
                    )));
                }
                if let Err(e) = out.write_all(&bytes).await {
                    break Err(TransferError::Fatal(format!(
                        "writing {}: {e}",
                        a.part.display()
                    )));
                }
                a.done.store(written, Ordering::Relaxed);
            }
        }
    };
    // Keep what arrived (resume point) whatever happened.
    if let Err(e) = out.flush().await {
        return Err(TransferError::Fatal(format!(
            "writing {}: {e}",
            a.part.display()
        )));
    }
    let _ = out.get_ref().sync_data().await;
    result?;
    if a.size > 0 && written < a.size {
        return Err(TransferError::Transient(format!(
            "body ended after {written} of {} bytes",
            a.size
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_range() {
        assert_eq!(content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(content_range("items 1-2/3"), None);
    }
}
