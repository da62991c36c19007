//! The checkpointer: a thread and connection of its own that copies the WAL
//! back into the database file, so that no commit waits for a checkpoint.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::open::connect;
use super::query::error_text;
use super::syncer::LogFailure;
use crate::config::Synchronous;

/// How long the checkpointer lets commits gather before copying them back
/// into the database file: one checkpoint (and its fsyncs) per pause rather
/// than one per commit. A checkpoint's pages reach the disk ahead of the log
/// syncs issued meanwhile, which wait behind them (a virtual disk serves one
/// request at a time): 100 ms of commits made those syncs 5-8 ms late ten
/// times a second, and the answers waiting on them the slowest 1 %.
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(50);

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
/// the writer copies what is left itself, between two batches; its next
/// transaction then rewinds the log.
///
/// No call runs while the writer copies, so that copy is kept short. SQLite
/// fsyncs the database file only at the end of a checkpoint that reached
/// the log's end, which under load only the writer's does: that fsync wrote
/// every page the background checkpoints had copied since the last restart,
/// and with the commits the writer copied after the last of them, it
/// stalled every call for 6-30 ms several times a second. So the
/// checkpointer fsyncs the database file after each of its checkpoints, and
/// once the log is long the writer first has it run one checkpoint without
/// its pause, then copies only what was committed during that one: 2-3 ms.
pub(super) struct Checkpointer {
    wake: std_mpsc::SyncSender<()>,
    shared: Arc<Shared>,
    /// Set while the log is long: the background checkpoint after which the
    /// writer copies the rest itself.
    restart_after: Option<u64>,
    thread: std::thread::JoinHandle<()>,
}

/// What the writer and the checkpointer thread tell each other.
#[derive(Default)]
struct Shared {
    /// Frames in the WAL at the last background checkpoint.
    wal_frames: AtomicI64,
    /// The writer wants the next checkpoint now, without the pause.
    hurry: AtomicBool,
    /// Background checkpoints begun, and ended (failed ones included).
    started: AtomicU64,
    ended: AtomicU64,
}

impl Checkpointer {
    pub(super) fn start(
        path: &Path,
        synchronous: Synchronous,
        busy_timeout: Duration,
        log_failure: LogFailure,
    ) -> Result<Checkpointer, String> {
        let conn = connect(path, None, synchronous, busy_timeout)?;
        // For the fsync after each checkpoint (on Linux any descriptor of
        // the file flushes every page written through the others).
        let db_file =
            File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // One pending wake-up is enough: nudges coalesce.
        let (wake, wakes) = std_mpsc::sync_channel::<()>(1);
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("onboarding-checkpoint".into())
            .spawn(move || {
                while wakes.recv().is_ok() {
                    pause(&s.hurry);
                    while wakes.try_recv().is_ok() {}
                    // After a failed log sync the WAL may hold pages the
                    // disk lost: copying it back would spread them.
                    if log_failure.get().is_some() {
                        continue;
                    }
                    s.started.fetch_add(1, Ordering::SeqCst);
                    checkpoint(&conn, &db_file, &s.wal_frames);
                    s.ended.fetch_add(1, Ordering::SeqCst);
                }
                if let Err((_, e)) = conn.close() {
                    tracing::warn!(error = %error_text(&e), "checkpointer did not close cleanly");
                }
            })
            .map_err(|e| format!("cannot start the checkpointer thread: {e}"))?;
        Ok(Checkpointer {
            wake,
            shared,
            restart_after: None,
            thread,
        })
    }

    /// Called by the writer between batches: checkpoint soon, and when the
    /// log has grown long, finish a checkpoint on `writer` so that it restarts.
    pub(super) fn after_batch(&mut self, writer: &Connection) {
        let _ = self.wake.try_send(());
        let s = &self.shared;
        if s.wal_frames.load(Ordering::SeqCst) < RESTART_AT_FRAMES {
            self.restart_after = None;
            return;
        }
        let Some(after) = self.restart_after else {
            // The next checkpoint to begin does so after this request: it
            // copies all but what is committed while it runs.
            self.restart_after = Some(s.started.load(Ordering::SeqCst) + 1);
            s.hurry.store(true, Ordering::SeqCst);
            self.thread.thread().unpark();
            return;
        };
        if s.ended.load(Ordering::SeqCst) < after {
            return;
        }
        self.restart_after = None;
        // PASSIVE never waits: if the checkpointer has begun another one,
        // or a reader still needs frames, the log stays long and the next
        // batch asks for another background checkpoint first.
        match writer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        }) {
            Ok((0, log, copied)) if log == copied => s.wal_frames.store(0, Ordering::SeqCst),
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

/// The checkpointer's pause, cut short when the writer asks it to hurry
/// (which it takes back: one checkpoint without the pause per request).
fn pause(hurry: &AtomicBool) {
    let until = Instant::now() + CHECKPOINT_PAUSE;
    while !hurry.load(Ordering::SeqCst) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::park_timeout(left);
    }
    hurry.store(false, Ordering::SeqCst);
}

