//! Shared fixtures: a migrated database with pinned time and randomness, a
//! way to call the functions and get their JSON or their error text, rows
//! as JSON objects, and a snapshot of every table for atomicity checks.
#![allow(dead_code)]

use std::sync::Arc;

use onboarding::PinnedEnv;
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Connection;
use serde_json::Value;

/// 2026-11-24T10:00:00.000Z
pub const T0: i64 = 1_795_514_400_000;

pub const TABLES: [&str; 19] = [
    "tenants",
    "onboarding_sessions",
    "onboarding_analytics",
    "omni_agent_configs",
    "omni_phone_mappings",
    "omnichannel_campaigns",
    "kb_crawl_jobs",
    "onboarding_create_requests",
    "kb_crawl_pages",
    "kb_documents",
    "kb_chunks",
    "kb_chunks_index",
    "kb_site_turns",
    "onboarding_schema_migrations",
    "onboarding_secrets",
    "phone_verifications",
    "outbox_messages",
    "onboarding_call_replies",
    "kb_recut_failures",
];

pub struct Db {
    pub conn: Connection,
    pub env: Arc<PinnedEnv>,
}

impl Db {
    /// An in-memory database, migrated.
    pub fn memory() -> Db {
        Db::on(Connection::open_in_memory().unwrap())
    }

    /// A migrated database over `conn`, with the functions registered.
    pub fn on(conn: Connection) -> Db {
        let env = PinnedEnv::new(T0, 42);
        onboarding::register_with(&conn, env.clone()).unwrap();
        Db::migrated(conn, env)
    }

    /// An in-memory database with the functions registered as a host that
    /// owns its connection does (`register_cached`), and their statements.
    /// Drop the statements before the database.
    pub fn cached() -> (onboarding::CachedStatements, Db) {
        let conn = Connection::open_in_memory().unwrap();
        let env = PinnedEnv::new(T0, 42);
        let statements = onboarding::register_cached(&conn, env.clone()).unwrap();
        (statements, Db::migrated(conn, env))
    }

    fn migrated(conn: Connection, env: Arc<PinnedEnv>) -> Db {
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        let db = Db { conn, env };
        assert_eq!(
            db.scalar("SELECT onboarding_migrate()"),
            SqlValue::Integer(onboarding::latest_version())
        );
        db
    }

    /// Runs a one-value SELECT; panics on error.
    pub fn scalar(&self, sql: &str) -> SqlValue {
        self.conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Calls a function returning JSON text: the parsed JSON or the error text.
    pub fn call(&self, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<Value, String> {
        self.conn
            .query_row(sql, params, |r| r.get::<_, String>(0))
            .map(|text| serde_json::from_str(&text).unwrap())
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(_, Some(text)) => text,
                other => other.to_string(),
            })
    }

    pub fn create(&self) -> String {
        let v = self.call("SELECT onboarding_create('{}')", &[]).unwrap();
        v["session_id"].as_str().unwrap().to_string()
    }

    pub fn step(&self, session: &str, step: &str, payload: &str) -> Result<Value, String> {
        self.call(
            "SELECT onboarding_step(?1, ?2, ?3)",
            &[&session, &step, &payload],
        )
    }

    pub fn complete(&self, session: &str) -> Result<Value, String> {
        self.call("SELECT onboarding_complete(?1, '{}')", &[&session])
    }

    pub fn get(&self, session: &str) -> Value {
        self.call("SELECT onboarding_get(?1)", &[&session]).unwrap()
    }

    /// A host's trigger that, on any update of a tenant's phone (the
    /// business step and completion make one), rewrites the tenant's session
    /// row with `REPLACE`: same id and columns, a new rowid.
    pub fn replace_sessions_on_phone_updates(&self) {
        self.conn
            .execute_batch(
                "CREATE TRIGGER host_touch AFTER UPDATE OF phone ON tenants BEGIN
                     REPLACE INTO onboarding_sessions
                     SELECT * FROM onboarding_sessions WHERE tenant_id = NEW.id;
                 END;",
            )
            .unwrap();
    }

    /// The origin note's business step.
    pub fn business(&self, session: &str, email: &str) -> Value {
        self.step(
            session,
            "business",
            &format!(
                r#"{{"company_name":"Mon Entreprise","industry":"Immobilier","phone":"06 12 34 56 78","email":"{email}"}}"#
            ),
        )
        .unwrap()
    }

    pub fn vapi(&self, session: &str) -> Value {
        self.step(
            session,
            "vapi",
            r#"{"agent_type":"multi_purpose","voice":"sara","assistant_name":"Sara"}"#,
        )
        .unwrap()
    }

    /// The kb step with a website to crawl.
    pub fn kb_website(&self, session: &str) -> Value {
        self.step(
            session,
            "kb",
            r#"{"crawl_url":"https://mon-site.fr","method":"website"}"#,
        )
        .unwrap()
    }

    /// The rows a query returns, in its order, each as a JSON object of its
    /// columns: NULL is `null`, integers and reals keep their SQL type
    /// (`1` is not `1.0`), text stays text (JSON columns are not parsed).
    pub fn rows(&self, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Vec<Value> {
        let mut stmt = self.conn.prepare(sql).unwrap();
        let names: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
        let mut rows = stmt.query(params).unwrap();
        let mut out = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            let mut object = serde_json::Map::new();
            for (i, name) in names.iter().enumerate() {
                let value = match row.get_ref(i).unwrap() {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::from(n),
                    ValueRef::Real(x) => Value::from(x),
                    ValueRef::Text(t) => Value::from(std::str::from_utf8(t).unwrap()),
                    ValueRef::Blob(_) => panic!("column {name} holds a blob"),
                };
                object.insert(name.clone(), value);
            }
            out.push(Value::Object(object));
        }
        out
    }

    /// The one row a query returns, as [`Db::rows`] gives it; panics when
    /// the query returns no row or several.
    pub fn row(&self, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Value {
        let mut rows = self.rows(sql, params);
        assert_eq!(rows.len(), 1, "expected one row from {sql}, got {rows:?}");
        rows.remove(0)
    }

    /// Every row of every table, as text, in a stable order (the tables a
    /// database at an older schema version lacks are left out).
    pub fn snapshot(&self) -> Vec<String> {
        let mut rows = Vec::new();
        for table in TABLES {
            let exists: bool = self
                .conn
                .query_row(
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            if !exists {
                continue;
            }
            let mut stmt = self
                .conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))
                .unwrap();
            let n = stmt.column_count();
            let mut q = stmt.query([]).unwrap();
            while let Some(r) = q.next().unwrap() {
                let cells: Vec<String> = (0..n)
                    .map(|i| format!("{:?}", r.get::<_, SqlValue>(i).unwrap()))
                    .collect();
                rows.push(format!("{table}: {}", cells.join(" | ")));
            }
        }
        rows
    }

    pub fn count(&self, table: &str) -> i64 {
        self.conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }
}

/// The JSON a step answers.
pub fn step_answer(session: &str, step: &str, current: i64, progress: i64) -> Value {
    serde_json::json!({
        "success": true,
        "session_id": session,
        "step": step,
        "current_step": current,
        "progress_percentage": progress,
    })
}
