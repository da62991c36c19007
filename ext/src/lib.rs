//! Tenant onboarding as SQL functions.
//!
//! ```
//! use rusqlite::Connection;
//!
//! let conn = Connection::open_in_memory().unwrap();
//! onboarding::register(&conn).unwrap();
//! let version: i64 = conn.query_row("SELECT onboarding_migrate()", [], |r| r.get(0)).unwrap();
//! assert_eq!(version, onboarding::latest_version());
//! let created: String = conn
//!     .query_row("SELECT onboarding_create('{}')", [], |r| r.get(0))
//!     .unwrap();
//! assert!(created.starts_with(r#"{"success":true,"session_id":"onb_"#));
//! ```
//!
//! The same functions are what `libonboarding.so` adds to any SQLite client
//! (`.load dist/libonboarding` in the `sqlite3` shell) and what the HTTP
//! server calls, one per route. Every writer takes and returns JSON text, runs
//! in a savepoint of its own, and fails with
//! `onboarding_<function>: <kind>: <detail>` (see [`ErrorKind`]).
//!
//! | function | file |
//! |---|---|
//! | `onboarding_migrate()`, `onboarding_schema_version()` | `migrate.rs` |
//! | `onboarding_version()` | `version.rs` |
//! | `onboarding_create(payload)`, `onboarding_create(payload, ip_address, user_agent)`, `onboarding_create(payload, ip_address, user_agent, request_key)` | `create.rs` |
//! | `onboarding_step(session_id, step, payload[, request_key])` | `step.rs`, `session.rs` (`Step`), `validate.rs` |
//! | `onboarding_complete(session_id)`, `onboarding_complete(session_id, payload)`, `onboarding_complete(session_id, payload, request_key)`; `onboarding_kb_prepare(session_id)` | `complete.rs`, `sync.rs`, `replies.rs` |
//! | `onboarding_get(session_id)` | `get.rs` |
//! | `onboarding_phone_send(session_id, payload[, ip_address[, request_key]])`, `onboarding_phone_verify(session_id, payload[, request_key])` | `phone.rs`, `verification.rs`, `otp.rs`, `replies.rs` |
//! | `onboarding_outbox_claim(worker, lease_seconds)`, `onboarding_outbox_sent(id, worker, provider_id)`, `onboarding_outbox_failed(id, worker, error)` | `outbox.rs` |
//! | `onboarding_agent_types()`, `onboarding_voices()` | `catalog.rs` |
//! | `onboarding_kb_get`, `onboarding_kb_search`; the worker functions `onboarding_kb_claim`, `_store_page`, `_renew`, `_finish`, `_release`, `_site_take`, `_site_release`; `onboarding_kb_recut()` | `kb/` |

// The layers, top to bottom: a module imports only from the layers below
// its own (ARCHITECTURE.md has a line on each module).
// The call, and the entry points.
mod call;
mod complete;
mod create;
mod get;
mod migrate;
mod phone;
// The knowledge base: its modules sit on the layers below and above (kb/mod.rs).
pub mod kb;
// A step's save, and the sync at completion.
mod step;
mod sync;
// Validation and the session row.
mod session;
mod validate;
mod verification;
// Leaves (analytics, ids, otp, outbox, replies and savepoint use the others).
mod analytics;
pub mod catalog;
pub mod env;
mod error;
mod ids;
mod json;
mod otp;
mod outbox;
mod replies;
mod savepoint;
mod schema_edit;
mod sql;
mod version;

use std::ffi::{c_int, c_void, CString};
use std::sync::Arc;

use rusqlite::ffi;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;

use call::{Args, Call, StatementCache};
use json::to_sql;
use validate::Peer;

