//! Tenant onboarding as SQL functions.
//!
//! ```
//! use rusqlite::Connection;
//!
//! let conn = Connection::open_in_memory().unwrap();
//! onboarding::register(&conn).unwrap();
//! let version: i64 = conn.query_row("SELECT onboarding_migrate()", [], |r| r.get(0)).unwrap();
//! assert_eq!(version, 2);
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
//! | `onboarding_migrate()` | `migrate.rs` |
//! | `onboarding_version()` | here |
//! | `onboarding_create(payload)` | `create.rs` |
//! | `onboarding_step(session_id, step, payload)` | `step.rs`, `validate.rs` |
//! | `onboarding_complete(session_id, payload)` | `complete.rs` |
//! | `onboarding_get(session_id)` | `get.rs` |
//! | `onboarding_agent_types()`, `onboarding_voices()` | `catalog.rs` |
//! | `onboarding_kb_*(…)`: the knowledge base | `kb/` |

mod atomic;
pub mod catalog;
mod complete;
mod create;
mod db;
pub mod env;
mod error;
mod get;
pub mod kb;
mod migrate;
mod session;
mod step;
pub mod validate;

use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;

pub use env::{Env, PinnedEnv, SystemEnv};
pub use error::{quote, Error, ErrorKind, Result};
pub use migrate::{latest_version, migrate, MIGRATIONS};

/// `onboarding_version()`: the library's version, e.g. `v0.1.0`.
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// The oldest host SQLite the functions work with: 3.35.0 for `RETURNING`
/// (rusqlite 0.40's loadable flavour itself needs 3.34.1).
pub const MIN_SQLITE_VERSION: i32 = 3_035_000;

/// `Ok` when a host SQLite (as `sqlite3_libversion_number()`) is recent
/// enough, else the error text the extension's loader reports.
pub fn check_host_version(host: i32) -> std::result::Result<(), String> {
    if host >= MIN_SQLITE_VERSION {
        return Ok(());
    }
    let dotted = |v: i32| format!("{}.{}.{}", v / 1_000_000, v / 1000 % 1000, v % 1000);
    Err(format!(
        "onboarding needs SQLite >= {}, host is {}",
        dotted(MIN_SQLITE_VERSION),
        dotted(host)
    ))
}

/// What one SQL function does with its arguments.
type Body = fn(&Call<'_>) -> Result<SqlValue>;

/// The arguments and surroundings of one call.
struct Call<'a> {
    ctx: &'a Context<'a>,
    env: &'a dyn Env,
    cache: Option<&'a StatementCache>,
    settings: &'a kb::Settings,
}

/// The connection a call runs on: the long-lived one of a
/// [`register_cached`] registration, or a handle for this call only.
enum CallConnection<'a> {
    Cached(MutexGuard<'a, CacheState>),
    Fresh(rusqlite::functions::ConnectionRef<'a>),
}

impl Deref for CallConnection<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            CallConnection::Cached(guard) => match &**guard {
                CacheState::Ready(conn) => conn,
                // `conn()` hands out Cached guards only in the Ready state.
                _ => unreachable!("cached connection handed out before it was ready"),
            },
            CallConnection::Fresh(conn) => conn,
        }
    }
}

