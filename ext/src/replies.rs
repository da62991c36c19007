//! Answers kept by request key: the keyed forms of the calls that are not
//! safe to run twice (`onboarding_step/4`, `onboarding_phone_send/4`,
//! `onboarding_phone_verify/3`, `onboarding_complete/3`).
//!
//! A host whose commit can have an unknown outcome (a dqlite cluster's
//! failover) runs its calls again with the keys it made for them. Run
//! again, a send would answer "too soon" although its code went out, a
//! wrong code would count twice, a right one answer "already used", a
//! completion answer `already_completed` on the client's first request,
//! and a step run after its session's completion (the same batch) answer
//! `conflict` although it was saved. A
//! keyed call looks its key up under the write lock, before anything else;
//! found, it answers what it answered the first time and writes nothing.
//! Not found, it runs and keeps its answer in the same transaction as its
//! writes, so the answer is kept exactly when the writes are.
//!
//! An error answered with the call's writes kept (a wrong code, counted) is
//! kept too; an error that rolled the call back is not: nothing happened,
//! and the call runs again.

use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;

use crate::env::{iso8601, Env};
use crate::error::{quote, Error, ErrorKind, Result};
use crate::json;
use crate::sql;

/// A kept answer is answered this long: a retry comes seconds after its
/// first run, never a day later. Older, it no longer counts (the call runs
/// as a new one), and is deleted when a new answer is kept.
const KEPT_MS: i64 = 24 * 60 * 60 * 1000;

/// One keyed call: the function, the session it names (as given), the
/// host's key, and the fingerprint of its payload.
pub struct Keyed<'a> {
    pub function: &'static str,
    pub session_id: &'a str,
    pub key: &'a str,
    pub fingerprint: String,
}

/// The fingerprint of a keyed call's payload (015): the SHA-256 of the
/// text as sent, in lowercase hex; a NULL payload is `{}`, which it means
/// (an HTTP request without a body sends NULL). The raw text, not its
/// parsed value: a retry sends the same bytes, and a sender that sends
/// others under the same key is told so rather than guessed at.
pub fn fingerprint(payload: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(payload.unwrap_or("{}").as_bytes());
    let mut hex = String::with_capacity(64);
    crate::ids::push_hex(&mut hex, &digest);
    hex
}

/// The refusal of a key kept for another payload. The key is quoted (the
/// sender's own), the payloads are not: either may be long.
pub fn other_payload(key: &str) -> Error {
    Error::conflict(format!(
        "request_key {} was already used with another payload",
        quote(key)
    ))
}

/// Refuses a key that is not 16 to 128 characters (shorter keys could
/// repeat between hosts) or that holds a control character; the rule of
/// `onboarding_create`'s key too.
pub fn check_key(key: &str) -> Result<()> {
    if !(16..=128).contains(&key.chars().count()) {
        return Err(Error::invalid_field(format!(
            "request_key {} must be 16 to 128 characters",
            quote(key)
        )));
    }
    // SQLite's length() stops at a NUL: the table's CHECK would refuse the
    // key as an internal error.
    if key.chars().any(char::is_control) {
        return Err(Error::invalid_field(format!(
            "request_key {} must not contain control characters",
            quote(key)
        )));
    }
    Ok(())
}

/// The call's key, checked, when its host gave one.
pub fn keyed<'a>(
    function: &'static str,
    session_id: &'a str,
    payload: Option<&str>,
    request_key: Option<&'a str>,
) -> Result<Option<Keyed<'a>>> {
    request_key
        .map(|key| checked(function, session_id, payload, key))
        .transpose()
}

/// A call's key, checked, with its payload's fingerprint.
fn checked<'a>(
    function: &'static str,
    session_id: &'a str,
    payload: Option<&str>,
    key: &'a str,
) -> Result<Keyed<'a>> {
    check_key(key)?;
    Ok(Keyed {
        function,
        session_id,
        key,
        fingerprint: fingerprint(payload),
    })
}

/// An answer that can be kept as text and read back.
pub trait Reply: Sized {
    fn text(&self) -> String;
    fn from_text(text: String) -> Result<Self>;
}

impl Reply for String {
    fn text(&self) -> String {
        self.clone()
    }
    fn from_text(text: String) -> Result<Self> {
        Ok(text)
    }
}

