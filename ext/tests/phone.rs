//! Phone verification: `onboarding_phone_send`, `onboarding_phone_verify`
//! and the outbox a sender drains. Each rule with a case that passes and one
//! that fails, with the exact error text; time is the pinned clock's.

mod common;

use common::{Db, T0};
use serde_json::{json, Value};

const MOBILE: &str = "+33612345678";
/// 2026-11-24T10:00:00.000Z plus the given milliseconds.
fn at(offset_ms: i64) -> String {
    let t = chrono::DateTime::from_timestamp_millis(T0 + offset_ms).unwrap();
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn business_with(db: &Db, session: &str, phone: &str, email: &str) {
    db.step(
        session,
        "business",
        &format!(
            r#"{{"company_name":"Mon Entreprise","industry":"Immobilier","phone":"{phone}","email":"{email}"}}"#
        ),
    )
    .unwrap();
}

/// A session with the business step saved (phone 06 12 34 56 78).
fn with_business(db: &Db, email: &str) -> String {
    let s = db.create();
    db.business(&s, email);
    s
}

fn send(db: &Db, session: &str, payload: &str) -> Result<Value, String> {
    db.call(
        "SELECT onboarding_phone_send(?1, ?2)",
        &[&session, &payload],
    )
}

fn verify(db: &Db, session: &str, code: &str) -> Result<Value, String> {
    db.call(
        "SELECT onboarding_phone_verify(?1, ?2)",
        &[&session, &json!({ "code": code }).to_string()],
    )
}

fn claim(db: &Db, worker: &str, lease_seconds: i64) -> Value {
    db.call(
        "SELECT onboarding_outbox_claim(?1, ?2)",
        &[&worker, &lease_seconds],
    )
    .unwrap()
}

/// What a sender does: claim the next message, read the code in its text,
/// report it sent. Returns the code.
fn deliver(db: &Db) -> String {
    let claimed = claim(db, "test-sender", 60);
    let message = &claimed["message"];
    let id = message["id"].as_i64().expect("a message to deliver");
    let code = code_in(message["text"].as_str().unwrap());
    db.call(
        "SELECT onboarding_outbox_sent(?1, 'test-sender', 'provider-1')",
        &[&id],
    )
    .unwrap();
    code
}

/// The six digits of an SMS text.
fn code_in(text: &str) -> String {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    // "… : 123456. Il est valable 10 minutes …" -> the first six digits.
    digits[..6].to_string()
}

/// A code that is not `code`.
fn wrong(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

fn verification_row(db: &Db, id: &str) -> Value {
    db.row(
        "SELECT phone_number, channel, expires_at, attempts, sends, last_sent_at, status,
                request_ip, created_at, updated_at, verified_at
         FROM phone_verifications WHERE id = ?1",
        &[&id],
    )
}

fn mapping(db: &Db, tenant: &str) -> Value {
    db.row(
        "SELECT phone_number, is_active, status FROM omni_phone_mappings WHERE tenant_id = ?1",
        &[&tenant],
    )
}

/// The runtime's lookup: which tenant a call to `phone` goes to.
fn routed_to(db: &Db, phone: &str) -> Vec<Value> {
    db.rows(
        "SELECT tenant_id FROM omni_phone_mappings WHERE phone_number = ?1 AND is_active = 1",
        &[&phone],
    )
}

fn tenant_of(db: &Db, session: &str) -> String {
    db.get(session)["tenant_id"].as_str().unwrap().to_string()
}

#[test]
fn send_answers_the_verification_and_queues_one_message() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    let tenant = tenant_of(&db, &s);
    let sent = send(&db, &s, "{}").unwrap();
    let id = sent["verification_id"].as_str().unwrap();
    // ver_ and a v7 uuid of T0's time.
    assert!(id.starts_with("ver_01a20cff7d00") && id.len() == 36, "{id}");
    assert_eq!(
        sent,
        json!({
            "success": true,
            "verification_id": id,
            "phone_number": MOBILE,
            "channel": "sms",
            "expires_at": "2026-11-24T10:10:00.000Z",
            "resend_after": "2026-11-24T10:01:00.000Z",
        })
    );
    assert_eq!(
        verification_row(&db, id),
        json!({
            "phone_number": MOBILE, "channel": "sms", "expires_at": "2026-11-24T10:10:00.000Z",
            "attempts": 0, "sends": 1, "last_sent_at": at(0), "status": "pending",
            "request_ip": null, "created_at": at(0), "updated_at": at(0), "verified_at": null,
        })
    );
    assert_eq!(
        db.row(
            "SELECT session_id, tenant_id, length(code_hmac) AS hmac_length
             FROM phone_verifications",
            &[]
        ),
        json!({"session_id": s, "tenant_id": tenant, "hmac_length": 64})
    );
    let message = db.row(
        "SELECT id, verification_id, recipient, channel, text, expires_at, status, lease_owner,
                lease_until, claims, provider_id, last_error, created_at, sent_at
         FROM outbox_messages",
        &[],
    );
    let text = message["text"].as_str().unwrap().to_string();
    let code = code_in(&text);
    assert_eq!(
        text,
        format!(
            "Votre code de vérification : {code}. Il est valable 10 minutes après votre demande. \
             Ne le communiquez à personne."
        )
    );
    assert_eq!(
        message,
        json!({
            "id": 1, "verification_id": id, "recipient": MOBILE, "channel": "sms", "text": text,
            "expires_at": "2026-11-24T10:10:00.000Z", "status": "queued", "lease_owner": null,
            "lease_until": null, "claims": 0, "provider_id": null, "last_error": null,
            "created_at": at(0), "sent_at": null,
        })
    );
    assert!(!sent.to_string().contains(&code));
}

#[test]
fn send_keeps_the_hosts_client_address() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    let sent = db
        .call(
            "SELECT onboarding_phone_send(?1, NULL, '203.0.113.7')",
            &[&s],
        )
        .unwrap();
    let id = sent["verification_id"].as_str().unwrap();
    assert_eq!(verification_row(&db, id)["request_ip"], "203.0.113.7");
    assert_eq!(
        db.call(
            "SELECT onboarding_phone_send(?1, NULL, 'localhost')",
            &[&s]
        )
        .unwrap_err(),
        "onboarding_phone_send: invalid_field: ip_address 'localhost' is not an IPv4 or IPv6 address"
    );
}

