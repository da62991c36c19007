//! The kb step's `documents` method over HTTP: the step, completion storing
//! and indexing them, the knowledge base read back, and a search in French.
mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const HORAIRES: &str =
    "# Horaires\n\n| Jour | Heures |\n|---|---|\n| Lundi | Fermé |\n| Samedi | 9h00 – 18h00 |";
const CONTACT: &str = "# Contact\n\n12 rue des Lilas, 69003 Lyon. Téléphone : 04 78 12 34 56.";
const TARIFS: &str =
    "# Tarifs\n\n| Prestation | Prix |\n|---|---|\n| Coupe homme | 25 € |\n| Coupe enfant | 15 € |";

#[tokio::test]
async fn documents_are_stored_at_completion_and_searched_in_french() {
    let (config, dir) = temp_config();
    let mut server = TestServer::start(config, dir).await;
    let s = completable_session(&server).await;
    let kb = json!({
        "method": "documents",
        "documents": [
            {"title": " Horaires ", "content": HORAIRES},
            {"title": "Tarifs", "content": TARIFS},
            {"title": "Contact", "content": CONTACT},
            // Each item is a document, the same text under another title too.
            {"title": "Tarifs (copie)", "content": TARIFS},
        ],
    });
    let saved = server.post(&session_path(&s, "kb"), &kb.to_string()).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert_eq!(saved.json()["current_step"], 5);

    // Before completion: the method, nothing stored yet.
    let before = server.get(&session_path(&s, "kb")).await;
    assert_eq!(before.status, 200);
    let tenant = before.json()["tenant_id"].clone();
    assert_eq!(
        before.json(),
        json!({"success": true, "session_id": s, "tenant_id": tenant, "method": "documents",
               "job": null, "documents": [], "pages_not_stored": []})
    );

    let done = server.post(&session_path(&s, "complete"), "{}").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(
        done.json()["synced"]["knowledge_base"],
        json!({"method": "documents", "crawl_job": null,
               "documents": {"documents_stored": 4, "chunks": 4}})
    );

    let after = server.get(&session_path(&s, "kb")).await;
    assert_eq!(after.status, 200);
    assert_eq!(
        after.json(),
        json!({"success": true, "session_id": s, "tenant_id": tenant, "method": "documents",
               "job": null,
               "documents": [
                   {"document_id": 1, "url": null, "title": "Horaires", "source": "documents", "depth": null, "chunks": 1},
                   {"document_id": 2, "url": null, "title": "Tarifs", "source": "documents", "depth": null, "chunks": 1},
                   {"document_id": 3, "url": null, "title": "Contact", "source": "documents", "depth": null, "chunks": 1},
                   {"document_id": 4, "url": null, "title": "Tarifs (copie)", "source": "documents", "depth": null, "chunks": 1},
               ],
               "pages_not_stored": []})
    );
    // The original's route answers the same.
    let structure = server
        .get(&format!("/api/v1/kb/structure?session_id={s}"))
        .await;
    assert_eq!(structure.status, 200);
    assert_eq!(structure.json(), after.json());

    let q: String =
        url::form_urlencoded::byte_serialize("c'est combien une coupe homme ?".as_bytes())
            .collect();
    let found = server
        .get(&format!("{}?q={q}&limit=1", session_path(&s, "kb/search")))
        .await;
    assert_eq!(found.status, 200, "{}", found.body);
    let body = found.json();
    assert_eq!(body["query"], "c'est combien une coupe homme ?");
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(
        (
            &results[0]["document_id"],
            &results[0]["url"],
            &results[0]["title"],
            &results[0]["heading"],
            &results[0]["text"],
            &results[0]["snippet"],
            &results[0]["score"],
        ),
        (
            &json!(2),
            &Value::Null,
            &json!("Tarifs"),
            &json!("Tarifs"),
            &json!(TARIFS),
            &json!("| Coupe homme | 25 € |"),
            // Two chunks of the four hold the query's terms (one of three
            // when the copy was merged into it): a lower BM25 weight.
            &json!(3.5682),
        )
    );

    // The route's refusals: an empty question, a bad limit, no session id.
    let empty = server
        .get(&format!("{}?q=%20", session_path(&s, "kb/search")))
        .await;
    assert_eq!(
        (empty.status, empty.json()),
        (
            422,
            json!({"success": false, "error": "q must not be empty", "code": "invalid_field", "field": "q"})
        )
    );
    let limit = server
        .get(&format!(
            "{}?q=coupe&limit=21",
            session_path(&s, "kb/search")
        ))
        .await;
    assert_eq!(
        (limit.status, limit.json()),
        (
            422,
            json!({"success": false, "error": "limit 21 is not an integer from 1 to 20", "code": "invalid_field", "field": "limit"})
        )
    );
    for path in ["/api/v1/kb/structure", "/api/v1/kb/structure?session_id="] {
        let missing = server.get(path).await;
        assert_eq!(
            (missing.status, missing.json()),
            (
                422,
                json!({"success": false, "error": "session_id is required", "code": "invalid_field", "field": "session_id"})
            ),
            "{path}"
        );
    }
    // A parameter given twice: which one was meant cannot be known. A
    // parameter the route does not read may repeat.
    let search = session_path(&s, "kb/search");
    for (path, name) in [
        (format!("{search}?q=coupe&q=horaires"), "q"),
        (format!("{search}?q=coupe&limit=1&limit=2"), "limit"),
        (
            format!("/api/v1/kb/structure?session_id={s}&session_id={s}"),
            "session_id",
        ),
    ] {
        let twice = server.get(&path).await;
        assert_eq!(
            (twice.status, twice.json()),
            (
                422,
                json!({"success": false, "error": format!("{name} is given more than once; send one"), "code": "invalid_field", "field": name})
            ),
            "{path}"
        );
    }
    // A value that is not UTF-8 once decoded (Latin-1's `é`, a lone
    // surrogate's bytes): refused, named, where it was searched for with
    // U+FFFD in its place. `%C3%A9` and a `+` are text.
    for (path, name) in [
        (format!("{search}?q=caf%E9"), "q"),
        (format!("{search}?q=%ED%A0%80"), "q"),
        (format!("{search}?q=coupe&limit=%FF"), "limit"),
        (
            "/api/v1/kb/structure?session_id=%E9".to_string(),
            "session_id",
        ),
    ] {
        let latin = server.get(&path).await;
        assert_eq!(
            (latin.status, latin.json()),
            (
                422,
                json!({"success": false, "error": format!("{name} is not UTF-8 once its percent-escapes are decoded (send text in UTF-8: é is %C3%A9)"), "code": "invalid_field", "field": name})
            ),
            "{path}"
        );
    }
    let utf8 = server.get(&format!("{search}?q=caf%C3%A9+coupe")).await;
    assert_eq!(
        (utf8.status, &utf8.json()["query"]),
        (200, &json!("café coupe"))
    );
    let other = server.get(&format!("{search}?utm=a&q=coupe&utm=b")).await;
    let plain = server.get(&format!("{search}?q=coupe")).await;
    assert_eq!((other.status, &other.body), (200, &plain.body));
    let unknown = server
        .get(&format!(
            "{}?q=coupe",
            session_path("onb_nope", "kb/search")
        ))
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    server.stop().await;
}