pub use call::CachedStatements;
pub use env::{Env, PinnedEnv, SystemEnv};
pub use error::{cut, quote, quote_json, Error, ErrorKind, Result};
pub use migrate::{latest_version, migrate, MIGRATIONS};
/// The values the steps accept for their list fields (for documents that
/// describe them, such as the server's OpenAPI file).
pub use validate::{BOOKING_PROVIDERS, CHANNELS, KB_METHODS, MAX_DOCUMENTS_BODY_BYTES};
/// The channels a phone code goes by (`onboarding_phone_send`'s `channel`).
pub use verification::CODE_CHANNELS;
pub use version::{check_host_version, MIN_SQLITE_VERSION, VERSION};

/// What one SQL function does with its arguments.
type Body = fn(&Call<'_>) -> Result<SqlValue>;

/// Writers: never DETERMINISTIC (SQLite may then call them once for many
/// rows), and DIRECTONLY so that no view, trigger or schema default can
/// run them behind a user's back.
const WRITER: FunctionFlags = FunctionFlags::SQLITE_UTF8.union(FunctionFlags::SQLITE_DIRECTONLY);
/// Readers of the database: never DETERMINISTIC either (their answer moves
/// with the data), and direct-only: `onboarding_get` reads private data.
const READER: FunctionFlags = WRITER;
/// Catalogues, constant for one build of the library: safe anywhere
/// (INNOCUOUS), but not DETERMINISTIC, which would let an index or a
/// stored generated column keep their answer in the file, stale once the
/// library is upgraded (and unreadable without it).
const CONSTANT: FunctionFlags = FunctionFlags::SQLITE_UTF8.union(FunctionFlags::SQLITE_INNOCUOUS);

/// Every function the library adds: name, number of arguments, flags, body.
const FUNCTIONS: &[(&str, i32, FunctionFlags, Body)] = &[
    ("onboarding_migrate", 0, WRITER, |c| {
        migrate(&*c.conn()?, c.env).map(SqlValue::Integer)
    }),
    ("onboarding_schema_version", 0, READER, |c| {
        migrate::schema_version(&*c.conn()?).map(SqlValue::Integer)
    }),
    ("onboarding_version", 0, CONSTANT, |_| {
        Ok(SqlValue::Text(VERSION.to_string()))
    }),
    ("onboarding_create", 0, WRITER, |c| {
        create::create(&*c.conn()?, c.env, None, &Peer::default(), None).map(SqlValue::Text)
    }),
    ("onboarding_create", 1, WRITER, |c| {
        let payload = c.payload(0)?;
        create::create(&*c.conn()?, c.env, payload, &Peer::default(), None).map(SqlValue::Text)
    }),
    // A host that knows its client (a server and its peer) passes the
    // address and the raw User-Agent header; non-NULL, they replace the
    // payload's fields.
    ("onboarding_create", 3, WRITER, |c| {
        let payload = c.payload(0)?;
        let ip_address = c.text(1, "ip_address", ErrorKind::InvalidField)?;
        let user_agent = c.lossy_text(2, "user_agent")?;
        let peer = Peer {
            ip_address,
            user_agent: user_agent.as_deref(),
        };
        create::create(&*c.conn()?, c.env, payload, &peer, None).map(SqlValue::Text)
    }),
    // A host whose commit can have an unknown outcome (a dqlite cluster's
    // failover) runs a create again with the same key: the first session
    // is answered again rather than a second one made.
    ("onboarding_create", 4, WRITER, |c| {
        let payload = c.payload(0)?;
        let ip_address = c.text(1, "ip_address", ErrorKind::InvalidField)?;
        let user_agent = c.lossy_text(2, "user_agent")?;
        let request_key = c.text(3, "request_key", ErrorKind::InvalidField)?;
        let peer = Peer {
            ip_address,
            user_agent: user_agent.as_deref(),
        };
        let conn = c.conn()?;
        create::create(&conn, c.env, payload, &peer, request_key).map(SqlValue::Text)
    }),
    // The same key's first answer, read without creating: a host that
    // refuses a create (a rate limit) still answers a retry of one it made.
    ("onboarding_create_kept", 2, READER, |c| {
        let payload = c.payload(0)?;
        let request_key = c
            .text(1, "request_key", ErrorKind::InvalidField)?
            .ok_or_else(|| Error::invalid_field("request_key is required"))?;
        let kept = create::kept(&*c.conn()?, payload, request_key)?;
        Ok(kept.map_or(SqlValue::Null, SqlValue::Text))
    }),
    ("onboarding_step", 3, WRITER, step_call),
    // The same key's first answer, read without saving: a host that
    // refuses a step (its limit on "email already used" answers) still
    // answers a retry of one it saved.
    ("onboarding_step_kept", 4, READER, |c| {
        let session_id = c.session_id()?;
        let step = c
            .text(1, "step", ErrorKind::InvalidField)?
            .ok_or_else(|| Error::invalid_field("step is required"))?;
        let payload = c.payload(2)?;
        let request_key = c
            .text(3, "request_key", ErrorKind::InvalidField)?
            .ok_or_else(|| Error::invalid_field("request_key is required"))?;
        let kept = step::kept(&*c.conn()?, c.env, session_id, step, payload, request_key)?;
        Ok(kept.map_or(SqlValue::Null, SqlValue::Text))
    }),
    // A host whose commit can have an unknown outcome runs a call again
    // with the key it made for it: the first answer comes back, nothing is
    // written again (`replies.rs`). So for the phone functions below. One
    // body per function: the arguments a form lacks read as NULL.
    ("onboarding_step", 4, WRITER, step_call),
    ("onboarding_complete", 1, WRITER, complete_call),
    ("onboarding_complete", 2, WRITER, complete_call),
    ("onboarding_complete", 3, WRITER, complete_call),
    // The completion's pasted documents stored ahead, one a call, by a
    // host that must not spend seconds in one call (a dqlite leader).
    ("onboarding_kb_prepare", 1, WRITER, |c| {
        complete::prepare(&*c.conn()?, c.env, c.session_id()?).map(to_sql)
    }),
    ("onboarding_get", 1, READER, |c| {
        get::get(&*c.conn()?, c.env, c.session_id()?).map(to_sql)
    }),
    // A host that knows its client passes the address, kept with the
    // verification (as onboarding_create/3 keeps it with the session).
    ("onboarding_phone_send", 2, WRITER, phone_send_call),
    ("onboarding_phone_send", 3, WRITER, phone_send_call),
    ("onboarding_phone_send", 4, WRITER, phone_send_call),
    ("onboarding_phone_verify", 2, WRITER, phone_verify_call),
    ("onboarding_phone_verify", 3, WRITER, phone_verify_call),
    // The outbox's sender side: claim with a lease, then sent or failed.
    ("onboarding_outbox_claim", 2, WRITER, |c| {
        let worker = c.required_text(0, "worker")?;
        let lease_seconds = c.integer(1, "lease_seconds")?;
        outbox::claim(&*c.conn()?, c.env, worker, lease_seconds).map(to_sql)
    }),
    ("onboarding_outbox_sent", 3, WRITER, |c| {
        let id = c.integer(0, "id")?;
        let worker = c.required_text(1, "worker")?;
        let provider_id = c.reported_text(2)?;
        outbox::sent(&*c.conn()?, c.env, id, worker, provider_id.as_deref()).map(to_sql)
    }),
    ("onboarding_outbox_failed", 3, WRITER, |c| {
        let id = c.integer(0, "id")?;
        let worker = c.required_text(1, "worker")?;
        // NULL is no text, kept as such: refused, the message would stay
        // leased, to be claimed and sent again (a provider's error code
        // passed as a number too).
        let error = c.reported_text(2)?;
        outbox::failed(
            &*c.conn()?,
            c.env,
            id,
            worker,
            error.as_deref().unwrap_or_default(),
        )
        .map(to_sql)
    }),
    ("onboarding_agent_types", 0, CONSTANT, |_| {
        Ok(to_sql(catalog::agent_types_json()))
    }),
    ("onboarding_voices", 0, CONSTANT, |_| {
        Ok(to_sql(catalog::voices_json()))
    }),
    ("onboarding_kb_get", 1, READER, |c| {
        kb::read::get(&*c.conn()?, c.session_id()?).map(to_sql)
    }),
    ("onboarding_kb_search", 1, READER, |c| {
        kb::read::search(&*c.conn()?, c.payload(0)?).map(to_sql)
    }),
    ("onboarding_kb_claim", 1, WRITER, |c| {
        kb::worker::claim(&*c.conn()?, c.env, c.payload(0)?).map(to_sql)
    }),
    ("onboarding_kb_store_page", 1, WRITER, |c| {
        kb::worker::store_page(&*c.conn()?, c.env, c.payload(0)?).map(to_sql)
    }),
    ("onboarding_kb_renew", 1, WRITER, |c| {
        kb::worker::renew(&*c.conn()?, c.env, c.payload(0)?).map(to_sql)
    }),
    ("onboarding_kb_finish", 1, WRITER, |c| {
        kb::worker::finish(&*c.conn()?, c.env, c.payload(0)?).map(to_sql)
    }),
    ("onboarding_kb_release", 1, WRITER, |c| {
        kb::worker::release(&*c.conn()?, c.env, c.payload(0)?).map(to_sql)
    }),
    ("onboarding_kb_site_take", 1, WRITER, |c| {
        kb::turn::take(&*c.conn()?, c.env, c.payload(0)?).map(to_sql)
    }),
    ("onboarding_kb_site_release", 1, WRITER, |c| {
        kb::turn::release(&*c.conn()?, c.env, c.payload(0)?).map(to_sql)
    }),
    // Documents stored by an older chunker cut again, one a call.
    ("onboarding_kb_recut", 0, WRITER, |c| {
        kb::recut::recut(&*c.conn()?, c.env).map(to_sql)
    }),
];

/// `onboarding_step(session_id, step, payload[, request_key])`.
fn step_call(c: &Call<'_>) -> Result<SqlValue> {
    let session_id = c.session_id()?;
    let step = c
        .text(1, "step", ErrorKind::InvalidField)?
        .ok_or_else(|| Error::invalid_field("step is required"))?;
    let payload = c.payload(2)?;
    let request_key = c.text(3, "request_key", ErrorKind::InvalidField)?;
    let conn = c.conn()?;
    step::step(
        &conn,
        c.env,
        c.settings,
        session_id,
        step,
        payload,
        request_key,
    )
    .map(SqlValue::Text)
}

/// `onboarding_complete(session_id[, payload[, request_key]])`.
fn complete_call(c: &Call<'_>) -> Result<SqlValue> {
    let payload = c.payload(1)?;
    let request_key = c.text(2, "request_key", ErrorKind::InvalidField)?;
    let (session_id, conn) = (c.session_id()?, c.conn()?);
    complete::complete(&conn, c.env, session_id, payload, request_key).map(SqlValue::Text)
}

/// `onboarding_phone_send(session_id, payload[, ip_address[, request_key]])`.
fn phone_send_call(c: &Call<'_>) -> Result<SqlValue> {
    let payload = c.payload(1)?;
    let ip_address = c.text(2, "ip_address", ErrorKind::InvalidField)?;
    let request_key = c.text(3, "request_key", ErrorKind::InvalidField)?;
    let (session_id, conn) = (c.session_id()?, c.conn()?);
    phone::send(&conn, c.env, session_id, payload, ip_address, request_key).map(to_sql)
}

/// `onboarding_phone_verify(session_id, payload[, request_key])`.
fn phone_verify_call(c: &Call<'_>) -> Result<SqlValue> {
    let payload = c.payload(1)?;
    let request_key = c.text(2, "request_key", ErrorKind::InvalidField)?;
    let (session_id, conn) = (c.session_id()?, c.conn()?);
    phone::verify(&conn, c.env, session_id, payload, request_key).map(to_sql)
}

/// What a registered function takes to each of its calls.
struct Registered {
    name: &'static str,
    body: Body,
    env: Arc<dyn Env>,
    cache: Option<Arc<StatementCache>>,
    settings: Arc<kb::Settings>,
}

/// One call of a registered function, as SQLite makes it. Registered
/// through SQLite's C interface rather than rusqlite's closures so that an
/// error sets its own result code after its text: a database locked past
/// the busy timeout fails with `SQLITE_BUSY`, which every client can tell
/// from other errors (rusqlite's closures set the text last, which resets
/// the code to `SQLITE_ERROR`), and keeps the contract's
/// `onboarding_<function>: <kind>: <detail>` text.
unsafe extern "C" fn call_function(
    ctx: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: the user data is the `Registered` this function was made
    // with, alive until `drop_registered`; `argv` holds `argc` values for
    // the call's length.
    let registered = unsafe { &*ffi::sqlite3_user_data(ctx).cast::<Registered>() };
    let argv = match usize::try_from(argc) {
        Ok(n) if n > 0 && !argv.is_null() => unsafe { std::slice::from_raw_parts(argv, n) },
        _ => &[],
    };
    let call = Call {
        args: Args { ctx, argv },
        env: &*registered.env,
        cache: registered.cache.as_deref(),
        settings: &registered.settings,
    };
    let host_rollback = call.cache.is_some_and(StatementCache::host_rollback);
    let (result, undo_needed) = savepoint::run_call(host_rollback, || (registered.body)(&call));
    if undo_needed {
        if let Some(cache) = call.cache {
            cache.mark_undo_needed();
        }
    }
    // SAFETY: `ctx` is the call's context; each result function copies
    // what it is given (SQLITE_TRANSIENT) before returning.
    unsafe {
        match result {
            Ok(SqlValue::Integer(n)) => ffi::sqlite3_result_int64(ctx, n),
            Ok(SqlValue::Real(x)) => ffi::sqlite3_result_double(ctx, x),
            Ok(SqlValue::Text(text)) => ffi::sqlite3_result_text64(
                ctx,
                text.as_ptr().cast(),
                text.len() as u64,
                ffi::SQLITE_TRANSIENT(),
                ffi::SQLITE_UTF8 as u8,
            ),
            Ok(SqlValue::Blob(blob)) => ffi::sqlite3_result_blob64(
                ctx,
                blob.as_ptr().cast(),
                blob.len() as u64,
                ffi::SQLITE_TRANSIENT(),
            ),
            Ok(SqlValue::Null) => ffi::sqlite3_result_null(ctx),
            Err(e) => {
                let message = e.message(registered.name);
                // The text first: it sets the code to SQLITE_ERROR.
                ffi::sqlite3_result_error(
                    ctx,
                    message.as_ptr().cast(),
                    c_int::try_from(message.len()).unwrap_or(c_int::MAX),
                );
                if let Some(code) = e.code {
                    ffi::sqlite3_result_error_code(ctx, code);
                }
            }
        }
    }
}

/// Frees a function's [`Registered`] when SQLite lets it go.
unsafe extern "C" fn drop_registered(registered: *mut c_void) {
    // SAFETY: made by `Box::into_raw` in `register_inner`, freed once.
    drop(unsafe { Box::from_raw(registered.cast::<Registered>()) });
}

/// The distinct SQL names the library adds, sorted.
pub fn function_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = FUNCTIONS.iter().map(|f| f.0).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Registers every function on `conn`, with the system clock and the
/// operating system's random source.
///
/// Every `register*` also loads the phone metadata (a few milliseconds, once
/// per process), so that the first business step does not pay for it.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    register_with(conn, Arc::new(SystemEnv))
}

