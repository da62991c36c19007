//! One savepoint per call: every writer's changes land together or not at all.
//!
//! Inside a caller's transaction a savepoint, so that the call joins it and
//! a failing call undoes only itself. In autocommit mode a writer opens
//! `BEGIN IMMEDIATE` instead, which waits out the busy timeout for the write
//! lock (see [`in_savepoint`]); a reader, a savepoint (a read transaction).
//!
//! The one exception is a host that undoes failed calls itself
//! ([`crate::CachedStatements::set_host_rollback`]): the HTTP server runs a
//! batch of calls in one transaction and, when a call fails after writing
//! anything, rolls the whole transaction back and runs each call again
//! alone, in its savepoint. Inside such a host's transaction the savepoint
//! is skipped: it costs a quarter of a call (each page a call touches is
//! copied into the statement journal first), and a failed call never leaves
//! its writes behind anyway.

use std::cell::Cell;

use rusqlite::{ffi, Connection, ErrorCode};

use crate::error::{Error, ErrorKind, Result};
use crate::sql;

thread_local! {
    /// Whether the call running on this thread belongs to a host that
    /// undoes failed calls (set by the registration for each call).
    static HOST_ROLLBACK: Cell<bool> = const { Cell::new(false) };
    /// Set when, under host rollback, a body failed after changing rows.
    static UNDO_NEEDED: Cell<bool> = const { Cell::new(false) };
}

/// Runs one call (`f`) with the host-rollback setting of its registration;
/// also answers whether the call failed after changing rows, which its host
/// must then undo.
pub(crate) fn with_host_rollback<T>(on: bool, f: impl FnOnce() -> T) -> (T, bool) {
    struct Restore(bool, bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            HOST_ROLLBACK.with(|flag| flag.set(self.0));
            UNDO_NEEDED.with(|flag| flag.set(self.1));
        }
    }
    let _restore = Restore(
        HOST_ROLLBACK.with(|flag| flag.replace(on)),
        UNDO_NEEDED.with(|flag| flag.replace(false)),
    );
    let value = f();
    (value, UNDO_NEEDED.with(Cell::get))
}

/// Runs one call (`f`) as [`with_host_rollback`] does, a panic included:
/// a bug is an internal error like any other, in the contract's form (the
/// binding's own text for it names no function). Unwinding skips the mark
/// a failed call gets, after the body's writes under host rollback; so a
/// call that panics there is marked for its host to undo, whatever it
/// wrote (its savepoint's guard, where it had one, already undid it).
pub(crate) fn run_call<T>(host_rollback: bool, f: impl FnOnce() -> Result<T>) -> (Result<T>, bool) {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        with_host_rollback(host_rollback, f)
    })) {
        Ok(done) => done,
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("no message");
            (
                Err(Error::internal(format!("the call panicked: {text}"))),
                host_rollback,
            )
        }
    }
}

