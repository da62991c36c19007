//! Search benchmark: `onboarding_kb_search` on a maximal knowledge base (20
//! pasted texts of 200,000 characters, about 4,300 chunks), first alone in
//! its file, then among `--tenants` knowledge bases of the same size and
//! vocabulary, against the floor measured in the same run: the full-text
//! index's own lookup of the tenant's matching chunks, reading the terms
//! that any scoring of them must read.
//!
//! `cargo bench -p onboarding-benches --bench search -- [--tenants N] [--reps R]`
//!
//! The texts are drawn (a fixed sequence) from a salon's vocabulary, so that
//! four of the queries' terms are in most chunks of every tenant: the worst
//! case for a search, whose scoring counts every chunk that holds a term.
//! The first query's words are in one section of a hundred, as a caller's
//! question usually finds a few chunks. Each query
//! runs `--reps` times in turn with its floor, at both stages; the tables
//! show medians. A search's time should not move with what the other
//! tenants store: the last column compares the two stages.

use std::time::Instant;

use onboarding_benches::db::{Db, Registration, Settings, TempDir};
use onboarding_benches::knowledge::{onboard, Draw, CHARS, DOCUMENTS};
use onboarding_benches::report::{self, median, Table};
use onboarding_benches::Result;
use rusqlite::OptionalExtension;
use serde_json::json;

