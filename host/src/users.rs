//! Who is asking: workshop users and the admin. A request is identified by an
//! `Authorization: Bearer <token>` header (scripts, API clients) or by a session cookie
//! (`comfyhost_session`) that `POST /comfyhost/api/session` sets after checking a token: an
//! HttpOnly, SameSite=Strict cookie holding a random session id (only its SHA-256 is stored,
//! with the session's CSRF token). Failed sign-ins are rate-limited per client address. The
//! user id of a submission comes from here, never from the request URL or body.

use axum::http::{HeaderMap, header};
use comfyhost_runtime::types::User;
use comfyhost_store::{Store, UserRow};
use sha2::{Digest, Sha256};

use crate::auth::AdminAuth;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "comfyhost_session";
/// Header carrying the session's CSRF token on state-changing requests.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts.
pub const SESSION_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// Id the admin token maps to.
pub const ADMIN_USER_ID: &str = "admin";

/// Errors of user management.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user id must be 1-64 characters of a-z, A-Z, 0-9, '.', '_' or '-'")]
    InvalidId,
    #[error("user {0:?} exists")]
    Exists(String),
    #[error("the id {ADMIN_USER_ID:?} is reserved for the admin token")]
    Reserved,
    #[error("storage: {0}")]
    Store(#[from] comfyhost_store::StoreError),
}

/// Why a sign-in failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("unknown token")]
    Invalid,
    #[error(
        "too many wrong tokens like this one from this address; try again in {retry_after_s} s"
    )]
    RateLimited { retry_after_s: u64 },
    #[error("storage: {0}")]
    Store(#[from] comfyhost_store::StoreError),
}

/// A new session: the cookie value and its CSRF token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: String,
    pub csrf: String,
    pub user: User,
}

/// How a request authenticated.
#[derive(Debug, Clone, PartialEq)]
pub enum Credential {
    /// `Authorization: Bearer` (not sent by browsers on their own: no CSRF check needed).
    Bearer(User),
    /// Session cookie, with the session's CSRF token.
    Session { user: User, csrf: String },
}

impl Credential {
    pub fn user(&self) -> &User {
        match self {
            Credential::Bearer(u) | Credential::Session { user: u, .. } => u,
        }
    }
}

/// Resolves tokens and sessions to users. Cheap to clone.
#[derive(Clone)]
pub struct Identity {
    admin: AdminAuth,
    store: Store,
    guesses: crate::guess_limit::GuessLimiter,
}

fn random_hex(bytes: usize) -> String {
    use rand::Rng;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    hex::encode(buf)
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A user id the host accepts: 1-64 characters of a-z, A-Z, 0-9, '.', '_' or '-', not the
/// admin's.
pub fn validate_id(id: &str) -> Result<(), UserError> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !valid {
        return Err(UserError::InvalidId);
    }
    if id == ADMIN_USER_ID {
        return Err(UserError::Reserved);
    }
    Ok(())
}

/// The bearer token of a request.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The session id a request's cookie carries.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.trim())
}

impl Identity {
    pub fn new(admin: AdminAuth, store: Store) -> Self {
        Self {
            admin,
            store,
            guesses: Default::default(),
        }
    }

    /// The user a token belongs to.
    pub fn user_for_token(&self, token: &str) -> Option<User> {
        if token.is_empty() {
            return None;
        }
        if self.admin.verify(token) {
            return Some(User {
                id: ADMIN_USER_ID.into(),
                is_admin: true,
            });
        }
        match self.store.user_by_token_hash(&token_hash(token)) {
            Ok(row) => row.map(|u| User {
                id: u.id,
                is_admin: u.is_admin,
            }),
            Err(e) => {
                tracing::error!(error = %e, "user lookup failed");
                None
            }
        }
    }

    /// Wrong bearer tokens on the admin API count like wrong sign-ins: `Some(retry_after_s)`
    /// when this address has guessed too often at this token. Call only for a token that did
    /// not verify.
    pub fn bearer_failed(&self, token: &str, client: &str) -> Option<u64> {
        if let Some(retry) = self.guesses.limited(client, token) {
            return Some(retry);
        }
        if self.guesses.failed(client, token) {
            tracing::warn!(client, "too many wrong bearer tokens from this address");
        }
        None
    }

    /// Ends every session (an admin's "sign out everywhere", or a new admin token).
    pub fn end_all_sessions(&self) -> Result<(), comfyhost_store::StoreError> {
        self.store.delete_all_sessions()
    }

    /// Ends every session of one user ("sign out everywhere" for a workshop user).
    pub fn end_user_sessions(&self, user_id: &str) -> Result<(), comfyhost_store::StoreError> {
        self.store.delete_user_sessions(user_id)
    }

