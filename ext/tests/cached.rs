//! register_cached: the same answers as the per-call registration, and a
//! connection that closes cleanly once the cached statements are released.

mod common;

use common::{Db, T0};
use onboarding::PinnedEnv;
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
            db.step(
                &s,
                "kb",
                r#"{"crawl_url":"https://mon-site.fr","method":"website"}"#,
            )
            .unwrap();
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
