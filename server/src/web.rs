//! The front end a tenant uses: the wizard (`/`), the dashboard
//! (`/dashboard`) and their scripts and style, embedded in the binary so the
//! server is the whole product (no CDN, no build step, the same origin as the
//! API and so no CORS).
//!
//! Every file goes out with a strict Content-Security-Policy: scripts, styles
//! and requests from this origin only, no inline script or style, no framing.
//! A script injected through a stored value could then neither run nor send
//! the session id (the onboarding's only credential) anywhere else.
//!
//! Each file is also embedded gzipped (by `build.rs`), sent to a browser
//! that accepts gzip, and each form has its own `ETag` for revalidation.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::http::Reply;

/// One embedded file, gzipped too, the media type it is served with, and a
/// hash of its bytes for its `ETag`.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    pub body: &'static [u8],
    pub gzipped: &'static [u8],
    pub content_type: &'static str,
    hash: u64,
}

impl Asset {
    /// Hashed at compile time: the tag changes exactly when the file does.
    const fn new(body: &'static [u8], gzipped: &'static [u8], content_type: &'static str) -> Asset {
        Asset {
            body,
            gzipped,
            content_type,
            hash: fnv1a(body),
        }
    }

    /// The entity tag of the file as sent, quoted as RFC 9110 writes it:
    /// the gzipped bytes are another representation, with a tag of their
    /// own (a cache must not answer one for the other).
    fn etag(&self, gzip: bool) -> String {
        if gzip {
            format!("\"{:016x}-gz\"", self.hash)
        } else {
            format!("\"{:016x}\"", self.hash)
        }
    }
}

/// The file at `web/$path`, and its gzipped form from `build.rs`.
macro_rules! asset {
    ($path:literal, $content_type:expr) => {
        Asset::new(
            include_bytes!(concat!("../web/", $path)),
            include_bytes!(concat!(env!("OUT_DIR"), "/web/", $path, ".gz")),
            $content_type,
        )
    };
}

/// 64-bit FNV-1a: enough to tell two versions of a file apart (a tag is a
/// validator, not a defence), and it runs in a `const fn`.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

pub const WIZARD: Asset = asset!("index.html", HTML);
pub const DASHBOARD: Asset = asset!("dashboard.html", HTML);
pub const STYLE: Asset = asset!("assets/style.css", CSS);
/// The API client both pages share: JSON requests, retries, error bodies.
pub const API_JS: Asset = asset!("assets/api.js", JS);
pub const WIZARD_JS: Asset = asset!("assets/wizard.js", JS);
/// What both pages share beyond the API: display helpers, live regions.
pub const PAGE_JS: Asset = asset!("assets/page.js", JS);
/// The server's error messages said in French, for both pages.
pub const MESSAGES_JS: Asset = asset!("assets/messages.js", JS);
/// The knowledge base's crawl and pages, as both pages show them.
pub const KNOWLEDGE_JS: Asset = asset!("assets/knowledge.js", JS);
pub const DASHBOARD_JS: Asset = asset!("assets/dashboard.js", JS);
pub const ICON: Asset = asset!("assets/icon.svg", SVG);

/// Same origin for everything; nothing inline; no plugins, frames or forms
/// posted anywhere (the scripts send the forms as JSON).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The file with its type, the policy, and headers that keep the browser
/// from guessing types, leaking the page address or caching a stale wizard
/// after an upgrade (`no-cache` revalidates each use, and the `ETag` makes
/// that revalidation a `304` without the body while the file is the same).
/// `headers`: the request's, for `If-None-Match` and `Accept-Encoding`.
pub fn reply(asset: &Asset, headers: &hyper::HeaderMap) -> Reply {
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .is_some_and(|accepted| accepts_gzip(accepted.as_bytes()));
    let etag = asset.etag(gzip);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tags| matches_tag(tags.as_bytes(), &etag));
    let mut reply = if fresh {
        let mut reply = Response::new(Full::new(Bytes::new()));
        *reply.status_mut() = StatusCode::NOT_MODIFIED;
        reply
    } else {
        let body = if gzip { asset.gzipped } else { asset.body };
        let mut reply = Response::new(Full::new(Bytes::from_static(body)));
        let headers = reply.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        if gzip {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        reply
    };
    let headers = reply.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("a quoted hex tag is a valid header value"),
    );
    reply
}

/// Whether an `If-None-Match` value names `etag`: `*`, or a comma-separated
/// list of tags compared weakly (RFC 9110, 13.1.2: a `W/` prefix ignored).
fn matches_tag(header: &[u8], etag: &str) -> bool {
    let Ok(header) = std::str::from_utf8(header) else {
        return false;
    };
    header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// Whether an `Accept-Encoding` value takes gzip (RFC 9110, 12.5.3):
/// `gzip` or `x-gzip` with a weight above 0, or `*` above 0 where gzip is
/// not named.
fn accepts_gzip(header: &[u8]) -> bool {
    let Ok(header) = std::str::from_utf8(header) else {
        return false;
    };
    let mut any = false;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let weight = parts
            .find_map(|p| {
                let (name, value) = p.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| value.trim().parse::<f32>().unwrap_or(0.0))
            })
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            return weight > 0.0;
        }
        if coding == "*" {
            any = weight > 0.0;
        }
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_the_files_fnv1a_hash_quoted() {
        // The FNV-1a test vectors: the empty input and "a".
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let a = Asset::new(b"a", b"", CSS);
        assert_eq!(
            [a.etag(false), a.etag(true)],
            ["\"af63dc4c8601ec8c\"", "\"af63dc4c8601ec8c-gz\""]
        );
        assert_ne!(WIZARD.etag(false), DASHBOARD.etag(false));
    }

    #[test]
    fn gzip_is_taken_unless_its_weight_is_zero() {
        for (header, taken) in [
            ("gzip, deflate, br, zstd", true),
            ("br;q=1.0, gzip;q=0.8", true),
            ("GZIP", true),
            ("x-gzip", true),
            ("*", true),
            ("gzip;q=0", false),
            ("gzip; q=0.000", false),
            ("*;q=0.5, gzip;q=0", false),
            ("identity", false),
            ("br", false),
            ("", false),
        ] {
            assert_eq!(accepts_gzip(header.as_bytes()), taken, "{header:?}");
        }
    }

    #[test]
    fn if_none_match_is_compared_weakly_over_its_list() {
        let tag = "\"af63dc4c8601ec8c\"";
        assert!(matches_tag(br#""af63dc4c8601ec8c""#, tag));
        assert!(matches_tag(br#"W/"af63dc4c8601ec8c""#, tag));
        assert!(matches_tag(br#""x", "af63dc4c8601ec8c""#, tag));
        assert!(matches_tag(b"*", tag));
        assert!(!matches_tag(br#""af63dc4c8601ec8d""#, tag));
        assert!(!matches_tag(b"af63dc4c8601ec8c", tag));
        assert!(!matches_tag(b"", tag));
    }
}
