//! Opening the writer's connection: WAL, pragmas, the functions (linked or
//! loaded with `--extension`), migration.

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, LoadExtensionGuard, OpenFlags};

use super::checkpoint::{Checkpointer, WAL_SIZE_LIMIT_BYTES};
use super::gather;
use super::query::{error_text, missing_forms_sql};
use super::syncer::LogFailure;
use crate::config::{Synchronous, WalCheckpoint};

/// How the writer thread opens its connection.
pub struct Options {
    pub path: PathBuf,
    pub synchronous: Synchronous,
    /// `External`: no checkpointer, and no checkpoint at close either.
    pub wal_checkpoint: WalCheckpoint,
    /// Load this built extension instead of registering the linked functions.
    pub extension: Option<PathBuf>,
    /// Time and randomness of the linked functions.
    pub env: Arc<dyn onboarding::Env>,
    /// How long a statement waits for another process's lock before the
    /// call fails as busy (503).
    pub busy_timeout: Duration,
    /// The knowledge-base settings of the linked functions (the crawl
    /// allow-list the kb step's validation applies).
    pub kb: onboarding::kb::Settings,
}

/// The writer's connection and what lives and dies with it.
pub(super) struct Database {
    /// The library's statements kept across calls (linked functions only);
    /// released before the connection closes, as SQLite requires. Declared
    /// before `conn`: if the writer thread unwinds, they drop first.
    pub(super) statements: Option<onboarding::CachedStatements>,
    pub(super) conn: Connection,
    /// `None` when another process checkpoints (`--wal-checkpoint external`).
    pub(super) checkpointer: Option<Checkpointer>,
    /// Set by the log syncer when a sync of the WAL failed: from then on no
    /// call runs and nothing copies the WAL back (see syncer.rs).
    pub(super) log_failure: LogFailure,
}

/// Opens the database as the server needs it; every error names its step.
/// `log_failure` is shared with the syncer and the reader. A start refused
/// leaves the file as it found it: an `--extension` is checked on a
/// connection in memory before the file is opened (a failed load left a
/// new onboarding.db), and a file of a newer schema is refused before
/// anything is written to it (its switch to WAL mode came first, and
/// changed its header for good).
pub(super) fn open(options: &Options, log_failure: LogFailure) -> Result<Database, String> {
    if let Some(so) = &options.extension {
        let memory = Connection::open_in_memory()
            .map_err(|e| format!("cannot open a database in memory: {e}"))?;
        load_extension(&memory, so)?;
        refuse_missing_forms(&memory, so)?;
    }
    let path = options.path.display();
    let vfs = gather::register()?;
    let conn = connect(
        &options.path,
        Some(vfs),
        options.synchronous,
        options.busy_timeout,
    )?;
    // temp_store: each call's savepoint journals the pages it changes; in
    // memory that costs no write() per page. wal_autocheckpoint: the
    // checkpointer thread copies the WAL back, so commits never wait for it.
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {WAL_SIZE_LIMIT_BYTES};"
    ))
    .map_err(|e| format!("cannot configure {path}: {}", os_cause(&conn, &e)))?;
    let statements = functions(&conn, options)?;
    // Migrated before the switch to WAL mode, the first write: a file of a
    // newer schema is refused untouched.
    conn.query_row("SELECT onboarding_migrate()", [], |r| r.get::<_, i64>(0))
        .map_err(|e| format!("cannot migrate {path}: {}", error_text(&e)))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| format!("cannot switch {path} to WAL mode: {}", os_cause(&conn, &e)))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!(
            "database {path} refused WAL mode (journal_mode is {mode}; use a file on a local disk)"
        ));
    }
    // The switch writes no log: the first transaction after it opens (and
    // creates) the -wal file, which then stays while this connection does.
    // Opened now, for the log syncer's handle: with --wal-checkpoint
    // external no checkpointer connection opens it, and a new file's
    // server refused to start (unless Litestream's own connection happened
    // to open the file first).
    conn.query_row("SELECT count(*) FROM main.sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(|e| format!("cannot read {path} in WAL mode: {}", os_cause(&conn, &e)))?;
    // Room for the route statements (nine), the health check, the outbox
    // sender's two and the transaction statements, with some to spare.
    conn.set_prepared_statement_cache_capacity(24);
    let checkpointer = match options.wal_checkpoint {
        WalCheckpoint::Internal => Some(Checkpointer::start(
            &options.path,
            options.synchronous,
            options.busy_timeout,
            Arc::clone(&log_failure),
        )?),
        WalCheckpoint::External => {
            // SQLite checkpoints when the last connection to a database
            // closes; under Litestream its own connection keeps that from
            // happening, but "never" should not depend on who closes last.
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
                .map_err(|e| format!("cannot configure {path}: {}", os_cause(&conn, &e)))?;
            None
        }
    };
    Ok(Database {
        conn,
        statements,
        checkpointer,
        log_failure,
    })
}

