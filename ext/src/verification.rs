//! Phone verification's rules and rows: the numbers a code may go to
//! ([`line`]: French, mobile or fixed), a session's latest verification
//! ([`Verification`]), and what the business step and the sync ask of them
//! (cancelling a verification of a replaced number, whether a number is
//! verified for a session, whether another tenant routes it already).

use phonenumber::Type;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{json, Value};

use crate::env::{iso8601, parse_iso8601};
use crate::error::{quote, Error, Result};
use crate::otp;
use crate::outbox;
use crate::sql;

/// A code is valid this long after it is sent.
pub const CODE_TTL_MS: i64 = 10 * 60 * 1000;
/// The shortest time between two sends of one session.
pub const RESEND_AFTER_MS: i64 = 60 * 1000;
/// Wrong codes a verification takes before it is dead.
pub const MAX_ATTEMPTS: i64 = 5;
/// Sends (the first and the resends) of one verification.
pub const MAX_SENDS: i64 = 5;
/// Sends to one number over [`DAY_MS`], across all tenants.
pub const MAX_SENDS_PER_NUMBER: i64 = 10;
/// Sends of one session over [`DAY_MS`], whatever the numbers: a session
/// changing its business phone between sends would otherwise send codes
/// to any number of numbers (SMS pumping), each with its own limits.
pub const MAX_SENDS_PER_SESSION: i64 = 10;
pub const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The country calling codes codes go to: metropolitan France (+33) and the
/// overseas departments: Réunion and Mayotte (+262), Guadeloupe (+590),
/// French Guiana (+594), Martinique (+596). Anything else is refused: SMS
/// pumping buys expensive foreign routes.
pub const FRENCH_CALLING_CODES: [u16; 5] = [33, 262, 590, 594, 596];

/// The channels a code goes by, as payloads name them.
pub const CODE_CHANNELS: [&str; 2] = ["sms", "voice"];

/// How a code reaches the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Sms,
    Voice,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Sms => "sms",
            Channel::Voice => "voice",
        }
    }

    pub fn parse(name: &str) -> Option<Channel> {
        match name {
            "sms" => Some(Channel::Sms),
            "voice" => Some(Channel::Voice),
            _ => None,
        }
    }
}

/// A number codes may go to.
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    /// E.164.
    pub number: String,
    /// A mobile takes SMS; a fixed or toll-free line only calls.
    pub mobile: bool,
    /// A toll-free line (numéro vert), named so when an SMS is asked for.
    pub toll_free: bool,
}

impl Line {
    /// The channel when the caller names none: `sms` for a mobile, `voice`
    /// for a fixed line.
    pub fn default_channel(&self) -> Channel {
        if self.mobile {
            Channel::Sms
        } else {
            Channel::Voice
        }
    }
}

/// `phone` (E.164, as the business step saved it) as a line codes may go
/// to, or the `invalid_field` error on `phone` saying why not.
pub fn line(phone: &str) -> Result<Line> {
    let number = phonenumber::parse(None, phone)
        .map_err(|_| Error::internal(format!("stored phone {} does not parse", quote(phone))))?;
    if !FRENCH_CALLING_CODES.contains(&number.code().value()) {
        return Err(Error::invalid_field(format!(
            "phone {} is not a French number; codes go only to +33 and the overseas \
             departments (+262, +590, +594, +596)",
            quote(phone)
        )));
    }
    let national = number.national().to_string();
    let kind = number.number_type(&phonenumber::metadata::DATABASE);
    let mobile = match kind {
        Type::Mobile | Type::FixedLineOrMobile => true,
        // A toll-free number (a numéro vert, 0800 to 0805 in France)
        // takes calls, free to its callers: a business answering on one
        // can prove it. Shared-cost and premium-rate ones are refused
        // below: calls to them pay their operator, which is what toll
        // fraud buys.
        Type::FixedLine | Type::Voip | Type::TollFree => false,
        // A French number of a block the metadata does not list yet (the
        // business step takes them): its type by the plan's first digit,
        // 06 and 07 mobile, 01 to 05 and 09 geographic or VoIP lines (the
        // metadata lists every 08 block: one it does not is refused).
        Type::Unknown if crate::validate::french_plan(number.code().value(), &national) => {
            match national.as_bytes()[0] {
                b'6' | b'7' => true,
                b'1'..=b'5' | b'9' => false,
                _ => {
                    return Err(Error::invalid_field(format!(
                        "phone {} is a special-rate number (08); codes go only to mobile, \
                         fixed and toll-free lines",
                        quote(phone)
                    )))
                }
            }
        }
        other => {
            return Err(Error::invalid_field(format!(
                "phone {} is {}; codes go only to mobile, fixed and toll-free lines",
                quote(phone),
                type_name(other)
            )))
        }
    };
    Ok(Line {
        number: phone.to_string(),
        mobile,
        toll_free: kind == Type::TollFree,
    })
}

