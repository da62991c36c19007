//! The knowledge base: what the voice agent knows about the business.
//!
//! Its modules sit on the library's layers (ARCHITECTURE.md):
//!
//! | layer | module | owns |
//! |---|---|---|
//! | entry points | `read.rs` | `onboarding_kb_get`, `onboarding_kb_search` |
//! | entry points | `worker.rs` | `onboarding_kb_claim`, `_store_page`, `_renew`, `_finish`, `_release`: lease, frontier, counters, retries |
//! | entry points | `recut.rs` | `onboarding_kb_recut`: a document stored by an older chunker cut again |
//! | entry points | `turn.rs` | `onboarding_kb_site_take`, `_release`: a site's turn, shared by every crawler on the file |
//! | leaves using leaves | `store.rs` | a document, its chunks and FTS5 rows: a site's text once per tenant, each pasted item |
//! | leaves using leaves | `job.rs` | a crawl job's row as JSON |
//! | leaves | `repeated.rs` | the blocks a site's template repeats on most pages |
//! | leaves | `address.rs` | the public-address rule, URL identity, site scope, the host's settings |
//! | leaves | `french.rs` | French analysis: accents folded, stems, stop words |
//! | leaves | `chunk.rs` | Markdown cut into chunks along headings |
//!
//! The kb step's validation (`website`, `documents`) is `validate::kb`; the
//! documents are stored by the sync's knowledge-base part.
//!
//! The crawler itself (HTTP, robots.txt, extraction) is a client of the
//! worker functions and lives in the host: the library never makes a network
//! request. What a host's crawler needs of the address rule is this module's
//! public items, the only ones: [`Settings`] and [`AllowList`] (the operator's
//! exceptions, passed to `register_*with_settings`), [`check_url`] and
//! [`check_parsed`] (a URL, before every request and on every redirect hop),
//! [`is_public_ip`] (each address a name resolves to, and the one connected
//! to) and [`same_site`] (the crawl's scope). The kb step's validation and the
//! worker functions apply the very same rule, so host and library refuse
//! exactly the same addresses.

mod address;
mod chunk;
mod french;
mod job;
pub(crate) mod read;
pub(crate) mod recut;
mod repeated;
pub(crate) mod store;
pub(crate) mod turn;
pub(crate) mod worker;

/// The chunks and index terms this library stores a text as: raise it with
/// any change of what `chunk.rs` or `french.rs` make of a text, so that
/// the documents stored before are cut again (`onboarding_kb_recut`,
/// `sql/013_kb_cut.sql`). A test pins it with a fingerprint of what a
/// corpus is cut into, and fails on a change of either until it is raised.
///
/// Cuts: 1, the first recorded (migration 013); 2, each piece a long code
/// block goes on in starting with its opening fence; 3, a verb after the
/// subject "nous" indexed in its "vous" form ("acceptons" as `accept`),
/// and a range of days with the days it holds ("Lun-Ven" with `mercred`);
/// 4, a telephone number, an email address and a postal address each
/// followed by the term they are asked by (`telephon`, `email`, `adress`);
/// 5, those patterns narrowed (4 read a legal notice's SIRET line, "10000
/// Euros" or "3 cours de Yoga" as an address, and dotted hours as a
/// telephone); 6, a telephone number's `telephon` followed by its digits as
/// dialled (`02 99 12 34 56` and `+33 (0)2 99 12 34 56` as `0299123456`),
/// which a question writing the number in any form asks for; 7, the
/// overseas departments' `0262 12 34 56` and `(+262) 692 12 34 56` read as
/// telephones too; 8, a soft hyphen, a zero-width space, a joiner or a
/// byte-order mark inside a word kept in it ("Ré\u{AD}ser\u{AD}va\u{AD}tion"
/// was four words, none of them `reserv`); 9, decomposed text (a letter,
/// then its combining accent) read composed ("ho\u{302}tel" was two words,
/// neither of them `hotel`).
///
/// The raise to 2 costs more than later ones: a record stores the integers
/// 0 and 1 in no byte and 2 to 127 in one (128 and up in two), so each
/// document's row changes size and is rewritten whole, text included, once
/// (`store::recut`). From 2 to a later cut, an unchanged document's row is
/// overwritten in place: two pages (the test
/// `cutting_an_unchanged_document_again_writes_its_cut_alone`, ext/tests/kb.rs).
pub const CUT: i64 = 9;

pub use crate::validate::without_control_characters;
pub use worker::{MAX_PAGE_RETRIES, MAX_PAGE_TITLE_CHARS, MAX_SITE_WAIT_MS, MAX_URL_CHARS};

pub(crate) use store::reindex_chunks;

pub use address::{
    check_parsed, check_url, is_public_ip, normalize, same_site, site_of, AllowList, Refusal,
    Settings, ALLOW_HOST_VARIABLE,
};
