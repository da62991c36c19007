//! `onboarding_migrate()`: the schema, from the numbered files of `sql/`;
//! `onboarding_schema_version()`: the version a database is at.
//!
//! Each file of `sql/` is embedded here with its version. Applying them is
//! one atomic call that records each version in `onboarding_schema_migrations`;
//! re-running it finds nothing to do and writes nothing.
//!
//! A migration runs when its version is not recorded yet, not only when it is
//! above the highest one: numbers are handed out to work written in parallel,
//! so a database may have met 3 before 2 is added to the list. The files
//! up to 009 only add, so their order between themselves does not matter;
//! 010 rebuilds 002's full-text index under a new name, and runs after it
//! (the list is applied in order), as 009's recomputation of the index's
//! terms does before or after 010 (`kb::reindex_chunks` finds either).

use rusqlite::Connection;

use crate::env::{iso8601, Env};
use crate::error::{Error, ErrorKind, Result};
use crate::otp;
use crate::savepoint::in_savepoint;
use crate::schema_edit;
use crate::sql;

/// One numbered file of `sql/`.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
    /// Run after the file, in the same savepoint: an edit SQL cannot say
    /// (the file says what it does and why).
    pub then: Option<fn(&Connection) -> Result<()>>,
}

/// Every migration, in order. Add a file to `sql/` and a line here.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "001_init",
        sql: include_str!("../../sql/001_init.sql"),
        then: None,
    },
    Migration {
        version: 2,
        name: "002_knowledge",
        sql: include_str!("../../sql/002_knowledge.sql"),
        then: None,
    },
    Migration {
        version: 3,
        name: "003_phone",
        sql: include_str!("../../sql/003_phone.sql"),
        then: None,
    },
    Migration {
        version: 4,
        name: "004_create_requests",
        sql: include_str!("../../sql/004_create_requests.sql"),
        then: None,
    },
    Migration {
        version: 5,
        name: "005_check_lists",
        sql: include_str!("../../sql/005_check_lists.sql"),
        then: Some(rewrite_check_lists),
    },
    Migration {
        version: 6,
        name: "006_site_turns",
        sql: include_str!("../../sql/006_site_turns.sql"),
        then: None,
    },
    Migration {
        version: 7,
        name: "007_carriers_and_sends",
        sql: include_str!("../../sql/007_carriers_and_sends.sql"),
        then: None,
    },
    Migration {
        version: 8,
        name: "008_call_replies",
        sql: include_str!("../../sql/008_call_replies.sql"),
        then: None,
    },
    Migration {
        version: 9,
        name: "009_french_terms",
        sql: include_str!("../../sql/009_french_terms.sql"),
        then: Some(reindex_chunks),
    },
    Migration {
        version: 10,
        name: "010_kb_index_tenant",
        sql: include_str!("../../sql/010_kb_index_tenant.sql"),
        then: None,
    },
    Migration {
        version: 11,
        name: "011_crawl_budget",
        sql: include_str!("../../sql/011_crawl_budget.sql"),
        then: None,
    },
    Migration {
        version: 12,
        name: "012_site_waits",
        sql: include_str!("../../sql/012_site_waits.sql"),
        then: None,
    },
    Migration {
        version: 13,
        name: "013_kb_cut",
        sql: include_str!("../../sql/013_kb_cut.sql"),
        then: None,
    },
    Migration {
        version: 14,
        name: "014_kb_recut_failures",
        sql: include_str!("../../sql/014_kb_recut_failures.sql"),
        then: None,
    },
    Migration {
        version: 15,
        name: "015_request_fingerprints",
        sql: include_str!("../../sql/015_request_fingerprints.sql"),
        then: None,
    },
];

/// Migration 009: every chunk's search terms, computed again by the
/// library's French analysis as it is now.
fn reindex_chunks(conn: &Connection) -> Result<()> {
    crate::kb::reindex_chunks(conn).map(|_| ())
}

/// Migration 005: the CHECK lists of the tables the files create, as OR
/// chains (see `schema_edit.rs`).
fn rewrite_check_lists(conn: &Connection) -> Result<()> {
    schema_edit::rewrite_check_lists(conn, &library_tables())
}

