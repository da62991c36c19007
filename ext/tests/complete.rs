//! onboarding_complete: preconditions, the rows the sync writes, idempotent
//! retries, and steps refused afterwards.

mod common;

use common::{Db, T0};
use serde_json::{json, Value};

fn ready_session(db: &Db) -> String {
    let s = db.create();
    db.business(&s, "contact@entreprise.fr");
    db.vapi(&s);
    s
}

#[test]
fn completion_needs_business_and_vapi_for_phone() {
    let db = Db::memory();
    let s = db.create();
    let before = db.snapshot();
    assert_eq!(
        db.complete(&s).unwrap_err(),
        format!("onboarding_complete: incomplete: session '{s}' is missing steps: business, vapi (save them before completing)")
    );
    db.business(&s, "a@b.fr");
    assert_eq!(
        db.complete(&s).unwrap_err(),
        format!("onboarding_complete: incomplete: session '{s}' is missing steps: vapi (save them before completing)")
    );
    // Without phone among the channels, no voice agent is needed.
    db.step(&s, "channels", r#"{"channels":["sms","email"]}"#)
        .unwrap();
    assert_ne!(db.snapshot(), before);
    let done = db.complete(&s).unwrap();
    assert_eq!(
        done["synced"]["agent_config"],
        json!({"agent_type":"multi_purpose","agent_name":"Sara","voice_provider":"elevenlabs",
               "voice_id":"EXAVITQu4vr4xnSDxMaL","voice_language":"fr-FR","channels":["sms","email"]})
    );
}

#[test]
fn completion_answers_and_writes_every_table() {
    let db = Db::memory();
    let s = db.create();
    let tenant = db.get(&s)["tenant_id"].as_str().unwrap().to_string();
    db.env.advance_ms(100_000);
    db.business(&s, "contact@entreprise.fr");
    db.env.advance_ms(20_000);
    db.step(&s, "channels", r#"{"channels":["phone","sms"]}"#)
        .unwrap();
    db.env.advance_ms(60_000);
    db.vapi(&s);
    db.env.advance_ms(80_500);
    db.kb_website(&s);
    db.step(
        &s,
        "appointments",
        r#"{"provider":"cal_com","event_type_id":98765,"timezone":"Europe/Paris"}"#,
    )
    .unwrap();
    db.env.advance_ms(81_900);
    let done = db.complete(&s).unwrap();
    let expected = json!({
        "success": true,
        "message": "Onboarding terminé avec succès ! 🎉",
        "session_id": s,
        "tenant_id": tenant,
        "duration_seconds": 342,
        "duration_minutes": 6,
        "sync_status": "synced",
        "already_completed": false,
        "synced": {
            "agent_config": {
                "agent_type": "multi_purpose",
                "agent_name": "Sara",
                "voice_provider": "elevenlabs",
                "voice_id": "EXAVITQu4vr4xnSDxMaL",
                "voice_language": "fr-FR",
                "channels": ["phone", "sms"],
            },
            "phone_mapping": {
                "phone_number": "+33612345678",
                "status": "pending_verification",
                "is_active": false,
            },
            "campaign": {
                "name": "Prise de rendez-vous – Mon Entreprise",
                "campaign_type": "appointment",
                "status": "active",
                "channels": ["phone", "sms"],
                "settings": {"provider": "cal_com", "event_type_id": "98765", "timezone": "Europe/Paris"},
            },
            "knowledge_base": {
                "method": "website",
                "crawl_job": {"url": "https://mon-site.fr/", "status": "queued"},
                "documents": null,
            },
        },
    });
    assert_eq!(done, expected);

    let t_done = "2026-11-24T10:05:42.400Z";
    assert_eq!(
        db.row(
            "SELECT name, company_name, email, phone, sector, onboarding_completed, updated_at
             FROM tenants",
            &[]
        ),
        json!({
            "name": "Mon Entreprise",
            "company_name": "Mon Entreprise",
            "email": "contact@entreprise.fr",
            "phone": "+33612345678",
            "sector": "Immobilier",
            "onboarding_completed": 1,
            "updated_at": t_done,
        })
    );
    assert_eq!(
        db.row(
            "SELECT agent_type, agent_name, agent_personality, voice_provider, voice_id,
                    voice_language, greeting_message, channels_config
             FROM omni_agent_configs WHERE tenant_id = ?1",
            &[&tenant]
        ),
        json!({
            "agent_type": "multi_purpose",
            "agent_name": "Sara",
            "agent_personality": "polyvalente, chaleureuse et professionnelle",
            "voice_provider": "elevenlabs",
            "voice_id": "EXAVITQu4vr4xnSDxMaL",
            "voice_language": "fr-FR",
            "greeting_message": "Bonjour, Sara de Mon Entreprise, comment puis-je vous aider ?",
            "channels_config": r#"{"phone":{"enabled":true},"sms":{"enabled":true},"whatsapp":{"enabled":false},"email":{"enabled":false}}"#,
        })
    );
    let prompt: String = db
        .conn
        .query_row("SELECT system_prompt FROM omni_agent_configs", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(prompt.starts_with(
        "# Contexte\nTu es Sara, l'assistante vocale de Mon Entreprise. Tu traites toutes"
    ));
    assert!(!prompt.contains('{'), "unrendered placeholder in {prompt}");

    assert_eq!(
        db.row(
            "SELECT phone_number, tenant_id, is_active, status FROM omni_phone_mappings",
            &[]
        ),
        json!({
            "phone_number": "+33612345678",
            "tenant_id": tenant,
            "is_active": 0,
            "status": "pending_verification",
        })
    );
    assert_eq!(
        db.row(
            "SELECT campaign_type, channels, status, settings FROM omnichannel_campaigns",
            &[]
        ),
        json!({
            "campaign_type": "appointment",
            "channels": r#"["phone","sms"]"#,
            "status": "active",
            "settings": r#"{"provider":"cal_com","event_type_id":"98765","timezone":"Europe/Paris"}"#,
        })
    );
    assert_eq!(
        db.row("SELECT url, status, session_id FROM kb_crawl_jobs", &[]),
        json!({"url": "https://mon-site.fr/", "status": "queued", "session_id": s})
    );

    // Analytics: the time on each step adds up to the total.
    assert_eq!(
        db.row(
            "SELECT completed, total_duration_seconds, step_1_duration, step_2_duration,
                    step_3_duration, step_4_duration, step_5_duration, step_6_duration,
                    completed_at
             FROM onboarding_analytics",
            &[]
        ),
        json!({
            "completed": 1,
            "total_duration_seconds": 342,
            "step_1_duration": 100.0,
            "step_2_duration": 20.0,
            "step_3_duration": 60.0,
            "step_4_duration": 80.5,
            "step_5_duration": 81.9,
            "step_6_duration": 0.0,
            "completed_at": t_done,
        })
    );
    assert_eq!(
        db.row(
            "SELECT status, current_step, progress_percentage, completed_at
             FROM onboarding_sessions",
            &[]
        ),
        json!({
            "status": "completed",
            "current_step": 6,
            "progress_percentage": 100,
            "completed_at": t_done,
        })
    );
}

#[test]
fn second_completion_replays_the_first_and_writes_nothing() {
    let db = Db::memory();
    let s = ready_session(&db);
    db.env.advance_ms(65_000);
    let first = db.complete(&s).unwrap();
    assert_eq!(first["duration_seconds"], 65);
    assert_eq!(first["duration_minutes"], 1);
    let before = db.snapshot();
    db.env.advance_ms(3_600_000);
    let again = db.complete(&s).unwrap();
    let mut expected = first.clone();
    expected["already_completed"] = json!(true);
    assert_eq!(again, expected);
    assert_eq!(db.snapshot(), before);
}

#[test]
fn steps_are_refused_after_completion() {
    let db = Db::memory();
    let s = ready_session(&db);
    db.complete(&s).unwrap();
    let before = db.snapshot();
    for (step, payload) in [
        (
            "business",
            r#"{"company_name":"X","industry":"Y","phone":"0612345678","email":"x@y.fr"}"#,
        ),
        ("channels", r#"{"channels":["sms"]}"#),
        (
            "vapi",
            r#"{"agent_type":"custom","voice":"male","assistant_name":"Léo"}"#,
        ),
        ("kb", r#"{"method":"skip"}"#),
        ("appointments", "{}"),
    ] {
        assert_eq!(
            db.step(&s, step, payload).unwrap_err(),
            format!("onboarding_step: conflict: session '{s}' is completed; its steps can no longer be changed")
        );
    }
    assert_eq!(db.snapshot(), before);
}

/// A status outside the schema's three (a database whose CHECKs were
/// switched off) is read as stored: shown by onboarding_get, and no step
/// changes the session.
#[test]
fn a_status_the_schema_does_not_know_is_read_as_stored_and_refuses_steps() {
    let db = Db::memory();
    let s = db.create();
    db.conn
        .execute_batch("PRAGMA ignore_check_constraints = ON")
        .unwrap();
    db.conn
        .execute(
            "UPDATE onboarding_sessions SET status = 'paused' WHERE id = ?1",
            [&s],
        )
        .unwrap();
    assert_eq!(db.get(&s)["status"], json!("paused"));
    let before = db.snapshot();
    assert_eq!(
        db.step(&s, "channels", r#"{"channels":["sms"]}"#).unwrap_err(),
        format!("onboarding_step: conflict: session '{s}' is paused; its steps can no longer be changed")
    );
    assert_eq!(db.snapshot(), before);
}

#[test]
fn no_campaign_without_appointments_and_no_job_without_website() {
    let db = Db::memory();
    let s = ready_session(&db);
    db.step(&s, "kb", r#"{"method":"assistant"}"#).unwrap();
    let done = db.complete(&s).unwrap();
    assert_eq!(done["synced"]["campaign"], json!(null));
    assert_eq!(
        done["synced"]["knowledge_base"],
        json!({"method": "assistant", "crawl_job": null, "documents": null})
    );
    assert_eq!(db.count("omnichannel_campaigns"), 0);
    assert_eq!(db.count("kb_crawl_jobs"), 0);
}

/// The campaign an appointments step of `{}` makes for a phone tenant.
fn appointments_step_campaign() -> Value {
    json!({
        "name": "Prise de rendez-vous – Mon Entreprise",
        "campaign_type": "appointment",
        "status": "active",
        "channels": ["phone"],
        "settings": {"provider": "cal_com", "event_type_id": null, "timezone": "Europe/Paris"},
    })
}

#[test]
fn the_appointments_step_alone_activates_the_campaign() {
    let db = Db::memory();
    let s = ready_session(&db);
    db.step(&s, "appointments", "{}").unwrap();
    let done = db.complete(&s).unwrap();
    assert_eq!(done["synced"]["campaign"], appointments_step_campaign());
    assert_eq!(db.count("omnichannel_campaigns"), 1);
}

#[test]
fn appointments_declined_after_cal_com_leave_no_campaign() {
    let db = Db::memory();
    let s = ready_session(&db);
    db.step(
        &s,
        "appointments",
        r#"{"provider":"cal_com","event_type_id":123456}"#,
    )
    .unwrap();
    db.step(&s, "appointments", r#"{"enabled":false}"#).unwrap();
    let done = db.complete(&s).unwrap();
    assert_eq!(done["synced"]["campaign"], json!(null));
    assert_eq!(db.count("omnichannel_campaigns"), 0);
    assert_eq!(
        db.row(
            "SELECT booking_provider, cal_com_event_type_id, timezone FROM tenants",
            &[]
        ),
        json!({"booking_provider": null, "cal_com_event_type_id": null, "timezone": "Europe/Paris"})
    );
}

/// A ready session, its `appointments` step sent when given, then
/// `setting` made on the tenant by another route, then completed: the
/// completion's answer, and the database.
fn completed_after_tenant_setting(appointments: Option<&str>, setting: &str) -> (Value, Db) {
    let db = Db::memory();
    let s = ready_session(&db);
    if let Some(payload) = appointments {
        db.step(&s, "appointments", payload).unwrap();
    }
    db.conn
        .execute_batch(&format!("UPDATE tenants SET {setting}"))
        .unwrap();
    (db.complete(&s).unwrap(), db)
}

#[test]
fn booking_settings_set_on_the_tenant_activate_the_campaign() {
    let (done, _) = completed_after_tenant_setting(None, "cal_com_event_type_id = '42'");
    assert_eq!(
        done["synced"]["campaign"]["settings"],
        json!({"provider": "cal_com", "event_type_id": "42", "timezone": "Europe/Paris"})
    );
}

/// A provider set on the tenant by another route configures appointments,
/// as the step's own `{}` does; a Cal.com API key alone does not (it books
/// nothing without an event type), and never shows in the campaign.
#[test]
fn a_provider_on_the_tenant_activates_the_campaign_an_api_key_alone_does_not() {
    let (done, db) = completed_after_tenant_setting(None, "booking_provider = 'cal_com'");
    assert_eq!(
        done["synced"]["campaign"]["settings"],
        json!({"provider": "cal_com", "event_type_id": null, "timezone": "Europe/Paris"})
    );
    assert_eq!(db.count("omnichannel_campaigns"), 1);

    let (done, db) = completed_after_tenant_setting(None, "cal_com_api_key = 'cal_live_secret'");
    assert_eq!(done["synced"]["campaign"], json!(null));
    assert_eq!(db.count("omnichannel_campaigns"), 0);
}

/// A step that declined cleared the booking settings; an event type set on
/// the tenant after it configures appointments again.
#[test]
fn an_event_type_set_after_a_declined_step_activates_the_campaign() {
    let (done, _) = completed_after_tenant_setting(
        Some(r#"{"enabled":false}"#),
        "cal_com_event_type_id = '42'",
    );
    assert_eq!(
        done["synced"]["campaign"]["settings"],
        json!({"provider": "cal_com", "event_type_id": "42", "timezone": "Europe/Paris"})
    );
}

/// The appointments step configures appointments by itself: its booking
/// settings cleared on the tenant by another route since, the completion
/// still activates the campaign, with the default provider.
#[test]
fn the_appointments_step_activates_the_campaign_without_the_tenants_settings() {
    let (done, db) = completed_after_tenant_setting(Some("{}"), "booking_provider = NULL");
    assert_eq!(done["synced"]["campaign"], appointments_step_campaign());
    assert_eq!(db.count("omnichannel_campaigns"), 1);
}

#[test]
fn a_declared_number_is_never_taken_from_another_tenant() {
    let db = Db::memory();
    let first = ready_session(&db);
    db.complete(&first).unwrap();
    // The runtime verified the first tenant's number.
    db.conn
        .execute_batch("UPDATE omni_phone_mappings SET status = 'verified', is_active = 1")
        .unwrap();
    let second = db.create();
    db.business(&second, "autre@entreprise.fr");
    db.vapi(&second);
    let done = db.complete(&second).unwrap();
    assert_eq!(
        done["synced"]["phone_mapping"],
        json!({"phone_number":"+33612345678","status":"pending_verification","is_active":false})
    );
    let rows = db.rows(
        "SELECT tenant_id, is_active, status FROM omni_phone_mappings ORDER BY id",
        &[],
    );
    let tenant = |s: &str| db.get(s)["tenant_id"].as_str().unwrap().to_string();
    assert_eq!(
        rows,
        [
            json!({"tenant_id": tenant(&first), "is_active": 1, "status": "verified"}),
            json!({"tenant_id": tenant(&second), "is_active": 0, "status": "pending_verification"}),
        ]
    );
}

/// A ready session whose tenant already has a mapping of its number
/// (`is_active`, `status`, written on 2026-11-20), as the runtime or the
/// host writes one: the database, the session and the tenant.
fn ready_with_mapping(is_active: i64, status: &str) -> (Db, String, String) {
    let db = Db::memory();
    let s = ready_session(&db);
    let tenant = db.get(&s)["tenant_id"].as_str().unwrap().to_string();
    db.conn
        .execute(
            "INSERT INTO omni_phone_mappings (phone_number, tenant_id, is_active, status,
                                              created_at, updated_at)
             VALUES ('+33612345678', ?1, ?2, ?3, '2026-11-20T09:00:00.000Z',
                     '2026-11-20T09:00:00.000Z')",
            rusqlite::params![tenant, is_active, status],
        )
        .unwrap();
    (db, s, tenant)
}

/// A mapping the tenant already had when it completes (the runtime or the
/// host wrote it) is left as it is, and the answer says what it holds.
#[test]
fn a_mapping_already_there_is_answered_as_the_table_holds_it() {
    let (db, s, tenant) = ready_with_mapping(1, "verified");
    let done = db.complete(&s).unwrap();
    assert_eq!(
        done["synced"]["phone_mapping"],
        json!({"phone_number":"+33612345678","status":"verified","is_active":true})
    );
    assert_eq!(
        db.rows(
            "SELECT tenant_id, is_active, status FROM omni_phone_mappings",
            &[]
        ),
        [json!({"tenant_id": tenant, "is_active": 1, "status": "verified"})]
    );
}

/// A rejected row the runtime wrote for a number not verified: left as it
/// is, and answered so.
#[test]
fn a_rejected_mapping_already_there_is_left_and_answered_rejected() {
    let (db, s, _) = ready_with_mapping(0, "rejected");
    let done = db.complete(&s).unwrap();
    assert_eq!(
        done["synced"]["phone_mapping"],
        json!({"phone_number":"+33612345678","status":"rejected","is_active":false})
    );
    assert_eq!(
        db.rows(
            "SELECT status, is_active, updated_at FROM omni_phone_mappings",
            &[]
        ),
        [json!({"status": "rejected", "is_active": 0, "updated_at": "2026-11-20T09:00:00.000Z"})]
    );
}

#[test]
fn unknown_session_and_bad_payload() {
    let db = Db::memory();
    assert_eq!(
        db.complete("onb_missing").unwrap_err(),
        "onboarding_complete: not_found: session 'onb_missing' does not exist"
    );
    assert_eq!(
        db.call("SELECT onboarding_complete('onb_x', 'nope')", &[])
            .unwrap_err(),
        "onboarding_complete: invalid_json: payload is not valid JSON; expected ident at line 1 column 2"
    );
    // The payload may be left out or NULL.
    let s = ready_session(&db);
    assert_eq!(
        db.call("SELECT onboarding_complete(?1)", &[&s]).unwrap()["success"],
        true
    );
    assert_eq!(db.get(&s)["completed_at"], "2026-11-24T10:00:00.000Z");
    let _ = T0;
}

/// Completion writes the session row by the rowid its read returned; a
/// host's trigger on the tenant's update (which completion makes first)
/// that rewrites the row with `REPLACE` gives it a new rowid, and the
/// session is completed all the same, by id.
#[test]
fn a_host_trigger_replacing_the_session_row_does_not_lose_the_completion() {
    let db = Db::memory();
    let s = ready_session(&db);
    db.replace_sessions_on_phone_updates();
    let answer = db.complete(&s).unwrap();
    assert_eq!(answer["sync_status"], "synced");
    assert_eq!(
        db.row(
            "SELECT rowid, status, current_step, progress_percentage,
                    completion_result = ?2 AS result_kept
             FROM onboarding_sessions WHERE id = ?1",
            &[&s, &answer.to_string()]
        ),
        json!({"rowid": 2, "status": "completed", "current_step": 6, "progress_percentage": 100, "result_kept": 1})
    );
}

#[test]
fn names_that_look_like_placeholders_are_written_as_typed() {
    let db = Db::memory();
    let s = db.create();
    db.step(
        &s,
        "business",
        r#"{"company_name":"Chez {agent_name}","industry":"Coiffure","phone":"06 12 34 56 78","email":"chez@salon.fr"}"#,
    )
    .unwrap();
    db.step(
        &s,
        "vapi",
        r#"{"agent_type":"multi_purpose","voice":"sara","assistant_name":"{company_name}"}"#,
    )
    .unwrap();
    db.complete(&s).unwrap();
    let agent = db.row(
        "SELECT agent_name, greeting_message, substr(system_prompt, 1, 73) AS prompt
         FROM omni_agent_configs",
        &[],
    );
    assert_eq!(
        agent,
        json!({
            "agent_name": "{company_name}",
            "greeting_message": "Bonjour, {company_name} de Chez {agent_name}, comment puis-je vous aider ?",
            "prompt": "# Contexte\nTu es {company_name}, l'assistante vocale de Chez {agent_name}",
        })
    );
}

#[test]
fn a_male_voice_gets_the_masculine_words_of_its_prompt() {
    let db = Db::memory();
    let s = db.create();
    db.business(&s, "contact@entreprise.fr");
    db.step(
        &s,
        "vapi",
        r#"{"agent_type":"phone_reception","voice":"male","assistant_name":"Marc"}"#,
    )
    .unwrap();
    db.complete(&s).unwrap();
    let (personality, prompt): (String, String) = db
        .conn
        .query_row(
            "SELECT agent_personality, system_prompt FROM omni_agent_configs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    // Before, a male voice introduced itself as "la standardiste virtuelle".
    assert_eq!(personality, "accueillant, patient et poli");
    assert!(
        prompt.starts_with("# Contexte\nTu es Marc, le standardiste virtuel de Mon Entreprise."),
        "{prompt}"
    );
    assert!(prompt.contains("restes courtois,"), "{prompt}");
}
