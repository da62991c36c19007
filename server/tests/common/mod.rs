//! Test harness: the real server on 127.0.0.1:0 in-process, a small HTTP/1.1
//! client over a TcpStream, and readers of the tables the server wrote.
#![allow(dead_code)] // each test file uses its own part of the harness

pub mod cluster;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use onboarding::PinnedEnv;
use onboarding_server::Config;
use rusqlite::Connection;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// 2026-11-24T10:00:00.000Z: the pinned clock's start.
pub const T0_MS: i64 = 1_795_514_400_000;

/// The session routes' steps, in wizard order.
pub const STEPS: [&str; 5] = ["business", "channels", "vapi", "kb", "appointments"];

/// A server running in this test's runtime, with its own database.
pub struct TestServer {
    pub addr: SocketAddr,
    pub db_path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), String>>>,
    _dir: tempfile::TempDir,
}

/// A config on a fresh temporary database (returned so it outlives the test).
pub fn temp_config() -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = Config {
        db_path: dir.path().join("onboarding.db"),
        // No crawler unless a test asks: a queued job must not reach the network.
        crawl: onboarding_server::crawl::CrawlConfig {
            workers: 0,
            ..Default::default()
        },
        ..Config::default()
    };
    (config, dir)
}

/// The pinned clock and random stream the flow tests share.
pub fn pinned_env() -> Arc<PinnedEnv> {
    PinnedEnv::new(T0_MS, 42)
}

impl TestServer {
    pub async fn start(config: Config, dir: tempfile::TempDir) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let db_path = config.db_path.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(onboarding_server::run(listener, config, async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            db_path,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// A server on a fresh database with the pinned environment.
    pub async fn pinned(env: Arc<PinnedEnv>) -> TestServer {
        let (mut config, dir) = temp_config();
        config.env = Some(env);
        TestServer::start(config, dir).await
    }

    /// Shuts the server down and waits for the database to be closed.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("server stops within a minute")
                .expect("server task did not panic");
            assert_eq!(result, Ok(()));
        }
    }

    pub async fn post(&self, path: &str, body: &str) -> Reply {
        request(self.addr, "POST", path, &[], body.as_bytes()).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, &[], b"").await
    }

    /// A second connection to the server's database, read-only.
    pub fn read_db(&self) -> Connection {
        Connection::open_with_flags(&self.db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the database read-only")
    }
}

/// One HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names lowercased, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// Sends one request on a new connection (`Connection: close`) with a
/// Content-Length body, and reads the whole response.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    // A body is JSON unless the test says otherwise.
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        head.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    send_raw(addr, &raw).await
}

/// Writes `raw` as is (for malformed framing, chunked bodies, lying
/// Content-Lengths) and reads the response until the server closes.
pub async fn send_raw(addr: SocketAddr, raw: &[u8]) -> Reply {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(raw).await.expect("send request");
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .expect("read response");
        response
    };
    let response = tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .expect("the server answers within a minute");
    parse_response(&response)
}

fn parse_response(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII headers");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = String::from_utf8(raw[split + 4..].to_vec()).expect("UTF-8 body");
    Reply {
        status,
        headers,
        body,
    }
}

/// Every row of `table` in rowid order, each as a JSON object of its columns.
pub fn rows(conn: &Connection, table: &str) -> Vec<Value> {
    let columns: Vec<String> = conn
        .prepare(&format!(
            "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
        ))
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("table columns");
    assert!(!columns.is_empty(), "table {table} has no columns");
    let pairs: Vec<String> = columns.iter().map(|c| format!("'{c}', {c}")).collect();
    let sql = format!(
        "SELECT json_object({}) FROM {table} ORDER BY rowid",
        pairs.join(", ")
    );
    conn.prepare(&sql)
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()
        })
        .expect("table rows")
        .iter()
        .map(|text| serde_json::from_str(text).expect("row JSON"))
        .collect()
}

/// The origin note's request bodies, route by route.
pub const BUSINESS: &str = r#"{"company_name":"Mon Entreprise","industry":"real_estate","phone":"+33612345678","email":"contact@entreprise.fr"}"#;
pub const VAPI: &str = r#"{"agent_type":"multi_purpose","voice":"sara","assistant_name":"Sara"}"#;
pub const KB: &str = r#"{"crawl_url":"https://mon-site.fr","method":"website"}"#;

/// Runs `command` (the built server, say) to its exit: whether it
/// succeeded, and what it wrote, standard output then standard error.
pub fn output_of(command: &mut std::process::Command) -> (bool, String) {
    let out = command.output().expect("run the command");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), log)
}

