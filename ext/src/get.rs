//! `onboarding_get(session_id)`: the whole state of a session, to resume the
//! wizard and, after completion, to pre-fill the dashboard with the rows the
//! sync wrote.

use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Map, Value};

use crate::env::Env;
use crate::error::Result;
use crate::json::row_object;
use crate::savepoint::in_read_savepoint;
use crate::session::{stored_json, Progress, Session, Step};
use crate::sql;
use crate::verification::Verification;

// -- onboarding_get('onb_…')
//      -> '{"success":true,"session_id":"onb_…","tenant_id":"tenant_…","status":"in_progress",
//           "current_step":2,"progress_percentage":33,…,"steps":{…},"omnichannel":null,
//           "phone_verification":null}'
pub fn get(conn: &Connection, env: &dyn Env, session_id: &str) -> Result<Value> {
    // A savepoint here is a read transaction: every table is read from one
    // snapshot even in autocommit mode.
    in_read_savepoint(conn, || {
        let s = Session::load(conn, session_id)?;
        let omnichannel = if s.status == "completed" {
            omnichannel(conn, &s)?
        } else {
            Value::Null
        };
        let mut steps = Map::new();
        for step in Step::ALL {
            steps.insert(step.name().to_string(), stored_json(s.data(step))?);
        }
        // The latest verification of the business step's phone: one of a
        // number since changed says nothing of this one (completion maps
        // this one, verified only if it was). The code never leaves its HMAC.
        let phone = steps
            .get(Step::Business.name())
            .and_then(|business| business["phone"].as_str());
        let now_ms = env.now_ms();
        let phone_verification = match phone {
            Some(phone) => match Verification::latest_of(conn, s.id, phone)? {
                Some(v) => {
                    let mut shown = v.to_json(now_ms)?;
                    // A verified number, as its verify answer said: whether
                    // it routes calls, and why not (completion to come, or
                    // another tenant's active mapping), for a page reloaded.
                    if v.status == "verified" {
                        let completed = s.status == "completed";
                        let (active, reason) =
                            crate::verification::routing(conn, &s.tenant_id, completed, phone)?;
                        shown["is_active"] = Value::Bool(active);
                        shown["reason"] = reason.map_or(Value::Null, Value::from);
                    }
                    // The daily limits, as a send's answer counts them.
                    if let Some(until) = crate::phone::daily_limit_until(conn, s.id, phone, now_ms)?
                    {
                        let until = crate::env::iso8601(until);
                        if shown["resend_after"]
                            .as_str()
                            .is_some_and(|t| t < until.as_str())
                        {
                            shown["resend_after"] = Value::from(until);
                        }
                    }
                    shown
                }
                None => Value::Null,
            },
            None => Value::Null,
        };
        Ok(json!({
            "success": true,
            "session_id": s.id,
            "tenant_id": s.tenant_id,
            "status": s.status,
            "current_step": s.current_step,
            "total_steps": Progress::COMPLETED.step,
            "progress_percentage": s.progress_percentage,
            "started_at": s.started_at,
            "last_updated_at": s.last_updated_at,
            "completed_at": s.completed_at,
            "steps": steps,
            "omnichannel": omnichannel,
            "phone_verification": phone_verification,
        }))
    })
}

fn omnichannel(conn: &Connection, s: &Session) -> Result<Value> {
    let tenant = &s.tenant_id;
    let one = |sql: &'static str, json_columns: &[&str]| -> Result<Value> {
        Ok(
            sql::query_row(conn, sql, [tenant], |r| row_object(r, json_columns))
                .optional()?
                .unwrap_or(Value::Null),
        )
    };
    let tenant_row = one(
        "SELECT id, name, company_name, email, phone, sector, booking_provider,
                cal_com_event_type_id, timezone, onboarding_completed, created_at, updated_at
         FROM main.tenants WHERE id = ?1",
        &[],
    )?;
    let agent_config = one(
        "SELECT agent_type, agent_name, agent_personality, voice_provider, voice_id,
                voice_language, system_prompt, greeting_message, channels_config,
                created_at, updated_at
         FROM main.omni_agent_configs WHERE tenant_id = ?1",
        &["channels_config"],
    )?;
    let mut phone_mapping = one(
        "SELECT phone_number, is_active, status, created_at, updated_at
         FROM main.omni_phone_mappings WHERE tenant_id = ?1 ORDER BY id LIMIT 1",
        &[],
    )?;
    // A boolean, as onboarding_complete answers it, and as there, the
    // reason a verified number is inactive: another tenant routes it (or
    // none does, and the mapping was made inactive since).
    if let Some(mapping) = phone_mapping.as_object_mut() {
        let active = mapping.get("is_active").and_then(Value::as_i64) == Some(1);
        mapping.insert("is_active".into(), Value::Bool(active));
        if !active && mapping.get("status").and_then(Value::as_str) == Some("verified") {
            let phone = mapping["phone_number"].as_str().unwrap_or_default();
            let reason = crate::verification::inactive_reason(conn, &s.tenant_id, phone)?;
            mapping.insert("reason".into(), Value::from(reason));
        }
    }
    let campaign = one(
        "SELECT name, campaign_type, channels, status, settings, created_at, updated_at
         FROM main.omnichannel_campaigns WHERE tenant_id = ?1 ORDER BY id LIMIT 1",
        &["channels", "settings"],
    )?;
    let crawl_job = sql::query_row(
        conn,
        "SELECT id, url, status, created_at, updated_at FROM main.kb_crawl_jobs
             WHERE session_id = ?1",
        [&s.id],
        |r| row_object(r, &[]),
    )
    .optional()?
    .unwrap_or(Value::Null);
    // What the tenant's knowledge base holds now: the documents pasted in
    // the kb step (stored by completion itself) and the pages a crawl has
    // stored so far. The list is `onboarding_kb_get`'s; this is its size.
    let (documents, chunks) = sql::query_row(
        conn,
        "SELECT (SELECT count(*) FROM main.kb_documents WHERE tenant_id = ?1),
                (SELECT count(*) FROM main.kb_chunks WHERE tenant_id = ?1)",
        [tenant],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
    )?;
    Ok(json!({
        "tenant": tenant_row,
        "agent_config": agent_config,
        "phone_mapping": phone_mapping,
        "campaign": campaign,
        "kb_crawl_job": crawl_job,
        "knowledge_base": {"documents": documents, "chunks": chunks},
    }))
}
