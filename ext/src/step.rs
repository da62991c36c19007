//! `onboarding_step(session_id, step, payload[, request_key])`: validates
//! and saves one step; with a request key, at most once per key
//! (`replies.rs`).
//!
//! Each step stores its normalised payload in its own column; the ones that
//! move progress only ever move it forward, and the time the session spent on
//! the step it leaves is credited to that step in `onboarding_analytics`.
//! Two steps also write the tenant: [`save_business`] and
//! [`save_appointments`].

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::analytics::{self, OnStep};
use crate::env::{iso8601, Env};
use crate::error::Result;
use crate::json;
use crate::kb::{store, Settings};
use crate::replies;
use crate::savepoint::in_savepoint;
use crate::session::{Progress, SessionHead, Step};
use crate::sql;
use crate::validate::{self, email_taken, Object};
use crate::verification;

// -- onboarding_step('onb_…', 'business',
//      '{"company_name":"Mon Entreprise","industry":"Immobilier","phone":"06 12 34 56 78","email":"contact@entreprise.fr"}')
//      -> '{"success":true,"session_id":"onb_…","step":"business","current_step":2,"progress_percentage":33}'
pub fn step(
    conn: &Connection,
    env: &dyn Env,
    settings: &Settings,
    session_id: &str,
    step: &str,
    payload: Option<&str>,
    request_key: Option<&str>,
) -> Result<String> {
    let step = Step::parse(step)?;
    let map = validate::payload_object(payload)?;
    let keyed = replies::keyed(step.function(), session_id, payload, request_key)?;
    in_savepoint(conn, || {
        replies::once(conn, env, keyed.as_ref(), || {
            save_step(conn, env, settings, session_id, step, &map).map(Ok)
        })
    })?
}

// -- onboarding_step_kept('onb_…', 'business', '{…}', 'k3y-of-16-chars-or-more')
//      -> the answer of the step saved with this key and payload, or NULL
/// The answer of the step `request_key` saved, without saving it: for a
/// host that refuses a step (its limit on "email already used" answers)
/// and must still answer a retry of one it ran (the client lost the answer
/// and sent it again with its key). `None` when none was kept; `conflict`
/// for a key kept by another call or with another payload, as the keyed
/// step answers; a kept refusal is raised again.
pub fn kept(
    conn: &Connection,
    env: &dyn Env,
    session_id: &str,
    step: &str,
    payload: Option<&str>,
    request_key: &str,
) -> Result<Option<String>> {
    let function = Step::parse(step)?.function();
    replies::kept_answer(conn, env, function, session_id, payload, request_key)?.transpose()
}

