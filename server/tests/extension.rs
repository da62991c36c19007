//! The same onboarding against the built `dist/libonboarding.so`, loaded at
//! run time (`--extension`) instead of the functions linked into the server.
mod common;

use std::path::PathBuf;

use common::*;
use serde_json::json;

fn built_extension() -> PathBuf {
    let so = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist/libonboarding.so");
    assert!(
        so.exists(),
        "{} is missing; build it first with `make loadable` at the repository root",
        so.display()
    );
    so
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_note_flow_through_the_loaded_extension() {
    let (mut config, dir) = temp_config();
    config.extension = Some(built_extension());
    let mut server = TestServer::start(config, dir).await;

    let created = request(
        server.addr,
        "POST",
        "/api/v1/onboarding/session",
        &[("User-Agent", "curl/8.0")],
        b"{}",
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let created = created.json();
    // The extension has its own (real) clock and random source: the ids are
    // fresh, so check their shape and carry them through.
    let id = created["session_id"]
        .as_str()
        .expect("session_id")
        .to_string();
    let tenant = created["tenant_id"]
        .as_str()
        .expect("tenant_id")
        .to_string();
    assert!(id.starts_with("onb_") && id.len() == 36, "{id}");
    assert!(
        tenant.starts_with("tenant_") && tenant.len() == 39,
        "{tenant}"
    );
    assert_eq!(
        created,
        json!({"success": true, "session_id": id, "tenant_id": tenant})
    );

    for (step, body, current, progress) in [
        ("business", BUSINESS, 2, 33),
        ("vapi", VAPI, 4, 66),
        ("kb", KB, 5, 83),
    ] {
        let reply = server.post(&session_path(&id, step), body).await;
        assert_eq!(reply.status, 200, "{step}: {}", reply.body);
        assert_eq!(
            reply.body,
            format!(
                r#"{{"success":true,"session_id":"{id}","step":"{step}","current_step":{current},"progress_percentage":{progress}}}"#
            )
        );
    }
    let completed = server.post(&session_path(&id, "complete"), "{}").await;
    assert_eq!(completed.status, 200, "{}", completed.body);
    let completed = completed.json();
    let seconds = completed["duration_seconds"]
        .as_i64()
        .expect("duration_seconds");
    assert_eq!(
        completed,
        json!({
            "success": true, "message": "Onboarding terminé avec succès ! 🎉",
            "session_id": id, "tenant_id": tenant,
            "duration_seconds": seconds, "duration_minutes": (seconds + 30) / 60,
            "sync_status": "synced", "already_completed": false,
            "synced": {
                "agent_config": {"agent_type": "multi_purpose", "agent_name": "Sara",
                                 "voice_provider": "elevenlabs", "voice_id": "EXAVITQu4vr4xnSDxMaL",
                                 "voice_language": "fr-FR", "channels": ["phone"]},
                "phone_mapping": {"phone_number": "+33612345678",
                                  "status": "pending_verification", "is_active": false},
                "campaign": null,
                "knowledge_base": {"method": "website",
                                   "crawl_job": {"url": "https://mon-site.fr/", "status": "queued"},
                                   "documents": null},
            },
        })
    );
    let unknown = server.post(&session_path("onb_nope", "kb"), KB).await;
    assert_eq!(
        (unknown.status, unknown.body),
        (
            404,
            r#"{"success":false,"error":"session 'onb_nope' does not exist","code":"not_found"}"#
                .to_string()
        )
    );
    let state = server.get(&session_path(&id, "")).await;
    assert_eq!(state.status, 200);
    assert_eq!(state.json()["status"], "completed");

    server.stop().await;
    let db = server.read_db();
    let sessions = rows(&db, "onboarding_sessions");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["ip_address"], "127.0.0.1");
    assert_eq!(sessions[0]["user_agent"], "curl/8.0");
    assert_eq!(sessions[0]["status"], "completed");
    let tenants = rows(&db, "tenants");
    assert_eq!(
        (
            &tenants[0]["name"],
            &tenants[0]["email"],
            &tenants[0]["onboarding_completed"]
        ),
        (
            &json!("Mon Entreprise"),
            &json!("contact@entreprise.fr"),
            &json!(1)
        )
    );
    assert_eq!(rows(&db, "onboarding_analytics")[0]["completed"], 1);
    assert_eq!(rows(&db, "omni_agent_configs")[0]["agent_name"], "Sara");
    assert_eq!(
        rows(&db, "omni_phone_mappings")[0]["status"],
        "pending_verification"
    );
    assert_eq!(rows(&db, "omnichannel_campaigns").len(), 0);
    assert_eq!(rows(&db, "kb_crawl_jobs")[0]["url"], "https://mon-site.fr/");
}

/// An `--extension` older than this server, lacking a form it calls (here a
/// stub with `onboarding_migrate` alone, built by the C compiler against
/// SQLite's headers, which `libsqlite3-dev` installs), is refused at start,
/// naming what it lacks, before it migrates anything (the stub's migration
/// fails, and is not what is said): each such call would otherwise be a
/// 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_lacking_a_form_the_server_calls_is_refused_at_start() {
    let (mut config, dir) = temp_config();
    let source = dir.path().join("stub.c");
    std::fs::write(
        &source,
        "#include <sqlite3ext.h>\n\
         SQLITE_EXTENSION_INIT1\n\
         static void migrate(sqlite3_context *c, int n, sqlite3_value **v) {\n\
           sqlite3_result_error(c, \"the stub was asked to migrate\", -1);\n\
         }\n\
         int sqlite3_onboarding_init(sqlite3 *db, char **err, const sqlite3_api_routines *api) {\n\
           SQLITE_EXTENSION_INIT2(api);\n\
           return sqlite3_create_function(db, \"onboarding_migrate\", 0, SQLITE_UTF8, 0, migrate, 0, 0);\n\
         }\n",
    )
    .unwrap();
    let stub = dir.path().join("libstub.so");
    let (built, log) = output_of(
        std::process::Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(&stub)
            .arg(&source),
    );
    assert!(
        built,
        "cc (with libsqlite3-dev's sqlite3ext.h) is needed: {log}"
    );
    config.extension = Some(stub.clone());
    let db_path = config.db_path.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = onboarding_server::run(listener, config, std::future::pending()).await;
    // The database file the refused start created is gone with it.
    assert!(!db_path.exists(), "{} left behind", db_path.display());
    assert_eq!(
        refused,
        Err(format!(
            "--extension {} lacks onboarding_create/4, onboarding_step/4, onboarding_complete/3, \
             onboarding_phone_send/4, onboarding_phone_verify/3, onboarding_kb_prepare/1, \
             onboarding_kb_recut/0, onboarding_create_kept/2, onboarding_step_kept/4, which this \
             server calls (build this source's with `make loadable`)",
            stub.display()
        ))
    );
}

