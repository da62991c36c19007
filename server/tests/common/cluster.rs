//! Three (or one) dqlite nodes in processes of their own on loopback ports,
//! the host program `onboarding-node` with the built `libonboarding.so`;
//! and a reader of the replicated tables through the wire protocol.

use std::hash::{BuildHasher, RandomState};
use std::net::TcpListener as StdListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use dqlite_wire::{connect_leader, Conn, Leader, Value};

/// The node host and the extension, as `make node` and `make loadable`
/// build them; `None` (with the reason printed loudly) when libdqlite is
/// not installed, the one case where the cluster tests skip.
pub fn binaries() -> Option<(PathBuf, PathBuf)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let node = root.join("ha/node/target/release/onboarding-node");
    let so = root.join("dist/libonboarding.so");
    if !std::path::Path::new("/usr/include/dqlite.h").exists() {
        let why = "libdqlite-dev is not installed, so the dqlite cluster tests cannot run \
                   (apt-get install libdqlite-dev libraft-dev; .ci/run does)";
        // CI installs it: there a skip would be a green run that ran nothing.
        assert!(
            std::env::var_os("ONBOARDING_TESTS_SKIP_NOTHING").is_none(),
            "{why}, and ONBOARDING_TESTS_SKIP_NOTHING is set"
        );
        eprintln!("\n*** SKIPPED: {why} ***\n");
        return None;
    }
    assert!(
        node.exists() && so.exists(),
        "libdqlite is installed but {} or {} is missing: run `make node loadable` (make test does)",
        node.display(),
        so.display()
    );
    Some((node, so))
}

/// Runs the calling thread, and the threads and programs it starts after,
/// ahead of the machine's other work (niceness -20, the most), as a
/// database node is on a shared machine: a node starved by unrelated
/// processes misses its Raft heartbeats and loses its leadership, whatever
/// the code does (a test measuring a leader's pauses, or holding its write
/// lock, then failed on a busy machine). Where the user may not raise a
/// priority (not root), it stays as it was.
pub fn ahead_of_other_load() {
    // SAFETY: setpriority(2) on the calling thread; no memory is involved,
    // and it is async-signal-safe (it runs between fork and exec too).
    let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -20) };
}

/// A free loopback port for a node to take, chosen below the kernel's
/// ephemeral range (`ip_local_port_range`), where the kernel never hands a
/// port out by itself. A port bound at 0 and released is one the kernel may
/// give the next outgoing connection of any process (the tests' HTTP
/// clients, the nodes' connections to one another) before the node binds
/// it, and a node that cannot bind never joins: a cluster whose nodes were
/// "not all voters" after 30 s. Each process starts at a port of its own
/// draw and moves on at each call, so two processes seldom try the same
/// one; a port something listens on now is skipped.
pub fn free_port() -> u16 {
    // The range, read once, and this process's place in it.
    static RANGE: OnceLock<(u16, u16, u32)> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let &(low, high, start) = RANGE.get_or_init(|| {
        let (low, high) = ports_outside_the_ephemeral_range();
        let span = u64::from(high - low);
        let start = RandomState::new().hash_one(std::process::id()) % span;
        (low, high, start as u32)
    });
    let span = u32::from(high - low);
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = low + offset as u16;
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}");
}

