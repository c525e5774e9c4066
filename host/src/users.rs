//! Who is asking: workshop users and the admin, identified by an access token that the
//! browser presents as a cookie (`comfyhost_token`, set by `POST /comfyhost/api/session`) or an
//! `Authorization: Bearer` header. The user id of a submission comes from here, never from the
//! request URL or body.

use axum::http::{HeaderMap, header};
use comfyhost_runtime::types::User;
use comfyhost_store::{Store, UserRow};
use sha2::{Digest, Sha256};

use crate::auth::AdminAuth;

/// Name of the cookie that carries a user's token.
pub const TOKEN_COOKIE: &str = "comfyhost_token";
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

/// Resolves tokens to users. Cheap to clone.
#[derive(Clone)]
pub struct Identity {
    admin: AdminAuth,
    store: Store,
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The token a request carries: the bearer header first, then the cookie.
pub fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(t) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(t.trim());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == TOKEN_COOKIE)
        .map(|(_, v)| v.trim())
}

impl Identity {
    pub fn new(admin: AdminAuth, store: Store) -> Self {
        Self { admin, store }
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

    /// The user a request comes from; `None` for anonymous requests.
    pub fn identify(&self, headers: &HeaderMap) -> Option<User> {
        presented_token(headers).and_then(|t| self.user_for_token(t))
    }

    /// Creates a user and returns their token (shown once; only its hash is stored).
    pub fn create(&self, id: &str, is_admin: bool) -> Result<String, UserError> {
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
        let token = {
            use rand::Rng;
            let bytes: [u8; 24] = rand::rng().random();
            hex::encode(bytes)
        };
        if !self.store.create_user(id, &token_hash(&token), is_admin)? {
            return Err(UserError::Exists(id.into()));
        }
        Ok(token)
    }

    pub fn list(&self) -> Result<Vec<UserRow>, UserError> {
        Ok(self.store.users()?)
    }

    pub fn delete(&self, id: &str) -> Result<bool, UserError> {
        Ok(self.store.delete_user(id)?)
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
    fn tokens_from_cookie_or_bearer_map_to_users() {
        let id = identity();
        let token = id.create("student-1", false).unwrap();
        let by_cookie = headers(&[("cookie", &format!("theme=dark; comfyhost_token={token}"))]);
        assert_eq!(id.identify(&by_cookie).unwrap().id, "student-1");
        let by_bearer = headers(&[("authorization", &format!("Bearer {token}"))]);
        assert!(!id.identify(&by_bearer).unwrap().is_admin);
        let admin = headers(&[("authorization", "Bearer admin-token-0123456789")]);
        let admin = id.identify(&admin).unwrap();
        assert!(admin.is_admin && admin.id == ADMIN_USER_ID);
        assert!(
            id.identify(&headers(&[("cookie", "comfyhost_token=nope")]))
                .is_none()
        );
        assert!(id.identify(&HeaderMap::new()).is_none());
        // Ids only from tokens: a `Comfy-User` header or URL means nothing here.
        assert!(
            id.identify(&headers(&[("comfy-user", "student-1")]))
                .is_none()
        );
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
