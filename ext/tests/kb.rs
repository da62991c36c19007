//! The knowledge base in the library: the schema upgrade, the kb step's
//! `documents` and address rules, completion storing documents, the worker
//! functions (lease, takeover, counters, retries) and search.

mod common;

use common::{Db, T0};
use onboarding::kb::{AllowList, Settings, CUT};
use onboarding::PinnedEnv;
use rusqlite::Connection;
use serde_json::{json, Value};

fn ready(db: &Db, kb: &str) -> String {
    let s = db.create();
    db.business(&s, "contact@salon.fr");
    db.vapi(&s);
    db.step(&s, "kb", kb).unwrap();
    s
}

/// `onboarding_kb_search(payload)`: the answer, or the error's text.
fn kb_search(db: &Db, payload: Value) -> Result<Value, String> {
    db.call("SELECT onboarding_kb_search(?1)", &[&payload.to_string()])
}

/// How many chunks session `s`'s search for `q` answers.
fn results(db: &Db, s: &str, q: &str) -> usize {
    kb_search(db, json!({"session_id": s, "query": q})).unwrap()["results"]
        .as_array()
        .unwrap()
        .len()
}

fn rows(conn: &Connection, sql: &str) -> Vec<Vec<String>> {
    let mut stmt = conn.prepare(sql).unwrap();
    let n = stmt.column_count();
    let mut q = stmt.query([]).unwrap();
    let mut out = Vec::new();
    while let Some(r) = q.next().unwrap() {
        out.push(
            (0..n)
                .map(|i| format!("{:?}", r.get::<_, rusqlite::types::Value>(i).unwrap()))
                .collect(),
        );
    }
    out
}

/// Copies `table`'s rows from `from` into `to`, the columns `to` has only.
fn copy_001_columns(from: &Connection, to: &Connection, table: &str) {
    let columns: Vec<String> = to
        .prepare(&format!(
            "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
        ))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let list = columns.join(", ");
    let marks = vec!["?"; columns.len()].join(", ");
    let mut insert = to
        .prepare(&format!("INSERT INTO {table} ({list}) VALUES ({marks})"))
        .unwrap();
    let mut select = from
        .prepare(&format!("SELECT {list} FROM {table} ORDER BY rowid"))
        .unwrap();
    let mut rows = select.query([]).unwrap();
    while let Some(row) = rows.next().unwrap() {
        let values: Vec<rusqlite::types::Value> =
            (0..columns.len()).map(|i| row.get(i).unwrap()).collect();
        insert.execute(rusqlite::params_from_iter(values)).unwrap();
    }
}

#[test]
fn upgrading_a_001_database_keeps_every_row() {
    // A whole onboarding with a website, completed by today's library, then
    // its rows as the 001 schema holds them (its columns only) in a database
    // at version 1: the functions themselves now need the later tables.
    let full = Db::memory();
    let s = ready(
        &full,
        r#"{"method":"website","crawl_url":"https://salon.fr"}"#,
    );
    full.complete(&s).unwrap();
    let conn = Connection::open_in_memory().unwrap();
    onboarding::register_with(&conn, PinnedEnv::new(T0, 3)).unwrap();
    conn.execute_batch(
        "CREATE TABLE onboarding_schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL);
         INSERT INTO onboarding_schema_migrations VALUES (1, '001_init', '2026-11-01T00:00:00.000Z');",
    )
    .unwrap();
    conn.execute_batch(onboarding::MIGRATIONS[0].sql).unwrap();
    for table in [
        "tenants",
        "onboarding_sessions",
        "onboarding_analytics",
        "omni_agent_configs",
        "omni_phone_mappings",
        "kb_crawl_jobs",
    ] {
        copy_001_columns(&full.conn, &conn, table);
    }
    let db = Db {
        conn,
        env: PinnedEnv::new(T0, 3),
    };
    let tables = [
        "tenants",
        "onboarding_sessions",
        "onboarding_analytics",
        "omni_agent_configs",
        "omni_phone_mappings",
        "kb_crawl_jobs",
    ];
    let before: Vec<_> = tables
        .iter()
        .map(|t| rows(&db.conn, &format!("SELECT * FROM {t}")))
        .collect();
    assert_eq!(
        db.scalar("SELECT onboarding_migrate()"),
        rusqlite::types::Value::Integer(onboarding::latest_version())
    );
    for (t, old) in tables.iter().zip(&before) {
        let width = old[0].len();
        let now: Vec<Vec<String>> = rows(&db.conn, &format!("SELECT * FROM {t}"))
            .into_iter()
            .map(|r| r[..width].to_vec())
            .collect();
        assert_eq!(&now, old, "{t}");
    }
    assert_eq!(
        rows(&db.conn, "SELECT status, attempts, pages_found, pages_stored, error_code, lease_owner FROM kb_crawl_jobs"),
        [["Text(\"queued\")", "Integer(0)", "Integer(0)", "Integer(0)", "Null", "Null"]]
    );
    // The upgraded job is claimable like a new one.
    let claimed = db
        .call("SELECT onboarding_kb_claim('{\"worker\":\"w1\"}')", &[])
        .unwrap();
    assert_eq!(
        claimed["job"]["frontier"],
        json!([{"url": "https://salon.fr/", "depth": 0, "retries": 0}])
    );
}

#[test]
fn documents_rules_name_the_field() {
    let db = Db::memory();
    let s = db.create();
    let long_title = "t".repeat(201);
    let long_content = "c".repeat(200_001);
    let twenty_one: Vec<Value> = (0..21)
        .map(|i| json!({"title": format!("D{i}"), "content": "x"}))
        .collect();
    let cases = [
        (
            json!({"method":"documents"}),
            "documents is required when method is 'documents'".to_string(),
        ),
        (
            json!({"method":"documents","documents":[]}),
            "documents holds 0 items; 1 to 20 are allowed".to_string(),
        ),
        (
            json!({"method":"documents","documents":twenty_one}),
            "documents holds 21 items; 1 to 20 are allowed".to_string(),
        ),
        (
            json!({"method":"documents","documents":"Tarifs"}),
            "documents must be an array of {\"title\",\"content\"} objects".to_string(),
        ),
        (
            json!({"method":"documents","documents":[{"title":"a","content":"b"},"x"]}),
            "documents[1] must be an object with title and content".to_string(),
        ),
        (
            json!({"method":"documents","documents":[{"title":"a","content":"b"},{"title":"b","content":"c"},{"title":"  ","content":"c"}]}),
            "documents[2].title must not be empty".to_string(),
        ),
        (
            json!({"method":"documents","documents":[{"title":long_title,"content":"b"}]}),
            "documents[0].title is 201 characters long; at most 200 are allowed".to_string(),
        ),
        (
            json!({"method":"documents","documents":[{"title":"a"}]}),
            "documents[0].content is required".to_string(),
        ),
        (
            json!({"method":"documents","documents":[{"title":"a","content":long_content}]}),
            "documents[0].content is 200001 characters long; at most 200000 are allowed"
                .to_string(),
        ),
        (
            json!({"method":"documents","documents":[{"title":"a\nb","content":"x"}]}),
            "documents[0].title must fit on one line".to_string(),
        ),
        (
            json!({"method":"documents","documents":[{"title":"a\u{2028}b","content":"x"}]}),
            "documents[0].title must fit on one line".to_string(),
        ),
        (
            json!({"method":"documents","documents":[{"title":"a","content":"x\u{0007}"}]}),
            "documents[0].content contains a control character (U+0007, character 2 of 2); \
             line breaks and tabs are the only ones allowed"
                .to_string(),
        ),
        (
            json!({"method":"documents","documents":[{"title":"a\u{c}b","content":"x"}]}),
            "documents[0].title contains a control character (U+000C, character 2 of 3)"
                .to_string(),
        ),
        (
            // Counted in the text as sent, before the blank lines and the
            // zero-width space trimmed off its start.
            json!({"method":"documents","documents":[{"title":"a","content":"\n\n\u{200b}x\u{1}"}]}),
            "documents[0].content contains a control character (U+0001, character 5 of 5); \
             line breaks and tabs are the only ones allowed"
                .to_string(),
        ),
    ];
    let before = db.snapshot();
    for (payload, detail) in cases {
        assert_eq!(
            db.step(&s, "kb", &payload.to_string()).unwrap_err(),
            format!("onboarding_step: invalid_field: {detail}")
        );
    }
    assert_eq!(db.snapshot(), before);
}

/// The limits are inclusive: a title of 200 characters and a content of
/// 200,000 are taken, and kept whole. A content counts as sent: 199,999
/// characters with a space before and a line break after are 200,001.
#[test]
fn documents_at_their_limits_are_taken_whole() {
    let db = Db::memory();
    let s = db.create();
    let title = "é".repeat(200);
    let content = "x".repeat(200_000);
    let docs = json!({"method":"documents","documents":[{"title": title, "content": content}]});
    assert_eq!(
        db.step(&s, "kb", &docs.to_string()).unwrap()["current_step"],
        json!(5)
    );
    assert!(
        db.get(&s)["steps"]["kb"] == docs,
        "the documents at their limits were not kept whole"
    );
    let padded = format!(" {}\n", "x".repeat(199_999));
    let before = db.snapshot();
    assert_eq!(
        db.step(
            &s,
            "kb",
            &json!({"method":"documents","documents":[{"title":"a","content":padded}]}).to_string()
        )
        .unwrap_err(),
        "onboarding_step: invalid_field: documents[0].content is 200001 characters long; \
         at most 200000 are allowed"
    );
    assert_eq!(db.snapshot(), before);
}

