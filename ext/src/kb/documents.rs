//! The kb step's `documents` method: 1 to 20 documents given as text or
//! Markdown, stored as knowledge at completion (no crawl).

use serde_json::{json, Value};

use crate::error::{Error, Result};

pub const MAX_DOCUMENTS: usize = 20;
pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_CONTENT_CHARS: usize = 200_000;

/// `documents`, validated: `[{"title","content"}]`, titles trimmed.
pub fn documents(field: Option<&Value>) -> Result<Value> {
    let items = match field {
        None | Some(Value::Null) => {
            return Err(Error::invalid_field(
                "documents is required when method is 'documents'",
            ))
        }
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(Error::invalid_field(
                "documents must be an array of {\"title\",\"content\"} objects",
            ))
        }
    };
    if items.is_empty() || items.len() > MAX_DOCUMENTS {
        return Err(Error::invalid_field(format!(
            "documents holds {} items; 1 to {MAX_DOCUMENTS} are allowed",
            items.len()
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Value::Object(map) = item else {
            return Err(Error::invalid_field(format!(
                "documents[{i}] must be an object with title and content"
            )));
        };
        let title = text(
            map.get("title"),
            &format!("documents[{i}].title"),
            MAX_TITLE_CHARS,
        )?;
        if title.contains(['\n', '\r', '\t']) {
            return Err(Error::invalid_field(format!(
                "documents[{i}].title must fit on one line"
            )));
        }
        let content = text(
            map.get("content"),
            &format!("documents[{i}].content"),
            MAX_CONTENT_CHARS,
        )?;
        out.push(json!({ "title": title, "content": content }));
    }
    Ok(Value::Array(out))
}

/// A trimmed text field of 1 to `max` characters; line breaks and tabs are
/// text, other control characters are not.
fn text(value: Option<&Value>, field: &str, max: usize) -> Result<String> {
    let text = match value {
        None | Some(Value::Null) => {
            return Err(Error::invalid_field(format!("{field} is required")))
        }
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err(Error::invalid_field(format!("{field} must be a string"))),
    };
    if text.is_empty() {
        return Err(Error::invalid_field(format!("{field} must not be empty")));
    }
    let chars = text.chars().count();
    if chars > max {
        return Err(Error::invalid_field(format!(
            "{field} is {chars} characters long; at most {max} are allowed"
        )));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(Error::invalid_field(format!(
            "{field} contains a control character"
        )));
    }
    Ok(text.to_string())
}
