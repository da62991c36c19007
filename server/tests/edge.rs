//! The HTTP edge against hostile and careless clients, over real loopback
//! sockets: memory under unfinished headers, media types, refused bodies
//! that still reach the client, logs without credentials, the email oracle,
//! proxies, a locked database and malformed framing.
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const CREATE: &str = "/api/v1/onboarding/session";
const NO_ACCOUNT: &str = r#"{"company_name":"Autre","industry":"beauty","phone":"0612345678","email":"taken@example.fr"}"#;

/// Connects to `addr` from the loopback address `from` (any of 127/8), as a
/// distinct client would.
async fn connect_from(from: [u8; 4], addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(addr).await
}

/// Reads what the server sends until it closes (at most 30 s).
async fn read_all(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET /healthz` on an open keep-alive connection: the answer's head and
/// body (bounded: 10 s, 64 KiB).
async fn healthz_on(stream: &mut TcpStream) -> String {
    answer_on(stream, b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n").await
}

/// Sends `raw` on an open keep-alive connection and reads its answer's
/// head and body (bounded: 10 s, 64 KiB).
async fn answer_on(stream: &mut TcpStream, raw: &[u8]) -> String {
    stream.write_all(raw).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < 64 * 1024 {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.trim().parse::<usize>().ok());
            if length.is_some_and(|n| body.len() >= n) {
                return text;
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `raw` with its Date line's value as `<date>`, after checking that it is
/// an HTTP date (IMF-fixdate, RFC 9110).
fn undated(raw: &str) -> String {
    let Some(at) = raw.find("\r\ndate: ") else {
        return raw.to_string();
    };
    let start = at + "\r\ndate: ".len();
    let end = start + raw[start..].find("\r\n").unwrap_or(0);
    assert!(httpdate::parse_http_date(&raw[start..end]).is_ok(), "{raw}");
    format!("{}<date>{}", &raw[..start], &raw[end..])
}

fn body_of(raw: &str) -> &str {
    raw.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

fn count(server: &TestServer, table: &str) -> i64 {
    server
        .read_db()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// The attack as found: 1,000 connections from many addresses, all at
/// once, each sending 380 KB of headers that never end. Headers are capped
/// at 16 KiB: each is answered 431 with the JSON error body and closed, the
/// server's peak memory stays under 100 MB, and a normal request is served
/// meanwhile. Then 1,000 heads of 15 KiB, just under the cap, held open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_unfinished_heads_keep_memory_under_100_mb() {
    let server = Spawned::start(&[]);
    let start_mib = server.memory_kib("VmRSS") / 1024;
    let filler = format!("X-Filler: {}\r\n", "a".repeat(1000));
    let mut head = "GET /healthz HTTP/1.1\r\nHost: t\r\n".to_string();
    while head.len() < 380 * 1024 {
        head.push_str(&filler);
    }
    let head = std::sync::Arc::new(head.into_bytes());
    // In waves of 100 that stay open: a thousand connects at once would
    // overflow the kernel's accept queue, whose drops are not the server's.
    let mut attackers = Vec::with_capacity(1000);
    for wave in 0..10u32 {
        let (sent_tx, mut sent_rx) = tokio::sync::mpsc::channel::<()>(100);
        for i in wave * 100..(wave + 1) * 100 {
            // 10 per address over 100 addresses: under the per-IP cap.
            let from = [127, 0, 2 + (i / 10 / 250) as u8, (i / 10 % 250) as u8 + 1];
            let (head, sent, addr) = (std::sync::Arc::clone(&head), sent_tx.clone(), server.addr);
            attackers.push(tokio::spawn(async move {
                let mut stream = connect_from(from, addr).await.unwrap();
                let _ = stream.write_all(&head).await; // the server may close first
                let _ = sent.send(()).await;
                read_all(&mut stream).await
            }));
        }
        drop(sent_tx);
        while sent_rx.recv().await.is_some() {}
    }
    // A normal client is served while the attack is on.
    let reply = request(server.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let attack_peak_mib = server.memory_kib("VmHWM") / 1024;
    let mut answers = std::collections::BTreeMap::new();
    for attacker in attackers {
        *answers
            .entry(undated(&attacker.await.unwrap()))
            .or_insert(0) += 1;
    }
    let body = r#"{"success":false,"error":"the request headers are over the limit of 16384 bytes or 100 fields","code":"headers_too_large"}"#;
    let expected = format!(
        "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n\
         content-length: {}\r\ncache-control: no-store\r\nx-content-type-options: nosniff\r\ndate: <date>\r\nvary: Origin\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    // The server reads what a refused client still sends before closing,
    // so every one of them gets the answer rather than a reset.
    assert_eq!(answers, [(expected, 1000)].into_iter().collect());

    // 1,000 heads just under the cap, held open.
    let mut unfinished = "POST /api/v1/onboarding/session HTTP/1.1\r\nHost: t\r\n".to_string();
    while unfinished.len() < 15 * 1024 {
        unfinished.push_str("X-Slow: 0123456789012345678901234567890123456789\r\n");
    }
    let mut held = Vec::with_capacity(1000);
    for i in 0..1000u32 {
        let from = [127, 0, 8 + (i / 10 / 250) as u8, (i / 10 % 250) as u8 + 1];
        let mut stream = connect_from(from, server.addr).await.unwrap();
        stream.write_all(unfinished.as_bytes()).await.unwrap();
        held.push(stream);
    }
    let reply = request(server.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let held_mib = server.memory_kib("VmRSS") / 1024;
    let peak_mib = server.memory_kib("VmHWM") / 1024;
    println!(
        "server RSS: {start_mib} MiB at start, peak {attack_peak_mib} MiB under 1,000 x 380 KB heads, \
         {held_mib} MiB holding 1,000 x 15 KiB heads, peak {peak_mib} MiB"
    );
    assert!(peak_mib < 100, "peak RSS {peak_mib} MiB");
    assert_eq!(held.len(), 1000);
}

/// Past the per-address cap a connection is answered 429 at once and
/// closed; other addresses are still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_address_and_in_total() {
    let (mut config, dir) = temp_config();
    config.max_connections_per_ip = 3;
    config.max_connections = 5;
    let server = TestServer::start(config, dir).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(connect_from([127, 0, 0, 9], server.addr).await.unwrap());
    }
    // Let the server accept them before the fourth: an answer on the last
    // one (kept open) means all three were accepted, in order. A request on
    // a connection of its own would hold a place until the server noticed
    // its close, which could come after the next connections' admission.
    assert!(
        healthz_on(&mut open[2]).await.starts_with("HTTP/1.1 200 "),
        "the third connection was not served"
    );
    let mut fourth = connect_from([127, 0, 0, 9], server.addr).await.unwrap();
    let answer = read_all(&mut fourth).await;
    assert!(answer.starts_with("HTTP/1.1 429 "), "{answer}");
    assert!(answer.contains("\r\nretry-after: 1\r\n"), "{answer}");
    assert_eq!(
        body_of(&answer),
        r#"{"success":false,"error":"too many open connections from this address; retry after the Retry-After delay","code":"rate_limited"}"#
    );
    open.push(connect_from([127, 0, 0, 10], server.addr).await.unwrap());
    open.push(connect_from([127, 0, 0, 11], server.addr).await.unwrap());
    let reply = request(server.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(
        reply.body,
        r#"{"success":false,"error":"the server has too many open connections; retry after the Retry-After delay","code":"unavailable"}"#
    );
    drop(open);
    // Closed connections free their places (bounded wait for the server to
    // notice the closes).
    let mut status = 0;
    for _ in 0..500 {
        status = request(server.addr, "GET", "/healthz", &[], b"")
            .await
            .status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200);
}

/// POSTs create with the body `{}` sent as `content_type`.
async fn create_as(server: &TestServer, content_type: &str) -> Reply {
    let headers = [("Content-Type", content_type)];
    request(server.addr, "POST", CREATE, &headers, b"{}").await
}

#[tokio::test]
async fn bodies_that_are_not_json_are_415_and_write_nothing() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let refused = |media: &str| {
        format!(
            r#"{{"success":false,"error":"{media} is not supported; send application/json","code":"unsupported_media_type"}}"#
        )
    };
    for (content_type, expected) in [
        ("text/plain", refused("content type 'text/plain'")),
        (
            "application/x-www-form-urlencoded",
            refused("content type 'application/x-www-form-urlencoded'"),
        ),
        (
            "multipart/form-data; boundary=x",
            refused("content type 'multipart/form-data; boundary=x'"),
        ),
        (
            "application/jsonp",
            refused("content type 'application/jsonp'"),
        ),
        // Parameters out of RFC 9110's grammar.
        (
            "application/json; =bad",
            refused("content type 'application/json; =bad'"),
        ),
        (
            "application/json; charset",
            refused("content type 'application/json; charset'"),
        ),
        (
            "application/json; charset=\"utf-8",
            refused(r#"content type 'application/json; charset=\"utf-8'"#),
        ),
    ] {
        let reply = create_as(&server, content_type).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (415, expected.as_str())
        );
    }
    // No content type at all, with a body.
    let raw = format!("POST {CREATE} HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{{}}");
    let reply = send_raw(server.addr, raw.as_bytes()).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (
            415,
            r#"{"success":false,"error":"the body has no Content-Type; send it as application/json","code":"unsupported_media_type"}"#
        )
    );
    // Two content types: which one the body is depends on who reads it.
    for pair in [
        ["application/json", "text/plain"],
        ["text/plain", "application/json"],
        ["application/json", "application/json"],
    ] {
        let raw = format!(
            "POST {CREATE} HTTP/1.1\r\nHost: t\r\nContent-Type: {}\r\nContent-Type: {}\r\n\
             Content-Length: 2\r\n\r\n{{}}",
            pair[0], pair[1]
        );
        let reply = send_raw(server.addr, raw.as_bytes()).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (
                415,
                format!(
                    r#"{{"success":false,"error":"Content-Type is given more than once ('{}, {}'); send it once, as application/json","code":"unsupported_media_type"}}"#,
                    pair[0], pair[1]
                )
                .as_str()
            )
        );
    }
    // A content coding: the JSON inside is not read (RFC 9110 15.5.16).
    for (coding, body) in [
        ("gzip", &b"\x1f\x8b\x08\x00"[..]),
        ("gzip, identity", b"{}"),
    ] {
        let headers = [
            ("Content-Type", "application/json"),
            ("Content-Encoding", coding),
        ];
        let reply = request(server.addr, "POST", CREATE, &headers, body).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (
                415,
                format!(
                    r#"{{"success":false,"error":"content coding '{coding}' is not supported; send the JSON body without Content-Encoding","code":"unsupported_media_type"}}"#
                )
                .as_str()
            )
        );
        assert_eq!(reply.header("accept-encoding"), Some("identity"));
    }
    assert_eq!(count(&server, "tenants"), 0);
    let headers = [
        ("Content-Type", "application/json"),
        ("Content-Encoding", "identity"),
    ];
    let reply = request(server.addr, "POST", CREATE, &headers, b"{}").await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(count(&server, "tenants"), 1);

    // JSON, +json types and parameters are fine; so is no body at all.
    for content_type in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/vnd.onboarding+json",
        "application/json ; charset=\"utf-8\"",
        "application/json;",
        "application/json; a=b;; c=\"x;\\\"y\"",
    ] {
        let reply = create_as(&server, content_type).await;
        assert_eq!(reply.status, 201, "{content_type}: {}", reply.body);
    }
    let raw = format!(
        "POST {CREATE} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(send_raw(server.addr, raw.as_bytes()).await.status, 201);
    assert_eq!(count(&server, "tenants"), 8);
    server.stop().await;
}

/// A client that writes its whole body before reading (Python's
/// http.client) gets the 413, not a reset: 20 times in 20. The same for
/// any answer given without reading the body (here a 404).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_413_reaches_clients_that_write_their_whole_body_first() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let script = r#"
import http.client, sys
port = int(sys.argv[1])
small = b"{" + b"x" * (4 * 1024 * 1024) + b"}"
# Just over the kb step's own limit (its pasted documents).
large = b"{" + b"x" * (int(sys.argv[2]) + 1024) + b"}"
kb = "/api/v1/onboarding/session/onb_0123456789abcdef01234567/kb"
cases = [("/api/v1/onboarding/session", small)] * 20 + [("/api/v1/nowhere", small)] * 5 + [(kb, large)] * 3
for path, body in cases:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        r = conn.getresponse()
        print(r.status, r.read().decode())
    except Exception as e:
        print("error", type(e).__name__)
    finally:
        conn.close()
"#;
    let port = server.addr.port().to_string();
    let kb_limit = onboarding::MAX_DOCUMENTS_BODY_BYTES.to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("/usr/bin/python3")
            .args(["-c", script, &port, &kb_limit])
            .output()
            .expect("run /usr/bin/python3")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = r#"413 {"success":false,"error":"request body is larger than the limit of 65536 bytes","code":"payload_too_large"}"#;
    let not_found =
        r#"404 {"success":false,"error":"no route for POST '/api/v1/nowhere'","code":"not_found"}"#;
    let kb_expected = format!(
        r#"413 {{"success":false,"error":"request body is larger than the limit of {} bytes","code":"payload_too_large"}}"#,
        onboarding::MAX_DOCUMENTS_BODY_BYTES
    );
    let mut want = vec![expected; 20];
    want.extend([not_found; 5]);
    want.extend([kb_expected.as_str(); 3]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, want, "{}", String::from_utf8_lossy(&output.stderr));
    server.stop().await;
}

/// The log names the route's pattern, never the session id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_carry_the_session_id() {
    let mut server = Spawned::start(&[]);
    let created = request(server.addr, "POST", CREATE, &[], b"{}").await;
    let id = created.json()["session_id"].as_str().unwrap().to_string();
    for path in [
        session_path(&id, "business"),
        session_path(&id, ""),
        session_path(&id, "nope"),
    ] {
        let _ = request(server.addr, "POST", &path, &[], BUSINESS.as_bytes()).await;
        let _ = request(server.addr, "GET", &path, &[], b"").await;
    }
    // Nor more of a method than an answer echoes.
    let long = request(server.addr, &"A".repeat(8_000), "/healthz", &[], b"").await;
    assert_eq!(long.status, 405);
    server.stop();
    let log = server.log_text();
    assert!(!log.contains(&id), "the session id is in the log:\n{log}");
    assert!(
        log.contains(r#"route="/api/v1/onboarding/session/:id/business" status=200"#),
        "{log}"
    );
    assert!(log.contains(r#"method=GET route="-" status=404"#), "{log}");
    let method = format!("method={}… route=\"/healthz\" status=405", "A".repeat(64));
    assert!(log.contains(&method), "{log}");
    assert!(!log.contains(&"A".repeat(65)), "{log}");
}

/// Completes an onboarding whose business email is `taken@example.fr`.
async fn account_with_taken_email(server: &TestServer) {
    let created = server.post(CREATE, "{}").await;
    let id = created.json()["session_id"].as_str().unwrap().to_string();
    let business = NO_ACCOUNT.replace("Autre", "Titulaire");
    assert_eq!(
        server
            .post(&session_path(&id, "business"), &business)
            .await
            .status,
        200
    );
    assert_eq!(
        server.post(&session_path(&id, "vapi"), VAPI).await.status,
        200
    );
    let done = server.post(&session_path(&id, "complete"), "{}").await;
    assert_eq!(done.status, 200, "{}", done.body);
}

/// A new session with its business step saved, its phone `phone` and its
/// email `email`: its id.
async fn session_with_phone(server: &TestServer, phone: &str, email: &str) -> String {
    let created = server.post(CREATE, "{}").await;
    let id = created.json()["session_id"].as_str().unwrap().to_string();
    let business = NO_ACCOUNT
        .replace("0612345678", phone)
        .replace("taken@example.fr", email);
    let saved = server.post(&session_path(&id, "business"), &business).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    id
}

/// Phone codes are limited per client address, whatever the session and
/// the number: a script making sessions with a new number each would
/// otherwise have a paid SMS sent per session. A send the library refuses
/// costs nothing.
#[tokio::test]
async fn code_sends_are_limited_per_address_whatever_the_session_and_number() {
    let (mut config, dir) = temp_config();
    config.env = Some(pinned_env());
    config.code_sends_per_ip = 2;
    let server = TestServer::start(config, dir).await;
    let send_to = |phone: &'static str, email: &'static str| {
        let server = &server;
        async move {
            let id = session_with_phone(server, phone, email).await;
            server
                .post(&session_path(&id, "phone/verification"), "{}")
                .await
        }
    };
    let first = send_to("06 12 34 56 71", "a@example.fr").await;
    assert_eq!(first.status, 201, "{}", first.body);
    // Refused by the library (no code goes to a foreign number): not counted.
    let foreign = send_to("+44 20 7946 0958", "b@example.fr").await;
    assert_eq!(foreign.status, 422, "{}", foreign.body);
    let second = send_to("06 12 34 56 72", "c@example.fr").await;
    assert_eq!(second.status, 201, "{}", second.body);
    let third = send_to("06 12 34 56 73", "d@example.fr").await;
    assert_eq!(
        (third.status, third.body.as_str()),
        (
            429,
            r#"{"success":false,"error":"too many phone codes sent from this address (retry after the Retry-After delay)","code":"rate_limited"}"#
        )
    );
    assert_eq!(third.header("retry-after"), Some("1800"));
    let queued: Vec<String> = server
        .read_db()
        .prepare("SELECT recipient FROM outbox_messages ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(queued, ["+33612345671", "+33612345672"]);
}

/// A keyed send sent again (its answer lost) is answered its first send and
/// sends nothing: it counts once against the address's limit, even past
/// it. A keyed send the library refuses is given back, and counts again
/// when sent again.
#[tokio::test]
async fn a_keyed_send_sent_again_counts_once_against_the_address_limit() {
    let (mut config, dir) = temp_config();
    config.env = Some(pinned_env());
    config.code_sends_per_ip = 2;
    let server = TestServer::start(config, dir).await;
    let session =
        |phone: &'static str, email: &'static str| session_with_phone(&server, phone, email);
    let send = |id: String, key: Option<&'static str>| {
        let addr = server.addr;
        async move {
            let headers: Vec<(&str, &str)> =
                key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
            request(
                addr,
                "POST",
                &session_path(&id, "phone/verification"),
                &headers,
                b"{}",
            )
            .await
        }
    };
    const KEY: &str = "7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    // Refused by the library (a foreign number), given back: twice.
    let foreign = session("+44 20 7946 0958", "f@example.fr").await;
    for _ in 0..2 {
        assert_eq!(send(foreign.clone(), Some(KEY)).await.status, 422);
    }
    let first = session("06 12 34 56 71", "a@example.fr").await;
    let sent = send(first.clone(), Some(KEY)).await;
    assert_eq!(sent.status, 201, "{}", sent.body);
    for _ in 0..3 {
        let again = send(first.clone(), Some(KEY)).await;
        assert_eq!((again.status, &again.body), (201, &sent.body));
    }
    let second = session("06 12 34 56 72", "b@example.fr").await;
    assert_eq!(send(second, None).await.status, 201);
    // The limit is spent (two codes sent): a new send is refused, the
    // first one sent again still answered.
    let third = session("06 12 34 56 73", "c@example.fr").await;
    assert_eq!(send(third, None).await.status, 429);
    let again = send(first, Some(KEY)).await;
    assert_eq!((again.status, &again.body), (201, &sent.body));
    let queued: i64 = server
        .read_db()
        .query_row("SELECT count(*) FROM outbox_messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(queued, 2);
}

/// A send refused for a locked database is given back to the address's
/// limit; a keyed one is not (a duplicate sent at once may have passed on
/// its count), and, sent again once the lock is gone, goes out on that
/// count.
#[tokio::test]
async fn a_busy_send_is_given_back_unless_keyed() {
    let (mut config, dir) = temp_config();
    config.code_sends_per_ip = 1;
    config.busy_timeout = Duration::from_millis(200);
    let server = TestServer::start(config, dir).await;
    let id = session_with_phone(&server, "06 12 34 56 71", "a@example.fr").await;
    let path = session_path(&id, "phone/verification");
    const KEY: &str = "8b2c3d4e-5f60-4a7b-9c8d-0e1f2a3b4c5d";
    let keyed = || {
        request(
            server.addr,
            "POST",
            &path,
            &[("Idempotency-Key", KEY)],
            b"{}",
        )
    };
    let locker = rusqlite::Connection::open(&server.db_path).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    // Given back: the keyed send after it is not past the limit.
    assert_eq!(server.post(&path, "{}").await.status, 503);
    assert_eq!(keyed().await.status, 503);
    locker.execute_batch("ROLLBACK").unwrap();
    // Kept: the limit is spent, but the keyed send goes out on its count.
    assert_eq!(server.post(&path, "{}").await.status, 429);
    assert_eq!(keyed().await.status, 201);
}

/// "Email already used" is an answer that tells whether an address holds an
/// account: limited per session and per client address.
#[tokio::test]
async fn email_taken_answers_are_limited_per_session_and_per_address() {
    let (mut config, dir) = temp_config();
    config.env = Some(pinned_env());
    config.email_taken_per_session = 2;
    config.email_taken_per_ip = 3;
    let mut server = TestServer::start(config, dir).await;
    account_with_taken_email(&server).await;
    let taken = r#"{"success":false,"error":"email 'taken@example.fr' is already used by another account","code":"conflict"}"#;
    let limited = r#"{"success":false,"error":"too many 'email already used' answers for this address or session (retry after the Retry-After delay)","code":"rate_limited"}"#;
    let new_session = || async {
        let created = server.post(CREATE, "{}").await;
        created.json()["session_id"].as_str().unwrap().to_string()
    };

    let first = new_session().await;
    for _ in 0..2 {
        let reply = server
            .post(&session_path(&first, "business"), NO_ACCOUNT)
            .await;
        assert_eq!((reply.status, reply.body.as_str()), (409, taken));
    }
    let reply = server
        .post(&session_path(&first, "business"), NO_ACCOUNT)
        .await;
    assert_eq!((reply.status, reply.body.as_str()), (429, limited));
    assert_eq!(reply.header("retry-after"), Some("1800"));
    // Refused before the library runs: a free address is refused too, so
    // the 429 itself tells nothing.
    let free = NO_ACCOUNT.replace("taken@", "free@");
    let reply = server.post(&session_path(&first, "business"), &free).await;
    assert_eq!(reply.status, 429);

    // A new session from the same address has one answer left (3 per IP).
    let second = new_session().await;
    let reply = server
        .post(&session_path(&second, "business"), NO_ACCOUNT)
        .await;
    assert_eq!((reply.status, reply.body.as_str()), (409, taken));
    let reply = server.post(&session_path(&second, "business"), &free).await;
    assert_eq!((reply.status, reply.body.as_str()), (429, limited));
    assert_eq!(reply.header("retry-after"), Some("1200"));
    // Another client address, with a session of its own, is not affected.
    let third = new_session().await;
    let mut other = connect_from([127, 0, 0, 2], server.addr).await.unwrap();
    let raw = format!(
        "POST {} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{NO_ACCOUNT}",
        session_path(&third, "business"),
        NO_ACCOUNT.len()
    );
    other.write_all(raw.as_bytes()).await.unwrap();
    let answer = read_all(&mut other).await;
    assert!(answer.starts_with("HTTP/1.1 409 "), "{answer}");
    assert_eq!(body_of(&answer), taken);
    server.stop().await;
}

/// A business step retried with its `Idempotency-Key` (its answer lost)
/// after the session spent its "email already used" answers gets what it
/// saved, not the 429: the key is looked up, nothing is saved. A key that
/// saved nothing, or another body under it, is refused as before.
#[tokio::test]
async fn a_keyed_business_step_past_the_email_limit_answers_what_it_saved() {
    let (mut config, dir) = temp_config();
    config.env = Some(pinned_env());
    config.email_taken_per_session = 2;
    let mut server = TestServer::start(config, dir).await;
    account_with_taken_email(&server).await;
    let created = server.post(CREATE, "{}").await;
    let id = created.json()["session_id"].as_str().unwrap().to_string();
    let path = session_path(&id, "business");
    let free = NO_ACCOUNT.replace("taken@", "free@");
    const KEY: &str = "5d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6";
    let keyed = |key: &'static str, body: String| {
        let path = path.clone();
        let addr = server.addr;
        async move {
            request(
                addr,
                "POST",
                &path,
                &[
                    ("Idempotency-Key", key),
                    ("Content-Type", "application/json"),
                ],
                body.as_bytes(),
            )
            .await
        }
    };
    let first = keyed(KEY, free.clone()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    for _ in 0..2 {
        assert_eq!(server.post(&path, NO_ACCOUNT).await.status, 409);
    }
    let limited = r#"{"success":false,"error":"too many 'email already used' answers for this address or session (retry after the Retry-After delay)","code":"rate_limited"}"#;
    let reply = server.post(&path, &free).await;
    assert_eq!((reply.status, reply.body.as_str()), (429, limited));
    // The retry: its first answer, exactly.
    let again = keyed(KEY, free.clone()).await;
    assert_eq!((again.status, &again.body), (200, &first.body));
    // Another key, which saved nothing: the limit's 429.
    let other = keyed("5d1e2f3a-4b5c-4d6e-8f70-000000000000", free.clone()).await;
    assert_eq!((other.status, other.body.as_str()), (429, limited));
    assert_eq!(other.header("retry-after"), Some("1800"));
    // The same key with another body: refused as a keyed step refuses it.
    let changed = keyed(KEY, free.replace("free@", "libre@")).await;
    assert_eq!(
        (changed.status, changed.body.as_str()),
        (
            409,
            r#"{"success":false,"error":"Idempotency-Key was already used with another body: a new request needs a new key","code":"conflict"}"#
        )
    );
    server.stop().await;
}

/// A completion answers "email already used" when another session completed
/// with the address after this one saved it: those answers count on the
/// same limits, and past them the completion answers 429 (it wrote nothing
/// either way).
#[tokio::test]
async fn email_taken_answers_of_completions_count_on_the_same_limits() {
    let (mut config, dir) = temp_config();
    config.env = Some(pinned_env());
    config.email_taken_per_session = 2;
    config.email_taken_per_ip = 3;
    let mut server = TestServer::start(config, dir).await;
    let taken = r#"{"success":false,"error":"email 'taken@example.fr' is already used by another account","code":"conflict"}"#;
    let limited = r#"{"success":false,"error":"too many 'email already used' answers for this address or session (retry after the Retry-After delay)","code":"rate_limited"}"#;
    // Saved while the address was free, then taken by another completion.
    let late = new_session(&server).await;
    for (step, body) in [("business", NO_ACCOUNT), ("vapi", VAPI)] {
        let reply = server.post(&session_path(&late, step), body).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    account_with_taken_email(&server).await;

    for _ in 0..2 {
        let reply = server.post(&session_path(&late, "complete"), "{}").await;
        assert_eq!((reply.status, reply.body.as_str()), (409, taken));
    }
    let reply = server.post(&session_path(&late, "complete"), "{}").await;
    assert_eq!((reply.status, reply.body.as_str()), (429, limited));
    assert_eq!(reply.header("retry-after"), Some("1800"));
    // The session's business steps are past the limit too.
    let free = NO_ACCOUNT.replace("taken@", "free@");
    let reply = server.post(&session_path(&late, "business"), &free).await;
    assert_eq!((reply.status, reply.body.as_str()), (429, limited));
    // The address has one answer left (3 per IP, 2 spent): another
    // session's taken address gets it, and then the limit.
    let second = new_session(&server).await;
    let reply = server
        .post(&session_path(&second, "business"), NO_ACCOUNT)
        .await;
    assert_eq!((reply.status, reply.body.as_str()), (409, taken));
    let reply = server.post(&session_path(&second, "business"), &free).await;
    assert_eq!(reply.status, 429, "{}", reply.body);
    // Nothing was written by the refused completions.
    let got = server.get(&format!("{CREATE}/{late}")).await;
    assert_eq!(got.json()["status"], "in_progress", "{}", got.body);
    server.stop().await;
}

/// Business steps sent at once on one session get no more "email already
/// used" answers than its limit: each is counted before its call, and given
/// back when the answer turns out to be another. Business steps of many
/// sessions sent at once from one address (an office, a proxy, the load
/// generator) are not refused for being in flight together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_taken_answers_sent_at_once_stay_within_the_limit() {
    let (mut config, dir) = temp_config();
    config.env = Some(pinned_env());
    config.email_taken_per_session = 5;
    config.email_taken_per_ip = 10;
    let mut server = TestServer::start(config, dir).await;
    account_with_taken_email(&server).await;
    let id = new_session(&server).await;
    let one_session = vec![(session_path(&id, "business"), NO_ACCOUNT.to_string()); 40];
    assert_eq!(
        all_at_once(&server, one_session).await,
        [(409, 5), (429, 35)].into_iter().collect()
    );
    // Answers of another kind are given back: a free address still passes
    // on a session whose count they never touched.
    let other = new_session(&server).await;
    let free = NO_ACCOUNT.replace("taken@", "free@");
    for _ in 0..8 {
        let reply = server.post(&session_path(&other, "business"), &free).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let reply = server
        .post(&session_path(&other, "business"), NO_ACCOUNT)
        .await;
    assert_eq!(reply.status, 409, "{}", reply.body);

    // Business steps whose bodies have not arrived hold no count: they
    // cannot lock the address's other clients out.
    let third = new_session(&server).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: 100\r\n\r\n",
            session_path(&third, "business")
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        held.push(stream);
    }
    let fourth = new_session(&server).await;
    let reply = server.post(&session_path(&fourth, "business"), &free).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    drop(held);

    let mut office = Vec::new();
    for i in 0..40 {
        let path = session_path(&new_session(&server).await, "business");
        office.push((path, NO_ACCOUNT.replace("taken@", &format!("office{i}@"))));
    }
    assert_eq!(
        all_at_once(&server, office).await,
        [(200, 40)].into_iter().collect()
    );
    server.stop().await;
}

/// Business steps of many sessions sent at once from one address get no
/// more "email already used" answers than the address's limit: each takes
/// a turn that the counts left must cover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_taken_answers_of_many_sessions_at_once_stay_within_the_address_limit() {
    let (mut config, dir) = temp_config();
    config.env = Some(pinned_env());
    config.email_taken_per_session = 0;
    config.email_taken_per_ip = 3;
    let mut server = TestServer::start(config, dir).await;
    account_with_taken_email(&server).await;
    let mut steps = Vec::new();
    for _ in 0..30 {
        let path = session_path(&new_session(&server).await, "business");
        steps.push((path, NO_ACCOUNT.to_string()));
    }
    assert_eq!(
        all_at_once(&server, steps).await,
        [(409, 3), (429, 27)].into_iter().collect()
    );
    server.stop().await;
}

/// A business step whose client leaves before the answer counts: its call
/// runs all the same, and `GET session` would tell the outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_business_step_whose_client_left_still_counts() {
    let mut server = one_email_answer_per_session().await;
    account_with_taken_email(&server).await;
    let id = new_session(&server).await;
    post_and_leave_while_locked(&server, &session_path(&id, "business"), NO_ACCOUNT).await;
    let free = NO_ACCOUNT.replace("taken@", "free@");
    let reply = server.post(&session_path(&id, "business"), &free).await;
    assert_eq!(reply.status, 429, "{}", reply.body);
    server.stop().await;
}

/// A completion whose client leaves before the answer runs to its end as
/// if the client had stayed (the connection is not read while its answer
/// is made): the session is completed, and its count is given back as any
/// completion's that is not "email already used" is, so a business step
/// then answers that the session is completed (409), not 429. (When the
/// request was dropped as its client left, it counted, unknown.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_whose_client_left_answers_as_if_it_had_stayed() {
    let mut server = one_email_answer_per_session().await;
    let id = new_session(&server).await;
    let free = NO_ACCOUNT.replace("taken@", "free@");
    for (step, body) in [("business", free.as_str()), ("vapi", VAPI)] {
        let reply = server.post(&session_path(&id, step), body).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    post_and_leave_while_locked(&server, &session_path(&id, "complete"), "{}").await;
    // (Reads do not queue behind writes: wait, bounded, for the completion.)
    let mut status = serde_json::Value::Null;
    for _ in 0..400 {
        status = server.get(&format!("{CREATE}/{id}")).await.json()["status"].clone();
        if status == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "completed");
    let reply = server.post(&session_path(&id, "business"), &free).await;
    assert_eq!(
        (reply.status, reply.json()["code"].clone()),
        (409, serde_json::json!("conflict")),
        "{}",
        reply.body
    );
    server.stop().await;
}

/// A server allowing one "email already used" answer per session (and
/// none counted per address), whose calls wait up to 5 s for a lock.
async fn one_email_answer_per_session() -> TestServer {
    let (mut config, dir) = temp_config();
    config.env = Some(pinned_env());
    config.email_taken_per_session = 1;
    config.email_taken_per_ip = 0;
    config.busy_timeout = Duration::from_secs(5);
    TestServer::start(config, dir).await
}

/// POSTs `body` to `path` while another connection holds the write lock,
/// and goes away (a reset) before the answer; then lets the call run.
async fn post_and_leave_while_locked(server: &TestServer, path: &str, body: &str) {
    let locker = rusqlite::Connection::open(&server.db_path).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    client.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    client.set_zero_linger().unwrap();
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    locker.execute_batch("ROLLBACK").unwrap();
}

async fn new_session(server: &TestServer) -> String {
    let created = server.post(CREATE, "{}").await;
    created.json()["session_id"].as_str().unwrap().to_string()
}

/// POSTs every `(path, body)` at once; how many answers had each status.
async fn all_at_once(
    server: &TestServer,
    steps: Vec<(String, String)>,
) -> std::collections::BTreeMap<u16, usize> {
    let sent: Vec<_> = steps
        .into_iter()
        .map(|(path, body)| {
            let addr = server.addr;
            tokio::spawn(async move {
                request(addr, "POST", &path, &[], body.as_bytes())
                    .await
                    .status
            })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for answer in sent {
        *statuses.entry(answer.await.unwrap()).or_insert(0) += 1;
    }
    statuses
}

/// Behind a trusted proxy the client is the rightmost untrusted address of
/// X-Forwarded-For: it is recorded and rate-limited as such. From an
/// untrusted peer the header is ignored.
#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let create_from = |addr: SocketAddr, forwarded: &'static str| async move {
        request(
            addr,
            "POST",
            CREATE,
            &[("X-Forwarded-For", forwarded)],
            b"{}",
        )
        .await
    };
    let stored_ips = |server: &TestServer| -> Vec<String> {
        rows(&server.read_db(), "onboarding_sessions")
            .iter()
            .map(|r| r["ip_address"].as_str().unwrap().to_string())
            .collect()
    };

    let (mut config, dir) = temp_config();
    config.create_rate_limit = 1;
    config.trust_proxy = vec!["127.0.0.1/32".parse().unwrap()];
    let mut server = TestServer::start(config, dir).await;
    assert_eq!(
        create_from(server.addr, "198.51.100.1, 203.0.113.9")
            .await
            .status,
        201
    );
    assert_eq!(create_from(server.addr, "203.0.113.10").await.status, 201);
    // Same client again: its own limit, not the proxy's.
    assert_eq!(create_from(server.addr, "203.0.113.10").await.status, 429);
    // An IPv6 client is counted as its /64, which its host picks any
    // address of; the session keeps the address itself.
    assert_eq!(
        create_from(server.addr, "2001:db8:1:2::1").await.status,
        201
    );
    assert_eq!(
        create_from(server.addr, "2001:db8:1:2::2").await.status,
        429
    );
    assert_eq!(
        create_from(server.addr, "2001:db8:1:3::1").await.status,
        201
    );
    assert_eq!(
        stored_ips(&server),
        [
            "203.0.113.9",
            "203.0.113.10",
            "2001:db8:1:2::1",
            "2001:db8:1:3::1"
        ]
    );
    server.stop().await;

    let (mut config, dir) = temp_config();
    config.create_rate_limit = 1;
    let mut server = TestServer::start(config, dir).await;
    assert_eq!(create_from(server.addr, "203.0.113.9").await.status, 201);
    assert_eq!(create_from(server.addr, "203.0.113.10").await.status, 429);
    assert_eq!(stored_ips(&server), ["127.0.0.1"]);
    server.stop().await;
}

/// Another process holding the write lock past the busy timeout: 503 with
/// Retry-After for the writes, then served once it lets go. Reads need no
/// write lock: they are answered meanwhile, even sent together with writes.
#[tokio::test]
async fn a_locked_database_is_503_with_retry_after() {
    let (mut config, dir) = temp_config();
    config.busy_timeout = Duration::from_millis(200);
    let mut server = TestServer::start(config, dir).await;
    // Served once: the database is open and migrated before it is locked.
    assert_eq!(server.get("/healthz").await.status, 200);
    let created = server.post(CREATE, "{}").await.json();
    let session = format!(
        "/api/v1/onboarding/session/{}",
        created["session_id"].as_str().unwrap()
    );
    let locker = rusqlite::Connection::open(&server.db_path).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let reply = server.post(CREATE, "{}").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (
            503,
            r#"{"success":false,"error":"the database is busy; retry after the Retry-After delay","code":"unavailable"}"#
        )
    );
    assert_eq!(reply.header("retry-after"), Some("1"));
    let (write, health, get, voices) = tokio::join!(
        server.post(CREATE, "{}"),
        server.get("/healthz"),
        server.get(&session),
        server.get("/api/v1/onboarding/voices"),
    );
    assert_eq!(
        [write.status, health.status, get.status, voices.status],
        [503, 200, 200, 200]
    );
    assert_eq!(get.json()["current_step"], 1);
    locker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(server.post(CREATE, "{}").await.status, 201);
    server.stop().await;
}

/// A read never waits behind a write: reads have their own connection and
/// thread. A first write holds the writer in its wait for another
/// process's lock; a read sent meanwhile is answered at once, before that
/// write's 503 (on the writer's queue it waited for it), and a second write
/// queues behind the first, its wait for the lock counted from when it was
/// queued: its 503 comes the busy timeout after it was sent, not after the
/// first's 503 (it came a whole timeout later before). The times are
/// seconds apart, so that a loaded machine's stalls do not blur them.
#[tokio::test]
async fn a_read_never_waits_behind_a_write_waiting_for_a_lock() {
    let (mut config, dir) = temp_config();
    config.busy_timeout = Duration::from_secs(5);
    let mut server = TestServer::start(config, dir).await;
    assert_eq!(server.get("/healthz").await.status, 200);
    let created = server.post(CREATE, "{}").await.json();
    let session: &'static str = Box::leak(
        format!(
            "/api/v1/onboarding/session/{}",
            created["session_id"].as_str().unwrap()
        )
        .into_boxed_str(),
    );
    let locker = rusqlite::Connection::open(&server.db_path).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let addr = server.addr;
    let timed = |method: &'static str, path: &'static str| {
        tokio::spawn(async move {
            let body: &[u8] = if method == "POST" { b"{}" } else { b"" };
            let reply = request(addr, method, path, &[], body).await;
            (reply.status, std::time::Instant::now())
        })
    };
    let first = timed("POST", CREATE);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let read = timed("GET", session);
    let health = timed("GET", "/healthz");
    let second_sent = std::time::Instant::now();
    let second = timed("POST", CREATE);
    let (first, read, health, second) = (
        first.await.unwrap(),
        read.await.unwrap(),
        health.await.unwrap(),
        second.await.unwrap(),
    );
    assert_eq!([first.0, read.0, health.0, second.0], [503, 200, 200, 503]);
    let waited = second.1 - second_sent;
    // Sent about 1 s after the first: behind it, it waited about 9 s.
    assert!(
        waited >= Duration::from_millis(4500) && waited < Duration::from_millis(7500),
        "the second write waited {waited:?} for a lock, with a busy timeout of 5 s"
    );
    // Sent about 4 s before the first write's 503.
    for (answered, what) in [(read.1, "the session"), (health.1, "/healthz")] {
        assert!(
            answered + Duration::from_secs(2) < first.1,
            "the read of {what} waited for the write before it"
        );
    }
    locker.execute_batch("ROLLBACK").unwrap();
    assert_eq!(server.post(CREATE, "{}").await.status, 201);
    server.stop().await;
}

/// A head not finished within 30 s gets a JSON 408; an idle keep-alive
/// connection is closed without a word.
#[tokio::test]
async fn an_unfinished_head_gets_a_408_and_an_idle_connection_none() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let idle = TcpStream::connect(server.addr).await.unwrap();
    let read = |mut stream: TcpStream| async move {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(45), stream.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    let (slow, idle) = tokio::join!(read(slow), read(idle));
    assert!(
        slow.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{slow}"
    );
    assert_eq!(
        body_of(&slow),
        r#"{"success":false,"error":"the request headers took more than 30 s to arrive","code":"request_timeout"}"#
    );
    assert_eq!(idle, "");
    server.stop().await;
}

/// A body that stops arriving gets a JSON 408 once 30 s have passed, and
/// the connection is closed; a body that arrives after its head, within
/// them, is read whole (the first read finds it missing and arms the
/// timer).
#[tokio::test]
async fn a_body_that_stops_arriving_gets_a_408_and_a_late_one_is_read() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let head = format!(
        "POST {CREATE} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: 16\r\n\r\n"
    );
    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled
        .write_all(format!("{head}{{\"source\":").as_bytes())
        .await
        .unwrap();
    let mut late = TcpStream::connect(server.addr).await.unwrap();
    late.write_all(head.as_bytes()).await.unwrap();
    let read = |mut stream: TcpStream| async move {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(45), stream.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    let late = async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        late.write_all(br#"{"source":"web"}"#).await.unwrap();
        let mut out = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), late.read(&mut out))
            .await
            .unwrap()
            .unwrap();
        String::from_utf8_lossy(&out[..n]).into_owned()
    };
    let (stalled, late) = tokio::join!(read(stalled), late);
    assert!(
        stalled.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{stalled}"
    );
    assert_eq!(
        body_of(&stalled),
        r#"{"success":false,"error":"request body took too long to arrive","code":"request_timeout"}"#
    );
    assert!(late.starts_with("HTTP/1.1 201 Created\r\n"), "{late}");
    server.stop().await;
}

/// A POST without a body needs no JSON content type, so a browser sends it
/// from any page without a preflight: from a page of another site, not an
/// allowed origin, it is refused (403) before it runs. From an allowed
/// origin, from the server's own pages, or from a client that is no
/// browser (no `Origin`), it runs.
#[tokio::test]
async fn a_bodiless_post_from_another_sites_page_is_refused() {
    let (mut config, dir) = temp_config();
    config.create_rate_limit = 0;
    let mut server = TestServer::start(config, dir).await;
    let own = format!("http://{}", server.addr);
    for (origin, content_type, status) in [
        (
            Some("https://evil.example"),
            Some("application/x-www-form-urlencoded"),
            403,
        ),
        (Some("https://evil.example"), None, 403),
        (Some("null"), Some("text/plain"), 403),
        (Some("http://localhost:3000"), None, 201),
        (Some(own.as_str()), Some("text/plain"), 201),
        (None, Some("application/x-www-form-urlencoded"), 201),
        (None, None, 201),
    ] {
        let mut headers = Vec::new();
        if let Some(origin) = origin {
            headers.push(("Origin", origin));
        }
        if let Some(content_type) = content_type {
            headers.push(("Content-Type", content_type));
        }
        let reply = request(server.addr, "POST", CREATE, &headers, b"").await;
        assert_eq!(
            reply.status, status,
            "{origin:?} {content_type:?}: {}",
            reply.body
        );
        if status == 403 {
            assert_eq!(
                reply.body,
                format!(
                    r#"{{"success":false,"error":"origin '{}' is not allowed to call this API","code":"origin_not_allowed"}}"#,
                    origin.unwrap()
                )
            );
        }
    }
    // Its own site behind a proxy that keeps the Host: the default port
    // written in one and not the other, the scheme the proxy's.
    for (host, origin) in [
        ("onboarding.example", "https://onboarding.example:443"),
        ("onboarding.example:443", "https://onboarding.example"),
        ("Onboarding.Example", "http://onboarding.example"),
    ] {
        let raw = format!(
            "POST {CREATE} HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        let reply = send_raw(server.addr, raw.as_bytes()).await;
        assert_eq!(reply.status, 201, "{host} {origin}: {}", reply.body);
    }
    assert_eq!(count(&server, "onboarding_sessions"), 7);
    // A step too: the phone code a page of another site would have sent.
    let s = completable_session(&server).await;
    let sent = request(
        server.addr,
        "POST",
        &session_path(&s, "phone/verification"),
        &[("Origin", "https://evil.example")],
        b"",
    )
    .await;
    assert_eq!(sent.status, 403, "{}", sent.body);
    assert_eq!(count(&server, "outbox_messages"), 0);
    server.stop().await;
}

/// Opens a kb step from `from` whose body announces `announced` bytes and
/// sends the first `sent`, then holds the connection.
async fn kb_body_begun(
    server: &TestServer,
    from: [u8; 4],
    announced: usize,
    sent: usize,
) -> TcpStream {
    let mut stream = connect_from(from, server.addr).await.unwrap();
    let head = format!(
        "POST /api/v1/onboarding/session/onb_0123456789abcdef0123456789abcdef/kb HTTP/1.1\r\n\
         Host: t\r\nContent-Type: application/json\r\nContent-Length: {announced}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![b' '; sent]).await.unwrap();
    stream
}

/// Large kb bodies hold the server's memory as their bytes arrive, not as
/// their heads announce: clients trickling them (even announcing the most)
/// keep no other client's documents out, where two of them held both turns
/// for 30 s. A client sends one at a time (429 for a second one), and bytes
/// actually sent past the budget (twice the limit) are refused, 503 with
/// the connection closed.
#[tokio::test]
async fn large_bodies_trickling_in_keep_no_other_out() {
    let (mut config, dir) = temp_config();
    config.max_documents_body_bytes = 400_000;
    let server = TestServer::start(config, dir).await;
    let s = completable_session(&server).await;
    let mut held = Vec::new();
    for (n, announced) in [(2, 70_000), (3, 70_000), (4, 400_000), (5, 400_000)] {
        held.push(kb_body_begun(&server, [127, 0, 0, n], announced, 1).await);
    }
    let mut second = kb_body_begun(&server, [127, 0, 0, 2], 70_000, 1).await;
    let answer = read_all(&mut second).await;
    assert!(
        answer.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{answer}"
    );
    assert_eq!(
        body_of(&answer),
        r#"{"success":false,"error":"this address is already sending a large body; send one at a time (retry after the Retry-After delay)","code":"rate_limited"}"#
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = "Ouvert du mardi au samedi. ".repeat(3_000);
    let body = serde_json::json!({"method": "documents", "documents": [{"title": "Horaires", "content": text}]})
        .to_string();
    assert!(body.len() > 65_536);
    let saved = server.post(&session_path(&s, "kb"), &body).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    // 700,000 bytes sent of the 800,000 the budget holds: the next 150,000
    // are past it.
    held.push(kb_body_begun(&server, [127, 0, 0, 6], 400_000, 350_000).await);
    held.push(kb_body_begun(&server, [127, 0, 0, 7], 400_000, 350_000).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut refused = kb_body_begun(&server, [127, 0, 0, 8], 400_000, 150_000).await;
    let answer = read_all(&mut refused).await;
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(answer.contains("\r\nretry-after: 1\r\n"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert_eq!(
        body_of(&answer),
        r#"{"success":false,"error":"the server is reading as many large bodies as it takes at once; retry after the Retry-After delay","code":"unavailable"}"#
    );
    drop(held);
    let mut server = server;
    server.stop().await;
}

/// A large body whose client left once it was sent keeps its turn until
/// its call has run: the payload waits in the writer's queue all the same.
/// With the database locked, two such bodies queued and their clients
/// gone, a third waits out its 10 s for a turn (503), where it was read
/// and queued too, a third 23 MiB payload in memory.
#[tokio::test]
async fn a_large_body_whose_client_left_keeps_its_turn_until_its_call_ran() {
    let (mut config, dir) = temp_config();
    config.max_documents_body_bytes = 400_000;
    config.busy_timeout = Duration::from_secs(30);
    let mut server = TestServer::start(config, dir).await;
    let s = completable_session(&server).await;
    let text = "Ouvert du mardi au samedi. ".repeat(3_000);
    let body = serde_json::json!({"method": "documents",
                                  "documents": [{"title": "Horaires", "content": text}]})
    .to_string();
    let path = session_path(&s, "kb");
    let locker = rusqlite::Connection::open(&server.db_path).unwrap();
    locker.execute_batch("BEGIN IMMEDIATE").unwrap();
    for n in [2, 3] {
        let mut gone = connect_from([127, 0, 0, n], server.addr).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        gone.write_all(head.as_bytes()).await.unwrap();
        gone.write_all(body.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(gone);
    }
    let third = request(server.addr, "POST", &path, &[], body.as_bytes()).await;
    assert_eq!(
        (third.status, third.body.as_str()),
        (
            503,
            r#"{"success":false,"error":"the server is reading as many large bodies as it takes at once; retry after the Retry-After delay","code":"unavailable"}"#
        )
    );
    locker.execute_batch("ROLLBACK").unwrap();
    let again = request(server.addr, "POST", &path, &[], body.as_bytes()).await;
    assert_eq!(again.status, 200, "{}", again.body);
    server.stop().await;
}

/// A client that pipelines requests and never reads their answers fills
/// the socket; the write that finds it full for 30 s ends the connection,
/// rather than hold it (and its slot under the caps) for ever.
#[tokio::test]
async fn a_client_that_reads_none_of_its_answers_is_closed_after_30_s() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(1024).unwrap();
    let mut stream = socket.connect(server.addr).await.unwrap();
    const ASKED: usize = 300;
    stream
        .write_all(&b"GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n".repeat(ASKED))
        .await
        .unwrap();
    let sent = std::time::Instant::now();
    // The 30 s run from the server's first write that found the socket
    // full, which a loaded machine reaches seconds after the requests were
    // sent (a fixed 33 s wait then read too early, and every answer came).
    // Wait, bounded and without reading, until the server's side of the
    // connection leaves ESTABLISHED: its close (a FIN queued behind the
    // answers it could not send, so unseen here until they are read).
    let client = stream.local_addr().unwrap();
    while server_side_established(server.addr, client) {
        assert!(
            sent.elapsed() < Duration::from_secs(120),
            "the server still holds the connection 120 s after the requests"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        sent.elapsed() >= Duration::from_secs(30),
        "the server closed after {:?}, before the 30 s",
        sent.elapsed()
    );
    // What the socket holds, then the end: the server gave up. Had it not,
    // the reads would take every answer, then wait on the open connection.
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let answered = out
        .windows(b"HTTP/1.1 200 OK".len())
        .filter(|w| *w == b"HTTP/1.1 200 OK")
        .count();
    assert!(ended, "the connection stayed open; {answered} answers read");
    assert!(answered < ASKED, "{answered} answers");
    // The server goes on serving.
    let mut other = TcpStream::connect(server.addr).await.unwrap();
    assert!(healthz_on(&mut other)
        .await
        .starts_with("HTTP/1.1 200 OK\r\n"));
    server.stop().await;
}

/// Whether the server's end of the loopback connection from `client` to
/// `server` is still ESTABLISHED, as `/proc/net/tcp` shows it: what the
/// client cannot see without reading what the server sent before closing.
fn server_side_established(server: SocketAddr, client: SocketAddr) -> bool {
    let parse = |field: &str| -> SocketAddr {
        let (ip, port) = field.split_once(':').expect("address:port");
        let ip = u32::from_str_radix(ip, 16).expect("hex address");
        let port = u16::from_str_radix(port, 16).expect("hex port");
        SocketAddr::from((ip.to_ne_bytes(), port))
    };
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let state = table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (parse(fields[1]) == server && parse(fields[2]) == client).then(|| fields[3].to_string())
    });
    // 01: ESTABLISHED. Gone from the table: closed too.
    state.as_deref() == Some("01")
}

#[tokio::test]
async fn more_than_100_header_fields_get_the_431_that_says_so() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let head = |fields: usize| {
        let mut raw = "GET /healthz HTTP/1.1\r\nHost: t\r\n".to_string();
        for i in 1..fields {
            raw.push_str(&format!("X-F{i}: a\r\n"));
        }
        raw + "\r\n"
    };
    // Host and 99 more: 100 fields, well under 16 KiB.
    assert_eq!(
        send_raw(server.addr, head(100).as_bytes()).await.status,
        200
    );
    let reply = send_raw(server.addr, head(101).as_bytes()).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (
            431,
            r#"{"success":false,"error":"the request headers are over the limit of 16384 bytes or 100 fields","code":"headers_too_large"}"#
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn malformed_framing_gets_json_errors() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let trailers =
        format!(
        "POST /api/v1/onboarding/session HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n{}\r\n",
        (0..20).map(|i| format!("X-T{i}: {}\r\n", "t".repeat(1024))).collect::<String>()
    );
    let unreadable = r#"{"success":false,"error":"the request body could not be read: its chunked framing or trailers are malformed or over the limit, or it ended early","code":"bad_request"}"#;
    let cases: [(&str, u16, &str); 37] = [
        (
            "POST /api/v1/onboarding/session HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
            400,
            unreadable,
        ),
        (&trailers, 400, unreadable),
        (
            "GET /healthz HTTP/1.1\r\nHost: a:b\r\n\r\n",
            400,
            r#"{"success":false,"error":"Host 'a:b' is not a host (expected a name or an address, and an optional port up to 65535)","code":"bad_request"}"#,
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: a@b\r\n\r\n",
            400,
            r#"{"success":false,"error":"Host 'a@b' is not a host (expected a name or an address, and an optional port up to 65535)","code":"bad_request"}"#,
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: a:99999\r\n\r\n",
            400,
            r#"{"success":false,"error":"Host 'a:99999' is not a host (expected a name or an address, and an optional port up to 65535)","code":"bad_request"}"#,
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: [zz]\r\n\r\n",
            400,
            r#"{"success":false,"error":"Host '[zz]' is not a host (expected a name or an address, and an optional port up to 65535)","code":"bad_request"}"#,
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: \r\n\r\n",
            400,
            r#"{"success":false,"error":"Host '' is not a host (expected a name or an address, and an optional port up to 65535)","code":"bad_request"}"#,
        ),
        // An absolute URL's authority stands for Host, and is held to its rule.
        (
            "GET http://a@b/healthz HTTP/1.1\r\nHost: t\r\n\r\n",
            400,
            r#"{"success":false,"error":"the request target's authority 'a@b' is not a host (expected a name or an address, and an optional port up to 65535)","code":"bad_request"}"#,
        ),
        (
            "GET http://:8787/healthz HTTP/1.1\r\nHost: t\r\n\r\n",
            400,
            r#"{"success":false,"error":"the request target's authority ':8787' is not a host (expected a name or an address, and an optional port up to 65535)","code":"bad_request"}"#,
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: :8787\r\n\r\n",
            400,
            r#"{"success":false,"error":"Host ':8787' is not a host (expected a name or an address, and an optional port up to 65535)","code":"bad_request"}"#,
        ),
        (
            "GET http://t:8787/healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            200,
            r#"{"success":true,"status":"ok","schema_version":15,"engine_version":"v0.1.0"}"#,
        ),
        (
            "GET ftp://t/healthz HTTP/1.1\r\nHost: t\r\n\r\n",
            400,
            r#"{"success":false,"error":"request target 'ftp://t/healthz' is not a path (expected one starting with /, or an http or https URL)","code":"bad_request"}"#,
        ),
        (
            "GET healthz HTTP/1.1\r\nHost: t\r\n\r\n",
            400,
            r#"{"success":false,"error":"request target 'healthz' is not a path (expected one starting with /, or an http or https URL)","code":"bad_request"}"#,
        ),
        // `*` is OPTIONS's alone (RFC 9112 3.2.4).
        (
            "GET * HTTP/1.1\r\nHost: t\r\n\r\n",
            400,
            r#"{"success":false,"error":"request target '*' is not a path (expected one starting with /, or an http or https URL)","code":"bad_request"}"#,
        ),
        (
            "CONNECT t:443 HTTP/1.1\r\nHost: t:443\r\n\r\n",
            400,
            r#"{"success":false,"error":"request target 't:443' is not a path (expected one starting with /, or an http or https URL)","code":"bad_request"}"#,
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: [::1]:8787\r\nConnection: close\r\n\r\n",
            200,
            r#"{"success":true,"status":"ok","schema_version":15,"engine_version":"v0.1.0"}"#,
        ),
        (
            "GET /healthz HTTP/1.1\r\n\r\n",
            400,
            r#"{"success":false,"error":"a request needs a Host header","code":"bad_request"}"#,
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            400,
            r#"{"success":false,"error":"a request has one Host header naming one host","code":"bad_request"}"#,
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: a, b\r\n\r\n",
            400,
            r#"{"success":false,"error":"a request has one Host header naming one host","code":"bad_request"}"#,
        ),
        (
            "POST /api/v1/onboarding/session HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            501,
            r#"{"success":false,"error":"transfer coding 'gzip, chunked' is not supported; only chunked is","code":"not_implemented"}"#,
        ),
        (
            "POST /api/v1/onboarding/session HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            400,
            r#"{"success":false,"error":"Transfer-Encoding 'chunked, chunked' names chunked more than once; send it once","code":"bad_request"}"#,
        ),
        (
            "POST /api/v1/onboarding/session HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            400,
            r#"{"success":false,"error":"Transfer-Encoding 'chunked, chunked' names chunked more than once; send it once","code":"bad_request"}"#,
        ),
        // Codings hyper refuses before the server sees them: 501 too.
        (
            "POST /api/v1/onboarding/session HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: gzip\r\n\r\n{}",
            501,
            r#"{"success":false,"error":"transfer coding 'gzip' is not supported; only chunked is","code":"not_implemented"}"#,
        ),
        (
            "POST /api/v1/onboarding/session HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked, gzip\r\n\r\n{}",
            501,
            r#"{"success":false,"error":"transfer coding 'chunked, gzip' is not supported; only chunked is","code":"not_implemented"}"#,
        ),
        // An empty element, which RFC 9110 has ignored and hyper refuses:
        // said so, not as a malformed header.
        (
            "POST /api/v1/onboarding/session HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked,\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            400,
            r#"{"success":false,"error":"Transfer-Encoding 'chunked,' lists an empty coding; send 'chunked'","code":"bad_request"}"#,
        ),
        (
            "POST /api/v1/onboarding/session HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: \r\n\r\n{}",
            400,
            r#"{"success":false,"error":"Transfer-Encoding '' lists an empty coding; send 'chunked'","code":"bad_request"}"#,
        ),
        // An empty element before the last is taken (RFC 9110 5.6.1), and
        // not blamed for another header's fault.
        (
            "POST /api/v1/onboarding/session HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: ,chunked\r\nBad Header: y\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            400,
            r#"{"success":false,"error":"the request line or a header is malformed","code":"bad_request"}"#,
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity\r\n\r\n",
            501,
            r#"{"success":false,"error":"transfer coding 'identity' is not supported; only chunked is","code":"not_implemented"}"#,
        ),
        // A version other than HTTP/1.0 and 1.1.
        (
            "GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n",
            505,
            r#"{"success":false,"error":"HTTP/2.0 is not supported; send HTTP/1.1","code":"http_version_not_supported"}"#,
        ),
        (
            "POST /api/v1/onboarding/session HTTP/1.2\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: 2\r\n\r\n{}",
            505,
            r#"{"success":false,"error":"HTTP/1.2 is not supported; send HTTP/1.1","code":"http_version_not_supported"}"#,
        ),
        // hyper refuses the version as soon as it has read it, before the
        // line's end.
        (
            "GET /healthz HTTP/2",
            505,
            r#"{"success":false,"error":"HTTP/2 is not supported; send HTTP/1.1","code":"http_version_not_supported"}"#,
        ),
        // A line that starts with no method is malformed, whatever its end.
        (
            "User-Agent: x HTTP/2.0\r\nHost: t\r\n\r\n",
            400,
            r#"{"success":false,"error":"the request line or a header is malformed","code":"bad_request"}"#,
        ),
        (
            "GET /heal thz HTTP/1.1\r\nHost: t\r\n\r\n",
            400,
            r#"{"success":false,"error":"the request line or a header is malformed","code":"bad_request"}"#,
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: t\r\nBad Header: x\r\n\r\n",
            400,
            r#"{"success":false,"error":"the request line or a header is malformed","code":"bad_request"}"#,
        ),
        // An expectation other than 100-continue cannot be met (RFC 9110
        // 10.1.1): refused before the body is read.
        (
            "POST /api/v1/onboarding/session HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Expect: 200-ok\r\nContent-Length: 2\r\n\r\n{}",
            417,
            r#"{"success":false,"error":"Expect '200-ok' cannot be met; only 100-continue is supported","code":"expectation_failed"}"#,
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: 100-continue, x\r\n\r\n",
            417,
            r#"{"success":false,"error":"Expect '100-continue, x' cannot be met; only 100-continue is supported","code":"expectation_failed"}"#,
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nExpect: x=1\r\n\r\n",
            417,
            r#"{"success":false,"error":"Expect '100-continue, x=1' cannot be met; only 100-continue is supported","code":"expectation_failed"}"#,
        ),
    ];
    for (raw, status, body) in cases {
        let reply = send_raw(server.addr, raw.as_bytes()).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (status, body),
            "{raw:?}"
        );
        assert_eq!(reply.header("content-type"), Some("application/json"));
    }
    // After an HTTP/1.0 exchange kept alive, hyper's own refusals are JSON
    // too, in the version it answers with: they went out bare.
    {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let mut first = Vec::new();
        let mut chunk = [0u8; 4096];
        // Bounded: the answer's head and its body of a few bytes.
        for _ in 0..100 {
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed after {first:?}");
            first.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&first);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_string)
                    })
                    .unwrap()
                    .parse()
                    .unwrap();
                if body.len() >= length {
                    break;
                }
            }
        }
        assert!(first.starts_with(b"HTTP/1.0 200 OK\r\n"), "{first:?}");
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: t\r\nBad Header: x\r\n\r\n")
            .await
            .unwrap();
        let mut second = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut second))
            .await
            .expect("the refusal within 10 s")
            .unwrap();
        let second = String::from_utf8(second).unwrap();
        assert!(
            second.starts_with("HTTP/1.0 400 Bad Request\r\ncontent-type: application/json\r\n"),
            "{second}"
        );
        assert!(
            second.ends_with(r#"{"success":false,"error":"the request line or a header is malformed","code":"bad_request"}"#),
            "{second}"
        );
    }
    // HTTP/1.0 needs a Host too (SPEC.md makes no exception), and answers
    // in its own version; with one, it is served.
    let reply = send_raw(server.addr, b"GET /healthz HTTP/1.0\r\n\r\n").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (
            400,
            r#"{"success":false,"error":"a request needs a Host header","code":"bad_request"}"#
        )
    );
    let reply = send_raw(server.addr, b"GET /healthz HTTP/1.0\r\nHost: t\r\n\r\n").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // 100-continue, in any case, and an empty Expect expect nothing more.
    for expect in ["100-continue", "100-Continue", ""] {
        let raw = format!(
            "GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: {expect}\r\nConnection: close\r\n\r\n"
        );
        let reply = send_raw(server.addr, raw.as_bytes()).await;
        assert_eq!(reply.status, 200, "{expect:?}: {}", reply.body);
    }
    // Names, addresses and ports are hosts.
    for host in [
        "salon.fr",
        "t:8787",
        "t:",
        "127.0.0.1:1",
        "[::1]:65535",
        "[::1]",
    ] {
        let raw = format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let reply = send_raw(server.addr, raw.as_bytes()).await;
        assert_eq!(reply.status, 200, "{host:?}: {}", reply.body);
    }
    // A method is any token, of any length: echoed cut like every value.
    let method = "Z".repeat(5000);
    let cut = format!("{}…", "Z".repeat(64));
    for (path, status, body) in [
        (
            "/healthz",
            405,
            format!(
                r#"{{"success":false,"error":"method {cut} is not allowed on '/healthz' (allowed: GET, HEAD, OPTIONS)","code":"method_not_allowed"}}"#
            ),
        ),
        (
            "/nowhere",
            404,
            format!(
                r#"{{"success":false,"error":"no route for {cut} '/nowhere'","code":"not_found"}}"#
            ),
        ),
    ] {
        let raw = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let reply = send_raw(server.addr, raw.as_bytes()).await;
        assert_eq!((reply.status, reply.body), (status, body));
    }
    assert_eq!(count(&server, "tenants"), 0);
    // An empty element before the last is taken (RFC 9110 5.6.1).
    let taken = send_raw(
        server.addr,
        b"POST /api/v1/onboarding/session HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: ,chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(taken.status, 201, "{}", taken.body);
    server.stop().await;
}

#[tokio::test]
async fn percent_encoded_session_ids_are_decoded() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let created = server.post(CREATE, "{}").await;
    let id = created.json()["session_id"].as_str().unwrap().to_string();
    let encoded = id.replacen("onb_", "onb%5F", 1);
    let reply = server.get(&session_path(&encoded, "")).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["session_id"], id.as_str());
    let reply = server.get("/api/v1/onboarding/session/onb_%E2%82%AC").await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (
            404,
            r#"{"success":false,"error":"session 'onb_€' does not exist","code":"not_found"}"#
        )
    );
    server.stop().await;
}

/// Shutdown does not wait for connections that are idle or still sending
/// their headers (the header timeout is 30 s).
#[tokio::test]
async fn shutdown_closes_idle_and_unfinished_connections_at_once() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Half: ")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("shutdown does not wait for the 30 s header timeout");
    assert_eq!(half.read(&mut [0u8; 64]).await.unwrap_or(0), 0);
}

/// An echoed value is cut to 64 characters whatever its JSON type: a 50 KB
/// array in a field makes no 50 KB error.
#[tokio::test]
async fn echoed_arrays_and_objects_are_cut_like_strings() {
    let mut server = TestServer::pinned(pinned_env()).await;
    let created = server.post(CREATE, "{}").await;
    let id = created.json()["session_id"].as_str().unwrap().to_string();
    let long: Vec<u32> = (0..10_000).collect();
    let body = serde_json::json!({ "channels": [long] }).to_string();
    let reply = server.post(&session_path(&id, "channels"), &body).await;
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (
            422,
            r#"{"success":false,"error":"channels lists [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,2…, which is not a channel (expected one of phone, sms, whatsapp, email)","code":"invalid_field","field":"channels"}"#
        )
    );
    let body = serde_json::json!({ "event_type_id": { "nested": "x".repeat(5000) } }).to_string();
    let reply = server.post(&session_path(&id, "appointments"), &body).await;
    assert_eq!(reply.status, 422);
    let shown = format!(r#"{{\"nested\":\"{}…"#, "x".repeat(53));
    assert_eq!(
        reply.body,
        format!(
            r#"{{"success":false,"error":"event_type_id {shown} is not a positive integer (expected a Cal.com event type id such as 123456)","code":"invalid_field","field":"event_type_id"}}"#
        )
    );
    server.stop().await;
}

/// A client that shuts its sending side once its request is written (`nc
/// -N`, scripts, some proxies) gets its answer: hyper closed on that end
/// of input, after the call had run, with no answer and no log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_shuts_its_sending_side_gets_its_answer() {
    let mut server = TestServer::pinned(pinned_env()).await;
    for (raw, start) in [
        (
            &b"POST /api/v1/onboarding/session HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"[..],
            "HTTP/1.1 201 Created\r\n",
        ),
        (&b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"[..], "HTTP/1.1 200 OK\r\n"),
    ] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(raw).await.unwrap();
        stream.shutdown().await.unwrap();
        let answer = read_all(&mut stream).await;
        assert!(answer.starts_with(start), "{answer:?}");
    }
    server.stop().await;
    assert_eq!(rows(&server.read_db(), "onboarding_sessions").len(), 1);
}

