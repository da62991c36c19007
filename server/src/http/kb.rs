//! The knowledge-base routes' calls: their arguments come from the path and
//! the query string, and each is still one SQL call.

use serde_json::{json, Map, Value};

use super::reply::sql_error;
use super::reply::Reply;
use crate::db::Call;
use crate::routes::Endpoint;

/// The query string's parameters (the last one wins on a repeat).
fn params(query: Option<&str>) -> Map<String, Value> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

/// The call of a knowledge-base route, or the 422 of a missing parameter.
pub fn call(
    endpoint: Endpoint,
    session_id: String,
    query: Option<&str>,
) -> Result<Call, Box<Reply>> {
    let mut params = params(query);
    match endpoint {
        Endpoint::KbGet => Ok(Call::KbGet { session_id }),
        // The original's route: the session id is a query parameter.
        Endpoint::KbStructure => match params.remove("session_id") {
            Some(Value::String(id)) if !id.is_empty() => Ok(Call::KbGet { session_id: id }),
            _ => Err(Box::new(sql_error(
                &onboarding::Error::invalid_field("session_id is required (?session_id=onb_…)")
                    .message("onboarding_kb_get"),
            ))),
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
            Ok(Call::KbSearch {
                payload: payload.to_string(),
            })
        }
    }
}
