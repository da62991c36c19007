//! One call of an SQL function as its body sees it ([`Call`]: arguments,
//! time and randomness, the host's settings, connection), and the statement
//! cache of a [`crate::register_cached`] registration ([`CachedStatements`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use foldhash::fast::FixedState;
use rusqlite::ffi;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Statement};

use crate::env::Env;
use crate::error::{quote, Error, ErrorKind, Result};
use crate::kb::Settings;

/// The arguments and surroundings of one call.
pub struct Call<'a> {
    pub args: Args<'a>,
    pub env: &'a dyn Env,
    pub cache: Option<&'a StatementCache>,
    /// The host's knowledge-base settings (the crawl allow-list).
    pub settings: &'a Settings,
}

/// One call's SQLite context and arguments, as SQLite hands them to the
/// function (see `lib.rs`'s `call_function`).
pub struct Args<'a> {
    pub(crate) ctx: *mut ffi::sqlite3_context,
    pub(crate) argv: &'a [*mut ffi::sqlite3_value],
}

impl<'a> Args<'a> {
    /// The number of arguments.
    pub fn len(&self) -> usize {
        self.argv.len()
    }

    /// Argument `idx` (within `len`), borrowed from SQLite's value for the
    /// call's life; an internal error when SQLite had no memory to give its
    /// text (read as empty, it would be answered as the caller's mistake).
    pub fn get_raw(&self, idx: usize) -> Result<ValueRef<'a>> {
        let value = self.argv[idx];
        // SAFETY: `value` is one of the call's arguments, alive until the
        // function returns; the text or blob pointer is read after its
        // type, then its length, as SQLite asks (a conversion between the
        // two would move it).
        unsafe {
            Ok(match ffi::sqlite3_value_type(value) {
                ffi::SQLITE_INTEGER => ValueRef::Integer(ffi::sqlite3_value_int64(value)),
                ffi::SQLITE_FLOAT => ValueRef::Real(ffi::sqlite3_value_double(value)),
                ffi::SQLITE_TEXT => {
                    let text = ffi::sqlite3_value_text(value);
                    let len = ffi::sqlite3_value_bytes(value);
                    if text.is_null() {
                        return Err(Error::internal(format!(
                            "argument {} could not be read (out of memory)",
                            idx + 1
                        )));
                    }
                    ValueRef::Text(if len <= 0 {
                        &[]
                    } else {
                        std::slice::from_raw_parts(text, len as usize)
                    })
                }
                ffi::SQLITE_BLOB => {
                    let blob = ffi::sqlite3_value_blob(value);
                    let len = ffi::sqlite3_value_bytes(value);
                    ValueRef::Blob(if blob.is_null() || len <= 0 {
                        &[]
                    } else {
                        std::slice::from_raw_parts(blob.cast::<u8>(), len as usize)
                    })
                }
                _ => ValueRef::Null,
            })
        }
    }

    /// The connection the function was called on.
    fn db(&self) -> *mut ffi::sqlite3 {
        // SAFETY: `ctx` is the call's context, alive until it returns.
        unsafe { ffi::sqlite3_context_db_handle(self.ctx) }
    }
}

/// The connection a call runs on: the long-lived one of a
/// [`crate::register_cached`] registration, or a handle for this call only
/// (a non-owning wrapper: dropped, it finalizes its statements and leaves
/// the connection open).
pub enum CallConnection<'a> {
    Cached(MutexGuard<'a, CacheState>, &'a StatementCache),
    Fresh(Connection),
}

impl Deref for CallConnection<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        match self {
            CallConnection::Cached(guard, _) => match &**guard {
                CacheState::Ready(ready) => &ready.conn,
                // `conn()` hands out Cached guards only in the Ready state.
                _ => unreachable!("cached connection handed out before it was ready"),
            },
            CallConnection::Fresh(conn) => conn,
        }
    }
}

impl Drop for CallConnection<'_> {
    fn drop(&mut self) {
        if let CallConnection::Cached(guard, cache) = self {
            CURRENT.with(|current| current.set(std::ptr::null()));
            // A release asked for while this call held the statements (see
            // `CachedStatements::release`): done now that it is over.
            if cache.release_requested.load(Ordering::Acquire) {
                **guard = CacheState::Released;
            }
        }
    }
}

