//! Connections: the accept loop, the caps on open connections, one task per
//! connection, lingering close after a refused body, and shutdown.
//!
//! What a hostile client can hold is bounded here: request headers are
//! capped at [`MAX_HEADER_BYTES`] (so an unfinished head costs at most that
//! much memory), open connections are capped in total and per client
//! address, a connection must finish its headers within `HEADER_TIMEOUT`,
//! and a write the client takes none of for `WRITE_STALL_TIMEOUT` ends the
//! connection. At shutdown, connections with no request in flight
//! (idle keep-alive, or headers still trickling in) close at once; those
//! with one finish it first.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client::TrustedProxies;
use crate::http::{self, App, Reply};

/// How long a client may take to send its request headers; also closes
/// keep-alive connections that stay idle that long.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an answer may wait for the client to take any of it: a client
/// that pipelines requests and never reads their answers would otherwise
/// hold its connection (and its slot under the caps) for ever, blocked in
/// a write that no timeout of reading covers.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The request line and headers together; past it, `431`.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// hyper's own cap on header fields, which this server keeps: a higher one
/// makes hyper allocate the parser's field array on the heap for every
/// request (about 5 % of its throughput, by its documentation), and 100
/// fields is beyond what browsers and SDKs send.
pub const MAX_HEADER_FIELDS: usize = 100;

/// hyper's buffer per connection (its default is about 400 KiB): room for a
/// full head, and a body's bytes as they are read. Held while the
/// connection lives once grown: 64 KiB of it on each of a thousand
/// connections sending a body slowly was 64 MB.
const MAX_BUFFER_BYTES: usize = 24 * 1024;

/// After a refused body (413, 415): how much of the rest is read and thrown
/// away, for how long, and how long a pause ends it. A client that writes
/// its whole body before reading (Python's `http.client`, many SDKs) would
/// otherwise get a reset instead of the answer: closing a socket with unread
/// input makes the kernel send RST, which discards the answer in flight.
/// The bytes are this much beyond the largest body a route takes (the kb
/// step's pasted documents, 23 MiB by default), so that a body just over
/// any limit, refused on its `Content-Length` before a byte of it was
/// read, is still drained whole.
const LINGER_MAX_BYTES: usize = 16 * 1024 * 1024;
const LINGER_TIME: Duration = Duration::from_secs(10);
const LINGER_IDLE: Duration = Duration::from_secs(5);

/// The same for a connection refused at accept (over a cap): shorter, as
/// these come in floods.
const REFUSED_LINGER_BYTES: usize = 64 * 1024;
const REFUSED_LINGER_TIME: Duration = Duration::from_secs(1);

/// Connections refused at accept being answered at once, each holding its
/// socket for up to two [`REFUSED_LINGER_TIME`]s; past it, a refused one
/// is closed unanswered. Unbounded, a flood from one address (1,500
/// connections) held as many descriptors, which the caps exist to bound:
/// the server's accepts then failed with too many open files. Fewer under
/// a low file limit ([`refusing_fds`]).
const MAX_REFUSING: usize = 256;

/// Caps on open connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionCaps {
    /// All clients together.
    pub total: usize,
    /// One client address (trusted proxies are exempt: all their clients
    /// share their address).
    pub per_ip: usize,
}

/// Serves `listener` until `shutdown` completes, then closes idle
/// connections at once and waits up to `grace` for requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    caps: ConnectionCaps,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let open = Arc::new(OpenConnections::new(caps, app.proxies.clone()));
    let refusing = Arc::new(tokio::sync::Semaphore::new(refusing_fds(file_limit_now())));
    let builder = Arc::new(builder());
    let (stopping, stop) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather
                    // than spin, and keep serving the open connections.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        match open.admit(peer.ip()) {
            Ok(slot) => {
                let connection = Connection {
                    app: Arc::clone(&app),
                    builder: Arc::clone(&builder),
                    peer,
                    _slot: slot,
                };
                tokio::spawn(connection.run(stream, stop.clone()));
            }
            Err(refused) => match Arc::clone(&refusing).try_acquire_owned() {
                Ok(answering) => {
                    let date = http::raw_date_line(&app);
                    tokio::spawn(async move {
                        refuse(stream, refused, date).await;
                        drop(answering);
                    });
                }
                Err(_) => drop(stream),
            },
        }
    }
    drop(listener);
    tracing::info!("shutting down: finishing requests in flight");
    stopping.send_replace(true);
    drop(stop);
    // Every connection task holds a receiver: all gone means all closed.
    if tokio::time::timeout(grace, stopping.closed())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the grace period; closing anyway");
    }
}

fn builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        // A client that shuts its sending side once its request is written
        // (`nc -N`, some scripts and proxies) waits for the answer: without
        // this, hyper closed on that end of input, with the call already
        // run and no answer nor log line.
        .half_close(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_BUFFER_BYTES);
    builder
}

