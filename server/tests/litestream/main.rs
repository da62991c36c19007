//! Litestream's promises, measured on real processes over loopback: the
//! server under `scripts/litestream-run` (Litestream with the server as its
//! child, `deploy/litestream.yml`, a file replica), restores by
//! `scripts/restore-drill`, reads by `scripts/read-replica`.
//!
//! Needs the virtualenv of `scripts/litestream-venv` (made by `.ci/run`;
//! without it every test here says SKIPPED and passes, or fails under
//! `ONBOARDING_TESTS_SKIP_NOTHING`, as `.ci/run` runs them) and
//! `dist/libonboarding.so` for the read replica (`make loadable`).

#[path = "../common/mod.rs"]
mod common;
mod node;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{request, try_request};
use node::{
    onboard, onboard_with, restore_drill, Completion, Load, Node, ReadReplica, SYNC_INTERVAL,
};
use rusqlite::{Connection, OptionalExtension};

/// Clients completing onboardings at once during the kill tests.
const CLIENTS: u64 = 8;

/// Completions acknowledged before a kill, and how long the load runs on
/// after them: the lost machine's check needs 20 acknowledged more than
/// the sync interval before its kill.
const LOAD_UNTIL: u64 = 20;
const LOAD_AFTER: Duration = Duration::from_millis(1500);

/// The most a completion may take to reach a read replica: the replica's
/// sync interval plus the VFS's polling, with room for a loaded machine
/// (measured alone: about 1 s; once 5 s was passed under load).
const REPLICA_LAG_BOUND: Duration = Duration::from_secs(15);

fn open(path: &Path) -> Connection {
    Connection::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Ids of the completed sessions.
fn completed(conn: &Connection) -> HashSet<String> {
    let mut statement = conn
        .prepare("SELECT id FROM onboarding_sessions WHERE status = 'completed'")
        .expect("prepare");
    let ids = statement
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect::<Result<HashSet<String>, _>>());
    ids.expect("completed sessions")
}

/// Sessions whose completion is only partly there: completed without its
/// omnichannel rows or tenant flag, or omnichannel rows without a completed
/// session. Completion writes them all in one transaction.
fn half_synced(conn: &Connection) -> Vec<String> {
    let sql = "
        SELECT 'completed without its rows: ' || s.id FROM onboarding_sessions s
        JOIN tenants t ON t.id = s.tenant_id
        WHERE s.status = 'completed' AND (
            t.onboarding_completed IS NOT 1
            OR NOT EXISTS (SELECT 1 FROM omni_agent_configs a WHERE a.tenant_id = s.tenant_id)
            OR NOT EXISTS (SELECT 1 FROM omni_phone_mappings p WHERE p.tenant_id = s.tenant_id)
            OR NOT EXISTS (SELECT 1 FROM kb_crawl_jobs k WHERE k.session_id = s.id))
        UNION ALL
        SELECT 'rows without a completion: ' || a.tenant_id FROM omni_agent_configs a
        WHERE NOT EXISTS (SELECT 1 FROM onboarding_sessions s
                          WHERE s.tenant_id = a.tenant_id AND s.status = 'completed')";
    let mut statement = conn.prepare(sql).expect("prepare");
    let rows = statement
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect::<Result<Vec<String>, _>>());
    rows.expect("half-synced sessions")
}

/// The acknowledged completions missing from `present`.
/// The unfinished flows whose session is missing from `conn`, or behind
/// the step acknowledged: `session (acknowledged step N, found M)`.
fn behind(partials: &[node::Partial], conn: &Connection) -> Vec<String> {
    partials
        .iter()
        .filter_map(|p| {
            let found: Option<i64> = conn
                .query_row(
                    "SELECT current_step FROM onboarding_sessions WHERE id = ?1",
                    [&p.session_id],
                    |r| r.get(0),
                )
                .optional()
                .unwrap();
            (found.unwrap_or(0) < p.current_step).then(|| {
                format!(
                    "{} (acknowledged step {}, found {found:?})",
                    p.session_id, p.current_step
                )
            })
        })
        .collect()
}

fn missing<'a>(acked: &'a [Completion], present: &HashSet<String>) -> Vec<&'a str> {
    acked
        .iter()
        .filter(|c| !present.contains(&c.session_id))
        .map(|c| c.session_id.as_str())
        .collect()
}

/// A node on an empty disk: its temporary folder, database file and file
/// replica, and the node (server under Litestream) started on them.
fn fresh_node() -> (tempfile::TempDir, PathBuf, PathBuf, Node) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("node/onboarding.db");
    let replica = dir.path().join("replica");
    let node = Node::start(&db, &replica);
    (dir, db, replica, node)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