/// Ids that are no session's (a path segment is taken as one until the
/// library reads it) cost the "email already used" limit no memory: 2,000
/// business steps on ids of 15,000 characters, each a 404, leave the
/// server within 8 MB of where it was. The limit kept each id whole for
/// its window (about 32 MB here, 64 MB at its 4,096 keys).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_that_are_no_sessions_cost_the_email_limit_no_memory() {
    let server = Spawned::start(&[]);
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let step = |i: usize| {
        format!(
            "POST /api/v1/onboarding/session/onb_{i:05}{}/business HTTP/1.1\r\nHost: t\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{NO_ACCOUNT}",
            "a".repeat(15_000),
            NO_ACCOUNT.len()
        )
    };
    // Buffers and the allocator's arenas first.
    for i in 0..100 {
        let answer = answer_on(&mut stream, step(i).as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    }
    let before = server.memory_kib("VmRSS");
    for i in 100..2_100 {
        let answer = answer_on(&mut stream, step(i).as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 404 "), "{i}: {answer}");
    }
    let after = server.memory_kib("VmRSS");
    assert!(
        after < before + 8 * 1024,
        "{before} KiB before, {after} KiB after"
    );
}

/// A flood of connections from one address past its cap holds a bounded
/// number of the server's descriptors: a few hundred are answered 429 at
/// once, the rest closed unanswered, and another address is still served.
/// Each refusal held its socket for a second or two, so 800 of them held
/// 800 descriptors, and a flood large enough made the server's accepts
/// fail (too many open files).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refused_connections_holds_a_bounded_number_of_descriptors() {
    let server = Spawned::start(&["--max-connections-per-ip", "1"]);
    let descriptors = || {
        std::fs::read_dir(format!("/proc/{}/fd", server.child.id()))
            .unwrap()
            .count()
    };
    let mut admitted = connect_from([127, 0, 0, 20], server.addr).await.unwrap();
    assert!(healthz_on(&mut admitted).await.starts_with("HTTP/1.1 200 "));
    let before = descriptors();
    let mut flood = Vec::new();
    for _ in 0..800 {
        flood.push(connect_from([127, 0, 0, 20], server.addr).await.unwrap());
    }
    // Bounded wait for the server to have accepted them all: a healthz
    // from another address is answered after them.
    let mut other = connect_from([127, 0, 0, 21], server.addr).await.unwrap();
    assert!(healthz_on(&mut other).await.starts_with("HTTP/1.1 200 "));
    let during = descriptors();
    assert!(
        during < before + 300,
        "{before} descriptors before the flood, {during} during it"
    );
    let mut answered = 0;
    for stream in &mut flood {
        let answer = read_all(stream).await;
        if answer.is_empty() {
            continue;
        }
        assert!(answer.starts_with("HTTP/1.1 429 "), "{answer}");
        answered += 1;
    }
    // At most 256 at a time: more over the flood when it outlasts their
    // second.
    assert!(answered >= 1, "none answered");
}

