//! What a request must be before any SQL runs: well framed (a `Host`, no
//! transfer coding but chunked), a JSON body when it has one, within the
//! size limit and arriving in time.

use std::future::Future;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use hyper::header;
use hyper::{Request, StatusCode};
use onboarding::quote;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::reply::{closing, error, Reply};

/// A client that sends its body slower than this is cut off (slow-body
/// attacks hold a connection and a task).
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The 503 of a large body that finds the server holding as many as it
/// takes, arriving or waiting for the library.
pub const LARGE_BODIES_FULL: &str =
    "the server is reading as many large bodies as it takes at once";

/// The 503 of a body that finds the server reading as many bytes of bodies
/// as it takes at once ([`BODIES_IN_FLIGHT_BYTES`]).
pub const BODIES_FULL: &str = "the server is reading as many request bodies as it takes at once";

/// The bytes of the ordinary bodies (64 KiB at most each) being read at
/// once, all connections together. A body arrives with its head in one
/// read, and holds its bytes for microseconds; a client that sends all but
/// its last byte holds them for 30 s, and 1,000 such clients held 175 MB
/// each (this server's read, and hyper's buffer): 201 MB. Past it, a body
/// is answered 503 as it arrives: the budget fits 128 such bodies, or
/// 4,000 of the 2 KB a wizard step sends.
pub const BODIES_IN_FLIGHT_BYTES: usize = 8 * 1024 * 1024;

/// The budget of [`BODIES_IN_FLIGHT_BYTES`]: one permit a byte.
static BODIES_IN_FLIGHT: std::sync::LazyLock<Arc<Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(Semaphore::new(BODIES_IN_FLIGHT_BYTES)));

/// The bytes a body takes as they arrive (one permit a byte), and the 503
/// it gets when none is left.
#[derive(Clone, Copy)]
pub struct Budget<'a> {
    pub bytes: &'a Arc<Semaphore>,
    pub full: &'static str,
}

impl Budget<'static> {
    /// The ordinary bodies' ([`BODIES_IN_FLIGHT_BYTES`]): their bytes are
    /// given back once the body is read.
    pub fn ordinary() -> Budget<'static> {
        Budget {
            bytes: &BODIES_IN_FLIGHT,
            full: BODIES_FULL,
        }
    }
}

