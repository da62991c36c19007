//! The single-file backend (the default): one connection to the WAL
//! database, group commit with a re-run-alone fallback, the checkpointer,
//! and the clean close.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::config::DbConfig;
use rusqlite::Connection;

use super::health::LastWrite;
use super::open::{open, Database, Options};
use super::query::{answer, error_text, Answer, Backend, Failure, Outcome, Query};
use super::syncer::{Durability, LogFailure, Syncer};
use crate::config::Synchronous;

/// The writer's connection to the file and what lives and dies with it.
pub(super) struct File {
    db: Database,
    /// Under `--synchronous full`: what answers a batch once it is on disk.
    syncer: Option<Syncer>,
    /// The batches begun and synced, shared with the syncer and the reader.
    durability: Durability,
    /// How long a call waits for another process's lock (`--busy-timeout-ms`),
    /// counted from when it was queued.
    busy_timeout: Duration,
    /// The last write's outcome, which the health check reads.
    pub(super) last_write: Arc<LastWrite>,
}

/// The shortest wait for a lock a batch gets, however long its oldest call
/// has been queued: a lock taken for an instant (a `sqlite3` shell's
/// write) is waited out rather than refused at once.
pub(super) const MIN_LOCK_WAIT: Duration = Duration::from_millis(50);

impl File {
    /// Opens, configures and migrates the database. `log_failure` is set
    /// when a sync of the log fails, `durability` follows the batches to
    /// disk (both shared with the reader).
    pub(super) fn open(
        options: &Options,
        log_failure: LogFailure,
        durability: Durability,
    ) -> Result<File, String> {
        let db = open(options, log_failure)?;
        let syncer = match options.synchronous {
            Synchronous::Normal => None,
            Synchronous::Full => {
                // The syncer makes each commit durable before its answers
                // leave (see syncer.rs): the commit itself need not wait.
                db.conn
                    .execute_batch("PRAGMA synchronous = NORMAL")
                    .map_err(|e| format!("cannot configure {}: {e}", options.path.display()))?;
                Some(Syncer::start(
                    &options.path,
                    Arc::clone(&db.log_failure),
                    durability.clone(),
                )?)
            }
        };
        Ok(File {
            db,
            syncer,
            durability,
            busy_timeout: options.busy_timeout,
            last_write: Arc::default(),
        })
    }
}

impl Backend for File {
    /// A call waits for another process's lock the busy timeout from when
    /// it was queued, not from when its batch begins: calls queued behind a
    /// batch waiting out a lock would otherwise wait their own timeout on
    /// top of its (a create answered 503 after 9.4 s with a 5 s timeout,
    /// behind the crawler's poll for a job).
    fn queued_since(&mut self, oldest: Instant) {
        let left = self
            .busy_timeout
            .saturating_sub(oldest.elapsed())
            .max(MIN_LOCK_WAIT.min(self.busy_timeout));
        if let Err(e) = self.db.conn.busy_timeout(left) {
            tracing::warn!(error = %error_text(&e), "cannot set the busy timeout");
        }
    }

    fn run_batch(&mut self, queries: &[&Query], replies: &mut Vec<Outcome>) {
        if let Some(failure) = self.db.log_failure.get() {
            replies.clear();
            replies.extend(queries.iter().map(|_| Err(Failure::Sql(failure.clone()))));
            return;
        }
        // Before anything is written: a read that sees this batch's commit
        // counts it (see `Durability`). The reads themselves go to the
        // reader (`reader.rs`).
        self.durability.begin_batch();
        run_batch(&self.db, queries, replies);
        self.last_write.record(replies);
    }

    fn after_batch(&mut self) {
        if self.db.log_failure.get().is_some() {
            return;
        }
        if let Some(checkpointer) = &mut self.db.checkpointer {
            checkpointer.after_batch(&self.db.conn);
        }
    }

    fn deliver(&mut self, answers: Vec<Answer>) {
        match &self.syncer {
            Some(syncer) => syncer.deliver(answers),
            None => answer(answers),
        }
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        // Every answer still waiting for its sync leaves first.
        if let Some(syncer) = self.syncer {
            syncer.stop();
        }
        shut(self.db)
    }
}

