//! Workshop rules: who may see and control which prompts. Every prompt the host records
//! carries the user who submitted it (or none, for an anonymous visitor); a caller sees and
//! controls only prompts with the same owner. Admins see and control everything, and the
//! admin setting `isolation: false` relaxes the rules for a trusted room. Anonymous visitors
//! are one more "user": they never see named users' work. Prompts the host has no record of
//! belong to no one, so only admins see them.
//!
//! The route handlers in [`crate::comfy_routes`] ask this module; the filters over ComfyUI's
//! JSON shapes live in [`views`], the sign-in gate and page in [`gate`], and the checks of
//! `POST /prompt` bodies in [`body_check`], per-user saved workflows and settings (ComfyUI's
//! `--multi-user`) in [`comfy_users`].

pub mod announced_files;
pub mod body_check;
pub mod client_ids;
pub mod comfy_users;
pub mod files;
pub mod gate;
pub mod settings;
pub mod views;

use axum::response::{IntoResponse, Response};
use comfyhost_protocol::ComfyErrorBody;
use comfyhost_runtime::types::User;
use comfyhost_store::Store;
use http::{HeaderMap, StatusCode};

use crate::users::Identity;
pub use settings::{Effective, WorkshopSettings};

/// Who is asking, as the ownership rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin(String),
    User(String),
    Anonymous,
}

impl Caller {
    pub fn from_user(user: Option<&User>) -> Self {
        match user {
            Some(u) if u.is_admin => Caller::Admin(u.id.clone()),
            Some(u) => Caller::User(u.id.clone()),
            None => Caller::Anonymous,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Caller::Admin(_))
    }

    /// The owner a job submitted by this caller records (`None`: anonymous).
    pub fn owner_id(&self) -> Option<&str> {
        match self {
            Caller::Admin(id) | Caller::User(id) => Some(id),
            Caller::Anonymous => None,
        }
    }
}

/// Ownership checks against the host's job records. Cheap to clone.
#[derive(Clone)]
pub struct Isolation {
    identity: Identity,
    store: Store,
    client_ids: client_ids::ClientIds,
    announced: announced_files::AnnouncedFiles,
}

impl Isolation {
    pub fn new(identity: Identity, store: Store) -> Self {
        Self {
            identity,
            store,
            client_ids: client_ids::ClientIds::default(),
            announced: announced_files::AnnouncedFiles::default(),
        }
    }

    /// The files ComfyUI announced per prompt; also the proxy tap that records them.
    pub fn announced_files(&self) -> announced_files::AnnouncedFiles {
        self.announced.clone()
    }

    /// Claims a client id for the caller; whether the caller may use it (always, with
    /// isolation off).
    pub fn claim_client_id(&self, client_id: &str, caller: &Caller) -> bool {
        self.client_ids.claim(client_id, caller) || !self.settings().isolation
    }

    /// Whether a socket may use a client id: signed-in callers claim it, anonymous sockets
    /// only use what no one claimed (or their anonymous peers did).
    pub fn socket_client_id(&self, client_id: &str, caller: &Caller) -> bool {
        let ok = match caller {
            Caller::Anonymous => self.client_ids.allowed(client_id, caller),
            _ => self.client_ids.claim(client_id, caller),
        };
        ok || !self.settings().isolation
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The settings in effect now.
    pub fn settings(&self) -> Effective {
        let users_exist = match self.store.users() {
            Ok(u) => !u.is_empty(),
            Err(e) => {
                tracing::error!(error = %e, "cannot list users; assuming some exist");
                true
            }
        };
        WorkshopSettings::load(&self.store).effective(users_exist)
    }

    /// The caller of a request, and the scope the rules give it.
    pub fn scope(&self, headers: &HeaderMap) -> Scope {
        let caller = Caller::from_user(self.identity.identify(headers).as_ref());
        let all = caller.is_admin() || !self.settings().isolation;
        Scope {
            caller,
            all,
            store: self.store.clone(),
            announced: self.announced.clone(),
        }
    }
}

/// One request's view: a caller and whether it sees everything.
#[derive(Clone)]
pub struct Scope {
    pub caller: Caller,
    /// Admin, or isolation is off.
    pub all: bool,
    store: Store,
    announced: announced_files::AnnouncedFiles,
}

impl Scope {
    /// Who owns a prompt: `None` when the host has no record of it, `Some(None)` anonymous.
    fn owner(&self, prompt_id: &str) -> Option<Option<String>> {
        match self.store.job_owner(prompt_id) {
            Ok(Some(owner)) => return Some(owner),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(prompt_id, error = %e, "job owner lookup failed");
                return None;
            }
        }
        match self.store.remote_job(prompt_id) {
            Ok(Some(row)) => Some(row.user_id),
            _ => None,
        }
    }