/// One accepted connection and the slot it holds under the caps.
struct Connection {
    app: Arc<App>,
    builder: Arc<http1::Builder>,
    peer: SocketAddr,
    _slot: Slot,
}

/// What the connection's task learns from its requests.
#[derive(Default)]
struct Activity {
    /// Requests being answered now: at shutdown, 0 means close at once.
    in_flight: AtomicUsize,
    /// A reply refused a body it did not read: linger before closing.
    linger: AtomicBool,
}

/// One request being answered, counted in [`Activity::in_flight`].
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Connection {
    async fn run(self, stream: TcpStream, mut stop: watch::Receiver<bool>) {
        // Small JSON answers: send them now rather than wait for more (Nagle).
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let service = {
            let (app, activity, peer) = (Arc::clone(&self.app), Arc::clone(&activity), self.peer);
            service_fn(move |req| {
                let app = Arc::clone(&app);
                // Counted from the moment hyper hands the request over, and
                // until its answer is done or dropped.
                let in_flight = InFlight::enter(&activity);
                // Boxed so that the connection is Unpin and can be polled
                // without shutting its socket (see below).
                let answer: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(async move {
                    let reply = http::handle(&app, req, peer.ip()).await;
                    if closes(&reply) {
                        in_flight.0.linger.store(true, Ordering::SeqCst);
                    }
                    drop(in_flight);
                    Ok::<_, Infallible>(reply)
                });
                answer
            })
        };
        let mut conn = self.builder.serve_connection(
            TokioIo::new(Shaped::new(stream, Arc::clone(&self.app))),
            service,
        );
        let mut stopping = false;
        // `poll_without_shutdown`: when the connection is done, its socket is
        // handed back rather than closed, so that it can linger.
        let ended = loop {
            let stop_now = tokio::select! {
                ended = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break ended,
                _ = stop.wait_for(|s| *s), if !stopping => true,
            };
            if stop_now {
                if activity.in_flight.load(Ordering::SeqCst) == 0 {
                    // Idle, or headers still arriving: nothing to finish.
                    return;
                }
                Pin::new(&mut conn).graceful_shutdown();
                stopping = true;
            }
        };
        // A request hyper could not parse (400, 414, 431) was answered with
        // its input unread, like a refused body: linger so that it arrives.
        let (unparsed, timed_out) = match &ended {
            Err(e) if e.is_parse() || e.is_parse_too_large() => (true, false),
            Err(e) if e.is_timeout() => (false, true),
            Err(e) => {
                // Clients that vanish mid-request are routine: not an error.
                tracing::debug!(error = %e, "connection ended with an error");
                return;
            }
            Ok(()) => (false, false),
        };
        let shaped = conn.into_parts().io.into_inner();
        let head_begun = shaped.head.head_begun();
        // Built only for the 408 below.
        let header_lines = if timed_out {
            shaped.header_lines()
        } else {
            String::new()
        };
        let mut stream = shaped.inner;
        if timed_out {
            // A head begun and not finished within the timeout gets its
            // answer; an idle keep-alive connection is just closed.
            if head_begun && !stopping {
                let answer = raw_error(
                    "408 Request Timeout",
                    "request_timeout",
                    &format!(
                        "the request headers took more than {} s to arrive",
                        HEADER_TIMEOUT.as_secs()
                    ),
                    &header_lines,
                );
                answer_and_close(stream, &answer).await;
            }
            return;
        }
        if (unparsed || activity.linger.load(Ordering::SeqCst)) && !stopping {
            let budget = LINGER_MAX_BYTES.saturating_add(self.app.max_documents_body_bytes);
            linger(stream, budget, LINGER_TIME).await;
        } else {
            let _ = stream.shutdown().await;
        }
    }
}

/// Whether `reply` ends its connection with the request body unread.
fn closes(reply: &Reply) -> bool {
    reply
        .headers()
        .get(header::CONNECTION)
        .is_some_and(|v| v == HeaderValue::from_static("close"))
}