/// How a batch ran: together in one transaction, or (after the reason)
/// each call alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    Together,
    /// A call failed after changing rows, under host rollback.
    AloneAfterUndo,
    /// SQLite rolled the transaction back itself (I/O error, full disk).
    AloneAfterLoss,
    /// The COMMIT failed.
    AloneAfterCommitFailed,
}

/// Runs `jobs` in one transaction and fills `replies` with one answer per
/// job, every one of them true of what was committed.
///
/// With the linked functions the library skips its per-call savepoint here
/// (host rollback, see the library's `savepoint.rs`): a call that fails
/// without changing a row leaves nothing to undo, and one that fails after
/// changing rows is marked by the library; then the whole transaction is
/// rolled back and each call runs again alone, in its savepoint. Only a
/// constraint the validation could not foresee does that: a wrong phone
/// code keeps its attempt on purpose and is not marked.
fn run_batch(db: &Database, jobs: &[&Query], replies: &mut Vec<Outcome>) -> Ran {
    let conn = &db.conn;
    replies.clear();
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        let failure = Failure::from(&e);
        tracing::error!(error = %failure.text(), "cannot begin a transaction");
        replies.extend(jobs.iter().map(|_| Err(failure.clone())));
        return Ran::Together;
    }
    let rollback = HostRollback::engage(db.statements.as_ref());
    let mut ran = Ran::Together;
    for job in jobs {
        let outcome = job.run(conn);
        // Some errors (I/O, full disk) make SQLite roll back the whole
        // transaction: the calls before this one are gone.
        if conn.is_autocommit() {
            ran = Ran::AloneAfterLoss;
            break;
        }
        if rollback.take_undo_needed() {
            ran = Ran::AloneAfterUndo;
            break;
        }
        replies.push(outcome);
    }
    drop(rollback);
    match ran {
        Ran::Together => match exec(conn, "COMMIT") {
            Ok(_) => return Ran::Together,
            Err(e) => {
                tracing::warn!(
                    error = %error_text(&e),
                    calls = jobs.len(),
                    "group commit failed; running each call alone"
                );
                ran = Ran::AloneAfterCommitFailed;
            }
        },
        Ran::AloneAfterUndo => tracing::info!(
            calls = jobs.len(),
            "a call failed after writing; running each call alone"
        ),
        _ => tracing::warn!(
            calls = jobs.len(),
            "transaction rolled back by SQLite; running each call alone"
        ),
    }
    if !conn.is_autocommit() {
        if let Err(e) = exec(conn, "ROLLBACK") {
            // The connection stays inside the transaction: every later
            // BEGIN fails, and each call says so.
            tracing::error!(error = %error_text(&e), "cannot roll back a batch");
        }
    }
    replies.clear();
    each_alone(jobs, replies, |job| run_alone(conn, job));
    ran
}

/// Runs each job with `run` and pushes its answer. Once one finds the
/// database locked past what is left of the batch's busy timeout, the rest
/// are answered busy without trying: another process took the lock when
/// the batch gave it back, and each would wait out the timeout in turn
/// (a batch of 256 calls, 256 times).
fn each_alone(jobs: &[&Query], replies: &mut Vec<Outcome>, mut run: impl FnMut(&Query) -> Outcome) {
    let mut locked: Option<Failure> = None;
    for job in jobs {
        let outcome = match &locked {
            Some(failure) => Err(failure.clone()),
            None => run(job),
        };
        if let Err(failure @ Failure::Busy(_)) = &outcome {
            locked.get_or_insert_with(|| failure.clone());
        }
        replies.push(outcome);
    }
}

/// The library's host-rollback mode for the span of one batch: on while it
/// lives (linked functions only; a loaded extension keeps its savepoints).
struct HostRollback<'a>(Option<&'a onboarding::CachedStatements>);

