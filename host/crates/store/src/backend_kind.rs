//! The kind of a remote backend, one serde enum for the whole host: the hook contract's
//! `BackendStatus`, the remote runner's dispatch and the `remote_jobs.kind` column.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};

/// Where a remote job runs: a remote ComfyUI of the pool, or a serverless endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    #[default]
    Comfyui,
    Serverless,
}

impl BackendKind {
    /// The name as stored and as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Comfyui => "comfyui",
            Self::Serverless => "serverless",
        }
    }

    /// The kind named `s` (`comfyui`, `serverless`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "comfyui" => Some(Self::Comfyui),
            "serverless" => Some(Self::Serverless),
            _ => None,
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ToSql for BackendKind {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for BackendKind {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = value.as_str()?;
        Self::parse(s)
            .ok_or_else(|| FromSqlError::Other(format!("unknown backend kind {s:?}").into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_and_sql_names_agree() {
        for k in [BackendKind::Comfyui, BackendKind::Serverless] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
            assert_eq!(BackendKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(BackendKind::parse("lambda"), None);
    }
}