/// Sends FIN after the answer, then reads and discards what the client still
/// sends (at most `max_bytes`, for at most `max_time`, until a pause of
/// [`LINGER_IDLE`]), so that closing sends no RST over the answer.
async fn linger(mut stream: TcpStream, max_bytes: usize, max_time: Duration) {
    let _ = stream.shutdown().await;
    let deadline = Instant::now() + max_time;
    let mut buf = vec![0u8; 16 * 1024];
    let mut drained = 0;
    while drained < max_bytes {
        let until = deadline.min(Instant::now() + LINGER_IDLE);
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}

/// File descriptors kept for everything but client connections (the
/// database and its WAL and shared memory, the read connections, the
/// crawler's sockets, the log, the listener; an idle server holds about
/// 18): a quarter of the limit, 32 to 256 of them.
fn reserved_fds(limit: u64) -> u64 {
    (limit / 4).clamp(32, 256) + refusing_fds(limit) as u64
}

/// Descriptors kept for answering connections refused over a cap: an
/// eighth of the file limit, 8 to [`MAX_REFUSING`].
fn refusing_fds(limit: u64) -> usize {
    (limit / 8).clamp(8, MAX_REFUSING as u64) as usize
}

/// The process's open-file limit (`RLIMIT_NOFILE`), when it can be read.
fn file_limit() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct given.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

/// The process's soft file limit now (1,024, a shell's usual one, when
/// it cannot be read).
fn file_limit_now() -> u64 {
    file_limit().map_or(1024, |limit| limit.rlim_cur)
}

/// The total cap on connections that the process's file limit can honour.
/// Raises the soft `RLIMIT_NOFILE` to the hard one first (a shell's
/// default soft limit is often 1,024, below the default cap of 4,096): past
/// the file limit, accepts fail and new clients wait for nothing, where the
/// cap answers them 503. Lowered, with a warning, when even the hard limit
/// is short.
pub fn fit_to_file_limit(max_connections: usize) -> usize {
    let Some(mut limit) = file_limit() else {
        return max_connections;
    };
    // SAFETY: setrlimit only reads the struct given.
    let limit = unsafe {
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
        limit.rlim_cur
    };
    let fits = usize::try_from(limit.saturating_sub(reserved_fds(limit)))
        .unwrap_or(usize::MAX)
        .max(1);
    if fits < max_connections {
        tracing::warn!(
            max_connections,
            file_limit = limit,
            lowered_to = fits,
            "the open-file limit is too low for --max-connections; the cap is lowered to fit"
        );
        return fits;
    }
    max_connections
}

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Total,
    PerIp,
}

/// Answers a connection over a cap with one JSON error, then closes.
async fn refuse(stream: TcpStream, refused: Refused, date: String) {
    let (status, code, message) = match refused {
        Refused::Total => (
            "503 Service Unavailable",
            "unavailable",
            "the server has too many open connections; retry after the Retry-After delay",
        ),
        Refused::PerIp => (
            "429 Too Many Requests",
            "rate_limited",
            "too many open connections from this address; retry after the Retry-After delay",
        ),
    };
    answer_and_close(
        stream,
        &raw_error(status, code, message, &format!("{date}retry-after: 1\r\n")),
    )
    .await;
}

/// Writes `answer` (bounded in time) and closes, reading briefly what the
/// client still sends so that the close sends no RST over the answer.
async fn answer_and_close(mut stream: TcpStream, answer: &[u8]) {
    let write = stream.write_all(answer);
    if matches!(
        tokio::time::timeout(REFUSED_LINGER_TIME, write).await,
        Ok(Ok(()))
    ) {
        linger(stream, REFUSED_LINGER_BYTES, REFUSED_LINGER_TIME).await;
    }
}

/// An error answer written straight to the socket, for the places hyper
/// does not answer through the service: the JSON body every error has,
/// `extra` header lines (each ending in CRLF), and the connection closed.
fn raw_error(status: &str, code: &str, message: &str, extra: &str) -> Vec<u8> {
    let message = serde_json::to_string(message).expect("a string serialises");
    let body = format!(r#"{{"success":false,"error":{message},"code":"{code}"}}"#);
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nx-content-type-options: nosniff\r\n{extra}connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The open connections, counted against the caps.
struct OpenConnections {
    caps: ConnectionCaps,
    proxies: TrustedProxies,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// A connection's place under the caps, given back when it closes.
struct Slot {
    open: Arc<OpenConnections>,
    /// `None` for a trusted proxy (not counted per address).
    ip: Option<IpAddr>,
}

impl OpenConnections {
    fn new(caps: ConnectionCaps, proxies: TrustedProxies) -> OpenConnections {
        OpenConnections {
            caps,
            proxies,
            counts: Mutex::new(Counts::default()),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Plain counters: still right after a panic elsewhere.
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
        let peer = peer.to_canonical();
        let ip = (!self.proxies.trusts(peer)).then_some(crate::client::limited_as(peer));
        let mut counts = self.counts();
        if counts.total >= self.caps.total {
            return Err(Refused::Total);
        }
        if let Some(ip) = ip {
            let mine = counts.per_ip.entry(ip).or_insert(0);
            if *mine >= self.caps.per_ip {
                return Err(Refused::PerIp);
            }
            *mine += 1;
        }
        counts.total += 1;
        Ok(Slot {
            open: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.open.counts();
        counts.total -= 1;
        if let Some(ip) = self.ip {
            if let Some(mine) = counts.per_ip.get_mut(&ip) {
                *mine -= 1;
                if *mine == 0 {
                    counts.per_ip.remove(&ip);
                }
            }
        }
    }
}

/// The socket as hyper sees it, with one difference: the bodiless answers
/// hyper writes by itself when it cannot parse a request (400, 414, 431)
/// are replaced by the server's JSON error body, so that every error a
/// client gets has the same shape. The server's own replies always carry a
/// `content-type`, hyper's never do: that is how they are told apart.
struct Shaped {
    inner: TcpStream,
    /// A replacement answer still being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
    head: HeadWatch,
    /// For the allowed origins.
    app: Arc<App>,
    /// Armed when a write finds the socket full, disarmed by any progress:
    /// when it fires, the write fails and the connection ends.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Shaped {
    fn new(inner: TcpStream, app: Arc<App>) -> Shaped {
        Shaped {
            inner,
            pending: None,
            head: HeadWatch::default(),
            app,
            stall: None,
        }
    }

    /// The CORS lines of an answer to the head being read.
    fn header_lines(&self) -> String {
        http::raw_header_lines(&self.app, self.head.origin.as_deref())
    }

    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, sent)) = &mut self.pending {
            if *sent == bytes.len() {
                self.pending = None;
                break;
            }
            let written = write_or_stall(&mut self.inner, &mut self.stall, cx, &bytes[*sent..]);
            let n = std::task::ready!(written)?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
        }
        Poll::Ready(Ok(()))
    }
}

/// A write to `socket`, failing with `TimedOut` once it has made no
/// progress for [`WRITE_STALL_TIMEOUT`]. The timer exists only while the
/// socket is full: a client reading its answers never arms one.
fn write_or_stall(
    socket: &mut TcpStream,
    stall: &mut Option<Pin<Box<tokio::time::Sleep>>>,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    match Pin::new(socket).poll_write(cx, buf) {
        Poll::Pending => {
            let timer =
                stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL_TIMEOUT)));
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client took none of the answer for 30 s",
                ))),
                Poll::Pending => Poll::Pending,
            }
        }
        ready => {
            *stall = None;
            ready
        }
    }
}

