//! The origin note's onboarding, route by route, with its exact request
//! bodies: statuses, verbatim response bodies, and every row written.
mod common;

use common::*;
use onboarding::catalog;
use serde_json::json;

const SESSION: &str = "onb_01a20cff7d0078249a58bc0906db803c";
const TENANT: &str = "tenant_01a20cff7d0074e38a0effe11c58f223";
/// The pinned clock at create, and at complete (+60 s, +120 s, +90 s, +72 s).
const AT_CREATE: &str = "2026-11-24T10:00:00.000Z";
const AT_COMPLETE: &str = "2026-11-24T10:05:42.000Z";

fn system_prompt() -> String {
    let agent = catalog::agent_type("multi_purpose").expect("multi_purpose exists");
    catalog::system_prompt(agent, "Sara", "Mon Entreprise", catalog::Gender::Female)
}

const GREETING: &str = "Bonjour, Sara de Mon Entreprise, comment puis-je vous aider ?";

const COMPLETED: &str = concat!(
    r#"{"success":true,"message":"Onboarding terminé avec succès ! 🎉","#,
    r#""session_id":"onb_01a20cff7d0078249a58bc0906db803c","#,
    r#""tenant_id":"tenant_01a20cff7d0074e38a0effe11c58f223","#,
    r#""duration_seconds":342,"duration_minutes":6,"sync_status":"synced","already_completed":false,"#,
    r#""synced":{"agent_config":{"agent_type":"multi_purpose","agent_name":"Sara","voice_provider":"elevenlabs","#,
    r#""voice_id":"EXAVITQu4vr4xnSDxMaL","voice_language":"fr-FR","channels":["phone"]},"#,
    r#""phone_mapping":{"phone_number":"+33612345678","status":"pending_verification","is_active":false},"#,
    r#""campaign":null,"knowledge_base":{"method":"website","crawl_job":{"url":"https://mon-site.fr/","status":"queued"},"documents":null}}}"#
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_note_flow_answers_each_route_and_writes_every_table() {
    let env = pinned_env();
    let mut server = TestServer::pinned(env.clone()).await;

    let created = request(
        server.addr,
        "POST",
        "/api/v1/onboarding/session",
        &[
            ("Content-Type", "application/json"),
            ("User-Agent", "Mozilla/5.0 (onboarding test)"),
        ],
        b"{}",
    )
    .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.header("content-type"), Some("application/json"));
    // Answers about a session hold its contact details: never stored.
    assert_eq!(created.header("cache-control"), Some("no-store"));
    assert_eq!(created.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        created.body,
        format!(r#"{{"success":true,"session_id":"{SESSION}","tenant_id":"{TENANT}"}}"#)
    );

    let steps = [
        (60_000, "business", BUSINESS, 2, 33),
        (120_000, "vapi", VAPI, 4, 66),
        (90_000, "kb", KB, 5, 83),
    ];
    for (wait_ms, step, body, current, progress) in steps {
        env.advance_ms(wait_ms);
        let reply = server.post(&session_path(SESSION, step), body).await;
        assert_eq!(reply.status, 200, "{step}");
        assert_eq!(
            reply.body,
            format!(
                r#"{{"success":true,"session_id":"{SESSION}","step":"{step}","current_step":{current},"progress_percentage":{progress}}}"#
            )
        );
    }

    env.advance_ms(72_000);
    let completed = server.post(&session_path(SESSION, "complete"), "{}").await;
    assert_eq!(completed.status, 200);
    assert_eq!(completed.body, COMPLETED);

    let state = server.get(&session_path(SESSION, "")).await;
    assert_eq!(state.status, 200);
    assert_eq!(state.header("cache-control"), Some("no-store"));
    assert_eq!(
        state.json(),
        json!({
            "success": true, "session_id": SESSION, "tenant_id": TENANT, "status": "completed",
            "current_step": 6, "total_steps": 6, "progress_percentage": 100,
            "started_at": AT_CREATE, "last_updated_at": AT_COMPLETE, "completed_at": AT_COMPLETE,
            "steps": {
                "business": {"company_name": "Mon Entreprise", "industry": "real_estate",
                             "phone": "+33612345678", "email": "contact@entreprise.fr"},
                "channels": null,
                "vapi": {"agent_type": "multi_purpose", "voice": "sara", "assistant_name": "Sara"},
                "kb": {"method": "website", "crawl_url": "https://mon-site.fr/"},
                "appointments": null,
            },
            "omnichannel": {
                "tenant": {
                    "id": TENANT, "name": "Mon Entreprise", "company_name": "Mon Entreprise",
                    "email": "contact@entreprise.fr", "phone": "+33612345678",
                    "sector": "real_estate", "booking_provider": null,
                    "cal_com_event_type_id": null, "timezone": "Europe/Paris",
                    "onboarding_completed": 1, "created_at": AT_CREATE, "updated_at": AT_COMPLETE,
                },
                "agent_config": {
                    "agent_type": "multi_purpose", "agent_name": "Sara",
                    "agent_personality": "polyvalente, chaleureuse et professionnelle",
                    "voice_provider": "elevenlabs", "voice_id": "EXAVITQu4vr4xnSDxMaL",
                    "voice_language": "fr-FR", "system_prompt": system_prompt(),
                    "greeting_message": GREETING,
                    "channels_config": {"phone": {"enabled": true}, "sms": {"enabled": false},
                                        "whatsapp": {"enabled": false}, "email": {"enabled": false}},
                    "created_at": AT_COMPLETE, "updated_at": AT_COMPLETE,
                },
                "phone_mapping": {
                    "phone_number": "+33612345678", "is_active": false,
                    "status": "pending_verification",
                    "created_at": AT_COMPLETE, "updated_at": AT_COMPLETE,
                },
                "campaign": null,
                "kb_crawl_job": {
                    "id": 1, "url": "https://mon-site.fr/", "status": "queued",
                    "created_at": AT_COMPLETE, "updated_at": AT_COMPLETE,
                },
                "knowledge_base": {"documents": 0, "chunks": 0},
            },
            "phone_verification": null,
        })
    );

    server.stop().await;
    // The shutdown folded the WAL back into the database file (SQLite removes
    // it when the last connection closes cleanly).
    let wal = server.db_path.with_extension("db-wal");
    assert!(
        !wal.exists(),
        "{} left after a clean shutdown",
        wal.display()
    );
    let db = rusqlite::Connection::open(&server.db_path).expect("open the closed database");
    assert_eq!(
        rows(&db, "tenants"),
        [json!({
            "id": TENANT, "name": "Mon Entreprise", "company_name": "Mon Entreprise",
            "email": "contact@entreprise.fr", "phone": "+33612345678", "sector": "real_estate",
            "api_key": "tmp_01a20cff7d00fa3144de5d6d37451c67e937a42f9e9eee35f6ccd57d3d0b77b80557ae777f29",
            "booking_provider": null, "cal_com_api_key": null, "cal_com_event_type_id": null,
            "timezone": "Europe/Paris", "onboarding_completed": 1,
            "created_at": AT_CREATE, "updated_at": AT_COMPLETE,
        })]
    );
    assert_eq!(
        rows(&db, "onboarding_sessions"),
        [json!({
            "id": SESSION, "tenant_id": TENANT, "current_step": 6, "total_steps": 6,
            "progress_percentage": 100,
            "business_data": r#"{"company_name":"Mon Entreprise","industry":"real_estate","phone":"+33612345678","email":"contact@entreprise.fr"}"#,
            "channels_data": null,
            "vapi_data": r#"{"agent_type":"multi_purpose","voice":"sara","assistant_name":"Sara"}"#,
            "kb_data": r#"{"method":"website","crawl_url":"https://mon-site.fr/"}"#,
            "appointments_data": null, "status": "completed", "source": "web",
            "started_at": AT_CREATE, "last_updated_at": AT_COMPLETE,
            "step_started_at": AT_COMPLETE, "completed_at": AT_COMPLETE, "abandoned_at": null,
            // The server's view of the client, not anything the client said.
            "ip_address": "127.0.0.1", "user_agent": "Mozilla/5.0 (onboarding test)",
            "is_active": 1, "completion_result": COMPLETED,
        })]
    );
    assert_eq!(
        rows(&db, "onboarding_analytics"),
        [json!({
            "id": 1, "session_id": SESSION, "tenant_id": TENANT, "total_duration_seconds": 342,
            "step_1_duration": 60.0, "step_2_duration": 120.0, "step_3_duration": 0.0,
            "step_4_duration": 90.0, "step_5_duration": 72.0, "step_6_duration": 0.0,
            "completed": 1, "abandoned_at_step": null,
            "created_at": AT_CREATE, "completed_at": AT_COMPLETE,
        })]
    );
    assert_eq!(
        rows(&db, "omni_agent_configs"),
        [json!({
            "id": 1, "tenant_id": TENANT, "agent_type": "multi_purpose", "agent_name": "Sara",
            "agent_personality": "polyvalente, chaleureuse et professionnelle",
            "voice_provider": "elevenlabs", "voice_id": "EXAVITQu4vr4xnSDxMaL",
            "voice_language": "fr-FR", "system_prompt": system_prompt(),
            "greeting_message": GREETING,
            "channels_config": r#"{"phone":{"enabled":true},"sms":{"enabled":false},"whatsapp":{"enabled":false},"email":{"enabled":false}}"#,
            "created_at": AT_COMPLETE, "updated_at": AT_COMPLETE,
        })]
    );
    assert_eq!(
        rows(&db, "omni_phone_mappings"),
        [json!({
            "id": 1, "phone_number": "+33612345678", "tenant_id": TENANT, "is_active": 0,
            "status": "pending_verification", "created_at": AT_COMPLETE, "updated_at": AT_COMPLETE,
        })]
    );
    // No appointments configured: no campaign (see the next test).
    assert_eq!(
        rows(&db, "omnichannel_campaigns"),
        Vec::<serde_json::Value>::new()
    );
    assert_eq!(
        rows(&db, "kb_crawl_jobs"),
        [json!({
            "id": 1, "tenant_id": TENANT, "session_id": SESSION, "url": "https://mon-site.fr/",
            "status": "queued", "created_at": AT_COMPLETE, "updated_at": AT_COMPLETE,
            "attempts": 0, "lease_owner": null, "lease_expires_at": null, "next_attempt_at": null,
            "pages_found": 0, "pages_stored": 0, "pages_skipped": 0, "pages_failed": 0,
            "error_code": null, "started_at": null, "finished_at": null,
            "bytes_fetched": 0, "crawl_ms": 0, "site_waits": 0,
        })]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_and_appointments_steps_write_the_campaign() {
    let env = pinned_env();
    let mut server = TestServer::pinned(env.clone()).await;
    let created = server.post("/api/v1/onboarding/session", "").await;
    assert_eq!(created.status, 201);
    let steps = [
        ("business", BUSINESS, 2, 33),
        ("channels", r#"{"channels":["phone","sms"]}"#, 3, 50),
        ("vapi", VAPI, 4, 66),
        ("kb", r#"{"method":"skip"}"#, 5, 83),
        (
            "appointments",
            r#"{"provider":"cal_com","event_type_id":"123456","timezone":"Europe/Paris"}"#,
            5,
            83,
        ),
    ];
    for (step, body, current, progress) in steps {
        env.advance_ms(1_000);
        let reply = server.post(&session_path(SESSION, step), body).await;
        assert_eq!(
            reply.body,
            format!(
                r#"{{"success":true,"session_id":"{SESSION}","step":"{step}","current_step":{current},"progress_percentage":{progress}}}"#
            )
        );
        assert_eq!(reply.status, 200);
    }
    env.advance_ms(1_000);
    // An empty body is SQL NULL, which the library reads as `{}`.
    let completed = server.post(&session_path(SESSION, "complete"), "").await;
    assert_eq!(completed.status, 200);
    assert_eq!(
        completed.json()["synced"]["campaign"],
        json!({
            "name": "Prise de rendez-vous – Mon Entreprise", "campaign_type": "appointment",
            "status": "active", "channels": ["phone", "sms"],
            "settings": {"provider": "cal_com", "event_type_id": "123456", "timezone": "Europe/Paris"},
        })
    );
    server.stop().await;
    let db = rusqlite::Connection::open(&server.db_path).expect("open the closed database");
    assert_eq!(
        rows(&db, "omnichannel_campaigns"),
        [json!({
            "id": 1, "tenant_id": TENANT, "name": "Prise de rendez-vous – Mon Entreprise",
            "campaign_type": "appointment", "channels": r#"["phone","sms"]"#, "status": "active",
            "settings": r#"{"provider":"cal_com","event_type_id":"123456","timezone":"Europe/Paris"}"#,
            "created_at": "2026-11-24T10:00:06.000Z", "updated_at": "2026-11-24T10:00:06.000Z",
        })]
    );
    // `skip` queues no crawl.
    assert_eq!(rows(&db, "kb_crawl_jobs"), Vec::<serde_json::Value>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogues_health_and_openapi_are_served_verbatim() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let agent_types = server.get("/api/v1/onboarding/agent-types").await;
    assert_eq!(agent_types.status, 200);
    assert_eq!(agent_types.body, catalog::agent_types_json().to_string());
    let voices = server.get("/api/v1/onboarding/voices").await;
    assert_eq!(voices.status, 200);
    assert_eq!(voices.body, catalog::voices_json().to_string());
    let health = server.get("/healthz").await;
    assert_eq!(health.status, 200);
    assert_eq!(
        health.body,
        format!(
            r#"{{"success":true,"status":"ok","schema_version":{},"engine_version":"{}"}}"#,
            onboarding::latest_version(),
            onboarding::VERSION
        )
    );
    let openapi = server.get("/openapi.json").await;
    assert_eq!(openapi.status, 200);
    assert_eq!(openapi.header("content-type"), Some("application/json"));
    // The document as written, with `servers` naming this server.
    let mut expected: serde_json::Value =
        serde_json::from_str(onboarding_server::http::OPENAPI).unwrap();
    expected["servers"] = serde_json::json!([{ "url": format!("http://{}", server.addr) }]);
    assert_eq!(openapi.json(), expected);
    server.stop().await;
}

/// A session's writers sent again with their `Idempotency-Key` (an answer
/// lost) answer their first answer and write nothing more, whichever client
/// address the retry comes from: a step its progress, a send its code (not
/// a second one, nor the 60 s spacing's 429), a wrong code its one count, a
/// completion its first result. The key is one call's: with another body
/// or on another route it is refused, naming the header. Keys are per
/// session: another session's call under the same key is a call of its
/// own, and an unknown session hears nothing of the key. A key outside the
/// rule is refused before anything is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_writers_sent_again_with_their_idempotency_key_answer_their_first_answer() {
    let (mut config, dir) = temp_config();
    config.trust_proxy = vec!["127.0.0.1/32".parse().unwrap()];
    let mut server = TestServer::start(config, dir).await;
    let created = server.post("/api/v1/onboarding/session", "{}").await;
    let id = created.json()["session_id"].as_str().unwrap().to_string();
    let keyed = |action: &str, client: &'static str, key: &'static str, body: &str| {
        let (addr, path, body) = (server.addr, session_path(&id, action), body.to_string());
        async move {
            request(
                addr,
                "POST",
                &path,
                &[("X-Forwarded-For", client), ("Idempotency-Key", key)],
                body.as_bytes(),
            )
            .await
        }
    };
    let count = |server: &TestServer, sql: &str| -> i64 {
        server.read_db().query_row(sql, [], |r| r.get(0)).unwrap()
    };
    let refused = |reply: &Reply, status: u16, error: &str, field: Option<&str>| {
        let mut expected = json!({"success": false, "error": error, "code": reply.json()["code"]});
        if let Some(field) = field {
            expected["field"] = json!(field);
        }
        assert_eq!(
            (reply.status, reply.json()),
            (status, expected),
            "{}",
            reply.body
        );
    };
    const STEP_KEY: &str = "8f1d2c3b-4a59-4e6f-8071-92a3b4c5d6e7";

    let business = keyed("business", "198.51.100.7", STEP_KEY, BUSINESS).await;
    assert_eq!(business.status, 200, "{}", business.body);
    let updated = |server: &TestServer| -> String {
        server
            .read_db()
            .query_row("SELECT last_updated_at FROM onboarding_sessions", [], |r| {
                r.get(0)
            })
            .unwrap()
    };
    let saved_at = updated(&server);
    // From another address (the phone left the Wi-Fi): the same answer.
    let again = keyed("business", "203.0.113.9", STEP_KEY, BUSINESS).await;
    assert_eq!((again.status, &again.body), (200, &business.body));
    assert_eq!(updated(&server), saved_at, "the retry wrote nothing");
    let other_body = BUSINESS.replace("Mon Entreprise", "Autre Entreprise");
    refused(
        &keyed("business", "198.51.100.7", STEP_KEY, &other_body).await,
        409,
        "Idempotency-Key was already used with another body: a new request needs a new key",
        None,
    );
    refused(
        &keyed("vapi", "198.51.100.7", STEP_KEY, VAPI).await,
        409,
        "Idempotency-Key was already used for the business step: a new request needs a new key",
        None,
    );
    assert_eq!(
        server.get(&session_path(&id, "")).await.json()["steps"]["business"]["company_name"],
        "Mon Entreprise"
    );
    let vapi = server.post(&session_path(&id, "vapi"), VAPI).await;
    assert_eq!(vapi.status, 200, "{}", vapi.body);

    const SEND_KEY: &str = "0c1d2e3f-4a5b-4c6d-9e8f-a0b1c2d3e4f5";
    let sent = keyed("phone/verification", "198.51.100.7", SEND_KEY, "{}").await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    let sent_again = keyed("phone/verification", "198.51.100.7", SEND_KEY, "{}").await;
    assert_eq!((sent_again.status, &sent_again.body), (201, &sent.body));
    assert_eq!(count(&server, "SELECT count(*) FROM outbox_messages"), 1);
    assert_eq!(count(&server, "SELECT sends FROM phone_verifications"), 1);
    // A new send (a new key) is a resend, spaced by 60 s as without keys.
    let resend = keyed(
        "phone/verification",
        "198.51.100.7",
        "1d2e3f4a-5b6c-4d7e-8f90-a1b2c3d4e5f6",
        "{}",
    )
    .await;
    assert_eq!(
        (resend.status, resend.json()["code"].as_str()),
        (429, Some("rate_limited"))
    );

    let code: String = server
        .read_db()
        .query_row("SELECT text FROM outbox_messages", [], |r| r.get(0))
        .unwrap();
    let code: String = code.chars().filter(char::is_ascii_digit).take(6).collect();
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    const VERIFY_KEY: &str = "2e3f4a5b-6c7d-4e8f-90a1-b2c3d4e5f6a7";
    let wrong_body = format!(r#"{{"code":"{wrong}"}}"#);
    for _ in 0..2 {
        refused(
            &keyed("phone/verify", "198.51.100.7", VERIFY_KEY, &wrong_body).await,
            422,
            "code is wrong; 4 tries left",
            Some("code"),
        );
    }
    assert_eq!(
        count(&server, "SELECT attempts FROM phone_verifications"),
        1
    );

    const COMPLETE_KEY: &str = "3f4a5b6c-7d8e-4f90-a1b2-c3d4e5f6a7b8";
    let completed = keyed("complete", "198.51.100.7", COMPLETE_KEY, "").await;
    assert_eq!(completed.status, 200, "{}", completed.body);
    assert_eq!(completed.json()["already_completed"], false);
    let completed_again = keyed("complete", "198.51.100.7", COMPLETE_KEY, "").await;
    assert_eq!(
        (completed_again.status, &completed_again.body),
        (200, &completed.body)
    );
    let plain = server.post(&session_path(&id, "complete"), "").await;
    assert_eq!(plain.json()["already_completed"], true);

    // Another session's call under a key of this one's: its own call.
    let other = server.post("/api/v1/onboarding/session", "{}").await;
    let other_id = other.json()["session_id"].as_str().unwrap().to_string();
    let other_business = BUSINESS.replace("contact@entreprise.fr", "accueil@autre.fr");
    let reply = request(
        server.addr,
        "POST",
        &session_path(&other_id, "business"),
        &[("Idempotency-Key", STEP_KEY)],
        other_business.as_bytes(),
    )
    .await;
    assert_eq!(
        (reply.status, reply.json()["session_id"].as_str()),
        (200, Some(other_id.as_str()))
    );
    // An unknown session: 404, whatever the key was used for.
    let unknown = request(
        server.addr,
        "POST",
        &session_path("onb_0123456789abcdef", "complete"),
        &[("Idempotency-Key", STEP_KEY)],
        b"",
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(
        count(&server, "SELECT count(*) FROM onboarding_call_replies"),
        5,
        "one kept answer per keyed call that wrote"
    );

    // Refused before the body is read, on every writer, the completion too.
    for action in ["business", "complete", "phone/verification", "phone/verify"] {
        refused(
            &keyed(action, "198.51.100.7", "short-key", "{}").await,
            422,
            "Idempotency-Key 'short-key' must be 16 to 64 visible ASCII characters (a UUID, say)",
            Some("Idempotency-Key"),
        );
        let twice = request(
            server.addr,
            "POST",
            &session_path(&other_id, action),
            &[
                ("Idempotency-Key", SEND_KEY),
                ("Idempotency-Key", VERIFY_KEY),
            ],
            b"{}",
        )
        .await;
        refused(
            &twice,
            422,
            "Idempotency-Key is given more than once; send one key",
            Some("Idempotency-Key"),
        );
    }
    assert_eq!(
        count(&server, "SELECT count(*) FROM onboarding_call_replies"),
        5
    );
    assert_eq!(
        count(
            &server,
            &format!("SELECT current_step FROM onboarding_sessions WHERE id = '{other_id}'")
        ),
        2
    );
    server.stop().await;
}

/// A create sent again with its `Idempotency-Key` (its answer lost) gets
/// the same session and writes nothing; the same key from another client
/// gets a session of its own (never the first one's id, its credential);
/// a key that could repeat is refused, naming the header and the rule,
/// before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_sent_again_with_its_idempotency_key_gets_the_same_session() {
    let (mut config, dir) = temp_config();
    // The peer (loopback) is a trusted proxy: X-Forwarded-For names the
    // client, so two clients can be had on loopback.
    config.trust_proxy = vec!["127.0.0.1/32".parse().unwrap()];
    let mut server = TestServer::start(config, dir).await;
    const KEY: &str = "5b0e8a1c-2f43-4c5e-9a7d-0c1b2d3e4f50";
    let create = |client: &'static str, key: &'static str| {
        let addr = server.addr;
        async move {
            request(
                addr,
                "POST",
                "/api/v1/onboarding/session",
                &[("X-Forwarded-For", client), ("Idempotency-Key", key)],
                b"{}",
            )
            .await
        }
    };
    let sessions = |server: &TestServer| rows(&server.read_db(), "onboarding_sessions");

    let first = create("198.51.100.7", KEY).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let again = create("198.51.100.7", KEY).await;
    assert_eq!((again.status, &again.body), (201, &first.body));
    assert_eq!(sessions(&server).len(), 1);

    // The same key with another body is no retry: refused, nothing written.
    let changed = request(
        server.addr,
        "POST",
        "/api/v1/onboarding/session",
        &[
            ("X-Forwarded-For", "198.51.100.7"),
            ("Idempotency-Key", KEY),
        ],
        br#"{"source":"partner"}"#,
    )
    .await;
    assert_eq!(changed.status, 409, "{}", changed.body);
    assert_eq!(
        changed.json(),
        json!({
            "success": false,
            "error": "Idempotency-Key was already used with another body: a new create needs a new key",
            "code": "conflict",
        })
    );
    assert_eq!(sessions(&server).len(), 1);

    let other = create("203.0.113.9", KEY).await;
    assert_eq!(other.status, 201, "{}", other.body);
    assert_ne!(
        other.json()["session_id"],
        first.json()["session_id"],
        "another client's key"
    );
    assert_eq!(sessions(&server).len(), 2);

    for (key, shown) in [
        ("short-key", "'short-key'"),
        (
            "x".repeat(65).leak() as &'static str,
            "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…'",
        ),
        ("a key with spaces in it", "'a key with spaces in it'"),
    ] {
        let refused = create("198.51.100.7", key).await;
        assert_eq!(refused.status, 422, "{key}");
        assert_eq!(
            refused.json(),
            json!({
                "success": false,
                "error": format!(
                    "Idempotency-Key {shown} must be 16 to 64 visible ASCII characters (a UUID, say)"
                ),
                "code": "invalid_field",
                "field": "Idempotency-Key",
            }),
            "{key}"
        );
    }
    assert_eq!(sessions(&server).len(), 2);
    let twice = request(
        server.addr,
        "POST",
        "/api/v1/onboarding/session",
        &[
            ("X-Forwarded-For", "198.51.100.7"),
            ("Idempotency-Key", KEY),
            ("Idempotency-Key", "6c1f9b2d-3054-4d6f-8b8e-1d2c3e4f5061"),
        ],
        b"{}",
    )
    .await;
    assert_eq!(
        (twice.status, twice.json()),
        (
            422,
            json!({
                "success": false,
                "error": "Idempotency-Key is given more than once; send one key",
                "code": "invalid_field",
                "field": "Idempotency-Key",
            })
        )
    );
    assert_eq!(sessions(&server).len(), 2);
    server.stop().await;
}
