-- 015: what each keyed call was asked, so that a key sent again with other
-- arguments is refused instead of answered as the first call was.
--
-- A request key (004, 008) stands for one call: a host retrying a commit of
-- unknown outcome sends the same arguments with the same key, and a
-- client's `Idempotency-Key` on a create does the same. A key sent again
-- with another payload (or, for a step, another step) is a mistake of its
-- sender: answering the first call's reply would tell it that its new
-- payload was saved when nothing was written. The keyed forms now keep the
-- SHA-256 of their payload as sent (a NULL payload as `{}`, which it means;
-- a payload that is not a JSON object is refused before any key is looked
-- up), in 64 lowercase hex digits, and refuse a key whose kept fingerprint
-- differs with `conflict`. `function` already names the step (008), and a
-- create's address and user agent are the transport's, not the request's.
--
-- Rows kept before this migration have no fingerprint (NULL): their keys
-- answer as before, whatever the arguments. Call replies are deleted after
-- a day anyway; create requests stay as long as their session.
--
-- No CHECK on the new columns: only the library writes them, and SQLite
-- checks a column added with a CHECK against every row already in the
-- table, under the write lock. `onboarding_create_requests` is never pruned
-- and a dqlite cluster keys every create: a million rows took 0.2 s, and a
-- few million would outlast the cluster's election timeout (525 ms).
ALTER TABLE onboarding_call_replies ADD COLUMN fingerprint TEXT;

ALTER TABLE onboarding_create_requests ADD COLUMN fingerprint TEXT;
