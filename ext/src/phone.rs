//! `onboarding_phone_send(session_id, payload)` and
//! `onboarding_phone_verify(session_id, payload)`: a one-time code sent to
//! the business phone, and its check, which turns a declared number into a
//! routed one.
//!
//! The rules (after Twilio Verify and OWASP ASVS V2.7) are constants of
//! `verification.rs`; the code's draw and HMAC are `otp.rs`; the message
//! waits in the outbox (`outbox.rs`) for an SMS/voice sender.
//!
//! A wrong code must count even though the call fails: the body commits its
//! writes and only then answers the error (see [`verify`]).

use std::net::IpAddr;

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::env::{iso8601, Env};
use crate::error::{quote, Error, ErrorKind, Result};
use crate::ids;
use crate::json::{got, type_name};
use crate::otp;
use crate::outbox;
use crate::replies;
use crate::savepoint::in_savepoint;
use crate::session::{stored_json, stored_str, Session, SessionHead, Step};
use crate::sql;
use crate::validate::{self, Object};
use crate::verification::{
    self, Channel, Claim, Line, Verification, CODE_TTL_MS, DAY_MS, MAX_ATTEMPTS, MAX_SENDS,
    MAX_SENDS_PER_NUMBER, MAX_SENDS_PER_SESSION, RESEND_AFTER_MS,
};

// -- onboarding_phone_send('onb_…', '{"channel":"sms"}')
//      -> '{"success":true,"verification_id":"ver_…","phone_number":"+33612345678",
//           "channel":"sms","expires_at":"…","resend_after":"…"}'
/// Sends a code to the business phone: a new verification, or a new code
/// for the live one (a resend). `ip_address` is the host's client, kept with
/// the verification.
pub fn send(
    conn: &Connection,
    env: &dyn Env,
    session_id: &str,
    payload: Option<&str>,
    ip_address: Option<&str>,
    request_key: Option<&str>,
) -> Result<Value> {
    // The channel's error is raised once the session is known to exist: an
    // unknown session is `not_found` whatever its body, as on the steps.
    let requested = channel_field(&validate::payload_object(payload)?);
    if let Some(ip) = ip_address {
        if ip.parse::<IpAddr>().is_err() {
            return Err(Error::invalid_field(format!(
                "ip_address {} is not an IPv4 or IPv6 address",
                quote(ip)
            )));
        }
    }
    let keyed = replies::keyed("onboarding_phone_send", session_id, payload, request_key)?;
    in_savepoint(conn, || {
        replies::once(conn, env, keyed.as_ref(), || {
            send_code(conn, env, session_id, requested, ip_address).map(Ok)
        })
    })?
}

/// The body of [`send`], in its savepoint.
fn send_code(
    conn: &Connection,
    env: &dyn Env,
    session_id: &str,
    requested: Result<Option<Channel>>,
    ip_address: Option<&str>,
) -> Result<Value> {
    {
        let session = Session::load(conn, session_id)?;
        let requested = requested?;
        let line = verification::line(&business_phone(&session)?)?;
        let channel = channel_for(&line, requested)?;
        let now_ms = env.now_ms();
        let now = iso8601(now_ms);
        // Unsent codes past their expiry lose their text now rather than
        // at a sender's next claim: a server without a sender has none.
        outbox::expire(conn, &now)?;
        let latest = Verification::latest(conn, session_id)?;
        let allowed = may_send(conn, &session, &line, latest, now_ms)?;
        let sends = allowed.live.as_ref().map_or(1, |v| v.sends + 1);
        let resend_after = iso8601(next_send_ms(&allowed, sends, now_ms + CODE_TTL_MS, now_ms));
        let code = otp::new_code(env)?;
        let expires_at = iso8601(now_ms + CODE_TTL_MS);
        let sent = Sent {
            code: &code,
            channel,
            expires_at: &expires_at,
            now: &now,
            ip_address,
        };
        let id = match allowed.live {
            Some(v) => sent.resend(conn, v)?,
            None => sent.start(conn, env, &session, &line.number, now_ms)?,
        };
        let text = message_text(channel, &code);
        outbox::enqueue(
            conn,
            &id,
            &line.number,
            channel.as_str(),
            &text,
            &expires_at,
            &now,
        )?;
        Ok(json!({
            "success": true,
            "verification_id": id,
            "phone_number": line.number,
            "channel": channel.as_str(),
            "expires_at": expires_at,
            "resend_after": resend_after,
        }))
    }
}

