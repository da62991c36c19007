//! The whole onboarding in Debian's `sqlite3` shell with `.load`: each step
//! a separate shell run on one database file, as a person would type them.

use onboarding_blackbox::{sqlite3, sqlite3_json, sqlite3_ok};
use serde_json::json;

fn db() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onboarding.db");
    (dir, path)
}

/// Migrates `db` and creates a session on it: its id.
fn migrated_with_a_session(db: &std::path::Path) -> String {
    sqlite3_ok(db, &["SELECT onboarding_migrate();"]);
    sqlite3_json(db, "SELECT onboarding_create();")["session_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn the_extension_adds_exactly_these_functions() {
    let (_dir, db) = db();
    let listed = sqlite3_ok(
        &db,
        &[
            "SELECT name || '/' || narg || ' ' || flags FROM pragma_function_list \
           WHERE name LIKE 'onboarding%' ORDER BY name, narg;",
        ],
    );
    // flags as pragma_function_list reports them (without the text
    // encoding): 0x800 DETERMINISTIC, 0x80000 DIRECTONLY, 0x200000 INNOCUOUS.
    // Writers, and readers of the database, are DIRECTONLY; none is
    // DETERMINISTIC, not even the catalogues (an index must not keep what
    // a new version of the library answers otherwise).
    assert_eq!(
        listed,
        "onboarding_agent_types/0 2097152\n\
         onboarding_complete/1 524288\n\
         onboarding_complete/2 524288\n\
         onboarding_complete/3 524288\n\
         onboarding_create/0 524288\n\
         onboarding_create/1 524288\n\
         onboarding_create/3 524288\n\
         onboarding_create/4 524288\n\
         onboarding_create_kept/2 524288\n\
         onboarding_get/1 524288\n\
         onboarding_kb_claim/1 524288\n\
         onboarding_kb_finish/1 524288\n\
         onboarding_kb_get/1 524288\n\
         onboarding_kb_prepare/1 524288\n\
         onboarding_kb_recut/0 524288\n\
         onboarding_kb_release/1 524288\n\
         onboarding_kb_renew/1 524288\n\
         onboarding_kb_search/1 524288\n\
         onboarding_kb_site_release/1 524288\n\
         onboarding_kb_site_take/1 524288\n\
         onboarding_kb_store_page/1 524288\n\
         onboarding_migrate/0 524288\n\
         onboarding_outbox_claim/2 524288\n\
         onboarding_outbox_failed/3 524288\n\
         onboarding_outbox_sent/3 524288\n\
         onboarding_phone_send/2 524288\n\
         onboarding_phone_send/3 524288\n\
         onboarding_phone_send/4 524288\n\
         onboarding_phone_verify/2 524288\n\
         onboarding_phone_verify/3 524288\n\
         onboarding_schema_version/0 524288\n\
         onboarding_step/3 524288\n\
         onboarding_step/4 524288\n\
         onboarding_step_kept/4 524288\n\
         onboarding_version/0 2097152\n\
         onboarding_voices/0 2097152\n"
    );
    // Without the extension, none of them exists.
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT count(*) FROM pragma_function_list WHERE name LIKE 'onboarding%';")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0\n");
}

