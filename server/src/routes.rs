//! The route table: every method and path the server answers, walked by one
//! loop. The OpenAPI document, the `Allow` header of a 405 and the CORS
//! preflight all derive from this one table.

use hyper::Method;

/// The path parameter of the session routes, named as in the OpenAPI file.
pub const SESSION_ID: &str = "{session_id}";

/// What a route does; each is one SQL call, except the OpenAPI document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `onboarding_create(payload)` with the client's IP and user agent.
    Create,
    /// `onboarding_step(session_id, step, payload)`.
    Step(&'static str),
    /// `onboarding_complete(session_id, payload)`.
    Complete,
    /// `onboarding_get(session_id)`.
    Get,
    /// `onboarding_agent_types()`.
    AgentTypes,
    /// `onboarding_voices()`.
    Voices,
    /// The database answers a query.
    Health,
    /// The embedded OpenAPI document.
    OpenApi,
}

pub struct Route {
    pub method: Method,
    /// Literal segments, and [`SESSION_ID`] for the session id.
    pub path: &'static str,
    pub endpoint: Endpoint,
}

const fn route(method: Method, path: &'static str, endpoint: Endpoint) -> Route {
    Route {
        method,
        path,
        endpoint,
    }
}

/// Every route, in the order of the wizard.
#[rustfmt::skip]
pub const ROUTES: &[Route] = &[
    route(Method::POST, "/api/v1/onboarding/session", Endpoint::Create),
    route(Method::POST, "/api/v1/onboarding/session/{session_id}/business", Endpoint::Step("business")),
    route(Method::POST, "/api/v1/onboarding/session/{session_id}/channels", Endpoint::Step("channels")),
    route(Method::POST, "/api/v1/onboarding/session/{session_id}/vapi", Endpoint::Step("vapi")),
    route(Method::POST, "/api/v1/onboarding/session/{session_id}/kb", Endpoint::Step("kb")),
    route(Method::POST, "/api/v1/onboarding/session/{session_id}/appointments", Endpoint::Step("appointments")),
    route(Method::POST, "/api/v1/onboarding/session/{session_id}/complete", Endpoint::Complete),
    route(Method::GET, "/api/v1/onboarding/session/{session_id}", Endpoint::Get),
    route(Method::GET, "/api/v1/onboarding/agent-types", Endpoint::AgentTypes),
    route(Method::GET, "/api/v1/onboarding/voices", Endpoint::Voices),
    route(Method::GET, "/healthz", Endpoint::Health),
    route(Method::GET, "/openapi.json", Endpoint::OpenApi),
];

/// Where a request lands.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved<'p> {
    /// A route, and the session id when its path has one.
    Found(Endpoint, Option<&'p str>),
    /// The path exists but not with this method: the methods it has.
    WrongMethod(Vec<&'static Method>),
    NotFound,
}

/// Finds the route of `method` and `path` (without its query string).
pub fn resolve<'p>(method: &Method, path: &'p str) -> Resolved<'p> {
    // HEAD is GET without the body (hyper leaves the body out).
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let mut path_known = false;
    for r in ROUTES {
        if let Some(id) = match_path(r.path, path) {
            if r.method == *method {
                return Resolved::Found(r.endpoint, id);
            }
            path_known = true;
        }
    }
    if path_known {
        Resolved::WrongMethod(allowed_methods(path))
    } else {
        Resolved::NotFound
    }
}

/// The methods the table has for `path` (empty for an unknown path).
pub fn allowed_methods(path: &str) -> Vec<&'static Method> {
    ROUTES
        .iter()
        .filter(|r| match_path(r.path, path).is_some())
        .map(|r| &r.method)
        .collect()
}

/// The `Allow` header value for `path`: its methods (HEAD with GET), then
/// OPTIONS, which every known path answers (CORS preflight).
pub fn allow_header(methods: &[&Method]) -> String {
    let mut allow = String::new();
    for m in methods {
        allow.push_str(m.as_str());
        allow.push_str(", ");
        if *m == Method::GET {
            allow.push_str("HEAD, ");
        }
    }
    allow.push_str("OPTIONS");
    allow
}

/// `Some(session id or None)` when `path` fits `template`. The id is any
/// non-empty segment: whether the session exists is the library's answer.
fn match_path<'p>(template: &str, path: &'p str) -> Option<Option<&'p str>> {
    let mut id = None;
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(id),
            (Some(SESSION_ID), Some(segment)) if !segment.is_empty() => id = Some(segment),
            (Some(a), Some(b)) if a == b => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_finds_each_route_with_its_session_id() {
        assert_eq!(
            resolve(&Method::POST, "/api/v1/onboarding/session/onb_1/kb"),
            Resolved::Found(Endpoint::Step("kb"), Some("onb_1"))
        );
        assert_eq!(
            resolve(&Method::HEAD, "/api/v1/onboarding/session/onb_1"),
            Resolved::Found(Endpoint::Get, Some("onb_1"))
        );
        assert_eq!(
            resolve(&Method::GET, "/api/v1/onboarding/session/onb_1"),
            Resolved::Found(Endpoint::Get, Some("onb_1"))
        );
        assert_eq!(
            resolve(&Method::POST, "/api/v1/onboarding/session"),
            Resolved::Found(Endpoint::Create, None)
        );
    }

    #[test]
    fn resolve_tells_wrong_method_from_unknown_path() {
        assert_eq!(
            resolve(&Method::GET, "/api/v1/onboarding/session/onb_1/kb"),
            Resolved::WrongMethod(vec![&Method::POST])
        );
        assert_eq!(
            resolve(&Method::GET, "/api/v1/onboarding/session//kb"),
            Resolved::NotFound
        );
        assert_eq!(
            resolve(&Method::GET, "/api/v1/onboarding/session/onb_1/kb/"),
            Resolved::NotFound
        );
        assert_eq!(
            resolve(&Method::POST, "/api/v1/onboarding/session/onb_1/payment"),
            Resolved::NotFound
        );
    }

    #[test]
    fn allow_header_lists_the_path_methods_then_options() {
        assert_eq!(
            allow_header(&allowed_methods("/api/v1/onboarding/session")),
            "POST, OPTIONS"
        );
        assert_eq!(
            allow_header(&allowed_methods("/healthz")),
            "GET, HEAD, OPTIONS"
        );
    }
}
