//! S3-compatible destination: `HEAD` to find an existing copy, then a single `PUT` for files up
//! to the multipart threshold or a multipart upload ([`crate::multipart`]) above it, all signed
//! with SigV4 and sent over `wasi:http` to the granted endpoint only.
//!
//! The SDK's HTTP client takes a whole body, so a single `PUT` holds its file in memory and a
//! multipart upload one part: plugin memory is bounded by `max(multipart_threshold_mb,
//! part_size_mb)`, whatever the file size.

use std::time::Duration;

use comfyhost_sdk::http::{Method, Request};

use crate::config::S3Target;
use crate::error::SyncError;
use crate::multipart::{self, DonePart, PartError, PartStore, Step};
use crate::sigv4::{self, Credentials, Scope, SignableRequest};
use crate::sync::{Sink, Source};
use crate::template::amz_date;

/// A bucket with its credentials.
pub struct S3Sink<'a> {
    pub target: &'a S3Target,
    pub creds: Credentials,
    pub session_token: Option<String>,
    /// Clock for `x-amz-date`.
    pub now_ms: fn() -> u64,
    /// Destination name (part of the multipart progress record key).
    pub dest: &'a str,
    pub multipart: MultipartSettings,
}

/// When and how files go up in parts (bytes and milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MultipartSettings {
    /// Files above this many bytes use multipart upload.
    pub threshold: u64,
    pub part_size: u64,
    pub call_budget_ms: u64,
    /// When the current plugin call began (0: unknown, the upload's own start counts).
    pub call_started_ms: u64,
}

impl Default for MultipartSettings {
    /// The configuration's defaults: above 16 MiB, 8 MiB parts, 15 s of parts per call.
    fn default() -> Self {
        MultipartSettings {
            threshold: 16 << 20,
            part_size: 8 << 20,
            call_budget_ms: 15_000,
            call_started_ms: 0,
        }
    }
}

/// `(url, host header value, path to sign)` of an object key.
pub fn object_address(t: &S3Target, key: &str) -> (String, String, String) {
    let (scheme, authority) = t
        .endpoint
        .trim_end_matches('/')
        .split_once("://")
        .unwrap_or(("https", t.endpoint.as_str()));
    // Hosts sign and send the authority without a default port.
    let host = match (scheme, authority.rsplit_once(':')) {
        ("https", Some((h, "443"))) | ("http", Some((h, "80"))) => h.to_owned(),
        _ => authority.to_owned(),
    };
    let (host, path) = if t.path_style {
        (host, format!("/{}/{key}", t.bucket))
    } else {
        (format!("{}.{host}", t.bucket), format!("/{key}"))
    };
    let url = format!("{scheme}://{host}{}", sigv4::uri_encode(&path, false));
    (url, host, path)
}

/// Object key of `rel` under the configured prefix.
pub fn object_key(t: &S3Target, rel: &str) -> String {
    let prefix = t.prefix.trim_matches('/');
    if prefix.is_empty() {
        rel.to_owned()
    } else {
        format!("{prefix}/{rel}")
    }
}

/// The query string of decoded `(name, value)` pairs as sent: `name` alone for an empty value
/// (`?uploads`), names and values URI-encoded exactly as SigV4 canonicalises them.
pub fn query_string(query: &[(&str, &str)]) -> String {
    query
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                sigv4::uri_encode(k, true)
            } else {
                format!(
                    "{}={}",
                    sigv4::uri_encode(k, true),
                    sigv4::uri_encode(v, true)
                )
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

impl S3Sink<'_> {
    fn request(
        &self,
        method: Method,
        rel: &str,
        payload_hash: &str,
        extra: &[(&str, &str)],
    ) -> Request {
        self.request_key(
            method,
            &object_key(self.target, rel),
            &[],
            payload_hash,
            extra,
        )
    }

    /// A signed request for object `key` with query `query` (decoded pairs).
    fn request_key(
        &self,
        method: Method,
        key: &str,
        query: &[(&str, &str)],
        payload_hash: &str,
        extra: &[(&str, &str)],
    ) -> Request {
        let (mut url, host, path) = object_address(self.target, key);
        if !query.is_empty() {
            url = format!("{url}?{}", query_string(query));
        }
        let date = amz_date((self.now_ms)());
        let mut headers: Vec<(&str, &str)> = vec![
            ("host", &host),
            ("x-amz-date", &date),
            ("x-amz-content-sha256", payload_hash),
        ];
        if let Some(token) = &self.session_token {
            headers.push(("x-amz-security-token", token));
        }
        headers.extend_from_slice(extra);
        let method_name = match method {
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Post => "POST",
            _ => "GET",
        };
        let sig = sigv4::sign(
            &SignableRequest {
                method: method_name,
                path: &path,
                query,
                headers: &headers,
                payload_hash,
            },
            &self.creds,
            &Scope {
                region: &self.target.region,
                service: "s3",
                amz_date: &date,
            },
        );
        let mut req = Request::new(method, url)
            .connect_timeout(Duration::from_secs(5))
            .first_byte_timeout(Duration::from_secs(20))
            .max_response_bytes(64 << 10)
            .header("authorization", sig.authorization);
        // `host` is set by the HTTP layer from the URL; everything else is sent as signed.
        for (k, v) in headers.iter().filter(|(k, _)| *k != "host") {
            req = req.header(*k, *v);
        }
        req
    }
}

