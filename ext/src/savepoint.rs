//! One savepoint per call: every writer's changes land together or not at all.
//!
//! A savepoint (never BEGIN/COMMIT) so that a call made inside a caller's
//! transaction joins it, and a failing call undoes only itself. In autocommit
//! mode, releasing the outermost savepoint commits.
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

use rusqlite::Connection;

use crate::error::{Error, Result};
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

/// Runs `body` inside `SAVEPOINT onboarding_call`: released when `body`
/// returns `Ok`, rolled back when it returns `Err` or panics.
///
/// Under a host that undoes failed calls, and inside its transaction,
/// `body` runs as is; if it fails after changing rows, the call is marked
/// for the host to undo. A body that keeps its writes and answers an error
/// on purpose (`Ok(Err(..))`, a wrong phone code) is not marked: its writes
/// stand, as its savepoint would have kept them.
pub fn in_savepoint<T>(conn: &Connection, body: impl FnOnce() -> Result<T>) -> Result<T> {
    // In autocommit mode each statement of `body` would commit on its own:
    // the savepoint is what makes the call one transaction there.
    if HOST_ROLLBACK.with(Cell::get) && !conn.is_autocommit() {
        // Rows changed, by any statement that completed (an aborted one
        // adds nothing: SQLite undid it).
        let changes = conn.total_changes();
        let result = body();
        if result.is_err() && conn.total_changes() != changes {
            UNDO_NEEDED.with(|flag| flag.set(true));
        }
        return result;
    }
    sql::execute(conn, "SAVEPOINT onboarding_call", []).map_err(|e| match e.to_string() {
        // SQLite refuses a savepoint while the calling statement writes
        // (INSERT … SELECT f(), CREATE TABLE … AS, triggers).
        text if text.contains("statements in progress") => Error::internal(format!(
            "{text} (call the onboarding functions from a plain top-level SELECT)"
        )),
        _ => Error::from(e),
    })?;
    let mut guard = Guard { conn, armed: true };
    let value = body()?;
    sql::execute(conn, "RELEASE onboarding_call", [])?;
    guard.armed = false;
    Ok(value)
}

/// Rolls the savepoint back unless disarmed: runs on `?` returns, on a failed
/// RELEASE (a commit that failed) and while unwinding from a panic.
struct Guard<'c> {
    conn: &'c Connection,
    armed: bool,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if self.armed {
            // Nothing useful can be done if this fails: the caller already
            // gets the original error, and SQLite rolls back on close.
            let _ = sql::execute(self.conn, "ROLLBACK TO onboarding_call", [])
                .and_then(|_| sql::execute(self.conn, "RELEASE onboarding_call", []));
        }
    }
}
