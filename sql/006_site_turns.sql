-- 006: whose turn it is at a site, for every crawler working on this file.
--
-- The contract's politeness (one request at a time per site, at least 1 s
-- apart, or the robots Crawl-delay) must hold across processes too: the
-- server's crawler and `onboarding-server crawl` may run on one file, and
-- two sessions of one business crawl the same site. A crawler takes the
-- site's turn before a request and gives it back after the response, with
-- the gap the next request must wait (onboarding_kb_site_take and
-- onboarding_kb_site_release). A turn is held for a bounded time only, so
-- a crawler killed mid-request blocks its site until `held_until`, not
-- forever.
--
-- `site` is the crawl scope's key: the host without `www.`, and its port
-- when not 80 or 443 (`salon-lea.fr`, `127.0.0.1:8080`). One row per site
-- ever crawled, a few dozen bytes each.

CREATE TABLE kb_site_turns (
    site       TEXT PRIMARY KEY CHECK (length(site) BETWEEN 1 AND 260),
    holder     TEXT CHECK (holder IS NULL OR length(holder) BETWEEN 1 AND 100),
    held_until TEXT CHECK ((holder IS NULL) = (held_until IS NULL)),
    next_at    TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