/// Registers every function on `conn`, taking time and randomness from `env`.
///
/// Statements are prepared anew by each call: safe for any host, which may
/// close the connection at any time. (The loadable extension keeps them
/// with [`register_cached`], owned by a virtual table that SQLite
/// disconnects at the close: see `ext/loadable/src/lib.rs`.)
pub fn register_with(conn: &Connection, env: Arc<dyn Env>) -> rusqlite::Result<()> {
    register_inner(conn, env, None, Arc::default())
}

/// [`register_with`], with the host's knowledge-base settings (the crawl
/// allow-list the kb step's validation applies).
pub fn register_with_settings(
    conn: &Connection,
    env: Arc<dyn Env>,
    settings: kb::Settings,
) -> rusqlite::Result<()> {
    register_inner(conn, env, None, Arc::new(settings))
}

/// Registers every function on `conn` with prepared statements kept across
/// calls, for a host that owns its connection (the HTTP server): about
/// three times less work per call.
///
/// The returned guard owns those statements. Keep it alive while the
/// connection is used and drop it (or call
/// [`CachedStatements::release`]) **before** closing the connection: SQLite
/// refuses to close a connection with unfinalized statements.
pub fn register_cached(conn: &Connection, env: Arc<dyn Env>) -> rusqlite::Result<CachedStatements> {
    register_cached_with_settings(conn, env, kb::Settings::default())
}