/// The onboarding functions on `conn`: linked (and their statements kept
/// across calls), or loaded from `--extension`.
pub(super) fn functions(
    conn: &Connection,
    options: &Options,
) -> Result<Option<onboarding::CachedStatements>, String> {
    match &options.extension {
        Some(so) => {
            load_extension(conn, so)?;
            Ok(None)
        }
        None => onboarding::register_cached_with_settings(
            conn,
            Arc::clone(&options.env),
            options.kb.clone(),
        )
        .map(Some)
        .map_err(|e| format!("cannot register the onboarding functions: {e}")),
    }
}

/// SQLite's error, and for a failure of the file system (an I/O error, a
/// file it cannot open) the system's own word for it: SQLite
/// says "disk I/O error" when the shared-memory file cannot grow on a full
/// disk, which sends an operator looking for a hardware fault.
fn os_cause(conn: &Connection, e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode;
    let of_the_system = matches!(
        e.sqlite_error_code(),
        // Not SQLITE_FULL: SQLite keeps no errno for it, and the one read
        // would be an earlier failure's.
        Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen)
    );
    // SAFETY: the connection is open, and on this thread; the call reads
    // the errno SQLite kept from its last system call.
    let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) };
    if of_the_system && errno != 0 {
        format!("{e}: {}", std::io::Error::from_raw_os_error(errno))
    } else {
        e.to_string()
    }
}

/// A connection to `path` with the server's busy timeout and durability,
/// through `vfs` (the default VFS when `None`).
pub(super) fn connect(
    path: &Path,
    vfs: Option<&CStr>,
    synchronous: Synchronous,
    busy_timeout: Duration,
) -> Result<Connection, String> {
    let shown = path.display();
    let opened = match vfs {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, OpenFlags::default(), vfs),
        None => Connection::open(path),
    };
    let conn = opened.map_err(|e| format!("cannot open database {shown}: {e}"))?;
    // Only another process (a `sqlite3` shell, a backup) or the checkpointer
    // can hold a lock: wait for it a while rather than fail a whole batch.
    conn.busy_timeout(busy_timeout)
        .map_err(|e| format!("cannot set the busy timeout on {shown}: {e}"))?;
    conn.execute_batch(&format!("PRAGMA synchronous = {}", synchronous.pragma()))
        .map_err(|e| format!("cannot configure {shown}: {}", os_cause(&conn, &e)))?;
    Ok(conn)
}

/// An `--extension` older than this server can lack a form it calls (a
/// client's Idempotency-Key calls the keyed ones): every such call would
/// fail with "wrong number of arguments", as a 500. Refused before the
/// database is opened.
fn refuse_missing_forms(conn: &Connection, so: &std::path::Path) -> Result<(), String> {
    let missing: Option<String> = conn
        .query_row(&missing_forms_sql(), [], |r| r.get(0))
        .map_err(|e| {
            format!(
                "cannot list the functions of {}: {}",
                so.display(),
                error_text(&e)
            )
        })?;
    match missing {
        Some(missing) => Err(format!(
            "--extension {} lacks {missing}, which this server calls (build this source's with \
             `make loadable`)",
            so.display()
        )),
        None => Ok(()),
    }
}

fn load_extension(conn: &Connection, so: &std::path::Path) -> Result<(), String> {
    // The entry point by name, as the node host asks for it: SQLite would
    // derive one from the file's name, the letters of `libonboarding-v2.so`
    // making `sqlite3_onboardingv_init`, which no build exports.
    //
    // SAFETY: loading runs the library's init code in this process; the
    // operator chose the file with --extension, and no other SQL runs on this
    // connection while loading is enabled (the guard disables it on drop).
    let loaded = unsafe {
        LoadExtensionGuard::new(conn)
            .and_then(|_guard| conn.load_extension(so, Some("sqlite3_onboarding_init")))
    };
    loaded.map_err(|e| format!("cannot load extension {}: {}", so.display(), error_text(&e)))
}
