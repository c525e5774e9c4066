//! Browser sessions (only the SHA-256 of a session id is stored, with its CSRF token) and
//! small host settings (JSON by key).

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{Store, StoreError};

/// A live session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRow {
    pub user_id: String,
    pub is_admin: bool,
    pub csrf: String,
    pub expires_ms: i64,
}

impl Store {
    pub fn create_session(&self, id_sha256: &str, row: &SessionRow) -> Result<(), StoreError> {
        let now = crate::now_ms();
        let conn = self.conn();
        conn.execute("DELETE FROM sessions WHERE expires_ms < ?1", [now])?;
        conn.execute(
            "INSERT INTO sessions (id_sha256, user_id, is_admin, csrf, created_ms, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id_sha256,
                row.user_id,
                i64::from(row.is_admin),
                row.csrf,
                now,
                row.expires_ms
            ],
        )?;
        Ok(())
    }

    /// The unexpired session with this id hash.
    pub fn session(&self, id_sha256: &str) -> Result<Option<SessionRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT user_id, is_admin, csrf, expires_ms FROM sessions
                 WHERE id_sha256 = ?1 AND expires_ms >= ?2",
                params![id_sha256, crate::now_ms()],
                |r| {
                    Ok(SessionRow {
                        user_id: r.get(0)?,
                        is_admin: r.get::<_, i64>(1)? != 0,
                        csrf: r.get(2)?,
                        expires_ms: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn delete_session(&self, id_sha256: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM sessions WHERE id_sha256 = ?1", [id_sha256])?;
        Ok(())
    }

    /// Ends every session of a user (deleted users are signed out at once).
    pub fn delete_user_sessions(&self, user_id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])?;
        Ok(())
    }

    /// Ends every session ("sign out everywhere" by an admin, or a new admin token).
    pub fn delete_all_sessions(&self) -> Result<(), StoreError> {
        self.conn().execute("DELETE FROM sessions", [])?;
        Ok(())
    }

    pub fn setting(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<String> = self
            .conn()
            .query_row(
                "SELECT value_json FROM settings WHERE key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    pub fn set_setting(&self, key: &str, value: &serde_json::Value) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO settings (key, value_json, updated_ms) VALUES (?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE SET value_json = excluded.value_json, updated_ms = excluded.updated_ms",
            params![key, value.to_string(), crate::now_ms()],
        )?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_settings_round_trip() {
        let s = Store::open_in_memory().unwrap();
        let live = SessionRow {
            user_id: "alice".into(),
            is_admin: false,
            csrf: "c1".into(),
            expires_ms: crate::now_ms() + 60_000,
        };
        s.create_session("h1", &live).unwrap();
        let old = SessionRow {
            expires_ms: 1,
            ..live.clone()
        };
        s.create_session("h2", &old).unwrap();
        assert_eq!(s.session("h1").unwrap().unwrap().csrf, "c1");
        assert!(s.session("h2").unwrap().is_none(), "expired");
        s.delete_user_sessions("alice").unwrap();
        assert!(s.session("h1").unwrap().is_none());
        assert!(s.setting("gpu").unwrap().is_none());
        s.set_setting("gpu", &serde_json::json!({"a": 1})).unwrap();
        s.set_setting("gpu", &serde_json::json!({"a": 2})).unwrap();
        assert_eq!(s.setting("gpu").unwrap().unwrap()["a"], 2);
    }
}
