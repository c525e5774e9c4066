//! S3-compatible destination: `HEAD` to find an existing copy, single `PUT` to upload, both
//! signed with SigV4 and sent over `wasi:http` to the granted endpoint only.
//!
//! The body is read into memory (the SDK's HTTP client takes a whole body), so files are capped
//! by `max_file_mb` and the manifest's `memory_mb`.

use std::time::Duration;

use comfyhost_sdk::http::{Method, Request};

use crate::config::S3Target;
use crate::error::SyncError;
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

impl S3Sink<'_> {
    fn request(
        &self,
        method: Method,
        rel: &str,
        payload_hash: &str,
        extra: &[(&str, &str)],
    ) -> Request {
        let key = object_key(self.target, rel);
        let (url, host, path) = object_address(self.target, &key);
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
            _ => "GET",
        };
        let sig = sigv4::sign(
            &SignableRequest {
                method: method_name,
                path: &path,
                query: &[],
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
}
