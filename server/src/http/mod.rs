//! One request: route it, run its one SQL call, answer the function's JSON
//! verbatim, or map the SQL error to a status and the standard error body.
//!
//! | file | owns |
//! |---|---|
//! | `request.rs` | what a request must be before SQL runs: framing, media type, body |
//! | `reply.rs` | the error body and the status of each library error kind |

mod kb;
mod reply;
mod request;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use onboarding::{cut, quote, ErrorKind};

pub use reply::Reply;
pub use request::BODIES_IN_FLIGHT_BYTES;
pub(crate) use request::{coding_names, transfer_coding_message};

use self::reply::closing;
use self::reply::{
    error, json, moved, not_found, overloaded, rate_limited, sql_error, storage_refused,
    unavailable, unconfirmed,
};
use self::request::{
    check_framing, check_media_type, has_body, payload, payload_within, Budget, Refusal,
    LARGE_BODIES_FULL,
};
use crate::client::{limited_as, TrustedProxies};
use crate::db::{Failure, Query, Writer};
use crate::limit::RateLimiter;
use crate::routes::{self, Endpoint, Resolved};

/// The OpenAPI document as written; served with `servers` set to the
/// address the server listens on (see [`openapi_for`]).
pub const OPENAPI: &str = include_str!("../../openapi.json");

const ALLOW_HEADERS: HeaderValue =
    HeaderValue::from_static("Content-Type, Authorization, Idempotency-Key");
const MAX_AGE: HeaderValue = HeaderValue::from_static("600");
/// How long `/healthz` waits for the database before answering 503.
const HEALTH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// What a cross-origin page may read beyond the simple headers: the delay
/// a 429 or a 503 asks for.
const EXPOSE_HEADERS: HeaderValue = HeaderValue::from_static("Retry-After");
const ORIGIN_VARIES: HeaderValue = HeaderValue::from_static("Origin");

/// The Date line (ending in CRLF) of an answer written straight to the
/// socket, as [`handle`] dates the service's answers.
pub fn raw_date_line(app: &App) -> String {
    let date = http_date(app.clock.now_ms());
    format!("date: {}\r\n", date.to_str().unwrap_or_default())
}

/// The header lines (each ending in CRLF) of an answer written straight to
/// the socket, for a request from `origin`: what [`handle`] adds to the
/// service's answers (Date, Vary, the CORS lines).
pub fn raw_header_lines(app: &App, origin: Option<&[u8]>) -> String {
    let vary = format!(
        "{}vary: {}\r\n",
        raw_date_line(app),
        ORIGIN_VARIES.to_str().unwrap_or("Origin")
    );
    match origin.filter(|o| app.cors_origins.iter().any(|a| a.as_bytes() == *o)) {
        // Allowed origins are header values, so printable ASCII.
        Some(origin) => format!(
            "{vary}access-control-allow-origin: {}\r\naccess-control-expose-headers: {}\r\n",
            String::from_utf8_lossy(origin),
            EXPOSE_HEADERS.to_str().unwrap_or("Retry-After"),
        ),
        None => vary,
    }
}

/// What every request task shares.
pub struct App {
    pub writer: Writer,
    pub cors_origins: Vec<HeaderValue>,
    pub max_body_bytes: usize,
    /// The kb step's limit, for bodies past `max_body_bytes` (documents).
    pub max_documents_body_bytes: usize,
    /// Bodies past `max_body_bytes` the library parses and stores at once:
    /// each takes several times its size meanwhile, so only a few.
    pub large_bodies: Arc<tokio::sync::Semaphore>,
    /// Bytes of such bodies held at once, arriving, waiting for their turn
    /// or in it: one permit a byte, taken as the bytes arrive.
    pub large_body_bytes: Arc<tokio::sync::Semaphore>,
    /// The clients (as the limits count them) sending such a body now.
    pub large_body_senders: Arc<std::sync::Mutex<std::collections::HashSet<IpAddr>>>,
    pub create_limiter: Option<RateLimiter>,
    /// The keyed creates that limit counted: sent again, counted once.
    pub create_keys: crate::limit::ChargedKeys,
    /// "Email already used" answers per client address and per session:
    /// past either, the business step and completion answer 429 (no oracle
    /// of accounts).
    pub email_taken_by_ip: Option<RateLimiter>,
    /// By [`crate::limit::hashed`] session id.
    pub email_taken_by_session: Option<RateLimiter<u64>>,
    /// Phone codes sent per client address, whatever the session and the
    /// number (see `--code-sends-per-ip`); a send the library refuses is
    /// given back.
    pub code_sends_by_ip: Option<RateLimiter>,
    /// The keyed sends that limit counted: sent again, counted once.
    pub code_send_keys: crate::limit::ChargedKeys,
    pub proxies: TrustedProxies,
    /// The OpenAPI document with this server's address.
    pub openapi: Bytes,
    /// Wakes the `--outbox-log` sender when a code was queued; `None`
    /// without it.
    pub outbox_wake: Option<Arc<tokio::sync::Notify>>,
    /// The library's clock (the seam), which every answer's `Date` reads:
    /// a client counts the waits the library sets (`resend_after`) against
    /// the server's own time, whatever its own clock says.
    pub clock: Arc<dyn onboarding::Env>,
}