impl Call<'_> {
    /// The connection the function was called on.
    fn conn(&self) -> Result<CallConnection<'_>> {
        let fresh = || {
            // SAFETY: the reference lives only for this call, on SQLite's
            // thread, and is never stored.
            unsafe { self.ctx.get_connection() }
                .map(CallConnection::Fresh)
                .map_err(Error::from)
        };
        let Some(cache) = self.cache else {
            return fresh();
        };
        // try_lock: a call nested inside another call of this registration
        // (not reachable today: the functions are DIRECTONLY) takes the
        // uncached path instead of deadlocking.
        let Ok(mut guard) = cache.state.try_lock() else {
            return fresh();
        };
        match &*guard {
            CacheState::Released => return fresh(),
            // A function belongs to the one connection it was registered on,
            // so the handle wrapped at the first call is this call's too.
            CacheState::Ready(_) => {}
            CacheState::Empty => {
                // SAFETY: as in `fresh`: used only within this call.
                let this_call = unsafe { self.ctx.get_connection() }?;
                // SAFETY: a non-owning wrapper of the same handle; it is
                // dropped (finalizing its statements) by
                // `CachedStatements::release`, which the owner of the
                // connection calls before closing it.
                let conn = unsafe { Connection::from_handle(this_call.handle()) }?;
                conn.set_prepared_statement_cache_capacity(64);
                *guard = CacheState::Ready(conn);
            }
        }
        Ok(CallConnection::Cached(guard))
    }

    /// Argument `idx` as text; SQL NULL (or a missing argument) is `None`.
    fn text(&self, idx: usize, name: &str, kind: ErrorKind) -> Result<Option<String>> {
        if idx >= self.ctx.len() {
            return Ok(None);
        }
        match self.ctx.get_raw(idx) {
            ValueRef::Null => Ok(None),
            ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                .map(|s| Some(s.to_string()))
                .map_err(|_| Error::new(kind, format!("{name} is not valid UTF-8"))),
            ValueRef::Integer(_) => Err(Error::new(
                kind,
                format!("{name} must be text, got an integer"),
            )),
            ValueRef::Real(_) => Err(Error::new(kind, format!("{name} must be text, got a real"))),
            ValueRef::Blob(_) => Err(Error::new(kind, format!("{name} must be text, got a blob"))),
        }
    }

    fn payload(&self, idx: usize) -> Result<Option<String>> {
        self.text(idx, "payload", ErrorKind::InvalidJson)
    }

    fn session_id(&self) -> Result<String> {
        self.text(0, "session_id", ErrorKind::InvalidField)?
            .ok_or_else(|| Error::invalid_field("session_id is required"))
    }
}

/// JSON text of a value. `serde_json::to_string` writes into one buffer; the
/// `Display` impl goes through the formatter a piece at a time (about 5% of
/// an onboarding's instructions, measured with callgrind).
pub(crate) fn json_string(value: &serde_json::Value) -> String {
    // Serializing a `Value` cannot fail: its map keys are always strings.
    serde_json::to_string(value).unwrap_or_default()
}

fn json_text(value: serde_json::Value) -> SqlValue {
    SqlValue::Text(json_string(&value))
}

/// Writers: never DETERMINISTIC (SQLite may then call them once for many
/// rows), and DIRECTONLY so that no view, trigger or schema default can
/// run them behind a user's back.
const WRITER: FunctionFlags = FunctionFlags::SQLITE_UTF8.union(FunctionFlags::SQLITE_DIRECTONLY);
/// `onboarding_get` reads private data: also direct-only.
const READER: FunctionFlags = WRITER;
/// Constant catalogues: safe anywhere.
const CONSTANT: FunctionFlags = FunctionFlags::SQLITE_UTF8
    .union(FunctionFlags::SQLITE_DETERMINISTIC)
    .union(FunctionFlags::SQLITE_INNOCUOUS);