thread_local! {
    /// The statements of the cached connection a call on this thread holds
    /// (its [`CallConnection::Cached`] guard): set when the guard is handed
    /// out, cleared when it drops, so it never outlives the lock.
    static CURRENT: Cell<*const Ready> = const { Cell::new(std::ptr::null()) };
}

/// A cached registration's connection and the statements prepared on it,
/// kept by the address of their SQL text. Every statement the library runs
/// is a string literal, so its address names it: a lookup hashes two words
/// instead of the text (rusqlite's cache hashes it twice per use, with
/// SipHash, which cost about 5 % of a call).
pub struct Ready {
    // Declared before `conn`: dropped (finalized) before it.
    statements: RefCell<Kept>,
    conn: Connection,
}

// SAFETY: a `Ready` is reached only through the mutex of its
// `StatementCache` (or, while that lock is held, by the thread holding it),
// so its statements are never used by two threads at once; SQLite allows a
// connection and its statements to move between threads between uses, which
// is why rusqlite's `Connection` is `Send`.
unsafe impl Send for Ready {}

/// The address and length of a `&'static str` of SQL.
type StatementKey = (usize, usize);

/// Statements kept per connection; past it each new one takes the slot of
/// a kept one, in turn (a hot one, as likely as any). The library has
/// about 130 SQL literals, each step column and analytics column its own:
/// all of them fit, with room to grow.
const KEPT_STATEMENTS: usize = 256;

/// The kept statements: a slot each, found by key. A statement in use is
/// out of its slot (`None`), and goes back to it by the slot's number, so a
/// use hashes its key once.
#[derive(Default)]
struct Kept {
    slot_of: HashMap<StatementKey, usize, FixedState>,
    slots: Vec<(StatementKey, Option<Statement<'static>>)>,
    /// The slot the next new statement takes once all are in use.
    next_evicted: usize,
}

impl Kept {
    /// Takes the statement of `key` out of its slot: the slot's number, if
    /// it has one, and the statement, unless it is in use.
    fn take(&mut self, key: StatementKey) -> (Option<usize>, Option<Statement<'static>>) {
        match self.slot_of.get(&key) {
            Some(&slot) => (Some(slot), self.slots[slot].1.take()),
            None => (None, None),
        }
    }

    /// Puts a statement taken with `take` back. Of two statements of one
    /// SQL (the second prepared while the first was in use), the one back
    /// first is kept and the other finalized.
    fn put(&mut self, key: StatementKey, slot: Option<usize>, statement: Statement<'static>) {
        // A statement first prepared while a nested use prepared (and put
        // back) another of its SQL finds the slot that one took: one slot
        // per key, never a second one the map forgets.
        let slot = slot.or_else(|| self.slot_of.get(&key).copied());
        if let Some(slot) = slot {
            if let Some((kept_key, kept @ None)) = self.slots.get_mut(slot) {
                if *kept_key == key {
                    *kept = Some(statement);
                }
            }
            return;
        }
        if self.slots.len() < KEPT_STATEMENTS {
            self.slot_of.insert(key, self.slots.len());
            self.slots.push((key, Some(statement)));
            return;
        }
        let slot = self.next_evicted;
        self.next_evicted = (slot + 1) % KEPT_STATEMENTS;
        let (old_key, _) = self.slots[slot];
        self.slot_of.remove(&old_key);
        self.slot_of.insert(key, slot);
        // A statement in use keeps running: only its return finds its
        // slot taken, and it is finalized then.
        self.slots[slot] = (key, Some(statement));
    }

    #[cfg(test)]
    fn keys(&self) -> impl Iterator<Item = StatementKey> + '_ {
        self.slots.iter().map(|(key, _)| *key)
    }
}

