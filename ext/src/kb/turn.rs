//! Turns at a site: the contract's politeness (one request at a time per
//! site, a gap between two) kept by every crawler working on one database
//! file, whatever process it runs in (`sql/006_site_turns.sql`).
//!
//! A crawler takes the site's turn before a request and releases it once the
//! response is read, saying how long the next request must wait. A turn is
//! held until `held_until` at most: a crawler killed mid-request blocks its
//! site for that long, and the next taker finds the turn free after it.
//! Nothing is queued: a crawler refused a turn is told when to ask again.

use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value};
use url::Url;

use super::address::site_of;
use crate::env::{iso8601, parse_iso8601, Env};
use crate::error::{quote, Error, Result};
use crate::savepoint::in_savepoint;
use crate::sql;
use crate::validate::Fields;

/// How long a refused crawler waits before asking again while another one
/// holds the turn (its release comes at an unknown time).
pub const POLL_MS: i64 = 250;
/// The turn's hold when the payload gives none: a request's connect and
/// response limits (5 s and 15 s) with room to spare. A holder that takes
/// its own turn again extends its hold.
pub const DEFAULT_HOLD_SECONDS: i64 = 30;
/// The gap when the payload gives none: the contract's 1 s.
pub const DEFAULT_GAP_MS: i64 = 1000;
/// The longest gap: a site's `Retry-After` is kept up to an hour, as long
/// as a job waits for its site (`worker::MAX_SITE_WAIT_MS`).
pub const MAX_GAP_MS: i64 = super::worker::MAX_SITE_WAIT_MS;

/// The site key of the `url` field: the host without `www.`, and the port
/// when not 80 or 443.
fn site(f: &Fields) -> Result<String> {
    let text = f.str("url", super::MAX_URL_CHARS)?;
    let url = Url::parse(text)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
        .ok_or_else(|| {
            Error::invalid_field(format!("url {} is not an http(s) URL", quote(text)))
        })?;
    let (host, port) = site_of(&url);
    Ok(match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}

/// The turn's row: who holds it and until when, when the next request may
/// start, and when it was last taken or released.
type TurnRow = (Option<String>, Option<String>, String, String);

fn turn_row(conn: &Connection, site: &str) -> Result<Option<TurnRow>> {
    Ok(sql::query_row(
        conn,
        "SELECT holder, held_until, next_at, updated_at FROM main.kb_site_turns WHERE site = ?1",
        [site],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )
    .optional()?)
}

fn millis(stored: &str) -> Result<i64> {
    parse_iso8601(stored)
        .ok_or_else(|| Error::internal(format!("stored timestamp {} is unreadable", quote(stored))))
}

// -- onboarding_kb_site_take('{"url":"https://www.salon-lea.fr/tarifs","worker":"crawler-1","hold_seconds":30}')
//      -> '{"success":true,"site":"salon-lea.fr","granted":true,"held_until":"2026-11-24T10:00:30.000Z"}'
//      or '{"success":true,"site":"salon-lea.fr","granted":false,"holder":"crawler-2","retry_after_ms":250}'
/// Gives `worker` the turn of `url`'s site when nobody holds it (or the
/// holder's time ran out) and the last request's gap has passed; otherwise
/// answers when to ask again, and writes nothing (unless the clock went
/// back: see below).
pub fn take(conn: &Connection, env: &dyn Env, payload: Option<&str>) -> Result<Value> {
    let f = Fields::parse(payload)?;
    let site = site(&f)?;
    let worker = super::worker::worker_name(&f)?;
    let hold = f.int("hold_seconds", 1..=3600, Some(DEFAULT_HOLD_SECONDS))?;
    in_savepoint(conn, || {
        let now_ms = env.now_ms();
        let refused = |holder: Option<&str>, retry_ms: i64| {
            Ok(json!({
                "success": true, "site": site, "granted": false,
                "holder": holder, "retry_after_ms": retry_ms.max(1),
            }))
        };
        if let Some((holder, until, next_at, set_at)) = turn_row(conn, &site)? {
            let mut until = until.as_deref().map(millis).transpose()?;
            let mut next_at = millis(&next_at)?;
            let set_ms = millis(&set_at)?;
            if now_ms < set_ms {
                // The clock went back since the turn was last taken or
                // released: its hold and gap would last that much longer
                // (a day's wait for a gap of a second, past the longest a
                // job can wait). They start again from now, whole, as the
                // time already spent is unknown.
                until = until.map(|u| now_ms + (u - set_ms).max(0));
                next_at = now_ms + (next_at - set_ms).max(0);
                sql::execute(
                    conn,
                    "UPDATE main.kb_site_turns SET held_until = ?2, next_at = ?3, updated_at = ?4
                     WHERE site = ?1",
                    (&site, until.map(iso8601), iso8601(next_at), iso8601(now_ms)),
                )?;
            }
            if let (Some(holder), Some(until)) = (&holder, until) {
                if *holder != worker && until > now_ms {
                    return refused(Some(holder), (until - now_ms).min(POLL_MS));
                }
            }
            if next_at > now_ms {
                return refused(None, next_at - now_ms);
            }
        }
        let held_until = iso8601(now_ms + hold * 1000);
        sql::execute(
            conn,
            "INSERT INTO main.kb_site_turns (site, holder, held_until, next_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT (site) DO UPDATE SET holder = ?2, held_until = ?3, updated_at = ?4",
            (&site, &worker, &held_until, iso8601(now_ms)),
        )?;
        Ok(json!({ "success": true, "site": site, "granted": true, "held_until": held_until }))
    })
}

// -- onboarding_kb_site_release('{"url":"https://www.salon-lea.fr/tarifs","worker":"crawler-1","gap_ms":1000}')
//      -> '{"success":true,"site":"salon-lea.fr","next_at":"2026-11-24T10:00:01.000Z"}'
/// Gives back `worker`'s turn of `url`'s site: the next request may start
/// `gap_ms` from now. A worker that does not hold the turn (its time ran
/// out and another took it) is `conflict`, and nothing changes.
pub fn release(conn: &Connection, env: &dyn Env, payload: Option<&str>) -> Result<Value> {
    let f = Fields::parse(payload)?;
    let site = site(&f)?;
    let worker = super::worker::worker_name(&f)?;
    let gap = f.int("gap_ms", 0..=MAX_GAP_MS, Some(DEFAULT_GAP_MS))?;
    in_savepoint(conn, || {
        let now_ms = env.now_ms();
        let next_at = iso8601(now_ms + gap);
        let released = sql::execute(
            conn,
            "UPDATE main.kb_site_turns SET holder = NULL, held_until = NULL, next_at = ?3,
                    updated_at = ?4
             WHERE site = ?1 AND holder = ?2",
            (&site, &worker, &next_at, iso8601(now_ms)),
        )?;
        if released == 0 {
            return Err(Error::conflict(format!(
                "worker {} does not hold the turn of site {} (its hold ran out, or it never took it)",
                quote(&worker),
                quote(&site)
            )));
        }
        Ok(json!({ "success": true, "site": site, "next_at": next_at }))
    })
}
