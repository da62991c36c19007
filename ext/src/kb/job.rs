//! A crawl job's row as the kb functions answer it: `onboarding_kb_get`
//! and every worker function.

use rusqlite::{Connection, OptionalExtension, Row};
use serde_json::{json, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::sql;

/// The columns [`job_json`] reads, in its order: a macro, so that each
/// statement using it stays a string literal (the statement cache keys
/// statements by the address of their text).
macro_rules! job_columns {
    () => {
        "id, session_id, tenant_id, url, status, attempts, pages_found,
     pages_stored, pages_skipped, pages_failed, error_code, started_at, finished_at,
     next_attempt_at, lease_owner, lease_expires_at"
    };
}
pub(crate) use job_columns;

/// A job row as the functions answer it.
pub fn job_json(r: &Row<'_>) -> rusqlite::Result<Value> {
    Ok(json!({
        "id": r.get::<_, i64>(0)?,
        "session_id": r.get::<_, String>(1)?,
        "tenant_id": r.get::<_, String>(2)?,
        "url": r.get::<_, String>(3)?,
        "status": r.get::<_, String>(4)?,
        "attempts": r.get::<_, i64>(5)?,
        "pages_found": r.get::<_, i64>(6)?,
        "pages_stored": r.get::<_, i64>(7)?,
        "pages_skipped": r.get::<_, i64>(8)?,
        "pages_failed": r.get::<_, i64>(9)?,
        "error_code": r.get::<_, Option<String>>(10)?,
        "started_at": r.get::<_, Option<String>>(11)?,
        "finished_at": r.get::<_, Option<String>>(12)?,
        "next_attempt_at": r.get::<_, Option<String>>(13)?,
        "lease_owner": r.get::<_, Option<String>>(14)?,
        "lease_expires_at": r.get::<_, Option<String>>(15)?,
    }))
}

pub fn load_job(conn: &Connection, job_id: i64) -> Result<Value> {
    sql::query_row(
        conn,
        concat!(
            "SELECT ",
            job_columns!(),
            " FROM main.kb_crawl_jobs WHERE id = ?1"
        ),
        [job_id],
        job_json,
    )
    .optional()?
    .ok_or_else(|| Error::new(ErrorKind::NotFound, format!("job {job_id} does not exist")))
}
