//! The dqlite backend (`--dqlite NODES`): every batch runs on the cluster's
//! current leader through the wire protocol, one `BEGIN IMMEDIATE … COMMIT`
//! per batch, so one Raft entry per batch.
//!
//! What dqlite 1.11 needs from a client, and how this one does it:
//!
//! - **Every call in a transaction.** A writing `SELECT` sent alone is
//!   answered but not replicated on 1.11; the batch's explicit transaction
//!   is what gets replicated, reads included.
//! - **The leader, followed.** A failed connection, a refused one, a
//!   "not leader" answer, or a late answer while the other nodes name
//!   another leader ([`LEADERSHIP_CHECK`]: a frozen leader) drops the
//!   connection; the batch runs again, from `BEGIN`, on whatever leader
//!   the nodes name next, every [`RETRY_PAUSE`] until [`RETRY_FOR`] has
//!   passed since its oldest call was queued (then 503).
//! - **Busy retried.** SQLITE_BUSY (another client holds the write lock)
//!   rolls back and runs the batch again rather than answering `internal`.
//! - **Unknown outcomes made safe.** When the connection breaks around a
//!   COMMIT, the batch may or may not have been applied. Running it again
//!   is safe call by call: each route's call that writes (a create, a
//!   step, a completion, a phone code sent or checked) carries a request
//!   key made here once per call, so a call already applied answers its
//!   first answer again and writes nothing (`onboarding_create(…, request_key)`,
//!   `onboarding_step(…, request_key)`, …). A step is keyed too: run again
//!   after its session's completion in the same batch, it would answer
//!   `conflict` although it was saved.
//! - **No call of seconds.** The leader sends no Raft heartbeat while it
//!   runs a call: a completion's pasted documents are stored first, one
//!   `onboarding_kb_prepare` call each ([`complete`]).
//! - **A newer library on an older schema migrated.** The nodes run the
//!   library and the server migrates: during a rolling upgrade a node on
//!   a newer `libonboarding.so` may lead before the schema is migrated,
//!   and answer `schema_missing`. The server then migrates through it and
//!   runs those calls again ([`Cluster::migrate_and_run_again`]).
//! - **Error texts kept.** A function's error reaches the HTTP layer as
//!   the exact `onboarding_<fn>: <kind>: <detail>` (see `dqlite_wire`'s
//!   reading of 1.11's failure responses), so statuses stay exact.
//!
//! An SQL error at COMMIT itself, or a failing call after which SQLite has
//! rolled the whole transaction back (checked with a `BEGIN` after each
//! failing call, so that no later call runs in autocommit), runs each call
//! again alone, as the file backend does: no answer claims a write that
//! was lost.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use dqlite_wire::{connect_leader, Conn, Error, Value};
use onboarding::Env;

use super::query::{missing_forms_sql, Arg, Backend, Failure, Outcome, Query};

/// How long a batch keeps looking for a leader (or waiting out a busy
/// one) before its calls are answered 503: an election takes 1-3 s.
pub const RETRY_FOR: Duration = Duration::from_secs(10);

/// The pause between two attempts of a batch that found no leader.
const RETRY_PAUSE: Duration = Duration::from_millis(25);

/// Bounds each connect to a node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Bounds every answer: a commit waits for a quorum of nodes, and a call
/// does its work on the leader (the longest, a crawled page of 2 MiB,
/// takes about 0.3 s there on a 2-core AMD EPYC: README, "High
/// availability").
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// While an answer is slower than this, the other nodes are asked who
/// leads, and the leader is given up once they name another: a leader
/// that stops answering without closing its connections (frozen, cut off
/// by the network) is left as soon as its successor is elected (about a
/// second), where only the answer timeout gave it up before.
const LEADERSHIP_CHECK: Duration = Duration::from_millis(250);

/// Where the writer finds the cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Addresses (host:port) of the nodes; any of them may be down.
    pub nodes: Vec<String>,
    /// The replicated database's name.
    pub database: String,
    /// How long a call waits for a lock another client of the leader holds
    /// (`--busy-timeout-ms`), counted from when it was queued, as on a
    /// file; a lost leader is looked for [`RETRY_FOR`] whatever it is.
    pub busy_timeout: Duration,
}

/// The connection to the current leader, when there is one.
struct Session {
    conn: Conn,
    db: u32,
}

