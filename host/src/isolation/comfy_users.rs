//! Per-user saved workflows and settings through ComfyUI's own `--multi-user` mode.
//!
//! ComfyUI keeps `/settings`, `/userdata` and `/api/v2/userdata` in `<user-directory>/<user>/`,
//! where `<user>` is the request's `comfy-user` header when it runs with `--multi-user`
//! (`default` without the header). Users are registered with `POST /users {"username"}` (the
//! answer is the new id) and listed in `GET /users` (`{"storage":"server","users":{id:name}}`).
//!
//! With workshop isolation on, the host starts a local ComfyUI with `--multi-user` (when that
//! ComfyUI accepts it, [`launch_flag`]), registers one ComfyUI user per caller — named
//! `comfyhost-user-<id>`, `comfyhost-admin` for admins, `comfyhost-anonymous` for anonymous
//! visitors — and sets `comfy-user` on every request it passes to ComfyUI from the caller's
//! identity, replacing whatever the client sent. With isolation off the header is removed, so
//! everyone shares ComfyUI's `default` user as before ([`seed_default_user`] keeps `default`
//! registered). `GET /users` answers the single-user shape, so the frontend goes straight in
//! instead of showing its user picker; `POST /users` is for admins.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use super::{Caller, Isolation};

/// ComfyUI's flag.
pub const MULTI_USER_FLAG: &str = "--multi-user";
/// The request header ComfyUI reads (the frontend sends it as `Comfy-User`).
pub const HEADER: &str = "comfy-user";
/// ComfyUI's user for requests without the header.
const DEFAULT_USER: &str = "default";

/// Whether to add `--multi-user` to a local ComfyUI's command line: isolation is on, the
/// admin did not pass it already, and the ComfyUI accepts it (`accepted`: the flags its
/// `--help` lists; the embedded simulator knows it).
pub fn launch_flag(
    isolation: bool,
    simulator: bool,
    accepted: Option<&BTreeSet<String>>,
    extra_args: &[String],
) -> bool {
    if !isolation || extra_args.iter().any(|a| a == MULTI_USER_FLAG) {
        return false;
    }
    simulator || accepted.is_some_and(|f| f.contains(MULTI_USER_FLAG))
}

/// Adds `--multi-user` to a local ComfyUI's command line when [`launch_flag`] says so, and
/// keeps its `default` user registered. Attach mode: nothing (the host only detects the mode).
pub fn configure_launch(
    config: &mut comfyhost_supervisor::SupervisorConfig,
    args: &crate::config::RunArgs,
    store: &comfyhost_store::Store,
    accepted: Option<&BTreeSet<String>>,
) {
    let comfyhost_supervisor::Target::Managed(spec) = &mut config.target else {
        return;
    };
    let users_exist = store.users().map(|u| !u.is_empty()).unwrap_or(true);
    let isolation = super::WorkshopSettings::load(store)
        .effective(users_exist)
        .isolation;
    let simulator = matches!(args.comfy_mode(), crate::config::ComfyMode::Simulator);
    if !launch_flag(isolation, simulator, accepted, &spec.extra_args) {
        if isolation {
            tracing::warn!(
                "this ComfyUI does not list --multi-user: saved workflows and settings are shared"
            );
        }
        return;
    }
    if let Some(dir) = &spec.user_dir
        && let Err(e) = seed_default_user(dir)
    {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot keep ComfyUI's default user registered");
    }
    spec.extra_args.push(MULTI_USER_FLAG.to_string());
}

/// Keeps ComfyUI's `default` user registered in `<user_dir>/users.json`, so requests without
/// `comfy-user` (isolation off) still reach the shared `user/default` space.
pub fn seed_default_user(user_dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(user_dir)?;
    let file = user_dir.join("users.json");
    let mut users: Map<String, Value> = match std::fs::read(&file) {
        Ok(b) => serde_json::from_slice(&b).map_err(std::io::Error::other)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(e),
    };
    if users.contains_key(DEFAULT_USER) {
        return Ok(());
    }
    users.insert(DEFAULT_USER.into(), Value::String(DEFAULT_USER.into()));
    std::fs::write(
        &file,
        serde_json::to_vec(&users).map_err(std::io::Error::other)?,
    )
}