impl Ready {
    /// Runs `f` on the statement of `sql`, prepared at its first use on
    /// this connection and kept for the next. The statement is out of its
    /// slot while `f` runs, so a nested use of the same SQL prepares a
    /// second one instead of sharing it.
    fn with<T>(
        &self,
        sql: &'static str,
        f: impl FnOnce(&mut Statement<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        let key = (sql.as_ptr() as usize, sql.len());
        let (slot, taken) = self.statements.borrow_mut().take(key);
        let mut statement = match taken {
            Some(statement) => statement,
            None => {
                // PERSISTENT, as rusqlite's cache does: a statement kept
                // for the connection's life must not take the lookaside
                // slots, or every call's own allocations fall back to malloc.
                let statement = self
                    .conn
                    .prepare_with_flags(sql, rusqlite::PrepFlags::SQLITE_PREPARE_PERSISTENT)?;
                // SAFETY: the statement borrows `self.conn`, which lives in
                // the same boxed `Ready` (its address never changes) and is
                // dropped after `statements`, so no statement outlives it.
                unsafe { std::mem::transmute::<Statement<'_>, Statement<'static>>(statement) }
            }
        };
        let result = f(&mut statement);
        // rusqlite resets a statement after each use; its bound values go.
        statement.clear_bindings();
        self.statements.borrow_mut().put(key, slot, statement);
        result
    }
}

/// Runs `f` on the statement of `sql` for `conn`: from the statements of the
/// cached connection this thread's call holds when `conn` is that
/// connection, else through rusqlite's statement cache.
pub fn with_statement<T>(
    conn: &Connection,
    sql: &'static str,
    f: impl FnOnce(&mut Statement<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let current = CURRENT.with(Cell::get);
    // SAFETY: CURRENT is non-null only while the guard that owns this
    // `Ready` is alive on this thread (cleared by CallConnection's drop).
    if let Some(ready) = unsafe { current.as_ref() } {
        // SAFETY: both handles are only compared, never used.
        if unsafe { ready.conn.handle() == conn.handle() } {
            return ready.with(sql, f);
        }
    }
    let mut statement = conn.prepare_cached(sql)?;
    f(&mut statement)
}

impl<'a> Call<'a> {
    /// The connection the function was called on.
    pub fn conn(&self) -> Result<CallConnection<'_>> {
        let fresh = || {
            // SAFETY: a non-owning wrapper of the call's connection, which
            // lives only for this call, on SQLite's thread, and is never
            // stored.
            unsafe { Connection::from_handle(self.args.db()) }
                .map(CallConnection::Fresh)
                .map_err(Error::from)
        };
        let Some(cache) = self.cache else {
            return fresh();
        };
        // try_lock: a call nested inside another call of this registration
        // (a host's function run by a trigger that the outer call's writes
        // fire may call the functions again) takes the uncached path
        // instead of deadlocking.
        let mut guard = match cache.state.try_lock() {
            Ok(guard) => guard,
            // A call that panicked while it held the statements (a bug,
            // answered as an internal error): they are whole between two
            // uses, each out of its slot while it runs and dropped with the
            // panic, so the cache goes on, where every later call took the
            // uncached path.
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                cache.state.clear_poison();
                poisoned.into_inner()
            }
            Err(std::sync::TryLockError::WouldBlock) => return fresh(),
        };
        if cache.release_requested.load(Ordering::Acquire) {
            *guard = CacheState::Released;
        }
        match &*guard {
            CacheState::Released => return fresh(),
            // A function belongs to the one connection it was registered on,
            // so the handle wrapped at the first call is this call's too.
            CacheState::Ready(_) => {}
            CacheState::Empty => {
                // SAFETY: a non-owning wrapper of the call's connection; it
                // is dropped (finalizing its statements) by
                // `CachedStatements::release`, which the owner of the
                // connection calls before closing it.
                let conn = unsafe { Connection::from_handle(self.args.db()) }?;
                conn.set_prepared_statement_cache_capacity(64);
                *guard = CacheState::Ready(Box::new(Ready {
                    statements: RefCell::new(Kept::default()),
                    conn,
                }));
            }
        }
        if let CacheState::Ready(ready) = &*guard {
            let ready: *const Ready = &**ready;
            CURRENT.with(|current| current.set(ready));
        }
        Ok(CallConnection::Cached(guard, cache))
    }

