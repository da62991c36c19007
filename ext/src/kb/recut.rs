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

use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value};

use super::store;
use super::CUT;
use crate::error::Result;
use crate::savepoint::in_savepoint;
use crate::sql;

// -- onboarding_kb_recut()
//      -> '{"success":true,"recut":{"document_id":7,"tenant_id":"tenant_…","chunks_before":12,
//           "chunks":11,"kept":9},"remaining":41}'
//      -> '{"success":true,"recut":null,"remaining":0}'   (every document is of this cut)
pub fn recut(conn: &Connection) -> Result<Value> {
    in_savepoint(conn, || {
        let next: Option<(i64, String, String, String)> = sql::query_row(
            conn,
            "SELECT id, tenant_id, title, markdown FROM kb_documents
             WHERE cut < ?1 ORDER BY cut, id LIMIT 1",
            [CUT],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
        let recut = match next {
            None => Value::Null,
            Some((id, tenant_id, title, markdown)) => {
                let done = store::recut(conn, id, &tenant_id, &title, &markdown)?;
                json!({
                    "document_id": id,
                    "tenant_id": tenant_id,
                    "chunks_before": done.chunks_before,
                    "chunks": done.chunks,
                    "kept": done.kept,
                })
            }
        };
        let remaining: i64 = sql::query_row(
            conn,
            "SELECT count(*) FROM kb_documents WHERE cut < ?1",
            [CUT],
            |r| r.get(0),
        )?;
        Ok(json!({"success": true, "recut": recut, "remaining": remaining}))
    })
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
    /// accents, stop words, no-break spaces, a long word).
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
            ]
            .map(str::to_string),
        );
        texts.push(format!("# Mot\n\n{} fin.", "x".repeat(3_000)));
        texts.push("Une phrase de plus sur les soins du visage. ".repeat(200));
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
                1,
                "5c1a68652a215176462df539d6cf118ba2bcec7b791451a3020b82db1d419542"
            )
        );
    }
}
