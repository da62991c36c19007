//! Phone verification over HTTP: the whole path from the business step to a
//! routed number, the statuses of each refusal (429 with Retry-After), the
//! outbox drained by a sender on its own connection, and the log, which never
//! carries a code unless the server is the sender (`--outbox-log`).
mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const PHONE: &str = "+33612345678";

/// A sender on a connection of its own, as an SMS gateway would run: claims
/// the next message, reports it sent, answers the code in its text.
fn deliver(db_path: &std::path::Path, env: std::sync::Arc<onboarding::PinnedEnv>) -> String {
    let conn = rusqlite::Connection::open(db_path).expect("open the database");
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    onboarding::register_with(&conn, env).unwrap();
    sender_round(&conn, "sms-gateway")
}

/// One claim and one report on `conn`; the code of the message.
fn sender_round(conn: &rusqlite::Connection, worker: &str) -> String {
    let claimed: String = conn
        .query_row("SELECT onboarding_outbox_claim(?1, 60)", [worker], |r| {
            r.get(0)
        })
        .expect("claim");
    let claimed: Value = serde_json::from_str(&claimed).unwrap();
    let message = &claimed["message"];
    let id = message["id"].as_i64().expect("a queued message");
    conn.query_row(
        "SELECT onboarding_outbox_sent(?1, ?2, 'provider-42')",
        rusqlite::params![id, worker],
        |r| r.get::<_, String>(0),
    )
    .expect("sent");
    code_in(message["text"].as_str().unwrap())
}

fn code_in(text: &str) -> String {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    digits[..6].to_string()
}

fn wrong(code: &str) -> String {
    let n: u32 = code.parse().unwrap();
    format!("{:06}", (n + 1) % 1_000_000)
}

