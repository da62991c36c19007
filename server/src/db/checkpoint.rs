//! The checkpointer: a thread and connection of its own that copies the WAL
//! back into the database file, so that no commit waits for a checkpoint.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use rusqlite::{ffi, Connection};

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
/// its pause, then copies only what was committed during that one (2-3 ms
/// at the benchmark's 25,000 calls a second).
pub(super) struct Checkpointer {
    wake: std_mpsc::SyncSender<()>,
    shared: Arc<Shared>,
    /// Set while the log is long: the background checkpoint after which the
    /// writer copies the rest itself.
    restart_after: Option<u64>,
    thread: std::thread::JoinHandle<()>,
    /// The thread ended before [`Checkpointer::stop`] (it panicked): the
    /// writer's SQLite checkpoints by itself from then on.
    fell_back: bool,
}

/// The writer's own checkpoints once the thread is gone: SQLite's default,
/// a checkpoint by the commit that takes the log past 1,000 pages.
const FALLBACK_AUTOCHECKPOINT_PAGES: i64 = 1000;

/// What the writer and the checkpointer thread tell each other.
#[derive(Default)]
struct Shared {
    /// Frames in the WAL at the last background checkpoint.
    wal_frames: AtomicI64,
    /// The writer wants the next checkpoint now, without the pause.
    hurry: AtomicBool,
    /// The server is closing: no more checkpoints.
    stopping: AtomicBool,
    /// Background checkpoints begun, and ended (failed ones included).
    started: AtomicU64,
    ended: AtomicU64,
}

/// What makes the database file durable after a checkpoint (tests inject
/// counting or failing ones).
type SyncDatabase = Box<dyn FnMut(&Connection) -> io::Result<()> + Send>;

impl Checkpointer {
    pub(super) fn start(
        path: &Path,
        synchronous: Synchronous,
        busy_timeout: Duration,
        log_failure: LogFailure,
    ) -> Result<Checkpointer, String> {
        let conn = connect(path, None, synchronous, busy_timeout)?;
        Checkpointer::start_with(
            conn,
            CHECKPOINT_PAUSE,
            Box::new(sync_database_file),
            log_failure,
        )
    }