/// A code about to go out, and what its verification row keeps of it.
struct Sent<'a> {
    code: &'a str,
    channel: Channel,
    expires_at: &'a str,
    now: &'a str,
    ip_address: Option<&'a str>,
}

impl Sent<'_> {
    /// A resend: the live verification takes the new code, and the message
    /// still carrying the old one is withdrawn. Answers the verification id.
    fn resend(&self, conn: &Connection, v: Verification) -> Result<String> {
        let secret = verification::secret(conn)?;
        outbox::withdraw(conn, &v.id, "cancelled", self.now)?;
        sql::execute(
            conn,
            "UPDATE main.phone_verifications
             SET code_hmac = ?2, channel = ?3, expires_at = ?4, sends = sends + 1,
                 last_sent_at = ?5, request_ip = coalesce(?6, request_ip), updated_at = ?5
             WHERE id = ?1",
            (
                &v.id,
                otp::seal(&secret, &v.id, self.code)?,
                self.channel.as_str(),
                self.expires_at,
                self.now,
                self.ip_address,
            ),
        )?;
        Ok(v.id)
    }

    /// A new verification of `phone` for `session`. Answers its id.
    fn start(
        &self,
        conn: &Connection,
        env: &dyn Env,
        session: &Session,
        phone: &str,
        now_ms: i64,
    ) -> Result<String> {
        let secret = verification::secret(conn)?;
        let id = ids::new_id(env, now_ms, "ver_")?;
        sql::execute(
            conn,
            "INSERT INTO main.phone_verifications (id, session_id, tenant_id, phone_number, channel,
                 code_hmac, expires_at, last_sent_at, request_ip, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?8, ?8)",
            rusqlite::params![
                &id,
                &session.id,
                &session.tenant_id,
                phone,
                self.channel.as_str(),
                otp::seal(&secret, &id, self.code)?,
                self.expires_at,
                self.now,
                self.ip_address,
            ],
        )?;
        Ok(id)
    }
}

/// The payload's `channel`: `sms`, `voice`, or absent (the line decides).
fn channel_field(map: &Object) -> Result<Option<Channel>> {
    match map.get("channel") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(name)) => Channel::parse(crate::error::trim(name))
            .map(Some)
            .ok_or_else(|| {
                Error::invalid_field(format!(
                    "channel {} is not a way to send a code (expected one of {})",
                    quote(name),
                    verification::CODE_CHANNELS.join(", ")
                ))
            }),
        Some(other) => Err(Error::invalid_field(format!(
            "channel must be a string, got {}",
            got(other)
        ))),
    }
}

/// The business step's phone, which codes go to.
fn business_phone(session: &Session) -> Result<String> {
    let business = stored_json(session.data(Step::Business))?;
    if business.is_null() {
        return Err(Error::new(
            ErrorKind::Incomplete,
            format!(
                "session {} has no business phone yet (save the business step first)",
                quote(session.id)
            ),
        ));
    }
    Ok(stored_str(&business, "phone")?.to_string())
}

/// The channel asked for, or the line's default; a fixed line takes no SMS.
fn channel_for(line: &Line, requested: Option<Channel>) -> Result<Channel> {
    match requested {
        Some(Channel::Sms) if !line.mobile => Err(Error::invalid_field(format!(
            "channel 'sms' cannot reach the {} {} (use 'voice')",
            if line.toll_free {
                "toll-free line"
            } else {
                "fixed line"
            },
            quote(&line.number)
        ))),
        Some(channel) => Ok(channel),
        None => Ok(line.default_channel()),
    }
}