/// Runs a writer's `body` atomically: committed when `body` returns `Ok`,
/// rolled back when it returns `Err` or panics.
///
/// Inside a caller's transaction, `body` runs in `SAVEPOINT onboarding_call`
/// and joins the transaction. In autocommit mode it runs in `BEGIN
/// IMMEDIATE … COMMIT` instead: a deferred transaction reads first and must
/// then turn its read lock into the write lock, which SQLite refuses at once
/// (`database is locked`) while another connection writes, without waiting
/// out the busy timeout; taking the write lock first waits for it.
///
/// Under a host that undoes failed calls, and inside its transaction,
/// `body` runs as is; if it fails after changing rows, the call is marked
/// for the host to undo. A body that keeps its writes and answers an error
/// on purpose (`Ok(Err(..))`, a wrong phone code) is not marked: its writes
/// stand, as its savepoint would have kept them.
pub fn in_savepoint<T>(conn: &Connection, body: impl FnOnce() -> Result<T>) -> Result<T> {
    if in_undoing_hosts_transaction(conn) {
        // Rows changed, by any statement that completed (an aborted one
        // adds nothing: SQLite undid it).
        let changes = conn.total_changes();
        let result = body();
        if result.is_err() && conn.total_changes() != changes {
            UNDO_NEEDED.with(|flag| flag.set(true));
        }
        return result;
    }
    if !conn.is_autocommit() {
        if main_txn_state(conn) == ffi::SQLITE_TXN_READ {
            // The caller's transaction has read: the call's first write
            // must turn that read into a write, which SQLite refuses at
            // once while another connection holds the write lock or has
            // written since. Not probed before the call (a call that
            // writes nothing, a replay or a refusal, answers as it would
            // alone); a write refused so says why and the way out.
            return savepoint(conn, true, || {
                body().map_err(|e| match e.kind == ErrorKind::Internal && busy_now(conn) {
                    true => cannot_upgrade_a_read(&e),
                    false => e,
                })
            });
        }
        take_write_lock_first(conn)?;
        return savepoint(conn, true, body);
    }
    if writing_statement_in_progress(conn) {
        return Err(refused_inside_a_write(
            "cannot start a transaction - SQL statements in progress",
        ));
    }
    // `BEGIN IMMEDIATE` takes the write lock of every attached database
    // too, and would wait for files the call never writes: with any
    // attached, the deferred savepoint, as inside a caller's transaction,
    // with the main database's write lock taken before the call reads.
    if has_attached_databases(conn)? {
        return savepoint(conn, true, || {
            if main_txn_state(conn) == ffi::SQLITE_TXN_READ {
                // The calling statement reads the main database: SQLite
                // will not wait to upgrade that read, so the probe fails
                // at once while another connection writes; it says why.
                if let Err(e) = sql::execute(conn, WRITE_LOCK_PROBE, []) {
                    if busy(&e) {
                        return Err(cannot_wait_while_reading(&e));
                    }
                }
            } else {
                take_write_lock_first(conn)?;
            }
            body()
        });
    }
    // The calling statement reads a table (`SELECT f(id) FROM t`): the
    // connection holds a read transaction already, and SQLite does not wait
    // for a lock it would have to upgrade to.
    let reading = reading_already(conn);
    let begin = || {
        sql::execute(conn, "BEGIN IMMEDIATE", [])
            .map(drop)
            .map_err(|e| match busy(&e) {
                true if reading => cannot_wait_while_reading(&e),
                true => locked_past_timeout(&e),
                false => Error::from(e),
            })
    };
    guarded(conn, Opened::Transaction, true, begin, body)
}

/// Inside a caller's deferred transaction that has not touched the main
/// database yet (`BEGIN`; better-sqlite3's `db.transaction()`, Go's
/// `BeginTx`), a write that changes nothing takes the write lock before the
/// call reads, waiting out the busy timeout as `BEGIN IMMEDIATE` would:
/// once the call had read, SQLite would refuse at once to wait for the lock
/// it must then upgrade to. A transaction that has read already is left as
/// it is (see [`in_savepoint`]), and so is one whose probe fails for
/// another reason (no schema, a read-only file): the call's own statements
/// then say what is wrong.
fn take_write_lock_first(conn: &Connection) -> Result<()> {
    if main_txn_state(conn) != ffi::SQLITE_TXN_NONE {
        return Ok(());
    }
    match sql::execute(conn, WRITE_LOCK_PROBE, []) {
        Ok(_) => Ok(()),
        Err(e) if busy(&e) => Err(locked_past_timeout(&e)),
        // An I/O error, a full disk or an interrupt rolls the caller's whole
        // transaction back: the call must not go on and commit alone.
        Err(e) if conn.is_autocommit() => Err(Error::from(e)),
        Err(_) => Ok(()),
    }
}

/// A write that changes nothing: it takes the main database's write lock.
const WRITE_LOCK_PROBE: &str = "UPDATE main.tenants SET id = id WHERE 0";

/// The main database's transaction state on `conn`: none, read or write.
fn main_txn_state(conn: &Connection) -> std::ffi::c_int {
    // SAFETY: the handle is this open connection's, used on its own thread
    // inside one of its calls; the schema name is a NUL-terminated literal.
    unsafe { ffi::sqlite3_txn_state(conn.handle(), c"main".as_ptr()) }
}

/// The write lock is another connection's, and the statement calling the
/// function holds a read that SQLite will not wait to upgrade.
fn cannot_wait_while_reading(e: impl std::fmt::Display) -> Error {
    Error::internal(format!(
        "{e}: another connection holds the write lock, and SQLite cannot wait for \
         it while the statement calling this function reads a table (call the \
         writers from a plain SELECT without FROM)"
    ))
}

/// Whether the last call on `conn` failed busy: a write refused the lock
/// (`SQLITE_LOCKED` in a shared cache). The primary code: a host that left
/// extended codes off (Python's `sqlite3`) gets `SQLITE_BUSY` for
/// `SQLITE_BUSY_SNAPSHOT` too.
fn busy_now(conn: &Connection) -> bool {
    // SAFETY: the handle is this open connection's, used on its own thread
    // inside one of its calls; only its last error code is read.
    let code = unsafe { ffi::sqlite3_errcode(conn.handle()) } & 0xff;
    code == ffi::SQLITE_BUSY || code == ffi::SQLITE_LOCKED
}