impl Sink for S3Sink<'_> {
    fn locate(&self, rel: &str) -> String {
        format!(
            "s3://{}/{}",
            self.target.bucket,
            object_key(self.target, rel)
        )
    }

    fn stat(&self, rel: &str) -> Result<Option<(u64, String)>, SyncError> {
        let resp = self
            .request(Method::Head, rel, sigv4::EMPTY_SHA256, &[])
            .send()?;
        match resp.status {
            200 => {
                let len = resp
                    .header("content-length")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| {
                        SyncError::Rejected("HEAD answered without a content-length".into())
                    })?;
                Ok(Some((
                    len,
                    resp.header("etag").unwrap_or_default().to_owned(),
                )))
            }
            404 => Ok(None),
            // HEAD has no body, so the status alone classifies it.
            status => Err(crate::error::classify_status(status, "")),
        }
    }

    fn remove(&self, rel: &str) -> Result<(), SyncError> {
        let resp = self
            .request(Method::Delete, rel, sigv4::EMPTY_SHA256, &[])
            .send()?;
        match resp.status {
            // 204 No Content is S3's answer, also for a key that did not exist.
            200 | 202 | 204 | 404 => Ok(()),
            status => Err(crate::error::classify_status(
                status,
                resp.text().unwrap_or(""),
            )),
        }
    }

    fn put(&self, rel: &str, source: &Source<'_>) -> Result<String, SyncError> {
        if source.size > self.multipart.threshold {
            return self.put_multipart(rel, source);
        }
        let body = match std::fs::read(source.guest_path) {
            Ok(b) => b,
            Err(e) => {
                return Err(SyncError::Config(format!(
                    "read {}: {e}",
                    source.guest_path
                )));
            }
        };
        if body.len() as u64 != source.size {
            return Err(SyncError::Network(format!(
                "{} changed size while reading ({} != {})",
                source.guest_path,
                body.len(),
                source.size
            )));
        }
        let hash = sigv4::sha256_hex(&body);
        let resp = self
            .request(
                Method::Put,
                rel,
                &hash,
                &[("content-type", source.content_type)],
            )
            .body(body)
            .send()?
            .error_for_status()?;
        Ok(resp.header("etag").unwrap_or_default().to_owned())
    }

    fn discard_partial(&self, _rel: &str, source: &Source<'_>) {
        if source.size > self.multipart.threshold {
            multipart::discard(
                &multipart::progress_key(self.dest, source),
                self,
                &multipart::KvProgress,
            );
        }
    }
}

impl S3Sink<'_> {
    /// Advances the multipart upload of `source`: `Ok(etag)` once complete, otherwise
    /// [`SyncError::InProgress`] (the host calls again at once).
    fn put_multipart(&self, rel: &str, source: &Source<'_>) -> Result<String, SyncError> {
        let key = object_key(self.target, rel);
        let progress_key = multipart::progress_key(self.dest, source);
        let now = || (self.now_ms)();
        let up = multipart::Upload {
            key: &key,
            progress_key: &progress_key,
            source,
            part_size: self.multipart.part_size,
            call_budget_ms: self.multipart.call_budget_ms,
            call_started_ms: (self.multipart.call_started_ms > 0)
                .then_some(self.multipart.call_started_ms),
            now_ms: &now,
        };
        match multipart::advance(&up, self, &multipart::KvProgress)? {
            Step::Done(etag) => Ok(etag),
            Step::InProgress { done, total } => Err(SyncError::InProgress(format!(
                "part {done}/{total} of {}",
                source.guest_path
            ))),
        }
    }

    /// Sends `req`; a non-2xx answer, or S3's 200 carrying an `<Error>` document
    /// (CompleteMultipartUpload does that), is a [`PartError`].
    fn send_part_request(req: Request) -> Result<comfyhost_sdk::http::Response, PartError> {
        let resp = req.send().map_err(SyncError::from)?;
        let body = String::from_utf8_lossy(&resp.body);
        let code = crate::xml::error_code(&body);
        if resp.is_success() && code.is_none() {
            return Ok(resp);
        }
        if let Some((code, _)) = &code
            && code == "NoSuchUpload"
        {
            return Err(PartError::UploadGone);
        }
        // A 200 with an error document: classify by its code as if it came with a 5xx.
        let status = if resp.is_success() { 500 } else { resp.status };
        Err(PartError::Sync(crate::error::classify_status(
            status, &body,
        )))
    }
}