/// What a send may do: resend the live verification (`None`: a new one
/// starts), and when the number's daily limit frees a send again.
struct Allowed {
    live: Option<Verification>,
    /// Codes sent to the number in the last 24 hours, before this one, and
    /// when the oldest of them was.
    sent_today: i64,
    oldest_today_ms: Option<i64>,
    /// Codes the session was sent in the last 24 hours, before this one,
    /// and when the first of them was.
    session_today: i64,
    first_today_ms: Option<i64>,
}

/// Whether a code may go out now. Of the send limits that refuse it, the
/// one that lasts longest answers: told to wait for the 60 s spacing, the
/// client would be refused again by the daily limit.
fn may_send(
    conn: &Connection,
    session: &Session,
    line: &Line,
    latest: Option<Verification>,
    now_ms: i64,
) -> Result<Allowed> {
    if session.status == "abandoned" {
        return Err(Error::conflict(format!(
            "session {} is abandoned; no code is sent for it",
            quote(session.id)
        )));
    }
    // Verified once is verified: also when another number was verified or
    // sent a code since (completion maps the number verified all the same).
    // Unless the number stays unrouted after completion, free now: a new
    // code claims it (see `verification::claim`).
    if verification::verified_for(conn, session.id, &line.number)? {
        let verified = || {
            format!(
                "phone {} is already verified for session {}",
                quote(&line.number),
                quote(session.id)
            )
        };
        // Before completion, completion routes it.
        if session.status != "completed" {
            return Err(Error::conflict(verified()));
        }
        match verification::claim(conn, &session.tenant_id, &line.number)? {
            Claim::Free => {}
            Claim::Held => return Err(Error::conflict(verified())),
            Claim::Taken => {
                return Err(Error::conflict(format!(
                    "{}; another tenant routes it (a new code can route it here once that \
                     tenant's mapping is released)",
                    verified()
                )))
            }
        }
    }
    // Each refusal: its text and how long it lasts.
    let mut refusals: Vec<(String, i64)> = Vec::new();
    let mut live = None;
    if let Some(v) = latest {
        // The spacing counts the session's last code, to whichever number:
        // a changed business phone waits out the 60 s too, so that one
        // session cannot send codes to number after number at once (SMS
        // pumping); changing back does not shorten a number's wait either.
        if let Some(last_sent) = Verification::last_sent_by(conn, session.id)? {
            // A clock set back since (the last send looks ahead of now)
            // says nothing of the time between: the spacing counts as
            // met, rather than hold the session for as long as the clock
            // went back.
            let since = now_ms - last_sent;
            if (0..RESEND_AFTER_MS).contains(&since) {
                refusals.push((
                    format!(
                        "a code was sent {} s ago; codes are sent at least 60 s apart",
                        since / 1000
                    ),
                    RESEND_AFTER_MS - since,
                ));
            }
        }
        if v.is_live(now_ms)? && v.phone_number == line.number {
            if v.sends >= MAX_SENDS {
                refusals.push((
                    format!(
                        "verification {} has had its {MAX_SENDS} sends; a new one can start \
                         when its code expires",
                        quote(&v.id)
                    ),
                    v.expires_ms()? - now_ms,
                ));
            }
            live = Some(v);
        }
    }
    let (sent_today, oldest) = outbox::sent_since(conn, &line.number, &iso8601(now_ms - DAY_MS))?;
    let oldest_today_ms = oldest.as_deref().and_then(crate::env::parse_iso8601);
    if sent_today >= MAX_SENDS_PER_NUMBER {
        refusals.push((
            format!(
                "phone {} was sent {sent_today} codes in the last 24 hours, the most allowed",
                quote(&line.number)
            ),
            day_after(oldest_today_ms, now_ms) - now_ms,
        ));
    }
    let (session_today, first_today_ms) = session_sent_since(conn, session.id, now_ms - DAY_MS)?;
    if session_today >= MAX_SENDS_PER_SESSION {
        refusals.push((
            format!(
                "session {} was sent {session_today} codes in the last 24 hours, the most allowed",
                quote(session.id)
            ),
            day_after(first_today_ms, now_ms) - now_ms,
        ));
    }
    if let Some((text, wait_ms)) = refusals.into_iter().max_by_key(|(_, wait)| *wait) {
        return Err(Error::rate_limited(text, wait_ms));
    }
    Ok(Allowed {
        live,
        sent_today,
        oldest_today_ms,
        session_today,
        first_today_ms,
    })
}

