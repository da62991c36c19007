//! `libonboarding.so`: the `onboarding` library as a loadable SQLite
//! extension, for any SQLite client.
//!
//! ```text
//! sqlite> .load dist/libonboarding
//! sqlite> SELECT onboarding_migrate();
//! 10
//! ```
//!
//! The extension uses the host's SQLite through the api routines table and
//! never bundles its own.

use std::borrow::Cow;
use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::vtab::{
    Context as VTabContext, Filters, IndexInfo, Module, VTab, VTabConnection, VTabCursor,
};
use rusqlite::{ffi, Connection};

/// Entry point, named after the file (`libonboarding.so`).
///
/// # Safety
///
/// Called by SQLite's extension loader with a valid connection handle, error
/// message slot and api routines table, on the connection's thread.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_onboarding_init(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    if p_api.is_null() {
        return ffi::SQLITE_ERROR;
    }
    // rusqlite's own init aborts the host on a too-old SQLite: check first,
    // with the host's own version function, before any other call.
    let host = match (*p_api).libversion_number {
        Some(libversion_number) => libversion_number(),
        None => 0,
    };
    if let Err(message) = onboarding::check_host_version(host) {
        set_error(p_api, pz_err_msg, &message);
        return ffi::SQLITE_ERROR;
    }
    // extension_init2 is not panic-safe by itself, and a panic must never
    // cross into the host.
    match catch_unwind(AssertUnwindSafe(|| {
        Connection::extension_init2(db, pz_err_msg, p_api, init)
    })) {
        Ok(code) => code,
        Err(_) => {
            set_error(
                p_api,
                pz_err_msg,
                "onboarding: the extension panicked while loading",
            );
            ffi::SQLITE_ERROR
        }
    }
}

fn init(conn: Connection) -> rusqlite::Result<bool> {
    let settings = settings().map_err(rusqlite::Error::ModuleError)?;
    keep_statements(&conn, settings.clone()).or_else(|_| {
        onboarding::register_with_settings(&conn, Arc::new(onboarding::SystemEnv), settings)
    })?;
    Ok(false)
}

/// The host's knowledge-base settings, from the environment: `HOST:PORT`
/// entries separated by commas, as the server reads them. A value that is
/// not such a list (an empty one too, as the server refuses it) refuses
/// the load, rather than leave the client wondering why its host is still
/// refused.
///
/// Without them a client of the extension could not save a kb step for the
/// intranet site that `onboarding-server crawl --crawl-allow-host` would
/// crawl.
fn settings() -> Result<onboarding::kb::Settings, String> {
    use onboarding::kb::ALLOW_HOST_VARIABLE;
    let Some(value) = std::env::var_os(ALLOW_HOST_VARIABLE) else {
        return Ok(onboarding::kb::Settings::default());
    };
    let value = value
        .into_string()
        .map_err(|_| format!("onboarding: {ALLOW_HOST_VARIABLE} is not UTF-8"))?;
    let crawl_allow_hosts = onboarding::kb::AllowList::parse_variable(&value)
        .map_err(|e| format!("onboarding: {ALLOW_HOST_VARIABLE}: {e}"))?;
    Ok(onboarding::kb::Settings { crawl_allow_hosts })
}

/// Registers the functions with their statements kept across calls (the
/// server's way, about three times less work a call) when an owner for
/// those statements can be set up; the caller falls back to preparing them
/// on every call otherwise.
///
/// A statement kept past a call would make the host's `sqlite3_close`
/// refuse to close the connection. But SQLite disconnects every virtual
/// table, eponymous ones included, before it looks for statements left
/// (`disconnectAllVtab` in `sqlite3Close`; FTS5 keeps its own statements
/// this way). So the kept statements belong to an eponymous table,
/// `onboarding_statement_cache`, connected here and never queried: when
/// SQLite disconnects it, at the close, it finalizes them.
fn keep_statements(conn: &Connection, settings: onboarding::kb::Settings) -> rusqlite::Result<()> {
    const MODULE: Module<StatementHolder> = Module::eponymous_only_module();
    let statements =
        onboarding::register_cached_with_settings(conn, Arc::new(onboarding::SystemEnv), settings)?;
    let slot = Arc::new(Mutex::new(Some(statements)));
    conn.create_module(
        c"onboarding_statement_cache",
        &MODULE,
        Some(Arc::clone(&slot)),
    )?;
    // Naming the table connects it: the statements move into it. Unless a
    // table or view of the host's has that name (it comes first in name
    // lookup) or the schema cannot be read now (another connection's
    // exclusive lock): the statements are then released here, and every
    // call prepares its own, as the module's data would outlive the close.
    let connected = conn.prepare("SELECT 1 FROM onboarding_statement_cache");
    drop(take(&slot));
    connected.map(drop)
}

