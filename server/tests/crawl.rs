//! The crawler against the fixture site (a small French salon served on
//! 127.0.0.1:0): the whole flow over HTTP with the stored pages, the
//! skipped ones and their reasons, the counters, the fixture's own request
//! log (robots respected, one request at a time, the delay kept), search
//! quality; a JavaScript-only site; a name that resolves to a private
//! address; and the real binary killed mid-crawl, its job finished by
//! `onboarding-server crawl --db FILE --once`.

mod common;
#[path = "common/fixture.rs"]
mod fixture;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::{output_of, request, temp_config, Spawned, TestServer};
use fixture::Fixture;
use onboarding::kb::AllowList;
use onboarding_server::crawl::fetch::Limits;
use onboarding_server::crawl::CrawlConfig;
use rusqlite::Connection;
use serde_json::{json, Value};

/// The contract's limits, with a whole-response limit the slow page exceeds
/// sooner (the politeness delay stays the contract's 1 s), and an
/// operator's contact in the User-Agent (`--crawl-contact`).
fn crawl_config(fixture: &Fixture) -> CrawlConfig {
    CrawlConfig {
        workers: 1,
        user_agent: onboarding_server::crawl::user_agent(Some("mailto:robot@exemple.fr")),
        allow: AllowList::parse(&[fixture.addr.to_string()]).unwrap(),
        lease_seconds: 30,
        idle_poll: Duration::from_millis(200),
        // 5 s: a page of the fixture, on loopback, is never near it but
        // for a machine stalled by the other tests (2 s was close to that).
        limits: Limits {
            response: Duration::from_secs(5),
            ..Limits::default()
        },
        resolve_overrides: HashMap::from([(
            "prive.test".to_string(),
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        )]),
        ..CrawlConfig::default()
    }
}

/// A server crawling `site` with jobs limited to `job_time`.
async fn server_with_job_time(site: &Fixture, job_time: Duration) -> TestServer {
    server_with_limits(site, |limits| Limits { job_time, ..limits }).await
}

/// A server crawling `site` with [`crawl_config`]'s limits as `change`
/// makes them.
async fn server_with_limits(site: &Fixture, change: impl FnOnce(Limits) -> Limits) -> TestServer {
    let (mut config, dir) = temp_config();
    let crawl = crawl_config(site);
    config.crawl = CrawlConfig {
        limits: change(crawl.limits.clone()),
        ..crawl
    };
    TestServer::start(config, dir).await
}

/// The fixture's 600-character title as stored: its first 500 characters.
fn long_title() -> String {
    format!("{}Sa", "Salon ".repeat(83))
}

const BUSINESS: &str = r#"{"company_name":"Salon Léa","industry":"Coiffure","phone":"04 78 12 34 56","email":"bonjour@salon-lea.fr"}"#;

/// Questions as callers ask them, and the page whose chunk answers.
const QUESTIONS: [(&str, &str); 16] = [
    ("vous êtes ouverts le samedi ?", "/horaires"),
    ("c'est combien une coupe homme ?", "/tarifs"),
    ("où est-ce que vous êtes ?", "/contact"),
    ("vous êtes ouverts le lundi ?", "/horaires"),
    ("je peux me garer près du salon ?", "/contact"),
    ("vous prenez la carte bancaire ?", "/tarifs"),
    ("combien coûte une coupe pour un enfant ?", "/tarifs"),
    ("vous faites les balayages ?", "/services"),
    ("c'est quoi votre numéro de téléphone ?", "/contact"),
    ("comment je fais pour prendre rendez-vous ?", "/contact"),
    ("vous faites la barbe ?", "/services"),
    ("vous fermez en août ?", "/horaires"),
    ("je peux annuler mon rendez-vous ?", "/contact"),
    ("qui est le barbier ?", "/equipe"),
    ("vous faites l'épilation des sourcils ?", "/accents"),
    ("vous utilisez des produits bio ?", "/services"),
];

