//! The answers the server shapes itself: the standard error body
//! `{"success":false,"error":…,"code":…}` for every status, and the mapping
//! of the library's error kinds to statuses.

use std::borrow::Cow;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use onboarding::{cut, quote, ErrorKind};

pub type Reply = Response<Full<Bytes>>;

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");

/// Maps an SQL error text to the contract's status and body. Only the
/// library's own kinds reach the client with their detail; anything else is
/// logged here and answered as a bare "internal error".
pub fn sql_error(text: &str) -> Reply {
    match ErrorKind::parse_message(text) {
        Some((function, kind, detail))
            if !matches!(kind, ErrorKind::SchemaMissing | ErrorKind::Internal) =>
        {
            kind_error(function, kind, detail)
        }
        _ => internal(text),
    }
}

/// The name a client knows a library field by: the search route takes the
/// library's `query` as its `q` parameter.
fn client_field<'a>(function: &str, field: &'a str) -> &'a str {
    match (function, field) {
        ("onboarding_kb_search", "query") => "q",
        _ => field,
    }
}

/// A refusal as the client knows its cause. A writer's `Idempotency-Key`
/// reaches the library as its request key (a create's prefixed with the
/// client's address, a session writer's hashed with its session): a key
/// the library refuses to answer for, the client is told about its header
/// and its routes, which it knows, not about the library's argument and
/// functions. The server sends no key of its own that the library could
/// refuse: a dqlite backend's are random, one per call. ("for another
/// session" cannot reach a client: its keys are scoped.)
fn client_detail<'a>(function: &str, detail: &'a str) -> Cow<'a, str> {
    let Some(used) = detail
        .strip_prefix("request_key ")
        .and_then(|rest| rest.split_once(" was already used "))
        .map(|(_, used)| used)
    else {
        return Cow::Borrowed(detail);
    };
    let create = matches!(function, "onboarding_create" | "onboarding_create_kept");
    let what = match used {
        "with another payload" => "with another body".to_string(),
        by => match by.strip_prefix("by ").and_then(route_of) {
            Some(route) if !create => format!("for {route}"),
            _ => return Cow::Borrowed(detail),
        },
    };
    let request = if create { "create" } else { "request" };
    Cow::Owned(format!(
        "Idempotency-Key was already used {what}: a new {request} needs a new key"
    ))
}

/// The route a client knows a keyed library call by.
fn route_of(function: &str) -> Option<&'static str> {
    Some(match function {
        "onboarding_step('business')" => "the business step",
        "onboarding_step('channels')" => "the channels step",
        "onboarding_step('vapi')" => "the vapi step",
        "onboarding_step('kb')" => "the kb step",
        "onboarding_step('appointments')" => "the appointments step",
        "onboarding_complete" => "the completion",
        "onboarding_phone_send" => "a code send (phone/verification)",
        "onboarding_phone_verify" => "a code check (phone/verify)",
        _ => return None,
    })
}

/// The reply for an error of `function` of `kind` (never
/// schema_missing/internal, which [`sql_error`] hides).
fn kind_error(function: &str, kind: ErrorKind, detail: &str) -> Reply {
    let status = match kind {
        ErrorKind::InvalidJson => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidField => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Conflict | ErrorKind::Incomplete => StatusCode::CONFLICT,
        ErrorKind::RateLimited => {
            // The library says how long in the detail: `(retry after N s)`.
            let mut reply = error(StatusCode::TOO_MANY_REQUESTS, kind.as_str(), detail, None);
            let wait = ErrorKind::retry_after(detail).unwrap_or(1);
            reply
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
            return reply;
        }
        ErrorKind::SchemaMissing | ErrorKind::Internal => return internal(detail),
    };
    if kind != ErrorKind::InvalidField {
        return error(
            status,
            kind.as_str(),
            &client_detail(function, detail),
            None,
        );
    }
    // The library's invalid_field details start with the field's name: the
    // client's name for it, in the field and in the text alike.
    let field = detail
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
        .unwrap_or(detail);
    let named = client_field(function, field);
    if named == field {
        return error(status, kind.as_str(), detail, Some(field));
    }
    let message = format!("{named}{}", &detail[field.len()..]);
    error(status, kind.as_str(), &message, Some(named))
}

/// The database stayed locked past the busy timeout: another process holds
/// its write lock. Worth a retry, unlike a 500.
pub fn unavailable(text: &str) -> Reply {
    tracing::warn!(error = %text, "database busy");
    overloaded("the database is busy")
}