#[test]
fn mobiles_get_an_sms_and_fixed_lines_a_call_by_default() {
    let db = Db::memory();
    let fixed = db.create();
    business_with(&db, &fixed, "01 42 68 53 00", "fixe@entreprise.fr");
    let sent = send(&db, &fixed, "{}").unwrap();
    assert_eq!(sent["phone_number"], "+33142685300");
    assert_eq!(sent["channel"], "voice");
    let text = claim(&db, "w", 60)["message"]["text"]
        .as_str()
        .unwrap()
        .to_string();
    let code = code_in(&text);
    let spoken: Vec<String> = code.chars().map(String::from).collect();
    let spoken = spoken.join(", ");
    assert_eq!(
        text,
        format!("Bonjour. Votre code de vérification est : {spoken}. Je répète : {spoken}.")
    );
    // A VoIP number (09) is a fixed line too, and a toll-free one (0800
    // to 0805) takes calls alone.
    let voip = db.create();
    business_with(&db, &voip, "09 87 65 43 21", "box@entreprise.fr");
    assert_eq!(send(&db, &voip, "{}").unwrap()["channel"], "voice");
    let free = db.create();
    business_with(&db, &free, "0 800 12 34 56", "vert@entreprise.fr");
    assert_eq!(
        send(&db, &free, r#"{"channel":"sms"}"#).unwrap_err(),
        "onboarding_phone_send: invalid_field: channel 'sms' cannot reach the toll-free line \
         '+33800123456' (use 'voice')"
    );
    assert_eq!(send(&db, &free, "{}").unwrap()["channel"], "voice");
    // Blocks libphonenumber's metadata does not list yet: typed by the
    // national plan's first digit (07 mobile, 04 geographic); a special-
    // rate 08 number takes no code.
    for (i, (typed, e164, channel)) in [
        ("07 12 34 56 78", "+33712345678", Ok("sms")),
        ("04 01 02 03 04", "+33401020304", Ok("voice")),
        (
            "08 70 00 00 00",
            "+33870000000",
            Err("onboarding_phone_send: invalid_field: phone '+33870000000' is a special-rate number (08); codes go only to mobile, fixed and toll-free lines"),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let s = db.create();
        business_with(&db, &s, typed, &format!("plan{i}@entreprise.fr"));
        let sent = send(&db, &s, "{}");
        match channel {
            Ok(channel) => {
                let sent = sent.unwrap();
                assert_eq!((sent["phone_number"].as_str(), sent["channel"].as_str()), (Some(e164), Some(channel)));
            }
            Err(error) => assert_eq!(sent.unwrap_err(), error),
        }
    }
    // A mobile may ask for a call, or for the SMS it gets by default.
    let mobile = with_business(&db, "mobile@entreprise.fr");
    assert_eq!(
        send(&db, &mobile, r#"{"channel":"voice"}"#).unwrap()["channel"],
        "voice"
    );
    let texted = with_business(&db, "sms@entreprise.fr");
    assert_eq!(
        send(&db, &texted, r#"{"channel":"sms"}"#).unwrap()["channel"],
        "sms"
    );
}

#[test]
fn channel_rules() {
    let db = Db::memory();
    let fixed = db.create();
    business_with(&db, &fixed, "01 42 68 53 00", "fixe@entreprise.fr");
    let cases = [
        (
            r#"{"channel":"sms"}"#,
            "onboarding_phone_send: invalid_field: channel 'sms' cannot reach the fixed line '+33142685300' (use 'voice')",
        ),
        (
            r#"{"channel":"fax"}"#,
            "onboarding_phone_send: invalid_field: channel 'fax' is not a way to send a code (expected one of sms, voice)",
        ),
        (
            r#"{"channel":1}"#,
            "onboarding_phone_send: invalid_field: channel must be a string, got the number 1",
        ),
        (
            "[]",
            "onboarding_phone_send: invalid_json: payload must be a JSON object, got an array",
        ),
    ];
    for (payload, error) in cases {
        assert_eq!(send(&db, &fixed, payload).unwrap_err(), error, "{payload}");
    }
    assert_eq!(db.count("phone_verifications"), 0);
    assert_eq!(db.count("outbox_messages"), 0);
    assert_eq!(
        send(&db, &fixed, r#"{"channel":" voice "}"#).unwrap()["channel"],
        "voice"
    );
}

#[test]
fn only_french_numbers_get_codes() {
    let db = Db::memory();
    let cases = [
        (
            "+4915123456789",
            "onboarding_phone_send: invalid_field: phone '+4915123456789' is not a French number; \
             codes go only to +33 and the overseas departments (+262, +590, +594, +596)",
        ),
        (
            "+33891234567",
            "onboarding_phone_send: invalid_field: phone '+33891234567' is a premium-rate number; \
             codes go only to mobile, fixed and toll-free lines",
        ),
        (
            "+33810123456",
            "onboarding_phone_send: invalid_field: phone '+33810123456' is a shared-cost number; \
             codes go only to mobile, fixed and toll-free lines",
        ),
        (
            "+33806123456",
            "onboarding_phone_send: invalid_field: phone '+33806123456' is a company (UAN) \
             number; codes go only to mobile, fixed and toll-free lines",
        ),
    ];
    for (i, (phone, error)) in cases.into_iter().enumerate() {
        let s = db.create();
        business_with(&db, &s, phone, &format!("refused{i}@entreprise.fr"));
        assert_eq!(send(&db, &s, "{}").unwrap_err(), error, "{phone}");
    }
    assert_eq!(db.count("outbox_messages"), 0);
    // Réunion, Guadeloupe, French Guiana, Martinique.
    for (i, phone) in [
        "+262692123456",
        "+590690123456",
        "+594694123456",
        "+596696123456",
    ]
    .into_iter()
    .enumerate()
    {
        let s = db.create();
        business_with(&db, &s, phone, &format!("dom{i}@entreprise.fr"));
        let sent = send(&db, &s, "{}").unwrap();
        assert_eq!(
            (&sent["phone_number"], &sent["channel"]),
            (&json!(phone), &json!("sms"))
        );
    }
}

#[test]
fn send_needs_a_session_with_its_business_phone() {
    let db = Db::memory();
    let s = db.create();
    assert_eq!(
        send(&db, &s, "{}").unwrap_err(),
        format!(
            "onboarding_phone_send: incomplete: session '{s}' has no business phone yet \
             (save the business step first)"
        )
    );
    assert_eq!(
        send(&db, "onb_nope", "{}").unwrap_err(),
        "onboarding_phone_send: not_found: session 'onb_nope' does not exist"
    );
    // An unknown session is not_found whatever its body holds, as on the
    // steps; a body that is not JSON is still invalid_json first.
    assert_eq!(
        send(&db, "onb_nope", r#"{"channel":"fax"}"#).unwrap_err(),
        "onboarding_phone_send: not_found: session 'onb_nope' does not exist"
    );
    assert_eq!(
        send(&db, "onb_nope", "{").unwrap_err(),
        "onboarding_phone_send: invalid_json: payload is not valid JSON; EOF while parsing an object at line 1 column 1"
    );
    db.business(&s, "contact@entreprise.fr");
    db.conn
        .execute(
            "UPDATE onboarding_sessions SET status = 'abandoned' WHERE id = ?1",
            [&s],
        )
        .unwrap();
    assert_eq!(
        send(&db, &s, "{}").unwrap_err(),
        format!(
            "onboarding_phone_send: conflict: session '{s}' is abandoned; no code is sent for it"
        )
    );
}

#[test]
fn a_resend_waits_60_s_and_replaces_the_code() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    let first = send(&db, &s, "{}").unwrap();
    let id = first["verification_id"].as_str().unwrap().to_string();
    let old_code = code_in(claim(&db, "w", 60)["message"]["text"].as_str().unwrap());
    db.env.advance_ms(30_000);
    assert_eq!(
        send(&db, &s, "{}").unwrap_err(),
        "onboarding_phone_send: rate_limited: a code was sent 30 s ago; codes are sent at least \
         60 s apart (retry after 30 s)"
    );
    db.env.set_ms(T0 + 59_001);
    assert_eq!(
        send(&db, &s, "{}").unwrap_err(),
        "onboarding_phone_send: rate_limited: a code was sent 59 s ago; codes are sent at least \
         60 s apart (retry after 1 s)"
    );
    db.env.set_ms(T0 + 60_000);
    let again = send(&db, &s, r#"{"channel":"voice"}"#).unwrap();
    assert_eq!(
        again,
        json!({
            "success": true, "verification_id": id, "phone_number": MOBILE, "channel": "voice",
            "expires_at": "2026-11-24T10:11:00.000Z", "resend_after": "2026-11-24T10:02:00.000Z",
        })
    );
    assert_eq!(verification_row(&db, &id)["sends"], 2);
    // The first message, leased but not reported yet, is withdrawn: its
    // text (and code) goes, but its sender may be sending it, so it stays
    // the sender's to report, provider id and all.
    assert_eq!(
        db.rows(
            "SELECT id, status, text FROM outbox_messages ORDER BY id",
            &[]
        )[0],
        json!({"id": 1, "status": "sending", "text": ""})
    );
    assert_eq!(
        db.call("SELECT onboarding_outbox_sent(1, 'w', 'SM-1')", &[])
            .unwrap(),
        json!({"success": true, "id": 1, "status": "sent"})
    );
    assert_eq!(
        db.rows(
            "SELECT status, text, provider_id, sent_at FROM outbox_messages WHERE id = 1",
            &[]
        )[0],
        json!({"status": "sent", "text": "", "provider_id": "SM-1",
               "sent_at": "2026-11-24T10:01:00.000Z"})
    );
    let new_code = deliver(&db);
    if old_code != new_code {
        assert_eq!(
            verify(&db, &s, &old_code).unwrap_err(),
            "onboarding_phone_verify: invalid_field: code is wrong; 4 tries left"
        );
    }
    assert_eq!(verify(&db, &s, &new_code).unwrap()["status"], "verified");
}

#[test]
fn a_withdrawn_message_whose_lease_runs_out_is_cancelled_not_handed_out_again() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    send(&db, &s, "{}").unwrap();
    assert_eq!(claim(&db, "w", 30)["message"]["id"], 1);
    db.env.set_ms(T0 + 60_000);
    send(&db, &s, "{}").unwrap();
    // Its sender never reports it: past its lease the next claim cancels
    // it and hands out the new code's message.
    let next = claim(&db, "w2", 30);
    assert_eq!(next["message"]["id"], 2);
    assert_eq!(
        db.rows(
            "SELECT id, status, text, claims FROM outbox_messages ORDER BY id",
            &[]
        ),
        vec![
            json!({"id": 1, "status": "cancelled", "text": "", "claims": 1}),
            json!({"id": 2, "status": "sending", "text": next["message"]["text"], "claims": 1}),
        ]
    );
    assert_eq!(
        db.call("SELECT onboarding_outbox_sent(1, 'w', NULL)", &[])
            .unwrap_err(),
        "onboarding_outbox_sent: conflict: message 1 is cancelled, not being sent (claim a message first)"
    );
    assert_eq!(claim(&db, "w3", 30)["message"], Value::Null);
}

#[test]
fn a_verification_takes_five_sends_then_waits_for_its_expiry() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    let id = send(&db, &s, "{}").unwrap()["verification_id"]
        .as_str()
        .unwrap()
        .to_string();
    for n in 1..=3 {
        db.env.set_ms(T0 + n * 60_000);
        assert_eq!(send(&db, &s, "{}").unwrap()["verification_id"], id.as_str());
    }
    // The fifth send says when the next may go: not 60 s later, but when
    // its code expires (+14 min), in its answer and in `onboarding_get`.
    db.env.set_ms(T0 + 4 * 60_000);
    let fifth = send(&db, &s, "{}").unwrap();
    assert_eq!(fifth["verification_id"], id.as_str());
    assert_eq!(fifth["resend_after"], "2026-11-24T10:14:00.000Z");
    assert_eq!(
        db.get(&s)["phone_verification"]["resend_after"],
        "2026-11-24T10:14:00.000Z"
    );
    assert_eq!(verification_row(&db, &id)["sends"], 5);
    // Within 60 s of it, the longer of the two waits answers.
    db.env.set_ms(T0 + 4 * 60_000 + 10_000);
    assert!(send(&db, &s, "{}")
        .unwrap_err()
        .ends_with("when its code expires (retry after 590 s)"));
    // The fifth send (at +4 min) made the code valid until +14 min.
    db.env.set_ms(T0 + 5 * 60_000);
    assert_eq!(
        send(&db, &s, "{}").unwrap_err(),
        format!(
            "onboarding_phone_send: rate_limited: verification '{id}' has had its 5 sends; \
             a new one can start when its code expires (retry after 540 s)"
        )
    );
    db.env.set_ms(T0 + 14 * 60_000);
    let fresh = send(&db, &s, "{}").unwrap();
    assert_ne!(fresh["verification_id"], id.as_str());
    assert_eq!(db.count("phone_verifications"), 2);
}

#[test]
fn a_number_gets_ten_codes_a_day_across_tenants() {
    let db = Db::memory();
    let mut last = (String::new(), Value::Null);
    for i in 0..10 {
        db.env.set_ms(T0 + i * 1_000);
        let s = with_business(&db, &format!("t{i}@entreprise.fr"));
        last = (s.clone(), send(&db, &s, "{}").unwrap());
    }
    // The tenth code's answer says the next may go when the first leaves
    // the 24 hours, not 60 s later.
    let (last, tenth) = last;
    assert_eq!(tenth["resend_after"], "2026-11-25T10:00:00.000Z");
    assert_eq!(
        db.get(&last)["phone_verification"]["resend_after"],
        "2026-11-25T10:00:00.000Z"
    );
    db.env.set_ms(T0 + 10_000);
    // The tenth sender, within its 60 s, is told the longer wait: the day's.
    assert_eq!(
        send(&db, &last, "{}").unwrap_err(),
        "onboarding_phone_send: rate_limited: phone '+33612345678' was sent 10 codes in the last \
         24 hours, the most allowed (retry after 86390 s)"
    );
    let eleventh = with_business(&db, "t10@entreprise.fr");
    assert_eq!(
        send(&db, &eleventh, "{}").unwrap_err(),
        "onboarding_phone_send: rate_limited: phone '+33612345678' was sent 10 codes in the last \
         24 hours, the most allowed (retry after 86390 s)"
    );
    // A clock set back an hour: the sends stay counted until a day after
    // their time, and the wait says so (a day and an hour), as
    // `onboarding_get` does.
    db.env.set_ms(T0 - 3_600_000);
    assert_eq!(
        send(&db, &eleventh, "{}").unwrap_err(),
        "onboarding_phone_send: rate_limited: phone '+33612345678' was sent 10 codes in the last \
         24 hours, the most allowed (retry after 90000 s)"
    );
    assert_eq!(
        db.get(&last)["phone_verification"]["resend_after"],
        "2026-11-25T10:00:00.000Z"
    );
    db.env.set_ms(T0 + 86_400_000 - 1);
    assert!(send(&db, &eleventh, "{}")
        .unwrap_err()
        .ends_with("the most allowed (retry after 1 s)"));
    // The first send leaves the window: one more may go.
    db.env.set_ms(T0 + 86_400_000);
    assert_eq!(send(&db, &eleventh, "{}").unwrap()["phone_number"], MOBILE);
    // Ten codes in the last 24 hours again (the second to the tenth, and
    // this one): the number waits for the second's to leave them, a
    // second later, and `onboarding_get` counts only the day's sends.
    assert_eq!(
        db.get(&last)["phone_verification"]["resend_after"],
        "2026-11-25T10:00:01.000Z"
    );
    // Another number is not concerned.
    let other = db.create();
    business_with(&db, &other, "07 56 78 12 34", "other@entreprise.fr");
    assert_eq!(
        send(&db, &other, "{}").unwrap()["phone_number"],
        "+33756781234"
    );
}

/// Completes `s`, whose number was verified before: the answer and the
/// tenant's row say verified and active.
fn completion_routes_the_number(db: &Db, s: &str, tenant: &str) {
    db.vapi(s);
    let done = db.complete(s).unwrap();
    assert_eq!(
        done["synced"]["phone_mapping"],
        json!({"phone_number": MOBILE, "status": "verified", "is_active": true})
    );
    assert_eq!(
        mapping(db, tenant),
        json!({"phone_number": MOBILE, "is_active": 1, "status": "verified"})
    );
}

/// A pending row the runtime wrote for the tenant's number before its
/// completion: the verified number makes it verified and active, and the
/// answer says so.
#[test]
fn verified_before_completion_a_pending_row_already_there_is_made_verified() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    let tenant = tenant_of(&db, &s);
    send(&db, &s, "{}").unwrap();
    let code = deliver(&db);
    verify(&db, &s, &code).unwrap();
    db.conn
        .execute(
            "INSERT INTO omni_phone_mappings (phone_number, tenant_id, is_active, status,
                                              created_at, updated_at)
             VALUES (?1, ?2, 0, 'pending_verification', '2026-11-20T09:00:00.000Z',
                     '2026-11-20T09:00:00.000Z')",
            [MOBILE, tenant.as_str()],
        )
        .unwrap();
    completion_routes_the_number(&db, &s, &tenant);
    assert_eq!(db.count("omni_phone_mappings"), 1);
}

#[test]
fn verified_before_completion_completion_routes_the_number() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    let tenant = tenant_of(&db, &s);
    let id = send(&db, &s, "{}").unwrap()["verification_id"]
        .as_str()
        .unwrap()
        .to_string();
    let code = deliver(&db);
    db.env.advance_ms(90_000);
    assert_eq!(
        verify(&db, &s, &code).unwrap(),
        json!({
            "success": true, "verification_id": id, "phone_number": MOBILE,
            "status": "verified", "is_active": false,
            "reason": "the onboarding is not completed yet; completion activates the verified number",
        })
    );
    assert_eq!(
        verification_row(&db, &id)["verified_at"],
        "2026-11-24T10:01:30.000Z"
    );
    completion_routes_the_number(&db, &s, &tenant);
    assert_eq!(routed_to(&db, MOBILE), [json!({ "tenant_id": tenant })]);
}

#[test]
fn verified_after_completion_the_mapping_becomes_verified_and_active() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    let tenant = tenant_of(&db, &s);
    db.vapi(&s);
    db.complete(&s).unwrap();
    assert_eq!(
        mapping(&db, &tenant),
        json!({"phone_number": MOBILE, "is_active": 0, "status": "pending_verification"})
    );
    assert!(routed_to(&db, MOBILE).is_empty());
    send(&db, &s, "{}").unwrap();
    let code = deliver(&db);
    let verified = verify(&db, &s, &code).unwrap();
    assert_eq!(
        (&verified["is_active"], &verified["reason"]),
        (&json!(true), &json!(null))
    );
    assert_eq!(
        mapping(&db, &tenant),
        json!({"phone_number": MOBILE, "is_active": 1, "status": "verified"})
    );
    assert_eq!(routed_to(&db, MOBILE), [json!({ "tenant_id": tenant })]);
    assert_eq!(
        db.get(&s)["omnichannel"]["phone_mapping"]["is_active"],
        true
    );
    let shown = &db.get(&s)["phone_verification"];
    assert_eq!(
        (&shown["status"], &shown["is_active"], &shown["reason"]),
        (&json!("verified"), &json!(true), &json!(null))
    );
}

