-- 010: the knowledge base's full-text index knows each chunk's tenant.
--
-- A search is about one tenant, but FTS5 matched its terms in every
-- tenant's chunks, and each match was looked up in kb_chunks to be dropped:
-- the search's time grew with what all the other tenants stored (20
-- tenants of 4,000 chunks made a 20 ms search 60 ms). Each entry now holds
-- its tenant's id, as one token (the hex of its UTF-8 bytes, which the
-- unicode61 tokenizer keeps whole and no two ids share), and the search
-- requires it in its MATCH, so the index yields the tenant's chunks alone.
-- The search still checks kb_chunks.tenant_id: the index is the way to
-- the rows, the table the authority.
--
-- FTS5 cannot add a column, so the table is built again, every entry
-- copied with its rowid (= kb_chunks.id); an entry whose chunk no longer
-- exists is not copied. Still only a built-in tokenizer: the file stays
-- readable by any SQLite with FTS5.

CREATE VIRTUAL TABLE kb_chunks_fts_010 USING fts5 (
    terms, heading_terms, tenant, tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO kb_chunks_fts_010 (rowid, terms, heading_terms, tenant)
    SELECT f.rowid, f.terms, f.heading_terms, hex(c.tenant_id)
    FROM kb_chunks_fts f JOIN kb_chunks c ON c.id = f.rowid;
DROP TABLE kb_chunks_fts;
ALTER TABLE kb_chunks_fts_010 RENAME TO kb_chunks_fts;