/// The built extension kept under another name (a version beside the one
/// in use) loads all the same: its entry point is asked for by name, where
/// SQLite would derive `sqlite3_onboardingv_init` from the file's name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extension_loads_under_another_file_name() {
    let (mut config, dir) = temp_config();
    let renamed = dir.path().join("libonboarding-v2.so");
    std::fs::copy(built_extension(), &renamed).unwrap();
    config.extension = Some(renamed);
    let mut server = TestServer::start(config, dir).await;
    let created = server.post("/api/v1/onboarding/session", "{}").await;
    assert_eq!(created.status, 201, "{}", created.body);
    server.stop().await;
}

/// A database of a newer schema than this server's (a downgrade) is
/// refused before anything is written to it: its switch to WAL mode came
/// first and changed its header for good (a file in rollback-journal mode
/// stayed in WAL mode after the refusal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_a_newer_schema_is_refused_untouched() {
    let (config, _dir) = temp_config();
    let db_path = config.db_path.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    onboarding_server::run(listener, config.clone(), async {})
        .await
        .unwrap();
    let newer = onboarding::latest_version() + 1;
    {
        let conn = rusqlite::Connection::open(&db_path).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = DELETE;
             INSERT INTO onboarding_schema_migrations (version, name, applied_at)
             VALUES ({newer}, 'from a newer server', '2026-12-07T00:00:00.000Z');"
        ))
        .unwrap();
    }
    let before = std::fs::read(&db_path).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = onboarding_server::run(listener, config, std::future::pending())
        .await
        .unwrap_err();
    assert!(refused.contains(&format!("version {newer}")), "{refused}");
    assert!(
        std::fs::read(&db_path).unwrap() == before,
        "the file was changed"
    );
    assert!(!std::path::Path::new(&format!("{}-wal", db_path.display())).exists());
}