/// When a daily limit whose first counted send was at `first_ms` frees a
/// send again: a day after it. After a clock set back, that send looks
/// ahead of now, and the limit holds for a day and the time the clock went
/// back: said as it is, since the sends stay counted until then (a shorter
/// `Retry-After` would be refused again).
fn day_after(first_ms: Option<i64>, now_ms: i64) -> i64 {
    first_ms.unwrap_or(now_ms) + DAY_MS
}

/// The codes session `session_id` was sent after `since_ms`, and when the
/// first of them was: each send is an outbox row of one of its
/// verifications.
fn session_sent_since(
    conn: &Connection,
    session_id: &str,
    since_ms: i64,
) -> Result<(i64, Option<i64>)> {
    let (sent, first): (i64, Option<String>) = sql::query_row(
        conn,
        "SELECT count(*), min(m.created_at) FROM main.phone_verifications v
         JOIN main.outbox_messages m ON m.verification_id = v.id
         WHERE v.session_id = ?1 AND m.created_at > ?2",
        (session_id, iso8601(since_ms)),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((sent, first.as_deref().and_then(crate::env::parse_iso8601)))
}

/// When the daily limits let session `session_id` send `phone` a code
/// again, if one of them holds it now: the number's (10 codes a day across
/// tenants) and the session's (10 whatever its numbers). `onboarding_get`
/// counts them into the verification's `resend_after`, as a send's answer
/// does.
pub fn daily_limit_until(
    conn: &Connection,
    session_id: &str,
    phone: &str,
    now_ms: i64,
) -> Result<Option<i64>> {
    let since = now_ms - DAY_MS;
    let mut until = None;
    let (to_number, oldest) = outbox::sent_since(conn, phone, &iso8601(since))?;
    if to_number >= MAX_SENDS_PER_NUMBER {
        let oldest = oldest.as_deref().and_then(crate::env::parse_iso8601);
        until = Some(day_after(oldest, now_ms));
    }
    let (by_session, first) = session_sent_since(conn, session_id, since)?;
    if by_session >= MAX_SENDS_PER_SESSION {
        until = until.max(Some(day_after(first, now_ms)));
    }
    Ok(until)
}

/// The earliest time the next code may go out after one sent at `now_ms`,
/// the `sends`-th of its verification (expiring at `expires_ms`), by every
/// send limit: the 60 s spacing, the verification's sends, the number's
/// and the session's daily limits.
fn next_send_ms(allowed: &Allowed, sends: i64, expires_ms: i64, now_ms: i64) -> i64 {
    let mut next = now_ms + RESEND_AFTER_MS;
    if sends >= MAX_SENDS {
        next = next.max(expires_ms);
    }
    if allowed.sent_today + 1 >= MAX_SENDS_PER_NUMBER {
        next = next.max(day_after(allowed.oldest_today_ms, now_ms));
    }
    if allowed.session_today + 1 >= MAX_SENDS_PER_SESSION {
        next = next.max(day_after(allowed.first_today_ms, now_ms));
    }
    next
}

/// The French message carrying `code`: read out digit by digit, twice, on
/// a call. Its validity counts from the request, which stays true of a
/// message a sender takes out late ("expires in 10 minutes" did not).
fn message_text(channel: Channel, code: &str) -> String {
    match channel {
        Channel::Sms => format!(
            "Votre code de vérification : {code}. Il est valable 10 minutes après votre demande. \
             Ne le communiquez à personne."
        ),
        Channel::Voice => {
            let spoken: Vec<String> = code.chars().map(String::from).collect();
            let spoken = spoken.join(", ");
            format!("Bonjour. Votre code de vérification est : {spoken}. Je répète : {spoken}.")
        }
    }
}

// -- onboarding_phone_verify('onb_…', '{"code":"123456"}')
//      -> '{"success":true,"verification_id":"ver_…","phone_number":"+33612345678",
//           "status":"verified","is_active":true,"reason":null}'
/// Checks `code` against the session's live verification. Right: the
/// verification is used up, and after completion the tenant's mapping
/// becomes verified, and active unless another tenant routes the number.
/// Wrong: the attempt is counted (committed), then `invalid_field`.
pub fn verify(
    conn: &Connection,
    env: &dyn Env,
    session_id: &str,
    payload: Option<&str>,
    request_key: Option<&str>,
) -> Result<Value> {
    // As in `send`: the code's error comes after the session's.
    let code = code_field(&validate::payload_object(payload)?);
    let keyed = replies::keyed("onboarding_phone_verify", session_id, payload, request_key)?;
    // The outer Result rolls back; the inner one is the answer, given after
    // the writes are kept (a wrong code's attempt must count).
    in_savepoint(conn, || {
        replies::once(conn, env, keyed.as_ref(), || {
            check_code(conn, env, session_id, code)
        })
    })?
}

/// The body of [`verify`], in its savepoint: the outer error rolls back,
/// the inner one is answered with the writes kept.
fn check_code(
    conn: &Connection,
    env: &dyn Env,
    session_id: &str,
    code: Result<String>,
) -> Result<Result<Value>> {
    {
        let session = SessionHead::load(conn, session_id)?;
        let code = &code?;
        let now_ms = env.now_ms();
        let now = iso8601(now_ms);
        let v = checkable(conn, &session, now_ms)?;
        let secret = verification::secret(conn)?;
        if !otp::matches(&secret, &v.id, code, &v.code_hmac)? {
            return wrong_code(conn, &v, &now).map(Err);
        }
        sql::execute(
            conn,
            "UPDATE main.phone_verifications SET status = 'verified', verified_at = ?2, updated_at = ?2
             WHERE id = ?1",
            (&v.id, &now),
        )?;
        outbox::withdraw(conn, &v.id, "cancelled", &now)?;
        let reason = activate(conn, &session, &v.phone_number, &now)?;
        Ok(Ok(json!({
            "success": true,
            "verification_id": v.id,
            "phone_number": v.phone_number,
            "status": "verified",
            "is_active": reason.is_none(),
            "reason": reason,
        })))
    }
}

/// The payload's `code`: six digits, as a string (leading zeros count).
/// Never quoted back: a near miss of the real code has no place in a log.
/// Typed as people type codes read out to them, it is taken as meant:
/// spaces, dots and dashes between the digits dropped ("12 34 56",
/// "123-456"), full-width digits (a Japanese or Chinese keyboard's) read as
/// digits.
fn code_field(map: &Object) -> Result<String> {
    let code: String = match map.get("code") {
        None | Some(Value::Null) => return Err(Error::invalid_field("code is required")),
        Some(Value::String(code)) => code
            .trim()
            .chars()
            .filter(|c| !(c.is_whitespace() || matches!(c, '.' | '-' | '‐' | '‑' | '–' | '—')))
            .map(|c| match c {
                '０'..='９' => char::from(b'0' + (c as u32 - '０' as u32) as u8),
                c => c,
            })
            .collect(),
        Some(other) => {
            return Err(Error::invalid_field(format!(
                "code must be a string of {} digits, got {}",
                otp::CODE_DIGITS,
                type_name(other)
            )))
        }
    };
    let chars = code.chars().count();
    if chars != otp::CODE_DIGITS {
        return Err(Error::invalid_field(format!(
            "code must be {} digits, got {chars} character{}",
            otp::CODE_DIGITS,
            if chars == 1 { "" } else { "s" }
        )));
    }
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid_field(format!(
            "code must be {} digits, got a character other than 0-9",
            otp::CODE_DIGITS
        )));
    }
    Ok(code.to_string())
}

