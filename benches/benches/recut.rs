//! Recut benchmark: what cutting the stored knowledge again costs after an
//! upgrade that raised the library's cut (`onboarding_kb_recut`, one
//! document a call), against storing the same knowledge in the same run.
//!
//! `cargo bench -p onboarding-benches --bench recut -- [--tenants N]`
//!
//! `--tenants` maximal knowledge bases (20 pasted texts of 200,000
//! characters each, as the search benchmark stores them) are stored by
//! their completions, timed. Then every document is marked of an older cut
//! and cut again, twice:
//!
//! - `unchanged`: the chunks are what the library makes (a chunker change
//!   that left these texts alone): each call cuts and analyses its text and
//!   compares, writing only the document's cut;
//! - `rewritten`: every chunk's text and terms differ and one place in
//!   four is missing (a chunker change that moved every cut): each call
//!   rewrites every chunk and index entry, and fills the gaps.
//!
//! Each stage reports its total, and the median and longest call: the
//! longest is what holds the writer (or a dqlite leader) at once. The run
//! then checks that every chunk and index entry is as storing made it.

use std::time::Instant;

use onboarding_benches::db::{Db, Registration, Settings, TempDir};
use onboarding_benches::knowledge::{onboard, Draw, CHARS, DOCUMENTS};
use onboarding_benches::report::{self, median, Table};
use onboarding_benches::Result;
use serde_json::{json, Value};

/// Every chunk with its index entry, by document and place.
type Rows = Vec<(i64, i64, String, String, String, String)>;

fn chunk_rows(db: &Db) -> Result<Rows> {
    let mut stmt = db
        .conn
        .prepare(
            "SELECT c.document_id, c.position, c.heading, c.text, i.terms, i.heading_terms
             FROM kb_chunks c JOIN kb_chunks_index i ON i.rowid = c.id
             ORDER BY c.document_id, c.position",
        )
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .map_err(|e| e.to_string())?
        .collect::<rusqlite::Result<_>>()
        .map_err(|e| e.to_string())?;
    Ok(rows)
}

/// Calls `onboarding_kb_recut()` until it answers null: each call's ms, and
/// the chunks it kept and the chunks it left, summed. Bounded by the
/// documents of an older cut when it starts.
fn recut_all(db: &Db) -> Result<(Vec<f64>, u64, u64)> {
    let documents: i64 = db
        .conn
        .query_row(
            "SELECT count(*) FROM kb_documents WHERE cut < ?1",
            [onboarding::kb::CUT],
            |r| r.get(0),
        )
        .map_err(|e| e.to_string())?;
    let (mut calls, mut kept, mut chunks) = (Vec::new(), 0, 0);
    for _ in 0..=documents {
        let start = Instant::now();
        let body: String = db
            .conn
            .prepare_cached("SELECT onboarding_kb_recut()")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| format!("onboarding_kb_recut: {e}"))?;
        let ms = start.elapsed().as_secs_f64() * 1e3;
        let answer: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        if !answer["failed"].is_null() {
            return Err(format!("a document could not be cut: {}", answer["failed"]));
        }
        if answer["recut"].is_null() {
            if calls.len() as i64 != documents {
                return Err(format!("{} documents cut of {documents}", calls.len()));
            }
            return Ok((calls, kept, chunks));
        }
        calls.push(ms);
        kept += answer["recut"]["kept"].as_u64().unwrap_or(0);
        chunks += answer["recut"]["chunks"].as_u64().unwrap_or(0);
    }
    Err(format!("still documents to cut after {documents} calls"))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("recut benchmark failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let tenants: usize = report::arg("--tenants", 2).max(1);
    let settings = Settings::from_args();
    let dir = TempDir::new("recut")?;
    let db = Db::open(&dir.path().join("recut.db"), settings, Registration::Cached)?;
    let mut draw = Draw(0x2545_F491_4F6C_DD1D);
    let mut stores = Vec::new();
    for k in 0..tenants {
        let start = Instant::now();
        onboard(&db, k, &mut draw)?;
        stores.push(start.elapsed().as_secs_f64());
        eprintln!("tenant {} of {tenants} stored ({:.1} s)", k + 1, stores[k]);
    }
    let stored: f64 = stores.iter().sum();
    let fresh = chunk_rows(&db)?;

    let older = |sql: &str| -> Result<()> {
        db.conn
            .execute_batch(&format!("{sql} UPDATE kb_documents SET cut = 0;"))
            .map_err(|e| e.to_string())
    };
    older("")?;
    eprintln!("cutting {} documents again, unchanged", tenants * DOCUMENTS);
    let unchanged = recut_all(&db)?;
    if unchanged.1 != fresh.len() as u64 {
        return Err(format!(
            "{} chunks kept of {} unchanged",
            unchanged.1,
            fresh.len()
        ));
    }
    older(
        "DELETE FROM kb_chunks_index WHERE rowid IN (SELECT id FROM kb_chunks WHERE position % 4 = 3);
         DELETE FROM kb_chunks WHERE position % 4 = 3;
         UPDATE kb_chunks SET text = text || ' ';
         UPDATE kb_chunks_index SET terms = terms || ' x';",
    )?;
    eprintln!("cutting {} documents again, rewritten", tenants * DOCUMENTS);
    let rewritten = recut_all(&db)?;
    if rewritten.1 != 0 {
        return Err(format!("{} chunks kept of none", rewritten.1));
    }
    if chunk_rows(&db)? != fresh {
        return Err("the chunks cut again are not the chunks stored".into());
    }

    println!(
        "recut: {tenants} knowledge bases of {DOCUMENTS} texts of {CHARS} characters, {} \
         chunks; storing them {:.2} s; {}; {}",
        fresh.len(),
        stored,
        settings.describe(),
        report::machine()
    );
    let mut table = Table::new(&[
        "stage",
        "documents",
        "total s",
        "× storing",
        "median call ms",
        "longest call ms",
    ]);
    let mut results = Vec::new();
    for (stage, (calls, _, _)) in [("unchanged", &unchanged), ("rewritten", &rewritten)] {
        let total = calls.iter().sum::<f64>() / 1e3;
        let longest = calls.iter().copied().fold(0.0, f64::max);
        table.row(vec![
            stage.into(),
            calls.len().to_string(),
            format!("{total:.2}"),
            format!("{:.2}", total / stored),
            format!("{:.1}", median(calls)),
            format!("{longest:.1}"),
        ]);
        results.push(json!({
            "stage": stage,
            "documents": calls.len(),
            "total_s": total,
            "over_storing": total / stored,
            "median_call_ms": median(calls),
            "longest_call_ms": longest,
        }));
    }
    print!("{}", table.render());
    println!(
        "{}",
        json!({
            "bench": "recut",
            "machine": report::machine(),
            "tenants": tenants,
            "chunks": fresh.len(),
            "storing_s": stored,
            "stages": results,
        })
    );
    Ok(())
}
