//! The reader (single file only): a connection and a thread of their own
//! for the routes that only read (`Query::reads_only`), so that a read never
//! waits behind a write. A write may wait out the busy timeout for another
//! process's lock (a `sqlite3` shell, the outbox sender's claim while a
//! backup runs); a read in WAL mode needs no lock, and on the writer's
//! queue it waited all the same, up to the busy timeout each.
//!
//! It sees every commit the writer has answered: an answer leaves after its
//! commit (and, under `--synchronous full`, after its sync), and each batch
//! of reads is a new read transaction. It shows nothing the writer has not
//! made durable: under `--synchronous full` a commit is visible before the
//! syncer has synced it, so a read that may have seen one waits for the
//! next sync (see `syncer::Durability`), as the writer's answers do.

use rusqlite::config::DbConfig;
use rusqlite::Connection;

use super::file::exec;
use super::open::{connect, functions, Options};
use super::query::{answer, error_text, Answer, Backend, Failure, Outcome, Query};
use super::syncer::{Durability, LogFailure};

/// The reader's connection. Fields drop in order: the library's statements
/// before the connection they were prepared on.
pub(super) struct Reader {
    statements: Option<onboarding::CachedStatements>,
    conn: Connection,
    /// Set when a sync of the log failed: the writer then refuses every
    /// call, and the reader does too (what it would read may be lost).
    log_failure: LogFailure,
    /// Under `--synchronous full`: the batches begun and synced.
    durability: Option<Durability>,
    /// The batches begun when the last batch of reads ended.
    began: u64,
}

impl Reader {
    /// Opens a second connection to the database the writer opened and
    /// migrated, with the same functions; it cannot write.
    pub(super) fn open(
        options: &Options,
        log_failure: LogFailure,
        durability: Option<Durability>,
    ) -> Result<Reader, String> {
        let conn = connect(
            &options.path,
            None,
            options.synchronous,
            options.busy_timeout,
        )?;
        // Never a writer, and never the one that checkpoints (at close, as
        // the last connection, SQLite would: under Litestream that is
        // Litestream's to do).
        conn.execute_batch("PRAGMA query_only = ON")
            .and_then(|()| {
                conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
                    .map(|_| ())
            })
            .map_err(|e| format!("cannot configure {}: {e}", options.path.display()))?;
        let statements = functions(&conn, options)?;
        Ok(Reader {
            statements,
            conn,
            log_failure,
            durability,
            began: 0,
        })
    }
}

impl Backend for Reader {
    fn run_batch(&mut self, queries: &[&Query], replies: &mut Vec<Outcome>) {
        replies.clear();
        match self.log_failure.get() {
            Some(failure) => {
                replies.extend(queries.iter().map(|_| Err(Failure::Sql(failure.clone()))))
            }
            None => replies.extend(read_batch(&self.conn, queries)),
        }
        if let Some(durability) = &self.durability {
            self.began = durability.began();
        }
    }

    fn deliver(&mut self, answers: Vec<Answer>) {
        match &self.durability {
            Some(durability) => durability.deliver_reads(answers, self.began, &self.log_failure),
            None => answer(answers),
        }
    }

    fn close(self: Box<Self>) -> Result<(), String> {
        let Reader {
            statements, conn, ..
        } = *self;
        drop(statements);
        conn.close()
            .map_err(|(_, e)| format!("cannot close the reader's connection: {e}"))
    }
}

/// Runs read-only calls in one read transaction (a deferred `BEGIN` that
/// only ever reads takes no write lock), one answer per call in order.
fn read_batch(conn: &Connection, reads: &[&Query]) -> Vec<Outcome> {
    if let Err(e) = exec(conn, "BEGIN") {
        let failure = Failure::from(&e);
        return reads.iter().map(|_| Err(failure.clone())).collect();
    }
    let answers = reads.iter().map(|q| q.run(conn)).collect();
    if !conn.is_autocommit() {
        // Nothing was written: ending the read transaction cannot fail on
        // the data, and an error here only leaves it to the next BEGIN.
        if let Err(e) = exec(conn, "COMMIT") {
            tracing::error!(error = %error_text(&e), "cannot end a read transaction");
            if let Err(e) = exec(conn, "ROLLBACK") {
                tracing::error!(error = %error_text(&e), "cannot roll back a read transaction");
            }
        }
    }
    answers
}
