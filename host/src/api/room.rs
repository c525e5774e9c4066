//! The room's admin settings (admin only): per-user limits (`GET`/`PUT /limits`), quarantined
//! workflows (`GET /quarantine`, `DELETE /quarantine/{sha256}` to release one) and bulk user
//! creation (`POST /users/bulk`: a count with a prefix, or a list of names; the tokens are in
//! the answer only, once).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::routes::Routes;
use crate::state::AppState;
use crate::user_limits::{LimitSettings, SETTING};

/// Most users one bulk call creates.
const MAX_BULK: usize = 500;

pub fn routes() -> Routes<AppState> {
    Routes::new()
        .get("/limits", get_limits)
        .put("/limits", put_limits)
        .get("/quarantine", quarantine)
        .delete("/quarantine/{sha256}", release)
        .post("/users/bulk", bulk_users)
}

fn limits_of(s: &AppState) -> LimitSettings {
    crate::user_limits::UserLimits::new(s.store.clone()).settings()
}

async fn get_limits(State(s): State<AppState>) -> Json<Value> {
    Json(json!({"limits": limits_of(&s), "defaults": LimitSettings::default()}))
}

async fn put_limits(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let limits: LimitSettings = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "limits are {{\"max_queued\", \"max_per_minute\", \"max_nodes\"}}, each a whole \
             number (0 = no limit): {e}"
        ))
    })?;
    s.store
        .set_setting(SETTING, &json!(limits))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    s.activity(&s.actor(&headers), "limits.set", "", json!(limits));
    Ok(Json(json!({"limits": limits})))
}

async fn quarantine(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    let rows = s
        .store
        .quarantined_workflows()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(json!(rows)))
}

async fn release(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(sha256): Path<String>,
) -> Result<StatusCode, ApiError> {
    let released = s
        .store
        .release_workflow(&sha256)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !released {
        return Err(ApiError::NotFound(format!(
            "no quarantined workflow {sha256}"
        )));
    }
    s.activity(&s.actor(&headers), "workflow.released", &sha256, json!({}));
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Bulk {
    /// `count` users named `<prefix>01`, `<prefix>02`, ... (existing names are skipped).
    #[serde(default)]
    count: Option<usize>,
    #[serde(default)]
    prefix: Option<String>,
    /// Or these names.
    #[serde(default)]
    names: Option<Vec<String>>,
}

/// The ids a bulk request asks for, or why it cannot be done.
fn bulk_ids(b: &Bulk, exists: impl Fn(&str) -> bool) -> Result<Vec<String>, String> {
    let ids: Vec<String> = match (&b.names, b.count) {
        (Some(names), None) => {
            let mut ids: Vec<String> = names
                .iter()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect();
            let mut seen = std::collections::HashSet::new();
            if let Some(dup) = ids.iter().find(|n| !seen.insert(n.as_str())) {
                return Err(format!("{dup:?} is listed twice"));
            }
            if let Some(taken) = ids.iter().find(|n| exists(n)) {
                return Err(format!("user {taken:?} exists"));
            }
            ids.truncate(MAX_BULK + 1);
            ids
        }
        (None, Some(count)) => {
            if count == 0 || count > MAX_BULK {
                return Err(format!("count must be 1 to {MAX_BULK}"));
            }
            let prefix = b.prefix.as_deref().unwrap_or("student").trim();
            let width = count.to_string().len().max(2);
            let mut ids = Vec::with_capacity(count);
            let mut n = 1;
            while ids.len() < count {
                let id = format!("{prefix}{n:0width$}");
                if !exists(&id) {
                    ids.push(id);
                }
                n += 1;
            }
            ids
        }
        _ => return Err("send either {\"count\", \"prefix\"} or {\"names\": [...]}".into()),
    };
    if ids.is_empty() {
        return Err("no names given".into());
    }
    if ids.len() > MAX_BULK {
        return Err(format!("at most {MAX_BULK} users per call"));
    }
    Ok(ids)
}

async fn bulk_users(
    State(s): State<AppState>,
    headers: HeaderMap,
    Json(b): Json<Bulk>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let existing: std::collections::HashSet<String> =
        s.identity.list()?.into_iter().map(|u| u.id).collect();
    let ids = bulk_ids(&b, |id| existing.contains(id)).map_err(ApiError::BadRequest)?;
    // Every name is checked before any is created, so a bad name creates nobody.
    for id in &ids {
        if let Err(e) = crate::users::validate_id(id) {
            return Err(ApiError::BadRequest(format!("{id:?}: {e}")));
        }
    }
    let mut created = Vec::with_capacity(ids.len());
    for id in &ids {
        let token = s.identity.create(id, false)?;
        created.push(json!({"id": id, "token": token}));
    }
    s.activity(
        &s.actor(&headers),
        "user.create_bulk",
        "",
        json!({"count": created.len(), "ids": ids}),
    );
    tracing::info!(count = created.len(), "users created in bulk");
    Ok((StatusCode::CREATED, Json(json!({"users": created}))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_names_and_counts() {
        let none = |_: &str| false;
        let b = Bulk {
            count: Some(3),
            prefix: Some("s".into()),
            names: None,
        };
        assert_eq!(bulk_ids(&b, none).unwrap(), ["s01", "s02", "s03"]);
        let taken = |id: &str| id == "s02";
        assert_eq!(bulk_ids(&b, taken).unwrap(), ["s01", "s03", "s04"]);
        let b = Bulk {
            count: None,
            prefix: None,
            names: Some(vec!["ann".into(), " bob ".into(), "".into()]),
        };
        assert_eq!(bulk_ids(&b, none).unwrap(), ["ann", "bob"]);
        assert!(bulk_ids(&b, |id| id == "bob").is_err());
        let dup = Bulk {
            count: None,
            prefix: None,
            names: Some(vec!["a".into(), "a".into()]),
        };
        assert!(bulk_ids(&dup, none).is_err());
        let both = Bulk {
            count: Some(1),
            prefix: None,
            names: Some(vec!["a".into()]),
        };
        assert!(bulk_ids(&both, none).is_err());
        let too_many = Bulk {
            count: Some(MAX_BULK + 1),
            prefix: None,
            names: None,
        };
        assert!(bulk_ids(&too_many, none).is_err());
    }
}
