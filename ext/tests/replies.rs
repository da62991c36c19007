//! The keyed forms of the calls that are not safe to run twice
//! (`onboarding_step/4`, `onboarding_phone_send/4`,
//! `onboarding_phone_verify/3`, `onboarding_complete/3`): run again with the
//! same key, each answers its first answer and writes nothing. A dqlite host runs a batch again with
//! the same keys when a failover leaves its commit's outcome unknown.

mod common;

use common::{Db, T0};
use serde_json::{json, Value};

const KEY: &str = "0123456789abcdef-first";
const OTHER_KEY: &str = "0123456789abcdef-second";

fn send(db: &Db, session: &str, key: &str) -> Result<Value, String> {
    db.call(
        "SELECT onboarding_phone_send(?1, '{\"channel\":\"sms\"}', '203.0.113.7', ?2)",
        &[&session, &key],
    )
}

fn verify(db: &Db, session: &str, code: &str, key: &str) -> Result<Value, String> {
    db.call(
        "SELECT onboarding_phone_verify(?1, ?2, ?3)",
        &[&session, &json!({ "code": code }).to_string(), &key],
    )
}

fn complete(db: &Db, session: &str, key: &str) -> Result<Value, String> {
    db.call(
        "SELECT onboarding_complete(?1, '{}', ?2)",
        &[&session, &key],
    )
}

/// The code of the last message queued, read from its text.
fn last_code(db: &Db) -> String {
    let text = db.row(
        "SELECT text FROM outbox_messages ORDER BY id DESC LIMIT 1",
        &[],
    )["text"]
        .as_str()
        .unwrap()
        .to_string();
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    digits[..6].to_string()
}

fn wrong(code: &str) -> String {
    if code == "000000" { "111111" } else { "000000" }.to_string()
}

fn changes(db: &Db) -> u64 {
    db.conn.total_changes()
}

fn kept(db: &Db) -> Vec<Value> {
    db.rows(
        "SELECT request_key, function, failed, created_at FROM onboarding_call_replies
         ORDER BY rowid",
        &[],
    )
}

#[test]
fn a_send_run_again_with_its_key_answers_its_first_answer_and_sends_nothing() {
    let db = Db::memory();
    let s = db.create();
    db.business(&s, "a@exemple.fr");
    let first = send(&db, &s, KEY).unwrap();
    let before = changes(&db);
    db.env.advance_ms(2_000);
    // Without the key this is a second send 2 s after the first: 429.
    assert_eq!(send(&db, &s, KEY).unwrap(), first);
    assert_eq!(changes(&db), before, "the replay wrote something");
    assert_eq!(db.count("outbox_messages"), 1);
    assert_eq!(
        db.row("SELECT sends FROM phone_verifications", &[]),
        json!({"sends": 1})
    );
    assert_eq!(
        kept(&db),
        vec![
            json!({"request_key": KEY, "function": "onboarding_phone_send", "failed": 0,
                    "created_at": "2026-11-24T10:00:00.000Z"})
        ]
    );
    // Another key is another send: the 60 s rule applies.
    assert_eq!(
        send(&db, &s, OTHER_KEY).unwrap_err(),
        "onboarding_phone_send: rate_limited: a code was sent 2 s ago; codes are sent at least \
         60 s apart (retry after 58 s)"
    );
}