fn type_name(kind: Type) -> &'static str {
    match kind {
        Type::PremiumRate => "a premium-rate number",
        Type::SharedCost => "a shared-cost number",
        Type::PersonalNumber => "a personal number",
        Type::Pager => "a pager number",
        Type::Uan => "a company (UAN) number",
        Type::Voicemail => "a voicemail number",
        _ => "a number of unknown type",
    }
}

/// One row of `phone_verifications`.
#[derive(Debug)]
pub struct Verification {
    pub id: String,
    pub phone_number: String,
    pub channel: String,
    pub code_hmac: String,
    pub expires_at: String,
    pub attempts: i64,
    pub sends: i64,
    pub last_sent_at: String,
    /// As stored: `pending`, `verified`, `failed` or `cancelled`.
    pub status: String,
    pub verified_at: Option<String>,
}

// "Latest" is the last made (rowid: rows are never deleted), not the
// latest time: after a clock set back, a verification stamped before stays
// the latest time for as long as the clock went back, and the code sent
// since would never be checked.
impl Verification {
    /// The latest verification of `session_id`, if any.
    pub fn latest(conn: &Connection, session_id: &str) -> Result<Option<Verification>> {
        Verification::query(
            conn,
            "SELECT id, phone_number, channel, code_hmac, expires_at, attempts,
                    sends, last_sent_at, status, verified_at
             FROM main.phone_verifications WHERE session_id = ?1
             ORDER BY rowid DESC LIMIT 1",
            [session_id],
        )
    }

    /// The latest verification of `phone` by `session_id`, if any.
    pub fn latest_of(
        conn: &Connection,
        session_id: &str,
        phone: &str,
    ) -> Result<Option<Verification>> {
        Verification::query(
            conn,
            "SELECT id, phone_number, channel, code_hmac, expires_at, attempts,
                    sends, last_sent_at, status, verified_at
             FROM main.phone_verifications WHERE session_id = ?1 AND phone_number = ?2
             ORDER BY rowid DESC LIMIT 1",
            (session_id, phone),
        )
    }

    fn query(
        conn: &Connection,
        sql_text: &'static str,
        params: impl rusqlite::Params,
    ) -> Result<Option<Verification>> {
        Ok(sql::query_row(conn, sql_text, params, |r| {
            Ok(Verification {
                id: r.get(0)?,
                phone_number: r.get(1)?,
                channel: r.get(2)?,
                code_hmac: r.get(3)?,
                expires_at: r.get(4)?,
                attempts: r.get(5)?,
                sends: r.get(6)?,
                last_sent_at: r.get(7)?,
                status: r.get(8)?,
                verified_at: r.get(9)?,
            })
        })
        .optional()?)
    }

    /// When `session_id` last had a code sent, to any number (epoch ms), if
    /// ever.
    pub fn last_sent_by(conn: &Connection, session_id: &str) -> Result<Option<i64>> {
        // The last message queued, not the latest time: after a clock set
        // back, a code stamped before stays the latest time for as long as
        // the clock went back, and would leave every send since unspaced.
        let last: Option<String> = sql::query_row(
            conn,
            "SELECT m.created_at FROM main.phone_verifications v
             JOIN main.outbox_messages m ON m.verification_id = v.id
             WHERE v.session_id = ?1 ORDER BY m.id DESC LIMIT 1",
            [session_id],
            |r| r.get(0),
        )
        .optional()?;
        last.as_deref().map(stored_time).transpose()
    }

    pub fn expires_ms(&self) -> Result<i64> {
        stored_time(&self.expires_at)
    }

    pub fn last_sent_ms(&self) -> Result<i64> {
        stored_time(&self.last_sent_at)
    }

