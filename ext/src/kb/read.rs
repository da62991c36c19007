//! The readers: `onboarding_kb_get` (the job and the documents) and
//! `onboarding_kb_search` (bm25-ranked chunks for a French question).

use std::borrow::Cow;

use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value};
use unicode_normalization::{char::is_combining_mark, UnicodeNormalization};

use super::chunk::{marks, Marks};
use super::french::{contact_spans, fts_query, index_terms, query_terms};
use super::job::{job_columns, job_json};
use crate::error::{quote, Error, ErrorKind, Result};
use crate::savepoint::in_read_savepoint;
use crate::session::{stored_json, Session, Step};
use crate::sql;
use crate::validate::Fields;

pub const MAX_RESULTS: i64 = 20;
pub const DEFAULT_RESULTS: i64 = 5;
/// Longest snippet, in characters.
const SNIPPET_CHARS: usize = 200;

fn rows(
    conn: &Connection,
    sql: &'static str,
    key: &str,
    map: fn(&rusqlite::Row<'_>) -> rusqlite::Result<Value>,
) -> Result<Value> {
    let rows = sql::with(conn, sql, |s| {
        s.query_map([key], map)?.collect::<rusqlite::Result<_>>()
    })?;
    Ok(Value::Array(rows))
}

// -- onboarding_kb_get('onb_…')
//      -> '{"success":true,"session_id":"onb_…","tenant_id":"tenant_…","method":"website",
//           "job":{"status":"done","pages_stored":7,…},"documents":[{"document_id":1,"url":…,
//           "title":…,"source":"website","depth":0,"chunks":2}],"pages_not_stored":[{"url":…,
//           "depth":1,"status":"skipped","reason":"robots_disallowed"}]}'
pub fn get(conn: &Connection, session_id: &str) -> Result<Value> {
    // One snapshot: a crawler's commit between two reads would show a job's
    // counters that its document list disagrees with.
    in_read_savepoint(conn, || read_kb(conn, session_id))
}

fn read_kb(conn: &Connection, session_id: &str) -> Result<Value> {
    let session = Session::load(conn, session_id)?;
    let kb = stored_json(session.data(Step::Kb))?;
    let job: Option<Value> = sql::query_row(
        conn,
        concat!(
            "SELECT ",
            job_columns!(),
            " FROM main.kb_crawl_jobs WHERE session_id = ?1"
        ),
        [session_id],
        job_json,
    )
    .optional()?
    // The worker holding the job is named by its host and process: the
    // crawler's business, not that of whoever holds the session id (the
    // route answers anyone who has it).
    .map(|mut job| {
        if let Some(job) = job.as_object_mut() {
            job.remove("lease_owner");
        }
        job
    });
    let documents = rows(
        conn,
        "SELECT d.id, d.url, d.title, d.source, d.depth,
                (SELECT count(*) FROM main.kb_chunks c WHERE c.document_id = d.id)
         FROM main.kb_documents d WHERE d.tenant_id = ?1 ORDER BY d.id",
        &session.tenant_id,
        |r| {
            Ok(json!({
                "document_id": r.get::<_, i64>(0)?,
                "url": r.get::<_, Option<String>>(1)?,
                "title": r.get::<_, String>(2)?,
                "source": r.get::<_, String>(3)?,
                "depth": r.get::<_, Option<i64>>(4)?,
                "chunks": r.get::<_, i64>(5)?,
            }))
        },
    )?;
    let not_stored = rows(
        conn,
        "SELECT p.url, p.depth, p.status, p.reason FROM main.kb_crawl_pages p
         JOIN main.kb_crawl_jobs j ON j.id = p.job_id
         WHERE j.session_id = ?1 AND p.status IN ('skipped', 'failed') ORDER BY p.id",
        session_id,
        |r| {
            Ok(json!({
                "url": r.get::<_, String>(0)?,
                "depth": r.get::<_, i64>(1)?,
                "status": r.get::<_, String>(2)?,
                "reason": r.get::<_, String>(3)?,
            }))
        },
    )?;
    Ok(json!({
        "success": true,
        "session_id": session.id,
        "tenant_id": session.tenant_id,
        "method": kb.get("method").cloned().unwrap_or(Value::Null),
        "job": job,
        "documents": documents,
        "pages_not_stored": not_stored,
    }))
}

/// The tenant a search is about: from `session_id`, or `tenant_id` given.
/// Both may be given when they agree; a search must not answer for one of
/// them while the caller meant the other.
fn tenant_of(conn: &Connection, f: &Fields) -> Result<String> {
    let tenant_given = f.optional_str("tenant_id", 100)?;
    // Any length: an id that is no session's is not_found, as for
    // onboarding_get.
    if let Some(session_id) = f.optional_str("session_id", usize::MAX)? {
        // Its tenant alone: the session's row holds the kb step's pasted
        // documents, up to 4 MB read for nothing.
        let tenant_id: String = sql::query_row(
            conn,
            "SELECT tenant_id FROM main.onboarding_sessions WHERE id = ?1",
            [session_id],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| Error::not_found_session(session_id))?;
        if let Some(given) = tenant_given.filter(|given| *given != tenant_id) {
            return Err(Error::invalid_field(format!(
                "tenant_id {} is not the tenant of session_id (give one of them)",
                quote(given)
            )));
        }
        return Ok(tenant_id);
    }
    let Some(tenant_id) = tenant_given else {
        return Err(Error::invalid_field("session_id or tenant_id is required"));
    };
    let exists: bool = sql::query_row(
        conn,
        "SELECT EXISTS (SELECT 1 FROM main.tenants WHERE id = ?1)",
        [tenant_id],
        |r| r.get(0),
    )?;
    if !exists {
        return Err(Error::new(
            ErrorKind::NotFound,
            format!("tenant {} does not exist", quote(tenant_id)),
        ));
    }
    Ok(tenant_id.to_string())
}

// -- onboarding_kb_search('{"session_id":"onb_…","query":"vous êtes ouverts le samedi ?","limit":3}')
//      -> '{"success":true,"query":"vous êtes ouverts le samedi ?","results":[{"document_id":4,
//           "url":"https://…/horaires","title":"Horaires","heading":"Horaires d''ouverture",
//           "text":"…","snippet":"| Samedi | 9h00 – 18h00 |","score":7.1234}]}'
pub fn search(conn: &Connection, payload: Option<&str>) -> Result<Value> {
    let f = Fields::parse(payload)?;
    in_read_savepoint(conn, || {
        // The session (or tenant) first: an unknown one is `not_found`
        // whatever the query, as a step is for an unknown session whatever
        // its body.
        let tenant_id = tenant_of(conn, &f)?;
        let query = crate::error::trim(f.str("query", 500)?).to_string();
        let limit = f.int("limit", 1..=MAX_RESULTS, Some(DEFAULT_RESULTS))?;
        search_tenant(conn, &tenant_id, &query, limit)
    })
}

/// The search's reads, in the caller's snapshot: the tenant's chunks.
fn search_tenant(conn: &Connection, tenant_id: &str, query: &str, limit: i64) -> Result<Value> {
    let terms = query_terms(query);
    if terms.is_empty() {
        return Ok(json!({ "success": true, "query": query, "results": [] }));
    }
    // Every chunk of the tenant holding a term (the query ORs them), scored
    // here with the tenant's own statistics: FTS5's bm25() counts every
    // tenant's chunks, so one tenant's scores (and order) would move with
    // what others store, and tell them something of it. The MATCH requires
    // the tenant's token (migration 010), so the index yields this
    // tenant's chunks alone; CROSS JOIN keeps it the outer loop (SQLite
    // would otherwise walk the tenant's chunks and run the MATCH once for
    // each). Only what scoring needs is read here, the answers' texts for
    // the best `limit` alone.
    //
    // Each hit's length (`chars`: SQL's length() of its text, a generated
    // column, migration 010) and tenant come from the index on (tenant_id,
    // id, chars), which INDEXED BY makes the join's way to the chunk:
    // SQLite would otherwise read each chunk's row, a kilobyte of text, for
    // them.
    let mut stmt = conn.prepare_cached(
        "SELECT c.id, c.chars, kb_chunks_index.terms, kb_chunks_index.heading_terms
         FROM main.kb_chunks_index CROSS JOIN main.kb_chunks c INDEXED BY kb_chunks_tenant_chars
              ON c.tenant_id = ?2 AND c.id = kb_chunks_index.rowid
         WHERE kb_chunks_index MATCH ('tenant : \"' || hex(?2) || '\" AND ' || ?1)",
    )?;
    let bare_terms = BareTerms::new(&terms);
    let found = stmt.query_map((fts_query(&terms), &tenant_id), |r| {
        // Borrowed from SQLite's row, not copied: every hit's terms are read.
        let body = r.get_ref(2)?.as_str()?;
        let heading = r.get_ref(3)?.as_str()?;
        Ok(Hit {
            id: r.get(0)?,
            length: r.get(1)?,
            frequencies: bare_terms.frequencies(body, heading),
            place: None,
        })
    })?;
    let hits: Vec<Hit> = found.collect::<rusqlite::Result<_>>()?;
    if hits.is_empty() {
        return Ok(json!({ "success": true, "query": query, "results": [] }));
    }
    // The tenant's chunks and their average length, from the same index
    // alone, without reading any text.
    let (chunks, average_length): (i64, Option<f64>) = sql::query_row(
        conn,
        "SELECT count(*), avg(chars) FROM main.kb_chunks WHERE tenant_id = ?1",
        [&tenant_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut scored = bm25(hits, terms.len(), chunks, average_length.unwrap_or(1.0));
    let limit = usize::try_from(limit).unwrap_or(0);
    order_ties(conn, &mut scored, limit)?;
    scored.truncate(limit);
    let mut results = Vec::with_capacity(scored.len());
    for (score, hit) in scored {
        let mut answer = sql::query_row(
            conn,
            "SELECT c.document_id, d.url, d.title, c.heading, c.text
             FROM main.kb_chunks c JOIN main.kb_documents d ON d.id = c.document_id
             WHERE c.id = ?1",
            [hit.id],
            |r| {
                let text: String = r.get(4)?;
                Ok(json!({
                    "document_id": r.get::<_, i64>(0)?,
                    "url": r.get::<_, Option<String>>(1)?,
                    "title": r.get::<_, String>(2)?,
                    "heading": r.get::<_, String>(3)?,
                    "snippet": snippet(&text, &terms),
                    "text": text,
                }))
            },
        )?;
        answer["score"] = json!(shown_score(score));
        results.push(answer);
    }
    Ok(json!({ "success": true, "query": query, "results": results }))
}

/// A chunk the query matched, before it is scored.
struct Hit {
    id: i64,
    /// Each query term's frequency in the chunk's indexed terms, where
    /// the title and headings are twice: with the text, and on their own
    /// counting double (a chunk under "Tarifs" is about prices).
    frequencies: Vec<f64>,
    /// Its text's length in characters (SQL's `length`, which every
    /// SQLite has; `octet_length` came with 3.43): what the length
    /// normalisation compares.
    length: f64,
    /// Its document and place, read for a tie alone ([`order_ties`]).
    place: Option<(i64, i64)>,
}

/// A term as FTS5's `remove_diacritics 2` compares it: every accent
/// gone, those French does not use too ("dvořák", "nguyễn"), which the
/// library's folding keeps. FTS5 matched the chunk that way; counting it
/// otherwise would score a match zero.
fn bare(word: &str) -> Cow<'_, str> {
    if word.is_ascii() {
        return Cow::Borrowed(word);
    }
    Cow::Owned(word.nfd().filter(|c| !is_combining_mark(*c)).collect())
}

/// A query's terms as FTS5 compares them (each made bare), with what
/// counts them in a chunk's indexed terms.
struct BareTerms {
    words: Vec<String>,
    /// A substring searcher for each word, built once per search: every
    /// hit is counted, so on a knowledge base where a term is common this
    /// runs over most of its chunks. None when a word is empty or holds a
    /// space (which [`BareTerms::counts`]'s whole-word test relies on).
    finders: Option<Vec<memchr::memmem::Finder<'static>>>,
}

impl BareTerms {
    fn new(terms: &[String]) -> BareTerms {
        let words: Vec<String> = terms.iter().map(|t| bare(t).into_owned()).collect();
        let finders = words
            .iter()
            .all(|w| !w.is_empty() && !w.contains(' '))
            .then(|| {
                words
                    .iter()
                    .map(|w| memchr::memmem::Finder::new(w.as_bytes()).into_owned())
                    .collect()
            });
        BareTerms { words, finders }
    }

    /// Each word's frequency in a chunk's indexed terms, those of its
    /// title and headings column counting twice.
    fn frequencies(&self, body: &str, heading: &str) -> Vec<f64> {
        const HEADING_WEIGHT: f64 = 2.0;
        let mut found = vec![0.0; self.words.len()];
        for (text, weight) in [(body, 1.0), (heading, HEADING_WEIGHT)] {
            for (i, count) in self.counts(text).into_iter().enumerate() {
                found[i] += weight * count as f64;
            }
        }
        found
    }

    /// How many words of `text` (split at each space) are each word once
    /// made bare. An ASCII text (the library's folding makes nearly every
    /// stored term ASCII) is its own bare form: each word's whole-word
    /// occurrences are found by a vectorised substring search instead of
    /// comparing every word of the text with every term (a third of a
    /// 40 ms search over 4,000 chunks).
    fn counts(&self, text: &str) -> Vec<usize> {
        let Some(finders) = self.finders.as_ref().filter(|_| text.is_ascii()) else {
            return self.bare_counts(text);
        };
        let bytes = text.as_bytes();
        finders
            .iter()
            .map(|finder| {
                let len = finder.needle().len();
                // Whole words only: a space (or the text's end) on each
                // side. Skipped overlapping occurrences cannot be whole
                // words, since a word holds no space.
                finder
                    .find_iter(bytes)
                    .filter(|&at| {
                        (at == 0 || bytes[at - 1] == b' ')
                            && bytes.get(at + len).is_none_or(|&b| b == b' ')
                    })
                    .count()
            })
            .collect()
    }

    /// [`BareTerms::counts`] for any text: each word of it made bare once,
    /// then compared with every term.
    fn bare_counts(&self, text: &str) -> Vec<usize> {
        let mut counts = vec![0; self.words.len()];
        for word in text.split(' ') {
            let word = bare(word);
            for (i, term) in self.words.iter().enumerate() {
                if *term == *word {
                    counts[i] += 1;
                }
            }
        }
        counts
    }
}

/// Equal scores among the best `limit` hits ordered by document and place,
/// as the knowledge base reads: what a tie answers must not depend on the
/// chunks' ids, which a document stored again or cut again
/// (`onboarding_kb_recut`) gives its new chunks after every other. Read
/// for the tied hits alone, from the rows' first columns (the index the
/// search walks does not hold them); `scored` comes sorted by score, and
/// leaves sorted by score, then document and place.
fn order_ties(conn: &Connection, scored: &mut [(f64, Hit)], limit: usize) -> Result<()> {
    let Some(last) = limit
        .checked_sub(1)
        .and_then(|i| scored.get(i).or(scored.last()))
    else {
        return Ok(());
    };
    let floor = last.0;
    let mut start = 0;
    while start < scored.len() && scored[start].0 >= floor {
        let score = scored[start].0;
        let end = start
            + scored[start..]
                .iter()
                .take_while(|(s, _)| *s == score)
                .count();
        if end - start > 1 {
            for (_, hit) in &mut scored[start..end] {
                hit.place = Some(sql::query_row(
                    conn,
                    "SELECT document_id, position FROM main.kb_chunks WHERE id = ?1",
                    [hit.id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?);
            }
            scored[start..end].sort_by_key(|(_, hit)| hit.place);
        }
        start = end;
    }
    Ok(())
}

/// Okapi BM25 (k1 = 1.2, b = 0.75, FTS5's constants) over the tenant's
/// `chunks`, whose average length is `average_length`, best first (the
/// older chunk first on a tie, which [`order_ties`] then orders by place). The term weight is Lucene's,
/// ln(1 + (N - n + 0.5) / (n + 0.5)): never negative, so a term found in
/// most of a small knowledge base still counts (FTS5's formula floors it
/// at 1e-6).
fn bm25(hits: Vec<Hit>, terms: usize, chunks: i64, average_length: f64) -> Vec<(f64, Hit)> {
    const K1: f64 = 1.2;
    const B: f64 = 0.75;
    let n_chunks = chunks.max(1) as f64;
    let weights: Vec<f64> = (0..terms)
        .map(|i| {
            let holding = hits.iter().filter(|h| h.frequencies[i] > 0.0).count() as f64;
            (1.0 + (n_chunks - holding + 0.5) / (holding + 0.5)).ln()
        })
        .collect();
    let average_length = average_length.max(1.0);
    let mut scored: Vec<(f64, Hit)> = hits
        .into_iter()
        .map(|hit| {
            let norm = K1 * (1.0 - B + B * hit.length / average_length);
            let score = hit
                .frequencies
                .iter()
                .zip(&weights)
                .map(|(&f, w)| w * f * (K1 + 1.0) / (f + norm))
                .sum::<f64>();
            (score, hit)
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
    scored
}

/// A score as answered: 4 decimals, or 4 significant digits below 0.001
/// (a weak match stays above zero, and above a weaker one).
fn shown_score(score: f64) -> f64 {
    if score == 0.0 || !score.is_finite() {
        return 0.0;
    }
    // Capped where 10^decimals stays finite (bm25 never goes below 1e-9).
    let decimals = if score.abs() >= 1e-3 {
        4
    } else {
        (3 - score.abs().log10().floor() as i32).min(300)
    };
    let scale = 10f64.powi(decimals);
    (score * scale).round() / scale
}

/// The line of `text` holding the most query terms (the first on a tie),
/// cut to [`SNIPPET_CHARS`] at a word boundary. Headings and a table's
/// header row count a third: the caller already gets the heading, and a
/// header row names the columns ("| Jour | Horaires |"), where the answer
/// is a row ("| Samedi | 9h00 – 18h00 |"). Both are read as the chunker
/// reads them: a `# comment` or a `|` line in fenced code is neither. A
/// heading that still holds the most gives the first line of text under
/// it: "## Numéro d'urgence" is what was asked, the number under it the
/// answer.
pub fn snippet(text: &str, terms: &[String]) -> String {
    let raw: Vec<&str> = text.split('\n').collect();
    let Marks { heading, code, .. } = marks(&raw);
    // Each line that is not blank, whether it is code, and whether it is
    // (part of) a heading.
    let lines: Vec<(&str, bool, bool)> = raw
        .iter()
        .zip(code.into_iter().zip(heading))
        .map(|(l, (code, heading))| (l.trim(), code.is_some(), heading))
        .filter(|(l, _, _)| !l.is_empty())
        .collect();
    let separator = |(l, code, _): (&str, bool, bool)| {
        !code && l.starts_with('|') && l.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
    };
    let header_row = |i: usize| {
        let (line, code, _) = lines[i];
        !code && line.starts_with('|') && lines.get(i + 1).is_some_and(|next| separator(*next))
    };
    let best = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !separator(**l))
        .map(|(i, &(line, _, heading))| {
            let line_terms = index_terms(line);
            let hits = terms
                .iter()
                .filter(|t| line_terms.split(' ').any(|w| w == t.as_str()))
                .count();
            let text = !(heading || header_row(i));
            (hits * if text { 3 } else { 1 }, text, i)
        })
        // The most; on a tie the first, but a line of text before a
        // heading or a header row.
        .fold(None, |best: Option<(usize, bool, usize)>, cur| match best {
            Some(best) if cur.0 < best.0 || (cur.0 == best.0 && (best.1 || !cur.1)) => Some(best),
            _ => Some(cur),
        });
    let Some((_, _, mut at)) = best else {
        return String::new();
    };
    if lines[at].2 {
        if let Some(under) = text_under(&lines, at, &separator, &header_row) {
            at = under;
        }
    }
    window(lines[at].0, terms)
}

/// Up to [`SNIPPET_CHARS`] of `line`, markers included, cut at word
/// boundaries, around where it answers: a pasted paragraph is often one
/// line of a thousand characters, whose first 200 need not hold a single
/// term ("paiement en plusieurs fois" answered by its last sentence). The
/// window opens at the start of the sentence holding the most terms (the
/// first on a tie), or, when that sentence's first term (a word, or a
/// telephone number or an address asked for) lies further in than a window
/// shows, a few words before it, and earlier again when the line ends
/// before the window is full. A cut is marked `…` at either end. A table's
/// row keeps its first cell, which names what the others say, before the
/// window of the rest.
fn window(line: &str, terms: &[String]) -> String {
    if line.chars().count() <= SNIPPET_CHARS {
        return line.to_string();
    }
    if let Some(cells) = line.strip_prefix('|') {
        // "| Forfait entretien | …the window of the rest…": the first cell
        // kept, when it leaves room.
        if let Some(end) = cells.find('|').map(|i| i + 2) {
            let head = &line[..end];
            let head_chars = head.chars().count();
            if head_chars + 60 < SNIPPET_CHARS {
                let rest = line[end..].trim_start();
                let room = SNIPPET_CHARS - head_chars - 1;
                return format!("{head} {}", window_in(rest, terms, room, true));
            }
        }
        return window_in(line, terms, SNIPPET_CHARS, false);
    }
    window_in(line, terms, SNIPPET_CHARS, true)
}

/// Abbreviations whose dot ends no sentence: "12 av. Foch", "M. Dupont".
const ABBREVIATIONS: &[&str] = &[
    "av", "bd", "bld", "st", "ste", "m", "mme", "mlle", "dr", "pl", "n", "réf", "ref", "tél",
    "tel", "fax", "ch", "imp", "rte", "all", "env", "etc",
];

/// [`window`] in `room` characters, marks included; `search` false shows
/// the line from its start.
fn window_in(line: &str, terms: &[String], room: usize, search: bool) -> String {
    if line.chars().count() <= room {
        return line.to_string();
    }
    let from = if search {
        opening(line, terms, room)
    } else {
        0
    };
    let rest = &line[from..];
    let mut out = String::new();
    if from > 0 {
        out.push('…');
    }
    // What the markers leave of the window.
    let room = room - out.chars().count();
    if rest.chars().count() <= room {
        out.push_str(rest);
        return out;
    }
    let mut cut: String = rest.chars().take(room - 1).collect();
    if let Some(space) = cut.rfind(' ') {
        cut.truncate(space);
    }
    out.push_str(cut.trim_end());
    out.push('…');
    out
}

/// Where a window of `room` characters opens in `line`, longer than it:
/// at the start of the sentence holding the most terms, a few words before
/// that sentence's first term when it lies further in, and earlier when
/// the line's end leaves the window short. 0 when no sentence holds one.
fn opening(line: &str, terms: &[String], room: usize) -> usize {
    /// What a window keeps before a term found deep in a long sentence.
    const LEAD_CHARS: usize = 40;
    let holds = |text: &str| {
        let found = index_terms(text);
        terms
            .iter()
            .filter(|t| found.split(' ').any(|w| w == t.as_str()))
            .count()
    };
    let sentences = sentences(line);
    let starts: Vec<usize> = sentences.iter().map(|s| s.start).collect();
    let (hits, sentence) = sentences
        .into_iter()
        .map(|range| (holds(&line[range.clone()]), range))
        .fold(
            (0, 0..0),
            |best, cur| if cur.0 > best.0 { cur } else { best },
        );
    if hits == 0 {
        return 0;
    }
    let mut from = sentence.start;
    // The sentence's first term: a word holding one, or a contact detail
    // whose term was asked for (its words hold none).
    let text = &line[sentence.clone()];
    let word = text
        .split_whitespace()
        .find(|w| holds(w) > 0)
        .map(|w| w.as_ptr() as usize - line.as_ptr() as usize);
    let contact = contact_spans(text)
        .into_iter()
        .filter(|contact| {
            let number = contact.number.as_deref();
            terms
                .iter()
                .any(|t| t == contact.term || Some(t.as_str()) == number)
        })
        .map(|contact| sentence.start + contact.at);
    if let Some(at) = word.into_iter().chain(contact).min() {
        if line[from..at].chars().count() + LEAD_CHARS > room {
            // A few words before the term, from the start of a word.
            let lead = line[..at]
                .char_indices()
                .rev()
                .nth(LEAD_CHARS)
                .map_or(0, |(i, _)| i);
            from = word_at(
                line,
                line[lead..at]
                    .find(char::is_whitespace)
                    .map_or(at, |space| lead + space)
                    .max(from),
            );
        }
    }
    // A window the line's end leaves short opens earlier, as far as a full
    // window goes: at the start of a sentence, or, when it opened inside
    // one or shows half a window or less, of a word.
    let short = line[from..].chars().count();
    if short + 1 >= room {
        return from;
    }
    let by_word = !starts.contains(&from) || short * 2 < room;
    let earliest = line
        .char_indices()
        .rev()
        .nth(room - 2)
        .map_or(0, |(i, _)| i);
    if earliest == 0 {
        return 0;
    }
    if let Some(&start) = starts.iter().find(|&&s| s >= earliest && s < from) {
        return start;
    }
    match line[earliest..from].find(char::is_whitespace) {
        Some(space) if by_word => word_at(line, earliest + space),
        _ => from,
    }
}

/// The sentences of `line` as byte ranges: each ends after a '.', '!',
/// '?', ';' or '…' followed by blank space (an abbreviation's dot ends
/// none), the next starting at its first character.
fn sentences(line: &str) -> Vec<std::ops::Range<usize>> {
    let mut sentences = Vec::new();
    let mut start = 0;
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let abbreviation = || {
            let word = line[start..i]
                .rsplit(|c: char| c.is_whitespace())
                .next()
                .unwrap_or("");
            ABBREVIATIONS.contains(&word.to_lowercase().as_str())
        };
        let ends = matches!(c, '.' | '!' | '?' | ';' | '…')
            && chars.peek().is_some_and(|(_, next)| next.is_whitespace())
            && !(c == '.' && abbreviation());
        if ends {
            sentences.push(start..i + c.len_utf8());
            while chars.peek().is_some_and(|(_, next)| next.is_whitespace()) {
                chars.next();
            }
            start = chars.peek().map_or(line.len(), |&(j, _)| j);
        }
    }
    if start < line.len() {
        sentences.push(start..line.len());
    }
    sentences
}

/// `at`, past any blank space there: where the next word starts.
fn word_at(line: &str, at: usize) -> usize {
    at + line[at..].len() - line[at..].trim_start().len()
}

/// The line that answers a heading at `at`: the one right under it (past
/// a setext underline), or a table's first row under its header row. None
/// when that is another heading, code, a fence, a rule, an image or markup:
/// the text of another section, or no text.
fn text_under(
    lines: &[(&str, bool, bool)],
    at: usize,
    separator: &impl Fn((&str, bool, bool)) -> bool,
    header_row: &impl Fn(usize) -> bool,
) -> Option<usize> {
    let rule = |line: &str, marks: &str| {
        line.chars().filter(|c| !c.is_whitespace()).count() >= 3
            && line.chars().all(|c| c.is_whitespace() || marks.contains(c))
    };
    let mut j = at + 1;
    if lines
        .get(j)
        .is_some_and(|&(line, code, _)| !code && rule(line, "=-"))
    {
        j += 1;
    }
    if j < lines.len() && header_row(j) {
        j += 2;
    }
    let &(line, code, heading) = lines.get(j)?;
    let markup = ["```", "~~~", "<", "!["]
        .iter()
        .any(|start| line.starts_with(start));
    let answers = !code && !heading && !separator(lines[j]) && !markup && !rule(line, "*-_=");
    answers.then_some(j)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tables_row_answers_before_its_header_row() {
        let text = "## Horaires d'ouverture\n\n| Jour | Horaires |\n|---|---|\n\
                    | Lundi | Fermé |\n| Samedi | 9h00 – 18h00 |";
        let terms = query_terms("horaires d'ouverture le samedi");
        assert_eq!(snippet(text, &terms), "| Samedi | 9h00 – 18h00 |");
    }

    #[test]
    fn a_heading_that_holds_the_most_gives_the_text_under_it() {
        let text = "# Cabinet\n\nSoins dentaires.\n\n## Numéro d'urgence\n\n06 12 34 56 78 \
                    (week-end et jours fériés)\n\n## Accès\n\nTram A, arrêt Place du Cirque.";
        assert_eq!(
            snippet(text, &query_terms("numéro d'urgence")),
            "06 12 34 56 78 (week-end et jours fériés)"
        );
        assert_eq!(
            snippet(text, &query_terms("accès")),
            "Tram A, arrêt Place du Cirque."
        );
        // Past a table's header row, to its first row; past a setext
        // underline; a heading with nothing under it stays.
        let text = "## Tarifs\n\n| Prestation | Prix |\n|---|---|\n| Coupe | 25 € |";
        assert_eq!(snippet(text, &query_terms("tarifs")), "| Coupe | 25 € |");
        let text = "Horaires\n========\n\nDu mardi au samedi.";
        assert_eq!(
            snippet(text, &query_terms("horaires")),
            "Du mardi au samedi."
        );
        assert_eq!(
            snippet("## Horaires", &query_terms("horaires")),
            "## Horaires"
        );
        // Never another section's text, nor code, a fence, a rule, an
        // image or markup: the heading then stays.
        for under in [
            "## Tarifs\n\nCoupe femme 35 €.",
            "### Tarifs",
            "```\nssid: salon-invites\n```",
            "~~~\nssid: salon-invites\n~~~",
            "***",
            "![Plan d'accès](plan.png)",
            "<!-- mis à jour -->",
            "<p>Tram A</p>",
        ] {
            let text = format!("# Salon\n\n## Urgences wifi\n\n{under}");
            assert_eq!(
                snippet(&text, &query_terms("urgences wifi")),
                "## Urgences wifi",
                "{under}"
            );
        }
        // A tie goes to the line of text, not to the heading (which would
        // then give the line under it).
        let text = "## Horaires et tarifs des coupes\n\nFermé le lundi.\n\nCoupe femme 35 €.";
        assert_eq!(
            snippet(text, &query_terms("horaires tarifs coupe")),
            "Coupe femme 35 €."
        );
        // Two lines of text holding as many: the first.
        let text = "## Prestations\n\nCoupe femme 35 €.\n\nCoupe homme 25 €.";
        assert_eq!(snippet(text, &query_terms("coupe")), "Coupe femme 35 €.");
        // A line of text holding a term still wins over a heading holding
        // two.
        let text = "## Horaires d'ouverture\n\nFermé le lundi.\n\nOuverture à 9h.";
        assert_eq!(
            snippet(text, &query_terms("horaires d'ouverture")),
            "Ouverture à 9h."
        );
    }

    #[test]
    fn a_long_line_shows_the_sentence_that_answers() {
        // A pasted paragraph: one line of 356 characters.
        let line = "Le garage Dupont est situé à l'entrée de la zone artisanale de \
                    Vitré, à deux pas de la rocade. Nous entretenons toutes les marques, \
                    y compris les véhicules hybrides et électriques. Un véhicule de \
                    courtoisie peut vous être prêté pendant les réparations sur \
                    réservation. Le paiement en trois fois sans frais est possible à \
                    partir de 300 euros. Devis gratuit.";
        assert_eq!(line.chars().count(), 356);
        // The last sentence answers; the window opens sentences earlier, as
        // far as it is full.
        let end = "…Un véhicule de courtoisie peut vous être prêté pendant les \
                   réparations sur réservation. Le paiement en trois fois sans frais est \
                   possible à partir de 300 euros. Devis gratuit.";
        assert_eq!(
            snippet(line, &query_terms("paiement en plusieurs fois")),
            end
        );
        assert_eq!(
            snippet(line, &query_terms("un véhicule de courtoisie est prêté ?")),
            end
        );
        // A term in the first sentence: the line's start, cut at a word.
        assert_eq!(
            snippet(line, &query_terms("garage")),
            "Le garage Dupont est situé à l'entrée de la zone artisanale de Vitré, \
             à deux pas de la rocade. Nous entretenons toutes les marques, y compris \
             les véhicules hybrides et électriques. Un véhicule de…"
        );
        // Two sentences holding as many: the window opens at the first.
        let two = "Le garage est ouvert du lundi au vendredi, de huit heures à midi et \
                   de quatorze heures à dix-neuf heures. Le garage prête un véhicule de \
                   courtoisie pendant les réparations, sur réservation. Le paiement en \
                   trois fois sans frais est possible à partir de trois cents euros.";
        assert_eq!(
            snippet(two, &query_terms("garage")),
            "Le garage est ouvert du lundi au vendredi, de huit heures à midi et de quatorze \
             heures à dix-neuf heures. Le garage prête un véhicule de courtoisie pendant les \
             réparations, sur réservation. Le…"
        );
        // A sentence longer than a window, its term far in: a few words
        // before the term.
        let long = format!(
            "{}parking gratuit devant la boutique, {}",
            "très ".repeat(60),
            "et encore ".repeat(30)
        );
        let shown = snippet(&long, &query_terms("où se garer ?"));
        assert!(
            shown.starts_with("…très très très très très très très très parking gratuit"),
            "{shown}"
        );
        // A telephone number nobody asked for before it: the window still
        // opens at the term.
        let phone_first = format!("Appelez le 02 99 12 34 56 ou venez, {long}");
        let shown = snippet(&phone_first, &query_terms("où se garer ?"));
        assert!(
            shown.starts_with("…très très très très très très très très parking gratuit"),
            "{shown}"
        );
        // No term anywhere (the line under a heading that matched): the
        // line's start.
        assert_eq!(snippet(line, &query_terms("zzz")), snippet(line, &[]));
        assert!(snippet(line, &[]).starts_with("Le garage Dupont"));
        // A telephone number and an address hold no word of the question
        // ("téléphone", "adresse"): the window opens before them, deep in
        // one long sentence.
        let footer = format!(
            "Nous sommes {}et pour nous joindre c'est le 02 99 12 34 56, ou passez au 3 place \
             du Marché, 35000 Rennes",
            "une boulangerie artisanale et familiale, ".repeat(7)
        );
        for question in ["votre numéro de téléphone ?", "quelle est votre adresse ?"] {
            let shown = snippet(&footer, &query_terms(question));
            assert!(shown.contains("02 99 12 34 56"), "{question}: {shown}");
            assert!(shown.contains("35000 Rennes"), "{question}: {shown}");
        }
        // An abbreviation's dot ends no sentence: the address's sentence
        // holds its street.
        let line = format!(
            "{}Retrouvez-nous au 12 av. Foch, 75016 Paris, du lundi au samedi.",
            "Nous coupons, colorons et coiffons depuis vingt ans. ".repeat(4)
        );
        let shown = snippet(&line, &query_terms("quelle est votre adresse ?"));
        assert!(shown.contains("12 av. Foch, 75016 Paris"), "{shown}");
        // A sentence too long to open before: the window fills from a word.
        let line = format!("{}. Paiement en trois fois.", "Mot ".repeat(100).trim_end());
        let shown = snippet(&line, &query_terms("paiement"));
        assert!(shown.chars().count() > 150, "{shown}");
        assert!(
            shown.ends_with("Mot Mot. Paiement en trois fois."),
            "{shown}"
        );
        // A table's row keeps its first cell, then the window of the rest.
        let row = format!(
            "| Forfait entretien | {} Paiement en trois fois sans frais possible. | 189 € |",
            "Vidange, filtres, niveaux et contrôle des points de sécurité. ".repeat(3)
        );
        assert_eq!(
            snippet(&row, &query_terms("paiement en plusieurs fois")),
            "| Forfait entretien | …Vidange, filtres, niveaux et contrôle des points de \
             sécurité.  Paiement en trois fois sans frais possible. | 189 € |"
        );
        // A first cell that leaves less than 60 characters of room (its
        // 140 and a space) is no cell kept: the row's window, from its
        // start.
        let cell = format!("{}complet", "entretien ".repeat(13));
        let row = format!(
            "| {cell}| {} Paiement en trois fois. |",
            "Vidange. ".repeat(12)
        );
        assert_eq!(format!("| {cell}|").chars().count(), 140);
        assert_eq!(
            snippet(&row, &query_terms("paiement")),
            format!("| {cell}| {}Vidange.…", "Vidange. ".repeat(5))
        );
        // Never over 200 characters, markers included: a window opened
        // inside a line and cut before its end, a rest without a space.
        for (text, question) in [
            (
                format!("Bonjour à tous. {}", "paiement ".repeat(30)),
                "paiement",
            ),
            (
                format!("Bonjour à tous. Tel:0299123456{}", "é".repeat(300)),
                "tel",
            ),
            ("؟".repeat(400), "x"),
        ] {
            let shown = snippet(&text, &query_terms(question));
            assert!(shown.chars().count() <= SNIPPET_CHARS, "{shown}");
        }
    }

    #[test]
    fn a_comment_in_fenced_code_counts_as_text_not_as_a_heading() {
        // "# sauvegarde le samedi" holds both terms: a heading would count
        // a third, and the sentence's one term win.
        let text = "## Caisse\n\n```bash\n# sauvegarde le samedi\ncp caisse.db /mnt\n```\n\n\
                    La sauvegarde part à 18h.";
        let terms = query_terms("sauvegarde du samedi");
        assert_eq!(snippet(text, &terms), "# sauvegarde le samedi");
        // Out of the fence, the same line is a heading.
        let text = "## Caisse\n\n# sauvegarde le samedi\n\nLa sauvegarde part à 18h.";
        assert_eq!(snippet(text, &terms), "La sauvegarde part à 18h.");
        // So is a setext heading's text.
        let text = "## Caisse\n\nsauvegarde le samedi\n---\n\nLa sauvegarde part à 18h.";
        assert_eq!(snippet(text, &terms), "La sauvegarde part à 18h.");
    }

    #[test]
    fn a_chunk_cut_inside_fenced_code_reads_its_comments_as_code() {
        // A script longer than a chunk: the piece that goes on in it
        // starts with its opening fence, so its `# …` lines are comments,
        // counted as text, not as headings.
        let script: String = (1..=60)
            .map(|n| match n {
                50 => "# sauvegarde le samedi\ncp sauvegarde.db /mnt/\n".to_string(),
                n => format!("cp caisse-{n:02}.db /mnt/\n"),
            })
            .collect();
        let text = format!("## Caisse\n\n```bash\n{script}```");
        let got = super::super::chunk::chunks(&text, "Guide");
        let piece = got.iter().find(|c| c.text.contains("samedi")).unwrap();
        assert!(piece.text.starts_with("```bash\ncp caisse-"), "{piece:?}");
        let terms = query_terms("sauvegarde du samedi");
        assert_eq!(snippet(&piece.text, &terms), "# sauvegarde le samedi");
    }

    #[test]
    fn terms_are_counted_as_whole_words_on_either_path() {
        let terms = BareTerms::new(&["coup", "a", "horair", "dvořák"].map(String::from));
        let text = "coup coupe a coup horair aa a  horairs coup";
        assert_eq!(terms.counts(text), [3, 2, 1, 0]);
        // Not ASCII: each word made bare ("dvořák" matched as FTS5 did).
        assert_eq!(terms.counts("dvořák coup é a"), [1, 1, 0, 1]);
        assert_eq!(terms.frequencies("coup a", "coup"), [3.0, 1.0, 0.0, 0.0]);
        // The fast path gives what comparing every bare word gives, on
        // texts built from pieces that make every boundary case.
        let pieces = ["coup", "a", "aa", "", "horair", "coupa", "acoup", "é"];
        let mut texts = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for sep in [" ", "  "] {
                        let text = [a, b, c].join(sep);
                        if text.is_ascii() {
                            texts += 1;
                        }
                        assert_eq!(terms.counts(&text), terms.bare_counts(&text), "{text:?}");
                    }
                }
            }
        }
        assert_eq!(texts, 686);
        // A word no whole-word test can find takes the other path.
        assert!(BareTerms::new(&["a b".to_string()]).finders.is_none());
    }

    #[test]
    fn scores_keep_four_decimals_or_four_significant_digits_below_a_thousandth() {
        assert_eq!(shown_score(4.299_649), 4.2996);
        assert_eq!(shown_score(0.001_04), 0.001);
        assert_eq!(shown_score(0.000_999_96), 0.001);
        assert_eq!(shown_score(2.134_567e-6), 2.135e-6);
        assert_eq!(shown_score(0.0), 0.0);
        assert_eq!(shown_score(f64::NAN), 0.0);
        assert!(shown_score(1e-306).is_finite() && shown_score(5e-324).is_finite());
    }
}