async fn wait_for_job(server: &TestServer, session: &str) -> Value {
    // Bounded: four minutes at most, far above the fixture's crawl.
    for _ in 0..480 {
        let kb = server
            .get(&format!("/api/v1/onboarding/session/{session}/kb"))
            .await;
        let body: Value = serde_json::from_str(&kb.body).unwrap();
        if matches!(body["job"]["status"].as_str(), Some("done" | "failed")) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the crawl job never ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixture_site_over_http_crawled_then_searched_in_french() {
    let site = Fixture::start(false).await;
    let (mut config, dir) = temp_config();
    config.crawl = crawl_config(&site);
    let mut server = TestServer::start(config, dir).await;
    let created: Value =
        serde_json::from_str(&server.post("/api/v1/onboarding/session", "{}").await.body).unwrap();
    let s = created["session_id"].as_str().unwrap().to_string();
    let path = |step: &str| format!("/api/v1/onboarding/session/{s}/{step}");
    let kb = json!({"method": "website", "crawl_url": site.url("/")}).to_string();
    for (step, body) in [
        ("business", BUSINESS),
        ("channels", r#"{"channels":["sms"]}"#),
        ("kb", &kb),
    ] {
        assert_eq!(server.post(&path(step), body).await.status, 200, "{step}");
    }
    let started = Instant::now();
    assert_eq!(server.post(&path("complete"), "{}").await.status, 200);
    let kb = wait_for_job(&server, &s).await;
    println!("fixture crawl: {:.1} s", started.elapsed().as_secs_f64());

    let base = site.url("");
    let documents: Vec<(String, String)> = kb["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["url"].as_str().unwrap().replace(&base, ""),
                d["title"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let long_title = long_title();
    let expected_documents = [
        ("/", "Accueil – Salon Léa"),
        ("/", "Informations pratiques"),
        ("/equipe", "L'équipe – Salon Léa"),
        ("/tarifs", "Tarifs – Salon Léa"),
        ("/services", "Services – Salon Léa"),
        ("/horaires", "Horaires – Salon Léa"),
        ("/contact", "Contact – Salon Léa"),
        ("/occupee", "Réservation – Salon Léa"),
        ("/accents", "Épilation – Salon Léa"),
        ("/occupee-date", "Offres – Salon Léa"),
        ("/horaires-ete", "Horaires d'été – Salon Léa"),
        ("/soins", "Soins – Salon Léa"),
        ("/titre-long", long_title.as_str()),
    ];
    let expected: Vec<(String, String)> = expected_documents
        .iter()
        .map(|(u, t)| (u.to_string(), t.to_string()))
        .collect();
    assert_eq!(documents, expected);
    let not_stored: Vec<(String, String, String)> = kb["pages_not_stored"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["url"].as_str().unwrap().replace(&base, ""),
                p["status"].as_str().unwrap().to_string(),
                p["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected_skips = [
        ("/ancienne-page", "skipped", "redirected"),
        ("/boucle", "skipped", "redirect_loop"),
        ("/vers-prive", "skipped", "private_address"),
        // Another host's name: off-site, never looked up (it resolves to
        // a private address here).
        ("/vers-nom-prive", "skipped", "redirect_off_site"),
        ("/absente", "failed", "http_404"),
        ("/erreur", "failed", "http_500"),
        ("/noindex-page", "skipped", "noindex"),
        ("/lent", "failed", "timeout"),
        ("/enorme", "skipped", "too_large"),
        ("/plaquette.pdf", "skipped", "unsupported_type"),
        // Linked by the home page; the sitemap's entry for it is no page.
        ("/prive/admin", "skipped", "robots_disallowed"),
        ("/vers-admin", "skipped", "robots_disallowed"),
        ("/x-robots", "skipped", "noindex"),
        ("/adresse-longue", "failed", "report_refused"),
    ];
    let expected: Vec<(String, String, String)> = expected_skips
        .iter()
        .map(|(u, s, r)| (u.to_string(), s.to_string(), r.to_string()))
        .collect();
    assert_eq!(not_stored, expected);
    // Extraction: the price and hours tables kept, the windows-1252 page
    // decoded, the footer stored once, the cookie banner and menu gone.
    let db = Connection::open(&server.db_path).unwrap();
    let markdown = |url: &str| -> String {
        db.query_row(
            "SELECT markdown FROM kb_documents WHERE url = ?1 AND title NOT LIKE 'Informations%'",
            [site.url(url)],
            |r| r.get(0),
        )
        .unwrap()
    };
    // A Markdown table row holding both cells.
    let has_row = |md: &str, a: &str, b: &str| {
        md.lines()
            .any(|l| l.starts_with("| ") && l.contains(a) && l.contains(b))
    };
    assert!(
        has_row(&markdown("/tarifs"), "| Coupe homme ", "| 25 € "),
        "{}",
        markdown("/tarifs")
    );
    assert!(
        has_row(&markdown("/horaires"), "| Samedi ", "| 8h30 – 17h00 "),
        "{}",
        markdown("/horaires")
    );
    assert!(
        markdown("/accents").contains("Épilation à la cire tiède – sourcils"),
        "{}",
        markdown("/accents")
    );
    assert!(!markdown("/").contains("cookies") && !markdown("/").contains("Accueil Services"));
    let footer: (i64, String) = db
        .query_row(
            "SELECT count(*), markdown FROM kb_documents WHERE title = 'Informations pratiques'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(footer, (1, "## Salon Léa\n\n12 rue des Lilas, 69003 Lyon\n\nTéléphone : 04 78 12 34 56\n\nDu mardi au samedi, 9h – 19h".to_string()));
    let job = &kb["job"];
    assert_eq!(
        [
            &job["status"],
            &job["error_code"],
            &job["attempts"],
            &job["pages_found"],
            &job["pages_stored"],
            &job["pages_skipped"],
            &job["pages_failed"]
        ],
        [
            &json!("done"),
            &json!(null),
            &json!(1),
            &json!(26),
            &json!(12),
            &json!(10),
            &json!(4)
        ]
    );

    // The original's route answers the same body.
    let structure = server
        .get(&format!("/api/v1/kb/structure?session_id={s}"))
        .await;
    assert_eq!(serde_json::from_str::<Value>(&structure.body).unwrap(), kb);

    // The fixture's own log: robots first, never /prive, one request at a
    // time, at least a second apart, the product's user agent with the
    // operator's contact.
    let log = site.log();
    assert_eq!(log[0].path, "/robots.txt");
    assert!(log.iter().all(|r| !r.path.starts_with("/prive")), "{log:?}");
    assert!(log.iter().all(|r| r.in_flight == 1), "{log:?}");
    assert!(
        log.windows(2)
            .all(|w| w[1].at.duration_since(w[0].at) >= Duration::from_secs(1)),
        "{log:?}"
    );
    let user_agent = format!(
        "onboarding-kb-crawler/{} (+mailto:robot@exemple.fr)",
        env!("CARGO_PKG_VERSION")
    );
    assert!(log.iter().all(|r| r.user_agent == user_agent), "{log:?}");
    assert_eq!(log.iter().filter(|r| r.path == "/occupee").count(), 2);
    // Retry-After as a date is honoured: the retry comes after it.
    let dated: Vec<Instant> = log
        .iter()
        .filter(|r| r.path == "/occupee-date")
        .map(|r| r.at)
        .collect();
    assert_eq!(dated.len(), 2, "{log:?}");
    assert!(dated[1].duration_since(dated[0]) >= Duration::from_secs(1));
    // The page known without its trailing slash is asked with it too.
    let soins: Vec<&str> = log
        .iter()
        .filter(|r| r.path.starts_with("/soins"))
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(soins, ["/soins", "/soins/"]);

    // Search: the table of questions and the rank of the answering page.
    let mut in_top_3 = 0;
    println!("| question | expected page | rank |\n|---|---|---|");
    for (question, page) in QUESTIONS {
        let q: String = url::form_urlencoded::byte_serialize(question.as_bytes()).collect();
        let found = server
            .get(&format!(
                "/api/v1/onboarding/session/{s}/kb/search?q={q}&limit=5"
            ))
            .await;
        assert_eq!(found.status, 200);
        let body: Value = serde_json::from_str(&found.body).unwrap();
        let rank = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .position(|r| r["url"].as_str() == Some(&site.url(page)));
        if rank.is_some_and(|r| r < 3) {
            in_top_3 += 1;
        }
        println!(
            "| {question} | {page} | {} |",
            rank.map_or("-".to_string(), |r| (r + 1).to_string())
        );
    }
    println!("{in_top_3} of {} in the top 3", QUESTIONS.len());
    // The contract asks at least 14 of 15; this fixture gets all of them.
    assert!(in_top_3 >= 15, "{in_top_3} of {}", QUESTIONS.len());
    server.stop().await;
}

/// Saves the steps a website session needs (the business with `email`)
/// and completes it: the crawl job is queued. Answers the session id.
async fn completed_website_session(server: &TestServer, email: &str, crawl_url: &str) -> String {
    let created: Value =
        serde_json::from_str(&server.post("/api/v1/onboarding/session", "{}").await.body).unwrap();
    let s = created["session_id"].as_str().unwrap().to_string();
    let kb = json!({"method": "website", "crawl_url": crawl_url}).to_string();
    let mut business: Value = serde_json::from_str(BUSINESS).unwrap();
    business["email"] = json!(email);
    let business = business.to_string();
    for (step, body) in [
        ("business", business.as_str()),
        ("channels", r#"{"channels":["sms"]}"#),
        ("kb", &kb),
        ("complete", "{}"),
    ] {
        let reply = server
            .post(&format!("/api/v1/onboarding/session/{s}/{step}"), body)
            .await;
        assert_eq!(reply.status, 200, "{step}: {}", reply.body);
    }
    s
}

/// The job's outcome: status, error code, attempts and the four counters.
fn outcome(kb: &Value) -> Value {
    let job = &kb["job"];
    json!([
        job["status"],
        job["error_code"],
        job["attempts"],
        job["pages_found"],
        job["pages_stored"],
        job["pages_skipped"],
        job["pages_failed"]
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_only_site_and_a_name_resolving_to_a_private_address() {
    let shell = Fixture::start(true).await;
    let (mut config, dir) = temp_config();
    config.crawl = crawl_config(&shell);
    let mut server = TestServer::start(config, dir).await;

    // Every page is an empty shell filled by a script: nothing to store,
    // and the job says why.
    let s = completed_website_session(&server, "js@salon-lea.fr", &shell.url("/")).await;
    let kb = wait_for_job(&server, &s).await;
    assert_eq!(
        outcome(&kb),
        json!(["failed", "js_required", 1, 1, 0, 1, 0])
    );
    assert_eq!(kb["documents"], json!([]));
    assert_eq!(
        kb["pages_not_stored"],
        json!([{"url": shell.url("/"), "depth": 0, "status": "skipped", "reason": "js_required"}])
    );
    let paths: Vec<String> = shell.log().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/robots.txt", "/sitemap.xml", "/"]);

    // A public-looking name (the kb step accepts it) that resolves to
    // 127.0.0.1: the whole job is refused before any connection.
    let s = completed_website_session(&server, "prive@salon-lea.fr", "http://prive.test/").await;
    let kb = wait_for_job(&server, &s).await;
    assert_eq!(
        outcome(&kb),
        json!(["failed", "private_address", 1, 1, 0, 1, 0])
    );
    assert_eq!(kb["job"]["url"], "http://prive.test/");
    assert_eq!(kb["documents"], json!([]));
    // The start page was never fetched: the job ended before it.
    assert_eq!(
        kb["pages_not_stored"],
        json!([{"url": "http://prive.test/", "depth": 0, "status": "skipped", "reason": "not_fetched"}])
    );
    // The shell fixture saw nothing more: the private address was never
    // connected to (it is where the shell listens, on another port).
    assert_eq!(shell.log().len(), 3);

    // A site whose one page is too large: the job says so.
    let s = completed_website_session(&server, "enorme@salon-lea.fr", &shell.url("/enorme")).await;
    let kb = wait_for_job(&server, &s).await;
    assert_eq!(outcome(&kb), json!(["failed", "too_large", 1, 1, 0, 1, 0]));
    server.stop().await;
}

/// The fixture's log holds `n` requests, one at a time, each at least a
/// second after the one before.
fn one_at_a_time_a_second_apart(log: &[fixture::Logged], n: usize) {
    assert_eq!(log.len(), n, "{log:?}");
    assert!(log.iter().all(|r| r.in_flight == 1), "{log:?}");
    assert!(
        log.windows(2)
            .all(|w| w[1].at.duration_since(w[0].at) >= Duration::from_secs(1)),
        "{log:?}"
    );
}

/// Two sessions of one business crawl the same site on two workers: the
/// site still gets one request at a time, a second apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_on_one_site_take_turns() {
    let shell = Fixture::start(true).await;
    let (mut config, dir) = temp_config();
    config.crawl = CrawlConfig {
        workers: 2,
        ..crawl_config(&shell)
    };
    let mut server = TestServer::start(config, dir).await;
    let a = completed_website_session(&server, "a@salon-lea.fr", &shell.url("/")).await;
    let b = completed_website_session(&server, "b@salon-lea.fr", &shell.url("/")).await;
    for s in [&a, &b] {
        assert_eq!(wait_for_job(&server, s).await["job"]["status"], "failed");
    }
    one_at_a_time_a_second_apart(&shell.log(), 6);
    server.stop().await;
}

/// Two crawler processes on one file (`onboarding-server crawl`, which
/// shares no memory with another): two sessions of one business crawl the
/// same site at once, one job in each process. The site still gets one
/// request at a time, a second apart: the site's turn lives in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_crawler_processes_on_one_site_take_turns() {
    let shell = Fixture::start(true).await;
    let (mut config, dir) = temp_config();
    config.crawl = CrawlConfig {
        workers: 0,
        ..crawl_config(&shell)
    };
    let db_path = config.db_path.clone();
    let mut server = TestServer::start(config, dir).await;
    let a = completed_website_session(&server, "a@salon-lea.fr", &shell.url("/")).await;
    let b = completed_website_session(&server, "b@salon-lea.fr", &shell.url("/")).await;
    let allow = shell.addr.to_string();
    let crawl = || {
        let (db_path, allow) = (db_path.clone(), allow.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_onboarding-server"))
                .args(["--log-level", "warn", "--db"])
                .arg(&db_path)
                .args(["--crawl-allow-host", &allow])
                .args(["crawl", "--once"])
                .status()
                .unwrap()
        })
    };
    let (one, two) = tokio::join!(crawl(), crawl());
    assert!(one.unwrap().success() && two.unwrap().success());
    let db = Connection::open(&db_path).unwrap();
    let jobs: Vec<(String, i64, String)> = {
        let mut stmt = db
            .prepare("SELECT status, attempts, started_at FROM kb_crawl_jobs ORDER BY id")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        rows.map(Result::unwrap).collect()
    };
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert!(
        jobs.iter().all(|j| (j.0.as_str(), j.1) == ("failed", 1)),
        "{jobs:?}"
    );
    // Both jobs ran at once, one in each process: started less than a
    // second apart, while the site's six requests took five seconds at least.
    let started: Vec<i64> = jobs
        .iter()
        .map(|j| {
            db.query_row(
                "SELECT CAST(unixepoch(?1, 'subsec') * 1000 AS INTEGER)",
                [&j.2],
                |r| r.get(0),
            )
            .unwrap()
        })
        .collect();
    assert!((started[0] - started[1]).abs() < 1000, "{jobs:?}");
    one_at_a_time_a_second_apart(&shell.log(), 6);
    // The turn was given back: nobody holds the site.
    let holder: Option<String> = db
        .query_row("SELECT holder FROM kb_site_turns", [], |r| r.get(0))
        .unwrap();
    assert_eq!(holder, None);
    for s in [&a, &b] {
        assert_eq!(
            wait_for_job(&server, s).await["job"]["error_code"],
            "js_required"
        );
    }
    server.stop().await;
}

/// The server stopped (SIGTERM's path) while its crawler waits for a page
/// (`/lent` answers after 8 s): the worker is aborted mid-request, the
/// turn of the site it held is given back, so that another process's
/// crawler need not wait out the hold, and so is the job: queued at once,
/// the attempt it was on not counted, its stored pages kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_mid_request_gives_the_sites_turn_and_the_job_back() {
    let site = Fixture::start(false).await;
    let (mut config, dir) = temp_config();
    config.crawl = CrawlConfig {
        limits: Limits {
            response: Duration::from_secs(10),
            ..Limits::default()
        },
        ..crawl_config(&site)
    };
    let db_path = config.db_path.clone();
    let mut server = TestServer::start(config, dir).await;
    completed_website_session(&server, "a@salon-lea.fr", &site.url("/")).await;
    // Bounded: the fixture's whole crawl takes about 40 s.
    for _ in 0..1200 {
        if site.log().iter().any(|r| r.path == "/lent") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        site.log().iter().any(|r| r.path == "/lent"),
        "{:?}",
        site.log()
    );
    let db = Connection::open(&db_path).unwrap();
    let holder = |db: &Connection| -> Option<String> {
        db.query_row("SELECT holder FROM kb_site_turns", [], |r| r.get(0))
            .unwrap()
    };
    assert!(holder(&db).is_some(), "the turn is held during the request");
    // The job's crawling time until now, by the file's clock: what it
    // reports at the stop is at least that (before, its last page's
    // report, a second or more earlier).
    let crawled_ms: i64 = db
        .query_row(
            "SELECT CAST(round((julianday('now') - julianday(started_at)) * 86400000) AS INTEGER)
             FROM kb_crawl_jobs",
            [],
            |r| r.get(0),
        )
        .unwrap();
    server.stop().await;
    assert_eq!(holder(&db), None);
    let reported: i64 = db
        .query_row("SELECT crawl_ms FROM kb_crawl_jobs", [], |r| r.get(0))
        .unwrap();
    assert!(reported >= crawled_ms - 300, "{reported} < {crawled_ms}");
    let job = job_row(&db);
    assert_eq!(
        [&job[0], &job[1], &job[2], &job[3]],
        [&json!("queued"), &json!(0), &json!(false), &json!(null)],
        "{job}"
    );
    assert!(job[4].as_i64().unwrap() > 0, "{job}");
}

/// Another process holds the site's turn (a row of `kb_site_turns`, as a
/// crawler mid-request leaves it) past the job's time limit: the crawler
/// waits, asks the site nothing, and gives up at the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_whose_turn_another_process_holds_is_never_asked() {
    let shell = Fixture::start(true).await;
    let mut server = server_with_job_time(&shell, Duration::from_secs(3)).await;
    // Served once: the database is migrated.
    assert_eq!(server.get("/healthz").await.status, 200);
    let db = Connection::open(&server.db_path).unwrap();
    db.execute(
        "INSERT INTO kb_site_turns (site, holder, held_until, next_at, updated_at)
         VALUES (?1, 'other-process', '2999-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z',
                 '2026-01-01T00:00:00.000Z')",
        [shell.addr.to_string()],
    )
    .unwrap();
    let s = completed_website_session(&server, "a@salon-lea.fr", &shell.url("/")).await;
    let mut job = Value::Null;
    // Bounded: the job's 3 s limit, then its finish.
    for _ in 0..200 {
        let kb = server
            .get(&format!("/api/v1/onboarding/session/{s}/kb"))
            .await;
        job = serde_json::from_str::<Value>(&kb.body).unwrap()["job"].clone();
        if job["attempts"] == 1 && job["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // robots.txt never came: the job goes back to the queue for its next
    // attempt, as for any robots.txt not read.
    assert_eq!(
        [
            &job["status"],
            &job["attempts"],
            &job["error_code"],
            &job["pages_found"],
            &job["pages_stored"],
            &job["lease_expires_at"]
        ],
        [
            &json!("queued"),
            &json!(1),
            &json!("robots_unavailable"),
            &json!(1),
            &json!(0),
            &Value::Null
        ],
        "{job}"
    );
    assert!(shell.log().is_empty(), "{:?}", shell.log());
    // The other process's turn is untouched.
    let holder: String = db
        .query_row("SELECT holder FROM kb_site_turns", [], |r| r.get(0))
        .unwrap();
    assert_eq!(holder, "other-process");
    server.stop().await;
}

/// One row of the database file as JSON (the tests' reading connection).
fn job_row(db: &Connection) -> Value {
    db.query_row(
        "SELECT status, attempts, lease_owner IS NOT NULL, lease_expires_at, pages_stored
         FROM kb_crawl_jobs",
        [],
        |r| {
            Ok(json!([
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, bool>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, i64>(4)?
            ]))
        },
    )
    .unwrap()
}

/// The real binary is killed (SIGKILL) mid-crawl, its job left `running`
/// with a lease; `onboarding-server crawl --db FILE --once` on the same file
/// waits out nothing but that lease, takes the job over, resumes its
/// frontier and finishes it: every page stored once, no job running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_crawl_and_the_standalone_crawler_finishes_the_job() {
    let site = Fixture::start(false).await;
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("onboarding.db");
    let allow = site.addr.to_string();
    // A lease of 20 s, renewed every third of it: 13 s at least left at
    // the kill for the first standalone crawler to start and find it held
    // (with 10 s, a loaded machine's slow start could reach its end).
    let flags = [
        "--crawl-workers",
        "1",
        "--crawl-allow-host",
        &allow,
        "--crawl-lease-secs",
        "20",
    ];
    let mut server = Spawned::start_on(&db_path, &flags);
    let addr = server.addr;
    let created = request(addr, "POST", "/api/v1/onboarding/session", &[], b"{}").await;
    let s = created.json()["session_id"].as_str().unwrap().to_string();
    let kb = json!({"method": "website", "crawl_url": site.url("/")}).to_string();
    for (step, body) in [
        ("business", BUSINESS),
        ("channels", r#"{"channels":["sms"]}"#),
        ("kb", &kb),
        ("complete", "{}"),
    ] {
        let path = format!("/api/v1/onboarding/session/{s}/{step}");
        let reply = request(addr, "POST", &path, &[], body.as_bytes()).await;
        assert_eq!(reply.status, 200, "{step}: {}", reply.body);
    }

    // Killed once three pages are stored: mid-crawl, mid-request most likely.
    let db = Connection::open(&db_path).unwrap();
    for _ in 0..600 {
        if job_row(&db)[4].as_i64().unwrap() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let killed = job_row(&db);
    assert_eq!(
        (&killed[0], &killed[1], &killed[2]),
        (&json!("running"), &json!(1), &json!(true))
    );
    let stored_when_killed = killed[4].as_i64().unwrap();
    assert!((3..19).contains(&stored_when_killed), "{killed}");

    // The standalone crawler, started at once: its first claim comes before
    // the lease runs out, so it finds nothing due and exits; started again
    // after the lease, it takes the job over.
    let crawl = |db_path: std::path::PathBuf, allow: String| {
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let status = std::process::Command::new(env!("CARGO_BIN_EXE_onboarding-server"))
                .args(["--log-level", "warn", "--db"])
                .arg(&db_path)
                .args(["--crawl-allow-host", &allow, "--crawl-lease-secs", "10"])
                .args(["crawl", "--once"])
                .status()
                .unwrap();
            assert!(status.success());
            started.elapsed()
        })
    };
    crawl(db_path.clone(), allow.clone()).await.unwrap();
    assert_eq!(job_row(&db), killed);
    let expires: String = killed[3].as_str().unwrap().to_string();
    let now = |db: &Connection| -> String {
        // The library's timestamp format, from SQLite's clock.
        db.query_row("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')", [], |r| {
            r.get(0)
        })
        .unwrap()
    };
    while now(&db) <= expires {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = crawl(db_path.clone(), allow.clone()).await.unwrap();
    println!(
        "the rest of the crawl after the takeover: {:.1} s",
        took.as_secs_f64()
    );

    let finished = job_row(&db);
    assert_eq!(
        (&finished[0], &finished[1], &finished[2], &finished[3]),
        (&json!("done"), &json!(2), &json!(false), &json!(null))
    );
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        count("SELECT count(*) FROM kb_crawl_jobs WHERE status = 'running'"),
        0
    );
    // Every page once: no URL stored twice, no text stored twice, each
    // page of the frontier reported once.
    assert_eq!(
        count("SELECT count(*) FROM (SELECT url FROM kb_documents WHERE url IS NOT NULL GROUP BY url, title HAVING count(*) > 1)"),
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM (SELECT content_hash FROM kb_documents GROUP BY content_hash HAVING count(*) > 1)"),
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM (SELECT url FROM kb_crawl_pages GROUP BY job_id, url HAVING count(*) > 1)"),
        0
    );
    assert_eq!(
        count("SELECT count(*) FROM kb_crawl_pages WHERE status = 'pending'"),
        0
    );
    // The documents an uninterrupted crawl stores.
    let base = site.url("");
    let mut documents: Vec<(String, String)> = {
        let mut stmt = db
            .prepare("SELECT coalesce(url, ''), title FROM kb_documents")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .unwrap();
        rows.map(|r| {
            let (u, t) = r.unwrap();
            (u.replace(&base, ""), t)
        })
        .collect()
    };
    documents.sort();
    let long_title = long_title();
    let mut expected: Vec<(String, String)> = [
        ("/", "Accueil – Salon Léa"),
        ("/", "Informations pratiques"),
        ("/accents", "Épilation – Salon Léa"),
        ("/contact", "Contact – Salon Léa"),
        ("/equipe", "L'équipe – Salon Léa"),
        ("/horaires", "Horaires – Salon Léa"),
        ("/occupee", "Réservation – Salon Léa"),
        ("/services", "Services – Salon Léa"),
        ("/tarifs", "Tarifs – Salon Léa"),
        ("/occupee-date", "Offres – Salon Léa"),
        ("/horaires-ete", "Horaires d'été – Salon Léa"),
        ("/soins", "Soins – Salon Léa"),
        ("/titre-long", long_title.as_str()),
    ]
    .iter()
    .map(|(u, t)| (u.to_string(), t.to_string()))
    .collect();
    expected.sort();
    assert_eq!(documents, expected);
    let counters: Value = db
        .query_row(
            "SELECT pages_found, pages_stored, pages_skipped, pages_failed, error_code FROM kb_crawl_jobs",
            [],
            |r| {
                Ok(json!([r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?,
                          r.get::<_, i64>(3)?, r.get::<_, Option<String>>(4)?]))
            },
        )
        .unwrap();
    assert_eq!(counters, json!([26, 12, 11, 3, null]));
    // The pages not stored, with the binary's own limits (the slow page
    // arrives: a script and two words). The name /vers-nom-prive redirects
    // to, which the binary's resolver knows not, is off-site: never looked
    // up, so no DNS failure.
    let not_stored: Vec<(String, String, String)> = {
        let mut stmt = db
            .prepare("SELECT url, status, reason FROM kb_crawl_pages WHERE status <> 'stored' ORDER BY id")
            .unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        rows.map(|r| {
            let (u, s, why) = r.unwrap();
            (u.replace(&base, ""), s, why)
        })
        .collect()
    };
    let expected: Vec<(String, String, String)> = [
        ("/ancienne-page", "skipped", "redirected"),
        ("/boucle", "skipped", "redirect_loop"),
        ("/vers-prive", "skipped", "private_address"),
        ("/vers-nom-prive", "skipped", "redirect_off_site"),
        ("/absente", "failed", "http_404"),
        ("/erreur", "failed", "http_500"),
        ("/noindex-page", "skipped", "noindex"),
        ("/lent", "skipped", "js_required"),
        ("/enorme", "skipped", "too_large"),
        ("/plaquette.pdf", "skipped", "unsupported_type"),
        // Linked by the home page; the sitemap's entry for it is no page.
        ("/prive/admin", "skipped", "robots_disallowed"),
        ("/vers-admin", "skipped", "robots_disallowed"),
        ("/x-robots", "skipped", "noindex"),
        ("/adresse-longue", "failed", "report_refused"),
    ]
    .iter()
    .map(|(u, s, r)| (u.to_string(), s.to_string(), r.to_string()))
    .collect();
    assert_eq!(not_stored, expected);
}

/// The job's time runs out while its crawler waits for the site's turn (the
/// politeness delay after the start page): the pages not asked for are
/// left `not_fetched`, as at the limit itself, and the job ends `timeout`
/// with what it stored; no page is counted failed for a request never made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_time_ends_before_the_sites_next_turn_leaves_its_pages_unfetched() {
    let site = Fixture::start(false).await;
    // robots.txt, the sitemap index, its sitemap and the start page, 4 s
    // apart, fit in 14 s with 2 s for their fetches and the writes between
    // (at 1 s and 3.5 s, half a second was left, short on a loaded
    // machine); the next page's turn, 4 s after the start page's request,
    // does not.
    let mut server = server_with_limits(&site, |limits| Limits {
        min_delay: Duration::from_secs(4),
        job_time: Duration::from_secs(14),
        ..limits
    })
    .await;
    let s = completed_website_session(&server, "a@salon-lea.fr", &site.url("/")).await;
    let kb = wait_for_job(&server, &s).await;
    assert_eq!(
        outcome(&kb),
        json!(["done", "timeout", 1, 26, 1, 25, 0]),
        "{kb}"
    );
    let paths: Vec<String> = site.log().into_iter().map(|l| l.path).collect();
    assert_eq!(
        paths,
        [
            "/robots.txt",
            "/sitemap_index.xml",
            "/sitemap-pages.xml",
            "/"
        ]
    );
    let db = Connection::open(&server.db_path).unwrap();
    let pages: Vec<(String, String, Option<String>)> = db
        .prepare("SELECT url, status, reason FROM kb_crawl_pages ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(pages[0], (site.url("/"), "stored".into(), None));
    for (url, status, reason) in &pages[1..] {
        assert_eq!(
            (status.as_str(), reason.as_deref()),
            ("skipped", Some("not_fetched")),
            "{url}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_that_takes_a_job_past_its_size_is_not_stored() {
    let site = Fixture::start(false).await;
    // The job's size: robots.txt, the two sitemaps and the start page,
    // which the crawler reads first; the next page goes past it.
    let mut job_bytes = 0;
    for path in [
        "/robots.txt",
        "/sitemap_index.xml",
        "/sitemap-pages.xml",
        "/",
    ] {
        let body = reqwest::get(site.url(path))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        job_bytes += body.len();
    }
    let (mut config, dir) = temp_config();
    let crawl = crawl_config(&site);
    config.crawl = CrawlConfig {
        limits: Limits {
            job_bytes,
            ..crawl.limits.clone()
        },
        ..crawl
    };
    let mut server = TestServer::start(config, dir).await;
    let s = completed_website_session(&server, "a@salon-lea.fr", &site.url("/")).await;
    let kb = wait_for_job(&server, &s).await;
    // Before, the page past the size was stored, and the job ended after it.
    let docs: Vec<&str> = kb["documents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| !d["depth"].is_null())
        .filter_map(|d| d["url"].as_str())
        .collect();
    assert_eq!(docs, [site.url("/")], "{kb}");
    assert_eq!(
        (
            &kb["job"]["status"],
            &kb["job"]["error_code"],
            &kb["job"]["pages_stored"]
        ),
        (&json!("done"), &json!("too_large"), &json!(1)),
        "{kb}"
    );
    assert_eq!(kb["pages_not_stored"][0]["reason"], "too_large", "{kb}");
    server.stop().await;
}

/// `/` links `/grand`, a page of 4,000 characters.
fn large_last_page(path: &str, _: usize) -> (&'static str, String, String) {
    match path {
        "/" => (
            "200 OK",
            String::new(),
            tiny_page("Accueil", "Bienvenue. <a href=\"/grand\">Nos tarifs</a>"),
        ),
        "/grand" => (
            "200 OK",
            String::new(),
            tiny_page("Tarifs", &"Une coupe homme coûte 25 euros. ".repeat(125)),
        ),
        _ => ("404 Not Found", String::new(), String::new()),
    }
}

/// The page that takes the job past its size is the last one queued: the
/// job still ends `too_large`. Before, with no page left to turn, it ended
/// `done` with no error code, as if the whole site had been read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_size_on_its_last_page_ends_too_large() {
    let (addr, asked) = tiny_site(large_last_page);
    let limits = Limits {
        // The start page fits (robots.txt and the sitemap answer 404 with
        // no body); `/grand` does not.
        job_bytes: large_last_page("/", 0).2.len() + 100,
        ..Limits::default()
    };
    let mut server = server_crawling_with(addr, 30, limits).await;
    let s =
        completed_website_session(&server, "a@salon-grand.fr", &format!("http://{addr}/")).await;
    let kb = wait_for_job(&server, &s).await;
    assert_eq!(
        outcome(&kb),
        json!(["done", "too_large", 1, 2, 1, 1, 0]),
        "{kb}"
    );
    assert_eq!(kb["pages_not_stored"][0]["reason"], "too_large", "{kb}");
    assert_eq!(asked.lock().unwrap().get("/grand"), Some(&1));
    server.stop().await;
}

/// A server without a crawler, `addr` allowed for the kb step, and a
/// completed website session on it whose job a first worker claimed for a
/// second, reported `spent` with its lease's renewal, and left (its lease
/// expired): the server, the session, the worker's connection and the job.
async fn a_job_left_by_a_worker_that_spent(
    addr: std::net::SocketAddr,
    spent: Value,
) -> (TestServer, String, Connection, i64) {
    let (mut config, dir) = temp_config();
    config.crawl.allow = AllowList::parse(&[addr.to_string()]).unwrap();
    let server = TestServer::start(config, dir).await;
    let s =
        completed_website_session(&server, "a@salon-repris.fr", &format!("http://{addr}/")).await;
    let gone = Connection::open(&server.db_path).unwrap();
    gone.busy_timeout(Duration::from_secs(5)).unwrap();
    onboarding::register(&gone).unwrap();
    let call = |sql: &str, payload: Value| -> Value {
        let answer: String = gone
            .query_row(sql, [payload.to_string()], |r| r.get(0))
            .unwrap();
        serde_json::from_str(&answer).unwrap()
    };
    let claimed = call(
        "SELECT onboarding_kb_claim(?1)",
        json!({"worker": "gone", "lease_seconds": 1}),
    );
    let job_id = claimed["job"]["id"].as_i64().unwrap();
    assert_eq!(
        (
            &claimed["job"]["bytes_fetched"],
            &claimed["job"]["crawl_ms"]
        ),
        (&json!(0), &json!(0))
    );
    let mut renew = json!({"job_id": job_id, "worker": "gone", "lease_seconds": 1});
    for (k, v) in spent.as_object().unwrap() {
        renew[k] = v.clone();
    }
    let renewed = call("SELECT onboarding_kb_renew(?1)", renew);
    assert_eq!(renewed["success"], true, "{renewed}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    (server, s, gone, job_id)
}

/// `onboarding-server crawl --once` on `db_path`, `addr` allowed.
async fn crawl_once(db_path: std::path::PathBuf, addr: std::net::SocketAddr) {
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_onboarding-server"))
            .args(["--log-level", "warn", "--db"])
            .arg(&db_path)
            .args(["--crawl-allow-host", &addr.to_string()])
            .args(["crawl", "--once"])
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(status.success());
}

/// A job whose first worker died after spending nearly all of its 20 MiB
/// (reported with its lease's renewal): the worker that takes it over goes
/// on from there, and the job ends `too_large` after the start page. Before,
/// each worker counted from zero, and a restarted crawl fetched a site's
/// whole 32 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_taken_over_goes_on_from_the_budget_its_worker_spent() {
    let (addr, asked) = tiny_site(large_last_page);
    let spent = 20 * 1024 * 1024 - 1000;
    let (mut server, s, gone, job_id) =
        a_job_left_by_a_worker_that_spent(addr, json!({"bytes": spent, "elapsed_ms": 20_000}))
            .await;
    crawl_once(server.db_path.clone(), addr).await;
    let kb = server
        .get(&format!("/api/v1/onboarding/session/{s}/kb"))
        .await
        .json();
    assert_eq!(
        outcome(&kb),
        json!(["done", "too_large", 2, 2, 1, 1, 0]),
        "{kb}"
    );
    assert_eq!(asked.lock().unwrap().get("/grand"), Some(&1));
    // The job's budget, as its second worker left it: more than the first
    // reported (the start page and `/grand`), and crawling time on top of
    // its 20 s.
    let (bytes, elapsed): (i64, i64) = gone
        .query_row(
            "SELECT bytes_fetched, crawl_ms FROM kb_crawl_jobs WHERE id = ?1",
            [job_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(bytes > spent, "{bytes}");
    assert!(elapsed > 20_000, "{elapsed}");
    server.stop().await;
}

/// A job taken over with its 3 minutes spent ends `timeout` without asking
/// the site anything (not even robots.txt), and is not retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_taken_over_with_its_time_spent_ends_without_asking_the_site() {
    let (addr, asked) = tiny_site(large_last_page);
    let (mut server, s, _gone, _) =
        a_job_left_by_a_worker_that_spent(addr, json!({"elapsed_ms": 181_000})).await;
    crawl_once(server.db_path.clone(), addr).await;
    let kb = server
        .get(&format!("/api/v1/onboarding/session/{s}/kb"))
        .await
        .json();
    assert_eq!(
        outcome(&kb),
        json!(["failed", "timeout", 2, 1, 0, 1, 0]),
        "{kb}"
    );
    assert_eq!(kb["job"]["next_attempt_at"], Value::Null, "{kb}");
    assert!(asked.lock().unwrap().is_empty());
    server.stop().await;
}

/// What a tiny site answers for a path asked for the n-th time (from 0):
/// status line, extra header lines, body.
type Answer = fn(&str, usize) -> (&'static str, String, String);

/// A page of the tiny sites.
fn tiny_page(title: &str, body: &str) -> String {
    format!(
        "<html><head><title>{title}</title></head><body><main><h1>{title}</h1>\
         <p>{body}</p></main></body></html>"
    )
}

/// A site served on loopback by `answer`, one request per connection, each
/// `{origin}` of a body replaced by `http://ADDR` (sitemaps list absolute
/// URLs), robots.txt as text and `.xml` files as XML. Answers its address
/// and how many times each path was asked.
fn tiny_site(
    answer: Answer,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<HashMap<String, usize>>>,
) {
    raw_site(move |path, n| {
        let (status, headers, body) = answer(path, n);
        (status, headers, body.into_bytes())
    })
}

/// The same for bodies of bytes (a page in another charset than UTF-8); a
/// `Content-Type` among an answer's headers replaces the site's own (text,
/// XML or HTML, each in UTF-8).
fn raw_site(
    answer: impl Fn(&str, usize) -> (&'static str, String, Vec<u8>) + Send + 'static,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<HashMap<String, usize>>>,
) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(HashMap::new()));
    let counts = std::sync::Arc::clone(&asked);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // The rest of the head, up to its empty line (bounded).
            for _ in 0..100 {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let path = line.split(' ').nth(1).unwrap_or("").to_string();
            let n = {
                let mut counts = counts.lock().unwrap();
                let n = counts.entry(path.clone()).or_insert(0);
                *n += 1;
                *n - 1
            };
            let (status, headers, body) = answer(&path, n);
            let body = with_origin(&body, &format!("http://{addr}"));
            let media_type = if path == "/robots.txt" {
                "text/plain"
            } else if path.ends_with(".xml") {
                "application/xml"
            } else {
                "text/html"
            };
            let content_type = if headers.to_ascii_lowercase().contains("content-type:") {
                String::new()
            } else {
                format!("Content-Type: {media_type}; charset=utf-8\r\n")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{content_type}{headers}\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    (addr, asked)
}

/// `body` with each `{origin}` replaced by `origin`.
fn with_origin(body: &[u8], origin: &str) -> Vec<u8> {
    let mark = b"{origin}";
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = rest.windows(mark.len()).position(|w| w == mark) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(origin.as_bytes());
        rest = &rest[at + mark.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// A server whose one crawler worker may visit `addr`, with leases of
/// `lease_seconds`.
async fn server_crawling(addr: std::net::SocketAddr, lease_seconds: i64) -> TestServer {
    server_crawling_with(addr, lease_seconds, Limits::default()).await
}

/// The same, the crawler's limits `limits`.
async fn server_crawling_with(
    addr: std::net::SocketAddr,
    lease_seconds: i64,
    limits: Limits,
) -> TestServer {
    let (mut config, dir) = temp_config();
    config.crawl = CrawlConfig {
        workers: 1,
        allow: AllowList::parse(&[addr.to_string()]).unwrap(),
        lease_seconds,
        idle_poll: Duration::from_millis(200),
        limits,
        ..CrawlConfig::default()
    };
    TestServer::start(config, dir).await
}

/// A server crawling with the contract's limits, `hosts` allowed though
/// on loopback.
async fn server_crawling_hosts(hosts: &[std::net::SocketAddr]) -> TestServer {
    let hosts: Vec<String> = hosts.iter().map(ToString::to_string).collect();
    let (mut config, dir) = temp_config();
    config.crawl = CrawlConfig {
        workers: 1,
        allow: AllowList::parse(&hosts).unwrap(),
        idle_poll: Duration::from_millis(200),
        ..CrawlConfig::default()
    };
    TestServer::start(config, dir).await
}

/// The job of session `s` once its first attempt has ended with an error
/// code (bounded: 30 s; the next attempt waits a minute at least).
async fn first_attempts_job(server: &TestServer, s: &str) -> Value {
    for _ in 0..300 {
        let kb = server
            .get(&format!("/api/v1/onboarding/session/{s}/kb"))
            .await;
        let job = serde_json::from_str::<Value>(&kb.body).unwrap()["job"].clone();
        if !job["error_code"].is_null() {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the job's first attempt never ended");
}

/// The salon's pages but robots.txt: its home page links its prices and
/// a private page, `/prive/notes` (any other path).
fn salon_with_a_private_page(path: &str) -> (&'static str, String, Vec<u8>) {
    let page = match path {
        "/" => tiny_page(
            "Accueil",
            "Bienvenue au salon. <a href=\"/tarifs\">Tarifs</a> \
             <a href=\"/prive/notes\">Notes</a>",
        ),
        "/tarifs" => tiny_page("Tarifs", "Une coupe femme coûte 45 euros."),
        _ => tiny_page("Notes", "Privé."),
    };
    ("200 OK", String::new(), page.into_bytes())
}

/// A site whose robots.txt redirects to another host's (a domain moved
/// elsewhere): the redirect is followed, as RFC 9309 asks "even across
/// authorities", and its rules hold for the site. Before, the job crawled
/// nothing: `robots_unavailable`, three times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robots_txt_redirected_to_another_host_is_followed_and_its_rules_hold() {
    let (elsewhere, asked_elsewhere) = tiny_site(|path, _| match path {
        "/robots.txt" => (
            "200 OK",
            String::new(),
            "User-agent: *\nDisallow: /prive/\n".to_string(),
        ),
        _ => ("404 Not Found", String::new(), String::new()),
    });
    let (addr, asked) = raw_site(move |path, _| match path {
        "/robots.txt" => (
            "301 Moved Permanently",
            format!("Location: http://{elsewhere}/robots.txt\r\n"),
            Vec::new(),
        ),
        _ => salon_with_a_private_page(path),
    });
    let mut server = server_crawling_hosts(&[addr, elsewhere]).await;
    let s =
        completed_website_session(&server, "a@salon-lilas.fr", &format!("http://{addr}/")).await;
    let kb = wait_for_job(&server, &s).await;
    assert_eq!(outcome(&kb), json!(["done", null, 1, 3, 2, 1, 0]), "{kb}");
    assert_eq!(
        kb["pages_not_stored"],
        json!([{"url": format!("http://{addr}/prive/notes"), "depth": 1,
                "status": "skipped", "reason": "robots_disallowed"}])
    );
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.get("/prive/notes"), None, "{asked:?}");
    assert_eq!(asked.get("/robots.txt"), Some(&1), "{asked:?}");
    let asked_elsewhere = asked_elsewhere.lock().unwrap().clone();
    assert_eq!(
        asked_elsewhere,
        HashMap::from([("/robots.txt".to_string(), 1)])
    );
    server.stop().await;
}

/// A robots.txt past a page's 2 MiB: its first 2 MiB are parsed, up to
/// their last whole line (a line cut at the limit, `Disallow: /tar`, would
/// have kept `/tarifs` out), and the rest is ignored (its `Disallow: /`).
/// RFC 9309 § 2.5 asks at least 500 KiB be parsed; refused whole, it kept
/// the site from ever being crawled (`robots_unavailable`, three times).
/// Lines ending with LF, and with CR alone, as RFC 9309 allows (cut at the
/// last LF, such a file was read as empty: everything allowed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robots_txt_past_two_mib_is_read_to_its_last_whole_line_there() {
    for eol in ["\n", "\r"] {
        a_robots_txt_past_two_mib_with_line_ends(eol).await;
    }
}

async fn a_robots_txt_past_two_mib_with_line_ends(eol: &'static str) {
    const LIMIT: usize = 2 * 1024 * 1024;
    let cut_line = format!("Disallow: /tarifs-2019{eol}");
    let mut robots = format!("User-agent: *{eol}Disallow: /prive/{eol}");
    let comment = |n: usize| format!("#{}{eol}", "x".repeat(n - 2));
    // Comments up to where the limit falls 14 bytes into `cut_line`.
    while LIMIT - 14 - robots.len() >= 200 {
        robots.push_str(&comment(100));
    }
    robots.push_str(&comment(LIMIT - 14 - robots.len()));
    assert_eq!(&cut_line[..14], "Disallow: /tar");
    robots.push_str(&cut_line);
    while robots.len() < 3_000_000 {
        robots.push_str(&comment(100));
    }
    robots.push_str(&format!("Disallow: /{eol}"));
    let (addr, asked) = raw_site(move |path, _| match path {
        "/robots.txt" => ("200 OK", String::new(), robots.clone().into_bytes()),
        _ => salon_with_a_private_page(path),
    });
    let mut server = server_crawling(addr, 60).await;
    let s =
        completed_website_session(&server, "a@salon-lilas.fr", &format!("http://{addr}/")).await;
    let kb = wait_for_job(&server, &s).await;
    assert_eq!(outcome(&kb), json!(["done", null, 1, 3, 2, 1, 0]), "{kb}");
    assert_eq!(
        kb["pages_not_stored"],
        json!([{"url": format!("http://{addr}/prive/notes"), "depth": 1,
                "status": "skipped", "reason": "robots_disallowed"}])
    );
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.get("/robots.txt"), Some(&1), "{asked:?}");
    assert_eq!(asked.get("/prive/notes"), None, "{asked:?}");
    server.stop().await;
}

/// A loopback address that refuses connections for as long as the socket
/// returned is kept: bound, never listening. (A listener bound and dropped
/// freed its port, which another test's server or site binding port 0
/// could be given meanwhile, and answer.)
fn closed_port() -> (tokio::net::TcpSocket, std::net::SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind("127.0.0.1:0".parse().unwrap())
        .expect("bind a loopback port");
    let addr = socket.local_addr().expect("its address");
    (socket, addr)
}

/// A robots.txt redirected to another host that cannot be reached: the
/// file is unavailable (`robots_unavailable`, tried again later), not the
/// tenant's own site (`unreachable`), whose request answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robots_txt_redirected_to_a_host_that_fails_is_unavailable_not_the_site() {
    let (_held, closed) = closed_port();
    let (addr, _) = raw_site(move |path, _| match path {
        "/robots.txt" => (
            "301 Moved Permanently",
            format!("Location: http://{closed}/robots.txt\r\n"),
            Vec::new(),
        ),
        _ => (
            "200 OK",
            String::new(),
            tiny_page("Accueil", "Bienvenue.").into_bytes(),
        ),
    });
    let mut server = server_crawling_hosts(&[addr, closed]).await;
    let s =
        completed_website_session(&server, "a@salon-lilas.fr", &format!("http://{addr}/")).await;
    let job = first_attempts_job(&server, &s).await;
    assert_eq!(
        [&job["status"], &job["attempts"], &job["error_code"]],
        [&json!("queued"), &json!(1), &json!("robots_unavailable")],
        "{job}"
    );
    server.stop().await;
}

/// `/` links `/ancienne` (a 301 to `/nouvelle`) before `/nouvelle` and
/// `/fin`.
fn redirecting(path: &str, _: usize) -> (&'static str, String, String) {
    match path {
        "/" => (
            "200 OK",
            String::new(),
            tiny_page(
                "Accueil",
                "Bienvenue au salon. <a href=\"/ancienne\">Ancienne adresse</a> \
                 <a href=\"/nouvelle\">Nouvelle adresse</a> <a href=\"/fin\">Fin</a>",
            ),
        ),
        "/ancienne" => (
            "301 Moved Permanently",
            "Location: /nouvelle\r\n".to_string(),
            String::new(),
        ),
        "/nouvelle" => (
            "200 OK",
            String::new(),
            tiny_page(
                "Nouvelle adresse",
                "Le salon est au 12 rue des Lilas à Lyon.",
            ),
        ),
        "/fin" => (
            "200 OK",
            String::new(),
            tiny_page("Fin", "Les horaires sont affichés à l'entrée du salon."),
        ),
        _ => ("404 Not Found", String::new(), String::new()),
    }
}

/// A redirect to a page the job has queued but not fetched yet: the page
/// is stored once, under its own address, and the job goes on. Before, the
/// page was fetched again, its report refused as already reported, and the
/// job stopped until its lease ran out (three times: `failed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_a_queued_page_stores_it_once_and_the_job_goes_on() {
    let (addr, asked) = tiny_site(redirecting);
    let mut server = server_crawling(addr, 30).await;
    let s =
        completed_website_session(&server, "a@salon-lilas.fr", &format!("http://{addr}/")).await;
    let kb = wait_for_job(&server, &s).await;
    assert_eq!(outcome(&kb), json!(["done", null, 1, 4, 3, 1, 0]), "{kb}");
    let stored: Vec<&str> = kb["documents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["url"].as_str())
        .collect();
    assert_eq!(
        stored,
        [
            format!("http://{addr}/"),
            format!("http://{addr}/nouvelle"),
            format!("http://{addr}/fin"),
        ]
    );
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.get("/nouvelle"), Some(&1), "{asked:?}");
    assert_eq!(asked.get("/fin"), Some(&1), "{asked:?}");
    server.stop().await;
}

/// `/` links pages whose canonical link names another page: one it does
/// not link, with the same text (`/promo-ete` → `/promotions`); one that
/// is gone and linked too (`/ancien-tarif` → `/tarifs-2019`, a 404); two
/// pages of a list, each with a text of its own, naming the first, which
/// `/` links after them (`/avis?page=2`, `/avis?page=3` → `/avis`); a list
/// sorted another way, the same words in another order (`/produits?tri=prix`
/// → `/produits`); three links deep, two pages of a list naming one no
/// link reaches within the job's depth (`/liste?p=2`, `/liste?p=3` →
/// `/liste`); a canonical past the 2,048 characters of a URL the library
/// takes (`/partenaires`); one written with a trailing slash the site does
/// not want (`/promo-hiver` → `/tarifs/`, a 404, where `/tarifs` answers);
/// one that is only a meta refresh to its text (`/accueil-fr` → `/langue`
/// → `/langue/fr`); a page naming one that is itself a redirect to its
/// canonical (`/promo-rappel` → `/promo-ete`); a `noindex` page naming
/// a stored one (`/vieux-avis` → `/avis`), and a `noindex, nofollow` one
/// naming one no link reaches (`/suivi` → `/cache-suivi`); a page naming a
/// `noindex` page no link reaches, whose own links lead on
/// (`/ancien-avis` → `/archives` → `/archives/2019`); and a page naming
/// one that redirects to a page `/` links after it (`/carte-p2` →
/// `/ancienne-carte` → `/nouvelle-carte`).
fn canonicals(path: &str, _: usize) -> (&'static str, String, String) {
    let naming = |canonical: &str, title: &str, body: &str| {
        (
            "200 OK",
            String::new(),
            format!(
                "<html><head><title>{title}</title><link rel=canonical href=\"{canonical}\">\
                 </head><body><main><h1>{title}</h1><p>{body}</p></main></body></html>"
            ),
        )
    };
    let plain = |title: &str, body: &str| ("200 OK", String::new(), tiny_page(title, body));
    match path {
        "/" => plain(
            "Accueil",
            "Bienvenue au salon. <a href=\"/promo-ete\">Promotions</a> \
             <a href=\"/ancien-tarif\">Tarifs</a> <a href=\"/avis?page=2\">Avis, suite</a> \
             <a href=\"/avis?page=3\">Avis, fin</a> <a href=\"/avis\">Avis</a> \
             <a href=\"/tarifs-2019\">Tarifs 2019</a> <a href=\"/produits?tri=prix\">Produits</a> \
             <a href=\"/niveau1\">Plus</a> <a href=\"/partenaires\">Partenaires</a> \
             <a href=\"/promo-hiver\">Hiver</a> <a href=\"/tarifs\">Tarifs</a> \
             <a href=\"/accueil-fr\">Français</a> <a href=\"/promo-rappel\">Rappel</a> \
             <a href=\"/vieux-avis\">Anciens avis</a> <a href=\"/suivi\">Suivi</a> \
             <a href=\"/ancien-avis\">Ancien livre d'or</a> <a href=\"/carte-p2\">Carte, suite</a> \
             <a href=\"/nouvelle-carte\">Carte</a>",
        ),
        "/carte-p2" => naming("/ancienne-carte", "Carte, suite", "Soins du visage et épilation."),
        "/ancienne-carte" => (
            "301 Moved Permanently",
            "Location: /nouvelle-carte\r\n".to_string(),
            String::new(),
        ),
        "/nouvelle-carte" => plain("Carte", "Coupes, couleurs et balayages."),
        "/suivi" => (
            "200 OK",
            String::new(),
            "<html><head><meta name=robots content=\"noindex, nofollow\">\
             <link rel=canonical href=\"/cache-suivi\"></head><body><main><h1>Suivi</h1>\
             <p>Votre commande est en préparation.</p></main></body></html>"
                .to_string(),
        ),
        "/ancien-avis" => naming("/archives", "Livre d'or", "Merci pour ce balayage, je reviendrai."),
        "/archives" => (
            "200 OK",
            String::new(),
            "<html><head><meta name=robots content=noindex></head><body><main><h1>Archives</h1>\
             <p>Les avis des années passées. <a href=\"/archives/2019\">2019</a></p></main></body></html>"
                .to_string(),
        ),
        "/archives/2019" => plain("Avis de 2019", "Le salon a ouvert sa deuxième salle."),
        "/promo-hiver" => naming("/tarifs/", "Hiver", "Moins 10 % sur les couleurs en janvier."),
        "/tarifs" => plain("Tarifs", "Coupe femme 40 euros, coupe homme 27 euros."),
        "/accueil-fr" => naming("/langue", "Bienvenue", "Le salon Léa vous accueille à Lyon."),
        "/langue" => (
            "200 OK",
            String::new(),
            "<html><head><meta http-equiv=refresh content=\"0; url=/langue/fr\"></head><body></body></html>"
                .to_string(),
        ),
        "/langue/fr" => plain("Bienvenue", "Le salon Léa vous accueille à Lyon."),
        "/promo-rappel" => naming("/promo-ete", "Promotions", "Moins 20 % sur les soins en juillet et en août."),
        "/vieux-avis" => (
            "200 OK",
            String::new(),
            "<html><head><meta name=robots content=noindex><link rel=canonical href=\"/avis\"></head>\
             <body><main><h1>Avis</h1><p>Des clientes ravies de leur balayage.</p></main></body></html>"
                .to_string(),
        ),
        "/partenaires" => naming(
            &format!("/partenaires?{}", "p".repeat(3000)),
            "Partenaires",
            "Nos partenaires, coiffeurs et esthéticiennes de Lyon.",
        ),
        "/promo-ete" => naming(
            "/promotions",
            "Promotions",
            "Moins 20 % sur les soins en juillet et en août.",
        ),
        "/promotions" => plain(
            "Promotions",
            "Moins 20 % sur les soins en juillet et en août.",
        ),
        "/ancien-tarif" => naming(
            "/tarifs-2019",
            "Tarifs",
            "Coupe femme 38 euros, coupe homme 25 euros.",
        ),
        "/avis?page=2" => naming("/avis", "Avis, suite", "Un accueil parfait, merci à Léa."),
        "/avis?page=3" => naming(
            "/avis",
            "Avis, fin",
            "Karim a rattrapé ma coupe ratée ailleurs.",
        ),
        "/avis" => naming("/avis", "Avis", "Des clientes ravies de leur balayage."),
        "/produits?tri=prix" => naming(
            "/produits",
            "Produits",
            "Shampooing 12 euros, masque 20 euros, huile 25 euros.",
        ),
        "/produits" => plain(
            "Produits",
            "Huile 25 euros, masque 20 euros, shampooing 12 euros.",
        ),
        "/niveau1" => plain(
            "Niveau un",
            "Le salon en détail. <a href=\"/niveau2\">Encore</a>",
        ),
        "/niveau2" => plain(
            "Niveau deux",
            "Nos réalisations. <a href=\"/liste?p=2\">Page 2</a> <a href=\"/liste?p=3\">Page 3</a>",
        ),
        "/liste?p=2" => naming(
            "/liste",
            "Réalisations, page 2",
            "Un carré plongeant et un balayage miel.",
        ),
        "/liste?p=3" => naming(
            "/liste",
            "Réalisations, page 3",
            "Une coupe courte et un dégradé homme.",
        ),
        "/liste" => plain("Réalisations", "Un chignon de mariée."),
        _ => ("404 Not Found", String::new(), String::new()),
    }
}

/// A canonical link is the site's hint, followed where its page answers
/// with the same text, whichever of the two pages the crawl meets first,
/// each asked once: `/promo-ete` and `/produits?tri=prix` are redirects
/// to their canonical pages, stored with those pages' texts. A page whose
/// canonical is gone (`/ancien-tarif`), or which has a text of its own
/// (the lists' pages), or names one too long to keep (`/partenaires`,
/// never asked), is stored at its own address; a canonical page the
/// job reaches is stored at its own, with its text (`/avis`). Before: the
/// pages naming a dead canonical were stored under it, never asked; the
/// first list page's text took `/avis`'s place, and the second's was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canonical_link_is_followed_only_to_a_page_of_the_same_text() {
    let (mut server, kb, addr, asked) = crawl_tiny_site(canonicals, "a@salon-canon.fr").await;
    let url = |path: &str| format!("http://{addr}{path}");
    let documents: Vec<(String, String, i64)> = kb["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["url"].as_str().unwrap().replace(&url(""), ""),
                d["title"].as_str().unwrap().to_string(),
                d["depth"].as_i64().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("/", "Accueil", 0),
        ("/promotions", "Promotions", 1),
        ("/ancien-tarif", "Tarifs", 1),
        ("/avis?page=2", "Avis, suite", 1),
        ("/avis?page=3", "Avis, fin", 1),
        ("/avis", "Avis", 1),
        ("/produits", "Produits", 1),
        ("/niveau1", "Niveau un", 1),
        ("/partenaires", "Partenaires", 1),
        ("/promo-hiver", "Hiver", 1),
        ("/tarifs", "Tarifs", 1),
        ("/langue/fr", "Bienvenue", 1),
        ("/ancien-avis", "Livre d'or", 1),
        ("/carte-p2", "Carte, suite", 1),
        ("/nouvelle-carte", "Carte", 1),
        ("/niveau2", "Niveau deux", 2),
        ("/liste?p=2", "Réalisations, page 2", 3),
        ("/liste?p=3", "Réalisations, page 3", 3),
        ("/archives/2019", "Avis de 2019", 3),
    ]
    .map(|(u, t, d)| (u.to_string(), t.to_string(), d));
    assert_eq!(documents, expected, "{kb}");
    let db = Connection::open(&server.db_path).unwrap();
    let text = |path: &str| -> String {
        db.query_row(
            "SELECT markdown FROM kb_documents WHERE url = ?1",
            [url(path)],
            |r| r.get(0),
        )
        .unwrap()
    };
    assert_eq!(
        text("/avis"),
        "# Avis\n\nDes clientes ravies de leur balayage."
    );
    assert_eq!(
        text("/tarifs"),
        "# Tarifs\n\nCoupe femme 40 euros, coupe homme 27 euros."
    );
    assert_eq!(
        text("/produits"),
        "# Produits\n\nHuile 25 euros, masque 20 euros, shampooing 12 euros."
    );
    let page = |path: &str, depth: i64, status: &str, reason: &str| json!({"url": url(path), "depth": depth, "status": status, "reason": reason});
    assert_eq!(
        kb["pages_not_stored"],
        json!([
            page("/promo-ete", 1, "skipped", "redirected"),
            page("/tarifs-2019", 1, "failed", "http_404"),
            page("/produits?tri=prix", 1, "skipped", "redirected"),
            page("/accueil-fr", 1, "skipped", "redirected"),
            page("/promo-rappel", 1, "skipped", "redirected"),
            page("/vieux-avis", 1, "skipped", "noindex"),
            page("/suivi", 1, "skipped", "noindex"),
            page("/archives", 2, "skipped", "noindex"),
            page("/ancienne-carte", 2, "skipped", "redirected"),
        ])
    );
    assert_eq!(outcome(&kb), json!(["done", null, 1, 28, 19, 8, 1]), "{kb}");
    asked_once_each(
        &asked,
        &[
            "/robots.txt",
            "/sitemap.xml",
            "/",
            "/promo-ete",
            "/promotions",
            "/ancien-tarif",
            // A 404 has its slashed form asked too, as any page's.
            "/tarifs-2019",
            "/tarifs-2019/",
            "/avis?page=2",
            "/avis",
            "/avis?page=3",
            "/produits?tri=prix",
            "/produits",
            "/niveau1",
            "/partenaires",
            "/promo-hiver",
            "/tarifs",
            "/accueil-fr",
            "/langue",
            "/langue/fr",
            "/promo-rappel",
            "/vieux-avis",
            // Not `/cache-suivi`: a page without text of its own is
            // compared with nothing, and its `nofollow` queues nothing.
            "/suivi",
            "/ancien-avis",
            "/archives",
            "/archives/2019",
            "/carte-p2",
            "/ancienne-carte",
            "/nouvelle-carte",
            "/niveau2",
            "/liste?p=2",
            "/liste",
            "/liste?p=3",
        ],
    );
    server.stop().await;
}

/// `/` links a page naming a canonical page that answers its first request
/// with a 429, then the canonical page itself.
fn canonical_busy_once(path: &str, n: usize) -> (&'static str, String, String) {
    match (path, n) {
        ("/", _) => (
            "200 OK",
            String::new(),
            tiny_page(
                "Accueil",
                "Bienvenue au salon. <a href=\"/promo\">Promo</a> <a href=\"/carte\">Carte</a>",
            ),
        ),
        ("/promo", _) => (
            "200 OK",
            String::new(),
            "<html><head><title>Promo</title><link rel=canonical href=\"/carte\"></head>\
             <body><main><h1>Promo</h1><p>Moins 20 % sur les soins en juillet.</p></main></body></html>"
                .to_string(),
        ),
        ("/carte", 0) => (
            "429 Too Many Requests",
            "Retry-After: 1\r\n".to_string(),
            String::new(),
        ),
        ("/carte", _) => (
            "200 OK",
            String::new(),
            tiny_page("Carte", "Coupes, couleurs et balayages."),
        ),
        _ => ("404 Not Found", String::new(), String::new()),
    }
}

/// A canonical page refused with a 429 when asked ahead is left unknown,
/// not taken as gone: the page naming it is stored at its own address, and
/// the canonical page is asked again at its turn, and stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canonical_refused_for_now_is_asked_again_at_its_turn() {
    let (mut server, kb, _addr, asked) =
        crawl_tiny_site(canonical_busy_once, "a@salon-occupe.fr").await;
    let stored: Vec<(&str, i64)> = stored_pages(&kb)
        .into_iter()
        .map(|(u, d)| (u.rsplit('/').next().unwrap(), d))
        .collect();
    assert_eq!(stored, [("", 0), ("promo", 1), ("carte", 1)], "{kb}");
    assert_eq!(kb["pages_not_stored"], json!([]));
    assert_eq!(outcome(&kb), json!(["done", null, 1, 3, 3, 0, 0]), "{kb}");
    assert_eq!(asked.get("/carte"), Some(&2), "{asked:?}");
    assert_eq!(asked.get("/promo"), Some(&1), "{asked:?}");
    server.stop().await;
}

/// `/` links a page 5,000 elements deep, a page whose robots meta says
/// `nofollow` and one whose `X-Robots-Tag` says it; each of the last two
/// links a page of its own.
fn deep_and_nofollow(path: &str, _: usize) -> (&'static str, String, String) {
    let linking = |title: &str, robots: &str, link: &str| {
        format!(
            "<html><head><title>{title}</title>{robots}</head><body><main><h1>{title}</h1>\
             <p>Une page du salon. <a href=\"{link}\">Plus loin</a></p></main></body></html>"
        )
    };
    match path {
        "/" => (
            "200 OK",
            String::new(),
            tiny_page(
                "Accueil",
                "Bienvenue. <a href=\"/profond\">Tarifs</a> <a href=\"/sans-suivre\">Équipe</a> \
                 <a href=\"/entete\">Accès</a>",
            ),
        ),
        "/profond" => (
            "200 OK",
            String::new(),
            format!(
                "<html><head><title>Tarifs</title></head><body><main><h1>Tarifs</h1>{}\
                 Coupe homme : 25 €, barbe comprise{}</main></body></html>",
                "<div>".repeat(5_000),
                "</div>".repeat(5_000)
            ),
        ),
        "/sans-suivre" => (
            "200 OK",
            String::new(),
            linking(
                "Équipe",
                "<meta name=\"robots\" content=\"nofollow\">",
                "/cache-meta",
            ),
        ),
        "/entete" => (
            "200 OK",
            "X-Robots-Tag: nofollow\r\n".to_string(),
            linking("Accès", "", "/cache-entete"),
        ),
        _ => (
            "200 OK",
            String::new(),
            tiny_page("Caché", "Une page que le site demande de ne pas suivre."),
        ),
    }
}

/// A page nested 5,000 deep (700 aborted the whole server: the Markdown
/// converter's recursion overflowed its thread's stack) is stored, read
/// flattened; the links of a page that says `nofollow`, in a robots meta
/// or an `X-Robots-Tag`, are not followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_thousands_deep_is_stored_and_a_nofollow_pages_links_are_left() {
    let (addr, asked) = tiny_site(deep_and_nofollow);
    let mut server = server_crawling(addr, 30).await;
    let s =
        completed_website_session(&server, "a@salon-profond.fr", &format!("http://{addr}/")).await;
    let kb = wait_for_job(&server, &s).await;
    assert_eq!(outcome(&kb), json!(["done", null, 1, 4, 4, 0, 0]), "{kb}");
    let found = server
        .get(&format!(
            "/api/v1/onboarding/session/{s}/kb/search?q=coupe%20homme&limit=1"
        ))
        .await;
    assert_eq!(found.status, 200, "{}", found.body);
    assert_eq!(
        found.json()["results"][0]["snippet"],
        "Coupe homme : 25 €, barbe comprise"
    );
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.get("/cache-meta"), None, "{asked:?}");
    assert_eq!(asked.get("/cache-entete"), None, "{asked:?}");
    server.stop().await;
}

/// `/` links `/occupe`, which answers 429 with `Retry-After: 8` the first
/// time.
fn busy_once(path: &str, n: usize) -> (&'static str, String, String) {
    match (path, n) {
        ("/", _) => (
            "200 OK",
            String::new(),
            tiny_page("Accueil", "Bienvenue. <a href=\"/occupe\">Nos tarifs</a>"),
        ),
        ("/occupe", 0) => (
            "429 Too Many Requests",
            "Retry-After: 8\r\n".to_string(),
            String::new(),
        ),
        ("/occupe", _) => (
            "200 OK",
            String::new(),
            tiny_page("Tarifs", "Une coupe homme coûte 25 euros au salon."),
        ),
        _ => ("404 Not Found", String::new(), String::new()),
    }
}

/// A `Retry-After` longer than what a lease covers, but within the 120 s
/// the site's gap keeps: the page is asked again after it, the lease
/// renewed meanwhile. Before, a wait past the lease (less 5 s) failed the
/// page at once, and the site was waited for all the same. The retry is
/// kept with the job before it is waited out: a worker taking the job over
/// would go on counting (before, it started again from none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_longer_than_a_lease_is_waited_out_with_the_lease_renewed() {
    let (addr, asked) = tiny_site(busy_once);
    let mut server = server_crawling(addr, 10).await;
    let s =
        completed_website_session(&server, "a@salon-occupe.fr", &format!("http://{addr}/")).await;
    let db = server.read_db();
    let mut during = Value::Null;
    // Bounded: 10 s, the wait being 8.
    for _ in 0..200 {
        during = waiting(&db, addr);
        if during["pages"][1][2] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(during["job"][0], "running", "{during}");
    assert_eq!(
        during["pages"],
        json!([["/", "stored", 0], ["/occupe", "pending", 1]])
    );
    assert_eq!(asked.lock().unwrap().get("/occupe"), Some(&1));
    let kb = wait_for_job(&server, &s).await;
    assert_eq!(outcome(&kb), json!(["done", null, 1, 2, 2, 0, 0]), "{kb}");
    assert_eq!(asked.lock().unwrap().get("/occupe"), Some(&2));
    server.stop().await;
}

/// Set once the job of [`a_retry_kept_for_a_job_another_worker_took_ends_its_loop`]
/// was taken over: `/occupe` answers its 429 only then.
static TAKEN_OVER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// As [`busy_once`], the first answer of `/occupe` held (bounded: 10 s)
/// until the job was taken over.
fn busy_once_after_a_takeover(path: &str, n: usize) -> (&'static str, String, String) {
    if (path, n) == ("/occupe", 0) {
        for _ in 0..200 {
            if TAKEN_OVER.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    busy_once(path, n)
}

/// A worker frozen past its lease while it fetched a page, the job taken
/// over meanwhile by another: the 429 it then gets is not waited out in
/// hand, since keeping the retry with the job is refused (the job is the
/// other worker's), and the page is not asked again. Before, the refusal
/// was only logged: the worker slept the 8 s out and asked the page again
/// for a job no longer its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_kept_for_a_job_another_worker_took_ends_its_loop() {
    let (addr, asked) = tiny_site(busy_once_after_a_takeover);
    let mut server = server_crawling(addr, 30).await;
    completed_website_session(&server, "a@salon-repris.fr", &format!("http://{addr}/")).await;
    // Bounded: 10 s.
    for _ in 0..200 {
        if asked.lock().unwrap().contains_key("/occupe") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(asked.lock().unwrap().get("/occupe"), Some(&1));
    // The lease expired (the worker frozen), and another worker's claim.
    let other = Connection::open(&server.db_path).unwrap();
    other.busy_timeout(Duration::from_secs(5)).unwrap();
    onboarding::register(&other).unwrap();
    other
        .execute_batch(
            "BEGIN IMMEDIATE;
             UPDATE kb_crawl_jobs SET lease_expires_at = '2000-01-01T00:00:00.000Z';",
        )
        .unwrap();
    let claimed: String = other
        .query_row(
            "SELECT onboarding_kb_claim('{\"worker\":\"autre\",\"lease_seconds\":60}')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    other.execute_batch("COMMIT").unwrap();
    let claimed: Value = serde_json::from_str(&claimed).unwrap();
    assert_eq!(claimed["job"]["lease_owner"], "autre", "{claimed}");
    TAKEN_OVER.store(true, std::sync::atomic::Ordering::SeqCst);
    // Past the 8 s the first worker would have waited out.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(asked.lock().unwrap().get("/occupe"), Some(&1));
    assert_eq!(
        waiting(&server.read_db(), addr)["pages"],
        json!([["/", "stored", 0], ["/occupe", "pending", 0]])
    );
    let owner: String = other
        .query_row("SELECT lease_owner FROM kb_crawl_jobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(owner, "autre");
    server.stop().await;
}

/// `/` links `/occupe`, which answers 429 with `Retry-After: 3` the first
/// time.
fn busy_three_seconds(path: &str, n: usize) -> (&'static str, String, String) {
    match (path, n) {
        ("/occupe", 0) => (
            "429 Too Many Requests",
            "Retry-After: 3\r\n".to_string(),
            String::new(),
        ),
        _ => busy_once(path, n),
    }
}

/// What the database holds of a job waiting for its site: its status,
/// attempts, waits, and how long after its last change it may be claimed
/// (ms); then each page's path, status and retries.
fn waiting(db: &Connection, addr: std::net::SocketAddr) -> Value {
    let job = db
        .query_row(
            "SELECT status, attempts, site_waits,
                    CAST(round((julianday(next_attempt_at) - julianday(updated_at)) * 86400000) AS INTEGER)
             FROM kb_crawl_jobs ORDER BY id LIMIT 1",
            [],
            |r| {
                Ok(json!([
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?
                ]))
            },
        )
        .unwrap();
    let mut pages = db
        .prepare("SELECT url, status, retries FROM kb_crawl_pages ORDER BY id")
        .unwrap();
    let origin = format!("http://{addr}");
    let pages: Vec<Value> = pages
        .query_map([], |r| {
            let url: String = r.get(0)?;
            Ok(json!([
                url.replacen(&origin, "", 1),
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?
            ]))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    json!({ "job": job, "pages": pages })
}

/// Polls the database until its first job is queued to wait for its site
/// (bounded: 20 s).
async fn until_waiting(server: &TestServer, addr: std::net::SocketAddr) -> Value {
    let db = server.read_db();
    for _ in 0..400 {
        let state = waiting(&db, addr);
        if state["job"][0] == "queued" && state["job"][2] != 0 {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the job never waited for its site: {}", waiting(&db, addr));
}

/// A `Retry-After` longer than a job waits in hand (1 s here, 120 s by
/// default): the job goes back to the queue until the site's wait is over
/// (the attempt not counted, the page's retry kept with it), then resumes
/// and asks the page again. Before, the page failed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_longer_than_a_job_waits_in_hand_puts_it_back_in_the_queue() {
    let (addr, asked) = tiny_site(busy_three_seconds);
    let limits = Limits {
        max_retry_after: Duration::from_secs(1),
        ..Limits::default()
    };
    let mut server = server_crawling_with(addr, 30, limits).await;
    let s =
        completed_website_session(&server, "a@salon-patient.fr", &format!("http://{addr}/")).await;
    let state = until_waiting(&server, addr).await;
    assert_eq!(
        state,
        json!({
            "job": ["queued", 0, 1, 3000],
            "pages": [["/", "stored", 0], ["/occupe", "pending", 1]],
        })
    );
    let kb = wait_for_job(&server, &s).await;
    assert_eq!(outcome(&kb), json!(["done", null, 1, 2, 2, 0, 0]), "{kb}");
    assert_eq!(
        waiting(&server.read_db(), addr)["pages"],
        json!([["/", "stored", 0], ["/occupe", "stored", 1]])
    );
    let asked = asked.lock().unwrap().clone();
    // robots.txt is read again by the resumed job; the sitemap is not.
    assert_eq!(asked.get("/occupe"), Some(&2), "{asked:?}");
    assert_eq!(asked.get("/robots.txt"), Some(&2), "{asked:?}");
    assert_eq!(asked.get("/sitemap.xml"), Some(&1), "{asked:?}");
    server.stop().await;
}

/// `/` links `/occupe`, which always answers 429 with the `Retry-After` of
/// `RETRY_AFTER`, then `/autre`.
fn busy_for<const RETRY_AFTER: u64>(path: &str, _: usize) -> (&'static str, String, String) {
    match path {
        "/" => (
            "200 OK",
            String::new(),
            tiny_page(
                "Accueil",
                "Bienvenue. <a href=\"/occupe\">Nos tarifs</a> <a href=\"/autre\">Contact</a>",
            ),
        ),
        "/occupe" => (
            "429 Too Many Requests",
            format!("Retry-After: {RETRY_AFTER}\r\n"),
            String::new(),
        ),
        "/autre" => (
            "200 OK",
            String::new(),
            tiny_page(
                "Contact",
                "Le salon répond au téléphone du mardi au samedi.",
            ),
        ),
        _ => ("404 Not Found", String::new(), String::new()),
    }
}

/// A `Retry-After` of an hour: the job waits in the queue that long, and
/// so does the site's next job, another tenant's: its site is left alone
/// (nothing asked, robots.txt included), and it waits for the same turn.
/// Before, the page failed, and the site was left alone 120 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_of_an_hour_keeps_every_job_of_the_site_waiting_in_the_queue() {
    let (addr, asked) = tiny_site(busy_for::<3600>);
    let mut server = server_crawling(addr, 30).await;
    completed_website_session(&server, "a@salon-ferme.fr", &format!("http://{addr}/")).await;
    let state = until_waiting(&server, addr).await;
    assert_eq!(
        state,
        json!({
            "job": ["queued", 0, 1, 3_600_000],
            "pages": [["/", "stored", 0], ["/occupe", "pending", 1], ["/autre", "pending", 0]],
        })
    );
    let db = server.read_db();
    // The site is left alone the whole hour (its turn's next request an
    // hour after the 429, a few ms before the job was put back).
    let gap: i64 = db
        .query_row(
            "SELECT CAST(round((julianday(t.next_at) - julianday(j.updated_at)) * 86400000) AS INTEGER)
             FROM kb_site_turns t, kb_crawl_jobs j WHERE j.id = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!((3_590_000..=3_600_000).contains(&gap), "{gap}");
    completed_website_session(&server, "b@salon-ferme.fr", &format!("http://{addr}/")).await;
    let mut second = Value::Null;
    for _ in 0..400 {
        second = db
            .query_row(
                "SELECT status, site_waits, j.next_attempt_at >= t.next_at, pages_found
                 FROM kb_crawl_jobs j, kb_site_turns t WHERE j.id = 2",
                [],
                |r| {
                    Ok(json!([
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<bool>>(2)?,
                        r.get::<_, i64>(3)?
                    ]))
                },
            )
            .unwrap();
        if second[1] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(second, json!(["queued", 1, true, 1]));
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.get("/occupe"), Some(&1), "{asked:?}");
    assert_eq!(asked.get("/robots.txt"), Some(&1), "{asked:?}");
    assert_eq!(asked.get("/autre"), None, "{asked:?}");
    server.stop().await;
}

/// `/occupe` answers 429 with `Retry-After: 1`, then `Retry-After: 3`, then
/// `Retry-After: 1` again; robots.txt asks to come back in 2 s first.
fn busy_three_times(path: &str, n: usize) -> (&'static str, String, String) {
    match (path, n) {
        ("/robots.txt", 0) => (
            "429 Too Many Requests",
            "Retry-After: 2\r\n".to_string(),
            String::new(),
        ),
        ("/robots.txt", _) => ("200 OK", String::new(), "User-agent: *\n".to_string()),
        ("/occupe", _) => (
            "429 Too Many Requests",
            format!("Retry-After: {}\r\n", if n == 1 { 3 } else { 1 }),
            String::new(),
        ),
        _ => busy_once(path, n),
    }
}

/// A page's two retries are counted across the job's waits: one waited
/// out in hand (1 s), one in the queue (3 s, past the 2 s a job waits in
/// hand here), and the third 429 fails it. Before, the resumed job counted
/// from the queue's one and asked a fourth time. And a robots.txt that
/// answers 429 with a `Retry-After` puts the job in the queue as well,
/// where it was read as "everything allowed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pages_retries_count_across_the_jobs_waits_and_robots_txt_may_ask_to_wait() {
    let (addr, asked) = tiny_site(busy_three_times);
    let limits = Limits {
        max_retry_after: Duration::from_secs(2),
        ..Limits::default()
    };
    let mut server = server_crawling_with(addr, 30, limits).await;
    let s =
        completed_website_session(&server, "a@salon-tenace.fr", &format!("http://{addr}/")).await;
    let state = until_waiting(&server, addr).await;
    assert_eq!(
        state,
        json!({"job": ["queued", 0, 1, 2000], "pages": [["/", "pending", 0]]})
    );
    let kb = wait_for_job(&server, &s).await;
    assert_eq!(outcome(&kb), json!(["done", null, 1, 2, 1, 0, 1]), "{kb}");
    assert_eq!(
        waiting(&server.read_db(), addr),
        json!({
            "job": ["done", 1, 2, null],
            "pages": [["/", "stored", 0], ["/occupe", "failed", 2]],
        })
    );
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.get("/occupe"), Some(&3), "{asked:?}");
    assert_eq!(asked.get("/robots.txt"), Some(&3), "{asked:?}");
    server.stop().await;
}

/// robots.txt always answers 503 with `Retry-After: 1`.
fn robots_always_busy(path: &str, n: usize) -> (&'static str, String, String) {
    match path {
        "/robots.txt" => (
            "503 Service Unavailable",
            "Retry-After: 1\r\n".to_string(),
            String::new(),
        ),
        _ => busy_once(path, n),
    }
}

/// A robots.txt that keeps asking to wait: the job waits for its site five
/// times, then its attempt ends as for any robots.txt not read
/// (`robots_unavailable`, tried again after the library's backoff), not as
/// a job out of time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robots_txt_that_keeps_asking_to_wait_ends_the_attempt_unavailable() {
    let (addr, asked) = tiny_site(robots_always_busy);
    let mut server = server_crawling(addr, 30).await;
    let s =
        completed_website_session(&server, "a@salon-ferme.fr", &format!("http://{addr}/")).await;
    // Five waits of about 1 s, then the attempt's end.
    let job = first_attempts_job(&server, &s).await;
    assert_eq!(
        [&job["status"], &job["attempts"], &job["error_code"]],
        [&json!("queued"), &json!(1), &json!("robots_unavailable")],
        "{job}"
    );
    let waits: i64 = server
        .read_db()
        .query_row("SELECT site_waits FROM kb_crawl_jobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(waits, 5);
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.get("/robots.txt"), Some(&6), "{asked:?}");
    assert_eq!(asked.get("/"), None, "{asked:?}");
    server.stop().await;
}

/// A `Retry-After` past the longest wait honoured (2 s here, an hour by
/// default) fails its page, and the site is left alone that longest wait:
/// the job waits it out in hand (its time allows) and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_past_the_longest_wait_fails_its_page_and_the_job_goes_on() {
    let (addr, asked) = tiny_site(busy_for::<3600>);
    let limits = Limits {
        max_site_wait: Duration::from_secs(2),
        ..Limits::default()
    };
    let mut server = server_crawling_with(addr, 30, limits).await;
    let started = Instant::now();
    let s =
        completed_website_session(&server, "a@salon-ferme.fr", &format!("http://{addr}/")).await;
    let kb = wait_for_job(&server, &s).await;
    assert_eq!(outcome(&kb), json!(["done", null, 1, 3, 2, 0, 1]), "{kb}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.get("/occupe"), Some(&1), "{asked:?}");
    assert_eq!(asked.get("/autre"), Some(&1), "{asked:?}");
    server.stop().await;
}

/// A `Crawl-delay` of 1.5 s and a sitemap index of four sitemaps, each
/// listing `/tarifs`: six requests, about 9 s, before the first page.
fn slow_discovery(path: &str, _: usize) -> (&'static str, String, String) {
    let urlset = "<urlset><url><loc>{origin}/tarifs</loc></url></urlset>";
    match path {
        "/robots.txt" => (
            "200 OK",
            String::new(),
            "User-agent: *\nCrawl-delay: 1.5\n".to_string(),
        ),
        "/sitemap.xml" => (
            "200 OK",
            String::new(),
            "<sitemapindex>\
             <sitemap><loc>{origin}/s1.xml</loc></sitemap>\
             <sitemap><loc>{origin}/s2.xml</loc></sitemap>\
             <sitemap><loc>{origin}/s3.xml</loc></sitemap>\
             <sitemap><loc>{origin}/s4.xml</loc></sitemap>\
             </sitemapindex>"
                .to_string(),
        ),
        "/s1.xml" | "/s2.xml" | "/s3.xml" | "/s4.xml" => {
            ("200 OK", String::new(), urlset.to_string())
        }
        "/" => (
            "200 OK",
            String::new(),
            tiny_page("Accueil", "Bienvenue au salon de coiffure."),
        ),
        "/tarifs" => (
            "200 OK",
            String::new(),
            tiny_page("Tarifs", "Une coupe femme coûte 38 euros au salon."),
        ),
        _ => ("404 Not Found", String::new(), String::new()),
    }
}

/// A discovery (robots.txt, then sitemaps at the site's `Crawl-delay`)
/// longer than the job's lease, no page reported meanwhile: the lease is
/// renewed all along and the job ends `done` on its first attempt. Before,
/// only reported pages and waits longer than a third of the lease renewed
/// it: the worker lost the job to its own next claim, and after three
/// attempts, each reading the sitemaps again, the job ended `failed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovery_longer_than_the_lease_keeps_the_job() {
    let (addr, asked) = tiny_site(slow_discovery);
    let mut server = server_crawling(addr, 6).await;
    let s =
        completed_website_session(&server, "a@salon-tarifs.fr", &format!("http://{addr}/")).await;
    let kb = wait_for_job(&server, &s).await;
    assert_eq!(outcome(&kb), json!(["done", null, 1, 2, 2, 0, 0]), "{kb}");
    let asked = asked.lock().unwrap().clone();
    for path in [
        "/robots.txt",
        "/sitemap.xml",
        "/s1.xml",
        "/s4.xml",
        "/",
        "/tarifs",
    ] {
        assert_eq!(asked.get(path), Some(&1), "{path}: {asked:?}");
    }
    server.stop().await;
}

/// The job's lease taken over by another worker while this one reads the
/// sitemaps (its process frozen past the lease, say): the next renewal is
/// refused, and the worker stops without asking for a page of a job that
/// is no longer its own, leaving the job and its lease to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_taken_over_stops_the_worker_before_its_pages() {
    let (addr, asked) = tiny_site(slow_discovery);
    let mut server = server_crawling(addr, 6).await;
    let s =
        completed_website_session(&server, "a@salon-repris.fr", &format!("http://{addr}/")).await;
    let db = server.read_db();
    // Bounded: 10 s for the job to be claimed.
    for _ in 0..100 {
        if job_row(&db)[0] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(job_row(&db)[0], "running");
    let writer = rusqlite::Connection::open(&server.db_path).unwrap();
    writer.busy_timeout(Duration::from_secs(5)).unwrap();
    writer
        .execute(
            "UPDATE kb_crawl_jobs SET lease_owner = 'another-worker',
                    lease_expires_at = '2099-01-01T00:00:00.000Z'",
            [],
        )
        .unwrap();
    // The discovery takes about 9 s, a renewal comes every 2 s: by 12 s
    // the worker would have asked for its first page.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.get("/"), None, "{asked:?}");
    assert_eq!(asked.get("/tarifs"), None, "{asked:?}");
    let kb = server
        .get(&format!("/api/v1/onboarding/session/{s}/kb"))
        .await
        .json();
    assert_eq!(
        outcome(&kb),
        json!(["running", null, 1, 1, 0, 0, 0]),
        "{kb}"
    );
    assert_eq!(
        db.query_row("SELECT lease_owner FROM kb_crawl_jobs", [], |r| r
            .get::<_, String>(0))
            .unwrap(),
        "another-worker"
    );
    server.stop().await;
}

/// robots.txt answers after the whole-response limit (1 s here).
fn slow_robots(path: &str, _: usize) -> (&'static str, String, String) {
    match path {
        "/robots.txt" => {
            std::thread::sleep(Duration::from_millis(2_500));
            ("200 OK", String::new(), String::new())
        }
        _ => (
            "200 OK",
            String::new(),
            tiny_page("Accueil", "Bienvenue au salon."),
        ),
    }
}

/// The job's state after its first attempt ended (bounded: 15 s).
async fn after_first_attempt(server: &TestServer, session: &str) -> Value {
    for _ in 0..150 {
        let kb = server
            .get(&format!("/api/v1/onboarding/session/{session}/kb"))
            .await;
        let job = serde_json::from_str::<Value>(&kb.body).unwrap()["job"].clone();
        if job["attempts"] == 1 && job["status"] != "running" {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the first attempt did not end in 15 s");
}

/// A site that refuses the connection is `unreachable`; a site whose
/// robots.txt does not come within the response limit, or whose
/// connection closes before the answer, is `robots_unavailable` (RFC 9309:
/// nothing is crawled), not `unreachable` as it was: the site was reached.
/// All go back to the queue for another attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robots_file_too_slow_or_cut_off_is_unavailable_and_a_closed_port_unreachable() {
    let (slow, asked) = tiny_site(slow_robots);
    let (_held, closed) = closed_port();
    // Reads each request and closes with no answer; a job's attempt asks
    // once, so a few connections at most.
    let cut = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cut_addr = cut.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in cut.incoming().take(8).flatten() {
            let mut head = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut head);
        }
    });
    let (mut config, dir) = temp_config();
    config.crawl = CrawlConfig {
        workers: 1,
        allow: AllowList::parse(&[slow.to_string(), closed.to_string(), cut_addr.to_string()])
            .unwrap(),
        lease_seconds: 30,
        idle_poll: Duration::from_millis(200),
        limits: Limits {
            response: Duration::from_secs(1),
            ..Limits::default()
        },
        ..CrawlConfig::default()
    };
    let mut server = TestServer::start(config, dir).await;
    for (addr, email, code) in [
        (slow, "a@salon-lent.fr", "robots_unavailable"),
        (closed, "a@salon-ferme.fr", "unreachable"),
        (cut_addr, "a@salon-coupe.fr", "robots_unavailable"),
    ] {
        let s = completed_website_session(&server, email, &format!("http://{addr}/")).await;
        let job = after_first_attempt(&server, &s).await;
        assert_eq!(
            [&job["status"], &job["error_code"], &job["pages_stored"]],
            [&json!("queued"), &json!(code), &json!(0)],
            "{job}"
        );
    }
    // Nothing but robots.txt was asked of the slow site.
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked, HashMap::from([("/robots.txt".to_string(), 1)]));
    server.stop().await;
}

#[test]
fn the_crawl_command_given_zero_workers_runs_one_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, log) = output_of(
        std::process::Command::new(env!("CARGO_BIN_EXE_onboarding-server"))
            .arg("--db")
            .arg(dir.path().join("onboarding.db"))
            .args(["--log-level", "info", "crawl", "--once"])
            .env("ONBOARDING_CRAWL_WORKERS", "0"),
    );
    assert!(ok, "{log}");
    assert!(
        log.contains(
            "--crawl-workers 0 turns off the HTTP server's crawler; the crawl command runs one worker"
        ),
        "{log}"
    );
    assert!(log.contains(" workers=1\n"), "{log}");
}

/// robots.txt disallows `/admin/`, of which the sitemap lists 60 pages,
/// then the start page, `/horaires` twice (the second time with a trailing
/// slash and a tracking parameter) and a page of another site; `/` links
/// `/tarifs` and `/horaires`.
fn sitemap_of_disallowed_pages(path: &str, _: usize) -> (&'static str, String, String) {
    match path {
        "/robots.txt" => (
            "200 OK",
            String::new(),
            "User-agent: *\nDisallow: /admin/\n".to_string(),
        ),
        "/sitemap.xml" => {
            let admin = (0..60).map(|i| format!("{{origin}}/admin/p{i}"));
            let others = [
                "{origin}/",
                "{origin}/horaires",
                "{origin}/horaires/?utm_source=plan",
                "http://ailleurs.example/tarifs",
            ];
            let urls: String = admin
                .chain(others.map(String::from))
                .map(|loc| format!("<url><loc>{loc}</loc></url>"))
                .collect();
            ("200 OK", String::new(), format!("<urlset>{urls}</urlset>"))
        }
        "/" => (
            "200 OK",
            String::new(),
            tiny_page(
                "Accueil",
                "Bienvenue au salon. <a href=\"/tarifs\">Tarifs</a> <a href=\"/horaires\">Horaires</a>",
            ),
        ),
        "/tarifs" => (
            "200 OK",
            String::new(),
            tiny_page("Tarifs", "Coupe femme 38 euros, coupe homme 25 euros."),
        ),
        "/horaires" => (
            "200 OK",
            String::new(),
            tiny_page("Horaires", "Ouvert du mardi au samedi, de 9 h à 19 h."),
        ),
        _ => ("404 Not Found", String::new(), String::new()),
    }
}

/// A tenant's job over the tiny site `answer` serves, crawled to its end:
/// the server (still running), the job as the kb route answers it, the
/// site's address and how many times each path was asked.
async fn crawl_tiny_site(
    answer: Answer,
    email: &str,
) -> (
    TestServer,
    Value,
    std::net::SocketAddr,
    HashMap<String, usize>,
) {
    let (addr, asked) = tiny_site(answer);
    let server = server_crawling(addr, 30).await;
    let s = completed_website_session(&server, email, &format!("http://{addr}/")).await;
    let kb = wait_for_job(&server, &s).await;
    let asked = asked.lock().unwrap().clone();
    (server, kb, addr, asked)
}

/// That the site was asked for `expected`, each path once, and for
/// nothing else.
fn asked_once_each(asked: &HashMap<String, usize>, expected: &[&str]) {
    let once: HashMap<String, usize> = expected.iter().map(|p| (p.to_string(), 1)).collect();
    assert_eq!(asked, &once, "{asked:?}");
}

/// The documents a job stored: each one's URL and depth.
fn stored_pages(kb: &Value) -> Vec<(&str, i64)> {
    kb["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["url"].as_str().unwrap(), d["depth"].as_i64().unwrap()))
        .collect()
}

/// The sitemap's entries the crawler would never ask for (robots.txt
/// disallows them, another site's, the start page, a page listed twice)
/// are no pages of the job: they took the job's 50 (50 found, 1 stored, 49
/// skipped `robots_disallowed`) and the start page's links were never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sitemap_entries_never_fetched_leave_the_page_cap_to_the_links() {
    let (mut server, kb, addr, asked) =
        crawl_tiny_site(sitemap_of_disallowed_pages, "a@salon-plan.fr").await;
    assert_eq!(outcome(&kb), json!(["done", null, 1, 3, 3, 0, 0]), "{kb}");
    let stored = stored_pages(&kb);
    let url = |path: &str| format!("http://{addr}{path}");
    assert_eq!(
        stored,
        [
            (url("/").as_str(), 0),
            (url("/horaires").as_str(), 1),
            (url("/tarifs").as_str(), 1)
        ]
    );
    assert_eq!(kb["pages_not_stored"], json!([]));
    let expected = ["/robots.txt", "/sitemap.xml", "/", "/horaires", "/tarifs"];
    asked_once_each(&asked, &expected);
    server.stop().await;
}

/// Two pages that declare no charset (no `charset` in their Content-Type,
/// no meta): `/` in windows-1252, `/carte` in UTF-8.
fn undeclared_charsets(path: &str, _: usize) -> (&'static str, String, Vec<u8>) {
    let html = "Content-Type: text/html\r\n".to_string();
    match path {
        "/" => (
            "200 OK",
            html,
            encoding_rs::WINDOWS_1252
                .encode(&tiny_page(
                    "Café Lilas",
                    "Réservez votre café crème au comptoir. <a href=\"/carte\">La carte</a>",
                ))
                .0
                .into_owned(),
        ),
        "/carte" => (
            "200 OK",
            html,
            tiny_page("La carte", "Café crème : 3,50 €, thé à la menthe : 4 €.").into_bytes(),
        ),
        _ => ("404 Not Found", String::new(), Vec::new()),
    }
}

/// A page that declares no charset and whose bytes are not UTF-8 is read
/// as windows-1252, as browsers read it (it was stored "R\u{fffd}servez
/// votre caf\u{fffd} cr\u{fffd}me"); one whose bytes are UTF-8 stays UTF-8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_without_a_charset_whose_bytes_are_not_utf_8_is_read_as_windows_1252() {
    let (addr, asked) = raw_site(undeclared_charsets);
    let mut server = server_crawling(addr, 30).await;
    let s = completed_website_session(&server, "a@cafe-lilas.fr", &format!("http://{addr}/")).await;
    let kb = wait_for_job(&server, &s).await;
    assert_eq!(outcome(&kb), json!(["done", null, 1, 2, 2, 0, 0]), "{kb}");
    let db = Connection::open(&server.db_path).unwrap();
    let stored: Vec<(String, String, String)> = db
        .prepare("SELECT url, title, markdown FROM kb_documents ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let url = |path: &str| format!("http://{addr}{path}");
    assert_eq!(
        stored,
        [
            (
                url("/"),
                "Café Lilas".to_string(),
                "# Café Lilas\n\nRéservez votre café crème au comptoir. [La carte](/carte)"
                    .to_string()
            ),
            (
                url("/carte"),
                "La carte".to_string(),
                "# La carte\n\nCafé crème : 3,50 €, thé à la menthe : 4 €.".to_string()
            ),
        ]
    );
    let asked = asked.lock().unwrap().clone();
    let expected = ["/robots.txt", "/sitemap.xml", "/", "/carte"];
    asked_once_each(&asked, &expected);
    server.stop().await;
}

/// A page that is only a meta refresh to `to`.
fn refresh_to(to: &str) -> String {
    format!("<html><head><meta http-equiv=\"refresh\" content=\"0; url={to}\"></head><body></body></html>")
}

/// `/` is only a meta refresh to `/fr/`, which links pages whose refresh
/// goes round (`/boucle-a`, `/boucle-b`), to a private address, into the
/// part robots.txt disallows, and into a chain of redirects (`/r1` to
/// `/r6`); and `/tarifs`, a page of content that refreshes to `/promo`.
fn refreshing(path: &str, _: usize) -> (&'static str, String, String) {
    let page = |body: String| ("200 OK", String::new(), body);
    match path {
        "/robots.txt" => page("User-agent: *\nDisallow: /admin/\n".to_string()),
        "/" => page(refresh_to("/fr/")),
        "/fr/" => page(tiny_page(
            "Accueil",
            "Bienvenue au salon. <a href=\"/boucle-a\">Promotions</a> \
             <a href=\"/vers-prive\">Espace pro</a> <a href=\"/vers-admin\">Administration</a> \
             <a href=\"/chaine\">Archives</a> <a href=\"/tarifs\">Tarifs</a>",
        )),
        "/boucle-a" => page(refresh_to("/boucle-b")),
        "/boucle-b" => page(refresh_to("/boucle-a")),
        "/vers-prive" => page(refresh_to("http://10.0.0.1/")),
        "/vers-admin" => page(refresh_to("/admin/cache")),
        "/chaine" => page(refresh_to("/r1")),
        "/tarifs" => page(
            "<html><head><meta http-equiv=\"refresh\" content=\"0; url=/promo\"></head>\
             <body><main><h1>Tarifs</h1><p>Coupe femme 38 euros, coupe homme 25 euros.</p></main></body></html>"
                .to_string(),
        ),
        _ => match path.strip_prefix("/r").and_then(|n| n.parse::<u32>().ok()) {
            Some(n) => (
                "302 Found",
                format!("Location: /r{}\r\n", n + 1),
                String::new(),
            ),
            None => ("404 Not Found", String::new(), String::new()),
        },
    }
}

/// A start page that is only a meta refresh to `/fr/` is a redirect to it
/// (the job ended `failed`, `no_content`, `/fr/` never asked), under the
/// rules of redirects: a refresh that goes round is a loop, one to a
/// private address or a path robots.txt disallows is never asked, and
/// refreshes and redirects together make 5 hops at most. A page with text
/// of its own is stored, its refresh not followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_page_that_is_only_a_meta_refresh_is_followed_as_a_redirect() {
    let (mut server, kb, addr, asked) = crawl_tiny_site(refreshing, "a@salon-fr.fr").await;
    assert_eq!(outcome(&kb), json!(["done", null, 1, 7, 2, 5, 0]), "{kb}");
    let url = |path: &str| format!("http://{addr}{path}");
    let stored = stored_pages(&kb);
    assert_eq!(
        stored,
        [(url("/fr").as_str(), 0), (url("/tarifs").as_str(), 1)]
    );
    let not_stored = |path: &str, depth: i64, reason: &str| json!({"url": url(path), "depth": depth, "status": "skipped", "reason": reason});
    assert_eq!(
        kb["pages_not_stored"],
        json!([
            not_stored("/", 0, "redirected"),
            not_stored("/boucle-a", 1, "redirect_loop"),
            not_stored("/vers-prive", 1, "private_address"),
            not_stored("/vers-admin", 1, "robots_disallowed"),
            not_stored("/chaine", 1, "too_many_redirects"),
        ])
    );
    let expected = [
        "/robots.txt",
        "/sitemap.xml",
        "/",
        "/fr/",
        "/boucle-a",
        "/boucle-b",
        "/vers-prive",
        "/vers-admin",
        "/chaine",
        "/r1",
        "/r2",
        "/r3",
        "/r4",
        "/r5",
        "/tarifs",
    ];
    asked_once_each(&asked, &expected);
    server.stop().await;
}

/// A start page that is only a refresh to `/fr/`, which answers 503 with
/// `Retry-After: 1` once: waited out as any page's 503.
fn refresh_then_busy(path: &str, n: usize) -> (&'static str, String, String) {
    match path {
        "/robots.txt" => (
            "200 OK",
            String::new(),
            "User-agent: *\nAllow: /\n".to_string(),
        ),
        "/" => ("200 OK", String::new(), refresh_to("/fr/")),
        "/fr/" if n == 0 => (
            "503 Service Unavailable",
            "Retry-After: 1\r\n".to_string(),
            String::new(),
        ),
        "/fr/" => (
            "200 OK",
            String::new(),
            tiny_page("Accueil", "Bienvenue au salon, ouvert du mardi au samedi."),
        ),
        _ => ("404 Not Found", String::new(), String::new()),
    }
}

/// The page a meta refresh names answers 503 with a Retry-After: waited
/// out and asked again, as the target of an HTTP redirect is, where the
/// start page failed (`http_503`) and with it the whole job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_whose_page_answers_503_waits_it_out_like_a_redirect() {
    let (mut server, kb, _, asked) = crawl_tiny_site(refresh_then_busy, "a@salon-busy.fr").await;
    assert_eq!(outcome(&kb), json!(["done", null, 1, 2, 1, 1, 0]), "{kb}");
    assert_eq!(asked.get("/fr/"), Some(&2), "{asked:?}");
    assert_eq!(asked.get("/"), Some(&1), "{asked:?}");
    server.stop().await;
}

/// A page of the slash sites below, titled `title`, with a line of text.
fn salon_page(title: &str) -> String {
    tiny_page(
        title,
        &format!("{title} du salon, ouvert du mardi au samedi."),
    )
}

/// A site whose pages live at their slashed path (WordPress): a path
/// without the slash is sent on to it.
fn slashed_site(path: &str, _n: usize) -> (&'static str, String, String) {
    match path {
        "/robots.txt" => ("200 OK", String::new(), "User-agent: *\nAllow: /\n".to_string()),
        "/" => (
            "200 OK",
            String::new(),
            tiny_page(
                "Accueil",
                "Bienvenue au salon. <a href=\"/tarifs/\">Tarifs</a> <a href=\"/horaires/\">Horaires</a> \
                 <a href=\"/contact/\">Contact</a> <a href=\"/plan.html\">Plan</a> \
                 <a href=\"/equipe\">Équipe</a> <a href=\"/galerie/\">Galerie</a>",
            ),
        ),
        "/tarifs/" => ("200 OK", String::new(), salon_page("Tarifs")),
        "/horaires/" => ("200 OK", String::new(), salon_page("Horaires")),
        "/contact/" => ("200 OK", String::new(), salon_page("Contact")),
        "/plan.html" => ("200 OK", String::new(), salon_page("Plan")),
        // A page of its own beside a directory that lists nothing.
        "/equipe" => ("200 OK", String::new(), salon_page("Équipe")),
        "/equipe/" => ("403 Forbidden", String::new(), String::new()),
        "/galerie/" => ("200 OK", String::new(), salon_page("Galerie")),
        p if !p.ends_with('/') && !p.contains('.') => {
            ("301 Moved Permanently", format!("Location: {p}/\r\n"), String::new())
        }
        _ => ("404 Not Found", String::new(), String::new()),
    }
}

/// Once a path without its slash was sent on to the slashed one, the next
/// pages are asked with the slash first: one request each, where each cost
/// two (and a turn of the site's gap). A file's name gets no slash. A
/// slashed form that fails (a directory's 403) has the form listed asked,
/// and the site is no longer taken to want slashes, until a redirect says
/// so again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_that_wants_the_slash_gets_its_pages_asked_with_it() {
    let (mut server, kb, _, asked) = crawl_tiny_site(slashed_site, "a@salon-slash.fr").await;
    assert_eq!(outcome(&kb), json!(["done", null, 1, 7, 7, 0, 0]), "{kb}");
    let expected = [
        "/robots.txt",
        "/sitemap.xml",
        "/",
        "/tarifs",
        "/tarifs/",
        "/horaires/",
        "/contact/",
        "/plan.html",
        "/equipe/",
        "/equipe",
        "/galerie",
        "/galerie/",
    ];
    asked_once_each(&asked, &expected);
    server.stop().await;
}

/// A site that sends a slash-less path on to its slashed form once, and
/// later a slashed one back to its slash-less form.
fn slashed_then_not(path: &str, _n: usize) -> (&'static str, String, String) {
    match path {
        "/robots.txt" => ("200 OK", String::new(), "User-agent: *\nAllow: /\n".to_string()),
        "/" => (
            "200 OK",
            String::new(),
            tiny_page(
                "Accueil",
                "Bienvenue au salon. <a href=\"/tarifs/\">Tarifs</a> <a href=\"/horaires/\">Horaires</a> \
                 <a href=\"/contact\">Contact</a>",
            ),
        ),
        "/tarifs" => ("301 Moved Permanently", "Location: /tarifs/\r\n".to_string(), String::new()),
        "/tarifs/" => ("200 OK", String::new(), salon_page("Tarifs")),
        "/horaires/" => ("301 Moved Permanently", "Location: /horaires\r\n".to_string(), String::new()),
        "/horaires" => ("200 OK", String::new(), salon_page("Horaires")),
        "/contact" => ("200 OK", String::new(), salon_page("Contact")),
        _ => ("404 Not Found", String::new(), String::new()),
    }
}

/// A slashed form the site sends back to the slash-less one: the site is
/// no longer taken to want slashes, and the next page is asked as listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slashed_form_sent_back_stops_the_slash_being_guessed() {
    let (mut server, kb, _, asked) = crawl_tiny_site(slashed_then_not, "a@salon-back.fr").await;
    assert_eq!(outcome(&kb), json!(["done", null, 1, 4, 4, 0, 0]), "{kb}");
    let expected = [
        "/robots.txt",
        "/sitemap.xml",
        "/",
        "/tarifs",
        "/tarifs/",
        "/horaires/",
        "/horaires",
        "/contact",
    ];
    asked_once_each(&asked, &expected);
    server.stop().await;
}

