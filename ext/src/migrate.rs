//! `onboarding_migrate()`: the schema, from the numbered files of `sql/`;
//! `onboarding_schema_version()`: the version a database is at.
//!
//! Each file of `sql/` is embedded here with its version. Applying them is
//! one atomic call that records each version in `onboarding_schema_migrations`;
//! re-running it finds nothing to do and writes nothing.

use rusqlite::Connection;

use crate::env::{iso8601, Env};
use crate::error::{Error, Result};
use crate::savepoint::in_savepoint;
use crate::sql;

/// One numbered file of `sql/`.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Add a file to `sql/` and a line here.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "001_init",
        sql: include_str!("../../sql/001_init.sql"),
    },
    Migration {
        version: 2,
        name: "002_knowledge",
        sql: include_str!("../../sql/002_knowledge.sql"),
    },
];

/// The highest version applied; 0 in an empty bookkeeping table.
const CURRENT_VERSION: &str = "SELECT coalesce(max(version), 0) FROM onboarding_schema_migrations";

/// The version the library's functions need.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

// -- onboarding_migrate() -> 2
/// Applies the missing migrations and returns the schema version.
pub fn migrate(conn: &Connection, env: &dyn Env) -> Result<i64> {
    in_savepoint(conn, || {
        // The bookkeeping table is the migrator's own, so it lives here
        // rather than in a numbered file.
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS onboarding_schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at TEXT NOT NULL
             )",
        )?;
        let current: i64 = sql::query_row(conn, CURRENT_VERSION, [], |r| r.get(0))?;
        if current > latest_version() {
            return Err(Error::internal(format!(
                "the database schema is at version {current}, newer than this library's {}; \
                 upgrade the library",
                latest_version()
            )));
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            conn.execute_batch(m.sql)
                .map_err(|e| Error::internal(format!("migration {} failed: {e}", m.name)))?;
            conn.execute(
                "INSERT INTO onboarding_schema_migrations (version, name, applied_at)
                 VALUES (?1, ?2, ?3)",
                (m.version, m.name, iso8601(env.now_ms())),
            )?;
        }
        Ok(latest_version())
    })
}

// -- onboarding_schema_version() -> 1
/// The schema version applied to the database, 0 when `onboarding_migrate()`
/// never ran (the same 0 that migrating starts from). Reads only, creating
/// nothing: a health check may ask a read-only replica.
pub fn schema_version(conn: &Connection) -> Result<i64> {
    let tracked: bool = sql::query_row(
        conn,
        "SELECT EXISTS (SELECT 1 FROM sqlite_master
                        WHERE type = 'table' AND name = 'onboarding_schema_migrations')",
        [],
        |r| r.get(0),
    )?;
    if !tracked {
        return Ok(0);
    }
    Ok(sql::query_row(conn, CURRENT_VERSION, [], |r| r.get(0))?)
}
