//! The reader (single file only): a connection and a thread of their own
//! for the routes that only read (`Query::reads_only`), so that a read never
//! waits behind a write. A write may wait out the busy timeout for another
//! process's lock (a `sqlite3` shell, the outbox sender's claim while a
//! backup runs); a read in WAL mode needs no lock, and on the writer's
//! queue it waited all the same, up to the busy timeout each.
//!
//! It sees every commit the writer has answered: an answer leaves after its
//! commit (and, under `--synchronous full`, after its sync), and each batch
//! of reads is a new read transaction.

use rusqlite::config::DbConfig;
use rusqlite::Connection;

use super::file::read_batch;
use super::open::{connect, functions, Options};
use super::query::{Backend, Failure, Outcome, Query};
use super::syncer::LogFailure;

/// The reader's connection. Fields drop in order: the library's statements
/// before the connection they were prepared on.
pub(super) struct Reader {
    statements: Option<onboarding::CachedStatements>,
    conn: Connection,
    /// Set when a sync of the log failed: the writer then refuses every
    /// call, and the reader does too (what it would read may be lost).
    log_failure: LogFailure,
}

impl Reader {
    /// Opens a second connection to the database the writer opened and
    /// migrated, with the same functions; it cannot write.
    pub(super) fn open(options: &Options, log_failure: LogFailure) -> Result<Reader, String> {
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