/// Pasted documents go past the 64 KiB of every other body: the kb step
/// takes up to `--max-documents-body-bytes` (about 23 MiB), and 413 past it.
#[tokio::test]
async fn the_kb_step_takes_documents_past_the_ordinary_body_limit() {
    let (mut config, dir) = temp_config();
    config.max_documents_body_bytes = 1024 * 1024;
    let mut server = TestServer::start(config, dir).await;
    let s = completable_session(&server).await;
    // Five texts of 150,000 characters: 750 KB.
    let text = "Ouvert du mardi au samedi. ".repeat(150_000 / 27);
    let docs: Vec<Value> = (0..5)
        .map(|i| json!({"title": format!("Page {i}"), "content": format!("{i} {text}")}))
        .collect();
    let body = json!({"method": "documents", "documents": docs}).to_string();
    assert!(body.len() > 700_000 && body.len() < 1024 * 1024);
    let saved = server.post(&session_path(&s, "kb"), &body).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    // The same size on another route is over its 64 KiB.
    let other = server.post(&session_path(&s, "business"), &body).await;
    assert_eq!(
        (other.status, other.body.as_str()),
        (
            413,
            r#"{"success":false,"error":"request body is larger than the limit of 65536 bytes","code":"payload_too_large"}"#
        )
    );
    // Past the documents' limit, 413 with that limit.
    let big = json!({"method": "documents",
                     "documents": [{"title": "Grand", "content": "x".repeat(1_100_000)}]})
    .to_string();
    let refused = server.post(&session_path(&s, "kb"), &big).await;
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (
            413,
            r#"{"success":false,"error":"request body is larger than the limit of 1048576 bytes","code":"payload_too_large"}"#
        )
    );
    server.stop().await;
}