    /// Argument `idx` as text; SQL NULL (or a missing argument) is `None`.
    /// Borrowed from SQLite's value, which lives as long as the call: no
    /// copy of a payload or an id.
    pub fn text(&self, idx: usize, name: &str, kind: ErrorKind) -> Result<Option<&'a str>> {
        if idx >= self.args.len() {
            return Ok(None);
        }
        match self.args.get_raw(idx)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                .map(Some)
                .map_err(|_| Error::new(kind, format!("{name} is not valid UTF-8"))),
            ValueRef::Integer(_) => Err(Error::new(
                kind,
                format!("{name} must be text, got an integer"),
            )),
            ValueRef::Real(_) => Err(Error::new(kind, format!("{name} must be text, got a real"))),
            ValueRef::Blob(_) => Err(Error::new(kind, format!("{name} must be text, got a blob"))),
        }
    }

    /// Argument `idx` as text taken as it came (an HTTP header value): text
    /// or a blob, invalid UTF-8 replaced by U+FFFD; SQL NULL is `None`.
    pub fn lossy_text(&self, idx: usize, name: &str) -> Result<Option<String>> {
        if idx >= self.args.len() {
            return Ok(None);
        }
        match self.args.get_raw(idx)? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
                Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
            }
            ValueRef::Integer(_) => Err(Error::invalid_field(format!(
                "{name} must be text, got an integer"
            ))),
            ValueRef::Real(_) => Err(Error::invalid_field(format!(
                "{name} must be text, got a real"
            ))),
        }
    }

    /// Argument `idx` as another system reported it (a provider's message
    /// id or error, passed on by a sender): any SQL type taken as text (a
    /// number in its shortest decimal form, invalid UTF-8 replaced by U+FFFD), never
    /// refused, since a refused report leaves what it reports unrecorded;
    /// SQL NULL is `None`.
    pub fn reported_text(&self, idx: usize) -> Result<Option<String>> {
        if idx >= self.args.len() {
            return Ok(None);
        }
        Ok(match self.args.get_raw(idx)? {
            ValueRef::Null => None,
            ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
                Some(String::from_utf8_lossy(bytes).into_owned())
            }
            ValueRef::Integer(n) => Some(n.to_string()),
            ValueRef::Real(x) => Some(x.to_string()),
        })
    }

    /// Argument `idx` as text that must be given; the error names it.
    pub fn required_text(&self, idx: usize, name: &str) -> Result<&'a str> {
        self.text(idx, name, ErrorKind::InvalidField)?
            .ok_or_else(|| Error::invalid_field(format!("{name} is required")))
    }

    /// Argument `idx` as an integer (a real of integer value counts).
    pub fn integer(&self, idx: usize, name: &str) -> Result<i64> {
        // The value quoted, as every refusal quotes what it refuses.
        let got = match self.args.get_raw(idx)? {
            ValueRef::Integer(n) => return Ok(n),
            ValueRef::Real(x) if x.fract() == 0.0 && x.abs() < 9.0e15 => return Ok(x as i64),
            // Debug: 1e300 in five characters, where Display writes 301.
            ValueRef::Real(x) => format!("the real {x:?}"),
            ValueRef::Null => return Err(Error::invalid_field(format!("{name} is required"))),
            ValueRef::Text(t) => format!("the text {}", quote(&String::from_utf8_lossy(t))),
            ValueRef::Blob(b) => format!("a blob of {} bytes", b.len()),
        };
        Err(Error::invalid_field(format!(
            "{name} must be an integer, got {got}"
        )))
    }

    pub fn payload(&self, idx: usize) -> Result<Option<&'a str>> {
        self.text(idx, "payload", ErrorKind::InvalidJson)
    }

    pub fn session_id(&self) -> Result<&'a str> {
        self.text(0, "session_id", ErrorKind::InvalidField)?
            .ok_or_else(|| Error::invalid_field("session_id is required"))
    }
}

/// The prepared statements of a [`crate::register_cached`] registration.
pub struct CachedStatements {
    cache: Arc<StatementCache>,
}

impl CachedStatements {
    /// A new, empty cache, and the handle each registered function keeps.
    pub(crate) fn new() -> (CachedStatements, Arc<StatementCache>) {
        let cache = Arc::new(StatementCache {
            state: Mutex::new(CacheState::Empty),
            release_requested: AtomicBool::new(false),
            host_rollback: AtomicBool::new(false),
            undo_needed: AtomicBool::new(false),
        });
        (
            CachedStatements {
                cache: Arc::clone(&cache),
            },
            cache,
        )
    }

    /// Tells the writers that the host undoes a failed call itself: `true`
    /// while the host runs calls inside a transaction of its own. The
    /// writers then skip their savepoint (see `savepoint.rs`), and a call
    /// that fails after changing rows is marked: after each call the host
    /// asks [`CachedStatements::take_undo_needed`], and on `true` rolls its
    /// transaction back and runs each call again alone, with this set to
    /// `false`. Off by default; outside a transaction it has no effect.
    pub fn set_host_rollback(&self, on: bool) {
        self.cache.host_rollback.store(on, Ordering::Relaxed);
        self.cache.undo_needed.store(false, Ordering::Relaxed);
    }

