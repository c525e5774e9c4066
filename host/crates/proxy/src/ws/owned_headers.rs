//! Headers a WebSocket session keeps for its lifetime (to reconnect to ComfyUI), copied out
//! of the request they came from.
//!
//! hyper parses header values as slices of its connection read buffer (8-16 KiB); a session
//! that kept the request's `HeaderMap` kept that whole buffer alive for as long as the socket
//! stayed open, the largest part of an idle socket's memory (issue 24).

use http::{HeaderMap, HeaderValue};

/// A copy of `headers` whose values own their bytes (no reference to the request's buffer).
pub(crate) fn owned(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let mut copy = match HeaderValue::from_bytes(value.as_bytes()) {
            Ok(v) => v,
            // Unreachable: the bytes came from a valid HeaderValue.
            Err(_) => continue,
        };
        copy.set_sensitive(value.is_sensitive());
        out.append(name.clone(), copy);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn copies_do_not_share_the_source_buffer() {
        // A value sliced out of a large buffer, as hyper does when it parses a request head.
        let buffer = Bytes::from(vec![b'a'; 16 * 1024]);
        let value = HeaderValue::from_maybe_shared(buffer.slice(0..8)).unwrap();
        let mut headers = HeaderMap::new();
        headers.append("x-one", value.clone());
        headers.append("x-one", HeaderValue::from_static("second"));
        let mut secret = HeaderValue::from_static("token");
        secret.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, secret);

        let copy = owned(&headers);
        assert_eq!(copy, headers);
        assert!(copy[http::header::AUTHORIZATION].is_sensitive());
        let copied = copy.get("x-one").unwrap().as_bytes();
        assert!(
            !buffer.as_ptr_range().contains(&copied.as_ptr()),
            "the copy still points into the request buffer"
        );
        // The original does (the behaviour this module exists for).
        assert!(buffer.as_ptr_range().contains(&value.as_bytes().as_ptr()));
    }
}
