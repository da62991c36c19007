//! The OpenAPI document and the router's table describe the same routes.
//!
//! The document describes the JSON API only. The front end's files (`/`,
//! `/dashboard`, `/assets/…`) are routes of the same table but not of the
//! document: they answer HTML, JavaScript, CSS or SVG, not the API's JSON,
//! and a schema of a page would say nothing a client could use. The tests
//! below skip exactly those routes ([`api_routes`]), and
//! `front_end_routes_are_the_only_ones_left_out` pins which ones they are.
use std::collections::BTreeSet;

use onboarding_server::http::OPENAPI;
use onboarding_server::routes::{self, Endpoint, Route, ROUTES};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The routes the OpenAPI document describes: all but the front end's files.
fn api_routes() -> impl Iterator<Item = &'static Route> {
    ROUTES.iter().filter(|r| r.endpoint.is_api())
}

#[test]
fn front_end_routes_are_the_only_ones_left_out() {
    let left_out: Vec<(String, &str)> = ROUTES
        .iter()
        .filter(|r| !r.endpoint.is_api())
        .map(|r| (r.method.to_string(), r.path))
        .collect();
    let expected = [
        "/",
        "/dashboard",
        "/assets/style.css",
        "/assets/api.js",
        "/assets/wizard.js",
        "/assets/page.js",
        "/assets/messages.js",
        "/assets/knowledge.js",
        "/assets/dashboard.js",
        "/assets/icon.svg",
    ];
    let expected: Vec<(String, &str)> = expected.iter().map(|p| ("GET".to_string(), *p)).collect();
    assert_eq!(left_out, expected);
    assert!(ROUTES
        .iter()
        .filter(|r| r.path == "/" || r.path == "/dashboard" || r.path.starts_with("/assets/"))
        .all(|r| matches!(r.endpoint, Endpoint::Web(_))));
}

#[test]
fn openapi_paths_and_methods_match_the_route_table_both_ways() {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if METHODS.contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = api_routes()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "openapi.json routes the server lacks: {unrouted:?}"
    );
}

#[test]
fn every_operation_documents_its_success_and_every_ref_resolves() {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
    for route in api_routes() {
        let operation = &doc["paths"][route.path][route.method.as_str().to_lowercase()];
        let success = match route.endpoint {
            routes::Endpoint::Create | routes::Endpoint::PhoneSend => "201",
            _ => "200",
        };
        assert!(
            operation["responses"][success].is_object(),
            "{} {} documents no {success}",
            route.method,
            route.path
        );
    }
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for r in refs {
        let pointer = r.strip_prefix('#').expect("local $ref");
        assert!(
            doc.pointer(pointer).is_some(),
            "$ref {r} resolves to nothing"
        );
    }
}

fn collect_refs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", serde_json::Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn document() -> serde_json::Value {
    serde_json::from_str(OPENAPI).expect("openapi.json is JSON")
}

/// Follows a local `$ref` (once or more) to what it names.
fn resolve<'a>(doc: &'a serde_json::Value, value: &'a serde_json::Value) -> &'a serde_json::Value {
    match value["$ref"].as_str() {
        Some(r) => resolve(doc, doc.pointer(&r[1..]).expect("$ref resolves")),
        None => value,
    }
}