/// [`OPENAPI`] with `servers` naming `base` (e.g. `http://127.0.0.1:8787`).
pub fn openapi_for(base: &str) -> Result<Bytes, String> {
    let mut doc: serde_json::Value = serde_json::from_str(OPENAPI)
        .map_err(|e| format!("the embedded openapi.json is not JSON: {e}"))?;
    doc["servers"] = serde_json::json!([{ "url": base }]);
    Ok(Bytes::from(doc.to_string()))
}

/// Answers one request and logs one line about it.
pub async fn handle(app: &App, req: Request<Incoming>, peer: IpAddr) -> Reply {
    let started = Instant::now();
    let method = req.method().clone();
    let client = app.proxies.client_ip(peer, req.headers());
    let allowed_origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| app.cors_origins.iter().any(|a| a == *o))
        .cloned();
    // The log names the route's pattern, never the path: a session id is
    // the only credential of an onboarding. Looked up only when the line
    // is logged (`--log-level info` or finer).
    let route = if tracing::enabled!(tracing::Level::INFO) {
        routes::log_pattern(req.uri().path()).unwrap_or("-")
    } else {
        "-"
    };
    let sent_body = has_body(&req);
    let mut body_read = false;
    let mut reply = match check_framing(&req) {
        Err(refusal) => refusal.reply(),
        Ok(()) if method == Method::OPTIONS => preflight(app, &req),
        Ok(()) => dispatch(app, req, client, &mut body_read).await,
    };
    if sent_body && !body_read {
        // Answered without reading the body (a 404, 405, 429…): the
        // connection closes after lingering, so the answer is not lost to
        // a reset and the unread bytes are never taken for a request.
        reply = closing(reply);
    }
    let headers = reply.headers_mut();
    // hyper's own Date (its system clock) is left out once one is set.
    headers.insert(header::DATE, http_date(app.clock.now_ms()));
    // Appended: a front-end file varies with Accept-Encoding too.
    headers.append(header::VARY, ORIGIN_VARIES);
    if let Some(origin) = allowed_origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSE_HEADERS);
    }
    // A method is any token a client sends, up to the head's 16 KiB: the
    // log keeps the 64 characters an answer echoes.
    let method = method.as_str();
    let method = match method.len() {
        0..=64 => std::borrow::Cow::Borrowed(method),
        _ => std::borrow::Cow::Owned(cut(method)),
    };
    tracing::info!(
        method = %method,
        route,
        status = reply.status().as_u16(),
        duration_us = started.elapsed().as_micros() as u64,
        "request"
    );
    reply
}

/// `now_ms` as an HTTP date (`Sat, 05 Dec 2026 01:00:00 GMT`), formatted
/// once a second per thread, as hyper does its own.
pub fn http_date(now_ms: i64) -> HeaderValue {
    use std::cell::RefCell;
    thread_local! {
        static LAST: RefCell<(i64, HeaderValue)> =
            const { RefCell::new((i64::MIN, HeaderValue::from_static(""))) };
    }
    let second = now_ms.div_euclid(1000);
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != second {
            let at = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(u64::try_from(second).unwrap_or(0));
            let text = httpdate::fmt_http_date(at);
            // An HTTP date is ASCII: always a valid header value.
            *last = (
                second,
                HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("")),
            );
        }
        last.1.clone()
    })
}

/// The 429 of a client sending a large body while another of its own is
/// still being read or stored.
const LARGE_BODY_SENT_ALREADY: &str =
    "this address is already sending a large body; send one at a time";

/// A client's place among those sending a large body, given back when the
/// body's call has run (or was refused).
struct LargeBodySender {
    senders: Arc<std::sync::Mutex<std::collections::HashSet<IpAddr>>>,
    client: IpAddr,
}

