//! The one closed error type of the library, and its text form.
//!
//! A failing SQL function raises an SQL error whose text is
//! `onboarding_<function>: <kind>: <detail>`. SQLite hands callers only
//! SQLITE_ERROR plus that text (whatever code the function sets), so the kind
//! lives in the text, where the HTTP server and any other client parse it back
//! with [`ErrorKind::parse_message`].

use std::fmt;

/// What went wrong, closed: every kind maps to one HTTP status in the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The payload is not JSON, or not a JSON object (HTTP 400).
    InvalidJson,
    /// A field breaks a rule; the detail starts with the field name (HTTP 422).
    InvalidField,
    /// The session does not exist (HTTP 404).
    NotFound,
    /// The request contradicts the stored state: a step after completion, an
    /// email used by another tenant (HTTP 409).
    Conflict,
    /// Completion asked before the required steps were saved, or a phone
    /// code before the business step gave a number (HTTP 409).
    Incomplete,
    /// Too soon or too often (a phone code resent within 60 s, the sends of
    /// a verification or of a number used up); the detail ends with
    /// `(retry after N s)`, read back by [`ErrorKind::retry_after`] (HTTP 429
    /// with `Retry-After: N`).
    RateLimited,
    /// The tables are missing: `SELECT onboarding_migrate()` was never run (HTTP 500).
    SchemaMissing,
    /// Anything else: SQLite failures, broken invariants (HTTP 500).
    Internal,
}

impl ErrorKind {
    /// Every kind, in documentation order.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::InvalidJson,
        ErrorKind::InvalidField,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Incomplete,
        ErrorKind::RateLimited,
        ErrorKind::SchemaMissing,
        ErrorKind::Internal,
    ];

    /// The kind as written in error texts and in the HTTP body's `code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::InvalidField => "invalid_field",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Incomplete => "incomplete",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::SchemaMissing => "schema_missing",
            ErrorKind::Internal => "internal",
        }
    }

    /// Splits an error text `onboarding_<function>: <kind>: <detail>` into its
    /// function, kind and detail; `None` for any other text (a plain SQLite
    /// error such as a syntax error in the caller's own SQL).
    pub fn parse_message(message: &str) -> Option<(&str, ErrorKind, &str)> {
        let (function, rest) = message.split_once(": ")?;
        if !function.starts_with("onboarding_") {
            return None;
        }
        let (kind, detail) = rest.split_once(": ")?;
        let kind = ErrorKind::ALL.into_iter().find(|k| k.as_str() == kind)?;
        Some((function, kind, detail))
    }

    /// The seconds a `rate_limited` detail asks to wait: the `N` of its
    /// closing `(retry after N s)`.
    pub fn retry_after(detail: &str) -> Option<u64> {
        let inner = detail.strip_suffix(" s)")?;
        let at = inner.rfind("(retry after ")?;
        inner[at + "(retry after ".len()..].parse().ok()
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure of one call, before the function name is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub detail: String,
    /// The SQLite result code the function fails with, besides its text,
    /// where every other error is `SQLITE_ERROR`: `SQLITE_BUSY` for a
    /// database locked past the busy timeout, which a client may retry on;
    /// `SQLITE_INTERRUPT` for a call interrupted (`sqlite3_interrupt`: the
    /// shell's Ctrl-C, Go's cancelled context), which its client asked for.
    pub code: Option<std::ffi::c_int>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Error {
            kind,
            detail: detail.into(),
            code: None,
        }
    }

    pub fn invalid_json(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidJson, detail)
    }

    /// `detail` must start with the field name: clients read it from there.
    pub fn invalid_field(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidField, detail)
    }

    pub fn not_found_session(session_id: &str) -> Self {
        Error::new(
            ErrorKind::NotFound,
            format!("session {} does not exist", quote(session_id)),
        )
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::Conflict, detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, detail)
    }

    /// An internal error saying the database stayed locked (`SQLITE_BUSY`,
    /// see [`Error::code`]).
    pub fn locked(detail: impl Into<String>) -> Self {
        Error {
            code: Some(rusqlite::ffi::SQLITE_BUSY),
            ..Error::internal(detail)
        }
    }

    /// An internal error saying the call was interrupted
    /// (`SQLITE_INTERRUPT`, see [`Error::code`]).
    pub fn interrupted(detail: impl Into<String>) -> Self {
        Error {
            code: Some(rusqlite::ffi::SQLITE_INTERRUPT),
            ..Error::internal(detail)
        }
    }

    /// `what` was refused for now; the detail ends with `(retry after N s)`,
    /// `N` being `wait_ms` rounded up to whole seconds (at least 1).
    pub fn rate_limited(what: impl fmt::Display, wait_ms: i64) -> Self {
        let seconds = ((wait_ms.max(1) + 999) / 1000).max(1);
        Error::new(
            ErrorKind::RateLimited,
            format!("{what} (retry after {seconds} s)"),
        )
    }

    /// The full error text for SQL function `function`.
    pub fn message(&self, function: &str) -> String {
        format!("{function}: {}: {}", self.kind, self.detail)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    /// SQLite failures are internal, except a missing table or column: that is
    /// a database that was never migrated (or migrated by an older version).
    fn from(err: rusqlite::Error) -> Self {
        let text = err.to_string();
        if text.contains("no such table") || text.contains("no such column") {
            Error::new(
                ErrorKind::SchemaMissing,
                format!("{text} (run SELECT onboarding_migrate() first)"),
            )
        } else if text.starts_with("unsafe use of json") {
            // The tables' CHECK constraints call json_valid(), which SQLite
            // before 3.41.0 (Debian 12 ships 3.40.1) did not flag innocuous:
            // under PRAGMA trusted_schema=OFF such a host refuses every
            // write to those tables. The error says what to change.
            Error::internal(format!(
                "{text}: this SQLite ({}) refuses its own JSON functions in the \
                 tables' CHECK constraints under PRAGMA trusted_schema=OFF, which \
                 SQLite 3.41.0 fixed; set PRAGMA trusted_schema=ON on this \
                 connection, or use SQLite 3.41 or newer",
                rusqlite::version()
            ))
        } else if err.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) {
            // Not SQLITE_LOCKED (a table this connection itself holds):
            // waiting for another connection would not end it.
            Error::locked(text)
        } else if err.sqlite_error_code() == Some(rusqlite::ErrorCode::OperationInterrupted)
            // A statement of a batch (a migration's file) interrupted while
            // SQLite prepared it answers SQLITE_ERROR with the interrupt's
            // own message: the same interrupt, and its code says so.
            || text == "interrupted"
        {
            Error::interrupted(text)
        } else if let Some(said) = said_by_a_nested_call(&text) {
            Error::internal(said)
        } else {
            Error::internal(text)
        }
    }
}