#[test]
fn a_whole_onboarding_in_the_shell() {
    let (_dir, db) = db();
    assert_eq!(
        sqlite3_ok(
            &db,
            &[
                "SELECT onboarding_version();",
                "SELECT onboarding_migrate();"
            ]
        ),
        "v0.1.0\n15\n"
    );
    let created = sqlite3_json(&db, "SELECT onboarding_create('{}');");
    let s = created["session_id"].as_str().unwrap().to_string();
    let tenant = created["tenant_id"].as_str().unwrap().to_string();
    assert_eq!(
        created,
        json!({"success": true, "session_id": s, "tenant_id": tenant})
    );

    let steps = [
        (
            "business",
            r#"{"company_name":"Mon Entreprise","industry":"Immobilier","phone":"06 12 34 56 78","email":"contact@entreprise.fr"}"#,
            2,
            33,
        ),
        ("channels", r#"{"channels":["phone","whatsapp"]}"#, 3, 50),
        (
            "vapi",
            r#"{"agent_type":"multi_purpose","voice":"sara","assistant_name":"Sara"}"#,
            4,
            66,
        ),
        (
            "kb",
            r#"{"crawl_url":"https://mon-site.fr","method":"website"}"#,
            5,
            83,
        ),
        (
            "appointments",
            r#"{"provider":"cal_com","event_type_id":123456,"timezone":"Europe/Paris"}"#,
            5,
            83,
        ),
    ];
    for (step, payload, current, progress) in steps {
        let sql = format!("SELECT onboarding_step('{s}', '{step}', '{payload}');");
        assert_eq!(
            sqlite3_json(&db, &sql),
            json!({"success": true, "session_id": s, "step": step,
                   "current_step": current, "progress_percentage": progress})
        );
    }
    let done = sqlite3_json(&db, &format!("SELECT onboarding_complete('{s}', '{{}}');"));
    assert_eq!(done["success"], true);
    assert_eq!(done["sync_status"], "synced");
    assert_eq!(done["already_completed"], false);
    assert_eq!(
        done["synced"]["phone_mapping"],
        json!({"phone_number": "+33612345678", "status": "pending_verification", "is_active": false})
    );

    // The rows of every table the onboarding wrote.
    let rows = sqlite3_ok(
        &db,
        &[
            ".mode list",
            ".separator ' | '",
            "SELECT name, email, phone, sector, onboarding_completed, booking_provider, \
                    cal_com_event_type_id, timezone FROM tenants;",
            "SELECT current_step, progress_percentage, status, source FROM onboarding_sessions;",
            "SELECT completed, total_duration_seconds >= 0 FROM onboarding_analytics;",
            "SELECT agent_type, agent_name, voice_id, voice_language, greeting_message, \
                    channels_config FROM omni_agent_configs;",
            "SELECT phone_number, is_active, status FROM omni_phone_mappings;",
            "SELECT name, campaign_type, channels, status, settings FROM omnichannel_campaigns;",
            "SELECT url, status FROM kb_crawl_jobs;",
        ],
    );
    assert_eq!(
        rows,
        "Mon Entreprise | contact@entreprise.fr | +33612345678 | Immobilier | 1 | cal_com | 123456 | Europe/Paris\n\
         6 | 100 | completed | web\n\
         1 | 1\n\
         multi_purpose | Sara | EXAVITQu4vr4xnSDxMaL | fr-FR | Bonjour, Sara de Mon Entreprise, comment puis-je vous aider ? | \
         {\"phone\":{\"enabled\":true},\"sms\":{\"enabled\":false},\"whatsapp\":{\"enabled\":true},\"email\":{\"enabled\":false}}\n\
         +33612345678 | 0 | pending_verification\n\
         Prise de rendez-vous – Mon Entreprise | appointment | [\"phone\",\"whatsapp\"] | active | \
         {\"provider\":\"cal_com\",\"event_type_id\":\"123456\",\"timezone\":\"Europe/Paris\"}\n\
         https://mon-site.fr/ | queued\n"
    );

    // A retry answers the same, flagged.
    let again = sqlite3_json(&db, &format!("SELECT onboarding_complete('{s}');"));
    let mut expected = done.clone();
    expected["already_completed"] = json!(true);
    assert_eq!(again, expected);
}

#[test]
fn errors_reach_the_shell_with_their_kind_and_write_nothing() {
    let (_dir, db) = db();
    let s = migrated_with_a_session(&db);
    let out = sqlite3(
        &db,
        &[&format!(
            "SELECT onboarding_step('{s}', 'business', \
             '{{\"company_name\":\"A\",\"industry\":\"B\",\"phone\":\"0612345678\",\"email\":\"bob@\"}}');"
        )],
    );
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: stepping, onboarding_step: invalid_field: email 'bob@' is not a valid \
         email address\n"
    );
    assert_eq!(
        sqlite3_ok(
            &db,
            &["SELECT business_data IS NULL, current_step FROM onboarding_sessions;"]
        ),
        "1|1\n"
    );
    // A writer inside a view is refused by SQLite itself (DIRECTONLY).
    let out = sqlite3(
        &db,
        &[
            "CREATE VIEW v AS SELECT onboarding_create() AS r;",
            "SELECT * FROM v;",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: in prepare, unsafe use of onboarding_create()\n"
    );
    assert_eq!(sqlite3_ok(&db, &["SELECT count(*) FROM tenants;"]), "1\n");
}

/// The shell's SQLite version, as text and as its numbers.
fn shell_sqlite_version(db: &std::path::Path) -> (String, Vec<u32>) {
    let version = sqlite3_ok(db, &["SELECT sqlite_version();"])
        .trim()
        .to_string();
    let number = version.split('.').map(|p| p.parse().unwrap()).collect();
    (version, number)
}

#[test]
fn under_trusted_schema_off_a_write_works_or_says_what_to_change() {
    let (_dir, db) = db();
    sqlite3_ok(&db, &["SELECT onboarding_migrate();"]);
    let (version, number) = shell_sqlite_version(&db);
    let out = sqlite3(
        &db,
        &[
            "PRAGMA trusted_schema = OFF;",
            "SELECT onboarding_create() ->> '$.success';",
        ],
    );
    if number < vec![3, 41, 0] {
        // Debian 12's 3.40.1: its json_valid(), in the tables' CHECK
        // constraints, is not innocuous there.
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "Error: stepping, onboarding_create: internal: unsafe use of json_valid(): \
                 this SQLite ({version}) refuses its own JSON functions in the tables' CHECK \
                 constraints under PRAGMA trusted_schema=OFF, which SQLite 3.41.0 fixed; set \
                 PRAGMA trusted_schema=ON on this connection, or use SQLite 3.41 or newer\n"
            )
        );
        assert_eq!(sqlite3_ok(&db, &["SELECT count(*) FROM tenants;"]), "0\n");
    } else {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
        assert_eq!(sqlite3_ok(&db, &["SELECT count(*) FROM tenants;"]), "1\n");
    }
}