/// The writer's view of the cluster.
pub(super) struct Cluster {
    options: ClusterOptions,
    leader: Option<Session>,
    /// The address of the last leader connected to: asked last when a new
    /// one is looked for, since it may be frozen (it accepts a connection,
    /// then each question waits out [`CONNECT_TIMEOUT`]).
    last_leader: Option<String>,
    /// When a migration asked for by a call's `schema_missing` last failed:
    /// none is tried again for [`MIGRATION_PAUSE`], so that a schema that
    /// cannot be migrated (a table dropped by hand, a leader whose library
    /// is older than the schema) costs each batch nothing more.
    migration_failed_at: Option<Instant>,
    /// Whether an attempt of the batch under way sent its COMMIT and got no
    /// answer (the connection broke, the leadership was lost): its entry
    /// may be in the Raft log of a leader cut off from its quorum, and
    /// applied once the quorum is back, long after the batch gave up.
    commit_unconfirmed: bool,
    /// When the batch under way stops looking for a leader: [`RETRY_FOR`]
    /// after its oldest call was queued ([`Backend::queued_since`]), not
    /// after the batch began. Calls queued behind a batch waiting out a
    /// lost quorum waited their own [`RETRY_FOR`] on top of it, each
    /// batch of them in turn: 20 s for a second batch, minutes for a full
    /// queue, and calls whose clients had given up ran once it was back.
    batch_deadline: Option<Instant>,
    /// When the batch under way stops waiting out a lock: the busy timeout
    /// after its oldest call was queued.
    busy_deadline: Option<Instant>,
    /// The members the last leader named that were not given
    /// ([`ClusterOptions::nodes`]): asked after those.
    learned: Vec<String>,
    /// The nodes' addresses as resolved, to tell one node under two
    /// spellings.
    addresses: Addresses,
}

/// Node addresses resolved, each once for the process: the lookups happen
/// when a leader is connected to, which is a failover's path, and a host
/// name whose lookup is slow (or fails after a timeout) must not cost a
/// failover its seconds again and again.
#[derive(Default)]
struct Addresses {
    resolved: std::collections::HashMap<String, Vec<std::net::SocketAddr>>,
}

impl Addresses {
    /// Whether two node addresses name one node: the same text, or a host
    /// name and an address that resolve alike (`localhost:9001` and
    /// `127.0.0.1:9001`: nodes advertise the address they were started
    /// with, which may not be how the server was given it).
    fn same_node(&mut self, a: &str, b: &str) -> bool {
        if a == b {
            return true;
        }
        let theirs = self.resolve(b).to_vec();
        self.resolve(a).iter().any(|x| theirs.contains(x))
    }

    fn resolve(&mut self, address: &str) -> &[std::net::SocketAddr] {
        use std::net::ToSocketAddrs;
        self.resolved.entry(address.to_string()).or_insert_with(|| {
            (address.to_socket_addrs())
                .map(Iterator::collect)
                .unwrap_or_default()
        })
    }
}

/// How long after a failed migration the calls' `schema_missing` answers
/// stand without another try.
const MIGRATION_PAUSE: Duration = Duration::from_secs(10);

/// Attempts of such a migration: a lost leader is worth another, an SQL
/// error is not (it comes back the same).
const MIGRATION_ATTEMPTS: usize = 3;

/// Why an attempt of a batch did not give its answers.
enum Retry {
    /// No leader or a broken connection: run it again.
    Again(String),
    /// A lock another client of the leader holds: run it again, within the
    /// busy timeout.
    Busy(String),
    /// COMMIT failed with an SQL error: run each call alone.
    CommitFailed(String),
}

