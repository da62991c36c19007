//! `loadgen`: full onboardings over HTTP/1.1 keep-alive against
//! `onboarding-server` on loopback, at several concurrencies.
//!
//! ```text
//! loadgen [--flows N] [--concurrency 1,16,64] [--sync-compare true|false]
//!         [--server PATH] [--url http://127.0.0.1:PORT [--server-pid PID]]
//!         [--max-seconds S] [--server-log-level warn]
//!         [--dqlite-node PATH --extension PATH] [--five-call true|false]
//!         [--client-threads 1]
//! loadgen --peers true [--ceiling PATH] [--node-peer DIR] [--flows N]
//!         [--concurrency 64] [--rounds R]
//! ```
//!
//! With `--peers true` (`make bench-peers`, `scripts/bench-peers`), it runs
//! in turn, at the highest concurrency and on five-call flows (create,
//! business, vapi, kb, complete: the Node peer has no `/channels`), the
//! canned-answer ceiling (`--ceiling`, the built `onboarding-ceiling`), this
//! server with `--synchronous full`, and the Node peer (`--node-peer`, a
//! copy of `peers/node/` with its `node_modules`, `../schema.sql` beside
//! it), each started on a free loopback port and stopped after its run,
//! `--rounds` times (1 by default; `make bench-peers` runs 3). Then it
//! prints this server's flows/s over the Node peer's and over the
//! ceiling's within each round, and the median over the rounds: this
//! machine's speed moves from minute to minute, so a ratio only compares
//! runs taken seconds apart.
//! A peer left out is skipped with a line saying so. `--five-call true`
//! alone gives the five-call flow to the ordinary runs.
//!
//! With `--dqlite-node` (the `onboarding-node` host) and `--extension`
//! (`libonboarding.so`), one more run at the highest concurrency starts
//! three dqlite nodes on loopback and the server on them (`--dqlite`), so
//! the cluster's flows per second print beside the single file's.
//!
//! By default it starts the server it finds next to itself (cargo builds
//! both into the same directory) once per run, on a free loopback port with
//! a fresh database in a temporary directory, `--create-rate-limit 0` and
//! `--crawl-workers 0` (each flow's kb step queues a crawl of a site on the
//! internet, which the crawler would fetch; load runs stay on loopback):
//! `--synchronous full` at each concurrency, then `--synchronous normal` at
//! the highest one, to compare. Each keep-alive connection runs whole
//! flows (create, business, channels, vapi, kb, complete) one request at a
//! time; every response's status and `"success":true` are checked. The
//! connections share one event-loop thread (`--client-threads 1`, the
//! default; more share them out), as wrk's do: it sleeps in `epoll_wait`
//! and handles every answer ready when it wakes, so the generator takes
//! little of the two cores the server runs on and wakes once for many
//! answers. `--client-threads 0` gives the blocking client of the runs
//! before 2026-12-04's twenty-second session: a thread a connection, each
//! answer waking its own thread.
//!
//! Bounded: at most `--flows` flows per run, no new flow after
//! `--max-seconds`, a 10-second timeout on every socket operation, and the
//! server is stopped (SIGTERM, then killed after 10 s) at the end of its run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onboarding_benches::db::TempDir;
use onboarding_benches::flow::{json_str_field, FlowData, CHANNELS_PAYLOAD, VAPI_PAYLOAD};
use onboarding_benches::report::{self, f0, f1, quantile_sorted, Table};
use onboarding_benches::Result;
use serde_json::json;

const ROUTES: [&str; 6] = ["create", "business", "channels", "vapi", "kb", "complete"];
/// The peers' run labels (in the place of a `--synchronous` value).
const PEER_CEILING: &str = "ceiling";
const PEER_NODE: &str = "node";
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    request: Vec<u8>,
}

/// What came back: the status and the body.
struct Response {
    status: u16,
    body: String,
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            stream: None,
            buf: Vec::with_capacity(8192),
            request: Vec::with_capacity(1024),
        }
    }

    fn stream(&mut self) -> Result<&mut TcpStream> {
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)
                .map_err(|e| format!("connect {}: {e}", self.addr))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(IO_TIMEOUT))
                .map_err(|e| e.to_string())?;
            s.set_write_timeout(Some(IO_TIMEOUT))
                .map_err(|e| e.to_string())?;
            self.stream = Some(s);
            self.buf.clear();
        }
        Ok(self.stream.as_mut().expect("just connected"))
    }

    /// Sends one request and reads its response; on any I/O or protocol
    /// error the connection is dropped (the next request reconnects).
    fn send(&mut self, method: &str, path: &str, body: &str) -> Result<Response> {
        let result = self.exchange(method, path, body);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn exchange(&mut self, method: &str, path: &str, body: &str) -> Result<Response> {
        write_request(&mut self.request, method, path, body);
        let request = std::mem::take(&mut self.request);
        let written = self
            .stream()?
            .write_all(&request)
            .map_err(|e| format!("write: {e}"));
        self.request = request;
        written?;
        self.read_response()
    }

    fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 8192];
        let n = self
            .stream
            .as_mut()
            .ok_or("not connected")?
            .read(&mut chunk)
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn read_response(&mut self) -> Result<Response> {
        loop {
            if let Some((len, response, close)) = parse_response(&self.buf)? {
                self.buf.drain(..len);
                if close {
                    self.stream = None;
                }
                return Ok(response);
            }
            self.fill()?;
        }
    }
}

/// A request as both clients send it, in place of `out`'s bytes.
fn write_request(out: &mut Vec<u8>, method: &str, path: &str, body: &str) {
    out.clear();
    write!(
        out,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("writing to a Vec cannot fail");
}

/// The response at the start of `buf`, once it is whole: its length in
/// bytes, its status and body, and whether the server closes the
/// connection after it; `None` while more bytes are needed. Both clients
/// share it: the blocking one reads until it is whole, the event loop
/// tries again after each read.
fn parse_response(buf: &[u8]) -> Result<Option<(usize, Response, bool)>> {
    let Some(blank) = find(buf, b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err("response head over 64 KiB".into());
        }
        return Ok(None);
    };
    let head_end = blank + 4;
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "response head is not UTF-8")?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {}", head.lines().next().unwrap_or("")))?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    };
    let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    let whole = |len: usize, body: &[u8]| {
        let body = String::from_utf8_lossy(body).into_owned();
        Some((len, Response { status, body }, close))
    };
    if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| "bad content-length")?;
        if buf.len() < head_end + len {
            return Ok(None);
        }
        return Ok(whole(head_end + len, &buf[head_end..head_end + len]));
    }
    if !header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return Err("response has neither content-length nor chunked body".into());
    }
    let mut body = Vec::new();
    let mut at = head_end;
    loop {
        let Some(line_len) = find(&buf[at..], b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&buf[at..at + line_len]).map_err(|_| "bad chunk")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        let data = at + line_len + 2;
        if buf.len() < data + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[data..data + size]);
        at = data + size + 2;
        if size == 0 {
            return Ok(whole(at, &body));
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A worker's tallies.
#[derive(Default)]
struct Tally {
    /// Request latencies in microseconds, per route.
    latencies: [Vec<u32>; 6],
    flows_ok: u64,
    errors: u64,
    first_errors: Vec<String>,
}

impl Tally {
    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.first_errors.len() < 5 {
            self.first_errors.push(e);
        }
    }
}

