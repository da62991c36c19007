//! The library's tables are the `main` database's, whatever else the
//! connection holds: a TEMP table of the same name (a report's snapshot,
//! `CREATE TEMP TABLE tenants AS SELECT …`), which SQLite looks in before
//! `main` for a name given alone, or an attached database holding them.

mod common;

use common::Db;
use serde_json::{json, Value};

/// Every table of `main` (the full-text index's own tables included).
fn main_tables(db: &Db) -> Vec<String> {
    let mut stmt = db
        .conn
        .prepare("SELECT name FROM main.sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap();
    let names = stmt.query_map([], |r| r.get(0)).unwrap();
    names.map(Result::unwrap).collect()
}

fn call(db: &Db, sql: &str, payload: Value) -> Value {
    db.call(sql, &[&payload.to_string()])
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A TEMP table named like each of the library's, empty, with its columns:
/// a whole onboarding (documents and a website, phone verification and its
/// outbox, a crawl's page, a search) writes and reads `main` only. The
/// tenant went into `temp.tenants` (lost with the connection), the session
/// stayed in `main` pointing at no tenant, and its completion failed for
/// good.
#[test]
fn temp_tables_of_the_same_names_are_left_alone() {
    let db = Db::memory();
    let tables = main_tables(&db);
    assert_eq!(tables.len(), 25, "{tables:?}");
    for t in &tables {
        db.conn
            .execute_batch(&format!(
                "CREATE TEMP TABLE {t} AS SELECT * FROM main.{t} WHERE 0"
            ))
            .unwrap();
    }
    let s = db.create();
    db.business(&s, "contact@salon-lea.fr");
    db.step(&s, "channels", r#"{"channels":["phone","sms"]}"#)
        .unwrap();
    db.vapi(&s);
    db.step(
        &s,
        "kb",
        &json!({"method": "documents", "documents": [
            {"title": "Horaires", "content": "Ouvert le samedi de 9h à 18h."}
        ]})
        .to_string(),
    )
    .unwrap();
    let done = db.complete(&s).unwrap();
    assert_eq!(done["sync_status"], "synced", "{done}");
    let found = call(
        &db,
        "SELECT onboarding_kb_search(?1)",
        json!({"session_id": s, "query": "ouvert le samedi", "limit": 1}),
    );
    assert_eq!(found["results"][0]["title"], "Horaires", "{found}");

    // Phone verification and its outbox.
    let sent = db
        .call("SELECT onboarding_phone_send(?1, NULL)", &[&s])
        .unwrap();
    assert_eq!(sent["success"], true, "{sent}");
    let claimed = db
        .call("SELECT onboarding_outbox_claim('sender', 60)", &[])
        .unwrap();
    let message = &claimed["message"];
    let code: String = message["text"]
        .as_str()
        .unwrap()
        .chars()
        .filter(char::is_ascii_digit)
        .take(6)
        .collect();
    db.call(
        "SELECT onboarding_outbox_sent(?1, 'sender', 'provider-1')",
        &[&message["id"].as_i64().unwrap()],
    )
    .unwrap();
    let verified = call(
        &db,
        &format!("SELECT onboarding_phone_verify('{s}', ?1)"),
        json!({ "code": code }),
    );
    assert_eq!(verified["status"], "verified", "{verified}");

    // A website's crawl: claimed, its site's turn, a page, finished.
    let w = db.create();
    db.business(&w, "bonjour@coiffure-paul.fr");
    db.step(&w, "channels", r#"{"channels":["sms"]}"#).unwrap();
    db.kb_website(&w);
    db.complete(&w).unwrap();
    let job = call(
        &db,
        "SELECT onboarding_kb_claim(?1)",
        json!({"worker": "crawler-1", "lease_seconds": 60}),
    );
    let job_id = job["job"]["id"].as_i64().unwrap();
    let url = job["job"]["url"].as_str().unwrap().to_string();
    let turn = call(
        &db,
        "SELECT onboarding_kb_site_take(?1)",
        json!({"url": url, "worker": "crawler-1"}),
    );
    assert_eq!(turn["granted"], true, "{turn}");
    let page = call(
        &db,
        "SELECT onboarding_kb_store_page(?1)",
        json!({"job_id": job_id, "worker": "crawler-1", "url": url, "status": "stored",
               "title": "Accueil", "markdown": "# Salon\n\nCoupe homme 28 euros."}),
    );
    assert_eq!(page["status"], "stored", "{page}");
    call(
        &db,
        "SELECT onboarding_kb_site_release(?1)",
        json!({"url": url, "worker": "crawler-1"}),
    );
    let finished = call(
        &db,
        "SELECT onboarding_kb_finish(?1)",
        json!({"job_id": job_id, "worker": "crawler-1", "error_code": null}),
    );
    assert_eq!(finished["job"]["status"], "done", "{finished}");
    assert_eq!(
        db.call("SELECT onboarding_kb_get(?1)", &[&w]).unwrap()["documents"][0]["title"],
        "Accueil"
    );
    assert_eq!(db.get(&s)["status"], "completed");

    // Nothing reached the TEMP tables; `main` holds the two onboardings.
    for t in &tables {
        let in_temp: i64 = db
            .conn
            .query_row(&format!("SELECT count(*) FROM temp.{t}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(in_temp, 0, "temp.{t}");
    }
    let counts: Vec<i64> = [
        "tenants",
        "onboarding_sessions",
        "omni_agent_configs",
        "kb_documents",
        "phone_verifications",
        "outbox_messages",
        "kb_crawl_pages",
    ]
    .iter()
    .map(|t| {
        db.conn
            .query_row(&format!("SELECT count(*) FROM main.{t}"), [], |r| r.get(0))
            .unwrap()
    })
    .collect();
    assert_eq!(counts, [2, 2, 2, 2, 1, 1, 1]);
    assert_eq!(
        db.conn
            .query_row("PRAGMA main.foreign_key_check", [], |_| Ok(()))
            .ok(),
        None
    );
}

/// The library's tables in an attached database and none in `main`: every
/// function answers as before a migration (`schema_missing`), as
/// `onboarding_schema_version()` says 0. They read and wrote the attached
/// database, until a migration (which works on `main`) left its sessions
/// `not_found`.
#[test]
fn tables_in_an_attached_database_are_not_the_librarys() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.db");
    {
        let with_tables = Db::on(rusqlite::Connection::open(&other).unwrap());
        with_tables.create();
    }
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    onboarding::register_with(&conn, onboarding::PinnedEnv::new(common::T0, 7)).unwrap();
    conn.execute("ATTACH ?1 AS o", [other.to_str().unwrap()])
        .unwrap();
    let version: i64 = conn
        .query_row("SELECT onboarding_schema_version()", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 0);
    let created = conn
        .query_row("SELECT onboarding_create()", [], |r| r.get::<_, String>(0))
        .unwrap_err()
        .to_string();
    assert_eq!(
        created,
        "onboarding_create: schema_missing: no such table: main.tenants (run SELECT onboarding_migrate() first)"
    );
    let sessions: i64 = conn
        .query_row("SELECT count(*) FROM o.onboarding_sessions", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(sessions, 1);
}

/// A migration from a connection with a TEMP table named as one of the
/// library's is refused, saying what to do: the files name their tables
/// alone, so their `CREATE INDEX` and `ALTER TABLE` went to the TEMP one
/// (an upgrade recorded its version and left the database's table without
/// its column for good; a first migration failed half-way).
#[test]
fn a_migration_under_a_temp_table_of_the_same_name_is_refused() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    onboarding::register_with(&conn, onboarding::PinnedEnv::new(common::T0, 7)).unwrap();
    conn.execute_batch("CREATE TEMP TABLE kb_documents (id INTEGER)")
        .unwrap();
    let refused = conn
        .query_row("SELECT onboarding_migrate()", [], |r| r.get::<_, i64>(0))
        .unwrap_err()
        .to_string();
    assert_eq!(
        refused,
        "onboarding_migrate: internal: this connection has a TEMP table named kb_documents, \
         as the library's table: a migration from it would change that one instead; run DROP \
         TABLE temp.kb_documents (or migrate from another connection)"
    );
    let made: i64 = conn
        .query_row("SELECT count(*) FROM main.sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(made, 0);
    conn.execute_batch("DROP TABLE temp.kb_documents").unwrap();
    let version: i64 = conn
        .query_row("SELECT onboarding_migrate()", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, onboarding::latest_version());
}