async fn session_with_business(server: &TestServer, email: &str) -> String {
    let created = server.post("/api/v1/onboarding/session", "{}").await;
    let id = created.json()["session_id"].as_str().unwrap().to_string();
    let body = BUSINESS.replace("contact@entreprise.fr", email);
    let reply = server.post(&session_path(&id, "business"), &body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    id
}

/// The runtime's lookup of the tenant a call to `phone` goes to.
fn routed_to(server: &TestServer, phone: &str) -> Vec<String> {
    let db = server.read_db();
    let mut stmt = db
        .prepare(
            "SELECT tenant_id FROM omni_phone_mappings WHERE phone_number = ?1 AND is_active = 1",
        )
        .unwrap();
    let rows = stmt.query_map([phone], |r| r.get(0)).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_complete_send_deliver_verify_routes_the_number() {
    let env = pinned_env();
    let mut server = TestServer::pinned(env.clone()).await;
    let id = completable_session(&server).await;
    let tenant = server.get(&session_path(&id, "")).await.json()["tenant_id"]
        .as_str()
        .unwrap()
        .to_string();
    let completed = server.post(&session_path(&id, "complete"), "{}").await;
    assert_eq!(
        completed.json()["synced"]["phone_mapping"],
        json!({"phone_number": PHONE, "status": "pending_verification", "is_active": false})
    );
    assert!(routed_to(&server, PHONE).is_empty());

    env.advance_ms(30_000);
    let sent = server
        .post(&session_path(&id, "phone/verification"), "{}")
        .await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    let verification = sent.json()["verification_id"].as_str().unwrap().to_string();
    assert_eq!(
        sent.body,
        format!(
            r#"{{"success":true,"verification_id":"{verification}","phone_number":"{PHONE}","channel":"sms","expires_at":"2026-11-24T10:10:30.000Z","resend_after":"2026-11-24T10:01:30.000Z"}}"#
        )
    );
    let code = deliver(&server.db_path, env.clone());

    let verified = server
        .post(
            &session_path(&id, "phone/verify"),
            &json!({ "code": code }).to_string(),
        )
        .await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert_eq!(
        verified.body,
        format!(
            r#"{{"success":true,"verification_id":"{verification}","phone_number":"{PHONE}","status":"verified","is_active":true,"reason":null}}"#
        )
    );
    assert_eq!(routed_to(&server, PHONE), std::slice::from_ref(&tenant));
    let state = server.get(&session_path(&id, "")).await;
    let state = state.json();
    assert_eq!(state["phone_verification"]["status"], "verified");
    assert_eq!(
        state["omnichannel"]["phone_mapping"]["status"],
        json!("verified")
    );
    for body in [&sent.body, &verified.body, &state.to_string()] {
        assert!(!body.contains(&code), "the code is in {body}");
    }

    // Another tenant proving the same number does not take its calls.
    let other = session_with_business(&server, "autre@entreprise.fr").await;
    assert_eq!(
        server
            .post(&session_path(&other, "vapi"), VAPI)
            .await
            .status,
        200
    );
    assert_eq!(
        server
            .post(&session_path(&other, "complete"), "{}")
            .await
            .status,
        200
    );
    assert_eq!(
        server
            .post(&session_path(&other, "phone/verification"), "{}")
            .await
            .status,
        201
    );
    let code = deliver(&server.db_path, env.clone());
    let second = server
        .post(
            &session_path(&other, "phone/verify"),
            &json!({ "code": code }).to_string(),
        )
        .await;
    assert_eq!(second.status, 200);
    assert_eq!(
        (&second.json()["is_active"], &second.json()["reason"]),
        (
            &json!(false),
            &json!(
                "phone '+33612345678' is already active for another tenant; it stays inactive here"
            )
        )
    );
    assert_eq!(routed_to(&server, PHONE), [tenant]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_answer_their_statuses() {
    let env = pinned_env();
    let mut server = TestServer::pinned(env.clone()).await;
    let created = server.post("/api/v1/onboarding/session", "{}").await;
    let id = created.json()["session_id"].as_str().unwrap().to_string();
    let send = session_path(&id, "phone/verification");

    let early = server.post(&send, "").await;
    assert_eq!(early.status, 409);
    assert_eq!(
        early.body,
        format!(
            r#"{{"success":false,"error":"session '{id}' has no business phone yet (save the business step first)","code":"incomplete"}}"#
        )
    );
    assert_eq!(
        server
            .post(&session_path(&id, "business"), BUSINESS)
            .await
            .status,
        200
    );
    let fax = server.post(&send, r#"{"channel":"fax"}"#).await;
    assert_eq!(fax.status, 422);
    assert_eq!(
        fax.body,
        r#"{"success":false,"error":"channel 'fax' is not a way to send a code (expected one of sms, voice)","code":"invalid_field","field":"channel"}"#
    );
    assert_eq!(server.post(&send, "{}").await.status, 201);
    env.advance_ms(12_000);
    let again = server.post(&send, "{}").await;
    assert_eq!(again.status, 429);
    assert_eq!(again.header("retry-after"), Some("48"));
    assert_eq!(
        again.body,
        r#"{"success":false,"error":"a code was sent 12 s ago; codes are sent at least 60 s apart (retry after 48 s)","code":"rate_limited"}"#
    );

    let code = deliver(&server.db_path, env.clone());
    let verify = session_path(&id, "phone/verify");
    let bad = json!({ "code": wrong(&code) }).to_string();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let reply = server.post(&verify, &bad).await;
        assert_eq!(reply.json()["field"], "code");
        statuses.push((reply.status, reply.json()["error"].clone()));
    }
    assert_eq!(
        statuses,
        [
            (422, json!("code is wrong; 4 tries left")),
            (422, json!("code is wrong; 3 tries left")),
            (422, json!("code is wrong; 2 tries left")),
            (422, json!("code is wrong; 1 try left")),
            (422, json!("code is wrong; no tries left (send a new code)")),
        ]
    );
    // The sixth, even right, is refused: the verification is dead.
    let locked = server
        .post(&verify, &json!({ "code": code }).to_string())
        .await;
    assert_eq!(locked.status, 409);
    assert_eq!(locked.json()["code"], "conflict");
    assert!(locked.json()["error"]
        .as_str()
        .unwrap()
        .ends_with("is locked after 5 wrong codes (send a new code)"));
    let missing = server
        .post(
            &session_path("onb_nope", "phone/verify"),
            r#"{"code":"123456"}"#,
        )
        .await;
    assert_eq!(missing.status, 404);
    server.stop().await;
}

/// A sender that claimed a message and died: when its lease runs out, the
/// server's own sender (`--outbox-log`) takes the message over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_sender_takes_over_a_crashed_senders_lease() {
    let env = pinned_env();
    let (mut config, dir) = temp_config();
    config.env = Some(env.clone());
    config.outbox_log = true;
    let mut server = TestServer::start(config, dir).await;
    let id = session_with_business(&server, "contact@entreprise.fr").await;
    // Another process sends a code and claims its message in one
    // transaction (the server's sender cannot get in between), then dies.
    let crashed = rusqlite::Connection::open(&server.db_path).unwrap();
    crashed.busy_timeout(Duration::from_secs(10)).unwrap();
    onboarding::register_with(&crashed, env.clone()).unwrap();
    crashed.execute_batch("BEGIN IMMEDIATE").unwrap();
    let call = |sql: &str| -> String { crashed.query_row(sql, [&id], |r| r.get(0)).unwrap() };
    call("SELECT onboarding_phone_send(?1, '{}')");
    let claimed = call("SELECT onboarding_outbox_claim('crashed', 30) WHERE ?1 IS NOT NULL");
    crashed.execute_batch("COMMIT").unwrap();
    drop(crashed);
    let claimed: Value = serde_json::from_str(&claimed).unwrap();
    assert_eq!(
        claimed["message"]["lease_until"],
        "2026-11-24T10:00:30.000Z"
    );

    let message = || -> Value {
        let row: String = server
            .read_db()
            .query_row(
                "SELECT json_object('status', status, 'owner', lease_owner, 'claims', claims,
                                    'text', text, 'provider_id', provider_id)
                 FROM outbox_messages WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        serde_json::from_str(&row).unwrap()
    };
    // The lease holds: two polls of the server's sender leave it alone.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(
        (&message()["status"], &message()["owner"]),
        (&json!("sending"), &json!("crashed"))
    );
    env.advance_ms(30_000);
    let mut taken = message();
    for _ in 0..100 {
        if taken["status"] == "sent" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        taken = message();
    }
    assert_eq!(
        taken,
        json!({"status": "sent", "owner": "outbox-log", "claims": 2, "text": "",
               "provider_id": "log"})
    );
    server.stop().await;
}

/// `ONBOARDING_OUTBOX_LOG` takes the forms a shell's switches do: `1` was
/// refused ("possible values: true, false"). Read as on here, the flag's
/// own rule answers (it needs the info level).
#[test]
fn the_outbox_log_variable_takes_1_yes_and_on() {
    for value in ["1", "yes", "on", "true"] {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_onboarding-server"))
            .arg("--db")
            .arg(dir.path().join("onboarding.db"))
            .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
            .env("ONBOARDING_OUTBOX_LOG", value)
            .output()
            .expect("run onboarding-server");
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned()
            ),
            (
                Some(2),
                "onboarding-server: error: --outbox-log writes each message as an info line: \
                 it needs --log-level info, debug or trace (got warn)\n"
                    .to_string()
            ),
            "{value}"
        );
    }
}

