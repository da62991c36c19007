//! `onboarding-node`: one dqlite node in its own process, serving the
//! onboarding functions of `libonboarding.so`.
//!
//! ```text
//! onboarding-node --id 1 --address 127.0.0.1:9001 --dir data/1 --extension dist/libonboarding.so \
//!                 --bootstrap
//! onboarding-node --id 2 --address 127.0.0.1:9002 --dir data/2 --extension dist/libonboarding.so \
//!                 --join 127.0.0.1:9001
//! ```
//!
//! The order of the start matters. The host's own SQLite configuration
//! (single-thread mode: the node's loop thread is SQLite's only user) comes
//! first; the extension is registered with `sqlite3_auto_extension` after
//! it, so every connection the node opens has the functions (registering
//! earlier, from a library constructor, broke that configuration). Then
//! the node starts; a node given `--join` asks the leader to add it and
//! make it a voter, once: its data directory remembers the membership.
//!
//! dqlite starts node 1 on an empty data directory as a new cluster of its
//! own. That is right once, for a new cluster (`--bootstrap`), and wrong
//! for a node 1 that lost its data: it would take writes in a cluster of
//! one while the real one goes on, and lose them when it meets it again.
//! So node 1 refuses an empty directory without `--bootstrap`, and a voter
//! that comes back without its data is refused before it starts: it
//! forgot its log and its votes, and must come back under a new id.
//! `--replaces ID` then takes the lost member out of the cluster as the
//! new one joins: left in, it would count towards the quorum (three of
//! four voters), so that losing one more node, the leader, would stop
//! the cluster; and its address could not be taken again.

mod ffi;

use std::ffi::CString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dqlite_wire::{connect_leader, Leader, NodeInfo, Role};

/// The network latency libdqlite tunes Raft's timeouts from. At 50 ms
/// (an election timeout of 750 ms) writes resumed 1.3-2.8 s after a
/// leader's death on loopback under load, too close to the 3 s promised;
/// at 35 ms, 0.7-2.4 s, and 0.9-1.1 s once the node killed before had
/// rejoined (the cluster test, eight kills in four runs each). A call
/// longer than the election timeout (15 times this: 525 ms) moves the
/// leadership, its leader sending no heartbeat meanwhile: the server keeps
/// every call well under it (a completion's pasted documents are stored
/// one call each, `onboarding_kb_prepare`), the longest left being a
/// crawled page of 2 MiB, about 0.3 s (README, "High availability").
const DEFAULT_LATENCY_MS: u32 = 35;

/// Raft log entries between two snapshots, and kept after one (dqlite's
/// defaults: 1,024 and 8,192). A group-committed batch is one entry of
/// about 110 KB under load, so the defaults let each node's log grow past
/// 1 GB in memory and on disk: a restarted node then read it for 3.6 s
/// before it could vote, and the leader killed in that window left no
/// majority, writes resuming only after 3.4-7.8 s (8 kills of 11). At
/// 256 and 256: about 100 MB a node, writes back within 0.76-1.10 s in 12
/// kills each 2-3 s after a restart. A follower more than 256 entries
/// behind gets the snapshot instead of the entries.
const SNAPSHOT_THRESHOLD: u32 = 256;
const SNAPSHOT_TRAILING: u32 = 256;

/// Written in the data directory once the cluster has made this node a
/// voter (a restarted node rejoins through its own Raft state), holding
/// its id and address (`3 127.0.0.1:9003`).
const JOINED_MARKER: &str = "onboarding-node.joined";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: i32) {
    STOP.store(true, Ordering::SeqCst);
}

struct Args {
    id: u64,
    address: String,
    bind: Option<String>,
    dir: PathBuf,
    extension: PathBuf,
    join: Vec<String>,
    latency_ms: u32,
    bootstrap: bool,
    /// A lost member this node takes the place of.
    replaces: Option<u64>,
}

const USAGE: &str = "usage: onboarding-node --id N --address HOST:PORT --dir DIR \
    --extension PATH [--bind HOST:PORT] [--join HOST:PORT,... [--replaces ID]] [--latency-ms MS] \
    [--bootstrap]";