/// [`register_cached`], with the host's knowledge-base settings.
pub fn register_cached_with_settings(
    conn: &Connection,
    env: Arc<dyn Env>,
    settings: kb::Settings,
) -> rusqlite::Result<CachedStatements> {
    let (statements, cache) = CachedStatements::new();
    register_inner(conn, env, Some(cache), Arc::new(settings))?;
    Ok(statements)
}

fn register_inner(
    conn: &Connection,
    env: Arc<dyn Env>,
    cache: Option<Arc<StatementCache>>,
    settings: Arc<kb::Settings>,
) -> rusqlite::Result<()> {
    for &(name, n_arg, flags, body) in FUNCTIONS {
        let registered = Box::new(Registered {
            name,
            body,
            env: Arc::clone(&env),
            cache: cache.clone(),
            settings: Arc::clone(&settings),
        });
        let c_name = CString::new(name).expect("function names are C strings");
        // SAFETY: `conn`'s handle is open; the box is SQLite's from here on,
        // freed by `drop_registered` when the function is replaced or the
        // connection closes, or at once if the registration fails.
        let rc = unsafe {
            ffi::sqlite3_create_function_v2(
                conn.handle(),
                c_name.as_ptr(),
                n_arg,
                flags.bits(),
                Box::into_raw(registered).cast::<c_void>(),
                Some(call_function),
                None,
                None,
                Some(drop_registered),
            )
        };
        if rc != ffi::SQLITE_OK {
            // SAFETY: `conn`'s handle is open; the message is copied at once.
            let why = unsafe { std::ffi::CStr::from_ptr(ffi::sqlite3_errmsg(conn.handle())) }
                .to_string_lossy()
                .into_owned();
            // A statement running: the function exists (loaded before) and
            // SQLite replaces none while a statement runs, the very
            // `SELECT load_extension(…)` that loads it again.
            let hint = if rc == ffi::SQLITE_BUSY {
                " (the extension is loaded on this connection already; SQLite replaces no \
                 function from inside a statement such as SELECT load_extension(...))"
            } else {
                ""
            };
            return Err(rusqlite::Error::SqliteFailure(
                ffi::Error::new(rc),
                Some(format!("registering {name}/{n_arg} failed: {why}{hint}")),
            ));
        }
    }
    // Pays the phone metadata's load now rather than in the first business
    // step; the number is valid, so nothing here can fail.
    let _ = validate::warm_up();
    Ok(())
}