impl Reply for Value {
    fn text(&self) -> String {
        json::to_text(self)
    }
    fn from_text(text: String) -> Result<Self> {
        Ok(serde_json::from_str(&text)?)
    }
}

/// Runs `body` once per key. Call it inside the call's savepoint, first
/// thing: the lookup must see the first run's commit (the write lock is
/// held), and keeping the answer must land with the body's writes.
///
/// `body`'s outer error rolls the call back (nothing is kept); its inner
/// one is an answer given with the writes kept, and is kept as such. A body
/// that wrote nothing keeps nothing either.
pub fn once<T: Reply>(
    conn: &Connection,
    env: &dyn Env,
    keyed: Option<&Keyed<'_>>,
    body: impl FnOnce() -> Result<Result<T>>,
) -> Result<Result<T>> {
    let Some(keyed) = keyed else {
        return body();
    };
    let now_ms = env.now_ms();
    if let Some(first) = kept(conn, keyed, now_ms)? {
        return Ok(first);
    }
    let changes = conn.total_changes();
    let answer = body()?;
    if conn.total_changes() == changes {
        // Nothing written (a completion answered again): running it again
        // answers the same, and "writes nothing" stays true.
        return Ok(answer);
    }
    let (failed, reply) = match &answer {
        Ok(value) => (false, value.text()),
        Err(e) => (true, e.to_string()),
    };
    sql::execute(
        conn,
        "DELETE FROM main.onboarding_call_replies WHERE created_at < ?1",
        [iso8601(now_ms - KEPT_MS)],
    )?;
    sql::execute(
        conn,
        "INSERT INTO main.onboarding_call_replies
             (request_key, function, session_id, failed, reply, created_at, fingerprint)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        (
            keyed.key,
            keyed.function,
            keyed.session_id,
            failed,
            reply,
            iso8601(now_ms),
            &keyed.fingerprint,
        ),
    )?;
    Ok(answer)
}

/// The answer `function` kept under `key` for `session_id` and `payload`,
/// read without running the call: for a host that refuses a call (its own
/// limit) and must still answer a retry of one it ran. `None` when none is
/// kept; the key checked, and refused as [`once`] refuses a key kept by
/// another call or for another payload.
pub fn kept_answer(
    conn: &Connection,
    env: &dyn Env,
    function: &'static str,
    session_id: &str,
    payload: Option<&str>,
    key: &str,
) -> Result<Option<Result<String>>> {
    let keyed = checked(function, session_id, payload, key)?;
    kept(conn, &keyed, env.now_ms())
}

/// The answer kept under the key, if any. A key kept by another call
/// (another function, or another session) is a host's mistake, refused
/// without naming that session: its id is its credential. So is a key kept
/// for another payload (a row kept before 015 has no fingerprint and is
/// answered whatever the payload). An answer kept more than a day before
/// `now_ms` is none.
fn kept<T: Reply>(conn: &Connection, keyed: &Keyed<'_>, now_ms: i64) -> Result<Option<Result<T>>> {
    let row = sql::query_row(
        conn,
        "SELECT function, session_id, failed, reply, fingerprint FROM main.onboarding_call_replies
         WHERE request_key = ?1 AND created_at >= ?2",
        (keyed.key, iso8601(now_ms - KEPT_MS)),
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        },
    )
    .optional()?;
    let Some((function, session_id, failed, reply, fingerprint)) = row else {
        return Ok(None);
    };
    let used_by = if function != keyed.function {
        Some(format!("by {function}"))
    } else if session_id != keyed.session_id {
        Some("for another session".to_string())
    } else {
        None
    };
    if let Some(used_by) = used_by {
        return Err(Error::conflict(format!(
            "request_key {} was already used {used_by}",
            quote(keyed.key)
        )));
    }
    if fingerprint.is_some_and(|kept| kept != keyed.fingerprint) {
        return Err(other_payload(keyed.key));
    }
    if !failed {
        return T::from_text(reply).map(|value| Some(Ok(value)));
    }
    let error = reply
        .split_once(": ")
        .and_then(|(kind, detail)| {
            let kind = ErrorKind::ALL.into_iter().find(|k| k.as_str() == kind)?;
            Some(Error::new(kind, detail))
        })
        .ok_or_else(|| {
            Error::internal(format!(
                "the kept answer of request_key {} is unreadable",
                quote(keyed.key)
            ))
        })?;
    Ok(Some(Err(error)))
}