#[test]
fn a_wrong_code_run_again_with_its_key_counts_once_and_a_right_one_answers_verified_again() {
    let db = Db::memory();
    let s = db.create();
    db.business(&s, "a@exemple.fr");
    send(&db, &s, KEY).unwrap();
    let code = last_code(&db);
    let wrong_code = wrong(&code);
    for _ in 0..2 {
        assert_eq!(
            verify(&db, &s, &wrong_code, OTHER_KEY).unwrap_err(),
            "onboarding_phone_verify: invalid_field: code is wrong; 4 tries left"
        );
    }
    assert_eq!(
        db.row("SELECT attempts FROM phone_verifications", &[]),
        json!({"attempts": 1})
    );
    // The wrong code's key with the right code is no retry: refused, and
    // neither counted nor verified.
    let before = changes(&db);
    assert_eq!(
        verify(&db, &s, &code, OTHER_KEY).unwrap_err(),
        "onboarding_phone_verify: conflict: request_key '0123456789abcdef-second' was already \
         used with another payload"
    );
    assert_eq!(changes(&db), before);
    let right_key = "0123456789abcdef-third";
    let verified = verify(&db, &s, &code, right_key).unwrap();
    assert_eq!(verified["status"], "verified");
    // Run again: the same answer, where an unkeyed call says the code is used.
    assert_eq!(verify(&db, &s, &code, right_key).unwrap(), verified);
    assert!(verify(&db, &s, &code, "0123456789abcdef-fourth")
        .unwrap_err()
        .starts_with("onboarding_phone_verify: conflict: verification 'ver_"));
    assert_eq!(
        kept(&db)
            .iter()
            .map(|r| (r["function"].clone(), r["failed"].clone()))
            .collect::<Vec<_>>(),
        vec![
            (json!("onboarding_phone_send"), json!(0)),
            (json!("onboarding_phone_verify"), json!(1)),
            (json!("onboarding_phone_verify"), json!(0)),
        ]
    );
}

#[test]
fn a_completion_run_again_with_its_key_answers_as_the_first_time() {
    let db = Db::memory();
    let s = db.create();
    db.business(&s, "a@exemple.fr");
    db.vapi(&s);
    let first = complete(&db, &s, KEY).unwrap();
    assert_eq!(first["already_completed"], false);
    let before = changes(&db);
    assert_eq!(complete(&db, &s, KEY).unwrap(), first);
    assert_eq!(changes(&db), before);
    // A new request is a second completion: the replay, and nothing kept
    // for it (it wrote nothing).
    let mut again = first.clone();
    again["already_completed"] = json!(true);
    assert_eq!(complete(&db, &s, OTHER_KEY).unwrap(), again);
    assert_eq!(changes(&db), before);
    assert_eq!(
        kept(&db),
        vec![
            json!({"request_key": KEY, "function": "onboarding_complete", "failed": 0,
                    "created_at": "2026-11-24T10:00:00.000Z"})
        ]
    );
}

fn step(db: &Db, session: &str, step: &str, payload: &str, key: &str) -> Result<Value, String> {
    db.call(
        "SELECT onboarding_step(?1, ?2, ?3, ?4)",
        &[&session, &step, &payload, &key],
    )
}

const VAPI: &str = r#"{"agent_type":"custom","voice":"sara","assistant_name":"Sara"}"#;
const KB: &str = r#"{"method":"skip"}"#;

