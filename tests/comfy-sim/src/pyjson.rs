//! JSON text exactly as Python's `json.dumps` writes it (aiohttp `json_response` and
//! ComfyUI's WebSocket messages): `", "` / `": "` separators, ASCII-only output.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

struct PyFormatter;

impl Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(crate::pyfmt::float_repr(value).as_bytes())
    }
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if fragment.is_ascii() {
            return w.write_all(fragment.as_bytes());
        }
        for c in fragment.chars() {
            if c.is_ascii() {
                w.write_all(&[c as u8])?;
            } else {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// Serialises `value` like Python's `json.dumps(value)`.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PyFormatter);
    if value.serialize(&mut ser).is_err() {
        return "null".into();
    }
    String::from_utf8(out).unwrap_or_else(|_| "null".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    #[test]
    fn matches_python_json_dumps() {
        let v = json!({"prompt_id": "4cb72d02-75df-4ec6-8808-7a3c48fbd119", "number": 0, "node_errors": {}});
        let s = super::to_string(&v);
        assert_eq!(
            s,
            r#"{"prompt_id": "4cb72d02-75df-4ec6-8808-7a3c48fbd119", "number": 0, "node_errors": {}}"#
        );
        assert_eq!(s.len(), 85, "recorded Content-Length of run1_post_prompt");
        assert_eq!(
            super::to_string(&json!(["é", 1.0, [1, 2]])),
            r#"["\u00e9", 1.0, [1, 2]]"#
        );
    }
}
