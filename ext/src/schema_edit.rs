//! Equivalent rewrites of the library's own table definitions, for what a
//! migration cannot say in SQL: SQLite has no ALTER for a CHECK constraint.
//!
//! [`rewrite_check_lists`] turns `col IN ('a', 'b', 'c')` into
//! `(col = 'a' OR col = 'b' OR col = 'c')`. Both mean the same (the column's
//! affinity and collation apply to each value in both; NULL passes both),
//! but SQLite evaluates a constant list of three values or more through an
//! ephemeral table, opened and filled for each row written: about 7 % of a
//! whole onboarding's instructions went there. The edit goes through
//! `PRAGMA writable_schema`, SQLite's documented procedure for changing a
//! CHECK constraint without rebuilding the table (which, inside a
//! transaction with foreign keys on, would cascade to the children).

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension};

use crate::error::Result;
use crate::sql;

/// Rewrites the lists of three values or more in the CHECK constraints of
/// `tables` (the library's own; a user's tables in the same file are never
/// touched). Runs inside the caller's savepoint: an error leaves every
/// definition as it was. A host that refuses `writable_schema` even with
/// DEFENSIVE lifted keeps its lists, which mean the same.
pub fn rewrite_check_lists(conn: &Connection, tables: &[String]) -> Result<()> {
    let mut edits = Vec::new();
    for table in tables {
        let found: Option<String> = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(old) = found {
            let new = in_lists_as_or_chains(&old);
            if new != old {
                edits.push((table, new));
            }
        }
    }
    if edits.is_empty() {
        return Ok(());
    }
    // SQLITE_DBCONFIG_DEFENSIVE forbids writable_schema: lifted for the edit
    // only, and put back whatever happens.
    let defensive = conn.db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE)?;
    if defensive {
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, false)?;
    }
    let edited = edit(conn, &edits);
    if defensive {
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    }
    edited
}

/// Writes each `(table, new definition)` through `writable_schema`.
fn edit(conn: &Connection, edits: &[(&String, String)]) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA writable_schema = ON")?;
    let on: bool = conn.query_row("PRAGMA writable_schema", [], |r| r.get(0))?;
    if !on {
        // A host that keeps the schema read-only keeps the lists: they mean
        // the same, only slower, and a speed-up must not block an upgrade.
        return Ok(());
    }
    let result = (|| {
        // The new cookie first: whatever reads the definitions next, on any
        // connection, reads them again.
        conn.execute_batch(&format!("PRAGMA schema_version = {}", version + 1))?;
        for (table, new) in edits {
            sql::execute(
                conn,
                "UPDATE sqlite_schema SET sql = ?1 WHERE type = 'table' AND name = ?2",
                (new, table),
            )?;
        }
        Ok(())
    })();
    // RESET turns writable_schema off and makes this connection parse the
    // new definitions; after a failure only OFF: the caller's savepoint
    // rolls the half-made edit back, and nothing should read it meanwhile.
    let off = match result {
        Ok(()) => "PRAGMA writable_schema = RESET",
        Err(_) => "PRAGMA writable_schema = OFF",
    };
    conn.execute_batch(off)?;
    result
}

