//! The one writer connection: a dedicated OS thread that owns the database,
//! runs every SQL call of every route, and group-commits what is queued.
//!
//! Why one thread: SQLite allows one writer at a time. With a single
//! connection fed through a queue, requests never meet SQLITE_BUSY, and the
//! async threads never block on SQLite. Read-only routes use the same queue:
//! `sqlite3_stmt_readonly` reports `SELECT onboarding_*()` as read-only even
//! for the writers, so a reader pool could not tell them apart safely, and a
//! catalogue or `onboarding_get` call costs a few microseconds here anyway.
//!
//! Why group commit: a commit (an fsync with `synchronous=FULL`) costs far
//! more than a call. The thread takes every call waiting in the queue (up to
//! [`MAX_BATCH`]), runs them inside one `BEGIN IMMEDIATE … COMMIT`, and only
//! then answers them all. Each library function opens a SAVEPOINT of its own,
//! so a failing call rolls back only itself. If the COMMIT fails (or SQLite
//! rolls the whole transaction back after some I/O error), every call of the
//! batch runs again alone, so that no answer claims a write that was lost.
//!
//! Beside it, a checkpointer thread with its own connection copies the WAL
//! back into the database file, so that no commit waits for a checkpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use rusqlite::{Connection, LoadExtensionGuard};
use tokio::sync::{mpsc, oneshot};

use crate::config::Synchronous;

/// The most calls one transaction takes: bounds the latency that the last
/// call of a long queue waits for its answer.
pub const MAX_BATCH: usize = 256;

/// Room in the queue; past it, request tasks wait (asynchronously) for room.
const QUEUE_CAPACITY: usize = 4096;

/// How long the checkpointer lets commits gather before copying them back
/// into the database file: one checkpoint (and its fsync) per pause rather
/// than one per commit.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(100);

/// A WAL file larger than this is cut back to it once SQLite restarts the log.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// WAL frames (pages) past which the writer finishes a checkpoint itself so
/// that the log restarts from its beginning (see [`Checkpointer`]).
const RESTART_AT_FRAMES: i64 = 4096;

/// One SQL call: each route is exactly one of these.
#[derive(Debug)]
pub enum Call {
    /// `SELECT onboarding_create(?1)`; the payload is a JSON object text.
    Create { payload: String },
    /// `SELECT onboarding_step(?1, ?2, ?3)`; `None` payload binds NULL.
    Step {
        session_id: String,
        step: &'static str,
        payload: Option<String>,
    },
    /// `SELECT onboarding_complete(?1, ?2)`.
    Complete {
        session_id: String,
        payload: Option<String>,
    },
    /// `SELECT onboarding_get(?1)`.
    Get { session_id: String },
    /// `SELECT onboarding_agent_types()`.
    AgentTypes,
    /// `SELECT onboarding_voices()`.
    Voices,
    /// The database answers a query: schema version and engine version.
    Health,
}

/// The SQL of `/healthz`: reads a table, so a broken file shows here.
const HEALTH_SQL: &str = "SELECT json_object('success', json('true'), 'status', 'ok', \
     'schema_version', (SELECT max(version) FROM onboarding_schema_migrations), \
     'engine_version', onboarding_version())";

impl Call {
    /// Runs the call's one statement (prepared once, then cached) and returns
    /// its JSON text, or the SQL error text.
    fn run(&self, conn: &Connection) -> Result<String, String> {
        let result = match self {
            Call::Create { payload } => query(conn, "SELECT onboarding_create(?1)", [payload]),
            Call::Step {
                session_id,
                step,
                payload,
            } => query(
                conn,
                "SELECT onboarding_step(?1, ?2, ?3)",
                rusqlite::params![session_id, step, payload],
            ),
            Call::Complete {
                session_id,
                payload,
            } => query(
                conn,
                "SELECT onboarding_complete(?1, ?2)",
                rusqlite::params![session_id, payload],
            ),
            Call::Get { session_id } => query(conn, "SELECT onboarding_get(?1)", [session_id]),
            Call::AgentTypes => query(conn, "SELECT onboarding_agent_types()", []),
            Call::Voices => query(conn, "SELECT onboarding_voices()", []),
            Call::Health => query(conn, HEALTH_SQL, []),
        };
        result.map_err(|e| error_text(&e))
    }
}