    /// Whether the caller may see the file a `/view` request names (files tied to no known
    /// prompt: yes).
    pub fn may_view(&self, filename: &str, subfolder: &str, folder_type: &str) -> bool {
        if self.all {
            return true;
        }
        let prompt = self
            .announced
            .prompt_of(folder_type, subfolder, filename)
            .or_else(|| files::prompt_of(&self.store, filename, subfolder, folder_type));
        match prompt {
            Some(prompt_id) => self.owns(&prompt_id),
            None => true,
        }
    }

    /// Whether the caller may see and control this prompt.
    pub fn owns(&self, prompt_id: &str) -> bool {
        if self.all {
            return true;
        }
        match self.owner(prompt_id) {
            Some(owner) => owner.as_deref() == self.caller.owner_id(),
            None => false,
        }
    }

    /// Whether the prompt id is already taken by another caller's prompt (prompt ids are
    /// unique per host; only admins may reuse any).
    pub fn taken_by_other(&self, prompt_id: &str) -> bool {
        if self.caller.is_admin() {
            return false;
        }
        match self.owner(prompt_id) {
            Some(owner) => owner.as_deref() != self.caller.owner_id(),
            None => false,
        }
    }
}

/// A refusal in ComfyUI's error shape.
pub fn forbidden(message: &str, details: &str) -> Response {
    refusal(
        StatusCode::FORBIDDEN,
        "comfyhost_forbidden",
        message,
        details,
    )
}

/// Any refusal in ComfyUI's error shape (`{"error": {...}, "node_errors": {}}`).
pub fn refusal(status: StatusCode, kind: &str, message: &str, details: &str) -> Response {
    let body = ComfyErrorBody::new(kind, message, details);
    (
        status,
        axum::Json(serde_json::to_value(body).unwrap_or_default()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AdminAuth;

    fn setup() -> (Isolation, Store) {
        let store = Store::open_in_memory().unwrap();
        let identity = Identity::new(
            AdminAuth::from_token("admin-token-0123456789"),
            store.clone(),
        );
        (Isolation::new(identity, store.clone()), store)
    }

    fn record(store: &Store, prompt_id: &str, user: Option<&str>) {
        store
            .upsert_job(&comfyhost_store::JobRecord {
                prompt_id: prompt_id.into(),
                user_id: user.map(str::to_string),
                ..Default::default()
            })
            .unwrap();
    }

    fn scope(iso: &Isolation, caller: Caller) -> Scope {
        let all = caller.is_admin() || !iso.settings().isolation;
        Scope {
            caller,
            all,
            store: iso.store.clone(),
            announced: iso.announced.clone(),
        }
    }

    #[test]
    fn owners_admins_strangers_and_anonymous() {
        let (iso, store) = setup();
        record(&store, "a1", Some("alice"));
        record(&store, "anon1", None);
        let alice = scope(&iso, Caller::User("alice".into()));
        let bob = scope(&iso, Caller::User("bob".into()));
        let anon = scope(&iso, Caller::Anonymous);
        let admin = scope(&iso, Caller::Admin("admin".into()));
        assert!(alice.owns("a1") && !bob.owns("a1") && !anon.owns("a1") && admin.owns("a1"));
        assert!(anon.owns("anon1") && !alice.owns("anon1"));
        // Unknown prompts belong to no one.
        assert!(!alice.owns("nobody") && !anon.owns("nobody") && admin.owns("nobody"));
        assert!(bob.taken_by_other("a1") && !alice.taken_by_other("a1"));
        assert!(!bob.taken_by_other("fresh") && !admin.taken_by_other("a1"));
    }

    #[test]
    fn isolation_off_lets_everyone_see_everything() {
        let (iso, store) = setup();
        record(&store, "a1", Some("alice"));
        WorkshopSettings {
            isolation: Some(false),
            ..Default::default()
        }
        .save(&store)
        .unwrap();
        assert!(scope(&iso, Caller::User("bob".into())).owns("a1"));
    }
}
