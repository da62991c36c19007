-- 011: a crawl job's budget, kept with the job: the bytes its pages took
-- and the time it has spent crawling, across its workers.
--
-- The contract's 20 MiB and 3 minutes are per job. A worker counted them in
-- its own memory, so a job taken over after its worker died, or given back
-- at a shutdown and claimed again, started both from zero: a site of 30
-- pages of 1 MB had all its 32 MB stored after one restart. The worker now
-- reports the job's totals with each page and each renewal of its lease
-- (the library keeps the larger), and the next worker starts from them.
-- The time counts the crawling only: a job waiting for its next attempt,
-- or for a server to restart, spends none of it.
ALTER TABLE kb_crawl_jobs ADD COLUMN bytes_fetched INTEGER NOT NULL DEFAULT 0 CHECK (bytes_fetched >= 0);
ALTER TABLE kb_crawl_jobs ADD COLUMN crawl_ms INTEGER NOT NULL DEFAULT 0 CHECK (crawl_ms >= 0);
