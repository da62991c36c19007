//! The session row as the functions read it, and the progress rules.

use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;

use crate::error::{quote, Error, Result};
use crate::sql;

/// `progress_percentage` for each `current_step` (index 1..=6).
const PROGRESS: [i64; 7] = [0, 0, 33, 50, 66, 83, 100];

pub fn progress(step: i64) -> i64 {
    PROGRESS[step.clamp(1, 6) as usize]
}

/// The steps the wizard saves, with the `current_step` each one reaches
/// (`None`: the step does not move progress).
pub const STEPS: [(&str, Option<i64>); 5] = [
    ("business", Some(2)),
    ("channels", Some(3)),
    ("vapi", Some(4)),
    ("kb", Some(5)),
    ("appointments", None),
];

/// One row of `onboarding_sessions`.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub tenant_id: String,
    pub current_step: i64,
    pub progress_percentage: i64,
    pub status: String,
    pub business_data: Option<String>,
    pub channels_data: Option<String>,
    pub vapi_data: Option<String>,
    pub kb_data: Option<String>,
    pub appointments_data: Option<String>,
    pub started_at: String,
    pub last_updated_at: String,
    pub step_started_at: String,
    pub completed_at: Option<String>,
    pub completion_result: Option<String>,
}

impl Session {
    /// Reads session `id`, or answers `not_found`.
    pub fn load(conn: &Connection, id: &str) -> Result<Session> {
        sql::query_row(
            conn,
            "SELECT id, tenant_id, current_step, progress_percentage, status,
                    business_data, channels_data, vapi_data, kb_data, appointments_data,
                    started_at, last_updated_at, step_started_at, completed_at, completion_result
             FROM onboarding_sessions WHERE id = ?1",
            [id],
            |r| {
                Ok(Session {
                    id: r.get(0)?,
                    tenant_id: r.get(1)?,
                    current_step: r.get(2)?,
                    progress_percentage: r.get(3)?,
                    status: r.get(4)?,
                    business_data: r.get(5)?,
                    channels_data: r.get(6)?,
                    vapi_data: r.get(7)?,
                    kb_data: r.get(8)?,
                    appointments_data: r.get(9)?,
                    started_at: r.get(10)?,
                    last_updated_at: r.get(11)?,
                    step_started_at: r.get(12)?,
                    completed_at: r.get(13)?,
                    completion_result: r.get(14)?,
                })
            },
        )
        .optional()?
        .ok_or_else(|| Error::not_found_session(id))
    }

    /// Refuses changes to a session that is no longer in progress.
    pub fn ensure_writable(&self) -> Result<()> {
        ensure_in_progress(&self.id, &self.status)
    }

    /// The channels chosen, or the front end's default `["phone"]`.
    pub fn channels(&self) -> Result<Vec<String>> {
        let Some(text) = &self.channels_data else {
            return Ok(vec!["phone".to_string()]);
        };
        let stored: Value = serde_json::from_str(text)?;
        stored["channels"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect()
            })
            .ok_or_else(|| Error::internal("stored channels_data has no channels array"))
    }
}

/// The part of a session row that saving a step needs: a step reads no
/// other step's data, so it does not load (or copy) it.
#[derive(Debug)]
pub struct SessionHead {
    pub id: String,
    pub tenant_id: String,
    pub current_step: i64,
    pub status: String,
    pub step_started_at: String,
}

impl SessionHead {
    /// Reads the head of session `id`, or answers `not_found`.
    pub fn load(conn: &Connection, id: &str) -> Result<SessionHead> {
        sql::query_row(
            conn,
            "SELECT id, tenant_id, current_step, status, step_started_at
             FROM onboarding_sessions WHERE id = ?1",
            [id],
            |r| {
                Ok(SessionHead {
                    id: r.get(0)?,
                    tenant_id: r.get(1)?,
                    current_step: r.get(2)?,
                    status: r.get(3)?,
                    step_started_at: r.get(4)?,
                })
            },
        )
        .optional()?
        .ok_or_else(|| Error::not_found_session(id))
    }

    /// Refuses changes to a session that is no longer in progress.
    pub fn ensure_writable(&self) -> Result<()> {
        ensure_in_progress(&self.id, &self.status)
    }
}

fn ensure_in_progress(id: &str, status: &str) -> Result<()> {
    match status {
        "in_progress" => Ok(()),
        status => Err(Error::conflict(format!(
            "session {} is {status}; its steps can no longer be changed",
            quote(id)
        ))),
    }
}

/// A step's stored JSON, parsed; `Value::Null` when the step was not saved.
pub fn stored_json(text: &Option<String>) -> Result<Value> {
    match text {
        None => Ok(Value::Null),
        Some(t) => Ok(serde_json::from_str(t)?),
    }
}

/// A string field of a stored (already validated) step.
pub fn stored_str<'v>(step: &'v Value, field: &str) -> Result<&'v str> {
    step[field]
        .as_str()
        .ok_or_else(|| Error::internal(format!("stored step data lacks {field}")))
}