/// A completed session of `email` whose business phone was then verified,
/// and its tenant.
fn completed_then_verified(db: &Db, email: &str) -> (String, String) {
    let s = with_business(db, email);
    let tenant = tenant_of(db, &s);
    db.vapi(&s);
    db.complete(&s).unwrap();
    send(db, &s, "{}").unwrap();
    verify(db, &s, &deliver(db)).unwrap();
    (s, tenant)
}

#[test]
fn a_number_active_for_one_tenant_stays_inactive_for_another() {
    let db = Db::memory();
    let (_, first_tenant) = completed_then_verified(&db, "premier@entreprise.fr");

    // After completion.
    let second = with_business(&db, "second@entreprise.fr");
    let second_tenant = tenant_of(&db, &second);
    db.vapi(&second);
    db.complete(&second).unwrap();
    send(&db, &second, "{}").unwrap();
    let code = deliver(&db);
    assert_eq!(
        verify(&db, &second, &code).unwrap()["reason"],
        "phone '+33612345678' is already active for another tenant; it stays inactive here"
    );
    assert_eq!(
        mapping(&db, &second_tenant),
        json!({"phone_number": MOBILE, "is_active": 0, "status": "verified"})
    );

    // Before completion: the answer says so, and completion keeps it inactive.
    let third = with_business(&db, "troisieme@entreprise.fr");
    let third_tenant = tenant_of(&db, &third);
    send(&db, &third, "{}").unwrap();
    let code = deliver(&db);
    let verified = verify(&db, &third, &code).unwrap();
    let taken = "phone '+33612345678' is already active for another tenant; it stays inactive here";
    assert_eq!(
        (&verified["is_active"], &verified["reason"]),
        (&json!(false), &json!(taken))
    );
    // A page reloaded reads the same from `onboarding_get`, before
    // completion and after it.
    let shown = db.get(&third)["phone_verification"].clone();
    assert_eq!(
        (&shown["status"], &shown["is_active"], &shown["reason"]),
        (&json!("verified"), &json!(false), &json!(taken))
    );
    db.vapi(&third);
    assert_eq!(
        db.complete(&third).unwrap()["synced"]["phone_mapping"],
        json!({"phone_number": MOBILE, "status": "verified", "is_active": false,
               "reason": "phone '+33612345678' is already active for another tenant; it stays inactive here"})
    );
    assert_eq!(
        mapping(&db, &third_tenant),
        json!({"phone_number": MOBILE, "is_active": 0, "status": "verified"})
    );
    let shown = &db.get(&third)["phone_verification"];
    assert_eq!(
        (&shown["is_active"], &shown["reason"]),
        (&json!(false), &json!(taken))
    );
    // The dashboard reads why from `onboarding_get`, as completion said it.
    let shown = &db.get(&third)["omnichannel"]["phone_mapping"];
    assert_eq!(
        (&shown["is_active"], &shown["reason"]),
        (
            &json!(false),
            &json!(
                "phone '+33612345678' is already active for another tenant; it stays inactive here"
            )
        )
    );
    assert_eq!(
        routed_to(&db, MOBILE),
        [json!({ "tenant_id": first_tenant })]
    );

    // The runtime (or an operator) takes the number from the first tenant:
    // no tenant routes it now, and the reason given says so rather than
    // naming another tenant's active mapping.
    db.conn
        .execute(
            "UPDATE omni_phone_mappings SET is_active = 0 WHERE tenant_id = ?1",
            [&first_tenant],
        )
        .unwrap();
    let deactivated = "phone '+33612345678' is verified, but its mapping is inactive; \
                       no tenant routes it (send a new code to route it here)";
    let got = db.get(&third);
    assert_eq!(
        (
            &got["phone_verification"]["is_active"],
            &got["phone_verification"]["reason"],
            &got["omnichannel"]["phone_mapping"]["reason"]
        ),
        (&json!(false), &json!(deactivated), &json!(deactivated))
    );
    assert_eq!(routed_to(&db, MOBILE), Vec::<Value>::new());
}

