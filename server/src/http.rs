//! One request: route it, run its one SQL call, answer the function's JSON
//! verbatim, or map the SQL error to a status and the standard error body.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use onboarding::{quote, ErrorKind};

use crate::db::{Call, Failure, Writer};
use crate::limit::RateLimiter;
use crate::routes::{self, Endpoint, Resolved};

/// The OpenAPI document, served as is.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The longest user agent stored (the library's limit).
const MAX_USER_AGENT_CHARS: usize = 512;

/// A client that sends its body slower than this is cut off (slow-body
/// attacks hold a connection and a task).
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
const ALLOW_METHODS: HeaderValue = HeaderValue::from_static("GET, POST, OPTIONS");
const ALLOW_HEADERS: HeaderValue = HeaderValue::from_static("Content-Type, Authorization");
const MAX_AGE: HeaderValue = HeaderValue::from_static("600");
const ORIGIN_VARIES: HeaderValue = HeaderValue::from_static("Origin");

/// What every request task shares.
pub struct App {
    pub writer: Writer,
    pub cors_origins: Vec<HeaderValue>,
    pub max_body_bytes: usize,
    pub create_limiter: Option<RateLimiter>,
}

pub type Reply = Response<Full<Bytes>>;

/// Answers one request and logs one line about it.
pub async fn handle(app: &App, req: Request<Incoming>, peer: IpAddr) -> Reply {
    let started = Instant::now();
    let method = req.method().clone();
    // The Uri is reference-counted: cloning it to log the path after the
    // request is consumed does not copy the path.
    let uri = req.uri().clone();
    let origin = req.headers().get(header::ORIGIN).cloned();
    let allowed_origin = origin.filter(|o| app.cors_origins.iter().any(|a| a == o));
    let mut reply = if method == Method::OPTIONS {
        preflight(app, &req)
    } else {
        dispatch(app, req, peer).await
    };
    let headers = reply.headers_mut();
    headers.insert(header::VARY, ORIGIN_VARIES);
    if let Some(origin) = allowed_origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    // The path carries at most a session id: never a body, an email or a
    // phone number.
    tracing::info!(
        method = %method,
        path = uri.path(),
        status = reply.status().as_u16(),
        duration_us = started.elapsed().as_micros() as u64,
        "request"
    );
    reply
}

async fn dispatch(app: &App, req: Request<Incoming>, peer: IpAddr) -> Reply {
    let (endpoint, session_id) = match routes::resolve(req.method(), req.uri().path()) {
        Resolved::Found(endpoint, id) => (endpoint, id.map(str::to_string)),
        Resolved::WrongMethod(methods) => {
            let message = format!(
                "method {} is not allowed on {} (allowed: {})",
                req.method(),
                req.uri().path(),
                routes::allow_header(&methods)
            );
            let mut reply = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                &message,
                None,
            );
            if let Ok(allow) = HeaderValue::from_str(&routes::allow_header(&methods)) {
                reply.headers_mut().insert(header::ALLOW, allow);
            }
            return reply;
        }
        Resolved::NotFound => return not_found(req.method(), req.uri().path()),
    };
    let id = session_id.unwrap_or_default();
    let call = match endpoint {
        Endpoint::Create => {
            if let Some(limiter) = &app.create_limiter {
                if let Err(wait) = limiter.check(peer, Instant::now()) {
                    return rate_limited(wait);
                }
            }
            let user_agent = user_agent(req.headers());
            let body = match read_body(req.into_body(), app.max_body_bytes).await {
                Ok(body) => body,
                Err(refusal) => return refusal.reply(),
            };
            match create_payload(&body, peer, user_agent) {
                Ok(payload) => Call::Create { payload },
                Err(refusal) => return refusal.reply(),
            }
        }
        Endpoint::Step(step) => match payload(req, app).await {
            Ok(payload) => Call::Step {
                session_id: id,
                step,
                payload,
            },
            Err(refusal) => return refusal.reply(),
        },
        Endpoint::Complete => match payload(req, app).await {
            Ok(payload) => Call::Complete {
                session_id: id,
                payload,
            },
            Err(refusal) => return refusal.reply(),
        },
        Endpoint::Get => Call::Get { session_id: id },
        Endpoint::AgentTypes => Call::AgentTypes,
        Endpoint::Voices => Call::Voices,
        Endpoint::Health => Call::Health,
        Endpoint::OpenApi => return json(StatusCode::OK, Bytes::from_static(OPENAPI.as_bytes())),
    };
    let success = match endpoint {
        Endpoint::Create => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    match app.writer.call(call).await {
        Ok(body) => json(success, Bytes::from(body)),
        Err(Failure::Busy(text)) => unavailable(&text),
        Err(Failure::Sql(text)) => sql_error(&text),
    }
}

