//! Storing one document: its row, its chunks and their index entries,
//! written together (the caller's savepoint), or nothing when the tenant
//! already has the same document (`Source::identity`: a site's text, a
//! pasted item's place and text).

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::chunk::chunks;
use super::french::index_terms;
use super::repeated::{strip, Lifted};
use super::CUT;
use crate::error::Result;
use crate::sql;

/// A document about to be stored.
pub struct NewDocument<'a> {
    pub tenant_id: &'a str,
    pub job_id: Option<i64>,
    pub source: Source,
    pub url: Option<&'a str>,
    pub title: &'a str,
    pub markdown: &'a str,
    pub depth: Option<i64>,
    pub now: &'a str,
}

/// Where a document comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A crawled page, or the blocks its site repeats: the same text is
    /// one document, whatever page it was read from.
    Website,
    /// Item `item` (from 0) of the kb step's `documents`: each item is a
    /// document of its own, as the tenant listed it, even where two hold
    /// the same text under other titles.
    Documents { item: usize },
}

impl Source {
    /// The name `kb_documents.source` stores.
    pub fn name(self) -> &'static str {
        match self {
            Source::Website => "website",
            Source::Documents { .. } => "documents",
        }
    }

    /// The document's identity in `kb_documents.content_hash` (unique per
    /// tenant): its text's hash for a page, its place in the list and its
    /// text's hash for a pasted item. The schema's UNIQUE constraint stays
    /// as it is: dropping it would mean rebuilding `kb_documents` under its
    /// chunks, which a migration cannot do inside a transaction while
    /// foreign keys are enforced.
    pub fn identity(self, markdown: &str) -> String {
        match self {
            Source::Website => content_hash(markdown),
            Source::Documents { item } => hex(&Sha256::digest(format!(
                "document {item}\n{}",
                content_hash(markdown)
            ))),
        }
    }
}

/// What storing a document did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// A new document with this id and this many chunks.
    New { id: i64, chunks: usize },
    /// The same text is already stored as this document.
    Duplicate { id: i64 },
}

