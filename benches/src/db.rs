//! Database files for the benchmarks: a temporary directory that removes
//! itself, connections opened the same way for every path, and row counts.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::Result;

/// Every table a full onboarding writes (campaigns only when appointments
/// are configured, which the benchmark flows do not do: counted anyway).
pub const TABLES: [&str; 7] = [
    "tenants",
    "onboarding_sessions",
    "onboarding_analytics",
    "omni_agent_configs",
    "omni_phone_mappings",
    "kb_crawl_jobs",
    "omnichannel_campaigns",
];

/// A directory under the system's temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Result<TempDir> {
        let path = std::env::temp_dir().join(format!(
            "onboarding-bench-{label}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How a benchmark connection is set up (always WAL, `foreign_keys = ON`
/// as the server has it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `PRAGMA synchronous = FULL` (true) or `NORMAL`.
    pub sync_full: bool,
    /// `PRAGMA temp_store = MEMORY`: keeps the savepoints' sub-journal off
    /// the file system (by default it spills to a temporary file past 64 KiB
    /// and then costs a `pwrite` per page a savepoint first touches).
    pub temp_store_memory: bool,
}

impl Settings {
    /// `--temp-store memory|file` from the command line; synchronous NORMAL.
    pub fn from_args() -> Settings {
        Settings {
            sync_full: false,
            temp_store_memory: crate::report::arg("--temp-store", "file".to_string()) == "memory",
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "WAL, synchronous={}, foreign_keys=ON, temp_store={}, default page cache",
            if self.sync_full { "FULL" } else { "NORMAL" },
            if self.temp_store_memory {
                "MEMORY"
            } else {
                "DEFAULT (file)"
            }
        )
    }
}

/// How the onboarding functions are registered on a benchmark connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// `onboarding::register`: every call prepares its statements (what the
    /// loadable extension does).
    PerCall,
    /// `onboarding::register_cached`: prepared statements kept across calls
    /// (for a host that owns its connection, like the server).
    Cached,
}

/// A benchmark connection; the cached statements (if any) are released
/// before the connection closes, as `register_cached` requires.
pub struct Db {
    // Field order is drop order: statements first, then the connection.
    cached: Option<onboarding::CachedStatements>,
    pub conn: Connection,
}

impl Db {
    pub fn open(path: &Path, settings: Settings, registration: Registration) -> Result<Db> {
        let conn = open(path, settings)?;
        let cached = match registration {
            Registration::PerCall => None,
            Registration::Cached => Some(
                onboarding::register_cached(&conn, std::sync::Arc::new(onboarding::SystemEnv))
                    .map_err(|e| format!("register_cached: {e}"))?,
            ),
        };
        Ok(Db { cached, conn })
    }

    /// The library's host-rollback mode (cached registration only): the
    /// writers skip their savepoints inside a transaction, as in the
    /// server's batches.
    pub fn set_host_rollback(&self, on: bool) {
        if let Some(cached) = &self.cached {
            cached.set_host_rollback(on);
        }
    }

    pub fn registration(&self) -> Registration {
        match self.cached {
            Some(_) => Registration::Cached,
            None => Registration::PerCall,
        }
    }
}

/// Opens (creating it) a database file in WAL mode with `settings`,
/// registers the onboarding functions (per call) and migrates the schema.
/// The function paths and the floor all use connections opened here, so
/// they differ only in how they write.
pub fn open(path: &Path, settings: Settings) -> Result<Connection> {
    let conn = open_plain(path, settings)?;
    onboarding::register(&conn).map_err(|e| e.to_string())?;
    migrate(&conn)?;
    Ok(conn)
}

/// [`open`], with the functions of the built loadable extension at `so`
/// instead of the library's own registration.
pub fn open_with_extension(path: &Path, settings: Settings, so: &Path) -> Result<Connection> {
    let conn = open_plain(path, settings)?;
    // SAFETY: loads the project's own extension, built by `make loadable`.
    unsafe {
        let _guard = rusqlite::LoadExtensionGuard::new(&conn).map_err(|e| e.to_string())?;
        conn.load_extension(so, None::<&str>)
            .map_err(|e| format!("cannot load {}: {e} (run `make loadable`)", so.display()))?;
    }
    migrate(&conn)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn
        .query_row("SELECT onboarding_migrate()", [], |r| r.get(0))
        .map_err(|e| format!("onboarding_migrate failed: {e}"))?;
    if version < 1 {
        return Err(format!("onboarding_migrate returned {version}"));
    }
    Ok(())
}

/// A connection with the settings, and no functions registered.
fn open_plain(path: &Path, settings: Settings) -> Result<Connection> {
    let conn =
        Connection::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if mode != "wal" {
        return Err(format!("journal_mode is {mode}, expected wal"));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {}; PRAGMA foreign_keys = ON; PRAGMA temp_store = {};",
        if settings.sync_full { "FULL" } else { "NORMAL" },
        if settings.temp_store_memory {
            "MEMORY"
        } else {
            "DEFAULT"
        },
    ))
    .map_err(|e| e.to_string())?;
    // Room for every statement a path caches (the floor has about twenty).
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Rows per table, in the order of [`TABLES`].
pub fn row_counts(conn: &Connection) -> Result<Vec<(&'static str, i64)>> {
    TABLES
        .iter()
        .map(|t| {
            conn.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .map(|n: i64| (*t, n))
                .map_err(|e| format!("counting {t}: {e}"))
        })
        .collect()
}

/// Fails, naming the tables, unless both databases hold as many rows in
/// each table.
pub fn check_same_counts(a: &Connection, b: &Connection) -> Result<Vec<(&'static str, i64)>> {
    let (ca, cb) = (row_counts(a)?, row_counts(b)?);
    let differ: Vec<String> = ca
        .iter()
        .zip(&cb)
        .filter(|(x, y)| x.1 != y.1)
        .map(|(x, y)| format!("{}: {} vs {}", x.0, x.1, y.1))
        .collect();
    if differ.is_empty() {
        Ok(ca)
    } else {
        Err(format!(
            "row counts differ between the function path and the floor ({})",
            differ.join("; ")
        ))
    }
}