/// The text of one of this library's functions failing inside a statement
/// of another call (a client's `TEMP` trigger, or a CHECK constraint,
/// calls it): its detail once, the function that said it named, rather
/// than its whole text behind this call's prefix (`onboarding_create:
/// internal: onboarding_create: internal: …`).
fn said_by_a_nested_call(text: &str) -> Option<String> {
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    let (function, rest) = text.split_once(": ")?;
    let (kind, detail) = rest.split_once(": ")?;
    (function.strip_prefix("onboarding_").is_some_and(word) && word(kind)).then(|| {
        format!("{detail} (said by {function}, called by a trigger or a constraint of this call's statements)")
    })
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::internal(format!("stored JSON is unreadable: {err}"))
    }
}

/// Quotes a caller's value for an error text: single quotes, control
/// characters escaped, and cut after 64 characters so a huge value cannot
/// flood a log line.
pub fn quote(value: &str) -> String {
    quote_cut(value, true)
}

/// A JSON value as an error text shows it: a string quoted by [`quote`];
/// anything else (number, array, object) as its JSON text, cut the same way
/// so that an echoed 60 KB array makes no 60 KB error.
pub fn quote_json(value: &serde_json::Value) -> String {
    match value.as_str() {
        Some(text) => quote(text),
        None => quote_cut(&value.to_string(), false),
    }
}

/// `value` cut as [`quote`] cuts it, without the quotes: for a word the
/// text names bare (an HTTP method), which a client may make any length.
pub fn cut(value: &str) -> String {
    quote_cut(value, false)
}

fn quote_cut(value: &str, quoted: bool) -> String {
    use std::fmt::Write as _;
    const MAX: usize = 64;
    let mut out = String::with_capacity(value.len().min(MAX * 2) + 2);
    if quoted {
        out.push('\'');
    }
    // Counted as written: a control character's escape (`\u0001`) is six
    // characters, and 64 of them made a 400-character text.
    let mut written = 0;
    let mut escape = String::new();
    for c in value.chars() {
        escape.clear();
        if escaped_in_quotes(c) {
            // As JSON writes them, which every reader of the text knows.
            match c {
                '\n' => escape.push_str("\\n"),
                '\r' => escape.push_str("\\r"),
                '\t' => escape.push_str("\\t"),
                _ => {
                    let _ = write!(escape, "\\u{:04x}", u32::from(c));
                }
            }
        }
        let width = if escape.is_empty() { 1 } else { escape.len() };
        if written + width > MAX {
            out.push('…');
            break;
        }
        written += width;
        if escape.is_empty() {
            out.push(c);
        } else {
            out.push_str(&escape);
        }
    }
    if quoted {
        out.push('\'');
    }
    out
}

