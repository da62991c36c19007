//! The other functions (create, get, migrate, version, catalogues) and how
//! they are registered: the exact list, DIRECTONLY writers, a schema that
//! was never migrated.

mod common;

use common::{Db, T0};
use onboarding::PinnedEnv;
use rusqlite::{types::Value as SqlValue, Connection};
use serde_json::json;

#[test]
fn the_library_adds_exactly_these_functions() {
    let conn = Connection::open_in_memory().unwrap();
    let builtin: Vec<String> = list_functions(&conn);
    onboarding::register(&conn).unwrap();
    let added: Vec<String> = list_functions(&conn)
        .into_iter()
        .filter(|f| !builtin.contains(f))
        .collect();
    assert_eq!(
        added,
        [
            "onboarding_agent_types/0",
            "onboarding_complete/1",
            "onboarding_complete/2",
            "onboarding_complete/3",
            "onboarding_create/0",
            "onboarding_create/1",
            "onboarding_create/3",
            "onboarding_create/4",
            "onboarding_create_kept/2",
            "onboarding_get/1",
            "onboarding_kb_claim/1",
            "onboarding_kb_finish/1",
            "onboarding_kb_get/1",
            "onboarding_kb_prepare/1",
            "onboarding_kb_recut/0",
            "onboarding_kb_release/1",
            "onboarding_kb_renew/1",
            "onboarding_kb_search/1",
            "onboarding_kb_site_release/1",
            "onboarding_kb_site_take/1",
            "onboarding_kb_store_page/1",
            "onboarding_migrate/0",
            "onboarding_outbox_claim/2",
            "onboarding_outbox_failed/3",
            "onboarding_outbox_sent/3",
            "onboarding_phone_send/2",
            "onboarding_phone_send/3",
            "onboarding_phone_send/4",
            "onboarding_phone_verify/2",
            "onboarding_phone_verify/3",
            "onboarding_schema_version/0",
            "onboarding_step/3",
            "onboarding_step/4",
            "onboarding_step_kept/4",
            "onboarding_version/0",
            "onboarding_voices/0",
        ]
    );
    assert_eq!(
        onboarding::function_names(),
        [
            "onboarding_agent_types",
            "onboarding_complete",
            "onboarding_create",
            "onboarding_create_kept",
            "onboarding_get",
            "onboarding_kb_claim",
            "onboarding_kb_finish",
            "onboarding_kb_get",
            "onboarding_kb_prepare",
            "onboarding_kb_recut",
            "onboarding_kb_release",
            "onboarding_kb_renew",
            "onboarding_kb_search",
            "onboarding_kb_site_release",
            "onboarding_kb_site_take",
            "onboarding_kb_store_page",
            "onboarding_migrate",
            "onboarding_outbox_claim",
            "onboarding_outbox_failed",
            "onboarding_outbox_sent",
            "onboarding_phone_send",
            "onboarding_phone_verify",
            "onboarding_schema_version",
            "onboarding_step",
            "onboarding_step_kept",
            "onboarding_version",
            "onboarding_voices"
        ]
    );
}

fn list_functions(conn: &Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT DISTINCT name || '/' || narg FROM pragma_function_list ORDER BY 1")
        .unwrap();
    let rows = stmt.query_map([], |r| r.get(0)).unwrap();
    rows.collect::<Result<_, _>>().unwrap()
}

