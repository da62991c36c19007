//! The processes of a Litestream deployment, as `scripts/` start them: a
//! node (`scripts/litestream-run`: Litestream with the real server as its
//! child), the restore drill and the read replica; and the load that
//! completes onboardings against a node and remembers when each was
//! acknowledged.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::try_request;

/// What a lost machine may lose: the contract's sync interval. In
/// `deploy/litestream.yml` Litestream looks at the WAL every 250 ms and
/// ships what it found every 500 ms, so that a commit reaches the replica
/// within 0.75 s and the rest of the second is room for a loaded machine.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// The repository's root (the scripts and `dist/` are there).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the server crate is one level down")
        .to_path_buf()
}

/// The virtualenv of `scripts/litestream-venv`, or `None` (and a loud
/// message) when it was never made: `.ci/run` makes it, so CI never skips.
pub fn venv() -> Option<PathBuf> {
    let venv = std::env::var_os("LITESTREAM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv-litestream"));
    if venv.join("bin/litestream").is_file() {
        return Some(venv);
    }
    // CI makes it: there a skip would be a green run that ran nothing.
    assert!(
        std::env::var_os("ONBOARDING_TESTS_SKIP_NOTHING").is_none(),
        "no Litestream virtualenv at {} (run scripts/litestream-venv), and \
         ONBOARDING_TESTS_SKIP_NOTHING is set",
        venv.display()
    );
    // Straight to stderr: the test harness captures eprintln! of passing
    // tests, and a skip must not go unseen.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!! SKIPPED: no Litestream virtualenv at {}: run scripts/litestream-venv \
         (.ci/run does) to run the Litestream tests !!!!!!!!\n",
        venv.display()
    );
    None
}

/// Prints a measurement even when the harness captures output (as it does
/// for passing tests): `make test` shows the loss window and the lag.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "litestream: {line}");
}

