//! The route table: every method and path the server answers, walked by one
//! loop. The OpenAPI document, the `Allow` header of a 405 and the CORS
//! preflight all derive from this one table.

use hyper::Method;

use crate::web::{self, Asset};

/// The path parameter of the session routes, named as in the OpenAPI file.
pub const SESSION_ID: &str = "{session_id}";

/// What a route does; each is one SQL call, except the OpenAPI document and
/// the front end's files.
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
    /// `onboarding_phone_send(session_id, payload, ip_address)`.
    PhoneSend,
    /// `onboarding_phone_verify(session_id, payload)`.
    PhoneVerify,
    /// `onboarding_agent_types()`.
    AgentTypes,
    /// `onboarding_voices()`.
    Voices,
    /// The database answers a query.
    Health,
    /// The embedded OpenAPI document.
    OpenApi,
    /// `onboarding_kb_get(session_id)`.
    KbGet,
    /// `onboarding_kb_get(?session_id=…)`: the original's route.
    KbStructure,
    /// `onboarding_kb_search({"session_id","query":?q,"limit":?limit})`.
    KbSearch,
    /// A file of the front end (a page, a script, the style), embedded.
    Web(&'static Asset),
}

impl Endpoint {
    /// Whether the route is part of the JSON API (and of the OpenAPI
    /// document) rather than a file of the front end.
    pub fn is_api(&self) -> bool {
        !matches!(self, Endpoint::Web(_))
    }
}

#[derive(Debug, PartialEq, Eq)]
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

/// Every route: the API in the order of the wizard, then the front end.
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
    route(Method::POST, "/api/v1/onboarding/session/{session_id}/phone/verification", Endpoint::PhoneSend),
    route(Method::POST, "/api/v1/onboarding/session/{session_id}/phone/verify", Endpoint::PhoneVerify),
    route(Method::GET, "/api/v1/onboarding/session/{session_id}/kb", Endpoint::KbGet),
    route(Method::GET, "/api/v1/onboarding/session/{session_id}/kb/search", Endpoint::KbSearch),
    route(Method::GET, "/api/v1/kb/structure", Endpoint::KbStructure),
    route(Method::GET, "/api/v1/onboarding/agent-types", Endpoint::AgentTypes),
    route(Method::GET, "/api/v1/onboarding/voices", Endpoint::Voices),
    route(Method::GET, "/healthz", Endpoint::Health),
    route(Method::GET, "/openapi.json", Endpoint::OpenApi),
    route(Method::GET, "/", Endpoint::Web(&web::WIZARD)),
    route(Method::GET, "/dashboard", Endpoint::Web(&web::DASHBOARD)),
    route(Method::GET, "/assets/style.css", Endpoint::Web(&web::STYLE)),
    route(Method::GET, "/assets/api.js", Endpoint::Web(&web::API_JS)),
    route(Method::GET, "/assets/wizard.js", Endpoint::Web(&web::WIZARD_JS)),
    route(Method::GET, "/assets/page.js", Endpoint::Web(&web::PAGE_JS)),
    route(Method::GET, "/assets/messages.js", Endpoint::Web(&web::MESSAGES_JS)),
    route(Method::GET, "/assets/knowledge.js", Endpoint::Web(&web::KNOWLEDGE_JS)),
    route(Method::GET, "/assets/dashboard.js", Endpoint::Web(&web::DASHBOARD_JS)),
    route(Method::GET, "/assets/icon.svg", Endpoint::Web(&web::ICON)),
];

/// Where a request lands.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A route, and the session id (percent-decoded) when its path has one.
    Found(&'static Route, Option<String>),
    /// The path exists but not with this method: the methods it has.
    WrongMethod(Vec<&'static Method>),
    NotFound,
}

/// Finds the route of `method` and `path` (without its query string).
pub fn resolve(method: &Method, path: &str) -> Resolved {
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
                return Resolved::Found(r, id);
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

/// The front end's page that `path` names with one trailing slash
/// (`/dashboard/`), for a GET or HEAD: people type it so, and a JSON 404
/// for it reads as a broken site. Only pages: an asset's or the API's
/// paths have no such second form.
pub fn page_with_slash(method: &Method, path: &str) -> Option<&'static str> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let bare = path.strip_suffix('/').filter(|bare| !bare.is_empty())?;
    ROUTES
        .iter()
        .find(|r| {
            r.path == bare
                && matches!(r.endpoint, Endpoint::Web(asset) if asset.content_type.starts_with("text/html"))
        })
        .map(|r| r.path)
}

/// What the log shows instead of `path`, whatever the method: its route's
/// pattern written as the contract writes routes
/// (`/api/v1/onboarding/session/:id/business`), so the session id, the only
/// credential of an onboarding, never reaches a log. Each form is built
/// once, at the first logged request.
pub fn log_pattern(path: &str) -> Option<&'static str> {
    static FORMS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let forms = FORMS.get_or_init(|| {
        ROUTES
            .iter()
            .map(|r| r.path.replace(SESSION_ID, LOGGED_SESSION_ID))
            .collect()
    });
    ROUTES
        .iter()
        .position(|r| match_path(r.path, path).is_some())
        .map(|i| forms[i].as_str())
}

/// The session id's place in a logged pattern, as the contract names it.
const LOGGED_SESSION_ID: &str = ":id";

/// The methods the table has for `path` (empty for an unknown path).
pub fn allowed_methods(path: &str) -> Vec<&'static Method> {
    ROUTES
        .iter()
        .filter(|r| match_path(r.path, path).is_some())
        .map(|r| &r.method)
        .collect()
}

