//! `onboarding_step(session_id, step, payload)`: validates and saves one step.
//!
//! Each step stores its normalised payload in its own column; the ones that
//! move progress only ever move it forward, and the time the session spent on
//! the step it leaves is credited to that step in `onboarding_analytics`.

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::atomic::atomic;
use crate::db;
use crate::env::{iso8601, parse_iso8601, Env};
use crate::error::{quote, Error, Result};
use crate::json_string;
use crate::kb;
use crate::session::{progress, SessionHead, STEPS};
use crate::validate::{self, Object};

/// The UPDATE that saves a step's data in `$column` and the progress. One
/// literal per column: the column name never comes from caller text, and
/// the hot path formats nothing.
macro_rules! save_sql {
    ($column:literal) => {
        concat!(
            "UPDATE onboarding_sessions SET ",
            $column,
            " = ?1, current_step = ?2, progress_percentage = ?3, last_updated_at = ?4,
             step_started_at = CASE WHEN ?5 THEN ?4 ELSE step_started_at END
             WHERE id = ?6"
        )
    };
}

/// A validated step, ready to be written.
enum Saved {
    Business(validate::Business),
    Channels(Vec<&'static str>),
    Vapi(validate::Vapi),
    Kb(Value),
    Appointments(validate::Appointments),
}

impl Saved {
    fn parse(step: &str, map: &Object, settings: &kb::Settings) -> Result<Saved> {
        Ok(match step {
            "business" => Saved::Business(validate::business(map)?),
            "channels" => Saved::Channels(validate::channels(map)?),
            "vapi" => Saved::Vapi(validate::vapi(map)?),
            "kb" => Saved::Kb(validate::kb(map, &settings.crawl_allow_hosts)?),
            "appointments" => Saved::Appointments(validate::appointments(map)?),
            _ => unreachable!("step names are checked against STEPS first"),
        })
    }
}

/// Seconds, with millisecond precision, between two stored timestamps.
pub fn seconds_between(from: &str, to_ms: i64) -> Result<f64> {
    let from_ms = parse_iso8601(from).ok_or_else(|| {
        Error::internal(format!("stored timestamp {} is unreadable", quote(from)))
    })?;
    Ok((to_ms - from_ms).max(0) as f64 / 1000.0)
}

/// The analytics column of a step: `step_3_duration`. Column names are
/// built from a step number, never from caller text.
pub fn step_column(step: i64) -> &'static str {
    const COLUMNS: [&str; 6] = [
        "step_1_duration",
        "step_2_duration",
        "step_3_duration",
        "step_4_duration",
        "step_5_duration",
        "step_6_duration",
    ];
    COLUMNS[(step.clamp(1, 6) - 1) as usize]
}

/// Credits the time since the session reached its current step to that step.
fn credit_step_time(conn: &Connection, session: &SessionHead, now_ms: i64) -> Result<()> {
    let step = step_column(session.current_step);
    db::execute(
        conn,
        &format!("UPDATE onboarding_analytics SET {step} = {step} + ?1 WHERE session_id = ?2"),
        (
            seconds_between(&session.step_started_at, now_ms)?,
            &session.id,
        ),
    )?;
    Ok(())
}

// -- onboarding_step('onb_…', 'business',
//      '{"company_name":"Mon Entreprise","industry":"Immobilier","phone":"06 12 34 56 78","email":"contact@entreprise.fr"}')
//      -> '{"success":true,"session_id":"onb_…","step":"business","current_step":2,"progress_percentage":33}'
pub fn step(
    conn: &Connection,
    env: &dyn Env,
    settings: &kb::Settings,
    session_id: &str,
    step: &str,
    payload: Option<&str>,
) -> Result<Value> {
    let Some(&(step, reaches)) = STEPS.iter().find(|(name, _)| *name == step) else {
        return Err(Error::invalid_field(format!(
            "step {} is not a step (expected one of {})",
            quote(step),
            STEPS.map(|(name, _)| name).join(", ")
        )));
    };
    let map = validate::payload_object(payload)?;
    atomic(conn, || {
        let session = SessionHead::load(conn, session_id)?;
        session.ensure_writable()?;
        let saved = Saved::parse(step, &map, settings)?;
        let now_ms = env.now_ms();
        let now = iso8601(now_ms);

        // The step's own writes, and the JSON the session keeps for it.
        let (save, data) = match saved {
            Saved::Business(b) => {
                let taken: bool = db::query_row(
                    conn,
                    "SELECT EXISTS (SELECT 1 FROM tenants WHERE email = ?1 AND id <> ?2)",
                    (&b.email, &session.tenant_id),
                    |r| r.get(0),
                )?;
                if taken {
                    return Err(email_taken(&b.email));
                }
                // The tenant shows the business at once (the dashboard reads
                // it); its email stays the placeholder until completion, so
                // an abandoned session never holds an address.
                db::execute(
                    conn,
                    "UPDATE tenants SET name = ?1, company_name = ?1, phone = ?2, sector = ?3,
                            updated_at = ?4
                     WHERE id = ?5",
                    (
                        &b.company_name,
                        &b.phone,
                        &b.industry,
                        &now,
                        &session.tenant_id,
                    ),
                )?;
                (save_sql!("business_data"), b.to_json())
            }
            Saved::Channels(c) => (save_sql!("channels_data"), json!({ "channels": c })),
            Saved::Vapi(v) => (save_sql!("vapi_data"), v.to_json()),
            Saved::Kb(k) => (save_sql!("kb_data"), k),
            Saved::Appointments(a) => (
                save_sql!("appointments_data"),
                save_booking(conn, &session, &a, &now)?,
            ),
        };
        let advanced = reaches.filter(|&s| s > session.current_step);
        let current_step = advanced.unwrap_or(session.current_step);
        if advanced.is_some() {
            credit_step_time(conn, &session, now_ms)?;
        }
        db::execute(
            conn,
            save,
            (
                json_string(&data),
                current_step,
                progress(current_step),
                &now,
                advanced.is_some(),
                &session.id,
            ),
        )?;
        Ok(json!({
            "success": true,
            "session_id": session.id,
            "step": step,
            "current_step": current_step,
            "progress_percentage": progress(current_step),
        }))
    })
}

/// Merges the appointments step's settings into the tenant's booking
/// settings (a field left out keeps its value; the provider defaults to
/// `cal_com`, the only one) and answers the result, which is what the
/// session keeps as the step's data.
fn save_booking(
    conn: &Connection,
    session: &SessionHead,
    a: &validate::Appointments,
    now: &str,
) -> Result<Value> {
    let (provider, event_type_id, timezone): (Option<String>, Option<String>, String) =
        db::query_row(
            conn,
            "UPDATE tenants SET booking_provider = coalesce(?1, booking_provider, 'cal_com'),
                    cal_com_event_type_id = coalesce(?2, cal_com_event_type_id),
                    timezone = coalesce(?3, timezone), updated_at = ?4
             WHERE id = ?5
             RETURNING booking_provider, cal_com_event_type_id, timezone",
            (
                &a.provider,
                &a.event_type_id,
                &a.timezone,
                now,
                &session.tenant_id,
            ),
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
    Ok(json!({
        "provider": provider,
        "event_type_id": event_type_id,
        "timezone": timezone,
    }))
}

pub fn email_taken(email: &str) -> Error {
    Error::conflict(format!(
        "email {} is already used by another account",
        quote(email)
    ))
}
