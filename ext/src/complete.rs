//! `onboarding_complete(session_id, payload)`: the sync into the omnichannel
//! tables, in one savepoint with the session's completion.
//!
//! Writes, in order: `tenants` (name, email, phone, sector, done),
//! `omni_agent_configs`, `omni_phone_mappings`, `omnichannel_campaigns` (when
//! appointments are configured), `kb_crawl_jobs` (for a website), then
//! `onboarding_analytics` and the session. The body it answers is stored on
//! the session, so a retry gets the very same answer and writes nothing.

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::atomic::atomic;
use crate::catalog;
use crate::db;
use crate::env::{iso8601, parse_iso8601, Env};
use crate::error::{quote, Error, ErrorKind, Result};
use crate::json_string;
use crate::kb;
use crate::session::{stored_json, stored_str, Session};
use crate::step::{email_taken, seconds_between, step_column};
use crate::validate;

pub const SUCCESS_MESSAGE: &str = "Onboarding terminé avec succès ! 🎉";

/// The agent used when no voice agent was configured (a session whose
/// channels leave out `phone`): the front end's defaults.
const DEFAULT_AGENT_TYPE: &str = "multi_purpose";
const DEFAULT_ASSISTANT_NAME: &str = "Sara";
const DEFAULT_VOICE: &str = "female";

// -- onboarding_complete('onb_…', '{}')
//      -> '{"success":true,"message":"Onboarding terminé avec succès ! 🎉","session_id":"onb_…",
//           "tenant_id":"tenant_…","duration_seconds":342,"duration_minutes":6,
//           "sync_status":"synced","already_completed":false,"synced":{…}}'
pub fn complete(
    conn: &Connection,
    env: &dyn Env,
    session_id: &str,
    payload: Option<&str>,
) -> Result<Value> {
    // Nothing is read from the payload yet, but it must be an object.
    validate::payload_object(payload)?;
    atomic(conn, || {
        let session = Session::load(conn, session_id)?;
        if let Some(first) = &session.completion_result {
            let mut replay: Value = serde_json::from_str(first)?;
            replay["already_completed"] = Value::Bool(true);
            return Ok(replay);
        }
        session.ensure_writable()?;
        sync(conn, env, &session)
    })
}