fn query<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> rusqlite::Result<String> {
    conn.prepare_cached(sql)?.query_row(params, |r| r.get(0))
}

/// The text of an SQL error as the function raised it: for a function's
/// error, exactly `onboarding_<fn>: <kind>: <detail>`.
fn error_text(err: &rusqlite::Error) -> String {
    match err {
        rusqlite::Error::SqliteFailure(_, Some(message)) => message.clone(),
        other => other.to_string(),
    }
}

/// What the writer answers for one call: the JSON body, or the error text.
pub type Reply = Result<String, String>;

struct Job {
    call: Call,
    reply: oneshot::Sender<Reply>,
}

enum Message {
    Call(Job),
    /// Answer what is queued before, then checkpoint and close the database.
    Close(oneshot::Sender<Result<(), String>>),
}

/// How the writer thread opens its connection.
pub struct Options {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// Load this built extension instead of registering the linked functions.
    pub extension: Option<PathBuf>,
    /// Time and randomness of the linked functions.
    pub env: Arc<dyn onboarding::Env>,
}

/// The handle request tasks hold: cheap to clone, one queue behind.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Message>,
}

impl Writer {
    /// Starts the writer thread: opens, configures and migrates the database,
    /// and returns once it is ready (or why it could not be).
    pub async fn start(options: Options) -> Result<Writer, String> {
        let (queue, inbox) = mpsc::channel(QUEUE_CAPACITY);
        let (ready_tx, ready_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("onboarding-writer".into())
            .spawn(move || match open(&options) {
                Ok(db) => {
                    let _ = ready_tx.send(Ok(()));
                    serve(db, inbox);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| format!("cannot start the database writer thread: {e}"))?;
        ready_rx
            .await
            .map_err(|_| "the database writer thread died while opening".to_string())??;
        Ok(Writer { queue })
    }

    /// Queues `call` and waits for its answer; never blocks the thread.
    pub async fn call(&self, call: Call) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Message::Call(Job { call, reply }))
            .await
            .map_err(|_| "the database writer has stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the database writer stopped before answering".to_string())?
    }

    /// Lets every call queued so far finish, then checkpoints the WAL and
    /// closes the database. Calls queued afterwards fail.
    pub async fn close(&self) -> Result<(), String> {
        let (done, closed) = oneshot::channel();
        self.queue
            .send(Message::Close(done))
            .await
            .map_err(|_| "the database writer had already stopped".to_string())?;
        closed
            .await
            .map_err(|_| "the database writer died while closing".to_string())?
    }
}

/// The writer's connection and what lives and dies with it.
struct Database {
    conn: Connection,
    /// The library's statements kept across calls (linked functions only);
    /// released before the connection closes, as SQLite requires.
    statements: Option<onboarding::CachedStatements>,
    checkpointer: Checkpointer,
}

/// Opens the database as the server needs it; every error names its step.
fn open(options: &Options) -> Result<Database, String> {
    let path = options.path.display();
    let conn = connect(&options.path, options.synchronous)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| format!("cannot switch {path} to WAL mode: {e}"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!(
            "database {path} refused WAL mode (journal_mode is {mode}; use a file on a local disk)"
        ));
    }
    // temp_store: each call's savepoint journals the pages it changes; in
    // memory that costs no write() per page. wal_autocheckpoint: the
    // checkpointer thread copies the WAL back, so commits never wait for it.
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES};"
    ))
    .map_err(|e| format!("cannot configure {path}: {e}"))?;
    let statements = match &options.extension {
        Some(so) => {
            load_extension(&conn, so)?;
            None
        }
        None => Some(
            onboarding::register_cached(&conn, Arc::clone(&options.env))
                .map_err(|e| format!("cannot register the onboarding functions: {e}"))?,
        ),
    };
    conn.query_row("SELECT onboarding_migrate()", [], |r| r.get::<_, i64>(0))
        .map_err(|e| format!("cannot migrate {path}: {}", error_text(&e)))?;
    // Room for the seven route statements, the health check and the
    // transaction statements.
    conn.set_prepared_statement_cache_capacity(16);
    let checkpointer = Checkpointer::start(&options.path, options.synchronous)?;
    if options.extension.is_none() {
        // The phone number metadata loads on first use (about 0.1 s): pay
        // it now rather than in the first business step's answer.
        let _ = onboarding::validate::phone_e164("+33612345678");
    }
    Ok(Database {
        conn,
        statements,
        checkpointer,
    })
}