// With Litestream 0.5.17 and the server as it committed before its log
// syncer (SQLite's own synchronous=FULL commit), a server killed mid-commit
// left a torn transaction in the replica in 3 runs of 10; with the syncer,
// 0 of 75 (`RUNS=30 make litestream-kill`). See README, "Backups and
// replicas".
#[test]
fn a_killed_server_loses_no_acknowledged_write() {
    let Some(_venv) = node::venv() else { return };
    let _turn = node::one_at_a_time();
    let (dir, db, replica, mut node) = fresh_node();

    let (acked, partials) = runtime().block_on(async {
        let load = Load::start(node.addr, CLIENTS);
        load.run_for(LOAD_UNTIL, LOAD_AFTER).await;
        node.kill_server();
        load.finish_with_partials().await
    });
    // Litestream sees its child die, syncs what the WAL holds and exits.
    let status = node
        .wait(Duration::from_secs(30))
        .expect("Litestream exits");
    assert_eq!(status.code(), Some(1), "{}", node.log.text());
    assert!(
        acked.len() >= 20,
        "only {} completions under load",
        acked.len()
    );

    let on_disk = open(&db);
    assert_eq!(missing(&acked, &completed(&on_disk)), Vec::<&str>::new());
    assert_eq!(half_synced(&on_disk), Vec::<String>::new());

    let restored = dir.path().join("restored.db");
    let drill = restore_drill(&replica, &restored);
    assert_eq!(drill.integrity_check, "ok");
    // The check's read-only connection left nothing beside the file.
    for suffix in ["-wal", "-shm"] {
        let beside = PathBuf::from(format!("{}{suffix}", restored.display()));
        assert!(!beside.exists(), "{} left behind", beside.display());
    }
    let from_replica = open(&restored);
    assert_eq!(
        missing(&acked, &completed(&from_replica)),
        Vec::<&str>::new()
    );
    assert_eq!(half_synced(&from_replica), Vec::<String>::new());
    // The flows the kill cut short: their acknowledged create and steps are
    // kept too, in the file and in the replica.
    for conn in [&on_disk, &from_replica] {
        assert_eq!(behind(&partials, conn), Vec::<String>::new());
    }
    // The replica holds what the server's file holds, table by table. It
    // may hold more, whole and never acknowledged: a transaction the server
    // was writing when it was killed, which Litestream shipped and the
    // file's own recovery dropped (seen once, in a clean-clone CI run; 0
    // times in 40 runs of this test alone).
    let acked_tenants: HashSet<&str> = acked.iter().map(|c| c.tenant_id.as_str()).collect();
    let mut extra_rows = 0;
    for (table, tenant_column) in [
        ("tenants", "id"),
        ("onboarding_sessions", "tenant_id"),
        ("omni_agent_configs", "tenant_id"),
        ("kb_crawl_jobs", "tenant_id"),
    ] {
        let tenants = |conn: &Connection| -> Vec<String> {
            let sql = format!("SELECT {tenant_column} FROM {table} ORDER BY 1");
            let mut statement = conn.prepare(&sql).unwrap();
            let rows = statement.query_map([], |r| r.get(0)).unwrap();
            rows.collect::<Result<_, _>>().unwrap()
        };
        let (file, copy) = (tenants(&on_disk), tenants(&from_replica));
        assert_eq!(drill.counts[table], copy.len(), "{table}");
        let copy_set: HashSet<&String> = copy.iter().collect();
        let lost: Vec<&String> = file.iter().filter(|t| !copy_set.contains(t)).collect();
        assert_eq!(
            lost,
            Vec::<&String>::new(),
            "{table}: rows of the file not in the replica"
        );
        let file_set: HashSet<&String> = file.iter().collect();
        let extra: Vec<&String> = copy.iter().filter(|t| !file_set.contains(t)).collect();
        assert!(
            extra.iter().all(|t| !acked_tenants.contains(t.as_str())),
            "{table}: the replica's rows beyond the file include acknowledged ones: {extra:?}"
        );
        extra_rows += extra.len();
    }
    node::report(&format!(
        "killed server: {} completions and {} unfinished flows' steps acknowledged, 0 missing \
         from the file and the replica; the replica holds {extra_rows} unacknowledged rows \
         beyond the file; restore {:.3} s",
        acked.len(),
        partials.len(),
        drill.restore_seconds
    ));
}

