//! Several connections on one database file, as several processes of any
//! SQLite client would hold: a writer waits out the busy timeout for the
//! write lock instead of failing at once, says so when the timeout passes,
//! and writes nothing then; a reader never takes the write lock.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::Db;
use rusqlite::{Connection, OpenFlags};
use serde_json::{json, Value};

/// Two connections to one migrated WAL file, a session created through
/// the first, and the file's write lock held by a third connection on
/// another thread until [`Locked::release`].
struct Locked {
    dir: tempfile::TempDir,
    first: Db,
    /// Registered too, with a busy timeout of the fixture's `busy_ms`.
    second: Db,
    session: String,
    release: mpsc::Sender<()>,
    holder: std::thread::JoinHandle<()>,
}

/// Two registered connections to one migrated WAL file (in `dir`,
/// `onboarding.db`), the second with a busy timeout of `busy_ms`.
fn two_on_one_wal_file(busy_ms: u64) -> (tempfile::TempDir, Db, Db) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onboarding.db");
    let first = Db::on(Connection::open(&path).unwrap());
    first
        .conn
        .execute_batch("PRAGMA journal_mode = WAL")
        .unwrap();
    let second = Db::on(Connection::open(&path).unwrap());
    second
        .conn
        .busy_timeout(Duration::from_millis(busy_ms))
        .unwrap();
    (dir, first, second)
}

impl Locked {
    fn new(busy_ms: u64) -> Locked {
        let (dir, first, second) = two_on_one_wal_file(busy_ms);
        let path = dir.path().join("onboarding.db");
        let session = first.create();
        let (release, holder) = hold_write_lock(path);
        Locked {
            dir,
            first,
            second,
            session,
            release,
            holder,
        }
    }

    /// Lets the holder commit (unless told already), and waits until it has.
    fn release(self) -> (tempfile::TempDir, Db, Db, String) {
        let _ = self.release.send(());
        self.holder.join().unwrap();
        (self.dir, self.first, self.second, self.session)
    }
}

/// Holds the write lock of the database file at `path` from another
/// thread until told to (or the sender is gone), then commits.
fn hold_write_lock(path: std::path::PathBuf) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (locked_tx, locked_rx) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS host_notes (note TEXT); INSERT INTO host_notes VALUES (1)")
            .unwrap();
        locked_tx.send(()).unwrap();
        // Bounded: the test sends at once, or is gone.
        let _ = release_rx.recv_timeout(Duration::from_secs(30));
        conn.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    (release, holder)
}

/// Lets the holder commit `ms` milliseconds from now, from another thread.
fn release_after(locked: &Locked, ms: u64) -> std::thread::JoinHandle<()> {
    let release = locked.release.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(ms));
        release.send(()).unwrap();
    })
}