/// Run again after its session moved on, a step answers its first answer:
/// unkeyed, a re-sent vapi step run after the kb step answers the kb
/// step's `current_step`, and any step run after the completion answers
/// 409.
#[test]
fn a_step_run_again_with_its_key_answers_its_first_answer_and_writes_nothing() {
    let db = Db::memory();
    let s = db.create();
    db.business(&s, "a@exemple.fr");
    let vapi = step(&db, &s, "vapi", VAPI, KEY).unwrap();
    assert_eq!(
        vapi,
        json!({"success": true, "session_id": s, "step": "vapi", "current_step": 4,
               "progress_percentage": 66})
    );
    db.env.advance_ms(2_000);
    step(&db, &s, "kb", KB, OTHER_KEY).unwrap();
    let before = changes(&db);
    assert_eq!(step(&db, &s, "vapi", VAPI, KEY).unwrap(), vapi);
    assert_eq!(changes(&db), before, "the replay wrote something");
    // A new request is a new call: saved again, at the furthest step.
    assert_eq!(
        step(&db, &s, "vapi", VAPI, "0123456789abcdef-third").unwrap()["current_step"],
        5
    );
    complete(&db, &s, "0123456789abcdef-fourth").unwrap();
    assert_eq!(step(&db, &s, "vapi", VAPI, KEY).unwrap(), vapi);
    assert_eq!(
        step(&db, &s, "vapi", VAPI, "0123456789abcdef-fifth").unwrap_err(),
        format!(
            "onboarding_step: conflict: session '{s}' is completed; its steps can no longer be \
             changed"
        )
    );
    assert_eq!(
        kept(&db)
            .iter()
            .map(|r| (r["function"].clone(), r["created_at"].clone()))
            .collect::<Vec<_>>(),
        vec![
            (
                json!("onboarding_step('vapi')"),
                json!("2026-11-24T10:00:00.000Z")
            ),
            (
                json!("onboarding_step('kb')"),
                json!("2026-11-24T10:00:02.000Z")
            ),
            (
                json!("onboarding_step('vapi')"),
                json!("2026-11-24T10:00:02.000Z")
            ),
            (
                json!("onboarding_complete"),
                json!("2026-11-24T10:00:02.000Z")
            ),
        ]
    );
    // A key names one step: another step's key is the host's mistake.
    assert_eq!(
        step(&db, &s, "kb", KB, KEY).unwrap_err(),
        "onboarding_step: conflict: request_key '0123456789abcdef-first' was already used by \
         onboarding_step('vapi')"
    );
    // A refused step keeps nothing: run again, it is checked again.
    let t = db.create();
    assert_eq!(
        step(
            &db,
            &t,
            "vapi",
            r#"{"agent_type":"robot"}"#,
            "0123456789abcdef-sixth"
        )
        .unwrap_err(),
        "onboarding_step: invalid_field: agent_type 'robot' is not an agent type (expected one of \
         real_estate_reception, real_estate_callback, appointment_booking, phone_reception, \
         customer_support, multi_purpose, custom)"
    );
    assert_eq!(kept(&db).len(), 4);
    assert_eq!(
        step(&db, &t, "vapi", VAPI, "0123456789abcdef-sixth").unwrap()["step"],
        "vapi"
    );
}

#[test]
fn a_call_that_failed_keeps_nothing_and_runs_again_with_its_key() {
    let db = Db::memory();
    let s = db.create();
    assert_eq!(
        complete(&db, &s, KEY).unwrap_err(),
        format!(
            "onboarding_complete: incomplete: session '{s}' is missing steps: business, vapi \
             (save them before completing)"
        )
    );
    assert_eq!(kept(&db), Vec::<Value>::new());
    db.business(&s, "a@exemple.fr");
    db.vapi(&s);
    assert_eq!(complete(&db, &s, KEY).unwrap()["success"], true);
}

#[test]
fn a_key_is_one_call_of_one_session() {
    let db = Db::memory();
    let s = db.create();
    db.business(&s, "a@exemple.fr");
    send(&db, &s, KEY).unwrap();
    assert_eq!(
        verify(&db, &s, "123456", KEY).unwrap_err(),
        "onboarding_phone_verify: conflict: request_key '0123456789abcdef-first' was already \
         used by onboarding_phone_send"
    );
    let t = db.create();
    db.business(&t, "b@exemple.fr");
    assert_eq!(
        send(&db, &t, KEY).unwrap_err(),
        "onboarding_phone_send: conflict: request_key '0123456789abcdef-first' was already \
         used for another session"
    );
    assert_eq!(db.count("outbox_messages"), 1);
    for (sql, function) in [
        (
            "SELECT onboarding_step(?1, 'channels', '{\"channels\":[\"sms\"]}', 'short')",
            "onboarding_step",
        ),
        (
            "SELECT onboarding_complete(?1, '{}', 'short')",
            "onboarding_complete",
        ),
        (
            "SELECT onboarding_phone_verify(?1, '{\"code\":\"123456\"}', 'short')",
            "onboarding_phone_verify",
        ),
        (
            "SELECT onboarding_phone_send(?1, NULL, NULL, 'short')",
            "onboarding_phone_send",
        ),
    ] {
        assert_eq!(
            db.call(sql, &[&s]).unwrap_err(),
            format!("{function}: invalid_field: request_key 'short' must be 16 to 128 characters")
        );
    }
    // A NUL would stop SQLite's length() in the table's CHECK.
    for sql in [
        "SELECT onboarding_complete(?1, '{}', ?2)",
        "SELECT onboarding_create('{}', NULL, NULL, ?2 || substr(?1, 1, 0))",
    ] {
        let refused = db.call(sql, &[&s, &"0123456789\0abcdefgh"]).unwrap_err();
        assert!(
            refused.ends_with(
                "invalid_field: request_key '0123456789\\u0000abcdefgh' must not contain control \
                 characters"
            ),
            "{refused}"
        );
    }
    assert_eq!(db.count("onboarding_call_replies"), 1);
}