impl Cluster {
    /// Finds the leader, opens the database and migrates it (in a
    /// transaction, so that the schema is replicated).
    pub(super) fn open(options: ClusterOptions) -> Result<Cluster, String> {
        let mut cluster = Cluster {
            options,
            leader: None,
            last_leader: None,
            migration_failed_at: None,
            commit_unconfirmed: false,
            batch_deadline: None,
            busy_deadline: None,
            learned: Vec::new(),
            addresses: Addresses::default(),
        };
        let deadline = Instant::now() + RETRY_FOR;
        loop {
            match cluster.migrate() {
                // The nodes' extension is older than this server: its keyed
                // calls (schema 8) would all fail.
                Ok(version) if version < onboarding::latest_version() => {
                    return Err(format!(
                        "the dqlite cluster {} runs a libonboarding.so at schema version \
                         {version}; this server needs {} (update the nodes' extension)",
                        cluster.options.nodes.join(","),
                        onboarding::latest_version()
                    ));
                }
                Ok(version) => {
                    tracing::info!(
                        nodes = %cluster.options.nodes.join(","),
                        schema_version = version,
                        "dqlite cluster ready"
                    );
                    return Ok(cluster);
                }
                Err(Retry::Again(e) | Retry::Busy(e)) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "cluster not ready");
                    std::thread::sleep(RETRY_PAUSE);
                }
                Err(Retry::Again(e) | Retry::Busy(e) | Retry::CommitFailed(e)) => {
                    return Err(format!(
                        "cannot migrate the database on the dqlite cluster {}: {e}",
                        cluster.options.nodes.join(",")
                    ))
                }
            }
        }
    }

    fn migrate(&mut self) -> Result<i64, Retry> {
        let session = self.session()?;
        let result = transaction(session, |s| {
            let rows = s.conn.query(s.db, "SELECT onboarding_migrate()", &[])?;
            let version = rows
                .rows
                .first()
                .and_then(|r| r.first())
                .and_then(Value::as_integer);
            let rows = s.conn.query(s.db, &missing_forms_sql(), &[])?;
            let missing = rows
                .rows
                .first()
                .and_then(|r| r.first())
                .and_then(Value::as_text)
                .map(str::to_string);
            Ok((version, missing))
        });
        let (version, missing) = self.settle(result)?;
        // An extension of the same schema can still lack a form this server
        // calls (onboarding_step/4 and onboarding_kb_prepare/1 came without
        // a migration): every such call would fail with "wrong number of
        // arguments".
        if let Some(missing) = missing {
            return Err(Retry::CommitFailed(format!(
                "the nodes' libonboarding.so lacks {missing}, which this server calls \
                 (update the nodes' extension)"
            )));
        }
        version
            .ok_or_else(|| Retry::CommitFailed("onboarding_migrate() answered no version".into()))
    }

    /// The leader's connection, connecting (and opening the database) first
    /// if there is none.
    fn session(&mut self) -> Result<&mut Session, Retry> {
        if self.leader.is_none() {
            let (mut nodes, mut last) = (Vec::new(), Vec::new());
            for node in self.options.nodes.iter().chain(&self.learned) {
                let was_last = (self.last_leader.as_deref())
                    .is_some_and(|l| self.addresses.same_node(node, l));
                if was_last { &mut last } else { &mut nodes }.push(node.clone());
            }
            nodes.extend(last);
            let mut leader =
                connect_leader(&nodes, CONNECT_TIMEOUT).map_err(|e| Retry::Again(e.to_string()))?;
            self.last_leader = Some(leader.address.clone());
            let db = leader
                .conn
                .open(&self.options.database)
                .map_err(|e| Retry::Again(e.to_string()))?;
            leader
                .conn
                .set_timeout(ANSWER_TIMEOUT)
                .map_err(|e| Retry::Again(e.to_string()))?;
            // The members as the leader knows them, after the addresses
            // given: a server given some of them (or started before a
            // member was replaced at a new address) found no leader once
            // those were down, while the others had elected one. Learned
            // again from each leader, so that a member replaced since is
            // no longer asked; the leader itself, and an address given
            // under another spelling (`localhost:9001`), are not added.
            let members = leader
                .conn
                .cluster()
                .map_err(|e| Retry::Again(e.to_string()))?;
            let (given, addresses) = (&self.options.nodes, &mut self.addresses);
            let learned: Vec<String> = members
                .into_iter()
                .filter(|m| m.id != leader.id)
                .filter(|m| !given.iter().any(|n| addresses.same_node(n, &m.address)))
                .map(|m| m.address)
                .collect();
            if learned != self.learned {
                tracing::info!(nodes = %learned.join(","), "dqlite members learned from the leader, beside those given");
                self.learned = learned;
            }
            let addresses = &mut self.addresses;
            let others = (self.options.nodes.iter().chain(&self.learned))
                .filter(|n| !addresses.same_node(n, &leader.address))
                .cloned()
                .collect();
            leader.conn.watch_leadership(others, LEADERSHIP_CHECK);
            // A transaction whose changed pages outgrow the page cache has
            // SQLite write some to the log before its commit ("spill"),
            // which dqlite's log cannot take (it failed with "disk I/O
            // error" on a completion storing 19 documents of 200,000
            // characters, canonical/dqlite#432): the pages stay in memory
            // until the commit instead.
            leader
                .conn
                .exec(db, "PRAGMA cache_spill = OFF", &[])
                .map_err(|e| Retry::Again(e.to_string()))?;
            tracing::info!(leader = %leader.address, id = leader.id, "dqlite leader");
            self.leader = Some(Session {
                conn: leader.conn,
                db,
            });
        }
        Ok(self.leader.as_mut().expect("connected just above"))
    }

    /// Turns a transaction's wire error into what the batch does next; a
    /// broken connection or lost leadership forgets the leader.
    fn settle<T>(&mut self, result: Result<T, TxError>) -> Result<T, Retry> {
        match result {
            Ok(value) => Ok(value),
            Err(TxError::Wire(e)) => {
                // Only a busy lock keeps the connection: after anything else
                // a new one starts clean (the node rolls back what a closed
                // connection left open).
                if e.is_busy() {
                    return Err(Retry::Busy(e.to_string()));
                }
                self.leader = None;
                Err(Retry::Again(e.to_string()))
            }
            Err(TxError::Commit(e)) if e.is_connection() || e.is_busy() => {
                self.leader = None;
                // A busy lock or a node that was not the leader refused
                // the COMMIT; no answer, or a leadership lost while it
                // waited, leaves it open.
                self.commit_unconfirmed |= e.is_connection() && !not_leader(&e);
                if e.is_busy() {
                    return Err(Retry::Busy(e.to_string()));
                }
                Err(Retry::Again(e.to_string()))
            }
            Err(TxError::Commit(e)) => Err(Retry::CommitFailed(e.to_string())),
            Err(TxError::RolledBack) => Err(Retry::CommitFailed(
                "the transaction was rolled back by SQLite".to_string(),
            )),
        }
    }

    /// One attempt: the calls of `queries` in one transaction.
    fn attempt(
        &mut self,
        queries: &[&Query],
        keys: &[Option<String>],
        replies: &mut Vec<Outcome>,
    ) -> Result<(), Retry> {
        replies.clear();
        let session = self.session()?;
        let result = transaction(session, |s| {
            for (query, key) in queries.iter().zip(keys) {
                let outcome = match query.completes() {
                    Some(session_id) => complete(s, session_id, query, key.as_deref())?,
                    None => call(s, query, key.as_deref())?,
                };
                let failed = outcome.is_err();
                replies.push(outcome);
                if failed && !still_in_transaction(s)? {
                    return Err(TxError::RolledBack);
                }
            }
            Ok(())
        });
        match result {
            // A call alone: its failure is its whole answer, nothing written.
            Err(TxError::RolledBack) if queries.len() == 1 => Ok(()),
            result => self.settle(result),
        }
    }

    /// Runs `attempt` until it answers, or answers every call 503 at the
    /// batch's deadline (one attempt at least): [`Failure::Unconfirmed`]
    /// when an attempt's COMMIT got no answer, since the calls may still
    /// take effect, else [`Failure::Busy`].
    fn until_answered(
        &mut self,
        queries: &[&Query],
        keys: &[Option<String>],
        replies: &mut Vec<Outcome>,
    ) -> Result<(), String> {
        let deadline = self
            .batch_deadline
            .unwrap_or_else(|| Instant::now() + RETRY_FOR);
        let busy_deadline = self
            .busy_deadline
            .unwrap_or_else(|| Instant::now() + self.options.busy_timeout);
        loop {
            match self.attempt(queries, keys, replies) {
                Ok(()) => return Ok(()),
                Err(Retry::CommitFailed(e)) => return Err(e),
                Err(Retry::Again(e)) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, calls = queries.len(), "running the batch again");
                    std::thread::sleep(RETRY_PAUSE);
                }
                Err(Retry::Busy(e)) if Instant::now() < busy_deadline => {
                    tracing::debug!(error = %e, calls = queries.len(), "waiting out a lock");
                    std::thread::sleep(RETRY_PAUSE);
                }
                Err(Retry::Again(e) | Retry::Busy(e)) => {
                    let text = format!("the dqlite cluster is unavailable: {e}");
                    // Only calls that write can take effect later.
                    let failure = if self.commit_unconfirmed && keys.iter().any(Option::is_some) {
                        Failure::Unconfirmed(text)
                    } else {
                        Failure::Busy(text)
                    };
                    tracing::error!(error = %failure.text(), "giving up on a batch");
                    replies.clear();
                    replies.extend(queries.iter().map(|_| Err(failure.clone())));
                    return Ok(());
                }
            }
        }
    }
}

