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

/// JSON text written piece by piece, for the answers every flow gets: the
/// fixed parts (keys, punctuation, constant values) each copied as one
/// literal, strings escaped exactly as serde_json escapes them. A
/// `Serialize` impl sends every key and value through the serializer one
/// call at a time, which for completion's answer cost about four times as
/// many instructions (callgrind).
pub struct Writer {
    out: String,
}

impl Writer {
    pub fn with_capacity(bytes: usize) -> Writer {
        Writer {
            out: String::with_capacity(bytes),
        }
    }

    /// JSON text as it is: a literal of the library's own (`{"key":`).
    pub fn raw(&mut self, json: &str) -> &mut Writer {
        self.out.push_str(json);
        self
    }

    /// A string literal, quotes and escapes included.
    pub fn string(&mut self, text: &str) -> &mut Writer {
        // serde_json escapes the quote, the backslash and the control
        // characters only: text without them is its own literal.
        if needs_escape(text.as_bytes()) {
            self.out.push_str(&string(text));
        } else {
            self.out.reserve(text.len() + 2);
            self.out.push('"');
            self.out.push_str(text);
            self.out.push('"');
        }
        self
    }

    /// A string literal, or `null`.
    pub fn opt_string(&mut self, text: Option<&str>) -> &mut Writer {
        match text {
            Some(text) => self.string(text),
            None => self.raw("null"),
        }
    }

    /// An array of string literals.
    pub fn strings<S: AsRef<str>>(&mut self, items: &[S]) -> &mut Writer {
        self.out.push('[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.string(item.as_ref());
        }
        self.out.push(']');
        self
    }

    pub fn int(&mut self, n: i64) -> &mut Writer {
        push_int(&mut self.out, n);
        self
    }

    pub fn bool(&mut self, b: bool) -> &mut Writer {
        self.raw(if b { "true" } else { "false" })
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Whether `bytes` hold a byte serde_json escapes: a control character
/// (below 0x20), the quote or the backslash. Eight bytes at a time (the
/// word tests of Sean Anderson's "Bit Twiddling Hacks": a byte below `n`,
/// a byte equal to zero), about a quarter of the instructions of a test
/// per byte; every string of every answer goes through it.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Exact as to whether some byte matches (which one is not needed).
    let below = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGHS;
    let zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(word);
        let w = u64::from_le_bytes(eight);
        if below(w, 0x20) | zero(w ^ (ONES * u64::from(b'"'))) | zero(w ^ (ONES * u64::from(b'\\')))
            != 0
        {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// Appends `n` in decimal, without the formatter.
fn push_int(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for d in &digits[at..] {
        out.push(char::from(*d));
    }
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

/// A value of the wrong type as an error text names it, its type and the
/// value itself (cut as [`quote_json`] cuts it): `got the number 5`, `got
/// the array [1,2]`, `got null`.
pub fn got(value: &Value) -> String {
    let kind = match value {
        Value::Null => return "null".to_string(),
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    format!("the {kind} {}", crate::error::quote_json(value))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_written_as_serde_json_writes_them() {
        for n in [0, 7, 33, 100, -5, i64::MAX, i64::MIN] {
            let mut w = Writer::with_capacity(0);
            w.int(n);
            assert_eq!(w.finish(), to_text(&n));
        }
    }

    /// The word test answers as the byte test, for every byte value at
    /// every position of texts of 1 to 24 bytes among bytes that need no
    /// escape (ASCII, and UTF-8's high bytes, which the word test must not
    /// take for control characters).
    #[test]
    fn needs_escape_agrees_with_a_test_per_byte() {
        let per_byte = |bytes: &[u8]| bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
        let mut checked = 0;
        for len in 1..=24 {
            for fill in [b'a', b' ', 0x7f, 0x80, 0xa9, 0xff, b'!', b'#', b'[', b']'] {
                for at in 0..len {
                    for b in 0..=255u8 {
                        let mut text = vec![fill; len];
                        text[at] = b;
                        assert_eq!(needs_escape(&text), per_byte(&text), "{text:?}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 768_000);
        assert!(!needs_escape(b""));
    }

    #[test]
    fn the_writer_escapes_strings_as_serde_json_does() {
        let texts = [
            "",
            "plain",
            "é 🎉",
            "quote \" here",
            "back\\slash",
            "\n\t\r",
            "\u{0}\u{1f}",
            "\u{7f} del",
            "</script>",
            "\u{2028}",
        ];
        for text in texts {
            let mut w = Writer::with_capacity(0);
            w.string(text);
            assert_eq!(w.finish(), string(text), "{text:?}");
        }
        let mut w = Writer::with_capacity(0);
        w.raw("[")
            .int(-12)
            .raw(",")
            .int(0)
            .raw(",")
            .bool(true)
            .raw(",");
        w.opt_string(None).raw(",").opt_string(Some("x")).raw(",");
        w.strings(&["a".to_string(), "\"".to_string()]).raw("]");
        assert_eq!(w.finish(), r#"[-12,0,true,null,"x",["a","\""]]"#);
    }
}