#[test]
fn answers_are_kept_a_day() {
    let db = Db::memory();
    let s = db.create();
    db.business(&s, "a@exemple.fr");
    send(&db, &s, KEY).unwrap();
    let t = db.create();
    db.business(&t, "b@exemple.fr");
    db.vapi(&t);
    db.env.set_ms(T0 + 86_400_000);
    complete(&db, &t, OTHER_KEY).unwrap();
    // Exactly a day old: still kept.
    assert_eq!(kept(&db).len(), 2);
    let u = db.create();
    db.business(&u, "c@exemple.fr");
    db.vapi(&u);
    db.env.set_ms(T0 + 86_400_001);
    complete(&db, &u, "0123456789abcdef-third").unwrap();
    assert_eq!(
        kept(&db)
            .iter()
            .map(|r| r["request_key"].clone())
            .collect::<Vec<_>>(),
        vec![json!(OTHER_KEY), json!("0123456789abcdef-third")]
    );
}

/// A day and a millisecond after its answer, a key answers for nothing:
/// the call runs as a new one, and its answer replaces the old one.
#[test]
fn an_answer_older_than_a_day_no_longer_answers_for_its_key() {
    let db = Db::memory();
    let s = db.create();
    db.business(&s, "a@exemple.fr");
    let first = send(&db, &s, KEY).unwrap();
    db.env.set_ms(T0 + 86_400_000);
    let before = changes(&db);
    assert_eq!(send(&db, &s, KEY).unwrap(), first);
    assert_eq!(changes(&db), before);
    db.env.set_ms(T0 + 86_400_001);
    let again = send(&db, &s, KEY).unwrap();
    assert_ne!(again["verification_id"], first["verification_id"]);
    assert_eq!(again["expires_at"], "2026-11-25T10:10:00.001Z");
    assert_eq!(
        kept(&db),
        [
            json!({"request_key": KEY, "function": "onboarding_phone_send", "failed": 0,
                "created_at": "2026-11-25T10:00:00.001Z"})
        ]
    );
    assert_eq!(db.count("outbox_messages"), 2);
    assert_eq!(send(&db, &s, KEY).unwrap(), again);
}

