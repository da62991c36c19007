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

/// One embedded file and the media type it is served with.
#[derive(Debug, PartialEq, Eq)]
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

pub const WIZARD: Asset = Asset {
    body: include_bytes!("../web/index.html"),
    content_type: HTML,
};
pub const DASHBOARD: Asset = Asset {
    body: include_bytes!("../web/dashboard.html"),
    content_type: HTML,
};
pub const STYLE: Asset = Asset {
    body: include_bytes!("../web/assets/style.css"),
    content_type: CSS,
};
/// The API client both pages share: JSON requests, retries, error bodies.
pub const API_JS: Asset = Asset {
    body: include_bytes!("../web/assets/api.js"),
    content_type: JS,
};
pub const WIZARD_JS: Asset = Asset {
    body: include_bytes!("../web/assets/wizard.js"),
    content_type: JS,
};
/// What both pages share beyond the API: display helpers, live regions.
pub const PAGE_JS: Asset = Asset {
    body: include_bytes!("../web/assets/page.js"),
    content_type: JS,
};
/// The server's error messages said in French, for both pages.
pub const MESSAGES_JS: Asset = Asset {
    body: include_bytes!("../web/assets/messages.js"),
    content_type: JS,
};
/// The knowledge base's crawl and pages, as both pages show them.
pub const KNOWLEDGE_JS: Asset = Asset {
    body: include_bytes!("../web/assets/knowledge.js"),
    content_type: JS,
};
pub const DASHBOARD_JS: Asset = Asset {
    body: include_bytes!("../web/assets/dashboard.js"),
    content_type: JS,
};
pub const ICON: Asset = Asset {
    body: include_bytes!("../web/assets/icon.svg"),
    content_type: SVG,
};

/// Same origin for everything; nothing inline; no plugins, frames or forms
/// posted anywhere (the scripts send the forms as JSON).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The file with its type, the policy, and headers that keep the browser
/// from guessing types, leaking the page address or caching a stale wizard
/// after an upgrade (`no-cache` revalidates; the files are small).
pub fn reply(asset: &Asset) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from_static(asset.body)));
    *reply.status_mut() = StatusCode::OK;
    let headers = reply.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
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
    reply
}