/// The first call anyone makes, under `trusted_schema = OFF`: on SQLite
/// before 3.41 the migration fails, saying what to change (it said
/// `unsafe use of json_valid()` alone).
#[test]
fn under_trusted_schema_off_the_migration_works_or_says_what_to_change() {
    let (_dir, db) = db();
    let (version, number) = shell_sqlite_version(&db);
    let out = sqlite3(
        &db,
        &[
            "PRAGMA trusted_schema = OFF;",
            "SELECT onboarding_migrate();",
        ],
    );
    if number < vec![3, 41, 0] {
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "Error: stepping, onboarding_migrate: internal: migration 001_init failed: \
                 unsafe use of json_valid(): this SQLite ({version}) refuses its own JSON \
                 functions in the tables' CHECK constraints under PRAGMA trusted_schema=OFF, \
                 which SQLite 3.41.0 fixed; set PRAGMA trusted_schema=ON on this connection, \
                 or use SQLite 3.41 or newer\n"
            )
        );
        assert_eq!(
            sqlite3_ok(&db, &["SELECT onboarding_schema_version();"]),
            "0\n"
        );
    } else {
        let (_other_dir, other) = self::db();
        let latest = sqlite3_ok(&other, &["SELECT onboarding_migrate();"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), latest);
    }
}