/// A verified number another tenant routes is claimed with a new code once
/// that tenant's mapping is released: nothing else would ever route it
/// here. While it is routed (here or there), a send is refused, saying so.
#[test]
fn a_verified_number_released_elsewhere_is_claimed_with_a_new_code() {
    let db = Db::memory();
    let (first, first_tenant) = completed_then_verified(&db, "premier@entreprise.fr");
    let (second, second_tenant) = completed_then_verified(&db, "second@entreprise.fr");
    db.env.advance_ms(61_000);
    let (one, two) = (first.as_str(), second.as_str());
    assert_eq!(
        send(&db, &first, "{}").unwrap_err(),
        format!("onboarding_phone_send: conflict: phone '{MOBILE}' is already verified for session '{one}'")
    );
    let outbox = db.row("SELECT count(*) AS n FROM outbox_messages", &[]);
    assert_eq!(
        send(&db, &second, "{}").unwrap_err(),
        format!(
            "onboarding_phone_send: conflict: phone '{MOBILE}' is already verified for session \
             '{two}'; another tenant routes it (a new code can route it here once that tenant's \
             mapping is released)"
        )
    );
    assert_eq!(
        db.row("SELECT count(*) AS n FROM outbox_messages", &[]),
        outbox
    );

    // The runtime (or an operator) releases the first tenant's mapping.
    db.conn
        .execute(
            "UPDATE omni_phone_mappings SET is_active = 0 WHERE tenant_id = ?1",
            [&first_tenant],
        )
        .unwrap();
    let sent = send(&db, &second, "{}").unwrap();
    assert_eq!(db.get(&second)["phone_verification"]["status"], "pending");
    let verified = verify(&db, &second, &deliver(&db)).unwrap();
    assert_eq!(
        verified,
        json!({"success": true, "verification_id": sent["verification_id"], "phone_number": MOBILE,
               "status": "verified", "is_active": true, "reason": null})
    );
    assert_eq!(
        mapping(&db, &second_tenant),
        json!({"phone_number": MOBILE, "is_active": 1, "status": "verified"})
    );
    assert_eq!(
        routed_to(&db, MOBILE),
        [json!({ "tenant_id": second_tenant })]
    );
    let shown = db.get(&second);
    assert_eq!(
        (
            &shown["phone_verification"]["is_active"],
            &shown["phone_verification"]["reason"],
            &shown["omnichannel"]["phone_mapping"]["is_active"]
        ),
        (&json!(true), &json!(null), &json!(true))
    );
    // The first tenant, released, now reads that another tenant routes it.
    db.env.advance_ms(61_000);
    assert_eq!(
        send(&db, &first, "{}").unwrap_err(),
        format!(
            "onboarding_phone_send: conflict: phone '{MOBILE}' is already verified for session \
             '{one}'; another tenant routes it (a new code can route it here once that tenant's \
             mapping is released)"
        )
    );
}

/// A verified mapping the host wrote inactive before completion (no tenant
/// routes the number) is kept so, and completion says why, as
/// `onboarding_get` does: its answer had no reason.
#[test]
fn a_verified_mapping_the_host_left_inactive_says_why_at_completion() {
    let db = Db::memory();
    let s = with_business(&db, "hote@entreprise.fr");
    let tenant = tenant_of(&db, &s);
    db.vapi(&s);
    db.conn
        .execute(
            "INSERT INTO omni_phone_mappings (phone_number, tenant_id, is_active, status, created_at, updated_at)
             VALUES (?1, ?2, 0, 'verified', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
            [MOBILE, tenant.as_str()],
        )
        .unwrap();
    let reason =
        "phone '+33612345678' is verified, but its mapping is inactive; no tenant routes it \
         (send a new code to route it here)";
    assert_eq!(
        db.complete(&s).unwrap()["synced"]["phone_mapping"],
        json!({"phone_number": MOBILE, "status": "verified", "is_active": false, "reason": reason})
    );
    assert_eq!(
        db.get(&s)["omnichannel"]["phone_mapping"]["reason"],
        json!(reason)
    );
    assert_eq!(routed_to(&db, MOBILE), Vec::<Value>::new());
}

#[test]
fn five_wrong_codes_lock_the_verification_even_for_the_right_one() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    let id = send(&db, &s, "{}").unwrap()["verification_id"]
        .as_str()
        .unwrap()
        .to_string();
    let code = deliver(&db);
    let bad = wrong(&code);
    let answers: Vec<String> = (0..5).map(|_| verify(&db, &s, &bad).unwrap_err()).collect();
    assert_eq!(
        answers,
        [
            "onboarding_phone_verify: invalid_field: code is wrong; 4 tries left",
            "onboarding_phone_verify: invalid_field: code is wrong; 3 tries left",
            "onboarding_phone_verify: invalid_field: code is wrong; 2 tries left",
            "onboarding_phone_verify: invalid_field: code is wrong; 1 try left",
            "onboarding_phone_verify: invalid_field: code is wrong; no tries left (send a new code)",
        ]
    );
    // The sixth, even right, finds it dead.
    assert_eq!(
        verify(&db, &s, &code).unwrap_err(),
        format!(
            "onboarding_phone_verify: conflict: verification '{id}' is locked after 5 wrong \
             codes (send a new code)"
        )
    );
    let row = verification_row(&db, &id);
    assert_eq!(
        (&row["attempts"], &row["status"]),
        (&json!(5), &json!("failed"))
    );
    assert_eq!(db.get(&s)["phone_verification"]["status"], "failed");
    // A new verification starts after the resend delay.
    db.env.advance_ms(60_000);
    let fresh = send(&db, &s, "{}").unwrap();
    assert_ne!(fresh["verification_id"], id.as_str());
    let code = deliver(&db);
    assert_eq!(verify(&db, &s, &code).unwrap()["status"], "verified");
}

#[test]
fn a_wrong_code_counts_inside_a_callers_transaction_too() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    let id = send(&db, &s, "{}").unwrap()["verification_id"]
        .as_str()
        .unwrap()
        .to_string();
    let code = deliver(&db);
    db.conn.execute_batch("BEGIN").unwrap();
    verify(&db, &s, &wrong(&code)).unwrap_err();
    db.conn.execute_batch("COMMIT").unwrap();
    assert_eq!(verification_row(&db, &id)["attempts"], 1);
}

#[test]
fn a_code_expires_after_10_minutes() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    let id = send(&db, &s, "{}").unwrap()["verification_id"]
        .as_str()
        .unwrap()
        .to_string();
    let code = deliver(&db);
    db.env.set_ms(T0 + 600_000);
    assert_eq!(
        verify(&db, &s, &code).unwrap_err(),
        format!(
            "onboarding_phone_verify: conflict: the code of verification '{id}' expired at \
             2026-11-24T10:10:00.000Z (send a new code)"
        )
    );
    assert_eq!(db.get(&s)["phone_verification"]["status"], "expired");
    db.env.set_ms(T0 + 599_999);
    assert_eq!(verify(&db, &s, &code).unwrap()["status"], "verified");
}

