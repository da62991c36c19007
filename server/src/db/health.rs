//! Whether the file's writes are failing for want of storage, for the
//! health check: a full disk fails every write while reads, and so a
//! health check that only reads, go on answering.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::query::{Failure, Outcome};

/// How long a write refused for want of storage keeps the health check
/// failing when no write has come since: a load balancer that took the
/// server out of rotation sends it none, and must see it healthy again to
/// try (the next refused write shows it failing again).
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

/// The storage failure `error` (SQLite's text, or a function's error
/// ending with it) names, if any.
pub fn storage_failure(error: &str) -> Option<&'static str> {
    STORAGE.into_iter().find(|text| error.contains(text))
}

/// The last write's outcome: the writer records each batch's answers, the
/// health check reads it.
#[derive(Default)]
pub struct LastWrite {
    /// Set with `failure`: read without the lock on every batch, which
    /// takes it only to record a change.
    failing: AtomicBool,
    /// When the last refused write was, and SQLite's text for it.
    failure: Mutex<Option<(Instant, &'static str)>>,
}

impl LastWrite {
    /// Records a batch's answers, in their order: the last that tells
    /// (an answer, or a function's refusal of its input: its transaction
    /// committed; or a write the storage refused) decides. A lock waited
    /// out tells nothing of the storage.
    pub fn record(&self, replies: &[Outcome]) {
        let mut last = None;
        for reply in replies {
            match reply {
                Ok(_) => last = Some(None),
                Err(Failure::Sql(text)) => last = Some(storage_failure(text)),
                Err(Failure::Busy(_) | Failure::Unconfirmed(_)) => {}
            }
        }
        match last {
            Some(Some(text)) => {
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), text));
                self.failing.store(true, Ordering::Release);
            }
            Some(None) if self.failing.load(Ordering::Acquire) => {
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
                self.failing.store(false, Ordering::Release);
            }
            _ => {}
        }
    }

    /// SQLite's text for the last write refused for want of storage, when
    /// no write has succeeded since and it is less than [`SHOWN_FOR`] old.
    pub fn failure(&self) -> Option<&'static str> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        let failure = *self.failure.lock().unwrap_or_else(|p| p.into_inner());
        failure
            .filter(|(at, _)| at.elapsed() < SHOWN_FOR)
            .map(|(_, text)| text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_answer_that_tells_decides() {
        let last = LastWrite::default();
        let full = || {
            Err(Failure::Sql(
                "onboarding_create: internal: database or disk is full".into(),
            ))
        };
        let refused = || {
            Err(Failure::Sql(
                "onboarding_step: invalid_field: email 'x' is not a valid email address".into(),
            ))
        };
        let busy = || Err(Failure::Busy("database is locked".into()));
        last.record(&[Ok("{}".into()), full()]);
        assert_eq!(last.failure(), Some("database or disk is full"));
        // A lock waited out tells nothing.
        last.record(&[busy()]);
        assert_eq!(last.failure(), Some("database or disk is full"));
        // A refusal of the input committed its transaction.
        last.record(&[full(), refused()]);
        assert_eq!(last.failure(), None);
        last.record(&[Err(Failure::Sql("disk I/O error".into())), busy()]);
        assert_eq!(last.failure(), Some("disk I/O error"));
        last.record(&[Ok("{}".into())]);
        assert_eq!(last.failure(), None);
    }
}