/// 1,000 connections each sending a create's or a step's body of 64 KiB
/// but its last byte, held open: the server stays under 100 MB (62-68 MB measured), the
/// bodies past its budget of bytes in flight (8 MiB) are answered 503 as
/// they arrive, and a normal client is served meanwhile. Each such body
/// held about 175 KB (its bytes preallocated whole, and hyper's buffer of
/// 64 KiB): 201 MB for the thousand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_bodies_all_but_sent_keep_memory_under_100_mb() {
    let server = Spawned::start(&[]);
    let body = format!("{{\"pad\":\"{}\"}}", "a".repeat(64 * 1024 - 10));
    assert_eq!(body.len(), 64 * 1024);
    // A create's, and a step's (on any id: the body is read before the
    // library looks the session up).
    let request = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{}",
            body.len(),
            &body[..body.len() - 1]
        )
    };
    let requests = [
        request("/api/v1/onboarding/session"),
        request("/api/v1/onboarding/session/onb_x/business"),
    ];
    let mut held = Vec::with_capacity(1000);
    for i in 0..1000u32 {
        // 10 per address: under the per-address cap.
        let from = [127, 0, 12 + (i / 10 / 250) as u8, (i / 10 % 250) as u8 + 1];
        let mut stream = connect_from(from, server.addr).await.unwrap();
        // The server may answer 503 and close before all of it is sent.
        let _ = stream.write_all(requests[i as usize % 2].as_bytes()).await;
        held.push(stream);
    }
    let reply = common::request(server.addr, "GET", "/healthz", &[], b"").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Bounded wait for the server to have read what was sent.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak_mib = server.memory_kib("VmHWM") / 1024;
    println!("server peak RSS holding 1,000 bodies all but sent: {peak_mib} MiB");
    assert!(peak_mib < 100, "peak RSS {peak_mib} MiB");
    // The ones past the budget were told so.
    let mut refused = 0;
    for stream in &mut held {
        let mut first = [0u8; 64];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(20), stream.read(&mut first)).await
        {
            if first[..n].starts_with(b"HTTP/1.1 503 ") {
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "no body was refused");
}

/// A request hyper refuses before the service sees it (a version other
/// than HTTP/1.x, a coding it cannot read) has its log line too, as every
/// request does: an operator chasing a client's failures saw nothing.
#[test]
fn a_request_refused_before_routing_is_logged() {
    use std::io::{Read, Write};
    let server = Spawned::start(&[]);
    for (request, status) in [
        ("GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (
            "POST /api/v1/onboarding/session HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n",
            501,
        ),
    ] {
        let mut stream = std::net::TcpStream::connect(server.addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with(&format!("HTTP/1.1 {status} ")), "{answer}");
        let line = format!("request refused before routing route=\"-\" status={status}");
        let mut logged = false;
        for _ in 0..100 {
            logged = server.log_text().contains(&line);
            if logged {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(logged, "no {line:?} in:\n{}", server.log_text());
    }
}
