//! The front end a tenant uses: the wizard (`/`), the dashboard
//! (`/dashboard`) and their scripts and style, embedded in the binary so the
//! server is the whole product (no CDN, no build step, the same origin as the
//! API and so no CORS).
//!
//! Every file goes out with a strict Content-Security-Policy: scripts, styles
//! and requests from this origin only, no inline script or style, no framing.
//! A script injected through a stored value could then neither run nor send
//! the session id (the onboarding's only credential) anywhere else.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

use crate::http::Reply;

/// One embedded file, the media type it is served with, and a hash of its
/// bytes for its `ETag`.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
    hash: u64,
}

impl Asset {
    /// Hashed at compile time: the tag changes exactly when the file does.
    const fn new(body: &'static [u8], content_type: &'static str) -> Asset {
        Asset {
            body,
            content_type,
            hash: fnv1a(body),
        }
    }

    /// The entity tag, quoted as RFC 9110 writes it.
    fn etag(&self) -> String {
        format!("\"{:016x}\"", self.hash)
    }
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

pub const WIZARD: Asset = Asset::new(include_bytes!("../web/index.html"), HTML);
pub const DASHBOARD: Asset = Asset::new(include_bytes!("../web/dashboard.html"), HTML);
pub const STYLE: Asset = Asset::new(include_bytes!("../web/assets/style.css"), CSS);
/// The API client both pages share: JSON requests, retries, error bodies.
pub const API_JS: Asset = Asset::new(include_bytes!("../web/assets/api.js"), JS);
pub const WIZARD_JS: Asset = Asset::new(include_bytes!("../web/assets/wizard.js"), JS);
/// What both pages share beyond the API: display helpers, live regions.
pub const PAGE_JS: Asset = Asset::new(include_bytes!("../web/assets/page.js"), JS);
/// The server's error messages said in French, for both pages.
pub const MESSAGES_JS: Asset = Asset::new(include_bytes!("../web/assets/messages.js"), JS);
/// The knowledge base's crawl and pages, as both pages show them.
pub const KNOWLEDGE_JS: Asset = Asset::new(include_bytes!("../web/assets/knowledge.js"), JS);
pub const DASHBOARD_JS: Asset = Asset::new(include_bytes!("../web/assets/dashboard.js"), JS);
pub const ICON: Asset = Asset::new(include_bytes!("../web/assets/icon.svg"), SVG);

/// Same origin for everything; nothing inline; no plugins, frames or forms
/// posted anywhere (the scripts send the forms as JSON).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The file with its type, the policy, and headers that keep the browser
/// from guessing types, leaking the page address or caching a stale wizard
/// after an upgrade (`no-cache` revalidates each use, and the `ETag` makes
/// that revalidation a `304` without the body while the file is the same).
/// `if_none_match`: the request's header of that name.
pub fn reply(asset: &Asset, if_none_match: Option<&HeaderValue>) -> Reply {
    let etag = asset.etag();
    let fresh = if_none_match.is_some_and(|tags| matches_tag(tags.as_bytes(), &etag));
    let mut reply = if fresh {
        let mut reply = Response::new(Full::new(Bytes::new()));
        *reply.status_mut() = StatusCode::NOT_MODIFIED;
        reply
    } else {
        let mut reply = Response::new(Full::new(Bytes::from_static(asset.body)));
        reply.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        reply
    };
    let headers = reply.headers_mut();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_the_files_fnv1a_hash_quoted() {
        // The FNV-1a test vectors: the empty input and "a".
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Asset::new(b"a", CSS).etag(), "\"af63dc4c8601ec8c\"");
        assert_ne!(WIZARD.etag(), DASHBOARD.etag());
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
