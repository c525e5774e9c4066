//! A ComfyUI client id belongs to the caller who first used it (in a `POST /prompt`, or on
//! `/ws` when signed in; an anonymous socket claims nothing, since scripts often open the
//! socket without credentials and submit with a bearer token): ComfyUI sends a prompt's execution messages to the socket with the prompt's
//! client id, so another user connecting with that id would receive them. Such a socket is
//! opened without the id instead (ComfyUI then gives it a fresh one in its first `status`
//! message, which the frontend adopts); such a prompt is refused. Admins may use any id.
//! Claims live in memory: a restart forgets them (the first user after it claims again).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::Caller;

/// Most claims kept; past it, new ids are not claimed (and stay usable by anyone).
const MAX_CLAIMS: usize = 100_000;

/// Who claimed which client id (`None`: an anonymous visitor).
#[derive(Clone, Default)]
pub struct ClientIds {
    claims: Arc<Mutex<HashMap<String, Option<String>>>>,
}

impl ClientIds {
    /// Whether the caller may use `client_id`, without claiming it.
    pub fn allowed(&self, client_id: &str, caller: &Caller) -> bool {
        let owner = caller.owner_id();
        match self.claims.lock().get(client_id) {
            Some(o) => caller.is_admin() || o.as_deref() == owner,
            None => true,
        }
    }

    /// Claims `client_id` for `caller` if nobody has; whether the caller may use it.
    pub fn claim(&self, client_id: &str, caller: &Caller) -> bool {
        let owner = caller.owner_id().map(str::to_string);
        let mut claims = self.claims.lock();
        match claims.get(client_id) {
            Some(o) => caller.is_admin() || *o == owner,
            None => {
                if claims.len() < MAX_CLAIMS {
                    claims.insert(client_id.to_string(), owner);
                } else {
                    tracing::warn!("client id claims full; new ids are not bound to users");
                }
                true
            }
        }
    }
}

/// The path-and-query without its `clientId` parameter.
pub fn without_client_id(path: &str, query: &str) -> String {
    let kept: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k != "clientId")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if kept.is_empty() {
        return path.to_string();
    }
    let q: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .finish();
    format!("{path}?{q}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_user_keeps_an_id() {
        let ids = ClientIds::default();
        let alice = Caller::User("alice".into());
        let bob = Caller::User("bob".into());
        assert!(ids.claim("c1", &alice));
        assert!(ids.claim("c1", &alice));
        assert!(!ids.claim("c1", &bob));
        assert!(!ids.claim("c1", &Caller::Anonymous));
        assert!(ids.claim("c1", &Caller::Admin("admin".into())));
        assert!(ids.claim("c2", &Caller::Anonymous));
        assert!(!ids.claim("c2", &alice));
        assert!(ids.allowed("c3", &Caller::Anonymous) && ids.claim("c3", &alice));
        assert!(!ids.allowed("c3", &Caller::Anonymous) && ids.allowed("c3", &alice));
    }

    #[test]
    fn the_id_is_dropped_from_the_query() {
        assert_eq!(without_client_id("/ws", "clientId=abc"), "/ws");
        assert_eq!(without_client_id("/ws", "clientId=abc&x=1"), "/ws?x=1");
    }
}