/// Tests of this file take turns: each loads the machine's two cores, and
/// the loss window is measured against the clock.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Lines a process wrote to stdout and stderr, and a way to wait for one.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    /// Collects `child`'s stdout and stderr on two threads; `tell` gets every
    /// line too.
    fn collect(child: &mut Child, tell: mpsc::Sender<String>) -> Log {
        let log = Log::default();
        let out = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        for stream in [out, err].into_iter().flatten() {
            let (lines, tell) = (log.clone(), tell.clone());
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let _ = tell.send(line.clone());
                    lines.0.lock().unwrap().push(line);
                }
            });
        }
        log
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }

    /// The log once it holds `text`, or after 10 s: a process's last lines
    /// reach it after the process is gone, when its reading thread runs.
    pub fn with(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.text();
            if log.contains(text) || Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Waits (at most 60 s) for a line containing `marker` and returns what
/// follows it up to the next space.
fn wait_for(lines: &mpsc::Receiver<String>, marker: &str, log: &Log) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(at) = line.find(marker) {
                    let rest = &line[at + marker.len()..];
                    return rest.split(' ').next().unwrap_or("").to_string();
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line with {marker:?} within 60 s; log:\n{}", log.text());
}

/// `scripts/litestream-run` with the test's server binary: Litestream, and
/// the server as its child, in a process group of their own.
pub struct Node {
    pub addr: SocketAddr,
    /// Litestream (the script `exec`s it); its id is the group's.
    pub litestream: Child,
    pub log: Log,
}

impl Node {
    /// Starts a node on `db` replicating to `replica`, and waits until the
    /// server serves (after a restore when `db` does not exist) and the
    /// replica exists: Litestream 0.5.17 does not sync a database at exit
    /// before its first sync (about 1 s after start), so a clean stop
    /// sooner leaves the replica without those commits (README, "Backups
    /// and replicas").
    pub fn start(db: &Path, replica: &Path) -> Node {
        let mut command = Command::new(root().join("scripts/litestream-run"));
        command
            // No crawler: a queued job must not reach the network.
            .args([
                "--listen",
                "127.0.0.1:0",
                "--create-rate-limit",
                "0",
                "--crawl-workers",
                "0",
            ])
            .env("ONBOARDING_DB", db)
            .env("ONBOARDING_REPLICA_DIR", replica)
            .env("ONBOARDING_SERVER", env!("CARGO_BIN_EXE_onboarding-server"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Killing the group kills Litestream and the server at once, as
            // losing the machine would.
            .process_group(0);
        // Litestream and the server ahead of the other tests' processes, as
        // on a machine of their own: the sync interval is Litestream's to
        // keep, not the test machine's (where the tests run as root: CI).
        // SAFETY: the hook only makes a system call, as allowed between
        // fork and exec.
        unsafe {
            command.pre_exec(|| {
                crate::common::cluster::ahead_of_other_load();
                Ok(())
            });
        }
        let mut litestream = command.spawn().expect("start scripts/litestream-run");
        let (tell, lines) = mpsc::channel();
        let log = Log::collect(&mut litestream, tell);
        let addr = wait_for(&lines, "serving address=", &log)
            .parse()
            .expect("a socket address");
        // The first transaction file, not just its folder: what
        // scripts/read-replica checks for before it opens the replica.
        let has_ltx = || {
            std::fs::read_dir(replica.join("ltx")).is_ok_and(|levels| {
                levels.flatten().any(|level| {
                    std::fs::read_dir(level.path()).is_ok_and(|files| {
                        files
                            .flatten()
                            .any(|f| f.file_name().to_string_lossy().ends_with(".ltx"))
                    })
                })
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !has_ltx() {
            assert!(
                Instant::now() < deadline,
                "no replica after 30 s:\n{}",
                log.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Node {
            addr,
            litestream,
            log,
        }
    }

    /// The server: Litestream's only child.
    pub fn server_pid(&self) -> u32 {
        let tasks = format!("/proc/{}/task", self.litestream.id());
        let mut children = Vec::new();
        for task in std::fs::read_dir(&tasks).expect("Litestream's threads") {
            let path = task.expect("a thread").path().join("children");
            let text = std::fs::read_to_string(path).unwrap_or_default();
            children.extend(
                text.split_whitespace()
                    .map(|p| p.parse::<u32>().expect("pid")),
            );
        }
        assert_eq!(children.len(), 1, "Litestream's children: {children:?}");
        children[0]
    }

    /// SIGKILL to the server alone; Litestream goes on.
    pub fn kill_server(&self) {
        signal("-KILL", &self.server_pid().to_string());
    }

    /// SIGKILL to Litestream alone (its exit reaped); the server is left to
    /// what its parent's death brings it.
    pub fn kill_litestream(&mut self) {
        signal("-KILL", &self.litestream.id().to_string());
        self.wait(Duration::from_secs(10))
            .expect("a killed Litestream is gone");
    }

    /// SIGKILL to Litestream and the server in one call: the machine is lost.
    pub fn kill_machine(&mut self) {
        signal("-KILL", &format!("-{}", self.litestream.id()));
        self.wait(Duration::from_secs(10))
            .expect("a killed Litestream is gone");
    }

    /// SIGTERM to Litestream, which passes it on to the server; its exit.
    pub fn stop(&mut self) -> ExitStatus {
        signal("-TERM", &self.litestream.id().to_string());
        self.wait(Duration::from_secs(60))
            .unwrap_or_else(|| panic!("no exit 60 s after SIGTERM; log:\n{}", self.log.text()))
    }

    /// Litestream's exit, if it comes within `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.litestream.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.litestream.try_wait().ok().flatten().is_none() {
            signal("-KILL", &format!("-{}", self.litestream.id()));
            let _ = self.litestream.wait();
        } else {
            // Litestream is gone, but a server that outlived it (a failing
            // test) is still in its group.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.litestream.id())])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn signal(which: &str, target: &str) {
    let status = Command::new("kill")
        .args([which, "--", target])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {which} {target} failed");
}

/// What `scripts/restore-drill --json` reports.
pub struct Drill {
    pub restore_seconds: f64,
    pub integrity_check: Value,
    /// Rows per table.
    pub counts: Value,
}

/// Runs the restore drill: `replica` restored into `output` (a new file).
pub fn restore_drill(replica: &Path, output: &Path) -> Drill {
    let out = Command::new(root().join("scripts/restore-drill"))
        .arg(replica)
        .arg("-o")
        .arg(output)
        .arg("--json")
        .output()
        .expect("run scripts/restore-drill");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Exit 1 with a report is an unsound file: the caller's assertion on
    // integrity_check says so; anything else is the drill failing.
    assert!(
        out.status.success() || (out.status.code() == Some(1) && stdout.starts_with('{')),
        "restore drill failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("the drill's JSON line");
    Drill {
        restore_seconds: report["restore_seconds"].as_f64().expect("restore_seconds"),
        integrity_check: report["integrity_check"].clone(),
        counts: report["counts"].clone(),
    }
}

/// `scripts/restore-drill REPLICA -o OUTPUT` (its table, or its JSON
/// line with `json`) whose reader has gone before it writes (`| head -0`),
/// to its exit; Python's output buffered, as it is by default.
pub fn restore_drill_unread(replica: &Path, output: &Path, json: bool) -> std::process::Output {
    let mut drill = Command::new(root().join("scripts/restore-drill"));
    drill.arg(replica).arg("-o").arg(output);
    if json {
        drill.arg("--json");
    }
    let mut drill = drill
        .env_remove("PYTHONUNBUFFERED")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/restore-drill");
    drop(drill.stdout.take());
    drill.wait_with_output().expect("the drill's exit")
}

/// `scripts/read-replica --replica REPLICA sql STATEMENT` to its exit.
pub fn read_replica_sql(replica: &Path, statement: &str) -> std::process::Output {
    Command::new(root().join("scripts/read-replica"))
        .arg("--replica")
        .arg(replica)
        .args(["sql", statement])
        .output()
        .expect("run scripts/read-replica sql")
}

/// `scripts/read-replica serve` on `replica`, on a free loopback port.
pub struct ReadReplica {
    pub addr: SocketAddr,
    child: Child,
    pub log: Log,
}

impl ReadReplica {
    pub fn serve(replica: &Path) -> ReadReplica {
        let mut child = Command::new(root().join("scripts/read-replica"))
            .arg("--replica")
            .arg(replica)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start scripts/read-replica");
        let (tell, lines) = mpsc::channel();
        let log = Log::collect(&mut child, tell);
        let addr = wait_for(&lines, " on http://", &log)
            .parse()
            .expect("a socket address");
        ReadReplica { addr, child, log }
    }
}

impl Drop for ReadReplica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One acknowledged completion: the session, its tenant, and when the
/// answer arrived.
#[derive(Debug, Clone)]
pub struct Completion {
    pub session_id: String,
    pub tenant_id: String,
    pub at: Instant,
}

const BASE: &str = "/api/v1/onboarding/session";

/// One whole onboarding (create, business, vapi, kb, complete); `None` as
/// soon as one request fails or is refused (a killed server).
pub async fn onboard(addr: SocketAddr, n: u64) -> Option<Completion> {
    onboard_with(addr, n, crate::common::KB).await
}

/// An onboarding cut short (the server killed): its session and the
/// furthest step acknowledged (1 for the create alone).
#[derive(Debug, Clone)]
pub struct Partial {
    pub session_id: String,
    pub current_step: i64,
}

/// [`onboard`] with `kb` as the kb step's payload.
pub async fn onboard_with(addr: SocketAddr, n: u64, kb: &str) -> Option<Completion> {
    onboard_tracked(addr, n, kb, &mut None).await
}

/// [`onboard_with`], keeping in `partial` what was acknowledged of a flow
/// that does not finish (`None` once it completes).
pub async fn onboard_tracked(
    addr: SocketAddr,
    n: u64,
    kb: &str,
    partial: &mut Option<Partial>,
) -> Option<Completion> {
    let created = try_request(addr, "POST", BASE, b"{}").await?;
    if created.status != 201 {
        return None;
    }
    let body = created.json();
    let session_id = body["session_id"].as_str()?.to_string();
    let tenant_id = body["tenant_id"].as_str()?.to_string();
    *partial = Some(Partial {
        session_id: session_id.clone(),
        current_step: 1,
    });
    // A distinct email and phone per tenant: both must be free.
    let business = format!(
        r#"{{"company_name":"Entreprise {n}","industry":"real_estate","phone":"+336{:08}","email":"contact{n}@entreprise.fr"}}"#,
        10_000_000 + n
    );
    let steps = [
        ("business", business.as_str()),
        ("vapi", crate::common::VAPI),
        ("kb", kb),
    ];
    for (step, payload) in steps {
        let path = format!("{BASE}/{session_id}/{step}");
        let reply = try_request(addr, "POST", &path, payload.as_bytes()).await?;
        assert_eq!(reply.status, 200, "{step}: {}", reply.body);
        *partial = Some(Partial {
            session_id: session_id.clone(),
            current_step: reply.json()["current_step"].as_i64()?,
        });
    }
    let path = format!("{BASE}/{session_id}/complete");
    let done = try_request(addr, "POST", &path, b"{}").await?;
    let at = Instant::now();
    assert_eq!(done.status, 200, "complete: {}", done.body);
    assert_eq!(done.json()["sync_status"], "synced");
    *partial = None;
    Some(Completion {
        session_id,
        tenant_id,
        at,
    })
}

/// Onboarding clients running until [`Load::stop`] or until the server stops
/// answering, each remembering its acknowledged completions.
pub struct Load {
    stop: Arc<AtomicBool>,
    /// Completions acknowledged so far, all clients together.
    completed: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<(Vec<Completion>, Option<Partial>)>>,
}

/// Flows one client runs at most: a bound in case nothing else ends it.
const MAX_FLOWS_PER_CLIENT: u64 = 5_000;

impl Load {
    pub fn start(addr: SocketAddr, clients: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let next = Arc::new(AtomicU64::new(0));
        let completed = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, next) = (Arc::clone(&stop), Arc::clone(&next));
                let completed = Arc::clone(&completed);
                tokio::spawn(async move {
                    let (mut done, mut partial) = (Vec::new(), None);
                    for _ in 0..MAX_FLOWS_PER_CLIENT {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        match onboard_tracked(addr, n, crate::common::KB, &mut partial).await {
                            Some(completion) => {
                                done.push(completion);
                                completed.fetch_add(1, Ordering::Relaxed);
                            }
                            None => break,
                        }
                    }
                    (done, partial)
                })
            })
            .collect();
        Load {
            stop,
            completed,
            tasks,
        }
    }

    /// Waits until `completions` are acknowledged (at most two minutes:
    /// a test under a fixed time got fewer than it needed from a loaded
    /// machine), then `more`: the kill tests' load is mid-flight then.
    pub async fn run_for(&self, completions: u64, more: Duration) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.completed.load(Ordering::Relaxed) < completions {
            assert!(
                Instant::now() < deadline,
                "only {} completions in two minutes",
                self.completed.load(Ordering::Relaxed)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(more).await;
    }

    /// Every completion acknowledged, in the order of their answers.
    pub async fn finish(self) -> Vec<Completion> {
        self.finish_with_partials().await.0
    }

    /// [`Load::finish`], and the flows each client left unfinished when
    /// the server stopped answering: what of them was acknowledged.
    pub async fn finish_with_partials(self) -> (Vec<Completion>, Vec<Partial>) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut all, mut partials) = (Vec::new(), Vec::new());
        for task in self.tasks {
            let (done, partial) = tokio::time::timeout(Duration::from_secs(120), task)
                .await
                .expect("a client ends within two minutes")
                .expect("a client did not panic");
            all.extend(done);
            partials.extend(partial);
        }
        all.sort_by_key(|c| c.at);
        (all, partials)
    }
}