impl LargeBodySender {
    /// The place of `client`, or `None` when it holds one already.
    fn enter(app: &App, client: IpAddr) -> Option<LargeBodySender> {
        let client = limited_as(client);
        let mut senders = app
            .large_body_senders
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        senders.insert(client).then(|| LargeBodySender {
            senders: Arc::clone(&app.large_body_senders),
            client,
        })
    }
}

impl Drop for LargeBodySender {
    fn drop(&mut self) {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        senders.remove(&self.client);
    }
}

/// How long a large body waits for its turn to be stored before 503.
const LARGE_BODY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a body may be larger than `limit`: announced so, or chunked.
fn large_body(req: &Request<Incoming>, limit: usize) -> bool {
    use hyper::body::Body;
    req.headers().contains_key(header::TRANSFER_ENCODING)
        || req.body().size_hint().lower() > limit as u64
}

/// Answers a routed request; sets `body_read` once the body is consumed.
async fn dispatch(
    app: &App,
    req: Request<Incoming>,
    client: IpAddr,
    body_read: &mut bool,
) -> Reply {
    let (endpoint, id) = match routes::resolve(req.method(), req.uri().path()) {
        Resolved::Found(route, id) => (route.endpoint, id.unwrap_or_default()),
        Resolved::WrongMethod(methods) => return wrong_method(&req, &methods),
        Resolved::NotFound => {
            let uri = req.uri();
            return match routes::page_with_slash(req.method(), uri.path()) {
                Some(page) => match uri.query() {
                    Some(query) => moved(req.method(), &format!("{page}?{query}")),
                    None => moved(req.method(), page),
                },
                None => not_found(req.method(), uri.path()),
            };
        }
    };
    if req.method() == Method::POST {
        if let Err(refusal) = check_media_type(&req) {
            return refusal.reply();
        }
        if !has_body(&req) {
            if let Some(origin) = cross_site(app, &req) {
                return origin_not_allowed(&origin);
            }
        }
    }
    // A session writer's `Idempotency-Key`, refused before its body is read.
    let client_key = match endpoint {
        Endpoint::Step(_) | Endpoint::Complete | Endpoint::PhoneSend | Endpoint::PhoneVerify => {
            match idempotency_key(&req) {
                Ok(key) => key.map(|key| session_key(&id, &key)),
                Err(reply) => return *reply,
            }
        }
        _ => None,
    };
    // The session of a call that may answer "email already used", for its
    // limits: a business step, and a completion (another session may have
    // completed with the address since this one saved it).
    // Hashed: any path segment is taken as an id here (the library answers
    // an unknown one 404 after the limit), and 4,096 ids of 16 KiB kept
    // for the limit's window held 64 MB.
    let email_key = matches!(endpoint, Endpoint::Step("business") | Endpoint::Complete)
        .then(|| crate::limit::hashed(&id));
    // A large body's share of the server's memory and turn, held until the
    // writer has run the call (see `Writer::run_holding`): the body and
    // what the library parses from it live until then, even when the
    // client leaves before the answer.
    let mut hold: Option<Box<dyn Send>> = None;
    // A keyed create or business step past a limit: the wait and the text
    // of its 429, when the key saved nothing before.
    let mut limited: Option<(u64, &'static str)> = None;
    let mut query = match endpoint {
        Endpoint::Create => match create(app, req, client, body_read, &mut limited).await {
            Ok(query) => query,
            Err(reply) => return reply,
        },
        Endpoint::Step(step) => {
            // Pasted documents may be far larger than any other body. Such
            // a body takes its bytes from the budget as they arrive, and a
            // turn with the library once whole: a client trickling one holds
            // only what it sent, and no turn.
            let large = step == "kb" && large_body(&req, app.max_body_bytes);
            let (limit, budget, sending) = if large {
                // One such body at a time per client: one client sending
                // two would hold the whole budget.
                let Some(sending) = LargeBodySender::enter(app, client) else {
                    return rate_limited(LARGE_BODY_SENT_ALREADY, 1);
                };
                let budget = Budget {
                    bytes: &app.large_body_bytes,
                    full: LARGE_BODIES_FULL,
                };
                (app.max_documents_body_bytes, budget, Some(sending))
            } else {
                (app.max_body_bytes, Budget::ordinary(), None)
            };
            *body_read = true;
            let (payload, bytes) = match payload_within(req.into_body(), limit, budget).await {
                Ok(read) => read,
                Err(refusal) => return refusal.reply(),
            };
            if large {
                let turn = Arc::clone(&app.large_bodies).acquire_owned();
                match tokio::time::timeout(LARGE_BODY_WAIT, turn).await {
                    Ok(Ok(turn)) => hold = Some(Box::new((turn, bytes, sending))),
                    _ => return overloaded(LARGE_BODIES_FULL),
                }
            }
            Query::Step {
                session_id: id,
                step,
                payload,
                client_key,
            }
        }
        Endpoint::Complete => {
            *body_read = true;
            match payload(req.into_body(), app.max_body_bytes).await {
                Ok(payload) => Query::Complete {
                    session_id: id,
                    payload,
                    client_key,
                },
                Err(refusal) => return refusal.reply(),
            }
        }
        Endpoint::PhoneSend => {
            *body_read = true;
            match payload(req.into_body(), app.max_body_bytes).await {
                Ok(payload) => Query::PhoneSend {
                    session_id: id,
                    payload,
                    ip_address: client.to_canonical().to_string(),
                    client_key,
                },
                Err(refusal) => return refusal.reply(),
            }
        }
        Endpoint::PhoneVerify => {
            *body_read = true;
            match payload(req.into_body(), app.max_body_bytes).await {
                Ok(payload) => Query::PhoneVerify {
                    session_id: id,
                    payload,
                    client_key,
                },
                Err(refusal) => return refusal.reply(),
            }
        }
        Endpoint::Get => Query::Get { session_id: id },
        Endpoint::AgentTypes => Query::AgentTypes,
        Endpoint::Voices => Query::Voices,
        Endpoint::Health => Query::Health,
        Endpoint::OpenApi => return json(StatusCode::OK, app.openapi.clone()),
        Endpoint::KbGet | Endpoint::KbStructure | Endpoint::KbSearch => {
            match kb::query(endpoint, id, req.uri().query()) {
                Ok(query) => query,
                Err(refused) => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_field",
                        &refused.message,
                        Some(&refused.name),
                    )
                }
            }
        }
        Endpoint::Web(asset) => return crate::web::reply(asset, req.headers()),
    };
    let success = match endpoint {
        Endpoint::Create | Endpoint::PhoneSend => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    // The "email already used" answer a business step may give is checked
    // once its body is in, just before the call (a body still arriving
    // holds nothing). Refused before the library runs, a free address is
    // refused too, so the 429 itself tells nothing.
    let (email_answer, completion_email) = match (email_key, endpoint) {
        (Some(session), Endpoint::Step(_)) => {
            match EmailAnswer::reserve(app, limited_as(client), session).await {
                Ok(reserved) => (reserved, None),
                Err(wait) => {
                    // A step retried with its key (its answer was lost) is
                    // owed what it saved, limit or not: the key is looked
                    // up, and nothing is saved (so nothing tested).
                    let Query::Step {
                        session_id,
                        step,
                        payload,
                        client_key: Some(client_key),
                    } = query
                    else {
                        return rate_limited(EMAIL_TAKEN_LIMITED, wait);
                    };
                    query = Query::StepKept {
                        session_id,
                        step,
                        payload,
                        client_key,
                    };
                    limited = Some((wait, EMAIL_TAKEN_LIMITED));
                    (None, None)
                }
            }
        }
        (Some(session), Endpoint::Complete) => (
            None,
            CompletionEmail::watch(app, limited_as(client), session),
        ),
        _ => (None, None),
    };
    // Counted before the call, so that sends made at once cannot all pass
    // a check none of them had counted; given back below when refused.
    // A keyed send sent again (its answer lost) is answered its first
    // send and sends nothing: counted once.
    let send_key = match &query {
        Query::PhoneSend {
            client_key: Some(key),
            ..
        } => Some(key.clone()),
        _ => None,
    };
    let send_key = send_key.as_deref();
    let code_send = match (endpoint, &app.code_sends_by_ip) {
        (Endpoint::PhoneSend, Some(limiter)) => {
            let now = Instant::now();
            let count = || limiter.check(limited_as(client), now);
            let counted = match send_key {
                Some(key) => app.code_send_keys.charge(key, now, count),
                None => count().map(|()| true),
            };
            match counted {
                Ok(true) => Some(limiter),
                Ok(false) => None,
                Err(wait) => return rate_limited(CODE_SENDS_LIMITED, wait),
            }
        }
        _ => None,
    };
    let answered = if endpoint == Endpoint::Health {
        // Reads go on answering when the disk is full, and so would the
        // probe, while every write fails.
        if let Some((failure, left)) = app.writer.write_failure() {
            return storage_refused(failure, left);
        }
        // A probe needs its answer in time: on a cluster without a quorum
        // the call would wait out the retries of the batches ahead of it
        // (up to about 20 s), past any load balancer's probe timeout.
        match tokio::time::timeout(HEALTH_WAIT, app.writer.run(query)).await {
            Ok(answered) => answered,
            Err(_) => return overloaded("the database did not answer within 2 s"),
        }
    } else {
        app.writer.run_holding(query, hold).await
    };
    // A send refused is given back; one whose commit is unconfirmed (a
    // cluster that lost its quorum) may still go out, and stays counted.
    // A keyed one only when the library refused it: a duplicate sent at
    // once passed on its count, and, were a busy database free by its
    // turn, would send uncounted.
    let given_back = match &answered {
        Err(Failure::Sql(_)) => true,
        Err(Failure::Busy(_)) => send_key.is_none(),
        _ => false,
    };
    if let (Some(limiter), true) = (code_send, given_back) {
        limiter.refund(&limited_as(client));
        if let Some(key) = send_key {
            app.code_send_keys.forget(key);
        }
    }
    let taken = matches!(&answered, Err(Failure::Sql(text)) if is_email_taken(text));
    if let Some(answer) = email_answer {
        answer.settle(taken);
    }
    if let Some(completion) = completion_email {
        if let Err(wait) = completion.settle(taken).await {
            return rate_limited(EMAIL_TAKEN_LIMITED, wait);
        }
    }
    // A keyed create or step past a limit whose key saved nothing: the
    // limit's 429 after all.
    if let (Ok(body), Some((wait, limit))) = (&answered, limited) {
        if body == "null" {
            return rate_limited(limit, wait);
        }
    }
    match answered {
        Ok(body) => {
            if let (Endpoint::PhoneSend, Some(wake)) = (endpoint, &app.outbox_wake) {
                wake.notify_one();
            }
            json(success, Bytes::from(body))
        }
        Err(Failure::Busy(text)) => unavailable(&text),
        Err(Failure::Unconfirmed(text)) => unconfirmed(&text),
        Err(Failure::Sql(text)) => sql_error(&text),
    }
}

