-- 003_phone: phone verification. A declared number routes calls only once
-- its owner proves control of it with a one-time code: the verifications,
-- the outbox of messages an SMS/voice sender delivers, and the secret that
-- keys the codes' HMAC (its row is written by onboarding_migrate(), from the
-- library's random source: SQL has no cryptographic one).
--
-- Only tables are added: a database made by 001 keeps every row.

-- Secrets the library keeps in the database itself, so that every client of
-- the file (the server, a sqlite3 shell, a replica) checks codes alike.
CREATE TABLE onboarding_secrets (
    name       TEXT PRIMARY KEY,
    -- 32 random bytes, as 64 lowercase hex digits.
    value      TEXT NOT NULL CHECK (length(value) = 64 AND value NOT GLOB '*[^0-9a-f]*'),
    created_at TEXT NOT NULL
);

-- One verification per code sent (resends replace the code of the same
-- verification). The code itself is never stored: only its HMAC-SHA-256
-- under the 'phone_code_hmac' secret, over 'ver_…:123456'.
CREATE TABLE phone_verifications (
    id           TEXT PRIMARY KEY CHECK (id LIKE 'ver\_%' ESCAPE '\'),
    session_id   TEXT NOT NULL REFERENCES onboarding_sessions (id),
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    phone_number TEXT NOT NULL CHECK (phone_number LIKE '+%'),
    channel      TEXT NOT NULL CHECK (channel IN ('sms', 'voice')),
    code_hmac    TEXT NOT NULL CHECK (length(code_hmac) = 64),
    -- The current code's end of validity (10 minutes after its send).
    expires_at   TEXT NOT NULL,
    -- Wrong codes so far; the fifth makes the verification 'failed'.
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts BETWEEN 0 AND 5),
    sends        INTEGER NOT NULL DEFAULT 1 CHECK (sends BETWEEN 1 AND 5),
    last_sent_at TEXT NOT NULL,
    -- 'pending' past expires_at is expired: the time decides, not a writer.
    status       TEXT NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'verified', 'failed', 'cancelled')),
    request_ip   TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    verified_at  TEXT,
    CHECK ((status = 'verified') = (verified_at IS NOT NULL)),
    CHECK (status <> 'failed' OR attempts = 5)
);
-- A session's latest verification.
CREATE INDEX phone_verifications_session ON phone_verifications (session_id, created_at);

-- Messages for an external SMS/voice sender, which claims one with a lease
-- (onboarding_outbox_claim) and reports it sent or failed. The text holds a
-- code: it is blanked ('') once the message is sent, failed, expired or
-- superseded, and a message past expires_at is never handed out.
CREATE TABLE outbox_messages (
    id              INTEGER PRIMARY KEY,
    verification_id TEXT REFERENCES phone_verifications (id),
    recipient       TEXT NOT NULL CHECK (recipient LIKE '+%'),
    channel         TEXT NOT NULL CHECK (channel IN ('sms', 'voice')),
    text            TEXT NOT NULL,
    expires_at      TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'expired', 'cancelled')),
    -- The sender holding the message while status is 'sending' (the one that
    -- sent it, afterwards), and until when.
    lease_owner     TEXT,
    lease_until     TEXT,
    -- Claims so far: more than one means a lease ran out and was taken over.
    claims          INTEGER NOT NULL DEFAULT 0 CHECK (claims >= 0),
    provider_id     TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    sent_at         TEXT,
    CHECK (status IN ('queued', 'sending') OR text = ''),
    CHECK (status <> 'sending' OR (lease_owner IS NOT NULL AND lease_until IS NOT NULL))
);
-- A sender takes the oldest message that is queued or whose lease ran out.
CREATE INDEX outbox_messages_queue ON outbox_messages (status, id);
-- Sends per number over the last 24 hours, across tenants.
CREATE INDEX outbox_messages_recipient ON outbox_messages (recipient, created_at);