/// The session's verification, when a code of it may be checked now.
fn checkable(conn: &Connection, session: &SessionHead, now_ms: i64) -> Result<Verification> {
    // The business phone's own verification, the one `onboarding_get`
    // shows: after the phone went from A to B and back to A, the latest
    // row is B's (cancelled), while A's may be verified already. A pending
    // one is always the current phone's (a change cancels it). With none
    // for this phone, a code typed is the last number's: its cancellation
    // says why it no longer counts; anything else of another number
    // (verified, locked) would read as this one's state.
    let phone: Option<String> = sql::query_row(
        conn,
        "SELECT json_extract(business_data, '$.phone') FROM main.onboarding_sessions WHERE rowid = ?1",
        [session.rowid],
        |r| r.get(0),
    )?;
    let v = match &phone {
        Some(phone) => match Verification::latest_of(conn, session.id, phone)? {
            Some(v) => Some(v),
            None => match Verification::latest(conn, session.id)? {
                Some(v) if v.status == "cancelled" => Some(v),
                Some(_) => {
                    return Err(Error::conflict(format!(
                        "no code was sent to {} (send one first)",
                        quote(phone)
                    )))
                }
                None => None,
            },
        },
        // No business phone, so no code was ever sent.
        None => None,
    };
    let v = v.ok_or_else(|| {
        Error::conflict(format!(
            "no code was sent for session {} (send one first)",
            quote(session.id)
        ))
    })?;
    let id = quote(&v.id);
    match v.state(now_ms)? {
        "pending" => Ok(v),
        "verified" => Err(Error::conflict(format!(
            "verification {id} is already used: phone {} is verified",
            quote(&v.phone_number)
        ))),
        "failed" => Err(Error::conflict(format!(
            "verification {id} is locked after {MAX_ATTEMPTS} wrong codes (send a new code)"
        ))),
        "cancelled" => Err(Error::conflict(format!(
            "verification {id} was cancelled when the business phone changed (send a new code)"
        ))),
        _ => Err(Error::conflict(format!(
            "the code of verification {id} expired at {} (send a new code)",
            v.expires_at
        ))),
    }
}