/// What `--help` prints after the usage line.
const HELP: &str = "\
One node of the onboarding engine's dqlite cluster: libdqlite with
libonboarding.so registered on every connection.

  --id N                this node's id in the cluster (1 for the first)
  --address HOST:PORT   the address the other nodes and the server reach it at
  --bind HOST:PORT      where it listens, when not --address (behind a NAT)
  --dir DIR             its data: Raft log, snapshots, and the join marker
  --extension PATH      libonboarding.so (make loadable: dist/libonboarding.so)
  --bootstrap           node 1 only, on an empty --dir: start a new cluster
  --join HOST:PORT,...  members to ask to be added (on the first start only;
                        a restarted node rejoins from its own Raft state)
  --replaces ID         with --join: take the place of member ID, lost with
                        its data (start with a new --id)
  --latency-ms MS       the network latency Raft's timeouts are tuned from
                        (default 35: an election timeout of 525 ms)
  --version             the version
  -h, --help            this help

Stops on SIGTERM or Ctrl-C. scripts/cluster starts three on 127.0.0.1.";

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut id, mut address, mut bind, mut dir, mut extension) = (None, None, None, None, None);
    let (mut join, mut latency_ms, mut bootstrap) = (Vec::new(), DEFAULT_LATENCY_MS, false);
    let mut replaces = None;
    while let Some(flag) = args.next() {
        if flag == "--bootstrap" {
            bootstrap = true;
            continue;
        }
        let mut value = || {
            args.next()
                .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))
        };
        match flag.as_str() {
            "--id" => {
                let v = value()?;
                id = Some(
                    v.parse()
                        .map_err(|_| format!("--id '{v}' is not a number"))?,
                );
            }
            "--address" => address = Some(host_port("--address", &value()?)?),
            "--bind" => bind = Some(host_port("--bind", &value()?)?),
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--extension" => extension = Some(PathBuf::from(value()?)),
            "--join" => {
                join = value()?
                    .split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(|a| host_port("--join", a))
                    .collect::<Result<_, _>>()?
            }
            "--latency-ms" => {
                let v = value()?;
                latency_ms = v
                    .parse()
                    .ok()
                    .filter(|ms| LATENCY_MS.contains(ms))
                    .ok_or_else(|| {
                        format!(
                            "--latency-ms '{v}' is not a number of milliseconds from {} to {} \
                             (dqlite's bounds; default {DEFAULT_LATENCY_MS})",
                            LATENCY_MS.start(),
                            LATENCY_MS.end()
                        )
                    })?;
            }
            "--replaces" => {
                let v = value()?;
                replaces = Some(
                    v.parse()
                        .map_err(|_| format!("--replaces '{v}' is not a number"))?,
                );
            }
            other => return Err(format!("unknown flag '{other}'; {USAGE}")),
        }
    }
    let missing = |name: &str| format!("{name} is required; {USAGE}");
    if replaces.is_some() && join.is_empty() {
        return Err(format!(
            "--replaces needs --join: the cluster to take the member out of; {USAGE}"
        ));
    }
    let id = id.ok_or_else(|| missing("--id"))?;
    if let Some(lost) = replaces.filter(|&lost| lost == id) {
        return Err(format!(
            "--replaces {lost} names this node's own --id: give the node a new id"
        ));
    }
    Ok(Args {
        id,
        address: address.ok_or_else(|| missing("--address"))?,
        bind,
        dir: dir.ok_or_else(|| missing("--dir"))?,
        extension: extension.ok_or_else(|| missing("--extension"))?,
        join,
        latency_ms,
        bootstrap,
        replaces,
    })
}

/// The latencies dqlite takes (it refuses 0 and more than an hour).
const LATENCY_MS: std::ops::RangeInclusive<u32> = 1..=3_600_000;