#[test]
fn a_code_is_single_use() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    let id = send(&db, &s, "{}").unwrap()["verification_id"]
        .as_str()
        .unwrap()
        .to_string();
    let code = deliver(&db);
    verify(&db, &s, &code).unwrap();
    assert_eq!(
        verify(&db, &s, &code).unwrap_err(),
        format!(
            "onboarding_phone_verify: conflict: verification '{id}' is already used: phone \
             '+33612345678' is verified"
        )
    );
    db.env.advance_ms(60_000);
    assert_eq!(
        send(&db, &s, "{}").unwrap_err(),
        format!(
            "onboarding_phone_send: conflict: phone '+33612345678' is already verified for \
             session '{s}'"
        )
    );
}

#[test]
fn verify_payload_and_state_rules() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    assert_eq!(
        verify(&db, &s, "123456").unwrap_err(),
        format!("onboarding_phone_verify: conflict: no code was sent for session '{s}' (send one first)")
    );
    assert_eq!(
        verify(&db, "onb_nope", "123456").unwrap_err(),
        "onboarding_phone_verify: not_found: session 'onb_nope' does not exist"
    );
    assert_eq!(
        verify(&db, "onb_nope", "12ab").unwrap_err(),
        "onboarding_phone_verify: not_found: session 'onb_nope' does not exist"
    );
    send(&db, &s, "{}").unwrap();
    let call = |payload: &str| {
        db.call("SELECT onboarding_phone_verify(?1, ?2)", &[&s, &payload])
            .unwrap_err()
    };
    let cases = [
        ("{}", "onboarding_phone_verify: invalid_field: code is required"),
        (
            r#"{"code":123456}"#,
            "onboarding_phone_verify: invalid_field: code must be a string of 6 digits, got a number",
        ),
        (
            r#"{"code":"12345"}"#,
            "onboarding_phone_verify: invalid_field: code must be 6 digits, got 5 characters",
        ),
        (
            r#"{"code":"12a456"}"#,
            "onboarding_phone_verify: invalid_field: code must be 6 digits, got a character other than 0-9",
        ),
        ("nope", "onboarding_phone_verify: invalid_json: payload is not valid JSON; expected ident at line 1 column 2"),
        // A code sent bare, or in a list, is never quoted back.
        (
            "482913",
            "onboarding_phone_verify: invalid_json: payload must be a JSON object, got a number",
        ),
        (
            r#""482913""#,
            "onboarding_phone_verify: invalid_json: payload must be a JSON object, got a string",
        ),
        (
            r#"[{"code":"482913"}]"#,
            "onboarding_phone_verify: invalid_json: payload must be a JSON object, got an array",
        ),
        (
            r#"{"code":"1"}"#,
            "onboarding_phone_verify: invalid_field: code must be 6 digits, got 1 character",
        ),
    ];
    for (payload, error) in cases {
        assert_eq!(call(payload), error, "{payload}");
    }
    // Malformed codes are not attempts.
    assert_eq!(db.get(&s)["phone_verification"]["attempts_left"], 5);
}

/// A code typed as it was read out (in pairs, in threes, with a dash) or
/// on a full-width keyboard is the code: a wrong one so typed counts as a
/// try, the right one verifies.
#[test]
fn a_code_typed_with_spaces_dashes_or_full_width_digits_is_read_as_its_digits() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    send(&db, &s, "{}").unwrap();
    let code = code_in(claim(&db, "w", 60)["message"]["text"].as_str().unwrap());
    let miss = wrong(&code);
    assert_eq!(
        verify(&db, &s, &format!(" {}-{} ", &miss[..3], &miss[3..])).unwrap_err(),
        "onboarding_phone_verify: invalid_field: code is wrong; 4 tries left"
    );
    let full_width: String = code
        .chars()
        .map(|c| char::from_u32('０' as u32 + c.to_digit(10).unwrap()).unwrap())
        .collect();
    let typed = format!(
        "{}\u{a0}{}.{}",
        &full_width[..6],
        &code[2..4],
        &full_width[12..]
    );
    assert_eq!(
        verify(&db, &s, &typed).unwrap()["status"],
        "verified",
        "{typed}"
    );
}

#[test]
fn a_changed_business_phone_cancels_the_pending_verification() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    let id = send(&db, &s, "{}").unwrap()["verification_id"]
        .as_str()
        .unwrap()
        .to_string();
    let code = code_in(claim(&db, "w", 60)["message"]["text"].as_str().unwrap());
    // The same phone again changes nothing.
    db.business(&s, "contact@entreprise.fr");
    assert_eq!(verification_row(&db, &id)["status"], "pending");
    db.env.advance_ms(5_000);
    business_with(&db, &s, "07 56 78 12 34", "contact@entreprise.fr");
    let row = verification_row(&db, &id);
    assert_eq!(
        (&row["status"], &row["updated_at"]),
        (&json!("cancelled"), &json!("2026-11-24T10:00:05.000Z"))
    );
    // Its message, held by a sender, loses its text and stays the sender's
    // to report (a queued one would be cancelled).
    assert_eq!(
        db.row("SELECT status, text FROM outbox_messages", &[]),
        json!({"status": "sending", "text": ""})
    );
    assert_eq!(
        verify(&db, &s, &code).unwrap_err(),
        format!(
            "onboarding_phone_verify: conflict: verification '{id}' was cancelled when the \
             business phone changed (send a new code)"
        )
    );
    // The new number waits out the session's 60 s too: one session cannot
    // send codes to number after number at once.
    assert_eq!(
        send(&db, &s, "{}").unwrap_err(),
        "onboarding_phone_send: rate_limited: a code was sent 5 s ago; codes are sent at least \
         60 s apart (retry after 55 s)"
    );
    db.env.advance_ms(55_000);
    let fresh = send(&db, &s, "{}").unwrap();
    assert_eq!(fresh["phone_number"], "+33756781234");
    assert_ne!(fresh["verification_id"], id.as_str());
    // Back to the first number 5 s later: within the 60 s of the last code.
    db.env.advance_ms(5_000);
    business_with(&db, &s, "06 12 34 56 78", "contact@entreprise.fr");
    assert_eq!(
        send(&db, &s, "{}").unwrap_err(),
        "onboarding_phone_send: rate_limited: a code was sent 5 s ago; codes are sent at least \
         60 s apart (retry after 55 s)"
    );
}

#[test]
fn a_phone_changed_back_is_checked_against_its_own_verification() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    let first = send(&db, &s, "{}").unwrap()["verification_id"]
        .as_str()
        .unwrap()
        .to_string();
    let code = deliver(&db);
    verify(&db, &s, &code).unwrap();
    // To a number no code was sent to: the verified one's state is not
    // this number's.
    business_with(&db, &s, "07 11 22 33 44", "contact@entreprise.fr");
    assert_eq!(
        verify(&db, &s, "000000").unwrap_err(),
        "onboarding_phone_verify: conflict: no code was sent to '+33711223344' (send one first)"
    );
    // To another number, a code sent to it, and back to the verified one:
    // the other's verification is cancelled and is the latest row, but the
    // number now on the business step is the first, verified already.
    db.env.advance_ms(60_000);
    business_with(&db, &s, "07 56 78 12 34", "contact@entreprise.fr");
    let second = send(&db, &s, "{}").unwrap()["verification_id"]
        .as_str()
        .unwrap()
        .to_string();
    business_with(&db, &s, "06 12 34 56 78", "contact@entreprise.fr");
    assert_eq!(verification_row(&db, &second)["status"], "cancelled");
    assert_eq!(
        verify(&db, &s, "000000").unwrap_err(),
        format!(
            "onboarding_phone_verify: conflict: verification '{first}' is already used: phone \
             '+33612345678' is verified"
        )
    );
    let shown = &db.get(&s)["phone_verification"];
    assert_eq!(
        (&shown["verification_id"], &shown["status"]),
        (&json!(first), &json!("verified"))
    );

    // Completion maps the number verified and active, as before the detour.
    db.vapi(&s);
    db.complete(&s).unwrap();
    assert_eq!(
        db.row(
            "SELECT phone_number, status, is_active FROM omni_phone_mappings",
            &[]
        ),
        json!({"phone_number": "+33612345678", "status": "verified", "is_active": 1})
    );
}

#[test]
fn the_code_is_never_stored_or_answered_in_clear() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    let sent = send(&db, &s, "{}").unwrap();
    let code = deliver(&db);
    let pending = db.get(&s);
    let verified = verify(&db, &s, &code).unwrap();
    db.vapi(&s);
    let done = db.complete(&s).unwrap();
    for answer in [&sent, &pending, &verified, &done, &db.get(&s)] {
        assert!(!answer.to_string().contains(&code), "{answer}");
    }
    let cells = db.snapshot().join("\n");
    assert!(!cells.contains(&code), "the code is stored in clear");
    assert_eq!(
        db.row("SELECT status, text FROM outbox_messages", &[]),
        json!({"status": "sent", "text": ""})
    );
}

/// The code's HMAC is keyed by the database's secret: under another key
/// the right code is a wrong one (counted), and under its own key again it
/// verifies.
#[test]
fn the_code_is_checked_under_the_databases_secret() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    send(&db, &s, "{}").unwrap();
    let code = deliver(&db);
    let secret = db.row("SELECT value FROM onboarding_secrets", &[])["value"]
        .as_str()
        .unwrap()
        .to_string();
    db.conn
        .execute(
            "UPDATE onboarding_secrets SET value = ?1",
            [&"00".repeat(32)],
        )
        .unwrap();
    assert_eq!(
        verify(&db, &s, &code).unwrap_err(),
        "onboarding_phone_verify: invalid_field: code is wrong; 4 tries left"
    );
    db.conn
        .execute("UPDATE onboarding_secrets SET value = ?1", [&secret])
        .unwrap();
    assert_eq!(verify(&db, &s, &code).unwrap()["status"], "verified");
}

