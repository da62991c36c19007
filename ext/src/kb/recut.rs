//! `onboarding_kb_recut()`: a stored document cut again by this library,
//! one a call (`sql/013_kb_cut.sql`).
//!
//! A document's chunks and their terms are made when it is stored, by the
//! chunker and the French analysis of the library that stores it. When
//! either changes, [`CUT`] is raised, and the documents stored before are
//! cut again by this function, the first first, until it answers `null`.
//! One document a call keeps every call short (a document is at most the
//! crawler's 2 MiB page), which a dqlite leader needs to keep its
//! heartbeats; the server's crawler calls it whenever it has no job.
//!
//! A document whose cut fails is not cut at all (its writes undone), and
//! is recorded in `kb_recut_failures` (`sql/014_kb_recut_failures.sql`) and
//! passed over for an hour: one text the chunker cannot cut must not hold
//! back every document after it, nor have every idle turn fail on it.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value};

use super::store;
use super::CUT;
use crate::env::{iso8601, Env};
use crate::error::{Error, Result};
use crate::savepoint::in_savepoint;
use crate::sql;

/// How long a document whose cut failed is left alone before it is tried
/// again: a failure of the text itself fails every time, but a full disk
/// or a host's constraint may be gone by then.
pub const RETRY_AFTER_MS: i64 = 3_600_000;

/// The documents `remaining` counts up to: the count walks the index, and
/// each call counting them all would make cutting N documents again cost
/// N²/2 index steps.
pub const COUNTED_UP_TO: i64 = 1_000;

// -- onboarding_kb_recut()
//      -> '{"success":true,"recut":{"document_id":7,"tenant_id":"tenant_…","chunks_before":12,
//           "chunks":11,"kept":9},"failed":null,"remaining":41,"failing":0}'
//      -> '{"success":true,"recut":null,"failed":{"document_id":8,"tenant_id":"tenant_…",
//           "error":"internal: …","attempts":1,"retry_at":"2026-11-24T11:00:00.000Z"},
//           "remaining":40,"failing":1}'                 (its writes undone, the next call goes on)
//      -> '{"success":true,"recut":null,"failed":null,"remaining":0,"failing":0}'
//                                                        (none left, or only failed ones waiting)
/// Cuts again the first document of an older cut than [`CUT`], skipping
/// those whose cut failed less than [`RETRY_AFTER_MS`] ago. `remaining`
/// counts the documents the next calls will cut (up to [`COUNTED_UP_TO`]),
/// `failing` those waiting after a failure.
pub fn recut(conn: &Connection, env: &dyn Env) -> Result<Value> {
    let now_ms = env.now_ms();
    let now = iso8601(now_ms);
    // The document whose cut failed, when one did. The call's savepoint
    // (its own transaction in autocommit mode) undoes the cut's writes
    // with the rest of the call's, and the failure is then recorded by a
    // second one: a savepoint around the cut alone would copy every page
    // the cut writes into SQLite's statement journal first (a fifth more
    // time for a document rewritten whole). Under a host that undoes
    // failed calls there is no savepoint: a failed cut that wrote rows
    // marks the call for its host to undo, which runs it again alone (one
    // that wrote none is recorded in the host's transaction).
    let mut failed: Option<(i64, String)> = None;
    let in_callers_transaction = !conn.is_autocommit();
    let cut = in_savepoint(conn, || {
        let next: Option<(i64, String, String, String)> = sql::query_row(
            conn,
            "SELECT d.id, d.tenant_id, d.title, d.markdown FROM main.kb_documents d
             WHERE d.cut < ?1 AND NOT EXISTS (
                 SELECT 1 FROM main.kb_recut_failures f
                 WHERE f.document_id = d.id AND f.cut = ?1 AND f.retry_at > ?2)
             ORDER BY d.cut, d.id LIMIT 1",
            (CUT, &now),
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
        let Some((id, tenant_id, title, markdown)) = next else {
            return answer(conn, &now, Value::Null, Value::Null);
        };
        match cut_one(conn, id, &tenant_id, &title, &markdown) {
            Ok(done) => {
                store::forget_failed_recut(conn, id)?;
                let done = json!({
                    "document_id": id,
                    "tenant_id": tenant_id,
                    "chunks_before": done.chunks_before,
                    "chunks": done.chunks,
                    "kept": done.kept,
                });
                answer(conn, &now, done, Value::Null)
            }
            Err(error) => {
                failed = Some((id, tenant_id));
                Err(error)
            }
        }
    });
    let (Err(error), Some((id, tenant_id))) = (&cut, failed) else {
        return cut;
    };
    // Interrupted (its client cancelled it): no failure of the document's
    // to record, and no statement would run before the call ends.
    if error.code == Some(rusqlite::ffi::SQLITE_INTERRUPT) {
        return cut;
    }
    if in_callers_transaction && conn.is_autocommit() {
        // The failure ended the caller's transaction (`RAISE(ROLLBACK)`, an
        // I/O error, a full disk): recording it now would commit alone, in
        // autocommit mode, and answer success for a transaction that is
        // gone. The caller gets the error and decides; the document is the
        // first again at the next call (such causes are the database's
        // more often than the document's).
        // This says what the cut's own error said after its cause (that
        // SQLite rolled back the caller's transaction): once is enough.
        let cause = error
            .detail
            .strip_suffix(crate::savepoint::CALLERS_ROLLED_BACK);
        return Err(Error {
            detail: format!(
                "cutting document {id} again ended the caller's transaction: {}",
                cause.unwrap_or(&error.detail)
            ),
            ..error.clone()
        });
    }
    let error = error.to_string();
    let recorded = in_savepoint(conn, || {
        let retry_at = iso8601(now_ms + RETRY_AFTER_MS);
        let attempts: i64 = sql::query_row(
            conn,
            "INSERT INTO main.kb_recut_failures (document_id, cut, attempts, error, failed_at, retry_at)
             VALUES (?1, ?2, 1, ?3, ?4, ?5)
             ON CONFLICT (document_id) DO UPDATE SET
                 attempts = CASE WHEN cut = excluded.cut THEN attempts + 1 ELSE 1 END,
                 cut = excluded.cut, error = excluded.error,
                 failed_at = excluded.failed_at, retry_at = excluded.retry_at
             RETURNING attempts",
            (id, CUT, &error, &now, &retry_at),
            |r| r.get(0),
        )?;
        let failed = json!({
            "document_id": id,
            "tenant_id": tenant_id,
            "error": error,
            "attempts": attempts,
            "retry_at": retry_at,
        });
        answer(conn, &now, Value::Null, failed)
    });
    // When the record fails too (a full disk), the call's error says both.
    recorded.map_err(|e| Error {
        detail: format!(
            "{} (recording that cutting document {id} again failed: {error})",
            e.detail
        ),
        ..e
    })
}

/// Document `id` cut again; a panic of the chunker is its failure too, so
/// that one text it cannot cut is passed over like any other failure.
fn cut_one(
    conn: &Connection,
    id: i64,
    tenant_id: &str,
    title: &str,
    markdown: &str,
) -> Result<store::Recut> {
    catch_unwind(AssertUnwindSafe(|| {
        store::recut(conn, id, tenant_id, title, markdown)
    }))
    .unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(Error::internal(format!(
            "cutting the document panicked: {}",
            crate::error::cut(&what)
        )))
    })
}

