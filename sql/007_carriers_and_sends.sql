-- 007: which pages carried each block a crawled site shares, and the
-- codes each verification was sent.
--
-- A crawler reports the block a page shares with its site (the footer:
-- address, phone, hours) apart from the page's own text, and the library
-- stores each such block once, as its own document, as the crawl goes. A
-- block only one page carried is not the site's but that page's (a site
-- whose agencies each have a footer of their own): when the job ends, it
-- goes back into that page's document. This table says which stored pages
-- carried which block; a block stored before it existed has no row and is
-- left as it is.

CREATE TABLE kb_shared_carriers (
    document_id INTEGER NOT NULL REFERENCES kb_documents (id),
    page_id     INTEGER NOT NULL REFERENCES kb_crawl_pages (id),
    PRIMARY KEY (document_id, page_id)
) WITHOUT ROWID;

-- The codes a session was sent, whatever its numbers: one outbox row per
-- send, found by its verification. A session's sends in the last 24 hours
-- are counted through it (at most 10 a day, against SMS pumping through
-- changes of the business phone).
CREATE INDEX outbox_messages_verification ON outbox_messages (verification_id, created_at);