/// The `code` values an error response declares.
fn codes(doc: &serde_json::Value, response: &serde_json::Value) -> Vec<String> {
    let schema = &resolve(doc, response)["content"]["application/json"]["schema"];
    let overlay = &schema["allOf"][1];
    overlay["properties"]["code"]["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("no code enum in {schema}"))
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_operation_lists_the_edge_statuses_with_their_codes() {
    let doc = document();
    let all_codes: Vec<&str> = doc["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for route in api_routes() {
        let label = format!("{} {}", route.method, route.path);
        let responses =
            &doc["paths"][route.path][route.method.as_str().to_lowercase()]["responses"];
        let mut expected = vec![
            ("400", "bad_request"),
            ("431", "headers_too_large"),
            ("500", "internal"),
            ("417", "expectation_failed"),
            ("501", "not_implemented"),
            ("505", "http_version_not_supported"),
        ];
        if route.method == hyper::Method::POST {
            expected.extend([
                ("400", "invalid_json"),
                ("408", "request_timeout"),
                ("413", "payload_too_large"),
                ("415", "unsupported_media_type"),
            ]);
        }
        if route.path != "/openapi.json" {
            expected.push(("503", "unavailable"));
        }
        if route.path.contains(routes::SESSION_ID) {
            expected.push(("404", "not_found"));
        }
        for (status, code) in expected {
            let response = &responses[status];
            assert!(response.is_object(), "{label} does not list {status}");
            assert!(
                codes(&doc, response).iter().any(|c| c == code),
                "{label}: {status} does not name {code}"
            );
        }
        for (status, response) in responses.as_object().unwrap() {
            if status.starts_with('2') {
                continue;
            }
            for code in codes(&doc, response) {
                assert!(
                    all_codes.contains(&code.as_str()),
                    "{label}: {code} is not in Error"
                );
            }
            if status == "429" || status == "503" {
                let headers = &resolve(&doc, response)["headers"];
                assert!(
                    headers["Retry-After"].is_object(),
                    "{label}: {status} lacks Retry-After"
                );
            }
        }
    }
    // The library's rate_limited answers (phone codes) carry their wait.
    let phone_send = &doc["paths"]["/api/v1/onboarding/session/{session_id}/phone/verification"]
        ["post"]["responses"];
    assert_eq!(codes(&doc, &phone_send["429"]), ["rate_limited"]);
    assert_eq!(codes(&doc, &phone_send["409"]), ["conflict", "incomplete"]);
    let phone_verify =
        &doc["paths"]["/api/v1/onboarding/session/{session_id}/phone/verify"]["post"]["responses"];
    assert_eq!(codes(&doc, &phone_verify["422"]), ["invalid_field"]);
    assert_eq!(codes(&doc, &phone_verify["409"]), ["conflict"]);
    let not_allowed = &doc["components"]["responses"]["MethodNotAllowed"];
    assert!(not_allowed["headers"]["Allow"].is_object());
    assert_eq!(codes(&doc, not_allowed), ["method_not_allowed"]);
}

/// What the library trims from a value (`error::trim`): white space
/// (Rust's `str::trim`) and the invisible format characters a paste
/// carries in, as a regex class.
const WS: &str = r"[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufeff\uffa0]*";

/// The pattern of a trimmed value that must be one of `names`.
fn padded<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> String {
    let names: Vec<String> = names
        .into_iter()
        .map(|n| n.as_ref().replace('+', r"\+"))
        .collect();
    format!("^{WS}(?:{}){WS}$", names.join("|"))
}

fn pattern<'a>(doc: &'a serde_json::Value, schema: &str, pointer: &str) -> &'a str {
    doc["components"]["schemas"][schema]
        .pointer(pointer)
        .and_then(|p| p.as_str())
        .unwrap_or_else(|| panic!("no pattern at {schema}{pointer}"))
}

/// Free-form fields the library trims as it trims the enumerated ones
/// (`error::trim`, white space and invisible characters): their patterns
/// allow the same at both ends (`\u{200b}web` is the source `web`).
#[test]
fn free_form_patterns_allow_what_the_library_trims() {
    let doc = document();
    for (schema, pointer) in [
        ("CreatePayload", "/properties/source/pattern"),
        ("KbPayload", "/oneOf/0/properties/crawl_url/pattern"),
        ("BusinessPayload", "/properties/company_name/pattern"),
    ] {
        let pattern = pattern(&doc, schema, pointer);
        assert!(
            pattern.starts_with(&format!("^{WS}")) && pattern.ends_with(&format!("{WS}$")),
            "{schema}{pointer}: {pattern}"
        );
    }
}

#[test]
fn enumerated_patterns_are_the_library_lists() {
    use onboarding::{catalog, BOOKING_PROVIDERS, CHANNELS, CODE_CHANNELS, KB_METHODS};
    let doc = document();
    assert_eq!(
        pattern(
            &doc,
            "ChannelsPayload",
            "/properties/channels/items/pattern"
        ),
        padded(CHANNELS)
    );
    assert_eq!(
        pattern(&doc, "PhoneSendPayload", "/properties/channel/pattern"),
        padded(CODE_CHANNELS)
    );
    assert_eq!(
        pattern(&doc, "KbPayload", "/properties/method/pattern"),
        padded(KB_METHODS)
    );
    assert_eq!(
        pattern(&doc, "AppointmentsPayload", "/properties/provider/pattern"),
        padded(BOOKING_PROVIDERS)
    );
    assert_eq!(
        pattern(&doc, "VapiPayload", "/properties/agent_type/pattern"),
        padded(catalog::AGENT_TYPES.iter().map(|a| a.id))
    );
    // Voices are matched in any letter case.
    let mut voices = vec!["female", "male"];
    voices.extend(catalog::VOICES.iter().map(|v| v.id));
    let any_case = voices.iter().map(|v| {
        v.chars()
            .map(|c| format!("[{c}{}]", c.to_ascii_uppercase()))
            .collect::<String>()
    });
    assert_eq!(
        pattern(&doc, "VapiPayload", "/properties/voice/pattern"),
        padded(any_case)
    );
    assert_eq!(
        pattern(&doc, "AppointmentsPayload", "/properties/timezone/pattern"),
        padded(chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())),
        "the time zones of the document are not chrono-tz's"
    );
}
