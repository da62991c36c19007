//! Statements through the connection's prepared-statement cache: every
//! module's SQL goes through [`execute`] and [`query_row`].
//!
//! Each function call gets a connection handle; when the host opted into
//! [`crate::register_cached`], that handle lives across calls and so do its
//! prepared statements, which is most of the cost of a call. Otherwise the
//! cache lives for one call (still reused within it).

use rusqlite::{Connection, Params, Row, Statement};

use crate::call::with_statement;

/// `Connection::execute`, through the statement cache.
pub fn execute<P: Params>(
    conn: &Connection,
    sql: &'static str,
    params: P,
) -> rusqlite::Result<usize> {
    with_statement(conn, sql, |s| s.execute(params))
}

/// `Connection::query_row`, through the statement cache.
pub fn query_row<T, P, F>(
    conn: &Connection,
    sql: &'static str,
    params: P,
    f: F,
) -> rusqlite::Result<T>
where
    P: Params,
    F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
{
    with_statement(conn, sql, |s| s.query_row(params, f))
}

/// Any other use of a statement (`query_map`, several rows), through the
/// statement cache.
pub fn with<T>(
    conn: &Connection,
    sql: &'static str,
    f: impl FnOnce(&mut Statement<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    with_statement(conn, sql, f)
}
