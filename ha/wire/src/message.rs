//! Messages as words: requests built into a buffer, responses read from one.

use crate::{Error, Result};

/// One SQL value, as the protocol types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Integer(i64),
    Float(f64),
    Text(String),
    Blob(Vec<u8>),
    Null,
}

impl Value {
    /// The text of a TEXT value; `None` for every other type.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The integer of an INTEGER value; `None` for every other type.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Integer(n) => Some(*n),
            _ => None,
        }
    }

    /// The type code the protocol puts before the values.
    fn code(&self) -> u8 {
        match self {
            Value::Integer(_) => 1,
            Value::Float(_) => 2,
            Value::Text(_) => 3,
            Value::Blob(_) => 4,
            Value::Null => 5,
        }
    }
}

impl From<Option<&str>> for Value {
    fn from(text: Option<&str>) -> Value {
        text.map_or(Value::Null, |t| Value::Text(t.to_string()))
    }
}

pub(crate) const WORD: usize = 8;

/// A request's body, word-aligned, and its type.
pub(crate) struct Request {
    pub(crate) kind: u8,
    pub(crate) body: Vec<u8>,
}

impl Request {
    pub(crate) fn new(kind: u8) -> Request {
        Request {
            kind,
            body: Vec::with_capacity(256),
        }
    }

    pub(crate) fn u64(mut self, v: u64) -> Request {
        self.body.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// NUL-terminated, then zero-padded to a word.
    pub(crate) fn text(mut self, v: &str) -> Request {
        self.body.extend_from_slice(v.as_bytes());
        self.body.push(0);
        self.pad();
        self
    }

    /// A count byte and one type byte per value, padded to a word, then the
    /// values; no parameters at all is nothing (not even the count).
    pub(crate) fn params(mut self, values: &[Value]) -> Result<Request> {
        if values.is_empty() {
            return Ok(self);
        }
        let count = u8::try_from(values.len())
            .map_err(|_| Error::Protocol(format!("{} parameters; at most 255", values.len())))?;
        // A TEXT value travels NUL-terminated: one holding a NUL would end
        // there, and the node would read the rest as the next values.
        if let Some(at) = values
            .iter()
            .position(|v| v.as_text().is_some_and(|t| t.contains('\0')))
        {
            return Err(Error::Protocol(format!(
                "parameter {} is text holding a NUL byte, which a TEXT value cannot carry \
                 (send it as a BLOB and CAST it to TEXT in the statement)",
                at + 1
            )));
        }
        self.body.push(count);
        self.body.extend(values.iter().map(Value::code));
        self.pad();
        for value in values {
            self = match value {
                Value::Integer(n) => self.u64(*n as u64),
                Value::Float(x) => self.u64(x.to_bits()),
                Value::Text(t) => self.text(t),
                Value::Blob(b) => {
                    let mut r = self.u64(b.len() as u64);
                    r.body.extend_from_slice(b);
                    r.pad();
                    r
                }
                Value::Null => self.u64(0),
            };
        }
        Ok(self)
    }

    fn pad(&mut self) {
        while !self.body.len().is_multiple_of(WORD) {
            self.body.push(0);
        }
    }

    /// The header (body words, type, flags, unused) followed by the body.
    pub(crate) fn frame(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(WORD + self.body.len());
        out.extend_from_slice(&((self.body.len() / WORD) as u32).to_le_bytes());
        out.push(self.kind);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&self.body);
        out
    }
}

/// A response's body being read word by word.
pub(crate) struct Response {
    pub(crate) kind: u8,
    pub(crate) body: Vec<u8>,
    at: usize,
}

impl Response {
    pub(crate) fn new(kind: u8, body: Vec<u8>) -> Response {
        Response { kind, body, at: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.at + n > self.body.len() {
            return Err(Error::Protocol(format!(
                "response of type {} ends at byte {}, wanted {} more from {}",
                self.kind,
                self.body.len(),
                n,
                self.at
            )));
        }
        let bytes = &self.body[self.at..self.at + n];
        self.at += n;
        Ok(bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn is_consumed(&self) -> bool {
        self.at == self.body.len()
    }

    pub(crate) fn peek_u8(&self) -> Option<u8> {
        self.body.get(self.at).copied()
    }

    pub(crate) fn text(&mut self) -> Result<String> {
        let rest = &self.body[self.at.min(self.body.len())..];
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| Error::Protocol("a string without its NUL".to_string()))?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        let padded = (end + 1).div_ceil(WORD) * WORD;
        self.take(padded)?;
        Ok(text)
    }

    pub(crate) fn blob(&mut self) -> Result<Vec<u8>> {
        let len = self.u64()? as usize;
        let bytes = self.take(len)?.to_vec();
        self.take(len.div_ceil(WORD) * WORD - len)?;
        Ok(bytes)
    }

    /// One value of a row, by its type code.
    pub(crate) fn value(&mut self, code: u8) -> Result<Value> {
        Ok(match code {
            1 => Value::Integer(self.u64()? as i64),
            2 => Value::Float(f64::from_bits(self.u64()?)),
            3 | 10 => Value::Text(self.text()?),
            4 => Value::Blob(self.blob()?),
            5 => {
                self.u64()?;
                Value::Null
            }
            9 | 11 => Value::Integer(self.u64()? as i64),
            other => return Err(Error::Protocol(format!("unknown value type {other}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_typed_then_padded_then_word_aligned() {
        let request = Request::new(8)
            .u64(7)
            .text("SELECT ?1, ?2")
            .params(&[Value::Text("{}".into()), Value::Null])
            .unwrap();
        let frame = request.frame();
        // 8 (db) + 16 (the SQL and its NUL, padded) + 8 (count, 2 types,
        // padding) + 8 ("{}" and NUL, padded) + 8 (NULL as a zero word).
        assert_eq!(&frame[..8], &[6, 0, 0, 0, 8, 0, 0, 0]);
        assert_eq!(&frame[8 + 24..8 + 32], &[2, 3, 5, 0, 0, 0, 0, 0]);
        assert_eq!(&frame[8 + 32..8 + 40], b"{}\0\0\0\0\0\0");
        assert_eq!(frame.len(), 8 + 48);
    }

    #[test]
    fn a_text_parameter_holding_a_nul_is_refused_not_cut() {
        let refused = Request::new(8)
            .u64(7)
            .text("SELECT ?1, ?2")
            .params(&[Value::Null, Value::Text("{}\0{\"a\":1}".into())]);
        assert_eq!(
            refused.err().map(|e| e.to_string()),
            Some(
                "dqlite protocol error: parameter 2 is text holding a NUL byte, which a TEXT \
                 value cannot carry (send it as a BLOB and CAST it to TEXT in the statement)"
                    .to_string()
            )
        );
    }

    #[test]
    fn strings_and_blobs_read_back_with_their_padding() {
        let mut body = b"onboarding\0\0\0\0\0\0".to_vec();
        body.extend_from_slice(&3u64.to_le_bytes());
        body.extend_from_slice(b"abc\0\0\0\0\0");
        let mut response = Response::new(7, body);
        assert_eq!(response.text().unwrap(), "onboarding");
        assert_eq!(response.blob().unwrap(), b"abc");
        assert!(response.u8().is_err());
    }
}