/// The ComfyUI user name that stands for a caller.
pub fn comfy_name(caller: &Caller) -> String {
    match caller {
        Caller::Admin(_) => "comfyhost-admin".into(),
        Caller::User(id) => format!("comfyhost-user-{id}"),
        Caller::Anonymous => "comfyhost-anonymous".into(),
    }
}

/// What the host knows of ComfyUI's users.
#[derive(Default)]
struct Known {
    /// Whether ComfyUI runs with `--multi-user` (`None`: not asked yet, or it was down).
    multi_user: Option<bool>,
    /// ComfyUI user id by name.
    ids: HashMap<String, String>,
    /// Whether `default` is registered.
    has_default: bool,
}

/// The middleware's state. Cheap to clone.
#[derive(Clone)]
pub struct ComfyUsers {
    proxy: Router,
    prefix: String,
    isolation: Isolation,
    known: Arc<tokio::sync::Mutex<Known>>,
}

impl ComfyUsers {
    /// `proxy` reaches ComfyUI; `prefix` is the host's path prefix.
    pub fn new(proxy: Router, prefix: String, isolation: Isolation) -> Self {
        Self {
            proxy,
            prefix,
            isolation,
            known: Arc::default(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<(StatusCode, Value)> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix));
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .ok()?;
        let resp = match self.proxy.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
            .await
            .ok()?;
        Some((status, serde_json::from_slice(&bytes).ok()?))
    }

    /// Reads `GET /users` into `known`; `false` when ComfyUI could not be asked.
    async fn refresh(&self, known: &mut Known) -> bool {
        let Some((status, v)) = self.call(Method::GET, "/users", None).await else {
            return false;
        };
        if !status.is_success() {
            return false;
        }
        match v.get("users").and_then(Value::as_object) {
            Some(users) => {
                known.multi_user = Some(true);
                known.has_default = users.contains_key(DEFAULT_USER);
                known.ids = users
                    .iter()
                    .filter_map(|(id, name)| Some((name.as_str()?.to_string(), id.clone())))
                    .collect();
            }
            None => known.multi_user = Some(false),
        }
        true
    }

    /// Whether ComfyUI runs with `--multi-user` (asked once; `false` while it is down).
    pub async fn multi_user(&self) -> bool {
        let mut known = self.known.lock().await;
        if known.multi_user.is_none() {
            self.refresh(&mut known).await;
        }
        known.multi_user == Some(true)
    }

    /// The `comfy-user` value for a caller: `None` to send none (single-user ComfyUI, or the
    /// shared `default` user with isolation off), or when ComfyUI cannot be asked.
    pub async fn user_for(&self, caller: &Caller, isolated: bool) -> Option<String> {
        let mut known = self.known.lock().await;
        if known.multi_user.is_none() && !self.refresh(&mut known).await {
            return None;
        }
        if known.multi_user != Some(true) {
            return None;
        }
        let name = if isolated {
            comfy_name(caller)
        } else if known.has_default {
            return None;
        } else {
            // A `--multi-user` ComfyUI the host did not start, without `default`.
            "comfyhost-shared".to_string()
        };
        if let Some(id) = known.ids.get(&name) {
            return Some(id.clone());
        }
        match self
            .call(Method::POST, "/users", Some(json!({ "username": name })))
            .await
        {
            Some((status, Value::String(id))) if status.is_success() => {
                tracing::info!(comfy_user = %id, %name, "registered a ComfyUI user");
                known.ids.insert(name, id.clone());
                Some(id)
            }
            answer => {
                // Registered meanwhile (e.g. by another host): read the list again.
                tracing::warn!(?answer, %name, "registering a ComfyUI user failed; re-reading /users");
                self.refresh(&mut known).await;
                known.ids.get(&name).cloned()
            }
        }
    }

