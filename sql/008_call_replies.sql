-- 008: the answers of keyed calls, for engines whose commit can have an
-- unknown outcome.
--
-- On a dqlite cluster a leader may die after applying a commit and before
-- answering it; the server then runs the same calls again on the new
-- leader. A create finds its first session by its key (004). The other
-- calls that are not safe to run twice carry a key the same way and keep
-- their answer here, in the transaction of their writes: a phone code sent
-- (run again it would answer "too soon" although the code went out), a
-- code checked (a wrong one would count twice, a right one answer
-- "already used") and a completion (it would answer already_completed on
-- the client's first request). Run again with its key, the call answers
-- what it answered the first time and writes nothing.
--
-- Written only by the functions' keyed forms (onboarding_phone_send/4,
-- onboarding_phone_verify/3, onboarding_complete/3): the single-file server
-- never needs them. `reply` is the JSON answered or, when `failed` is 1,
-- the error that was answered with its writes kept (a wrong code counted),
-- as `<kind>: <detail>`. A call retried later than a day after its first
-- run is no retry: rows older than that are deleted as new ones are kept.
-- A rowid table, not WITHOUT ROWID: a completion's answer is 1 to 2 KB,
-- past the row size at which SQLite's documentation advises against it.

CREATE TABLE onboarding_call_replies (
    request_key TEXT PRIMARY KEY CHECK (length(request_key) BETWEEN 16 AND 128),
    function    TEXT NOT NULL,
    session_id  TEXT NOT NULL,
    failed      INTEGER NOT NULL CHECK (failed = 0 OR failed = 1),
    reply       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE INDEX onboarding_call_replies_created ON onboarding_call_replies (created_at);
