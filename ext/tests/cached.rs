//! register_cached: the same answers as the per-call registration, and a
//! connection that closes cleanly once the cached statements are released.

mod common;

use common::{Db, T0};
use std::sync::Arc;

use onboarding::PinnedEnv;
use rusqlite::functions::FunctionFlags;
use rusqlite::Connection;

/// The full flow with the per-call registration and with the cached one,
/// on twin pinned environments: identical answers and identical rows.
#[test]
fn cached_and_per_call_registrations_answer_the_same() {
    let plain = Db::memory();
    let conn = Connection::open_in_memory().unwrap();
    let env = PinnedEnv::new(T0, 42);
    let guard = onboarding::register_cached(&conn, env.clone()).unwrap();
    conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
    conn.query_row("SELECT onboarding_migrate()", [], |_| Ok(()))
        .unwrap();
    let cached = Db { conn, env };
    for db in [&plain, &cached] {
        for _ in 0..3 {
            let s = db.create();
            db.env.advance_ms(1_000);
            db.business(&s, &format!("{s}@entreprise.fr"));
            db.step(&s, "vapi", r#"{"agent_type":"nope"}"#).unwrap_err();
            db.vapi(&s);
            db.kb_website(&s);
            db.complete(&s).unwrap();
            db.complete(&s).unwrap();
        }
    }
    assert_eq!(plain.snapshot(), cached.snapshot());
    drop(guard);
    // Released: calls still work, preparing per call.
    let s = cached.create();
    assert_eq!(cached.get(&s)["current_step"], 1);
}

#[test]
fn the_connection_closes_once_the_statements_are_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onboarding.db");
    let conn = Connection::open(&path).unwrap();
    let guard = onboarding::register_cached(&conn, PinnedEnv::new(T0, 1)).unwrap();
    conn.query_row("SELECT onboarding_migrate()", [], |_| Ok(()))
        .unwrap();
    conn.query_row("SELECT onboarding_create()", [], |_| Ok(()))
        .unwrap();
    guard.release();
    conn.close().unwrap();
    let conn = Connection::open(&path).unwrap();
    let tenants: i64 = conn
        .query_row("SELECT count(*) FROM tenants", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tenants, 1);
}

/// The statements prepared on `conn`, and how many of them are mid-run
/// (stepped and not reset). Not FTS5's own statements on the index's
/// shadow tables (`kb_chunks_index_data`, …): the virtual table keeps them
/// while it is connected, and SQLite finalizes them when it disconnects the
/// table, before a close checks for statements left.
fn statements(conn: &Connection) -> (usize, usize) {
    let (mut count, mut busy) = (0, 0);
    // SAFETY: walks the connection's statement list on its own thread,
    // without keeping any pointer.
    unsafe {
        let db = conn.handle();
        let mut stmt = rusqlite::ffi::sqlite3_next_stmt(db, std::ptr::null_mut());
        while !stmt.is_null() {
            let sql = std::ffi::CStr::from_ptr(rusqlite::ffi::sqlite3_sql(stmt));
            if sql.to_string_lossy().contains("'kb_chunks_index_") {
                stmt = rusqlite::ffi::sqlite3_next_stmt(db, stmt);
                continue;
            }
            count += 1;
            if rusqlite::ffi::sqlite3_stmt_busy(stmt) != 0 {
                busy += 1;
            }
            stmt = rusqlite::ffi::sqlite3_next_stmt(db, stmt);
        }
    }
    (count, busy)
}

/// The cache keeps one statement per SQL text and reuses it: more flows
/// prepare nothing more, every kept statement is reset between calls, after
/// failures too, and the release finalizes them all.
#[test]
fn cached_statements_are_reused_reset_and_released() {
    let (guard, db) = Db::cached();
    let flow = |n: usize| {
        let s = db.create();
        db.business(&s, &format!("contact{n}@entreprise.fr"));
        db.vapi(&s);
        db.kb_website(&s);
        db.complete(&s).unwrap();
    };
    flow(0);
    let (after_one, busy) = statements(&db.conn);
    assert!(after_one > 0);
    assert_eq!(busy, 0);
    for n in 1..6 {
        flow(n);
    }
    // How many statements a flow needs depends on how the compiler lays
    // out the literals; that five more flows need none is what is pinned.
    assert_eq!(statements(&db.conn), (after_one, 0));

    // Calls that fail after running statements: an email another tenant
    // holds (found by a query), a completion with steps missing (after the
    // session's read). Twice each: the second prepares nothing more.
    let failures = || {
        let s = db.create();
        let taken = db
            .step(
                &s,
                "business",
                r#"{"company_name":"Autre","industry":"Immobilier","phone":"06 12 34 56 78","email":"contact0@entreprise.fr"}"#,
            )
            .unwrap_err();
        assert_eq!(
            taken,
            "onboarding_step: conflict: email 'contact0@entreprise.fr' is already used by another account"
        );
        let early = db.complete(&s).unwrap_err();
        assert_eq!(
            early,
            format!(
                "onboarding_complete: incomplete: session '{s}' is missing steps: business, vapi \
                 (save them before completing)"
            )
        );
    };
    failures();
    let (after_failures, busy) = statements(&db.conn);
    assert_eq!(busy, 0);
    failures();
    assert_eq!(statements(&db.conn), (after_failures, 0));

    guard.release();
    assert_eq!(statements(&db.conn), (0, 0));
}

/// A release asked for in the middle of a call, on its thread (SQLite
/// disconnects the loadable extension's holder table then when its module
/// is dropped or replaced): it waits for nothing, the call goes on with its
/// statements, and they are finalized as it ends; later calls prepare per
/// call.
#[test]
fn a_release_during_a_call_is_carried_out_as_the_call_ends() {
    let (guard, db) = Db::cached();
    let first = db.create();
    assert!(statements(&db.conn).0 > 0);
    let guard = Arc::new(guard);
    let held = Arc::clone(&guard);
    db.conn
        .create_scalar_function(
            "release_statements",
            0,
            FunctionFlags::SQLITE_UTF8,
            move |_| {
                held.release();
                Ok(1)
            },
        )
        .unwrap();
    // Fired by the create's own insert, inside its call.
    db.conn
        .execute_batch(
            "CREATE TEMP TRIGGER release_inside AFTER INSERT ON tenants
             BEGIN SELECT release_statements(); END;",
        )
        .unwrap();
    let second = db.create();
    assert_eq!(statements(&db.conn), (0, 0));
    db.conn
        .execute_batch("DROP TRIGGER release_inside")
        .unwrap();
    let third = db.create();
    assert_eq!(statements(&db.conn), (0, 0));
    for s in [&first, &second, &third] {
        assert_eq!(db.get(s)["current_step"], 1);
    }
}
