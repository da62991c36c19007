//! A small blocking client of dqlite's wire protocol, version 1 (the one
//! Debian's libdqlite 1.11 speaks): enough to find the leader, open a
//! database, run SQL with parameters, read rows, and change membership.
//!
//! ```no_run
//! use dqlite_wire::{Leader, Value};
//! use std::time::Duration;
//!
//! let nodes = ["127.0.0.1:9001".to_string(), "127.0.0.1:9002".to_string()];
//! let Leader { mut conn, .. } = dqlite_wire::connect_leader(&nodes, Duration::from_secs(1))?;
//! let db = conn.open("onboarding.db")?;
//! conn.exec(db, "BEGIN IMMEDIATE", &[])?;
//! let rows = conn.query(db, "SELECT onboarding_create(?1)", &[Value::Text("{}".into())])?;
//! conn.exec(db, "COMMIT", &[])?;
//! assert_eq!(rows.rows.len(), 1);
//! # Ok::<(), dqlite_wire::Error>(())
//! ```
//!
//! The protocol, as the dqlite project documents it and its Go client
//! implements it: after an 8-byte version word, every message is a header
//! (body length in 8-byte words as u32, type u8, flags u8, u16 unused) and a
//! body of little-endian words; strings are NUL-terminated and padded to a
//! word. A node answers requests one at a time, in order, on a connection.
//!
//! | file | owns |
//! |---|---|
//! | `message.rs` | encoding requests and decoding responses, word by word |
//! | `conn.rs` | [`Conn`]: one connection and its requests; [`connect_leader`] |

mod conn;
mod message;

pub use conn::{connect_leader, Conn, Leader, NodeInfo, Role, Rows};
pub use message::Value;

use std::fmt;

/// Why a request has no answer.
#[derive(Debug)]
pub enum Error {
    /// The connection failed (refused, cut, timed out): the request's fate
    /// is unknown if it had been sent.
    Io(std::io::Error),
    /// The node answered with a failure: an SQLite result code (5 is
    /// SQLITE_BUSY) or a dqlite one, and the message, for a function's error
    /// exactly the text it raised.
    Server { code: u64, message: String },
    /// The node answered something this client cannot read.
    Protocol(String),
    /// No node of the list knows a leader that accepts us.
    NoLeader(String),
}

impl Error {
    /// True when the request may or may not have run: the connection broke
    /// around it, or the node lost its leadership while running it.
    pub fn is_connection(&self) -> bool {
        match self {
            Error::Io(_) | Error::NoLeader(_) | Error::Protocol(_) => true,
            Error::Server { code, message } => is_leadership_lost(*code, message),
        }
    }

    /// SQLITE_BUSY or SQLITE_LOCKED (any extended code): worth retrying.
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Server { code, .. } if matches!(code & 0xff, 5 | 6))
    }
}

/// The failures a node sends when it is not (or no longer) the leader:
/// SQLITE_IOERR_NOT_LEADER (10 | 40 << 8), SQLITE_IOERR_LEADERSHIP_LOST
/// (10 | 41 << 8), and the request-level "not leader" texts, read only as
/// the whole message or under an I/O error code: a function's error text
/// quotes what the user sent (`session 'onb_not leader' does not exist`),
/// and taken for a lost leader it would make the host retry the batch for
/// seconds and answer 503 instead of the function's 404.
fn is_leadership_lost(code: u64, message: &str) -> bool {
    const LEADER_TEXTS: [&str; 2] = ["not leader", "leadership lost"];
    code == (10 | (40 << 8))
        || code == (10 | (41 << 8))
        || LEADER_TEXTS.contains(&message.trim())
        || (code & 0xff == 10 && LEADER_TEXTS.iter().any(|t| message.contains(t)))
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "dqlite connection failed: {e}"),
            Error::Server { message, .. } => f.write_str(message),
            Error::Protocol(detail) => write!(f, "dqlite protocol error: {detail}"),
            Error::NoLeader(detail) => write!(f, "no dqlite leader: {detail}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::Io(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: u64, message: &str) -> Error {
        Error::Server {
            code,
            message: message.to_string(),
        }
    }

    #[test]
    fn leadership_is_read_from_the_codes_and_the_nodes_own_texts() {
        assert!(server(10 | (40 << 8), "disk I/O error").is_connection());
        assert!(server(10 | (41 << 8), "disk I/O error").is_connection());
        assert!(server(1, "not leader").is_connection());
        assert!(server(10, "leadership lost").is_connection());
        assert!(server(10, "raft: not leader").is_connection());
    }

    #[test]
    fn a_functions_error_quoting_the_words_is_not_a_lost_leader() {
        for message in [
            "onboarding_get: not_found: session 'onb_not leader' does not exist",
            "onboarding_step: invalid_field: email 'not leader' is not a valid email address",
            "onboarding_step: invalid_field: company_name 'leadership lost' ...",
        ] {
            let e = server(1, message);
            assert!(!e.is_connection(), "{message}");
            assert!(!e.is_busy(), "{message}");
        }
    }
}