    /// How a request authenticated; `None` for anonymous requests (or a bad credential).
    pub fn credential(&self, headers: &HeaderMap) -> Option<Credential> {
        if let Some(t) = bearer_token(headers) {
            return self.user_for_token(t).map(Credential::Bearer);
        }
        let id = session_cookie(headers)?;
        match self.store.session(&token_hash(id)) {
            Ok(Some(s)) => Some(Credential::Session {
                user: User {
                    id: s.user_id,
                    is_admin: s.is_admin,
                },
                csrf: s.csrf,
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::error!(error = %e, "session lookup failed");
                None
            }
        }
    }

    /// The user a request comes from; `None` for anonymous requests.
    pub fn identify(&self, headers: &HeaderMap) -> Option<User> {
        self.credential(headers).map(|c| c.user().clone())
    }

    /// Trades a token for a session. `client` keys the rate limit of failed attempts.
    pub fn login(&self, token: &str, client: &str) -> Result<NewSession, LoginError> {
        // A correct token always gets in; only wrong ones count, per address and token prefix.
        let Some(user) = self.user_for_token(token) else {
            if let Some(retry_after_s) = self.guesses.limited(client, token) {
                return Err(LoginError::RateLimited { retry_after_s });
            }
            self.guesses.failed(client, token);
            return Err(LoginError::Invalid);
        };
        let id = random_hex(32);
        let csrf = random_hex(16);
        self.store.create_session(
            &token_hash(&id),
            &comfyhost_store::SessionRow {
                user_id: user.id.clone(),
                is_admin: user.is_admin,
                csrf: csrf.clone(),
                expires_ms: comfyhost_store::now_ms() + SESSION_TTL_MS,
            },
        )?;
        Ok(NewSession { id, csrf, user })
    }

    /// Ends the session a request carries (if any).
    pub fn logout(&self, headers: &HeaderMap) {
        if let Some(id) = session_cookie(headers)
            && let Err(e) = self.store.delete_session(&token_hash(id))
        {
            tracing::error!(error = %e, "cannot end session");
        }
    }

    /// Creates a user and returns their token (shown once; only its hash is stored).
    pub fn create(&self, id: &str, is_admin: bool) -> Result<String, UserError> {
        validate_id(id)?;
        let token = random_hex(24);
        if !self.store.create_user(id, &token_hash(&token), is_admin)? {
            return Err(UserError::Exists(id.into()));
        }
        Ok(token)
    }

    pub fn list(&self) -> Result<Vec<UserRow>, UserError> {
        Ok(self.store.users()?)
    }

    /// Deletes a user and ends their sessions at once.
    pub fn delete(&self, id: &str) -> Result<bool, UserError> {
        let gone = self.store.delete_user(id)?;
        self.store.delete_user_sessions(id)?;
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity::new(
            AdminAuth::from_token("admin-token-0123456789"),
            Store::open_in_memory().unwrap(),
        )
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_tokens_and_session_cookies_map_to_users() {
        let id = identity();
        let token = id.create("student-1", false).unwrap();
        let by_bearer = headers(&[("authorization", &format!("Bearer {token}"))]);
        assert!(!id.identify(&by_bearer).unwrap().is_admin);
        let admin = headers(&[("authorization", "Bearer admin-token-0123456789")]);
        let admin = id.identify(&admin).unwrap();
        assert!(admin.is_admin && admin.id == ADMIN_USER_ID);
        let session = id.login(&token, "10.0.0.1").unwrap();
        let by_cookie = headers(&[(
            "cookie",
            &format!("theme=dark; comfyhost_session={}", session.id),
        )]);
        match id.credential(&by_cookie).unwrap() {
            Credential::Session { user, csrf } => {
                assert_eq!(user.id, "student-1");
                assert_eq!(csrf, session.csrf);
            }
            other => panic!("{other:?}"),
        }
        // The raw token is not a session id.
        let raw = headers(&[("cookie", &format!("comfyhost_session={token}"))]);
        assert!(id.identify(&raw).is_none());
        id.logout(&by_cookie);
        assert!(id.identify(&by_cookie).is_none());
        assert!(id.identify(&HeaderMap::new()).is_none());
        // Ids only from credentials: a `Comfy-User` header or URL means nothing here.
        assert!(
            id.identify(&headers(&[("comfy-user", "student-1")]))
                .is_none()
        );
    }

    #[test]
    fn failed_sign_ins_are_rate_limited_without_locking_out_a_correct_token() {
        let id = identity();
        let token = id.create("s", false).unwrap();
        for _ in 0..crate::guess_limit::FAILURES_ALLOWED {
            assert!(matches!(
                id.login("wrong", "1.2.3.4"),
                Err(LoginError::Invalid)
            ));
        }
        // The same guess again waits now...
        assert!(matches!(
            id.login("wrong", "1.2.3.4"),
            Err(LoginError::RateLimited { .. })
        ));
        // ...but the right token, from the same address (a class behind one NAT), gets in.
        assert!(id.login(&token, "1.2.3.4").is_ok());
        assert!(id.login(&token, "5.6.7.8").is_ok());
    }

    #[test]
    fn deleting_a_user_ends_their_sessions() {
        let id = identity();
        let token = id.create("gone", false).unwrap();
        let s = id.login(&token, "a").unwrap();
        id.delete("gone").unwrap();
        let h = headers(&[("cookie", &format!("comfyhost_session={}", s.id))]);
        assert!(id.identify(&h).is_none());
    }

    #[test]
    fn bad_reserved_and_duplicate_ids_are_refused() {
        let id = identity();
        assert!(matches!(id.create("", false), Err(UserError::InvalidId)));
        assert!(matches!(id.create("a b", false), Err(UserError::InvalidId)));
        assert!(matches!(
            id.create("admin", false),
            Err(UserError::Reserved)
        ));
        id.create("bob", false).unwrap();
        assert!(matches!(id.create("bob", true), Err(UserError::Exists(_))));
        assert!(id.delete("bob").unwrap());
        assert_eq!(id.list().unwrap().len(), 0);
    }
}