    /// The status at `now_ms`: a pending code past its expiry is `expired`.
    pub fn state(&self, now_ms: i64) -> Result<&str> {
        Ok(match self.status.as_str() {
            "pending" if now_ms >= self.expires_ms()? => "expired",
            status => status,
        })
    }

    /// Whether a code of this verification may still be checked or resent.
    pub fn is_live(&self, now_ms: i64) -> Result<bool> {
        Ok(self.state(now_ms)? == "pending")
    }

    /// What `onboarding_get` shows: the state, never the code.
    pub fn to_json(&self, now_ms: i64) -> Result<Value> {
        // After its last send a verification takes no more codes; a new
        // one starts when its code expires.
        // A last send ahead of now (a clock set back since) holds nothing.
        let mut resend_after = self.last_sent_ms()?.min(now_ms) + RESEND_AFTER_MS;
        if self.sends >= MAX_SENDS {
            resend_after = resend_after.max(self.expires_ms()?);
        }
        let resend_after = iso8601(resend_after);
        Ok(json!({
            "verification_id": self.id,
            "phone_number": self.phone_number,
            "channel": self.channel,
            "status": self.state(now_ms)?,
            "attempts_left": MAX_ATTEMPTS - self.attempts,
            "sends": self.sends,
            "expires_at": self.expires_at,
            "resend_after": resend_after,
            "verified_at": self.verified_at,
        }))
    }
}

fn stored_time(text: &str) -> Result<i64> {
    parse_iso8601(text)
        .ok_or_else(|| Error::internal(format!("stored time {} is unreadable", quote(text))))
}

/// The key of the codes' HMAC, made by `onboarding_migrate()`.
pub fn secret(conn: &Connection) -> Result<String> {
    sql::query_row(
        conn,
        "SELECT value FROM main.onboarding_secrets WHERE name = ?1",
        [otp::SECRET_NAME],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| {
        Error::internal(format!(
            "the secret {} is missing (run SELECT onboarding_migrate())",
            quote(otp::SECRET_NAME)
        ))
    })
}

/// The business phone changed to `phone`: a pending verification of another
/// number is cancelled, and its unsent messages with it.
pub fn cancel_other_numbers(
    conn: &Connection,
    session_id: &str,
    phone: &str,
    now: &str,
) -> Result<()> {
    // A SELECT first, not UPDATE … RETURNING: RETURNING opens an ephemeral
    // table even when no row matches, which is every business step but
    // those that change a number under verification.
    let pending: Vec<String> = sql::with(
        conn,
        "SELECT id FROM main.phone_verifications
         WHERE session_id = ?1 AND status = 'pending' AND phone_number <> ?2",
        |s| {
            s.query_map((session_id, phone), |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()
        },
    )?;
    for id in pending {
        sql::execute(
            conn,
            "UPDATE main.phone_verifications SET status = 'cancelled', updated_at = ?2 WHERE id = ?1",
            (&id, now),
        )?;
        outbox::withdraw(conn, &id, "cancelled", now)?;
    }
    Ok(())
}

/// Whether `phone` was verified by `session_id` (before completion: the
/// sync then creates the mapping verified).
pub fn verified_for(conn: &Connection, session_id: &str, phone: &str) -> Result<bool> {
    Ok(sql::query_row(
        conn,
        "SELECT EXISTS (SELECT 1 FROM main.phone_verifications
                        WHERE session_id = ?1 AND phone_number = ?2 AND status = 'verified')",
        (session_id, phone),
        |r| r.get(0),
    )?)
}

/// Whether a tenant other than `tenant_id` has `phone` active: then this
/// tenant's mapping stays inactive, verified or not.
pub fn active_elsewhere(conn: &Connection, tenant_id: &str, phone: &str) -> Result<bool> {
    Ok(sql::query_row(
        conn,
        "SELECT EXISTS (SELECT 1 FROM main.omni_phone_mappings
                        WHERE phone_number = ?1 AND is_active = 1 AND tenant_id <> ?2)",
        (phone, tenant_id),
        |r| r.get(0),
    )?)
}

/// Whether a new code may claim a number a completed tenant verified: its
/// mapping is active until the runtime or an operator makes it inactive
/// (or a tenant routed it first), and then only a new proof of control
/// routes it here, once no tenant does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The tenant's mapping routes it: nothing to claim.
    Held,
    /// Another tenant routes it.
    Taken,
    /// The tenant's mapping is inactive (or gone) and no tenant routes it.
    Free,
}

