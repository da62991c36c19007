//! The front end's files over plain HTTP: each route of the table answers its
//! embedded file with its media type and the strict Content-Security-Policy,
//! with the linked functions and with `--extension` alike. (What the pages
//! do is tests/wizard/, in a browser.)
mod common;

use std::io::Read;
use std::path::PathBuf;

use common::*;
use onboarding_server::routes::{Endpoint, ROUTES};
use onboarding_server::web;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Every front-end route answers its file, type and headers.
async fn serves_every_file(server: &TestServer) {
    let mut served = Vec::new();
    for route in ROUTES {
        let Endpoint::Web(asset) = route.endpoint else {
            continue;
        };
        let reply = server.get(route.path).await;
        assert_eq!(reply.status, 200, "{}", route.path);
        assert_eq!(reply.body.as_bytes(), asset.body, "{}", route.path);
        let headers = [
            "content-type",
            "content-security-policy",
            "x-content-type-options",
            "referrer-policy",
            "cache-control",
        ]
        .map(|h| {
            reply
                .header(h)
                .unwrap_or_else(|| panic!("{}: no {h}", route.path))
        });
        assert_eq!(
            headers,
            [
                asset.content_type,
                CSP,
                "nosniff",
                "no-referrer",
                "no-cache"
            ],
            "{}",
            route.path
        );
        // Revalidation: the tag it was given answers 304 without the body
        // (and without a type, RFC 9110 15.4.5), with the same headers
        // otherwise; any other tag gets the file again.
        let etag = reply.header("etag").expect("an ETag").to_string();
        assert!(
            etag.len() == 18 && etag.starts_with('"') && etag.ends_with('"'),
            "{}: {etag}",
            route.path
        );
        let again = request(
            server.addr,
            "GET",
            route.path,
            &[("If-None-Match", &format!("\"0000000000000000\", W/{etag}"))],
            b"",
        )
        .await;
        assert_eq!(
            (again.status, again.body.as_str()),
            (304, ""),
            "{}",
            route.path
        );
        assert_eq!(again.header("content-type"), None, "{}", route.path);
        assert_eq!(
            ["etag", "content-security-policy", "cache-control"].map(|h| again.header(h)),
            [Some(etag.as_str()), Some(CSP), Some("no-cache")],
            "{}",
            route.path
        );
        let changed = request(
            server.addr,
            "GET",
            route.path,
            &[("If-None-Match", "\"0000000000000000\"")],
            b"",
        )
        .await;
        assert_eq!(changed.status, 200, "{}", route.path);
        assert_eq!(changed.body.as_bytes(), asset.body, "{}", route.path);
        assert_eq!(
            changed
                .headers
                .iter()
                .filter(|(name, _)| name == "vary")
                .map(|(_, value)| value.as_str())
                .collect::<Vec<_>>(),
            ["Accept-Encoding", "Origin"],
            "{}",
            route.path
        );

        // A browser's Accept-Encoding: the gzipped file, which unzips to
        // the file, under a tag of its own, revalidated by that tag only.
        let browser = [("Accept-Encoding", "gzip, deflate, br, zstd")];
        let (status, head, body) = get_bytes(server, route.path, &browser).await;
        assert_eq!(status, 200, "{}", route.path);
        assert_eq!(header_in(&head, "content-encoding"), Some("gzip"));
        assert_eq!(header_in(&head, "content-type"), Some(asset.content_type));
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(body.as_slice())
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, asset.body, "{}", route.path);
        assert!(body.len() < asset.body.len(), "{}", route.path);
        let gz_tag = header_in(&head, "etag").unwrap().to_string();
        assert_eq!(gz_tag, format!("{}-gz\"", &etag[..etag.len() - 1]));
        fn with(tag: &str) -> [(&str, &str); 2] {
            [
                ("Accept-Encoding", "gzip, deflate, br, zstd"),
                ("If-None-Match", tag),
            ]
        }
        let (status, _, body) = get_bytes(server, route.path, &with(&gz_tag)).await;
        assert_eq!((status, body.len()), (304, 0), "{}", route.path);
        let (status, head, _) = get_bytes(server, route.path, &with(&etag)).await;
        assert_eq!(status, 200, "{}", route.path);
        assert_eq!(header_in(&head, "content-encoding"), Some("gzip"));
        // gzip refused by its weight: the file as it is.
        let (status, head, body) =
            get_bytes(server, route.path, &[("Accept-Encoding", "gzip;q=0, br")]).await;
        assert_eq!(status, 200, "{}", route.path);
        assert_eq!(header_in(&head, "content-encoding"), None);
        assert_eq!(body, asset.body, "{}", route.path);
        served.push((route.path, asset.content_type));
    }
    assert_eq!(
        served,
        [
            ("/", "text/html; charset=utf-8"),
            ("/dashboard", "text/html; charset=utf-8"),
            ("/assets/style.css", "text/css; charset=utf-8"),
            ("/assets/api.js", "text/javascript; charset=utf-8"),
            ("/assets/wizard.js", "text/javascript; charset=utf-8"),
            ("/assets/page.js", "text/javascript; charset=utf-8"),
            ("/assets/messages.js", "text/javascript; charset=utf-8"),
            ("/assets/knowledge.js", "text/javascript; charset=utf-8"),
            ("/assets/dashboard.js", "text/javascript; charset=utf-8"),
            ("/assets/icon.svg", "image/svg+xml"),
        ]
    );
}