#[test]
fn the_schema_version_and_a_create_with_the_peer_in_the_shell() {
    let (_dir, db) = db();
    assert_eq!(
        sqlite3_ok(&db, &["SELECT onboarding_schema_version();"]),
        "0\n"
    );
    assert_eq!(
        sqlite3_ok(
            &db,
            &[
                "SELECT count(*) FROM sqlite_master;",
                "SELECT onboarding_migrate();"
            ]
        ),
        "0\n15\n"
    );
    assert_eq!(
        sqlite3_ok(&db, &["SELECT onboarding_schema_version();"]),
        "15\n"
    );
    sqlite3_ok(
        &db,
        &[
            "SELECT onboarding_create('{\"ip_address\":\"198.51.100.9\"}', '203.0.113.7', \
           ' curl/8.0 ' || char(9));",
        ],
    );
    assert_eq!(
        sqlite3_ok(
            &db,
            &["SELECT ip_address, user_agent FROM onboarding_sessions;"]
        ),
        "203.0.113.7|curl/8.0\n"
    );
}

#[test]
fn a_phone_verification_in_the_shell_with_a_sender_on_another_run() {
    let (_dir, db) = db();
    let s = migrated_with_a_session(&db);
    sqlite3_ok(
        &db,
        &[&format!(
            "SELECT onboarding_step('{s}', 'business', '{{\"company_name\":\"Mon Entreprise\",\
             \"industry\":\"Immobilier\",\"phone\":\"06 12 34 56 78\",\
             \"email\":\"contact@entreprise.fr\"}}');"
        )],
    );
    let sent = sqlite3_json(&db, &format!("SELECT onboarding_phone_send('{s}', NULL);"));
    assert_eq!(
        (&sent["phone_number"], &sent["channel"]),
        (&json!("+33612345678"), &json!("sms"))
    );
    // The sender: another process, claiming with a lease.
    let claimed = sqlite3_json(&db, "SELECT onboarding_outbox_claim('shell-sender', 60);");
    let text = claimed["message"]["text"].as_str().unwrap();
    let code: String = text.chars().filter(char::is_ascii_digit).take(6).collect();
    assert_eq!(
        sqlite3_ok(
            &db,
            &["SELECT onboarding_outbox_sent(1, 'shell-sender', NULL) ->> '$.status';"]
        ),
        "sent\n"
    );
    // A wrong code fails the statement and still counts.
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let out = sqlite3(
        &db,
        &[&format!(
            "SELECT onboarding_phone_verify('{s}', '{{\"code\":\"{wrong}\"}}');"
        )],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: stepping, onboarding_phone_verify: invalid_field: code is wrong; 4 tries left\n"
    );
    let verified = sqlite3_json(
        &db,
        &format!("SELECT onboarding_phone_verify('{s}', '{{\"code\":\"{code}\"}}');"),
    );
    assert_eq!(verified["status"], "verified");
    assert_eq!(
        sqlite3_ok(
            &db,
            &["SELECT attempts, status FROM phone_verifications; SELECT status, text FROM outbox_messages;"]
        ),
        "1|verified\nsent|\n"
    );
}

/// The extension keeps its statements in an eponymous table named
/// `onboarding_statement_cache`; a table or view of the host's with that
/// name comes first, and the extension then prepares per call: the shell
/// still closes the file cleanly (nothing on stderr) and the calls answer.
#[test]
fn a_table_of_the_hosts_named_like_the_statement_holder_leaves_the_close_clean() {
    let (_dir, db) = db();
    // The shell alone, without the extension.
    let made = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("CREATE VIEW onboarding_statement_cache AS SELECT 1 AS x;")
        .status()
        .unwrap();
    assert!(made.success());
    let out = sqlite3_ok(
        &db,
        &[
            "SELECT onboarding_migrate();",
            "SELECT json_extract(onboarding_create('{}'), '$.success');",
            "SELECT x FROM onboarding_statement_cache;",
        ],
    );
    assert_eq!(out, "15\n1\n1\n");
}

#[test]
fn the_readme_transcript_shows_the_version_a_migration_reaches_today() {
    let (_dir, db) = db();
    let reached = sqlite3_ok(&db, &["SELECT onboarding_migrate();"]);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let prompt = "sqlite> SELECT onboarding_migrate();\n";
    let at = readme
        .find(prompt)
        .expect("the README's transcript migrates")
        + prompt.len();
    let shown = &readme[at..at + readme[at..].find('\n').unwrap() + 1];
    assert_eq!(shown, reached);
}