/// The create call: the client's payload with its address and user agent;
/// past the address's limit, with a key, the read of the session the key
/// already made (answered as the create, else the 429: `limited`).
async fn create(
    app: &App,
    req: Request<Incoming>,
    client: IpAddr,
    body_read: &mut bool,
    limited: &mut Option<(u64, &'static str)>,
) -> Result<Query, Reply> {
    // Refused before the limit counts the create.
    let key = idempotency_key(&req).map_err(|reply| *reply)?;
    let ip_address = client.to_canonical().to_string();
    // Scoped to the client's address, so that another client sending the
    // same key (a careless constant) gets a session of its own, never this
    // one's id. 39 characters at most for the address, 1 and 64: within
    // the library's 128.
    let client_key = key.map(|key| format!("{ip_address} {key}"));
    if let Some(limiter) = &app.create_limiter {
        let now = Instant::now();
        let count = || limiter.check(limited_as(client), now);
        // A create sent again under its key is counted once: a client
        // retrying a lost answer does not spend its next creates.
        let counted = match &client_key {
            Some(client_key) => app.create_keys.charge(client_key, now, count).map(|_| ()),
            None => count(),
        };
        if let Err(wait) = counted {
            // A create retried with its key (its answer was lost) is owed
            // the session it made, limit or not: the key is looked up.
            if client_key.is_none() {
                return Err(rate_limited(CREATES_LIMITED, wait));
            }
            *limited = Some((wait, CREATES_LIMITED));
        }
    }
    // The raw header: the library cleans it (and an empty one stores none,
    // where NULL would let the payload's own claim stand).
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    *body_read = true;
    let payload = payload(req.into_body(), app.max_body_bytes)
        .await
        .map_err(Refusal::reply)?;
    Ok(match (limited, client_key) {
        (Some(_), Some(client_key)) => Query::CreateKept {
            payload,
            client_key,
        },
        (_, client_key) => Query::Create {
            payload,
            ip_address,
            user_agent,
            client_key,
        },
    })
}

/// The library's request key for a session writer's `Idempotency-Key`:
/// the SHA-256 of the session id and the key, in hex (64 characters, within
/// the library's 128 whatever the path's id). Scoped to the session, so
/// that a key tells nothing of another session (the library keeps keys for
/// every session in one table: unscoped, a call to any id, a session or
/// not, would hear which route of which session used a key), and a client
/// whose keys repeat across sessions (a counter) blocks nobody else's. Not
/// to the client's address, as a create's is: a retry may come from
/// another network, and the session id already names its client.
fn session_key(session_id: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(session_id.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 429 of a code send past the address's limit.
const CODE_SENDS_LIMITED: &str = "too many phone codes sent from this address";

/// The 429 of a create past the address's limit.
const CREATES_LIMITED: &str = "too many sessions created from this address";

/// A writer retried with the same `Idempotency-Key` (an unanswered request
/// sent again) gets its first answer, and writes nothing more: a create its
/// session, a send its code (not a second one), a code its verdict.
const IDEMPOTENCY_KEY: header::HeaderName = header::HeaderName::from_static("idempotency-key");

/// The request's `Idempotency-Key`, if it has one: 16 to 64 visible ASCII
/// characters (a UUID, say: short keys repeat), given once (with two,
/// which one a retry would send cannot be known). It becomes the library's
/// request key (a create's prefixed with the client's address). Refused:
/// the 422 naming the header.
fn idempotency_key(req: &Request<Incoming>) -> Result<Option<String>, Box<Reply>> {
    let refused = |message: &str| {
        Box::new(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            message,
            Some("Idempotency-Key"),
        ))
    };
    let mut keys = req.headers().get_all(IDEMPOTENCY_KEY).iter();
    let Some(key) = keys.next() else {
        return Ok(None);
    };
    if keys.next().is_some() {
        return Err(refused(
            "Idempotency-Key is given more than once; send one key",
        ));
    }
    let bytes = key.as_bytes();
    let text = String::from_utf8_lossy(bytes);
    if !(16..=64).contains(&bytes.len()) || !bytes.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(refused(&format!(
            "Idempotency-Key {} must be 16 to 64 visible ASCII characters (a UUID, say)",
            quote(&text)
        )));
    }
    Ok(Some(text.into_owned()))
}

/// How long a business step waits for its address's turn (see
/// [`EmailAnswer::reserve`]) before 429.
const EMAIL_TURN_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// One "email already used" answer that a business step may give,
/// reserved before its call so that no way of sending steps passes the
/// limits:
/// - the session's count is taken, then given back when the answer is
///   another (a session has one onboarding in flight; steps sent at once on
///   it can only be an attempt to pass a check none of them had counted);
/// - the address takes a turn: steps from one address run at once while
///   the counts left cover them all, and otherwise wait for one to end (an
///   office or a proxy, whose steps are legitimately concurrent, waits a
///   little only near its limit);
/// - a call whose client went away before its answer counts as its answer
///   says: the connection is not read while a request is answered, so the
///   request runs to its end as if the client had stayed; one dropped
///   unanswered (the server stopping past its grace period) counts on
///   both: it ran all the same, and `GET session` would tell its outcome.
struct EmailAnswer<'a> {
    app: &'a App,
    client: IpAddr,
    session: u64,
    settled: bool,
}