impl Backend for Cluster {
    fn queued_since(&mut self, oldest: Instant) {
        self.batch_deadline = Some(oldest + RETRY_FOR);
        // At least a moment, as on a file: a lock taken for an instant is
        // waited out rather than answered 503 at once.
        let busy = self.options.busy_timeout;
        let at_least = Instant::now() + super::file::MIN_LOCK_WAIT.min(busy);
        self.busy_deadline = Some((oldest + busy).max(at_least));
    }

    fn run_batch(&mut self, queries: &[&Query], replies: &mut Vec<Outcome>) {
        // One key per call that is not safe to run twice, made once: every
        // attempt of this batch sends the same, so a call applied by an
        // attempt whose answer was lost answers its first answer again
        // instead of running again.
        let keys: Vec<Option<String>> = queries
            .iter()
            .map(|q| if q.keyed() { request_key() } else { None })
            .collect();
        // For the whole batch: its calls run again alone when the batch's
        // COMMIT fails, and a COMMIT left unanswered before still counts.
        self.commit_unconfirmed = false;
        self.run_keyed(queries, &keys, replies);
        self.migrate_and_run_again(queries, &keys, replies);
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        // Nothing is pending between batches: every transaction has ended.
        Ok(())
    }
}

impl Cluster {
    /// The batch's calls in one transaction or, when its COMMIT fails, each
    /// alone.
    fn run_keyed(
        &mut self,
        queries: &[&Query],
        keys: &[Option<String>],
        replies: &mut Vec<Outcome>,
    ) {
        let Err(commit_error) = self.until_answered(queries, keys, replies) else {
            return;
        };
        tracing::warn!(error = %commit_error, calls = queries.len(), "group commit failed; running each call alone");
        replies.clear();
        let mut alone = Vec::with_capacity(1);
        for (query, key) in queries.iter().zip(keys) {
            let outcome = match self.until_answered(&[query], std::slice::from_ref(key), &mut alone)
            {
                Ok(()) => alone
                    .pop()
                    .unwrap_or_else(|| Err(Failure::Sql("no answer".into()))),
                Err(e) => Err(Failure::Sql(e)),
            };
            replies.push(outcome);
        }
    }