/// A `HOST:PORT` flag value (`[::1]:9001` for IPv6), the port from 1 to
/// 65535: dqlite takes the port modulo 65536 (99999 listened on 34463,
/// and the cluster recorded an address nobody could reach).
fn host_port(flag: &str, value: &str) -> Result<String, String> {
    let expected = || {
        format!(
            "{flag} '{value}' is not HOST:PORT with a port from 1 to 65535 (such as \
             127.0.0.1:9001)"
        )
    };
    let (host, port) = value.rsplit_once(':').ok_or_else(expected)?;
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = !host.is_empty() && !host.contains(char::is_whitespace);
    if !port_ok || !host_ok {
        return Err(expected());
    }
    Ok(value.to_string())
}

/// Whether `dir` holds Raft state (libraft's metadata files): a node
/// started on it restarts as the member it was.
fn has_raft_state(dir: &std::path::Path) -> bool {
    ["metadata1", "metadata2"]
        .iter()
        .any(|name| dir.join(name).is_file())
}

fn main() -> ExitCode {
    if std::env::args().skip(1).any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}\n\n{HELP}");
        return ExitCode::SUCCESS;
    }
    if std::env::args()
        .skip(1)
        .any(|a| a == "--version" || a == "-V")
    {
        println!("onboarding-node {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    match parse_args().and_then(|args| run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onboarding-node: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    // The directory is made only once every check has passed: a refused
    // start leaves nothing behind.
    let restarted = has_raft_state(&args.dir);
    if args.bootstrap && args.id != 1 {
        return Err(format!(
            "--bootstrap with --id {}: only node 1 starts a cluster (dqlite bootstraps the \
             node whose id is 1)",
            args.id
        ));
    }
    if args.id == 1 && !restarted && !args.bootstrap {
        return Err(format!(
            "{} holds no Raft state, and dqlite starts node 1 on an empty directory as a new \
             cluster of its own: pass --bootstrap to start a new cluster; a node of a running \
             cluster that lost its data comes back with a new --id, --join and --replaces 1",
            args.dir.display()
        ));
    }
    if !restarted && !args.join.is_empty() {
        // Before the node listens: once started, the leader would fill the
        // directory, and the next start would take it for the node's own.
        let members = with_leader(args, "reach", |leader| leader.conn.cluster())?;
        refuse_a_voter_without_its_data(args, &members)?;
        if let Some(lost) = args.replaces {
            check_lost(lost, &members)?;
        }
        refuse_another_members_address(args, &members)?;
    }
    ffi::configure_sqlite()?;
    ffi::register_extension(&args.extension)?;
    let made_here = !args.dir.exists();
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| format!("cannot create {}: {e}", args.dir.display()))?;
    let node = ffi::Node::start(
        args.id,
        &args.address,
        args.bind.as_deref(),
        &args.dir,
        args.latency_ms,
        (SNAPSHOT_THRESHOLD, SNAPSHOT_TRAILING),
    )
    .inspect_err(|_| {
        // A node that did not start (its address in use) holds nothing
        // there yet: the directory this start made goes with it.
        if made_here {
            let _ = std::fs::remove_dir_all(&args.dir);
        }
    })?;
    ffi::on_termination(on_signal);
    let marker = args.dir.join(JOINED_MARKER);
    if !args.join.is_empty() && !marker.exists() {
        join(args)?;
        // Its id and address: `scripts/cluster` starts the node holding an
        // address from its directory, a replacement's included.
        std::fs::write(&marker, format!("{} {}\n", args.id, args.address))
            .map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
    }
    eprintln!(
        "onboarding-node: node {} serving {} (data {}, SQLite {})",
        args.id,
        args.address,
        args.dir.display(),
        ffi::sqlite_version()
    );
    while !STOP.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    node.stop()
}

/// A node starting on an empty directory whose id the cluster already has
/// as a voter lost its data: it forgot its log and its votes, and must not
/// vote again under that id.
fn refuse_a_voter_without_its_data(args: &Args, members: &[NodeInfo]) -> Result<(), String> {
    if members.iter().any(|n| n.id == args.id && n.role == 0) {
        return Err(format!(
            "node {} is a voter of the cluster already, but {} held no Raft state: it lost \
             its data, and a voter that forgot its log and its votes must not vote again; \
             start it with a new --id and --replaces {}",
            args.id,
            args.dir.display(),
            args.id
        ));
    }
    Ok(())
}