/// `/` links `/tarifs` and `/absente` (404).
fn three_pages(path: &str, _: usize) -> (&'static str, String, String) {
    match path {
        "/" => (
            "200 OK",
            String::new(),
            tiny_page(
                "Accueil",
                "Bienvenue au salon de coiffure du quartier. <a href=\"/tarifs\">Tarifs</a> \
                 <a href=\"/absente\">Ancienne page</a>",
            ),
        ),
        "/tarifs" => (
            "200 OK",
            String::new(),
            tiny_page(
                "Tarifs",
                "Coupe femme 45 euros, coupe homme 28 euros, brushing 30 euros.",
            ),
        ),
        _ => ("404 Not Found", String::new(), String::new()),
    }
}

/// A server without a crawler (the crawl command's to run) and a session of
/// `email` completed with the site of [`three_pages`] queued: the server,
/// its database file and the site's address (allowed).
async fn three_pages_queued(email: &str) -> (TestServer, std::path::PathBuf, std::net::SocketAddr) {
    let (addr, _) = tiny_site(three_pages);
    site_queued(addr, email).await
}

/// A session completed with the site at `addr` to crawl, queued on a
/// server that runs no crawler; and the server's database.
async fn site_queued(
    addr: std::net::SocketAddr,
    email: &str,
) -> (TestServer, std::path::PathBuf, std::net::SocketAddr) {
    let (mut config, dir) = temp_config();
    config.crawl = CrawlConfig {
        workers: 0,
        allow: AllowList::parse(&[addr.to_string()]).unwrap(),
        ..CrawlConfig::default()
    };
    let db_path = config.db_path.clone();
    let server = TestServer::start(config, dir).await;
    completed_website_session(&server, email, &format!("http://{addr}/")).await;
    (server, db_path, addr)
}

