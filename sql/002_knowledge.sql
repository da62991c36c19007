-- 002_knowledge: the knowledge base: crawl jobs that workers lease, the
-- crawl frontier, documents, their chunks and a full-text index of them.
--
-- Upgrading a database made by 001_init keeps every row: kb_crawl_jobs only
-- gains columns whose defaults describe a job that was never taken.
--
-- The full-text index uses FTS5's built-in unicode61 tokenizer only, so that
-- any SQLite with FTS5 (Debian 12's 3.40 shell included; 3.31 or later
-- since 010's generated column), a backup or a replica can read the file. French matching (accent folding, stemming,
-- stop words, synonyms) is done by the library in Rust: it indexes the
-- chunks' `terms` (stems, space-separated) and analyses queries the same way.

-- A job is leased by one worker at a time; a lease that expires is taken
-- over by the next claim, so no job stays 'running' forever.
ALTER TABLE kb_crawl_jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0);
ALTER TABLE kb_crawl_jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE kb_crawl_jobs ADD COLUMN lease_expires_at TEXT;
-- When a queued job may be claimed again (backoff after a failed attempt).
ALTER TABLE kb_crawl_jobs ADD COLUMN next_attempt_at TEXT;
ALTER TABLE kb_crawl_jobs ADD COLUMN pages_found INTEGER NOT NULL DEFAULT 0 CHECK (pages_found >= 0);
ALTER TABLE kb_crawl_jobs ADD COLUMN pages_stored INTEGER NOT NULL DEFAULT 0 CHECK (pages_stored >= 0);
ALTER TABLE kb_crawl_jobs ADD COLUMN pages_skipped INTEGER NOT NULL DEFAULT 0 CHECK (pages_skipped >= 0);
ALTER TABLE kb_crawl_jobs ADD COLUMN pages_failed INTEGER NOT NULL DEFAULT 0 CHECK (pages_failed >= 0);
ALTER TABLE kb_crawl_jobs ADD COLUMN error_code TEXT CHECK (error_code IS NULL OR error_code IN (
    'dns', 'unreachable', 'robots_disallowed', 'robots_unavailable', 'private_address',
    'timeout', 'too_large', 'no_content', 'js_required'));
ALTER TABLE kb_crawl_jobs ADD COLUMN started_at TEXT;
ALTER TABLE kb_crawl_jobs ADD COLUMN finished_at TEXT;

-- Every URL a job admitted (at most 50, depth at most 3), with what became
-- of it: the frontier survives a crash, so a restarted worker resumes
-- where the dead one stopped and never fetches a stored page again.
CREATE TABLE kb_crawl_pages (
    id          INTEGER PRIMARY KEY,
    job_id      INTEGER NOT NULL REFERENCES kb_crawl_jobs (id),
    -- Normalised (lowercase host, no fragment, no tracking parameters,
    -- sorted query, no trailing slash except the root).
    url         TEXT NOT NULL CHECK (url LIKE 'http://%' OR url LIKE 'https://%'),
    depth       INTEGER NOT NULL CHECK (depth BETWEEN 0 AND 3),
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'stored', 'skipped', 'failed')),
    -- Why a page was skipped or failed: 'robots_disallowed', 'http_404', …
    reason      TEXT CHECK ((reason IS NULL) = (status IN ('pending', 'stored'))),
    document_id INTEGER REFERENCES kb_documents (id),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (job_id, url)
);
-- A worker's frontier: the job's pending pages, breadth first.
CREATE INDEX kb_crawl_pages_frontier ON kb_crawl_pages (job_id, status, depth, id);

-- One document per distinct text per tenant: a crawled page, a shared block
-- (a footer repeated on every page, stored once) or a document given at
-- the kb step.
CREATE TABLE kb_documents (
    id           INTEGER PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    job_id       INTEGER REFERENCES kb_crawl_jobs (id),
    source       TEXT NOT NULL CHECK (source IN ('website', 'documents')),
    url          TEXT,
    title        TEXT NOT NULL CHECK (length(title) > 0),
    markdown     TEXT NOT NULL CHECK (length(markdown) > 0),
    -- sha256 of the text, hex: the same text is stored once per tenant.
    content_hash TEXT NOT NULL CHECK (length(content_hash) = 64),
    depth        INTEGER CHECK (depth IS NULL OR depth BETWEEN 0 AND 3),
    fetched_at   TEXT NOT NULL,
    UNIQUE (tenant_id, content_hash)
);
CREATE INDEX kb_documents_job ON kb_documents (job_id);

-- About 800 to 1,200 characters of a document, cut along its headings.
CREATE TABLE kb_chunks (
    id          INTEGER PRIMARY KEY,
    document_id INTEGER NOT NULL REFERENCES kb_documents (id),
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    position    INTEGER NOT NULL CHECK (position >= 0),
    -- The headings above the chunk, outermost first: 'Tarifs > Coupes'.
    heading     TEXT NOT NULL,
    text        TEXT NOT NULL CHECK (length(text) > 0),
    UNIQUE (document_id, position)
);
CREATE INDEX kb_chunks_tenant ON kb_chunks (tenant_id);

-- rowid = kb_chunks.id. `terms`: the chunk's analysed words (heading and
-- text); `heading_terms`: the heading's alone, weighted higher by bm25.
CREATE VIRTUAL TABLE kb_chunks_fts USING fts5 (
    terms, heading_terms, tokenize = 'unicode61 remove_diacritics 2'
);