/// A key stands for one call: sent again with another payload, it is the
/// sender's mistake, refused (`conflict`) with nothing written, where
/// answering the first reply would say the new payload was saved. The
/// fingerprint kept is the SHA-256 of the payload as sent; a row kept
/// before migration 015 has none and answers whatever the payload.
#[test]
fn a_key_sent_again_with_another_payload_is_refused_and_writes_nothing() {
    use sha2::{Digest, Sha256};
    let db = Db::memory();
    let s = db.create();
    let first_payload = VAPI;
    let first = step(&db, &s, "vapi", first_payload, KEY).unwrap();
    let before = changes(&db);
    let other = r#"{"agent_type":"custom","voice":"sara","assistant_name":"Léa"}"#;
    assert_eq!(
        step(&db, &s, "vapi", other, KEY).unwrap_err(),
        "onboarding_step: conflict: request_key '0123456789abcdef-first' was already used with \
         another payload"
    );
    // The same meaning in other bytes is another payload too: a retry
    // sends the same bytes.
    let spaced = r#"{"agent_type": "custom", "voice": "sara", "assistant_name": "Sara"}"#;
    assert!(step(&db, &s, "vapi", spaced, KEY)
        .unwrap_err()
        .ends_with("was already used with another payload"));
    assert_eq!(changes(&db), before, "a refused key wrote something");
    assert_eq!(
        db.row(
            "SELECT vapi_data ->> '$.assistant_name' AS name FROM onboarding_sessions",
            &[]
        ),
        json!({"name": "Sara"})
    );
    assert_eq!(step(&db, &s, "vapi", first_payload, KEY).unwrap(), first);
    let hex: String = Sha256::digest(first_payload.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        db.row("SELECT fingerprint FROM onboarding_call_replies", &[]),
        json!({ "fingerprint": hex })
    );

    // A NULL payload is `{}`, which it means (a request without a body);
    // `{ }` is another payload.
    db.business(&s, "a@exemple.fr");
    let done = db
        .call(
            "SELECT onboarding_complete(?1, NULL, ?2)",
            &[&s, &OTHER_KEY],
        )
        .unwrap();
    assert_eq!(complete(&db, &s, OTHER_KEY).unwrap(), done);
    assert_eq!(
        db.call(
            "SELECT onboarding_complete(?1, '{ }', ?2)",
            &[&s, &OTHER_KEY]
        )
        .unwrap_err(),
        "onboarding_complete: conflict: request_key '0123456789abcdef-second' was already used \
         with another payload"
    );

    // Kept before 015: no fingerprint, the first answer whatever the payload.
    db.conn
        .execute("UPDATE onboarding_call_replies SET fingerprint = NULL", [])
        .unwrap();
    assert_eq!(step(&db, &s, "vapi", other, KEY).unwrap(), first);
}