#[test]
fn get_shows_the_verification_state_never_the_code() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    let id = send(&db, &s, "{}").unwrap()["verification_id"]
        .as_str()
        .unwrap()
        .to_string();
    let code = deliver(&db);
    verify(&db, &s, &wrong(&code)).unwrap_err();
    assert_eq!(
        db.get(&s)["phone_verification"],
        json!({
            "verification_id": id, "phone_number": MOBILE, "channel": "sms", "status": "pending",
            "attempts_left": 4, "sends": 1, "expires_at": "2026-11-24T10:10:00.000Z",
            "resend_after": "2026-11-24T10:01:00.000Z", "verified_at": null,
        })
    );
}

/// A verified number, then another one: the state shown is the current
/// number's (none yet), as completion maps it; back to the verified number,
/// verified again.
#[test]
fn get_shows_the_verification_of_the_current_phone_only() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    send(&db, &s, "{}").unwrap();
    let code = deliver(&db);
    verify(&db, &s, &code).unwrap();
    let shown = db.get(&s)["phone_verification"].clone();
    assert_eq!(
        (&shown["status"], &shown["is_active"], &shown["reason"]),
        (
            &json!("verified"),
            &json!(false),
            &json!("the onboarding is not completed yet; completion activates the verified number")
        )
    );
    business_with(&db, &s, "07 56 78 12 34", "contact@entreprise.fr");
    assert_eq!(db.get(&s)["phone_verification"], Value::Null);
    business_with(&db, &s, "06 12 34 56 78", "contact@entreprise.fr");
    let shown = db.get(&s)["phone_verification"].clone();
    assert_eq!(
        (&shown["phone_number"], &shown["status"]),
        (&json!(MOBILE), &json!("verified"))
    );
    // A code to another number meanwhile (a minute after the first):
    // back on the verified one, no code is sent again, and it still shows
    // verified.
    business_with(&db, &s, "07 56 78 12 34", "contact@entreprise.fr");
    db.env.advance_ms(60_000);
    send(&db, &s, "{}").unwrap();
    deliver(&db);
    business_with(&db, &s, "06 12 34 56 78", "contact@entreprise.fr");
    db.env.advance_ms(61_000);
    let id = s.as_str();
    assert_eq!(
        send(&db, &s, "{}").unwrap_err(),
        format!("onboarding_phone_send: conflict: phone '{MOBILE}' is already verified for session '{id}'")
    );
    assert_eq!(db.get(&s)["phone_verification"]["status"], "verified");
    business_with(&db, &s, "07 56 78 12 34", "contact@entreprise.fr");
    assert_eq!(db.get(&s)["phone_verification"]["status"], "cancelled");
    db.vapi(&s);
    let done = db.complete(&s).unwrap();
    assert_eq!(db.get(&s)["phone_verification"]["status"], "cancelled");
    assert_eq!(
        db.row(
            "SELECT phone_number, status, is_active FROM omni_phone_mappings",
            &[]
        ),
        json!({"phone_number": "+33756781234", "status": "pending_verification", "is_active": 0}),
        "{done}"
    );
}

#[test]
fn claim_leases_the_oldest_message_and_sent_blanks_its_text() {
    let db = Db::memory();
    let a = with_business(&db, "a@entreprise.fr");
    let b = db.create();
    business_with(&db, &b, "07 56 78 12 34", "b@entreprise.fr");
    send(&db, &a, "{}").unwrap();
    db.env.advance_ms(1_000);
    send(&db, &b, "{}").unwrap();
    let first = claim(&db, "gateway-1", 30);
    let text = first["message"]["text"].as_str().unwrap();
    assert_eq!(
        first,
        json!({"success": true, "message": {
            "id": 1, "recipient": MOBILE, "channel": "sms", "text": text,
            "expires_at": "2026-11-24T10:10:00.000Z", "lease_until": "2026-11-24T10:00:31.000Z",
            "claims": 1,
        }})
    );
    assert_eq!(claim(&db, "gateway-2", 30)["message"]["id"], 2);
    assert_eq!(
        claim(&db, "gateway-3", 30),
        json!({"success": true, "message": null})
    );
    assert_eq!(
        db.call("SELECT onboarding_outbox_sent(1, 'gateway-2', 'x')", &[])
            .unwrap_err(),
        "onboarding_outbox_sent: conflict: message 1 is leased to 'gateway-1', not 'gateway-2' \
         (only the worker holding its lease reports it; a lease that runs out is taken over)"
    );
    db.env.advance_ms(2_000);
    assert_eq!(
        db.call(
            "SELECT onboarding_outbox_sent(1, 'gateway-1', 'SM87a3')",
            &[]
        )
        .unwrap(),
        json!({"success": true, "id": 1, "status": "sent"})
    );
    assert_eq!(
        db.row(
            "SELECT status, text, lease_owner, provider_id, sent_at FROM outbox_messages WHERE id = 1",
            &[]
        ),
        json!({"status": "sent", "text": "", "lease_owner": "gateway-1", "provider_id": "SM87a3",
               "sent_at": "2026-11-24T10:00:03.000Z"})
    );
    assert_eq!(
        db.call(
            "SELECT onboarding_outbox_failed(2, 'gateway-2', 'number unreachable')",
            &[]
        )
        .unwrap(),
        json!({"success": true, "id": 2, "status": "failed"})
    );
    assert_eq!(
        db.row(
            "SELECT status, text, last_error, sent_at FROM outbox_messages WHERE id = 2",
            &[]
        ),
        json!({"status": "failed", "text": "", "last_error": "number unreachable", "sent_at": null})
    );
}

/// A provider's error passed on as it came (several lines, long) is kept
/// as one line cut to 500 characters: refused, it would leave the message
/// leased, to be claimed and sent again.
#[test]
fn a_senders_long_error_over_several_lines_is_kept_as_one_cut_line() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    send(&db, &s, "{}").unwrap();
    claim(&db, "gateway", 60);
    let provider = format!(
        " HTTP 400\r\n{{\n  \"code\": 21614,\n  \"message\": \"{}\"\n}}\n",
        "é".repeat(600)
    );
    assert_eq!(
        db.call(
            "SELECT onboarding_outbox_failed(1, 'gateway', ?1)",
            &[&provider]
        )
        .unwrap(),
        json!({"success": true, "id": 1, "status": "failed"})
    );
    let kept = format!(
        "HTTP 400 {{ \"code\": 21614, \"message\": \"{}…",
        "é".repeat(499 - 38)
    );
    assert_eq!(kept.chars().count(), 500);
    assert_eq!(
        db.row(
            "SELECT status, text, last_error FROM outbox_messages WHERE id = 1",
            &[]
        ),
        json!({"status": "failed", "text": "", "last_error": kept})
    );
    // 500 characters exactly are kept whole; nothing but breaks is no text.
    db.env.advance_ms(60_000);
    send(&db, &s, "{}").unwrap();
    claim(&db, "gateway", 60);
    let whole = "x".repeat(500);
    db.call(
        "SELECT onboarding_outbox_failed(2, 'gateway', ?1)",
        &[&whole],
    )
    .unwrap();
    assert_eq!(
        db.row("SELECT last_error FROM outbox_messages WHERE id = 2", &[]),
        json!({"last_error": whole})
    );
    db.env.advance_ms(60_000);
    send(&db, &s, "{}").unwrap();
    claim(&db, "gateway", 60);
    db.call(
        "SELECT onboarding_outbox_failed(3, 'gateway', ' \r\n\t ')",
        &[],
    )
    .unwrap();
    // NULL too: no text.
    db.env.advance_ms(60_000);
    send(&db, &s, "{}").unwrap();
    claim(&db, "gateway", 60);
    db.call("SELECT onboarding_outbox_failed(4, 'gateway', NULL)", &[])
        .unwrap();
    assert_eq!(
        db.rows(
            "SELECT status, last_error FROM outbox_messages WHERE id IN (3, 4) ORDER BY id",
            &[]
        ),
        [
            json!({"status": "failed", "last_error": "(no error text)"}),
            json!({"status": "failed", "last_error": "(no error text)"})
        ]
    );
}