/// GET `path` with `headers`: the status, the head's lines (names
/// lowercased) and the body's bytes (a gzipped body is not the UTF-8 text
/// `request` reads).
async fn get_bytes(
    server: &TestServer,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        server.addr
    );
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server answers within a minute")
    .unwrap();
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = std::str::from_utf8(&answer[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let fields = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, fields, answer[end + 4..].to_vec())
}

fn header_in<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn front_end_files_have_their_type_and_the_strict_policy() {
    let (config, dir) = temp_config();
    let mut server = TestServer::start(config, dir).await;
    serves_every_file(&server).await;
    assert_eq!(web::CONTENT_SECURITY_POLICY, CSP);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_end_files_are_served_with_the_loaded_extension_too() {
    let so = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist/libonboarding.so");
    assert!(
        so.exists(),
        "{} is missing; run `make loadable`",
        so.display()
    );
    let (mut config, dir) = temp_config();
    config.extension = Some(so);
    let mut server = TestServer::start(config, dir).await;
    serves_every_file(&server).await;
    server.stop().await;
}

#[tokio::test]
async fn pages_hold_no_inline_script_or_style() {
    // The policy would block them: a page that relied on one would break.
    for asset in [&web::WIZARD, &web::DASHBOARD] {
        let html = std::str::from_utf8(asset.body).unwrap();
        for forbidden in [
            "<script>",
            "style=",
            "<style",
            "onclick=",
            "onload=",
            "javascript:",
        ] {
            assert!(!html.contains(forbidden), "{forbidden} in a page");
        }
        assert!(html.contains("<html lang=\"fr\">"));
    }
}

#[tokio::test]
async fn other_methods_and_unknown_assets_answer_the_api_errors() {
    let (config, dir) = temp_config();
    let mut server = TestServer::start(config, dir).await;
    let head = request(server.addr, "HEAD", "/", &[], b"").await;
    assert_eq!(
        (head.status, head.header("content-type"), head.body.as_str()),
        (200, Some("text/html; charset=utf-8"), "")
    );
    let post = server.post("/dashboard", "{}").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD, OPTIONS"));
    let missing = server.get("/assets/missing.js").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.body,
        r#"{"success":false,"error":"no route for GET '/assets/missing.js'","code":"not_found"}"#
    );
    server.stop().await;
}

/// A page's path with a trailing slash, as people type it, is sent to the
/// page (308, query kept, no body); an asset's or the API's, and a POST to
/// the page's, keep their errors.
#[tokio::test]
async fn a_page_asked_with_a_trailing_slash_is_sent_to_the_page() {
    let (config, dir) = temp_config();
    let mut server = TestServer::start(config, dir).await;
    for (path, location) in [
        ("/dashboard/", "/dashboard"),
        ("/dashboard/?from=mail", "/dashboard?from=mail"),
    ] {
        let (status, fields, body) = get_bytes(&server, path, &[]).await;
        assert_eq!(
            (status, header_in(&fields, "location"), body.len()),
            (308, Some(location), 0),
            "{path}"
        );
    }
    let head = request(server.addr, "HEAD", "/dashboard/", &[], b"").await;
    assert_eq!(
        (head.status, head.header("location")),
        (308, Some("/dashboard"))
    );
    for path in [
        "/dashboard//",
        "/assets/style.css/",
        "/api/v1/onboarding/voices/",
    ] {
        let missing = server.get(path).await;
        assert_eq!(
            missing.body,
            format!(
                r#"{{"success":false,"error":"no route for GET '{path}'","code":"not_found"}}"#
            ),
        );
    }
    let post = server.post("/dashboard/", "{}").await;
    assert_eq!(
        post.body,
        r#"{"success":false,"error":"no route for POST '/dashboard/'","code":"not_found"}"#
    );
    server.stop().await;
}