/// `ident IN (lit, lit, lit …)` with three literals or more, outside string
/// literals and comments, as `(ident = lit OR …)`; everything else as is.
/// A literal is a quoted string without an embedded quote, or an integer.
pub fn in_lists_as_or_chains(sql: &str) -> String {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\'' {
            // A string literal ('' is an escaped quote): copied as is.
            let end = string_end(bytes, i);
            out.push_str(&sql[i..end]);
            i = end;
        } else if c == b'-' && bytes.get(i + 1) == Some(&b'-') {
            let end = sql[i..].find('\n').map_or(bytes.len(), |n| i + n);
            out.push_str(&sql[i..end]);
            i = end;
        } else if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            let end = sql[i + 2..]
                .find("*/")
                .map_or(bytes.len(), |n| i + 2 + n + 2);
            out.push_str(&sql[i..end]);
            i = end;
        } else if let Some(close) = quote_close(c) {
            // A quoted name: copied as is.
            let end = sql[i + 1..]
                .find(close)
                .map_or(bytes.len(), |n| i + 1 + n + 1);
            out.push_str(&sql[i..end]);
            i = end;
        } else if is_ident_start(c) && (i == 0 || !is_ident(bytes[i - 1])) {
            let end = (i..bytes.len())
                .find(|&j| !is_ident(bytes[j]))
                .unwrap_or(bytes.len());
            let ident = &sql[i..end];
            // Only a bare column that starts an operand: after `(`, AND, OR
            // or NOT, so that nothing binding tighter than IN (`a + x`,
            // `-x`, `t.x`, `x COLLATE c`) is split. `x NOT IN (…)`: NOT is
            // no column.
            let list = if ident.eq_ignore_ascii_case("NOT") || !operand_starts_before(&out) {
                None
            } else {
                in_list(sql, end)
            };
            match list {
                Some((values, after)) if values.len() >= 3 => {
                    let terms: Vec<String> =
                        values.iter().map(|v| format!("{ident} = {v}")).collect();
                    out.push('(');
                    out.push_str(&terms.join(" OR "));
                    out.push(')');
                    i = after;
                }
                _ => {
                    out.push_str(ident);
                    i = end;
                }
            }
        } else {
            let ch = sql[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Whether what was written so far ends where an operand starts: `(`, or
/// the word AND, OR or NOT (then whitespace).
fn operand_starts_before(written: &str) -> bool {
    let before = written.trim_end();
    // The identifier being read starts right after this word, so a space
    // separates them: the word is whole.
    let word = before
        .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
        .unwrap_or("");
    before.ends_with('(')
        || ["AND", "OR", "NOT"]
            .iter()
            .any(|k| word.eq_ignore_ascii_case(k))
}

/// The closing character of a quoted name opened by `c`.
fn quote_close(c: u8) -> Option<char> {
    match c {
        b'"' => Some('"'),
        b'`' => Some('`'),
        b'[' => Some(']'),
        _ => None,
    }
}

/// At `at`: ` IN (lit, lit …)`. Answers the literals and where the list ends.
fn in_list(sql: &str, at: usize) -> Option<(Vec<&str>, usize)> {
    let bytes = sql.as_bytes();
    let mut i = skip_space(bytes, at);
    if i == at || !sql[i..].starts_with("IN") {
        return None;
    }
    i += 2;
    i = skip_space(bytes, i);
    if bytes.get(i) != Some(&b'(') {
        return None;
    }
    i += 1;
    let mut values = Vec::new();
    loop {
        i = skip_space(bytes, i);
        let start = i;
        match bytes.get(i)? {
            b'\'' => {
                i = string_end(bytes, i);
                let literal = &sql[start..i];
                // An escaped quote inside: left alone rather than reasoned about.
                if literal.len() < 2 || literal[1..literal.len() - 1].contains('\'') {
                    return None;
                }
            }
            b'0'..=b'9' => {
                while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return None,
        }
        values.push(&sql[start..i]);
        i = skip_space(bytes, i);
        match bytes.get(i)? {
            b',' => i += 1,
            b')' => return Some((values, i + 1)),
            _ => return None,
        }
    }
}

/// The index just past the string literal starting at `start` ('' escapes).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            if bytes.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

fn skip_space(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_three_or_more_become_or_chains() {
        assert_eq!(
            in_lists_as_or_chains(
                "status TEXT CHECK (status IN ('queued', 'running',\n    'done'))"
            ),
            "status TEXT CHECK ((status = 'queued' OR status = 'running' OR status = 'done'))"
        );
        assert_eq!(
            in_lists_as_or_chains("CHECK (error_code IS NULL OR error_code IN ('a','b','c','d'))"),
            "CHECK (error_code IS NULL OR (error_code = 'a' OR error_code = 'b' OR error_code = 'c' OR error_code = 'd'))"
        );
        assert_eq!(
            in_lists_as_or_chains("CHECK (level IN (1, 2, 30))"),
            "CHECK ((level = 1 OR level = 2 OR level = 30))"
        );
        // After AND, OR and NOT too.
        assert_eq!(
            in_lists_as_or_chains("CHECK (y = 1 AND x IN (1, 2, 3) OR NOT z IN (4, 5, 6))"),
            "CHECK (y = 1 AND (x = 1 OR x = 2 OR x = 3) OR NOT (z = 4 OR z = 5 OR z = 6))"
        );
    }

    #[test]
    fn everything_else_is_left_as_is() {
        for sql in [
            // Two values: SQLite compares them directly already.
            "CHECK (flag IN (0, 1))",
            "CHECK ((reason IS NULL) = (status IN ('pending', 'stored')))",
            // Inside a string literal or a comment.
            "DEFAULT 'x IN (''a'', ''b'', ''c'')'",
            "-- status IN ('a', 'b', 'c')\n x",
            // Not a plain list of literals.
            "CHECK (x IN (SELECT y FROM t))",
            "CHECK (x IN ('a', b, 'c'))",
            "CHECK (x IN ('it''s', 'b', 'c'))",
            "CHECK (x NOT IN ('a', 'b', 'c'))",
            "CHECK (xIN ('a', 'b', 'c'))",
            // Operands that bind tighter than IN, and qualified names.
            "CHECK (a + x IN (1, 2, 3))",
            "CHECK (-x IN (1, 2, 3))",
            "CHECK (t.x IN ('a', 'b', 'c'))",
            "CHECK (x COLLATE NOCASE IN ('a', 'b', 'c'))",
            "CHECK (CASE WHEN y THEN 1 END IN (1, 2, 3))",
            // Inside a block comment or a quoted name.
            "/* x IN ('a', 'b', 'c') */",
            "\"it's IN ('a', 'b', 'c')\"",
        ] {
            assert_eq!(in_lists_as_or_chains(sql), sql);
        }
    }
}