/// A provider's message id passed on as it came (empty, blank, several
/// lines, long, a number) is kept as one line, none for no text: refused,
/// the message stayed leased, its code in clear, and the next claim after
/// the lease sent the same code again. A number as the error too.
#[test]
fn a_senders_provider_id_is_kept_as_it_came_and_the_code_goes_once() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    let long = format!("SM{}", "é".repeat(200));
    let given: [(&str, &dyn rusqlite::ToSql); 5] = [
        ("an empty one", &""),
        ("a blank one", &" \r\n "),
        ("several lines", &"SM-1\r\nx-trace: 42"),
        ("a long one", &long),
        ("a number", &1234567890_i64),
    ];
    for (n, (what, provider_id)) in given.iter().enumerate() {
        let id = n as i64 + 1;
        send(&db, &s, "{}").unwrap();
        claim(&db, "gateway", 60);
        assert_eq!(
            db.call(
                "SELECT onboarding_outbox_sent(?1, 'gateway', ?2)",
                &[&id, *provider_id]
            )
            .unwrap(),
            json!({"success": true, "id": id, "status": "sent"}),
            "{what}"
        );
        // Past the lease, nothing is handed out again.
        db.env.advance_ms(61_000);
        assert_eq!(
            db.call("SELECT onboarding_outbox_claim('gateway', 60)", &[])
                .unwrap(),
            json!({"success": true, "message": null}),
            "{what}"
        );
    }
    assert_eq!(
        db.rows(
            "SELECT status, text, provider_id FROM outbox_messages ORDER BY id",
            &[]
        ),
        [
            json!({"status": "sent", "text": "", "provider_id": null}),
            json!({"status": "sent", "text": "", "provider_id": null}),
            json!({"status": "sent", "text": "", "provider_id": "SM-1 x-trace: 42"}),
            json!({"status": "sent", "text": "",
                   "provider_id": format!("SM{}…", "é".repeat(125))}),
            json!({"status": "sent", "text": "", "provider_id": "1234567890"}),
        ]
    );
    // The verification's five sends made: a new one once its code expired.
    db.env.advance_ms(600_000);
    send(&db, &s, "{}").unwrap();
    claim(&db, "gateway", 60);
    assert_eq!(
        db.call("SELECT onboarding_outbox_failed(6, 'gateway', 30003)", &[])
            .unwrap(),
        json!({"success": true, "id": 6, "status": "failed"})
    );
    assert_eq!(
        db.row(
            "SELECT status, last_error FROM outbox_messages WHERE id = 6",
            &[]
        ),
        json!({"status": "failed", "last_error": "30003"})
    );
}

#[test]
fn a_crashed_senders_lease_is_taken_over() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    send(&db, &s, "{}").unwrap();
    let crashed = claim(&db, "crashed", 30);
    db.env.advance_ms(29_999);
    assert_eq!(claim(&db, "rescuer", 30)["message"], json!(null));
    db.env.advance_ms(1);
    let taken = claim(&db, "rescuer", 30);
    assert_eq!(
        (&taken["message"]["id"], &taken["message"]["claims"]),
        (&json!(1), &json!(2))
    );
    assert_eq!(taken["message"]["text"], crashed["message"]["text"]);
    assert_eq!(
        db.call("SELECT onboarding_outbox_sent(1, 'crashed', NULL)", &[])
            .unwrap_err(),
        "onboarding_outbox_sent: conflict: message 1 is leased to 'rescuer', not 'crashed' \
         (only the worker holding its lease reports it; a lease that runs out is taken over)"
    );
    db.call("SELECT onboarding_outbox_sent(1, 'rescuer', NULL)", &[])
        .unwrap();
    let code = code_in(crashed["message"]["text"].as_str().unwrap());
    assert_eq!(verify(&db, &s, &code).unwrap()["status"], "verified");
}

/// With no sender claiming (a server without one), a code's text is still
/// blanked after its expiry: the next send of any session expires it.
#[test]
fn an_unsent_code_past_its_expiry_loses_its_text_at_the_next_send() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    send(&db, &s, "{}").unwrap();
    let other = db.create();
    business_with(&db, &other, "07 11 22 33 44", "autre@entreprise.fr");
    db.env.set_ms(T0 + 599_999);
    send(&db, &other, "{}").unwrap();
    assert_eq!(
        db.rows(
            "SELECT id, status, text <> '' AS has_text FROM outbox_messages ORDER BY id",
            &[]
        ),
        [
            json!({"id": 1, "status": "queued", "has_text": 1}),
            json!({"id": 2, "status": "queued", "has_text": 1}),
        ]
    );
    db.env.set_ms(T0 + 600_000);
    send(&db, &s, "{}").unwrap();
    assert_eq!(
        db.rows(
            "SELECT id, status, text, updated_at FROM outbox_messages WHERE text = '' ORDER BY id",
            &[]
        ),
        [json!({"id": 1, "status": "expired", "text": "", "updated_at": at(600_000)})]
    );
    assert_eq!(db.count("outbox_messages"), 3);
}

/// A clock set back after a send (the last code looks sent in the future)
/// says nothing of the time between: the spacing counts as met, where the
/// session was held for the hour the clock went back ("sent -3599 s ago").
#[test]
fn a_clock_set_back_holds_no_send_for_the_time_it_went_back() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    db.env.set_ms(T0 + 3_600_000);
    let first = send(&db, &s, "{}").unwrap();
    db.env.set_ms(T0);
    assert_eq!(
        db.get(&s)["phone_verification"]["resend_after"],
        "2026-11-24T10:01:00.000Z"
    );
    let again = send(&db, &s, "{}").unwrap();
    assert_eq!(again["verification_id"], first["verification_id"]);
    assert_eq!(again["resend_after"], "2026-11-24T10:01:00.000Z");
    assert_eq!(
        verification_row(&db, first["verification_id"].as_str().unwrap())["sends"],
        2
    );
    // The send made since is the last: the next waits its 60 s, though
    // the first's time is still the latest.
    db.env.set_ms(T0 + 30_000);
    assert_eq!(
        send(&db, &s, "{}").unwrap_err(),
        "onboarding_phone_send: rate_limited: a code was sent 30 s ago; codes are sent at least \
         60 s apart (retry after 30 s)"
    );
}

/// The code sent last is the one checked, and shown, though a clock set
/// back stamped it before the verification locked ahead of it.
#[test]
fn a_clock_set_back_checks_the_code_sent_last() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    db.env.set_ms(T0 + 3_600_000);
    send(&db, &s, "{}").unwrap();
    let code = deliver(&db);
    for _ in 0..5 {
        verify(&db, &s, &wrong(&code)).unwrap_err();
    }
    db.env.set_ms(T0);
    let sent = send(&db, &s, "{}").unwrap();
    let shown = db.get(&s)["phone_verification"].clone();
    assert_eq!(
        (&shown["verification_id"], &shown["status"]),
        (&sent["verification_id"], &json!("pending"))
    );
    let code = deliver(&db);
    assert_eq!(
        verify(&db, &s, &code).unwrap()["verification_id"],
        sent["verification_id"]
    );
}

#[test]
fn a_message_past_its_expiry_is_never_handed_out() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    send(&db, &s, "{}").unwrap();
    claim(&db, "slow", 30);
    db.env.set_ms(T0 + 599_999);
    assert_eq!(claim(&db, "other", 30)["message"]["id"], 1);
    db.env.set_ms(T0 + 600_000 + 30_000);
    assert_eq!(claim(&db, "late", 30)["message"], json!(null));
    assert_eq!(
        db.row("SELECT status, text FROM outbox_messages", &[]),
        json!({"status": "expired", "text": ""})
    );
}

#[test]
fn a_lease_ends_at_the_expiry_and_a_later_sent_report_is_refused() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    send(&db, &s, "{}").unwrap();
    // Nine minutes in, an hour's lease ends with the code, a minute later.
    db.env.set_ms(T0 + 540_000);
    let claimed = claim(&db, "slow", 3600);
    assert_eq!(
        (
            &claimed["message"]["expires_at"],
            &claimed["message"]["lease_until"]
        ),
        (
            &json!("2026-11-24T10:10:00.000Z"),
            &json!("2026-11-24T10:10:00.000Z")
        )
    );
    db.env.set_ms(T0 + 600_000);
    assert_eq!(
        db.call("SELECT onboarding_outbox_sent(1, 'slow', 'SM1')", &[])
            .unwrap_err(),
        "onboarding_outbox_sent: conflict: message 1 expired at 2026-11-24T10:10:00.000Z, \
         before it was reported sent (a message is never sent after its expiry, when its \
         lease ends)"
    );
    // The refusal expires the message at once: its code goes now, not at
    // the next claim or send; a report is then refused as for any message
    // not out.
    assert_eq!(
        db.row(
            "SELECT status, text, provider_id, sent_at, updated_at FROM outbox_messages",
            &[]
        ),
        json!({"status": "expired", "text": "", "provider_id": null, "sent_at": null,
               "updated_at": "2026-11-24T10:10:00.000Z"})
    );
    let before = db.snapshot();
    db.env.set_ms(T0 + 601_000);
    assert_eq!(claim(&db, "other", 30)["message"], json!(null));
    assert_eq!(db.snapshot(), before);
    assert_eq!(
        db.call("SELECT onboarding_outbox_sent(1, 'slow', 'SM1')", &[])
            .unwrap_err(),
        "onboarding_outbox_sent: conflict: message 1 is expired, not being sent (claim a message first)"
    );
}

#[test]
fn a_failure_reported_after_the_expiry_is_kept_as_a_failure() {
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    send(&db, &s, "{}").unwrap();
    claim(&db, "w", 600);
    db.env.set_ms(T0 + 600_001);
    assert_eq!(
        db.call("SELECT onboarding_outbox_failed(1, 'w', 'timeout')", &[])
            .unwrap(),
        json!({"success": true, "id": 1, "status": "failed"})
    );
}