impl<'a> EmailAnswer<'a> {
    /// `Err(seconds)` to wait when a limit is reached; `None` when both
    /// limits are off.
    async fn reserve(app: &'a App, client: IpAddr, session: u64) -> Result<Option<Self>, u64> {
        if app.email_taken_by_ip.is_none() && app.email_taken_by_session.is_none() {
            return Ok(None);
        }
        if let Some(limiter) = &app.email_taken_by_ip {
            limiter.wait_turn(&client, EMAIL_TURN_PATIENCE).await?;
        }
        if let Some(limiter) = &app.email_taken_by_session {
            if let Err(wait) = limiter.check(session, Instant::now()) {
                if let Some(by_ip) = &app.email_taken_by_ip {
                    by_ip.end_turn(client, false, Instant::now());
                }
                return Err(wait);
            }
        }
        Ok(Some(EmailAnswer {
            app,
            client,
            session,
            settled: false,
        }))
    }

    /// The call's answer is in: "email already used" (`taken`) counts on
    /// both limits; any other gives the session's count back.
    fn settle(mut self, taken: bool) {
        self.end(taken);
    }

    fn end(&mut self, taken: bool) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        if let Some(limiter) = &self.app.email_taken_by_ip {
            limiter.end_turn(self.client, taken, Instant::now());
        }
        if !taken {
            if let Some(limiter) = &self.app.email_taken_by_session {
                limiter.refund(&self.session);
            }
        }
    }
}

