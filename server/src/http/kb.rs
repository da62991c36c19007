//! The knowledge-base routes' queries: their arguments come from the path
//! and the query string, and each is still one SQL call.

use serde_json::{json, Map, Value};

use crate::db::Query;
use crate::routes::Endpoint;

/// The query string's parameters that `known` names. One of them given
/// twice (`?q=a&q=b`) is refused, named: which one the client meant cannot
/// be known. Others are left alone, as an unknown field of a body is not.
fn params(query: Option<&str>, known: &[&str]) -> Result<Map<String, Value>, String> {
    let mut params = Map::new();
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if !known.contains(&name.as_ref()) {
            continue;
        }
        if params.contains_key(name.as_ref()) {
            return Err(name.into_owned());
        }
        params.insert(name.into_owned(), Value::String(value.into_owned()));
    }
    Ok(params)
}

/// The one query of a knowledge-base route. A missing parameter binds
/// NULL or leaves its field out, and the library's own error names it.
/// Refused: the parameter given more than once.
pub fn query(endpoint: Endpoint, session_id: String, query: Option<&str>) -> Result<Query, String> {
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