    /// The nodes run the library, the server migrates: a node restarted
    /// with a newer `libonboarding.so` than the replicated schema (a
    /// rolling upgrade under way) answers the calls the newer schema
    /// changes `schema_missing` once it leads. Then the schema is migrated
    /// there, through the leader as at the server's start, and those calls
    /// run again, each alone, with their keys: a call that failed so wrote
    /// nothing. Once a batch, and not again for [`MIGRATION_PAUSE`] after a
    /// failure: a schema that stays short (a table dropped by hand) answers
    /// as it did.
    fn migrate_and_run_again(
        &mut self,
        queries: &[&Query],
        keys: &[Option<String>],
        replies: &mut [Outcome],
    ) {
        if !replies.iter().any(schema_missing)
            || self
                .migration_failed_at
                .is_some_and(|at| at.elapsed() < MIGRATION_PAUSE)
        {
            return;
        }
        // A few attempts, not the batches' RETRY_FOR: `settle` reads the
        // migration's own SQL error as a lost leader too, and the writer
        // thread answers nothing meanwhile.
        let mut attempts = 0;
        let migrated = loop {
            attempts += 1;
            match self.migrate() {
                Ok(version) => break Ok(version),
                Err(Retry::Again(e) | Retry::Busy(e)) if attempts < MIGRATION_ATTEMPTS => {
                    tracing::debug!(error = %e, "migrating again");
                    std::thread::sleep(RETRY_PAUSE);
                }
                Err(Retry::Again(e) | Retry::Busy(e) | Retry::CommitFailed(e)) => break Err(e),
            }
        };
        match migrated {
            Ok(version) => tracing::warn!(
                schema_version = version,
                "a call found the schema short of the leader's library: migrated"
            ),
            Err(e) => {
                self.migration_failed_at = Some(Instant::now());
                tracing::error!(error = %e, "a call found the schema short of the leader's library, and migrating failed");
                return;
            }
        }
        let mut alone = Vec::with_capacity(1);
        for (i, (query, key)) in queries.iter().zip(keys).enumerate() {
            if schema_missing(&replies[i]) {
                self.run_keyed(&[query], std::slice::from_ref(key), &mut alone);
                if let Some(outcome) = alone.pop() {
                    replies[i] = outcome;
                }
            }
        }
    }
}

/// A node's answer that it is not the leader: it appended nothing.
fn not_leader(e: &Error) -> bool {
    matches!(e, Error::Server { code, message }
        if *code == (10 | (40 << 8)) || message.trim() == "not leader")
}