#[test]
fn a_lost_machine_loses_only_completions_inside_the_sync_interval() {
    let Some(_venv) = node::venv() else { return };
    let _turn = node::one_at_a_time();
    let (dir, _db, replica, mut node) = fresh_node();

    let (acked, killed_at) = runtime().block_on(async {
        let load = Load::start(node.addr, CLIENTS);
        load.run_for(LOAD_UNTIL, LOAD_AFTER).await;
        let killed_at = Instant::now();
        node.kill_machine();
        (load.finish().await, killed_at)
    });
    assert!(
        acked.len() >= 20,
        "only {} completions under load",
        acked.len()
    );

    let restored = dir.path().join("restored.db");
    let drill = restore_drill(&replica, &restored);
    assert_eq!(drill.integrity_check, "ok");
    let conn = open(&restored);
    assert_eq!(half_synced(&conn), Vec::<String>::new());
    let present = completed(&conn);
    let (inside, before): (Vec<Completion>, Vec<Completion>) = acked
        .into_iter()
        .partition(|c| killed_at.duration_since(c.at) < SYNC_INTERVAL);
    // The promise is about what was acknowledged before the window: a run
    // whose completions all fell inside it would check nothing.
    assert!(
        before.len() >= 20,
        "only {} completions acknowledged more than {SYNC_INTERVAL:?} before the kill",
        before.len()
    );
    assert_eq!(missing(&before, &present), Vec::<&str>::new());
    let lost = missing(&inside, &present).len();
    node::report(&format!(
        "lost machine: {} completions acknowledged more than {SYNC_INTERVAL:?} before the kill, \
         all restored; {} inside the window, {lost} of them lost; restore {:.3} s",
        before.len(),
        inside.len(),
        drill.restore_seconds
    ));
}

/// Runs `flows` onboardings on `node` one after another.
fn onboard_some(node: &Node, flows: u64) -> Vec<Completion> {
    runtime().block_on(async {
        let mut done = Vec::new();
        for n in 0..flows {
            done.push(onboard(node.addr, n).await.expect("an onboarding"));
        }
        done
    })
}

#[test]
fn a_clean_stop_under_litestream_exits_zero() {
    let Some(_venv) = node::venv() else { return };
    let _turn = node::one_at_a_time();
    let (dir, _db, replica, mut node) = fresh_node();
    let acked = onboard_some(&node, 3);

    let status = node.stop();
    let log = node
        .log
        .with("database closed connection=writer transactions=");
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        log.contains("database closed connection=writer transactions="),
        "{log}"
    );
    assert!(!log.contains("did not close cleanly"), "{log}");
    // Litestream synced the last commits on its way out.
    let drill = restore_drill(&replica, &dir.path().join("restored.db"));
    assert_eq!(drill.counts["onboarding_sessions"], 3);
    let present = completed(&open(&dir.path().join("restored.db")));
    assert_eq!(missing(&acked, &present), Vec::<&str>::new());
    // Its output cut short, the drill still answers its verdict (it
    // failed, exit 1, on the closed pipe, which says "not sound").
    for (json, output) in [(false, "again.db"), (true, "again-json.db")] {
        let cut = node::restore_drill_unread(&replica, &dir.path().join(output), json);
        let stderr = String::from_utf8_lossy(&cut.stderr);
        assert_eq!(cut.status.code(), Some(0), "json {json}: {stderr}");
        assert!(
            !stderr.contains("Traceback") && !stderr.contains("BrokenPipe"),
            "{stderr}"
        );
    }
}

/// Whether a process still runs: not gone, not a zombie waiting for its
/// new parent to reap it.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat[stat.rfind(')').expect("the command's parenthesis") + 2..]
            .chars()
            .next();
        state != Some('Z') && state != Some('X')
    })
}