impl Drop for EmailAnswer<'_> {
    /// Unsettled: the request was dropped while its call ran (the server
    /// stopping past its grace period), so it counts.
    fn drop(&mut self) {
        self.end(true);
    }
}

const EMAIL_TAKEN_LIMITED: &str =
    "too many 'email already used' answers for this address or session";

/// A completion's "email already used" answer, counted on both limits once
/// the call has answered: past either, the answer becomes 429.
///
/// Counted after the call, unlike a business step's: a completion answers
/// so only for the address its session saved as free, so it tests no new
/// address, and a session whose limit is spent must still be able to
/// complete with the free address it saved. The call wrote nothing (the
/// conflict rolled the sync back), so the 429 only withholds the answer.
/// The address's count takes a turn, as a business step's does, so that
/// steps and completions together stay within its limit; a completion
/// dropped before its answer counts on both, as a step's does (`GET
/// session` would tell its outcome).
struct CompletionEmail<'a> {
    app: &'a App,
    client: IpAddr,
    session: u64,
    /// Counted on the session's limit already.
    session_counted: bool,
    settled: bool,
}

impl<'a> CompletionEmail<'a> {
    /// `None` when both limits are off.
    fn watch(app: &'a App, client: IpAddr, session: u64) -> Option<Self> {
        (app.email_taken_by_ip.is_some() || app.email_taken_by_session.is_some()).then(|| {
            CompletionEmail {
                app,
                client,
                session,
                session_counted: false,
                settled: false,
            }
        })
    }