/// `crawl --once` on `db_path`, allowed to crawl `addr`, at the info level:
/// its crawl lines (what follows ": crawl "), once it exited 0, and its
/// whole log.
async fn crawl_once_logging(
    db_path: std::path::PathBuf,
    addr: std::net::SocketAddr,
) -> (Vec<String>, String) {
    let (ok, log) = tokio::task::spawn_blocking(move || {
        output_of(
            std::process::Command::new(env!("CARGO_BIN_EXE_onboarding-server"))
                .args(["--db"])
                .arg(&db_path)
                .args(["--crawl-allow-host", &addr.to_string()])
                .args(["crawl", "--once", "--log-level", "info"])
                .env("NO_COLOR", "1"),
        )
    })
    .await
    .unwrap();
    assert!(ok, "{log}");
    let lines = log
        .lines()
        .filter_map(|l| l.split_once(": crawl ").map(|(_, line)| line.to_string()))
        .collect();
    (lines, log)
}

/// A crawl shows its progress while it runs: a line when it starts, then
/// one per page with the job's counters. The crawl command logged nothing
/// between "crawling" and "crawl finished", a minute of silence for a
/// site of 50 pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_logs_its_counters_page_by_page() {
    let (mut server, db_path, addr) = three_pages_queued("a@salon-trois.fr").await;
    let (lines, log) = crawl_once_logging(db_path, addr).await;
    assert_eq!(
        lines,
        [
            format!("started job=1 url=http://{addr}/ attempt=1 pages_found=1 pages_stored=0"),
            format!(
                "page job=1 url=http://{addr}/ status=\"stored\" reason=null found=3 stored=1 skipped=0 failed=0"
            ),
            format!(
                "page job=1 url=http://{addr}/tarifs status=\"stored\" reason=null found=3 stored=2 skipped=0 failed=0"
            ),
            format!(
                "page job=1 url=http://{addr}/absente status=\"failed\" reason=\"http_404\" found=3 stored=2 skipped=0 failed=1"
            ),
            "finished job=1 status=\"done\" error_code=null stored=2".to_string(),
        ],
        "{log}"
    );
    server.stop().await;
}