#[test]
fn no_code_reaches_the_log_without_outbox_log() {
    let mut server = Spawned::start(&[]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = server.addr;
    let post = |path: String, body: &str| {
        runtime.block_on(request(addr, "POST", &path, &[], body.as_bytes()))
    };
    let created = post("/api/v1/onboarding/session".to_string(), "{}");
    let id = created.json()["session_id"].as_str().unwrap().to_string();
    assert_eq!(post(session_path(&id, "business"), BUSINESS).status, 200);
    assert_eq!(
        post(session_path(&id, "phone/verification"), "{}").status,
        201
    );
    let conn = rusqlite::Connection::open(&server.db_path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    onboarding::register(&conn).unwrap();
    let code = sender_round(&conn, "gateway");
    let bad = post(
        session_path(&id, "phone/verify"),
        &json!({ "code": wrong(&code) }).to_string(),
    );
    assert_eq!(bad.status, 422);
    let good = post(
        session_path(&id, "phone/verify"),
        &json!({ "code": code }).to_string(),
    );
    assert_eq!(good.status, 200, "{}", good.body);
    server.stop();
    let log = server.log_text();
    assert!(log.contains("phone/verify"), "{log}");
    assert!(!log.contains(&code), "the code is in the log:\n{log}");
    assert!(
        !log.contains("Votre code"),
        "a message is in the log:\n{log}"
    );
}

#[test]
fn with_outbox_log_the_server_prints_each_message_and_marks_it_sent() {
    let mut server = Spawned::start(&["--outbox-log"]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = server.addr;
    let post = |path: String, body: &str| {
        runtime.block_on(request(addr, "POST", &path, &[], body.as_bytes()))
    };
    let created = post("/api/v1/onboarding/session".to_string(), "{}");
    let id = created.json()["session_id"].as_str().unwrap().to_string();
    assert_eq!(post(session_path(&id, "business"), BUSINESS).status, 200);
    assert_eq!(
        post(session_path(&id, "phone/verification"), "{}").status,
        201
    );
    let mut line = None;
    for _ in 0..100 {
        line = server
            .log
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("outbox message"))
            .cloned();
        if line.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let line = line.expect("the message is logged within 10 s");
    assert!(
        line.contains("recipient=+33612345678 channel=sms text=\"Votre code de vérification : "),
        "{line}"
    );
    let code = code_in(&line[line.find("text=").unwrap()..]);
    let good = post(
        session_path(&id, "phone/verify"),
        &json!({ "code": code }).to_string(),
    );
    assert_eq!(good.status, 200, "{}", good.body);
    server.stop();
    let db = rusqlite::Connection::open(&server.db_path).unwrap();
    assert_eq!(
        rows(&db, "outbox_messages")
            .iter()
            .map(|m| json!([m["status"], m["text"], m["lease_owner"], m["provider_id"]]))
            .collect::<Vec<_>>(),
        [json!(["sent", "", "outbox-log", "log"])]
    );
    assert_eq!(
        server
            .log_text()
            .lines()
            .filter(|l| l.contains(&code))
            .count(),
        1
    );
}