/// The tables the migration files create: each `CREATE TABLE name` outside
/// a `--` comment (the files' statements are written in capitals).
fn library_tables() -> Vec<String> {
    let mut tables = Vec::new();
    for m in MIGRATIONS {
        for line in m.sql.lines() {
            let code = line.split("--").next().unwrap_or("");
            let Some(at) = code.find("CREATE TABLE ") else {
                continue;
            };
            let rest = code[at + "CREATE TABLE ".len()..].trim_start();
            let rest = rest
                .strip_prefix("IF NOT EXISTS ")
                .unwrap_or(rest)
                .trim_start();
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && !tables.contains(&name) {
                tables.push(name);
            }
        }
    }
    tables
}

/// A TEMP table or view named as one of the library's tables: the
/// migration files name their tables alone (as they must inside triggers),
/// and SQLite looks for such a name in `temp` first, so an `ALTER TABLE`
/// or a `CREATE INDEX` would change the TEMP one (a report's snapshot,
/// `CREATE TEMP TABLE … AS SELECT …`), the version recorded and the
/// database's table left without its column for good. Refused, saying
/// what to do.
fn refuse_shadowing_temp_tables(conn: &Connection) -> Result<()> {
    let mut names = library_tables();
    names.extend(
        [
            "onboarding_schema_migrations",
            "kb_chunks_index",
            "kb_chunks_fts",
        ]
        .map(String::from),
    );
    let mut stmt = conn.prepare(
        "SELECT type, name FROM temp.sqlite_master WHERE type IN ('table', 'view') ORDER BY name",
    )?;
    let temp: Vec<(String, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if let Some((kind, name)) = temp.iter().find(|(_, t)| names.contains(t)) {
        return Err(Error::internal(format!(
            "this connection has a TEMP {kind} named {name}, as the library's table: a \
             migration from it would change that one instead; run DROP {} temp.{name} (or \
             migrate from another connection)",
            kind.to_uppercase()
        )));
    }
    Ok(())
}

/// The highest version applied; 0 in an empty bookkeeping table.
const CURRENT_VERSION: &str =
    "SELECT coalesce(max(version), 0) FROM main.onboarding_schema_migrations";

/// The version the library's functions need.
pub fn latest_version() -> i64 {
    MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0)
}

// -- onboarding_migrate() -> 7
/// Applies the missing migrations and returns the schema version.
pub fn migrate(conn: &Connection, env: &dyn Env) -> Result<i64> {
    migrate_with(conn, env, MIGRATIONS)
}

fn migrate_with(conn: &Connection, env: &dyn Env, migrations: &[Migration]) -> Result<i64> {
    let latest = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    // Clients call this on every connect: when there is nothing to do, it
    // only reads, so it neither waits for nor blocks another writer. Not
    // inside a caller's transaction: there its read would keep the writers
    // called next from waiting for the write lock (SQLite does not wait to
    // upgrade a read), which the writing way takes first.
    if conn.is_autocommit() && up_to_date(conn, migrations, latest)? {
        return Ok(latest);
    }
    refuse_shadowing_temp_tables(conn)?;
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
        if current > latest {
            return Err(Error::internal(format!(
                "the database schema is at version {current}, newer than this library's \
                 {latest}; upgrade the library"
            )));
        }
        let applied: Vec<i64> = conn
            .prepare_cached("SELECT version FROM main.onboarding_schema_migrations")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for m in migrations.iter().filter(|m| !applied.contains(&m.version)) {
            // SQLite's error read as any call's is (a lock, an interrupt,
            // Debian 12's SQLite under trusted_schema=OFF say so), the
            // migration named.
            let failed = |e: Error| Error {
                kind: ErrorKind::Internal,
                detail: format!("migration {} failed: {}", m.name, e.detail),
                ..e
            };
            conn.execute_batch(m.sql).map_err(|e| {
                let text = e.to_string();
                match Error::from(e) {
                    // Not "run onboarding_migrate() first": this is it.
                    e if e.kind == ErrorKind::SchemaMissing => failed(Error::internal(text)),
                    e => failed(e),
                }
            })?;
            if let Some(then) = m.then {
                then(conn).map_err(failed)?;
            }
            conn.execute(
                "INSERT INTO main.onboarding_schema_migrations (version, name, applied_at)
                 VALUES (?1, ?2, ?3)",
                (m.version, m.name, iso8601(env.now_ms())),
            )?;
        }
        phone_code_secret(conn, env)?;
        Ok(latest)
    })
}