/// Two header lines of the request head being read, for the answers
/// written in hyper's place:
/// - `Transfer-Encoding`: hyper refuses a request whose last transfer coding
///   is not `chunked` (`gzip`, `chunked, gzip`) with a bare 400 before the
///   server sees it; the contract answers a transfer coding it does not
///   support with 501, as it does for `gzip, chunked`, which hyper lets
///   through;
/// - `Origin`: a page of an allowed origin reads those answers too (a 431
///   for its cookies, a 408), as it reads the service's.
///
/// Only the head is read: the watch stops at its blank line and starts
/// again at the next answer's status line (the next request's head comes
/// after it), so bodies cost nothing and what they hold never counts. Only
/// lines starting with `t` or `o` are kept, and only their first bytes.
struct HeadWatch {
    /// Whether the bytes arriving are a request head.
    in_head: bool,
    /// Whether a line of this head had any content (blank lines before a
    /// request line are allowed and skipped).
    head_started: bool,
    /// The start of the line being read (at most [`WATCHED_LINE_BYTES`]).
    line: Vec<u8>,
    /// Bytes of the line being read so far, and its first one.
    line_len: usize,
    first: Option<u8>,
    /// The codings of this head's last `Transfer-Encoding` line, when its
    /// last coding is not `chunked`.
    refused: Option<String>,
    /// This head's last `Transfer-Encoding` value, when it lists an empty
    /// element (`chunked,`): RFC 9110 has it ignored, hyper refuses it.
    empty_coding: Option<String>,
    /// This head's `Origin`, when whole within the line's bytes kept.
    origin: Option<Vec<u8>>,
    /// The first and the last bytes of the request line, kept once it has
    /// ended: its method and its version ([`HeadWatch::refused_version`]).
    start: Vec<u8>,
    tail: Vec<u8>,
}

/// The bytes of a request line's end that hold its version: ` HTTP/x.y\r`.
const VERSION_TAIL: usize = 10;
/// The bytes of a request line's start that hold its method and a space.
const METHOD_START: usize = 32;

const WATCHED_LINE_BYTES: usize = 256;

impl Default for HeadWatch {
    fn default() -> HeadWatch {
        HeadWatch {
            in_head: true,
            head_started: false,
            line: Vec::new(),
            line_len: 0,
            first: None,
            refused: None,
            empty_coding: None,
            origin: None,
            start: Vec::new(),
            tail: Vec::new(),
        }
    }
}

impl HeadWatch {
    fn read(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while self.in_head && !rest.is_empty() {
            let (part, ended) = match memchr::memchr(b'\n', rest) {
                Some(i) => (&rest[..i], true),
                None => (rest, false),
            };
            if self.line_len == 0 {
                self.first = part.first().copied();
            }
            self.line_len += part.len();
            if matches!(self.first, Some(b't' | b'T' | b'o' | b'O'))
                && self.line.len() < WATCHED_LINE_BYTES
            {
                let room = WATCHED_LINE_BYTES - self.line.len();
                self.line.extend_from_slice(&part[..part.len().min(room)]);
            }
            if !self.head_started {
                let room = METHOD_START.saturating_sub(self.start.len());
                self.start.extend_from_slice(&part[..part.len().min(room)]);
                self.tail
                    .extend_from_slice(&part[part.len().saturating_sub(VERSION_TAIL)..]);
                let excess = self.tail.len().saturating_sub(VERSION_TAIL);
                self.tail.drain(..excess);
            }
            if !ended {
                return;
            }
            self.end_line();
            rest = &rest[part.len() + 1..];
        }
    }

