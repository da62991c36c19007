//! Reading the kb functions' JSON payloads: each accessor names its field
//! in the error, as every `invalid_field` detail must.

use serde_json::Value;

use crate::error::{quote, Error, Result};
use crate::validate::{payload_object, Object};

/// A payload object, as the step functions read theirs.
pub struct Fields(Object);

impl Fields {
    pub fn parse(payload: Option<&str>) -> Result<Fields> {
        payload_object(payload).map(Fields)
    }

    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    pub fn optional_str(&self, field: &str, max_chars: usize) -> Result<Option<&str>> {
        let Some(value) = self.get(field) else {
            return Ok(None);
        };
        let text = value
            .as_str()
            .ok_or_else(|| Error::invalid_field(format!("{field} must be a string")))?;
        if text.chars().count() > max_chars {
            return Err(Error::invalid_field(format!(
                "{field} is longer than {max_chars} characters"
            )));
        }
        Ok(Some(text))
    }

    pub fn str(&self, field: &str, max_chars: usize) -> Result<&str> {
        match self.optional_str(field, max_chars)? {
            Some(t) if !t.trim().is_empty() => Ok(t),
            Some(_) => Err(Error::invalid_field(format!("{field} must not be empty"))),
            None => Err(Error::invalid_field(format!("{field} is required"))),
        }
    }

    /// An integer in `range`, or `default` when absent.
    pub fn int(
        &self,
        field: &str,
        range: std::ops::RangeInclusive<i64>,
        default: Option<i64>,
    ) -> Result<i64> {
        let Some(value) = self.get(field) else {
            return default.ok_or_else(|| Error::invalid_field(format!("{field} is required")));
        };
        match value.as_i64() {
            Some(n) if range.contains(&n) => Ok(n),
            _ => Err(Error::invalid_field(format!(
                "{field} {} is not an integer from {} to {}",
                value.as_str().map_or_else(|| value.to_string(), quote),
                range.start(),
                range.end()
            ))),
        }
    }

    /// A machine-readable code: lowercase letters, digits and '_'.
    pub fn code(&self, field: &str) -> Result<Option<&str>> {
        let Some(code) = self.optional_str(field, 40)? else {
            return Ok(None);
        };
        if code.is_empty()
            || !code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(Error::invalid_field(format!(
                "{field} {} is not a code (lowercase letters, digits and '_')",
                quote(code)
            )));
        }
        Ok(Some(code))
    }

    /// An array of strings (absent: empty).
    pub fn strings(&self, field: &str) -> Result<Vec<&str>> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str().ok_or_else(|| {
                        Error::invalid_field(format!("{field} must be an array of strings"))
                    })
                })
                .collect(),
            Some(_) => Err(Error::invalid_field(format!(
                "{field} must be an array of strings"
            ))),
        }
    }
}
