//! Plugin log capability: records from the `log` import and from the guest's stdout/stderr.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginLogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// One log record of a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginLogRecord {
    /// Milliseconds since the Unix epoch (host clock).
    pub ts_ms: u64,
    pub plugin_id: String,
    pub prompt_id: Option<String>,
    pub level: PluginLogLevel,
    pub message: String,
}

/// Where plugin log records go (the registry keeps a ring buffer per plugin and forwards to
/// `tracing`).
pub trait PluginLogSink: Send + Sync + 'static {
    fn record(&self, record: PluginLogRecord);
}

/// Longest message kept from one record; longer ones are cut at a char boundary.
pub const MAX_MESSAGE_BYTES: usize = 8 * 1024;

/// Milliseconds since the Unix epoch on the host clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Cuts `message` to at most [`MAX_MESSAGE_BYTES`], on a char boundary.
pub fn truncate_message(message: String) -> String {
    truncate_to(message, MAX_MESSAGE_BYTES)
}

/// Cuts `text` to at most `max` bytes, on a char boundary, marking the cut.
pub fn truncate_to(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(" …[truncated]");
    }
    text
}

/// Plugin text made safe for a one-line log record: control characters (newline, carriage
/// return, escape sequences, ...) and Unicode line/paragraph separators are written as
/// escapes, so a plugin cannot forge a host log line or drive a terminal.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Sends one record to the sink and mirrors it to `tracing` with the plugin and prompt ids.
pub fn emit(
    sink: &dyn PluginLogSink,
    plugin_id: &str,
    prompt_id: Option<&str>,
    level: PluginLogLevel,
    message: String,
) {
    // Cut first (escaping a huge message would be wasted work), then escape, then cut again
    // in case escaping made it longer.
    let message = truncate_message(escape_controls(&truncate_message(message)).into_owned());
    let prompt = prompt_id.unwrap_or("-");
    match level {
        PluginLogLevel::Trace => {
            tracing::trace!(plugin = plugin_id, prompt_id = prompt, "{message}")
        }
        PluginLogLevel::Debug => {
            tracing::debug!(plugin = plugin_id, prompt_id = prompt, "{message}")
        }
        PluginLogLevel::Info => tracing::info!(plugin = plugin_id, prompt_id = prompt, "{message}"),
        PluginLogLevel::Warn => tracing::warn!(plugin = plugin_id, prompt_id = prompt, "{message}"),
        PluginLogLevel::Error => {
            tracing::error!(plugin = plugin_id, prompt_id = prompt, "{message}")
        }
    }
    sink.record(PluginLogRecord {
        ts_ms: now_ms(),
        plugin_id: plugin_id.to_owned(),
        prompt_id: prompt_id.map(str::to_owned),
        level,
        message,
    });
}

/// A [`PluginLogSink`] that keeps every record in memory (tests, CLI tools).
#[derive(Debug, Default)]
pub struct MemoryLogSink {
    records: parking_lot::Mutex<Vec<PluginLogRecord>>,
}

impl MemoryLogSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the records so far.
    pub fn records(&self) -> Vec<PluginLogRecord> {
        self.records.lock().clone()
    }
}

impl PluginLogSink for MemoryLogSink {
    fn record(&self, record: PluginLogRecord) {
        self.records.lock().push(record);
    }
}

/// Guest stdout/stderr: each complete line becomes one log record (stdout at `info`, stderr at
/// `warn`). Output beyond [`GuestOutput::MAX_BYTES_PER_CALL`] in one call is dropped (and said
/// so once) so a chatty plugin cannot flood the host log.
#[derive(Clone)]
pub struct GuestOutput {
    inner: std::sync::Arc<GuestOutputInner>,
}

struct GuestOutputInner {
    sink: std::sync::Arc<dyn PluginLogSink>,
    plugin_id: std::sync::Arc<str>,
    prompt_id: Option<String>,
    level: PluginLogLevel,
    state: parking_lot::Mutex<GuestOutputState>,
}

#[derive(Default)]
struct GuestOutputState {
    pending: Vec<u8>,
    total: usize,
    dropped_noted: bool,
}

impl GuestOutput {
    /// Bytes of guest output kept per call and stream.
    pub const MAX_BYTES_PER_CALL: usize = 64 * 1024;