/// The extension takes the crawl's allow-list from the environment variable
/// of the server's `--crawl-allow-host`: a kb step for a listed intranet
/// site is saved, any other private address still refused, and a value
/// that is not `HOST:PORT` entries refuses the load, naming the entry.
#[test]
fn the_crawl_allow_list_comes_from_the_environment() {
    let (_dir, db) = db();
    let s = migrated_with_a_session(&db);
    let kb = |allow: Option<&str>, url: &str| {
        let mut cmd = std::process::Command::new("sqlite3");
        cmd.arg("-bail")
            .arg(&db)
            .arg(format!(".load {}", onboarding_blackbox::load_arg()))
            .arg(format!(
                "SELECT onboarding_step('{s}', 'kb', \
                 '{{\"method\":\"website\",\"crawl_url\":\"{url}\"}}');"
            ))
            .env_remove("ONBOARDING_CRAWL_ALLOW_HOST");
        if let Some(allow) = allow {
            cmd.env("ONBOARDING_CRAWL_ALLOW_HOST", allow);
        }
        let out = cmd.output().unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let refused = |url: &str| {
        format!(
            "Error: stepping, onboarding_step: invalid_field: crawl_url '{url}' is not a public \
             address (expected a public http or https address such as 'https://mon-site.fr')\n"
        )
    };
    let url = "http://intranet.local:8080/";
    assert_eq!(kb(None, url), (String::new(), refused(url)));
    let saved = format!(
        "{{\"success\":true,\"session_id\":\"{s}\",\"step\":\"kb\",\"current_step\":5,\
         \"progress_percentage\":83}}\n"
    );
    assert_eq!(
        kb(Some("127.0.0.1:9000, intranet.local:8080"), url),
        (saved, String::new())
    );
    assert_eq!(
        sqlite3_ok(
            &db,
            &["SELECT json_extract(kb_data, '$.crawl_url') FROM onboarding_sessions;"]
        ),
        "http://intranet.local:8080/\n"
    );
    // Another port of the same host is not on the list.
    let other = "http://intranet.local:8081/";
    assert_eq!(
        kb(Some("intranet.local:8080"), other),
        (String::new(), refused(other))
    );
    // The load refused, naming the entry; an empty one too, as the
    // server's flag refuses it.
    for (value, entry) in [
        ("intranet.local", "intranet.local"),
        ("intranet.local:8080,", ""),
    ] {
        assert_eq!(
            kb(Some(value), url),
            (
                String::new(),
                format!(
                    "Error: error during initialization: onboarding: ONBOARDING_CRAWL_ALLOW_HOST: \
                     crawl allow-list entry '{entry}' is not HOST:PORT (such as '127.0.0.1:8080')\n"
                )
            )
        );
    }
}

/// Loaded again through SQL's `load_extension()`, the extension cannot
/// replace its own functions from inside that statement: the error says
/// SQLite's reason and that it is loaded already (it said "registering
/// onboarding_migrate/0 failed" alone). Loaded again by `.load`, as a
/// client's own call does, it replaces them and answers.
#[test]
fn loading_it_again_through_sql_says_why_it_cannot() {
    let (_dir, db) = db();
    let so = onboarding_blackbox::extension();
    let out = sqlite3(
        &db,
        &[&format!("SELECT load_extension('{}');", so.display())],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: stepping, error during initialization: registering onboarding_migrate/0 \
         failed: unable to delete/modify user-function due to active statements (the \
         extension is loaded on this connection already; SQLite replaces no function from \
         inside a statement such as SELECT load_extension(...))\n"
    );
    let again = format!(".load {}", onboarding_blackbox::load_arg());
    assert_eq!(
        sqlite3_ok(&db, &[&again, "SELECT onboarding_migrate();"]),
        "15\n"
    );
}