/// A read-only connection to the locked file, with the functions.
fn read_only(locked: &Locked) -> Connection {
    let conn = Connection::open_with_flags(
        locked.dir.path().join("onboarding.db"),
        OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    onboarding::register(&conn).unwrap();
    conn
}

#[test]
fn a_step_waits_for_another_connections_write_lock_then_saves() {
    let locked = Locked::new(20_000);
    let s = locked.session.clone();
    // The holder commits a moment after the step started waiting.
    let releaser = release_after(&locked, 200);
    let saved = locked
        .second
        .step(&s, "channels", r#"{"channels":["phone","sms"]}"#)
        .unwrap();
    releaser.join().unwrap();
    let (_dir, first, _second, _) = locked.release();
    assert_eq!(saved, common::step_answer(&s, "channels", 3, 50));
    assert_eq!(
        first.get(&s)["steps"]["channels"],
        serde_json::json!({"channels": ["phone", "sms"]})
    );
}

/// Inside the caller's deferred transaction (`BEGIN`, as better-sqlite3's
/// `db.transaction()` and Go's `BeginTx` open it) that has read nothing yet,
/// a step waits for the write lock as in autocommit mode; past the busy
/// timeout it says why. One that has read already cannot wait: SQLite
/// refuses at once to upgrade its read lock.
#[test]
fn inside_a_deferred_transaction_a_step_waits_for_the_write_lock() {
    let locked = Locked::new(20_000);
    let s = locked.session.clone();
    // Timed from before the release is scheduled: the release comes 300 ms
    // after this at the earliest, however late this thread runs next.
    let started = std::time::Instant::now();
    let releaser = release_after(&locked, 300);
    let second = &locked.second;
    second.conn.execute_batch("BEGIN").unwrap();
    let saved = second.step(&s, "channels", r#"{"channels":["sms"]}"#);
    let waited = started.elapsed();
    second.conn.execute_batch("COMMIT").unwrap();
    releaser.join().unwrap();
    let (_dir, first, second, _) = locked.release();
    assert_eq!(saved, Ok(common::step_answer(&s, "channels", 3, 50)));
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert_eq!(
        first.get(&s)["steps"]["channels"],
        serde_json::json!({"channels": ["sms"]})
    );

    // Past the busy timeout: the reason, and nothing written.
    second.conn.busy_timeout(Duration::from_millis(50)).unwrap();
    let (release, holder) = hold_write_lock(_dir.path().join("onboarding.db"));
    second.conn.execute_batch("BEGIN").unwrap();
    let refused = second.step(&s, "channels", r#"{"channels":["phone"]}"#);
    // SQLite's own code for it, which a client can tell from other errors
    // and retry on (it was SQLITE_ERROR), with the contract's text.
    let code = second
        .conn
        .query_row(
            "SELECT onboarding_step(?1, 'channels', '{\"channels\":[\"phone\"]}')",
            [&s],
            |r| r.get::<_, String>(0),
        )
        .unwrap_err()
        .sqlite_error()
        .map(|e| (e.code, e.extended_code));
    second.conn.execute_batch("ROLLBACK").unwrap();
    release.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(
        refused.unwrap_err(),
        "onboarding_step: internal: database is locked: another connection held the write \
         lock past this connection's busy timeout (PRAGMA busy_timeout); retry later"
    );
    assert_eq!(
        code,
        Some((
            rusqlite::ErrorCode::DatabaseBusy,
            rusqlite::ffi::SQLITE_BUSY
        ))
    );
    assert_eq!(
        first.get(&s)["steps"]["channels"],
        serde_json::json!({"channels": ["sms"]})
    );
}

/// A deferred transaction that has read cannot wait for the write lock:
/// the call says so at once, and how to avoid it, while another connection
/// holds the lock and once it has written; nothing is written. The same
/// transaction's reads go on, and a fresh one saves.
#[test]
fn inside_a_deferred_transaction_that_has_read_a_step_says_why_it_cannot_wait() {
    let (dir, first, second) = two_on_one_wal_file(20_000);
    let s = first.create();
    let before = first.snapshot();
    let (release, holder) = hold_write_lock(dir.path().join("onboarding.db"));
    second
        .conn
        .execute_batch("BEGIN; SELECT count(*) FROM tenants")
        .unwrap();
    let started = std::time::Instant::now();
    let while_locked = second.step(&s, "channels", r#"{"channels":["sms"]}"#);
    let waited = started.elapsed();
    // A call that writes nothing answers as alone: a refusal, a read.
    let refused = second.step(&s, "channels", r#"{"channels":["fax"]}"#);
    let unknown = second.step("onb_nope", "channels", r#"{"channels":["sms"]}"#);
    release.send(()).unwrap();
    holder.join().unwrap();
    let after_a_write = second.step(&s, "channels", r#"{"channels":["sms"]}"#);
    let still_reads = second.get(&s)["steps"]["channels"].clone();
    second.conn.execute_batch("ROLLBACK").unwrap();
    let why = "onboarding_step: internal: database is locked: this transaction has read \
               already, and SQLite cannot turn its read into a write while another \
               connection holds the write lock or has written since the read (open the \
               transaction with BEGIN IMMEDIATE, or call the writers before it reads)";
    assert_eq!(while_locked.unwrap_err(), why);
    // At once, not after the 20 s busy timeout.
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(
        refused.unwrap_err(),
        "onboarding_step: invalid_field: channels lists 'fax', which is not a channel \
         (expected one of phone, sms, whatsapp, email)"
    );
    assert_eq!(
        unknown.unwrap_err(),
        "onboarding_step: not_found: session 'onb_nope' does not exist"
    );
    assert_eq!(after_a_write.unwrap_err(), why);
    assert_eq!(still_reads, serde_json::Value::Null);
    assert_eq!(first.snapshot(), before);
    assert_eq!(
        second.step(&s, "channels", r#"{"channels":["sms"]}"#),
        Ok(common::step_answer(&s, "channels", 3, 50))
    );
}

/// Migrating first in the caller's `BEGIN` (a client's connect routine
/// inside its transaction) leaves the next writer able to wait: migrating
/// took the write lock first, as the writers do, rather than reading.
#[test]
fn inside_a_deferred_transaction_a_step_after_migrate_waits_for_the_write_lock() {
    let locked = Locked::new(20_000);
    let s = locked.session.clone();
    let releaser = release_after(&locked, 300);
    let second = &locked.second;
    second.conn.execute_batch("BEGIN").unwrap();
    let migrated = second
        .conn
        .query_row("SELECT onboarding_migrate()", [], |r| r.get::<_, i64>(0))
        .map_err(|e| e.to_string());
    let saved = second.step(&s, "channels", r#"{"channels":["sms"]}"#);
    second.conn.execute_batch("COMMIT").unwrap();
    releaser.join().unwrap();
    let (_dir, first, _second, _) = locked.release();
    assert_eq!(migrated, Ok(15));
    assert_eq!(saved, Ok(common::step_answer(&s, "channels", 3, 50)));
    assert_eq!(
        first.get(&s)["steps"]["channels"],
        serde_json::json!({"channels": ["sms"]})
    );
}

/// The write-lock probe inside a caller's `BEGIN` fails on a database
/// without the schema and on a read-only file; the call then says what is
/// wrong, as it does outside a transaction.
#[test]
fn inside_a_deferred_transaction_the_probes_other_failures_leave_the_calls_own_error() {
    // A create inside a deferred transaction of `conn`: its error.
    let refused = |conn: &Connection| {
        conn.execute_batch("BEGIN").unwrap();
        conn.query_row("SELECT onboarding_create('{}')", [], |r| {
            r.get::<_, String>(0)
        })
        .unwrap_err()
        .to_string()
    };
    let bare = Connection::open_in_memory().unwrap();
    onboarding::register(&bare).unwrap();
    assert_eq!(
        refused(&bare),
        "onboarding_create: schema_missing: no such table: main.tenants (run SELECT onboarding_migrate() first)"
    );
    let locked = Locked::new(50);
    let read_only = read_only(&locked);
    let (_dir, _first, _second, _) = locked.release();
    assert_eq!(
        refused(&read_only),
        "onboarding_create: internal: attempt to write a readonly database"
    );
}

#[test]
fn past_the_busy_timeout_a_call_says_why_and_writes_nothing() {
    let locked = Locked::new(50);
    let s = locked.session.clone();
    let before = locked.first.snapshot();
    let refused = locked
        .second
        .step(&s, "channels", r#"{"channels":["sms"]}"#);
    let created = locked.second.call("SELECT onboarding_create('{}')", &[]);
    let (_dir, first, second, _) = locked.release();
    let why = "database is locked: another connection held the write lock past this \
               connection's busy timeout (PRAGMA busy_timeout); retry later";
    assert_eq!(
        refused.unwrap_err(),
        format!("onboarding_step: internal: {why}")
    );
    assert_eq!(
        created.unwrap_err(),
        format!("onboarding_create: internal: {why}")
    );
    assert_eq!(first.snapshot(), before);
    // Once the lock is free, the same call goes through.
    assert_eq!(
        second.step(&s, "channels", r#"{"channels":["sms"]}"#),
        Ok(common::step_answer(&s, "channels", 3, 50))
    );
}

/// In shared-cache mode a table lock of another connection of the cache is
/// `SQLITE_LOCKED`, which SQLite never waits for: the refusal says so
/// rather than blame a busy timeout that never ran.
#[test]
fn a_lock_of_a_shared_cache_is_not_said_to_be_past_the_busy_timeout() {
    use rusqlite::OpenFlags;
    let open = || {
        let conn = Connection::open_with_flags(
            "file:shared_lock?mode=memory&cache=shared",
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_SHARED_CACHE,
        )
        .unwrap();
        conn.busy_timeout(std::time::Duration::from_millis(5_000))
            .unwrap();
        conn
    };
    let first = Db::on(open());
    let second = Db::on(open());
    first.conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    first.create();
    assert_eq!(
        second
            .call("SELECT onboarding_create('{}')", &[])
            .unwrap_err(),
        "onboarding_create: internal: database table is locked: another connection of this \
         shared cache holds a lock on it, which SQLite does not wait for (the busy timeout \
         applies to other caches only); retry later"
    );
    first.conn.execute_batch("COMMIT").unwrap();
    assert_eq!(second.create().len(), "onb_".len() + 32);
}

/// Clients migrate on every connect: with nothing to do, migrating only
/// reads, so another connection's write lock does not hold it up, nor does
/// a read-only connection refuse it.
#[test]
fn migrating_an_up_to_date_database_takes_no_write_lock() {
    let locked = Locked::new(50);
    let migrated = locked
        .second
        .conn
        .query_row("SELECT onboarding_migrate()", [], |r| r.get::<_, i64>(0))
        .map_err(|e| e.to_string());
    let read_only = read_only(&locked);
    let from_read_only: i64 = read_only
        .query_row("SELECT onboarding_migrate()", [], |r| r.get(0))
        .unwrap();
    let (_dir, first, _second, _) = locked.release();
    assert_eq!(migrated, Ok(15));
    assert_eq!(from_read_only, 15);
    // A migration missing still needs the lock, and takes it.
    first
        .conn
        .execute(
            "DELETE FROM onboarding_schema_migrations WHERE version = 9",
            [],
        )
        .unwrap();
    let (release, holder) = hold_write_lock(first.conn.path().unwrap().into());
    assert_eq!(
        read_only
            .query_row("SELECT onboarding_migrate()", [], |r| r.get::<_, i64>(0))
            .unwrap_err()
            .to_string(),
        "onboarding_migrate: internal: attempt to write a readonly database"
    );
    drop(release);
    holder.join().unwrap();
    assert_eq!(
        first
            .conn
            .query_row("SELECT onboarding_migrate()", [], |r| r.get::<_, i64>(0)),
        Ok(15)
    );
}

#[test]
fn a_read_needs_no_write_lock_and_serves_a_read_only_connection() {
    let locked = Locked::new(50);
    let s = locked.session.clone();
    let read_only = read_only(&locked);
    let from_read_only: String = read_only
        .query_row("SELECT onboarding_get(?1)", [&s], |r| r.get(0))
        .unwrap();
    // While the lock is held, past the second connection's busy timeout.
    let from_second = locked.second.call("SELECT onboarding_get(?1)", &[&s]);
    let (_dir, first, _second, _) = locked.release();
    let expected = first.get(&s);
    assert_eq!(expected["current_step"], 1);
    assert_eq!(from_second, Ok(expected.clone()));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&from_read_only).unwrap(),
        expected
    );
}

#[test]
fn a_call_from_a_statement_reading_a_table_says_why_it_cannot_wait() {
    let locked = Locked::new(5_000);
    let before = locked.first.snapshot();
    let refused = locked.second.call(
        "SELECT onboarding_step(id, 'channels', '{\"channels\":[\"sms\"]}') FROM onboarding_sessions",
        &[],
    );
    // The same with a database attached, where the call opens a savepoint.
    let other = locked.dir.path().join("other.db");
    locked
        .second
        .conn
        .execute("ATTACH DATABASE ?1 AS other", [other.to_str().unwrap()])
        .unwrap();
    let refused_attached = locked.second.call(
        "SELECT onboarding_step(id, 'channels', '{\"channels\":[\"sms\"]}') FROM onboarding_sessions",
        &[],
    );
    let (_dir, first, _second, _) = locked.release();
    let why = "onboarding_step: internal: database is locked: another connection holds the \
               write lock, and SQLite cannot wait for it while the statement calling this \
               function reads a table (call the writers from a plain SELECT without FROM)";
    assert_eq!(refused.unwrap_err(), why);
    assert_eq!(refused_attached.unwrap_err(), why);
    assert_eq!(first.snapshot(), before);
}

#[test]
fn an_attached_database_another_process_writes_does_not_hold_a_call_up() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("PRAGMA journal_mode = WAL")
        .unwrap();
    let db = Db::on(Connection::open(dir.path().join("onboarding.db")).unwrap());
    db.conn.busy_timeout(Duration::from_millis(50)).unwrap();
    db.conn
        .execute("ATTACH DATABASE ?1 AS other", [other.to_str().unwrap()])
        .unwrap();
    let (release, holder) = hold_write_lock(other);
    let created = db.call("SELECT onboarding_create('{}')", &[]);
    release.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(created.unwrap()["success"], true);
    assert_eq!(db.count("tenants"), 1);
}

/// With a database attached, a call still waits for the main database's
/// write lock before it reads (a step reads its session first; SQLite
/// would refuse at once to upgrade that read), and past the busy timeout
/// says why.
#[test]
fn with_a_database_attached_a_step_waits_for_the_main_write_lock() {
    let locked = Locked::new(20_000);
    let s = locked.session.clone();
    let other = locked.dir.path().join("other.db");
    locked
        .second
        .conn
        .execute("ATTACH DATABASE ?1 AS other", [other.to_str().unwrap()])
        .unwrap();
    let releaser = release_after(&locked, 200);
    let saved = locked
        .second
        .step(&s, "channels", r#"{"channels":["sms"]}"#);
    releaser.join().unwrap();
    let (dir, first, second, _) = locked.release();
    assert_eq!(saved, Ok(common::step_answer(&s, "channels", 3, 50)));

    second.conn.busy_timeout(Duration::from_millis(50)).unwrap();
    let before = first.snapshot();
    let (release, holder) = hold_write_lock(dir.path().join("onboarding.db"));
    let refused = second.step(&s, "channels", r#"{"channels":["phone"]}"#);
    drop(release);
    holder.join().unwrap();
    assert_eq!(
        refused.unwrap_err(),
        "onboarding_step: internal: database is locked: another connection held the write \
         lock past this connection's busy timeout (PRAGMA busy_timeout); retry later"
    );
    assert_eq!(first.snapshot(), before);
}

#[test]
fn a_writer_called_by_a_writing_statement_is_refused_with_the_way_out() {
    let db = Db::memory();
    db.conn
        .execute_batch("CREATE TABLE host_sessions (body TEXT)")
        .unwrap();
    let before = db.snapshot();
    let refused = db
        .conn
        .execute(
            "INSERT INTO host_sessions SELECT onboarding_create('{}')",
            [],
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        refused,
        "onboarding_create: internal: cannot start a transaction - SQL statements in \
         progress (call the onboarding functions from a plain top-level SELECT)"
    );
    assert_eq!(db.snapshot(), before);
    assert_eq!(db.count("host_sessions"), 0);
}

/// A writer called by a client's TEMP trigger on a table this call writes
/// is refused as inside any writing statement, and the call that fired the
/// trigger says it once, naming the function that said it (it gave the
/// whole text again behind its own prefix).
#[test]
fn a_writer_a_trigger_calls_is_refused_and_said_once() {
    let db = Db::memory();
    db.conn
        .execute_batch(
            "CREATE TEMP TRIGGER again AFTER INSERT ON main.onboarding_sessions
             BEGIN SELECT onboarding_create(); END",
        )
        .unwrap();
    let before = db.snapshot();
    assert_eq!(
        db.call("SELECT onboarding_create()", &[]).unwrap_err(),
        "onboarding_create: internal: cannot open savepoint - SQL statements in progress (call \
         the onboarding functions from a plain top-level SELECT) (said by onboarding_create, \
         called by a trigger or a constraint of this call's statements)"
    );
    assert_eq!(db.snapshot(), before);
}

/// The readers need no savepoint of their own inside a statement that
/// writes (which holds the write transaction): a host may copy their
/// answers into its own tables.
#[test]
fn a_reader_called_by_a_writing_statement_answers_as_alone() {
    let db = Db::memory();
    let s = db.create();
    db.conn
        .execute_batch("CREATE TABLE host_copies (body TEXT)")
        .unwrap();
    db.conn
        .execute(
            "INSERT INTO host_copies SELECT onboarding_get(?1)
             UNION ALL SELECT onboarding_kb_get(?1)
             UNION ALL SELECT onboarding_kb_search(json_object('session_id', ?1, 'query', 'horaires'))",
            [&s],
        )
        .unwrap();
    let copies: Vec<Value> = db
        .rows("SELECT body FROM host_copies ORDER BY rowid", &[])
        .into_iter()
        .map(|r| serde_json::from_str(r["body"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(
        copies,
        [
            db.get(&s),
            db.call("SELECT onboarding_kb_get(?1)", &[&s]).unwrap(),
            json!({"success": true, "query": "horaires", "results": []}),
        ]
    );
    db.conn
        .execute_batch("CREATE TABLE host_voices AS SELECT onboarding_voices() AS body")
        .unwrap();
    assert_eq!(db.count("host_voices"), 1);
}

#[test]
fn a_commit_that_fails_with_a_database_attached_leaves_no_transaction_open() {
    // In autocommit mode with a database attached, a writer's savepoint is
    // its transaction. In the default rollback journal its commit needs
    // every reader gone; one that stays past the busy timeout fails it, and
    // the connection must come out of the transaction: left inside it, every
    // later call joined a transaction that never committed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onboarding.db");
    let db = Db::on(Connection::open(&path).unwrap());
    db.conn.busy_timeout(Duration::from_millis(50)).unwrap();
    db.conn
        .execute(
            "ATTACH DATABASE ?1 AS other",
            [dir.path().join("other.db").to_str().unwrap()],
        )
        .unwrap();
    let reader = Connection::open(&path).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM tenants", [], |r| r.get(0))
        .unwrap();

    let refused = db.call("SELECT onboarding_create('{}')", &[]).unwrap_err();
    assert_eq!(refused, "onboarding_create: internal: database is locked");
    assert!(
        db.conn.is_autocommit(),
        "the connection stayed in a transaction"
    );

    reader.execute_batch("COMMIT").unwrap();
    let created = db.call("SELECT onboarding_create('{}')", &[]).unwrap();
    let seen: i64 = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM onboarding_sessions WHERE id = ?1",
            [created["session_id"].as_str().unwrap()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(seen, 1, "the next call's session was never committed");
}

#[test]
fn a_create_retried_while_the_first_commits_answers_the_first_session() {
    // A host retries a create whose commit it could not confirm; the first
    // is still committing on another connection. The retry waits for the
    // write lock and then finds the key (looked up before the lock, it was
    // missed, and the retry failed on the key's UNIQUE).
    let (_dir, first, second) = two_on_one_wal_file(20_000);
    let key = "retry-key-0123456789";
    first.conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let made = first
        .call("SELECT onboarding_create('{}', NULL, NULL, ?1)", &[&key])
        .unwrap();
    let retry = std::thread::spawn(move || {
        second.call("SELECT onboarding_create('{}', NULL, NULL, ?1)", &[&key])
    });
    std::thread::sleep(Duration::from_millis(300));
    first.conn.execute_batch("COMMIT").unwrap();
    assert_eq!(retry.join().unwrap(), Ok(made));
    assert_eq!(first.count("onboarding_sessions"), 1);
}