/// Whether a call failed for want of the schema its library needs.
fn schema_missing(outcome: &Outcome) -> bool {
    matches!(outcome, Err(Failure::Sql(text))
        if onboarding::ErrorKind::parse_message(text)
            .is_some_and(|(_, kind, _)| kind == onboarding::ErrorKind::SchemaMissing))
}

/// Why a transaction gave no answers.
enum TxError {
    /// Before COMMIT was sent: the transaction did not happen.
    Wire(Error),
    /// SQLite rolled the whole transaction back after a failing call (a
    /// full database, no memory): the calls before it are gone.
    RolledBack,
    /// COMMIT itself failed: its outcome may be unknown.
    Commit(Error),
}

impl From<Error> for TxError {
    fn from(e: Error) -> TxError {
        TxError::Wire(e)
    }
}

/// `BEGIN IMMEDIATE`, `body`, `COMMIT`; `ROLLBACK` when `body` fails short
/// of the connection.
fn transaction<T>(
    s: &mut Session,
    body: impl FnOnce(&mut Session) -> Result<T, TxError>,
) -> Result<T, TxError> {
    s.conn.exec(s.db, "BEGIN IMMEDIATE", &[])?;
    match body(s) {
        Ok(value) => {
            s.conn.exec(s.db, "COMMIT", &[]).map_err(TxError::Commit)?;
            Ok(value)
        }
        Err(TxError::Wire(e)) if !e.is_connection() => {
            let _ = s.conn.exec(s.db, "ROLLBACK", &[]);
            Err(TxError::Wire(e))
        }
        Err(other) => Err(other),
    }
}

/// Whether the batch's transaction is still open after a failing call.
/// SQLite ends it on some errors; a call sent after that would run in
/// autocommit, which dqlite 1.11 answers without replicating. A `BEGIN`
/// tells: refused inside a transaction, accepted (then undone) outside.
fn still_in_transaction(s: &mut Session) -> Result<bool, Error> {
    match s.conn.exec(s.db, "BEGIN", &[]) {
        Ok(_) => {
            s.conn.exec(s.db, "ROLLBACK", &[])?;
            Ok(false)
        }
        Err(Error::Server { message, .. }) if message.contains("within a transaction") => Ok(true),
        Err(e) => Err(e),
    }
}