#[test]
fn create_answers_ids_with_the_prefixes_and_writes_three_rows() {
    let db = Db::memory();
    let v = db
        .call(
            r#"SELECT onboarding_create('{"source":"web","ip_address":"203.0.113.7","user_agent":"Mozilla/5.0"}')"#,
            &[],
        )
        .unwrap();
    let session = v["session_id"].as_str().unwrap();
    let tenant = v["tenant_id"].as_str().unwrap();
    assert_eq!(
        v,
        json!({"success": true, "session_id": session, "tenant_id": tenant})
    );
    // 32 hex digits of a v7 uuid: the creation time in milliseconds
    // (0x01a20cff7d00 is T0), the version, then 74 random bits.
    for (id, prefix) in [(session, "onb_"), (tenant, "tenant_")] {
        let hex = id.strip_prefix(prefix).unwrap();
        assert_eq!(hex.len(), 32);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(&hex[..12], "01a20cff7d00");
        assert_eq!(&hex[12..13], "7");
    }
    assert_eq!(
        db.row(
            "SELECT name, email, created_at, length(api_key) AS api_key_length FROM tenants WHERE id = ?1",
            &[&tenant]
        ),
        json!({
            "name": "Onboarding in progress",
            "email": format!("pending+{tenant}@onboarding.invalid"),
            "created_at": "2026-11-24T10:00:00.000Z",
            "api_key_length": 80,
        })
    );
    assert_eq!(
        db.row(
            "SELECT tenant_id, current_step, progress_percentage, status, source, ip_address,
                    user_agent
             FROM onboarding_sessions WHERE id = ?1",
            &[&session]
        ),
        json!({
            "tenant_id": tenant,
            "current_step": 1,
            "progress_percentage": 0,
            "status": "in_progress",
            "source": "web",
            "ip_address": "203.0.113.7",
            "user_agent": "Mozilla/5.0",
        })
    );
    assert_eq!(db.count("onboarding_analytics"), 1);
}

#[test]
fn every_create_gets_fresh_ids_and_a_unique_placeholder_email() {
    let db = Db::memory();
    let ids: std::collections::HashSet<String> = (0..50).map(|_| db.create()).collect();
    assert_eq!(ids.len(), 50);
    assert_eq!(db.count("tenants"), 50);
}

