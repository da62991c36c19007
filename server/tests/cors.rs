//! CORS: preflight for the configured origins only, and the allow-origin
//! header on the answers they read.
mod common;

use common::*;

const ALLOWED: &str = "http://localhost:3002";
const REFUSED: &str = "https://evil.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_from_an_allowed_origin_is_204_with_the_cors_headers() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let reply = request(
        server.addr,
        "OPTIONS",
        "/api/v1/onboarding/session/onb_x/business",
        &[
            ("Origin", ALLOWED),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    )
    .await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.body, "");
    assert_eq!(reply.header("access-control-allow-origin"), Some(ALLOWED));
    assert_eq!(reply.header("vary"), Some("Origin"));
    // The path's own methods, as its Allow says.
    assert_eq!(
        reply.header("access-control-allow-methods"),
        Some("POST, OPTIONS")
    );
    assert_eq!(reply.header("allow"), Some("POST, OPTIONS"));
    assert_eq!(
        reply.header("access-control-allow-headers"),
        Some("Content-Type, Authorization, Idempotency-Key")
    );
    assert_eq!(reply.header("access-control-max-age"), Some("600"));
    // A read-only route offers no POST, which would answer 405.
    let voices = request(
        server.addr,
        "OPTIONS",
        "/api/v1/onboarding/voices",
        &[
            ("Origin", ALLOWED),
            ("Access-Control-Request-Method", "GET"),
        ],
        b"",
    )
    .await;
    assert_eq!(voices.status, 204);
    assert_eq!(
        voices.header("access-control-allow-methods"),
        Some("GET, HEAD, OPTIONS")
    );
    assert_eq!(voices.header("allow"), Some("GET, HEAD, OPTIONS"));
    server.stop().await;
}

/// `OPTIONS *` asks about the server itself (RFC 9110 9.3.7): its methods,
/// every route's. It was a 404, a path the server does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_asterisk_names_the_servers_methods() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let reply = send_raw(server.addr, b"OPTIONS * HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!((reply.status, reply.body.as_str()), (204, ""));
    assert_eq!(reply.header("allow"), Some("POST, GET, HEAD, OPTIONS"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflight_from_a_refused_origin_is_403_without_allow_origin() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let reply = request(
        server.addr,
        "OPTIONS",
        "/api/v1/onboarding/session",
        &[
            ("Origin", REFUSED),
            ("Access-Control-Request-Method", "POST"),
        ],
        b"",
    )
    .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.header("access-control-allow-origin"), None);
    assert_eq!(reply.header("access-control-allow-methods"), None);
    assert_eq!(
        reply.body,
        r#"{"success":false,"error":"origin 'https://evil.example' is not allowed to call this API","code":"origin_not_allowed"}"#
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_carry_allow_origin_for_allowed_origins_only() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let allowed = request(
        server.addr,
        "POST",
        "/api/v1/onboarding/session",
        &[("Origin", ALLOWED), ("Content-Type", "application/json")],
        b"{}",
    )
    .await;
    assert_eq!(allowed.status, 201);
    assert_eq!(allowed.header("access-control-allow-origin"), Some(ALLOWED));
    assert_eq!(allowed.header("vary"), Some("Origin"));
    // A 429's or a 503's delay is readable by the page.
    assert_eq!(
        allowed.header("access-control-expose-headers"),
        Some("Retry-After")
    );
    // Errors too, or the front end could not show their message.
    let error = request(
        server.addr,
        "GET",
        "/api/v1/onboarding/session/onb_x",
        &[("Origin", ALLOWED)],
        b"",
    )
    .await;
    assert_eq!(error.status, 404);
    assert_eq!(error.header("access-control-allow-origin"), Some(ALLOWED));
    let refused = request(
        server.addr,
        "GET",
        "/api/v1/onboarding/voices",
        &[("Origin", REFUSED)],
        b"",
    )
    .await;
    assert_eq!(refused.status, 200);
    assert_eq!(refused.header("access-control-allow-origin"), None);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_origins_replace_the_defaults() {
    let (mut config, dir) = temp_config();
    // Written as people write them: the browser sends the lowercase origin
    // without a slash.
    config.cors_origins = vec![
        "https://app.example".to_string(),
        "HTTPS://Admin.example/".to_string(),
        // A default port and an international host: browsers send neither.
        "https://b.example:443".to_string(),
        "http://C.example:80/".to_string(),
        "https://café.example".to_string(),
        "http://d.example:8080".to_string(),
    ];
    let mut server = TestServer::start(config, dir).await;
    let preflight = |origin: &'static str| {
        let addr = server.addr;
        async move {
            request(
                addr,
                "OPTIONS",
                "/api/v1/onboarding/agent-types",
                &[("Origin", origin), ("Access-Control-Request-Method", "GET")],
                b"",
            )
            .await
        }
    };
    let custom = preflight("https://app.example").await;
    assert_eq!(custom.status, 204);
    assert_eq!(
        custom.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let admin = preflight("https://admin.example").await;
    assert_eq!(
        (admin.status, admin.header("access-control-allow-origin")),
        (204, Some("https://admin.example"))
    );
    for sent in [
        "https://b.example",
        "http://c.example",
        "https://xn--caf-dma.example",
        "http://d.example:8080",
    ] {
        let answer = preflight(sent).await;
        assert_eq!(
            (answer.status, answer.header("access-control-allow-origin")),
            (204, Some(sent))
        );
    }
    assert_eq!(preflight("http://d.example").await.status, 403);
    assert_eq!(preflight(ALLOWED).await.status, 403);
    server.stop().await;
}

/// The answers the server writes in hyper's place (headers over the limit,
/// a transfer coding it does not support) carry the CORS headers for an
/// allowed origin too: its page reads their JSON like any other error's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_to_unparsed_requests_carry_cors_for_an_allowed_origin() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let big = "x".repeat(17 * 1024);
    for (origin, allowed) in [(ALLOWED, Some(ALLOWED)), (REFUSED, None)] {
        let reply = request(
            server.addr,
            "GET",
            "/healthz",
            &[("Origin", origin), ("X-Big", &big)],
            b"",
        )
        .await;
        assert_eq!(reply.status, 431, "{}", reply.body);
        assert_eq!(
            reply.body,
            r#"{"success":false,"error":"the request headers are over the limit of 16384 bytes or 100 fields","code":"headers_too_large"}"#
        );
        assert_eq!(reply.header("access-control-allow-origin"), allowed);
        assert_eq!(
            reply.header("access-control-expose-headers"),
            allowed.map(|_| "Retry-After")
        );
        assert_eq!(reply.header("vary"), Some("Origin"));
    }
    let raw = format!(
        "POST /api/v1/onboarding/session HTTP/1.1\r\nHost: t\r\nOrigin: {ALLOWED}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: gzip\r\n\r\n"
    );
    let reply = send_raw(server.addr, raw.as_bytes()).await;
    assert_eq!(reply.status, 501, "{}", reply.body);
    assert_eq!(reply.header("access-control-allow-origin"), Some(ALLOWED));
    server.stop().await;
}