pub fn session_path(session_id: &str, action: &str) -> String {
    if action.is_empty() {
        format!("/api/v1/onboarding/session/{session_id}")
    } else {
        format!("/api/v1/onboarding/session/{session_id}/{action}")
    }
}

/// Creates a session and saves business and vapi: ready to complete.
pub async fn completable_session(server: &TestServer) -> String {
    let created = server.post("/api/v1/onboarding/session", "{}").await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["session_id"]
        .as_str()
        .expect("session_id")
        .to_string();
    for (step, body) in [("business", BUSINESS), ("vapi", VAPI)] {
        let reply = server.post(&session_path(&id, step), body).await;
        assert_eq!(reply.status, 200, "{step}: {}", reply.body);
    }
    id
}

/// Like [`request`], but `None` when the connection fails or closes without
/// a complete response (a server shutting down may do either).
pub async fn try_request(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Option<Reply> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream.write_all(head.as_bytes()).await.ok()?;
        stream.write_all(body).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        if !response.windows(4).any(|w| w == b"\r\n\r\n") {
            return None;
        }
        let reply = parse_response(&response);
        let length = reply.header("content-length")?.parse::<usize>().ok()?;
        (length == reply.body.len()).then_some(reply)
    };
    tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .ok()
        .flatten()
}

/// The real `onboarding-server` binary in a process of its own, on a fresh
/// database: for what only a process shows (its memory, its log).
pub struct Spawned {
    pub addr: SocketAddr,
    pub child: std::process::Child,
    /// Every line the server has logged so far.
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
    /// The server's database file.
    pub db_path: PathBuf,
    /// The temporary directory of a fresh database, kept while it runs.
    _dir: Option<tempfile::TempDir>,
    /// The thread reading the server's output into `log`: finished once
    /// the process is gone and its last line is in.
    reader: std::thread::JoinHandle<()>,
}

impl Spawned {
    /// Starts the binary with `args` (plus `--listen` and `--db`) and waits
    /// (at most 60 s) until it serves.
    pub fn start(args: &[&str]) -> Spawned {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut spawned = Spawned::start_on(&dir.path().join("onboarding.db"), args);
        spawned._dir = Some(dir);
        spawned
    }

    /// [`Spawned::start`] on the database file `db`, which outlives it.
    pub fn start_on(db: &std::path::Path, args: &[&str]) -> Spawned {
        Spawned::start_command(
            std::process::Command::new(env!("CARGO_BIN_EXE_onboarding-server")),
            db,
            args,
        )
    }

    /// [`Spawned::start`] run by `wrapper`, a program and its arguments
    /// that end by running the server binary given after them (`bash -c
    /// 'ulimit …; exec "$@"' bash`): for the limits a process is given.
    pub fn start_under(wrapper: &[&str], args: &[&str]) -> Spawned {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut command = std::process::Command::new(wrapper[0]);
        command
            .args(&wrapper[1..])
            .arg(env!("CARGO_BIN_EXE_onboarding-server"));
        let mut spawned = Spawned::start_command(command, &dir.path().join("onboarding.db"), args);
        spawned._dir = Some(dir);
        spawned
    }

    fn start_command(
        mut command: std::process::Command,
        db: &std::path::Path,
        args: &[&str],
    ) -> Spawned {
        use std::io::BufRead;
        let mut child = command
            .args(["--listen", "127.0.0.1:0", "--db"])
            .arg(db)
            // No crawler unless a test asks: a queued job must not reach
            // the network.
            .args(if args.contains(&"--crawl-workers") {
                &[][..]
            } else {
                &["--crawl-workers", "0"][..]
            })
            .args(args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start onboarding-server");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find(" address=") {
                    let addr = line[at + 9..].split(' ').next().unwrap_or("").to_string();
                    let _ = tx.send(addr);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server says where it listens")
            .parse()
            .expect("a socket address");
        Spawned {
            addr,
            child,
            log,
            db_path: db.to_path_buf(),
            _dir: None,
            reader,
        }
    }

    /// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Once the process has exited, waits (at most 10 s) until its last
    /// line is in the log: the reading thread may not have run since the
    /// lines were written (the exit does not wait for it).
    pub fn read_to_the_end(&self) {
        for _ in 0..200 {
            if self.reader.is_finished() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the server's output did not end within 10 s of its exit");
    }

    /// SIGTERM, then waits (at most 60 s) for the process to exit and its
    /// output to be read.
    pub fn stop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..600 {
            if self.child.try_wait().expect("wait").is_some() {
                self.read_to_the_end();
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("the server did not stop within 60 s of SIGTERM");
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