/// The caller's transaction read before this call, and SQLite would not
/// turn that read into a write: another connection holds the write lock,
/// or wrote after the read (waiting cannot help then); which one, a host
/// without extended result codes cannot tell.
fn cannot_upgrade_a_read(e: &Error) -> Error {
    Error::locked(format!(
        "{}: this transaction has read already, and SQLite cannot turn its read into \
         a write while another connection holds the write lock or has written since \
         the read (open the transaction with BEGIN IMMEDIATE, or call the writers \
         before it reads)",
        e.detail
    ))
}

/// The write lock stayed another connection's past the busy timeout; or,
/// in shared-cache mode, a connection of the same cache holds the table,
/// which SQLite does not wait for (`SQLITE_LOCKED`: no timeout ran).
fn locked_past_timeout(e: &rusqlite::Error) -> Error {
    if e.sqlite_error_code() == Some(ErrorCode::DatabaseLocked) {
        return Error::locked(format!(
            "{e}: another connection of this shared cache holds a lock on it, which SQLite \
             does not wait for (the busy timeout applies to other caches only); retry later"
        ));
    }
    Error::locked(format!(
        "{e}: another connection held the write lock past this connection's busy \
         timeout (PRAGMA busy_timeout); retry later"
    ))
}

fn busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Whether databases are attached to `conn` besides `main` and `temp`.
///
/// A plain PRAGMA, not the `pragma_database_list` table: SQLite keeps a
/// pointer to `main`'s schema in that eponymous table, which
/// `sqlite3_deserialize` frees (SQLite's bug, 3.53 still has it, with no
/// extension loaded too): a writer called after a host deserialized into
/// its connection read freed memory there and crashed the host.
fn has_attached_databases(conn: &Connection) -> Result<bool> {
    Ok(sql::with(conn, "PRAGMA database_list", |s| {
        let mut rows = s.query([])?;
        while let Some(row) = rows.next()? {
            let name: String = row.get(1)?;
            if name != "main" && name != "temp" {
                return Ok(true);
            }
        }
        Ok(false)
    })?)
}

/// Whether `conn` already holds a transaction on some database (a read
/// one, in autocommit mode: the calling statement's).
fn reading_already(conn: &Connection) -> bool {
    // SAFETY: the handle is this open connection's, used on its own thread
    // inside one of its calls; a null schema asks about every database.
    unsafe { ffi::sqlite3_txn_state(conn.handle(), std::ptr::null()) != ffi::SQLITE_TXN_NONE }
}

/// Runs a reader's `body` in `SAVEPOINT onboarding_call`: in autocommit mode
/// a read transaction, so that every table is read from one snapshot, and
/// one that never takes the write lock (a read-only database serves it, a
/// read replica's included).
pub fn in_read_savepoint<T>(conn: &Connection, body: impl FnOnce() -> Result<T>) -> Result<T> {
    // Inside the transaction of a host that undoes failed calls, every
    // read already sees one snapshot; a reader writes nothing to undo. So
    // inside a statement that writes (`INSERT INTO t SELECT onboarding_get(id)
    // …`), where SQLite refuses a savepoint: that statement holds the write
    // transaction, and no other connection commits until it ends.
    if in_undoing_hosts_transaction(conn) || writing_statement_in_progress(conn) {
        return body();
    }
    savepoint(conn, false, body)
}

/// Whether this call runs inside the open transaction of a host that undoes
/// failed calls itself: then no savepoint of its own.
fn in_undoing_hosts_transaction(conn: &Connection) -> bool {
    HOST_ROLLBACK.with(Cell::get) && !conn.is_autocommit()
}

/// `writer`: the call may write (a reader's savepoint needs no probe, see
/// [`guarded`]).
fn savepoint<T>(conn: &Connection, writer: bool, body: impl FnOnce() -> Result<T>) -> Result<T> {
    // In autocommit mode the savepoint is the transaction, and its RELEASE
    // the commit.
    let opened = match conn.is_autocommit() {
        true => Opened::OutermostSavepoint,
        false => Opened::Savepoint,
    };
    let open = || {
        sql::execute(conn, "SAVEPOINT onboarding_call", [])
            .map(drop)
            .map_err(|e| match e.to_string() {
                text if text.contains("statements in progress") => refused_inside_a_write(&text),
                _ => Error::from(e),
            })
    };
    guarded(conn, opened, writer, open, body)
}