/// A loaded extension takes the crawl's allow-list from the environment
/// variable of `--crawl-allow-host` as it loads: a server given the list
/// that way saves a kb step for a listed host; given it by the flag alone,
/// which the extension would never see, it refuses to start, saying how.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaded_extension_takes_the_allow_list_from_the_environment() {
    let so = built_extension();
    let so = so.to_str().unwrap();
    let mut server = Spawned::start_under(
        &["env", "ONBOARDING_CRAWL_ALLOW_HOST=127.0.0.1:9000"],
        &["--extension", so],
    );
    let created = request(
        server.addr,
        "POST",
        "/api/v1/onboarding/session",
        &[],
        b"{}",
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["session_id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/onboarding/session/{id}/kb");
    let post_kb = |url: &str| {
        let body = format!(r#"{{"method":"website","crawl_url":"{url}"}}"#);
        let path = path.clone();
        async move {
            let headers = [("Content-Type", "application/json")];
            request(server.addr, "POST", &path, &headers, body.as_bytes()).await
        }
    };
    let saved = post_kb("http://127.0.0.1:9000/").await;
    assert_eq!(
        (saved.status, saved.body.as_str()),
        (
            200,
            format!(
                r#"{{"success":true,"session_id":"{id}","step":"kb","current_step":5,"progress_percentage":83}}"#
            )
            .as_str()
        )
    );
    let refused = post_kb("http://127.0.0.1:9001/").await;
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (
            422,
            r#"{"success":false,"error":"crawl_url 'http://127.0.0.1:9001/' is not a public address (expected a public http or https address such as 'https://mon-site.fr')","code":"invalid_field","field":"crawl_url"}"#
        )
    );
    server.stop();
    // The flag given, a start's error: the variable missing, or not a list.
    let refused_start = |variable: Option<&str>| {
        let dir = tempfile::tempdir().unwrap();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_onboarding-server"));
        command
            .args(["--listen", "127.0.0.1:0", "--crawl-workers", "0", "--db"])
            .arg(dir.path().join("onboarding.db"))
            .args(["--extension", so, "--crawl-allow-host", "127.0.0.1:9000"])
            .env_remove("ONBOARDING_CRAWL_ALLOW_HOST");
        if let Some(variable) = variable {
            command.env("ONBOARDING_CRAWL_ALLOW_HOST", variable);
        }
        let out = command.output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = refused_start(None);
    assert!(
        stderr.contains(
            "--crawl-allow-host reaches a loaded extension only through \
             ONBOARDING_CRAWL_ALLOW_HOST, which it reads as it loads: give the list in that \
             variable instead of the flag"
        ),
        "{stderr}"
    );
    let stderr = refused_start(Some("nope"));
    assert!(
        stderr.contains(
            "ONBOARDING_CRAWL_ALLOW_HOST: crawl allow-list entry 'nope' is not HOST:PORT (such \
             as '127.0.0.1:8080')"
        ),
        "{stderr}"
    );
}