/// An attempt that fails for the whole site, with attempts left, logs that
/// the job is queued again and when it is next tried: it logged "crawl
/// finished" with the status `queued`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attempt_logs_that_the_job_is_queued_again() {
    let (site, _) = tiny_site(|_, _| ("503 Service Unavailable", String::new(), String::new()));
    let (mut server, db_path, addr) = site_queued(site, "a@salon-ferme.fr").await;
    let (lines, log) = crawl_once_logging(db_path, addr).await;
    assert_eq!(lines.len(), 2, "{log}");
    assert_eq!(
        lines[0],
        format!("started job=1 url=http://{addr}/ attempt=1 pages_found=1 pages_stored=0")
    );
    let (said, next) = lines[1]
        .split_once(" next_attempt_at=")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(
        said,
        "attempt failed; the job is queued again job=1 error_code=\"robots_unavailable\" attempts=1"
    );
    assert!(next.starts_with("\"20") && next.ends_with("Z\""), "{next}");
    server.stop().await;
}

/// `crawl --once` stopped by a signal before its due jobs were crawled
/// exits 1, saying so, its job given back: it exited 0, and a dropped SSH
/// session looked like a crawl done to `crawl --once && …`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_once_stopped_by_a_signal_fails() {
    use std::io::BufRead;
    let (mut server, db_path, addr) = three_pages_queued("a@salon-stop.fr").await;
    let (status, log) = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_onboarding-server"))
            .arg("--db")
            .arg(&db_path)
            .args(["--crawl-allow-host", &addr.to_string()])
            .args(["crawl", "--once"])
            .env("NO_COLOR", "1")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut log = Vec::new();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        // The first page crawled, then SIGTERM (bounded: the crawl's lines).
        for line in lines.by_ref().take(50) {
            let line = line.unwrap();
            let first_page = line.contains(": crawl page ");
            log.push(line);
            if first_page {
                break;
            }
        }
        std::process::Command::new("kill")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        log.extend(lines.map_while(Result::ok));
        (child.wait().unwrap(), log.join("\n"))
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains(
            "onboarding-server: error: stopped by a signal before every due job was crawled: \
             those left are queued for the next run"
        ),
        "{log}"
    );
    assert!(log.contains("a stopped worker's job given back"), "{log}");
    let job = server
        .read_db()
        .query_row("SELECT status FROM kb_crawl_jobs", [], |r| {
            r.get::<_, String>(0)
        })
        .unwrap();
    assert_eq!(job, "queued");
    server.stop().await;
}