/// SQLite refuses a savepoint, and could not commit a transaction, while the
/// calling statement writes (INSERT … SELECT f(), CREATE TABLE … AS).
fn refused_inside_a_write(text: &str) -> Error {
    Error::internal(format!(
        "{text} (call the onboarding functions from a plain top-level SELECT)"
    ))
}

/// Whether a statement of `conn` that writes is running: the one calling the
/// function, when it is an INSERT … SELECT or the like.
fn writing_statement_in_progress(conn: &Connection) -> bool {
    // SAFETY: the handle is this open connection's, used on its own thread
    // inside one of its calls; the statements are only inspected.
    unsafe {
        let db = conn.handle();
        let mut stmt = ffi::sqlite3_next_stmt(db, std::ptr::null_mut());
        while !stmt.is_null() {
            if ffi::sqlite3_stmt_busy(stmt) != 0 && ffi::sqlite3_stmt_readonly(stmt) == 0 {
                return true;
            }
            stmt = ffi::sqlite3_next_stmt(db, stmt);
        }
    }
    false
}

/// What a call opened for its writes.
#[derive(Clone, Copy)]
enum Opened {
    /// `SAVEPOINT onboarding_call`, inside a caller's transaction.
    Savepoint,
    /// `SAVEPOINT onboarding_call` in autocommit mode, where it opened the
    /// transaction (a reader's; a writer's with databases attached).
    OutermostSavepoint,
    /// `BEGIN IMMEDIATE`, in autocommit mode.
    Transaction,
}

/// Opens what `opened` names (`open`), runs `body` in it, and ends it with
/// RELEASE or COMMIT on `Ok`, rolls it back otherwise.
///
/// For a `writer`, the write that ends the transaction after an interrupt
/// (see [`Guard`]) is prepared before anything is opened: past an
/// interrupt, SQLite prepares nothing either. Where it cannot be (an
/// interrupt already, no `tenants` table before the first migration), the
/// call goes on without it: `open` then fails on the interrupt, or the
/// body's own statements say what is missing. A reader goes without it:
/// preparing it for every read would cost a host without a statement
/// cache a sixth of the read, and an interrupted reader has nothing to undo
/// (its error says when its read transaction is left open).
fn guarded<T>(
    conn: &Connection,
    opened: Opened,
    writer: bool,
    open: impl FnOnce() -> Result<()>,
    body: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let mut call = Some((open, body));
    if writer {
        let prepared = sql::with(conn, WRITE_LOCK_PROBE, |probe| {
            let (open, body) = call.take().expect("`with` runs its closure once");
            Ok(open().and_then(|()| run_guarded(conn, opened, Some(probe), body)))
        });
        if let Ok(outcome) = prepared {
            return outcome;
        }
    }
    // A reader, or the probe not prepared (its closure did not run).
    let (open, body) = call.take().expect("the call not run yet");
    open()?;
    run_guarded(conn, opened, None, body)
}

fn run_guarded<T>(
    conn: &Connection,
    opened: Opened,
    probe: Option<&mut rusqlite::Statement<'_>>,
    body: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let outcome = (|| -> Result<T> {
        let mut guard = Guard {
            conn,
            opened,
            changes_at_open: conn.total_changes(),
            probe,
            armed: true,
        };
        let value = body()?;
        match opened {
            Opened::Savepoint | Opened::OutermostSavepoint => {
                sql::execute(conn, "RELEASE onboarding_call", [])?
            }
            Opened::Transaction => sql::execute(conn, "COMMIT", [])?,
        };
        guard.armed = false;
        Ok(value)
    })();
    // The guard has run: a transaction of the call's own still open is one
    // SQLite refused to end (no probe, or its statement expired by a
    // schema change). The client must end it; the error says how.
    outcome.map_err(|e| match opened {
        Opened::Transaction | Opened::OutermostSavepoint if !conn.is_autocommit() => Error {
            detail: format!(
                "{}; the transaction this call opened is still open{}: run ROLLBACK",
                e.detail,
                match e.code == Some(ffi::SQLITE_INTERRUPT) {
                    true => " (SQLite refuses every statement while the interrupted one runs)",
                    false => "",
                }
            ),
            ..e
        },
        // Inside a caller's transaction, a failure SQLite answers by rolling
        // back the whole transaction (a full disk, an I/O error, an
        // interrupted write): the caller's own statements went with the
        // call's, and its next ones run in autocommit, which its COMMIT
        // ("no transaction is active") would be the first to tell it. Once
        // (a call inside another's adds nothing more).
        Opened::Savepoint if conn.is_autocommit() && !e.detail.ends_with(CALLERS_ROLLED_BACK) => {
            Error {
                detail: format!("{}{CALLERS_ROLLED_BACK}", e.detail),
                ..e
            }
        }
        _ => e,
    })
}

