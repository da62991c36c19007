//! The knowledge-base routes' queries: their arguments come from the path
//! and the query string, and each is still one SQL call.

use serde_json::{json, Map, Value};

use crate::db::Query;
use crate::routes::Endpoint;

/// A query parameter refused: its name, and why.
pub struct Refused {
    pub name: String,
    pub message: String,
}

/// A query string's name or value decoded as a form writes it (`+` a
/// space), or `None` when its bytes are not UTF-8 (`caf%E9`, Latin-1).
fn decoded(raw: &str) -> Option<String> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|text| text.into_owned())
}

/// The query string's parameters that `known` names. One of them given
/// twice (`?q=a&q=b`) is refused, named: which one the client meant cannot
/// be known; so is one whose value is not UTF-8 once decoded, which was
/// searched for with U+FFFD in its place. Others are left alone, as an
/// unknown field of a body is not.
fn params(query: Option<&str>, known: &[&str]) -> Result<Map<String, Value>, Refused> {
    let mut params = Map::new();
    for piece in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        let Some(name) = decoded(name).filter(|name| known.contains(&name.as_str())) else {
            continue;
        };
        if params.contains_key(&name) {
            let message = format!("{name} is given more than once; send one");
            return Err(Refused { name, message });
        }
        let Some(value) = decoded(value) else {
            let message = format!(
                "{name} is not UTF-8 once its percent-escapes are decoded (send text in UTF-8: \
                 é is %C3%A9)"
            );
            return Err(Refused { name, message });
        };
        params.insert(name, Value::String(value));
    }
    Ok(params)
}

/// The one query of a knowledge-base route. A missing parameter binds
/// NULL or leaves its field out, and the library's own error names it.
/// Refused: the parameter given more than once, or not UTF-8.
pub fn query(
    endpoint: Endpoint,
    session_id: String,
    query: Option<&str>,
) -> Result<Query, Refused> {
    let known: &[&str] = match endpoint {
        Endpoint::KbStructure => &["session_id"],
        Endpoint::KbSearch => &["q", "limit"],
        _ => &[],
    };
    let mut params = params(query, known)?;
    Ok(match endpoint {
        Endpoint::KbGet => Query::KbGet {
            session_id: Some(session_id),
        },
        // The original's route: the session id is a query parameter. An
        // empty one (`?session_id=`) is a missing one, as the document's
        // minLength says: 422, not a search for the session ''.
        Endpoint::KbStructure => Query::KbGet {
            session_id: params
                .remove("session_id")
                .and_then(|v| v.as_str().map(str::to_string))
                .filter(|id| !id.is_empty()),
        },
        _ => {
            let mut payload = json!({ "session_id": session_id });
            if let Some(q) = params.remove("q") {
                payload["query"] = q;
            }
            if let Some(limit) = params.remove("limit") {
                // A number when it reads as one; otherwise the library's
                // own error names the bad value.
                let text = limit.as_str().unwrap_or_default();
                payload["limit"] = text.parse::<i64>().map(Value::from).unwrap_or(limit);
            }
            Query::KbSearch {
                payload: payload.to_string(),
            }
        }
    })
}
