//! Whether the file's writes are failing for want of storage, for the
//! health check: a full disk fails every write while reads, and so a
//! health check that only reads, go on answering.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::query::{Failure, Outcome};

/// How long a write refused for want of storage keeps the health check
/// failing. Not cleared by a write that passes: on a nearly full disk a
/// small write fits where a large one is refused, and the check would
/// follow each write's size. Not for ever either: a load balancer that took
/// the server out of rotation sends it no write, and must see it healthy
/// again to try (the next refused write shows it failing again).
pub const SHOWN_FOR: Duration = Duration::from_secs(60);

/// SQLite's texts for a write its storage refused: a full disk, an I/O
/// error, a file it cannot open or write, memory. Not a lock held by
/// another process (`database is locked`), which ends by itself and has
/// its own 503.
const STORAGE: [&str; 5] = [
    "database or disk is full",
    "disk I/O error",
    "unable to open database file",
    "attempt to write a readonly database",
    "out of memory",
];

/// What SQLite said of a failed call or statement: the whole text of
/// SQLite's own error (a COMMIT's), or the detail of a function's
/// `internal` error, up to the `;` of what the library adds after it.
/// `None` for any other kind of a function's error: those quote the
/// client's own input, which must not pass for SQLite's words.
pub fn sqlite_text(error: &str) -> Option<&str> {
    let detail = if error.starts_with("onboarding_") {
        let (_, rest) = error.split_once(": ")?;
        rest.strip_prefix("internal: ")?
    } else {
        error
    };
    Some(detail.split_once(';').map_or(detail, |(text, _)| text))
}

/// The storage failure SQLite reported in `error` (see [`sqlite_text`]).
pub fn storage_failure(error: &str) -> Option<&'static str> {
    let text = sqlite_text(error)?;
    STORAGE.into_iter().find(|storage| *storage == text)
}

/// The last write refused for want of storage, when it was and SQLite's
/// text for it: the writer records each batch's answers (taking the lock
/// only when one was refused), the health check reads it.
#[derive(Default)]
pub struct LastWrite(Mutex<Option<(Instant, &'static str)>>);

impl LastWrite {
    /// Records the storage failures among a batch's answers.
    pub fn record(&self, replies: &[Outcome]) {
        let refused = replies.iter().rev().find_map(|reply| match reply {
            Err(Failure::Sql(text)) => storage_failure(text),
            _ => None,
        });
        if let Some(text) = refused {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), text));
        }
    }

    /// SQLite's text for the last write refused for want of storage, and
    /// how long the check still reports it, when less than [`SHOWN_FOR`]
    /// before `now`.
    pub fn failure_at(&self, now: Instant) -> Option<(&'static str, Duration)> {
        let (at, text) = (*self.0.lock().unwrap_or_else(|p| p.into_inner()))?;
        let left = SHOWN_FOR.checked_sub(now.saturating_duration_since(at))?;
        (!left.is_zero()).then_some((text, left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sqlites_own_words_are_a_storage_failure() {
        for (error, failure) in [
            ("database or disk is full", Some("database or disk is full")),
            ("onboarding_create: internal: disk I/O error", Some("disk I/O error")),
            (
                "onboarding_step: internal: database or disk is full; SQLite rolled back the \
                 caller's transaction with it (its statements before this call are undone)",
                Some("database or disk is full"),
            ),
            // A client's input quoted in a refusal is not SQLite's word.
            ("onboarding_step: not_found: session 'disk I/O error' does not exist", None),
            ("onboarding_step: invalid_field: email 'disk I/O error' is not a valid email address", None),
            ("onboarding_create: internal: the call panicked: disk I/O error", None),
            ("database is locked", None),
        ] {
            assert_eq!(storage_failure(error), failure, "{error}");
        }
    }

    #[test]
    fn a_refused_write_is_reported_for_a_minute_whatever_passes_since() {
        let last = LastWrite::default();
        let now = Instant::now();
        assert_eq!(last.failure_at(now), None);
        last.record(&[
            Ok("{}".into()),
            Err(Failure::Sql(
                "onboarding_step: invalid_field: phone 'disk I/O error' is not a phone number"
                    .into(),
            )),
            Err(Failure::Busy("database is locked".into())),
        ]);
        assert_eq!(last.failure_at(now), None);
        last.record(&[
            Err(Failure::Sql(
                "onboarding_create: internal: database or disk is full".into(),
            )),
            Ok("{}".into()),
        ]);
        let at = Instant::now();
        last.record(&[Ok("{}".into())]);
        let (text, left) = last.failure_at(at).unwrap();
        assert_eq!(text, "database or disk is full");
        assert!(left > Duration::from_secs(59), "{left:?}");
        assert_eq!(last.failure_at(at + SHOWN_FOR), None);
    }
}