/// Why a request was refused before any SQL ran.
#[derive(Debug)]
pub enum Refusal {
    /// HTTP/1.1 without `Host` (RFC 9112 3.2: 400).
    NoHost,
    /// More than one `Host` (RFC 9112 3.2: 400): which one a proxy in front
    /// used cannot be known; or one that is not a host (`a, b`).
    ManyHosts,
    /// A `Host` that is not `host[:port]` (RFC 9112 § 3.2): user
    /// information, a port that is not a number up to 65535.
    BadHost(String),
    /// An absolute URL as request target whose authority is not
    /// `host[:port]`: it stands for `Host` (RFC 9112 3.2.2).
    BadTargetHost(String),
    /// A request target that names no resource here: the authority form
    /// (`healthz`, `host:443`, which only CONNECT uses) or an absolute URL
    /// whose scheme is not http(s).
    BadTarget(String),
    /// `chunked` named more than once (the values, joined).
    ChunkedTwice(String),
    /// A content coding (`Content-Encoding`, the values joined) on a body:
    /// none is decoded here, so the JSON inside cannot be read.
    ContentCoding(String),
    /// A transfer coding other than `chunked`: the body cannot be read.
    TransferCoding(String),
    /// An `Expect` other than `100-continue` (the values, joined): an
    /// expectation this server cannot meet (RFC 9110 10.1.1: 417).
    Expectation(String),
    /// A body whose media type is not JSON.
    MediaType(String),
    /// `Content-Type` given more than once (the values, joined).
    MediaTypeRepeated(String),
    /// Over the limit (in bytes).
    TooLarge(usize),
    /// The connection failed or ended mid-body.
    Unreadable,
    /// The body arrived slower than [`BODY_TIMEOUT`].
    Timeout,
    NotUtf8,
    /// The budget of the bodies arriving is all taken (its 503's text).
    BudgetFull(&'static str),
}

/// Checks what every request must be, whatever its route.
pub fn check_framing(req: &Request<Incoming>) -> Result<(), Refusal> {
    // RFC 9112 asks it only of HTTP/1.1, but SPEC.md refuses a missing Host
    // whatever the version, and every HTTP/1.0 client still in use sends one.
    if !req.headers().contains_key(header::HOST) {
        return Err(Refusal::NoHost);
    }
    let mut hosts = req.headers().get_all(header::HOST).iter();
    if let Some(host) = hosts.next() {
        if hosts.next().is_some() || host.as_bytes().contains(&b',') {
            return Err(Refusal::ManyHosts);
        }
        // Empty too: an http URI has a host (RFC 9110 4.2.1: one without
        // is invalid, and its recipient rejects it).
        if !host.to_str().is_ok_and(is_host) {
            return Err(Refusal::BadHost(
                String::from_utf8_lossy(host.as_bytes()).into_owned(),
            ));
        }
    }
    // An absolute URL's authority stands in for Host (RFC 9112 3.2.2), so it
    // is held to the same rule; a target without a path is no resource.
    let uri = req.uri();
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(authority)) if !is_host(authority.as_str()) => {
            return Err(Refusal::BadTargetHost(authority.as_str().to_string()));
        }
        (Some("http" | "https"), Some(_)) => {}
        // `*` (asterisk-form) names the server itself, for OPTIONS only
        // (RFC 9112 3.2.4).
        (None, None) if uri.path() == "*" && req.method() != hyper::Method::OPTIONS => {
            return Err(Refusal::BadTarget(uri.to_string()));
        }
        (None, None) => {}
        _ => return Err(Refusal::BadTarget(uri.to_string())),
    }
    let mut codings: Vec<String> = Vec::new();
    for value in req.headers().get_all(header::TRANSFER_ENCODING) {
        codings.extend(coding_names(value.as_bytes()));
    }
    // hyper decodes `chunked` and nothing else; a body in any other coding
    // (`gzip, chunked`) would reach the parser still compressed.
    if codings.iter().any(|c| c != "chunked") {
        return Err(Refusal::TransferCoding(codings.join(", ")));
    }
    // RFC 9112 6.1: chunked is never applied twice. hyper reads one layer,
    // a proxy in front might read two: the body's end would differ.
    if codings.len() > 1 {
        return Err(Refusal::ChunkedTwice(codings.join(", ")));
    }
    // 100-continue is hyper's to answer (a `100 Continue` once the body is
    // read); any other expectation would be silently unmet.
    let expect = req.headers().get_all(header::EXPECT);
    let expectations: Vec<String> = expect
        .iter()
        .flat_map(|v| coding_names(v.as_bytes()))
        .collect();
    if expectations.iter().any(|e| e != "100-continue") {
        let sent: Vec<String> = expect
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        return Err(Refusal::Expectation(sent.join(", ")));
    }
    Ok(())
}

/// Whether `value` is a `Host` header's `uri-host [ ":" port ]`: an
/// authority without user information, whose port, when written, is
/// digits naming a TCP port (`a:b`, `a@b`, `a:99999` are not).
fn is_host(value: &str) -> bool {
    let Ok(authority) = value.parse::<hyper::http::uri::Authority>() else {
        return false;
    };
    // No user information, and a host before any port (`:8787` has none).
    if value.contains('@') || authority.host().is_empty() {
        return false;
    }
    // An IPv6 literal must be one (the authority parse takes `[zz]`).
    if let Some(literal) = authority.host().strip_prefix('[') {
        let inside = literal.strip_suffix(']').unwrap_or(literal);
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
    }
    // The host is the authority's start (an IPv6 literal with its brackets).
    match value[authority.host().len()..].strip_prefix(':') {
        None => authority.host().len() == value.len(),
        Some("") => true,
        Some(port) => port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok(),
    }
}

