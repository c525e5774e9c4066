//! The few XML shapes S3 multipart upload needs, without an XML dependency: reading the text of
//! a flat element (`<UploadId>`, `<ETag>`, `<Code>`, `<Message>`) with entity decoding, and
//! writing the `CompleteMultipartUpload` part list with escaping.
//!
//! S3's responses are small, machine-written documents with no CDATA and no nesting of the
//! elements read here, so a tag scan is exact for them; anything else is a typed [`XmlError`].

/// Why an element could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// No `<tag>` in the document.
    #[error("no <{0}> element in the response")]
    Missing(String),
    /// `<tag>` without its `</tag>`.
    #[error("<{0}> is not closed")]
    Unclosed(String),
    /// `&...;` that is not one of the five XML entities or a valid character reference.
    #[error("bad entity `{0}` in the response")]
    BadEntity(String),
}

/// Decoded text of the first `<tag>` (with or without attributes) in `xml`, trimmed.
pub fn element(xml: &str, tag: &str) -> Result<String, XmlError> {
    let start = open_end(xml, tag).ok_or_else(|| XmlError::Missing(tag.to_owned()))?;
    let close = format!("</{tag}>");
    let len = xml
        .get(start..)
        .and_then(|rest| rest.find(&close))
        .ok_or_else(|| XmlError::Unclosed(tag.to_owned()))?;
    unescape(xml[start..start + len].trim())
}

/// Byte offset just after the first start tag `<tag>` or `<tag attr="..">`.
fn open_end(xml: &str, tag: &str) -> Option<usize> {
    let needle = format!("<{tag}");
    let mut from = 0;
    while let Some(pos) = xml.get(from..)?.find(&needle) {
        let after = from + pos + needle.len();
        let rest = xml.get(after..)?;
        match rest.chars().next() {
            Some('>') => return Some(after + 1),
            Some(c) if c.is_whitespace() => {
                let gt = rest.find('>')?;
                // `<tag/>` is an empty element: its text is "" and there is no close tag.
                if rest[..gt].ends_with('/') {
                    from = after;
                    continue;
                }
                return Some(after + gt + 1);
            }
            // `<tagX>`: a longer name sharing the prefix.
            _ => from = after,
        }
    }
    None
}

/// The `(Code, Message)` of an S3 `<Error>` document, when `xml` is one.
pub fn error_code(xml: &str) -> Option<(String, String)> {
    open_end(xml, "Error")?;
    let code = element(xml, "Code").ok()?;
    let message = element(xml, "Message").unwrap_or_default();
    Some((code, message))
}

/// Decodes `&amp; &lt; &gt; &quot; &apos;` and `&#NN;` / `&#xHH;`.
pub fn unescape(text: &str) -> Result<String, XmlError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after
            .find(';')
            .filter(|&i| i <= 10)
            .ok_or_else(|| XmlError::BadEntity(after.chars().take(10).collect()))?;
        let name = &after[..semi];
        let ch = match name {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = name.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = name.strip_prefix('#') {
                    dec.parse::<u32>().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| XmlError::BadEntity(format!("&{name};")))?
            }
        };
        out.push(ch);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Escapes text for an element body.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The `CompleteMultipartUpload` request body for `(part number, etag)` pairs, in the order
/// given (S3 requires ascending part numbers).
pub fn complete_body<'a>(parts: impl IntoIterator<Item = (u32, &'a str)>) -> String {
    let mut out = String::from("<CompleteMultipartUpload>");
    for (n, etag) in parts {
        out.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
            escape(etag)
        ));
    }
    out.push_str("</CompleteMultipartUpload>");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The response of CreateMultipartUpload from the S3 API reference.
    const INITIATE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
   <Bucket>example-bucket</Bucket>
   <Key>example-object</Key>
   <UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
</InitiateMultipartUploadResult>"#;

    #[test]
    fn reads_elements_of_s3_responses() {
        assert_eq!(
            element(INITIATE, "UploadId").unwrap(),
            "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA"
        );
        assert_eq!(element(INITIATE, "Key").unwrap(), "example-object");
        // The root element carries an xmlns attribute; its text is the whole body.
        assert!(
            element(INITIATE, "InitiateMultipartUploadResult")
                .unwrap()
                .contains("<Bucket>")
        );
        let complete = r#"<CompleteMultipartUploadResult><Location>http://b/k</Location><Bucket>b</Bucket><Key>k</Key><ETag>&quot;3858f62230ac3c915f300c664312c11f-9&quot;</ETag></CompleteMultipartUploadResult>"#;
        assert_eq!(
            element(complete, "ETag").unwrap(),
            "\"3858f62230ac3c915f300c664312c11f-9\""
        );
        // `<Keys>` is not `<Key>`; `<Key/>` is empty and skipped.
        assert_eq!(
            element("<r><Keys>x</Keys><Key/><Key>y</Key></r>", "Key").unwrap(),
            "y"
        );
    }

    #[test]
    fn error_documents() {
        let e = "<?xml version=\"1.0\"?><Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist &amp; may have expired.</Message><UploadId>x</UploadId></Error>";
        assert_eq!(
            error_code(e),
            Some((
                "NoSuchUpload".into(),
                "The specified upload does not exist & may have expired.".into()
            ))
        );
        assert_eq!(error_code(INITIATE), None);
        assert_eq!(error_code("<Error><Message>m</Message></Error>"), None);
        assert_eq!(error_code(""), None);
    }

    #[test]
    fn malformed_input_is_a_typed_error_never_a_panic() {
        assert_eq!(
            element("<a>1</a>", "UploadId"),
            Err(XmlError::Missing("UploadId".into()))
        );
        assert_eq!(
            element("<UploadId>abc", "UploadId"),
            Err(XmlError::Unclosed("UploadId".into()))
        );
        assert_eq!(
            element("<UploadId", "UploadId"),
            Err(XmlError::Missing("UploadId".into()))
        );
        assert!(matches!(
            element("<ETag>&bogus;</ETag>", "ETag"),
            Err(XmlError::BadEntity(_))
        ));
        assert!(matches!(
            element("<ETag>a & b</ETag>", "ETag"),
            Err(XmlError::BadEntity(_))
        ));
        assert!(matches!(unescape("&#xD800;"), Err(XmlError::BadEntity(_))));
        assert!(matches!(
            unescape("&#99999999999;"),
            Err(XmlError::BadEntity(_))
        ));
        // Truncated and multi-byte input at every cut point: errors or text, never a panic.
        let doc = "<Error><Code>Sl\u{e9}w</Code><Message>\u{1F600}&amp;</Message></Error>";
        for cut in 0..=doc.len() {
            if let Some(prefix) = doc.get(..cut) {
                let _ = element(prefix, "Code");
                let _ = element(prefix, "Message");
                let _ = error_code(prefix);
            }
        }
        assert_eq!(unescape("&#65;&#x42;&lt;").unwrap(), "AB<");
    }

    #[test]
    fn complete_body_lists_parts_escaped() {
        let body = complete_body([(1, "\"a\""), (2, "b&c")]);
        assert_eq!(
            body,
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&quot;a&quot;</ETag></Part><Part><PartNumber>2</PartNumber><ETag>b&amp;c</ETag></Part></CompleteMultipartUpload>"
        );
        // What we write, we read back.
        assert_eq!(element(&body, "ETag").unwrap(), "\"a\"");
        assert_eq!(
            complete_body(std::iter::empty()),
            "<CompleteMultipartUpload></CompleteMultipartUpload>"
        );
    }
}