    /// The call answered; `taken`: "email already used". `Err(seconds)`
    /// when that answer is past a limit.
    async fn settle(mut self, taken: bool) -> Result<(), u64> {
        if !taken {
            self.settled = true;
            return Ok(());
        }
        if let Some(limiter) = &self.app.email_taken_by_session {
            let counted = limiter.check(self.session, Instant::now());
            self.session_counted = counted.is_ok();
            if let Err(wait) = counted {
                self.settled = true;
                return Err(wait);
            }
        }
        if let Some(limiter) = &self.app.email_taken_by_ip {
            if let Err(wait) = limiter.wait_turn(&self.client, EMAIL_TURN_PATIENCE).await {
                // Refused by the address: the session's count is given
                // back, as a business step's is.
                if let Some(by_session) = &self.app.email_taken_by_session {
                    by_session.refund(&self.session);
                }
                self.settled = true;
                return Err(wait);
            }
            limiter.end_turn(self.client, true, Instant::now());
        }
        self.settled = true;
        Ok(())
    }
}

impl Drop for CompletionEmail<'_> {
    /// Unsettled: the request was dropped while its call ran (or while its
    /// answer waited for the address's turn), so it counts.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let now = Instant::now();
        if let (false, Some(limiter)) = (self.session_counted, &self.app.email_taken_by_session) {
            limiter.count(self.session, now);
        }
        if let Some(limiter) = &self.app.email_taken_by_ip {
            limiter.count(self.client, now);
        }
    }
}

/// The library's answer for an address held by another tenant.
fn is_email_taken(text: &str) -> bool {
    matches!(
        ErrorKind::parse_message(text),
        Some((_, ErrorKind::Conflict, detail)) if detail.starts_with("email ")
    )
}

fn wrong_method(req: &Request<Incoming>, methods: &[&Method]) -> Reply {
    let allow = routes::allow_header(methods);
    // Cut like every echoed value: the method and the path may be long.
    let message = format!(
        "method {} is not allowed on {} (allowed: {allow})",
        cut(req.method().as_str()),
        quote(req.uri().path()),
    );
    let mut reply = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &message,
        None,
    );
    if let Ok(allow) = HeaderValue::from_str(&allow) {
        reply.headers_mut().insert(header::ALLOW, allow);
    }
    reply
}

/// The 403 of an origin that is not allowed (a preflight's, a bodiless
/// POST's).
fn origin_not_allowed(origin: &HeaderValue) -> Reply {
    let message = format!(
        "origin {} is not allowed to call this API",
        quote(&String::from_utf8_lossy(origin.as_bytes()))
    );
    error(StatusCode::FORBIDDEN, "origin_not_allowed", &message, None)
}

