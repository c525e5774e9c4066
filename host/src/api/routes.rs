//! The API's routes go through one table, so what the router serves is also a list that can be
//! walked: the authorization tests check every state-changing admin route, and a new route
//! cannot be left out of them.

use axum::Router;
use axum::handler::Handler;
use axum::routing::{MethodRouter, delete, get, post, put};
use http::Method;

/// One route: a method on a path (axum syntax, `{id}` for a parameter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub method: Method,
    pub path: &'static str,
}

/// A router and the list of what it serves, built together.
pub struct Routes<S> {
    router: Router<S>,
    table: Vec<RouteEntry>,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self {
            router: Router::new(),
            table: Vec::new(),
        }
    }
}

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(Method::GET, path, get(handler))
    }

    pub fn post<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(Method::POST, path, post(handler))
    }

    pub fn put<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(Method::PUT, path, put(handler))
    }

    pub fn delete<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add(Method::DELETE, path, delete(handler))
    }

    /// Both tables and both routers.
    pub fn merge(mut self, other: Routes<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.table.extend(other.table);
        self
    }

    /// Applies `f` to the router so far (a layer for these routes, e.g. a body limit).
    pub fn map_router(mut self, f: impl FnOnce(Router<S>) -> Router<S>) -> Self {
        self.router = f(self.router);
        self
    }

    pub fn into_parts(self) -> (Router<S>, Vec<RouteEntry>) {
        (self.router, self.table)
    }

    fn add(mut self, method: Method, path: &'static str, route: MethodRouter<S>) -> Self {
        self.table.push(RouteEntry { method, path });
        // axum merges method routers registered for the same path.
        self.router = self.router.route(path, route);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_methods_on_one_path_are_one_route_and_two_entries() {
        let (router, table) = Routes::<()>::new()
            .get("/users", || async { "list" })
            .post("/users", || async { "create" })
            .into_parts();
        assert_eq!(table.len(), 2);
        assert!(router.has_routes());
    }
}
