//! `onboarding_create(payload)` and `onboarding_create(payload, ip_address,
//! user_agent)`: a new tenant, its session and its analytics row.

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::env::{iso8601, Env};
use crate::error::Result;
use crate::ids::new_ids;
use crate::savepoint::in_savepoint;
use crate::sql;
use crate::validate::{self, Peer};

/// The tenant's name until the business step's company name replaces it.
pub const TEMPORARY_NAME: &str = "Onboarding in progress";

// -- onboarding_create('{"source":"web"}')
//      -> '{"success":true,"session_id":"onb_…","tenant_id":"tenant_…"}'
// -- onboarding_create('{"source":"web"}', '203.0.113.7', 'Mozilla/5.0 …')
//      -> the same; the session keeps the arguments' address and user agent
pub fn create(
    conn: &Connection,
    env: &dyn Env,
    payload: Option<&str>,
    peer: &Peer<'_>,
) -> Result<Value> {
    let origin = validate::origin(&validate::payload_object(payload)?, peer)?;
    let now_ms = env.now_ms();
    let ids = new_ids(env, now_ms)?;
    let now = iso8601(now_ms);
    // The placeholder must be unique (tenants.email is UNIQUE): the original's
    // constant 'temp@onboarding.tmp' let only one onboarding exist at a time.
    let placeholder_email = format!("pending+{}@onboarding.invalid", ids.tenant_id);
    in_savepoint(conn, || {
        sql::execute(
            conn,
            "INSERT INTO tenants (id, name, email, api_key, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            (
                &ids.tenant_id,
                TEMPORARY_NAME,
                &placeholder_email,
                &ids.api_key,
                &now,
            ),
        )?;
        sql::execute(
            conn,
            "INSERT INTO onboarding_sessions (id, tenant_id, source, started_at, last_updated_at,
                                              step_started_at, ip_address, user_agent)
             VALUES (?1, ?2, ?3, ?4, ?4, ?4, ?5, ?6)",
            (
                &ids.session_id,
                &ids.tenant_id,
                &origin.source,
                &now,
                &origin.ip_address,
                &origin.user_agent,
            ),
        )?;
        sql::execute(
            conn,
            "INSERT INTO onboarding_analytics (session_id, tenant_id, created_at)
             VALUES (?1, ?2, ?3)",
            (&ids.session_id, &ids.tenant_id, &now),
        )?;
        Ok(())
    })?;
    Ok(json!({
        "success": true,
        "session_id": ids.session_id,
        "tenant_id": ids.tenant_id,
    }))
}