    /// A stream that writes to `sink` at `level` (use `Info` for stdout, `Warn` for stderr).
    pub fn new(
        sink: std::sync::Arc<dyn PluginLogSink>,
        plugin_id: std::sync::Arc<str>,
        prompt_id: Option<String>,
        level: PluginLogLevel,
    ) -> Self {
        Self {
            inner: std::sync::Arc::new(GuestOutputInner {
                sink,
                plugin_id,
                prompt_id,
                level,
                state: Default::default(),
            }),
        }
    }

    fn write_bytes(&self, buf: &[u8]) {
        let inner = &self.inner;
        let mut st = inner.state.lock();
        let room = Self::MAX_BYTES_PER_CALL.saturating_sub(st.total);
        let take = buf.len().min(room);
        st.total += take;
        st.pending.extend_from_slice(&buf[..take]);
        let mut lines = Vec::new();
        while let Some(pos) = st.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = st.pending.drain(..=pos).collect();
            lines.push(line);
        }
        let note_drop = take < buf.len() && !st.dropped_noted;
        if note_drop {
            st.dropped_noted = true;
        }
        drop(st);
        for line in lines {
            self.emit_line(&line);
        }
        if note_drop {
            emit(
                &*inner.sink,
                &inner.plugin_id,
                inner.prompt_id.as_deref(),
                PluginLogLevel::Warn,
                format!(
                    "guest output over {} bytes in one call; the rest is dropped",
                    Self::MAX_BYTES_PER_CALL
                ),
            );
        }
    }

    fn emit_line(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\n', '\r']);
        // A panic's RUST_BACKTRACE hint cannot be followed inside the sandbox: not logged.
        if text.is_empty() || crate::readable::is_backtrace_hint(text) {
            return;
        }
        emit(
            &*self.inner.sink,
            &self.inner.plugin_id,
            self.inner.prompt_id.as_deref(),
            self.inner.level,
            text.to_owned(),
        );
    }

    /// Emits a trailing partial line, if any (called when the call ends).
    pub fn flush_pending(&self) {
        let pending = std::mem::take(&mut self.inner.state.lock().pending);
        if !pending.is_empty() {
            self.emit_line(&pending);
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.flush_pending();
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn guest_output_splits_lines_and_caps_volume() {
        let sink = Arc::new(MemoryLogSink::new());
        let out = GuestOutput::new(
            sink.clone(),
            "p".into(),
            Some("q".into()),
            PluginLogLevel::Warn,
        );
        out.write_bytes(b"hello\nwor");
        out.write_bytes(b"ld\n\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\npartial");
        out.flush_pending();
        let msgs: Vec<_> = sink.records().into_iter().map(|r| r.message).collect();
        assert_eq!(msgs, vec!["hello", "world", "partial"]);
        let big = vec![b'x'; GuestOutput::MAX_BYTES_PER_CALL * 2];
        out.write_bytes(&big);
        out.flush_pending();
        let recs = sink.records();
        assert!(recs.iter().any(|r| r.message.contains("dropped")));
        assert!(
            recs.iter()
                .all(|r| r.message.len() <= MAX_MESSAGE_BYTES + 20)
        );
        assert!(recs.iter().all(|r| r.prompt_id.as_deref() == Some("q")));
    }

    #[test]
    fn control_characters_cannot_forge_log_lines() {
        let sink = Arc::new(MemoryLogSink::new());
        emit(
            &*sink,
            "p",
            None,
            PluginLogLevel::Info,
            "ok\n2026-01-01T00:00:00Z  INFO comfyhost: admin signed in\r\x1b[2J\u{2028}".into(),
        );
        let m = &sink.records()[0].message;
        assert!(!m.chars().any(char::is_control), "{m:?}");
        assert_eq!(
            m,
            "ok\\n2026-01-01T00:00:00Z  INFO comfyhost: admin signed in\\r\\u{1b}[2J\\u{2028}"
        );
        assert_eq!(escape_controls("plain é"), "plain é");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = "é".repeat(MAX_MESSAGE_BYTES);
        let t = truncate_message(s);
        assert!(t.len() <= MAX_MESSAGE_BYTES + 20);
    }
}