/// The identity of a text: sha256 of its words, so that whitespace alone
/// (re-indented HTML, another line ending) never makes a new document.
pub fn content_hash(markdown: &str) -> String {
    let mut hasher = Sha256::new();
    for word in markdown.split_whitespace() {
        hasher.update(word.as_bytes());
        hasher.update(b" ");
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn store(conn: &Connection, doc: &NewDocument<'_>) -> Result<Stored> {
    store_as(conn, doc, &doc.source.identity(doc.markdown))
}

/// [`store`], for a caller that has the document's identity already.
pub fn store_as(conn: &Connection, doc: &NewDocument<'_>, hash: &str) -> Result<Stored> {
    let existing: Option<i64> = sql::query_row(
        conn,
        "SELECT id FROM main.kb_documents WHERE tenant_id = ?1 AND content_hash = ?2",
        (doc.tenant_id, hash),
        |r| r.get(0),
    )
    .optional()?;
    if let Some(id) = existing {
        return Ok(Stored::Duplicate { id });
    }
    let id: i64 = sql::query_row(
        conn,
        "INSERT INTO main.kb_documents (tenant_id, job_id, source, url, title, markdown,
                                   content_hash, depth, fetched_at, cut)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id",
        rusqlite::params![
            doc.tenant_id,
            doc.job_id,
            doc.source.name(),
            doc.url,
            doc.title,
            doc.markdown,
            hash,
            doc.depth,
            doc.now,
            CUT
        ],
        |r| r.get(0),
    )?;
    let count = index(conn, id, doc.tenant_id, doc.title, doc.markdown)?;
    Ok(Stored::New { id, chunks: count })
}

/// Document `id`'s chunks: how many.
pub fn chunk_count(conn: &Connection, id: i64) -> Result<usize> {
    let count: i64 = sql::query_row(
        conn,
        "SELECT count(*) FROM main.kb_chunks WHERE document_id = ?1",
        [id],
        |r| r.get(0),
    )?;
    Ok(count as usize)
}

/// The tenant's pasted documents (source `documents`): id and identity.
pub fn pasted(conn: &Connection, tenant_id: &str) -> Result<Vec<(i64, String)>> {
    Ok(sql::with(
        conn,
        "SELECT id, content_hash FROM main.kb_documents WHERE tenant_id = ?1 AND source = 'documents'",
        |s| {
            s.query_map([tenant_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()
        },
    )?)
}

/// Whether the tenant has a document of the text hashed `hash`.
fn stored_text(conn: &Connection, tenant_id: &str, hash: &str) -> Result<bool> {
    Ok(sql::query_row(
        conn,
        "SELECT EXISTS (SELECT 1 FROM main.kb_documents WHERE tenant_id = ?1 AND content_hash = ?2)",
        (tenant_id, hash),
        |r| r.get(0),
    )?)
}

/// Document `id`'s text replaced by `markdown`, cut and indexed anew;
/// `false`, changing nothing, when the tenant already has a document of
/// that text.
pub fn rewrite(
    conn: &Connection,
    id: i64,
    tenant_id: &str,
    title: &str,
    markdown: &str,
) -> Result<bool> {
    let hash = content_hash(markdown);
    if stored_text(conn, tenant_id, &hash)? {
        return Ok(false);
    }
    drop_chunks(conn, id)?;
    sql::execute(
        conn,
        "UPDATE main.kb_documents SET markdown = ?2, content_hash = ?3, cut = ?4 WHERE id = ?1",
        (id, markdown, &hash, CUT),
    )?;
    forget_failed_recut(conn, id)?;
    index(conn, id, tenant_id, title, markdown)?;
    Ok(true)
}

/// Document `id`, its chunks and their index entries, gone.
pub fn delete(conn: &Connection, id: i64) -> Result<()> {
    drop_chunks(conn, id)?;
    forget_failed_recut(conn, id)?;
    sql::execute(conn, "DELETE FROM main.kb_documents WHERE id = ?1", [id])?;
    Ok(())
}

/// A failed cut of document `id` forgotten (`sql/014_kb_recut_failures.sql`):
/// it is cut now, or gone.
pub fn forget_failed_recut(conn: &Connection, id: i64) -> Result<()> {
    sql::execute(
        conn,
        "DELETE FROM main.kb_recut_failures WHERE document_id = ?1",
        [id],
    )?;
    Ok(())
}

fn drop_chunks(conn: &Connection, id: i64) -> Result<()> {
    sql::execute(
        conn,
        "DELETE FROM main.kb_chunks_index WHERE rowid IN (SELECT id FROM main.kb_chunks WHERE document_id = ?1)",
        [id],
    )?;
    sql::execute(
        conn,
        "DELETE FROM main.kb_chunks WHERE document_id = ?1",
        [id],
    )?;
    Ok(())
}

/// Cuts `markdown` into the chunks of document `id` and indexes them;
/// answers how many.
fn index(
    conn: &Connection,
    id: i64,
    tenant_id: &str,
    title: &str,
    markdown: &str,
) -> Result<usize> {
    let pieces = cut(markdown, title);
    for (position, piece) in pieces.iter().enumerate() {
        let chunk_id: i64 = sql::query_row(
            conn,
            "INSERT INTO main.kb_chunks (document_id, tenant_id, position, heading, text)
             VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
            (id, tenant_id, position as i64, &piece.heading, &piece.text),
            |r| r.get(0),
        )?;
        insert_entry(conn, chunk_id, tenant_id, piece)?;
    }
    Ok(pieces.len())
}

/// A chunk as stored: its row's heading and text, and its index entry's
/// terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub heading: String,
    pub text: String,
    pub terms: String,
    pub heading_terms: String,
}

/// The chunks a document titled `title` is stored as, with their index
/// entries: all that [`CUT`] stands for. The title goes into every chunk's
/// terms: a page called "Tarifs" answers price questions even where its
/// text never says so.
pub fn cut(markdown: &str, title: &str) -> Vec<Piece> {
    chunks(markdown, title)
        .into_iter()
        .map(|chunk| {
            let (terms, heading_terms) = terms_of(title, &chunk.heading, &chunk.text);
            Piece {
                heading: chunk.heading,
                text: chunk.text,
                terms,
                heading_terms,
            }
        })
        .collect()
}

/// Whether a stored chunk's row and its index entry are the tenant's, as
/// storing writes them.
#[derive(Debug, Clone, Copy)]
struct Right {
    row: bool,
    entry: bool,
}

/// What cutting a document again changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recut {
    /// Its chunks before and after.
    pub chunks_before: usize,
    pub chunks: usize,
    /// The chunks whose row and index entry were kept as they were.
    pub kept: usize,
}

/// Document `id`'s chunks and index entries made again from its text, as
/// storing it now would make them, and its cut set to [`CUT`]. A chunk
/// whose place, heading, text and terms are unchanged, and whose row and
/// entry are the tenant's, is left alone (its row, its id, its index
/// entry); another is rewritten in place, and the document's extra chunks
/// added or dropped. A document the change did not touch costs the write
/// of its cut alone: SQLite overwrites a record of unchanged size in
/// place, writing only the pages that differ (the row's first page and the
/// `(cut, id)` index's; measured: 2 pages of the WAL for a 146,550-character
/// text, pinned by a test). A cut whose stored size differs
/// rewrites the row, text included, once: the integers 0 and 1 take no
/// byte of the record, 2 to 127 one.
pub fn recut(
    conn: &Connection,
    id: i64,
    tenant_id: &str,
    title: &str,
    markdown: &str,
) -> Result<Recut> {
    // By place: a document's places can have gaps (a chunk emptied by a
    // site's repeated blocks goes, its neighbours keep theirs). With each
    // chunk, whether its row and entry are the tenant's as storing writes
    // them (none is written otherwise, but a host may have edited the
    // file): a chunk kept must be found by the tenant's searches alone.
    let mut before: HashMap<i64, (i64, Piece, Right)> = sql::with(
        conn,
        "SELECT c.position, c.id, c.heading, c.text, i.terms, i.heading_terms,
                c.tenant_id = ?2, i.tenant IS hex(?2)
         FROM main.kb_chunks c LEFT JOIN main.kb_chunks_index i ON i.rowid = c.id
         WHERE c.document_id = ?1",
        |s| {
            s.query_map((id, tenant_id), |r| {
                let terms: Option<String> = r.get(4)?;
                let heading_terms: Option<String> = r.get(5)?;
                // A chunk without an entry is never kept: it gets one.
                let entry = terms.is_some() && heading_terms.is_some();
                Ok((
                    r.get(0)?,
                    (
                        r.get(1)?,
                        Piece {
                            heading: r.get(2)?,
                            text: r.get(3)?,
                            terms: terms.unwrap_or_default(),
                            heading_terms: heading_terms.unwrap_or_default(),
                        },
                        Right {
                            row: r.get(6)?,
                            entry: entry && r.get::<_, bool>(7)?,
                        },
                    ),
                ))
            })?
            .collect::<rusqlite::Result<_>>()
        },
    )?;
    let chunks_before = before.len();
    let after = cut(markdown, title);
    let mut kept = 0;
    for (position, piece) in after.iter().enumerate() {
        let position = position as i64;
        match before.remove(&position) {
            Some((
                _,
                old,
                Right {
                    row: true,
                    entry: true,
                },
            )) if old == *piece => kept += 1,
            Some((chunk_id, old, right)) => {
                if (&old.heading, &old.text) != (&piece.heading, &piece.text) {
                    sql::execute(
                        conn,
                        "UPDATE main.kb_chunks SET heading = ?2, text = ?3 WHERE id = ?1",
                        (chunk_id, &piece.heading, &piece.text),
                    )?;
                }
                if !right.row {
                    // Apart: setting it rewrites the tenant's two indexes.
                    sql::execute(
                        conn,
                        "UPDATE main.kb_chunks SET tenant_id = ?2 WHERE id = ?1",
                        (chunk_id, tenant_id),
                    )?;
                }
                sql::execute(
                    conn,
                    "DELETE FROM main.kb_chunks_index WHERE rowid = ?1",
                    [chunk_id],
                )?;
                insert_entry(conn, chunk_id, tenant_id, piece)?;
            }
            None => {
                let chunk_id: i64 = sql::query_row(
                    conn,
                    "INSERT INTO main.kb_chunks (document_id, tenant_id, position, heading, text)
                     VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id",
                    (id, tenant_id, position, &piece.heading, &piece.text),
                    |r| r.get(0),
                )?;
                insert_entry(conn, chunk_id, tenant_id, piece)?;
            }
        }
    }
    // The places past the new last one.
    for (chunk_id, _, _) in before.into_values() {
        sql::execute(
            conn,
            "DELETE FROM main.kb_chunks_index WHERE rowid = ?1",
            [chunk_id],
        )?;
        sql::execute(conn, "DELETE FROM main.kb_chunks WHERE id = ?1", [chunk_id])?;
    }
    sql::execute(
        conn,
        "UPDATE main.kb_documents SET cut = ?2 WHERE id = ?1",
        (id, CUT),
    )?;
    Ok(Recut {
        chunks_before,
        chunks: after.len(),
        kept,
    })
}

/// Computes every chunk's index entry again, from its text, its heading and
/// its document's title, as [`cut`] does: after a change of the
/// French analysis (migration 009). Streams the chunks; answers how many.
pub fn reindex_chunks(conn: &Connection) -> Result<usize> {
    let mut chunks = conn.prepare(
        "SELECT c.id, d.title, c.heading, c.text FROM main.kb_chunks c
         JOIN main.kb_documents d ON d.id = c.document_id ORDER BY c.id",
    )?;
    // The index as 010 names it, or as it was before (009 runs before 010
    // on an upgrade, and after it when its record alone is missing).
    let renamed: bool = sql::query_row(
        conn,
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kb_chunks_index')",
        [],
        |r| r.get(0),
    )?;
    let mut update = conn.prepare(if renamed {
        "UPDATE main.kb_chunks_index SET terms = ?2, heading_terms = ?3 WHERE rowid = ?1"
    } else {
        "UPDATE main.kb_chunks_fts SET terms = ?2, heading_terms = ?3 WHERE rowid = ?1"
    })?;
    let mut rows = chunks.query([])?;
    let mut count = 0;
    while let Some(row) = rows.next()? {
        let (id, title, heading, text): (i64, String, String, String) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
        let (terms, heading_terms) = terms_of(&title, &heading, &text);
        update.execute((id, terms, heading_terms))?;
        count += 1;
    }
    Ok(count)
}

/// A chunk's index entry: the terms of its document's title, its heading
/// and its text, and those of the title and heading alone.
fn terms_of(title: &str, heading: &str, text: &str) -> (String, String) {
    (
        index_terms(&format!("{title}\n{heading}\n{text}")),
        index_terms(&format!("{title} {heading}")),
    )
}

/// The index entry of chunk `chunk_id` of tenant `tenant_id`.
fn insert_entry(conn: &Connection, chunk_id: i64, tenant_id: &str, piece: &Piece) -> Result<()> {
    sql::execute(
        conn,
        // The tenant as migration 010 writes it, and the search reads it.
        "INSERT INTO main.kb_chunks_index (rowid, terms, heading_terms, tenant)
         VALUES (?1, ?2, ?3, hex(?4))",
        (chunk_id, &piece.terms, &piece.heading_terms, tenant_id),
    )?;
    Ok(())
}

/// Takes what `lifted` holds out of document `id` (of `tenant_id`,
/// titled `title`, whose text is `markdown`): out of its text, and out of
/// the chunks that carry it, whose index entries are rebuilt (a chunk left
/// empty goes); the other chunks stay as they are, so a 2 MiB page costs
/// the few chunks its template's blocks are in. Answers `false`, changing
/// nothing, when the page holds none of it, when nothing of its own would
/// be left, or when the tenant already has a document of the remaining
/// text.
pub fn remove_blocks(
    conn: &Connection,
    id: i64,
    tenant_id: &str,
    title: &str,
    markdown: &str,
    lifted: &Lifted,
) -> Result<bool> {
    let Some(rest) = strip(markdown, lifted).filter(|rest| !rest.is_empty()) else {
        return Ok(false);
    };
    let hash = content_hash(&rest);
    if stored_text(conn, tenant_id, &hash)? {
        return Ok(false);
    }
    // The chunks it touches are cut by this library: a document of a later
    // cut is of this one now, and the library that stored it cuts it again.
    sql::execute(
        conn,
        "UPDATE main.kb_documents SET markdown = ?2, content_hash = ?3, cut = min(cut, ?4) WHERE id = ?1",
        (id, &rest, &hash, CUT),
    )?;
    // A failed cut was of the text before: the new one is tried at once.
    forget_failed_recut(conn, id)?;
    let chunks: Vec<(i64, String, String)> = sql::with(
        conn,
        "SELECT id, heading, text FROM main.kb_chunks WHERE document_id = ?1",
        |s| {
            s.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<_>>()
        },
    )?;
    for (chunk_id, heading, text) in chunks {
        let Some(text) = strip(&text, lifted) else {
            continue;
        };
        sql::execute(
            conn,
            "DELETE FROM main.kb_chunks_index WHERE rowid = ?1",
            [chunk_id],
        )?;
        if text.is_empty() {
            sql::execute(conn, "DELETE FROM main.kb_chunks WHERE id = ?1", [chunk_id])?;
        } else {
            sql::execute(
                conn,
                "UPDATE main.kb_chunks SET text = ?2 WHERE id = ?1",
                (chunk_id, &text),
            )?;
            let (terms, heading_terms) = terms_of(title, &heading, &text);
            let piece = Piece {
                heading,
                text,
                terms,
                heading_terms,
            };
            insert_entry(conn, chunk_id, tenant_id, &piece)?;
        }
    }
    Ok(true)
}