fn sync(conn: &Connection, env: &dyn Env, session: &Session) -> Result<Value> {
    let channels = session.channels()?;
    let business = stored_json(&session.business_data)?;
    let vapi = stored_json(&session.vapi_data)?;
    let mut missing = Vec::new();
    if business.is_null() {
        missing.push("business");
    }
    if vapi.is_null() && channels.iter().any(|c| c == "phone") {
        missing.push("vapi");
    }
    if !missing.is_empty() {
        return Err(Error::new(
            ErrorKind::Incomplete,
            format!(
                "session {} is missing steps: {} (save them before completing)",
                quote(&session.id),
                missing.join(", ")
            ),
        ));
    }

    let now_ms = env.now_ms();
    let now = iso8601(now_ms);
    let tenant = &session.tenant_id;
    let company_name = stored_str(&business, "company_name")?;
    let email = stored_str(&business, "email")?;
    let phone = stored_str(&business, "phone")?;
    let industry = stored_str(&business, "industry")?;

    // tenants. The business step checked the email, but another tenant may
    // have completed with it since: the UNIQUE constraint has the last word.
    // RETURNING hands back the booking settings the campaign needs.
    let booking: (Option<String>, Option<String>, String) = db::query_row(
        conn,
        "UPDATE tenants SET name = ?1, company_name = ?1, email = ?2, phone = ?3, sector = ?4,
                onboarding_completed = 1, updated_at = ?5
         WHERE id = ?6
         RETURNING booking_provider, cal_com_event_type_id, timezone",
        (company_name, email, phone, industry, &now, tenant),
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .map_err(|e| match &e {
        rusqlite::Error::SqliteFailure(f, Some(text))
            if f.code == rusqlite::ErrorCode::ConstraintViolation
                && text.contains("tenants.email") =>
        {
            email_taken(email)
        }
        _ => e.into(),
    })?;

    // omni_agent_configs
    let (agent_type_id, agent_name, voice_choice) = if vapi.is_null() {
        (DEFAULT_AGENT_TYPE, DEFAULT_ASSISTANT_NAME, DEFAULT_VOICE)
    } else {
        (
            stored_str(&vapi, "agent_type")?,
            stored_str(&vapi, "assistant_name")?,
            stored_str(&vapi, "voice")?,
        )
    };
    let agent = catalog::agent_type(agent_type_id).ok_or_else(|| {
        Error::internal(format!(
            "stored agent_type {} is unknown",
            quote(agent_type_id)
        ))
    })?;
    let voice = catalog::resolve_voice(voice_choice).ok_or_else(|| {
        Error::internal(format!("stored voice {} is unknown", quote(voice_choice)))
    })?;
    let channels_config: serde_json::Map<String, Value> = validate::CHANNELS
        .iter()
        .map(|c| {
            let enabled = channels.iter().any(|chosen| chosen == c);
            (c.to_string(), json!({ "enabled": enabled }))
        })
        .collect();
    db::execute(
        conn,
        "INSERT INTO omni_agent_configs (tenant_id, agent_type, agent_name, agent_personality,
             voice_provider, voice_id, voice_language, system_prompt, greeting_message,
             channels_config, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)
         ON CONFLICT (tenant_id) DO UPDATE SET
             agent_type = excluded.agent_type, agent_name = excluded.agent_name,
             agent_personality = excluded.agent_personality,
             voice_provider = excluded.voice_provider, voice_id = excluded.voice_id,
             voice_language = excluded.voice_language, system_prompt = excluded.system_prompt,
             greeting_message = excluded.greeting_message,
             channels_config = excluded.channels_config, updated_at = excluded.updated_at",
        rusqlite::params![
            tenant,
            agent.id,
            agent_name,
            agent.personality,
            catalog::VOICE_PROVIDER,
            voice.provider_voice_id,
            catalog::VOICE_LANGUAGE,
            catalog::system_prompt(agent, agent_name, company_name),
            catalog::render(agent.greeting, agent_name, company_name),
            json_string(&Value::Object(channels_config)),
            &now,
        ],
    )?;

    // omni_phone_mappings: declared, never taken from another tenant.
    db::execute(
        conn,
        "INSERT INTO omni_phone_mappings (phone_number, tenant_id, is_active, status,
                                          created_at, updated_at)
         VALUES (?1, ?2, 0, 'pending_verification', ?3, ?3)
         ON CONFLICT (tenant_id, phone_number) DO NOTHING",
        (phone, tenant, &now),
    )?;

    // omnichannel_campaigns: only when appointments are configured, by the
    // appointments step or by booking settings set on the tenant directly.
    let booking = match booking {
        (provider, event_type_id, timezone)
            if session.appointments_data.is_some() || event_type_id.is_some() =>
        {
            Some((provider, event_type_id, timezone))
        }
        _ => None,
    };
    let campaign = match booking {
        None => Value::Null,
        Some((provider, event_type_id, timezone)) => {
            let name = format!("Prise de rendez-vous – {company_name}");
            let settings = json!({
                "provider": provider.unwrap_or_else(|| "cal_com".to_string()),
                "event_type_id": event_type_id,
                "timezone": timezone,
            });
            db::execute(
                conn,
                "INSERT INTO omnichannel_campaigns (tenant_id, name, campaign_type, channels,
                                                   status, settings, created_at, updated_at)
                 VALUES (?1, ?2, 'appointment', ?3, 'active', ?4, ?5, ?5)
                 ON CONFLICT (tenant_id, campaign_type) DO UPDATE SET
                     name = excluded.name, channels = excluded.channels,
                     status = excluded.status, settings = excluded.settings,
                     updated_at = excluded.updated_at",
                (
                    tenant,
                    &name,
                    json_string(&json!(channels)),
                    json_string(&settings),
                    &now,
                ),
            )?;
            json!({
                "name": name,
                "campaign_type": "appointment",
                "status": "active",
                "channels": channels,
                "settings": settings,
            })
        }
    };

    // kb_crawl_jobs: a website to crawl.
    let kb_data = stored_json(&session.kb_data)?;
    let knowledge_base = if kb_data.is_null() {
        Value::Null
    } else {
        let method = stored_str(&kb_data, "method")?;
        let crawl_job = if method == "website" {
            let url = stored_str(&kb_data, "crawl_url")?;
            db::execute(
                conn,
                "INSERT INTO kb_crawl_jobs (tenant_id, session_id, url, status, created_at,
                                            updated_at)
                 VALUES (?1, ?2, ?3, 'queued', ?4, ?4)",
                (tenant, &session.id, url, &now),
            )?;
            json!({ "url": url, "status": "queued" })
        } else {
            Value::Null
        };
        let documents = if method == "documents" {
            kb::store_documents(conn, tenant, &kb_data["documents"], &now)?
        } else {
            Value::Null
        };
        json!({ "method": method, "crawl_job": crawl_job, "documents": documents })
    };

    // onboarding_analytics: the last step's time, the total, done.
    let started_ms = parse_iso8601(&session.started_at).ok_or_else(|| {
        Error::internal(format!(
            "stored started_at {} is unreadable",
            quote(&session.started_at)
        ))
    })?;
    let duration_seconds = (now_ms - started_ms).max(0) / 1000;
    // Rounded to the nearest minute, as the original answered (342 s -> 6).
    let duration_minutes = (duration_seconds + 30) / 60;
    let step = step_column(session.current_step);
    db::execute(
        conn,
        &format!(
            "UPDATE onboarding_analytics SET {step} = {step} + ?1, completed = 1,
                    total_duration_seconds = ?2, completed_at = ?3
             WHERE session_id = ?4"
        ),
        (
            seconds_between(&session.step_started_at, now_ms)?,
            duration_seconds,
            &now,
            &session.id,
        ),
    )?;

    let result = json!({
        "success": true,
        "message": SUCCESS_MESSAGE,
        "session_id": session.id,
        "tenant_id": tenant,
        "duration_seconds": duration_seconds,
        "duration_minutes": duration_minutes,
        "sync_status": "synced",
        "already_completed": false,
        "synced": {
            "agent_config": {
                "agent_type": agent.id,
                "agent_name": agent_name,
                "voice_provider": catalog::VOICE_PROVIDER,
                "voice_id": voice.provider_voice_id,
                "voice_language": catalog::VOICE_LANGUAGE,
                "channels": channels,
            },
            "phone_mapping": {
                "phone_number": phone,
                "status": "pending_verification",
                "is_active": false,
            },
            "campaign": campaign,
            "knowledge_base": knowledge_base,
        },
    });

    db::execute(
        conn,
        "UPDATE onboarding_sessions SET status = 'completed', current_step = 6,
                progress_percentage = 100, completed_at = ?1, last_updated_at = ?1,
                step_started_at = ?1, completion_result = ?2
         WHERE id = ?3",
        (&now, json_string(&result), &session.id),
    )?;
    Ok(result)
}
