use rusqlite::Connection;
fn ephemerals(conn: &Connection, sql: &str) -> usize {
    let mut st = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
    let mut rows = st.raw_query();
    let mut n = 0;
    while let Some(r) = rows.next().unwrap() {
        if r.get::<_, String>(1).unwrap() == "OpenEphemeral" {
            n += 1;
        }
    }
    n
}
fn main() {
    let path = "/tmp/prof/xp.db";
    let _ = std::fs::remove_file(path);
    let conn = Connection::open(path).unwrap();
    onboarding::register(&conn).unwrap();
    conn.query_row("SELECT onboarding_migrate()", [], |r| r.get::<_, i64>(0))
        .unwrap();
    let q = "INSERT INTO kb_crawl_jobs (tenant_id, session_id, url, status, created_at, updated_at) VALUES (?1, ?2, ?3, 'queued', ?4, ?4)";
    println!("before: {}", ephemerals(&conn, q));
    // the edit, inside a savepoint, as a nested call would do
    conn.execute_batch("SAVEPOINT m").unwrap();
    let v: i64 = conn
        .query_row("PRAGMA schema_version", [], |r| r.get(0))
        .unwrap();
    conn.execute_batch("PRAGMA writable_schema = ON").unwrap();
    let n = conn.execute("UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (status IN (''queued'', ''running'', ''done'', ''failed''))', 'CHECK (status = ''queued'' OR status = ''running'' OR status = ''done'' OR status = ''failed'')') WHERE type = 'table' AND name = 'kb_crawl_jobs'", []).unwrap();
    conn.execute_batch(&format!("PRAGMA schema_version = {}", v + 1))
        .unwrap();
    conn.execute_batch("PRAGMA writable_schema = RESET")
        .unwrap();
    conn.execute_batch("RELEASE m").unwrap();
    println!("updated {n}; after (same conn): {}", ephemerals(&conn, q));
    let ic: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    println!("integrity {ic}");
    let c2 = Connection::open(path).unwrap();
    println!("after (new conn): {}", ephemerals(&c2, q));
    let bad = conn.execute("INSERT INTO kb_crawl_jobs (tenant_id, session_id, url, status, created_at, updated_at) VALUES ('t','s','https://x','bogus','a','a')", []);
    println!("bad insert: {:?}", bad.err().map(|e| e.to_string()));
}
