//! Versioned schema migrations. Each migration runs once, in order, inside a transaction, and
//! is recorded in `schema_migrations`. Never edit a released migration; append a new one.

use rusqlite::Connection;

use crate::StoreError;

/// `(version, SQL)`, strictly increasing.
pub const MIGRATIONS: &[(u32, &str)] = &[
    (
        1,
        r#"
CREATE TABLE plugins (
    id               TEXT PRIMARY KEY NOT NULL,
    enabled          INTEGER NOT NULL DEFAULT 1,
    config_json      TEXT,
    grants_json      TEXT,
    installed_version TEXT,
    previous_version TEXT,
    updated_at       INTEGER NOT NULL
);
CREATE TABLE plugin_kv (
    plugin_id TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     BLOB NOT NULL,
    PRIMARY KEY (plugin_id, key)
) WITHOUT ROWID;
CREATE TABLE activity (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms       INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    detail_json TEXT NOT NULL
);
CREATE INDEX activity_ts ON activity (ts_ms);
CREATE TABLE jobs (
    prompt_id              TEXT PRIMARY KEY NOT NULL,
    client_id              TEXT,
    user_id                TEXT,
    route                  TEXT,
    backend                TEXT,
    status                 TEXT NOT NULL,
    submitted_ms           INTEGER NOT NULL,
    started_ms             INTEGER,
    finished_ms            INTEGER,
    error_json             TEXT,
    workflow_json          TEXT,
    original_workflow_json TEXT
);
CREATE INDEX jobs_submitted ON jobs (submitted_ms);
CREATE INDEX jobs_user ON jobs (user_id, submitted_ms);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE users (
    id           TEXT PRIMARY KEY NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    is_admin     INTEGER NOT NULL DEFAULT 0,
    created_ms   INTEGER NOT NULL
);
CREATE TABLE remote_jobs (
    prompt_id    TEXT PRIMARY KEY NOT NULL,
    kind         TEXT NOT NULL,
    backend      TEXT NOT NULL,
    remote_id    TEXT,
    client_id    TEXT,
    user_id      TEXT,
    number       REAL NOT NULL,
    state        TEXT NOT NULL,
    request_json TEXT NOT NULL,
    history_json TEXT,
    updated_ms   INTEGER NOT NULL
);
CREATE INDEX remote_jobs_state ON remote_jobs (state);
CREATE TABLE sessions (
    id_sha256  TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL,
    is_admin   INTEGER NOT NULL,
    csrf       TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE TABLE settings (
    key        TEXT PRIMARY KEY NOT NULL,
    value_json TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
"#,
    ),
    (
        3,
        r#"
CREATE TABLE output_files (
    rel_path        TEXT PRIMARY KEY NOT NULL,
    prompt_id       TEXT,
    user_id         TEXT,
    size            INTEGER NOT NULL,
    modified_ms     INTEGER NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT,
    enqueued_ms     INTEGER NOT NULL,
    done_ms         INTEGER
) WITHOUT ROWID;
CREATE INDEX output_files_due ON output_files (state, next_attempt_ms);
"#,
    ),
    (
        4,
        r#"
CREATE TABLE quarantined_workflows (
    workflow_sha256 TEXT PRIMARY KEY NOT NULL,
    prompt_id       TEXT NOT NULL,
    user_id         TEXT,
    reason          TEXT NOT NULL,
    nodes           INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    ),
    // Issue 21: trusted plugin signing keys, and the decisions of shadow plugins.
    (
        5,
        r#"
CREATE TABLE trust_keys (
    key_id     TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    public_key TEXT NOT NULL,
    added_ms   INTEGER NOT NULL
);
CREATE TABLE plugin_signers (
    plugin_id TEXT PRIMARY KEY NOT NULL,
    key_id    TEXT
);
CREATE TABLE shadow_decisions (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    plugin_id    TEXT NOT NULL,
    prompt_id    TEXT NOT NULL,
    hook         TEXT NOT NULL,
    ts_ms        INTEGER NOT NULL,
    active_json  TEXT NOT NULL,
    shadow_json  TEXT NOT NULL,
    agreed       INTEGER NOT NULL,
    fault        TEXT,
    latency_ms   INTEGER NOT NULL
);
CREATE INDEX shadow_decisions_plugin ON shadow_decisions (plugin_id, seq);
"#,
    ),
    (
        6,
        r#"
ALTER TABLE jobs ADD COLUMN transform_notes_json TEXT;
"#,
    ),
];

/// Highest version this build knows.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map(|(v, _)| *v).unwrap_or(0)
}

/// Version recorded in the database (0 for a fresh one).
pub fn current_version(conn: &Connection) -> Result<u32, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY NOT NULL,
            applied_ms INTEGER NOT NULL
        );",
    )?;
    let v: Option<u32> = conn.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
        r.get(0)
    })?;
    Ok(v.unwrap_or(0))
}

/// Applies every migration newer than the database's version. Refuses a database written by a
/// newer build rather than guessing.
pub fn apply(conn: &mut Connection) -> Result<u32, StoreError> {
    let current = current_version(conn)?;
    let latest = latest_version();
    if current > latest {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: latest,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_ms) VALUES (?1, ?2)",
            rusqlite::params![version, crate::now_ms()],
        )?;
        tx.commit()?;
        tracing::info!(version, "applied store migration");
    }
    Ok(latest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fresh_database_reaches_latest_version_and_reapply_is_noop() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(current_version(&conn).unwrap(), 0);
        assert_eq!(apply(&mut conn).unwrap(), latest_version());
        assert_eq!(current_version(&conn).unwrap(), latest_version());
        // second run applies nothing and does not fail on existing tables
        apply(&mut conn).unwrap();
        let n: u32 = conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n as usize, MIGRATIONS.len());
        for table in ["plugins", "plugin_kv", "activity", "jobs", "output_files"] {
            let found: u32 = conn
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name=?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(found, 1, "table {table} missing");
        }
    }

    #[test]
    fn newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations (version, applied_ms) VALUES (999, 0)",
            [],
        )
        .unwrap();
        let err = apply(&mut conn).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 999, .. }),
            "{err}"
        );
    }

    #[test]
    fn versions_strictly_increase() {
        for w in MIGRATIONS.windows(2) {
            assert!(w[0].0 < w[1].0);
        }
    }
}