impl<'a> HostRollback<'a> {
    fn engage(statements: Option<&'a onboarding::CachedStatements>) -> HostRollback<'a> {
        if let Some(statements) = statements {
            statements.set_host_rollback(true);
        }
        HostRollback(statements)
    }

    /// Whether the last call failed after changing rows.
    fn take_undo_needed(&self) -> bool {
        self.0
            .is_some_and(onboarding::CachedStatements::take_undo_needed)
    }
}

impl Drop for HostRollback<'_> {
    fn drop(&mut self) {
        if let Some(statements) = self.0 {
            statements.set_host_rollback(false);
        }
    }
}

/// One call in its own transaction: its answer is exactly its fate.
///
/// A failing call is committed too: its savepoint has undone its writes,
/// except those a library function keeps on purpose before failing (a wrong
/// phone code's attempt, which must count, as it does in a group commit).
fn run_alone(conn: &Connection, query: &Query) -> Outcome {
    exec(conn, "BEGIN IMMEDIATE").map_err(|e| Failure::from(&e))?;
    let result = query.run(conn);
    // After a failure SQLite may already have rolled back (a full disk, an
    // I/O error): then there is nothing left to commit or undo.
    if conn.is_autocommit() {
        return result;
    }
    match exec(conn, "COMMIT") {
        Ok(_) => result,
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = exec(conn, "ROLLBACK");
            }
            Err(Failure::from(&e))
        }
    }
}

/// Runs a statement without result rows through the statement cache: the
/// transaction statements run once per batch, no need to parse them again.
pub(super) fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