/// A crawl whose database fails it (a full disk: the page cannot be
/// stored) gives its job back, the attempt not counted, and claims again
/// after a wait: the job resumes once the database writes again and ends
/// `done` on its first attempt. It stayed leased until its lease ran out,
/// and each takeover counted an attempt: a disk full for three leases
/// ended the job `timeout`, its pages never fetched, and nothing resumed
/// it once space came back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_its_database_fails_gives_the_job_back_and_resumes() {
    let (addr, asked) = tiny_site(|path, _| match path {
        "/" => (
            "200 OK",
            String::new(),
            tiny_page(
                "Accueil",
                "Bienvenue au salon. <a href=\"/tarifs\">Tarifs</a>",
            ),
        ),
        "/tarifs" => (
            "200 OK",
            String::new(),
            tiny_page("Tarifs", "Une coupe femme coûte 45 euros."),
        ),
        _ => ("404 Not Found", String::new(), String::new()),
    });
    let (mut config, dir) = temp_config();
    config.crawl = CrawlConfig {
        workers: 1,
        allow: AllowList::parse(&[addr.to_string()]).unwrap(),
        lease_seconds: 60,
        idle_poll: Duration::from_millis(200),
        storage_backoff: Duration::from_millis(500),
        ..CrawlConfig::default()
    };
    let server = TestServer::start(config, dir).await;
    assert_eq!(server.get("/healthz").await.status, 200);
    let db = Connection::open(&server.db_path).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    // What SQLite says of a full disk, for every document stored until the
    // flag is cleared.
    db.execute_batch(
        "CREATE TABLE disk_full (x);
         INSERT INTO disk_full VALUES (1);
         CREATE TRIGGER disk_full BEFORE INSERT ON kb_documents
             WHEN EXISTS (SELECT 1 FROM disk_full)
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .unwrap();
    let s = completed_website_session(&server, "bonjour@salon-lea.fr", &format!("http://{addr}/"))
        .await;
    let asked_home = || asked.lock().unwrap().get("/").copied().unwrap_or(0);
    // Bounded: 20 s, far under the 60 s lease a job kept would hold.
    for _ in 0..200 {
        if asked_home() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        asked_home() >= 2,
        "the job was not given back and claimed again"
    );
    let (attempts, stored, bytes): (i64, i64, i64) = db
        .query_row(
            "SELECT attempts, pages_stored, bytes_fetched FROM kb_crawl_jobs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    // Claimed again (1) or given back again, waiting (0): never counted.
    // What the crawls given back fetched counts against the job's budget.
    assert!(attempts <= 1 && stored == 0, "{attempts} {stored}");
    assert!(
        bytes > 0,
        "the budget spent was not given back with the job"
    );
    db.execute_batch("DELETE FROM disk_full").unwrap();
    let kb = wait_for_job(&server, &s).await;
    assert_eq!(outcome(&kb), json!(["done", null, 1, 2, 2, 0, 0]));
}
