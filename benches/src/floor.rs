//! The floor: the rows a full onboarding leaves, written by hand-written
//! prepared statements, with nothing the writes do not need.
//!
//! Per step it makes the same writes as the SQL functions (read from
//! `ext/src/create.rs`, `step.rs`, `complete.rs`): the same rows in the same
//! tables with the same values, each step in one transaction of its own
//! when the caller is not in a transaction (so it commits as often as the
//! function path, which commits once per call). What it leaves out is
//! everything a stateless engine must do but a program that keeps the flow
//! in memory need not: no JSON parsing or validation, no read of the session
//! (it knows the current step and when it started), no email-taken query
//! (the UNIQUE constraint still holds), no savepoint, no upserts.

use onboarding::catalog;
use onboarding::env::iso8601;
use onboarding::{Env, SystemEnv};
use rusqlite::Connection;

use crate::flow::{timed, FlowData, StepTimes, AGENT_TYPE, ASSISTANT_NAME, INDUSTRY};
use crate::Result;

/// The floor's side of one flow, kept in memory between steps.
pub struct FloorSession {
    pub tenant_id: String,
    pub session_id: String,
    started_ms: i64,
    step_started_ms: i64,
}

/// Writes on one connection; `own_transactions`: each step in its own
/// BEGIN … COMMIT (autocommit mode), else the caller holds a transaction.
pub struct Floor<'c> {
    conn: &'c Connection,
    own_transactions: bool,
    pub times: StepTimes,
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Ids and API key in the library's layout (ext/src/ids.rs): uuid v7
/// ids (creation time, then 74 random bits) with its prefixes, and a key of
/// the creation time (12 hex digits of milliseconds) then 256 random bits,
/// from the same random source (the operating system's).
fn new_ids() -> Result<(String, String, String)> {
    let mut bytes = [0u8; 52];
    SystemEnv.fill_random(&mut bytes)?;
    let now_ms = SystemEnv.now_ms().max(0) as u64;
    let uuid = |random: &[u8]| {
        let mut raw = [0u8; 10];
        raw.copy_from_slice(random);
        uuid::Builder::from_unix_timestamp_millis(now_ms, &raw)
            .into_uuid()
            .simple()
            .to_string()
    };
    Ok((
        format!("tenant_{}", uuid(&bytes[..10])),
        format!("onb_{}", uuid(&bytes[10..20])),
        format!(
            "tmp_{}{}",
            hex(&now_ms.to_be_bytes()[2..]),
            hex(&bytes[20..])
        ),
    ))
}

fn sql_err(what: &str) -> impl Fn(rusqlite::Error) -> String + '_ {
    move |e| format!("floor {what}: {e}")
}

const STEP_SQL: [&str; 4] = [
    "UPDATE onboarding_sessions SET business_data = ?1, current_step = 2, progress_percentage = 33,
            last_updated_at = ?2, step_started_at = ?2 WHERE id = ?3",
    "UPDATE onboarding_sessions SET channels_data = ?1, current_step = 3, progress_percentage = 50,
            last_updated_at = ?2, step_started_at = ?2 WHERE id = ?3",
    "UPDATE onboarding_sessions SET vapi_data = ?1, current_step = 4, progress_percentage = 66,
            last_updated_at = ?2, step_started_at = ?2 WHERE id = ?3",
    "UPDATE onboarding_sessions SET kb_data = ?1, current_step = 5, progress_percentage = 83,
            last_updated_at = ?2, step_started_at = ?2 WHERE id = ?3",
];

const CREDIT_SQL: [&str; 4] = [
    "UPDATE onboarding_analytics SET step_1_duration = step_1_duration + ?1 WHERE session_id = ?2",
    "UPDATE onboarding_analytics SET step_2_duration = step_2_duration + ?1 WHERE session_id = ?2",
    "UPDATE onboarding_analytics SET step_3_duration = step_3_duration + ?1 WHERE session_id = ?2",
    "UPDATE onboarding_analytics SET step_4_duration = step_4_duration + ?1 WHERE session_id = ?2",
];

const INSERT_TENANT: &str = "INSERT INTO tenants (id, name, email, api_key, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?5)";
const INSERT_SESSION: &str =
    "INSERT INTO onboarding_sessions (id, tenant_id, source, started_at, last_updated_at,
                                      step_started_at)
     VALUES (?1, ?2, 'web', ?3, ?3, ?3)";