/// Every function the library adds: name, number of arguments, flags, body.
const FUNCTIONS: &[(&str, i32, FunctionFlags, Body)] = &[
    ("onboarding_migrate", 0, WRITER, |c| {
        migrate(&*c.conn()?, c.env).map(SqlValue::Integer)
    }),
    ("onboarding_version", 0, CONSTANT, |_| {
        Ok(SqlValue::Text(VERSION.to_string()))
    }),
    ("onboarding_create", 0, WRITER, |c| {
        create::create(&*c.conn()?, c.env, None).map(json_text)
    }),
    ("onboarding_create", 1, WRITER, |c| {
        create::create(&*c.conn()?, c.env, c.payload(0)?.as_deref()).map(json_text)
    }),
    ("onboarding_step", 3, WRITER, |c| {
        let session_id = c.session_id()?;
        let step = c
            .text(1, "step", ErrorKind::InvalidField)?
            .ok_or_else(|| Error::invalid_field("step is required"))?;
        let payload = c.payload(2)?;
        let conn = c.conn()?;
        step::step(
            &conn,
            c.env,
            c.settings,
            &session_id,
            &step,
            payload.as_deref(),
        )
        .map(json_text)
    }),
    ("onboarding_complete", 1, WRITER, |c| {
        complete::complete(&*c.conn()?, c.env, &c.session_id()?, None).map(json_text)
    }),
    ("onboarding_complete", 2, WRITER, |c| {
        let payload = c.payload(1)?;
        complete::complete(&*c.conn()?, c.env, &c.session_id()?, payload.as_deref()).map(json_text)
    }),
    ("onboarding_get", 1, READER, |c| {
        get::get(&*c.conn()?, &c.session_id()?).map(json_text)
    }),
    ("onboarding_agent_types", 0, CONSTANT, |_| {
        Ok(json_text(catalog::agent_types_json()))
    }),
    ("onboarding_voices", 0, CONSTANT, |_| {
        Ok(json_text(catalog::voices_json()))
    }),
    ("onboarding_kb_get", 1, READER, |c| {
        kb::read::get(&*c.conn()?, &c.session_id()?).map(json_text)
    }),
    ("onboarding_kb_search", 1, READER, |c| {
        kb::read::search(&*c.conn()?, c.payload(0)?.as_deref()).map(json_text)
    }),
    ("onboarding_kb_claim", 1, WRITER, |c| {
        kb::worker::claim(&*c.conn()?, c.env, c.payload(0)?.as_deref()).map(json_text)
    }),
    ("onboarding_kb_store_page", 1, WRITER, |c| {
        kb::worker::store_page(&*c.conn()?, c.env, c.payload(0)?.as_deref()).map(json_text)
    }),
    ("onboarding_kb_renew", 1, WRITER, |c| {
        kb::worker::renew(&*c.conn()?, c.env, c.payload(0)?.as_deref()).map(json_text)
    }),
    ("onboarding_kb_finish", 1, WRITER, |c| {
        kb::worker::finish(&*c.conn()?, c.env, c.payload(0)?.as_deref()).map(json_text)
    }),
];

/// The distinct SQL names the library adds, sorted.
pub fn function_names() -> Vec<&'static str> {
    let mut names: Vec<&str> = FUNCTIONS.iter().map(|f| f.0).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Registers every function on `conn`, with the system clock and the
/// operating system's random source.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    register_with(conn, Arc::new(SystemEnv))
}

/// Registers every function on `conn`, taking time and randomness from `env`.
///
/// Statements are prepared anew by each call: safe for any host, including
/// the loadable extension, whose host may close the connection at any time.
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
    let cache = Arc::new(StatementCache {
        state: Mutex::new(CacheState::Empty),
    });
    register_inner(conn, env, Some(Arc::clone(&cache)), Arc::new(settings))?;
    Ok(CachedStatements { cache })
}

/// The prepared statements of a [`register_cached`] registration.
pub struct CachedStatements {
    cache: Arc<StatementCache>,
}

impl CachedStatements {
    /// Finalizes the cached statements; later calls prepare per call.
    pub fn release(&self) {
        let mut state = match self.cache.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        };
        *state = CacheState::Released;
    }
}

impl Drop for CachedStatements {
    fn drop(&mut self) {
        self.release();
    }
}

struct StatementCache {
    state: Mutex<CacheState>,
}

enum CacheState {
    Empty,
    Ready(Connection),
    Released,
}

fn register_inner(
    conn: &Connection,
    env: Arc<dyn Env>,
    cache: Option<Arc<StatementCache>>,
    settings: Arc<kb::Settings>,
) -> rusqlite::Result<()> {
    for &(name, n_arg, flags, body) in FUNCTIONS {
        let env = Arc::clone(&env);
        let cache = cache.clone();
        let settings = Arc::clone(&settings);
        conn.create_scalar_function(name, n_arg, flags, move |ctx| {
            let call = Call {
                ctx,
                env: &*env,
                cache: cache.as_deref(),
                settings: &settings,
            };
            body(&call).map_err(|e| rusqlite::Error::UserFunctionError(e.message(name).into()))
        })
        .map_err(|e| {
            rusqlite::Error::UserFunctionError(
                format!("registering {name}/{n_arg} failed: {e}").into(),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_version_check_names_both_versions() {
        assert_eq!(check_host_version(3_040_001), Ok(()));
        assert_eq!(check_host_version(3_035_000), Ok(()));
        assert_eq!(
            check_host_version(3_034_001),
            Err("onboarding needs SQLite >= 3.35.0, host is 3.34.1".to_string())
        );
    }
}
