//! The crawler's side of the knowledge base: a worker claims a job with a
//! lease, reports each page, renews, and finishes. Every call is one
//! savepoint, and all of a job's state (its frontier included) lives in the
//! database, so a worker that dies loses nothing: its lease expires, the next
//! claim takes the job over and resumes at the first page not yet reported.
//!
//! The policy lives here rather than in the crawler: scope (same site,
//! depth at most 3, at most 50 pages), identity (normalised URLs, one
//! document per text), counters and retries.

use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value};
use url::Url;

use super::address::{normalize, same_site};
use super::job::load_job;
use super::repeated;
use super::store::{delete, remove_blocks, rewrite, store, NewDocument, Source, Stored};
use crate::env::{iso8601, Env};
use crate::error::{checked_text, quote, Error, Result};
use crate::savepoint::in_savepoint;
use crate::sql;
use crate::validate::{no_control_character, Fields};

/// At most this many pages per job, the start page included.
pub const MAX_PAGES: i64 = 50;
/// Links are followed this many hops from the start page.
pub const MAX_DEPTH: i64 = 3;
/// A job whose whole site fails is tried this many times, then fails.
pub const MAX_ATTEMPTS: i64 = 3;
/// Seconds before the next attempt, after attempt 1 and after attempt 2.
pub const BACKOFF_SECONDS: [i64; 2] = [60, 300];
pub const DEFAULT_LEASE_SECONDS: i64 = 60;
/// The longest a job waits for its site (a `Retry-After` past it fails the
/// page): an hour.
pub const MAX_SITE_WAIT_MS: i64 = 3_600_000;
/// A job is given back to wait for its site at most this many times
/// (`sql/012_site_waits.sql`).
pub const MAX_SITE_WAITS: i64 = 5;
/// A page is asked again at most this many times after a 429 or 503.
pub const MAX_PAGE_RETRIES: i64 = 2;

/// Job-level error codes; the first three are worth another attempt.
pub const ERROR_CODES: [&str; 9] = [
    "dns",
    "unreachable",
    "robots_unavailable",
    "robots_disallowed",
    "private_address",
    "timeout",
    "too_large",
    "no_content",
    "js_required",
];
/// The longest page title a report may carry.
pub const MAX_PAGE_TITLE_CHARS: usize = 500;
/// The longest URL a report, a renewal or a site's turn may carry.
pub const MAX_URL_CHARS: usize = 2048;

const RETRYABLE: [&str; 3] = ["dns", "unreachable", "robots_unavailable"];

/// The payload's `worker`: one line of at most 100 characters, as the
/// outbox's worker argument. A NUL or an escape sequence in it was stored
/// as the lease's owner, cut at the NUL when SQL read it back.
pub(super) fn worker_name(f: &Fields) -> Result<String> {
    checked_text("worker", f.str("worker", 100)?, 100)
}

fn worker_and_lease(f: &Fields) -> Result<(String, i64)> {
    let worker = worker_name(f)?;
    let lease = f.int("lease_seconds", 1..=3600, Some(DEFAULT_LEASE_SECONDS))?;
    Ok((worker, lease))
}

/// The job's budget so far as its worker counts it, given with a page or a
/// renewal (both optional): `bytes` its pages took, `elapsed_ms` it has
/// spent crawling. Kept with the job, the larger of the two counts, so that
/// the next worker of the job (after a takeover or a restart) starts from
/// them: the 20 MiB and 3 minutes are the job's (`sql/011_crawl_budget.sql`).
fn record_budget(conn: &Connection, f: &Fields, job_id: i64) -> Result<()> {
    let bytes = f.int("bytes", 0..=i64::MAX, Some(0))?;
    let elapsed = f.int("elapsed_ms", 0..=i64::MAX, Some(0))?;
    if bytes > 0 || elapsed > 0 {
        sql::execute(
            conn,
            "UPDATE main.kb_crawl_jobs SET bytes_fetched = max(bytes_fetched, ?1),
                    crawl_ms = max(crawl_ms, ?2)
             WHERE id = ?3",
            (bytes, elapsed, job_id),
        )?;
    }
    Ok(())
}