const INSERT_ANALYTICS: &str =
    "INSERT INTO onboarding_analytics (session_id, tenant_id, created_at) VALUES (?1, ?2, ?3)";
const UPDATE_TENANT: &str =
    "UPDATE tenants SET name = ?1, company_name = ?1, email = ?2, phone = ?3, sector = ?4,
            onboarding_completed = 1, updated_at = ?5
     WHERE id = ?6";
const INSERT_AGENT: &str =
    "INSERT INTO omni_agent_configs (tenant_id, agent_type, agent_name, agent_personality,
         voice_provider, voice_id, voice_language, system_prompt, greeting_message,
         channels_config, created_at, updated_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)";
const INSERT_PHONE: &str =
    "INSERT INTO omni_phone_mappings (phone_number, tenant_id, is_active, status, created_at,
                                      updated_at)
     VALUES (?1, ?2, 0, 'pending_verification', ?3, ?3)";
const INSERT_CRAWL: &str =
    "INSERT INTO kb_crawl_jobs (tenant_id, session_id, url, status, created_at, updated_at)
     VALUES (?1, ?2, ?3, 'queued', ?4, ?4)";
const COMPLETE_ANALYTICS: &str =
    "UPDATE onboarding_analytics SET step_5_duration = step_5_duration + ?1, completed = 1,
            total_duration_seconds = ?2, completed_at = ?3
     WHERE session_id = ?4";
const COMPLETE_SESSION: &str =
    "UPDATE onboarding_sessions SET status = 'completed', current_step = 6,
            progress_percentage = 100, completed_at = ?1, last_updated_at = ?1,
            step_started_at = ?1, completion_result = ?2
     WHERE id = ?3";

/// The channels the benchmark flows choose, as `channels_config` stores them.
const CHANNELS_CONFIG: &str = r#"{"phone":{"enabled":true},"sms":{"enabled":true},"whatsapp":{"enabled":false},"email":{"enabled":false}}"#;

/// The complete rows of one finished onboarding, for prefilling. The ids
/// are the caller's, so that a prefill can insert them in key order.
pub struct Completed<'d> {
    pub data: &'d FlowData,
    pub now_ms: i64,
    pub tenant_id: String,
    pub session_id: String,
    pub api_key: String,
}

impl<'c> Floor<'c> {
    pub fn new(conn: &'c Connection, own_transactions: bool) -> Floor<'c> {
        Floor {
            conn,
            own_transactions,
            times: StepTimes::default(),
        }
    }

    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(sql_err(sql))?;
        stmt.execute(params).map_err(sql_err(sql))?;
        Ok(())
    }

