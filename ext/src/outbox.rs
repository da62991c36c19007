//! The outbox: messages (a phone code's SMS or call) waiting for an external
//! sender, and the three calls a sender makes: claim one with a lease, then
//! report it sent or failed.
//!
//! A message is handed to one sender at a time: claiming sets a lease, and
//! only a lease that ran out (a sender that crashed or hung) lets another
//! sender take the message over. The text, which holds a code, is blanked
//! as soon as the message is sent, failed or withdrawn, and once expired at
//! the next claim, code sent or late report (each expires every message
//! past its time); a message
//! past its expiry is never handed out, since its code is worthless by then.

use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value};

use crate::env::{iso8601, Env};
use crate::error::{checked_text, one_line, one_line_diagnostic, quote, Error, ErrorKind, Result};
use crate::json::row_object;
use crate::savepoint::in_savepoint;
use crate::sql;

/// The longest lease a sender may ask for.
pub const MAX_LEASE_SECONDS: i64 = 3600;
/// The longest worker name, provider id and error kept.
const MAX_WORKER_CHARS: usize = 64;
const MAX_PROVIDER_ID_CHARS: usize = 128;
const MAX_ERROR_CHARS: usize = 500;

/// Queues a message for `recipient` (E.164) and returns its id.
pub fn enqueue(
    conn: &Connection,
    verification_id: &str,
    recipient: &str,
    channel: &str,
    text: &str,
    expires_at: &str,
    now: &str,
) -> Result<i64> {
    Ok(sql::query_row(
        conn,
        "INSERT INTO main.outbox_messages (verification_id, recipient, channel, text, expires_at,
                                      created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
         RETURNING id",
        (verification_id, recipient, channel, text, expires_at, now),
        |r| r.get(0),
    )?)
}

/// Withdraws the unsent messages of a verification whose code they carry
/// no longer counts (replaced, used, locked, cancelled): their text is
/// blanked, and a queued one gets `status`. One a sender holds keeps
/// `sending`: the sender has its text already and may be sending it, so
/// its report (sent with the provider's id, or failed) is still taken;
/// should its lease run out instead, [`claim`] gives it `cancelled`, never
/// to another sender.
pub fn withdraw(conn: &Connection, verification_id: &str, status: &str, now: &str) -> Result<()> {
    sql::execute(
        conn,
        "UPDATE main.outbox_messages
         SET status = CASE status WHEN 'queued' THEN ?2 ELSE status END, text = '',
             updated_at = ?3
         WHERE verification_id = ?1 AND status IN ('queued', 'sending') AND text <> ''",
        (verification_id, status, now),
    )?;
    Ok(())
}