// -- onboarding_kb_claim('{"worker":"crawler-1","lease_seconds":60}')
//      -> '{"success":true,"job":{"id":1,…,"status":"running","frontier":[{"url":"https://…/","depth":0}]}}'
//      or '{"success":true,"job":null}' when no job is due
/// Takes the oldest due job: a queued one whose backoff is over, or a
/// running one whose lease expired (its worker died).
pub fn claim(conn: &Connection, env: &dyn Env, payload: Option<&str>) -> Result<Value> {
    let f = Fields::parse(payload)?;
    let (worker, lease) = worker_and_lease(&f)?;
    in_savepoint(conn, || {
        let now_ms = env.now_ms();
        let now = iso8601(now_ms);
        // A job whose every attempt died with its worker ends here rather
        // than being taken over forever (`timeout`): `done` with the pages
        // it stored, as `finish` ends it, else `failed`; its pages not
        // fetched say so, so that its counters add up.
        let dead: Vec<i64> = sql::with(
            conn,
            "SELECT id FROM main.kb_crawl_jobs
             WHERE status = 'running' AND lease_expires_at <= ?1 AND attempts >= ?2",
            |s| {
                s.query_map((&now, MAX_ATTEMPTS), |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()
            },
        )?;
        for job_id in dead {
            // Ending it `done` rewrites its documents; should that fail, the
            // job still ends (`failed`) rather than every claim failing on it.
            let ended = in_savepoint(conn, || {
                let (job, ..) = job_row(conn, job_id)?;
                end_with(conn, &job, Some("timeout"), false, &now)
            });
            if ended.is_err() {
                end_job(conn, job_id, "failed", Some("timeout"), &now)?;
            }
        }
        let due: Option<i64> = sql::query_row(
            conn,
            "SELECT id FROM main.kb_crawl_jobs
             WHERE (status = 'queued' AND coalesce(next_attempt_at, '') <= ?1)
                OR (status = 'running' AND lease_expires_at <= ?1)
             ORDER BY id LIMIT 1",
            [&now],
            |r| r.get(0),
        )
        .optional()?;
        let Some(job_id) = due else {
            return Ok(json!({ "success": true, "job": null }));
        };
        let start: String = sql::query_row(
            conn,
            "UPDATE main.kb_crawl_jobs SET status = 'running', attempts = attempts + 1,
                    lease_owner = ?1, lease_expires_at = ?2, next_attempt_at = NULL,
                    started_at = coalesce(started_at, ?3), finished_at = NULL, updated_at = ?3
             WHERE id = ?4 RETURNING url",
            (&worker, iso8601(now_ms + lease * 1000), &now, job_id),
            |r| r.get(0),
        )?;
        sql::execute(
            conn,
            "INSERT INTO main.kb_crawl_pages (job_id, url, depth, created_at, updated_at)
             VALUES (?1, ?2, 0, ?3, ?3) ON CONFLICT (job_id, url) DO NOTHING",
            (job_id, &start, &now),
        )?;
        update_counters(conn, job_id, &now)?;
        let mut job = load_job(conn, job_id)?;
        job["frontier"] = frontier(conn, job_id)?;
        // What the job's earlier workers spent of its budget.
        let (bytes, elapsed): (i64, i64) = sql::query_row(
            conn,
            "SELECT bytes_fetched, crawl_ms FROM main.kb_crawl_jobs WHERE id = ?1",
            [job_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        job["bytes_fetched"] = json!(bytes);
        job["crawl_ms"] = json!(elapsed);
        Ok(json!({ "success": true, "job": job }))
    })
}

/// The job's pages not yet reported, breadth first.
fn frontier(conn: &Connection, job_id: i64) -> Result<Value> {
    let rows = sql::with(
        conn,
        "SELECT url, depth, retries FROM main.kb_crawl_pages WHERE job_id = ?1 AND status = 'pending'
         ORDER BY depth, id",
        |s| {
            s.query_map([job_id], |r| {
                Ok(json!({
                    "url": r.get::<_, String>(0)?,
                    "depth": r.get::<_, i64>(1)?,
                    "retries": r.get::<_, i64>(2)?,
                }))
            })?
            .collect::<rusqlite::Result<_>>()
        },
    )?;
    Ok(Value::Array(rows))
}

fn update_counters(conn: &Connection, job_id: i64, now: &str) -> Result<()> {
    sql::execute(
        conn,
        "UPDATE main.kb_crawl_jobs SET
             pages_found = (SELECT count(*) FROM main.kb_crawl_pages WHERE job_id = ?1),
             pages_stored = (SELECT count(*) FROM main.kb_crawl_pages WHERE job_id = ?1 AND status = 'stored'),
             pages_skipped = (SELECT count(*) FROM main.kb_crawl_pages WHERE job_id = ?1 AND status = 'skipped'),
             pages_failed = (SELECT count(*) FROM main.kb_crawl_pages WHERE job_id = ?1 AND status = 'failed'),
             updated_at = ?2
         WHERE id = ?1",
        (job_id, now),
    )?;
    Ok(())
}

/// Ends job `job_id` as `status` with `code`: its pages not fetched are
/// reported `not_fetched`, its counters add up, its lease is released.
fn end_job(
    conn: &Connection,
    job_id: i64,
    status: &str,
    code: Option<&str>,
    now: &str,
) -> Result<()> {
    sql::execute(
        conn,
        "UPDATE main.kb_crawl_pages SET status = 'skipped', reason = 'not_fetched', updated_at = ?1
         WHERE job_id = ?2 AND status = 'pending'",
        (now, job_id),
    )?;
    update_counters(conn, job_id, now)?;
    sql::execute(
        conn,
        "UPDATE main.kb_crawl_jobs SET status = ?1, error_code = ?2, finished_at = ?3,
                lease_owner = NULL, lease_expires_at = NULL, updated_at = ?3
         WHERE id = ?4",
        (status, code, now, job_id),
    )?;
    Ok(())
}

/// The job a worker holds: its tenant and start URL, or `conflict` when
/// the lease is gone (expired and taken over, or the job is over).
struct Held {
    id: i64,
    tenant_id: String,
    start: Url,
}

/// tenant_id, url, lease_owner, lease_expires_at, status
type LeaseRow = (String, String, Option<String>, Option<String>, String);

fn held(conn: &Connection, job_id: i64, worker: &str, now: &str) -> Result<Held> {
    let (job, owner, expires, status) = job_row(conn, job_id)?;
    let holds = status == "running"
        && owner.as_deref() == Some(worker)
        && expires.as_deref().is_some_and(|e| e > now);
    if !holds {
        return Err(Error::conflict(format!(
            "job {job_id} is not leased by worker {} (status {status}; its lease expired or another worker holds it)",
            quote(worker)
        )));
    }
    Ok(job)
}

/// A job, whoever holds it, with its lease owner, expiry and status.
fn job_row(
    conn: &Connection,
    job_id: i64,
) -> Result<(Held, Option<String>, Option<String>, String)> {
    let row: Option<LeaseRow> = sql::query_row(
        conn,
        "SELECT tenant_id, url, lease_owner, lease_expires_at, status FROM main.kb_crawl_jobs WHERE id = ?1",
        [job_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )
    .optional()?;
    let Some((tenant_id, url, owner, expires, status)) = row else {
        return Err(Error::new(
            crate::ErrorKind::NotFound,
            format!("job {job_id} does not exist"),
        ));
    };
    let start = Url::parse(&url)
        .map_err(|_| Error::internal(format!("stored job url {} is unreadable", quote(&url))))?;
    let job = Held {
        id: job_id,
        tenant_id,
        start,
    };
    Ok((job, owner, expires, status))
}

fn extend_lease(conn: &Connection, job_id: i64, now_ms: i64, lease: i64) -> Result<String> {
    let expires = iso8601(now_ms + lease * 1000);
    sql::execute(
        conn,
        "UPDATE main.kb_crawl_jobs SET lease_expires_at = ?1 WHERE id = ?2",
        (&expires, job_id),
    )?;
    Ok(expires)
}

// -- onboarding_kb_renew('{"job_id":1,"worker":"crawler-1","lease_seconds":60,
//                          "bytes":48213,"elapsed_ms":21500}')   (the last two optional)
//      -> '{"success":true,"job_id":1,"lease_expires_at":"2026-11-24T10:01:00.000Z"}'
// -- onboarding_kb_renew('{"job_id":1,"worker":"crawler-1","url":"https://…/tarifs","retries":1}')
/// Extends a held lease. With `url` and `retries` (1 to
/// [`MAX_PAGE_RETRIES`]), a pending page the site refused with a short
/// `Retry-After`, which the worker retries in hand: its retries are kept
/// with it before the worker waits, so that a worker taking the job over
/// after a crash or a lost lease goes on counting (as [`release`] keeps
/// them when the job waits in the queue).
pub fn renew(conn: &Connection, env: &dyn Env, payload: Option<&str>) -> Result<Value> {
    let f = Fields::parse(payload)?;
    let job_id = f.int("job_id", 1..=i64::MAX, None)?;
    let (worker, lease) = worker_and_lease(&f)?;
    let page = page_retries(&f)?;
    in_savepoint(conn, || {
        let now_ms = env.now_ms();
        let now = iso8601(now_ms);
        held(conn, job_id, &worker, &now)?;
        record_budget(conn, &f, job_id)?;
        if let Some((url, retries)) = page {
            keep_retries(conn, job_id, url, retries, &now)?;
        }
        let expires = extend_lease(conn, job_id, now_ms, lease)?;
        Ok(json!({ "success": true, "job_id": job_id, "lease_expires_at": expires }))
    })
}

/// A link of a page, as the frontier would hold it: same site, http(s),
/// normalised; `None` for anything else.
fn in_scope(link: &str, start: &Url) -> Option<String> {
    let url = Url::parse(link).ok()?;
    let url = normalize(&url);
    ((url.scheme() == "http" || url.scheme() == "https") && same_site(&url, start))
        .then(|| url.to_string())
}

/// The forms of `url` that are one page of its site: over http and https,
/// on the host with and without `www.` (itself first).
fn forms(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let Ok(parsed) = Url::parse(url) else {
        return out;
    };
    let Some(host) = parsed.host_str() else {
        return out;
    };
    let other_host = match host.strip_prefix("www.") {
        Some(bare) => bare.to_string(),
        None => format!("www.{host}"),
    };
    for scheme in ["http", "https"] {
        for host in [host, other_host.as_str()] {
            let mut form = parsed.clone();
            if form.set_scheme(scheme).is_ok() && form.set_host(Some(host)).is_ok() {
                let form = form.to_string();
                if !out.contains(&form) {
                    out.push(form);
                }
            }
        }
    }
    out
}

/// The job's page that `url` is, in any of its forms (see [`forms`]): a
/// link to `www.` or over the other scheme is a page already queued, not a
/// new one (three forms of /contact were three pages, fetched three times
/// out of the job's 50).
fn page_of_site(
    conn: &Connection,
    job_id: i64,
    url: &str,
) -> Result<Option<(i64, String, String)>> {
    for form in forms(url) {
        if let Some((id, _, status)) = page_row(conn, job_id, &form)? {
            return Ok(Some((id, form, status)));
        }
    }
    Ok(None)
}

/// Adds the links of a page at `depth` to the frontier while there is room.
fn admit_links(
    conn: &Connection,
    job: &Held,
    links: &[&str],
    depth: i64,
    now: &str,
) -> Result<Vec<Value>> {
    let mut added = Vec::new();
    if depth > MAX_DEPTH {
        return Ok(added);
    }
    let mut count: i64 = sql::query_row(
        conn,
        "SELECT count(*) FROM main.kb_crawl_pages WHERE job_id = ?1",
        [job.id],
        |r| r.get(0),
    )?;
    // A link past the URL limit is never a page: its report (`url`) would
    // be refused, and the job would stop at it on every attempt.
    let admitted = links
        .iter()
        .filter_map(|l| in_scope(l, &job.start))
        .filter(|u| u.chars().count() <= MAX_URL_CHARS);
    for url in admitted {
        if count >= MAX_PAGES {
            break;
        }
        if page_of_site(conn, job.id, &url)?.is_some() {
            continue;
        }
        let inserted = sql::execute(
            conn,
            "INSERT INTO main.kb_crawl_pages (job_id, url, depth, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (job_id, url) DO NOTHING",
            (job.id, &url, depth, now),
        )?;
        if inserted == 1 {
            count += 1;
            added.push(json!({ "url": url, "depth": depth }));
        }
    }
    Ok(added)
}

/// What a worker reports about one page.
struct Report<'a> {
    url: String,
    final_url: Option<String>,
    status: &'a str,
    reason: Option<&'a str>,
    title: Option<&'a str>,
    markdown: Option<&'a str>,
    links: Vec<&'a str>,
    /// Blocks repeated across the site (a footer with the address and the
    /// hours): stored once as documents of their own, not dropped.
    shared: Vec<(String, String)>,
}

fn report(f: &Fields) -> Result<Report<'_>> {
    let status = f.str("status", 16)?;
    if !["stored", "skipped", "failed"].contains(&status) {
        return Err(Error::invalid_field(format!(
            "status {} is not a page status (expected stored, skipped or failed)",
            quote(status)
        )));
    }
    let reason = f.code("reason")?;
    let markdown = f.optional_str("markdown", 2 * 1024 * 1024)?;
    match (status, reason, markdown) {
        ("stored", _, None) => {
            return Err(Error::invalid_field(
                "markdown is required when status is 'stored'",
            ))
        }
        // A page with no text is no document (the table's CHECK would
        // answer it as an internal error, and blanks made one of no chunk).
        ("stored", _, Some(m)) if crate::error::trim(m).is_empty() => {
            return Err(Error::invalid_field(
                "markdown must not be empty when status is 'stored'",
            ))
        }
        ("skipped" | "failed", None, _) => {
            return Err(Error::invalid_field(format!(
                "reason is required when status is '{status}'"
            )))
        }
        _ => {}
    }
    let page_url = |field: &str| -> Result<Option<String>> {
        f.optional_str(field, MAX_URL_CHARS)?
            .map(|t| {
                Url::parse(t)
                    .map(|u| normalize(&u).to_string())
                    .map_err(|_| Error::invalid_field(format!("{field} {} is not a URL", quote(t))))
            })
            .transpose()
    };
    if let Some(markdown) = markdown {
        no_control_character("markdown", markdown)?;
    }
    let title = f.optional_str("title", MAX_PAGE_TITLE_CHARS)?;
    if let Some(title) = title {
        no_control_character("title", title)?;
    }
    let mut shared = Vec::new();
    let blocks = match f.get("shared") {
        None => &[][..],
        Some(Value::Array(blocks)) => &blocks[..],
        Some(_) => return Err(Error::invalid_field("shared must be an array")),
    };
    for (i, b) in blocks.iter().enumerate() {
        match (b["title"].as_str(), b["markdown"].as_str()) {
            (Some(t), Some(m)) if !t.trim().is_empty() && !m.trim().is_empty() => {
                no_control_character(&format!("shared[{i}].title"), t)?;
                no_control_character(&format!("shared[{i}].markdown"), m)?;
                shared.push((t.trim().to_string(), m.to_string()))
            }
            _ => {
                return Err(Error::invalid_field(format!(
                    "shared[{i}] needs a title and a markdown"
                )))
            }
        }
    }
    Ok(Report {
        url: page_url("url")?.ok_or_else(|| Error::invalid_field("url is required"))?,
        final_url: page_url("final_url")?,
        status,
        reason,
        title: title.map(str::trim).filter(|t| !t.is_empty()),
        markdown,
        links: f.strings("links")?,
        shared,
    })
}

/// Sets a page's outcome.
fn set_page(
    conn: &Connection,
    page_id: i64,
    status: &str,
    reason: Option<&str>,
    doc: Option<i64>,
    now: &str,
) -> Result<()> {
    sql::execute(
        conn,
        "UPDATE main.kb_crawl_pages SET status = ?1, reason = ?2, document_id = ?3, updated_at = ?4
         WHERE id = ?5",
        rusqlite::params![status, reason, doc, now, page_id],
    )?;
    Ok(())
}

/// The frontier row of `url` in the job: (id, depth, status).
fn page_row(conn: &Connection, job_id: i64, url: &str) -> Result<Option<(i64, i64, String)>> {
    Ok(sql::query_row(
        conn,
        "SELECT id, depth, status FROM main.kb_crawl_pages WHERE job_id = ?1 AND url = ?2",
        (job_id, url),
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()?)
}

// -- onboarding_kb_store_page('{"job_id":1,"worker":"crawler-1","url":"https://…/tarifs",
//      "status":"stored","title":"Tarifs","markdown":"# Tarifs\n…","links":["https://…/contact"]}')
//      -> '{"success":true,"url":"https://…/tarifs","status":"stored","reason":null,"document_id":3,
//           "chunks":2,"added":[{"url":"https://…/contact","depth":2}],"job":{…}}'
pub fn store_page(conn: &Connection, env: &dyn Env, payload: Option<&str>) -> Result<Value> {
    let f = Fields::parse(payload)?;
    let job_id = f.int("job_id", 1..=i64::MAX, None)?;
    let (worker, lease) = worker_and_lease(&f)?;
    let r = report(&f)?;
    in_savepoint(conn, || {
        let now_ms = env.now_ms();
        let now = iso8601(now_ms);
        let job = held(conn, job_id, &worker, &now)?;
        record_budget(conn, &f, job_id)?;
        let Some((page_id, depth, status)) = page_row(conn, job_id, &r.url)? else {
            return Err(Error::invalid_field(format!(
                "url {} is not a page of job {job_id}",
                quote(&r.url)
            )));
        };
        if status != "pending" {
            return Err(Error::conflict(format!(
                "page {} was already reported ({status})",
                quote(&r.url)
            )));
        }
        // A redirect or a canonical link inside the site: the page's
        // identity is where it ended, and the address asked is a redirect.
        let mut target = (page_id, r.url.clone());
        // The identity's page, when it was settled before this report.
        let mut settled: Option<String> = None;
        // (In any of its forms: a redirect from http to https of the same
        // page is that page.)
        let final_url = r.final_url.as_deref().and_then(|u| in_scope(u, &job.start));
        match final_url {
            // The page itself at another form: stored at the one it ended.
            Some(fin) if forms(&r.url).contains(&fin) => target.1 = fin,
            Some(fin) => {
                admit_links(conn, &job, &[fin.as_str()], depth, &now)?;
                if let Some((id, url, st)) = page_of_site(conn, job_id, &fin)? {
                    if st == "pending" {
                        set_page(conn, page_id, "skipped", Some("redirected"), None, &now)?;
                        target = (id, url);
                    } else {
                        settled = Some(url);
                    }
                }
            }
            None => {}
        }
        let (mut status, mut reason, document_id, chunks) = match (r.status, r.markdown) {
            ("stored", Some(markdown)) => {
                let title = r.title.unwrap_or(&target.1);
                let doc = NewDocument {
                    tenant_id: &job.tenant_id,
                    job_id: Some(job_id),
                    source: Source::Website,
                    url: Some(&target.1),
                    title,
                    markdown,
                    depth: Some(depth),
                    now: &now,
                };
                match store(conn, &doc)? {
                    Stored::New { id, chunks } => ("stored", None, Some(id), chunks),
                    Stored::Duplicate { .. } => ("skipped", Some("duplicate"), None, 0),
                }
            }
            (status, _) => (status, r.reason, None, 0),
        };
        // Its identity's page settled already: a redirect to a page stored,
        // or a canonical another page named too (a template's mistake).
        // With that page's text, or none stored, the page is a redirect to
        // it; with a text of its own (the canonical's mistake) it was just
        // stored under its own address, where it used to be dropped.
        if let Some(identity) = settled.filter(|_| document_id.is_none()) {
            (status, reason) = ("skipped", Some("redirected"));
            target.1 = identity;
        }
        set_page(conn, target.0, status, reason, document_id, &now)?;
        // A page kept out (noindex, a duplicate, a failure) shares nothing:
        // its footer is not stored either.
        if status == "stored" {
            for shared in store_shared(conn, &job, &r.shared, &now)? {
                sql::execute(
                    conn,
                    "INSERT INTO main.kb_shared_carriers (document_id, page_id) VALUES (?1, ?2)
                     ON CONFLICT DO NOTHING",
                    (shared, target.0),
                )?;
            }
        }
        let added = admit_links(conn, &job, &r.links, depth + 1, &now)?;
        update_counters(conn, job_id, &now)?;
        extend_lease(conn, job_id, now_ms, lease)?;
        Ok(json!({
            "success": true,
            "url": target.1,
            "status": status,
            "reason": reason,
            "document_id": document_id,
            "chunks": chunks,
            "added": added,
            "job": load_job(conn, job_id)?,
        }))
    })
}

/// Lifts the blocks the site's template repeats on most of the job's pages
/// (see [`repeated`]) out of them, into one document of their own. The
/// crawler already sends a footer it recognises as a shared block; this
/// catches the address or hours a template writes in plain blocks, which
/// only the job's pages together show. A page left with no text of its
/// own keeps its text; only the chunks holding the blocks are rewritten.
fn lift_repeated_blocks(conn: &Connection, job: &Held, now: &str) -> Result<()> {
    let pages: Vec<(i64, String, String)> = sql::with(
        conn,
        "SELECT id, title, markdown FROM main.kb_documents
         WHERE job_id = ?1 AND depth IS NOT NULL ORDER BY id",
        |s| {
            s.query_map([job.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()
        },
    )?;
    let texts: Vec<&str> = pages.iter().map(|(_, _, m)| m.as_str()).collect();
    let lifted = repeated::repeated(&texts);
    if lifted.is_empty() {
        return Ok(());
    }
    let mut changed = false;
    for (id, title, markdown) in &pages {
        changed |= remove_blocks(conn, *id, &job.tenant_id, title, markdown, &lifted)?;
    }
    if changed {
        let shared = [(
            "Informations pratiques".to_string(),
            lifted.units.join("\n\n"),
        )];
        store_shared(conn, job, &shared, now)?;
    }
    Ok(())
}

/// Stores the site's shared blocks, once each: their text is their
/// identity. Answers their documents (new or already stored).
fn store_shared(
    conn: &Connection,
    job: &Held,
    shared: &[(String, String)],
    now: &str,
) -> Result<Vec<i64>> {
    let site = job.start.join("/").map(|u| u.to_string()).ok();
    let mut ids = Vec::with_capacity(shared.len());
    for (title, markdown) in shared {
        let stored = store(
            conn,
            &NewDocument {
                tenant_id: &job.tenant_id,
                job_id: Some(job.id),
                source: Source::Website,
                url: site.as_deref(),
                title,
                markdown,
                depth: None,
                now,
            },
        )?;
        ids.push(match stored {
            Stored::New { id, .. } | Stored::Duplicate { id } => id,
        });
    }
    Ok(ids)
}

/// Gives each shared block of the job that one stored page alone carried
/// back to that page: a footer of its own is the page's text, not the
/// site's (see `sql/007_carriers_and_sends.sql`). A page whose text with the
/// block would equal another document keeps it shared.
fn return_single_blocks(conn: &Connection, job: &Held) -> Result<()> {
    let single: Vec<(i64, String, i64, String, String)> = sql::with(
        conn,
        "SELECT d.id, d.markdown, p.document_id, page.title, page.markdown
         FROM main.kb_documents d
         JOIN main.kb_shared_carriers c ON c.document_id = d.id
         JOIN main.kb_crawl_pages p ON p.id = c.page_id
         JOIN main.kb_documents page ON page.id = p.document_id
         WHERE d.job_id = ?1 AND d.depth IS NULL AND p.status = 'stored'
         GROUP BY d.id HAVING count(*) = 1
         ORDER BY d.id",
        |s| {
            s.query_map([job.id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<rusqlite::Result<_>>()
        },
    )?;
    for (block_id, block, page_id, title, markdown) in single {
        let whole = format!("{}\n\n{}", markdown.trim_end(), block.trim());
        if rewrite(conn, page_id, &job.tenant_id, &title, &whole)? {
            sql::execute(
                conn,
                "DELETE FROM main.kb_shared_carriers WHERE document_id = ?1",
                [block_id],
            )?;
            delete(conn, block_id)?;
        }
    }
    Ok(())
}

// -- onboarding_kb_finish('{"job_id":1,"worker":"crawler-1","error_code":null}')
//      -> '{"success":true,"job":{"id":1,…,"status":"done","error_code":null,…}}'
/// Ends a job, or puts it back in the queue with a backoff when its whole
/// site failed in a way worth another attempt (DNS, connection, robots 5xx)
/// and attempts remain. Pages not fetched are reported as `not_fetched`.
pub fn finish(conn: &Connection, env: &dyn Env, payload: Option<&str>) -> Result<Value> {
    let f = Fields::parse(payload)?;
    let job_id = f.int("job_id", 1..=i64::MAX, None)?;
    let worker = worker_name(&f)?;
    let code = f.code("error_code")?;
    if let Some(c) = code.filter(|c| !ERROR_CODES.contains(c)) {
        return Err(Error::invalid_field(format!(
            "error_code {} is not a job error code (expected one of {})",
            quote(c),
            ERROR_CODES.join(", ")
        )));
    }
    in_savepoint(conn, || {
        let now_ms = env.now_ms();
        let now = iso8601(now_ms);
        let job = held(conn, job_id, &worker, &now)?;
        let attempts: i64 = sql::query_row(
            conn,
            "SELECT attempts FROM main.kb_crawl_jobs WHERE id = ?1",
            [job_id],
            |r| r.get(0),
        )?;
        let retryable = code.is_some_and(|c| RETRYABLE.contains(&c));
        if retryable && attempts < MAX_ATTEMPTS {
            let wait = BACKOFF_SECONDS[(attempts.clamp(1, 2) - 1) as usize];
            sql::execute(
                conn,
                "UPDATE main.kb_crawl_jobs SET status = 'queued', error_code = ?1, next_attempt_at = ?2,
                        lease_owner = NULL, lease_expires_at = NULL, updated_at = ?3
                 WHERE id = ?4",
                (code, iso8601(now_ms + wait * 1000), &now, job_id),
            )?;
            return Ok(json!({ "success": true, "job": load_job(conn, job_id)? }));
        }
        end_with(conn, &job, code, retryable, &now)?;
        Ok(json!({ "success": true, "job": load_job(conn, job_id)? }))
    })
}

/// Ends `job` for good: `done` when it stored pages and its site did not
/// fail as a whole (`site_failed`), else `failed`; nothing stored and no
/// reason given is still a failure, `no_content`. A job that ends `done`
/// has its site's repeated blocks lifted into a document of their own.
fn end_with(
    conn: &Connection,
    job: &Held,
    code: Option<&str>,
    site_failed: bool,
    now: &str,
) -> Result<()> {
    let stored: i64 = sql::query_row(
        conn,
        "SELECT pages_stored FROM main.kb_crawl_jobs WHERE id = ?1",
        [job.id],
        |r| r.get(0),
    )?;
    let code = code.or((stored == 0).then_some("no_content"));
    let status = if stored > 0 && !site_failed {
        "done"
    } else {
        "failed"
    };
    if status == "done" {
        return_single_blocks(conn, job)?;
        lift_repeated_blocks(conn, job, now)?;
    }
    end_job(conn, job.id, status, code, now)
}

// -- onboarding_kb_release('{"worker":"crawler-1"}')
//      -> '{"success":true,"released":[{"id":1,…,"status":"queued","attempts":0,…}]}'
// -- onboarding_kb_release('{"worker":"crawler-1","job_id":1,"wait_ms":600000,"url":"https://…/tarifs","retries":1}')
//      -> '{"success":true,"released":[{"id":1,…,"status":"queued","next_attempt_at":"…"}]}'
/// Gives back the jobs a worker holds and will not finish, because its
/// process is stopping (every one, or only `job_id`): queued again at once
/// for the next claim, the attempt each was on not counted (a stop is no
/// failure of the site), their frontier and stored pages kept. Without it,
/// a job would wait for its lease to run out, and the takeover would count
/// as an attempt. By worker rather than by job, so that a claim the worker
/// sent just before it stopped is given back too, its answer unread.
///
/// With `wait_ms`, job `job_id` waits for its site instead (a `Retry-After`
/// longer than the job can wait in hand): it is claimed again no sooner
/// than `wait_ms` from now, at most [`MAX_SITE_WAITS`] times (past them,
/// `conflict` and nothing changes: the job ends). `url` and `retries`,
/// when given, are a pending page and the retries it has had, the one it
/// waits for included (1 to [`MAX_PAGE_RETRIES`]): kept with it, so that
/// the worker that resumes the job goes on counting. With `job_id`, the
/// job's budget so far may come along (`bytes`, `elapsed_ms`, as with a
/// page).
pub fn release(conn: &Connection, env: &dyn Env, payload: Option<&str>) -> Result<Value> {
    let f = Fields::parse(payload)?;
    let job_id = f.optional_int("job_id", 1..=i64::MAX)?;
    let worker = worker_name(&f)?;
    let wait = f.optional_int("wait_ms", 1..=MAX_SITE_WAIT_MS)?;
    if wait.is_some() && job_id.is_none() {
        return Err(Error::invalid_field(
            "job_id is required with wait_ms (the job that waits for its site)",
        ));
    }
    if f.get("url").is_some() && wait.is_none() {
        return Err(Error::invalid_field(
            "url is only given with wait_ms (the page the site asked to wait for)",
        ));
    }
    let page = page_retries(&f)?;
    in_savepoint(conn, || {
        let now_ms = env.now_ms();
        let now = iso8601(now_ms);
        let jobs: Vec<i64> = match job_id {
            Some(id) => {
                held(conn, id, &worker, &now)?;
                record_budget(conn, &f, id)?;
                vec![id]
            }
            None => sql::with(
                conn,
                "SELECT id FROM main.kb_crawl_jobs
                 WHERE status = 'running' AND lease_owner = ?1 AND lease_expires_at > ?2
                 ORDER BY id",
                |s| {
                    s.query_map((&worker, &now), |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()
                },
            )?,
        };
        if let (Some(wait), Some(&id)) = (wait, jobs.first()) {
            wait_for_site(conn, id, page, iso8601(now_ms + wait), &now)?;
            return Ok(json!({ "success": true, "released": [load_job(conn, id)?] }));
        }
        let mut released = Vec::with_capacity(jobs.len());
        for id in jobs {
            sql::execute(
                conn,
                "UPDATE main.kb_crawl_jobs SET status = 'queued', attempts = max(attempts - 1, 0),
                        lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = NULL,
                        updated_at = ?1
                 WHERE id = ?2",
                (&now, id),
            )?;
            released.push(load_job(conn, id)?);
        }
        Ok(json!({ "success": true, "released": released }))
    })
}

/// A payload's pending page and the retries it has had (`url` and
/// `retries`, given together), if any.
fn page_retries(f: &Fields) -> Result<Option<(&str, i64)>> {
    match (f.get("url"), f.get("retries")) {
        (None, None) => Ok(None),
        (Some(_), _) => Ok(Some((
            f.str("url", MAX_URL_CHARS)?,
            f.int("retries", 1..=MAX_PAGE_RETRIES, None)?,
        ))),
        (None, Some(_)) => Err(Error::invalid_field(
            "url is required with retries (the page they are of)",
        )),
    }
}

/// Keeps `retries` with pending page `url` of job `id`, never lowering
/// what is kept.
fn keep_retries(conn: &Connection, id: i64, url: &str, retries: i64, now: &str) -> Result<()> {
    match page_row(conn, id, url)? {
        None => {
            return Err(Error::invalid_field(format!(
                "url {} is not a page of job {id}",
                quote(url)
            )))
        }
        Some((_, _, status)) if status != "pending" => {
            return Err(Error::conflict(format!(
                "page {} was already reported ({status})",
                quote(url)
            )))
        }
        Some(_) => {}
    }
    sql::execute(
        conn,
        "UPDATE main.kb_crawl_pages SET retries = max(retries, ?1), updated_at = ?2
         WHERE job_id = ?3 AND url = ?4",
        (retries, now, id, url),
    )?;
    Ok(())
}

/// Puts job `id` back in the queue until `until`, its attempt not counted,
/// and keeps the retries of its pending page `page` (url, retries);
/// `conflict` past the job's waits.
fn wait_for_site(
    conn: &Connection,
    id: i64,
    page: Option<(&str, i64)>,
    until: String,
    now: &str,
) -> Result<()> {
    let waits: i64 = sql::query_row(
        conn,
        "SELECT site_waits FROM main.kb_crawl_jobs WHERE id = ?1",
        [id],
        |r| r.get(0),
    )?;
    if waits >= MAX_SITE_WAITS {
        return Err(Error::conflict(format!(
            "job {id} has waited for its site {MAX_SITE_WAITS} times already"
        )));
    }
    if let Some((url, retries)) = page {
        keep_retries(conn, id, url, retries, now)?;
    }
    // A page the site refused: this attempt got through to the site, and
    // an earlier attempt's error (robots.txt unavailable, say) is no longer
    // the job's state. A wait met before asking anything keeps it.
    sql::execute(
        conn,
        "UPDATE main.kb_crawl_jobs SET status = 'queued', attempts = max(attempts - 1, 0),
                site_waits = site_waits + 1,
                error_code = CASE WHEN ?4 THEN NULL ELSE error_code END,
                lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = ?1,
                updated_at = ?2
         WHERE id = ?3",
        (&until, now, id, page.is_some()),
    )?;
    Ok(())
}