/// The body of a step or of complete, passed through as text; an empty body
/// is SQL NULL (the library reads it as `{}`).
async fn payload(req: Request<Incoming>, app: &App) -> Result<Option<String>, Refusal> {
    let body = read_body(req.into_body(), app.max_body_bytes).await?;
    if body.is_empty() {
        return Ok(None);
    }
    String::from_utf8(body)
        .map(Some)
        .map_err(|_| Refusal::NotUtf8)
}

/// create's payload: the client's object with the server's `ip_address` and
/// `user_agent` in place of anything the client sent for them.
fn create_payload(
    body: &[u8],
    peer: IpAddr,
    user_agent: Option<String>,
) -> Result<String, Refusal> {
    let text = match body {
        [] => "{}",
        _ => std::str::from_utf8(body).map_err(|_| Refusal::NotUtf8)?,
    };
    // The library's own parser, so the error texts are the library's.
    let mut map = onboarding::validate::payload_object(Some(text)).map_err(Refusal::Library)?;
    map.insert(
        "ip_address".to_string(),
        peer.to_canonical().to_string().into(),
    );
    match user_agent {
        Some(ua) => map.insert("user_agent".to_string(), ua.into()),
        None => map.remove("user_agent"),
    };
    Ok(serde_json::Value::Object(map).to_string())
}

/// The `User-Agent` as the library accepts it: no control characters,
/// trimmed, at most 512 characters; `None` when nothing is left.
fn user_agent(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(header::USER_AGENT)?;
    let text = String::from_utf8_lossy(raw.as_bytes());
    let cleaned: String = text
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_USER_AGENT_CHARS)
        .collect();
    let cleaned = cleaned.trim_end();
    (!cleaned.is_empty()).then(|| cleaned.to_string())
}

/// Reads the whole body, refusing it as soon as it is known to exceed the
/// limit: from Content-Length before reading anything, and while streaming
/// (chunked bodies, or a client sending more than it announced).
async fn read_body(mut body: Incoming, limit: usize) -> Result<Vec<u8>, Refusal> {
    let announced = body.size_hint().lower();
    if announced > limit as u64 {
        return Err(Refusal::TooLarge(limit));
    }
    let mut buf = Vec::with_capacity(announced as usize);
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                tracing::debug!(error = %e, "request body unreadable");
                Refusal::Unreadable
            })?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limit {
                    return Err(Refusal::TooLarge(limit));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(())) => Ok(buf),
        Ok(Err(refusal)) => Err(refusal),
        Err(_) => Err(Refusal::Timeout),
    }
}

/// Why a request body was refused before any SQL ran.
#[derive(Debug)]
enum Refusal {
    /// Over the limit (in bytes).
    TooLarge(usize),
    /// The connection failed or ended mid-body.
    Unreadable,
    /// The body arrived slower than [`BODY_TIMEOUT`].
    Timeout,
    NotUtf8,
    /// The library's payload parser said no (create's payload).
    Library(onboarding::Error),
}

impl Refusal {
    fn reply(self) -> Reply {
        match self {
            Refusal::TooLarge(limit) => {
                let message = format!("request body is larger than the limit of {limit} bytes");
                closing(error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    &message,
                    None,
                ))
            }
            Refusal::Unreadable => closing(error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "request body could not be read (connection closed early?)",
                None,
            )),
            Refusal::Timeout => closing(error(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "request body took too long to arrive",
                None,
            )),
            Refusal::NotUtf8 => error(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                "payload is not valid UTF-8",
                None,
            ),
            Refusal::Library(e) => kind_error(e.kind, &e.detail),
        }
    }
}

/// CORS preflight (and plain OPTIONS): 204 for an allowed origin, 403 for
/// any other, 404 for a path the server does not have.
fn preflight(app: &App, req: &Request<Incoming>) -> Reply {
    let methods = routes::allowed_methods(req.uri().path());
    if methods.is_empty() {
        return not_found(req.method(), req.uri().path());
    }
    let mut reply = Response::new(Full::new(Bytes::new()));
    *reply.status_mut() = StatusCode::NO_CONTENT;
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        // Not a browser's preflight: say what the path allows.
        if let Ok(allow) = HeaderValue::from_str(&routes::allow_header(&methods)) {
            reply.headers_mut().insert(header::ALLOW, allow);
        }
        return reply;
    };
    if !app.cors_origins.iter().any(|a| a == origin) {
        let message = format!(
            "origin {} is not allowed to call this API",
            quote(&String::from_utf8_lossy(origin.as_bytes()))
        );
        return error(StatusCode::FORBIDDEN, "origin_not_allowed", &message, None);
    }
    let headers = reply.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS);
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS);
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE);
    reply
}