/// `text` trimmed, when it is not empty, at most `max_chars` long and free
/// of control characters, line separators and bidirectional controls; the
/// `invalid_field` error names `field`. The one
/// rule for a caller's text, in payloads and in worker arguments alike.
pub(crate) fn checked_text(field: &str, text: &str, max_chars: usize) -> Result<String> {
    let text = trim(text);
    if text.is_empty() {
        return Err(Error::invalid_field(format!("{field} must not be empty")));
    }
    let chars = text.chars().count();
    if chars > max_chars {
        return Err(Error::invalid_field(format!(
            "{field} is {chars} characters long; at most {max_chars} are allowed"
        )));
    }
    // One pass over a text that breaks no rule; which one it broke is
    // looked for after, control characters first.
    if text.chars().any(escaped_in_quotes) {
        let broken = if text.chars().any(char::is_control) {
            "contains a control character"
        } else if text.chars().any(line_separator) {
            // Not control characters, but they break a one-line text as
            // `\n` would: a name is written into the agent's prompt and
            // greeting, where a line of the caller's would start.
            "contains a line break (expected one line of text)"
        } else {
            // An embedding, override or isolate left open reorders whatever
            // is written after the name: the greeting, the campaign's name,
            // a page.
            "contains a bidirectional control character \
             (U+202A to U+202E or U+2066 to U+2069: they reorder the text after it)"
        };
        return Err(Error::invalid_field(format!(
            "{field} {} {broken}",
            quote(text)
        )));
    }
    Ok(text.to_string())
}

/// Unicode's own line and paragraph separators.
fn line_separator(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}')
}

/// Unicode's explicit bidirectional embeddings, overrides and isolates
/// (the marks U+200E and U+200F reorder nothing beyond themselves).
fn bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The characters a quoted value shows escaped: written raw, they would
/// break the error's line in a log or reorder the text after them.
fn escaped_in_quotes(c: char) -> bool {
    c.is_control() || line_separator(c) || bidi_control(c)
}

/// A diagnostic another system wrote (a provider's error, passed on as it
/// came): kept as one line rather than refused, since refusing it would
/// leave what it reports unrecorded. Trimmed; each run of control, line
/// break or bidirectional characters becomes one space; past `max_chars`
/// (at least 2) cut to its first `max_chars - 1` and `…`. An empty one (a
/// provider's empty answer) is kept as [`NO_DIAGNOSTIC`].
pub(crate) fn one_line_diagnostic(text: &str, max_chars: usize) -> String {
    one_line(text, max_chars).unwrap_or_else(|| NO_DIAGNOSTIC.to_string())
}

/// `text` as [`one_line_diagnostic`] keeps it, or `None` for one with no
/// text: a reference another system gave (a provider's message id, which
/// may come empty) is kept so, not refused.
pub(crate) fn one_line(text: &str, max_chars: usize) -> Option<String> {
    let words: Vec<&str> = text
        .split(escaped_in_quotes)
        .map(trim)
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return None;
    }
    let line = words.join(" ");
    Some(match line.char_indices().nth(max_chars) {
        None => line,
        Some(_) => {
            let (cut, _) = line.char_indices().nth(max_chars - 1).unwrap_or_default();
            format!("{}…", &line[..cut])
        }
    })
}

/// What [`one_line_diagnostic`] keeps of a diagnostic with no text.
const NO_DIAGNOSTIC: &str = "(no error text)";

/// `text` without white space or invisible characters at either end. A
/// zero-width space, a byte-order mark, a soft hyphen or a word joiner
/// prints nothing: a company or assistant name made of them alone is as
/// empty as one of spaces, and one pasted with them around keeps them out.
/// Inside a text they stay (a zero-width joiner binds emoji).
pub(crate) fn trim(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || invisible(c))
}

