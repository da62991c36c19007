-- 014: the documents whose cut failed, so that one the library cannot cut
-- again does not hold back those after it.
--
-- `onboarding_kb_recut()` cuts the first document of an older cut (013).
-- When cutting it fails (a text the new chunker cannot cut, a constraint
-- a host added), its writes are undone and the failure is recorded here;
-- the document keeps its older chunks, which the search still answers,
-- and is left alone until `retry_at`, while the calls go on with the next
-- documents. A failure that ends a caller's transaction (an I/O error, a
-- full disk, `RAISE(ROLLBACK)`) is the call's error instead: its record
-- would commit alone. A document cut, stored again, stripped of repeated
-- blocks or deleted takes its row with it.
--
-- `cut` is the library's `kb::CUT` that failed: a newer library tries the
-- document at once, whatever an older one recorded.
CREATE TABLE kb_recut_failures (
    document_id INTEGER PRIMARY KEY,
    cut         INTEGER NOT NULL CHECK (cut >= 1),
    attempts    INTEGER NOT NULL CHECK (attempts >= 1),
    error       TEXT NOT NULL,
    failed_at   TEXT NOT NULL,
    retry_at    TEXT NOT NULL
);
