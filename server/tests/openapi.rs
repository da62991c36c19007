//! The OpenAPI document and the router's table describe the same routes.
use std::collections::BTreeSet;

use onboarding_server::http::OPENAPI;
use onboarding_server::routes::ROUTES;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

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
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
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
    for route in ROUTES {
        let operation = &doc["paths"][route.path][route.method.as_str().to_lowercase()];
        let success = if route.path == "/api/v1/onboarding/session" {
            "201"
        } else {
            "200"
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
