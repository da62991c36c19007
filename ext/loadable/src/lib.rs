//! `libonboarding.so`: the `onboarding` library as a loadable SQLite
//! extension, for any SQLite client.
//!
//! ```text
//! sqlite> .load dist/libonboarding
//! sqlite> SELECT onboarding_migrate();
//! 1
//! ```
//!
//! The extension uses the host's SQLite through the api routines table and
//! never bundles its own.

use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

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
    onboarding::register(&conn)?;
    Ok(false)
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