    fn end_line(&mut self) {
        const NAME: &[u8] = b"transfer-encoding:";
        let blank = self.line_len == 0 || (self.line_len == 1 && self.first == Some(b'\r'));
        if blank {
            // The head's end; blank lines before its request line do not count.
            self.in_head = !self.head_started;
            if !self.head_started {
                self.start.clear();
                self.tail.clear();
            }
        } else {
            self.head_started = true;
        }
        if self.line.len() >= NAME.len() && self.line[..NAME.len()].eq_ignore_ascii_case(NAME) {
            let codings = crate::http::coding_names(&self.line[NAME.len()..]);
            let cut = self.line_len > self.line.len();
            let chunked_last = !cut && codings.last().is_some_and(|c| c == "chunked");
            let value = String::from_utf8_lossy(&self.line[NAME.len()..]);
            // hyper reads the last element: an empty one there (`chunked,`,
            // or no coding at all) is what it refuses; one before the last
            // (`,chunked`) it takes.
            let empty_last = !cut
                && value
                    .rsplit(',')
                    .next()
                    .is_some_and(|c| c.trim().is_empty());
            self.empty_coding = empty_last.then(|| value.trim().to_string());
            self.refused = (!chunked_last && !empty_last).then(|| codings.join(", "));
        }
        // The first line, as the service reads it (`HeaderMap::get`).
        const ORIGIN: &[u8] = b"origin:";
        if self.origin.is_none()
            && self.line.len() >= ORIGIN.len()
            && self.line[..ORIGIN.len()].eq_ignore_ascii_case(ORIGIN)
        {
            let whole = self.line_len == self.line.len();
            let value = self.line[ORIGIN.len()..].trim_ascii();
            self.origin = whole.then(|| value.to_vec());
        }
        self.line.clear();
        self.line_len = 0;
        self.first = None;
    }

    /// Whether bytes of a request head arrived since the last answer.
    fn head_begun(&self) -> bool {
        self.in_head && (self.head_started || self.line_len > 0)
    }

    /// The version hyper refused, for its 400, when it is not HTTP/1.0 or
    /// 1.1 (as written, `HTTP/2.0`): the request line's, or its version so
    /// far while the line has not ended.
    fn refused_version(&self) -> Option<String> {
        unsupported_version(&self.start, &self.tail, self.head_started)
    }

    /// An answer went out: what the client sends next is a new head.
    fn answered(&mut self) {
        *self = HeadWatch::default();
    }
}

/// The version of a request line (`start`, its first bytes; `tail`, its
/// last ones so far; `whole`, whether it ended) when it is written as
/// HTTP/1's are (a method, a space, ..., ` HTTP/x.y`) but is not 1.0 or
/// 1.1: hyper refuses it as a malformed line (400), where RFC 9110 answers
/// 505. Read before the line ends too: hyper refuses `HTTP/2` as soon as
/// it has it. A line of another shape is malformed, left to the 400.
fn unsupported_version(start: &[u8], tail: &[u8], whole: bool) -> Option<String> {
    let method = start.iter().position(|b| *b == b' ')?;
    let tchar = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    if method == 0 || !start[..method].iter().all(tchar) {
        return None;
    }
    // A line's `\r` before its `\n`, arrived or not.
    let tail = tail.strip_suffix(b"\r").unwrap_or(tail);
    const MARK: &[u8] = b" HTTP/";
    let at = tail.windows(MARK.len()).rposition(|w| w == MARK)?;
    let version = &tail[at + MARK.len()..];
    let digit = |b: &u8| b.is_ascii_digit();
    let unsupported = match version {
        [major, b'.', minor] if digit(major) && digit(minor) => {
            !(*major == b'1' && matches!(minor, b'0' | b'1'))
        }
        [major] if digit(major) => *major != b'1',
        [major, b'.'] if !whole && digit(major) => *major != b'1',
        _ => false,
    };
    let written = String::from_utf8_lossy(version);
    unsupported.then(|| format!("HTTP/{}", written.trim_end_matches('.')))
}

/// What follows an answer's version in its status line: hyper writes
/// `HTTP/1.1`, or `HTTP/1.0` on a connection an HTTP/1.0 request kept
/// alive (where its own answers went out bare, and the head watch never
/// started again, when only `HTTP/1.1` was read).
fn after_version(bytes: &[u8]) -> Option<&[u8]> {
    bytes
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| bytes.strip_prefix(b"HTTP/1.0 "))
}

/// Whether `bytes` start a final answer (not an interim `1xx`, after which
/// the same request's body follows).
fn is_final_status_line(bytes: &[u8]) -> bool {
    after_version(bytes)
        .and_then(|rest| rest.first())
        .is_some_and(|digit| *digit != b'1')
}