/// A new node at the address another member holds (the id it replaced,
/// started again by its old command after `--replaces`): the cluster
/// refuses the join ("address already in use") after a minute of tries,
/// and the node, started meanwhile, has written Raft state into its
/// directory, which the next start takes for its own. Refused before it
/// starts, with what to do; the member `--replaces` names is the one
/// address a new node may take.
fn refuse_another_members_address(args: &Args, members: &[NodeInfo]) -> Result<(), String> {
    let holder = members
        .iter()
        .find(|n| n.address == args.address && n.id != args.id && Some(n.id) != args.replaces);
    if let Some(holder) = holder {
        return Err(format!(
            "{} is node {}'s address in the cluster, and {} held no Raft state: start node {} \
             (its data is in its own directory), or, if it lost its data, start this one with \
             --replaces {}",
            args.address,
            holder.id,
            args.dir.display(),
            holder.id,
            holder.id
        ));
    }
    Ok(())
}

/// The member `--replaces` names must be lost: a node that still answers
/// at its address is running, and taking it out would leave it outside a
/// cluster that goes on without it.
fn check_lost(lost: u64, members: &[NodeInfo]) -> Result<(), String> {
    let Some(member) = members.iter().find(|n| n.id == lost) else {
        // Taken out already: by this very command, stopped before it
        // joined, or by hand.
        return Ok(());
    };
    if dqlite_wire::Conn::connect(&member.address, Duration::from_secs(1)).is_ok() {
        return Err(format!(
            "--replaces {lost}: node {lost} still answers at {}; stop it first (a running \
             node taken out of the cluster would go on alone)",
            member.address
        ));
    }
    Ok(())
}

/// Asks the cluster's leader to add this node and make it a voter.
fn join(args: &Args) -> Result<(), String> {
    let _ = CString::new(args.address.as_str()).map_err(|_| "address has a NUL byte")?;
    with_leader(args, "join", |leader| {
        let known = leader.conn.cluster()?;
        match known.iter().find(|n| n.id == args.id) {
            // A voter already: the join was done before the marker was
            // written (dqlite refuses to assign the role again), or this
            // very start made it one (an empty directory was checked
            // before the node started).
            Some(n) if n.role == 0 => return Ok(()),
            Some(_) => {}
            None => {
                // The lost member first: its address may be this node's
                // (a new disk in the same machine), which the cluster
                // refuses to hold twice.
                if let Some(lost) = args.replaces.filter(|l| known.iter().any(|n| n.id == *l)) {
                    leader.conn.remove(lost)?;
                }
                leader.conn.add(args.id, &args.address)?
            }
        }
        leader.conn.assign(args.id, Role::Voter)
    })
}

/// `ask` on the leader of the cluster `--join` names, retried for a minute
/// (the cluster may be electing); `what` names the attempt in the error.
fn with_leader<T>(
    args: &Args,
    what: &str,
    mut ask: impl FnMut(&mut Leader) -> dqlite_wire::Result<T>,
) -> Result<T, String> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    // Said every 10 s while the cluster does not answer, with why: a
    // minute of silence looked like a hang.
    let mut next_note = started + Duration::from_secs(10);
    loop {
        match connect_leader(&args.join, Duration::from_secs(2)).and_then(|mut l| ask(&mut l)) {
            Ok(value) => return Ok(value),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("cannot {what} {}: {e}", args.join.join(",")))
            }
            Err(_) if STOP.load(Ordering::SeqCst) => return Err("stopped while joining".into()),
            Err(e) => {
                if Instant::now() >= next_note {
                    eprintln!(
                        "onboarding-node: still trying to {what} {} ({} s of 60): {e}",
                        args.join.join(","),
                        started.elapsed().as_secs()
                    );
                    next_note += Duration::from_secs(10);
                }
                std::thread::sleep(Duration::from_millis(200))
            }
        }
    }
}