fn xml_field(body: &[u8], tag: &str, what: &str) -> Result<String, PartError> {
    crate::xml::element(&String::from_utf8_lossy(body), tag)
        .map_err(|e| PartError::Sync(SyncError::Network(format!("{what}: {e}"))))
}

impl PartStore for S3Sink<'_> {
    fn create(&self, key: &str, content_type: &str) -> Result<String, PartError> {
        let req = self.request_key(
            Method::Post,
            key,
            &[("uploads", "")],
            sigv4::EMPTY_SHA256,
            &[("content-type", content_type)],
        );
        let resp = Self::send_part_request(req)?;
        xml_field(&resp.body, "UploadId", "CreateMultipartUpload")
    }

    fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        n: u32,
        body: Vec<u8>,
    ) -> Result<String, PartError> {
        let hash = sigv4::sha256_hex(&body);
        let number = n.to_string();
        let req = self
            .request_key(
                Method::Put,
                key,
                &[("partNumber", &number), ("uploadId", upload_id)],
                &hash,
                &[],
            )
            .body(body);
        let resp = Self::send_part_request(req)?;
        match resp.header("etag") {
            Some(etag) if !etag.trim().is_empty() => Ok(etag.trim().to_owned()),
            _ => Err(PartError::Sync(SyncError::Network(format!(
                "UploadPart {n}: no ETag in the response"
            )))),
        }
    }

    fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[DonePart],
    ) -> Result<String, PartError> {
        let xml = crate::xml::complete_body(parts.iter().map(|p| (p.n, p.etag.as_str())));
        let hash = sigv4::sha256_hex(xml.as_bytes());
        let req = self
            .request_key(
                Method::Post,
                key,
                &[("uploadId", upload_id)],
                &hash,
                &[("content-type", "application/xml")],
            )
            // Completing a large upload can take S3 a while before the first byte.
            .first_byte_timeout(Duration::from_secs(25))
            .body(xml);
        let resp = Self::send_part_request(req)?;
        // The ETag is in the body; some S3-compatible servers also send it as a header.
        xml_field(&resp.body, "ETag", "CompleteMultipartUpload")
            .or_else(|e| resp.header("etag").map(str::to_owned).ok_or(e))
    }

    fn abort(&self, key: &str, upload_id: &str) -> Result<(), PartError> {
        let req = self.request_key(
            Method::Delete,
            key,
            &[("uploadId", upload_id)],
            sigv4::EMPTY_SHA256,
            &[],
        );
        Self::send_part_request(req).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(endpoint: &str, path_style: bool, prefix: &str) -> S3Target {
        S3Target {
            endpoint: endpoint.into(),
            bucket: "outs".into(),
            region: "us-east-1".into(),
            prefix: prefix.into(),
            path_style,
            access_key_secret: "A".into(),
            secret_key_secret: "S".into(),
            session_token_secret: None,
        }
    }

    #[test]
    fn addresses() {
        let t = target("http://127.0.0.1:9000", true, "/comfy/");
        let key = object_key(&t, "alice/2025-11-23/a b.png");
        assert_eq!(key, "comfy/alice/2025-11-23/a b.png");
        let (url, host, path) = object_address(&t, &key);
        assert_eq!(
            url,
            "http://127.0.0.1:9000/outs/comfy/alice/2025-11-23/a%20b.png"
        );
        assert_eq!(host, "127.0.0.1:9000");
        assert_eq!(path, "/outs/comfy/alice/2025-11-23/a b.png");

        let t = target("https://s3.eu-west-1.amazonaws.com:443", false, "");
        let (url, host, _) = object_address(&t, "k.png");
        assert_eq!(url, "https://outs.s3.eu-west-1.amazonaws.com/k.png");
        assert_eq!(host, "outs.s3.eu-west-1.amazonaws.com");
    }

    #[test]
    fn query_strings_are_sent_as_signed() {
        assert_eq!(query_string(&[("uploads", "")]), "uploads");
        assert_eq!(
            query_string(&[("partNumber", "3"), ("uploadId", "a+b/c=")]),
            "partNumber=3&uploadId=a%2Bb%2Fc%3D"
        );
        assert_eq!(MultipartSettings::default().threshold, 16 << 20);
    }
}
