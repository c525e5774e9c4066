//! Workshop users: an id, whether they are an admin, and the SHA-256 of their access token
//! (the token itself is shown once, at creation, and never stored).

use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::{Store, StoreError};

/// One user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRow {
    pub id: String,
    pub is_admin: bool,
    pub created_ms: i64,
}

impl UserRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            is_admin: r.get::<_, i64>(1)? != 0,
            created_ms: r.get(2)?,
        })
    }
}

impl Store {
    /// Creates a user; `Ok(false)` when the id (or token hash) is taken.
    pub fn create_user(
        &self,
        id: &str,
        token_sha256: &str,
        is_admin: bool,
    ) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "INSERT INTO users (id, token_sha256, is_admin, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
            params![id, token_sha256, i64::from(is_admin), crate::now_ms()],
        )?;
        Ok(n == 1)
    }

    /// The user whose token hashes to `token_sha256`.
    pub fn user_by_token_hash(&self, token_sha256: &str) -> Result<Option<UserRow>, StoreError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT id, is_admin, created_ms FROM users WHERE token_sha256 = ?1",
                [token_sha256],
                UserRow::from_row,
            )
            .optional()?)
    }

    /// All users, by id.
    pub fn users(&self) -> Result<Vec<UserRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id, is_admin, created_ms FROM users ORDER BY id")?;
        let rows = stmt
            .query_map([], UserRow::from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Deletes a user (their token stops working at once); `Ok(false)` when there was none.
    pub fn delete_user(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .execute("DELETE FROM users WHERE id = ?1", [id])?
            == 1)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn users_are_found_by_token_hash_and_ids_are_unique() {
        let s = Store::open_in_memory().unwrap();
        assert!(s.create_user("alice", "h1", false).unwrap());
        assert!(!s.create_user("alice", "h2", false).unwrap(), "id taken");
        assert!(!s.create_user("bob", "h1", false).unwrap(), "hash taken");
        assert!(s.create_user("root", "h3", true).unwrap());
        assert_eq!(s.user_by_token_hash("h1").unwrap().unwrap().id, "alice");
        assert!(s.user_by_token_hash("h3").unwrap().unwrap().is_admin);
        assert!(s.user_by_token_hash("nope").unwrap().is_none());
        assert_eq!(s.users().unwrap().len(), 2);
        assert!(s.delete_user("alice").unwrap());
        assert!(s.user_by_token_hash("h1").unwrap().is_none());
        assert!(!s.delete_user("alice").unwrap());
    }
}
