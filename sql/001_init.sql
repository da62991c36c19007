-- 001_init: the onboarding tables and the omnichannel tables the runtime reads.
--
-- Column names follow the original backend (tenants, onboarding_sessions,
-- onboarding_analytics, omni_agent_configs, omni_phone_mappings) so that the
-- runtime (call routing, agents, campaigns) recognises these rows. Every
-- timestamp is ISO-8601 UTC text with milliseconds ('2026-11-24T10:15:02.123Z'),
-- written by the library from its clock seam, never by SQLite's own clock:
-- replicated engines that replay statements need the caller's time.

CREATE TABLE tenants (
    id                    TEXT PRIMARY KEY CHECK (id LIKE 'tenant\_%' ESCAPE '\'),
    name                  TEXT NOT NULL CHECK (length(name) > 0),
    company_name          TEXT,
    -- Unique placeholder ('pending+<tenant id>@onboarding.invalid') until
    -- completion writes the business email; lowercase, compared as stored.
    email                 TEXT NOT NULL UNIQUE CHECK (email = lower(email) AND email LIKE '%_@_%'),
    phone                 TEXT CHECK (phone IS NULL OR phone LIKE '+%'),
    sector                TEXT,
    api_key               TEXT NOT NULL UNIQUE CHECK (length(api_key) >= 32),
    booking_provider      TEXT CHECK (booking_provider IS NULL OR booking_provider IN ('cal_com')),
    cal_com_api_key       TEXT,
    cal_com_event_type_id TEXT,
    timezone              TEXT NOT NULL DEFAULT 'Europe/Paris',
    onboarding_completed  INTEGER NOT NULL DEFAULT 0 CHECK (onboarding_completed IN (0, 1)),
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
);

CREATE TABLE onboarding_sessions (
    id                  TEXT PRIMARY KEY CHECK (id LIKE 'onb\_%' ESCAPE '\'),
    tenant_id           TEXT NOT NULL UNIQUE REFERENCES tenants (id),
    current_step        INTEGER NOT NULL DEFAULT 1 CHECK (current_step BETWEEN 1 AND 6),
    total_steps         INTEGER NOT NULL DEFAULT 6 CHECK (total_steps = 6),
    progress_percentage INTEGER NOT NULL DEFAULT 0 CHECK (progress_percentage BETWEEN 0 AND 100),
    -- Each step's validated payload, as JSON text; NULL until the step is saved.
    business_data       TEXT CHECK (business_data IS NULL OR json_valid(business_data)),
    channels_data       TEXT CHECK (channels_data IS NULL OR json_valid(channels_data)),
    vapi_data           TEXT CHECK (vapi_data IS NULL OR json_valid(vapi_data)),
    kb_data             TEXT CHECK (kb_data IS NULL OR json_valid(kb_data)),
    appointments_data   TEXT CHECK (appointments_data IS NULL OR json_valid(appointments_data)),
    status              TEXT NOT NULL DEFAULT 'in_progress'
                        CHECK (status IN ('in_progress', 'completed', 'abandoned')),
    source              TEXT NOT NULL DEFAULT 'web',
    started_at          TEXT NOT NULL,
    last_updated_at     TEXT NOT NULL,
    -- When the session reached its current step: the time since then is
    -- credited to that step in onboarding_analytics when it moves on.
    step_started_at     TEXT NOT NULL,
    completed_at        TEXT,
    abandoned_at        TEXT,
    ip_address          TEXT,
    user_agent          TEXT,
    is_active           INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    -- The body the first completion answered, replayed to retries.
    completion_result   TEXT CHECK (completion_result IS NULL OR json_valid(completion_result)),
    CHECK ((status = 'completed') = (completed_at IS NOT NULL AND completion_result IS NOT NULL))
);
CREATE INDEX onboarding_sessions_status ON onboarding_sessions (status);
CREATE INDEX onboarding_sessions_started_at ON onboarding_sessions (started_at);

CREATE TABLE onboarding_analytics (
    id                     INTEGER PRIMARY KEY,
    session_id             TEXT NOT NULL UNIQUE REFERENCES onboarding_sessions (id),
    tenant_id              TEXT NOT NULL REFERENCES tenants (id),
    total_duration_seconds INTEGER CHECK (total_duration_seconds >= 0),
    -- Seconds (millisecond precision) the session spent on each step.
    step_1_duration        REAL NOT NULL DEFAULT 0 CHECK (step_1_duration >= 0),
    step_2_duration        REAL NOT NULL DEFAULT 0 CHECK (step_2_duration >= 0),
    step_3_duration        REAL NOT NULL DEFAULT 0 CHECK (step_3_duration >= 0),
    step_4_duration        REAL NOT NULL DEFAULT 0 CHECK (step_4_duration >= 0),
    step_5_duration        REAL NOT NULL DEFAULT 0 CHECK (step_5_duration >= 0),
    step_6_duration        REAL NOT NULL DEFAULT 0 CHECK (step_6_duration >= 0),
    completed              INTEGER NOT NULL DEFAULT 0 CHECK (completed IN (0, 1)),
    abandoned_at_step      INTEGER CHECK (abandoned_at_step IS NULL OR abandoned_at_step BETWEEN 1 AND 6),
    created_at             TEXT NOT NULL,
    completed_at           TEXT
);

CREATE TABLE omni_agent_configs (
    id                INTEGER PRIMARY KEY,
    tenant_id         TEXT NOT NULL UNIQUE REFERENCES tenants (id),
    agent_type        TEXT NOT NULL CHECK (agent_type IN (
                          'real_estate_reception', 'real_estate_callback', 'appointment_booking',
                          'phone_reception', 'customer_support', 'multi_purpose', 'custom')),
    agent_name        TEXT NOT NULL CHECK (length(agent_name) BETWEEN 1 AND 50),
    agent_personality TEXT,
    voice_provider    TEXT NOT NULL DEFAULT 'elevenlabs',
    voice_id          TEXT NOT NULL,
    voice_language    TEXT NOT NULL DEFAULT 'fr-FR',
    system_prompt     TEXT NOT NULL CHECK (length(system_prompt) > 0),
    greeting_message  TEXT NOT NULL CHECK (length(greeting_message) > 0),
    channels_config   TEXT NOT NULL CHECK (json_valid(channels_config)),
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);

-- A row routes real calls to a tenant once active, so a declared number is
-- never taken from anyone: rows start inactive and pending verification, any
-- number of tenants may declare one, and at most one row per number is active.
CREATE TABLE omni_phone_mappings (
    id           INTEGER PRIMARY KEY,
    phone_number TEXT NOT NULL CHECK (phone_number LIKE '+%'),
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    is_active    INTEGER NOT NULL DEFAULT 0 CHECK (is_active IN (0, 1)),
    status       TEXT NOT NULL DEFAULT 'pending_verification'
                 CHECK (status IN ('pending_verification', 'verified', 'rejected')),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    CHECK (is_active = 0 OR status = 'verified'),
    UNIQUE (tenant_id, phone_number)
);
-- The runtime's lookup: phone_number = ? AND is_active = 1.
CREATE UNIQUE INDEX omni_phone_mappings_active_number
    ON omni_phone_mappings (phone_number) WHERE is_active = 1;

CREATE TABLE omnichannel_campaigns (
    id            INTEGER PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    name          TEXT NOT NULL,
    campaign_type TEXT NOT NULL CHECK (campaign_type IN ('appointment')),
    channels      TEXT NOT NULL CHECK (json_valid(channels)),
    status        TEXT NOT NULL CHECK (status IN ('active', 'paused', 'archived')),
    settings      TEXT NOT NULL CHECK (json_valid(settings)),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    UNIQUE (tenant_id, campaign_type)
);

-- Knowledge-base crawls queued by onboarding, taken by a crawler worker.
CREATE TABLE kb_crawl_jobs (
    id         INTEGER PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    session_id TEXT NOT NULL UNIQUE REFERENCES onboarding_sessions (id),
    url        TEXT NOT NULL CHECK (url LIKE 'http://%' OR url LIKE 'https://%'),
    status     TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'done', 'failed')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
-- A worker takes the oldest queued job.
CREATE INDEX kb_crawl_jobs_queue ON kb_crawl_jobs (status, id);