/// The JSON answer replacing hyper's own for a request it could not parse;
/// `refused_codings`: a `Transfer-Encoding` hyper refused, which makes its
/// 400 the contract's 501; `empty_coding`: one that lists an empty element
/// (`chunked,`), which hyper refuses as malformed, said so; `version`: a request line's version other than
/// HTTP/1.0 and 1.1, which makes it a 505 (asked only for a 400); and
/// `header_lines`: the answer's Date and CORS lines (asked only for an
/// answer replaced, not for each of the service's).
fn shaped_answer(
    head: &[u8],
    refused_codings: Option<&str>,
    empty_coding: Option<&str>,
    version: impl FnOnce() -> Option<String>,
    header_lines: impl FnOnce() -> String,
) -> Option<Vec<u8>> {
    let status = after_version(head)?.get(..3)?;
    let (line, code, message) = match (status, refused_codings) {
        (b"400", codings) => match (version(), codings) {
            (Some(version), _) => (
                "505 HTTP Version Not Supported",
                "http_version_not_supported",
                format!("{version} is not supported; send HTTP/1.1"),
            ),
            (None, Some(codings)) => (
                "501 Not Implemented",
                "not_implemented",
                crate::http::transfer_coding_message(codings),
            ),
            (None, None) => (
                "400 Bad Request",
                "bad_request",
                match empty_coding {
                    Some(value) => format!(
                        "Transfer-Encoding {} lists an empty coding; send 'chunked'",
                        onboarding::quote(value)
                    ),
                    None => "the request line or a header is malformed".to_string(),
                },
            ),
        },
        (b"414", _) => (
            "414 URI Too Long",
            "uri_too_long",
            "the request target is too long".to_string(),
        ),
        (b"431", _) => (
            "431 Request Header Fields Too Large",
            "headers_too_large",
            format!(
                "the request headers are over the limit of {MAX_HEADER_BYTES} bytes or {MAX_HEADER_FIELDS} fields"
            ),
        ),
        _ => return None,
    };
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")?;
    let fields = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    if fields.contains("\r\ncontent-type:") {
        return None;
    }
    let mut answer = raw_error(line, code, &message, &header_lines());
    // In the version hyper answered with.
    answer[..8].copy_from_slice(&head[..8]);
    Some(answer)
}

impl AsyncRead for Shaped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            self.head.read(&buf.filled()[before..]);
        }
        read
    }
}