/// Whether a browser sent `req` from a page of another site than this
/// server's and not one of the allowed origins. A POST without a body
/// needs no JSON content type, so a browser sends it from any page
/// without asking first (an empty form, `fetch` in `no-cors` mode): CORS
/// hides the answer from that page, but the call would run. The page's
/// own origin is this server's: the `Host` it asked, whatever the scheme
/// (behind a TLS proxy the server cannot tell which), a default port
/// written or not.
fn cross_site(app: &App, req: &Request<Incoming>) -> Option<HeaderValue> {
    let origin = req.headers().get(header::ORIGIN)?;
    if app.cors_origins.iter().any(|a| a == origin) {
        return None;
    }
    let bytes = origin.as_bytes();
    let authority = bytes
        .strip_prefix(b"http://")
        .or_else(|| bytes.strip_prefix(b"https://"))
        .unwrap_or_default();
    let host = req
        .headers()
        .get(header::HOST)
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    fn without_default_port(a: &[u8]) -> &[u8] {
        a.strip_suffix(b":80")
            .or_else(|| a.strip_suffix(b":443"))
            .unwrap_or(a)
    }
    let same = !authority.is_empty()
        && without_default_port(authority).eq_ignore_ascii_case(without_default_port(host));
    (!same).then(|| origin.clone())
}

/// CORS preflight (and plain OPTIONS): 204 for an allowed origin, 403 for
/// any other, 404 for a path the server does not have. `OPTIONS *` asks
/// about the server as a whole (RFC 9110 9.3.7): every method it serves.
fn preflight(app: &App, req: &Request<Incoming>) -> Reply {
    let methods = match req.uri().path() {
        "*" => routes::server_methods(),
        path => routes::allowed_methods(path),
    };
    if methods.is_empty() {
        return not_found(req.method(), req.uri().path());
    }
    let mut reply = Response::new(Full::new(Bytes::new()));
    *reply.status_mut() = StatusCode::NO_CONTENT;
    // What the path allows, to a browser's preflight as to any OPTIONS:
    // a GET-only route does not offer POST, which would answer 405.
    let allow = HeaderValue::from_str(&routes::allow_header(&methods))
        .unwrap_or(HeaderValue::from_static("OPTIONS"));
    reply.headers_mut().insert(header::ALLOW, allow.clone());
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return reply;
    };
    if !app.cors_origins.iter().any(|a| a == origin) {
        return origin_not_allowed(origin);
    }
    let headers = reply.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, allow);
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS);
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE);
    reply
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

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

    /// The library's refusals of a request key are told as the client
    /// knows them: its header, its routes.
    #[tokio::test]
    async fn a_key_refused_by_the_library_is_told_as_the_clients_header() {
        const KEY: &str = "'5b0e8a1c-2f43-4c5e-9a7d-0c1b2d3e4f50'";
        let cases = [
            (
                "onboarding_step",
                "with another payload",
                "with another body: a new request",
            ),
            (
                "onboarding_phone_verify",
                "by onboarding_step('kb')",
                "for the kb step: a new request",
            ),
            (
                "onboarding_step",
                "by onboarding_complete",
                "for the completion: a new request",
            ),
            (
                "onboarding_phone_verify",
                "by onboarding_phone_send",
                "for a code send (phone/verification): a new request",
            ),
            (
                "onboarding_phone_send",
                "by onboarding_phone_verify",
                "for a code check (phone/verify): a new request",
            ),
            (
                "onboarding_create",
                "with another payload",
                "with another body: a new create",
            ),
            (
                "onboarding_create_kept",
                "with another payload",
                "with another body: a new create",
            ),
        ];
        for (function, used, told) in cases {
            let reply = sql_error(&format!(
                "{function}: conflict: request_key {KEY} was already used {used}"
            ));
            assert_eq!(reply.status(), StatusCode::CONFLICT);
            assert_eq!(
                body_text(reply).await,
                format!(
                    r#"{{"success":false,"error":"Idempotency-Key was already used {told} needs a new key","code":"conflict"}}"#
                ),
                "{function} {used}"
            );
        }
        // A function the server does not name stays as the library said it.
        let said = format!("request_key {KEY} was already used by onboarding_other");
        let reply = sql_error(&format!("onboarding_step: conflict: {said}"));
        assert_eq!(
            body_text(reply).await,
            format!(r#"{{"success":false,"error":"{said}","code":"conflict"}}"#)
        );
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
    async fn rate_limited_is_429_with_the_librarys_wait() {
        let reply = sql_error(
            "onboarding_phone_send: rate_limited: a code was sent 12 s ago; codes are sent at \
             least 60 s apart (retry after 48 s)",
        );
        assert_eq!(reply.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(reply.headers()[header::RETRY_AFTER], "48");
        assert_eq!(
            body_text(reply).await,
            r#"{"success":false,"error":"a code was sent 12 s ago; codes are sent at least 60 s apart (retry after 48 s)","code":"rate_limited"}"#
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
}