    /// Whether a call since the last question failed after changing rows
    /// under host rollback: its writes are still in the host's transaction,
    /// which must be rolled back. Clears the mark.
    pub fn take_undo_needed(&self) -> bool {
        self.cache.undo_needed.swap(false, Ordering::Relaxed)
    }

    /// Finalizes the cached statements; later calls prepare per call.
    ///
    /// Never waits: SQLite may ask for it in the middle of a call of this
    /// registration, on the call's own thread (the loadable extension's
    /// owner of the statements is a virtual table, which SQLite disconnects
    /// when a statement is prepared again after its module was dropped or
    /// replaced, or when the host closes the connection from inside a
    /// call). The statements are then in use: the call finalizes them as it
    /// ends.
    pub fn release(&self) {
        self.cache.release_requested.store(true, Ordering::Release);
        match self.cache.state.try_lock() {
            Ok(mut state) => *state = CacheState::Released,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                *poisoned.into_inner() = CacheState::Released;
            }
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
    }
}

impl Drop for CachedStatements {
    fn drop(&mut self) {
        self.release();
    }
}

/// What the registered functions share: the connection wrapped at the first
/// call, which owns the cached statements.
pub struct StatementCache {
    state: Mutex<CacheState>,
    /// Set by [`CachedStatements::release`]: the statements are finalized
    /// by whoever holds `state` next, or now if no call holds it.
    release_requested: AtomicBool,
    /// See [`CachedStatements::set_host_rollback`].
    host_rollback: AtomicBool,
    /// See [`CachedStatements::take_undo_needed`].
    undo_needed: AtomicBool,
}

impl StatementCache {
    /// Whether the host undoes failed calls (see `savepoint.rs`).
    pub fn host_rollback(&self) -> bool {
        self.host_rollback.load(Ordering::Relaxed)
    }

    /// A call failed after changing rows, under host rollback.
    pub fn mark_undo_needed(&self) {
        self.undo_needed.store(true, Ordering::Relaxed);
    }
}

pub enum CacheState {
    /// No call yet.
    Empty,
    /// Boxed: the statements borrow the connection at its address.
    Ready(Box<Ready>),
    /// The owner released the statements: calls prepare per call.
    Released,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::PinnedEnv;