#[test]
fn a_server_whose_litestream_dies_stops_rather_than_serve_without_a_replica() {
    let Some(_venv) = node::venv() else { return };
    let _turn = node::one_at_a_time();
    let (_dir, _db, _replica, mut node) = fresh_node();
    onboard_some(&node, 2);
    let server = node.server_pid();

    node.kill_litestream();
    // The kernel's SIGTERM (setpriv --pdeathsig in scripts/litestream-run)
    // stops the server as a Ctrl-C would.
    let deadline = Instant::now() + Duration::from_secs(30);
    while running(server) {
        assert!(
            Instant::now() < deadline,
            "the server still runs 30 s after Litestream died; log:\n{}",
            node.log.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = node
        .log
        .with("database closed connection=writer transactions=");
    assert!(
        log.contains("database closed connection=writer transactions="),
        "{log}"
    );
    assert!(
        std::net::TcpStream::connect(node.addr).is_err(),
        "nothing answers at {} any more",
        node.addr
    );
}

#[test]
fn a_fresh_node_with_an_empty_disk_restores_at_boot_and_serves_the_sessions() {
    let Some(_venv) = node::venv() else { return };
    let _turn = node::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let mut first = Node::start(&dir.path().join("first/onboarding.db"), &replica);
    let acked = onboard_some(&first, 3);
    let rt = runtime();
    let get = |addr, id: &str| {
        let path = format!("/api/v1/onboarding/session/{id}");
        rt.block_on(try_request(addr, "GET", &path, b""))
            .expect("an answer")
    };
    let bodies: Vec<String> = acked
        .iter()
        .map(|c| get(first.addr, &c.session_id).body)
        .collect();
    // The first machine stops (a lost one would take the last second of
    // commits with it, as the test above measures), and its disk is gone.
    assert_eq!(first.stop().code(), Some(0));
    std::fs::remove_dir_all(dir.path().join("first")).unwrap();

    let fresh = dir.path().join("fresh/onboarding.db");
    let second = Node::start(&fresh, &replica);
    let log = second.log.with("msg=\"restore completed\"");
    assert!(log.contains("msg=\"restore completed\""), "{log}");
    for (completion, body) in acked.iter().zip(&bodies) {
        let reply = get(second.addr, &completion.session_id);
        assert_eq!(reply.status, 200);
        assert_eq!(&reply.body, body);
        assert_eq!(reply.json()["status"], "completed");
        assert_eq!(reply.json()["tenant_id"], completion.tenant_id.as_str());
    }
    // It goes on onboarding, and replicating.
    let more = rt
        .block_on(onboard(second.addr, 1_000))
        .expect("an onboarding on the restored node");
    drop(second);
    let present = completed(&open(&fresh));
    assert_eq!(present.len(), 4);
    assert!(present.contains(&more.session_id));
}

#[test]
fn an_empty_database_file_is_restored_over_and_another_file_refused() {
    let Some(_venv) = node::venv() else { return };
    let _turn = node::one_at_a_time();
    // --db would point the server away from the file Litestream watches.
    let refused = std::process::Command::new(node::root().join("scripts/litestream-run"))
        .args(["--listen", "127.0.0.1:0", "--db=elsewhere.db"])
        .output()
        .expect("run scripts/litestream-run");
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        "litestream-run: --db=elsewhere.db: set ONBOARDING_DB instead (Litestream replicates \
         that file, and the server opens it)\n"
    );
    let refused = std::process::Command::new(node::root().join("scripts/litestream-run"))
        .args(["--dqlite", "127.0.0.1:9001"])
        .output()
        .expect("run scripts/litestream-run");
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        "litestream-run: --dqlite: a dqlite cluster replicates itself; Litestream backs up one \
         file\n"
    );

    let (dir, db, replica, mut node) = fresh_node();
    let acked = onboard_some(&node, 2);
    assert_eq!(node.stop().code(), Some(0));
    // The file emptied (a failed copy, a touch after a loss), no log.
    std::fs::write(&db, b"").unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let again = Node::start(&db, &replica);
    again.log.with("was empty (0 bytes): moved to");
    let log = again.log.with("msg=\"restore completed\"");
    assert!(log.contains("was empty (0 bytes): moved to"), "{log}");
    assert!(log.contains("msg=\"restore completed\""), "{log}");
    drop(again);
    let present = completed(&open(&db));
    assert_eq!(missing(&acked, &present), Vec::<&str>::new());
    let aside: Vec<String> = std::fs::read_dir(db.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("onboarding.db.empty."))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    drop(dir);
}

#[test]
fn a_read_replica_of_a_folder_without_a_replica_says_so_at_once() {
    let Some(_venv) = node::venv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("replica");
    std::fs::create_dir_all(empty.join("ltx/0")).unwrap();
    for replica in [dir.path().join("none"), empty] {
        let out = node::read_replica_sql(&replica, "SELECT 1");
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "read-replica: error: {} holds no Litestream replica (no ltx/*/*.ltx files): is \
                 the primary replicating there (scripts/litestream-run, ONBOARDING_REPLICA_DIR)?\n",
                replica.display()
            )
        );
    }
}

