//! Migration 005: the CHECK lists of three values or more become OR chains
//! in the library's tables, on new databases and on upgraded ones, every
//! row kept and every constraint still enforced.

mod common;

use common::{Db, T0};
use rusqlite::config::DbConfig;
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;

/// A database as version 4 of the library left it, with `extra` run
/// first (a user's own table), then one whole onboarding on it.
fn at_version_4(extra: &str) -> Connection {
    at_version_4_on(Connection::open_in_memory().unwrap(), extra)
}

/// `conn` with `extra` run, then the first `n` migration files applied as a
/// library of their time applied them (their SQL and bookkeeping rows), and
/// today's functions registered.
fn migrated_to(conn: &Connection, extra: &str, n: usize) {
    conn.execute_batch(&format!(
        "{extra}
         CREATE TABLE onboarding_schema_migrations (version INTEGER PRIMARY KEY,
                                                    name TEXT NOT NULL, applied_at TEXT NOT NULL);"
    ))
    .unwrap();
    for m in &onboarding::MIGRATIONS[..n] {
        conn.execute_batch(m.sql).unwrap();
        conn.execute(
            "INSERT INTO onboarding_schema_migrations VALUES (?1, ?2, '2026-11-01T00:00:00.000Z')",
            (m.version, m.name),
        )
        .unwrap();
    }
    onboarding::register_with(conn, onboarding::PinnedEnv::new(T0, 7)).unwrap();
}

fn at_version_4_on(conn: Connection, extra: &str) -> Connection {
    migrated_to(&conn, &format!("PRAGMA foreign_keys = ON; {extra}"), 4);
    let db = Db {
        conn,
        env: onboarding::PinnedEnv::new(T0, 7),
    };
    let s = db.create();
    db.business(&s, "contact@entreprise.fr");
    db.vapi(&s);
    db.step(
        &s,
        "kb",
        r#"{"method":"website","crawl_url":"https://mon-site.fr"}"#,
    )
    .unwrap();
    db.complete(&s).unwrap();
    db.conn
}

fn table_sql(conn: &Connection, table: &str) -> String {
    conn.query_row(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get(0),
    )
    .unwrap()
}

/// How many ephemeral tables a statement opens.
fn ephemerals(conn: &Connection, sql: &str) -> usize {
    let mut stmt = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
    let mut rows = stmt.raw_query();
    let mut n = 0;
    while let Some(row) = rows.next().unwrap() {
        n += usize::from(row.get::<_, String>(1).unwrap() == "OpenEphemeral");
    }
    n
}

const JOB_INSERT: &str =
    "INSERT INTO kb_crawl_jobs (tenant_id, session_id, url, status, created_at, updated_at)
                          VALUES (?1, ?2, ?3, 'queued', ?4, ?4)";