    /// Statements of a connection that lives as long as the test binary.
    fn leaked_connection() -> &'static Connection {
        Box::leak(Box::new(Connection::open_in_memory().unwrap()))
    }

    #[test]
    fn a_statement_goes_back_to_its_slot_and_of_two_of_one_sql_the_later_back_is_finalized() {
        let conn = leaked_connection();
        let mut kept = Kept::default();
        let key = (1, 8);
        assert!(matches!(kept.take(key), (None, None)));
        kept.put(key, None, conn.prepare("SELECT 1").unwrap());
        let (slot, first) = kept.take(key);
        assert_eq!(slot, Some(0));
        let first = first.expect("kept statement");
        // In use: a nested use of the same SQL finds the slot empty.
        assert!(matches!(kept.take(key), (Some(0), None)));
        kept.put(key, Some(0), conn.prepare("SELECT 1").unwrap());
        kept.put(key, slot, first);
        assert_eq!(kept.keys().collect::<Vec<_>>(), [key]);
        assert!(matches!(kept.take(key), (Some(0), Some(_))));
    }

    #[test]
    fn a_statement_first_prepared_around_a_nested_use_of_its_sql_takes_no_second_slot() {
        let conn = leaked_connection();
        let mut kept = Kept::default();
        let key = (1, 8);
        // The outer use finds nothing and prepares; so does the nested one,
        // which comes back first and takes a slot.
        assert!(matches!(kept.take(key), (None, None)));
        assert!(matches!(kept.take(key), (None, None)));
        kept.put(key, None, conn.prepare("SELECT 1").unwrap());
        kept.put(key, None, conn.prepare("SELECT 1").unwrap());
        assert_eq!(kept.keys().collect::<Vec<_>>(), [key]);
        assert_eq!(kept.slot_of.len(), 1);
        assert!(matches!(kept.take(key), (Some(0), Some(_))));
    }

    #[test]
    fn past_the_limit_new_statements_take_the_slots_in_turn() {
        let conn = leaked_connection();
        let mut kept = Kept::default();
        let keys: Vec<StatementKey> = (0..KEPT_STATEMENTS + 2).map(|i| (i, 8)).collect();
        for &key in &keys[..KEPT_STATEMENTS] {
            kept.put(key, None, conn.prepare("SELECT 1").unwrap());
        }
        // Slot 0 is in use when a new statement takes it: its return
        // finds its slot gone, and it is finalized.
        let (slot, in_use) = kept.take(keys[0]);
        for &key in &keys[KEPT_STATEMENTS..] {
            kept.put(key, None, conn.prepare("SELECT 2").unwrap());
        }
        kept.put(keys[0], slot, in_use.unwrap());
        assert_eq!(kept.slot_of.len(), KEPT_STATEMENTS);
        assert!(matches!(kept.take(keys[0]), (None, None)));
        assert!(matches!(kept.take(keys[1]), (None, None)));
        assert!(matches!(
            kept.take(keys[KEPT_STATEMENTS]),
            (Some(0), Some(_))
        ));
        assert!(matches!(
            kept.take(keys[KEPT_STATEMENTS + 1]),
            (Some(1), Some(_))
        ));
        assert!(matches!(kept.take(keys[2]), (Some(2), Some(_))));
    }

    /// The statements the library runs under `register_cached` are kept in
    /// its own list, keyed by literal, not in rusqlite's cache: the
    /// integration tests see the same statement count either way.
    #[test]
    fn a_cached_registration_keeps_its_statements_by_literal() {
        let conn = Connection::open_in_memory().unwrap();
        let guard = crate::register_cached(&conn, PinnedEnv::new(0, 3)).unwrap();
        conn.query_row("SELECT onboarding_migrate()", [], |_| Ok(()))
            .unwrap();
        let kept = || {
            let state = guard.cache.state.lock().unwrap();
            let CacheState::Ready(ready) = &*state else {
                panic!("no call has wrapped the connection");
            };
            let keys: Vec<StatementKey> = ready.statements.borrow().keys().collect();
            keys
        };
        let create = || {
            conn.query_row("SELECT onboarding_create()", [], |r| r.get::<_, String>(0))
                .unwrap()
        };
        create();
        let mut first = kept();
        assert!(!first.is_empty());
        create();
        let mut second = kept();
        first.sort_unstable();
        second.sort_unstable();
        assert_eq!(first, second);
        second.dedup();
        assert_eq!(first.len(), second.len(), "a literal kept twice");
        guard.release();
        assert!(matches!(
            &*guard.cache.state.lock().unwrap(),
            CacheState::Released
        ));
    }

    /// A clock and a random source whose next draw panics once armed: a
    /// bug inside a call, in the middle of it.
    struct PanicsWhenArmed {
        env: Arc<PinnedEnv>,
        armed: std::sync::atomic::AtomicBool,
    }

    impl Env for PanicsWhenArmed {
        fn now_ms(&self) -> i64 {
            self.env.now_ms()
        }

        fn fill_random(&self, buf: &mut [u8]) -> std::result::Result<(), String> {
            if self.armed.swap(false, Ordering::SeqCst) {
                panic!("a bug");
            }
            self.env.fill_random(buf)
        }
    }

    /// A call that panics while it holds the cached statements is answered
    /// as an internal error, and the calls after it still use them: the
    /// panic poisoned their lock, and every later call took the uncached
    /// path (three times the work) for the rest of the process.
    #[test]
    fn a_call_that_panics_leaves_the_statements_to_the_next() {
        let conn = Connection::open_in_memory().unwrap();
        let env = Arc::new(PanicsWhenArmed {
            env: PinnedEnv::new(0, 3),
            armed: std::sync::atomic::AtomicBool::new(false),
        });
        let guard = crate::register_cached(&conn, env.clone()).unwrap();
        conn.query_row("SELECT onboarding_migrate()", [], |_| Ok(()))
            .unwrap();
        let create = || conn.query_row("SELECT onboarding_create()", [], |r| r.get::<_, String>(0));
        create().unwrap();
        env.armed.store(true, Ordering::SeqCst);
        let refused = create().unwrap_err();
        assert_eq!(
            refused.to_string(),
            "onboarding_create: internal: the call panicked: a bug"
        );
        create().unwrap();
        assert!(!guard.cache.state.is_poisoned());
        assert!(matches!(
            &*guard.cache.state.lock().unwrap(),
            CacheState::Ready(_)
        ));
        assert_eq!(
            conn.query_row("SELECT count(*) FROM main.tenants", [], |r| r
                .get::<_, i64>(0))
                .unwrap(),
            2
        );
        guard.release();
    }
}