const BASE: &str = "/api/v1/onboarding/session";

/// The routes of a flow, in order. A five-call flow leaves out `channels`,
/// which the Node peer does not have.
fn flow_routes(five_call: bool) -> &'static [usize] {
    if five_call {
        &[0, 1, 3, 4, 5]
    } else {
        &[0, 1, 2, 3, 4, 5]
    }
}

/// The request of `route` in a flow: its path and its body. `id` is the
/// session id create answered (unused by create).
fn flow_request<'d>(route: usize, id: &str, data: &'d FlowData) -> (String, &'d str) {
    match route {
        0 => (BASE.to_string(), "{}"),
        1 => (format!("{BASE}/{id}/business"), &data.business_payload),
        2 => (format!("{BASE}/{id}/channels"), CHANNELS_PAYLOAD),
        3 => (format!("{BASE}/{id}/vapi"), VAPI_PAYLOAD),
        4 => (format!("{BASE}/{id}/kb"), &data.kb_payload),
        _ => (format!("{BASE}/{id}/complete"), "{}"),
    }
}

/// Checks the answer of `route`: its status, `"success":true`, a synced
/// completion; create's answer gives the session id of the flow's next
/// requests.
fn check_answer(route: usize, r: &Response) -> Result<Option<String>> {
    let expect = if route == 0 { 201 } else { 200 };
    if r.status != expect || !r.body.contains(r#""success":true"#) {
        return Err(format!(
            "{} answered {} (expected {expect}): {}",
            ROUTES[route],
            r.status,
            r.body.chars().take(300).collect::<String>()
        ));
    }
    match route {
        0 => json_str_field(&r.body, "session_id")
            .map(|id| Some(id.to_string()))
            .ok_or_else(|| format!("create answered no session_id: {}", r.body)),
        5 if !r.body.contains(r#""sync_status":"synced""#) => {
            Err(format!("complete did not sync: {}", r.body))
        }
        _ => Ok(None),
    }
}

/// One flow on a blocking connection; each request timed and checked.
fn flow(conn: &mut Conn, data: &FlowData, tally: &mut Tally, five_call: bool) -> Result<()> {
    let mut id = String::new();
    for &route in flow_routes(five_call) {
        let (path, body) = flow_request(route, &id, data);
        let start = Instant::now();
        let r = conn.send("POST", &path, body)?;
        tally.latencies[route].push(micros(start.elapsed()));
        if let Some(session) = check_answer(route, &r)? {
            id = session;
        }
    }
    Ok(())
}

/// A latency in whole microseconds, saturating.
fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

/// A free loopback port: bind port 0, note it, let it go for the server.
fn free_addr() -> Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Three dqlite nodes (`onboarding-node`), each in its own process.
struct Nodes {
    children: Vec<Child>,
    addresses: Vec<String>,
}