    /// Runs `body` in its own transaction when in autocommit mode.
    fn step_tx(&self, body: impl FnOnce() -> Result<()>) -> Result<()> {
        if !self.own_transactions {
            return body();
        }
        self.exec("BEGIN", [])?;
        match body() {
            Ok(()) => self.exec("COMMIT", []),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    pub fn create(&self) -> Result<FloorSession> {
        let (tenant_id, session_id, api_key) = new_ids()?;
        let now_ms = SystemEnv.now_ms();
        let now = iso8601(now_ms);
        let placeholder = format!("pending+{tenant_id}@onboarding.invalid");
        self.step_tx(|| {
            self.exec(
                INSERT_TENANT,
                (
                    &tenant_id,
                    onboarding_temporary_name(),
                    &placeholder,
                    &api_key,
                    &now,
                ),
            )?;
            self.exec(INSERT_SESSION, (&session_id, &tenant_id, &now))?;
            self.exec(INSERT_ANALYTICS, (&session_id, &tenant_id, &now))
        })?;
        Ok(FloorSession {
            tenant_id,
            session_id,
            started_ms: now_ms,
            step_started_ms: now_ms,
        })
    }

    /// Steps 1..=4 move the session from `step + 1` to `step + 2`: the
    /// step's JSON in its column, and the time spent credited.
    fn step(&self, s: &mut FloorSession, step: usize, data_json: &str) -> Result<()> {
        let now_ms = SystemEnv.now_ms();
        let now = iso8601(now_ms);
        let seconds = (now_ms - s.step_started_ms).max(0) as f64 / 1000.0;
        self.step_tx(|| {
            self.exec(CREDIT_SQL[step], (seconds, &s.session_id))?;
            self.exec(STEP_SQL[step], (data_json, &now, &s.session_id))
        })?;
        s.step_started_ms = now_ms;
        Ok(())
    }

    pub fn business(&self, s: &mut FloorSession, d: &FlowData) -> Result<()> {
        let json = format!(
            r#"{{"company_name":"{}","industry":"{INDUSTRY}","phone":"{}","email":"{}"}}"#,
            d.company_name, d.phone_e164, d.email
        );
        self.step(s, 0, &json)
    }

    pub fn channels(&self, s: &mut FloorSession) -> Result<()> {
        self.step(s, 1, r#"{"channels":["phone","sms"]}"#)
    }

    pub fn vapi(&self, s: &mut FloorSession) -> Result<()> {
        let json = format!(
            r#"{{"agent_type":"{AGENT_TYPE}","voice":"female","assistant_name":"{ASSISTANT_NAME}"}}"#
        );
        self.step(s, 2, &json)
    }

    pub fn kb(&self, s: &mut FloorSession, d: &FlowData) -> Result<()> {
        let json = format!(r#"{{"method":"website","crawl_url":"{}"}}"#, d.crawl_url);
        self.step(s, 3, &json)
    }

    /// The sync: tenant, agent config, phone mapping, crawl job, analytics,
    /// session, with the same values and the same completion body.
    pub fn complete(&self, s: &mut FloorSession, d: &FlowData) -> Result<()> {
        let now_ms = SystemEnv.now_ms();
        let now = iso8601(now_ms);
        let seconds = (now_ms - s.step_started_ms).max(0) as f64 / 1000.0;
        let duration_seconds = (now_ms - s.started_ms).max(0) / 1000;
        let result = completion_result(s, d, duration_seconds, voice_id());
        self.step_tx(|| {
            self.exec(
                UPDATE_TENANT,
                (
                    &d.company_name,
                    &d.email,
                    &d.phone_e164,
                    INDUSTRY,
                    &now,
                    &s.tenant_id,
                ),
            )?;
            self.insert_synced(s, d, &now)?;
            self.exec(
                COMPLETE_ANALYTICS,
                (seconds, duration_seconds, &now, &s.session_id),
            )?;
            self.exec(COMPLETE_SESSION, (&now, &result, &s.session_id))
        })?;
        s.step_started_ms = now_ms;
        Ok(())
    }

    /// Create and the four steps, timed like [`crate::flow::FunctionPath`].
    pub fn prepare_session(&mut self, d: &FlowData) -> Result<FloorSession> {
        let mut times = self.times;
        let mut s = timed(&mut times, 0, || self.create())?;
        timed(&mut times, 1, || self.business(&mut s, d))?;
        timed(&mut times, 2, || self.channels(&mut s))?;
        timed(&mut times, 3, || self.vapi(&mut s))?;
        timed(&mut times, 4, || self.kb(&mut s, d))?;
        self.times = times;
        Ok(s)
    }

    pub fn run_flow(&mut self, d: &FlowData) -> Result<()> {
        let mut s = self.prepare_session(d)?;
        let mut times = self.times;
        timed(&mut times, 5, || self.complete(&mut s, d))?;
        self.times = times;
        Ok(())
    }

    /// One finished onboarding written directly in its final state, one
    /// INSERT per table: how the growth benchmark prefills (the caller
    /// holds a big transaction).
    pub fn insert_completed(&self, c: &Completed<'_>) -> Result<()> {
        let d = c.data;
        let now = iso8601(c.now_ms);
        let s = FloorSession {
            tenant_id: c.tenant_id.clone(),
            session_id: c.session_id.clone(),
            started_ms: c.now_ms,
            step_started_ms: c.now_ms,
        };
        let result = completion_result(&s, d, 0, voice_id());
        self.exec(
            "INSERT INTO tenants (id, name, company_name, email, phone, sector, api_key,
                                  onboarding_completed, created_at, updated_at)
             VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7)",
            (
                &s.tenant_id,
                &d.company_name,
                &d.email,
                &d.phone_e164,
                INDUSTRY,
                &c.api_key,
                &now,
            ),
        )?;
        let business = format!(
            r#"{{"company_name":"{}","industry":"{INDUSTRY}","phone":"{}","email":"{}"}}"#,
            d.company_name, d.phone_e164, d.email
        );
        let vapi = format!(
            r#"{{"agent_type":"{AGENT_TYPE}","voice":"female","assistant_name":"{ASSISTANT_NAME}"}}"#
        );
        let kb = format!(r#"{{"method":"website","crawl_url":"{}"}}"#, d.crawl_url);
        self.exec(
            "INSERT INTO onboarding_sessions (id, tenant_id, current_step, progress_percentage,
                 business_data, channels_data, vapi_data, kb_data, status, source, started_at,
                 last_updated_at, step_started_at, completed_at, completion_result)
             VALUES (?1, ?2, 6, 100, ?3, ?4, ?5, ?6, 'completed', 'web', ?7, ?7, ?7, ?7, ?8)",
            (
                &s.session_id,
                &s.tenant_id,
                &business,
                r#"{"channels":["phone","sms"]}"#,
                &vapi,
                &kb,
                &now,
                &result,
            ),
        )?;
        self.exec(
            "INSERT INTO onboarding_analytics (session_id, tenant_id, total_duration_seconds,
                 completed, created_at, completed_at)
             VALUES (?1, ?2, 0, 1, ?3, ?3)",
            (&s.session_id, &s.tenant_id, &now),
        )?;
        self.insert_synced(&s, d, &now)
    }

    /// The rows the sync adds: agent config, phone mapping, crawl job.
    fn insert_synced(&self, s: &FloorSession, d: &FlowData, now: &str) -> Result<()> {
        let agent = agent();
        self.exec(
            INSERT_AGENT,
            rusqlite::params![
                &s.tenant_id,
                agent.id,
                ASSISTANT_NAME,
                catalog::personality(agent, catalog::Gender::of(voice())),
                catalog::VOICE_PROVIDER,
                voice_id(),
                catalog::VOICE_LANGUAGE,
                catalog::system_prompt(
                    agent,
                    ASSISTANT_NAME,
                    &d.company_name,
                    catalog::Gender::of(voice()),
                ),
                catalog::render(
                    agent.greeting,
                    ASSISTANT_NAME,
                    &d.company_name,
                    catalog::Gender::of(voice()),
                ),
                CHANNELS_CONFIG,
                now,
            ],
        )?;
        self.exec(INSERT_PHONE, (&d.phone_e164, &s.tenant_id, now))?;
        self.exec(
            INSERT_CRAWL,
            (&s.tenant_id, &s.session_id, &d.crawl_url, now),
        )
    }
}

fn onboarding_temporary_name() -> &'static str {
    // The library's TEMPORARY_NAME ("Onboarding in progress"), which it
    // does not export.
    "Onboarding in progress"
}