/// Counts a wrong code (the fifth locks the verification) and answers the
/// error saying how many tries are left.
fn wrong_code(conn: &Connection, v: &Verification, now: &str) -> Result<Error> {
    let attempts = v.attempts + 1;
    let locked = attempts >= MAX_ATTEMPTS;
    sql::execute(
        conn,
        "UPDATE main.phone_verifications
         SET attempts = ?2, status = CASE WHEN ?3 THEN 'failed' ELSE status END, updated_at = ?4
         WHERE id = ?1",
        (&v.id, attempts, locked, now),
    )?;
    if locked {
        outbox::withdraw(conn, &v.id, "cancelled", now)?;
    }
    Ok(Error::invalid_field(match MAX_ATTEMPTS - attempts {
        0 => "code is wrong; no tries left (send a new code)".to_string(),
        1 => "code is wrong; 1 try left".to_string(),
        left => format!("code is wrong; {left} tries left"),
    }))
}

/// After a right code: a completed session's mapping becomes verified, and
/// active unless another tenant routes the number. Answers why the number
/// is not active, or `None` when it is.
fn activate(
    conn: &Connection,
    session: &SessionHead,
    phone: &str,
    now: &str,
) -> Result<Option<String>> {
    let elsewhere = verification::active_elsewhere(conn, &session.tenant_id, phone)?;
    if session.status != "completed" {
        return Ok(Some(if elsewhere {
            verification::active_elsewhere_reason(phone)
        } else {
            verification::NOT_COMPLETED.to_string()
        }));
    }
    sql::execute(
        conn,
        "INSERT INTO main.omni_phone_mappings (phone_number, tenant_id, is_active, status,
                                          created_at, updated_at)
         VALUES (?1, ?2, ?3, 'verified', ?4, ?4)
         ON CONFLICT (tenant_id, phone_number) DO UPDATE SET
             status = 'verified', is_active = excluded.is_active, updated_at = excluded.updated_at",
        (phone, &session.tenant_id, !elsewhere, now),
    )?;
    Ok(elsewhere.then(|| verification::active_elsewhere_reason(phone)))
}