/// `serve`'s flags are checked as the primary's are, before anything else
/// (a Python traceback was all a bad `--listen` got, and `*` was taken as
/// an origin).
#[test]
fn a_read_replicas_bad_flags_are_refused_with_the_rule() {
    for (flag, value, said) in [
        (
            "--listen",
            "127.0.0.1:abc",
            "argument --listen: '127.0.0.1:abc' is not HOST:PORT with a port from 0 to 65535 \
             (such as 127.0.0.1:8788)",
        ),
        (
            "--listen",
            "8788",
            "argument --listen: '8788' is not HOST:PORT with a port from 0 to 65535 (such as \
             127.0.0.1:8788)",
        ),
        (
            "--cors-origins",
            "http://localhost:3000,*",
            "argument --cors-origins: CORS origin '*' is not scheme://host[:port] (list each \
             origin; '*' and 'null' are not taken)",
        ),
    ] {
        let out = std::process::Command::new(node::root().join("scripts/read-replica"))
            .args(["--replica", "none", "serve", flag, value])
            .output()
            .expect("run scripts/read-replica");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.ends_with(&format!("read-replica serve: error: {said}\n")),
            "{stderr}"
        );
    }
}

/// The drill's output in a folder that does not exist is refused before
/// anything runs (Litestream made the folders: a mistyped path left a tree
/// behind).
#[test]
fn a_restore_drill_into_a_missing_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("nowhere/restored.db");
    let out = std::process::Command::new(node::root().join("scripts/restore-drill"))
        .arg(dir.path().join("replica"))
        .arg("-o")
        .arg(&output)
        .output()
        .expect("run scripts/restore-drill");
    assert_eq!(
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned()
        ),
        (
            Some(2),
            format!(
                "restore-drill: error: '{}' is not a folder; the new file goes into an existing one\n",
                output.parent().unwrap().display()
            )
        )
    );
    assert!(!dir.path().join("nowhere").exists());
}