impl AsyncWrite for Shaped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        let head = &self.head;
        let answer = shaped_answer(
            buf,
            head.refused.as_deref(),
            head.empty_coding.as_deref(),
            || head.refused_version(),
            || self.header_lines(),
        );
        if is_final_status_line(buf) {
            self.head.answered();
        }
        if let Some(answer) = answer {
            // The service never saw this request: its log line is written
            // here (one per request, as the README says), with no route.
            let status: u16 = std::str::from_utf8(&answer[9..12])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            tracing::info!(route = "-", status, "request refused before routing");
            // hyper's answer counts as written; ours goes out in its place.
            self.pending = Some((answer, 0));
            if let Poll::Ready(Err(e)) = self.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        let this = &mut *self;
        write_or_stall(&mut this.inner, &mut this.stall, cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    /// Not vectored: hyper then writes each answer's head as one buffer,
    /// which is what [`shaped_answer`] needs to see.
    fn is_write_vectored(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The process's open-file limit: (soft, hard).
    fn soft_and_hard() -> (u64, u64) {
        let limit = file_limit().expect("the open-file limit");
        (limit.rlim_cur, limit.rlim_max)
    }

    #[test]
    fn the_file_limit_is_raised_to_the_hard_one_and_bounds_the_cap() {
        let (_, hard) = soft_and_hard();
        assert_eq!(fit_to_file_limit(10), 10);
        let (soft, _) = soft_and_hard();
        // Linux refuses an infinite soft limit (above fs.nr_open).
        if hard != libc::RLIM_INFINITY {
            assert_eq!(soft, hard);
        }
        let fits = usize::try_from(hard.saturating_sub(reserved_fds(hard))).unwrap_or(usize::MAX);
        assert_eq!(fit_to_file_limit(usize::MAX), fits.max(1));
    }

    #[test]
    fn a_low_file_limit_keeps_most_of_it_for_connections() {
        assert_eq!(reserved_fds(64), 32 + 8);
        assert_eq!(reserved_fds(256), 64 + 32);
        assert_eq!(reserved_fds(1024), 256 + 128);
        assert_eq!(reserved_fds(1 << 20), 256 + 256);
    }

    /// What the watch makes of `chunks` read in turn.
    fn watched(chunks: &[&[u8]]) -> Option<String> {
        let mut watch = HeadWatch::default();
        for chunk in chunks {
            watch.read(chunk);
        }
        watch.refused
    }

    #[test]
    fn a_request_lines_version_other_than_1_0_and_1_1_is_kept() {
        let watch = |chunks: &[&[u8]]| {
            let mut watch = HeadWatch::default();
            for chunk in chunks {
                watch.read(chunk);
            }
            watch
        };
        let version = |chunks: &[&[u8]]| watch(chunks).refused_version();
        let some = |v: &str| Some(v.to_string());
        assert_eq!(
            version(&[b"GET / HTTP/2.0\r\nHost: t\r\n\r\n"]),
            some("HTTP/2.0")
        );
        assert_eq!(version(&[b"GET / HTTP/1.2\nHost: t\n\n"]), some("HTTP/1.2"));
        // Split anywhere, after blank lines, past a long target.
        let long = format!("\r\nGET /{} HTTP/3.0\r\nHost: t\r\n\r\n", "a".repeat(500));
        for at in [3, 400, long.len() - 22, long.len() - 17, long.len() - 16] {
            let (a, b) = long.as_bytes().split_at(at);
            assert_eq!(version(&[a, b]), some("HTTP/3.0"), "{at}");
        }
        // Before the line ends: hyper refuses `HTTP/2` as it arrives.
        assert_eq!(version(&[b"GET /healthz HTTP/2"]), some("HTTP/2"));
        assert_eq!(version(&[b"GET /healthz HTT", b"P/2."]), some("HTTP/2"));
        assert_eq!(version(&[b"GET /healthz HTTP/1.2"]), some("HTTP/1.2"));
        assert_eq!(version(&[b"GET /healthz HTTP/1."]), None);
        assert_eq!(version(&[b"GET /healthz HTTP/1.1\r"]), None);
        // The `\r` read before its `\n`, a major version alone.
        assert_eq!(version(&[b"GET /healthz HTTP/2.0\r"]), some("HTTP/2.0"));
        assert_eq!(version(&[b"GET / HTTP/2\r\n\r\n"]), some("HTTP/2"));
        for supported in [
            &b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"[..],
            b"GET / HTTP/1.0\r\n\r\n",
            // Malformed, not another version: hyper's 400 stays.
            b"GET / HTTP/1\r\n\r\n",
            b"GET / HTTP/10.0\r\n\r\n",
            b"GET /HTTP/2.0\r\n\r\n",
            // A header's end is no request line.
            b"GET / HTTP/1.1\r\nX: HTTP/2.0\r\n\r\n",
            // Nor a line that starts with no method (the middle of a head
            // read after an answer, a pipelined request's header).
            b"User-Agent: x HTTP/2.0\r\n\r\n",
            b" / HTTP/2.0\r\n\r\n",
        ] {
            assert_eq!(
                version(&[supported]),
                None,
                "{:?}",
                String::from_utf8_lossy(supported)
            );
        }
        let method = format!("{} / HTTP/2.0\r\n\r\n", "M".repeat(40));
        assert_eq!(version(&[method.as_bytes()]), None);
        let hyper = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        let shaped = shaped_answer(
            hyper,
            None,
            None,
            || Some("HTTP/2.0".to_string()),
            String::new,
        )
        .unwrap();
        let shaped = String::from_utf8(shaped).unwrap();
        assert!(
            shaped.starts_with("HTTP/1.1 505 HTTP Version Not Supported\r\n"),
            "{shaped}"
        );
        assert!(shaped.ends_with(r#"{"success":false,"error":"HTTP/2.0 is not supported; send HTTP/1.1","code":"http_version_not_supported"}"#), "{shaped}");
    }

    #[test]
    fn the_transfer_codings_hyper_refuses_are_read_as_they_arrive() {
        let head = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(watched(&[head]), Some("gzip".to_string()));
        // Split anywhere, even inside the name.
        for at in 1..head.len() {
            assert_eq!(
                watched(&[&head[..at], &head[at..]]),
                Some("gzip".to_string()),
                "{at}"
            );
        }
        assert_eq!(
            watched(&[b"POST / HTTP/1.1\r\ntransfer-encoding: Chunked , GZIP\r\n\r\n"]),
            Some("chunked, gzip".to_string())
        );
        // Accepted codings leave nothing; the last line decides.
        assert_eq!(
            watched(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"]),
            None
        );
        assert_eq!(
            watched(&[
                b"TRANSFER-ENCODING: gzip\r\n",
                b"Transfer-Encoding: chunked\r\n"
            ]),
            None
        );
        // A value too long to keep is refused: its last coding is unknown.
        let long = format!("Transfer-Encoding: {}chunked\r\n", "x, ".repeat(200));
        assert!(watched(&[long.as_bytes()]).is_some());
        // Lines not starting with `t` are skipped, even when a read starts
        // in the middle of one.
        assert_eq!(
            watched(&[b"Host: t\r\nX-Note: a", b"transfer-encoding: gzip\r\n"]),
            None
        );
        // The body is not read: only the head counts.
        assert_eq!(
            watched(&[b"POST / HTTP/1.1\r\nHost: t\r\n\r\n{\r\ntransfer-encoding: gzip\r\n"]),
            None
        );
        // Blank lines before the request line do not end the head.
        assert_eq!(
            watched(&[b"\r\n\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"]),
            Some("gzip".to_string())
        );
    }

    #[test]
    fn each_final_answer_starts_a_new_head() {
        let mut watch = HeadWatch::default();
        watch.read(b"POST / HTTP/1.1\r\nTransfer-Encoding: x, chunked\r\n\r\nbody");
        assert!(!watch.in_head);
        // An interim answer is followed by the same request's body.
        assert!(!is_final_status_line(b"HTTP/1.1 100 Continue\r\n\r\n"));
        assert!(is_final_status_line(b"HTTP/1.1 201 Created\r\n"));
        assert!(!is_final_status_line(b"{\"success\":true}"));
        watch.answered();
        watch.read(b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!(watch.refused.as_deref(), Some("gzip"));
        watch.answered();
        assert_eq!(watch.refused, None);
    }

    #[test]
    fn the_origin_of_each_head_is_read_as_it_arrives() {
        let head = b"GET / HTTP/1.1\r\nHost: t\r\nOrigin:  http://localhost:3002 \r\n\r\n";
        for at in 1..head.len() {
            let mut watch = HeadWatch::default();
            watch.read(&head[..at]);
            watch.read(&head[at..]);
            assert_eq!(
                watch.origin.as_deref(),
                Some(&b"http://localhost:3002"[..]),
                "{at}"
            );
        }
        // A line longer than what is kept is not taken for a shorter value.
        let mut watch = HeadWatch::default();
        let long = format!(
            "GET / HTTP/1.1\r\norigin: http://{}\r\n\r\n",
            "a".repeat(300)
        );
        watch.read(long.as_bytes());
        assert_eq!(watch.origin, None);
        // The next head starts without one; a body's lines never count.
        let mut watch = HeadWatch::default();
        watch.read(b"POST / HTTP/1.1\r\nOrigin: http://a\r\n\r\norigin: http://b\r\n");
        assert_eq!(watch.origin.as_deref(), Some(&b"http://a"[..]));
        // Of two lines, the first, which is the one the service reads.
        let mut twice = HeadWatch::default();
        twice.read(b"GET / HTTP/1.1\r\nOrigin: http://a\r\nOrigin: http://c\r\n\r\n");
        assert_eq!(twice.origin.as_deref(), Some(&b"http://a"[..]));
        watch.answered();
        watch.read(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(watch.origin, None);
    }

    #[test]
    fn a_refused_transfer_coding_turns_hypers_400_into_a_501() {
        let hyper = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        let shaped = String::from_utf8(
            shaped_answer(hyper, Some("gzip"), None, || None, String::new).unwrap(),
        )
        .unwrap();
        let body = r#"{"success":false,"error":"transfer coding 'gzip' is not supported; only chunked is","code":"not_implemented"}"#;
        assert_eq!(
            shaped,
            format!(
                "HTTP/1.1 501 Not Implemented\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        );
    }

    #[test]
    fn hyper_answers_become_json_and_the_servers_own_pass() {
        let hyper =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let shaped =
            String::from_utf8(shaped_answer(hyper, None, None, || None, String::new).unwrap())
                .unwrap();
        let body = r#"{"success":false,"error":"the request headers are over the limit of 16384 bytes or 100 fields","code":"headers_too_large"}"#;
        assert_eq!(
            shaped,
            format!(
                "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
        );
        // On a connection an HTTP/1.0 request kept alive, hyper answers in
        // that version: so does its replacement.
        let hyper = b"HTTP/1.0 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        let shaped =
            String::from_utf8(shaped_answer(hyper, None, None, || None, String::new).unwrap())
                .unwrap();
        assert!(
            shaped.starts_with("HTTP/1.0 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"),
            "{shaped}"
        );
        assert!(shaped.ends_with(body), "{shaped}");
        assert!(is_final_status_line(b"HTTP/1.0 200 OK\r\n"));
        let own = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(shaped_answer(own, None, None, || None, String::new), None);
        assert_eq!(
            shaped_answer(b"HTTP/1.1 200 OK\r\n\r\n", None, None, || None, String::new),
            None
        );
        assert_eq!(
            shaped_answer(b"{\"success\":true}", None, None, || None, String::new),
            None
        );
    }

    #[test]
    fn caps_count_per_address_and_in_total_and_free_on_close() {
        let open = Arc::new(OpenConnections::new(
            ConnectionCaps {
                total: 3,
                per_ip: 2,
            },
            TrustedProxies::new(vec!["10.0.0.1/32".parse().unwrap()]),
        ));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let first = open.admit(a).unwrap();
        let _second = open.admit(a).unwrap();
        assert_eq!(open.admit(a).err(), Some(Refused::PerIp));
        let _third = open.admit(b).unwrap();
        assert_eq!(open.admit(proxy).err(), Some(Refused::Total));
        drop(first);
        assert!(open.admit(proxy).is_ok());
        assert_eq!(open.counts().per_ip.get(&a), Some(&1));
    }
}