/// The statements still in `slot`, taken out (a poisoned lock still holds
/// them).
fn take(
    slot: &Mutex<Option<onboarding::CachedStatements>>,
) -> Option<onboarding::CachedStatements> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// The eponymous table that owns the kept statements (see
/// [`keep_statements`]); it has no rows.
#[repr(C)]
struct StatementHolder {
    /// SQLite's part; first, as the module's layout requires.
    base: ffi::sqlite3_vtab,
    /// Dropped, which finalizes the statements, when SQLite disconnects
    /// the table: at the connection's close, or when its module is dropped
    /// or replaced (then possibly during a call, which finalizes them as it
    /// ends: `CachedStatements::release` never waits). Later calls then
    /// prepare their statements each time.
    _statements: Option<onboarding::CachedStatements>,
}

// SAFETY: `base` is first and `#[repr(C)]`, as rusqlite's module expects;
// the table declares one hidden column and yields no row.
unsafe impl<'vtab> VTab<'vtab> for StatementHolder {
    type Aux = Arc<Mutex<Option<onboarding::CachedStatements>>>;
    type Cursor = NoRows;

    fn connect(
        _db: &mut VTabConnection,
        aux: Option<&Self::Aux>,
        _module_name: &[u8],
        _database_name: &[u8],
        _table_name: &[u8],
        _args: &[&[u8]],
    ) -> rusqlite::Result<(Cow<'static, CStr>, Self)> {
        // The first connection takes the statements; should SQLite connect
        // the table again, that one owns none.
        let statements = aux.and_then(|slot| take(slot));
        Ok((
            Cow::Borrowed(c"CREATE TABLE x(unused HIDDEN)"),
            StatementHolder {
                base: ffi::sqlite3_vtab::default(),
                _statements: statements,
            },
        ))
    }

    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<bool> {
        info.set_estimated_cost(1.0);
        Ok(true)
    }

    fn open(&'vtab mut self) -> rusqlite::Result<NoRows> {
        Ok(NoRows {
            base: ffi::sqlite3_vtab_cursor::default(),
        })
    }
}

/// A cursor over no rows.
#[repr(C)]
struct NoRows {
    base: ffi::sqlite3_vtab_cursor,
}

// SAFETY: `base` is first and `#[repr(C)]`; the cursor is at its end from
// the start.
unsafe impl VTabCursor for NoRows {
    fn filter(&mut self, _: c_int, _: Option<&str>, _: &Filters<'_>) -> rusqlite::Result<()> {
        Ok(())
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        Ok(())
    }

    fn eof(&self) -> bool {
        true
    }

    fn column(&self, ctx: &mut VTabContext, _: c_int) -> rusqlite::Result<()> {
        ctx.set_result(&rusqlite::types::Null)
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        Ok(0)
    }
}

/// Hands `message` to SQLite in memory from the host's allocator, as the
/// loader expects (it frees it with sqlite3_free).
///
/// # Safety
///
/// `p_api` must be the loader's api routines table and `pz_err_msg` its
/// error slot (or null).
unsafe fn set_error(
    p_api: *mut ffi::sqlite3_api_routines,
    pz_err_msg: *mut *mut c_char,
    message: &str,
) {
    if pz_err_msg.is_null() {
        return;
    }
    let Some(malloc) = (*p_api).malloc else {
        return;
    };
    let Ok(text) = CString::new(message) else {
        return;
    };
    let bytes = text.as_bytes_with_nul();
    let buf = malloc(bytes.len() as c_int) as *mut u8;
    if buf.is_null() {
        return;
    }
    std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, bytes.len());
    *pz_err_msg = buf as *mut c_char;
}