/// A connection to `path` with the server's busy timeout and durability.
fn connect(path: &Path, synchronous: Synchronous) -> Result<Connection, String> {
    let shown = path.display();
    let conn = Connection::open(path).map_err(|e| format!("cannot open database {shown}: {e}"))?;
    // Only another process (a `sqlite3` shell, a backup) or the checkpointer
    // can hold a lock: wait for it a while rather than fail a whole batch.
    conn.busy_timeout(Duration::from_secs(5))
        .map_err(|e| format!("cannot set the busy timeout on {shown}: {e}"))?;
    conn.execute_batch(&format!("PRAGMA synchronous = {}", synchronous.pragma()))
        .map_err(|e| format!("cannot configure {shown}: {e}"))?;
    Ok(conn)
}

/// Copies committed WAL frames back into the database file on a thread and
/// connection of its own. A checkpoint writes and fsyncs the database file:
/// run by the writer (SQLite's autocheckpoint), it stalled every call queued
/// behind it; here, PASSIVE, it never blocks the writer.
///
/// But under steady load the writer always appends while a checkpoint runs,
/// so the log is never wholly copied at the moment a new transaction starts,
/// which is when SQLite rewinds it: the WAL file would grow without end. So
/// the checkpointer reports the log's size, and past [`RESTART_AT_FRAMES`]
/// the writer copies the little that is left itself, between two batches;
/// its next transaction then rewinds the log.
struct Checkpointer {
    wake: std_mpsc::SyncSender<()>,
    /// Frames in the WAL at the last background checkpoint.
    wal_frames: Arc<AtomicI64>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    fn start(path: &Path, synchronous: Synchronous) -> Result<Checkpointer, String> {
        let conn = connect(path, synchronous)?;
        // One pending wake-up is enough: nudges coalesce.
        let (wake, wakes) = std_mpsc::sync_channel::<()>(1);
        let wal_frames = Arc::new(AtomicI64::new(0));
        let frames = Arc::clone(&wal_frames);
        let thread = std::thread::Builder::new()
            .name("onboarding-checkpoint".into())
            .spawn(move || {
                while wakes.recv().is_ok() {
                    std::thread::sleep(CHECKPOINT_PAUSE);
                    while wakes.try_recv().is_ok() {}
                    // (busy, frames in the log, frames copied)
                    match conn
                        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))
                    {
                        Ok(log) => frames.store(log, Ordering::Relaxed),
                        Err(e) => tracing::warn!(error = %error_text(&e), "checkpoint failed"),
                    }
                }
                if let Err((_, e)) = conn.close() {
                    tracing::warn!(error = %error_text(&e), "checkpointer did not close cleanly");
                }
            })
            .map_err(|e| format!("cannot start the checkpointer thread: {e}"))?;
        Ok(Checkpointer {
            wake,
            wal_frames,
            thread,
        })
    }

    /// Called by the writer between batches: checkpoint soon, and when the
    /// log has grown long, finish a checkpoint on `writer` so that it restarts.
    fn after_batch(&self, writer: &Connection) {
        let _ = self.wake.try_send(());
        if self.wal_frames.load(Ordering::Relaxed) < RESTART_AT_FRAMES {
            return;
        }
        // PASSIVE never waits: if the background checkpoint holds the
        // checkpoint lock right now, try again after the next batch.
        match writer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        }) {
            Ok((0, log, copied)) if log == copied => self.wal_frames.store(0, Ordering::Relaxed),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %error_text(&e), "checkpoint failed"),
        }
    }

    /// Finishes the checkpoint under way, if any, and closes its connection.
    fn stop(self) {
        drop(self.wake);
        if self.thread.join().is_err() {
            tracing::error!("the checkpointer thread panicked");
        }
    }
}