#[test]
fn upgrading_from_4_keeps_every_row_and_rewrites_the_lists() {
    let conn = at_version_4("");
    assert!(table_sql(&conn, "kb_crawl_jobs")
        .contains("CHECK (status IN ('queued', 'running', 'done', 'failed'))"));
    assert_eq!(ephemerals(&conn, JOB_INSERT), 2);
    let before = Db {
        conn,
        env: onboarding::PinnedEnv::new(T0, 7),
    };
    let rows = before.snapshot();
    assert_eq!(rows.len(), 10, "{rows:?}");

    let db = Db::on(before.conn);
    assert_eq!(
        db.scalar("SELECT onboarding_schema_version()"),
        SqlValue::Integer(15)
    );
    // A crawl job keeps every value and gains 011's budget, nothing spent,
    // and 012's waits, none.
    let after: Vec<String> = db
        .snapshot()
        .into_iter()
        .map(
            |r| match r.strip_suffix(" | Integer(0) | Integer(0) | Integer(0)") {
                Some(job) if r.starts_with("kb_crawl_jobs:") => job.to_string(),
                _ => r,
            },
        )
        .collect();
    assert!(rows.iter().all(|r| after.contains(r)), "a row changed");
    let added: Vec<&String> = after.iter().filter(|r| !rows.contains(r)).collect();
    // What migrating adds: the bookkeeping rows of 005 to 015 (whose
    // tables start empty), and the phone codes' key that every
    // migration makes when missing (this test's version 4 never ran the
    // library's migrator).
    assert_eq!(added.len(), 12, "{added:?}");
    assert!(added[0]
        .starts_with(r#"onboarding_schema_migrations: Integer(5) | Text("005_check_lists")"#));
    assert!(added[1]
        .starts_with(r#"onboarding_schema_migrations: Integer(6) | Text("006_site_turns")"#));
    assert!(added[2].starts_with(
        r#"onboarding_schema_migrations: Integer(7) | Text("007_carriers_and_sends")"#
    ));
    assert!(added[3]
        .starts_with(r#"onboarding_schema_migrations: Integer(8) | Text("008_call_replies")"#));
    assert!(added[4]
        .starts_with(r#"onboarding_schema_migrations: Integer(9) | Text("009_french_terms")"#));
    assert!(added[5]
        .starts_with(r#"onboarding_schema_migrations: Integer(10) | Text("010_kb_index_tenant")"#));
    assert!(added[6]
        .starts_with(r#"onboarding_schema_migrations: Integer(11) | Text("011_crawl_budget")"#));
    assert!(added[7]
        .starts_with(r#"onboarding_schema_migrations: Integer(12) | Text("012_site_waits")"#));
    assert!(
        added[8].starts_with(r#"onboarding_schema_migrations: Integer(13) | Text("013_kb_cut")"#)
    );
    assert!(added[9].starts_with(
        r#"onboarding_schema_migrations: Integer(14) | Text("014_kb_recut_failures")"#
    ));
    assert!(added[10].starts_with(
        r#"onboarding_schema_migrations: Integer(15) | Text("015_request_fingerprints")"#
    ));
    assert!(added[11].starts_with(r#"onboarding_secrets: Text("phone_code_hmac")"#));

    assert!(table_sql(&db.conn, "kb_crawl_jobs").contains(
        "CHECK ((status = 'queued' OR status = 'running' OR status = 'done' OR status = 'failed'))"
    ));
    assert_eq!(ephemerals(&db.conn, JOB_INSERT), 0);
    assert_eq!(
        db.scalar("PRAGMA integrity_check"),
        SqlValue::Text("ok".into())
    );
    assert_eq!(db.rows("PRAGMA foreign_key_check", &[]).len(), 0);
    // Still enforced, on this connection and on a new reading of the schema.
    let refused = db
        .conn
        .execute("UPDATE kb_crawl_jobs SET status = 'lost'", []);
    assert_eq!(
        refused.unwrap_err().to_string(),
        "CHECK constraint failed: (status = 'queued' OR status = 'running' OR status = 'done' OR status = 'failed')"
    );
    // And a whole onboarding goes through on the upgraded schema.
    let s = db.create();
    db.business(&s, "autre@entreprise.fr");
    db.vapi(&s);
    assert_eq!(db.complete(&s).unwrap()["sync_status"], "synced");
}

/// New databases get, through the same edit, what upgraded ones have.
#[test]
fn new_and_upgraded_databases_have_the_same_definitions() {
    let definitions = |conn: &Connection| -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare(
                "SELECT name, sql FROM sqlite_schema
                 WHERE sql IS NOT NULL AND name <> 'onboarding_schema_migrations' ORDER BY name",
            )
            .unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    };
    let fresh = Db::memory();
    let upgraded = Db::on(at_version_4(""));
    assert_eq!(definitions(&fresh.conn), definitions(&upgraded.conn));
    // No list of three values or more is left in any definition.
    for (name, sql) in definitions(&fresh.conn) {
        for list in sql.split(" IN (").skip(1) {
            let items = list.split(')').next().unwrap().split(',').count();
            assert!(items <= 2, "{name}: IN ({list}");
        }
    }
}

/// Another connection to the file, open before the migration, reads the
/// new definitions: the schema cookie moved.
#[test]
fn other_connections_read_the_new_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL").unwrap();
    let conn = at_version_4_on(conn, "");
    let other = Connection::open(&path).unwrap();
    // Parsed now, before the migration: the old lists.
    assert_eq!(ephemerals(&other, JOB_INSERT), 2);
    let _db = Db::on(conn);
    // Its next statement meets the new cookie and reads the definitions
    // again (EXPLAIN alone checks no cookie).
    let refused = other.execute("UPDATE kb_crawl_jobs SET status = 'lost'", []);
    assert_eq!(
        refused.unwrap_err().to_string(),
        "CHECK constraint failed: (status = 'queued' OR status = 'running' OR status = 'done' OR status = 'failed')"
    );
    assert_eq!(ephemerals(&other, JOB_INSERT), 0);
    assert!(table_sql(&other, "kb_crawl_jobs").contains("(status = 'queued' OR "));
}

/// Migrating inside a caller's transaction that rolls back leaves the old
/// definitions, on this connection too.
#[test]
fn a_rolled_back_migration_leaves_the_old_definitions() {
    let conn = at_version_4("");
    let before = table_sql(&conn, "kb_crawl_jobs");
    onboarding::register_with(&conn, onboarding::PinnedEnv::new(T0, 7)).unwrap();
    conn.execute_batch("BEGIN").unwrap();
    let version: i64 = conn
        .query_row("SELECT onboarding_migrate()", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 15);
    assert_eq!(ephemerals(&conn, JOB_INSERT), 0);
    conn.execute_batch("ROLLBACK").unwrap();
    assert_eq!(table_sql(&conn, "kb_crawl_jobs"), before);
    assert_eq!(ephemerals(&conn, JOB_INSERT), 2);
    let refused = conn.execute("UPDATE kb_crawl_jobs SET status = 'lost'", []);
    assert_eq!(
        refused.unwrap_err().to_string(),
        "CHECK constraint failed: status IN ('queued', 'running', 'done', 'failed')"
    );
}

/// A user's own table in the same file is never edited, and a host's
/// SQLITE_DBCONFIG_DEFENSIVE is lifted for the edit only.
#[test]
fn a_users_table_and_the_defensive_setting_are_left_alone() {
    let mine = "CREATE TABLE my_notes (kind TEXT CHECK (kind IN ('a', 'b', 'c')))";
    let conn = at_version_4(&format!("{mine};"));
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
        .unwrap();
    let db = Db::on(conn);
    assert_eq!(table_sql(&db.conn, "my_notes"), mine);
    assert!(table_sql(&db.conn, "onboarding_sessions")
        .contains("(status = 'in_progress' OR status = 'completed' OR status = 'abandoned')"));
    assert!(db
        .conn
        .db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE)
        .unwrap());
    // Defensive is back: the schema cannot be written by hand.
    assert!(db
        .conn
        .execute_batch("PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = sql")
        .is_err());
}

/// 015 adds the keyed calls' fingerprints. Answers kept by a library before
/// it keep every value and get none: their keys answer as they did,
/// whatever the payload, while a key kept from then on is checked.
#[test]
fn upgrading_from_14_keeps_the_kept_answers_without_fingerprints() {
    let conn = Connection::open_in_memory().unwrap();
    migrated_to(&conn, "", 14);
    let created: String = conn
        .query_row("SELECT onboarding_create('{}')", [], |r| r.get(0))
        .unwrap();
    let created: serde_json::Value = serde_json::from_str(&created).unwrap();
    let session = created["session_id"].as_str().unwrap();
    // As the library at 014 kept them.
    conn.execute(
        "INSERT INTO onboarding_create_requests (request_key, session_id)
             VALUES ('key-of-the-create-0001', ?1)",
        [session],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO onboarding_call_replies
             (request_key, function, session_id, failed, reply, created_at)
         VALUES ('key-of-the-step-00001', 'onboarding_step(''vapi'')', ?1, 0,
                 '{\"success\":true}', '2026-11-24T10:00:00.000Z')",
        [session],
    )
    .unwrap();
    let rows = |conn: &Connection| -> Vec<String> {
        let mut stmt = conn
            .prepare(
                "SELECT request_key || ' ' || session_id FROM onboarding_create_requests
                 UNION ALL
                 SELECT request_key || ' ' || function || ' ' || failed || ' ' || reply || ' '
                        || created_at FROM onboarding_call_replies",
            )
            .unwrap();
        let rows = stmt.query_map([], |r| r.get(0)).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    };
    let before = rows(&conn);

    let version: i64 = conn
        .query_row("SELECT onboarding_migrate()", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 15);
    assert_eq!(rows(&conn), before);
    let fingerprints: i64 = conn
        .query_row(
            "SELECT (SELECT count(fingerprint) FROM onboarding_create_requests)
                  + (SELECT count(fingerprint) FROM onboarding_call_replies)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(fingerprints, 0);
    let again: String = conn
        .query_row(
            "SELECT onboarding_create('{\"source\":\"partner\"}', '203.0.113.7', '',
                                      'key-of-the-create-0001')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&again).unwrap(),
        created
    );
    let replayed: String = conn
        .query_row(
            "SELECT onboarding_step(?1, 'vapi', '{}', 'key-of-the-step-00001')",
            [session],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(replayed, r#"{"success":true}"#);
}

/// A migration a database has applied is never applied again: an edit to
/// a released migration reaches new databases only, and leaves the ones it
/// already ran on with the old shape under the same version (as a changed
/// index table once did, before it landed). Each released migration's
/// SHA-256 is pinned here; a change goes into a new numbered file, whose
/// hash is pinned when it is added.
#[test]
fn released_migrations_are_never_edited() {
    use sha2::{Digest, Sha256};
    const RELEASED: [(i64, &str, &str); 15] = [
        (
            1,
            "001_init",
            "3fba5a0237f64827c82eccbd17027a2ae6f50f2b5d9ae650683678ab092a2a38",
        ),
        (
            2,
            "002_knowledge",
            "3bdd5777ce518611213ed00baeb69ad1c20b16624f74555840620069d9565f69",
        ),
        (
            3,
            "003_phone",
            "7650199677b357620a00045c074f73275e7448ac1e8c49f703d410acb4842012",
        ),
        (
            4,
            "004_create_requests",
            "d01060b3498a683945508aa2b162babb14f37bd1d01d8c68865a5aa24810f3d0",
        ),
        (
            5,
            "005_check_lists",
            "e8cceddfa3c50d393aedc38121d30f2211e21c973139e58a0d9fd82ae1a618fc",
        ),
        (
            6,
            "006_site_turns",
            "ff041217724b3e5216b661292bf2ebee506d47b6c0a6b3743cf9ea1c11bc0a68",
        ),
        (
            7,
            "007_carriers_and_sends",
            "a7b7e0ac2bcaec0a2e435e29bf81eabf7ab050b84e7d2f53f3a65058f809a43f",
        ),
        (
            8,
            "008_call_replies",
            "e825d157bd30ec55a497c8972fb68a6f8b0a3bcc8d778f3a05896e88f337d7c4",
        ),
        (
            9,
            "009_french_terms",
            "d4f15277b071725d20f3acaa238d03f63ee9419ef963e89b053f055ddb8b8bd7",
        ),
        (
            10,
            "010_kb_index_tenant",
            "3d572f626b42bb3a70fa09725fe0cb4b3901ac54e07b2950398f4b33c8d3be57",
        ),
        (
            11,
            "011_crawl_budget",
            "7c945720de23a447a48ba21ad1237082a543ba4cc8033a027c68c5906e6d6ed7",
        ),
        (
            12,
            "012_site_waits",
            "a86b63dff4c7ffdc6697ea0e271fdeef575fa854089aa6fd38c58df7a39bf333",
        ),
        (
            13,
            "013_kb_cut",
            "ff3f407bbb1332712b9700b33c5f4ccc4006f551bcc06485ac2542ea06e276dd",
        ),
        (
            14,
            "014_kb_recut_failures",
            "bed1923f968c507bf195c688534d828fee809e7084e4e01cdee5e2407e3a5106",
        ),
        (
            15,
            "015_request_fingerprints",
            "45d50404ef30f37039eb550aa2ae258608ae9d983a4da23fbc98fae820f6d7dd",
        ),
    ];
    let migrations: Vec<(i64, &str, String)> = onboarding::MIGRATIONS
        .iter()
        .map(|m| {
            let hash = Sha256::digest(m.sql.as_bytes());
            let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
            (m.version, m.name, hex)
        })
        .collect();
    for (i, (version, name, pinned)) in RELEASED.iter().enumerate() {
        let (v, n, hash) = &migrations[i];
        assert_eq!(
            (v, n),
            (version, name),
            "migration {version} was renumbered or renamed"
        );
        assert_eq!(
            hash, pinned,
            "sql/{name}.sql changed after it was released: databases that applied it keep \
             the old version; write the change as a new numbered migration"
        );
    }
    assert!(
        migrations.len() == RELEASED.len(),
        "pin the SHA-256 of each new migration here: {:?}",
        &migrations[RELEASED.len()..]
    );
    // Every file in sql/ is a migration the library applies.
    let mut files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../sql"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let names: Vec<String> = migrations
        .iter()
        .map(|(_, n, _)| format!("{n}.sql"))
        .collect();
    assert_eq!(files, names);
}