/// The call's answer: what it cut or failed to, and the counts after it.
fn answer(conn: &Connection, now: &str, recut: Value, failed: Value) -> Result<Value> {
    let remaining: i64 = sql::query_row(
        conn,
        "SELECT count(*) FROM (
             SELECT 1 FROM main.kb_documents d
             WHERE d.cut < ?1 AND NOT EXISTS (
                 SELECT 1 FROM main.kb_recut_failures f
                 WHERE f.document_id = d.id AND f.cut = ?1 AND f.retry_at > ?2)
             LIMIT ?3)",
        (CUT, now, COUNTED_UP_TO),
        |r| r.get(0),
    )?;
    let failing: i64 = sql::query_row(
        conn,
        "SELECT count(*) FROM (
             SELECT 1 FROM main.kb_recut_failures f JOIN main.kb_documents d ON d.id = f.document_id
             WHERE f.cut = ?1 AND f.retry_at > ?2 AND d.cut < ?1
             LIMIT ?3)",
        (CUT, now, COUNTED_UP_TO),
        |r| r.get(0),
    )?;
    Ok(json!({
        "success": true,
        "recut": recut,
        "failed": failed,
        "remaining": remaining,
        "failing": failing,
    }))
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::super::chunk::tests::generated;
    use super::super::store::cut;
    use super::CUT;

    /// What the library cuts a corpus into, chunks and terms, hashed: the
    /// generated business documents of the chunker's tests, and texts of
    /// the shapes its rules are about (setext headings, fences, quotes,
    /// lists, tables, front matter, a lone carriage return, ligatures,
    /// accents, stop words, no-break spaces, a long word, contact details).
    fn fingerprint() -> String {
        let mut texts: Vec<String> = Vec::new();
        let mut seed = 11;
        texts.extend((0..60).map(|_| generated(&mut seed)));
        texts.extend(
            [
                "Tarifs\n======\n\nCoupe : 25\u{a0}€.\n\nHoraires\n--------\n\nLundi fermé.",
                "---\ntitle: Salon\n---\n# Le salon\n\nOuvert l'été.",
                "```sh\n# commentaire\nls | grep x\n```\n\n## Après\n\nTexte.",
                "> # Citée\n> texte cité\n\n- ```\n  # dans la liste\n  ```\n\n# Fin\n\nfin.",
                "# Langage C#\n\nLe ﬁnancement de l'œuvre, été comme hiver.\r\rUne ligne.",
                "| Jour | Heures |\n|---|---|\n| Lundi | Fermé |\n| Samedi | 9h – 18h |",
                "Titre\n\n    # code indenté\n\nRendez-vous en ligne pour les enfants et les adultes.",
                "## Contact\n\n3 place du Marché, 35000 Rennes – 02 99 12 34 56 – \
                 contact@salon-lea.fr, +33 (0)6 12 34 56 78. 1 place de parking.",
                // What the contact patterns read or refuse, one of each.
                "(+33) 6 12 34 56 78, 0 800 123 456, 02/99/12/34/56, 0612345678. \
                 +262 692 12 34 56, +33 06 12 34 56 79, +44 20 7946 0958. \
                 (+262) 692 12 34 57, 0262 12 34 56, 0590.12.34.56. \
                 12B rue Nationale, 12 Av Foch, 3 cours de Yoga, 1 place VIP.\n\
                 75011, Paris\n- 15000 Clients satisfaits\nSIRET 123 456 789 00019 RCS Lyon\n\
                 capital de 10000 Euros ; 09.00-12.00 14.00-19.00 ; logo@2x.png",
            ]
            .map(str::to_string),
        );
        // Every stop word of the analysis, every letter it folds, and
        // words whose plain spelling is a stop word: a change of what it
        // drops or folds changes what these are cut into.
        texts.push(
            concat!(
                "a à ai aie aient ainsi alors as au aucun aussi autre aux avais avait ",
                "avant avec avez aviez avoir avons bien bon bonjour c ça car ce ceci ",
                "cela celle celui ces cet cette chez ci comme comment d dans de des ",
                "dois doit donc du elle elles en encore es est et étaient était êtes ",
                "être eu eux faire fais fait faut hein ici il ils j je l la là le les ",
                "leur leurs lui m ma mais me même mes moi mon n ne ni nos notre nous on ",
                "ont ou où par pas peu peut peux plus pour pourrais pouvez puis qu ",
                "quand que quel quelle quelles quels qui s sa sans se ses si sil son ",
                "sont suis sur svp t ta te tes toi ton tous tout toute toutes tu un une ",
                "vos votre vous voudrais voulez vu y euh oui non merci madame monsieur ",
                "savoir dire fois ",
            )
            .to_string(),
        );
        texts.push(
            "Àà Ââ Ää Ææ Çç Éé Èè Êê Ëë Îî Ïï Ôô Öö Œœ Ùù Ûû Üü Ÿÿ ñ ß ø å ı ǅ ﬀ ﬃ ﬆ \
             Noël à l'Hôtel-Dieu, déjà sûr : maïs, dés, dû, né, étés, mémé, ÉTÉ."
                .to_string(),
        );
        texts.push(format!("# Mot\n\n{} fin.", "x".repeat(3_000)));
        // A code block longer than a chunk, each piece under its fence.
        let script: String = (1..=80)
            .map(|n| format!("# étape {n}\ncp caisse-{n}.db /mnt/\n"))
            .collect();
        texts.push(format!("## Sauvegarde\n\n```sh\n{script}```\n\nFin."));
        // The same in a list item, and after text with no blank line.
        let item: String = script.lines().map(|l| format!("  {l}\n")).collect();
        texts.push(format!("Étapes :\n- ```sh\n{item}  ```\n- Fin."));
        texts.push("Une phrase de plus sur les soins du visage. ".repeat(200));
        // Invisible characters inside words (a CMS's soft hyphens).
        texts.push(
            "Ré\u{AD}ser\u{AD}va\u{AD}tion en\u{AD}ligne, r\u{200B}endez-vous\u{2060}, \u{FEFF}tarifs."
                .to_string(),
        );
        // Decomposed text: letters, then their combining accents.
        texts.push(
            "Re\u{301}servez a\u{300} l'ho\u{302}tel, e\u{301}te\u{301} et Noe\u{308}l."
                .to_string(),
        );
        let mut hash = Sha256::new();
        for (n, text) in texts.iter().enumerate() {
            for piece in cut(text, &format!("Document {n}")) {
                for field in [
                    &piece.heading,
                    &piece.text,
                    &piece.terms,
                    &piece.heading_terms,
                ] {
                    hash.update(field.as_bytes());
                    hash.update([0]);
                }
            }
            hash.update([1]);
        }
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_change_of_the_chunks_or_terms_raises_the_cut() {
        // When this fails, what a text is stored as has changed: raise CUT
        // (kb/mod.rs) so that the documents stored before are cut again,
        // and pin the new fingerprint beside it.
        assert_eq!(
            (CUT, fingerprint().as_str()),
            (
                9,
                "08778d1b3f9e7b7975d853791d603d1206cf587487d4809650f15837f6b46196"
            )
        );
    }
}