/// Whether every migration is recorded (none above `latest`) and the codes'
/// key exists, read without a write transaction. Anything else (a migration missing, a
/// version newer than the library's) goes the writing way, which applies
/// or refuses it.
fn up_to_date(conn: &Connection, migrations: &[Migration], latest: i64) -> Result<bool> {
    if !has_table(conn, "onboarding_schema_migrations")? {
        return Ok(false);
    }
    let applied: Vec<i64> = sql::with(
        conn,
        "SELECT version FROM main.onboarding_schema_migrations",
        |s| s.query_map([], |r| r.get(0))?.collect(),
    )?;
    if applied.iter().any(|&v| v > latest)
        || migrations.iter().any(|m| !applied.contains(&m.version))
    {
        return Ok(false);
    }
    Ok(has_table(conn, "onboarding_secrets")? && has_phone_code_secret(conn)?)
}

/// Whether table `name` exists in the main database.
fn has_table(conn: &Connection, name: &str) -> Result<bool> {
    Ok(sql::query_row(
        conn,
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [name],
        |r| r.get(0),
    )?)
}

/// Whether the codes' key is stored (in a table that exists).
fn has_phone_code_secret(conn: &Connection) -> Result<bool> {
    Ok(sql::query_row(
        conn,
        "SELECT EXISTS (SELECT 1 FROM main.onboarding_secrets WHERE name = ?1)",
        [otp::SECRET_NAME],
        |r| r.get(0),
    )?)
}

/// Creates the key of the codes' HMAC once, wherever 003_phone made its
/// table, from the seam's random source (SQL's `randomblob` is not a
/// cryptographic source, and the seam lets a replicated engine choose it).
fn phone_code_secret(conn: &Connection, env: &dyn Env) -> Result<()> {
    if !has_table(conn, "onboarding_secrets")? {
        return Ok(());
    }
    if !has_phone_code_secret(conn)? {
        sql::execute(
            conn,
            "INSERT INTO main.onboarding_secrets (name, value, created_at) VALUES (?1, ?2, ?3)",
            (
                otp::SECRET_NAME,
                otp::new_secret(env)?,
                iso8601(env.now_ms()),
            ),
        )?;
    }
    Ok(())
}

// -- onboarding_schema_version() -> 5
/// The schema version applied to the database, 0 when `onboarding_migrate()`
/// never ran (the same 0 that migrating starts from). Reads only, creating
/// nothing: a health check may ask a read-only replica.
pub fn schema_version(conn: &Connection) -> Result<i64> {
    if !has_table(conn, "onboarding_schema_migrations")? {
        return Ok(0);
    }
    Ok(sql::query_row(conn, CURRENT_VERSION, [], |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::PinnedEnv;

    const ONE: Migration = Migration {
        version: 1,
        name: "001_a",
        sql: "CREATE TABLE a (x)",
        then: None,
    };
    const TWO: Migration = Migration {
        version: 2,
        name: "002_b",
        sql: "CREATE TABLE b (x)",
        then: None,
    };
    const THREE: Migration = Migration {
        version: 3,
        name: "003_c",
        sql: "CREATE TABLE c (x)",
        then: None,
    };

    fn applied(conn: &Connection) -> Vec<(i64, String)> {
        let mut stmt = conn
            .prepare("SELECT version, name FROM main.onboarding_schema_migrations ORDER BY version")
            .unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    }

    /// Every table the files create, and nothing a comment names.
    #[test]
    fn the_library_tables_are_those_the_files_create() {
        assert_eq!(
            library_tables(),
            [
                "tenants",
                "onboarding_sessions",
                "onboarding_analytics",
                "omni_agent_configs",
                "omni_phone_mappings",
                "omnichannel_campaigns",
                "kb_crawl_jobs",
                "kb_crawl_pages",
                "kb_documents",
                "kb_chunks",
                "onboarding_secrets",
                "phone_verifications",
                "outbox_messages",
                "onboarding_create_requests",
                "kb_site_turns",
                "kb_shared_carriers",
                "onboarding_call_replies",
                "kb_recut_failures",
            ]
        );
    }

    #[test]
    fn a_lower_version_added_after_a_higher_one_still_runs() {
        let conn = Connection::open_in_memory().unwrap();
        let env = PinnedEnv::new(0, 1);
        assert_eq!(migrate_with(&conn, &*env, &[ONE, THREE]), Ok(3));
        assert_eq!(migrate_with(&conn, &*env, &[ONE, TWO, THREE]), Ok(3));
        assert_eq!(
            applied(&conn),
            [
                (1, "001_a".to_string()),
                (2, "002_b".to_string()),
                (3, "003_c".to_string())
            ]
        );
        let b: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'b'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(b, 1);
        // Nothing left to do: nothing runs twice.
        assert_eq!(migrate_with(&conn, &*env, &[ONE, TWO, THREE]), Ok(3));
    }
}
