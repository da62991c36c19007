//! Every error status of the contract with its exact body, and nothing
//! internal ever reaching a client.
mod common;

use std::time::Duration;

use common::*;
use onboarding_server::Config;

const UNKNOWN: &str = "onb_00000000000000000000000000000000";

fn not_found_session() -> String {
    format!(
        r#"{{"success":false,"error":"session '{UNKNOWN}' does not exist","code":"not_found"}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_session_is_404_on_every_session_route() {
    let mut server = TestServer::pinned(pinned_env()).await;
    // The original answered /kb with success for any id.
    for action in STEPS.into_iter().chain(["complete"]) {
        let reply = server.post(&session_path(UNKNOWN, action), "{}").await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (404, not_found_session().as_str()),
            "{action}"
        );
    }
    let reply = server.post(&session_path(UNKNOWN, "kb"), KB).await;
    assert_eq!((reply.status, reply.body), (404, not_found_session()));
    let reply = server.get(&session_path(UNKNOWN, "")).await;
    assert_eq!((reply.status, reply.body), (404, not_found_session()));
    server.stop().await;
    let db = server.read_db();
    assert_eq!(rows(&db, "tenants"), Vec::<serde_json::Value>::new());
    assert_eq!(
        rows(&db, "onboarding_sessions"),
        Vec::<serde_json::Value>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_truncated_json_are_400_and_write_nothing() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let id = completable_session(&server).await;

    let truncated = server
        .post(&session_path(&id, "business"), r#"{"company_name":"Mon"#)
        .await;
    assert_eq!(truncated.status, 400);
    assert_eq!(
        truncated.body,
        r#"{"success":false,"error":"payload is not valid JSON; EOF while parsing a string at line 1 column 20","code":"invalid_json"}"#
    );
    let malformed = server
        .post(&session_path(&id, "kb"), "{method: 'website'}")
        .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(
        malformed.body,
        r#"{"success":false,"error":"payload is not valid JSON; key must be a string at line 1 column 2","code":"invalid_json"}"#
    );
    let not_object = server.post(&session_path(&id, "channels"), "[]").await;
    assert_eq!(
        (not_object.status, not_object.body),
        (
            400,
            r#"{"success":false,"error":"payload must be a JSON object, got an array","code":"invalid_json"}"#.to_string()
        )
    );
    // create parses the payload itself (to add the client's address): same
    // answers as the library's.
    let create_truncated = server.post("/api/v1/onboarding/session", "{").await;
    assert_eq!(
        (create_truncated.status, create_truncated.body),
        (
            400,
            r#"{"success":false,"error":"payload is not valid JSON; EOF while parsing an object at line 1 column 1","code":"invalid_json"}"#.to_string()
        )
    );
    let create_array = server.post("/api/v1/onboarding/session", "[1]").await;
    assert_eq!(
        (create_array.status, create_array.body),
        (
            400,
            r#"{"success":false,"error":"payload must be a JSON object, got an array","code":"invalid_json"}"#.to_string()
        )
    );
    let not_utf8 = request(
        server.addr,
        "POST",
        &session_path(&id, "business"),
        &[],
        b"{\"company_name\":\"\xff\"}",
    )
    .await;
    assert_eq!(
        (not_utf8.status, not_utf8.body),
        (
            400,
            r#"{"success":false,"error":"payload is not valid UTF-8","code":"invalid_json"}"#
                .to_string()
        )
    );
    server.stop().await;
    let db = server.read_db();
    // One session (completable_session's); kb and channels never saved.
    let sessions = rows(&db, "onboarding_sessions");
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["kb_data"], serde_json::Value::Null);
    assert_eq!(sessions[0]["channels_data"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_field_is_422_naming_the_field() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let id = completable_session(&server).await;
    let reply = server
        .post(
            &session_path(&id, "business"),
            r#"{"company_name":"Mon Entreprise","industry":"real_estate","phone":"+33612345678","email":"bob@"}"#,
        )
        .await;
    assert_eq!(reply.status, 422);
    assert_eq!(
        reply.body,
        r#"{"success":false,"error":"email 'bob@' is not a valid email address","code":"invalid_field","field":"email"}"#
    );
    let reply = server
        .post(&session_path(&id, "channels"), r#"{"channels":[]}"#)
        .await;
    assert_eq!(
        (reply.status, reply.body),
        (
            422,
            r#"{"success":false,"error":"channels must name at least one of phone, sms, whatsapp, email","code":"invalid_field","field":"channels"}"#.to_string()
        )
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicts_and_incomplete_sessions_are_409() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let created = server.post("/api/v1/onboarding/session", "{}").await;
    let fresh = created.json()["session_id"].as_str().unwrap().to_string();
    let incomplete = server.post(&session_path(&fresh, "complete"), "{}").await;
    assert_eq!(incomplete.status, 409);
    assert_eq!(
        incomplete.body,
        format!(
            r#"{{"success":false,"error":"session '{fresh}' is missing steps: business, vapi (save them before completing)","code":"incomplete"}}"#
        )
    );

    let done = completable_session(&server).await;
    let completed = server.post(&session_path(&done, "complete"), "{}").await;
    assert_eq!(completed.status, 200);
    let after = server.post(&session_path(&done, "kb"), KB).await;
    assert_eq!(after.status, 409);
    assert_eq!(
        after.body,
        format!(
            r#"{{"success":false,"error":"session '{done}' is completed; its steps can no longer be changed","code":"conflict"}}"#
        )
    );
    // The completed tenant now owns the email.
    let taken = server
        .post(&session_path(&fresh, "business"), BUSINESS)
        .await;
    assert_eq!(taken.status, 409);
    assert_eq!(
        taken.body,
        r#"{"success":false,"error":"email 'contact@entreprise.fr' is already used by another account","code":"conflict"}"#
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let reply = server.get("/api/v1/onboarding/sessions").await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        reply.body,
        r#"{"success":false,"error":"no route for GET '/api/v1/onboarding/sessions'","code":"not_found"}"#
    );
    let reply = server.post(&session_path("onb_x", "payment"), "{}").await;
    assert_eq!(
        (reply.status, reply.body),
        (
            404,
            r#"{"success":false,"error":"no route for POST '/api/v1/onboarding/session/onb_x/payment'","code":"not_found"}"#.to_string()
        )
    );

    let reply = request(server.addr, "DELETE", &session_path("onb_x", ""), &[], b"").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(
        reply.body,
        r#"{"success":false,"error":"method DELETE is not allowed on '/api/v1/onboarding/session/onb_x' (allowed: GET, HEAD, OPTIONS)","code":"method_not_allowed"}"#
    );
    let reply = server.get(&session_path("onb_x", "complete")).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST, OPTIONS"));
    assert_eq!(
        reply.body,
        r#"{"success":false,"error":"method GET is not allowed on '/api/v1/onboarding/session/onb_x/complete' (allowed: POST, OPTIONS)","code":"method_not_allowed"}"#
    );
    // A long path is cut in the answer like any echoed value.
    let long = session_path(&"x".repeat(12_000), "business");
    let reply = server.get(&long).await;
    assert_eq!(
        (reply.status, reply.body),
        (
            405,
            format!(
                r#"{{"success":false,"error":"method GET is not allowed on '/api/v1/onboarding/session/{}…' (allowed: POST, OPTIONS)","code":"method_not_allowed"}}"#,
                "x".repeat(64 - "/api/v1/onboarding/session/".len())
            )
        )
    );
    // Every segment is percent-decoded: `%62usiness` is the business step.
    let reply = server
        .post("/api/v1/onboarding/session/onb_x/%62usiness", "{}")
        .await;
    assert_eq!(
        (reply.status, reply.body),
        (
            404,
            r#"{"success":false,"error":"session 'onb_x' does not exist","code":"not_found"}"#
                .to_string()
        )
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_413_up_front_and_while_streaming() {
    let (mut config, dir) = temp_config();
    config.env = Some(pinned_env());
    config.max_body_bytes = 1024;
    let mut server = TestServer::start(config, dir).await;
    let expected = r#"{"success":false,"error":"request body is larger than the limit of 1024 bytes","code":"payload_too_large"}"#;

    // Announced too large: refused before a byte of the body is read.
    let head =
        "POST /api/v1/onboarding/session HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{";
    let reply = send_raw(server.addr, head.as_bytes()).await;
    assert_eq!((reply.status, reply.body.as_str()), (413, expected));
    // ... and the connection closed rather than kept for the unread rest.
    assert_eq!(reply.header("connection"), Some("close"));

    // Chunked, so no length up front: refused once the chunks pass the limit.
    let chunk = "x".repeat(800);
    let raw = format!(
        "POST /api/v1/onboarding/session/onb_x/business HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n320\r\n{chunk}\r\n320\r\n{chunk}\r\n0\r\n\r\n"
    );
    let reply = send_raw(server.addr, raw.as_bytes()).await;
    assert_eq!((reply.status, reply.body.as_str()), (413, expected));

    // Exactly at the limit is fine (and reaches the library).
    let padded = format!(r#"{{"pad":"{}"}}"#, "x".repeat(1024 - 10));
    assert_eq!(padded.len(), 1024);
    let reply = server.post("/api/v1/onboarding/session", &padded).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    server.stop().await;
}

/// A server on the pinned clock whose limit is two creates an hour per
/// address.
async fn server_creating_two_an_hour() -> TestServer {
    let (mut config, dir) = temp_config();
    config.env = Some(pinned_env());
    config.create_rate_limit = 2;
    config.create_rate_window = Duration::from_secs(3600);
    TestServer::start(config, dir).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_creation_is_rate_limited_per_address() {
    let mut server = server_creating_two_an_hour().await;
    for _ in 0..2 {
        let reply = server.post("/api/v1/onboarding/session", "{}").await;
        assert_eq!(reply.status, 201);
    }
    let reply = server.post("/api/v1/onboarding/session", "{}").await;
    assert_eq!(reply.status, 429);
    assert_eq!(
        reply.body,
        r#"{"success":false,"error":"too many sessions created from this address (retry after the Retry-After delay)","code":"rate_limited"}"#
    );
    // One creation fits again every 1800 s: the exact value depends on the
    // time elapsed since the first request (see limit.rs for exact ones).
    let retry_after: u64 = reply
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=1800).contains(&retry_after), "{retry_after}");
    // Only creation is limited: the other routes still answer.
    let health = server.get("/healthz").await;
    assert_eq!(health.status, 200);
    server.stop().await;
    assert_eq!(rows(&server.read_db(), "tenants").len(), 2);
}

/// A create retried with its `Idempotency-Key` after the address reached
/// its limit (its first answer was lost) gets its session again, not the
/// 429; a key that made none, or a create without a key, still gets the 429,
/// and the key with another body its 409. Nothing more is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_create_retried_past_the_limit_gets_its_session() {
    let mut server = server_creating_two_an_hour().await;
    let path = "/api/v1/onboarding/session";
    let keyed = |key: &'static str, body: &'static str| {
        let addr = server.addr;
        async move {
            request(
                addr,
                "POST",
                path,
                &[
                    ("Content-Type", "application/json"),
                    ("Idempotency-Key", key),
                ],
                body.as_bytes(),
            )
            .await
        }
    };
    let first = keyed("retry-key-000000001", "{}").await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(server.post(path, "{}").await.status, 201);
    assert_eq!(server.post(path, "{}").await.status, 429);
    let again = keyed("retry-key-000000001", "{}").await;
    assert_eq!((again.status, &again.body), (201, &first.body));
    let other = keyed("retry-key-000000002", "{}").await;
    assert_eq!(
        (other.status, other.body.as_str()),
        (
            429,
            r#"{"success":false,"error":"too many sessions created from this address (retry after the Retry-After delay)","code":"rate_limited"}"#
        )
    );
    assert!(other.header("retry-after").is_some());
    let changed = keyed("retry-key-000000001", r#"{"source":"partner"}"#).await;
    assert_eq!(
        (changed.status, changed.body.as_str()),
        (
            409,
            r#"{"success":false,"error":"Idempotency-Key was already used with another body: a new create needs a new key","code":"conflict"}"#
        )
    );
    server.stop().await;
    assert_eq!(rows(&server.read_db(), "tenants").len(), 2);
}

/// A keyed create sent again (its answer lost) is counted once against the
/// address's limit: two retries of the first of a limit of 2 leave room
/// for a second create, and only a third is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_create_sent_again_is_counted_once() {
    let mut server = server_creating_two_an_hour().await;
    let path = "/api/v1/onboarding/session";
    let keyed = || {
        request(
            server.addr,
            "POST",
            path,
            &[
                ("Content-Type", "application/json"),
                ("Idempotency-Key", "retry-key-000000004"),
            ],
            b"{}",
        )
    };
    let first = keyed().await;
    assert_eq!(first.status, 201, "{}", first.body);
    for _ in 0..2 {
        let again = keyed().await;
        assert_eq!((again.status, &again.body), (201, &first.body));
    }
    let second = server.post(path, "{}").await;
    assert_eq!(second.status, 201, "{}", second.body);
    assert_ne!(second.body, first.body);
    let third = server.post(path, "{}").await;
    assert_eq!(
        (third.status, third.body.as_str()),
        (
            429,
            r#"{"success":false,"error":"too many sessions created from this address (retry after the Retry-After delay)","code":"rate_limited"}"#
        )
    );
    server.stop().await;
    assert_eq!(rows(&server.read_db(), "tenants").len(), 2);
}

/// The retry of a keyed create sent while the create itself still waits
/// on the writer (another process holds the write lock; the client gave up
/// on the answer), past the limit: it queues behind the create and gets
/// its session. Read beside the queue, it found none and got the 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_retry_past_the_limit_waits_for_its_create_still_queued() {
    let (mut config, dir) = temp_config();
    config.create_rate_limit = 1;
    config.create_rate_window = Duration::from_secs(3600);
    config.busy_timeout = Duration::from_secs(20);
    let mut server = TestServer::start(config, dir).await;
    assert_eq!(server.get("/healthz").await.status, 200);
    let locker = rusqlite::Connection::open(&server.db_path).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let addr = server.addr;
    let create = || {
        tokio::spawn(async move {
            request(
                addr,
                "POST",
                "/api/v1/onboarding/session",
                &[
                    ("Content-Type", "application/json"),
                    ("Idempotency-Key", "retry-key-000000003"),
                ],
                b"{}",
            )
            .await
        })
    };
    let first = create();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let retry = create();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!first.is_finished() && !retry.is_finished());
    locker.execute_batch("ROLLBACK").unwrap();
    let (first, retry) = (first.await.unwrap(), retry.await.unwrap());
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!((retry.status, &retry.body), (201, &first.body));
    server.stop().await;
    assert_eq!(rows(&server.read_db(), "tenants").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_errors_are_500_without_detail() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let id = completable_session(&server).await;
    let reply = server.post(&session_path(&id, "kb"), KB).await;
    assert_eq!(reply.status, 200);
    // Break the schema behind the server's back: the sync now fails on a
    // missing table, whose name and SQL must not reach the client.
    let admin = rusqlite::Connection::open(&server.db_path).expect("second connection");
    admin
        .busy_timeout(Duration::from_secs(10))
        .expect("busy timeout");
    admin
        .execute_batch("DROP TABLE kb_crawl_jobs")
        .expect("drop a table");
    drop(admin);
    let reply = server.post(&session_path(&id, "complete"), "{}").await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.body,
        r#"{"success":false,"error":"internal error","code":"internal"}"#
    );
    server.stop().await;
    // The failed sync left nothing behind.
    let db = server.read_db();
    assert_eq!(
        rows(&db, "omni_agent_configs"),
        Vec::<serde_json::Value>::new()
    );
    assert_eq!(rows(&db, "onboarding_sessions")[0]["status"], "in_progress");
}

/// A write the disk refuses (here the process's file size limit, as a
/// full disk would) fails alone: a 500, nothing of it kept, and the next
/// writes pass without a restart. The WAL gatherer used to keep the
/// failure: every later write answered 500 while `/healthz` said ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_disk_refuses_fails_alone_and_the_next_ones_pass() {
    // 3 MiB a file (bash counts KiB); the signal ignored, so that a write
    // past it fails with EFBIG instead of killing the process.
    let mut server = Spawned::start_under(
        &[
            "bash",
            "-c",
            "trap '' XFSZ; ulimit -f 3072; exec \"$@\"",
            "bash",
        ],
        &["--synchronous", "normal"],
    );
    let post = |path: String, body: String| async move {
        request(server.addr, "POST", &path, &[], body.as_bytes()).await
    };
    let created = post("/api/v1/onboarding/session".into(), "{}".into()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = serde_json::from_str::<serde_json::Value>(&created.body).unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Twenty documents of 200,000 characters: 4 MB of step data, past the
    // limit in the WAL.
    let documents: Vec<serde_json::Value> = (0..20)
        .map(|i| serde_json::json!({"title": format!("Document {i}"), "content": "tarif ".repeat(33_333)}))
        .collect();
    let kb = serde_json::json!({"method": "documents", "documents": documents}).to_string();
    let refused = post(session_path(&id, "kb"), kb).await;
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (
            500,
            r#"{"success":false,"error":"internal error","code":"internal"}"#
        )
    );
    // The health check says so for a minute: it only reads, and answered
    // ok while every write failed.
    let storage_refused = || async {
        let health = request(server.addr, "GET", "/healthz", &[], b"").await;
        assert_eq!(
            (health.status, health.body.as_str()),
            (
                503,
                r#"{"success":false,"error":"the database refused a write for want of storage in the last minute","code":"unavailable"}"#,
            )
        );
        let retry_after: u64 = health.header("retry-after").unwrap().parse().unwrap();
        assert!((30..=60).contains(&retry_after), "{retry_after}");
    };
    storage_refused().await;
    let channels = post(
        session_path(&id, "channels"),
        r#"{"channels":["sms"]}"#.into(),
    )
    .await;
    assert_eq!(
        (channels.status, channels.body.as_str()),
        (
            200,
            format!(
                r#"{{"success":true,"session_id":"{id}","step":"channels","current_step":3,"progress_percentage":50}}"#
            )
            .as_str()
        )
    );
    let again = post("/api/v1/onboarding/session".into(), "{}".into()).await;
    assert_eq!(again.status, 201, "{}", again.body);
    // Small writes passing do not clear it: on a nearly full disk the
    // next large one is refused again.
    storage_refused().await;
    server.stop();
    let db = rusqlite::Connection::open(&server.db_path).unwrap();
    let (kb, channels): (Option<String>, Option<String>) = db
        .query_row(
            "SELECT kb_data, channels_data FROM onboarding_sessions WHERE id = ?1",
            [&id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (kb, channels.as_deref()),
        (None, Some(r#"{"channels":["sms"]}"#))
    );
    assert_eq!(
        db.query_row("SELECT count(*) FROM onboarding_sessions", [], |r| r
            .get::<_, i64>(0))
            .unwrap(),
        2
    );
}

/// A start the file system refuses says the system's reason: SQLite's own
/// text for a shared-memory file that cannot grow (on a full disk, here
/// past the process's file size limit) is "disk I/O error", which sends an
/// operator looking for a hardware fault.
#[test]
fn a_start_the_disk_refuses_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("onboarding.db");
    // A database of the server's, in WAL mode, stopped cleanly (its -shm
    // gone with it).
    Spawned::start_on(&db, &[]).stop();
    let out = std::process::Command::new("bash")
        // A locale the machine lacks (LANG or LC_ALL set for one not
        // generated) has bash warn on this stderr first; C is always there.
        .env("LC_ALL", "C")
        .args(["-c", "trap '' XFSZ; ulimit -f 1; exec \"$@\"", "bash"])
        .arg(env!("CARGO_BIN_EXE_onboarding-server"))
        .args(["--listen", "127.0.0.1:0", "--crawl-workers", "0", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "onboarding-server: error: cannot configure {}: disk I/O error: File too large (os \
             error 27)\n",
            db.display()
        )
    );
}

#[test]
fn default_config_matches_the_contract() {
    let config = Config::default();
    assert_eq!(config.db_path, std::path::PathBuf::from("onboarding.db"));
    assert_eq!(config.max_body_bytes, 65_536);
    assert_eq!(
        config.cors_origins,
        [
            "http://localhost:3000",
            "http://localhost:3002",
            "http://localhost:5173",
            "http://127.0.0.1:3000",
            "http://127.0.0.1:3002",
            "http://127.0.0.1:5173",
        ]
    );
}

/// The kb step runs on the dqlite nodes, whose functions know no
/// allow-list: a cluster server refuses `--crawl-allow-host` at start,
/// before connecting anywhere (it was taken, and the step still refused the
/// host as not public while the crawler would have fetched it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_server_refuses_the_crawl_allow_list_at_start() {
    let (mut config, _dir) = temp_config();
    config.dqlite = vec!["127.0.0.1:9".to_string()];
    config.crawl.allow = onboarding::kb::AllowList::parse(&["127.0.0.1:8080"]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = onboarding_server::run(listener, config, std::future::pending()).await;
    assert_eq!(
        refused,
        Err("--crawl-allow-host applies to the single file's functions; the kb step runs on the dqlite nodes, which cannot receive it".to_string())
    );
}

/// Every answer is dated by the library's clock, the one that sets the
/// waits it answers (`resend_after`, `expires_at`), not the system's: a
/// client counts those waits against the server's own time. So are the
/// answers written past hyper (a head it could not parse).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_dated_by_the_librarys_clock() {
    let env = pinned_env();
    let mut server = TestServer::pinned(env.clone()).await;
    let date =
        |ms: i64| httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64));
    assert_eq!(date(T0_MS), "Tue, 24 Nov 2026 10:00:00 GMT");
    let healthz = server.get("/healthz").await;
    assert_eq!(healthz.status, 200);
    assert_eq!(healthz.header("date"), Some(date(T0_MS).as_str()));
    env.advance_ms(61_500);
    let missing = server.get("/nowhere").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("date"), Some(date(T0_MS + 61_500).as_str()));
    let malformed = send_raw(server.addr, b"GET /healthz HTTP/1.1\r\nHost t\r\n\r\n").await;
    assert_eq!(malformed.status, 400, "{}", malformed.body);
    assert_eq!(
        malformed.header("date"),
        Some("Tue, 24 Nov 2026 10:01:01 GMT")
    );
    server.stop().await;
}
