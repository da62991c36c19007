//! `onboarding_create(payload)`: a new tenant, its session and its
//! analytics row.

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::atomic::atomic;
use crate::db;
use crate::env::{iso8601, Env};
use crate::error::{Error, Result};
use crate::validate;

/// The tenant's name until the business step's company name replaces it.
pub const TEMPORARY_NAME: &str = "Onboarding in progress";

/// Fresh ids and the temporary API key, all from one draw of the seam's
/// random source.
///
/// Ids use the uuid v7 layout: the creation time in milliseconds, then 74
/// random bits. The random part makes a session id (the only credential of
/// an anonymous onboarding) unguessable; the time prefix makes new rows land
/// next to each other in every index keyed by id, instead of on a random
/// page each, which keeps inserts flat as the tables grow. The API key is
/// 256 random bits.
struct Ids {
    tenant_id: String,
    session_id: String,
    api_key: String,
}

fn new_ids(env: &dyn Env, now_ms: i64) -> Result<Ids> {
    let mut bytes = [0u8; 52];
    env.fill_random(&mut bytes).map_err(Error::internal)?;
    let uuid = |random: &[u8]| {
        let mut raw = [0u8; 10];
        raw.copy_from_slice(random);
        uuid::Builder::from_unix_timestamp_millis(now_ms.max(0) as u64, &raw)
            .into_uuid()
            .simple()
            .to_string()
    };
    let api_key: String = bytes[20..].iter().map(|b| format!("{b:02x}")).collect();
    Ok(Ids {
        tenant_id: format!("tenant_{}", uuid(&bytes[..10])),
        session_id: format!("onb_{}", uuid(&bytes[10..20])),
        api_key: format!("tmp_{api_key}"),
    })
}

// -- onboarding_create('{"source":"web"}')
//      -> '{"success":true,"session_id":"onb_…","tenant_id":"tenant_…"}'
pub fn create(conn: &Connection, env: &dyn Env, payload: Option<&str>) -> Result<Value> {
    let origin = validate::origin(&validate::payload_object(payload)?)?;
    let now_ms = env.now_ms();
    let ids = new_ids(env, now_ms)?;
    let now = iso8601(now_ms);
    // The placeholder must be unique (tenants.email is UNIQUE): the original's
    // constant 'temp@onboarding.tmp' let only one onboarding exist at a time.
    let placeholder_email = format!("pending+{}@onboarding.invalid", ids.tenant_id);
    atomic(conn, || {
        db::execute(
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
        db::execute(
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
        db::execute(
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