/// How many messages went to `recipient` since `since`, and the time of the
/// oldest of them (when the count next goes down).
pub fn sent_since(
    conn: &Connection,
    recipient: &str,
    since: &str,
) -> Result<(i64, Option<String>)> {
    Ok(sql::query_row(
        conn,
        "SELECT count(*), min(created_at) FROM main.outbox_messages
         WHERE recipient = ?1 AND created_at > ?2",
        (recipient, since),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?)
}

/// Expires the messages still unsent at `now`, past their expiry: their
/// text is blanked, and none is handed out any more. Each claim and each
/// send does it first.
pub fn expire(conn: &Connection, now: &str) -> Result<()> {
    sql::execute(
        conn,
        "UPDATE main.outbox_messages SET status = 'expired', text = '', updated_at = ?1
         WHERE status IN ('queued', 'sending') AND expires_at <= ?1",
        [now],
    )?;
    Ok(())
}

// -- onboarding_outbox_claim('sms-gateway-1', 60)
//      -> '{"success":true,"message":{"id":1,"recipient":"+33612345678","channel":"sms",
//           "text":"Votre code …","expires_at":"…","lease_until":"…","claims":1}}'
/// Expires what is past its time, then leases the oldest message that is
/// queued, or whose lease ran out, to `worker` for `lease_seconds`, or until
/// the message expires if that comes first (a sender must not send once its
/// lease has run out); `"message":null` when there is none.
pub fn claim(conn: &Connection, env: &dyn Env, worker: &str, lease_seconds: i64) -> Result<Value> {
    let worker = checked_text("worker", worker, MAX_WORKER_CHARS)?;
    if !(1..=MAX_LEASE_SECONDS).contains(&lease_seconds) {
        return Err(Error::invalid_field(format!(
            "lease_seconds must be from 1 to {MAX_LEASE_SECONDS}, got {lease_seconds}"
        )));
    }
    in_savepoint(conn, || {
        let now_ms = env.now_ms();
        let now = iso8601(now_ms);
        expire(conn, &now)?;
        // A message withdrawn while its sender held it (its text blanked)
        // whose lease ran out without a report: never handed out again.
        sql::execute(
            conn,
            "UPDATE main.outbox_messages SET status = 'cancelled', updated_at = ?1
             WHERE status = 'sending' AND text = '' AND lease_until <= ?1",
            [&now],
        )?;
        let message = sql::query_row(
            conn,
            "UPDATE main.outbox_messages
             SET status = 'sending', lease_owner = ?1, lease_until = min(?2, expires_at),
                 claims = claims + 1,
                 updated_at = ?3
             WHERE id = (SELECT id FROM main.outbox_messages
                         WHERE status = 'queued' OR (status = 'sending' AND lease_until <= ?3)
                         ORDER BY id LIMIT 1)
             RETURNING id, recipient, channel, text, expires_at, lease_until, claims",
            (worker, iso8601(now_ms + lease_seconds * 1000), &now),
            |r| row_object(r, &[]),
        )
        .optional()?;
        Ok(json!({ "success": true, "message": message }))
    })
}

// -- onboarding_outbox_sent(1, 'sms-gateway-1', 'SM87a3…') -> '{"success":true,"id":1,"status":"sent"}'
/// The sender holding message `id` delivered it: its text is blanked.
/// `provider_id` is kept as the provider gave it, as one line of at most
/// 128 characters, none for an empty one: refused, the message would stay
/// leased, to be claimed and sent again (the code delivered twice).
pub fn sent(
    conn: &Connection,
    env: &dyn Env,
    id: i64,
    worker: &str,
    provider_id: Option<&str>,
) -> Result<Value> {
    let provider_id = provider_id.and_then(|p| one_line(p, MAX_PROVIDER_ID_CHARS));
    finish(conn, env, id, worker, "sent", provider_id.as_deref(), None)
}

// -- onboarding_outbox_failed(1, 'sms-gateway-1', 'unreachable') -> '{"success":true,"id":1,"status":"failed"}'
/// The sender holding message `id` gave up on it: its text is blanked and
/// the error kept, as one line of at most 500 characters, `(no error
/// text)` for none (a provider's error passed on as it came is kept, not
/// refused: a refusal would leave the message leased, to be claimed and
/// sent again). A sender that wants another try does not call this: it
/// lets the lease run out, and the message is claimed again.
pub fn failed(
    conn: &Connection,
    env: &dyn Env,
    id: i64,
    worker: &str,
    error: &str,
) -> Result<Value> {
    let error = one_line_diagnostic(error, MAX_ERROR_CHARS);
    finish(conn, env, id, worker, "failed", None, Some(&error))
}

fn finish(
    conn: &Connection,
    env: &dyn Env,
    id: i64,
    worker: &str,
    status: &str,
    provider_id: Option<&str>,
    error: Option<&str>,
) -> Result<Value> {
    let worker = checked_text("worker", worker, MAX_WORKER_CHARS)?;
    // The outer Result rolls back; the inner one is the answer, given after
    // the writes are kept (a late report's expiry, see below).
    in_savepoint(conn, || {
        let now = iso8601(env.now_ms());
        let held: Option<(String, Option<String>, String)> = sql::query_row(
            conn,
            "SELECT status, lease_owner, expires_at FROM main.outbox_messages WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
        match held {
            None => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("message {id} does not exist"),
                ))
            }
            Some((current, _, _)) if current != "sending" => {
                return Err(Error::conflict(format!(
                    "message {id} is {current}, not being sent (claim a message first)"
                )))
            }
            Some((_, owner, _)) if owner.as_deref() != Some(worker.as_str()) => {
                return Err(Error::conflict(format!(
                    "message {id} is leased to {}, not {} (only the worker holding its lease reports it; a lease that runs out is taken over)",
                    quote(owner.as_deref().unwrap_or_default()),
                    quote(&worker)
                )))
            }
            // A message still unsent at its expiry is never sent: its lease
            // ended then. Reported sent afterwards, the report is refused,
            // and the message expires at once, its text (the code) blanked
            // now rather than at the next claim or send.
            Some((_, _, expires_at)) if status == "sent" && expires_at <= now => {
                expire(conn, &now)?;
                return Ok(Err(Error::conflict(format!(
                    "message {id} expired at {expires_at}, before it was reported sent (a \
                     message is never sent after its expiry, when its lease ends)"
                ))));
            }
            Some(_) => {}
        }
        sql::execute(
            conn,
            "UPDATE main.outbox_messages
             SET status = ?2, text = '', provider_id = ?3, last_error = ?4, updated_at = ?5,
                 sent_at = CASE WHEN ?2 = 'sent' THEN ?5 END
             WHERE id = ?1",
            (id, status, provider_id, error, &now),
        )?;
        Ok(Ok(json!({ "success": true, "id": id, "status": status })))
    })?
}