/// Maps an SQL error text to the contract's status and body. Only the
/// library's own kinds reach the client with their detail; anything else is
/// logged here and answered as a bare "internal error".
fn sql_error(text: &str) -> Reply {
    match ErrorKind::parse_message(text) {
        Some((_, kind, detail))
            if !matches!(kind, ErrorKind::SchemaMissing | ErrorKind::Internal) =>
        {
            kind_error(kind, detail)
        }
        _ => internal(text),
    }
}

/// The reply for a library error of `kind` (never schema_missing/internal,
/// which [`sql_error`] hides).
fn kind_error(kind: ErrorKind, detail: &str) -> Reply {
    let status = match kind {
        ErrorKind::InvalidJson => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::InvalidField => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Conflict | ErrorKind::Incomplete => StatusCode::CONFLICT,
        ErrorKind::SchemaMissing | ErrorKind::Internal => return internal(detail),
    };
    // The library's invalid_field details start with the field's name.
    let field = (kind == ErrorKind::InvalidField).then(|| {
        detail
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .next()
            .unwrap_or(detail)
    });
    error(status, kind.as_str(), detail, field)
}

/// The database stayed locked past the busy timeout: another process holds
/// its write lock. Worth a retry, unlike a 500.
fn unavailable(text: &str) -> Reply {
    tracing::warn!(error = %text, "database busy");
    let mut reply = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the database is busy; retry after the Retry-After delay",
        None,
    );
    reply
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    reply
}

fn internal(text: &str) -> Reply {
    tracing::error!(error = %text, "internal error");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
        None,
    )
}

fn not_found(method: &Method, path: &str) -> Reply {
    let message = format!("no route for {method} {}", quote(path));
    error(StatusCode::NOT_FOUND, "not_found", &message, None)
}

/// Marks `reply` as the connection's last: the rest of the request body is
/// unread, and reading it just to keep the connection alive would do what the
/// limit exists to prevent.
fn closing(mut reply: Reply) -> Reply {
    reply
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    reply
}

fn rate_limited(wait_secs: u64) -> Reply {
    let mut reply = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many sessions created from this address (retry after the Retry-After delay)",
        None,
    );
    reply
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait_secs));
    reply
}

/// `{"success":false,"error":…,"code":…}` plus `"field"` when given; built
/// by hand so the key order is fixed whatever serde_json's features.
fn error(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Reply {
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

fn json(status: StatusCode, body: Bytes) -> Reply {
    let mut reply = Response::new(Full::new(body));
    *reply.status_mut() = status;
    reply
        .headers_mut()
        .insert(header::CONTENT_TYPE, APPLICATION_JSON);
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_text(reply: Reply) -> String {
        let bytes = reply.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn internal_errors_never_reach_the_client() {
        let reply = sql_error("onboarding_step: internal: no such file /var/lib/x.db");
        assert_eq!(reply.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body_text(reply).await,
            r#"{"success":false,"error":"internal error","code":"internal"}"#
        );
        let reply = sql_error("onboarding_get: schema_missing: no such table: tenants");
        assert_eq!(
            body_text(reply).await,
            r#"{"success":false,"error":"internal error","code":"internal"}"#
        );
        let reply = sql_error("near \"SELEC\": syntax error");
        assert_eq!(reply.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn invalid_field_names_its_field() {
        let reply =
            sql_error("onboarding_step: invalid_field: email 'bob@' is not a valid email address");
        assert_eq!(reply.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            body_text(reply).await,
            r#"{"success":false,"error":"email 'bob@' is not a valid email address","code":"invalid_field","field":"email"}"#
        );
    }

    #[tokio::test]
    async fn field_name_stops_at_punctuation() {
        let reply = sql_error(
            "onboarding_step: invalid_field: assistant_name is 51 characters long; at most 50 are allowed",
        );
        assert_eq!(
            body_text(reply).await,
            r#"{"success":false,"error":"assistant_name is 51 characters long; at most 50 are allowed","code":"invalid_field","field":"assistant_name"}"#
        );
        let reply = sql_error("onboarding_step: invalid_field: channels: nothing chosen");
        assert!(body_text(reply).await.ends_with(r#""field":"channels"}"#));
    }

    #[test]
    fn user_agent_is_cleaned_and_cut() {
        let mut headers = HeaderMap::new();
        headers.insert(header::USER_AGENT, HeaderValue::from_static(" curl/8.0\t "));
        assert_eq!(user_agent(&headers), Some("curl/8.0".to_string()));
        let long = "a".repeat(600);
        headers.insert(header::USER_AGENT, HeaderValue::from_str(&long).unwrap());
        assert_eq!(user_agent(&headers), Some("a".repeat(512)));
        headers.insert(header::USER_AGENT, HeaderValue::from_static("   "));
        assert_eq!(user_agent(&headers), None);
    }
}
