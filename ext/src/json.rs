//! JSON helpers every layer shares: a value as text (for columns and
//! answers), as an SQL result, a JSON type's name for error texts, and an
//! SQL row as a JSON object.

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::Row;
use serde_json::{Map, Value};

/// JSON text of a value. `serde_json::to_string` writes into one buffer; the
/// `Display` impl goes through the formatter a piece at a time (about 5% of
/// an onboarding's instructions, measured with callgrind).
pub fn to_text(value: &impl serde::Serialize) -> String {
    // Serializing a `Value`, or one of the library's answer structs, cannot
    // fail: their map keys are always strings.
    serde_json::to_string(value).unwrap_or_default()
}

/// A string as a JSON string literal, quotes and escapes included.
pub fn string(text: &str) -> String {
    // Serializing a `str` cannot fail.
    serde_json::to_string(text).unwrap_or_default()
}

/// A value as the text result of an SQL function.
pub fn to_sql(value: Value) -> SqlValue {
    SqlValue::Text(to_text(&value))
}

/// The name of a value's JSON type, as error texts say it: `got an array`.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A row as a JSON object keyed by column name, with the named columns
/// holding JSON text parsed (text that does not parse stays a string).
pub fn row_object(row: &Row<'_>, json_columns: &[&str]) -> rusqlite::Result<Value> {
    let stmt = row.as_ref();
    let mut map = Map::new();
    for i in 0..stmt.column_count() {
        let name = stmt.column_name(i)?;
        let value = match row.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(n) => Value::from(n),
            ValueRef::Real(x) => Value::from(x),
            ValueRef::Text(t) => {
                let text = String::from_utf8_lossy(t);
                if json_columns.contains(&name) {
                    serde_json::from_str(&text).unwrap_or(Value::String(text.into_owned()))
                } else {
                    Value::String(text.into_owned())
                }
            }
            // No column the library reads holds a blob.
            ValueRef::Blob(_) => Value::Null,
        };
        map.insert(name.to_string(), value);
    }
    Ok(Value::Object(map))
}