/// `sql` with its parameter `?n` read as `CAST(?n AS TEXT)`.
fn cast_to_text(sql: &str, n: usize) -> String {
    let placeholder = format!("?{n}");
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find(&placeholder) {
        let end = at + placeholder.len();
        out.push_str(&rest[..at]);
        if rest[end..].starts_with(|c: char| c.is_ascii_digit()) {
            // `?1` inside `?12`: another parameter.
            out.push_str(&placeholder);
        } else {
            out.push_str(&format!("CAST({placeholder} AS TEXT)"));
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// One call: its JSON text, or the function's error as the HTTP layer
/// reads it. A busy lock or a broken connection fails the whole attempt.
fn call(s: &mut Session, query: &Query, key: Option<&str>) -> Result<Outcome, Error> {
    let (sql, args) = query.statement(key);
    // The protocol ends a TEXT value at its first NUL byte (and the node
    // would read what follows as the next parameters): a text holding one
    // goes as a BLOB that the statement casts back to TEXT, so that the
    // function reads the same bytes as on the single file, where a raw NUL
    // in a body is invalid JSON and an id holding one names no session.
    let mut sql = Cow::Borrowed(sql);
    let params: Vec<Value> = args
        .into_iter()
        .enumerate()
        .map(|(i, arg)| match arg {
            Arg::Text(Some(text)) if text.contains('\0') => {
                sql = Cow::Owned(cast_to_text(&sql, i + 1));
                Value::Blob(text.as_bytes().to_vec())
            }
            Arg::Text(text) => Value::from(text),
            Arg::Integer(n) => Value::Integer(n),
        })
        .collect();
    match s.conn.query(s.db, &sql, &params).map_err(busy) {
        Ok(rows) => match rows
            .rows
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
        {
            Some(Value::Text(body)) => Ok(Ok(body)),
            other => Ok(Err(Failure::Sql(format!(
                "{sql} answered {other:?}, not text"
            )))),
        },
        Err(e) if e.is_connection() || e.is_busy() => Err(e),
        Err(Error::Server { message, .. }) => Ok(Err(Failure::Sql(message))),
        Err(e) => Err(e),
    }
}

/// At most this many `onboarding_kb_prepare` calls before a completion:
/// one per pasted document (20 at most), and the one that answers none.
const MAX_PREPARES: usize = 32;

/// The savepoint around a completion and the documents prepared for it.
const PREPARED: &str = "onboarding_kb_prepare";

/// A completion, its pasted documents stored first, one call each
/// (`onboarding_kb_prepare`), inside a savepoint that the completion's
/// failure rolls back, so that a failed completion leaves nothing.
///
/// Why: the leader runs each call on the thread that sends its Raft
/// heartbeats. The contract's largest knowledge base (20 documents of
/// 200,000 characters) kept it from answering anything for 0.92-0.94 s in
/// one completion, past the election timeout (525 ms at the nodes'
/// default latency): the others elected a new leader meanwhile (two runs
/// in three), the batch ran again there, and leadership could go round
/// until the batch gave up (503). A document a call keeps the leader's
/// longest pause at 138-160 ms, the heartbeats going out between calls.
/// The completion then finds the documents stored and counts them; its
/// answer and its rows are the same as without.
fn complete(
    s: &mut Session,
    session_id: &str,
    query: &Query,
    key: Option<&str>,
) -> Result<Outcome, Error> {
    if session_id.contains('\0') || !query.payload_is_object() {
        // Names no session, or a payload the completion refuses: it says
        // so at once, with nothing stored ahead to undo.
        return call(s, query, key);
    }
    s.conn.exec(s.db, &format!("SAVEPOINT {PREPARED}"), &[])?;
    let session = [Value::from(Some(session_id))];
    for _ in 0..MAX_PREPARES {
        match s
            .conn
            .query(s.db, "SELECT onboarding_kb_prepare(?1)", &session)
            .map_err(busy)
        {
            Ok(rows) => {
                let answer = rows.rows.first().and_then(|r| r.first());
                let prepared = answer
                    .and_then(Value::as_text)
                    .is_some_and(|text| !text.ends_with(r#""prepared":null}"#));
                if !prepared {
                    break;
                }
            }
            Err(e) if e.is_connection() || e.is_busy() => return Err(e),
            // SQLite ended the whole transaction (a disk I/O error, a full
            // disk): the savepoint is gone with it, and a completion sent
            // now would run outside any transaction, unreplicated. The
            // batch finds out (`still_in_transaction`) and undoes the rest.
            Err(Error::Server { message, .. }) if !still_in_transaction(s)? => {
                return Ok(Err(Failure::Sql(message)));
            }
            // An unknown or closed session: the completion answers why.
            Err(_) => break,
        }
    }
    let outcome = call(s, query, key)?;
    if outcome.is_err() {
        match s.conn.exec(s.db, &format!("ROLLBACK TO {PREPARED}"), &[]) {
            Ok(_) => {}
            Err(e) if e.is_connection() || e.is_busy() => return Err(e),
            // SQLite ended the whole transaction, the savepoint with it:
            // the batch finds out (`still_in_transaction`).
            Err(_) => return Ok(outcome),
        }
    }
    // After a completion that succeeded, the savepoint is there: failing to
    // release it fails the attempt, which runs the batch again (the
    // completion's key makes that safe).
    s.conn.exec(s.db, &format!("RELEASE {PREPARED}"), &[])?;
    Ok(outcome)
}

/// A lock met inside a function comes back as its `internal` error with
/// SQLite's text: busy all the same.
fn busy(e: Error) -> Error {
    match e {
        Error::Server { message, .. } if message.ends_with("database is locked") => {
            Error::Server { code: 5, message }
        }
        e => e,
    }
}

/// A request key: 128 random bits from the OS, as hex.
fn request_key() -> Option<String> {
    let mut bytes = [0u8; 16];
    if let Err(e) = onboarding::SystemEnv.fill_random(&mut bytes) {
        // Without randomness the key could repeat: better no key (a retried
        // create may then make a second session) than another client's.
        tracing::error!(error = %e, "no request key; this call is not idempotent");
        return None;
    }
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::{cast_to_text, not_leader, Addresses};
    use crate::db::query::{missing_forms_sql, Query};
    use dqlite_wire::Error;

    /// A node that answers it is not the leader appended nothing: a COMMIT
    /// it refused leaves no outcome unknown. A leadership lost while the
    /// COMMIT waited, or a broken connection, does.
    #[test]
    fn only_a_node_that_was_not_the_leader_refused_the_commit_for_sure() {
        let server = |code: u64, message: &str| Error::Server {
            code,
            message: message.to_string(),
        };
        for refused in [
            server(10 | (40 << 8), "disk I/O error"),
            server(10, "not leader"),
        ] {
            assert!(refused.is_connection() && not_leader(&refused), "{refused}");
        }
        for unknown in [
            server(10 | (41 << 8), "disk I/O error"),
            server(10, "leadership lost"),
            Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        ] {
            assert!(
                unknown.is_connection() && !not_leader(&unknown),
                "{unknown}"
            );
        }
    }

    /// A node's address given as a host name is the one it advertises;
    /// each address is looked up once.
    #[test]
    fn one_node_under_two_spellings_is_one_node() {
        let mut addresses = Addresses::default();
        assert!(addresses.same_node("127.0.0.1:9001", "127.0.0.1:9001"));
        assert!(addresses.same_node("localhost:9001", "127.0.0.1:9001"));
        assert!(!addresses.same_node("localhost:9001", "127.0.0.1:9002"));
        assert!(!addresses.same_node("127.0.0.1:9001", "127.0.0.2:9001"));
        assert!(!addresses.same_node("node.invalid:9001", "127.0.0.1:9001"));
        let mut looked_up: Vec<&String> = addresses.resolved.keys().collect();
        looked_up.sort();
        assert_eq!(
            looked_up,
            [
                "127.0.0.1:9001",
                "127.0.0.1:9002",
                "127.0.0.2:9001",
                "localhost:9001",
                "node.invalid:9001"
            ]
        );
    }

    #[test]
    fn the_keyed_forms_checked_at_start_are_the_ones_called() {
        let queries = [
            Query::Create {
                payload: None,
                ip_address: String::new(),
                user_agent: String::new(),
                client_key: None,
            },
            Query::Step {
                session_id: String::new(),
                step: "business",
                payload: None,
                client_key: None,
            },
            Query::Complete {
                session_id: String::new(),
                payload: None,
                client_key: None,
            },
            Query::PhoneSend {
                session_id: String::new(),
                payload: None,
                ip_address: String::new(),
                client_key: None,
            },
            Query::PhoneVerify {
                session_id: String::new(),
                payload: None,
                client_key: None,
            },
        ];
        let called: Vec<(String, u32)> = queries
            .iter()
            .filter(|q| q.keyed())
            .map(|q| {
                let (sql, args) = q.statement(Some("0123456789abcdef"));
                let name = sql["SELECT ".len()..sql.find('(').unwrap()].to_string();
                (name, args.len() as u32)
            })
            .collect();
        let listed: Vec<(String, u32)> = Query::KEYED_FORMS
            .iter()
            .map(|(name, args)| (name.to_string(), *args))
            .collect();
        assert_eq!(called, listed);
    }

    #[test]
    fn an_engine_without_the_keyed_forms_is_named_at_start() {
        let bare = rusqlite::Connection::open_in_memory().unwrap();
        let missing: Option<String> = bare
            .query_row(&missing_forms_sql(), [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            missing.as_deref(),
            Some(
                "onboarding_create/4, onboarding_step/4, onboarding_complete/3, \
                 onboarding_phone_send/4, onboarding_phone_verify/3, onboarding_kb_prepare/1, \
                 onboarding_kb_recut/0, onboarding_create_kept/2, onboarding_step_kept/4"
            )
        );
        // onboarding_step/4 alone missing: an extension of the same schema
        // from before steps were keyed.
        let old = rusqlite::Connection::open_in_memory().unwrap();
        onboarding::register(&old).unwrap();
        old.remove_function("onboarding_step", 4).unwrap();
        let missing: Option<String> = old
            .query_row(&missing_forms_sql(), [], |r| r.get(0))
            .unwrap();
        assert_eq!(missing.as_deref(), Some("onboarding_step/4"));
        let current = rusqlite::Connection::open_in_memory().unwrap();
        onboarding::register(&current).unwrap();
        let missing: Option<String> = current
            .query_row(&missing_forms_sql(), [], |r| r.get(0))
            .unwrap();
        assert_eq!(missing, None);
    }

    #[test]
    fn a_parameter_is_cast_where_it_stands_and_nowhere_else() {
        assert_eq!(
            cast_to_text("SELECT onboarding_step(?1, ?2, ?3)", 3),
            "SELECT onboarding_step(?1, ?2, CAST(?3 AS TEXT))"
        );
        assert_eq!(
            cast_to_text("SELECT f(?1, ?12, ?1)", 1),
            "SELECT f(CAST(?1 AS TEXT), ?12, CAST(?1 AS TEXT))"
        );
        assert_eq!(cast_to_text("SELECT f(?2)", 1), "SELECT f(?2)");
    }
}