/// The codings a `Transfer-Encoding` or `Content-Encoding` value names,
/// lowercase, in order.
pub fn coding_names(value: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(value)
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The 501's text for the transfer codings `codings` (as sent, joined by
/// commas): the connection layer answers with it too, for the codings hyper
/// refuses before the server sees the request.
pub fn transfer_coding_message(codings: &str) -> String {
    format!(
        "transfer coding {} is not supported; only chunked is",
        quote(codings)
    )
}

/// A request that carries a body must say it is JSON: `application/json` or
/// any `+json` type, parameters allowed. Browsers send a cross-origin POST
/// without preflight only for `text/plain`, form types or none; refusing
/// those makes every cross-origin write go through CORS.
pub fn check_media_type(req: &Request<Incoming>) -> Result<(), Refusal> {
    if !has_body(req) {
        return Ok(());
    }
    // RFC 9110 8.4: `identity` is no coding; any other would need decoding
    // before the JSON could be read (415, RFC 9110 15.5.16).
    let codings: Vec<String> = req
        .headers()
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| coding_names(v.as_bytes()))
        .collect();
    if codings.iter().any(|c| c != "identity") {
        return Err(Refusal::ContentCoding(codings.join(", ")));
    }
    let mut values = req.headers().get_all(header::CONTENT_TYPE).iter();
    let Some(value) = values.next() else {
        return Err(Refusal::MediaType(String::new()));
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    // Given twice, the body has no one type: a proxy reading the last
    // header and this server the first would disagree about it.
    if values.next().is_some() {
        let all: Vec<_> = req
            .headers()
            .get_all(header::CONTENT_TYPE)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        return Err(Refusal::MediaTypeRepeated(all.join(", ")));
    }
    let (essence, parameters) = text.split_at(text.find(';').unwrap_or(text.len()));
    let essence = essence.trim().to_ascii_lowercase();
    let json = essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json") && sub.len() > "+json".len());
    if json && parameters_well_formed(parameters) {
        Ok(())
    } else {
        Err(Refusal::MediaType(text.into_owned()))
    }
}

/// Whether a media type's parameters (from the first `;` on) follow RFC
/// 9110's grammar: `; name=value` pieces, the name a token, the value a
/// token or a quoted string, empty pieces allowed.
fn parameters_well_formed(mut rest: &str) -> bool {
    const OWS: [char; 2] = [' ', '\t'];
    let token_len = |s: &str| {
        s.find(|c: char| !(c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)))
            .unwrap_or(s.len())
    };
    loop {
        rest = rest.trim_start_matches(OWS);
        if rest.is_empty() {
            return true;
        }
        let Some(after) = rest.strip_prefix(';') else {
            return false;
        };
        rest = after.trim_start_matches(OWS);
        if rest.is_empty() || rest.starts_with(';') {
            continue;
        }
        let name = token_len(rest);
        let Some(value) = rest[name..].strip_prefix('=').filter(|_| name > 0) else {
            return false;
        };
        rest = if let Some(quoted) = value.strip_prefix('"') {
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let Some(end) = end else { return false };
            &quoted[end + 1..]
        } else {
            let len = token_len(value);
            if len == 0 {
                return false;
            }
            &value[len..]
        };
    }
}

/// Whether the request carries a body (a length above 0, or chunks).
pub fn has_body(req: &Request<Incoming>) -> bool {
    req.headers().contains_key(header::TRANSFER_ENCODING)
        || req.body().size_hint().exact() != Some(0)
}

/// At most this much is allocated for a body before its bytes arrive:
/// announcing 23 MiB, or 64 KiB on each of a thousand connections, and
/// sending a byte must not cost that. A wizard step's body fits it.
const PREALLOCATED_MAX: usize = 16 * 1024;

/// Reads the whole body, refusing it as soon as it is known to exceed the
/// limit: from Content-Length before reading anything, and while streaming
/// (chunked bodies, or a client sending more than it announced).
///
/// Each byte takes one of `budget`'s permits as it arrives (refused with
/// [`Refusal::BudgetFull`] when none is left), answered with the body:
/// what a client holds is what it sent, so that clients trickling bodies
/// hold next to nothing.
async fn read_body(
    mut body: Incoming,
    limit: usize,
    budget: Budget<'_>,
) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), Refusal> {
    let announced = body.size_hint().lower();
    if announced > limit as u64 {
        return Err(Refusal::TooLarge(limit));
    }
    let announced = announced as usize;
    let mut buf = Vec::with_capacity(announced.min(PREALLOCATED_MAX));
    let mut held: Option<OwnedSemaphorePermit> = None;
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
                let full = || Refusal::BudgetFull(budget.full);
                let bytes = u32::try_from(data.len()).map_err(|_| full())?;
                let permit = Arc::clone(budget.bytes)
                    .try_acquire_many_owned(bytes)
                    .map_err(|_| full())?;
                match &mut held {
                    Some(held) => held.merge(permit),
                    None => held = Some(permit),
                }
                let needed = buf.len() + data.len();
                if needed > buf.capacity() {
                    // Doubling, but never past the length announced: a
                    // body of 23 MiB takes 23, not the 32 that doubling
                    // from 1 would reach (its budget counts 23).
                    let mut want = needed.max(buf.capacity() * 2);
                    if announced > 0 {
                        want = want.min(announced).max(needed);
                    }
                    buf.reserve_exact(want - buf.len());
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    let outcome = {
        let mut read = std::pin::pin!(read);
        // A small body has usually arrived with the head: one poll reads it
        // whole, and only a body still on its way arms the timer (a timer
        // per request, set and cancelled, was about 3 % of the HTTP thread).
        match std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await {
            Poll::Ready(outcome) => outcome,
            Poll::Pending => match tokio::time::timeout(BODY_TIMEOUT, read).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Refusal::Timeout),
            },
        }
    };
    outcome.map(|()| (buf, held))
}