/// The format characters of Unicode's Default_Ignorable_Code_Point that a
/// paste carries in (the variation selectors and tags are left: they
/// follow a visible character).
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{034f}'
            | '\u{061c}'
            | '\u{115f}'
            | '\u{1160}'
            | '\u{17b4}'
            | '\u{17b5}'
            | '\u{180b}'..='\u{180f}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{3164}'
            | '\u{feff}'
            | '\u{ffa0}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite_error(message: &str) -> Error {
        Error::from(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(message.to_string()),
        ))
    }

    #[test]
    fn sqlite_failures_are_internal_but_a_missing_schema_and_an_untrusted_json_check() {
        assert_eq!(
            sqlite_error("no such table: tenants").to_string(),
            "schema_missing: no such table: tenants (run SELECT onboarding_migrate() first)"
        );
        assert_eq!(
            sqlite_error("unsafe use of json_valid()").to_string(),
            format!(
                "internal: unsafe use of json_valid(): this SQLite ({}) refuses its own JSON \
                 functions in the tables' CHECK constraints under PRAGMA trusted_schema=OFF, \
                 which SQLite 3.41.0 fixed; set PRAGMA trusted_schema=ON on this connection, \
                 or use SQLite 3.41 or newer",
                rusqlite::version()
            )
        );
        assert_eq!(
            sqlite_error("unsafe use of my_function()").to_string(),
            "internal: unsafe use of my_function()"
        );
    }

    #[test]
    fn parse_message_splits_function_kind_detail() {
        let text = "onboarding_step: invalid_field: email 'bob@' is not a valid email address";
        assert_eq!(
            ErrorKind::parse_message(text),
            Some((
                "onboarding_step",
                ErrorKind::InvalidField,
                "email 'bob@' is not a valid email address"
            ))
        );
        assert_eq!(ErrorKind::parse_message("no such table: tenants"), None);
        assert_eq!(ErrorKind::parse_message("onboarding_step: weird: x"), None);
    }

    #[test]
    fn rate_limited_details_carry_their_wait_in_whole_seconds() {
        let e = Error::rate_limited("a code was sent 12 s ago", 47_001);
        assert_eq!(e.detail, "a code was sent 12 s ago (retry after 48 s)");
        assert_eq!(ErrorKind::retry_after(&e.detail), Some(48));
        assert_eq!(Error::rate_limited("x", 0).detail, "x (retry after 1 s)");
        assert_eq!(ErrorKind::retry_after("no wait said"), None);
        assert_eq!(
            ErrorKind::parse_message(&e.message("onboarding_phone_send")),
            Some((
                "onboarding_phone_send",
                ErrorKind::RateLimited,
                "a code was sent 12 s ago (retry after 48 s)"
            ))
        );
    }

    #[test]
    fn quote_json_cuts_arrays_and_objects_like_strings() {
        let long: Vec<u32> = (0..10_000).collect();
        let shown = quote_json(&serde_json::json!(long));
        assert_eq!(
            shown,
            "[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,2…"
        );
        assert_eq!(quote_json(&serde_json::json!({"a": 1})), r#"{"a":1}"#);
        assert_eq!(quote_json(&serde_json::json!(12)), "12");
        assert_eq!(quote_json(&serde_json::json!("x")), "'x'");
    }

    #[test]
    fn quote_escapes_control_characters_and_cuts_long_values() {
        assert_eq!(quote("a\nb"), "'a\\nb'");
        let long = "x".repeat(100);
        assert_eq!(quote(&long), format!("'{}…'", "x".repeat(64)));
        // Cut at 64 characters as written: ten escapes of six, then '…'.
        let controls = "\u{1}".repeat(100);
        assert_eq!(quote(&controls), format!("'{}…'", "\\u0001".repeat(10)));
        assert_eq!(
            cut(&format!("ab{controls}")),
            format!("ab{}…", "\\u0001".repeat(10))
        );
        assert_eq!(quote("a\u{0}b\tc\r\u{85}"), "'a\\u0000b\\tc\\r\\u0085'");
        assert_eq!(quote("a\u{2028}b\u{2029}"), "'a\\u2028b\\u2029'");
    }

    #[test]
    fn a_one_line_text_refuses_unicode_line_breaks() {
        for (text, shown) in [
            ("Sa\u{2028}ra", "Sa\\u2028ra"),
            ("Sara\u{2029}x", "Sara\\u2029x"),
        ] {
            assert_eq!(
                checked_text("assistant_name", text, 50).unwrap_err().detail,
                format!(
                    "assistant_name '{shown}' contains a line break (expected one line of text)"
                )
            );
        }
        // A separator at either end is white space, and trimmed.
        assert_eq!(
            checked_text("x", "\u{2028}Sara\u{2029}", 50).unwrap(),
            "Sara"
        );
    }

    #[test]
    fn a_one_line_text_refuses_bidirectional_controls_and_quotes_them_escaped() {
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}',
        ] {
            let text = format!("Boulangerie {c}eiréhcuoB");
            assert_eq!(
                checked_text("company_name", &text, 200).unwrap_err().detail,
                format!(
                    "company_name 'Boulangerie \\u{:04x}eiréhcuoB' contains a bidirectional control \
                     character (U+202A to U+202E or U+2066 to U+2069: they reorder the text after it)",
                    c as u32
                )
            );
        }
        // A control character is named first, wherever it stands.
        assert_eq!(
            checked_text("x", "a\u{202E}b\u{2028}c\u{7}", 50)
                .unwrap_err()
                .detail,
            "x 'a\\u202eb\\u2028c\\u0007' contains a control character"
        );
        // Right-to-left text itself, and the marks, are fine.
        for text in ["مخبز الحي", "Café \u{200F}Bar\u{200E} Sud", "בית קפה"] {
            assert_eq!(checked_text("company_name", text, 200).unwrap(), text);
        }
    }
}