fn load_extension(conn: &Connection, so: &std::path::Path) -> Result<(), String> {
    // SAFETY: loading runs the library's init code in this process; the
    // operator chose the file with --extension, and no other SQL runs on this
    // connection while loading is enabled (the guard disables it on drop).
    let loaded = unsafe {
        LoadExtensionGuard::new(conn).and_then(|_guard| conn.load_extension(so, None::<&str>))
    };
    loaded.map_err(|e| format!("cannot load extension {}: {}", so.display(), error_text(&e)))
}

/// The thread's loop: take a batch, run it, answer it; until closed.
fn serve(db: Database, mut inbox: mpsc::Receiver<Message>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_BATCH);
    let mut close: Option<oneshot::Sender<Result<(), String>>> = None;
    // Calls per transaction is what group commit buys: logged at close.
    let (mut transactions, mut calls) = (0u64, 0u64);
    while close.is_none() {
        let Some(first) = inbox.blocking_recv() else {
            break;
        };
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Call(job) => batch.push(job),
                Message::Close(done) => {
                    close = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = inbox.try_recv().ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        run_batch(&db.conn, &batch, &mut replies);
        transactions += 1;
        calls += batch.len() as u64;
        db.checkpointer.after_batch(&db.conn);
        for (job, reply) in batch.drain(..).zip(replies.drain(..)) {
            // The request may have gone (client disconnected): its write
            // stands, as it would for a client that left after the answer.
            let _ = job.reply.send(reply);
        }
    }
    // Calls still queued behind a Close are dropped with the inbox: their
    // tasks get "stopped before answering".
    drop(inbox);
    let closed = shut(db);
    match &closed {
        Ok(()) => tracing::info!(transactions, calls, "database closed"),
        Err(e) => tracing::error!(error = %e, "database did not close cleanly"),
    }
    if let Some(done) = close {
        let _ = done.send(closed);
    }
}

/// Runs `jobs` in one transaction and fills `replies` with one answer per
/// job, every one of them true of what was committed.
fn run_batch(conn: &Connection, jobs: &[Job], replies: &mut Vec<Reply>) {
    replies.clear();
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let text = error_text(&e);
        tracing::error!(error = %text, "cannot begin a transaction");
        replies.extend(jobs.iter().map(|_| Err(text.clone())));
        return;
    }
    let mut lost = false;
    for job in jobs {
        replies.push(job.call.run(conn));
        // Some errors (I/O, full disk) make SQLite roll back the whole
        // transaction: the calls before this one are gone.
        if conn.is_autocommit() {
            lost = true;
            break;
        }
    }
    if !lost {
        match exec(conn, "COMMIT") {
            Ok(_) => return,
            Err(e) => tracing::warn!(
                error = %error_text(&e),
                calls = jobs.len(),
                "group commit failed; running each call alone"
            ),
        }
    } else {
        tracing::warn!(
            calls = jobs.len(),
            "transaction rolled back by SQLite; running each call alone"
        );
    }
    if !conn.is_autocommit() {
        let _ = exec(conn, "ROLLBACK");
    }
    replies.clear();
    replies.extend(jobs.iter().map(|job| run_alone(conn, &job.call)));
}

/// One call in its own transaction: its answer is exactly its fate.
fn run_alone(conn: &Connection, call: &Call) -> Reply {
    exec(conn, "BEGIN IMMEDIATE").map_err(|e| error_text(&e))?;
    let result = call.run(conn).and_then(|body| {
        exec(conn, "COMMIT")
            .map(|_| body)
            .map_err(|e| error_text(&e))
    });
    // After a failure SQLite may already have rolled back (a full disk, an
    // I/O error): then there is nothing left to undo.
    if result.is_err() && !conn.is_autocommit() {
        let _ = exec(conn, "ROLLBACK");
    }
    result
}

