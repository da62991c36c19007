-- 012: a crawl job that waits for its site, out of the queue's way.
--
-- A site answering 429 or 503 with a Retry-After longer than a job can wait
-- in hand (past 120 s, or past what is left of the job's 3 minutes) failed
-- its page, and every crawler left the site alone 120 s at most. The job is
-- now given back to the queue until the site's wait is over (its
-- `next_attempt_at`, the attempt not counted), and the page asked again
-- when it resumes. Both are bounded: a page is asked again at most twice
-- after a 429 or 503 (the contract's retries, kept with the page so that a
-- resumed job does not start them again), and a job waits for its site at
-- most five times.
ALTER TABLE kb_crawl_pages ADD COLUMN retries INTEGER NOT NULL DEFAULT 0 CHECK (retries BETWEEN 0 AND 2);
ALTER TABLE kb_crawl_jobs ADD COLUMN site_waits INTEGER NOT NULL DEFAULT 0 CHECK (site_waits BETWEEN 0 AND 5);