impl Nodes {
    fn start(node: &Path, so: &Path, dir: &Path) -> Result<Nodes> {
        let mut nodes = Nodes {
            children: Vec::new(),
            addresses: Vec::new(),
        };
        for id in 1..=3 {
            let address = free_addr()?.to_string();
            let mut command = Command::new(node);
            command
                .args(["--id", &id.to_string(), "--address", &address])
                .arg("--dir")
                .arg(dir.join(format!("node{id}")))
                .arg("--extension")
                .arg(so)
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            if nodes.addresses.is_empty() {
                command.arg("--bootstrap");
            } else {
                command.args(["--join", &nodes.addresses.join(",")]);
            }
            let child = command
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", node.display()))?;
            nodes.children.push(child);
            nodes.addresses.push(address);
            // The first node elects itself before the others join it.
            std::thread::sleep(Duration::from_millis(if id == 1 { 1000 } else { 200 }));
        }
        Ok(nodes)
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// The server this run talks to, when loadgen started it.
struct Server {
    child: Child,
    /// The cluster under a `--dqlite` run; stopped after the server.
    _nodes: Option<Nodes>,
    _dir: TempDir,
}

impl Server {
    /// `synchronous` is `full` or `normal` on a file, or `dqlite` on three
    /// nodes started from `dqlite` (the node host and the extension); or,
    /// for the peers, `ceiling` (the binary `binary`, on `ADDR`) or `node`
    /// (`node server.js PORT DB` in the folder `binary`).
    fn start(
        binary: &Path,
        synchronous: &str,
        log_level: &str,
        dqlite: Option<&(PathBuf, PathBuf)>,
    ) -> Result<(Server, SocketAddr)> {
        let dir = TempDir::new("loadgen")?;
        let addr = free_addr()?;
        let (mut command, health) = match synchronous {
            PEER_CEILING => {
                let mut c = Command::new(binary);
                c.arg(addr.to_string());
                (c, "/health")
            }
            PEER_NODE => {
                let mut c = Command::new("node");
                c.current_dir(binary)
                    .arg("server.js")
                    .arg(addr.port().to_string())
                    .arg(dir.path().join("peer-node.db"))
                    .env("HOST", "127.0.0.1");
                (c, "/health")
            }
            _ => {
                let mut c = Command::new(binary);
                c.arg("--listen").arg(addr.to_string());
                // The crawler is off: each flow's kb step queues a crawl of
                // a site on the internet, and load runs talk to loopback only.
                c.args(["--create-rate-limit", "0"])
                    .args(["--crawl-workers", "0"])
                    .args(["--log-level", log_level]);
                (c, "/healthz")
            }
        };
        let nodes = match (synchronous, dqlite) {
            (PEER_CEILING | PEER_NODE, _) => None,
            ("dqlite", Some((node, so))) => {
                let nodes = Nodes::start(node, so, dir.path())?;
                command.args(["--dqlite", &nodes.addresses.join(",")]);
                Some(nodes)
            }
            ("dqlite", None) => return Err("a dqlite run needs --dqlite-node".into()),
            _ => {
                command
                    .arg("--db")
                    .arg(dir.path().join("onboarding.db"))
                    .args(["--synchronous", synchronous]);
                None
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let mut server = Server {
            child,
            _nodes: nodes,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("the server exited at start: {status}"));
            }
            let mut c = Conn::new(addr);
            if c.send("GET", health, "").is_ok_and(|r| r.status == 200) {
                return Ok((server, addr));
            }
            if Instant::now() > deadline {
                server.stop();
                return Err(format!(
                    "{} did not answer {health} on {addr} within 20 s",
                    binary.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (a graceful shutdown, checkpointing its database), then a
    /// kill if it is still there after 10 seconds.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// `VmHWM` (peak resident set) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU seconds (user + system) a process has used so far, from
/// `/proc/<pid>/stat` (clock ticks of 1/100 s, Linux's USER_HZ).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name, which may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// One thread's scheduler times so far, from `/proc/<pid>/task/<tid>/`:
/// its name (`comm`, which Linux cuts to 15 bytes) and the nanoseconds it
/// has run and waited on a run queue for a core (`schedstat`).
struct ThreadTime {
    tid: String,
    name: String,
    run_ns: u64,
    wait_ns: u64,
}

fn thread_times(pid: u32) -> Vec<ThreadTime> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let path = task.path();
            let name = std::fs::read_to_string(path.join("comm")).ok()?;
            let stat = std::fs::read_to_string(path.join("schedstat")).ok()?;
            let mut fields = stat.split_whitespace().map(str::parse::<u64>);
            Some(ThreadTime {
                tid: task.file_name().to_string_lossy().into_owned(),
                name: name.trim_end().to_string(),
                run_ns: fields.next()?.ok()?,
                wait_ns: fields.next()?.ok()?,
            })
        })
        .collect()
}

/// CPU a flow of each of a server's threads over a run, summed by thread
/// name (a pool's threads share one): microseconds running and waiting for
/// a core, the busiest first. A thread born during the run counts from
/// zero; one that ended during it is left out.
fn threads_per_flow(before: &[ThreadTime], after: &[ThreadTime], flows: u64) -> Vec<ThreadCpu> {
    // (name, ns running, ns waiting), summed over the threads of a name.
    let mut by_name: Vec<(&str, u64, u64)> = Vec::new();
    for t in after {
        let (run0, wait0) = before
            .iter()
            .find(|b| b.tid == t.tid)
            .map_or((0, 0), |b| (b.run_ns, b.wait_ns));
        let (run, wait) = (
            t.run_ns.saturating_sub(run0),
            t.wait_ns.saturating_sub(wait0),
        );
        match by_name.iter_mut().find(|(name, _, _)| *name == t.name) {
            Some((_, r, w)) => {
                *r += run;
                *w += wait;
            }
            None => by_name.push((&t.name, run, wait)),
        }
    }
    by_name.retain(|&(_, run, _)| run > 0);
    by_name.sort_by_key(|&(_, run, _)| std::cmp::Reverse(run));
    let per_flow = |ns: u64| ns as f64 / 1000.0 / flows.max(1) as f64;
    by_name
        .into_iter()
        .map(|(name, run, wait)| ThreadCpu {
            name: name.to_string(),
            run_us: per_flow(run),
            wait_us: per_flow(wait),
        })
        .collect()
}

/// One thread name's CPU a flow, in microseconds.
struct ThreadCpu {
    name: String,
    run_us: f64,
    wait_us: f64,
}

struct RunResult {
    synchronous: String,
    concurrency: usize,
    flows_ok: u64,
    errors: u64,
    seconds: f64,
    latencies: [Vec<u32>; 6],
    peak_rss_kib: Option<u64>,
    /// CPU seconds the server and this load generator used during the run.
    server_cpu: Option<f64>,
    client_cpu: Option<f64>,
    /// The server's threads, CPU a flow (empty without the server's pid).
    threads: Vec<ThreadCpu>,
    first_errors: Vec<String>,
}

impl RunResult {
    fn requests(&self) -> usize {
        self.latencies.iter().map(Vec::len).sum()
    }
    fn flows_per_s(&self) -> f64 {
        self.flows_ok as f64 / self.seconds
    }
    fn requests_per_s(&self) -> f64 {
        self.requests() as f64 / self.seconds
    }
    fn all_sorted(&self) -> Vec<u32> {
        let mut all: Vec<u32> = self.latencies.iter().flatten().copied().collect();
        all.sort_unstable();
        all
    }
}

/// The flows of a run, over `concurrency` keep-alive connections: with
/// `client_threads` 0, one blocking thread a connection; otherwise that
/// many event-loop threads sharing the connections (`EventLoop`).
fn load(
    addr: SocketAddr,
    concurrency: usize,
    client_threads: usize,
    flows: u64,
    max: Duration,
    tag: &str,
    five_call: bool,
) -> Result<(Vec<Tally>, f64)> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + max;
    // Room for the latencies of a share of the flows, so that the run
    // does not grow vectors as it goes.
    let tally_for = move |connections: usize| {
        let mut tally = Tally::default();
        let share = flows as usize * connections / concurrency.max(1) + 16;
        for route in &mut tally.latencies {
            route.reserve(share);
        }
        tally
    };
    let workers: Vec<_> = if client_threads == 0 {
        (0..concurrency)
            .map(|_| {
                let next = Arc::clone(&next);
                let tag = tag.to_string();
                std::thread::spawn(move || {
                    let mut conn = Conn::new(addr);
                    let mut tally = tally_for(1);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= flows || Instant::now() > deadline {
                            break;
                        }
                        let data = FlowData::new(&tag, i);
                        match flow(&mut conn, &data, &mut tally, five_call) {
                            Ok(()) => tally.flows_ok += 1,
                            Err(e) => tally.error(e),
                        }
                    }
                    Ok(tally)
                })
            })
            .collect()
    } else {
        let threads = client_threads.min(concurrency);
        (0..threads)
            .map(|t| {
                // The connections dealt out as evenly as they go.
                let connections = concurrency / threads + usize::from(t < concurrency % threads);
                let tally = tally_for(connections);
                let event_loop = EventLoop {
                    addr,
                    next: Arc::clone(&next),
                    flows,
                    deadline,
                    tag: tag.to_string(),
                    routes: flow_routes(five_call),
                    slots: (0..connections).map(|_| Slot::default()).collect(),
                    running: 0,
                    tally,
                };
                std::thread::spawn(move || event_loop.run())
            })
            .collect()
    };
    let mut tallies = Vec::new();
    for w in workers {
        tallies.push(w.join().map_err(|_| "a load thread panicked")??);
    }
    Ok((tallies, start.elapsed().as_secs_f64()))
}

/// One connection of an event loop, and the flow it runs.
#[derive(Default)]
struct Slot {
    stream: Option<mio::net::TcpStream>,
    /// Bytes read and not yet a whole response.
    buf: Vec<u8>,
    /// The request in flight, and how much of it is written.
    out: Vec<u8>,
    written: usize,
    /// The flow in progress: its data, the index of its next answer in
    /// the flow's routes, and the session id create answered.
    flow: Option<(FlowData, usize, String)>,
    /// When the request in flight was sent.
    sent: Option<Instant>,
}

/// Connections sharing one thread, as wrk's do: the thread sleeps in
/// `epoll_wait` and handles every answer that is ready when it wakes,
/// where one blocking thread a connection is woken (and takes a core from
/// the server) for each answer. The same flows, checks and bounds as the
/// blocking client: a request unanswered after 10 s is an error and its
/// connection is dropped, no flow starts after the deadline.
struct EventLoop {
    addr: SocketAddr,
    next: Arc<AtomicU64>,
    flows: u64,
    deadline: Instant,
    tag: String,
    routes: &'static [usize],
    slots: Vec<Slot>,
    /// Slots with a flow in progress; the loop ends at 0.
    running: usize,
    tally: Tally,
}

impl EventLoop {
    fn run(mut self) -> Result<Tally> {
        let mut poll = mio::Poll::new().map_err(|e| format!("epoll: {e}"))?;
        let mut events = mio::Events::with_capacity(256);
        for i in 0..self.slots.len() {
            self.next_flow(&poll, i);
        }
        let mut last_sweep = Instant::now();
        while self.running > 0 {
            match poll.poll(&mut events, Some(Duration::from_secs(1))) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("epoll_wait: {e}")),
            }
            for event in &events {
                let i = event.token().0;
                let result = self.flush(i).and_then(|()| self.on_readable(&poll, i));
                if let Err(e) = result {
                    self.fail(&poll, i, e);
                }
            }
            // Requests left unanswered: the blocking client's read timeout.
            if last_sweep.elapsed() >= Duration::from_secs(1) {
                last_sweep = Instant::now();
                for i in 0..self.slots.len() {
                    if self.slots[i].sent.is_some_and(|t| t.elapsed() > IO_TIMEOUT) {
                        self.fail(&poll, i, format!("no answer within {IO_TIMEOUT:?}"));
                    }
                }
            }
        }
        Ok(self.tally)
    }

    /// Gives slot `i` the run's next flow and sends its first request, or
    /// leaves it idle when the run has no more (or is past its deadline).
    fn next_flow(&mut self, poll: &mio::Poll, i: usize) {
        if self.slots[i].flow.take().is_some() {
            self.running -= 1;
        }
        // Each turn takes a flow from the run's count: bounded by --flows.
        loop {
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            if n >= self.flows || Instant::now() > self.deadline {
                return;
            }
            self.slots[i].flow = Some((FlowData::new(&self.tag, n), 0, String::new()));
            self.running += 1;
            match self.send(poll, i) {
                Ok(()) => return,
                Err(e) => {
                    self.slots[i].flow = None;
                    self.running -= 1;
                    self.tally.error(e);
                    self.drop_connection(i);
                }
            }
        }
    }

    /// Sends the flow's next request, connecting first if needed.
    fn send(&mut self, poll: &mio::Poll, i: usize) -> Result<()> {
        if self.slots[i].stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)
                .map_err(|e| format!("connect {}: {e}", self.addr))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            let mut stream = mio::net::TcpStream::from_std(s);
            poll.registry()
                .register(
                    &mut stream,
                    mio::Token(i),
                    mio::Interest::READABLE | mio::Interest::WRITABLE,
                )
                .map_err(|e| format!("epoll_ctl: {e}"))?;
            self.slots[i].stream = Some(stream);
        }
        let slot = &mut self.slots[i];
        let (data, step, id) = slot.flow.as_ref().ok_or("no flow to send")?;
        let (path, body) = flow_request(self.routes[*step], id, data);
        write_request(&mut slot.out, "POST", &path, body);
        slot.written = 0;
        slot.sent = Some(Instant::now());
        self.flush(i)
    }

    /// Writes what the socket takes of the request in flight; the rest
    /// waits for the socket's next writable event.
    fn flush(&mut self, i: usize) -> Result<()> {
        let slot = &mut self.slots[i];
        let Some(stream) = slot.stream.as_mut() else {
            return Ok(());
        };
        while slot.written < slot.out.len() {
            match stream.write(&slot.out[slot.written..]) {
                Ok(0) => return Err("write: the connection is closed".into()),
                Ok(n) => slot.written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        Ok(())
    }

    /// Reads what the socket holds (until it would block: the events are
    /// edge-triggered) and handles the answer once it is whole.
    fn on_readable(&mut self, poll: &mio::Poll, i: usize) -> Result<()> {
        let mut chunk = [0u8; 8192];
        let mut closed = false;
        {
            let slot = &mut self.slots[i];
            let Some(stream) = slot.stream.as_mut() else {
                return Ok(());
            };
            loop {
                match stream.read(&mut chunk) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => slot.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
        }
        let Some((len, response, close)) = parse_response(&self.slots[i].buf)? else {
            if closed && self.slots[i].flow.is_some() {
                return Err("the server closed the connection".into());
            }
            return Ok(());
        };
        let slot = &mut self.slots[i];
        slot.buf.drain(..len);
        let sent = slot.sent.take().ok_or("an answer to no request")?;
        if !slot.buf.is_empty() {
            return Err("bytes after the answer, with no request in flight".into());
        }
        let (_, step, id) = slot.flow.as_mut().ok_or("an answer with no flow")?;
        let route = self.routes[*step];
        self.tally.latencies[route].push(micros(sent.elapsed()));
        let checked = check_answer(route, &response);
        if let Ok(Some(session)) = &checked {
            id.clone_from(session);
        }
        *step += 1;
        let done = *step == self.routes.len();
        if close || closed {
            self.drop_connection(i);
        }
        match checked {
            // A wrong answer fails its flow but not the connection, as in
            // the blocking client.
            Err(e) => {
                self.tally.error(e);
                self.next_flow(poll, i);
                Ok(())
            }
            Ok(_) if done => {
                self.tally.flows_ok += 1;
                self.next_flow(poll, i);
                Ok(())
            }
            Ok(_) => self.send(poll, i),
        }
    }

    /// Counts the error, drops the connection and moves the slot to the
    /// run's next flow, as the blocking client does.
    fn fail(&mut self, poll: &mio::Poll, i: usize, e: String) {
        self.drop_connection(i);
        // A slot idle since the run's flows ran out has no flow to fail:
        // its socket closing (the server stopping) is no error.
        if self.slots[i].flow.is_some() {
            self.tally.error(e);
            self.next_flow(poll, i);
        }
    }

    /// Closing the socket takes it out of the epoll set.
    fn drop_connection(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        slot.stream = None;
        slot.buf.clear();
        slot.sent = None;
    }
}

struct Options {
    flows: u64,
    max: Duration,
    server: Option<PathBuf>,
    url: Option<SocketAddr>,
    server_pid: Option<u32>,
    log_level: String,
    /// The node host and the extension, for the run on a dqlite cluster.
    dqlite: Option<(PathBuf, PathBuf)>,
    /// Flows without `channels` (create, business, vapi, kb, complete).
    five_call: bool,
    /// Event-loop threads sharing the connections; 0: a blocking thread
    /// a connection.
    client_threads: usize,
    /// The peers' comparison: ceiling, this server, Node peer, in turn.
    peers: bool,
    /// How many times the peers' comparison runs its three in turn.
    rounds: usize,
    /// The built canned-answer ceiling (`onboarding-ceiling`).
    ceiling: Option<PathBuf>,
    /// A copy of the Node peer's folder, `npm install` done.
    node_peer: Option<PathBuf>,
}

fn run_one(o: &Options, synchronous: &str, concurrency: usize, run: usize) -> Result<RunResult> {
    let peer = match synchronous {
        PEER_CEILING => o.ceiling.as_ref(),
        PEER_NODE => o.node_peer.as_ref(),
        _ => None,
    };
    let (mut server, addr, pid) = match (&o.url, &o.server) {
        _ if peer.is_some() => {
            let path = peer.expect("just checked");
            let (s, addr) = Server::start(path, synchronous, &o.log_level, None)?;
            let pid = s.pid();
            (Some(s), addr, Some(pid))
        }
        (Some(addr), _) => (None, *addr, o.server_pid),
        (None, Some(binary)) => {
            let (s, addr) = Server::start(binary, synchronous, &o.log_level, o.dqlite.as_ref())?;
            let pid = s.pid();
            (Some(s), addr, Some(pid))
        }
        (None, None) => return Err("no server: give --server or --url".into()),
    };
    let tag = format!("lg{}-{run}", std::process::id());
    let server_before = pid.and_then(|p| cpu_seconds(&p.to_string()));
    let client_before = cpu_seconds("self");
    let threads_before = pid.map(thread_times).unwrap_or_default();
    let (tallies, seconds) = load(
        addr,
        concurrency,
        o.client_threads,
        o.flows,
        o.max,
        &tag,
        o.five_call,
    )?;
    let peak_rss_kib = pid.and_then(peak_rss_kib);
    let delta = |before: Option<f64>, after: Option<f64>| Some(after? - before?);
    let server_cpu = delta(server_before, pid.and_then(|p| cpu_seconds(&p.to_string())));
    let client_cpu = delta(client_before, cpu_seconds("self"));
    let threads_after = pid.map(thread_times).unwrap_or_default();
    if let Some(s) = server.as_mut() {
        s.stop();
    }
    let mut latencies: [Vec<u32>; 6] = Default::default();
    let (mut flows_ok, mut errors, mut first_errors) = (0, 0, Vec::new());
    for t in tallies {
        for (all, mine) in latencies.iter_mut().zip(t.latencies) {
            all.extend(mine);
        }
        flows_ok += t.flows_ok;
        errors += t.errors;
        first_errors.extend(t.first_errors);
    }
    first_errors.truncate(5);
    let threads = threads_per_flow(&threads_before, &threads_after, flows_ok + errors);
    for l in &mut latencies {
        l.sort_unstable();
    }
    Ok(RunResult {
        synchronous: if o.url.is_some() {
            "as configured".into()
        } else {
            synchronous.into()
        },
        concurrency,
        flows_ok,
        errors,
        seconds,
        latencies,
        peak_rss_kib,
        server_cpu,
        client_cpu,
        threads,
        first_errors,
    })
}

fn ms(us: u32) -> f64 {
    f64::from(us) / 1000.0
}

/// The usage this file's documentation opens with.
const USAGE: &str = "\
loadgen [--flows N] [--concurrency 1,16,64] [--sync-compare true|false]
        [--server PATH] [--url http://127.0.0.1:PORT [--server-pid PID]]
        [--max-seconds S] [--server-log-level warn]
        [--dqlite-node PATH --extension PATH] [--five-call true|false]
        [--client-threads 1]
loadgen --peers true [--ceiling PATH] [--node-peer DIR] [--flows N]
        [--concurrency 64] [--rounds R]
(benches/README.md says what each run measures)";

fn main() {
    // Asked for help, it says how to run it instead of running the whole
    // benchmark (an unknown flag is otherwise ignored).
    if std::env::args().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    if let Err(e) = run() {
        eprintln!("loadgen: error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let url =
        match report::arg("--url", String::new()) {
            u if u.is_empty() => None,
            u => {
                let hostport = u.trim_start_matches("http://").trim_end_matches('/');
                Some(hostport.parse::<SocketAddr>().map_err(|e| {
                    format!("--url {u:?}: expected http://IP:PORT on loopback; {e}")
                })?)
            }
        };
    if let Some(a) = url {
        if !a.ip().is_loopback() {
            return Err(format!("--url {a}: loopback only"));
        }
    }
    let default_server = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("onboarding-server")));
    let server: Option<PathBuf> = match report::arg("--server", String::new()) {
        s if !s.is_empty() => Some(PathBuf::from(s)),
        _ => default_server,
    };
    let o = Options {
        flows: report::arg("--flows", 2000),
        max: Duration::from_secs(report::arg("--max-seconds", 60)),
        server,
        url,
        server_pid: Some(report::arg("--server-pid", 0u32)).filter(|&p| p != 0),
        log_level: report::arg("--server-log-level", "warn".to_string()),
        dqlite: match (
            report::arg("--dqlite-node", String::new()),
            report::arg("--extension", String::new()),
        ) {
            (node, so) if !node.is_empty() && !so.is_empty() => {
                Some((PathBuf::from(node), PathBuf::from(so)))
            }
            _ => None,
        },
        five_call: report::arg("--five-call", false) || report::arg("--peers", false),
        client_threads: report::arg("--client-threads", 1usize).min(64),
        peers: report::arg("--peers", false),
        rounds: report::arg("--rounds", 1usize).clamp(1, 20),
        ceiling: Some(report::arg("--ceiling", String::new()))
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
        node_peer: Some(report::arg("--node-peer", String::new()))
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
    };
    let levels: Vec<usize> = report::arg("--concurrency", "1,16,64".to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|&c| c > 0 && c <= 1024)
        .collect();
    let compare = report::arg("--sync-compare", true) && o.url.is_none() && !o.peers;
    let top = levels.iter().copied().max().unwrap_or(64);

    let mut plan: Vec<(&str, usize)> = Vec::new();
    if o.peers {
        // In turn, at the highest concurrency: the ceiling, this server, the
        // Node peer, `--rounds` times, so that each ratio compares runs a
        // few seconds apart; a peer not given is skipped, saying so.
        if o.ceiling.is_none() {
            eprintln!("*** no --ceiling: the canned-answer ceiling is skipped ***");
        }
        if o.node_peer.is_none() {
            eprintln!("*** no --node-peer: the Node peer is skipped ***");
        }
        for _ in 0..o.rounds {
            if o.ceiling.is_some() {
                plan.push((PEER_CEILING, top));
            }
            plan.push(("full", top));
            if o.node_peer.is_some() {
                plan.push((PEER_NODE, top));
            }
        }
    } else {
        plan.extend(levels.iter().map(|&c| ("full", c)));
    }
    if compare {
        plan.push(("normal", top));
    }
    if o.dqlite.is_some() && o.url.is_none() && !o.peers {
        plan.push(("dqlite", top));
    }
    let mut results = Vec::new();
    for (run, &(sync, c)) in plan.iter().enumerate() {
        let what = match sync {
            PEER_CEILING | PEER_NODE => format!("peer {sync}"),
            _ => format!("this server, --synchronous {sync}"),
        };
        eprintln!(
            "run {}: {what}, concurrency {c}, {} flows",
            run + 1,
            o.flows
        );
        let r = run_one(&o, sync, c, run)?;
        eprintln!(
            "  {:.0} flows/s, {} errors, {:.1} s",
            r.flows_per_s(),
            r.errors,
            r.seconds
        );
        for e in &r.first_errors {
            eprintln!("  error: {e}");
        }
        results.push(r);
    }

    let mut table = Table::new(&[
        "sync / peer",
        "conc",
        "flows",
        "errors",
        "flows/s",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "peak RSS MB",
        "server CPU %",
        "loadgen CPU %",
    ]);
    let mut routes = Table::new(&[
        "sync / conc / route",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
    ]);
    let mut runs_json = Vec::new();
    for r in &results {
        let all = r.all_sorted();
        let rss = r.peak_rss_kib.map(|k| k as f64 / 1024.0);
        table.row(vec![
            r.synchronous.clone(),
            r.concurrency.to_string(),
            r.flows_ok.to_string(),
            r.errors.to_string(),
            format!("{:.0}", r.flows_per_s()),
            format!("{:.0}", r.requests_per_s()),
            format!("{:.2}", ms(quantile_sorted(&all, 0.5))),
            format!("{:.2}", ms(quantile_sorted(&all, 0.9))),
            format!("{:.2}", ms(quantile_sorted(&all, 0.99))),
            format!("{:.2}", ms(all.last().copied().unwrap_or(0))),
            rss.map_or("-".into(), f1),
            r.server_cpu
                .map_or("-".into(), |c| f0(100.0 * c / r.seconds)),
            r.client_cpu
                .map_or("-".into(), |c| f0(100.0 * c / r.seconds)),
        ]);
        let mut per_route = serde_json::Map::new();
        for (name, l) in ROUTES.iter().zip(&r.latencies) {
            if l.is_empty() {
                continue;
            }
            routes.row(vec![
                format!("{} / {} / {name}", r.synchronous, r.concurrency),
                format!("{:.2}", ms(quantile_sorted(l, 0.5))),
                format!("{:.2}", ms(quantile_sorted(l, 0.9))),
                format!("{:.2}", ms(quantile_sorted(l, 0.99))),
                format!("{:.2}", ms(l.last().copied().unwrap_or(0))),
            ]);
            per_route.insert(
                name.to_string(),
                json!({
                    "n": l.len(),
                    "p50_ms": ms(quantile_sorted(l, 0.5)),
                    "p90_ms": ms(quantile_sorted(l, 0.9)),
                    "p99_ms": ms(quantile_sorted(l, 0.99)),
                    "max_ms": ms(l.last().copied().unwrap_or(0)),
                }),
            );
        }
        runs_json.push(json!({
            "synchronous": r.synchronous,
            "concurrency": r.concurrency,
            "flows_ok": r.flows_ok,
            "errors": r.errors,
            "seconds": (r.seconds * 1000.0).round() / 1000.0,
            "flows_per_s": r.flows_per_s().round(),
            "requests_per_s": r.requests_per_s().round(),
            "p50_ms": ms(quantile_sorted(&all, 0.5)),
            "p90_ms": ms(quantile_sorted(&all, 0.9)),
            "p99_ms": ms(quantile_sorted(&all, 0.99)),
            "max_ms": ms(all.last().copied().unwrap_or(0)),
            "peak_rss_mb": rss.map(|m| (m * 10.0).round() / 10.0),
            "server_cpu_percent": r.server_cpu.map(|c| (100.0 * c / r.seconds).round()),
            "loadgen_cpu_percent": r.client_cpu.map(|c| (100.0 * c / r.seconds).round()),
            "server_threads_us_per_flow": r.threads.iter().map(|t| json!({
                "thread": t.name,
                "running": (t.run_us * 10.0).round() / 10.0,
                "waiting_for_a_core": (t.wait_us * 10.0).round() / 10.0,
            })).collect::<Vec<_>>(),
            "routes": per_route,
            "first_errors": r.first_errors,
        }));
    }
    let find = |sync: &str| {
        results
            .iter()
            .find(|r| r.synchronous == sync && r.concurrency == top)
            .map(RunResult::flows_per_s)
    };
    let ratio = match (find("full"), find("normal")) {
        (Some(f), Some(n)) if n > 0.0 => Some(f / n),
        _ => None,
    };
    println!(
        "loadgen: {} flows per run ({} requests each) over keep-alive HTTP/1.1 on loopback, {}; \
         server log level {}; latencies are per request; CPU % of one core (2 cores = 200)",
        o.flows,
        if o.five_call { 5 } else { 6 },
        match o.client_threads {
            0 => "a blocking client thread a connection".to_string(),
            1 => "the connections on one event-loop thread".to_string(),
            n => format!("the connections on {n} event-loop threads"),
        },
        o.log_level
    );
    println!("{}", table.render());
    println!("{}", routes.render());
    // Where a flow's CPU goes in the server, thread by thread: what bounds
    // a closed loop on two cores is as much the waits for a core at each
    // hand-off as any one thread's running time (benches/README.md).
    println!("the server's threads, CPU µs a flow (running / waiting for a core):");
    for r in &results {
        if r.threads.is_empty() {
            continue;
        }
        let each: Vec<String> = r
            .threads
            .iter()
            .filter(|t| t.run_us >= 0.05)
            .map(|t| format!("{} {:.1} / {:.1}", t.name, t.run_us, t.wait_us))
            .collect();
        println!(
            "  {} / {}: {}",
            r.synchronous,
            r.concurrency,
            each.join(", ")
        );
    }
    if let Some(r) = ratio {
        println!(
            "concurrency {top}: flows/s with --synchronous full / normal = {r:.2} (target >= 0.5)"
        );
    }
    let cluster_ratio = match (find("dqlite"), find("full")) {
        (Some(d), Some(f)) if f > 0.0 => {
            println!(
                "concurrency {top}: flows/s through a 3-node dqlite cluster {d:.0}, \
                 single file (--synchronous full) {f:.0}: {:.2} of it",
                d / f
            );
            Some(d / f)
        }
        _ => None,
    };
    // The peers' comparison: this server (--synchronous full) over the Node
    // peer and over the ceiling, within each round, then the median over
    // the rounds.
    let per_round = if o.peers {
        plan.len() / o.rounds
    } else {
        plan.len()
    };
    let rounds: Vec<&[RunResult]> = results.chunks(per_round.max(1)).collect();
    let round_ratios = |peer: &str| -> Vec<f64> {
        rounds
            .iter()
            .filter_map(|round| {
                let flows = |sync: &str| {
                    round
                        .iter()
                        .find(|r| r.synchronous == sync && r.concurrency == top)
                        .map(RunResult::flows_per_s)
                };
                match (flows("full"), flows(peer)) {
                    (Some(f), Some(p)) if p > 0.0 => Some(f / p),
                    _ => None,
                }
            })
            .collect()
    };
    let (node_ratios, ceiling_ratios) = (round_ratios(PEER_NODE), round_ratios(PEER_CEILING));
    let median_of = |v: &[f64]| (!v.is_empty()).then(|| report::median(v));
    let (over_node, over_ceiling) = (median_of(&node_ratios), median_of(&ceiling_ratios));
    if o.peers {
        let mut peers = Table::new(&["run", "flows/s", "p99 ms", "peak RSS MB", "errors"]);
        for r in results.iter().filter(|r| r.concurrency == top) {
            let all = r.all_sorted();
            peers.row(vec![
                match r.synchronous.as_str() {
                    PEER_CEILING => "canned-answer ceiling".to_string(),
                    PEER_NODE => "Node peer (better-sqlite3, synchronous=NORMAL)".to_string(),
                    s => format!("this server (--synchronous {s})"),
                },
                format!("{:.0}", r.flows_per_s()),
                format!("{:.2}", ms(quantile_sorted(&all, 0.99))),
                r.peak_rss_kib.map_or("-".into(), |k| f1(k as f64 / 1024.0)),
                r.errors.to_string(),
            ]);
        }
        println!(
            "peers, concurrency {top}, five-call flows (create, business, vapi, kb, complete):"
        );
        println!("{}", peers.render());
        let each = |v: &[f64]| {
            v.iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let over = |v: &[f64]| match v.len() {
            1 => String::new(),
            n => format!(" (median of {n} rounds: {})", each(v)),
        };
        match over_node {
            Some(r) => println!(
                "this server / Node peer = {r:.2}{} (target >= 5)",
                over(&node_ratios)
            ),
            None => println!("this server / Node peer: not measured (Node peer skipped)"),
        }
        match over_ceiling {
            Some(r) => println!(
                "this server / ceiling = {r:.2}{} (target >= 0.40)",
                over(&ceiling_ratios)
            ),
            None => println!("this server / ceiling: not measured (ceiling skipped)"),
        }
    }
    let round2 = |r: Option<f64>| r.map(|r| (r * 100.0).round() / 100.0);
    let line = json!({
        "bench": "http",
        "machine": report::machine(),
        "flows_per_run": o.flows,
        "server_log_level": o.log_level,
        "runs": runs_json,
        "full_over_normal_at_top_concurrency": ratio.map(|r| (r * 100.0).round() / 100.0),
        "dqlite_over_full_at_top_concurrency": cluster_ratio.map(|r| (r * 100.0).round() / 100.0),
        "five_call_flows": o.five_call,
        "client_threads": o.client_threads,
        "server_over_node_peer": round2(over_node),
        "server_over_ceiling": round2(over_ceiling),
        "rounds": if o.peers { o.rounds } else { 0 },
        "server_over_node_peer_per_round": node_ratios.iter().map(|r| round2(Some(*r))).collect::<Vec<_>>(),
        "server_over_ceiling_per_round": ceiling_ratios.iter().map(|r| round2(Some(*r))).collect::<Vec<_>>(),
    });
    println!("{line}");
    let errors: u64 = results.iter().map(|r| r.errors).sum();
    if errors > 0 {
        return Err(format!("{errors} flows failed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(tid: &str, name: &str, run_ns: u64, wait_ns: u64) -> ThreadTime {
        ThreadTime {
            tid: tid.into(),
            name: name.into(),
            run_ns,
            wait_ns,
        }
    }

    #[test]
    fn threads_are_summed_by_name_from_their_own_start_and_sorted_by_running_time() {
        let before = [
            t("10", "onboarding-serv", 1_000_000, 50_000),
            t("11", "onboarding-writ", 2_000_000, 0),
            t("12", "pool", 100, 100),
            t("13", "gone", 5, 5),
        ];
        let after = [
            t("10", "onboarding-serv", 3_000_000, 450_000),
            t("11", "onboarding-writ", 6_000_000, 1_000_000),
            t("12", "pool", 1_100, 300),
            // Born during the run: counts from zero.
            t("14", "pool", 2_000, 1_000),
            // Never ran during the run: left out.
            t("15", "idle", 0, 0),
        ];
        let cpu = threads_per_flow(&before, &after, 100);
        let got: Vec<(&str, f64, f64)> = cpu
            .iter()
            .map(|c| (c.name.as_str(), c.run_us, c.wait_us))
            .collect();
        assert_eq!(
            got,
            [
                ("onboarding-writ", 40.0, 10.0),
                ("onboarding-serv", 20.0, 4.0),
                ("pool", 0.03, 0.012),
            ]
        );
    }

    #[test]
    fn a_thread_list_is_read_from_proc() {
        let mine = thread_times(std::process::id());
        assert!(
            mine.iter().any(|t| t.tid == std::process::id().to_string()),
            "the main thread is listed: {:?}",
            mine.iter().map(|t| &t.tid).collect::<Vec<_>>()
        );
        assert!(thread_times(u32::MAX).is_empty());
    }

    #[test]
    fn a_response_is_whole_only_with_its_last_byte() {
        let text = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n\
                     Content-Length: 16\r\n\r\n{\"success\":true}";
        for cut in 0..text.len() {
            assert!(
                parse_response(&text[..cut]).unwrap().is_none(),
                "cut at {cut}"
            );
        }
        let mut two = text.to_vec();
        two.extend_from_slice(b"HTTP/1.1 200 OK");
        let (len, r, close) = parse_response(&two).unwrap().unwrap();
        assert_eq!(
            (len, r.status, r.body.as_str(), close),
            (text.len(), 201, r#"{"success":true}"#, false)
        );

        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                        4\r\n{\"a\"\r\n3;x=y\r\n:1}\r\n0\r\n\r\n";
        for cut in 0..chunked.len() {
            assert!(
                parse_response(&chunked[..cut]).unwrap().is_none(),
                "cut at {cut}"
            );
        }
        let (len, r, close) = parse_response(chunked).unwrap().unwrap();
        assert_eq!(
            (len, r.status, r.body.as_str(), close),
            (chunked.len(), 200, r#"{"a":1}"#, true)
        );

        let err = |t: &[u8]| parse_response(t).err().unwrap();
        assert_eq!(err(b"HTTP/1.1 OK\r\n\r\n"), "bad status line: HTTP/1.1 OK");
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\n\r\n"),
            "response has neither content-length nor chunked body"
        );
        assert_eq!(
            err(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            "bad content-length"
        );
    }

    /// A keep-alive server on loopback answering the flows' routes as this
    /// server would (kb with `kb_status` when given one), a thread a
    /// connection; it stops accepting after `connections`.
    fn fake_server(connections: usize, kb_status: u16) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(connections) {
                let mut stream = stream.unwrap();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let mut n_session = 0;
                    loop {
                        // A request: its head and its Content-Length body.
                        let Some(end) = find(&buf, b"\r\n\r\n") else {
                            match stream.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .map_or(0, |v| v.parse().unwrap());
                        if buf.len() < end + 4 + len {
                            let n = stream.read(&mut chunk).unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                            continue;
                        }
                        buf.drain(..end + 4 + len);
                        let path = head.split(' ').nth(1).unwrap_or("").to_string();
                        let (status, body) = if path == BASE {
                            n_session += 1;
                            (
                                201,
                                format!(r#"{{"success":true,"session_id":"onb_{n_session}"}}"#),
                            )
                        } else if path.ends_with("/kb") && kb_status != 200 {
                            (
                                kb_status,
                                r#"{"success":false,"code":"internal"}"#.to_string(),
                            )
                        } else if path.ends_with("/complete") {
                            (
                                200,
                                r#"{"success":true,"sync_status":"synced"}"#.to_string(),
                            )
                        } else {
                            (200, r#"{"success":true}"#.to_string())
                        };
                        let answer = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn the_event_loop_runs_every_flow_and_checks_every_answer() {
        for threads in [0, 1, 2] {
            let addr = fake_server(5, 200);
            let (tallies, _) =
                load(addr, 5, threads, 23, Duration::from_secs(30), "t", true).unwrap();
            let ok: u64 = tallies.iter().map(|t| t.flows_ok).sum();
            let errors: u64 = tallies.iter().map(|t| t.errors).sum();
            let counts: Vec<usize> = (0..6)
                .map(|r| tallies.iter().map(|t| t.latencies[r].len()).sum())
                .collect();
            assert_eq!((ok, errors), (23, 0), "client threads {threads}");
            assert_eq!(counts, [23, 23, 0, 23, 23, 23], "client threads {threads}");
        }
    }

    #[test]
    fn a_wrong_answer_fails_its_flow_and_the_run_goes_on() {
        for threads in [0, 1] {
            let addr = fake_server(3, 500);
            let (tallies, _) =
                load(addr, 3, threads, 7, Duration::from_secs(30), "t", false).unwrap();
            let ok: u64 = tallies.iter().map(|t| t.flows_ok).sum();
            let errors: u64 = tallies.iter().map(|t| t.errors).sum();
            assert_eq!((ok, errors), (0, 7), "client threads {threads}");
            // The connections stayed up: no flow reconnected (the server
            // accepts 3 connections only).
            let messages: Vec<&String> = tallies.iter().flat_map(|t| &t.first_errors).collect();
            assert!(!messages.is_empty());
            for m in messages {
                assert_eq!(
                    m,
                    r#"kb answered 500 (expected 200): {"success":false,"code":"internal"}"#
                );
            }
            let complete: usize = tallies.iter().map(|t| t.latencies[5].len()).sum();
            assert_eq!(complete, 0);
        }
    }
}