/// `onboarding_create`'s key (a client's `Idempotency-Key` through the
/// server): the same payload from another address or user agent is the
/// same create; another payload is refused and creates nothing.
#[test]
fn a_create_key_sent_again_with_another_payload_is_refused() {
    let db = Db::memory();
    let create = |payload: &str, ip: &str| {
        db.call(
            "SELECT onboarding_create(?1, ?2, 'Mozilla/5.0', ?3)",
            &[&payload, &ip, &KEY],
        )
    };
    let first = create(r#"{"source":"web"}"#, "203.0.113.7").unwrap();
    assert_eq!(
        create(r#"{"source":"web"}"#, "198.51.100.9").unwrap(),
        first
    );
    let before = changes(&db);
    assert_eq!(
        create(r#"{"source":"partner"}"#, "203.0.113.7").unwrap_err(),
        "onboarding_create: conflict: request_key '0123456789abcdef-first' was already used with \
         another payload"
    );
    assert_eq!(changes(&db), before);
    assert_eq!(db.count("onboarding_sessions"), 1);
    assert_eq!(
        db.row(
            "SELECT length(fingerprint) AS hex FROM onboarding_create_requests",
            &[]
        ),
        json!({"hex": 64})
    );
    // Kept before 015: answered whatever the payload.
    db.conn
        .execute(
            "UPDATE onboarding_create_requests SET fingerprint = NULL",
            [],
        )
        .unwrap();
    assert_eq!(
        create(r#"{"source":"partner"}"#, "203.0.113.7").unwrap(),
        first
    );
}

/// `onboarding_create_kept`: the answer a create made with the key and the
/// payload, read without creating (a host's rate limit answers a retry
/// with it); NULL for a key no create used; another payload refused, as
/// the create itself refuses it. It writes nothing, ever.
#[test]
fn a_create_kept_under_its_key_is_read_without_creating() {
    let db = Db::memory();
    let kept = |payload: &str, key: &str| -> Result<Option<String>, String> {
        db.conn
            .query_row(
                "SELECT onboarding_create_kept(?1, ?2)",
                [payload, key],
                |r| r.get(0),
            )
            .map_err(|e| e.to_string())
    };
    assert_eq!(kept("{}", KEY), Ok(None));
    let first = db
        .call(
            "SELECT onboarding_create(?1, '203.0.113.7', '', ?2)",
            &[&"{}", &KEY],
        )
        .unwrap();
    let before = changes(&db);
    assert_eq!(
        kept("{}", KEY).map(|text| text.map(|t| serde_json::from_str::<Value>(&t).unwrap())),
        Ok(Some(first))
    );
    assert_eq!(kept("{}", "0123456789abcdef-other"), Ok(None));
    assert_eq!(
        kept(r#"{"source":"partner"}"#, KEY),
        Err(
            "onboarding_create_kept: conflict: request_key '0123456789abcdef-first' was already \
             used with another payload"
                .to_string()
        )
    );
    assert_eq!(
        kept("{}", "short"),
        Err(
            "onboarding_create_kept: invalid_field: request_key 'short' must be 16 to 128 \
             characters"
                .to_string()
        )
    );
    assert_eq!(
        db.conn
            .query_row("SELECT onboarding_create_kept('{}', NULL)", [], |r| {
                r.get::<_, Option<String>>(0)
            })
            .map_err(|e| e.to_string()),
        Err("onboarding_create_kept: invalid_field: request_key is required".to_string())
    );
    assert_eq!(changes(&db), before);
    assert_eq!(db.count("onboarding_sessions"), 1);
}

/// `onboarding_step_kept`: the answer a step saved with the key and the
/// payload, read without saving (a host's limit on "email already used"
/// answers answers a retry with it); NULL for a key no step used; another
/// payload or another step refused, as the keyed step refuses them. It
/// writes nothing, ever.
#[test]
fn a_step_kept_under_its_key_is_read_without_saving() {
    let db = Db::memory();
    let s = db.create();
    let kept = |step: &str, payload: &str, key: &str| -> Result<Option<String>, String> {
        db.conn
            .query_row(
                "SELECT onboarding_step_kept(?1, ?2, ?3, ?4)",
                [s.as_str(), step, payload, key],
                |r| r.get(0),
            )
            .map_err(|e| e.to_string())
    };
    assert_eq!(kept("vapi", VAPI, KEY), Ok(None));
    let first = step(&db, &s, "vapi", VAPI, KEY).unwrap();
    let before = changes(&db);
    assert_eq!(
        kept("vapi", VAPI, KEY)
            .map(|text| text.map(|t| serde_json::from_str::<Value>(&t).unwrap())),
        Ok(Some(first))
    );
    assert_eq!(kept("vapi", VAPI, OTHER_KEY), Ok(None));
    assert_eq!(
        kept(
            "vapi",
            r#"{"agent_type":"custom","voice":"sara","assistant_name":"Léa"}"#,
            KEY
        ),
        Err(
            "onboarding_step_kept: conflict: request_key '0123456789abcdef-first' was already \
             used with another payload"
                .to_string()
        )
    );
    assert_eq!(
        kept("kb", KB, KEY),
        Err(
            "onboarding_step_kept: conflict: request_key '0123456789abcdef-first' was already \
             used by onboarding_step('vapi')"
                .to_string()
        )
    );
    assert_eq!(
        kept("vapi", VAPI, "short"),
        Err(
            "onboarding_step_kept: invalid_field: request_key 'short' must be 16 to 128 \
             characters"
                .to_string()
        )
    );
    assert_eq!(
        db.conn
            .query_row(
                "SELECT onboarding_step_kept(?1, 'vapi', ?2, NULL)",
                [s.as_str(), VAPI],
                |r| r.get::<_, Option<String>>(0)
            )
            .map_err(|e| e.to_string()),
        Err("onboarding_step_kept: invalid_field: request_key is required".to_string())
    );
    assert_eq!(
        kept("nope", VAPI, KEY),
        Err(
            "onboarding_step_kept: invalid_field: step 'nope' is not a step (expected one of \
             business, channels, vapi, kb, appointments)"
                .to_string()
        )
    );
    assert_eq!(changes(&db), before);
}