/// Stops the checkpointer, folds the WAL back into the database file and
/// closes the connection. With an external checkpointer (Litestream), the
/// WAL is left as it is: that process holds a read transaction on it, so a
/// truncating checkpoint would wait out the busy timeout and fail, and the
/// frames it has not yet copied must stay in the log anyway.
fn shut(db: Database) -> Result<(), String> {
    let Database {
        conn,
        statements,
        checkpointer,
        log_failure,
    } = db;
    // SQLite refuses to close a connection with unfinalized statements.
    drop(statements);
    if let Some(failure) = log_failure.get() {
        // Leave the WAL as the disk holds it, for SQLite's recovery at the
        // next start: a checkpoint now could copy back lost pages.
        if let Some(checkpointer) = checkpointer {
            checkpointer.stop();
        }
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(|e| format!("close failed: {}", error_text(&e)))?;
        conn.close()
            .map_err(|(_, e)| format!("close failed: {}", error_text(&e)))?;
        return Err(failure.clone());
    }
    let checkpoint = match checkpointer {
        Some(checkpointer) => {
            checkpointer.stop();
            conn.query_row("PRAGMA main.wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| format!("checkpoint failed: {}", error_text(&e)))
        }
        None => Ok(0),
    };
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
    use crate::config::WalCheckpoint;

    fn create_jobs(n: usize) -> Vec<Query> {
        (0..n)
            .map(|_| Query::Create {
                payload: Some("{}".to_string()),
                ip_address: "192.0.2.1".to_string(),
                user_agent: String::new(),
                client_key: None,
            })
            .collect()
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Calls run again alone after a batch was undone: the first that finds
    /// the database locked answers busy, and so do the rest, untried; a
    /// call's own error stops nothing.
    #[test]
    fn calls_alone_after_one_found_the_database_locked_are_answered_busy_untried() {
        let jobs = create_jobs(4);
        let jobs: Vec<&Query> = jobs.iter().collect();
        let mut tried = 0;
        let mut replies = Vec::new();
        each_alone(&jobs, &mut replies, |_| {
            tried += 1;
            match tried {
                1 => Ok("{}".to_string()),
                2 => Err(Failure::Sql("onboarding_create: internal: x".to_string())),
                _ => Err(Failure::Busy("database is locked".to_string())),
            }
        });
        assert_eq!(tried, 3);
        assert_eq!(
            replies,
            vec![
                Ok("{}".to_string()),
                Err(Failure::Sql("onboarding_create: internal: x".to_string())),
                Err(Failure::Busy("database is locked".to_string())),
                Err(Failure::Busy("database is locked".to_string())),
            ]
        );
    }

    /// Group commit's promise: whatever happens mid-batch, a call answered
    /// with success is stored and a call answered with an error is not.
    #[test]
    fn a_full_database_mid_batch_leaves_every_answer_true() {
        let dir = tempfile::tempdir().unwrap();
        let options = options_at(dir.path().join("full.db"));
        let db = open(&options, LogFailure::default()).unwrap();
        let pages = count(&db.conn, "PRAGMA page_count");
        // Room for a few sessions only: later calls of the batch hit
        // SQLITE_FULL, which may roll back the whole transaction.
        db.conn
            .execute_batch(&format!("PRAGMA max_page_count = {}", pages + 4))
            .unwrap();
        let jobs = create_jobs(200);
        let mut replies = Vec::new();
        run_batch(&db, &jobs.iter().collect::<Vec<_>>(), &mut replies);

        assert_eq!(replies.len(), 200);
        let answered: Vec<&String> = replies.iter().filter_map(|r| r.as_ref().ok()).collect();
        let failed: Vec<&Failure> = replies.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(!answered.is_empty() && !failed.is_empty(), "{replies:?}");
        // Each failed alone, in a transaction of its own that SQLite rolled
        // back with it, as the library says.
        assert!(
            failed.iter().all(|e| e.text()
                == "onboarding_create: internal: database or disk is full; SQLite rolled back \
                    the caller's transaction with it (its statements before this call are undone)"),
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

    /// A session with a code sent to its phone; answers the session id and
    /// a code that is not the one sent.
    fn session_with_a_code(conn: &Connection) -> (String, String) {
        let created = run_alone(conn, &create_jobs(1)[0]).unwrap();
        let session: serde_json::Value = serde_json::from_str(&created).unwrap();
        let session_id = session["session_id"].as_str().unwrap().to_string();
        let business = Query::Step {
            session_id: session_id.clone(),
            step: "business",
            payload: Some(
                r#"{"company_name":"A","industry":"B","phone":"0612345678","email":"a@b.fr"}"#
                    .to_string(),
            ),
            client_key: None,
        };
        run_alone(conn, &business).unwrap();
        let send = Query::PhoneSend {
            session_id: session_id.clone(),
            payload: None,
            ip_address: "192.0.2.1".to_string(),
            client_key: None,
        };
        run_alone(conn, &send).unwrap();
        let text: String = conn
            .query_row("SELECT text FROM outbox_messages", [], |r| r.get(0))
            .unwrap();
        let code: String = text.chars().filter(char::is_ascii_digit).take(6).collect();
        let wrong = if code == "000000" { "000001" } else { "000000" };
        (session_id, wrong.to_string())
    }

    fn verify(session_id: &str, code: &str) -> Query {
        Query::PhoneVerify {
            session_id: session_id.to_string(),
            payload: Some(format!(r#"{{"code":"{code}"}}"#)),
            client_key: None,
        }
    }

    const WRONG_CODE: &str = "onboarding_phone_verify: invalid_field: code is wrong; 4 tries left";

    /// The fallback after a failed group commit keeps what a failing call
    /// keeps on purpose: a wrong phone code still counts.
    #[test]
    fn a_wrong_phone_code_run_alone_still_counts() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(
            &options_at(dir.path().join("alone.db")),
            LogFailure::default(),
        )
        .unwrap();
        let (session_id, wrong) = session_with_a_code(&db.conn);
        assert_eq!(
            run_alone(&db.conn, &verify(&session_id, &wrong)),
            Err(Failure::Sql(WRONG_CODE.to_string()))
        );
        assert_eq!(
            count(&db.conn, "SELECT attempts FROM phone_verifications"),
            1
        );
        assert!(db.conn.is_autocommit());
        shut(db).unwrap();
    }

    /// In a batch the library skips its savepoints (host rollback). A wrong
    /// code keeps its attempt on purpose: the batch commits together, the
    /// attempt counts once and the other calls stand.
    #[test]
    fn a_wrong_phone_code_in_a_batch_counts_without_a_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(
            &options_at(dir.path().join("rerun.db")),
            LogFailure::default(),
        )
        .unwrap();
        let (session_id, wrong) = session_with_a_code(&db.conn);
        let sessions = count(&db.conn, "SELECT count(*) FROM onboarding_sessions");
        let mut jobs = create_jobs(2);
        jobs.insert(1, verify(&session_id, &wrong));
        let mut replies = Vec::new();
        let ran = run_batch(&db, &jobs.iter().collect::<Vec<_>>(), &mut replies);
        assert_eq!(ran, Ran::Together);
        assert_eq!(replies.len(), 3);
        assert_eq!(replies[1], Err(Failure::Sql(WRONG_CODE.to_string())));
        assert!(replies[0].is_ok() && replies[2].is_ok(), "{replies:?}");
        assert_eq!(
            count(&db.conn, "SELECT attempts FROM phone_verifications"),
            1
        );
        assert_eq!(
            count(&db.conn, "SELECT count(*) FROM onboarding_sessions"),
            sessions + 2
        );
        assert!(db.conn.is_autocommit());
        shut(db).unwrap();
    }

    /// Without its savepoint, a call failing on its last write leaves the
    /// others in the transaction: the batch is rolled back and each call
    /// runs alone, so none of the failed call's writes is committed.
    #[test]
    fn a_sync_failing_on_its_last_write_leaves_nothing_in_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(
            &options_at(dir.path().join("late.db")),
            LogFailure::default(),
        )
        .unwrap();
        let (session_id, _) = session_with_a_code(&db.conn);
        let vapi = Query::Step {
            session_id: session_id.clone(),
            step: "vapi",
            payload: Some(
                r#"{"agent_type":"real_estate_reception","voice":"female","assistant_name":"Sara"}"#
                    .to_string(),
            ),
            client_key: None,
        };
        run_alone(&db.conn, &vapi).unwrap();
        let kb = Query::Step {
            session_id: session_id.clone(),
            step: "kb",
            payload: Some(r#"{"method":"website","crawl_url":"https://mon-site.fr"}"#.to_string()),
            client_key: None,
        };
        run_alone(&db.conn, &kb).unwrap();
        db.conn
            .execute_batch(
                "CREATE TEMP TRIGGER refuse_completion BEFORE UPDATE OF status ON onboarding_sessions
                 BEGIN SELECT RAISE(ABORT, 'refused by test'); END;",
            )
            .unwrap();
        let mut jobs = create_jobs(2);
        jobs.insert(
            1,
            Query::Complete {
                session_id,
                payload: None,
                client_key: None,
            },
        );
        let mut replies = Vec::new();
        let ran = run_batch(&db, &jobs.iter().collect::<Vec<_>>(), &mut replies);
        assert_eq!(ran, Ran::AloneAfterUndo);
        assert_eq!(
            replies[1],
            Err(Failure::Sql(
                "onboarding_complete: internal: refused by test".to_string()
            ))
        );
        assert!(replies[0].is_ok() && replies[2].is_ok(), "{replies:?}");
        for table in ["omni_agent_configs", "omni_phone_mappings", "kb_crawl_jobs"] {
            assert_eq!(
                count(&db.conn, &format!("SELECT count(*) FROM {table}")),
                0,
                "{table}"
            );
        }
        assert_eq!(
            count(
                &db.conn,
                "SELECT count(*) FROM tenants WHERE onboarding_completed = 1"
            ),
            0
        );
        assert_eq!(
            count(&db.conn, "SELECT count(*) FROM onboarding_sessions"),
            3
        );
        shut(db).unwrap();
    }

    #[test]
    fn one_failing_call_does_not_undo_the_others_of_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let options = options_at(dir.path().join("batch.db"));
        let db = open(&options, LogFailure::default()).unwrap();
        let mut jobs = create_jobs(3);
        jobs.insert(
            1,
            Query::Step {
                session_id: "onb_missing".to_string(),
                step: "business",
                payload: None,
                client_key: None,
            },
        );
        let mut replies = Vec::new();
        let ran = run_batch(&db, &jobs.iter().collect::<Vec<_>>(), &mut replies);
        // It failed before writing: nothing to undo, no rerun.
        assert_eq!(ran, Ran::Together);
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

    /// Runs `jobs` as one batch and hands their answers to `file.deliver`;
    /// returns where each answer will arrive.
    fn run_and_deliver(
        file: &mut File,
        jobs: &[Query],
    ) -> Vec<tokio::sync::oneshot::Receiver<Outcome>> {
        let mut replies = Vec::new();
        file.run_batch(&jobs.iter().collect::<Vec<_>>(), &mut replies);
        let (answers, receivers): (Vec<Answer>, Vec<_>) = replies
            .drain(..)
            .map(|outcome| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                ((tx, outcome), rx)
            })
            .unzip();
        file.deliver(answers);
        receivers
    }

    fn full_options(dir: &tempfile::TempDir) -> Options {
        Options {
            synchronous: Synchronous::Full,
            ..options_at(dir.path().join("full.db"))
        }
    }

    /// The file under `--synchronous full`, with its syncer.
    fn open_full(dir: &tempfile::TempDir) -> Box<File> {
        Box::new(
            File::open(
                &full_options(dir),
                LogFailure::default(),
                Durability::default(),
            )
            .unwrap(),
        )
    }

    /// `--synchronous full`: the connection commits without syncing, the
    /// syncer answers; closing answers what is still queued first.
    #[test]
    fn under_full_the_syncer_answers_and_close_drains_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = open_full(&dir);
        assert_eq!(count(&file.db.conn, "PRAGMA synchronous"), 1);
        assert!(file.syncer.is_some());
        let receivers = run_and_deliver(&mut file, &create_jobs(2));
        assert_eq!(file.close(), Ok(()));
        for rx in receivers {
            let body = rx.blocking_recv().unwrap().unwrap();
            assert!(
                body.starts_with(r#"{"success":true,"session_id":"onb_"#),
                "{body}"
            );
        }
    }

    /// After a failed sync: the batch's answers fail, later calls are
    /// refused without running, and the close leaves the WAL unchecked
    /// for SQLite's recovery and reports the failure.
    #[test]
    fn a_failed_log_sync_stops_the_writer_and_leaves_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = open_full(&dir);
        file.syncer.take().unwrap().stop();
        file.syncer = Some(
            Syncer::start_with(
                Box::new(|| Err(std::io::Error::from_raw_os_error(5))),
                Arc::clone(&file.db.log_failure),
                Durability::default(),
            )
            .unwrap(),
        );
        let text = "cannot sync the database log to disk (Input/output error (os error 5)): \
                    the write may be lost, and the server refuses every call until it restarts";
        let failed = Err(Failure::Sql(text.to_string()));
        for rx in run_and_deliver(&mut file, &create_jobs(2)) {
            assert_eq!(rx.blocking_recv().unwrap(), failed);
        }
        let sessions = count(&file.db.conn, "SELECT count(*) FROM onboarding_sessions");
        for rx in run_and_deliver(&mut file, &create_jobs(3)) {
            assert_eq!(rx.blocking_recv().unwrap(), failed);
        }
        assert_eq!(
            count(&file.db.conn, "SELECT count(*) FROM onboarding_sessions"),
            sessions,
            "a refused call ran"
        );
        let wal = dir.path().join("full.db-wal");
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);
        assert_eq!(file.close(), Err(text.to_string()));
        assert!(
            std::fs::metadata(&wal).unwrap().len() > 0,
            "the WAL was checkpointed"
        );
    }

    /// The tests' database at `path`: pinned clock, internal checkpoints.
    fn options_at(path: std::path::PathBuf) -> Options {
        Options {
            path,
            synchronous: Synchronous::Normal,
            wal_checkpoint: WalCheckpoint::Internal,
            extension: None,
            env: onboarding::PinnedEnv::new(1_795_514_400_000, 7),
            busy_timeout: std::time::Duration::from_secs(5),
            kb: onboarding::kb::Settings::default(),
        }
    }

    fn options_for(dir: &tempfile::TempDir, wal_checkpoint: WalCheckpoint) -> Options {
        Options {
            wal_checkpoint,
            busy_timeout: std::time::Duration::from_millis(200),
            ..options_at(dir.path().join("wal.db"))
        }
    }

    /// A reader holding a read transaction open, as Litestream always does.
    fn hold_a_read_transaction(path: &std::path::Path) -> Connection {
        let reader = Connection::open(path).unwrap();
        reader
            .execute_batch("BEGIN; SELECT count(*) FROM onboarding_sessions;")
            .unwrap();
        reader
    }

    /// The conflict `--wal-checkpoint external` exists for: the truncating
    /// checkpoint at close fails against a reader, and the server exits 1.
    #[test]
    fn an_internal_checkpoint_at_close_is_blocked_by_a_reader() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(
            &options_for(&dir, WalCheckpoint::Internal),
            LogFailure::default(),
        )
        .unwrap();
        let mut replies = Vec::new();
        run_batch(
            &db,
            &create_jobs(3).iter().collect::<Vec<_>>(),
            &mut replies,
        );
        let _reader = hold_a_read_transaction(&dir.path().join("wal.db"));
        assert_eq!(
            shut(db),
            Err("checkpoint was blocked by another connection".to_string())
        );
    }

    #[test]
    fn an_external_checkpoint_leaves_the_wal_to_its_reader_and_closes_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db");
        let wal = dir.path().join("wal.db-wal");
        let db = open(
            &options_for(&dir, WalCheckpoint::External),
            LogFailure::default(),
        )
        .unwrap();
        assert!(db.checkpointer.is_none());
        let mut replies = Vec::new();
        run_batch(
            &db,
            &create_jobs(3).iter().collect::<Vec<_>>(),
            &mut replies,
        );
        let reader = hold_a_read_transaction(&path);
        let before = std::fs::read(&wal).unwrap();
        assert_eq!(shut(db), Ok(()));
        // Not one frame copied back nor the log restarted: byte for byte.
        assert_eq!(std::fs::read(&wal).unwrap(), before);
        drop(reader);
    }

    /// A new file under `--wal-checkpoint external` and the default
    /// `--synchronous full`: the log syncer opens the -wal file, which no
    /// checkpointer connection has opened (the start failed with "cannot
    /// open the database log …-wal: No such file or directory").
    #[test]
    fn a_new_file_opens_with_an_external_checkpoint_and_the_log_syncer() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            synchronous: Synchronous::Full,
            ..options_for(&dir, WalCheckpoint::External)
        };
        let mut file = File::open(&options, LogFailure::default(), Durability::default())
            .expect("a new file opens");
        assert!(file.syncer.is_some());
        for rx in run_and_deliver(&mut file, &create_jobs(2)) {
            assert!(rx.blocking_recv().unwrap().is_ok());
        }
        assert_eq!(
            count(&file.db.conn, "SELECT count(*) FROM onboarding_sessions"),
            2
        );
        assert_eq!(Box::new(file).close(), Ok(()));
    }

    /// SQLite checkpoints when the last connection to a database closes:
    /// with an external checkpointer, not even then.
    #[test]
    fn an_external_checkpoint_leaves_the_wal_when_the_server_closes_last() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal.db-wal");
        let db = open(
            &options_for(&dir, WalCheckpoint::External),
            LogFailure::default(),
        )
        .unwrap();
        let mut replies = Vec::new();
        run_batch(
            &db,
            &create_jobs(3).iter().collect::<Vec<_>>(),
            &mut replies,
        );
        let before = std::fs::read(&wal).unwrap();
        assert_eq!(shut(db), Ok(()));
        assert_eq!(std::fs::read(&wal).unwrap(), before);

        let db = open(
            &options_for(&dir, WalCheckpoint::Internal),
            LogFailure::default(),
        )
        .unwrap();
        assert_eq!(
            count(&db.conn, "SELECT count(*) FROM onboarding_sessions"),
            3
        );
        assert_eq!(shut(db), Ok(()));
        assert_eq!(std::fs::metadata(&wal).map(|m| m.len()).ok(), None);
    }
}