/// The step's writes and its answer, inside the call's savepoint.
fn save_step(
    conn: &Connection,
    env: &dyn Env,
    settings: &Settings,
    session_id: &str,
    step: Step,
    map: &Object,
) -> Result<String> {
    let session = SessionHead::load(conn, session_id)?;
    session.ensure_writable()?;
    let now_ms = env.now_ms();
    let now = iso8601(now_ms);
    let data = save(conn, settings, step, map, &session, &now)?;
    let advanced = step.reaches().filter(|p| p.step > session.current_step);
    let progress = advanced.unwrap_or(Progress::at(session.current_step));
    if advanced.is_some() {
        let on = OnStep {
            session_id: session.id,
            step: session.current_step,
            since: &session.step_started_at,
        };
        analytics::credit_step(conn, &on, now_ms)?;
    }
    step.save_sql().run(
        conn,
        (
            &data,
            progress.step,
            progress.percentage,
            &now,
            advanced.is_some(),
            session.rowid,
            &session.id,
        ),
    )?;
    // Written out rather than built as a map and serialised: four of a
    // flow's six calls answer this.
    let mut answer = json::Writer::with_capacity(128);
    answer
        .raw(r#"{"success":true,"session_id":"#)
        .string(session.id)
        .raw(r#","step":""#)
        .raw(step.name())
        .raw(r#"","current_step":"#)
        .int(progress.step)
        .raw(r#","progress_percentage":"#)
        .int(progress.percentage)
        .raw("}");
    Ok(answer.finish())
}

/// Validates `step`'s payload, makes the step's writes outside the session
/// row, and answers the JSON text the session keeps for the step.
fn save(
    conn: &Connection,
    settings: &Settings,
    step: Step,
    map: &Object,
    session: &SessionHead,
    now: &str,
) -> Result<String> {
    Ok(match step {
        Step::Business => save_business(conn, session, &validate::business(map)?, now)?,
        Step::Channels => channels_text(&validate::channels(map)?),
        Step::Vapi => validate::vapi(map)?.to_text(),
        Step::Kb => {
            let data = validate::kb(map, &settings.crawl_allow_hosts)?;
            // What `onboarding_kb_prepare` stored ahead was the step as it
            // stood: saved again, the step says what the tenant's knowledge
            // is, and a document it no longer lists must not stay searchable
            // until a completion that may never come. Prepare stores them
            // again; a tenant has none before its completion but these,
            // and none before a kb step was saved (no lookup then: the kb
            // step of every flow).
            let saved_before = Step::Kb
                .reaches()
                .is_some_and(|kb| session.current_step >= kb.step);
            if saved_before {
                for (id, _) in store::pasted(conn, &session.tenant_id)? {
                    store::delete(conn, id)?;
                }
            }
            data
        }
        Step::Appointments => json::to_text(&save_appointments(
            conn,
            session,
            &validate::appointments(map)?,
            now,
        )?),
    })
}

/// `{"channels":["phone","sms"]}`, written out (a map built and
/// serialised cost more than the rest of the step's validation).
fn channels_text(channels: &[&str]) -> String {
    let mut w = json::Writer::with_capacity(48);
    w.raw(r#"{"channels":"#).strings(channels).raw("}");
    w.finish()
}

/// Refuses an email another tenant holds, then shows the business on the
/// tenant at once (the dashboard reads it). The tenant's email stays the
/// placeholder until completion, so an abandoned session never holds an
/// address. A changed phone cancels a pending verification of the old one.
fn save_business(
    conn: &Connection,
    session: &SessionHead,
    b: &validate::Business,
    now: &str,
) -> Result<String> {
    let taken: bool = sql::query_row(
        conn,
        "SELECT EXISTS (SELECT 1 FROM main.tenants WHERE email = ?1 AND id <> ?2)",
        (&b.email, &session.tenant_id),
        |r| r.get(0),
    )?;
    if taken {
        return Err(email_taken(&b.email));
    }
    sql::execute(
        conn,
        "UPDATE main.tenants SET name = ?1, company_name = ?1, phone = ?2, sector = ?3,
                updated_at = ?4
         WHERE id = ?5",
        (
            &b.company_name,
            &b.phone,
            &b.industry,
            now,
            &session.tenant_id,
        ),
    )?;
    verification::cancel_other_numbers(conn, session.id, &b.phone, now)?;
    Ok(b.to_text())
}

/// Merges the appointments step's settings into the tenant's booking
/// settings (a field left out keeps its value; the provider defaults to
/// `cal_com`, the only one) and answers the result, which is what the
/// session keeps as the step's data. `"enabled": false` clears the booking
/// settings instead, and the step's data says so.
fn save_appointments(
    conn: &Connection,
    session: &SessionHead,
    a: &validate::Appointments,
    now: &str,
) -> Result<Value> {
    if !a.enabled {
        let timezone: String = sql::query_row(
            conn,
            "UPDATE main.tenants SET booking_provider = NULL, cal_com_event_type_id = NULL,
                    timezone = coalesce(?1, timezone), updated_at = ?2
             WHERE id = ?3
             RETURNING timezone",
            (&a.timezone, now, &session.tenant_id),
            |r| r.get(0),
        )?;
        return Ok(json!({ "enabled": false, "timezone": timezone }));
    }
    let (provider, event_type_id, timezone): (Option<String>, Option<String>, String) =
        sql::query_row(
            conn,
            "UPDATE main.tenants SET booking_provider = coalesce(?1, booking_provider, 'cal_com'),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_written_as_serde_json_writes_them() {
        assert_eq!(
            channels_text(&["phone", "sms"]),
            json::to_text(&json!({"channels": ["phone", "sms"]}))
        );
        assert_eq!(channels_text(&[]), r#"{"channels":[]}"#);
    }
}
