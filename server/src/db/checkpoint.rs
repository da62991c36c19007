//! The checkpointer: a thread and connection of its own that copies the WAL
//! back into the database file, so that no commit waits for a checkpoint.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use rusqlite::Connection;

use super::open::connect;
use super::query::error_text;
use super::syncer::LogFailure;
use crate::config::Synchronous;

/// How long the checkpointer lets commits gather before copying them back
/// into the database file: one checkpoint (and its fsync) per pause rather
/// than one per commit.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(100);

/// A WAL file larger than this is cut back to it once SQLite restarts the log.
pub(super) const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

/// WAL frames (pages) past which the writer finishes a checkpoint itself so
/// that the log restarts from its beginning (see [`Checkpointer`]).
const RESTART_AT_FRAMES: i64 = 4096;

/// Copies committed WAL frames back into the database file on a thread and
/// connection of its own. A checkpoint writes and fsyncs the database file:
/// run by the writer (SQLite's autocheckpoint), it stalled every call queued
/// behind it; here, PASSIVE, it never blocks the writer.
///
/// But under steady load the writer always appends while a checkpoint runs,
/// so the log is never wholly copied at the moment a new transaction starts,
/// which is when SQLite rewinds it: the WAL file would grow without end. So
/// the checkpointer reports the log's size, and past [`RESTART_AT_FRAMES`]
/// the writer copies the little that is left itself, between two batches;
/// its next transaction then rewinds the log.
pub(super) struct Checkpointer {
    wake: std_mpsc::SyncSender<()>,
    /// Frames in the WAL at the last background checkpoint.
    wal_frames: Arc<AtomicI64>,
    thread: std::thread::JoinHandle<()>,
}

impl Checkpointer {
    pub(super) fn start(
        path: &Path,
        synchronous: Synchronous,
        busy_timeout: Duration,
        log_failure: LogFailure,
    ) -> Result<Checkpointer, String> {
        let conn = connect(path, None, synchronous, busy_timeout)?;
        // One pending wake-up is enough: nudges coalesce.
        let (wake, wakes) = std_mpsc::sync_channel::<()>(1);
        let wal_frames = Arc::new(AtomicI64::new(0));
        let frames = Arc::clone(&wal_frames);
        let thread = std::thread::Builder::new()
            .name("onboarding-checkpoint".into())
            .spawn(move || {
                while wakes.recv().is_ok() {
                    std::thread::sleep(CHECKPOINT_PAUSE);
                    while wakes.try_recv().is_ok() {}
                    // After a failed log sync the WAL may hold pages the
                    // disk lost: copying it back would spread them.
                    if log_failure.get().is_some() {
                        continue;
                    }
                    // (busy, frames in the log, frames copied)
                    match conn
                        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1))
                    {
                        Ok(log) => frames.store(log, Ordering::Relaxed),
                        Err(e) => tracing::warn!(error = %error_text(&e), "checkpoint failed"),
                    }
                }
                if let Err((_, e)) = conn.close() {
                    tracing::warn!(error = %error_text(&e), "checkpointer did not close cleanly");
                }
            })
            .map_err(|e| format!("cannot start the checkpointer thread: {e}"))?;
        Ok(Checkpointer {
            wake,
            wal_frames,
            thread,
        })
    }

    /// Called by the writer between batches: checkpoint soon, and when the
    /// log has grown long, finish a checkpoint on `writer` so that it restarts.
    pub(super) fn after_batch(&self, writer: &Connection) {
        let _ = self.wake.try_send(());
        if self.wal_frames.load(Ordering::Relaxed) < RESTART_AT_FRAMES {
            return;
        }
        // PASSIVE never waits: if the background checkpoint holds the
        // checkpoint lock right now, try again after the next batch.
        match writer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        }) {
            Ok((0, log, copied)) if log == copied => self.wal_frames.store(0, Ordering::Relaxed),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %error_text(&e), "checkpoint failed"),
        }
    }

    /// Finishes the checkpoint under way, if any, and closes its connection.
    pub(super) fn stop(self) {
        drop(self.wake);
        if self.thread.join().is_err() {
            tracing::error!("the checkpointer thread panicked");
        }
    }
}