#[test]
fn a_read_replica_sees_a_completion_within_a_bounded_lag_and_refuses_writes() {
    let Some(_venv) = node::venv() else { return };
    let _turn = node::one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let replica = dir.path().join("replica");
    let node = Node::start(&dir.path().join("node/onboarding.db"), &replica);
    let rt = runtime();
    let first = rt.block_on(onboard(node.addr, 0)).expect("an onboarding");
    let reader = wait_until_served(&replica, &first.session_id);

    let mut lags = Vec::new();
    for n in 1..=5 {
        let done = rt.block_on(onboard(node.addr, n)).expect("an onboarding");
        let path = format!("/api/v1/onboarding/session/{}", done.session_id);
        let seen = rt.block_on(async {
            let deadline = done.at + REPLICA_LAG_BOUND;
            while Instant::now() < deadline {
                if let Some(reply) = try_request(reader.addr, "GET", &path, b"").await {
                    if reply.status == 200 && reply.json()["status"] == "completed" {
                        return Some((Instant::now(), reply.body));
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            None
        });
        let (at, body) = seen.unwrap_or_else(|| {
            // What the follower said, and what the replica held: a follower
            // stuck at one transaction logs why (Litestream's VFS retries
            // a failed poll forever).
            let healthz = rt.block_on(try_request(reader.addr, "GET", "/healthz", b""));
            // Whether the replica holds the commit (the read replica then
            // misses it) or not (Litestream never shipped it).
            let restored = dir.path().join("diagnosis.db");
            restore_drill(&replica, &restored);
            let shipped = completed(&open(&restored)).contains(&done.session_id);
            eprintln!("completion {n} in a restore of the replica: {shipped}");
            let log = reader.log.text();
            let said: Vec<&str> = log
                .lines()
                .filter(|line| !line.starts_with("read-replica: GET"))
                .collect();
            panic!(
                "completion {n} not on the replica within {REPLICA_LAG_BOUND:?}; \
                 replica files: {:?}; its /healthz: {:?}; read replica's log \
                 (requests left out):\n{}\nthe primary's log (Litestream and \
                 the server):\n{}",
                files_under(&replica),
                healthz.map(|reply| reply.body),
                said.join("\n"),
                node.log.text()
            )
        });
        lags.push(at.duration_since(done.at));
        // The replica answers what the primary answers, byte for byte.
        let primary = rt
            .block_on(try_request(node.addr, "GET", &path, b""))
            .unwrap();
        assert_eq!(body, primary.body);
    }
    // The dashboard's knowledge base: a session with documents (a website
    // job stays queued here: no crawler), once the replica has it: its
    // documents, not the session alone (created by an earlier commit).
    let documents = rt
        .block_on(onboard_with(node.addr, 6, DOCUMENTS))
        .expect("an onboarding with documents");
    let kb = format!("/api/v1/onboarding/session/{}/kb", documents.session_id);
    let deadline = documents.at + REPLICA_LAG_BOUND;
    loop {
        let reply = rt.block_on(try_request(reader.addr, "GET", &kb, b""));
        if reply.as_ref().is_some_and(|reply| {
            reply.status == 200
                && reply.json()["documents"]
                    .as_array()
                    .is_some_and(|d| !d.is_empty())
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{kb} not on the replica within {REPLICA_LAG_BOUND:?}; its last answer: {:?}",
            reply.map(|reply| (reply.status, reply.body))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let website_kb = format!("/api/v1/onboarding/session/{}/kb", first.session_id);
    let search = format!("{kb}/search");
    for (route, status) in [
        ("/api/v1/onboarding/agent-types".to_string(), 200),
        ("/api/v1/onboarding/voices".to_string(), 200),
        // An unknown session: the primary's 404 and body, not the SQL error.
        ("/api/v1/onboarding/session/onb_nope".to_string(), 404),
        (kb.clone(), 200),
        (website_kb, 200),
        (format!("{search}?q=samedi&limit=1"), 200),
        // `+` is a space, the default limit; a parameter read given twice
        // is refused, one not read may repeat.
        (format!("{search}?q=coupe+homme&utm=a&utm=b"), 200),
        (format!("{search}?q=x&q=coupe+homme"), 422),
        // Not UTF-8 once decoded (Latin-1's `é`).
        (format!("{search}?q=caf%E9"), 422),
        (
            format!(
                "/api/v1/kb/structure?session_id={0}&session_id={0}",
                first.session_id
            ),
            422,
        ),
        (format!("{search}?q=caf%C3%A9&limit=%2B3"), 200),
        (format!("{search}?q="), 422),
        (search.clone(), 422),
        (format!("{search}?q=samedi&limit=abc"), 422),
        (format!("{search}?q=samedi&limit=0"), 422),
        (format!("{search}?q=samedi&limit=99999999999999999999"), 422),
        ("/api/v1/onboarding/session/onb_nope/kb".to_string(), 404),
        // The original's route, the session id in the query.
        (
            format!("/api/v1/kb/structure?session_id={}", first.session_id),
            200,
        ),
        (
            "/api/v1/onboarding/session/onb_nope/kb/search?q=samedi".to_string(),
            404,
        ),
    ] {
        let on_replica = rt
            .block_on(try_request(reader.addr, "GET", &route, b""))
            .unwrap();
        let on_primary = rt
            .block_on(try_request(node.addr, "GET", &route, b""))
            .unwrap();
        assert_eq!(on_primary.status, status, "{route}: {}", on_primary.body);
        assert_eq!(
            [&on_replica, &on_primary].map(|reply| {
                [
                    reply.header("cache-control"),
                    reply.header("x-content-type-options"),
                ]
            }),
            [[Some("no-store"), Some("nosniff")]; 2],
            "{route}"
        );
        assert_eq!(
            (on_replica.status, on_replica.body),
            (status, on_primary.body),
            "{route}"
        );
    }
    // Methods the read routes do not take, and paths that are no route:
    // the primary's statuses and bodies.
    for (method, route, status) in [
        ("POST", "/api/v1/onboarding/voices", 405),
        ("DELETE", "/api/v1/onboarding/agent-types", 405),
        ("POST", "/nope", 404),
        // A read of a writing route: the primary's 405 and its `Allow`.
        ("GET", "/api/v1/onboarding/session", 405),
        ("GET", "/api/v1/onboarding/session/onb_nope/complete", 405),
    ] {
        let on_replica = rt
            .block_on(try_request(reader.addr, method, route, b"{}"))
            .unwrap();
        let on_primary = rt
            .block_on(try_request(node.addr, method, route, b"{}"))
            .unwrap();
        assert_eq!(on_primary.status, status, "{method} {route}");
        assert_eq!(
            (
                on_replica.status,
                on_replica.header("allow").map(str::to_string),
                on_replica.body
            ),
            (
                status,
                on_primary.header("allow").map(str::to_string),
                on_primary.body
            ),
            "{method} {route}"
        );
    }
    // `*` names the server itself, for OPTIONS only: the primary's methods,
    // every route's (the replica refusing its POSTs), and its 400 to
    // another method.
    for (method, status) in [
        ("OPTIONS", 204),
        ("GET", 400),
        ("POST", 400),
        ("DELETE", 400),
    ] {
        let [on_replica, on_primary] =
            [reader.addr, node.addr].map(|addr| rt.block_on(request(addr, method, "*", &[], b"")));
        let seen = |reply: &common::Reply| {
            (
                reply.status,
                reply.header("allow").map(str::to_string),
                reply.body.clone(),
            )
        };
        assert_eq!(seen(&on_primary).0, status, "{method} *");
        assert_eq!(seen(&on_replica), seen(&on_primary), "{method} *");
    }
    // CORS as on the primary, so that the dashboard reads the replica from
    // the origin it reads the primary from: a read and a preflight from an
    // allowed origin, a preflight from another one.
    let cors = [
        "vary",
        "access-control-allow-origin",
        "access-control-expose-headers",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-max-age",
        "allow",
    ];
    let voices = "/api/v1/onboarding/voices";
    let create = "/api/v1/onboarding/session";
    for (method, route, origin, status) in [
        ("GET", voices, "http://localhost:3002", 200),
        ("OPTIONS", voices, "http://localhost:3002", 204),
        ("OPTIONS", voices, "https://evil.example", 403),
        // A write's preflight too, so that the page reads the replica's
        // refusal of the write rather than a CORS failure.
        ("OPTIONS", create, "http://localhost:3002", 204),
        ("OPTIONS", create, "https://evil.example", 403),
        // Both: the kb step's POST and the GET of its pages.
        (
            "OPTIONS",
            "/api/v1/onboarding/session/onb_x/kb",
            "http://localhost:3002",
            204,
        ),
    ] {
        let headers = [
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
        ];
        let [on_replica, on_primary] = [reader.addr, node.addr]
            .map(|addr| rt.block_on(request(addr, method, route, &headers, b"")));
        let seen = |reply: &common::Reply| {
            (
                reply.status,
                cors.map(|name| reply.header(name).map(str::to_string)),
                reply.body.clone(),
            )
        };
        assert_eq!(seen(&on_primary).0, status, "{method} {route} {origin}");
        assert_eq!(
            seen(&on_replica),
            seen(&on_primary),
            "{method} {route} {origin}"
        );
    }
    let write = rt.block_on(request(
        reader.addr,
        "POST",
        create,
        &[("Origin", "http://localhost:3002")],
        b"{}",
    ));
    assert_eq!(
        (
            write.status,
            write.header("access-control-allow-origin"),
            write.body.as_str()
        ),
        (
            405,
            Some("http://localhost:3002"),
            r#"{"success":false,"error":"this is a read replica; send writes to the primary","code":"method_not_allowed"}"#
        )
    );

    // The kb step's POST: a write, refused as one, though its path is also
    // the read of the knowledge base (which the `Allow` says).
    let kb_write = rt.block_on(request(
        reader.addr,
        "POST",
        "/api/v1/onboarding/session/onb_nope/kb",
        &[("Content-Type", "application/json")],
        b"{}",
    ));
    assert_eq!(
        (
            kb_write.status,
            kb_write.header("allow"),
            kb_write.body.as_str()
        ),
        (
            405,
            Some("GET, HEAD, OPTIONS"),
            r#"{"success":false,"error":"this is a read replica; send writes to the primary","code":"method_not_allowed"}"#
        )
    );
    // A write of 4 MiB sent whole before its answer is read (as Python's
    // http.client sends): the write is refused, then its body read and
    // dropped, where the connection closed under the client's writes.
    {
        use std::io::{Read, Write};
        let mut raw = std::net::TcpStream::connect(reader.addr).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        raw.set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let body = vec![b' '; 4 << 20];
        write!(
            raw,
            "POST {create} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        raw.write_all(&body).unwrap();
        let mut answer = String::new();
        raw.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.0 405 ") || answer.starts_with("HTTP/1.1 405 "),
            "{answer}"
        );
        assert!(
            answer.ends_with(r#""error":"this is a read replica; send writes to the primary","code":"method_not_allowed"}"#),
            "{answer}"
        );
    }

    // A write's body trickled in, a byte every 3.5 s (never idle 5 s): the
    // 405 comes first, then the body is dropped for 10 s in all and the
    // connection closed (it ran to the read after the deadline, 14 s, when
    // the deadline was only looked at between reads).
    {
        use std::io::{Read, Write};
        let mut raw = std::net::TcpStream::connect(reader.addr).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write!(
            raw,
            "POST {create} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: 100000\r\n\r\n"
        )
        .unwrap();
        let mut head = [0u8; 12];
        raw.read_exact(&mut head).unwrap();
        // The 10 s count from the 405.
        let started = std::time::Instant::now();
        assert_eq!(&head, b"HTTP/1.0 405");
        let mut trickle = raw.try_clone().unwrap();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let sender = std::thread::spawn(move || {
            // A byte each 3.5 s until told to stop (or 5 bytes).
            for _ in 0..5 {
                if stopped.recv_timeout(Duration::from_millis(3_500)).is_ok() {
                    break;
                }
                if trickle.write_all(b" ").is_err() {
                    break;
                }
            }
        });
        let mut rest = Vec::new();
        // EOF, or a reset when a byte arrived as it closed: closed either way.
        let _ = raw.read_to_end(&mut rest);
        let closed = started.elapsed();
        stop.send(()).unwrap();
        sender.join().unwrap();
        assert!(
            closed >= Duration::from_millis(9_500) && closed < Duration::from_millis(12_500),
            "closed after {closed:?}"
        );
    }

    // The search found the text: the equal answers are not two empty lists.
    let found = rt
        .block_on(try_request(
            reader.addr,
            "GET",
            &format!("{search}?q=samedi&limit=1"),
            b"",
        ))
        .unwrap();
    assert_eq!(
        found.json()["results"][0]["title"],
        "Horaires",
        "{}",
        found.body
    );

    // Segments are decoded after the split, as on the primary: an escaped
    // slash is no separator.
    let escaped = rt
        .block_on(try_request(
            reader.addr,
            "GET",
            "/api/v1/onboarding%2Fvoices",
            b"",
        ))
        .unwrap();
    assert_eq!(
        (escaped.status, escaped.body.as_str()),
        (
            404,
            r#"{"success":false,"error":"no route for GET '/api/v1/onboarding%2Fvoices'","code":"not_found"}"#
        )
    );
    // A malformed request line holding a session id: answered 400, and its
    // text kept out of the log.
    {
        use std::io::{Read, Write};
        let mut raw = std::net::TcpStream::connect(reader.addr).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            raw,
            "GET /api/v1/onboarding/session/{} x y HTTP/1.1\r\n\r\n",
            first.session_id
        )
        .unwrap();
        let mut answer = String::new();
        let _ = raw.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");
    }
    // The log shows the routes' templates, never a session id.
    let log = reader
        .log
        .with("read-replica: GET /api/v1/onboarding/session/:id 200");
    assert!(
        log.contains("read-replica: GET /api/v1/onboarding/session/:id 200"),
        "{log}"
    );
    assert!(!log.contains(&first.session_id), "{log}");

    let refused = rt
        .block_on(try_request(
            reader.addr,
            "POST",
            "/api/v1/onboarding/session",
            b"{}",
        ))
        .unwrap();
    assert_eq!(refused.status, 405);
    assert_eq!(
        refused.body,
        r#"{"success":false,"error":"this is a read replica; send writes to the primary","code":"method_not_allowed"}"#
    );
    let sql = node::read_replica_sql(&replica, "SELECT onboarding_create('{}')");
    assert_eq!(sql.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&sql.stdout), "");
    assert_eq!(
        String::from_utf8_lossy(&sql.stderr),
        "read-replica: error: onboarding_create: internal: attempt to write a readonly database \
         (this is a read replica; send writes to the primary)\n"
    );

    lags.sort();
    node::report(&format!(
        "read replica lag over {} completions: min {:?}, median {:?}, max {:?}",
        lags.len(),
        lags[0],
        lags[lags.len() / 2],
        lags[lags.len() - 1]
    ));
}

/// A kb step with two documents, stored at completion.
const DOCUMENTS: &str = concat!(
    r##"{"method":"documents","documents":["##,
    r##"{"title":"Horaires","content":"# Horaires\n\n| Samedi | 9h00 – 18h00 |"},"##,
    r##"{"title":"Tarifs","content":"# Tarifs\n\n| Coupe homme | 25 € |"}]}"##,
);

/// Starts the read replica and waits until it serves the session.
/// Every file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(dir) {
                files.push(relative.display().to_string());
            }
        }
    }
    files.sort();
    files
}

fn wait_until_served(replica: &Path, session_id: &str) -> ReadReplica {
    let deadline = Instant::now() + REPLICA_LAG_BOUND;
    let reader = ReadReplica::serve(replica);
    let path = format!("/api/v1/onboarding/session/{session_id}");
    let rt = runtime();
    while Instant::now() < deadline {
        let reply = rt.block_on(try_request(reader.addr, "GET", &path, b""));
        if reply.is_some_and(|r| r.status == 200) {
            return reader;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("session {session_id} not on the replica within {REPLICA_LAG_BOUND:?}");
}
