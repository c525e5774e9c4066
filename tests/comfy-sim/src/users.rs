//! ComfyUI's `UserManager` (`app/user_manager.py`): which user directory a request reads and
//! writes. Without `--multi-user` every request is user `default`; with it the users are the
//! ones in `<user-directory>/users.json` (empty when the file is missing) and the request
//! header `comfy-user` picks one. A missing header means `default`, which must then be in
//! `users.json` too. Unknown users and "system" users (`__` prefix) are refused.

use std::path::PathBuf;
use std::sync::Mutex;

use axum::http::HeaderMap;
use serde_json::{Map, Value};

/// User ids that start with this are ComfyUI's own (`folder_paths.SYSTEM_USER_PREFIX`).
pub const SYSTEM_USER_PREFIX: &str = "__";

/// The request named a user ComfyUI does not know (`KeyError("Unknown user: ...")`).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("Unknown user: {0}")]
pub struct UnknownUser(pub String);

/// Why `POST /users` refused a name (the `{"error": ...}` text).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AddUserError {
    #[error("Duplicate username.")]
    Duplicate,
    #[error("username not provided")]
    Empty,
    #[error("System User prefix not allowed")]
    SystemPrefix,
    #[error("cannot write users.json")]
    Write,
}

/// The registered users, `{id: name}` in registration order.
pub struct Users {
    multi_user: bool,
    file: PathBuf,
    users: Mutex<Map<String, Value>>,
}

impl Users {
    /// Loads the users like `UserManager.__init__`.
    pub fn load(multi_user: bool, user_dir: PathBuf) -> Self {
        let file = user_dir.join("users.json");
        let users = if multi_user {
            std::fs::read(&file)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default()
        } else {
            let mut m = Map::new();
            m.insert("default".into(), Value::String("default".into()));
            m
        };
        Self {
            multi_user,
            file,
            users: Mutex::new(users),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Map<String, Value>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the simulator runs with `--multi-user`.
    pub fn multi_user(&self) -> bool {
        self.multi_user
    }

    /// `get_request_user_id`: the user whose directory a request uses.
    pub fn request_user(&self, headers: &HeaderMap) -> Result<String, UnknownUser> {
        let mut user = "default".to_string();
        if self.multi_user
            && let Some(v) = headers.get("comfy-user")
        {
            user = String::from_utf8_lossy(v.as_bytes()).into_owned();
            if user.starts_with(SYSTEM_USER_PREFIX) {
                return Err(UnknownUser(user));
            }
        }
        if !self.lock().contains_key(&user) {
            return Err(UnknownUser(user));
        }
        Ok(user)
    }

    /// A copy of `{id: name}`.
    pub fn all(&self) -> Map<String, Value> {
        self.lock().clone()
    }

    /// `add_user`: registers `name` and answers its new id (`<name with odd characters as
    /// '-'>_<uuid4>`), saved to `users.json`.
    pub fn add(&self, name: &str) -> Result<String, AddUserError> {
        let mut users = self.lock();
        if users.values().any(|v| v.as_str() == Some(name)) {
            return Err(AddUserError::Duplicate);
        }
        let name = name.trim();
        if name.is_empty() {
            return Err(AddUserError::Empty);
        }
        if name.starts_with(SYSTEM_USER_PREFIX) {
            return Err(AddUserError::SystemPrefix);
        }
        let mut id = String::new();
        let mut in_run = false;
        for c in name.chars() {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                id.push(c);
                in_run = false;
            } else if !in_run {
                id.push('-');
                in_run = true;
            }
        }
        if id.starts_with(SYSTEM_USER_PREFIX) {
            return Err(AddUserError::SystemPrefix);
        }
        let id = format!("{id}_{}", uuid::Uuid::new_v4());
        users.insert(id.clone(), Value::String(name.to_string()));
        let json = serde_json::to_vec(&*users).map_err(|_| AddUserError::Write)?;
        std::fs::write(&self.file, json).map_err(|_| AddUserError::Write)?;
        Ok(id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn header(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("comfy-user", v.parse().unwrap());
        h
    }

    #[test]
    fn single_user_ignores_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let u = Users::load(false, dir.path().into());
        assert_eq!(u.request_user(&header("x")).unwrap(), "default");
    }

    #[test]
    fn multi_user_needs_registered_users_and_persists_them() {
        let dir = tempfile::tempdir().unwrap();
        let u = Users::load(true, dir.path().into());
        assert_eq!(
            u.request_user(&HeaderMap::new()),
            Err(UnknownUser("default".into()))
        );
        let id = u.add("Alice Smith!").unwrap();
        assert!(id.starts_with("Alice-Smith-_"), "{id}");
        assert_eq!(u.request_user(&header(&id)).unwrap(), id);
        assert_eq!(u.add("Alice Smith!"), Err(AddUserError::Duplicate));
        assert_eq!(u.add("  "), Err(AddUserError::Empty));
        assert_eq!(u.add("__sys"), Err(AddUserError::SystemPrefix));
        assert!(u.request_user(&header("__sys")).is_err());
        let again = Users::load(true, dir.path().into());
        assert!(again.all().contains_key(&id));
    }
}