/// One background checkpoint: copies what it can, then fsyncs the database
/// file so that the writer's checkpoint, which SQLite ends with an fsync of
/// it, finds few pages left to write. SQLite's own fsync is what makes a
/// checkpoint safe; this one only moves the writing off the writer thread
/// (a failure here is SQLite's too: Linux reports a write-back error to
/// every descriptor open at the time).
fn checkpoint(conn: &Connection, db_file: &File, wal_frames: &AtomicI64) {
    // (busy, frames in the log, frames copied)
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
        Ok(log) => {
            if let Err(e) = db_file.sync_data() {
                tracing::warn!(error = %e, "cannot sync the database file after a checkpoint");
            }
            wal_frames.store(log, Ordering::SeqCst);
        }
        Err(e) => tracing::warn!(error = %error_text(&e), "checkpoint failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAL database with one table, its writer connection and a
    /// checkpointer, as `open.rs` sets them up.
    fn setup(dir: &tempfile::TempDir) -> (Connection, Checkpointer) {
        let path = dir.path().join("log.db");
        let writer = connect(&path, None, Synchronous::Normal, Duration::from_secs(5)).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE pages (body BLOB NOT NULL);",
            )
            .unwrap();
        let checkpointer = Checkpointer::start(
            &path,
            Synchronous::Normal,
            Duration::from_secs(5),
            LogFailure::default(),
        )
        .unwrap();
        (writer, checkpointer)
    }

    /// One batch: `rows` rows of 3,000 bytes, about one page each.
    fn write_batch(writer: &Connection, rows: i64) {
        writer
            .execute(
                "INSERT INTO pages (body)
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
                 SELECT randomblob(3000) FROM n",
                [rows],
            )
            .unwrap();
    }

    /// Frames in the log now: a PASSIVE checkpoint's report.
    fn frames_in_log(writer: &Connection) -> i64 {
        writer
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap()
    }

    /// Waits (bounded) until the checkpointer has ended `n` checkpoints.
    fn wait_for_ended(checkpointer: &Checkpointer, n: u64) {
        for _ in 0..5_000 {
            if checkpointer.shared.ended.load(Ordering::SeqCst) >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("the checkpointer ended no checkpoint number {n} in 5 s");
    }

    /// Past the limit, the writer does not copy at once: it asks for one
    /// background checkpoint without the pause, and copies what is left
    /// (then the log restarts) only once that one has ended.
    #[test]
    fn a_long_log_is_restarted_after_one_hurried_background_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, mut checkpointer) = setup(&dir);
        write_batch(&writer, 100);
        // As if the last background checkpoint had seen a long log.
        checkpointer
            .shared
            .wal_frames
            .store(RESTART_AT_FRAMES, Ordering::SeqCst);
        let started = checkpointer.shared.started.load(Ordering::SeqCst);
        checkpointer.after_batch(&writer);
        assert_eq!(checkpointer.restart_after, Some(started + 1));
        // The checkpointer takes the request back when it begins.
        wait_for_ended(&checkpointer, started + 1);
        assert!(!checkpointer.shared.hurry.load(Ordering::SeqCst));
        // Its report (the 100-odd frames) is under the limit: nothing more
        // to do. Reported long again, the writer copies the rest itself.
        assert!(checkpointer.shared.wal_frames.load(Ordering::SeqCst) < RESTART_AT_FRAMES);
        checkpointer
            .shared
            .wal_frames
            .store(RESTART_AT_FRAMES, Ordering::SeqCst);
        checkpointer.after_batch(&writer);
        assert_eq!(checkpointer.restart_after, None);
        assert_eq!(checkpointer.shared.wal_frames.load(Ordering::SeqCst), 0);
        // The next transaction rewinds the log: it holds that one's frames.
        write_batch(&writer, 1);
        assert!(frames_in_log(&writer) < 10, "the log did not restart");
        checkpointer.stop();
    }

    /// Under writes that never pause, the log still restarts, and the WAL
    /// file stays near the limit's size.
    #[test]
    fn under_steady_writes_the_log_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, mut checkpointer) = setup(&dir);
        let mut longest = 0;
        let mut restarted = false;
        for _ in 0..3_000 {
            write_batch(&writer, 50);
            checkpointer.after_batch(&writer);
            let reported = checkpointer.shared.wal_frames.load(Ordering::SeqCst);
            if reported == 0 && longest >= RESTART_AT_FRAMES {
                restarted = true;
                break;
            }
            longest = longest.max(reported);
        }
        assert!(
            restarted,
            "no restart; the longest log seen had {longest} frames"
        );
        write_batch(&writer, 1);
        assert!(frames_in_log(&writer) < 60, "the log did not restart");
        let wal = std::fs::metadata(dir.path().join("log.db-wal"))
            .unwrap()
            .len();
        assert!(
            wal < 3 * RESTART_AT_FRAMES as u64 * 4_120,
            "the WAL file grew to {wal} bytes"
        );
        checkpointer.stop();
    }
}
