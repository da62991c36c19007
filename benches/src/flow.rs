//! The data of one benchmark flow, and the function path: a full onboarding
//! (create, business, channels, vapi, kb, complete) as six
//! `SELECT onboarding_…(?)` calls on cached prepared statements.

use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::Result;

/// The six calls of a full flow, in order.
pub const STEP_NAMES: [&str; 6] = ["create", "business", "channels", "vapi", "kb", "complete"];

pub const CHANNELS_PAYLOAD: &str = r#"{"channels":["phone","sms"]}"#;
pub const VAPI_PAYLOAD: &str =
    r#"{"agent_type":"real_estate_reception","voice":"female","assistant_name":"Sara"}"#;
pub const AGENT_TYPE: &str = "real_estate_reception";
pub const ASSISTANT_NAME: &str = "Sara";
pub const INDUSTRY: &str = "Immobilier";

/// What flow number `i` of a run sends: a unique email per (`tag`, `i`), a
/// French mobile number typed the national way, a website to crawl. Plain
/// ASCII with no characters JSON would escape, so the floor can write the
/// same JSON text with `format!`.
#[derive(Debug, Clone)]
pub struct FlowData {
    pub company_name: String,
    /// As typed: `0612345678`.
    pub phone_national: String,
    /// As stored: `+33612345678`.
    pub phone_e164: String,
    pub email: String,
    pub crawl_url: String,
    pub business_payload: String,
    pub kb_payload: String,
}

impl FlowData {
    pub fn new(tag: &str, i: u64) -> FlowData {
        let company_name = format!("Agence Exemple {i}");
        // 06 12 xx xx xx: valid French mobile numbers for libphonenumber.
        let digits = format!("{:06}", i % 1_000_000);
        let phone_national = format!("0612{digits}");
        let phone_e164 = format!("+33612{digits}");
        let email = format!("contact.{i:07}@{tag}.example.fr");
        let crawl_url = format!("https://agence-{i}.example.fr");
        let business_payload = format!(
            r#"{{"company_name":"{company_name}","industry":"{INDUSTRY}","phone":"{phone_national}","email":"{email}"}}"#
        );
        let kb_payload = format!(r#"{{"method":"website","crawl_url":"{crawl_url}"}}"#);
        FlowData {
            company_name,
            phone_national,
            phone_e164,
            email,
            crawl_url,
            business_payload,
            kb_payload,
        }
    }

    /// Flows `start..start + n` of a run.
    pub fn many(tag: &str, start: u64, n: u64) -> Vec<FlowData> {
        (start..start + n).map(|i| FlowData::new(tag, i)).collect()
    }
}

/// Time spent in each of the six calls, summed over flows.
#[derive(Debug, Default, Clone, Copy)]
pub struct StepTimes(pub [Duration; 6]);

impl StepTimes {
    pub fn add(&mut self, other: &StepTimes) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a += b;
        }
    }

    /// Microseconds per call of each step over `flows` flows.
    pub fn micros_per_flow(&self, flows: u64) -> [f64; 6] {
        self.0.map(|d| d.as_secs_f64() * 1e6 / flows.max(1) as f64)
    }
}

/// Runs a closure and adds its duration to one step's total.
pub fn timed<T>(times: &mut StepTimes, step: usize, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let start = Instant::now();
    let value = f();
    times.0[step] += start.elapsed();
    value
}

const CREATE_SQL: &str = "SELECT onboarding_create(?1)";
const STEP_SQL: &str = "SELECT onboarding_step(?1, ?2, ?3)";
const COMPLETE_SQL: &str = "SELECT onboarding_complete(?1, ?2)";

/// The SQL-function path on one connection.
pub struct FunctionPath<'c> {
    conn: &'c Connection,
    pub times: StepTimes,
}

impl<'c> FunctionPath<'c> {
    pub fn new(conn: &'c Connection) -> FunctionPath<'c> {
        FunctionPath {
            conn,
            times: StepTimes::default(),
        }
    }

    fn call(&self, sql: &str, params: impl rusqlite::Params) -> Result<String> {
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| format!("{sql}: {e}"))?;
        let body: String = stmt
            .query_row(params, |r| r.get(0))
            .map_err(|e| format!("{sql}: {e}"))?;
        if body.starts_with(r#"{"success":true"#) {
            Ok(body)
        } else {
            Err(format!("{sql} answered without success: {body}"))
        }
    }

    /// `onboarding_create('{}')`, returning the session id.
    pub fn create(&self) -> Result<String> {
        let body = self.call(CREATE_SQL, ["{}"])?;
        json_str_field(&body, "session_id")
            .map(str::to_string)
            .ok_or_else(|| format!("onboarding_create answered no session_id: {body}"))
    }

    pub fn step(&self, session_id: &str, step: &str, payload: &str) -> Result<()> {
        self.call(STEP_SQL, (session_id, step, payload)).map(drop)
    }

    pub fn complete(&self, session_id: &str) -> Result<()> {
        let body = self.call(COMPLETE_SQL, (session_id, "{}"))?;
        if body.contains(r#""sync_status":"synced""#) {
            Ok(())
        } else {
            Err(format!("onboarding_complete did not sync: {body}"))
        }
    }

    /// Create and the four steps: a session ready to complete.
    pub fn prepare_session(&mut self, data: &FlowData) -> Result<String> {
        let mut times = self.times;
        let session = timed(&mut times, 0, || self.create())?;
        timed(&mut times, 1, || {
            self.step(&session, "business", &data.business_payload)
        })?;
        timed(&mut times, 2, || {
            self.step(&session, "channels", CHANNELS_PAYLOAD)
        })?;
        timed(&mut times, 3, || self.step(&session, "vapi", VAPI_PAYLOAD))?;
        timed(&mut times, 4, || {
            self.step(&session, "kb", &data.kb_payload)
        })?;
        self.times = times;
        Ok(session)
    }

    /// A full onboarding: the six calls.
    pub fn run_flow(&mut self, data: &FlowData) -> Result<()> {
        let session = self.prepare_session(data)?;
        let mut times = self.times;
        timed(&mut times, 5, || self.complete(&session))?;
        self.times = times;
        Ok(())
    }
}

/// The string value of `"field":"…"` in a flat JSON object with no escapes
/// in that value (the ids this engine returns); enough to chain calls
/// without parsing every answer.
pub fn json_str_field<'b>(body: &'b str, field: &str) -> Option<&'b str> {
    let key = format!("\"{field}\":\"");
    let start = body.find(&key)? + key.len();
    let len = body[start..].find('"')?;
    Some(&body[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_str_field_reads_the_session_id() {
        let body = r#"{"success":true,"session_id":"onb_ab12","tenant_id":"tenant_cd"}"#;
        assert_eq!(json_str_field(body, "session_id"), Some("onb_ab12"));
        assert_eq!(json_str_field(body, "tenant_id"), Some("tenant_cd"));
        assert_eq!(json_str_field(body, "missing"), None);
    }
}
