//! `onboarding_create(payload)`, `onboarding_create(payload, ip_address,
//! user_agent)` and `onboarding_create(payload, ip_address, user_agent,
//! request_key)`: a new tenant, its session and its analytics row; with a
//! request key, at most once per key.

use rusqlite::{Connection, OptionalExtension};

use crate::env::{iso8601, Env};
use crate::error::Result;
use crate::ids::new_ids;
use crate::json;
use crate::savepoint::in_savepoint;
use crate::sql;
use crate::validate::{self, Peer};

/// The tenant's name until the business step's company name replaces it.
pub const TEMPORARY_NAME: &str = "Onboarding in progress";

// -- onboarding_create('{"source":"web"}')
//      -> '{"success":true,"session_id":"onb_…","tenant_id":"tenant_…"}'
// -- onboarding_create('{"source":"web"}', '203.0.113.7', 'Mozilla/5.0 …')
//      -> the same; the session keeps the arguments' address and user agent
// -- onboarding_create('{}', '203.0.113.7', '', 'k3y-of-16-chars-or-more')
//      -> the first answer again when a session was already made with this key
pub fn create(
    conn: &Connection,
    env: &dyn Env,
    payload: Option<&str>,
    peer: &Peer<'_>,
    request_key: Option<&str>,
) -> Result<String> {
    if let Some(key) = request_key {
        crate::replies::check_key(key)?;
    }
    let fingerprint = request_key.map(|_| crate::replies::fingerprint(payload));
    // Validated first: a malformed payload is refused at once, not after
    // waiting for the write lock.
    let origin = validate::origin(&validate::payload_object(payload)?, peer)?;
    in_savepoint(conn, || {
        // Looked up under the write lock: a retry that overlaps the first
        // create's commit waits for it and finds its key, where a lookup
        // before the lock missed it and then failed on the key's UNIQUE.
        if let Some(key) = request_key {
            if let Some(first) = created_with(conn, key, fingerprint.as_deref())? {
                return Ok(first);
            }
        }
        let now_ms = env.now_ms();
        let ids = new_ids(env, now_ms)?;
        let now = iso8601(now_ms);
        // The placeholder must be unique (tenants.email is UNIQUE): the
        // original's constant 'temp@onboarding.tmp' let only one onboarding
        // exist at a time.
        let placeholder_email = ["pending+", &ids.tenant_id, "@onboarding.invalid"].concat();
        sql::execute(
            conn,
            "INSERT INTO main.tenants (id, name, email, api_key, created_at, updated_at)
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
            "INSERT INTO main.onboarding_sessions (id, tenant_id, source, started_at, last_updated_at,
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
            "INSERT INTO main.onboarding_analytics (session_id, tenant_id, created_at)
             VALUES (?1, ?2, ?3)",
            (&ids.session_id, &ids.tenant_id, &now),
        )?;
        if let Some(key) = request_key {
            sql::execute(
                conn,
                "INSERT INTO main.onboarding_create_requests (request_key, session_id, fingerprint)
                 VALUES (?1, ?2, ?3)",
                (key, &ids.session_id, &fingerprint),
            )?;
        }
        Ok(answer(&ids.session_id, &ids.tenant_id))
    })
}

// -- onboarding_create_kept('{}', '203.0.113.7 k3y-of-16-chars-or-more')
//      -> the answer of the create made with this key and payload, or NULL
/// The answer of the create `request_key` made, without creating one: for
/// a host that refuses a create (its rate limit) and must still answer a
/// retry of one it made (the client lost the answer and sent it again with
/// its key). `None` when no create was made with the key; `conflict` when
/// one was, with another payload, as [`create`] answers.
pub fn kept(conn: &Connection, payload: Option<&str>, request_key: &str) -> Result<Option<String>> {
    crate::replies::check_key(request_key)?;
    let fingerprint = crate::replies::fingerprint(payload);
    created_with(conn, request_key, Some(&fingerprint))
}

/// `{"success":true,"session_id":…,"tenant_id":…}`, written out.
fn answer(session_id: &str, tenant_id: &str) -> String {
    let mut w = json::Writer::with_capacity(96);
    w.raw(r#"{"success":true,"session_id":"#)
        .string(session_id)
        .raw(r#","tenant_id":"#)
        .string(tenant_id)
        .raw("}");
    w.finish()
}

/// The answer of the create that `key` already made, if any: a retry of a
/// commit whose outcome its host could not know (a failover) gets it again.
/// The key of a create with another payload is refused (`conflict`); one
/// kept before migration 015 has no fingerprint and answers whatever the
/// payload.
fn created_with(conn: &Connection, key: &str, fingerprint: Option<&str>) -> Result<Option<String>> {
    let first = sql::query_row(
        conn,
        "SELECT s.id, s.tenant_id, r.fingerprint FROM main.onboarding_create_requests r
         JOIN main.onboarding_sessions s ON s.id = r.session_id WHERE r.request_key = ?1",
        [key],
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
            ))
        },
    )
    .optional()?;
    let Some((session_id, tenant_id, kept)) = first else {
        return Ok(None);
    };
    if kept.is_some_and(|kept| Some(kept.as_str()) != fingerprint) {
        return Err(crate::replies::other_payload(key));
    }
    Ok(Some(answer(&session_id, &tenant_id)))
}