/// The body as SQL text: an empty body is SQL NULL (the library reads it as
/// `{}`). Its bytes count against [`BODIES_IN_FLIGHT_BYTES`] while they
/// arrive.
pub async fn payload(body: Incoming, limit: usize) -> Result<Option<String>, Refusal> {
    payload_within(body, limit, Budget::ordinary())
        .await
        .map(|(payload, _)| payload)
}

/// [`payload`] under `budget`, as [`read_body`]; with the permits its
/// bytes hold.
pub async fn payload_within(
    body: Incoming,
    limit: usize,
    budget: Budget<'_>,
) -> Result<(Option<String>, Option<OwnedSemaphorePermit>), Refusal> {
    let (body, held) = read_body(body, limit, budget).await?;
    if body.is_empty() {
        return Ok((None, held));
    }
    String::from_utf8(body)
        .map(|text| (Some(text), held))
        .map_err(|_| Refusal::NotUtf8)
}

impl Refusal {
    /// The answer. Refusals that leave the body unread close the connection
    /// (reading it just to keep the connection would do what the limit
    /// exists to prevent); the connection lingers so the answer arrives.
    pub fn reply(self) -> Reply {
        match self {
            // A client that breaks the protocol once is not trusted with
            // the connection's next request.
            Refusal::NoHost => closing(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "a request needs a Host header",
                None,
            )),
            Refusal::ManyHosts => closing(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "a request has one Host header naming one host",
                None,
            )),
            Refusal::BadHost(host) => closing(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!(
                    "Host {} is not a host (expected a name or an address, and an optional port up to 65535)",
                    quote(&host)
                ),
                None,
            )),
            Refusal::ChunkedTwice(codings) => closing(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!(
                    "Transfer-Encoding {} names chunked more than once; send it once",
                    quote(&codings)
                ),
                None,
            )),
            Refusal::ContentCoding(codings) => {
                let mut reply = closing(error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    &format!(
                        "content coding {} is not supported; send the JSON body without Content-Encoding",
                        quote(&codings)
                    ),
                    None,
                ));
                // RFC 9110 12.5.3: on a 415 for a coding, the codings taken
                // (only identity), which tells it from a media type's 415.
                reply.headers_mut().insert(
                    header::ACCEPT_ENCODING,
                    header::HeaderValue::from_static("identity"),
                );
                reply
            }
            Refusal::BadTargetHost(host) => closing(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!(
                    "the request target's authority {} is not a host (expected a name or an address, and an optional port up to 65535)",
                    quote(&host)
                ),
                None,
            )),
            Refusal::BadTarget(target) => closing(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!(
                    "request target {} is not a path (expected one starting with /, or an http or https URL)",
                    quote(&target)
                ),
                None,
            )),
            Refusal::TransferCoding(codings) => closing(error(
                StatusCode::NOT_IMPLEMENTED,
                "not_implemented",
                &transfer_coding_message(&codings),
                None,
            )),
            Refusal::Expectation(expect) => closing(error(
                StatusCode::EXPECTATION_FAILED,
                "expectation_failed",
                &format!(
                    "Expect {} cannot be met; only 100-continue is supported",
                    quote(&expect)
                ),
                None,
            )),
            Refusal::MediaType(media_type) => {
                let message = if media_type.is_empty() {
                    "the body has no Content-Type; send it as application/json".to_string()
                } else {
                    format!(
                        "content type {} is not supported; send application/json",
                        quote(&media_type)
                    )
                };
                closing(error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    &message,
                    None,
                ))
            }
            Refusal::MediaTypeRepeated(media_types) => closing(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                &format!(
                    "Content-Type is given more than once ({}); send it once, as application/json",
                    quote(&media_types)
                ),
                None,
            )),
            Refusal::TooLarge(limit) => closing(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                &format!("request body is larger than the limit of {limit} bytes"),
                None,
            )),
            // Framing, not JSON: a malformed chunk, trailers over the
            // header limit, or a body cut short (then nobody reads this).
            Refusal::Unreadable => closing(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request body could not be read: its chunked framing or trailers are malformed or over the limit, or it ended early",
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
            Refusal::BudgetFull(what) => closing(super::reply::overloaded(what)),
        }
    }
}