#[test]
fn the_system_env_gives_unpredictable_ids() {
    let conn = Connection::open_in_memory().unwrap();
    onboarding::register(&conn).unwrap();
    conn.query_row("SELECT onboarding_migrate()", [], |_| Ok(()))
        .unwrap();
    let a: String = conn
        .query_row("SELECT onboarding_create() ->> '$.session_id'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let b: String = conn
        .query_row(
            "SELECT onboarding_create(NULL) ->> '$.session_id'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_ne!(a, b);
    // Pinned seeds would repeat: the system source does not.
    let pinned = Db::memory();
    let again = Db::memory();
    assert_eq!(pinned.create(), again.create());
    assert_ne!(a, pinned.create());
}

#[test]
fn create_payload_rules() {
    let db = Db::memory();
    let too_long = format!(r#"{{"source":"{}"}}"#, "é".repeat(65));
    let cases = [
        (
            r#"{"ip_address":"999.1.1.1"}"#,
            "onboarding_create: invalid_field: ip_address '999.1.1.1' is not an IPv4 or IPv6 address",
        ),
        (
            r#"{"source":"web\nsite"}"#,
            "onboarding_create: invalid_field: source 'web\\nsite' contains a control character",
        ),
        (
            too_long.as_str(),
            "onboarding_create: invalid_field: source is 65 characters long; at most 64 are allowed",
        ),
        (
            "[]",
            "onboarding_create: invalid_json: payload must be a JSON object, got an array",
        ),
    ];
    let before = db.snapshot();
    for (payload, error) in cases {
        assert_eq!(
            db.call("SELECT onboarding_create(?1)", &[&payload])
                .unwrap_err(),
            error
        );
    }
    assert_eq!(db.snapshot(), before);
}

#[test]
fn create_keeps_a_source_of_free_text() {
    let db = Db::memory();
    let sixty_four = "é".repeat(64);
    for (given, kept) in [
        ("landing page", "landing page"),
        ("  référencement\u{200b} ", "référencement"),
        ("partenaire.example.fr", "partenaire.example.fr"),
        (sixty_four.as_str(), sixty_four.as_str()),
    ] {
        let payload = serde_json::json!({ "source": given }).to_string();
        let created = db
            .call("SELECT onboarding_create(?1)", &[&payload])
            .unwrap();
        assert_eq!(
            db.row(
                "SELECT source FROM onboarding_sessions WHERE id = ?1",
                &[&created["session_id"].as_str().unwrap()],
            ),
            serde_json::json!({ "source": kept })
        );
    }
}

/// The session's `ip_address` and `user_agent`, as stored.
fn origin_of(db: &Db, created: &serde_json::Value) -> serde_json::Value {
    db.row(
        "SELECT ip_address, user_agent FROM onboarding_sessions WHERE id = ?1",
        &[&created["session_id"].as_str().unwrap()],
    )
}

#[test]
fn create_with_the_hosts_peer_replaces_the_payloads_claims() {
    let db = Db::memory();
    // The payload's own claims would be refused; the arguments replace them
    // unread.
    let claims = r#"{"source":"web","ip_address":"999.1.1.1","user_agent":"bad\u0007"}"#;
    let created = db
        .call(
            "SELECT onboarding_create(?1, ?2, ?3)",
            &[&claims, &"2001:db8::7", &" Mozilla/5.0\t(X11)\r\n "],
        )
        .unwrap();
    assert_eq!(
        origin_of(&db, &created),
        json!({"ip_address": "2001:db8::7", "user_agent": "Mozilla/5.0(X11)"})
    );
    assert_eq!(
        db.row(
            "SELECT source FROM onboarding_sessions WHERE id = ?1",
            &[&created["session_id"].as_str().unwrap()]
        ),
        json!({"source": "web"})
    );
    // A header left empty (or only blanks and control characters) is no
    // user agent, and the payload's claim is still dropped.
    for header in ["", " \t\r\n "] {
        let created = db
            .call(
                "SELECT onboarding_create(?1, '203.0.113.7', ?2)",
                &[&r#"{"user_agent":"claimed/1.0"}"#, &header],
            )
            .unwrap();
        assert_eq!(
            origin_of(&db, &created),
            json!({"ip_address": "203.0.113.7", "user_agent": null})
        );
    }
    // Cut to 512 characters; a blob header is read as UTF-8, bad bytes
    // replaced.
    let long = "a".repeat(600);
    let created = db
        .call("SELECT onboarding_create(NULL, NULL, ?1)", &[&long])
        .unwrap();
    assert_eq!(
        origin_of(&db, &created),
        json!({"ip_address": null, "user_agent": "a".repeat(512)})
    );
    let created = db
        .call(
            "SELECT onboarding_create('{}', '198.51.100.2', X'4d6f7a696c6c61ff')",
            &[],
        )
        .unwrap();
    assert_eq!(
        origin_of(&db, &created),
        json!({"ip_address": "198.51.100.2", "user_agent": "Mozilla\u{fffd}"})
    );
}

#[test]
fn create_with_null_peer_arguments_keeps_the_payloads_fields() {
    let db = Db::memory();
    let created = db
        .call(
            "SELECT onboarding_create(?1, NULL, NULL)",
            &[&r#"{"ip_address":" 203.0.113.7 ","user_agent":"Mozilla/5.0"}"#],
        )
        .unwrap();
    assert_eq!(
        origin_of(&db, &created),
        json!({"ip_address": "203.0.113.7", "user_agent": "Mozilla/5.0"})
    );
    // ...and the payload's rules: a user agent in the payload is refused,
    // not cleaned.
    assert_eq!(
        db.call(
            "SELECT onboarding_create(?1, NULL, NULL)",
            &[&r#"{"user_agent":"bad\u0007"}"#]
        )
        .unwrap_err(),
        "onboarding_create: invalid_field: user_agent 'bad\\u0007' contains a control character"
    );
}

/// A host that retries a commit of unknown outcome (a dqlite failover) runs
/// the same create again: one session, the first answer twice.
#[test]
fn create_with_a_request_key_answers_the_first_session_again() {
    let db = Db::memory();
    let sql = "SELECT onboarding_create('{}', '192.0.2.1', 'curl/8', ?1)";
    let key = "3f2a9c1e5b7d4a60";
    let first = db.call(sql, &[&key]).unwrap();
    db.env.advance_ms(1_000);
    let before = db.snapshot();
    let again = db.call(sql, &[&key]).unwrap();
    assert_eq!(again, first);
    assert_eq!(db.snapshot(), before, "the retry wrote something");
    assert_eq!(
        db.row(
            "SELECT request_key, session_id FROM onboarding_create_requests",
            &[]
        ),
        json!({"request_key": key, "session_id": first["session_id"]})
    );
    let other = db.call(sql, &[&"another-key-0123456"]).unwrap();
    assert_ne!(other["session_id"], first["session_id"]);
    assert_eq!(
        db.scalar("SELECT count(*) FROM onboarding_sessions"),
        SqlValue::Integer(2)
    );
    assert_eq!(
        db.call(sql, &[&"short"]).unwrap_err(),
        "onboarding_create: invalid_field: request_key 'short' must be 16 to 128 characters"
    );
}

#[test]
fn create_peer_argument_rules() {
    let db = Db::memory();
    let cases = [
        (
            "SELECT onboarding_create('{}', 'localhost', NULL)",
            "onboarding_create: invalid_field: ip_address 'localhost' is not an IPv4 or IPv6 address",
        ),
        (
            "SELECT onboarding_create('{}', '', NULL)",
            "onboarding_create: invalid_field: ip_address must not be empty",
        ),
        (
            "SELECT onboarding_create('{}', 203, NULL)",
            "onboarding_create: invalid_field: ip_address must be text, got an integer",
        ),
        (
            "SELECT onboarding_create('{}', '203.0.113.7', 4.5)",
            "onboarding_create: invalid_field: user_agent must be text, got a real",
        ),
        (
            "SELECT onboarding_create('[]', '203.0.113.7', 'curl/8.0')",
            "onboarding_create: invalid_json: payload must be a JSON object, got an array",
        ),
    ];
    let before = db.snapshot();
    for (sql, error) in cases {
        assert_eq!(db.call(sql, &[]).unwrap_err(), error, "{sql}");
    }
    assert_eq!(db.snapshot(), before);
}

#[test]
fn schema_version_reads_the_applied_version_and_writes_nothing() {
    let conn = Connection::open_in_memory().unwrap();
    onboarding::register_with(&conn, PinnedEnv::new(T0, 1)).unwrap();
    let version = |conn: &Connection| -> i64 {
        conn.query_row("SELECT onboarding_schema_version()", [], |r| r.get(0))
            .unwrap()
    };
    let tables = |conn: &Connection| -> i64 {
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap()
    };
    // Never migrated: 0, and the bookkeeping table is not created.
    assert_eq!(version(&conn), 0);
    assert_eq!(tables(&conn), 0);
    let db = Db::on(conn);
    let before = db.snapshot();
    assert_eq!(version(&db.conn), 15);
    assert_eq!(db.snapshot(), before);
    // It reports what was applied, even a version this library does not know.
    db.conn
        .execute_batch(
            "INSERT INTO onboarding_schema_migrations VALUES (99, '099_future', '2027-01-01T00:00:00.000Z')",
        )
        .unwrap();
    assert_eq!(version(&db.conn), 99);
}

#[test]
fn get_returns_the_whole_state() {
    let db = Db::memory();
    let s = db.create();
    let tenant = db.get(&s)["tenant_id"].as_str().unwrap().to_string();
    db.env.advance_ms(1_500);
    db.business(&s, "contact@entreprise.fr");
    assert_eq!(
        db.get(&s),
        json!({
            "success": true,
            "session_id": s,
            "tenant_id": tenant,
            "status": "in_progress",
            "current_step": 2,
            "total_steps": 6,
            "progress_percentage": 33,
            "started_at": "2026-11-24T10:00:00.000Z",
            "last_updated_at": "2026-11-24T10:00:01.500Z",
            "completed_at": null,
            "steps": {
                "business": {"company_name": "Mon Entreprise", "industry": "Immobilier",
                             "phone": "+33612345678", "email": "contact@entreprise.fr"},
                "channels": null,
                "vapi": null,
                "kb": null,
                "appointments": null,
            },
            "omnichannel": null,
            "phone_verification": null,
        })
    );
    db.vapi(&s);
    db.complete(&s).unwrap();
    let omni = &db.get(&s)["omnichannel"];
    assert_eq!(omni["tenant"]["name"], "Mon Entreprise");
    assert_eq!(omni["tenant"]["onboarding_completed"], 1);
    assert_eq!(omni["agent_config"]["agent_name"], "Sara");
    assert_eq!(
        omni["agent_config"]["channels_config"]["phone"],
        json!({"enabled": true})
    );
    assert_eq!(
        omni["agent_config"]["greeting_message"],
        "Bonjour, Sara de Mon Entreprise, comment puis-je vous aider ?"
    );
    assert_eq!(
        omni["phone_mapping"],
        json!({"phone_number": "+33612345678", "is_active": false, "status": "pending_verification",
               "created_at": "2026-11-24T10:00:01.500Z", "updated_at": "2026-11-24T10:00:01.500Z"})
    );
    assert_eq!(omni["campaign"], json!(null));
    assert_eq!(omni["kb_crawl_job"], json!(null));
    assert_eq!(omni["knowledge_base"], json!({"documents": 0, "chunks": 0}));
    assert_eq!(
        db.call("SELECT onboarding_get('onb_nope')", &[])
            .unwrap_err(),
        "onboarding_get: not_found: session 'onb_nope' does not exist"
    );
}

#[test]
fn migrate_is_idempotent_and_records_its_version() {
    let db = Db::memory();
    let before = db.snapshot();
    db.env.advance_ms(5_000);
    assert_eq!(
        db.scalar("SELECT onboarding_migrate()"),
        SqlValue::Integer(15)
    );
    assert_eq!(db.snapshot(), before);
    assert_eq!(
        db.rows(
            "SELECT version, name, applied_at FROM onboarding_schema_migrations ORDER BY version",
            &[]
        ),
        [
            json!({"version": 1, "name": "001_init", "applied_at": "2026-11-24T10:00:00.000Z"}),
            json!({"version": 2, "name": "002_knowledge", "applied_at": "2026-11-24T10:00:00.000Z"}),
            json!({"version": 3, "name": "003_phone", "applied_at": "2026-11-24T10:00:00.000Z"}),
            json!({"version": 4, "name": "004_create_requests", "applied_at": "2026-11-24T10:00:00.000Z"}),
            json!({"version": 5, "name": "005_check_lists", "applied_at": "2026-11-24T10:00:00.000Z"}),
            json!({"version": 6, "name": "006_site_turns", "applied_at": "2026-11-24T10:00:00.000Z"}),
            json!({"version": 7, "name": "007_carriers_and_sends", "applied_at": "2026-11-24T10:00:00.000Z"}),
            json!({"version": 8, "name": "008_call_replies", "applied_at": "2026-11-24T10:00:00.000Z"}),
            json!({"version": 9, "name": "009_french_terms", "applied_at": "2026-11-24T10:00:00.000Z"}),
            json!({"version": 10, "name": "010_kb_index_tenant", "applied_at": "2026-11-24T10:00:00.000Z"}),
            json!({"version": 11, "name": "011_crawl_budget", "applied_at": "2026-11-24T10:00:00.000Z"}),
            json!({"version": 12, "name": "012_site_waits", "applied_at": "2026-11-24T10:00:00.000Z"}),
            json!({"version": 13, "name": "013_kb_cut", "applied_at": "2026-11-24T10:00:00.000Z"}),
            json!({"version": 14, "name": "014_kb_recut_failures", "applied_at": "2026-11-24T10:00:00.000Z"}),
            json!({"version": 15, "name": "015_request_fingerprints", "applied_at": "2026-11-24T10:00:00.000Z"}),
        ]
    );
}

#[test]
fn migrate_refuses_a_newer_schema() {
    let db = Db::memory();
    db.conn
        .execute_batch(
            "INSERT INTO onboarding_schema_migrations VALUES (99, '099_future', '2027-01-01T00:00:00.000Z')",
        )
        .unwrap();
    assert_eq!(
        db.call("SELECT onboarding_migrate()", &[]).unwrap_err(),
        "onboarding_migrate: internal: the database schema is at version 99, newer than this library's 15; upgrade the library"
    );
}

#[test]
fn functions_before_migrate_answer_schema_missing() {
    let conn = Connection::open_in_memory().unwrap();
    onboarding::register_with(&conn, PinnedEnv::new(T0, 1)).unwrap();
    let err = conn
        .query_row("SELECT onboarding_create('{}')", [], |r| {
            r.get::<_, String>(0)
        })
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "onboarding_create: schema_missing: no such table: main.tenants (run SELECT onboarding_migrate() first)"
    );
}

#[test]
fn writers_refuse_to_run_from_views_and_triggers() {
    let db = Db::memory();
    db.conn
        .execute_batch(
            "CREATE VIEW sneaky AS SELECT onboarding_create('{}') AS r;
             CREATE TABLE log (x);
             CREATE TRIGGER on_log AFTER INSERT ON log BEGIN
                 SELECT onboarding_complete(NEW.x);
             END;",
        )
        .unwrap();
    let before = db.snapshot();
    let view = db
        .conn
        .query_row("SELECT r FROM sneaky", [], |r| r.get::<_, String>(0))
        .unwrap_err()
        .to_string();
    assert_eq!(view, "unsafe use of onboarding_create()");
    let trigger = db
        .conn
        .execute("INSERT INTO log VALUES ('onb_x')", [])
        .unwrap_err()
        .to_string();
    assert_eq!(trigger, "unsafe use of onboarding_complete()");
    assert_eq!(db.snapshot(), before);
}

#[test]
fn version_and_catalogues() {
    let db = Db::memory();
    assert_eq!(
        db.scalar("SELECT onboarding_version()"),
        SqlValue::Text("v0.1.0".into())
    );
    let types = db.call("SELECT onboarding_agent_types()", &[]).unwrap();
    let ids: Vec<(&str, &str)> = types["agent_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ids,
        [
            ("real_estate_reception", "Réception d'appels immobiliers"),
            ("real_estate_callback", "Rappel de prospects immobiliers"),
            ("appointment_booking", "Prise de rendez-vous générique"),
            ("phone_reception", "Accueil téléphonique"),
            ("customer_support", "Support client"),
            ("multi_purpose", "Agent Polyvalent"),
            ("custom", "Configuration personnalisée"),
        ]
    );
    assert_eq!(types["success"], true);
    assert_eq!(
        types["agent_types"][4]["tools"],
        json!(["knowledge_search", "ticket_creation", "call_transfer"])
    );
    let voices = db.call("SELECT onboarding_voices()", &[]).unwrap();
    assert_eq!(
        voices["voices"][0],
        json!({"id": "sara", "name": "Sara", "gender": "female", "language": "fr-FR",
               "provider": "elevenlabs", "provider_voice_id": "EXAVITQu4vr4xnSDxMaL",
               "provider_voice_name": "Sarah", "model": "eleven_multilingual_v2",
               "default_for": "female"})
    );
    // The original's mislabelled voices: both ids are male voices.
    let genders: Vec<(&str, &str)> = voices["voices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["provider_voice_id"].as_str().unwrap(),
                v["gender"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(genders.contains(&("pNInz6obpgDQGcFmaJgB", "male")));
    assert!(genders.contains(&("onwK4e9ZLuTAKqWW03F9", "male")));
}

#[test]
fn every_template_renders_both_placeholders() {
    for agent in onboarding::catalog::AGENT_TYPES.iter() {
        let female = onboarding::catalog::Gender::Female;
        let greeting =
            onboarding::catalog::render(agent.greeting, "Léa", "Boulangerie Dupont", female);
        let prompt = onboarding::catalog::system_prompt(agent, "Léa", "Boulangerie Dupont", female);
        for text in [&greeting, &prompt] {
            assert!(text.contains("Léa"), "{}: {text}", agent.id);
            assert!(text.contains("Boulangerie Dupont"), "{}: {text}", agent.id);
            assert!(!text.contains('{'), "{}: {text}", agent.id);
        }
    }
}