#[test]
fn outbox_argument_rules() {
    let db = Db::memory();
    let cases = [
        (
            "SELECT onboarding_outbox_claim('w', 0)",
            "onboarding_outbox_claim: invalid_field: lease_seconds must be from 1 to 3600, got 0",
        ),
        (
            "SELECT onboarding_outbox_claim('w', 3601)",
            "onboarding_outbox_claim: invalid_field: lease_seconds must be from 1 to 3600, got 3601",
        ),
        (
            "SELECT onboarding_outbox_claim('w', '60')",
            "onboarding_outbox_claim: invalid_field: lease_seconds must be an integer, got the text '60'",
        ),
        (
            "SELECT onboarding_outbox_claim('w', 60.5)",
            "onboarding_outbox_claim: invalid_field: lease_seconds must be an integer, got the real 60.5",
        ),
        (
            "SELECT onboarding_outbox_claim('w', 1e300)",
            "onboarding_outbox_claim: invalid_field: lease_seconds must be an integer, got the real 1e300",
        ),
        (
            "SELECT onboarding_outbox_claim('w', x'3630')",
            "onboarding_outbox_claim: invalid_field: lease_seconds must be an integer, got a blob of 2 bytes",
        ),
        (
            "SELECT onboarding_outbox_claim(' ', 60)",
            "onboarding_outbox_claim: invalid_field: worker must not be empty",
        ),
        (
            "SELECT onboarding_outbox_claim(NULL, 60)",
            "onboarding_outbox_claim: invalid_field: worker is required",
        ),
        (
            "SELECT onboarding_outbox_sent(42, 'w', NULL)",
            "onboarding_outbox_sent: not_found: message 42 does not exist",
        ),
        (
            "SELECT onboarding_outbox_failed(42, 'w', '')",
            "onboarding_outbox_failed: not_found: message 42 does not exist",
        ),
        (
            "SELECT onboarding_outbox_sent(NULL, 'w', NULL)",
            "onboarding_outbox_sent: invalid_field: id is required",
        ),
    ];
    for (sql, error) in cases {
        assert_eq!(db.call(sql, &[]).unwrap_err(), error, "{sql}");
    }
    let s = with_business(&db, "contact@entreprise.fr");
    send(&db, &s, "{}").unwrap();
    assert_eq!(
        db.call("SELECT onboarding_outbox_sent(1, 'w', NULL)", &[])
            .unwrap_err(),
        "onboarding_outbox_sent: conflict: message 1 is queued, not being sent (claim a message first)"
    );
}

#[test]
fn upgrading_a_database_made_by_001_keeps_every_row() {
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    // The schema as version 1 of the library left it.
    let first = &onboarding::MIGRATIONS[0];
    assert_eq!(first.name, "001_init");
    conn.execute_batch(&format!(
        "CREATE TABLE onboarding_schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,
                                                    applied_at TEXT NOT NULL);
         {}
         INSERT INTO onboarding_schema_migrations VALUES (1, '001_init', '2026-11-01T00:00:00.000Z');",
        first.sql
    ))
    .unwrap();
    onboarding::register_with(&conn, onboarding::PinnedEnv::new(T0, 7)).unwrap();
    let call = |sql: &str| -> String { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let s: Value = serde_json::from_str(&call("SELECT onboarding_create('{}')")).unwrap();
    let s = s["session_id"].as_str().unwrap().to_string();
    // Every row of the tables 001 made, as text.
    let dump = |conn: &rusqlite::Connection| -> Vec<String> {
        let mut rows = Vec::new();
        for table in &common::TABLES[..7] {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {table} ORDER BY rowid"))
                .unwrap();
            let n = stmt.column_count();
            let mut q = stmt.query([]).unwrap();
            while let Some(r) = q.next().unwrap() {
                let cells: Vec<String> = (0..n)
                    .map(|i| format!("{:?}", r.get::<_, rusqlite::types::Value>(i).unwrap()))
                    .collect();
                rows.push(format!("{table}: {}", cells.join(" | ")));
            }
        }
        rows
    };
    let before = dump(&conn);
    assert!(before.len() >= 3, "{before:?}");
    let db = common::Db::on(conn);
    assert_eq!(dump(&db.conn), before);
    assert_eq!(db.count("onboarding_secrets"), 1);
    assert_eq!(
        db.row(
            "SELECT name, length(value) AS length, created_at FROM onboarding_secrets",
            &[]
        ),
        json!({"name": "phone_code_hmac", "length": 64, "created_at": at(0)})
    );
    // The old session goes on to a verified number.
    db.business(&s, "contact@entreprise.fr");
    send(&db, &s, "{}").unwrap();
    let code = deliver(&db);
    assert_eq!(verify(&db, &s, &code).unwrap()["status"], "verified");
}

#[test]
fn the_secret_is_made_once_and_differs_per_database() {
    let one = Db::memory();
    let secret = |db: &Db| {
        db.row("SELECT value FROM onboarding_secrets", &[])["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let kept = secret(&one);
    one.scalar("SELECT onboarding_migrate()");
    assert_eq!(secret(&one), kept);
    let conn = rusqlite::Connection::open_in_memory().unwrap();
    onboarding::register(&conn).unwrap();
    conn.query_row("SELECT onboarding_migrate()", [], |_| Ok(()))
        .unwrap();
    let other: String = conn
        .query_row("SELECT value FROM onboarding_secrets", [], |r| r.get(0))
        .unwrap();
    assert_ne!(other, kept);
}

#[test]
fn a_session_gets_ten_codes_a_day_whatever_its_numbers() {
    // Changing the business phone between sends gives each number its own
    // limits; the session's own keeps one onboarding from sending codes to
    // any number of numbers (SMS pumping).
    let db = Db::memory();
    let s = db.create();
    let mut last = Value::Null;
    // A minute apart: the session's codes are 60 s apart whatever their
    // numbers.
    for i in 0..10 {
        db.env.set_ms(T0 + i * 60_000);
        business_with(
            &db,
            &s,
            &format!("06 40 00 00 {i:02}"),
            "contact@entreprise.fr",
        );
        last = send(&db, &s, "{}").unwrap();
    }
    // The tenth code's answer says when the next may go: when the first
    // leaves the 24 hours; and so does `onboarding_get`.
    assert_eq!(last["resend_after"], "2026-11-25T10:00:00.000Z");
    assert_eq!(
        db.get(&s)["phone_verification"]["resend_after"],
        "2026-11-25T10:00:00.000Z"
    );
    db.env.set_ms(T0 + 600_000);
    business_with(&db, &s, "06 40 00 00 10", "contact@entreprise.fr");
    assert_eq!(
        send(&db, &s, "{}").unwrap_err(),
        format!(
            "onboarding_phone_send: rate_limited: session '{s}' was sent 10 codes in the last \
             24 hours, the most allowed (retry after 85800 s)"
        )
    );
    // The first send leaves the 24 hours: one more may go.
    db.env.set_ms(T0 + 86_400_000 + 1);
    assert_eq!(send(&db, &s, "{}").unwrap()["phone_number"], "+33640000010");
}

#[test]
fn a_sessions_sends_are_counted_one_by_one_across_the_day() {
    // A verification started just before the 24 hours whose resends fall
    // inside them: each send counts (counting verifications by their start
    // let a session past ten).
    let db = Db::memory();
    let s = with_business(&db, "contact@entreprise.fr");
    for n in 0..5 {
        db.env.set_ms(T0 + n * 120_000);
        send(&db, &s, "{}").unwrap();
    }
    // Five more to other numbers an hour later, a minute apart (ten in
    // the day), and a sixth once the first send leaves the 24 hours.
    for i in 0..6 {
        let at = T0 + 3_600_000 + i * 60_000;
        db.env.set_ms(if i < 5 { at } else { T0 + 86_400_000 + 1 });
        business_with(
            &db,
            &s,
            &format!("06 41 00 00 {i:02}"),
            "contact@entreprise.fr",
        );
        send(&db, &s, "{}").unwrap();
    }
    // Four of the first verification's sends are still in the day (its
    // start is not), and the six: ten.
    db.env.set_ms(T0 + 86_400_000 + 60_001);
    business_with(&db, &s, "06 41 00 00 06", "contact@entreprise.fr");
    assert!(send(&db, &s, "{}")
        .unwrap_err()
        .contains("was sent 10 codes in the last 24 hours"));
}

/// A clock in the last minutes of year 9999 (a broken one): the code's
/// expiry is written as the last instant four digits hold, which reads back
/// and sorts as every stamp does. It was written `+10000-01-01T00:05:00.000Z`,
/// which no later call of the session could read, even with the clock put
/// right.
#[test]
fn a_clock_at_the_end_of_year_9999_leaves_the_session_readable() {
    let db = Db::memory();
    let s = with_business(&db, "fin@exemple.fr");
    db.env.set_ms(253_402_300_500_000); // 9999-12-31T23:55:00.000Z
    let sent = send(&db, &s, "{}").unwrap();
    assert_eq!(sent["expires_at"], "9999-12-31T23:59:59.999Z");
    let code = deliver(&db);
    db.env.set_ms(T0);
    assert_eq!(
        db.call("SELECT onboarding_get(?1)", &[&s]).unwrap()["phone_verification"]["status"],
        "pending"
    );
    assert_eq!(verify(&db, &s, &code).unwrap()["status"], "verified");
}
