//! The transport: `wasi:http` inside the sandbox, nothing in a native build.

use super::{HttpError, Request, Response, Target};

#[cfg(not(target_arch = "wasm32"))]
pub(super) fn send(_req: &Request, _target: &Target) -> Result<Response, HttpError> {
    Err(HttpError::Unavailable)
}

#[cfg(target_arch = "wasm32")]
pub(super) use wasi_impl::send;

#[cfg(target_arch = "wasm32")]
mod wasi_impl {
    use std::time::Duration;

    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{
        ErrorCode, Fields, HeaderError, IncomingBody, Method as WasiMethod, OutgoingBody,
        OutgoingRequest, RequestOptions, Scheme,
    };
    use wasip2::io::streams::StreamError;

    use super::super::Method;
    use super::{HttpError, Request, Response, Target};

    /// `wasi:io` streams accept at most 4096 bytes per blocking write.
    const WRITE_CHUNK: usize = 4096;
    const READ_CHUNK: u64 = 64 * 1024;

    pub(in crate::http) fn send(req: &Request, target: &Target) -> Result<Response, HttpError> {
        let origin = target.origin();
        let protocol = |what: &str| HttpError::Protocol(format!("{what} ({origin})"));

        let headers = Fields::new();
        for (name, value) in &req.headers {
            headers
                .append(name, value)
                .map_err(|e| HttpError::InvalidHeader {
                    name: name.clone(),
                    reason: match e {
                        HeaderError::InvalidSyntax => "invalid syntax".into(),
                        HeaderError::Forbidden => "forbidden by the host".into(),
                        HeaderError::Immutable => "headers are immutable".into(),
                    },
                })?;
        }
        let outgoing = OutgoingRequest::new(headers);
        outgoing
            .set_method(&wasi_method(req.method))
            .map_err(|()| protocol("method rejected"))?;
        let scheme = if target.https {
            Scheme::Https
        } else {
            Scheme::Http
        };
        outgoing
            .set_scheme(Some(&scheme))
            .map_err(|()| protocol("scheme rejected"))?;
        outgoing
            .set_authority(Some(&target.authority))
            .map_err(|()| invalid(req, "authority rejected"))?;
        outgoing
            .set_path_with_query(Some(&target.path_with_query))
            .map_err(|()| invalid(req, "path rejected"))?;
        let body = outgoing
            .body()
            .map_err(|()| protocol("request body already taken"))?;

        let options = RequestOptions::new();
        // A host may refuse to let guests set timeouts; the hook deadline still bounds the call.
        let _ = options.set_connect_timeout(req.connect_timeout.map(nanos));
        let _ = options.set_first_byte_timeout(req.first_byte_timeout.map(nanos));
        let _ = options.set_between_bytes_timeout(req.between_bytes_timeout.map(nanos));

        // Hand the request over first, then stream the body: the host reads it as it sends.
        let future =
            outgoing_handler::handle(outgoing, Some(options)).map_err(|c| map_error(c, &origin))?;
        write_body(body, &req.body, &origin)?;

        let incoming = loop {
            match future.get() {
                Some(Ok(Ok(resp))) => break resp,
                Some(Ok(Err(code))) => return Err(map_error(code, &origin)),
                Some(Err(())) => return Err(protocol("response already taken")),
                None => future.subscribe().block(),
            }
        };
        let status = incoming.status();
        let headers = incoming.headers().entries();
        let body = incoming
            .consume()
            .map_err(|()| protocol("response body already taken"))?;
        let bytes = read_body(&body, req.max_response_bytes, &origin)?;
        drop(IncomingBody::finish(body));
        Ok(Response {
            status,
            headers,
            body: bytes,
        })
    }

    fn write_body(body: OutgoingBody, bytes: &[u8], origin: &str) -> Result<(), HttpError> {
        {
            let stream = body.write().map_err(|()| {
                HttpError::Protocol(format!("request body stream unavailable ({origin})"))
            })?;
            for chunk in bytes.chunks(WRITE_CHUNK) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| stream_error(e, origin))?;
            }
        }
        OutgoingBody::finish(body, None).map_err(|c| map_error(c, origin))
    }

    fn read_body(body: &IncomingBody, limit: usize, origin: &str) -> Result<Vec<u8>, HttpError> {
        let stream = body.stream().map_err(|()| {
            HttpError::Protocol(format!("response body stream unavailable ({origin})"))
        })?;
        let mut out = Vec::new();
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => {
                    if out.len() + chunk.len() > limit {
                        return Err(HttpError::BodyTooLarge { limit });
                    }
                    out.extend_from_slice(&chunk);
                }
                Err(StreamError::Closed) => return Ok(out),
                Err(e) => return Err(stream_error(e, origin)),
            }
        }
    }

    fn stream_error(e: StreamError, origin: &str) -> HttpError {
        match e {
            StreamError::Closed => HttpError::Connection {
                origin: origin.to_owned(),
                detail: "stream closed early".into(),
            },
            StreamError::LastOperationFailed(err) => {
                match wasip2::http::types::http_error_code(&err) {
                    Some(code) => map_error(code, origin),
                    None => HttpError::Connection {
                        origin: origin.to_owned(),
                        detail: err.to_debug_string(),
                    },
                }
            }
        }
    }

    fn invalid(req: &Request, reason: &str) -> HttpError {
        HttpError::InvalidUrl {
            url: req.url.clone(),
            reason: reason.to_owned(),
        }
    }

    fn nanos(d: Duration) -> u64 {
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    fn wasi_method(m: Method) -> WasiMethod {
        match m {
            Method::Get => WasiMethod::Get,
            Method::Head => WasiMethod::Head,
            Method::Post => WasiMethod::Post,
            Method::Put => WasiMethod::Put,
            Method::Delete => WasiMethod::Delete,
            Method::Patch => WasiMethod::Patch,
            Method::Options => WasiMethod::Options,
        }
    }

    fn map_error(code: ErrorCode, origin: &str) -> HttpError {
        let origin = origin.to_owned();
        match code {
            ErrorCode::HttpRequestDenied => HttpError::Denied { origin },
            ErrorCode::HttpRequestUriInvalid => HttpError::InvalidUrl {
                url: origin,
                reason: "rejected by the host".into(),
            },
            ErrorCode::DnsTimeout
            | ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::ConnectionWriteTimeout
            | ErrorCode::HttpResponseTimeout => HttpError::Timeout {
                origin,
                detail: format!("{code:?}"),
            },
            ErrorCode::DnsError(_)
            | ErrorCode::DestinationNotFound
            | ErrorCode::DestinationUnavailable
            | ErrorCode::DestinationIpProhibited
            | ErrorCode::DestinationIpUnroutable
            | ErrorCode::ConnectionRefused
            | ErrorCode::ConnectionTerminated
            | ErrorCode::ConnectionLimitReached => HttpError::Connection {
                origin,
                detail: format!("{code:?}"),
            },
            other => HttpError::Protocol(format!("{other:?} ({origin})")),
        }
    }
}