    fn start_with(
        conn: Connection,
        pause: Duration,
        mut sync_database: SyncDatabase,
        log_failure: LogFailure,
    ) -> Result<Checkpointer, String> {
        // One pending wake-up is enough: nudges coalesce.
        let (wake, wakes) = std_mpsc::sync_channel::<()>(1);
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("onboarding-checkpoint".into())
            .spawn(move || {
                // The last checkpoint's (frames in the log, frames copied).
                let mut last = (0, 0);
                while wakes.recv().is_ok() {
                    if !wait(&s, pause) {
                        break;
                    }
                    while wakes.try_recv().is_ok() {}
                    // After a failed sync the WAL may hold the only good
                    // copy of pages the disk lost: copying it back would
                    // spread the loss.
                    if log_failure.get().is_some() {
                        continue;
                    }
                    // A request made from here on is met by this checkpoint.
                    s.hurry.store(false, Ordering::SeqCst);
                    s.started.fetch_add(1, Ordering::SeqCst);
                    checkpoint(
                        &conn,
                        &mut sync_database,
                        &mut last,
                        &s.wal_frames,
                        &log_failure,
                    );
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
            fell_back: false,
        })
    }

    /// Called by the writer between batches: checkpoint soon, and when the
    /// log has grown long, finish a checkpoint on `writer` so that it restarts.
    pub(super) fn after_batch(&mut self, writer: &Connection) {
        if self.thread.is_finished() {
            // Its last report would stand for good: a log reported short
            // would grow without end, none copying it back.
            // (The writer's connection syncs the log before each of its
            // checkpoints, and after a failed sync it commits nothing.)
            if !self.fell_back {
                self.fell_back = true;
                match writer.pragma_update(
                    None,
                    "wal_autocheckpoint",
                    FALLBACK_AUTOCHECKPOINT_PAGES,
                ) {
                    Ok(()) => tracing::error!(
                        "the checkpointer thread has stopped; the writer checkpoints the log \
                         itself from now on (commits wait for those checkpoints)"
                    ),
                    Err(e) => tracing::error!(
                        error = %error_text(&e),
                        "the checkpointer thread has stopped and the writer cannot checkpoint \
                         in its place: the log grows until the server restarts"
                    ),
                }
            }
            return;
        }
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
        // PASSIVE never waits. If the checkpointer has begun another one,
        // or a reader's snapshot still needs frames, the writer tries again
        // after the next background checkpoint, paused as usual: a reader
        // may keep its snapshot a while.
        self.restart_after = Some(s.started.load(Ordering::SeqCst) + 1);
        match passive_checkpoint(writer) {
            Ok((0, log, copied)) if log == copied => {
                s.wal_frames.store(0, Ordering::SeqCst);
                self.restart_after = None;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %error_text(&e), "checkpoint failed"),
        }
    }

    /// Stops the checkpointer: a checkpoint under way ends, no other begins
    /// (the writer's closing checkpoint follows), and its connection closes.
    pub(super) fn stop(self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.thread.thread().unpark();
        drop(self.wake);
        if self.thread.join().is_err() {
            tracing::error!("the checkpointer thread panicked");
        }
    }
}

/// The checkpointer's pause, cut short when the writer asks it to hurry;
/// false when the server is closing.
fn wait(s: &Shared, pause: Duration) -> bool {
    let until = Instant::now() + pause;
    loop {
        if s.stopping.load(Ordering::SeqCst) {
            return false;
        }
        if s.hurry.load(Ordering::SeqCst) {
            return true;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::park_timeout(left);
    }
}

/// One background checkpoint: copies what it can, then fsyncs the database
/// file so that the writer's checkpoint, which SQLite ends with an fsync of
/// it, finds few pages left to write. SQLite's own fsync is what makes a
/// checkpoint safe; this one moves the writing off the writer thread. Its
/// failure is final, as a failed log sync is: a later fsync may succeed
/// although the pages are lost (Linux reports a write-back error once), and
/// SQLite would then restart the log over their only good copy.
fn checkpoint(
    conn: &Connection,
    sync_database: &mut SyncDatabase,
    last: &mut (i64, i64),
    wal_frames: &AtomicI64,
    log_failure: &LogFailure,
) {
    // Busy: another checkpoint (the writer's, or another process's) holds
    // the lock. The same two counts as the last time: nothing was copied
    // since, and there is nothing to sync.
    match passive_checkpoint(conn) {
        Ok((0, log, copied)) => {
            if copied > 0 && (log, copied) != *last {
                if let Err(e) = sync_database(conn) {
                    let text = format!(
                        "cannot sync the database file to disk after a checkpoint ({e}): \
                         copied pages may be lost, and the server refuses every call until \
                         it restarts"
                    );
                    tracing::error!(error = %text, "database sync failed");
                    log_failure.get_or_init(|| text);
                }
            }
            *last = (log, copied);
            wal_frames.store(log, Ordering::SeqCst);
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %error_text(&e), "checkpoint failed"),
    }
}

/// A checkpoint that never waits: (busy, frames in the log, frames copied
/// back so far, by any checkpoint).
fn passive_checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
}

/// fsyncs the database file through SQLite's own descriptor of it. A
/// descriptor of our own would, once closed, drop every POSIX lock this
/// process holds on the file, those of SQLite's connections included.
fn sync_database_file(conn: &Connection) -> io::Result<()> {
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: the handle is this thread's open connection; FILE_POINTER
    // writes the main database's `sqlite3_file` (owned by the connection,
    // valid while it is open) into `file`.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            std::ptr::from_mut(&mut file).cast(),
        )
    };
    if rc != ffi::SQLITE_OK || file.is_null() {
        return Err(io::Error::other(format!(
            "SQLite gave no database file (code {rc})"
        )));
    }
    // SAFETY: an open file has its VFS's methods; xSync only fsyncs the
    // descriptor and takes no lock, and no other thread uses this
    // connection.
    let rc = unsafe {
        match (*file).pMethods.as_ref().and_then(|m| m.xSync) {
            Some(x_sync) => x_sync(file, ffi::SQLITE_SYNC_NORMAL),
            None => ffi::SQLITE_MISUSE,
        }
    };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "SQLite's fsync failed (code {rc})"
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Longer than any wait of these tests: a checkpoint that begins within
    /// them was asked to hurry.
    const LONG_PAUSE: Duration = Duration::from_secs(30);

    /// A WAL database with one table and its writer connection, as
    /// `open.rs` sets them up.
    fn setup(dir: &tempfile::TempDir) -> (Connection, std::path::PathBuf) {
        let path = dir.path().join("log.db");
        let writer = connect(&path, None, Synchronous::Normal, Duration::from_secs(5)).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE pages (body BLOB NOT NULL);",
            )
            .unwrap();
        (writer, path)
    }

    /// A checkpointer whose database syncs are counted and answered by
    /// `outcome`.
    fn counted(
        path: &Path,
        pause: Duration,
        outcome: fn() -> io::Result<()>,
        log_failure: LogFailure,
    ) -> (Checkpointer, Arc<AtomicUsize>) {
        let syncs = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&syncs);
        let conn = connect(path, None, Synchronous::Normal, Duration::from_secs(5)).unwrap();
        let sync: SyncDatabase = Box::new(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            outcome()
        });
        let checkpointer = Checkpointer::start_with(conn, pause, sync, log_failure).unwrap();
        (checkpointer, syncs)
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

    /// Frames in the log now, from a PASSIVE checkpoint that was not busy.
    fn frames_in_log(writer: &Connection) -> i64 {
        let (busy, log, _) = passive_checkpoint(writer).unwrap();
        assert_eq!((busy, log >= 0), (0, true), "log {log}");
        log
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

    /// As if the last background checkpoint had seen a long log.
    fn report_long_log(checkpointer: &Checkpointer) {
        checkpointer
            .shared
            .wal_frames
            .store(RESTART_AT_FRAMES, Ordering::SeqCst);
    }

    /// Past the limit, the writer does not copy at once: it asks for one
    /// background checkpoint without the pause, which syncs the database
    /// file, and copies what is left (then the log restarts) only once that
    /// one has ended.
    #[test]
    fn a_long_log_is_restarted_after_one_hurried_background_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = setup(&dir);
        let (mut checkpointer, syncs) =
            counted(&path, LONG_PAUSE, || Ok(()), LogFailure::default());
        write_batch(&writer, 100);
        report_long_log(&checkpointer);
        checkpointer.after_batch(&writer);
        assert_eq!(checkpointer.restart_after, Some(1));
        // The 30 s pause cut short.
        wait_for_ended(&checkpointer, 1);
        assert_eq!(syncs.load(Ordering::SeqCst), 1);
        assert!(!checkpointer.shared.hurry.load(Ordering::SeqCst));
        // Its report (the 100-odd frames it copied) is under the limit.
        let reported = checkpointer.shared.wal_frames.load(Ordering::SeqCst);
        assert!((100..RESTART_AT_FRAMES).contains(&reported), "{reported}");
        // Reported long again: the writer copies the rest itself.
        write_batch(&writer, 5);
        report_long_log(&checkpointer);
        checkpointer.after_batch(&writer);
        assert_eq!(checkpointer.restart_after, None);
        assert_eq!(checkpointer.shared.wal_frames.load(Ordering::SeqCst), 0);
        // The next transaction rewinds the log: it holds that one's frames.
        write_batch(&writer, 1);
        assert!(frames_in_log(&writer) < 10, "the log did not restart");
        // Stopping cuts the pause short too, and begins no checkpoint.
        let started = checkpointer.shared.started.load(Ordering::SeqCst);
        let shared = Arc::clone(&checkpointer.shared);
        checkpointer.stop();
        assert_eq!(shared.started.load(Ordering::SeqCst), started);
    }

    /// A writer's copy cut short by a reader's snapshot leaves the log long:
    /// the writer tries again after the next background checkpoint, which
    /// keeps its pause (a reader may hold its snapshot a while).
    #[test]
    fn a_copy_cut_short_by_a_reader_is_tried_again_after_a_paused_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = setup(&dir);
        let (mut checkpointer, _) = counted(&path, LONG_PAUSE, || Ok(()), LogFailure::default());
        write_batch(&writer, 100);
        report_long_log(&checkpointer);
        checkpointer.after_batch(&writer);
        wait_for_ended(&checkpointer, 1);
        // A reader's snapshot, then frames it does not see.
        let reader = connect(&path, None, Synchronous::Normal, Duration::from_secs(5)).unwrap();
        reader
            .execute_batch("BEGIN; SELECT count(*) FROM pages;")
            .unwrap();
        write_batch(&writer, 5);
        report_long_log(&checkpointer);
        checkpointer.after_batch(&writer);
        assert_eq!(checkpointer.restart_after, Some(2));
        assert_eq!(
            checkpointer.shared.wal_frames.load(Ordering::SeqCst),
            RESTART_AT_FRAMES
        );
        assert!(!checkpointer.shared.hurry.load(Ordering::SeqCst));
        reader.execute_batch("COMMIT").unwrap();
        checkpointer.stop();
    }

    /// A database file that cannot be synced is a failure for good, as a
    /// failed log sync is (the writer then refuses every call, and neither
    /// it nor the checkpointer copies the log back): the WAL may hold the
    /// only good copy of the pages.
    #[test]
    fn a_failed_database_sync_is_final() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = setup(&dir);
        let log_failure = LogFailure::default();
        let (mut checkpointer, syncs) = counted(
            &path,
            LONG_PAUSE,
            || Err(io::Error::other("Input/output error")),
            Arc::clone(&log_failure),
        );
        write_batch(&writer, 100);
        report_long_log(&checkpointer);
        checkpointer.after_batch(&writer);
        wait_for_ended(&checkpointer, 1);
        assert_eq!(syncs.load(Ordering::SeqCst), 1);
        assert_eq!(
            log_failure.get().map(String::as_str),
            Some(
                "cannot sync the database file to disk after a checkpoint (Input/output \
                 error): copied pages may be lost, and the server refuses every call until it \
                 restarts"
            )
        );
        checkpointer.stop();
    }

    /// A checkpointer thread that dies (a panic) leaves its last report
    /// standing: the writer's SQLite then checkpoints by itself, and the
    /// log stays short under writes that never pause.
    #[test]
    fn when_the_thread_dies_the_writer_checkpoints_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = setup(&dir);
        let (mut checkpointer, syncs) = counted(
            &path,
            Duration::from_millis(1),
            || panic!("the checkpointer's fault"),
            LogFailure::default(),
        );
        write_batch(&writer, 100);
        checkpointer.after_batch(&writer);
        for _ in 0..5_000 {
            if checkpointer.thread.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(checkpointer.thread.is_finished(), "the thread did not die");
        assert_eq!(syncs.load(Ordering::SeqCst), 1);
        let autocheckpoint = |w: &Connection| -> i64 {
            w.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(autocheckpoint(&writer), 0);
        checkpointer.after_batch(&writer);
        assert_eq!(autocheckpoint(&writer), FALLBACK_AUTOCHECKPOINT_PAGES);
        // 3,000 pages more: without checkpoints the log would hold them all.
        for _ in 0..30 {
            write_batch(&writer, 100);
            checkpointer.after_batch(&writer);
        }
        let log = frames_in_log(&writer);
        assert!(log <= FALLBACK_AUTOCHECKPOINT_PAGES + 200, "{log} frames");
        checkpointer.stop();
    }

    /// Under writes that never pause, with the real pause and sync, the log
    /// still restarts.
    #[test]
    fn under_steady_writes_the_log_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = setup(&dir);
        let mut checkpointer = Checkpointer::start(
            &path,
            Synchronous::Normal,
            Duration::from_secs(5),
            LogFailure::default(),
        )
        .unwrap();
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
        checkpointer.stop();
    }
}
