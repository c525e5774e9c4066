//! Admin authentication for the host API: the admin token (bearer) and admin sessions.
//!
//! The token comes from `COMFYHOST_ADMIN_TOKEN` / `--admin-token`, or is generated at first
//! start, printed once on stderr, and only its SHA-256 is stored (`<data-dir>/admin-token.sha256`).
//! There is no default password.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::users::{CSRF_HEADER, Credential, Identity};

/// Verifies admin tokens.
#[derive(Clone)]
pub struct AdminAuth {
    token_sha256: [u8; 32],
}

/// What [`AdminAuth::load_or_create`] did, so `main` can print a new token once.
pub enum TokenOrigin {
    Configured,
    Stored,
    Generated(String),
}

impl AdminAuth {
    pub fn from_token(token: &str) -> Self {
        Self {
            token_sha256: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Use the configured token, else the stored hash, else generate one.
    pub fn load_or_create(
        configured: Option<&str>,
        data_dir: &Path,
    ) -> anyhow::Result<(Self, TokenOrigin)> {
        use anyhow::Context;
        if let Some(t) = configured.filter(|t| !t.is_empty()) {
            anyhow::ensure!(
                t.len() >= 16,
                "the admin token must be at least 16 characters"
            );
            return Ok((Self::from_token(t), TokenOrigin::Configured));
        }
        let path = data_dir.join("admin-token.sha256");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let bytes = hex::decode(text.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .with_context(|| {
                    format!(
                        "{} is corrupt; delete it to get a new token",
                        path.display()
                    )
                })?;
            return Ok((
                Self {
                    token_sha256: bytes,
                },
                TokenOrigin::Stored,
            ));
        }
        let token: String = {
            use rand::Rng;
            let bytes: [u8; 24] = rand::rng().random();
            hex::encode(bytes)
        };
        let auth = Self::from_token(&token);
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        std::fs::write(&path, hex::encode(auth.token_sha256))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok((auth, TokenOrigin::Generated(token)))
    }

    /// Hex SHA-256 of the admin token (what is stored; never the token).
    pub fn fingerprint(&self) -> String {
        hex::encode(self.token_sha256)
    }

    /// When the admin token differs from the one the store last saw (it was rotated), every
    /// session signed in with the old one ends. Returns whether sessions were ended.
    pub fn end_sessions_if_rotated(
        &self,
        store: &comfyhost_store::Store,
    ) -> Result<bool, comfyhost_store::StoreError> {
        const KEY: &str = "admin_token_sha256";
        let now = serde_json::Value::String(self.fingerprint());
        let before = store.setting(KEY)?;
        let rotated = before.as_ref().is_some_and(|b| *b != now);
        if rotated {
            store.delete_user_sessions(crate::users::ADMIN_USER_ID)?;
        }
        if before.as_ref() != Some(&now) {
            store.set_setting(KEY, &now)?;
        }
        Ok(rotated)
    }

    /// Constant-time comparison of a presented token's hash.
    pub fn verify(&self, presented: &str) -> bool {
        let h: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        h.iter()
            .zip(self.token_sha256.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// Whether the request carries the session's CSRF token in `X-CSRF-Token` (compared in
/// constant time).
pub fn csrf_ok(headers: &HeaderMap, csrf: &str) -> bool {
    let presented = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    presented.len() == csrf.len()
        && presented
            .bytes()
            .zip(csrf.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Middleware for admin-only routes. Accepted: `Authorization: Bearer <admin token>` (or an
/// admin user's token), or an admin's session cookie; with a cookie, every state-changing
/// request must also carry the session's CSRF token in `X-CSRF-Token`. Anonymous requests get
/// 401, signed-in non-admins 403.
pub async fn require_admin(State(identity): State<Identity>, req: Request, next: Next) -> Response {
    let Some(cred) = identity.credential(req.headers()) else {
        if let Some(token) = crate::users::bearer_token(req.headers()) {
            let client = req
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_default();
            if let Some(retry) = identity.bearer_failed(token, &client) {
                let mut resp = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    &format!(
                        "too many wrong tokens like this one from this address; try again in \
                         {retry} s (a correct token is never refused)"
                    ),
                );
                if let Ok(v) = header::HeaderValue::from_str(&retry.to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
                return resp;
            }
        }
        let message = if req.headers().contains_key(header::AUTHORIZATION) {
            "invalid token"
        } else {
            "sign in first (POST /comfyhost/api/session) or send Authorization: Bearer <admin token>"
        };
        return error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    };
    if !cred.user().is_admin {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "admins only: workshop users can use ComfyUI but not change the host",
        );
    }
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if let Credential::Session { csrf, .. } = &cred
        && !safe
        && !csrf_ok(req.headers(), csrf)
    {
        return error(
            StatusCode::FORBIDDEN,
            "csrf",
            "missing or wrong X-CSRF-Token for a signed-in change",
        );
    }
    next.run(req).await
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": {"type": kind, "message": message}})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_token_is_stored_hashed_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, origin) = AdminAuth::load_or_create(None, dir.path()).unwrap();
        let TokenOrigin::Generated(token) = origin else {
            panic!("expected a new token")
        };
        assert!(auth.verify(&token));
        assert!(!auth.verify("wrong"));
        let stored = std::fs::read_to_string(dir.path().join("admin-token.sha256")).unwrap();
        assert!(!stored.contains(&token));
        let (again, origin) = AdminAuth::load_or_create(None, dir.path()).unwrap();
        assert!(matches!(origin, TokenOrigin::Stored));
        assert!(again.verify(&token));
    }

    #[test]
    fn a_new_admin_token_ends_the_old_admin_sessions() {
        let store = comfyhost_store::Store::open_in_memory().unwrap();
        let row = |user: &str| comfyhost_store::SessionRow {
            user_id: user.into(),
            is_admin: true,
            csrf: "c".into(),
            expires_ms: comfyhost_store::now_ms() + 60_000,
        };
        let old = AdminAuth::from_token("old-admin-token-0123");
        assert!(!old.end_sessions_if_rotated(&store).unwrap(), "first start");
        store.create_session("s-admin", &row("admin")).unwrap();
        store.create_session("s-teacher", &row("teacher")).unwrap();
        assert!(!old.end_sessions_if_rotated(&store).unwrap(), "same token");
        assert!(store.session("s-admin").unwrap().is_some());
        let new = AdminAuth::from_token("new-admin-token-0123");
        assert!(new.end_sessions_if_rotated(&store).unwrap());
        assert!(store.session("s-admin").unwrap().is_none());
        assert!(
            store.session("s-teacher").unwrap().is_some(),
            "an admin user's own token did not change"
        );
    }

    #[test]
    fn configured_token_wins_and_short_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (auth, _) = AdminAuth::load_or_create(Some("0123456789abcdef"), dir.path()).unwrap();
        assert!(auth.verify("0123456789abcdef"));
        assert!(AdminAuth::load_or_create(Some("short"), dir.path()).is_err());
    }
}
