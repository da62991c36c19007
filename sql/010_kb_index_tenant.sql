-- 010: the knowledge base indexed for searches of one tenant: the
-- full-text index knows each chunk's tenant (and is called kb_chunks_index),
-- and each chunk's length is in an index beside its tenant.
--
-- A search is about one tenant, but FTS5 matched its terms in every
-- tenant's chunks, and each match was looked up in kb_chunks to be dropped:
-- the search's time grew with what all the other tenants stored (ten
-- tenants of 4,000 chunks made a 30 ms search 50 ms). Each entry now holds
-- its tenant's id as one token (the hex of its UTF-8 bytes, which the
-- unicode61 tokenizer keeps whole: distinct for distinct ids up to FTS5's
-- 32 KiB token limit, far beyond any id the library makes), and the search
-- requires it in its MATCH, so the index yields the tenant's chunks. The
-- search still checks kb_chunks.tenant_id: the index is the way to the
-- rows, the table the authority.
--
-- FTS5 cannot add a column, so the index is built again, every entry
-- copied with its rowid (= kb_chunks.id); an entry whose chunk no longer
-- exists is not copied. It gets a new name so that a process still running
-- an older library fails on its next write to the index ("no such table:
-- kb_chunks_fts", its call rolled back) instead of writing entries without
-- a tenant, which no search would find. Still only a built-in tokenizer:
-- the file stays readable by any SQLite with FTS5 from 3.31 on (the first
-- with generated columns, below; the extension needs 3.35).
--
-- The DROP needs no other statement of the migrating connection to be
-- running (SQLite refuses it then, and the migration rolls back whole).

CREATE VIRTUAL TABLE kb_chunks_index USING fts5 (
    terms, heading_terms, tenant, tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO kb_chunks_index (rowid, terms, heading_terms, tenant)
    SELECT f.rowid, f.terms, f.heading_terms, hex(c.tenant_id)
    FROM kb_chunks_fts f JOIN kb_chunks c ON c.id = f.rowid;
DROP TABLE kb_chunks_fts;

-- A search scores by BM25, which compares each matching chunk's length
-- (SQL's length() of its text) with the average over the tenant's chunks:
-- that average read every chunk's text, about 1 KB each, on every search
-- (5-10 ms of a search over 4,000 chunks, most of one that matches few).
-- The length is a generated column, computed by SQLite whenever a text is
-- written (no writer changes, an older library's rows too), and stored in
-- the index on (tenant_id, id, chars) alone. That index replaces
-- kb_chunks_tenant (its prefix), answers the tenant's count and lengths,
-- and takes a search from each index entry to its chunk's tenant and
-- length, without the chunk's row.
ALTER TABLE kb_chunks ADD COLUMN chars INTEGER GENERATED ALWAYS AS (length(text)) VIRTUAL;
CREATE INDEX kb_chunks_tenant_chars ON kb_chunks (tenant_id, id, chars);
-- IF EXISTS: a host may have dropped it, and the upgrade must not stop there.
DROP INDEX IF EXISTS kb_chunks_tenant;
