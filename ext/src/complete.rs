//! `onboarding_complete(session_id, payload)`: the sync into the omnichannel
//! tables ([`crate::sync`]), in one savepoint with the session's completion.
//!
//! Writes, in order: `tenants` (name, email, phone, sector, done),
//! `omni_agent_configs`, `omni_phone_mappings`, `omnichannel_campaigns` (when
//! appointments are configured), `kb_crawl_jobs` (for a website), then
//! `onboarding_analytics` and the session. The body it answers is stored on
//! the session, so a retry gets the very same answer and writes nothing.
//!
//! `onboarding_kb_prepare(session_id)` does the completion's heaviest part
//! ahead, one pasted document per call ([`crate::sync::prepare`]), for a
//! host that must not spend seconds in one call (a dqlite leader).

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::env::Env;
use crate::error::Result;
use crate::json;
use crate::replies;
use crate::savepoint::in_savepoint;
use crate::session::Session;
use crate::sync::{self, sync};
use crate::validate;

// -- onboarding_complete('onb_…', '{}')
//      -> '{"success":true,"message":"Onboarding terminé avec succès ! 🎉","session_id":"onb_…",
//           "tenant_id":"tenant_…","duration_seconds":342,"duration_minutes":6,
//           "sync_status":"synced","already_completed":false,"synced":{…}}'
pub fn complete(
    conn: &Connection,
    env: &dyn Env,
    session_id: &str,
    payload: Option<&str>,
    request_key: Option<&str>,
) -> Result<String> {
    // Nothing is read from the payload yet, but it must be an object.
    validate::payload_object(payload)?;
    let keyed = replies::keyed("onboarding_complete", session_id, payload, request_key)?;
    in_savepoint(conn, || {
        replies::once(conn, env, keyed.as_ref(), || {
            let session = Session::load(conn, session_id)?;
            if let Some(first) = &session.completion_result {
                let mut replay: Value = serde_json::from_str(first)?;
                replay["already_completed"] = Value::Bool(true);
                return Ok(Ok(json::to_text(&replay)));
            }
            session.ensure_writable()?;
            sync(conn, env, &session).map(Ok)
        })
    })?
}

// -- onboarding_kb_prepare('onb_…')
//      -> '{"success":true,"session_id":"onb_…","prepared":{"item":0,"document_id":1,"chunks":42}}'
//      -> '{"success":true,"session_id":"onb_…","prepared":null}'   (nothing left to prepare)
pub fn prepare(conn: &Connection, env: &dyn Env, session_id: &str) -> Result<Value> {
    in_savepoint(conn, || {
        let session = Session::load(conn, session_id)?;
        // A completed session has nothing left to prepare: its completion
        // answers its first answer again (a host's retry meets this).
        let prepared = if session.completion_result.is_some() {
            None
        } else {
            session.ensure_writable()?;
            sync::prepare(conn, env, &session)?
        };
        Ok(json!({
            "success": true,
            "session_id": session.id,
            "prepared": prepared.map(|p| json!({
                "item": p.item,
                "document_id": p.document_id,
                "chunks": p.chunks,
            })),
        }))
    })
}
