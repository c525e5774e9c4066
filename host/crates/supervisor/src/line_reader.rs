//! Splits a child's byte stream into display lines.
//!
//! Lines end at `\n` (a preceding `\r` is dropped). A lone `\r` rewinds the line the way a
//! terminal does, so tqdm progress bars collapse into their final state instead of flooding the
//! ring. Lines longer than the cap are emitted in pieces. Invalid UTF-8 is replaced.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest line kept in one piece, in bytes.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Incremental splitter; feed bytes, collect finished lines.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    pending_cr: bool,
    /// The previous piece was cut at the cap; a `\n` right after it ends that piece, not a new one.
    just_cut: bool,
    cap: usize,
}

impl LineSplitter {
    /// A splitter emitting pieces of at most `cap` bytes (at least 1).
    pub fn new(cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            pending_cr: false,
            just_cut: false,
            cap: cap.max(1),
        }
    }

    /// Feeds bytes; calls `emit` for every finished line.
    pub fn feed(&mut self, bytes: &[u8], emit: &mut impl FnMut(String)) {
        for &b in bytes {
            if self.pending_cr {
                self.pending_cr = false;
                if b != b'\n' {
                    self.buf.clear();
                }
            }
            match b {
                b'\n' => {
                    if !(self.just_cut && self.buf.is_empty()) {
                        emit(self.take());
                    }
                    self.just_cut = false;
                }
                b'\r' => self.pending_cr = true,
                _ => {
                    self.just_cut = false;
                    self.buf.push(b);
                    if self.buf.len() >= self.cap {
                        emit(self.take());
                        self.just_cut = true;
                    }
                }
            }
        }
    }

    /// Emits what is left at end of stream.
    pub fn finish(&mut self, emit: &mut impl FnMut(String)) {
        if !self.buf.is_empty() {
            emit(self.take());
        }
    }

    fn take(&mut self) -> String {
        let line = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        line
    }
}

/// Reads `reader` to the end, calling `emit` for each line. Read errors end the stream.
pub async fn read_lines<R: AsyncBufRead + Unpin>(mut reader: R, mut emit: impl FnMut(String)) {
    let mut splitter = LineSplitter::new(MAX_LINE_BYTES);
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let n = chunk.len();
        splitter.feed(chunk, &mut emit);
        reader.consume(n);
    }
    splitter.finish(&mut emit);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[u8], cap: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut s = LineSplitter::new(cap);
        // Feed byte by byte to prove chunk boundaries do not matter.
        for b in input {
            s.feed(std::slice::from_ref(b), &mut |l| out.push(l));
        }
        s.finish(&mut |l| out.push(l));
        out
    }

    #[test]
    fn splits_lf_crlf_and_keeps_empty_lines() {
        assert_eq!(split(b"a\nb\r\n\nc", 100), ["a", "b", "", "c"]);
    }

    #[test]
    fn carriage_return_rewinds_like_a_terminal() {
        assert_eq!(
            split(b" 10%|#  |\r 50%|## |\r100%|###|\ndone\n", 100),
            ["100%|###|", "done"]
        );
    }

    #[test]
    fn long_lines_are_cut_and_bad_utf8_replaced() {
        assert_eq!(split(b"abcdefg\n", 3), ["abc", "def", "g"]);
        assert_eq!(split(b"abcdef\nx\n", 3), ["abc", "def", "x"]);
        assert_eq!(split(b"x\xffy\n", 100), ["x\u{fffd}y"]);
    }

    #[tokio::test]
    async fn reads_an_async_stream() {
        let data: &[u8] = b"one\ntwo";
        let mut lines = Vec::new();
        read_lines(tokio::io::BufReader::new(data), |l| lines.push(l)).await;
        assert_eq!(lines, ["one", "two"]);
    }
}
