//! The knowledge base: what the voice agent knows about the business.
//!
//! | function | file |
//! |---|---|
//! | the kb step's `website` and `documents` validation | `address.rs`, `documents.rs` |
//! | storing documents at completion | `store.rs` (and `chunk.rs`, `french.rs`) |
//! | `onboarding_kb_claim`, `_store_page`, `_renew`, `_finish` | `worker.rs` |
//! | `onboarding_kb_get`, `onboarding_kb_search` | `read.rs` |
//!
//! The crawler itself (HTTP, robots.txt, extraction) is a client of the
//! worker functions and lives in the server crate: the library never makes
//! a network request.

pub mod address;
mod chunk;
pub mod documents;
mod fields;
pub mod french;
pub mod read;
pub mod store;
pub mod worker;

use rusqlite::Connection;
use serde_json::{json, Value};

pub use address::AllowList;

use crate::error::Result;

/// What the library needs to know about its host's knowledge-base policy.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `host:port` pairs exempt from the public-address rule (the
    /// server's `--crawl-allow-host`), for the kb step's validation.
    pub crawl_allow_hosts: AllowList,
}

/// Completion's knowledge-base part for the `documents` method: every
/// document stored and indexed now, in the caller's savepoint. Answers
/// what completion reports.
pub fn store_documents(
    conn: &Connection,
    tenant_id: &str,
    documents: &Value,
    now: &str,
) -> Result<Value> {
    let mut stored = 0;
    let mut chunks = 0;
    for doc in documents.as_array().into_iter().flatten() {
        let (Some(title), Some(content)) = (doc["title"].as_str(), doc["content"].as_str()) else {
            continue;
        };
        let new = store::NewDocument {
            tenant_id,
            job_id: None,
            source: "documents",
            url: None,
            title,
            markdown: content,
            depth: None,
            now,
        };
        if let store::Stored::New { chunks: n, .. } = store::store(conn, &new)? {
            stored += 1;
            chunks += n;
        }
    }
    Ok(json!({ "documents_stored": stored, "chunks": chunks }))
}