fn agent() -> &'static catalog::AgentType {
    catalog::agent_type(AGENT_TYPE).expect("the benchmark's agent type is in the catalogue")
}

fn voice() -> &'static catalog::Voice {
    catalog::resolve_voice("female").expect("'female' resolves to a catalogue voice")
}

fn voice_id() -> &'static str {
    voice().provider_voice_id
}

/// The body `onboarding_complete` answers (and stores) for a benchmark flow.
fn completion_result(
    s: &FloorSession,
    d: &FlowData,
    duration_seconds: i64,
    voice_id: &str,
) -> String {
    format!(
        concat!(
            r#"{{"success":true,"message":"Onboarding terminé avec succès ! 🎉","#,
            r#""session_id":"{}","tenant_id":"{}","duration_seconds":{},"duration_minutes":{},"#,
            r#""sync_status":"synced","already_completed":false,"synced":{{"agent_config":{{"#,
            r#""agent_type":"{}","agent_name":"{}","voice_provider":"{}","voice_id":"{}","#,
            r#""voice_language":"{}","channels":["phone","sms"]}},"phone_mapping":{{"#,
            r#""phone_number":"{}","status":"pending_verification","is_active":false}},"#,
            r#""campaign":null,"knowledge_base":{{"method":"website","crawl_job":{{"#,
            r#""url":"{}","status":"queued"}}}}}}}}"#
        ),
        s.session_id,
        s.tenant_id,
        duration_seconds,
        (duration_seconds + 30) / 60,
        AGENT_TYPE,
        ASSISTANT_NAME,
        catalog::VOICE_PROVIDER,
        voice_id,
        catalog::VOICE_LANGUAGE,
        d.phone_e164,
        d.crawl_url,
    )
}
