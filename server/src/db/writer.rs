//! The writer thread: takes every call waiting in its queue, runs them in one
//! transaction (group commit), answers them, and closes the database.

use tokio::sync::{mpsc, oneshot};

use rusqlite::Connection;

use super::open::{open, Database, Options};
use super::query::{error_text, Failure, Outcome, Query};

/// The most calls one transaction takes: bounds the latency that the last
/// call of a long queue waits for its answer.
pub const MAX_BATCH: usize = 256;

/// Room in the queue; past it, request tasks wait (asynchronously) for room.
const QUEUE_CAPACITY: usize = 4096;

struct Job {
    query: Query,
    reply: oneshot::Sender<Outcome>,
}

enum Message {
    Run(Job),
    /// Answer what is queued before, then checkpoint and close the database.
    Close(oneshot::Sender<Result<(), String>>),
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

    /// Queues `query` and waits for its answer; never blocks the thread.
    pub async fn run(&self, query: Query) -> Outcome {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Message::Run(Job { query, reply }))
            .await
            .map_err(|_| Failure::Sql("the database writer has stopped".to_string()))?;
        answer
            .await
            .map_err(|_| Failure::Sql("the database writer stopped before answering".to_string()))?
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

/// The thread's loop: take a batch, run it, answer it; until closed.
fn serve(db: Database, mut inbox: mpsc::Receiver<Message>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut replies: Vec<Outcome> = Vec::with_capacity(MAX_BATCH);
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
                Message::Run(job) => batch.push(job),
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
fn run_batch(conn: &Connection, jobs: &[Job], replies: &mut Vec<Outcome>) {
    replies.clear();
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let failure = Failure::from(&e);
        tracing::error!(error = %failure.text(), "cannot begin a transaction");
        replies.extend(jobs.iter().map(|_| Err(failure.clone())));
        return;
    }
    let mut lost = false;
    for job in jobs {
        replies.push(job.query.run(conn));
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
    replies.extend(jobs.iter().map(|job| run_alone(conn, &job.query)));
}

/// One call in its own transaction: its answer is exactly its fate.
fn run_alone(conn: &Connection, query: &Query) -> Outcome {
    exec(conn, "BEGIN IMMEDIATE").map_err(|e| Failure::from(&e))?;
    let result = query.run(conn).and_then(|body| {
        exec(conn, "COMMIT")
            .map(|_| body)
            .map_err(|e| Failure::from(&e))
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
    use crate::config::Synchronous;

    fn create_jobs(n: usize) -> Vec<Job> {
        (0..n)
            .map(|_| Job {
                query: Query::Create {
                    payload: Some("{}".to_string()),
                    ip_address: "192.0.2.1".to_string(),
                    user_agent: String::new(),
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
            busy_timeout: std::time::Duration::from_secs(5),
            kb: onboarding::kb::Settings::default(),
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
        let failed: Vec<&Failure> = replies.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(!answered.is_empty() && !failed.is_empty(), "{replies:?}");
        assert!(
            failed
                .iter()
                .all(|e| e.text() == "onboarding_create: internal: database or disk is full"),
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
            busy_timeout: std::time::Duration::from_secs(5),
            kb: onboarding::kb::Settings::default(),
        };
        let db = open(&options).unwrap();
        let mut jobs = create_jobs(3);
        jobs.insert(
            1,
            Job {
                query: Query::Step {
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
            Err(Failure::Sql(
                "onboarding_step: not_found: session 'onb_missing' does not exist".to_string()
            ))
        );
        assert!(replies[0].is_ok() && replies[2].is_ok() && replies[3].is_ok());
        assert_eq!(
            count(&db.conn, "SELECT count(*) FROM onboarding_sessions"),
            3
        );
        shut(db).unwrap();
    }
}