/// The questions, each with its analysed terms as the library makes them
/// (stemmed, folded, stop words gone, synonyms added), which the floor's
/// MATCH uses.
const QUERIES: [(&str, &str); 5] = [
    // In one section of a hundred: what a caller's question usually
    // finds, a few chunks.
    ("rue des Lilas", r#""ru" OR "lil""#),
    ("samedi", r#""samed""#),
    // "horaires" also asks for the term of "horairès" (a question's
    // word is read with its last letters' `e`s accented, so that
    // "acces" finds "accès"), which no page holds.
    (
        "horaires d'ouverture le samedi",
        r#""horair" OR "horaires" OR "ouvertur" OR "samed""#,
    ),
    (
        "coupe homme prix",
        r#""coup" OR "homm" OR "prix" OR "tarif""#,
    ),
    (
        "vous êtes ouverts le samedi ?",
        r#""ouvert" OR "horair" OR "ouvertur" OR "samed""#,
    ),
];

/// Milliseconds of one search, after checking that it found something.
fn search(db: &Db, session: &str, query: &str) -> Result<f64> {
    let payload = json!({"session_id": session, "query": query}).to_string();
    let start = Instant::now();
    let body: String = db
        .conn
        .prepare_cached("SELECT onboarding_kb_search(?1)")
        .and_then(|mut s| s.query_row([&payload], |r| r.get(0)))
        .map_err(|e| format!("onboarding_kb_search: {e}"))?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if !body.starts_with(r#"{"success":true"#) || !body.contains(r#""document_id""#) {
        return Err(format!("search for {query:?} found nothing: {body}"));
    }
    Ok(ms)
}

/// Milliseconds of the floor, and how many chunks it read: the tenant's
/// entries holding a term, found by the index, with their terms. On a
/// schema before migration 010 (`kb_chunks_fts`, without a tenant column, for
/// runs of this file against older commits), the index's matches of every
/// tenant, each looked up to keep the tenant's: what a search could do then.
fn floor(db: &Db, tenant: &Tenant, terms: &str) -> Result<(f64, usize)> {
    let (sql, query) = if tenant.indexed {
        (
            "SELECT terms, heading_terms FROM kb_chunks_index WHERE kb_chunks_index MATCH ?1 \
             AND ?2 IS NOT NULL",
            format!(
                "tenant : \"{}\" AND {{terms heading_terms}} : ({terms})",
                tenant.hex
            ),
        )
    } else {
        (
            "SELECT f.terms, f.heading_terms FROM kb_chunks_fts f \
             CROSS JOIN kb_chunks c ON c.id = f.rowid \
             WHERE kb_chunks_fts MATCH ?1 AND c.tenant_id = ?2",
            terms.to_string(),
        )
    };
    let start = Instant::now();
    let (chunks, bytes) = db
        .conn
        .prepare_cached(sql)
        .and_then(|mut s| {
            let mut rows = s.query((&query, &tenant.id))?;
            let (mut chunks, mut bytes) = (0, 0);
            while let Some(row) = rows.next()? {
                chunks += 1;
                bytes += row.get_ref(0)?.as_bytes()?.len() + row.get_ref(1)?.as_bytes()?.len();
            }
            Ok((chunks, bytes))
        })
        .map_err(|e| format!("floor: {e}"))?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if bytes == 0 {
        return Err(format!("the floor found nothing for {terms}"));
    }
    Ok((ms, chunks))
}

/// The searched tenant: its id, the id's token in the index, and whether
/// the index has a tenant column (`kb_chunks_index`, migration 010).
struct Tenant {
    id: String,
    hex: String,
    indexed: bool,
}

/// Per query: search medians, floor medians, and the chunks the floor read.
fn measure(db: &Db, session: &str, tenant: &Tenant, reps: usize) -> Result<Vec<(f64, f64, usize)>> {
    let mut out = Vec::new();
    for (query, terms) in QUERIES {
        let (mut s, mut f, mut chunks) = (Vec::new(), Vec::new(), 0);
        // One untimed round first: the pages in SQLite's cache.
        search(db, session, query)?;
        floor(db, tenant, terms)?;
        for rep in 0..reps {
            if rep % 2 == 0 {
                s.push(search(db, session, query)?);
                let (ms, n) = floor(db, tenant, terms)?;
                f.push(ms);
                chunks = n;
            } else {
                let (ms, n) = floor(db, tenant, terms)?;
                f.push(ms);
                chunks = n;
                s.push(search(db, session, query)?);
            }
        }
        out.push((median(&s), median(&f), chunks));
    }
    Ok(out)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("search benchmark failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let tenants: usize = report::arg("--tenants", 10).max(2);
    let reps: usize = report::arg("--reps", 9).max(1);
    let settings = Settings::from_args();
    let dir = TempDir::new("search")?;
    let db = Db::open(
        &dir.path().join("search.db"),
        settings,
        Registration::Cached,
    )?;
    let mut draw = Draw(0x2545_F491_4F6C_DD1D);
    let started = Instant::now();
    let ours = onboard(&db, 0, &mut draw)?;
    let (id, hex): (String, String) = db
        .conn
        .query_row(
            "SELECT tenant_id, hex(tenant_id) FROM onboarding_sessions WHERE id = ?1",
            [&ours],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| e.to_string())?
        .ok_or("the session has no tenant")?;
    let indexed: bool = db
        .conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'kb_chunks_index')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())?;
    let tenant = Tenant { id, hex, indexed };
    let chunks = |db: &Db| -> Result<i64> {
        db.conn
            .query_row("SELECT count(*) FROM kb_chunks", [], |r| r.get(0))
            .map_err(|e| e.to_string())
    };
    eprintln!(
        "tenant 1 of {tenants} stored ({} chunks, {:.1} s)",
        chunks(&db)?,
        started.elapsed().as_secs_f64()
    );
    let alone = measure(&db, &ours, &tenant, reps)?;
    for k in 1..tenants {
        onboard(&db, k, &mut draw)?;
        eprintln!(
            "tenant {} of {tenants} stored ({} chunks, {:.1} s)",
            k + 1,
            chunks(&db)?,
            started.elapsed().as_secs_f64()
        );
    }
    let among = measure(&db, &ours, &tenant, reps)?;

    println!(
        "search: {DOCUMENTS} texts of {CHARS} characters per tenant; {reps} searches per query \
         and stage, medians; {}; {}",
        settings.describe(),
        report::machine()
    );
    let mut table = Table::new(&[
        "query",
        "chunks matched",
        "alone ms",
        "floor ms",
        "× floor",
        &format!("among {tenants} ms"),
        "floor ms",
        "× floor",
        "among / alone",
    ]);
    let mut results = Vec::new();
    for (i, (query, _)) in QUERIES.iter().enumerate() {
        let (a, af, n) = alone[i];
        let (m, mf, n_among) = among[i];
        if n != n_among {
            return Err(format!(
                "the floor read {n} chunks alone and {n_among} among other tenants for {query:?}"
            ));
        }
        table.row(vec![
            (*query).into(),
            n.to_string(),
            format!("{a:.2}"),
            format!("{af:.2}"),
            format!("{:.2}", a / af),
            format!("{m:.2}"),
            format!("{mf:.2}"),
            format!("{:.2}", m / mf),
            format!("{:.2}", m / a),
        ]);
        results.push(json!({
            "query": query,
            "chunks_matched": n,
            "alone_ms": a,
            "alone_floor_ms": af,
            "among_ms": m,
            "among_floor_ms": mf,
            "among_over_alone": m / a,
        }));
    }
    print!("{}", table.render());
    println!(
        "{}",
        json!({
            "bench": "search",
            "machine": report::machine(),
            "tenants": tenants,
            "chunks": chunks(&db)?,
            "reps": reps,
            "queries": results,
        })
    );
    Ok(())
}