/// What ends the error of a call inside a caller's transaction that SQLite
/// rolled back whole.
pub(crate) const CALLERS_ROLLED_BACK: &str =
    "; SQLite rolled back the caller's transaction with it (its statements before this call are \
     undone)";

/// Rolls back what was opened unless disarmed: runs on `?` returns, on a
/// failed RELEASE or COMMIT, and while unwinding from a panic.
struct Guard<'c, 's, 'p> {
    conn: &'c Connection,
    opened: Opened,
    /// The connection's rows changed when the call's savepoint opened.
    changes_at_open: u64,
    /// [`WRITE_LOCK_PROBE`], prepared: what ends the transaction after an
    /// interrupt.
    probe: Option<&'s mut rusqlite::Statement<'p>>,
    armed: bool,
}

impl Drop for Guard<'_, '_, '_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Past an interrupt (`sqlite3_interrupt`), every statement fails
        // while the one calling the function runs, this rollback included:
        // the connection stayed inside the call's transaction, holding the
        // write lock, its half-made writes committed by the next call or
        // by the caller's COMMIT. A write then ends it: an interrupted
        // write is one SQLite answers by rolling back the whole
        // transaction. Inside a caller's transaction, only when the call
        // changed rows (the caller's goes too, as SQLite does for any
        // interrupted INSERT, UPDATE or DELETE inside one); a call that
        // changed none leaves an empty savepoint, which the caller's
        // COMMIT or ROLLBACK ends with the rest.
        let undone = match self.opened {
            Opened::Savepoint => sql::execute(self.conn, "ROLLBACK TO onboarding_call", [])
                .and_then(|_| sql::execute(self.conn, "RELEASE onboarding_call", [])),
            // A COMMIT, or the RELEASE that commits, that failed may have
            // rolled back already. Otherwise the whole transaction is the
            // call's: `ROLLBACK TO` then `RELEASE` would try to commit it
            // again, and when that fails too (the lock still another
            // connection's) the connection would stay inside it, every
            // later call joining a transaction that never commits.
            Opened::Transaction | Opened::OutermostSavepoint if self.conn.is_autocommit() => Ok(0),
            Opened::Transaction | Opened::OutermostSavepoint => {
                sql::execute(self.conn, "ROLLBACK", [])
            }
        };
        // Any other failure: nothing useful can be done; the caller
        // already gets the original error, and SQLite rolls back on close.
        if let (Err(e), Some(probe)) = (undone, self.probe.as_mut()) {
            let changed = match self.opened {
                Opened::Savepoint => self.conn.total_changes() != self.changes_at_open,
                Opened::Transaction | Opened::OutermostSavepoint => true,
            };
            if e.sqlite_error_code() == Some(ErrorCode::OperationInterrupted)
                && !self.conn.is_autocommit()
                && changed
            {
                let _ = probe.execute([]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(conn: &Connection) -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    /// A bug that panics mid-call: an internal error, and under host
    /// rollback the host is told to undo what the call wrote (the batch's
    /// other calls then run again alone); alone, its savepoint undid it.
    #[test]
    fn a_call_that_panics_after_writing_is_an_internal_error_its_host_undoes() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x); BEGIN").unwrap();
        let panicking = || -> Result<()> {
            in_savepoint(&conn, || {
                sql::execute(&conn, "INSERT INTO t VALUES (1)", [])?;
                panic!("a bug")
            })
        };
        let (result, undo) = run_call(true, panicking);
        assert_eq!(
            (result.unwrap_err().to_string(), undo),
            ("internal: the call panicked: a bug".to_string(), true)
        );
        // Its write is there, for the host to undo.
        assert_eq!(rows(&conn), 1);
        conn.execute_batch("ROLLBACK; BEGIN").unwrap();
        let (result, undo) = run_call(false, panicking);
        assert_eq!(
            (result.unwrap_err().to_string(), undo),
            ("internal: the call panicked: a bug".to_string(), false)
        );
        assert_eq!(rows(&conn), 0);
        conn.execute_batch("COMMIT").unwrap();
        // A call that fails without panicking is marked as before.
        conn.execute_batch("BEGIN").unwrap();
        let (result, undo) = run_call(true, || -> Result<()> {
            in_savepoint(&conn, || {
                sql::execute(&conn, "INSERT INTO t VALUES (1)", [])?;
                Err(Error::internal("refused"))
            })
        });
        assert_eq!(
            (result.unwrap_err().to_string(), undo),
            ("internal: refused".to_string(), true)
        );
    }
}