/// `503 unavailable` for a call whose outcome is unknown (see
/// `Failure::Unconfirmed`): a retry may find it done, and a create
/// retried without its `Idempotency-Key` would make a second session.
pub fn unconfirmed(text: &str) -> Reply {
    tracing::warn!(error = %text, "a call's commit unconfirmed");
    retry_soon(
        "the database did not confirm the call in time, and may still apply it: a write \
         retried with the same Idempotency-Key header answers its first answer (a create \
         retried without one makes another session)",
    )
}

/// `503 unavailable` with `Retry-After: 1`: `what` is busy, retry soon.
pub fn overloaded(what: &str) -> Reply {
    retry_soon(&format!("{what}; retry after the Retry-After delay"))
}

/// `503 unavailable` from the health check while the database's last
/// write was refused for want of storage (`failure`, SQLite's text, goes
/// to the log only), with `Retry-After` the seconds it is still reported.
pub fn storage_refused(failure: &str, left: std::time::Duration) -> Reply {
    tracing::warn!(error = %failure, "health check: a write was refused for want of storage");
    let mut reply = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the database refused a write for want of storage in the last minute",
        None,
    );
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    reply
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    reply
}

/// `503 unavailable` saying `message`, with `Retry-After: 1`.
fn retry_soon(message: &str) -> Reply {
    let mut reply = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        message,
        None,
    );
    reply
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    reply
}

pub fn internal(text: &str) -> Reply {
    tracing::error!(error = %text, "internal error");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
        None,
    )
}

pub fn not_found(method: &Method, path: &str) -> Reply {
    // A method is any token, of any length: cut like every echoed value.
    let message = format!("no route for {} {}", cut(method.as_str()), quote(path));
    error(StatusCode::NOT_FOUND, "not_found", &message, None)
}

/// `308` to `location`, the page a path with a trailing slash names (the
/// method and any body kept, as 308 requires; only GET and HEAD come here).
/// No body: browsers follow it, and the page is no API error.
pub fn moved(method: &Method, location: &str) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::new()));
    *reply.status_mut() = StatusCode::PERMANENT_REDIRECT;
    // The query came in a valid URI, so the header value is valid too;
    // were it not, a 404 is what the path had before.
    match HeaderValue::from_str(location) {
        Ok(value) => reply.headers_mut().insert(header::LOCATION, value),
        Err(_) => return not_found(method, location),
    };
    reply
}

/// Marks `reply` as the connection's last: the rest of the request body is
/// unread, and reading it just to keep the connection alive would do what the
/// limit exists to prevent.
pub fn closing(mut reply: Reply) -> Reply {
    reply
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    reply
}

/// `429` with `Retry-After`; `what` says which limit.
pub fn rate_limited(what: &str, wait_secs: u64) -> Reply {
    let message = format!("{what} (retry after the Retry-After delay)");
    let mut reply = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        &message,
        None,
    );
    reply
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait_secs));
    reply
}

/// `{"success":false,"error":…,"code":…}` plus `"field"` when given; built
/// by hand so the key order is fixed whatever serde_json's features.
pub fn error(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Reply {
    let mut body = String::with_capacity(64 + message.len());
    body.push_str(r#"{"success":false,"error":"#);
    push_json_string(&mut body, message);
    body.push_str(r#","code":"#);
    push_json_string(&mut body, code);
    if let Some(field) = field {
        body.push_str(r#","field":"#);
        push_json_string(&mut body, field);
    }
    body.push('}');
    json(status, Bytes::from(body))
}

fn push_json_string(out: &mut String, text: &str) {
    // Serialising a &str cannot fail.
    out.push_str(&serde_json::Value::from(text).to_string());
}

/// A JSON answer. None is stored by the browser or a cache on the way: a
/// session's answers hold its contact details and are fetched with its id,
/// the onboarding's one credential, in the path.
pub fn json(status: StatusCode, body: Bytes) -> Reply {
    let mut reply = Response::new(Full::new(body));
    *reply.status_mut() = status;
    let headers = reply.headers_mut();
    headers.insert(header::CONTENT_TYPE, APPLICATION_JSON);
    headers.insert(header::CACHE_CONTROL, NO_STORE);
    // Never read as anything but JSON, whatever the text it quotes back.
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, NOSNIFF);
    reply
}