/// Which [`Claim`] `tenant_id` has on `phone`, verified by its session.
pub fn claim(conn: &Connection, tenant_id: &str, phone: &str) -> Result<Claim> {
    let held: bool = sql::query_row(
        conn,
        "SELECT EXISTS (SELECT 1 FROM main.omni_phone_mappings
                        WHERE tenant_id = ?1 AND phone_number = ?2 AND is_active = 1)",
        (tenant_id, phone),
        |r| r.get(0),
    )?;
    Ok(if held {
        Claim::Held
    } else if active_elsewhere(conn, tenant_id, phone)? {
        Claim::Taken
    } else {
        Claim::Free
    })
}

/// The reason given with `is_active:false` before completion.
pub const NOT_COMPLETED: &str = "the onboarding is not completed yet; completion activates the \
                                 verified number";

/// What the verify answer said of a verified `phone`, read again (for
/// `onboarding_get`): whether it routes the calls of `tenant_id`, and if
/// not, why. Before completion it does not yet; after it, only another
/// tenant's active mapping of the number holds it back.
pub fn routing(
    conn: &Connection,
    tenant_id: &str,
    completed: bool,
    phone: &str,
) -> Result<(bool, Option<String>)> {
    if !completed {
        let reason = if active_elsewhere(conn, tenant_id, phone)? {
            active_elsewhere_reason(phone)
        } else {
            NOT_COMPLETED.to_string()
        };
        return Ok((false, Some(reason)));
    }
    Ok(match claim(conn, tenant_id, phone)? {
        Claim::Held => (true, None),
        Claim::Taken => (false, Some(active_elsewhere_reason(phone))),
        Claim::Free => (false, Some(unrouted_reason(phone))),
    })
}

/// Why the verified mapping of `phone` to `tenant_id` is inactive: another
/// tenant routes the number, or none does (the mapping was written or made
/// inactive by the runtime or an operator: no function of the library
/// leaves a verified number unrouted).
pub fn inactive_reason(conn: &Connection, tenant_id: &str, phone: &str) -> Result<String> {
    Ok(if active_elsewhere(conn, tenant_id, phone)? {
        active_elsewhere_reason(phone)
    } else {
        unrouted_reason(phone)
    })
}

/// The reason given with `is_active:false` when no tenant routes the
/// verified number: a new code claims it (see [`Claim::Free`]).
fn unrouted_reason(phone: &str) -> String {
    format!(
        "phone {} is verified, but its mapping is inactive; no tenant routes it \
         (send a new code to route it here)",
        quote(phone)
    )
}

/// The reason given with `is_active:false` when another tenant routes the number.
pub fn active_elsewhere_reason(phone: &str) -> String {
    format!(
        "phone {} is already active for another tenant; it stays inactive here",
        quote(phone)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_mobiles_take_sms_and_fixed_lines_calls() {
        assert_eq!(line("+33612345678").map(|l| l.mobile), Ok(true));
        assert_eq!(line("+33756781234").map(|l| l.mobile), Ok(true));
        assert_eq!(line("+33142685300").map(|l| l.mobile), Ok(false));
        assert_eq!(
            line("+33987654321").map(|l| l.default_channel()),
            Ok(Channel::Voice)
        );
        // Réunion, Guadeloupe, French Guiana, Martinique mobiles.
        for overseas in [
            "+262692123456",
            "+590690123456",
            "+594694123456",
            "+596696123456",
        ] {
            assert_eq!(line(overseas).map(|l| l.mobile), Ok(true), "{overseas}");
        }
    }

    #[test]
    fn foreign_and_premium_numbers_get_no_code() {
        assert_eq!(
            line("+4915123456789"),
            Err(Error::invalid_field(
                "phone '+4915123456789' is not a French number; codes go only to +33 and the \
                 overseas departments (+262, +590, +594, +596)"
            ))
        );
        assert_eq!(
            line("+33891234567"),
            Err(Error::invalid_field(
                "phone '+33891234567' is a premium-rate number; codes go only to mobile, \
                 fixed and toll-free lines"
            ))
        );
        // A numéro vert, in France and overseas: calls only.
        for toll_free in ["+33800123456", "+33805123456", "+262800123456"] {
            assert_eq!(
                line(toll_free).map(|l| (l.mobile, l.toll_free)),
                Ok((false, true)),
                "{toll_free}"
            );
        }
    }
}
