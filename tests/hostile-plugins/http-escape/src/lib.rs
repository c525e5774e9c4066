//! Hostile plugin: makes a `wasi:http` GET to every URL in its config (a JSON array of
//! `http://host:port/path` strings) and reports each outcome in a `route::reject` text:
//! `<url> status:<code>` or `<url> err:<error-code>`, separated by `;`.

wit_bindgen::generate!({ path: "../../../wit", world: "queue-router-plugin" });

use comfyhost::plugin::types::{PluginError, Submission};
use exports::comfyhost::plugin::queue_router::{BackendStatus, Guest, RouteDecision as Route};

struct Plugin;

use wasip2::http::outgoing_handler;
use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};

fn get(url: &str) -> Result<u16, String> {
    let (scheme, rest) = if let Some(r) = url.strip_prefix("http://") {
        (Scheme::Http, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (Scheme::Https, r)
    } else {
        return Err("unsupported url".into());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    req.set_method(&Method::Get).map_err(|()| "method")?;
    req.set_scheme(Some(&scheme)).map_err(|()| "scheme")?;
    req.set_authority(Some(authority))
        .map_err(|()| "authority")?;
    req.set_path_with_query(Some(path)).map_err(|()| "path")?;
    let fut = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    fut.subscribe().block();
    match fut.get() {
        Some(Ok(Ok(resp))) => Ok(resp.status()),
        Some(Ok(Err(e))) => Err(format!("{e:?}")),
        Some(Err(())) => Err("response already taken".into()),
        None => Err("not ready".into()),
    }
}

impl Guest for Plugin {
    fn route(_submission: Submission, _backends: Vec<BackendStatus>) -> Result<Route, PluginError> {
        let urls: Vec<String> = serde_json::from_str(&comfyhost::plugin::host::config())
            .map_err(|e| PluginError::Config(e.to_string()))?;
        let report: Vec<String> = urls
            .iter()
            .map(|u| match get(u) {
                Ok(code) => format!("{u} status:{code}"),
                Err(e) => format!("{u} err:{e}"),
            })
            .collect();
        Ok(Route::Reject(report.join(";")))
    }
}

export!(Plugin);
