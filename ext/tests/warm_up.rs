//! Registering the functions parses a phone number through the parser, so
//! that the metadata's load and the French patterns' compilation do not
//! land in the first business step that needs the parser. Alone in its
//! test binary: the parser's pattern cache is the process's, and no other
//! test may fill it first.

use rusqlite::Connection;

#[test]
fn registering_compiles_the_french_patterns_through_the_parser() {
    let cache = phonenumber::metadata::DATABASE.cache();
    let compiled = || cache.lock().unwrap().len();
    assert_eq!(compiled(), 0);
    let conn = Connection::open_in_memory().unwrap();
    onboarding::register(&conn).unwrap();
    // The warm-up number, `06 12 34 56 78`, is one the business step reads
    // by its digits: only a parse through the parser compiles patterns.
    assert!(compiled() > 0, "registering compiled no phone pattern");
}
