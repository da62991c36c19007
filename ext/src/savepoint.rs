//! One savepoint per call: every writer's changes land together or not at all.
//!
//! A savepoint (never BEGIN/COMMIT) so that a call made inside a caller's
//! transaction joins it, and a failing call undoes only itself. In autocommit
//! mode, releasing the outermost savepoint commits.

use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::sql;

/// Runs `body` inside `SAVEPOINT onboarding_call`: released when `body`
/// returns `Ok`, rolled back when it returns `Err` or panics.
pub fn in_savepoint<T>(conn: &Connection, body: impl FnOnce() -> Result<T>) -> Result<T> {
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