    /// Forgets the ids (ComfyUI refused one: its user list changed).
    async fn forget(&self) {
        *self.known.lock().await = Known::default();
    }
}

/// Middleware on ComfyUI's routes: replaces `comfy-user` with the caller's ComfyUI user and
/// answers `GET /users` so the frontend never shows its user picker.
pub async fn comfy_user(State(cu): State<ComfyUsers>, mut req: Request, next: Next) -> Response {
    req.headers_mut().remove(HEADER);
    let path = req.uri().path().to_string();
    let rel = path.strip_prefix(cu.prefix.as_str()).unwrap_or(&path);
    let rel = rel.strip_prefix("/api").unwrap_or(rel);
    let users_route = rel == "/users";
    let caller = Caller::from_user(cu.isolation.identity().identify(req.headers()).as_ref());
    if users_route && cu.multi_user().await {
        if req.method() == Method::GET {
            // The single-user shape: the page goes straight in; the host picks the user.
            return (
                [
                    (header::CONTENT_TYPE, "application/json; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                ],
                json!({"storage": "server", "migrated": true}).to_string(),
            )
                .into_response();
        }
        if !caller.is_admin() {
            return super::forbidden(
                "ComfyUI users are managed by comfyhost",
                "each signed-in user has their own saved workflows and settings",
            );
        }
    }
    // Admins too have their own space while isolation is on; off, everyone shares `default`.
    let isolated = cu.isolation.settings().isolation;
    let sent = cu.user_for(&caller, isolated).await;
    if let Some(id) = &sent
        && let Ok(v) = HeaderValue::from_str(id)
    {
        req.headers_mut().insert(HEADER, v);
    }
    let user_data = ["/settings", "/userdata", "/v2/userdata"]
        .iter()
        .any(|p| rel == *p || rel.starts_with(&format!("{p}/")));
    let resp = next.run(req).await;
    if sent.is_some()
        && user_data
        && matches!(
            resp.status(),
            StatusCode::UNAUTHORIZED | StatusCode::INTERNAL_SERVER_ERROR
        )
    {
        // ComfyUI no longer knows the user (its users.json changed): register again next time.
        cu.forget().await;
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_needs_isolation_and_a_comfyui_that_accepts_it() {
        let with: BTreeSet<String> = [MULTI_USER_FLAG.to_string()].into();
        let without = BTreeSet::new();
        assert!(launch_flag(true, true, None, &[]));
        assert!(launch_flag(true, false, Some(&with), &[]));
        assert!(!launch_flag(true, false, Some(&without), &[]));
        assert!(!launch_flag(true, false, None, &[]));
        assert!(!launch_flag(false, true, Some(&with), &[]));
        assert!(!launch_flag(true, true, None, &[MULTI_USER_FLAG.into()]));
    }

    #[test]
    fn default_is_seeded_and_other_users_kept() {
        let dir = tempfile::tempdir().unwrap();
        seed_default_user(dir.path()).unwrap();
        std::fs::write(
            dir.path().join("users.json"),
            r#"{"default": "default", "a_1": "a"}"#,
        )
        .unwrap();
        seed_default_user(dir.path()).unwrap();
        let v: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("users.json")).unwrap()).unwrap();
        assert_eq!(v, json!({"default": "default", "a_1": "a"}));
        std::fs::write(dir.path().join("users.json"), r#"{"a_1": "a"}"#).unwrap();
        seed_default_user(dir.path()).unwrap();
        let v: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("users.json")).unwrap()).unwrap();
        assert_eq!(v, json!({"a_1": "a", "default": "default"}));
    }

    #[test]
    fn names_per_caller() {
        assert_eq!(
            comfy_name(&Caller::User("alice".into())),
            "comfyhost-user-alice"
        );
        assert_eq!(comfy_name(&Caller::Admin("x".into())), "comfyhost-admin");
        assert_eq!(comfy_name(&Caller::Anonymous), "comfyhost-anonymous");
    }
}
