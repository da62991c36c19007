-- 004: the request key of a create, for engines whose commit can have an
-- unknown outcome. On a dqlite cluster a leader may die after applying a
-- commit and before answering it; the server then runs the same call again
-- on the new leader. The key it generated for the HTTP request finds the
-- first session instead of creating a second one.
--
-- Written only by onboarding_create(payload, ip_address, user_agent,
-- request_key): the single-file server never needs it. One row per session
-- created that way, kept as long as the session.

CREATE TABLE onboarding_create_requests (
    request_key TEXT PRIMARY KEY CHECK (length(request_key) BETWEEN 16 AND 128),
    session_id  TEXT NOT NULL UNIQUE REFERENCES onboarding_sessions (id)
);