/// By default the kb step takes the largest valid documents even when every
/// character comes `\u`-escaped, as Python's `json.dumps` writes French
/// text by default: twenty of 200,000 characters, 24 MB on the wire.
#[tokio::test]
async fn the_default_limit_takes_the_largest_documents_written_with_escapes() {
    let (config, dir) = temp_config();
    assert_eq!(
        config.max_documents_body_bytes,
        onboarding::MAX_DOCUMENTS_BODY_BYTES
    );
    let mut server = TestServer::start(config, dir).await;
    let s = completable_session(&server).await;
    let title = r"\u00c9".repeat(200);
    let content = r"\u00e9".repeat(200_000);
    let docs: Vec<String> = (0..20)
        .map(|_| format!(r#"{{"title":"{title}","content":"{content}"}}"#))
        .collect();
    let body = format!(
        r#"{{"method":"documents","documents":[{}]}}"#,
        docs.join(",")
    );
    // 20 × 1,200,000 + 1,200 escaped characters, 20 × 25 bytes of each
    // document's JSON, 19 commas and 37 around them.
    assert_eq!(body.len(), 24_024_000 + 20 * 25 + 19 + 37);
    assert!(body.len() <= onboarding::MAX_DOCUMENTS_BODY_BYTES);
    let saved = server.post(&session_path(&s, "kb"), &body).await;
    assert_eq!(
        (saved.status, saved.json()),
        (
            200,
            json!({"success": true, "session_id": s, "step": "kb",
                     "current_step": 5, "progress_percentage": 83})
        )
    );
    // Completion stores the twenty, the same text under the same title
    // twenty times: each item is a document of its own, of 167 chunks
    // (200,000 characters with no space, cut every 1,200).
    let done = server.post(&session_path(&s, "complete"), "{}").await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(
        done.json()["synced"]["knowledge_base"]["documents"],
        json!({"documents_stored": 20, "chunks": 20 * 167})
    );
    let kb = server.get(&session_path(&s, "kb")).await.json();
    let ids: Vec<i64> = kb["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["document_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..=20).collect::<Vec<i64>>());
    server.stop().await;
}

/// A database as version 12 of the library left it, at `path`: four
/// tenants' 72 pasted documents, each stored by an older chunker and
/// analysis (one chunk of its whole text, indexed as "x"). Answers every
/// chunk as storing the documents now makes it: document, place, heading,
/// text and index entry.
fn stored_by_an_older_library(path: &std::path::Path) -> Vec<Vec<String>> {
    let conn = rusqlite::Connection::open(path).unwrap();
    onboarding::register(&conn).unwrap();
    conn.query_row("SELECT onboarding_migrate()", [], |_| Ok(()))
        .unwrap();
    let call = |sql: &str, args: &[&str]| -> Value {
        let text: String = conn
            .query_row(sql, rusqlite::params_from_iter(args), |r| r.get(0))
            .unwrap();
        serde_json::from_str(&text).unwrap()
    };
    for tenant in 0..4 {
        let s = call("SELECT onboarding_create('{}')", &[])["session_id"]
            .as_str()
            .unwrap()
            .to_string();
        let business = json!({"company_name": format!("Salon {tenant}"), "industry": "Coiffure",
                              "phone": format!("06 12 34 56 7{tenant}"),
                              "email": format!("salon{tenant}@exemple.fr")});
        let documents: Vec<Value> = (0..18)
            .map(|n| {
                let section = format!(
                    "## Prestation {n}\n\nCoupe, couleur et soin du salon {tenant}, sur rendez-vous \
                     du mardi au samedi. Produits naturels et conseils de l'équipe pour l'été.\n\n"
                );
                json!({"title": format!("Fiche {n}"), "content": section.repeat(1 + n % 4)})
            })
            .collect();
        for (step, payload) in [
            ("business", business),
            ("vapi", serde_json::from_str(VAPI).unwrap()),
            ("kb", json!({"method": "documents", "documents": documents})),
        ] {
            call(
                "SELECT onboarding_step(?1, ?2, ?3)",
                &[&s, step, &payload.to_string()],
            );
        }
        assert_eq!(
            call("SELECT onboarding_complete(?1)", &[&s])["success"],
            true
        );
    }
    let now = cut_rows(&conn);
    conn.execute_batch(
        "DELETE FROM kb_chunks_index;
         DELETE FROM kb_chunks;
         INSERT INTO kb_chunks (document_id, tenant_id, position, heading, text)
             SELECT id, tenant_id, 0, title, markdown FROM kb_documents;
         INSERT INTO kb_chunks_index (rowid, terms, heading_terms, tenant)
             SELECT id, 'x', 'x', hex(tenant_id) FROM kb_chunks;
         DROP INDEX kb_documents_cut;
         ALTER TABLE kb_documents DROP COLUMN cut;
         DROP TABLE kb_recut_failures;
         DELETE FROM onboarding_schema_migrations WHERE version IN (13, 14);",
    )
    .unwrap();
    assert_eq!(
        conn.query_row("SELECT count(*) FROM kb_documents", [], |r| r
            .get::<_, i64>(0))
            .unwrap(),
        72
    );
    assert_ne!(cut_rows(&conn), now);
    now
}

/// Every chunk with its index entry, by document and place.
fn cut_rows(conn: &rusqlite::Connection) -> Vec<Vec<String>> {
    conn.prepare(
        "SELECT c.document_id, c.position, c.heading, c.text, i.terms, i.heading_terms
         FROM kb_chunks c LEFT JOIN kb_chunks_index i ON i.rowid = c.id
         ORDER BY c.document_id, c.position",
    )
    .unwrap()
    .query_map([], |r| {
        (0..6)
            .map(|i| {
                r.get::<_, rusqlite::types::Value>(i)
                    .map(|v| format!("{v:?}"))
            })
            .collect()
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// How many documents are of an older cut than the library's.
fn older_cut(conn: &rusqlite::Connection) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM kb_documents WHERE cut < ?1",
        [onboarding::kb::CUT],
        |r| r.get(0),
    )
    .unwrap()
}

/// Upgraded, a server's idle crawler cuts the documents stored by an older
/// chunker again, a share at a time, until each is as storing it now makes
/// it.
#[tokio::test]
async fn the_idle_crawler_cuts_documents_of_an_older_cut_again() {
    let (mut config, dir) = temp_config();
    let fresh = stored_by_an_older_library(&config.db_path);
    config.crawl = onboarding_server::crawl::CrawlConfig {
        workers: 1,
        idle_poll: Duration::from_millis(200),
        ..Default::default()
    };
    let mut server = TestServer::start(config, dir).await;
    let db = server.read_db();
    // Bounded: 200 polls of 50 ms; the 72 documents take well under a second.
    for _ in 0..200 {
        if db
            .query_row(
                "SELECT count(*) FROM onboarding_schema_migrations WHERE version = 14",
                [],
                |r| r.get::<_, i64>(0),
            )
            .unwrap_or(0)
            == 1
            && older_cut(&db) == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(older_cut(&db), 0);
    assert_eq!(cut_rows(&db), fresh);
    server.stop().await;
}

/// After a recut call that failed, the idle crawler waits its backoff
/// before the next, rather than failing again at every idle poll.
#[tokio::test]
async fn the_idle_crawler_waits_after_a_failed_recut_call() {
    let (mut config, dir) = temp_config();
    let fresh = stored_by_an_older_library(&config.db_path);
    let db = rusqlite::Connection::open(&config.db_path).unwrap();
    onboarding::register(&db).unwrap();
    db.query_row("SELECT onboarding_migrate()", [], |_| Ok(()))
        .unwrap();
    // The first document's cut fails, and so does recording it: each
    // call fails outright.
    db.execute_batch(
        "CREATE TRIGGER refuse_first AFTER UPDATE OF cut ON kb_documents WHEN NEW.id = 1
             BEGIN SELECT RAISE(ABORT, 'refused'); END;
         CREATE TRIGGER refuse_records BEFORE INSERT ON kb_recut_failures
             BEGIN SELECT RAISE(ABORT, 'no record'); END;",
    )
    .unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    config.crawl = onboarding_server::crawl::CrawlConfig {
        workers: 1,
        idle_poll: Duration::from_millis(20),
        // 10 s: the second of idle polls below, and the drop of the
        // triggers before it, fit in it with room for a loaded machine.
        recut_backoff: Duration::from_secs(10),
        ..Default::default()
    };
    // The server's tasks run on this thread (a current-thread runtime):
    // its log is read here, to know when the first call has failed. No
    // other test of this file logs from the idle worker's recut: tracing
    // caches a call site's interest, and one first reached on a thread
    // without a subscriber could be cached as never logged.
    let log = Log::default();
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(log.clone())
            .finish(),
    );
    let mut server = TestServer::start(config, dir).await;
    // Bounded: 1,000 polls of 10 ms.
    for _ in 0..1_000 {
        if log.text().contains("cutting stored documents again failed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        log.text()
            .matches("cutting stored documents again failed")
            .count(),
        1,
        "{}",
        log.text()
    );
    // The causes gone, a second of idle polls follows, in which a crawler
    // without a wait would call again 50 times, and cut them all.
    db.execute_batch("DROP TRIGGER refuse_first; DROP TRIGGER refuse_records")
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(older_cut(&db), 72);
    assert!(log.text().contains("retry_in_s=10"), "{}", log.text());
    // Past the wait (10 s after the failure), the next call cuts them all.
    // Bounded: 3,000 polls of 10 ms.
    for _ in 0..3000 {
        if older_cut(&db) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(older_cut(&db), 0);
    assert_eq!(cut_rows(&db), fresh);
    server.stop().await;
}

/// A log written to memory, for a subscriber on the test's thread.
#[derive(Clone, Default)]
struct Log(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;
    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

/// `onboarding-server crawl --once` cuts them all again too, and says so as
/// it goes.
#[test]
fn the_crawl_command_cuts_documents_of_an_older_cut_again_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onboarding.db");
    let fresh = stored_by_an_older_library(&path);
    let (ok, log) = output_of(
        std::process::Command::new(env!("CARGO_BIN_EXE_onboarding-server"))
            .args(["--log-level", "info", "--db"])
            .arg(&path)
            .args(["crawl", "--once"]),
    );
    assert!(ok, "{log}");
    let counters: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("cut_again="))
        .map(|l| &l[l.find("documents stored").or(l.find("cutting")).unwrap()..])
        .collect();
    assert_eq!(
        counters,
        [
            "cutting stored documents again cut_again=64 failed=0 left=8",
            "documents stored by an older chunker cut again cut_again=72 failed=0 left=0"
        ],
        "{log}"
    );
    let db = rusqlite::Connection::open(&path).unwrap();
    assert_eq!(older_cut(&db), 0);
    assert_eq!(cut_rows(&db), fresh);
}

/// A document the library cannot cut is logged and passed over: the
/// command cuts the others and succeeds. A call that fails (here the
/// library cannot even record the failure) stops the cutting, and the
/// command exits with an error naming it.
#[test]
fn the_crawl_command_passes_over_a_document_it_cannot_cut_and_fails_on_a_failed_call() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("onboarding.db");
    let fresh = stored_by_an_older_library(&path);
    let db = rusqlite::Connection::open(&path).unwrap();
    // Migrated first, for the failures' table the trigger is on.
    onboarding::register(&db).unwrap();
    db.query_row("SELECT onboarding_migrate()", [], |_| Ok(()))
        .unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse_fifth AFTER UPDATE OF cut ON kb_documents WHEN NEW.id = 5
             BEGIN SELECT RAISE(ABORT, 'refused by a trigger of the host'); END;
         CREATE TRIGGER refuse_records BEFORE INSERT ON kb_recut_failures
             BEGIN SELECT RAISE(ABORT, 'no record'); END;",
    )
    .unwrap();
    let crawl_once = || {
        output_of(
            std::process::Command::new(env!("CARGO_BIN_EXE_onboarding-server"))
                .args(["--log-level", "info", "--db"])
                .arg(&path)
                .args(["crawl", "--once"]),
        )
    };
    let counters = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains("cut_again="))
            .map(|l| l[l.find("documents stored").or(l.find("cutting")).unwrap()..].to_string())
            .collect()
    };

    let (ok, log) = crawl_once();
    assert!(!ok, "{log}");
    assert!(
        log.contains(
            "onboarding-server: error: cutting stored documents again failed: \
             onboarding_kb_recut: internal: no record (recording that cutting document 5 \
             again failed: internal: refused by a trigger of the host)"
        ),
        "{log}"
    );
    assert_eq!(
        counters(&log),
        ["documents stored by an older chunker cut again cut_again=4 failed=0 left=68"],
        "{log}"
    );
    assert_eq!(older_cut(&db), 68);

    db.execute_batch("DROP TRIGGER refuse_records").unwrap();
    let (ok, log) = crawl_once();
    assert!(ok, "{log}");
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("could not be cut again"))
        .collect();
    assert_eq!(warned.len(), 1, "{log}");
    for part in [
        "document=5 ",
        "error=\"internal: refused by a trigger of the host\" attempts=1 retry_at=",
    ] {
        assert!(warned[0].contains(part), "{part}: {log}");
    }
    assert_eq!(
        counters(&log),
        [
            "cutting stored documents again cut_again=63 failed=1 left=4",
            "documents stored by an older chunker cut again cut_again=67 failed=1 left=0"
        ],
        "{log}"
    );
    // The fifth keeps its older chunks; every other is as storing made it.
    assert_eq!(older_cut(&db), 1);
    assert_eq!(
        db.query_row(
            "SELECT document_id, cut, attempts, error FROM kb_recut_failures",
            [],
            |r| Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?
            ))
        )
        .unwrap(),
        (
            5,
            onboarding::kb::CUT,
            1,
            "internal: refused by a trigger of the host".to_string()
        )
    );
    let rows = cut_rows(&db);
    let of_fifth = |rows: &[Vec<String>]| -> Vec<Vec<String>> {
        rows.iter()
            .filter(|r| r[0] != "Integer(5)")
            .cloned()
            .collect()
    };
    assert_eq!(of_fifth(&rows), of_fifth(&fresh));
    assert_ne!(rows, fresh);
}