/// Every method some route answers, in the route table's order.
pub fn server_methods() -> Vec<&'static Method> {
    let mut methods: Vec<&'static Method> = Vec::new();
    for route in ROUTES {
        if !methods.contains(&&route.method) {
            methods.push(&route.method);
        }
    }
    methods
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

/// `Some(session id or None)` when `path` fits `template`. Every segment is
/// percent-decoded before it is compared (`%62usiness` is `business`, as
/// RFC 3986 § 6.2.2.2 has it); the id is any non-empty segment, decoded
/// (`onb_%41` is `onb_A`); a segment that does not decode to UTF-8 fits
/// nothing. Whether the session exists is the library's answer.
fn match_path(template: &str, path: &str) -> Option<Option<String>> {
    // The id is decoded once the whole path fits: a request is tried
    // against every route before its own, and most share the id's place.
    // Most routes differ by their last segment: a path that cannot end
    // like the template is turned away before any split, unless it has
    // escapes to decode.
    if let Some(last) = template.rsplit('/').next() {
        if last != SESSION_ID && !path.ends_with(last) && !path.contains('%') {
            return None;
        }
    }
    let mut id = None;
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => break,
            (Some(SESSION_ID), Some(segment)) if !segment.is_empty() => id = Some(segment),
            (Some(a), Some(b)) if a == b || decodes_to(b, a) => {}
            _ => return None,
        }
    }
    id.map(|segment| {
        percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .map(|decoded| decoded.into_owned())
    })
    .transpose()
    .ok()
}

/// Whether `segment`, which has escapes, decodes to `literal`.
fn decodes_to(segment: &str, literal: &str) -> bool {
    segment.contains('%')
        && percent_encoding::percent_decode_str(segment)
            .decode_utf8()
            .is_ok_and(|decoded| decoded == literal)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The route `method` and `path` land on, and their session id.
    fn found(method: &Method, path: &str) -> (Endpoint, Option<String>) {
        match resolve(method, path) {
            Resolved::Found(route, id) => (route.endpoint, id),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn resolve_finds_each_route_with_its_session_id() {
        assert_eq!(
            found(&Method::POST, "/api/v1/onboarding/session/onb_1/kb"),
            (Endpoint::Step("kb"), Some("onb_1".to_string()))
        );
        assert_eq!(
            found(&Method::HEAD, "/api/v1/onboarding/session/onb_1"),
            (Endpoint::Get, Some("onb_1".to_string()))
        );
        assert_eq!(
            found(&Method::GET, "/api/v1/onboarding/session/onb_1"),
            (Endpoint::Get, Some("onb_1".to_string()))
        );
        assert_eq!(
            found(&Method::POST, "/api/v1/onboarding/session"),
            (Endpoint::Create, None)
        );
        assert_eq!(
            found(
                &Method::POST,
                "/api/v1/onboarding/session/onb_1/phone/verification"
            ),
            (Endpoint::PhoneSend, Some("onb_1".to_string()))
        );
        assert_eq!(
            found(
                &Method::POST,
                "/api/v1/onboarding/session/onb_1/phone/verify"
            ),
            (Endpoint::PhoneVerify, Some("onb_1".to_string()))
        );
    }

    #[test]
    fn session_ids_are_percent_decoded() {
        let found = |path: &str| match resolve(&Method::GET, path) {
            Resolved::Found(_, id) => id,
            other => panic!("{path}: {other:?}"),
        };
        assert_eq!(
            found("/api/v1/onboarding/session/onb_%41b%20c"),
            Some("onb_Ab c".to_string())
        );
        assert_eq!(
            found("/api/v1/onboarding/session/onb_%2F"),
            Some("onb_/".to_string())
        );
        assert_eq!(
            resolve(&Method::GET, "/api/v1/onboarding/session/onb_%FF"),
            Resolved::NotFound
        );
    }

    #[test]
    fn every_segment_is_percent_decoded_before_it_is_compared() {
        assert_eq!(
            found(&Method::POST, "/api/v1/onboarding/session/onb_1/%62usiness"),
            (Endpoint::Step("business"), Some("onb_1".to_string()))
        );
        assert_eq!(
            found(
                &Method::POST,
                "/api/v1/onboarding/%73ession/onb_%31/channels"
            ),
            (Endpoint::Step("channels"), Some("onb_1".to_string()))
        );
        assert_eq!(
            found(&Method::GET, "/%61pi/v1/onboarding/agent-types"),
            (Endpoint::AgentTypes, None)
        );
        assert_eq!(
            log_pattern("/api/v1/onboarding/session/onb_secret/%6Bb"),
            Some("/api/v1/onboarding/session/:id/kb")
        );
        // An escaped slash is part of its segment, never a separator.
        assert_eq!(
            resolve(&Method::GET, "/api/v1/onboarding%2Fagent-types"),
            Resolved::NotFound
        );
        assert_eq!(
            resolve(&Method::POST, "/api/v1/onboarding/session/onb_1/%FFkb"),
            Resolved::NotFound
        );
    }

    #[test]
    fn the_log_pattern_hides_the_session_id() {
        assert_eq!(
            log_pattern("/api/v1/onboarding/session/onb_secret/business"),
            Some("/api/v1/onboarding/session/:id/business")
        );
        assert_eq!(
            log_pattern("/api/v1/onboarding/session/onb_secret"),
            Some("/api/v1/onboarding/session/:id")
        );
        assert_eq!(
            log_pattern("/api/v1/onboarding/voices"),
            Some("/api/v1/onboarding/voices")
        );
        assert_eq!(
            log_pattern("/api/v1/onboarding/session/onb_secret/payment"),
            None
        );
    }

    #[test]
    fn resolve_tells_wrong_method_from_unknown_path() {
        assert_eq!(
            resolve(&Method::GET, "/api/v1/onboarding/session/onb_1/vapi"),
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