#[test]
fn a_large_payload_of_many_small_values_is_refused_before_it_is_parsed() {
    let db = Db::memory();
    let s = db.create();
    let before = db.snapshot();
    // 40,001 values in 80 KB: parsed, hundreds of times its size.
    let zeros = vec!["0"; 40_000].join(",");
    let payload = format!(r#"{{"method":"documents","documents":[{zeros}]}}"#);
    assert_eq!(
        db.step(&s, "kb", &payload).unwrap_err(),
        "onboarding_step: invalid_json: payload holds more than 10000 JSON values (the \
         largest valid one holds about a hundred)"
    );
    assert_eq!(db.snapshot(), before);
    // Twenty documents of 200,000 characters, commas and brackets in their
    // text, are far from it.
    let content = "[Lundi, mardi], {samedi}, ".repeat(200_000 / 26);
    let docs: Vec<Value> = (0..20)
        .map(|i| json!({"title": format!("Page {i}"), "content": content}))
        .collect();
    let payload = json!({"method": "documents", "documents": docs}).to_string();
    assert!(payload.len() > 3_900_000);
    assert_eq!(
        db.step(&s, "kb", &payload).unwrap()["current_step"],
        json!(5)
    );
}

#[test]
fn the_step_refuses_every_non_public_form_and_stores_the_normalised_url() {
    let db = Db::memory();
    let s = db.create();
    let hint = "(expected a public http or https address such as 'https://mon-site.fr')";
    for (url, why) in [
        ("http://[::ffff:127.0.0.1]/", "is not a public address"),
        ("http://LOCALHOST./", "is not a public address"),
        ("http://[64:ff9b::7f00:1]/", "is not a public address"),
        ("http://100.64.0.1/", "is not a public address"),
        ("https://evil.example\\@127.0.0.1/", "contains a backslash"),
        ("http://169.254.169.254/", "is not a public address"),
        ("http://10.1.2.3/", "is not a public address"),
        ("http://[::1]/", "is not a public address"),
        (
            "https://salon.fr:8443/",
            "uses a port other than 80 and 443",
        ),
    ] {
        let payload = json!({"method": "website", "crawl_url": url}).to_string();
        assert_eq!(
            db.step(&s, "kb", &payload).unwrap_err(),
            format!("onboarding_step: invalid_field: crawl_url '{url}' {why} {hint}"),
        );
    }
    db.step(
        &s,
        "kb",
        r#"{"method":"website","crawl_url":"https://WWW.Salon.fr/?utm_source=fb#x"}"#,
    )
    .unwrap();
    assert_eq!(
        db.get(&s)["steps"]["kb"]["crawl_url"],
        "https://www.salon.fr/"
    );
}

#[test]
fn the_allow_list_is_the_one_exception_for_the_step() {
    let conn = Connection::open_in_memory().unwrap();
    let settings = Settings {
        crawl_allow_hosts: AllowList::parse(&["127.0.0.1:8080"]).unwrap(),
    };
    onboarding::register_with_settings(&conn, PinnedEnv::new(T0, 5), settings).unwrap();
    let db = Db {
        conn,
        env: PinnedEnv::new(T0, 5),
    };
    db.scalar("SELECT onboarding_migrate()");
    let s = db.create();
    db.step(
        &s,
        "kb",
        r#"{"method":"website","crawl_url":"http://127.0.0.1:8080/accueil/"}"#,
    )
    .unwrap();
    assert_eq!(
        db.get(&s)["steps"]["kb"]["crawl_url"],
        "http://127.0.0.1:8080/accueil"
    );
    assert!(db
        .step(
            &s,
            "kb",
            r#"{"method":"website","crawl_url":"http://127.0.0.1:8081/"}"#
        )
        .is_err());
}

const SALON: &str = "# Salon Léa\n\nCoiffure mixte à Lyon.\n\n## Horaires d'ouverture\n\n| Jour | Heures |\n|---|---|\n| Lundi | Fermé |\n| Samedi | 9h00 – 18h00 |\n";
const TARIFS: &str = "# Tarifs\n\n| Prestation | Prix |\n|---|---|\n| Coupe homme | 25 € |\n| Coupe femme | 38 € |\n";

/// A tenant's results, scores included, are its own: another tenant's
/// knowledge base changes neither their order nor their scores (FTS5's
/// bm25() counts every row of the table).
#[test]
fn search_scores_do_not_depend_on_other_tenants() {
    let db = Db::memory();
    let ours = json!({"method":"documents","documents":[
        {"title":"Le salon","content":SALON},
        {"title":"Tarifs","content":TARIFS}]});
    let s = ready(&db, &ours.to_string());
    db.complete(&s).unwrap();
    let search = || kb_search(&db, json!({"session_id": s, "query": "coupe le samedi"})).unwrap();
    let alone = search();
    let theirs: Vec<Value> = (0..12)
        .map(|i| json!({"title": format!("Samedi {i}"), "content": format!("Ouvert le samedi, coupe {i}.")}))
        .collect();
    let other = db.create();
    db.business(&other, "contact@autre-salon.fr");
    db.vapi(&other);
    db.step(
        &other,
        "kb",
        &json!({"method":"documents","documents":theirs}).to_string(),
    )
    .unwrap();
    db.complete(&other).unwrap();
    assert_eq!(search(), alone);
    assert_eq!(
        alone["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["title"].clone(), r["score"].clone()))
            .collect::<Vec<_>>(),
        // "coupe" twice in the price list, "samedi" once in the hours.
        vec![
            (json!("Tarifs"), json!(1.0126)),
            (json!("Le salon"), json!(0.6385))
        ]
    );
}

/// FTS5 matches with every accent removed, French or not: the score
/// counts the chunk's terms the same way, so such a match is not a zero.
#[test]
fn a_match_through_a_foreign_accent_scores_as_any_match() {
    let db = Db::memory();
    let docs = json!({"method":"documents","documents":[
        {"title":"Équipe","content":"Nos coiffeurs : Minh Nguyễn et Jan Dvořák."},
        {"title":"Tarifs","content":TARIFS}]});
    let s = ready(&db, &docs.to_string());
    db.complete(&s).unwrap();
    for query in ["nguyen", "Dvorak", "Nguyễn"] {
        let found = kb_search(&db, json!({"session_id": s, "query": query})).unwrap();
        let results = found["results"].as_array().unwrap();
        assert_eq!(results.len(), 1, "{query}: {found}");
        assert_eq!(results[0]["title"], "Équipe");
        assert!(
            results[0]["score"].as_f64().unwrap() > 0.1,
            "{query}: {found}"
        );
    }
}

#[test]
fn a_question_and_a_page_meet_whichever_dropped_its_accents() {
    let db = Db::memory();
    let docs = json!({"method":"documents","documents":[
        {"title":"Forfaits","content":"## Forfait mariée\n\nCoiffure et maquillage de la mariée, essai compris : 180 €."},
        {"title":"Salon","content":"Le salon, place du Marche, a ete renove dernierement."}]});
    let s = ready(&db, &docs.to_string());
    db.complete(&s).unwrap();
    let only = |question: &str| {
        let found = kb_search(&db, json!({"session_id": s, "query": question})).unwrap();
        let results = found["results"].as_array().unwrap().clone();
        assert_eq!(results.len(), 1, "{question}: {found}");
        results[0]["title"].as_str().unwrap().to_string()
    };
    // "mariée" is stemmed `mari`, "mariee" `marie`: the question asks for
    // both, the page's term among them.
    assert_eq!(only("mariee"), "Forfaits");
    assert_eq!(only("la MARIEE ?"), "Forfaits");
    assert_eq!(only("Mariée"), "Forfaits");
    let found = kb_search(&db, json!({"session_id": s, "query": "mariee"})).unwrap();
    assert_eq!(found["results"][0]["heading"], "Forfait mariée");
    assert_eq!(only("place du marché"), "Salon");
    // A page typed without accents, a question with them: the question
    // also asks for the terms of its plain spelling.
    assert_eq!(only("dernièrement"), "Salon");
}

/// A PDF's text pasted with its page breaks (form feeds), a vertical tab
/// and a NEL: saved with line breaks in their place, the length unchanged.
#[test]
fn a_pdfs_page_breaks_are_saved_as_line_breaks() {
    let db = Db::memory();
    let s = db.create();
    let content = "Page 1 : horaires.\n\u{c}Page 2 : tarifs.\u{b}Coupe 25 €\u{85}Fin.\u{c}";
    db.step(
        &s,
        "kb",
        &json!({"method":"documents","documents":[{"title":"Plaquette","content":content}]})
            .to_string(),
    )
    .unwrap();
    assert_eq!(
        db.get(&s)["steps"]["kb"]["documents"],
        json!([{"title":"Plaquette",
                "content":"Page 1 : horaires.\n\nPage 2 : tarifs.\nCoupe 25 €\nFin."}])
    );
}

#[test]
fn a_word_with_soft_hyphens_inside_is_found_by_its_plain_spelling() {
    let db = Db::memory();
    // As a CMS writes long words, so that they break nicely on a phone.
    let content = "Ré\u{AD}ser\u{AD}va\u{AD}tion obli\u{AD}ga\u{AD}toire pour les mariages.";
    let docs = json!({"method": "documents", "documents": [
        {"title": "Mariages", "content": content},
        {"title": "Salon", "content": "Le salon est ouvert le samedi."}]});
    let s = ready(&db, &docs.to_string());
    db.complete(&s).unwrap();
    let search = |q: &str| kb_search(&db, json!({"session_id": s, "query": q})).unwrap();
    let found = search("une réservation est-elle obligatoire ?");
    assert_eq!(
        found["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["title"].clone(), r["snippet"].clone()))
            .collect::<Vec<_>>(),
        [(
            json!("Mariages"),
            json!("Ré\u{AD}ser\u{AD}va\u{AD}tion obli\u{AD}ga\u{AD}toire pour les mariages.")
        )]
    );
}

#[test]
fn completion_stores_documents_and_search_finds_them_in_french() {
    let db = Db::memory();
    let docs = json!({"method":"documents","documents":[
        {"title":"Le salon","content":SALON},
        {"title":"Tarifs","content":TARIFS},
        {"title":"Copie","content":TARIFS}]});
    let s = ready(&db, &docs.to_string());
    let done = db.complete(&s).unwrap();
    assert_eq!(
        done["synced"]["knowledge_base"],
        // The copy is a document of its own: the tenant pasted three items,
        // and merging two would leave one title out of the knowledge base.
        json!({"method":"documents","crawl_job":null,"documents":{"documents_stored":3,"chunks":3}})
    );
    let kb = db.call("SELECT onboarding_kb_get(?1)", &[&s]).unwrap();
    let tenant = kb["tenant_id"].as_str().unwrap().to_string();
    assert_eq!(
        kb,
        json!({"success":true,"session_id":s,"tenant_id":tenant,"method":"documents","job":null,
               "documents":[
                 {"document_id":1,"url":null,"title":"Le salon","source":"documents","depth":null,"chunks":1},
                 {"document_id":2,"url":null,"title":"Tarifs","source":"documents","depth":null,"chunks":1},
                 {"document_id":3,"url":null,"title":"Copie","source":"documents","depth":null,"chunks":1}],
               "pages_not_stored":[]})
    );
    // The session's own state says what the synced knowledge base holds.
    assert_eq!(
        db.get(&s)["omnichannel"]["knowledge_base"],
        json!({"documents": 3, "chunks": 3})
    );
    let search =
        |q: &str| kb_search(&db, json!({"session_id": s, "query": q, "limit": 1})).unwrap();
    let open = search("vous êtes ouverts le samedi ?");
    assert_eq!(open["results"][0]["title"], "Le salon");
    assert_eq!(open["results"][0]["snippet"], "| Samedi | 9h00 – 18h00 |");
    // In a knowledge base of three chunks a term of the salon's is in one
    // of them: its weight is ln(1 + 2.5 / 1.5), well above zero.
    assert_eq!(open["results"][0]["score"], json!(2.6212));
    let price = search("c'est combien une coupe homme ?");
    assert_eq!(price["results"][0]["title"], "Tarifs");
    assert_eq!(price["results"][0]["snippet"], "| Coupe homme | 25 € |");
    assert_eq!(price["results"][0]["heading"], "Tarifs");
    // Its terms are in two chunks of three (the copy's too): weighed
    // ln(1 + 1.5 / 2.5) each.
    assert_eq!(price["results"][0]["score"], json!(2.5735));
    let by_tenant = kb_search(&db, json!({"tenant_id": tenant, "query": "tarifs"})).unwrap();
    // The price list and its copy.
    assert_eq!(
        by_tenant["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["title"].clone())
            .collect::<Vec<_>>(),
        vec![json!("Tarifs"), json!("Copie")]
    );
    // Both, agreeing: the same answer; disagreeing: refused.
    let both = |tenant_id: &str| {
        kb_search(
            &db,
            json!({"session_id": s, "tenant_id": tenant_id, "query": "tarifs"}),
        )
    };
    assert_eq!(both(&tenant).unwrap(), by_tenant);
    assert_eq!(
        both("tenant_other").unwrap_err(),
        "onboarding_kb_search: invalid_field: tenant_id 'tenant_other' is not the tenant of \
         session_id (give one of them)"
    );
}

/// `onboarding_kb_prepare(session_id)`: the answer, or the error's text.
fn prepare(db: &Db, session: &str) -> Result<Value, String> {
    db.call("SELECT onboarding_kb_prepare(?1)", &[&session])
}

/// The completion's documents stored ahead, one a call, leave the very
/// database (every row of every table, the index's included) and the very
/// answer that the completion alone leaves.
#[test]
fn documents_prepared_one_a_call_complete_as_the_completion_alone_does() {
    let docs = json!({"method":"documents","documents":[
        {"title":"Le salon","content":SALON},
        {"title":"Tarifs","content":TARIFS},
        {"title":"Copie","content":TARIFS}]})
    .to_string();
    let alone = Db::memory();
    let s = ready(&alone, &docs);
    let expected = alone.complete(&s).unwrap();

    let ahead = Db::memory();
    let t = ready(&ahead, &docs);
    assert_eq!(s, t, "the same pinned randomness, the same session");
    for (item, chunks) in [(0, 1), (1, 1), (2, 1)] {
        assert_eq!(
            prepare(&ahead, &t).unwrap(),
            json!({"success":true,"session_id":t,
                   "prepared":{"item":item,"document_id":item + 1,"chunks":chunks}})
        );
    }
    let before = ahead.snapshot();
    assert_eq!(
        prepare(&ahead, &t).unwrap(),
        json!({"success":true,"session_id":t,"prepared":null})
    );
    assert_eq!(ahead.snapshot(), before, "nothing left: nothing written");
    // The session is still in progress, its documents searchable already.
    assert_eq!(ahead.get(&t)["status"], "in_progress");
    assert_eq!(ahead.count("kb_chunks_index"), 3);

    assert_eq!(ahead.complete(&t).unwrap(), expected);
    assert_eq!(ahead.snapshot(), alone.snapshot());
    // Completed: nothing left to prepare, nothing written.
    let done = ahead.snapshot();
    assert_eq!(
        prepare(&ahead, &t).unwrap(),
        json!({"success":true,"session_id":t,"prepared":null})
    );
    assert_eq!(ahead.snapshot(), done);
}

/// A document prepared for an item the kb step no longer lists (saved
/// again since, or switched to a website) is not the tenant's knowledge:
/// it goes when the step is saved again, with its chunks and their index
/// entries, and is not searchable meanwhile.
#[test]
fn a_document_prepared_for_a_list_saved_again_since_goes_with_the_step() {
    let db = Db::memory();
    let first = json!({"method":"documents","documents":[
        {"title":"Le salon","content":SALON},
        {"title":"Tarifs","content":TARIFS}]});
    let s = ready(&db, &first.to_string());
    assert_eq!(prepare(&db, &s).unwrap()["prepared"]["item"], 0);
    assert_eq!(prepare(&db, &s).unwrap()["prepared"]["item"], 1);
    let search = |q: &str| {
        kb_search(&db, json!({"session_id": s, "query": q})).unwrap()["results"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(search("salon"), 1);
    // Saved again: item 0 is now the price list, item 1 is gone.
    let again = json!({"method":"documents","documents":[{"title":"Tarifs","content":TARIFS}]});
    db.step(&s, "kb", &again.to_string()).unwrap();
    // The salon's text, no longer listed, is nobody's knowledge now.
    assert_eq!(db.count("kb_documents"), 0);
    assert_eq!(db.count("kb_chunks_index"), 0);
    assert_eq!(search("salon"), 0);
    let done = db.complete(&s).unwrap();
    assert_eq!(
        done["synced"]["knowledge_base"]["documents"],
        json!({"documents_stored":1,"chunks":1})
    );
    let kb = db.call("SELECT onboarding_kb_get(?1)", &[&s]).unwrap();
    // Both prepared rows went before the list was stored: the id is free.
    assert_eq!(
        kb["documents"],
        json!([{"document_id":1,"url":null,"title":"Tarifs","source":"documents","depth":null,"chunks":1}])
    );
    assert_eq!(db.count("kb_documents"), 1);
    assert_eq!(db.count("kb_chunks"), 1);
    assert_eq!(db.count("kb_chunks_index"), 1);

    // Saved again with the same text under another title: the item's
    // identity (its place, its words) is the same, its document is not.
    let db = Db::memory();
    let s = ready(&db, &first.to_string());
    assert_eq!(prepare(&db, &s).unwrap()["prepared"]["item"], 0);
    let retitled =
        json!({"method":"documents","documents":[{"title":"Notre salon","content":SALON}]});
    db.step(&s, "kb", &retitled.to_string()).unwrap();
    assert_eq!(db.count("kb_documents"), 0);
    let done = db.complete(&s).unwrap();
    assert_eq!(
        done["synced"]["knowledge_base"]["documents"],
        json!({"documents_stored":1,"chunks":1})
    );
    let kb = db.call("SELECT onboarding_kb_get(?1)", &[&s]).unwrap();
    assert_eq!(
        kb["documents"],
        json!([{"document_id":1,"url":null,"title":"Notre salon","source":"documents","depth":null,"chunks":1}])
    );
    assert_eq!(db.count("kb_chunks_index"), 1);

    // Switched to a website: no pasted document is left.
    let db = Db::memory();
    let s = ready(&db, &first.to_string());
    assert_eq!(prepare(&db, &s).unwrap()["prepared"]["item"], 0);
    db.kb_website(&s);
    assert_eq!(db.count("kb_documents"), 0);
    assert_eq!(
        prepare(&db, &s).unwrap(),
        json!({"success":true,"session_id":s,"prepared":null})
    );
    db.complete(&s).unwrap();
    assert_eq!(db.count("kb_documents"), 0);
    assert_eq!(db.count("kb_chunks"), 0);
    assert_eq!(db.count("kb_chunks_index"), 0);
}

#[test]
fn prepare_errors_write_nothing() {
    let db = Db::memory();
    let before = db.snapshot();
    assert_eq!(
        prepare(&db, "onb_missing").unwrap_err(),
        "onboarding_kb_prepare: not_found: session 'onb_missing' does not exist"
    );
    assert_eq!(
        db.call("SELECT onboarding_kb_prepare(NULL)", &[])
            .unwrap_err(),
        "onboarding_kb_prepare: invalid_field: session_id is required"
    );
    assert_eq!(db.snapshot(), before);
    // No kb step yet: nothing to prepare.
    let s = db.create();
    assert_eq!(
        prepare(&db, &s).unwrap(),
        json!({"success":true,"session_id":s,"prepared":null})
    );
    // Documents, but no business step: the completion would refuse the
    // session (`incomplete`), so nothing is stored ahead.
    let docs = json!({"method":"documents","documents":[{"title":"Tarifs","content":TARIFS}]});
    db.step(&s, "kb", &docs.to_string()).unwrap();
    let before = db.snapshot();
    assert_eq!(
        prepare(&db, &s).unwrap(),
        json!({"success":true,"session_id":s,"prepared":null})
    );
    assert_eq!(db.snapshot(), before);
    db.conn
        .execute(
            "UPDATE onboarding_sessions SET status = 'abandoned' WHERE id = ?1",
            [&s],
        )
        .unwrap();
    assert_eq!(
        prepare(&db, &s).unwrap_err(),
        format!(
            "onboarding_kb_prepare: conflict: session '{s}' is abandoned; its steps can no longer be changed"
        )
    );
}

/// Migration 009 computes the terms of chunks stored before the analysis
/// changed: a chunk indexed without "été" is found by it once migrated.
#[test]
fn migration_9_computes_the_terms_of_chunks_stored_before_again() {
    let db = Db::memory();
    let docs = json!({"method":"documents","documents":[
        {"title":"Horaires d'été","content":"En juillet et en août : du mardi au samedi, 10h – 19h."}]});
    let s = ready(&db, &docs.to_string());
    db.complete(&s).unwrap();
    let found = |q: &str| results(&db, &s, q);
    assert_eq!(found("ete"), 1);
    // The entry as the analysis before 009 made it, and the database back
    // at version 8.
    db.conn
        .execute_batch(
            "UPDATE kb_chunks_index SET terms = replace(terms, 'ete', ''),
                                      heading_terms = replace(heading_terms, 'ete', '');
             DELETE FROM onboarding_schema_migrations WHERE version = 9;",
        )
        .unwrap();
    assert_eq!(found("ete"), 0);
    let before = db.rows("SELECT id, heading, text FROM kb_chunks", &[]);
    assert_eq!(
        db.scalar("SELECT onboarding_migrate()"),
        rusqlite::types::Value::Integer(15)
    );
    assert_eq!(found("ete"), 1);
    assert_eq!(
        db.rows("SELECT id, heading, text FROM kb_chunks", &[]),
        before
    );
}

/// The title and snippet of each result of the search for `q` in session
/// `s`'s knowledge, best first.
fn titles_and_snippets(db: &Db, s: &str, q: &str) -> Vec<(Value, Value)> {
    let found = kb_search(db, json!({"session_id": s, "query": q})).unwrap();
    found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["title"].clone(), r["snippet"].clone()))
        .collect()
}

/// A caller's day meets an hours table's range of days, and a caller's
/// "vous acceptez" a page's "Nous acceptons": the chunk that answers comes
/// first, its snippet the line that does.
#[test]
fn a_callers_day_and_verb_find_the_range_and_the_nous_that_answer() {
    let db = Db::memory();
    let docs = json!({"method":"documents","documents":[
        {"title":"Horaires","content":"Lun-Ven : 9h-18h\nSam : 9h-12h\nDim : fermé"},
        {"title":"Paiement","content":"Nous acceptons les chèques et la carte bancaire.\n\nPas de paiement en ligne."},
        {"title":"Tarifs","content":TARIFS}]});
    let s = ready(&db, &docs.to_string());
    db.complete(&s).unwrap();
    let search = |q: &str| titles_and_snippets(&db, &s, q);
    assert_eq!(
        search("vous êtes ouverts le mercredi ?"),
        [(json!("Horaires"), json!("Lun-Ven : 9h-18h"))]
    );
    assert_eq!(
        search("et le vendredi ?"),
        [(json!("Horaires"), json!("Lun-Ven : 9h-18h"))]
    );
    assert_eq!(
        search("vous acceptez les tickets restaurant ?"),
        [(
            json!("Paiement"),
            json!("Nous acceptons les chèques et la carte bancaire.")
        )]
    );
}

/// Cut 3 reads a verb after "nous" in its "vous" form: a document stored
/// by cut 2, whose entry holds `accepton`, is cut again, and then found by
/// "vous acceptez ?"; only its entry and its cut change.
#[test]
fn a_document_stored_by_cut_2_gets_the_verbs_after_nous_read_again() {
    let db = Db::memory();
    let docs = json!({"method":"documents","documents":[
        {"title":"Paiement","content":"Nous n'acceptons que les espèces."}]});
    let s = ready(&db, &docs.to_string());
    db.complete(&s).unwrap();
    let found = |q: &str| results(&db, &s, q);
    let terms = || rows(&db.conn, "SELECT terms FROM kb_chunks_index");
    let cut_3 = [[r#"Text("pai pai accept espec")"#]];
    assert_eq!(terms(), cut_3);
    assert_eq!(found("vous acceptez ?"), 1);
    // The entry as cut 2 made it.
    db.conn
        .execute_batch(
            "UPDATE kb_chunks_index SET terms = replace(terms, 'accept', 'accepton');
             UPDATE kb_documents SET cut = 2;",
        )
        .unwrap();
    assert_eq!(found("vous acceptez ?"), 0);
    let before = db.snapshot();
    let tenant = db.get(&s)["tenant_id"].clone();
    assert_eq!(
        recut(&db).unwrap(),
        json!({"success": true, "recut": {"document_id": 1, "tenant_id": tenant,
               "chunks_before": 1, "chunks": 1, "kept": 0}, "failed": null,
               "remaining": 0, "failing": 0})
    );
    assert_eq!(terms(), cut_3);
    assert_eq!(found("vous acceptez ?"), 1);
    let after = db.snapshot();
    let changed: Vec<&String> = after.iter().filter(|r| !before.contains(r)).collect();
    assert_eq!(changed.len(), 2, "{changed:?}");
    assert!(changed[0].starts_with("kb_documents: Integer(1) | "));
    assert!(
        changed[0].ends_with(&format!(" | Integer({CUT})")),
        "{}",
        changed[0]
    );
    assert!(changed[1]
        .starts_with(r#"kb_chunks_index: Text("pai pai accept espec") | Text("pai pai") | "#));
}

/// A caller asks for the address, the telephone or the email in words no
/// page holds: the footer's contact details answer (cut 4). A document
/// stored by cut 3 gets them when it is cut again.
#[test]
fn a_callers_question_finds_the_contact_details_and_cut_3_gets_them_again() {
    let db = Db::memory();
    let docs = json!({"method":"documents","documents":[
        {"title":"Commandes","content":"Commandez vos gâteaux 72 heures à l'avance, \
          en boutique ou par téléphone. Livraison possible le samedi."},
        {"title":"Informations pratiques","content":"Boulangerie Martin\n\n\
          3 place du Marché, 35000 Rennes – 02 99 12 34 56\n\nbonjour@boulangerie-martin.fr"},
        {"title":"Tarifs","content":TARIFS}]});
    let s = ready(&db, &docs.to_string());
    db.complete(&s).unwrap();
    let first = |q: &str| {
        let found = kb_search(&db, json!({"session_id": s, "query": q})).unwrap();
        let best = &found["results"][0];
        (best["title"].clone(), best["snippet"].clone())
    };
    let address = (
        json!("Informations pratiques"),
        json!("3 place du Marché, 35000 Rennes – 02 99 12 34 56"),
    );
    assert_eq!(first("quelle est votre adresse ?"), address);
    assert_eq!(first("c'est quoi votre numéro de téléphone ?"), address);
    assert_eq!(first("vous êtes où ?"), address);
    assert_eq!(
        first("je peux vous écrire un mail ?"),
        (
            json!("Informations pratiques"),
            json!("bonjour@boulangerie-martin.fr")
        )
    );
    // The entry as cut 3 made it: no contact terms.
    let terms = || {
        rows(
            &db.conn,
            "SELECT terms FROM kb_chunks_index WHERE terms LIKE 'inform%'",
        )
    };
    let cut_now = [[
        r#"Text("inform pratiqu inform pratiqu boulanger martin 3 plac march 35000 ren 02 99 12 34 56 boulanger martin fr telephon 0299123456 email adress adress")"#,
    ]];
    assert_eq!(terms(), cut_now);
    db.conn
        .execute_batch(
            "UPDATE kb_chunks_index
                SET terms = replace(terms, ' telephon 0299123456 email adress adress', '')
              WHERE terms LIKE 'inform%';
             UPDATE kb_documents SET cut = 3;",
        )
        .unwrap();
    assert_eq!(first("quelle est votre adresse ?").0, json!(null));
    for _ in 0..3 {
        assert_eq!(recut(&db).unwrap()["failed"], json!(null));
    }
    assert_eq!(recut(&db).unwrap()["recut"], json!(null));
    assert_eq!(terms(), cut_now);
    assert_eq!(first("quelle est votre adresse ?"), address);
}

/// A telephone number is found however the question writes it, and
/// however the page does (cut 6): its digits, run together or not, with
/// the country code or not. A document stored by cut 5 gets this when it
/// is cut again.
#[test]
fn a_telephone_number_is_found_however_it_is_written_and_cut_5_gets_it_again() {
    let db = Db::memory();
    let docs = json!({"method":"documents","documents":[
        {"title":"Commandes","content":"Commandez vos gâteaux 72 heures à l'avance, \
          en boutique ou par téléphone. Commande n°4512 livrée le samedi."},
        {"title":"Informations pratiques","content":"Boulangerie Martin\n\n\
          3 place du Marché, 35000 Rennes – 02 99 12 34 56\n\nbonjour@boulangerie-martin.fr"},
        {"title":"Urgences","content":"Le week-end, appelez le +33 (0)6 12 34 56 78."},
        {"title":"Tarifs","content":TARIFS}]});
    let s = ready(&db, &docs.to_string());
    db.complete(&s).unwrap();
    let found = |q: &str| titles_and_snippets(&db, &s, q);
    let shop = (
        json!("Informations pratiques"),
        json!("3 place du Marché, 35000 Rennes – 02 99 12 34 56"),
    );
    for question in [
        "0299123456",
        "02 99 12 34 56",
        "02.99.12.34.56",
        "+33 2 99 12 34 56",
        "+33299123456",
        "à qui est le 0299123456 ?",
    ] {
        assert_eq!(found(question).first(), Some(&shop), "{question}");
    }
    let weekend = (
        json!("Urgences"),
        json!("Le week-end, appelez le +33 (0)6 12 34 56 78."),
    );
    for question in ["06 12 34 56 78", "+33 6 12 34 56 78"] {
        assert_eq!(found(question).first(), Some(&weekend), "{question}");
    }
    // Run together, the number is one term: the pages holding it alone,
    // not those sharing a pair of its digits (12 34 56).
    for question in ["0612345678", "+33612345678"] {
        assert_eq!(
            found(question),
            std::slice::from_ref(&weekend),
            "{question}"
        );
    }
    assert_eq!(found("0799887766"), []);
    // The entry as cut 5 made it: the number's digits are no term.
    let terms = || {
        rows(
            &db.conn,
            "SELECT terms FROM kb_chunks_index WHERE terms LIKE 'urgenc%'",
        )
    };
    let cut_now =
        [[r#"Text("urgenc urgenc week end appel 33 0 6 12 34 56 78 telephon 0612345678")"#]];
    assert_eq!(terms(), cut_now);
    db.conn
        .execute_batch(
            "UPDATE kb_chunks_index SET terms = replace(terms, ' 0612345678', '')
              WHERE terms LIKE 'urgenc%';
             UPDATE kb_documents SET cut = 5;",
        )
        .unwrap();
    assert_eq!(found("0612345678"), []);
    for _ in 0..4 {
        assert_eq!(recut(&db).unwrap()["failed"], json!(null));
    }
    assert_eq!(recut(&db).unwrap()["recut"], json!(null));
    assert_eq!(terms(), cut_now);
    assert_eq!(found("0612345678"), [weekend]);
}

/// Two salons with the same words, each completed with its documents.
fn two_salons(db: &Db) -> [String; 2] {
    let ours = json!({"method":"documents","documents":[
        {"title":"Le salon","content":SALON},
        {"title":"Tarifs","content":TARIFS}]});
    let s = ready(db, &ours.to_string());
    db.complete(&s).unwrap();
    let other = db.create();
    db.business(&other, "contact@autre-salon.fr");
    db.vapi(&other);
    let theirs = json!({"method":"documents","documents":[
        {"title":"Samedi","content":"Ouvert le samedi, coupe homme 20 €."}]});
    db.step(&other, "kb", &theirs.to_string()).unwrap();
    db.complete(&other).unwrap();
    [s, other]
}

/// Migration 010: every index entry copied into `kb_chunks_index`, which
/// holds its tenant, with its rowid and terms; an entry whose chunk is gone
/// is not; the old table gone (an older library's write to it fails); every
/// other row kept; each tenant's searches answer as before.
#[test]
fn upgrading_to_010_gives_each_index_entry_its_tenant() {
    let db = Db::memory();
    let [ours, theirs] = two_salons(&db);
    let entries = |table: &str| {
        rows(
            &db.conn,
            &format!(
                "SELECT f.rowid, f.terms, f.heading_terms, c.tenant_id
                 FROM {table} f JOIN kb_chunks c ON c.id = f.rowid ORDER BY f.rowid"
            ),
        )
    };
    let indexed = entries("kb_chunks_index");
    assert_eq!(indexed.len(), 3);
    // Written by the library as the migration writes them.
    let with_their_tenant = "SELECT count(*) FROM kb_chunks_index f
                             JOIN kb_chunks c ON c.id = f.rowid WHERE f.tenant = hex(c.tenant_id)";
    assert_eq!(
        db.scalar(with_their_tenant),
        rusqlite::types::Value::Integer(3)
    );
    let search = |s: &str| kb_search(&db, json!({"session_id": s, "query": "coupe le samedi"}));
    let answers = [search(&ours).unwrap(), search(&theirs).unwrap()];
    assert_eq!(answers[0]["results"].as_array().unwrap().len(), 2);
    assert_eq!(answers[1]["results"].as_array().unwrap().len(), 1);

    // The index as 009 left it, with an entry whose chunk was deleted.
    db.conn
        .execute_batch(
            "CREATE VIRTUAL TABLE kb_chunks_fts USING fts5 (
                 terms, heading_terms, tokenize = 'unicode61 remove_diacritics 2');
             INSERT INTO kb_chunks_fts (rowid, terms, heading_terms)
                 SELECT rowid, terms, heading_terms FROM kb_chunks_index;
             INSERT INTO kb_chunks_fts (rowid, terms, heading_terms)
                 VALUES (9999, 'coup samed', 'coup');
             DROP TABLE kb_chunks_index;
             DROP INDEX kb_chunks_tenant_chars;
             ALTER TABLE kb_chunks DROP COLUMN chars;
             CREATE INDEX kb_chunks_tenant ON kb_chunks (tenant_id);
             DELETE FROM onboarding_schema_migrations WHERE version = 10;",
        )
        .unwrap();
    assert_eq!(entries("kb_chunks_fts"), indexed);
    // Every row but the index's (compared above and below), the chunks'
    // without the length 010 adds.
    let snapshot = || -> Vec<String> {
        let mut rows: Vec<String> = db
            .snapshot()
            .into_iter()
            .filter(|r| !r.starts_with("kb_chunks_index:") && !r.starts_with("kb_chunks:"))
            .collect();
        rows.extend(
            self::rows(
                &db.conn,
                "SELECT id, document_id, tenant_id, position, heading, text FROM kb_chunks ORDER BY id",
            )
            .into_iter()
            .map(|r| format!("kb_chunks: {}", r.join(" | "))),
        );
        rows
    };
    let before = snapshot();
    assert_eq!(
        db.scalar("SELECT onboarding_migrate()"),
        rusqlite::types::Value::Integer(15)
    );
    assert_eq!(entries("kb_chunks_index"), indexed);
    assert_eq!(
        db.scalar("SELECT count(*) FROM kb_chunks_index"),
        rusqlite::types::Value::Integer(3)
    );
    assert_eq!(
        db.scalar(with_their_tenant),
        rusqlite::types::Value::Integer(3)
    );
    // Each chunk's length, in the index beside its tenant.
    assert_eq!(
        rows(
            &db.conn,
            "SELECT count(*), sum(chars = length(text)) FROM kb_chunks INDEXED BY kb_chunks_tenant_chars"
        ),
        [["Integer(3)", "Integer(3)"]]
    );
    assert_eq!(
        db.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'kb_chunks_tenant'"),
        rusqlite::types::Value::Integer(0)
    );
    // What a process still running the library before 010 writes to it.
    assert_eq!(
        db.conn
            .execute(
                "INSERT INTO kb_chunks_fts (rowid, terms, heading_terms) VALUES (1, 'a', 'b')",
                []
            )
            .unwrap_err()
            .to_string(),
        "no such table: kb_chunks_fts"
    );
    let after = snapshot();
    let added: Vec<&String> = after.iter().filter(|r| !before.contains(r)).collect();
    assert_eq!(after.len(), before.len() + 1, "{added:?}");
    assert!(before.iter().all(|r| after.contains(r)));
    assert!(added[0]
        .starts_with(r#"onboarding_schema_migrations: Integer(10) | Text("010_kb_index_tenant")"#));
    assert_eq!([search(&ours).unwrap(), search(&theirs).unwrap()], answers);
}

/// The index finds a tenant's chunks by the tenant's token, and the table
/// has the last word: an entry under another tenant's token is found by
/// neither.
#[test]
fn a_search_goes_through_the_tenants_index_entries_and_checks_the_table() {
    let db = Db::memory();
    let [ours, theirs] = two_salons(&db);
    let found = |s: &str| {
        kb_search(&db, json!({"session_id": s, "query": "samedi"})).unwrap()["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["title"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(found(&ours), ["Le salon"]);
    assert_eq!(found(&theirs), ["Samedi"]);
    // Their entry put under our token: the index yields it for us, the
    // table says it is theirs, and their own token no longer finds it.
    db.conn
        .execute(
            "UPDATE kb_chunks_index SET tenant = (SELECT hex(tenant_id) FROM onboarding_sessions
                                                WHERE id = ?1)
             WHERE rowid IN (SELECT c.id FROM kb_chunks c JOIN onboarding_sessions s
                             ON s.tenant_id = c.tenant_id WHERE s.id = ?2)",
            [&ours, &theirs],
        )
        .unwrap();
    assert_eq!(found(&ours), ["Le salon"]);
    assert_eq!(found(&theirs), Vec::<String>::new());
}

/// Summer hours and text pasted from a PDF (ligatures): found by the words
/// a caller types.
#[test]
fn search_finds_summer_hours_and_ligatures() {
    let db = Db::memory();
    let docs = json!({"method":"documents","documents":[
        {"title":"Horaires d'été","content":"En juillet et en août : du mardi au samedi, 10h – 19h."},
        {"title":"Financement","content":"Nous proposons un ﬁnancement en trois fois sans frais."}]});
    let s = ready(&db, &docs.to_string());
    db.complete(&s).unwrap();
    let first = |q: &str| {
        kb_search(&db, json!({"session_id": s, "query": q, "limit": 1})).unwrap()["results"][0]
            ["title"]
            .clone()
    };
    assert_eq!(first("vous êtes ouverts l'été ?"), "Horaires d'été");
    assert_eq!(first("ete"), "Horaires d'été");
    assert_eq!(first("un financement est possible ?"), "Financement");
}

/// A query has 1 to 500 characters (not bytes): the longest is searched,
/// one more is refused.
#[test]
fn a_search_query_has_at_most_500_characters() {
    let db = Db::memory();
    let s = ready(&db, r#"{"method":"skip"}"#);
    let longest = "é".repeat(500);
    assert_eq!(
        kb_search(&db, json!({"session_id": s, "query": longest})).unwrap(),
        json!({"success": true, "query": longest, "results": []})
    );
    assert_eq!(
        kb_search(&db, json!({"session_id": s, "query": "é".repeat(501)})).unwrap_err(),
        "onboarding_kb_search: invalid_field: query is longer than 500 characters"
    );
}

#[test]
fn search_errors_and_empty_answers() {
    let db = Db::memory();
    let s = ready(&db, r#"{"method":"skip"}"#);
    let call = |p: Value| kb_search(&db, p);
    assert_eq!(
        call(json!({"session_id": s, "query": "  "})).unwrap_err(),
        "onboarding_kb_search: invalid_field: query must not be empty"
    );
    assert_eq!(
        call(json!({"session_id": s})).unwrap_err(),
        "onboarding_kb_search: invalid_field: query is required"
    );
    assert_eq!(
        call(json!({"session_id": s, "query": "x", "limit": 21})).unwrap_err(),
        "onboarding_kb_search: invalid_field: limit 21 is not an integer from 1 to 20"
    );
    // 20.0 is 20 in JSON (Python's json.dumps writes a float so); 20.5
    // and a float past exact integers are not.
    assert_eq!(
        call(json!({"session_id": s, "query": "x", "limit": 20.0})).unwrap(),
        json!({"success": true, "query": "x", "results": []})
    );
    assert_eq!(
        call(json!({"session_id": s, "query": "x", "limit": 20.5})).unwrap_err(),
        "onboarding_kb_search: invalid_field: limit 20.5 is not an integer from 1 to 20"
    );
    assert_eq!(
        call(json!({"session_id": s, "query": "x", "limit": 1e300})).unwrap_err(),
        "onboarding_kb_search: invalid_field: limit 1e+300 is not an integer from 1 to 20"
    );
    // An echoed value is cut to 64 characters, whatever its JSON type.
    let long: Vec<u32> = (0..3000).collect();
    assert_eq!(
        call(json!({"session_id": s, "query": "x", "limit": long})).unwrap_err(),
        "onboarding_kb_search: invalid_field: limit [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,2… \
         is not an integer from 1 to 20"
    );
    assert_eq!(
        call(json!({"query": "x"})).unwrap_err(),
        "onboarding_kb_search: invalid_field: session_id or tenant_id is required"
    );
    assert_eq!(
        call(json!({"session_id": "onb_nope", "query": "x"})).unwrap_err(),
        "onboarding_kb_search: not_found: session 'onb_nope' does not exist"
    );
    assert_eq!(
        call(json!({"tenant_id": "tenant_nope", "query": "x"})).unwrap_err(),
        "onboarding_kb_search: not_found: tenant 'tenant_nope' does not exist"
    );
    // An unknown session is not_found whatever the query and the limit.
    for bad in [
        json!({"query": ""}),
        json!({"query": "x", "limit": 99}),
        json!({}),
    ] {
        let mut p = bad.clone();
        p["session_id"] = json!("onb_nope");
        assert_eq!(
            call(p).unwrap_err(),
            "onboarding_kb_search: not_found: session 'onb_nope' does not exist",
            "{bad}"
        );
    }
    assert_eq!(
        call(json!({"session_id": s, "query": "horaires"})).unwrap(),
        json!({"success":true,"query":"horaires","results":[]})
    );
    assert_eq!(
        db.call("SELECT onboarding_kb_get('onb_nope')", &[])
            .unwrap_err(),
        "onboarding_kb_get: not_found: session 'onb_nope' does not exist"
    );
}

fn worker(db: &Db, function: &str, payload: Value) -> Result<Value, String> {
    db.call(
        &format!("SELECT onboarding_kb_{function}(?1)"),
        &[&payload.to_string()],
    )
}

/// A completed website session whose job is claimed by `w1`: the job id.
fn claimed(db: &Db) -> i64 {
    let s = ready(db, r#"{"method":"website","crawl_url":"https://salon.fr"}"#);
    db.complete(&s).unwrap();
    let job = worker(db, "claim", json!({"worker": "w1", "lease_seconds": 60})).unwrap();
    job["job"]["id"].as_i64().unwrap()
}

#[test]
fn a_worker_stores_pages_follows_scope_and_finishes() {
    let db = Db::memory();
    assert_eq!(
        worker(&db, "claim", json!({"worker": "w1"})).unwrap(),
        json!({"success":true,"job":null})
    );
    let job = claimed(&db);
    let page = worker(&db, "store_page", json!({
        "job_id": job, "worker": "w1", "url": "https://salon.fr/", "status": "stored",
        "title": "Accueil", "markdown": SALON,
        "links": ["https://www.salon.fr/tarifs/", "https://salon.fr/tarifs?utm_source=x", "https://ailleurs.fr/",
                  "mailto:a@b.fr", "https://salon.fr/contact#plan", "http://salon.fr/contact",
                  "https://WWW.salon.fr:443/%7Elea", "https://salon.fr/~lea"],
        "shared": [{"title": "Pied de page", "markdown": "12 rue des Lilas, Lyon"}]})).unwrap();
    assert_eq!(page["status"], "stored");
    assert_eq!(
        page["added"],
        // One URL per page, the first form linked (before, the www. and
        // http forms were pages of their own), unreserved escapes decoded.
        json!([
        {"url": "https://www.salon.fr/tarifs", "depth": 1},
        {"url": "https://salon.fr/contact", "depth": 1},
        {"url": "https://www.salon.fr/~lea", "depth": 1}])
    );
    // The same text under another address is stored once.
    let dup = worker(
        &db,
        "store_page",
        json!({"job_id": job, "worker": "w1", "url": "https://www.salon.fr/tarifs",
        "status": "stored", "title": "Accueil bis", "markdown": SALON}),
    )
    .unwrap();
    assert_eq!(
        (dup["status"].clone(), dup["reason"].clone()),
        (json!("skipped"), json!("duplicate"))
    );
    let missing = worker(
        &db,
        "store_page",
        json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/contact",
        "status": "failed", "reason": "http_404"}),
    )
    .unwrap();
    assert_eq!(missing["job"]["pages_failed"], 1);
    // The workers' functions name the worker holding the job; the
    // session's reader (an HTTP route anyone with the session id may
    // call) does not name it.
    assert_eq!(missing["job"]["lease_owner"], "w1");
    let session = missing["job"]["session_id"].as_str().unwrap();
    let kb = db
        .call("SELECT onboarding_kb_get(?1)", &[&session])
        .unwrap();
    let keys: Vec<&str> = kb["job"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "session_id",
            "tenant_id",
            "url",
            "status",
            "attempts",
            "pages_found",
            "pages_stored",
            "pages_skipped",
            "pages_failed",
            "error_code",
            "started_at",
            "finished_at",
            "next_attempt_at",
            "lease_expires_at"
        ]
    );
    assert_eq!(
        worker(&db, "store_page", json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/contact", "status": "failed", "reason": "http_404"})).unwrap_err(),
        "onboarding_kb_store_page: conflict: page 'https://salon.fr/contact' was already reported (failed)"
    );
    assert_eq!(
        worker(&db, "store_page", json!({"job_id": job, "worker": "w2", "url": "https://www.salon.fr/tarifs", "status": "skipped", "reason": "x"})).unwrap_err(),
        format!("onboarding_kb_store_page: conflict: job {job} is not leased by worker 'w2' (status running; its lease expired or another worker holds it)")
    );
    let done = worker(&db, "finish", json!({"job_id": job, "worker": "w1"})).unwrap();
    let j = &done["job"];
    assert_eq!(
        (
            j["status"].clone(),
            j["pages_found"].clone(),
            j["pages_stored"].clone(),
            j["pages_skipped"].clone(),
            j["pages_failed"].clone(),
            j["error_code"].clone(),
            j["lease_owner"].clone()
        ),
        (
            json!("done"),
            json!(4),
            json!(1),
            json!(2),
            json!(1),
            json!(null),
            json!(null)
        )
    );
    assert_eq!(
        rows(
            &db.conn,
            "SELECT url, status, reason FROM kb_crawl_pages ORDER BY id"
        ),
        [
            ["Text(\"https://salon.fr/\")", "Text(\"stored\")", "Null"],
            [
                "Text(\"https://www.salon.fr/tarifs\")",
                "Text(\"skipped\")",
                "Text(\"duplicate\")"
            ],
            [
                "Text(\"https://salon.fr/contact\")",
                "Text(\"failed\")",
                "Text(\"http_404\")"
            ],
            [
                "Text(\"https://www.salon.fr/~lea\")",
                "Text(\"skipped\")",
                "Text(\"not_fetched\")"
            ],
        ]
    );
    // The footer only the home page carried went back into it at the end.
    assert_eq!(
        rows(&db.conn, "SELECT title, url FROM kb_documents ORDER BY id"),
        [["Text(\"Accueil\")", "Text(\"https://salon.fr/\")"]]
    );
    let home: String = db
        .conn
        .query_row("SELECT markdown FROM kb_documents", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        home,
        format!("{}\n\n12 rue des Lilas, Lyon", SALON.trim_end())
    );
}

/// A page's links are added while the job has fewer than 50 pages: the
/// start page and 49 of its 60; a page's text may have 2 MiB.
#[test]
fn a_job_holds_50_pages_at_most_and_a_page_2_mib_of_text() {
    let db = Db::memory();
    let job = claimed(&db);
    let links: Vec<String> = (1..=60).map(|n| format!("https://salon.fr/p{n}")).collect();
    let page = worker(
        &db,
        "store_page",
        json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/", "status": "stored",
               "markdown": SALON, "links": links}),
    )
    .unwrap();
    let added: Vec<Value> = (1..=49)
        .map(|n| json!({"url": format!("https://salon.fr/p{n}"), "depth": 1}))
        .collect();
    assert_eq!(page["added"], json!(added));
    assert_eq!(page["job"]["pages_found"], 50);
    // The frontier full, a page's own links add nothing.
    let text = "Coupe homme, shampoing et brushing : 25 euros.\n".repeat(45_590);
    let markdown: String = text.chars().take(2 * 1024 * 1024).collect();
    assert_eq!(markdown.chars().count(), 2_097_152);
    let page = worker(
        &db,
        "store_page",
        json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/p1", "status": "stored",
               "markdown": markdown, "links": ["https://salon.fr/p60"]}),
    )
    .unwrap();
    assert_eq!(
        (&page["status"], &page["added"], &page["job"]["pages_found"]),
        (&json!("stored"), &json!([]), &json!(50))
    );
}

/// Links are followed three hops from the start page: a page at depth 2
/// adds its links at 3, one at 3 adds none.
#[test]
fn links_are_followed_three_hops_from_the_start_page_and_no_further() {
    let db = Db::memory();
    let job = claimed(&db);
    let hops = ["/", "/un", "/deux", "/trois", "/quatre"];
    for (depth, pair) in hops.windows(2).enumerate() {
        let page = worker(
            &db,
            "store_page",
            json!({"job_id": job, "worker": "w1", "url": format!("https://salon.fr{}", pair[0]),
                   "status": "stored", "markdown": format!("{SALON}\nPage {depth}.\n"),
                   "links": [format!("https://salon.fr{}", pair[1])]}),
        )
        .unwrap();
        let added = if depth < 3 {
            json!([{"url": format!("https://salon.fr{}", pair[1]), "depth": depth + 1}])
        } else {
            json!([])
        };
        assert_eq!(
            (page["status"].clone(), page["added"].clone()),
            (json!("stored"), added)
        );
    }
    assert_eq!(
        rows(
            &db.conn,
            "SELECT url, depth FROM kb_crawl_pages ORDER BY id"
        ),
        [
            ["Text(\"https://salon.fr/\")", "Integer(0)"],
            ["Text(\"https://salon.fr/un\")", "Integer(1)"],
            ["Text(\"https://salon.fr/deux\")", "Integer(2)"],
            ["Text(\"https://salon.fr/trois\")", "Integer(3)"],
        ]
    );
}

#[test]
fn a_block_two_pages_share_stays_shared_and_one_pages_own_goes_back_to_it() {
    let db = Db::memory();
    let job = claimed(&db);
    let footer = |text: &str| json!([{"title": "Informations pratiques", "markdown": text}]);
    let page = |url: &str, markdown: &str, shared: Value, links: Value| {
        worker(
            &db,
            "store_page",
            json!({
            "job_id": job, "worker": "w1", "url": url, "status": "stored", "title": url,
            "markdown": markdown, "shared": shared, "links": links}),
        )
        .unwrap()
    };
    page(
        "https://salon.fr/",
        SALON,
        footer("Salon Léa, 12 rue des Lilas, Lyon"),
        json!([
            "https://salon.fr/tarifs",
            "https://salon.fr/lyon-2",
            "https://salon.fr/cache"
        ]),
    );
    page(
        "https://salon.fr/tarifs",
        TARIFS,
        footer("Salon Léa, 12 rue des Lilas, Lyon"),
        json!([]),
    );
    // An agency's page with a footer of its own.
    page(
        "https://salon.fr/lyon-2",
        "# Agence de Lyon 2\n\nCoiffure et barbier, place Bellecour.",
        footer("Agence Bellecour, 3 place Bellecour, Lyon 2"),
        json!([]),
    );
    // A page kept out shares nothing: its footer is not stored.
    let hidden = worker(
        &db,
        "store_page",
        json!({
        "job_id": job, "worker": "w1", "url": "https://salon.fr/cache", "status": "skipped",
        "reason": "noindex", "shared": footer("Un pied de page d'une page cachée, rue X")}),
    )
    .unwrap();
    assert_eq!(hidden["status"], "skipped");
    // While the crawl goes, both footers are documents of their own.
    assert_eq!(db.count("kb_documents"), 5);
    worker(&db, "finish", json!({"job_id": job, "worker": "w1"})).unwrap();
    assert_eq!(
        rows(&db.conn, "SELECT title, depth, markdown FROM kb_documents ORDER BY id"),
        [
            [
                "Text(\"https://salon.fr/\")".to_string(),
                "Integer(0)".into(),
                format!("Text({:?})", SALON)
            ],
            [
                "Text(\"Informations pratiques\")".into(),
                "Null".into(),
                "Text(\"Salon Léa, 12 rue des Lilas, Lyon\")".into()
            ],
            [
                "Text(\"https://salon.fr/tarifs\")".into(),
                "Integer(1)".into(),
                format!("Text({:?})", TARIFS)
            ],
            [
                "Text(\"https://salon.fr/lyon-2\")".into(),
                "Integer(1)".into(),
                "Text(\"# Agence de Lyon 2\\n\\nCoiffure et barbier, place Bellecour.\\n\\nAgence Bellecour, 3 place Bellecour, Lyon 2\")"
                    .into()
            ],
        ]
    );
    // The agency's address is found on its page, in its index.
    let found = kb_search(
        &db,
        json!({"tenant_id": tenant_of_job(&db, job), "query": "Bellecour"}),
    )
    .unwrap();
    let urls: Vec<&str> = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["url"].as_str().unwrap())
        .collect();
    assert_eq!(urls, ["https://salon.fr/lyon-2"]);
    assert_eq!(db.count("kb_shared_carriers"), 2);
}

fn tenant_of_job(db: &Db, job: i64) -> String {
    db.conn
        .query_row(
            "SELECT tenant_id FROM kb_crawl_jobs WHERE id = ?1",
            [job],
            |r| r.get(0),
        )
        .unwrap()
}

/// [`claimed`], with the start page stored by `w1`: it links `/tarifs`.
fn claimed_with_home_stored(db: &Db) -> i64 {
    let job = claimed(db);
    worker(
        db,
        "store_page",
        json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/", "status": "stored",
        "markdown": SALON, "links": ["https://salon.fr/tarifs"]}),
    )
    .unwrap();
    job
}

#[test]
fn the_jobs_budget_spent_is_kept_for_the_worker_that_takes_it_over() {
    let db = Db::memory();
    let job = claimed(&db);
    let page = json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/",
                      "status": "failed", "reason": "http_500",
                      "bytes": 5_000, "elapsed_ms": 1_200});
    worker(&db, "store_page", page).unwrap();
    // A renewal reports less bytes than the page (an older count): the
    // larger is kept; and more time.
    worker(
        &db,
        "renew",
        json!({"job_id": job, "worker": "w1", "lease_seconds": 30,
               "bytes": 4_000, "elapsed_ms": 9_000}),
    )
    .unwrap();
    let budget = || {
        db.row(
            "SELECT bytes_fetched, crawl_ms FROM kb_crawl_jobs WHERE id = ?1",
            &[&job],
        )
    };
    assert_eq!(budget(), json!({"bytes_fetched": 5_000, "crawl_ms": 9_000}));
    // Either count alone is kept too.
    worker(
        &db,
        "renew",
        json!({"job_id": job, "worker": "w1", "lease_seconds": 30, "bytes": 6_000}),
    )
    .unwrap();
    assert_eq!(budget(), json!({"bytes_fetched": 6_000, "crawl_ms": 9_000}));
    // Refused with the field and the rule, and nothing written.
    for (field, bad, quoted) in [
        ("bytes", json!(-1), "-1"),
        ("elapsed_ms", json!("9000"), "'9000'"),
    ] {
        let mut renew = json!({"job_id": job, "worker": "w1"});
        renew[field] = bad;
        assert_eq!(
            worker(&db, "renew", renew).unwrap_err(),
            format!(
                "onboarding_kb_renew: invalid_field: {field} {quoted} is not an integer from 0 to {}",
                i64::MAX
            )
        );
    }
    assert_eq!(budget(), json!({"bytes_fetched": 6_000, "crawl_ms": 9_000}));
    db.env.advance_ms(31_000);
    let taken = worker(&db, "claim", json!({"worker": "w2"})).unwrap();
    assert_eq!(
        (&taken["job"]["bytes_fetched"], &taken["job"]["crawl_ms"]),
        (&json!(6_000), &json!(9_000))
    );
}

#[test]
fn an_expired_lease_is_taken_over_and_the_frontier_resumes() {
    let db = Db::memory();
    let job = claimed_with_home_stored(&db);
    assert_eq!(
        worker(&db, "claim", json!({"worker": "w2"})).unwrap()["job"],
        json!(null)
    );
    let renewed = worker(
        &db,
        "renew",
        json!({"job_id": job, "worker": "w1", "lease_seconds": 30}),
    )
    .unwrap();
    assert_eq!(
        renewed,
        json!({"success":true,"job_id":job,"lease_expires_at":"2026-11-24T10:00:30.000Z"})
    );
    // At the lease's very end it is over: its worker holds it no more,
    // and another takes it over, for the 60 s of a claim's default lease.
    db.env.advance_ms(30_000);
    let before = db.snapshot();
    assert_eq!(
        worker(&db, "renew", json!({"job_id": job, "worker": "w1"})).unwrap_err(),
        "onboarding_kb_renew: conflict: job 1 is not leased by worker 'w1' (status running; its lease expired or another worker holds it)"
    );
    assert_eq!(db.snapshot(), before);
    let taken = worker(&db, "claim", json!({"worker": "w2"})).unwrap();
    assert_eq!(taken["job"]["attempts"], 2);
    assert_eq!(taken["job"]["lease_owner"], "w2");
    assert_eq!(taken["job"]["lease_expires_at"], "2026-11-24T10:01:30.000Z");
    assert_eq!(
        taken["job"]["frontier"],
        json!([{"url": "https://salon.fr/tarifs", "depth": 1, "retries": 0}])
    );
    assert!(worker(&db, "renew", json!({"job_id": job, "worker": "w1"}))
        .unwrap_err()
        .contains("is not leased by worker 'w1'"));
    // Workers that keep dying: after the third attempt the job ends,
    // `done` with the page it stored (`timeout` says why it stopped).
    db.env.advance_ms(61_000);
    assert_eq!(
        worker(&db, "claim", json!({"worker": "w3"})).unwrap()["job"]["attempts"],
        3
    );
    db.env.advance_ms(61_000);
    assert_eq!(
        worker(&db, "claim", json!({"worker": "w4"})).unwrap()["job"],
        json!(null)
    );
    assert_eq!(
        rows(
            &db.conn,
            "SELECT status, error_code, finished_at FROM kb_crawl_jobs"
        ),
        [[
            "Text(\"done\")",
            "Text(\"timeout\")",
            "Text(\"2026-11-24T10:02:32.000Z\")"
        ]]
    );
    // Its page never fetched says so, and the counters add up (the page
    // stayed pending, out of every counter).
    assert_eq!(
        rows(
            &db.conn,
            "SELECT url, status, reason FROM kb_crawl_pages ORDER BY id"
        ),
        [
            ["Text(\"https://salon.fr/\")", "Text(\"stored\")", "Null"],
            [
                "Text(\"https://salon.fr/tarifs\")",
                "Text(\"skipped\")",
                "Text(\"not_fetched\")"
            ]
        ]
    );
    assert_eq!(
        rows(
            &db.conn,
            "SELECT pages_found, pages_stored, pages_skipped, pages_failed FROM kb_crawl_jobs"
        ),
        [["Integer(2)", "Integer(1)", "Integer(1)", "Integer(0)"]]
    );
}

/// A worker whose process stops gives its jobs back: queued at once, the
/// attempt not counted, the frontier kept; the next claim resumes them.
/// Only the worker holding the lease may; by worker, every job it holds.
#[test]
fn a_job_given_back_at_a_stop_is_resumed_at_once_without_an_attempt_counted() {
    let db = Db::memory();
    let job = claimed_with_home_stored(&db);
    let before = db.snapshot();
    for (payload, error) in [
        (json!({"job_id": job, "worker": "w2"}), "onboarding_kb_release: conflict: job 1 is not leased by worker 'w2' (status running; its lease expired or another worker holds it)"),
        (json!({"job_id": 99, "worker": "w1"}), "onboarding_kb_release: not_found: job 99 does not exist"),
        (json!({"job_id": "1", "worker": "w1"}), "onboarding_kb_release: invalid_field: job_id '1' is not an integer from 1 to 9223372036854775807"),
        (json!({"job_id": job}), "onboarding_kb_release: invalid_field: worker is required"),
    ] {
        assert_eq!(worker(&db, "release", payload).unwrap_err(), error);
    }
    // A worker that holds nothing gives nothing back.
    assert_eq!(
        worker(&db, "release", json!({"worker": "w2"})).unwrap(),
        json!({"success": true, "released": []})
    );
    assert_eq!(db.snapshot(), before);
    db.env.advance_ms(1_000);
    let released = worker(&db, "release", json!({"worker": "w1"})).unwrap();
    let jobs = released["released"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{released}");
    assert_eq!(
        [
            &jobs[0]["id"],
            &jobs[0]["status"],
            &jobs[0]["attempts"],
            &jobs[0]["lease_owner"],
            &jobs[0]["next_attempt_at"],
            &jobs[0]["pages_stored"],
            &jobs[0]["finished_at"]
        ],
        [
            &json!(job),
            &json!("queued"),
            &json!(0),
            &json!(null),
            &json!(null),
            &json!(1),
            &json!(null)
        ]
    );
    // Given back once: the lease is gone.
    assert!(
        worker(&db, "release", json!({"job_id": job, "worker": "w1"}))
            .unwrap_err()
            .contains("is not leased by worker 'w1' (status queued;")
    );
    let taken = worker(&db, "claim", json!({"worker": "w2"})).unwrap();
    assert_eq!(taken["job"]["attempts"], 1);
    assert_eq!(taken["job"]["lease_owner"], "w2");
    assert_eq!(
        taken["job"]["frontier"],
        json!([{"url": "https://salon.fr/tarifs", "depth": 1, "retries": 0}])
    );
    // By job: that one only.
    let released = worker(&db, "release", json!({"job_id": job, "worker": "w2"})).unwrap();
    assert_eq!(released["released"][0]["attempts"], 0, "{released}");
}

/// A job whose site asked to wait longer than it can in hand goes back to
/// the queue until then (`wait_ms`), its attempt not counted and the
/// refused page's retries kept (two at most); a job waits five times at
/// most; bad payloads are refused and write nothing.
#[test]
fn a_job_waits_for_its_site_in_the_queue_within_its_bounds() {
    let db = Db::memory();
    let job = claimed_with_home_stored(&db);
    let before = db.snapshot();
    let tarifs = "https://salon.fr/tarifs";
    for (payload, error) in [
        (json!({"worker": "w1", "wait_ms": 1000}), "onboarding_kb_release: invalid_field: job_id is required with wait_ms (the job that waits for its site)"),
        (json!({"job_id": job, "worker": "w1", "url": tarifs}), "onboarding_kb_release: invalid_field: url is only given with wait_ms (the page the site asked to wait for)"),
        (json!({"job_id": job, "worker": "w1", "wait_ms": 0}), "onboarding_kb_release: invalid_field: wait_ms 0 is not an integer from 1 to 3600000"),
        (json!({"job_id": job, "worker": "w1", "wait_ms": 3_600_001}), "onboarding_kb_release: invalid_field: wait_ms 3600001 is not an integer from 1 to 3600000"),
        (json!({"job_id": job, "worker": "w1", "wait_ms": 1000, "url": tarifs}), "onboarding_kb_release: invalid_field: retries is required"),
        (json!({"job_id": job, "worker": "w1", "wait_ms": 1000, "url": tarifs, "retries": 3}), "onboarding_kb_release: invalid_field: retries 3 is not an integer from 1 to 2"),
        (json!({"job_id": job, "worker": "w1", "wait_ms": 1000, "url": "https://salon.fr/contact", "retries": 1}), "onboarding_kb_release: invalid_field: url 'https://salon.fr/contact' is not a page of job 1"),
        (json!({"job_id": job, "worker": "w1", "wait_ms": 1000, "url": "https://salon.fr/", "retries": 1}), "onboarding_kb_release: conflict: page 'https://salon.fr/' was already reported (stored)"),
        (json!({"job_id": job, "worker": "w2", "wait_ms": 1000}), "onboarding_kb_release: conflict: job 1 is not leased by worker 'w2' (status running; its lease expired or another worker holds it)"),
    ] {
        assert_eq!(worker(&db, "release", payload).unwrap_err(), error);
    }
    assert_eq!(db.snapshot(), before);
    let state = || {
        db.row(
            "SELECT j.status, j.attempts, j.site_waits, j.next_attempt_at, j.crawl_ms, p.retries
             FROM kb_crawl_jobs j JOIN kb_crawl_pages p ON p.job_id = j.id
             WHERE j.id = ?1 AND p.url = 'https://salon.fr/tarifs'",
            &[&job],
        )
    };
    let released = worker(
        &db,
        "release",
        json!({"job_id": job, "worker": "w1", "wait_ms": 600_000, "url": tarifs, "retries": 1,
               "elapsed_ms": 4_000}),
    )
    .unwrap();
    assert_eq!(released["released"][0]["status"], "queued");
    assert_eq!(released["released"][0]["lease_owner"], json!(null));
    // The pinned clock's start (T0), ten minutes on.
    let resumes = "2026-11-24T10:10:00.000Z";
    assert_eq!(released["released"][0]["next_attempt_at"], json!(resumes));
    assert_eq!(
        state(),
        json!({"status": "queued", "attempts": 0, "site_waits": 1, "next_attempt_at": resumes,
               "crawl_ms": 4_000, "retries": 1})
    );
    // Not due before the site's wait is over.
    db.env.advance_ms(599_999);
    assert_eq!(
        worker(&db, "claim", json!({"worker": "w2"})).unwrap(),
        json!({"success": true, "job": null})
    );
    db.env.advance_ms(1);
    let taken = worker(&db, "claim", json!({"worker": "w2"})).unwrap();
    assert_eq!(taken["job"]["attempts"], 1);
    assert_eq!(
        taken["job"]["frontier"],
        json!([{"url": tarifs, "depth": 1, "retries": 1}])
    );
    // Its second retry (one waited out in hand, then this one); a count
    // lower than the page's never lowers it.
    worker(
        &db,
        "release",
        json!({"job_id": job, "worker": "w2", "wait_ms": 1, "url": tarifs, "retries": 2}),
    )
    .unwrap();
    db.env.advance_ms(1);
    worker(&db, "claim", json!({"worker": "w3"})).unwrap();
    worker(
        &db,
        "release",
        json!({"job_id": job, "worker": "w3", "wait_ms": 1, "url": tarifs, "retries": 1}),
    )
    .unwrap();
    db.env.advance_ms(1);
    let taken = worker(&db, "claim", json!({"worker": "w4"})).unwrap();
    assert_eq!(
        taken["job"]["frontier"],
        json!([{"url": tarifs, "depth": 1, "retries": 2}])
    );
    // Waits without a page (another request's wait) count for the job
    // alone: five in all.
    for n in 4..=5 {
        worker(
            &db,
            "release",
            json!({"job_id": job, "worker": format!("w{n}"), "wait_ms": 1}),
        )
        .unwrap();
        db.env.advance_ms(1);
        worker(&db, "claim", json!({"worker": format!("w{}", n + 1)})).unwrap();
    }
    let before = db.snapshot();
    assert_eq!(
        worker(
            &db,
            "release",
            json!({"job_id": job, "worker": "w6", "wait_ms": 1})
        )
        .unwrap_err(),
        "onboarding_kb_release: conflict: job 1 has waited for its site 5 times already"
    );
    assert_eq!(db.snapshot(), before);
    assert_eq!(
        state(),
        json!({"status": "running", "attempts": 1, "site_waits": 5, "next_attempt_at": null,
               "crawl_ms": 4_000, "retries": 2})
    );
}

/// A retry waited out in hand is kept before the wait, by the renewal: a
/// worker that takes the job over after the first one died mid-wait goes on
/// counting from it, so a page is retried twice at most whoever asks.
#[test]
fn a_retry_in_hand_is_kept_by_the_renewal_for_a_takeover() {
    let db = Db::memory();
    let job = claimed_with_home_stored(&db);
    let tarifs = "https://salon.fr/tarifs";
    let before = db.snapshot();
    for (payload, error) in [
        (json!({"job_id": job, "worker": "w1", "retries": 1}), "onboarding_kb_renew: invalid_field: url is required with retries (the page they are of)"),
        (json!({"job_id": job, "worker": "w1", "url": tarifs}), "onboarding_kb_renew: invalid_field: retries is required"),
        (json!({"job_id": job, "worker": "w1", "url": tarifs, "retries": 0}), "onboarding_kb_renew: invalid_field: retries 0 is not an integer from 1 to 2"),
        (json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/contact", "retries": 1}), "onboarding_kb_renew: invalid_field: url 'https://salon.fr/contact' is not a page of job 1"),
        (json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/", "retries": 1}), "onboarding_kb_renew: conflict: page 'https://salon.fr/' was already reported (stored)"),
        (json!({"job_id": job, "worker": "w2", "url": tarifs, "retries": 1}), "onboarding_kb_renew: conflict: job 1 is not leased by worker 'w2' (status running; its lease expired or another worker holds it)"),
    ] {
        assert_eq!(worker(&db, "renew", payload).unwrap_err(), error);
    }
    assert_eq!(db.snapshot(), before);
    let renewed = worker(
        &db,
        "renew",
        json!({"job_id": job, "worker": "w1", "lease_seconds": 30, "url": tarifs, "retries": 1}),
    )
    .unwrap();
    // The pinned clock's start, thirty seconds on.
    assert_eq!(
        renewed,
        json!({"success": true, "job_id": job, "lease_expires_at": "2026-11-24T10:00:30.000Z"})
    );
    // w1 dies waiting; w2 takes the job over when the lease runs out.
    db.env.advance_ms(30_001);
    let taken = worker(&db, "claim", json!({"worker": "w2"})).unwrap();
    assert_eq!(taken["job"]["attempts"], 2);
    assert_eq!(
        taken["job"]["frontier"],
        json!([{"url": tarifs, "depth": 1, "retries": 1}])
    );
    // A lower count never lowers it; a higher one raises it.
    for (retries, kept) in [(1, 1), (2, 2), (1, 2)] {
        worker(
            &db,
            "renew",
            json!({"job_id": job, "worker": "w2", "url": tarifs, "retries": retries}),
        )
        .unwrap();
        assert_eq!(
            db.row(
                "SELECT retries FROM kb_crawl_pages WHERE job_id = ?1 AND url = ?2",
                &[&job, &tarifs]
            ),
            json!({"retries": kept})
        );
    }
}

/// The job `w1` claimed is taken over by `w2` and `w3` as each lease runs
/// out, and the claim after the third ends it: none is due then.
fn workers_keep_dying(db: &Db) {
    for n in 2..=3 {
        db.env.advance_ms(61_000);
        let taken = worker(db, "claim", json!({"worker": format!("w{n}")})).unwrap();
        assert_eq!(taken["job"]["attempts"], n);
    }
    db.env.advance_ms(61_000);
    assert_eq!(
        worker(db, "claim", json!({"worker": "w4"})).unwrap()["job"],
        json!(null)
    );
}

/// Workers that keep dying on a job that stored nothing: it ends `failed`.
#[test]
fn a_job_whose_workers_all_die_before_storing_fails() {
    let db = Db::memory();
    claimed(&db);
    workers_keep_dying(&db);
    assert_eq!(
        rows(
            &db.conn,
            "SELECT status, error_code, pages_stored FROM kb_crawl_jobs"
        ),
        [["Text(\"failed\")", "Text(\"timeout\")", "Integer(0)"]]
    );
}

/// A dead job that cannot be ended `done` (here its stored URL no longer
/// parses) still ends, `failed`: the claims that follow are not blocked.
#[test]
fn a_dead_job_that_cannot_end_done_ends_failed_and_claims_go_on() {
    let db = Db::memory();
    let job = claimed_with_home_stored(&db);
    db.conn
        .execute(
            "UPDATE kb_crawl_jobs SET url = 'http://' WHERE id = ?1",
            [job],
        )
        .unwrap();
    workers_keep_dying(&db);
    assert_eq!(
        rows(
            &db.conn,
            "SELECT status, error_code, pages_stored FROM kb_crawl_jobs"
        ),
        [["Text(\"failed\")", "Text(\"timeout\")", "Integer(1)"]]
    );
}

#[test]
fn a_site_that_fails_is_retried_with_backoff_then_fails() {
    let db = Db::memory();
    let job = claimed(&db);
    let first = worker(
        &db,
        "finish",
        json!({"job_id": job, "worker": "w1", "error_code": "dns"}),
    )
    .unwrap();
    assert_eq!(
        (
            first["job"]["status"].clone(),
            first["job"]["next_attempt_at"].clone()
        ),
        (json!("queued"), json!("2026-11-24T10:01:00.000Z"))
    );
    assert_eq!(
        worker(&db, "claim", json!({"worker": "w1"})).unwrap()["job"],
        json!(null)
    );
    db.env.advance_ms(60_000);
    worker(&db, "claim", json!({"worker": "w1"})).unwrap();
    let second = worker(
        &db,
        "finish",
        json!({"job_id": job, "worker": "w1", "error_code": "unreachable"}),
    )
    .unwrap();
    assert_eq!(second["job"]["next_attempt_at"], "2026-11-24T10:06:00.000Z");
    db.env.advance_ms(300_000);
    worker(&db, "claim", json!({"worker": "w1"})).unwrap();
    let last = worker(
        &db,
        "finish",
        json!({"job_id": job, "worker": "w1", "error_code": "robots_unavailable"}),
    )
    .unwrap();
    let j = &last["job"];
    assert_eq!(
        (
            j["status"].clone(),
            j["attempts"].clone(),
            j["error_code"].clone(),
            j["pages_skipped"].clone(),
            j["finished_at"].clone()
        ),
        (
            json!("failed"),
            json!(3),
            json!("robots_unavailable"),
            json!(1),
            json!("2026-11-24T10:06:00.000Z")
        )
    );
    assert_eq!(
        worker(&db, "finish", json!({"job_id": job, "worker": "w1", "error_code": "oops"})).unwrap_err(),
        "onboarding_kb_finish: invalid_field: error_code 'oops' is not a job error code (expected one of dns, unreachable, robots_unavailable, robots_disallowed, private_address, timeout, too_large, no_content, js_required)"
    );
}

#[test]
fn worker_payload_errors_write_nothing() {
    let db = Db::memory();
    let job = claimed(&db);
    let before = db.snapshot();
    for (function, payload, error) in [
        ("claim", json!({}), "onboarding_kb_claim: invalid_field: worker is required"),
        ("claim", json!({"worker": "w", "lease_seconds": 0}), "onboarding_kb_claim: invalid_field: lease_seconds 0 is not an integer from 1 to 3600"),
        ("store_page", json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/", "status": "stored"}), "onboarding_kb_store_page: invalid_field: markdown is required when status is 'stored'"),
        // Texts SQLite would cut at a NUL, or its CHECK refuse as internal.
        ("store_page", json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/", "status": "stored", "title": "T", "markdown": " \n\t"}), "onboarding_kb_store_page: invalid_field: markdown must not be empty when status is 'stored'"),
        ("store_page", json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/", "status": "stored", "title": "T", "markdown": "a\u{0}b"}), "onboarding_kb_store_page: invalid_field: markdown contains a control character (U+0000, character 2 of 3); line breaks and tabs are the only ones allowed"),
        ("store_page", json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/", "status": "stored", "title": "\u{0}", "markdown": "Bonjour"}), "onboarding_kb_store_page: invalid_field: title contains a control character (U+0000, character 1 of 1); line breaks and tabs are the only ones allowed"),
        ("store_page", json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/", "status": "stored", "title": "T", "markdown": "Bonjour",
            "shared": [{"title": "Infos", "markdown": "Tél.\u{c}01"}]}), "onboarding_kb_store_page: invalid_field: shared[0].markdown contains a control character (U+000C, character 5 of 7); line breaks and tabs are the only ones allowed"),
        ("store_page", json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/", "status": "stored", "title": "T", "markdown": "Bonjour",
            "shared": [{"title": "\u{7}x", "markdown": "Infos"}]}), "onboarding_kb_store_page: invalid_field: shared[0].title contains a control character (U+0007, character 1 of 2); line breaks and tabs are the only ones allowed"),
        // A shared block is a title and a text, neither blank.
        ("store_page", json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/", "status": "stored", "markdown": "Bonjour",
            "shared": [{"title": "Infos", "markdown": "Tél. 01"}, {"title": " \n", "markdown": "Infos"}]}), "onboarding_kb_store_page: invalid_field: shared[1] needs a title and a markdown"),
        ("store_page", json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/", "status": "stored", "markdown": "Bonjour",
            "shared": [{"title": "Infos", "markdown": "\t "}]}), "onboarding_kb_store_page: invalid_field: shared[0] needs a title and a markdown"),
        ("store_page", json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/", "status": "stored", "markdown": "x".repeat(2 * 1024 * 1024 + 1)}), "onboarding_kb_store_page: invalid_field: markdown is longer than 2097152 characters"),
        ("store_page", json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/", "status": "skipped"}), "onboarding_kb_store_page: invalid_field: reason is required when status is 'skipped'"),
        ("store_page", json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/x", "status": "skipped", "reason": "x"}), "onboarding_kb_store_page: invalid_field: url 'https://salon.fr/x' is not a page of job 1"),
        ("store_page", json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/", "status": "done"}), "onboarding_kb_store_page: invalid_field: status 'done' is not a page status (expected stored, skipped or failed)"),
        ("renew", json!({"job_id": 99, "worker": "w1"}), "onboarding_kb_renew: not_found: job 99 does not exist"),
        ("finish", "[]".into(), "onboarding_kb_finish: invalid_json: payload must be a JSON object, got a string"),
        // A worker's name is one line, as the outbox's: a NUL was stored
        // and cut there when read back, an escape sequence written to logs.
        ("claim", json!({"worker": "crawler\u{0}\u{1b}[2J"}), "onboarding_kb_claim: invalid_field: worker 'crawler\\u0000\\u001b[2J' contains a control character"),
        ("renew", json!({"job_id": job, "worker": "w1\u{7}"}), "onboarding_kb_renew: invalid_field: worker 'w1\\u0007' contains a control character"),
        ("store_page", json!({"job_id": job, "worker": "w\u{2028}1", "url": "https://salon.fr/", "status": "failed", "reason": "http_500"}), "onboarding_kb_store_page: invalid_field: worker 'w\\u20281' contains a line break (expected one line of text)"),
        ("release", json!({"worker": "w\u{0}"}), "onboarding_kb_release: invalid_field: worker 'w\\u0000' contains a control character"),
        ("finish", json!({"job_id": job, "worker": "w\u{1b}", "error_code": null}), "onboarding_kb_finish: invalid_field: worker 'w\\u001b' contains a control character"),
        ("site_take", json!({"url": "https://salon.fr/", "worker": "w\u{0}"}), "onboarding_kb_site_take: invalid_field: worker 'w\\u0000' contains a control character"),
        ("site_release", json!({"url": "https://salon.fr/", "worker": "w\u{0}"}), "onboarding_kb_site_release: invalid_field: worker 'w\\u0000' contains a control character"),
    ] {
        assert_eq!(worker(&db, function, payload).unwrap_err(), error);
    }
    assert_eq!(db.snapshot(), before);
}

/// The turn of `url`'s site as its row reads: holder, hold, next start.
fn turn(db: &Db, site: &str) -> Value {
    db.row(
        "SELECT holder, held_until, next_at FROM kb_site_turns WHERE site = ?1",
        &[&site],
    )
}

#[test]
fn a_site_turn_is_held_by_one_crawler_at_a_time_and_spaced_by_its_gap() {
    let db = Db::memory();
    let take = |w: &str, url: &str| worker(&db, "site_take", json!({"url": url, "worker": w}));
    // `www.` and the bare host, http and https, are one site.
    assert_eq!(
        take("w1", "https://www.salon.fr/tarifs").unwrap(),
        json!({"success": true, "site": "salon.fr", "granted": true,
               "held_until": "2026-11-24T10:00:30.000Z"})
    );
    let before = db.snapshot();
    assert_eq!(
        take("w2", "http://salon.fr/").unwrap(),
        json!({"success": true, "site": "salon.fr", "granted": false,
               "holder": "w1", "retry_after_ms": 250})
    );
    assert_eq!(db.snapshot(), before);
    // Another site is another turn; a port other than 80 or 443 another site.
    assert_eq!(take("w2", "https://autre.fr/").unwrap()["granted"], true);
    assert_eq!(
        take("w2", "http://salon.fr:8080/").unwrap()["site"],
        "salon.fr:8080"
    );
    db.env.advance_ms(400);
    assert_eq!(
        worker(
            &db,
            "site_release",
            json!({"url": "https://salon.fr/x", "worker": "w1", "gap_ms": 1500})
        )
        .unwrap(),
        json!({"success": true, "site": "salon.fr", "next_at": "2026-11-24T10:00:01.900Z"})
    );
    // Free, but the gap runs: told exactly how long, and nothing written.
    db.env.advance_ms(1000);
    let waiting = db.snapshot();
    assert_eq!(
        take("w2", "https://salon.fr/").unwrap(),
        json!({"success": true, "site": "salon.fr", "granted": false,
               "holder": null, "retry_after_ms": 500})
    );
    assert_eq!(db.snapshot(), waiting);
    db.env.advance_ms(500);
    assert_eq!(take("w2", "https://salon.fr/").unwrap()["granted"], true);
    assert_eq!(
        turn(&db, "salon.fr"),
        json!({"holder": "w2", "held_until": "2026-11-24T10:00:31.900Z",
               "next_at": "2026-11-24T10:00:01.900Z"})
    );
    // Its holder taking it again extends its hold.
    db.env.advance_ms(1000);
    assert_eq!(
        take("w2", "https://salon.fr/suite").unwrap(),
        json!({"success": true, "site": "salon.fr", "granted": true,
               "held_until": "2026-11-24T10:00:32.900Z"})
    );
    // w1 no longer holds it: its release is a conflict and changes nothing.
    let held = db.snapshot();
    assert_eq!(
        worker(
            &db,
            "site_release",
            json!({"url": "https://salon.fr/", "worker": "w1"})
        )
        .unwrap_err(),
        "onboarding_kb_site_release: conflict: worker 'w1' does not hold the turn of site \
         'salon.fr' (its hold ran out, or it never took it)"
    );
    assert_eq!(db.snapshot(), held);
}

/// `worker`'s take of salon.fr's turn, held 20 s.
fn take_held_20_s(db: &Db, worker_name: &str) -> Value {
    worker(
        db,
        "site_take",
        json!({"url": "https://salon.fr/", "worker": worker_name, "hold_seconds": 20}),
    )
    .unwrap()
}

#[test]
fn a_crawler_killed_holding_a_turn_blocks_its_site_until_the_hold_ends() {
    let db = Db::memory();
    let take = |w: &str| take_held_20_s(&db, w);
    assert_eq!(take("w1")["granted"], true);
    db.env.advance_ms(19_900);
    // The last poll before the hold ends waits only what is left of it.
    assert_eq!(
        take("w2"),
        json!({"success": true, "site": "salon.fr", "granted": false,
               "holder": "w1", "retry_after_ms": 100})
    );
    db.env.advance_ms(100);
    assert_eq!(
        take("w2"),
        json!({"success": true, "site": "salon.fr", "granted": true,
               "held_until": "2026-11-24T10:00:40.000Z"})
    );
}

/// A clock set back an hour (or a day) makes a site wait no longer than its
/// gap, or its holder's hold, counted again from then: the gap and the hold
/// are not stretched by the time the clock went back (a gap past the
/// longest a job waits ended its crawl).
#[test]
fn a_clock_set_back_makes_a_site_wait_its_gap_not_the_time_it_went_back() {
    let db = Db::memory();
    let take = |w: &str| take_held_20_s(&db, w);
    let release = |w: &str| {
        worker(
            &db,
            "site_release",
            json!({"url": "https://salon.fr/", "worker": w, "gap_ms": 1500}),
        )
        .unwrap()
    };
    assert_eq!(take("w1")["granted"], true);
    release("w1");
    db.env.set_ms(T0 - 86_400_000);
    assert_eq!(
        take("w2"),
        json!({"success": true, "site": "salon.fr", "granted": false,
               "holder": null, "retry_after_ms": 1500})
    );
    assert_eq!(
        turn(&db, "salon.fr"),
        json!({"holder": null, "held_until": null, "next_at": "2026-11-23T10:00:01.500Z"})
    );
    db.env.advance_ms(1500);
    assert_eq!(take("w2")["granted"], true);
    // Held, then the clock set back an hour: the hold's 20 s, from then.
    db.env.set_ms(T0 - 90_000_000);
    assert_eq!(take("w3")["retry_after_ms"], 250);
    db.env.advance_ms(19_999);
    assert_eq!(take("w3")["retry_after_ms"], 1);
    db.env.advance_ms(1);
    assert_eq!(
        take("w3"),
        json!({"success": true, "site": "salon.fr", "granted": true,
               "held_until": "2026-11-23T09:00:40.000Z"})
    );
}

#[test]
fn site_turn_payload_errors_write_nothing() {
    let db = Db::memory();
    let before = db.snapshot();
    for (function, payload, error) in [
        ("site_take", json!({"worker": "w1"}), "onboarding_kb_site_take: invalid_field: url is required"),
        ("site_take", json!({"url": "ftp://salon.fr/", "worker": "w1"}), "onboarding_kb_site_take: invalid_field: url 'ftp://salon.fr/' is not an http(s) URL"),
        ("site_take", json!({"url": "salon.fr", "worker": "w1"}), "onboarding_kb_site_take: invalid_field: url 'salon.fr' is not an http(s) URL"),
        ("site_take", json!({"url": "https://salon.fr/"}), "onboarding_kb_site_take: invalid_field: worker is required"),
        ("site_take", json!({"url": "https://salon.fr/", "worker": "w1", "hold_seconds": 0}), "onboarding_kb_site_take: invalid_field: hold_seconds 0 is not an integer from 1 to 3600"),
        ("site_release", json!({"url": "https://salon.fr/", "worker": "w1", "gap_ms": -1}), "onboarding_kb_site_release: invalid_field: gap_ms -1 is not an integer from 0 to 3600000"),
        ("site_release", json!({"url": "https://salon.fr/", "worker": "w1"}), "onboarding_kb_site_release: conflict: worker 'w1' does not hold the turn of site 'salon.fr' (its hold ran out, or it never took it)"),
        ("site_release", "[]".into(), "onboarding_kb_site_release: invalid_json: payload must be a JSON object, got a string"),
    ] {
        assert_eq!(worker(&db, function, payload).unwrap_err(), error);
    }
    assert_eq!(db.snapshot(), before);
}

/// A site whose template writes its address and hours in plain blocks on
/// every page (no footer the crawler recognises): at the job's end the
/// blocks are lifted out of the pages and stored once, as their own
/// document, and a search finds them there once.
#[test]
fn blocks_repeated_on_most_pages_are_stored_once_at_the_jobs_end() {
    let db = Db::memory();
    let job = claimed(&db);
    let address = "Salon Léa – 12 rue des Lilas, 69003 Lyon – 04 78 12 34 56";
    let hours = "Ouvert du mardi au samedi, de 9h à 19h, sans rendez-vous le matin.";
    let pages = [
        (
            "https://salon.fr/",
            "Accueil",
            "# Bienvenue\n\nCoupe, couleur et soins pour toute la famille.",
        ),
        (
            "https://salon.fr/tarifs",
            "Tarifs",
            "# Tarifs\n\n| Coupe homme | 25 € |\n| --- | --- |\n| Coupe femme | 35 € |",
        ),
        (
            "https://salon.fr/equipe",
            "L'équipe",
            "# L'équipe\n\nLéa, coloriste, et Karim, barbier depuis 2010.",
        ),
    ];
    let links = json!(["https://salon.fr/tarifs", "https://salon.fr/equipe"]);
    for (i, (url, title, own)) in pages.iter().enumerate() {
        let markdown = format!("{own}\n\n{address}\n\n{hours}");
        let mut report = json!({"job_id": job, "worker": "w1", "url": url, "status": "stored",
            "title": title, "markdown": markdown});
        if i == 0 {
            report["links"] = links.clone();
        }
        assert_eq!(
            worker(&db, "store_page", report).unwrap()["status"],
            "stored"
        );
    }
    // The home page as a newer library stored it (a later cut), the prices
    // page as an older one did: the chunks the finish rewrites are this
    // library's, so the first is of this cut after it, and the second
    // stays of its older one (its other chunks are the older library's).
    // A failed cut of the old text is forgotten: the new text is tried at
    // once.
    db.conn
        .execute_batch(&format!(
            "UPDATE kb_documents SET cut = CASE id WHEN 1 THEN {later} WHEN 2 THEN 0 ELSE cut END;
             INSERT INTO kb_recut_failures VALUES
                 (2, 1, 3, 'internal: the old text', '2026-11-24T09:00:00.000Z',
                  '2026-11-24T10:30:00.000Z');",
            later = CUT + 1
        ))
        .unwrap();
    let done = worker(
        &db,
        "finish",
        json!({"job_id": job, "worker": "w1", "error_code": null}),
    )
    .unwrap();
    assert_eq!(
        (&done["job"]["status"], &done["job"]["pages_stored"]),
        (&json!("done"), &json!(3))
    );
    assert_eq!(
        rows(&db.conn, "SELECT id, cut FROM kb_documents ORDER BY id"),
        [1, 2, 3, 4].map(|id| [
            format!("Integer({id})"),
            format!("Integer({})", if id == 2 { 0 } else { CUT })
        ])
    );
    assert_eq!(db.count("kb_recut_failures"), 0);
    let docs: Vec<(String, Option<i64>, String, i64)> = db
        .conn
        .prepare(
            "SELECT title, depth, markdown,
                    (SELECT count(*) FROM kb_chunks c WHERE c.document_id = d.id)
             FROM kb_documents d ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let shared = format!("{address}\n\n{hours}");
    let expected: Vec<(String, Option<i64>, String, i64)> = pages
        .iter()
        .enumerate()
        .map(|(i, (_, title, own))| (title.to_string(), Some(i.min(1) as i64), own.to_string(), 1))
        .chain([("Informations pratiques".to_string(), None, shared, 1)])
        .collect();
    assert_eq!(docs, expected);
    let tenant: String = db
        .conn
        .query_row("SELECT tenant_id FROM kb_crawl_jobs", [], |r| r.get(0))
        .unwrap();
    let found = kb_search(&db, json!({"tenant_id": tenant, "query": "rue des Lilas"})).unwrap();
    let titles: Vec<&str> = found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["Informations pratiques"]);
    // The index holds each chunk once: no entry of the pages' old text.
    let indexed: i64 = db
        .conn
        .query_row("SELECT count(*) FROM kb_chunks_index", [], |r| r.get(0))
        .unwrap();
    assert_eq!(indexed, 4);
}

/// A page that ends at another form of a queued page is that page; one
/// that ends at another form of itself (its www. form) is stored where it
/// ended, and is no redirect.
#[test]
fn a_page_that_ends_at_another_form_of_a_queued_url_is_that_page() {
    let db = Db::memory();
    let job = claimed(&db);
    worker(
        &db,
        "store_page",
        json!({
        "job_id": job, "worker": "w1", "url": "https://salon.fr/", "status": "stored",
        "title": "Accueil", "markdown": SALON,
        "links": ["https://salon.fr/ancien-contact", "https://salon.fr/contact", "https://salon.fr/horaires"]}),
    )
    .unwrap();
    // Redirected to the www. form of a page already queued: that page.
    let moved = worker(
        &db,
        "store_page",
        json!({
        "job_id": job, "worker": "w1", "url": "https://salon.fr/ancien-contact",
        "final_url": "http://www.salon.fr/contact/", "status": "stored",
        "title": "Contact", "markdown": "Appelez-nous au 04 78 12 34 56, du mardi au samedi."}),
    )
    .unwrap();
    assert_eq!(moved["url"], "https://salon.fr/contact");
    let itself = worker(
        &db,
        "store_page",
        json!({
        "job_id": job, "worker": "w1", "url": "https://salon.fr/horaires",
        "final_url": "https://www.salon.fr/horaires", "status": "stored",
        "title": "Horaires", "markdown": "Du mardi au samedi, de 9h00 à 18h00."}),
    )
    .unwrap();
    assert_eq!(
        (&itself["status"], &itself["url"]),
        (&json!("stored"), &json!("https://www.salon.fr/horaires"))
    );
    assert_eq!(
        rows(
            &db.conn,
            "SELECT url, status, reason FROM kb_crawl_pages ORDER BY id"
        ),
        [
            ["Text(\"https://salon.fr/\")", "Text(\"stored\")", "Null"],
            [
                "Text(\"https://salon.fr/ancien-contact\")",
                "Text(\"skipped\")",
                "Text(\"redirected\")"
            ],
            [
                "Text(\"https://salon.fr/contact\")",
                "Text(\"stored\")",
                "Null"
            ],
            [
                "Text(\"https://salon.fr/horaires\")",
                "Text(\"stored\")",
                "Null"
            ],
        ]
    );
    assert_eq!(
        rows(&db.conn, "SELECT url FROM kb_documents ORDER BY id"),
        [
            ["Text(\"https://salon.fr/\")"],
            ["Text(\"https://salon.fr/contact\")"],
            ["Text(\"https://www.salon.fr/horaires\")"]
        ]
    );
}

/// Pages naming one canonical (a template's mistake): the first is stored
/// under it; a next one, its identity's page settled, is stored under its
/// own address when its text differs (it was dropped as a duplicate of a
/// page it did not repeat), and is a redirect to it when it is the same.
#[test]
fn a_page_naming_a_settled_canonical_keeps_its_own_text_at_its_own_address() {
    let db = Db::memory();
    let job = claimed(&db);
    let page = |url: &str, markdown: &str| {
        worker(
            &db,
            "store_page",
            json!({"job_id": job, "worker": "w1", "url": url, "status": "stored",
                   "final_url": "https://salon.fr/soins", "title": "Soins", "markdown": markdown}),
        )
        .unwrap()
    };
    worker(
        &db,
        "store_page",
        json!({"job_id": job, "worker": "w1", "url": "https://salon.fr/", "status": "stored",
               "title": "Accueil", "markdown": SALON,
               "links": ["https://salon.fr/soins/visage", "https://salon.fr/soins/corps",
                         "https://salon.fr/soins/mains"]}),
    )
    .unwrap();
    let visage = page(
        "https://salon.fr/soins/visage",
        "Soin du visage : 45 minutes, 60 €.",
    );
    let corps = page(
        "https://salon.fr/soins/corps",
        "Gommage du corps : 30 minutes, 40 €.",
    );
    let mains = page(
        "https://salon.fr/soins/mains",
        "Soin du visage : 45 minutes, 60 €.",
    );
    assert_eq!(
        [&visage, &corps, &mains].map(|a| (
            a["url"].clone(),
            a["status"].clone(),
            a["reason"].clone()
        )),
        [
            (
                json!("https://salon.fr/soins"),
                json!("stored"),
                json!(null)
            ),
            (
                json!("https://salon.fr/soins/corps"),
                json!("stored"),
                json!(null)
            ),
            (
                json!("https://salon.fr/soins"),
                json!("skipped"),
                json!("redirected")
            ),
        ]
    );
    assert_eq!(
        rows(
            &db.conn,
            "SELECT url, status, reason FROM kb_crawl_pages ORDER BY id"
        ),
        [
            ["Text(\"https://salon.fr/\")", "Text(\"stored\")", "Null"],
            [
                "Text(\"https://salon.fr/soins/visage\")",
                "Text(\"skipped\")",
                "Text(\"redirected\")"
            ],
            [
                "Text(\"https://salon.fr/soins/corps\")",
                "Text(\"stored\")",
                "Null"
            ],
            [
                "Text(\"https://salon.fr/soins/mains\")",
                "Text(\"skipped\")",
                "Text(\"redirected\")"
            ],
            [
                "Text(\"https://salon.fr/soins\")",
                "Text(\"stored\")",
                "Null"
            ],
        ]
    );
}

/// `SELECT onboarding_kb_recut()`: the answer, or the error's text.
fn recut(db: &Db) -> Result<Value, String> {
    db.call("SELECT onboarding_kb_recut()", &[])
}

/// Every chunk as stored, with its index entry, by document and place: what
/// a cut makes, whatever the chunks' ids.
fn cut_rows(db: &Db) -> Vec<Vec<String>> {
    rows(
        &db.conn,
        "SELECT c.document_id, c.position, c.tenant_id, c.heading, c.text,
                i.terms, i.heading_terms, i.tenant
         FROM kb_chunks c LEFT JOIN kb_chunks_index i ON i.rowid = c.id
         ORDER BY c.document_id, c.position",
    )
}

/// A guide of twelve sections of about 330 characters: several chunks.
fn guide() -> String {
    (1..=12)
        .map(|n| {
            format!(
                "## Soin {n}\n\nLe soin du visage commence par un diagnostic de la peau, puis un \
                 nettoyage doux et un gommage adapté. Nous appliquons ensuite un masque aux \
                 produits naturels, choisi pour l'été ou pour l'hiver, et terminons par un \
                 massage relaxant.\n\n"
            )
        })
        .collect()
}

/// Migration 013 and `onboarding_kb_recut()`: documents stored before it
/// are of no known cut; each call cuts the first of them again as storing
/// it now would, rewriting only the chunks and entries that differ, until
/// none is left; a call then writes nothing.
#[test]
fn documents_stored_before_013_are_cut_again_one_a_call() {
    let db = Db::memory();
    let docs = json!({"method":"documents","documents":[
        {"title":"Soins","content":guide()},
        {"title":"Horaires d'été","content":"En juillet et en août : du mardi au samedi, 10h – 19h."},
        {"title":"Tarifs","content":TARIFS}]});
    let s = ready(&db, &docs.to_string());
    db.complete(&s).unwrap();
    let fresh = cut_rows(&db);
    let chunks = |doc: i64| {
        db.scalar(&format!(
            "SELECT count(*) FROM kb_chunks WHERE document_id = {doc}"
        ))
    };
    assert_eq!(chunks(1), rusqlite::types::Value::Integer(3));
    let search = |q: &str| kb_search(&db, json!({"session_id": s, "query": q})).unwrap();
    let answers = [search("gommage visage"), search("été"), search("coupe")];
    let titles = |answer: &Value| -> Vec<String> {
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["title"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        titles(&answers[1]),
        ["Horaires d'été", "Soins", "Soins", "Soins"]
    );

    // The database as version 12 left it: the guide cut by an older
    // chunker (one chunk of its whole text), the summer hours indexed by an
    // older analysis (without "été"), the prices as they are now.
    db.conn
        .execute_batch(
            "DELETE FROM kb_chunks_index WHERE rowid IN (SELECT id FROM kb_chunks WHERE document_id = 1);
             DELETE FROM kb_chunks WHERE document_id = 1;
             INSERT INTO kb_chunks (document_id, tenant_id, position, heading, text)
                 SELECT id, tenant_id, 0, title, markdown FROM kb_documents WHERE id = 1;
             INSERT INTO kb_chunks_index (rowid, terms, heading_terms, tenant)
                 SELECT c.id, 'soin', 'soin', hex(c.tenant_id) FROM kb_chunks c WHERE document_id = 1;
             UPDATE kb_chunks_index SET terms = replace(terms, 'ete', ''),
                                        heading_terms = replace(heading_terms, 'ete', '')
                 WHERE rowid IN (SELECT id FROM kb_chunks WHERE document_id = 2);
             DROP INDEX kb_documents_cut;
             ALTER TABLE kb_documents DROP COLUMN cut;
             DROP TABLE kb_recut_failures;
             DELETE FROM onboarding_schema_migrations WHERE version IN (13, 14);",
        )
        .unwrap();
    assert_eq!(chunks(1), rusqlite::types::Value::Integer(1));
    assert_eq!(titles(&search("été")), Vec::<String>::new());
    assert_ne!(search("gommage visage"), answers[0]);
    let kept_ids = rows(
        &db.conn,
        "SELECT id FROM kb_chunks WHERE document_id IN (2, 3) ORDER BY id",
    );
    assert_eq!(
        db.scalar("SELECT onboarding_migrate()"),
        rusqlite::types::Value::Integer(15)
    );
    assert_eq!(
        rows(&db.conn, "SELECT id, cut FROM kb_documents ORDER BY id"),
        [
            ["Integer(1)", "Integer(0)"],
            ["Integer(2)", "Integer(0)"],
            ["Integer(3)", "Integer(0)"]
        ]
    );

    let tenant = db.get(&s)["tenant_id"].clone();
    let done = |document: i64, before: usize, chunks: usize, kept: usize, remaining: i64| {
        json!({"success": true, "recut": {"document_id": document, "tenant_id": tenant,
               "chunks_before": before, "chunks": chunks, "kept": kept}, "failed": null,
               "remaining": remaining, "failing": 0})
    };
    assert_eq!(recut(&db).unwrap(), done(1, 1, 3, 0, 2));
    assert_eq!(recut(&db).unwrap(), done(2, 1, 1, 0, 1));
    assert_eq!(recut(&db).unwrap(), done(3, 1, 1, 1, 0));
    let changes = db.scalar("SELECT total_changes()");
    assert_eq!(
        recut(&db).unwrap(),
        json!({"success": true, "recut": null, "failed": null, "remaining": 0, "failing": 0})
    );
    assert_eq!(db.scalar("SELECT total_changes()"), changes);

    assert_eq!(cut_rows(&db), fresh);
    // The chunks left as they were, and the one rewritten in place, keep
    // their ids.
    assert_eq!(
        rows(
            &db.conn,
            "SELECT id FROM kb_chunks WHERE document_id IN (2, 3) ORDER BY id"
        ),
        kept_ids
    );
    assert_eq!(
        [search("gommage visage"), search("été"), search("coupe")],
        answers
    );
}

/// A document stored now is of this library's cut: nothing to cut again.
/// One of a later cut (stored by a newer library beside this one) is left
/// as it is.
#[test]
fn documents_of_this_cut_or_a_later_one_are_not_cut_again() {
    let db = Db::memory();
    let docs = json!({"method":"documents","documents":[
        {"title":"Tarifs","content":TARIFS},
        {"title":"Le salon","content":SALON}]});
    let s = ready(&db, &docs.to_string());
    db.complete(&s).unwrap();
    assert_eq!(
        rows(&db.conn, "SELECT cut FROM kb_documents ORDER BY id"),
        [[format!("Integer({CUT})")], [format!("Integer({CUT})")]]
    );
    assert_eq!(
        recut(&db).unwrap(),
        json!({"success": true, "recut": null, "failed": null, "remaining": 0, "failing": 0})
    );
    db.conn
        .execute_batch(&format!(
            "UPDATE kb_documents SET cut = {} WHERE id = 1;
             UPDATE kb_chunks SET text = 'Coupe : 25 €' WHERE document_id = 1;",
            CUT + 1
        ))
        .unwrap();
    let before = db.snapshot();
    assert_eq!(
        recut(&db).unwrap(),
        json!({"success": true, "recut": null, "failed": null, "remaining": 0, "failing": 0})
    );
    assert_eq!(db.snapshot(), before);
}

/// A cut that fails half way leaves the document, its chunks and their
/// entries as they were, and is recorded: the calls go on with the next
/// documents, and try it again an hour later.
#[test]
fn a_document_whose_cut_fails_is_passed_over_for_an_hour() {
    let db = Db::memory();
    let docs = json!({"method":"documents","documents":[
        {"title":"Soins","content":guide()},
        {"title":"Tarifs","content":TARIFS}]});
    let s = ready(&db, &docs.to_string());
    db.complete(&s).unwrap();
    let fresh = cut_rows(&db);
    let tenant = db.get(&s)["tenant_id"].clone();
    // The guide as one chunk of its whole text, and both of no known cut:
    // a recut of the guide rewrites its chunk in place and then adds two,
    // the second of which fails.
    db.conn
        .execute_batch(
            "DELETE FROM kb_chunks_index WHERE rowid IN (SELECT id FROM kb_chunks WHERE document_id = 1);
             DELETE FROM kb_chunks WHERE document_id = 1;
             INSERT INTO kb_chunks (document_id, tenant_id, position, heading, text)
                 SELECT id, tenant_id, 0, title, markdown FROM kb_documents WHERE id = 1;
             INSERT INTO kb_chunks_index (rowid, terms, heading_terms, tenant)
                 SELECT id, 'soin', 'soin', hex(tenant_id) FROM kb_chunks WHERE document_id = 1;
             UPDATE kb_documents SET cut = 0;
             CREATE TEMP TRIGGER full AFTER INSERT ON kb_chunks
                 WHEN NEW.document_id = 1 AND NEW.position = 2
                 BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
        .unwrap();
    let before = db.snapshot();
    let failed = |attempts: i64, retry_at: &str, remaining: i64| {
        json!({"success": true, "recut": null, "failed": {"document_id": 1, "tenant_id": tenant,
               "error": "internal: database or disk is full", "attempts": attempts,
               "retry_at": retry_at}, "remaining": remaining, "failing": 1})
    };
    assert_eq!(
        recut(&db).unwrap(),
        failed(1, "2026-11-24T11:00:00.000Z", 1)
    );
    // Nothing of the cut is left; the failure is recorded.
    let failure = format!(
        "kb_recut_failures: Integer(1) | Integer({CUT}) | Integer(1) | \
         Text(\"internal: database or disk is full\") | \
         Text(\"2026-11-24T10:00:00.000Z\") | Text(\"2026-11-24T11:00:00.000Z\")"
    );
    let mut expected = before.clone();
    expected.push(failure);
    assert_eq!(db.snapshot(), expected);

    // The next document is cut; then none is left for an hour.
    assert_eq!(
        recut(&db).unwrap(),
        json!({"success": true, "recut": {"document_id": 2, "tenant_id": tenant,
               "chunks_before": 1, "chunks": 1, "kept": 1}, "failed": null,
               "remaining": 0, "failing": 1})
    );
    let waiting = json!({"success": true, "recut": null, "failed": null, "remaining": 0,
                         "failing": 1});
    let changes = db.scalar("SELECT total_changes()");
    assert_eq!(recut(&db).unwrap(), waiting);
    db.env.advance_ms(3_599_999);
    assert_eq!(recut(&db).unwrap(), waiting);
    assert_eq!(db.scalar("SELECT total_changes()"), changes);

    // An hour later it is tried again, and fails again.
    db.env.advance_ms(1);
    assert_eq!(
        recut(&db).unwrap(),
        failed(2, "2026-11-24T12:00:00.000Z", 0)
    );
    assert_eq!(
        db.rows("SELECT * FROM kb_recut_failures", &[]),
        [json!({"document_id": 1, "cut": CUT, "attempts": 2,
                "error": "internal: database or disk is full",
                "failed_at": "2026-11-24T11:00:00.000Z", "retry_at": "2026-11-24T12:00:00.000Z"})]
    );

    // Once the cause is gone, the next try cuts it, and the failure goes.
    db.conn.execute_batch("DROP TRIGGER full").unwrap();
    db.env.advance_ms(3_600_000);
    assert_eq!(
        recut(&db).unwrap(),
        json!({"success": true, "recut": {"document_id": 1, "tenant_id": tenant,
               "chunks_before": 1, "chunks": 3, "kept": 0}, "failed": null,
               "remaining": 0, "failing": 0})
    );
    assert_eq!(db.count("kb_recut_failures"), 0);
    assert_eq!(cut_rows(&db), fresh);
}

/// Inside a caller's transaction, a failed cut's record joins it (the
/// caller's rollback undoes it too); a failure that ends the transaction
/// (`RAISE(ROLLBACK)`, an I/O error) is the call's error, naming the
/// document, and nothing is recorded: a record would commit alone, outside
/// the caller's transaction. In autocommit mode such a failure ends the
/// call's own transaction only, and is recorded.
#[test]
fn a_failed_cut_inside_a_transaction_is_recorded_in_it_or_not_at_all() {
    let db = Db::memory();
    let docs = json!({"method":"documents","documents":[{"title":"Tarifs","content":TARIFS}]});
    let s = ready(&db, &docs.to_string());
    db.complete(&s).unwrap();
    let tenant = db.get(&s)["tenant_id"].clone();
    db.conn
        .execute_batch(
            "UPDATE kb_documents SET cut = 0;
             CREATE TEMP TRIGGER refused AFTER UPDATE OF cut ON kb_documents
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
        )
        .unwrap();
    let before = db.snapshot();

    db.conn.execute_batch("BEGIN").unwrap();
    assert_eq!(
        recut(&db).unwrap(),
        json!({"success": true, "recut": null, "failed": {"document_id": 1, "tenant_id": tenant,
               "error": "internal: refused", "attempts": 1,
               "retry_at": "2026-11-24T11:00:00.000Z"}, "remaining": 0, "failing": 1})
    );
    assert_eq!(db.count("kb_recut_failures"), 1);
    db.conn.execute_batch("ROLLBACK").unwrap();
    assert_eq!(db.snapshot(), before);

    db.conn
        .execute_batch(
            "DROP TRIGGER refused;
             CREATE TEMP TRIGGER gone AFTER UPDATE OF cut ON kb_documents
                 BEGIN SELECT RAISE(ROLLBACK, 'the transaction is gone'); END;
             BEGIN;
             INSERT INTO kb_recut_failures VALUES (7, 1, 1, 'the caller''s row', 'x', 'y');",
        )
        .unwrap();
    assert_eq!(
        recut(&db),
        Err(
            "onboarding_kb_recut: internal: cutting document 1 again ended the caller's \
             transaction: the transaction is gone"
                .to_string()
        )
    );
    assert!(db.conn.is_autocommit());
    assert_eq!(db.snapshot(), before);

    // In autocommit mode the call's own transaction is the one that ends:
    // nothing of a caller's is lost, and the failure is recorded.
    assert_eq!(
        recut(&db).unwrap(),
        json!({"success": true, "recut": null, "failed": {"document_id": 1, "tenant_id": tenant,
               "error": "internal: the transaction is gone", "attempts": 1,
               "retry_at": "2026-11-24T11:00:00.000Z"}, "remaining": 0, "failing": 1})
    );
    let mut expected = before.clone();
    expected.push(format!(
        "kb_recut_failures: Integer(1) | Integer({CUT}) | Integer(1) | \
         Text(\"internal: the transaction is gone\") | \
         Text(\"2026-11-24T10:00:00.000Z\") | Text(\"2026-11-24T11:00:00.000Z\")"
    ));
    assert_eq!(db.snapshot(), expected);
}

/// A document the change did not touch costs the write of its cut alone:
/// cutting a 146,550-character text again writes exactly the pages that
/// setting its cut by hand writes. From cut 0 (or 1) that is the whole row
/// once, its text included: a record stores 0 and 1 in no byte and 2 in
/// one, so the row changes size (40 pages here). A later raise, from one
/// one-byte cut to another, overwrites the row in place: two pages, the
/// row's and the index's.
#[test]
fn cutting_an_unchanged_document_again_writes_its_cut_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::on(rusqlite::Connection::open(dir.path().join("kb.db")).unwrap());
    db.conn
        .execute_batch("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0")
        .unwrap();
    let content = guide().repeat(50);
    assert_eq!(content.chars().count(), 146_550);
    let docs = json!({"method":"documents","documents":[{"title":"Soins","content":content}]});
    let s = ready(&db, &docs.to_string());
    db.complete(&s).unwrap();
    let page: u32 = db
        .conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    let wal = dir.path().join("kb.db-wal");
    // The frames the WAL holds after `sql` (or a recut) from cut `from`:
    // the WAL's header, then a header and a page a frame.
    let frames = |from: i64, sql: Option<&str>| {
        db.conn
            .execute_batch(&format!(
                "UPDATE kb_documents SET cut = {from}; PRAGMA wal_checkpoint(TRUNCATE);"
            ))
            .unwrap();
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
        match sql {
            Some(sql) => db.conn.execute_batch(sql).unwrap(),
            None => {
                let done = recut(&db).unwrap();
                assert_eq!(
                    (&done["recut"]["chunks"], &done["recut"]["kept"]),
                    (&json!(150), &json!(150))
                );
            }
        }
        (std::fs::metadata(&wal).unwrap().len() - 32) / (24 + u64::from(page))
    };
    // From cut 0, the row rewritten whole; from cut 2, in place (any cut
    // from 2 to 127 is stored in one byte).
    assert!((3..=127).contains(&CUT));
    let set_by_hand = format!("UPDATE kb_documents SET cut = {CUT}");
    let by_hand = frames(0, Some(&set_by_hand));
    assert_eq!((frames(0, None), by_hand), (by_hand, 40));
    let by_hand = frames(2, Some(&set_by_hand));
    assert_eq!((frames(2, None), by_hand), (by_hand, 2));
}

/// A chunk whose text and terms are right but whose row or entry is not
/// the tenant's (a host edited the file) is not kept as it is: the
/// tenant's searches would not find it. Nor is one without an entry.
#[test]
fn a_recut_rewrites_a_chunk_whose_row_or_entry_is_not_the_tenants() {
    let db = Db::memory();
    let docs = json!({"method":"documents","documents":[
        {"title":"Tarifs","content":TARIFS},
        {"title":"Le salon","content":SALON},
        {"title":"Horaires d'été","content":"En juillet et en août : du mardi au samedi."}]});
    let s = ready(&db, &docs.to_string());
    db.complete(&s).unwrap();
    let fresh = cut_rows(&db);
    let search = |q: &str| kb_search(&db, json!({"session_id": s, "query": q})).unwrap();
    let found = [search("coupe"), search("coiffure"), search("juillet")];
    for answer in &found {
        assert_eq!(answer["results"].as_array().unwrap().len(), 1);
    }
    // Another tenant's, the chunks' tenant being a foreign key.
    let other = db.get(&db.create())["tenant_id"]
        .as_str()
        .unwrap()
        .to_string();
    db.conn
        .execute(
            "UPDATE kb_chunks_index SET tenant = hex(?1)
                 WHERE rowid IN (SELECT id FROM kb_chunks WHERE document_id = 1)",
            [&other],
        )
        .unwrap();
    db.conn
        .execute(
            "UPDATE kb_chunks SET tenant_id = ?1 WHERE document_id = 2",
            [&other],
        )
        .unwrap();
    db.conn
        .execute_batch(
            "DELETE FROM kb_chunks_index WHERE rowid IN (SELECT id FROM kb_chunks WHERE document_id = 3);
             UPDATE kb_documents SET cut = 0;",
        )
        .unwrap();
    for q in ["coupe", "coiffure", "juillet"] {
        assert_eq!(search(q)["results"], json!([]));
    }
    let kept = |answer: Value| {
        (
            answer["recut"]["chunks"].clone(),
            answer["recut"]["kept"].clone(),
        )
    };
    for _ in 0..3 {
        assert_eq!(kept(recut(&db).unwrap()), (json!(1), json!(0)));
    }
    assert_eq!(cut_rows(&db), fresh);
    assert_eq!(
        [search("coupe"), search("coiffure"), search("juillet")],
        found
    );
}

/// Chunks of equal score are answered in the knowledge base's order, by
/// document and place, whatever their ids: a document cut again (or
/// stored again) gives its new chunks ids after every other's, and the
/// search answers as it did after a fresh store.
#[test]
fn a_search_answers_equal_scores_by_document_and_place_whatever_the_ids() {
    let db = Db::memory();
    let docs = json!({"method":"documents","documents":[
        {"title":"Alpha","content":"Coupe et couleur."},
        {"title":"Beta","content":"Coupe, et couleur"}]});
    let s = ready(&db, &docs.to_string());
    db.complete(&s).unwrap();
    let search = || kb_search(&db, json!({"session_id": s, "query": "coupe"})).unwrap();
    let fresh = search();
    let order = |answer: &Value| -> Vec<(i64, f64)> {
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["document_id"].as_i64().unwrap(),
                    r["score"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let scores = order(&fresh);
    assert_eq!(scores.len(), 2);
    assert_eq!((scores[0].0, scores[1].0), (1, 2));
    assert_eq!(scores[0].1, scores[1].1);
    // The first document of no known cut, without its chunk: cut again,
    // its chunk comes back with an id after the second's.
    db.conn
        .execute_batch(
            "DELETE FROM kb_chunks_index WHERE rowid IN (SELECT id FROM kb_chunks WHERE document_id = 1);
             DELETE FROM kb_chunks WHERE document_id = 1;
             UPDATE kb_documents SET cut = 0 WHERE id = 1;",
        )
        .unwrap();
    assert_eq!(recut(&db).unwrap()["recut"]["chunks"], 1);
    assert_eq!(
        rows(&db.conn, "SELECT document_id FROM kb_chunks ORDER BY id"),
        [["Integer(2)"], ["Integer(1)"]]
    );
    assert_eq!(search(), fresh);
    // The best one alone: the tie is ordered before the cut, too.
    let best = kb_search(&db, json!({"session_id": s, "query": "coupe", "limit": 1})).unwrap();
    assert_eq!(best["results"][0]["document_id"], 1);
}

/// A document's places can have a gap (a chunk a site's repeated blocks
/// emptied goes, its neighbours keep their places): a recut matches the
/// chunks by place, keeps those that are right and fills the gap.
#[test]
fn a_recut_fills_a_gap_among_the_places_and_keeps_the_chunks_around_it() {
    let db = Db::memory();
    let docs = json!({"method":"documents","documents":[{"title":"Soins","content":guide()}]});
    let s = ready(&db, &docs.to_string());
    db.complete(&s).unwrap();
    let fresh = cut_rows(&db);
    let ids = rows(&db.conn, "SELECT id FROM kb_chunks ORDER BY position");
    assert_eq!(ids.len(), 3);
    db.conn
        .execute_batch(
            "DELETE FROM kb_chunks_index WHERE rowid = (SELECT id FROM kb_chunks WHERE position = 1);
             DELETE FROM kb_chunks WHERE position = 1;
             UPDATE kb_documents SET cut = 0;",
        )
        .unwrap();
    assert_eq!(
        recut(&db).unwrap()["recut"],
        json!({"document_id": 1, "tenant_id": db.get(&s)["tenant_id"], "chunks_before": 2,
               "chunks": 3, "kept": 2})
    );
    assert_eq!(cut_rows(&db), fresh);
    let now = rows(&db.conn, "SELECT id FROM kb_chunks ORDER BY position");
    assert_eq!([&now[0], &now[2]], [&ids[0], &ids[2]]);
}

/// A same-site link past the URL limit (2,048 characters) is no page: it
/// is not admitted (its report would be refused, and the job stopped at it
/// on every attempt); a redirect ending past it is refused as the page's
/// report (the crawler then fails that page and goes on). `shared` that is
/// not an array is refused, not ignored.
#[test]
fn a_link_past_the_url_limit_is_no_page() {
    let db = Db::memory();
    let job = claimed(&db);
    let long = format!("https://salon.fr/{}", "z".repeat(2048));
    let page = worker(
        &db,
        "store_page",
        json!({
        "job_id": job, "worker": "w1", "url": "https://salon.fr/", "status": "stored",
        "title": "Accueil", "markdown": SALON,
        "links": [long.clone(), "https://salon.fr/tarifs"]}),
    )
    .unwrap();
    assert_eq!(
        page["added"],
        json!([{"url": "https://salon.fr/tarifs", "depth": 1}])
    );
    assert_eq!(
        worker(
            &db,
            "store_page",
            json!({
            "job_id": job, "worker": "w1", "url": "https://salon.fr/tarifs", "final_url": long,
            "status": "stored", "title": "Tarifs", "markdown": TARIFS}),
        )
        .unwrap_err(),
        "onboarding_kb_store_page: invalid_field: final_url is longer than 2048 characters"
    );
    assert_eq!(
        worker(
            &db,
            "store_page",
            json!({
            "job_id": job, "worker": "w1", "url": "https://salon.fr/tarifs", "status": "stored",
            "title": "Tarifs", "markdown": TARIFS, "shared": "x"})
        )
        .unwrap_err(),
        "onboarding_kb_store_page: invalid_field: shared must be an array"
    );
}