/// 8,192 ports outside the ephemeral range: just below it (24576..32768
/// with Linux's default 32768-60999), or just above it where below leaves
/// fewer than that over 1024.
fn ports_outside_the_ephemeral_range() -> (u16, u16) {
    const SPAN: u16 = 8192;
    let range: Vec<u16> = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .map(|text| {
            text.split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let (low, high) = match range[..] {
        [low, high] => (low, high),
        _ => (32768, 60999),
    };
    if low >= 1024 + SPAN {
        (low - SPAN, low)
    } else if high <= u16::MAX - SPAN {
        (high + 1, high + 1 + SPAN)
    } else {
        panic!("ip_local_port_range {low}-{high} leaves no 8,192 ports outside it for the nodes");
    }
}

/// One node process.
pub struct Node {
    pub id: u64,
    /// What the cluster knows it by.
    pub address: String,
    /// Where it listens, when not `address` (behind a proxy).
    pub bind: Option<String>,
    dir: PathBuf,
    child: Option<Child>,
    /// The lost member it takes the place of (`--replaces`), at its first
    /// start.
    replaces: Option<u64>,
}

/// The nodes of one cluster, and their data directories.
/// The machine's cores, which the clusters of a test binary share: one
/// whose test measures a leader's pauses runs alone ([`Cluster::start_alone`]);
/// on two cores, another cluster beside it starves its nodes, and a leader
/// missing its heartbeats loses its place, whatever the code does.
static CORES: RwLock<()> = RwLock::new(());

/// A cluster's hold on [`CORES`], released when it is dropped.
enum Cores {
    Shared {
        _held: RwLockReadGuard<'static, ()>,
    },
    Alone {
        _held: RwLockWriteGuard<'static, ()>,
    },
}

impl Cores {
    /// A panicked test's hold is released all the same.
    fn take(alone: bool) -> Cores {
        match alone {
            true => Cores::Alone {
                _held: CORES.write().unwrap_or_else(PoisonError::into_inner),
            },
            false => Cores::Shared {
                _held: CORES.read().unwrap_or_else(PoisonError::into_inner),
            },
        }
    }
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    node_bin: PathBuf,
    so: PathBuf,
    /// The nodes' `--latency-ms`, when not the node's default.
    latency_ms: Option<u32>,
    _dir: tempfile::TempDir,
    /// Last, so that it is released once the nodes are gone.
    _cores: Cores,
}

impl Cluster {
    /// `n` nodes: the first bootstraps, the others join it and become voters.
    pub fn start(n: usize) -> Option<Cluster> {
        Cluster::start_with_latency(n, None)
    }

    /// The same, with no other cluster of the binary running beside it,
    /// for a test that measures how long the leader pauses.
    pub fn start_alone(n: usize) -> Option<Cluster> {
        let addresses = (0..n)
            .map(|_| (format!("127.0.0.1:{}", free_port()), None))
            .collect();
        Cluster::start_at_with_latency(addresses, None, true)
    }

    /// The same, Raft's timeouts tuned from `latency_ms` (`--latency-ms`).
    pub fn start_with_latency(n: usize, latency_ms: Option<u32>) -> Option<Cluster> {
        let addresses: Vec<(String, Option<String>)> = (0..n)
            .map(|_| (format!("127.0.0.1:{}", free_port()), None))
            .collect();
        Cluster::start_at_with_latency(addresses, latency_ms, false)
    }

    /// Nodes known by the given addresses, each listening on its own bind
    /// address when one is given.
    pub fn start_at(addresses: Vec<(String, Option<String>)>) -> Option<Cluster> {
        Cluster::start_at_with_latency(addresses, None, false)
    }

    fn start_at_with_latency(
        addresses: Vec<(String, Option<String>)>,
        latency_ms: Option<u32>,
        alone: bool,
    ) -> Option<Cluster> {
        let (node_bin, so) = binaries()?;
        let cores = Cores::take(alone);
        let dir = tempfile::tempdir().expect("temporary directory");
        let nodes = addresses
            .into_iter()
            .enumerate()
            .map(|(i, (address, bind))| Node {
                id: i as u64 + 1,
                address,
                bind,
                dir: dir.path().join(format!("node{}", i + 1)),
                child: None,
                replaces: None,
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            node_bin,
            so,
            latency_ms,
            _dir: dir,
            _cores: cores,
        };
        for i in 0..cluster.nodes.len() {
            cluster.run(i);
            if i == 0 {
                cluster.wait_for_leader(Duration::from_secs(20));
            }
        }
        // Every node a voter before the test starts.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let voters = cluster
                .leader()
                .and_then(|mut l| l.conn.cluster().ok())
                .map_or(0, |nodes| nodes.iter().filter(|n| n.role == 0).count());
            if voters == cluster.nodes.len() {
                return Some(cluster);
            }
            assert!(
                Instant::now() < deadline,
                "the nodes did not all become voters within 30 s{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts (or restarts, on its data directory) node `i`, what it
    /// prints appended to its log ([`Cluster::logs`]).
    pub fn run(&mut self, i: usize) {
        let mut command = self.command(i);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("the node's log");
        command
            .stdout(log.try_clone().expect("the node's log"))
            .stderr(log);
        // SAFETY: the hook only makes a system call, as allowed between
        // fork and exec.
        unsafe {
            command.pre_exec(|| {
                ahead_of_other_load();
                Ok(())
            });
        }
        self.nodes[i].child = Some(command.spawn().expect("start onboarding-node"));
    }

    /// Kills node `i`, empties its data directory (a lost disk) and starts
    /// it again with its command: what it prints before it exits.
    pub fn run_after_losing_its_data(&mut self, i: usize) -> std::process::Output {
        self.kill(i);
        std::fs::remove_dir_all(&self.nodes[i].dir).expect("the node's data directory");
        self.run_to_exit(i)
    }

    /// Node `i` lost its data: it comes back on an empty directory under
    /// the id `id`, taking its old id's place (`--replaces`), and becomes
    /// a voter; what the nodes' configuration then holds.
    pub fn replace_lost(&mut self, i: usize, id: u64) -> Vec<(u64, String, u64)> {
        self.kill(i);
        let _ = std::fs::remove_dir_all(&self.nodes[i].dir);
        self.nodes[i].replaces = Some(self.nodes[i].id);
        self.nodes[i].id = id;
        self.run(i);
        self.nodes[i].replaces = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let members = self
                .leader()
                .and_then(|mut l| l.conn.cluster().ok())
                .unwrap_or_default();
            if members.iter().any(|n| n.id == id && n.role == 0) {
                let mut members: Vec<(u64, String, u64)> = members
                    .into_iter()
                    .map(|n| (n.id, n.address, n.role))
                    .collect();
                members.sort();
                return members;
            }
            assert!(
                Instant::now() < deadline,
                "node {id} never became a voter{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Node `i`, stopped, started under the id `id` with `--replaces lost`
    /// and waited for to exit: what it printed. Its id stays.
    pub fn replacing_to_exit(&mut self, i: usize, id: u64, lost: u64) -> std::process::Output {
        let kept = self.nodes[i].id;
        self.nodes[i].replaces = Some(lost);
        self.nodes[i].id = id;
        let out = self.run_to_exit(i);
        self.nodes[i].replaces = None;
        self.nodes[i].id = kept;
        out
    }

    /// Where node `i`'s output goes, beside the data directories.
    fn log_path(&self, i: usize) -> PathBuf {
        self._dir.path().join(format!("node{}.log", i + 1))
    }

    /// The last lines each node printed, for a failure's message: why a
    /// node did not start or join (its port taken, a refused join) is only
    /// there.
    pub fn logs(&self) -> String {
        const LINES: usize = 20;
        let mut out = String::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let text = std::fs::read(self.log_path(i))
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LINES)..];
            out.push_str(&format!(
                "\n--- node {} ({}), its last {} lines ---\n{}",
                node.id,
                node.address,
                tail.len(),
                tail.join("\n")
            ));
        }
        out
    }

    /// The folder the nodes' data directories are in.
    pub fn dir(&self) -> PathBuf {
        self._dir.path().to_path_buf()
    }

    /// Starts node `i`'s command under the id `id` on the directory `dir`
    /// and waits for it to exit: what it printed.
    pub fn run_as_to_exit(&mut self, i: usize, id: u64, dir: PathBuf) -> std::process::Output {
        let kept = (
            self.nodes[i].id,
            std::mem::replace(&mut self.nodes[i].dir, dir),
        );
        self.nodes[i].id = id;
        let out = self.run_to_exit(i);
        (self.nodes[i].id, self.nodes[i].dir) = kept;
        out
    }

    /// Starts node `i` with its command and waits (90 s at most) for it to
    /// exit: what it printed.
    pub fn run_to_exit(&mut self, i: usize) -> std::process::Output {
        let mut child = self
            .command(i)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start onboarding-node");
        let deadline = Instant::now() + Duration::from_secs(90);
        while child.try_wait().expect("wait").is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().expect("the node's output")
    }

    /// Node `i`'s command line: the nodes before it to join, and
    /// `--bootstrap` for the first.
    fn command(&self, i: usize) -> Command {
        let join: Vec<String> = self.nodes[..i].iter().map(|n| n.address.clone()).collect();
        let node = &self.nodes[i];
        let mut command = Command::new(&self.node_bin);
        command
            .args(["--id", &node.id.to_string(), "--address", &node.address])
            .arg("--dir")
            .arg(&node.dir)
            .arg("--extension")
            .arg(&self.so);
        if let Some(bind) = &node.bind {
            command.args(["--bind", bind]);
        }
        if let Some(ms) = self.latency_ms {
            command.args(["--latency-ms", &ms.to_string()]);
        }
        if !join.is_empty() {
            command.args(["--join", &join.join(",")]);
        }
        if let Some(lost) = node.replaces {
            command.args(["--replaces", &lost.to_string()]);
        }
        if i == 0 {
            // A new cluster; on a restart the node's data prevails.
            command.arg("--bootstrap");
        }
        command
    }

    /// `kill -9` node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops node `i` without closing its connections (`SIGSTOP`), as a
    /// hung machine or one cut off by the network: its peers and clients
    /// hear nothing, not even a reset.
    pub fn freeze(&self, i: usize) {
        self.signal(i, libc::SIGSTOP);
    }

    /// Lets a frozen node `i` run again (`SIGCONT`).
    pub fn thaw(&self, i: usize) {
        self.signal(i, libc::SIGCONT);
    }

    fn signal(&self, i: usize, signal: libc::c_int) {
        let child = self.nodes[i].child.as_ref().expect("node running");
        let pid = libc::pid_t::try_from(child.id()).expect("a pid");
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0, "signal {signal}");
    }

    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.address.clone()).collect()
    }

    /// The leader, if the nodes name one that answers.
    pub fn leader(&self) -> Option<Leader> {
        connect_leader(&self.addresses(), Duration::from_secs(1)).ok()
    }

    /// Waits for a leader and returns its index in `nodes`.
    pub fn wait_for_leader(&self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            if let Some(leader) = self.leader() {
                return self
                    .nodes
                    .iter()
                    .position(|n| n.id == leader.id)
                    .expect("the leader is one of ours");
            }
            assert!(
                Instant::now() < deadline,
                "no leader within {within:?}{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until node `i` answers and names a leader: back in the
    /// cluster, hearing the leader's heartbeats.
    pub fn wait_until_following(&self, i: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let named = Conn::connect(&self.nodes[i].address, Duration::from_secs(1))
                .and_then(|mut c| c.leader())
                .map(|(_, address)| address);
            if matches!(named, Ok(ref a) if !a.is_empty()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not rejoin{}",
                self.nodes[i].id,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Makes node `i` the leader (retried while it catches up).
    pub fn transfer_to(&self, i: usize) {
        let id = self.nodes[i].id;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.leader().map(|l| l.id) != Some(id) {
            assert!(
                Instant::now() < deadline,
                "node {id} never became leader{}",
                self.logs()
            );
            if let Some(mut leader) = self.leader() {
                let _ = leader.conn.transfer(id);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Every row of `sql`'s result on the leader.
    pub fn rows(&self, sql: &str, params: &[Value]) -> Vec<Vec<Value>> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let attempt = self.leader().ok_or(()).and_then(|mut l| {
                let db = l.conn.open("onboarding.db").map_err(|_| ())?;
                l.conn.query(db, sql, params).map_err(|_| ())
            });
            match attempt {
                Ok(rows) => return rows.rows,
                Err(()) => {
                    assert!(Instant::now() < deadline, "cannot read {sql}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// Runs `sql` on the leader, as a host would: a test's own edit of
    /// the file (a trigger, rows as an older library left them). Retried
    /// (bounded: 20 s) while the server's own writes hold the write lock,
    /// as a host waits out its busy timeout: a node answers SQLITE_BUSY at
    /// once, and a crawler polling beside the edit made it fail.
    pub fn exec(&self, sql: &str) {
        let mut leader = self.leader().expect("a leader");
        let db = leader.conn.open("onboarding.db").expect("open");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match leader.conn.exec(db, sql, &[]) {
                Err(e) if e.is_busy() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                done => {
                    done.expect(sql);
                    return;
                }
            }
        }
    }

    /// One integer.
    pub fn count(&self, sql: &str) -> i64 {
        self.rows(sql, &[])[0][0].as_integer().expect("an integer")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