/// Runs a statement without result rows through the statement cache: the
/// transaction statements run once per batch, no need to parse them again.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

/// Stops the checkpointer, folds the WAL back into the database file and
/// closes the connection.
fn shut(db: Database) -> Result<(), String> {
    let Database {
        conn,
        statements,
        checkpointer,
    } = db;
    checkpointer.stop();
    // SQLite refuses to close a connection with unfinalized statements.
    drop(statements);
    let checkpoint = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| format!("checkpoint failed: {}", error_text(&e)));
    conn.close()
        .map_err(|(_, e)| format!("close failed: {}", error_text(&e)))?;
    match checkpoint? {
        0 => Ok(()),
        _ => Err("checkpoint was blocked by another connection".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create_jobs(n: usize) -> Vec<Job> {
        (0..n)
            .map(|_| Job {
                call: Call::Create {
                    payload: "{}".to_string(),
                },
                reply: oneshot::channel().0,
            })
            .collect()
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Group commit's promise: whatever happens mid-batch, a call answered
    /// with success is stored and a call answered with an error is not.
    #[test]
    fn a_full_database_mid_batch_leaves_every_answer_true() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            path: dir.path().join("full.db"),
            synchronous: Synchronous::Normal,
            extension: None,
            env: onboarding::PinnedEnv::new(1_795_514_400_000, 7),
        };
        let db = open(&options).unwrap();
        let pages = count(&db.conn, "PRAGMA page_count");
        // Room for a few sessions only: later calls of the batch hit
        // SQLITE_FULL, which may roll back the whole transaction.
        db.conn
            .execute_batch(&format!("PRAGMA max_page_count = {}", pages + 4))
            .unwrap();
        let jobs = create_jobs(200);
        let mut replies = Vec::new();
        run_batch(&db.conn, &jobs, &mut replies);

        assert_eq!(replies.len(), 200);
        let answered: Vec<&String> = replies.iter().filter_map(|r| r.as_ref().ok()).collect();
        let failed: Vec<&String> = replies.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(!answered.is_empty() && !failed.is_empty(), "{replies:?}");
        assert!(
            failed
                .iter()
                .all(|e| e.as_str() == "onboarding_create: internal: database or disk is full"),
            "{failed:?}"
        );
        assert_eq!(
            count(&db.conn, "SELECT count(*) FROM onboarding_sessions"),
            answered.len() as i64
        );
        for body in answered {
            let id = &body[body.find("onb_").unwrap()..][..36];
            let stored = count(
                &db.conn,
                &format!("SELECT count(*) FROM onboarding_sessions WHERE id = '{id}'"),
            );
            assert_eq!(stored, 1, "{id} answered but not stored");
        }
        assert!(db.conn.is_autocommit(), "the batch left a transaction open");
        shut(db).unwrap();
    }

    #[test]
    fn one_failing_call_does_not_undo_the_others_of_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            path: dir.path().join("batch.db"),
            synchronous: Synchronous::Normal,
            extension: None,
            env: onboarding::PinnedEnv::new(1_795_514_400_000, 7),
        };
        let db = open(&options).unwrap();
        let mut jobs = create_jobs(3);
        jobs.insert(
            1,
            Job {
                call: Call::Step {
                    session_id: "onb_missing".to_string(),
                    step: "business",
                    payload: None,
                },
                reply: oneshot::channel().0,
            },
        );
        let mut replies = Vec::new();
        run_batch(&db.conn, &jobs, &mut replies);
        assert_eq!(
            replies[1],
            Err("onboarding_step: not_found: session 'onb_missing' does not exist".to_string())
        );
        assert!(replies[0].is_ok() && replies[2].is_ok() && replies[3].is_ok());
        assert_eq!(
            count(&db.conn, "SELECT count(*) FROM onboarding_sessions"),
            3
        );
        shut(db).unwrap();
    }
}
