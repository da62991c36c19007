//! The log syncer: how `--synchronous full` keeps its promise (an answered
//! write survives power loss) without the writer waiting for the disk.
//!
//! SQLite's `synchronous=FULL` fsyncs the WAL inside every COMMIT, on the
//! writer thread: while the disk works, no call runs. Instead the writer's
//! connection commits with `synchronous=NORMAL` (frames written, not yet
//! synced) and goes straight on with the next batch, and the committed
//! batch's answers come here. This thread syncs the WAL once for every batch
//! queued since its last sync, then answers them, in commit order.
//!
//! Why that is as safe as FULL for every answer given: the WAL is appended
//! in order and each frame's checksum chains to the one before, so after a
//! power loss SQLite recovers a prefix of the log. A sync covers every frame
//! written before it (`fdatasync` flushes the file, whichever descriptor
//! wrote it), so once it returns, each batch it covers and all those before
//! it are in that prefix. A batch that reads what an earlier one wrote is
//! answered after it, never before. SQLite keeps its own syncs at
//! checkpoints: a checkpoint syncs the WAL before it copies frames back into
//! the database file, and the log restarts only after that. (This holds with
//! SQLite's default `SQLITE_POWERSAFE_OVERWRITE=1`, under which FULL does
//! not pad commits either.)
//!
//! A sync that fails leaves the disk's state unknown, and Linux reports a
//! write-back error once: the next sync may return success although the
//! failed pages are lost, and every frame after them with them. So the
//! first failure is final: that group and every later one are answered with
//! it, no sync is tried again, no checkpoint copies the log back (see
//! [`LogFailure`]) and the server must be restarted, after which SQLite
//! recovers the log from what the disk really holds.

use std::fs::OpenOptions;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, OnceLock};

use super::query::{answer, Answer, Failure};

/// A group of answers for the syncer, and the writer's batch they close
/// (0 for the reader's).
type Group = (Vec<Answer>, u64);

/// What the reader needs so that no read shows a write before it is on
/// disk (`--synchronous full`): the writer counts its batches, the syncer
/// says up to which one the log is synced, and a read that may have seen a
/// later commit is answered through the syncer, after its next sync.
#[derive(Clone, Default)]
pub(super) struct Durability(Arc<Marks>);

#[derive(Default)]
struct Marks {
    /// Batches the writer began, counted before each writes anything.
    began: AtomicU64,
    /// The last batch a successful sync covered.
    synced: AtomicU64,
    /// The syncer's queue while it runs (taken back when it stops: a
    /// sender left here would keep its thread waiting forever).
    queue: Mutex<Option<std_mpsc::Sender<Group>>>,
}

impl Durability {
    /// The writer is about to run a batch that may commit.
    pub(super) fn begin_batch(&self) {
        self.0.began.fetch_add(1, Ordering::SeqCst);
    }

    /// The batches begun so far: read after a read transaction, every
    /// commit it could see is among them (a commit is visible only once its
    /// frames are written, after its batch began).
    pub(super) fn began(&self) -> u64 {
        self.0.began.load(Ordering::SeqCst)
    }

    /// Answers reads made when `began` batches had begun: at once when the
    /// log is synced past them, else after the syncer's next sync, which
    /// covers every frame written before it (so every commit the reads
    /// saw), or with the sync's failure.
    pub(super) fn deliver_reads(&self, answers: Vec<Answer>, began: u64, failure: &LogFailure) {
        if self.0.synced.load(Ordering::SeqCst) >= began {
            answer(answers);
            return;
        }
        let sent = match &*self.0.queue.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(queue) => queue.send((answers, 0)).map_err(|e| e.0 .0),
            None => Err(answers),
        };
        if let Err(answers) = sent {
            syncer_stopped(answers, failure);
        }
    }
}

/// Answers `answers` when the syncer is gone (a bug: its thread died):
/// nothing can make them durable now, so they fail, and so does every
/// later call.
fn syncer_stopped(answers: Vec<Answer>, failure: &LogFailure) {
    let text =
        failure.get_or_init(|| "the log syncer has stopped; the write may be lost".to_string());
    answer(
        answers
            .into_iter()
            .map(|(reply, _)| (reply, Err(Failure::Sql(text.clone()))))
            .collect(),
    );
}

/// The first failed sync's error, shared by the writer (which then refuses
/// every call), the checkpointer and the close (which then leave the WAL as
/// it is on disk, for SQLite's recovery at the next start).
pub(super) type LogFailure = Arc<OnceLock<String>>;

/// What makes the log durable: an fdatasync of the WAL file (tests inject
/// failing ones).
pub(super) type SyncLog = Box<dyn FnMut() -> io::Result<()> + Send>;

pub(super) struct Syncer {
    queue: std_mpsc::Sender<Group>,
    failure: LogFailure,
    durability: Durability,
    thread: std::thread::JoinHandle<()>,
}

impl Syncer {
    /// A syncer of the WAL of the database at `db_path`, opened now: the
    /// writer's connection has created it. SQLite never unlinks it while a
    /// connection to the database is open (it truncates it in place), so the
    /// handle stays the file's, and it sees every write-back error from now.
    pub(super) fn start(
        db_path: &Path,
        failure: LogFailure,
        durability: Durability,
    ) -> Result<Syncer, String> {
        let mut wal = db_path.as_os_str().to_owned();
        wal.push("-wal");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&wal)
            .map_err(|e| {
                format!(
                    "cannot open the database log {}: {e}",
                    Path::new(&wal).display()
                )
            })?;
        Syncer::start_with(Box::new(move || file.sync_data()), failure, durability)
            .map_err(|e| format!("cannot start the log syncer thread: {e}"))
    }

    pub(super) fn start_with(
        mut sync: SyncLog,
        failure: LogFailure,
        durability: Durability,
    ) -> io::Result<Syncer> {
        let (queue, batches) = std_mpsc::channel::<Group>();
        let failed = Arc::clone(&failure);
        let marks = durability.clone();
        let thread = std::thread::Builder::new()
            .name("onboarding-syncer".into())
            .spawn(move || {
                while let Ok(first) = batches.recv() {
                    // Every batch committed meanwhile shares this sync.
                    let group: Vec<Group> =
                        std::iter::once(first).chain(batches.try_iter()).collect();
                    let last = group.iter().map(|(_, batch)| *batch).max().unwrap_or(0);
                    let verdict = match failed.get() {
                        Some(text) => Some(text.clone()),
                        None => sync().err().map(|e| {
                            let text = format!(
                                "cannot sync the database log to disk ({e}): the write may be \
                                 lost, and the server refuses every call until it restarts"
                            );
                            tracing::error!(error = %text, "log sync failed");
                            failed.get_or_init(|| text).clone()
                        }),
                    };
                    if verdict.is_none() {
                        marks.0.synced.fetch_max(last, Ordering::SeqCst);
                    }
                    let answers = group.into_iter().flat_map(|(answers, _)| answers);
                    answer(match &verdict {
                        None => answers.collect(),
                        Some(text) => answers
                            .map(|(reply, _)| (reply, Err(Failure::Sql(text.clone()))))
                            .collect(),
                    });
                }
            })?;
        *durability.0.queue.lock().unwrap_or_else(|e| e.into_inner()) = Some(queue.clone());
        Ok(Syncer {
            queue,
            failure,
            durability,
            thread,
        })
    }

    /// Answers the batch just run (the last one begun) once the log holding
    /// it is on disk.
    pub(super) fn deliver(&self, answers: Vec<Answer>) {
        let batch = self.durability.began();
        if let Err(std_mpsc::SendError((answers, _))) = self.queue.send((answers, batch)) {
            syncer_stopped(answers, &self.failure);
        }
    }

    /// Syncs and answers what is queued, then ends the thread (the reader
    /// has closed: nothing else sends).
    pub(super) fn stop(self) {
        self.durability
            .0
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(self.queue);
        if self.thread.join().is_err() {
            tracing::error!("the log syncer thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::query::Outcome;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::sync::oneshot;

    fn batch(texts: &[&str]) -> (Vec<Answer>, Vec<oneshot::Receiver<Outcome>>) {
        texts
            .iter()
            .map(|t| {
                let (tx, rx) = oneshot::channel();
                ((tx, Ok(t.to_string())), rx)
            })
            .unzip()
    }

    fn ok(text: &str) -> Outcome {
        Ok(text.to_string())
    }

    /// A sync that waits for the test's go, and counts how many ran.
    fn gated() -> (SyncLog, std_mpsc::Sender<()>, Arc<AtomicUsize>) {
        let (go, gate) = std_mpsc::channel::<()>();
        let syncs = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&syncs);
        let sync: SyncLog = Box::new(move || {
            gate.recv().unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
        (sync, go, syncs)
    }

    /// Waits (bounded) until the syncer is inside its first sync.
    fn wait_until_inside(started: &Mutex<bool>) {
        for _ in 0..500 {
            if *started.lock().unwrap() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("the sync never started");
    }

    /// A batch committed while a sync runs is not covered by it: it waits
    /// for the next one. Answers leave in commit order.
    #[test]
    fn a_batch_waits_for_a_sync_that_started_after_its_commit() {
        let (mut inner, go, syncs) = gated();
        let started = Arc::new(Mutex::new(false));
        let flag = Arc::clone(&started);
        let sync: SyncLog = Box::new(move || {
            *flag.lock().unwrap() = true;
            inner()
        });
        let syncer =
            Syncer::start_with(sync, LogFailure::default(), Durability::default()).unwrap();
        let (first, first_rx) = batch(&["a", "b"]);
        syncer.deliver(first);
        wait_until_inside(&started);
        let (second, mut second_rx) = batch(&["c"]);
        syncer.deliver(second);

        go.send(()).unwrap();
        let got: Vec<Outcome> = first_rx
            .into_iter()
            .map(|rx| rx.blocking_recv().unwrap())
            .collect();
        assert_eq!(got, vec![ok("a"), ok("b")]);
        assert_eq!(syncs.load(Ordering::SeqCst), 1);
        // The second batch's sync has not been let go: no answer yet.
        assert_eq!(
            second_rx[0].try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        );
        go.send(()).unwrap();
        assert_eq!(second_rx.remove(0).blocking_recv().unwrap(), ok("c"));
        assert_eq!(syncs.load(Ordering::SeqCst), 2);
        syncer.stop();
    }

    /// A read that may have seen a commit not yet synced is answered after
    /// a sync that started after it; one made once the log is synced past
    /// every batch begun is answered at once.
    #[test]
    fn a_read_waits_for_the_sync_of_what_it_may_have_seen() {
        let (sync, go, syncs) = gated();
        let durability = Durability::default();
        let failure = LogFailure::default();
        let syncer = Syncer::start_with(sync, Arc::clone(&failure), durability.clone()).unwrap();
        durability.begin_batch();
        let (write, write_rx) = batch(&["write"]);
        syncer.deliver(write);
        let (read, mut read_rx) = batch(&["read"]);
        durability.deliver_reads(read, durability.began(), &failure);
        assert_eq!(
            read_rx[0].try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        );
        go.send(()).unwrap();
        go.send(()).unwrap();
        assert_eq!(
            write_rx
                .into_iter()
                .next()
                .unwrap()
                .blocking_recv()
                .unwrap(),
            ok("write")
        );
        assert_eq!(read_rx.remove(0).blocking_recv().unwrap(), ok("read"));
        let (later, mut later_rx) = batch(&["later"]);
        durability.deliver_reads(later, durability.began(), &failure);
        assert_eq!(later_rx[0].try_recv(), Ok(ok("later")));
        syncer.stop();
        assert!((1..=2).contains(&syncs.load(Ordering::SeqCst)));
    }

    /// A read that must wait for a sync when no syncer runs (it stopped,
    /// or its thread died) fails as the writes would, never answers data
    /// that may be lost.
    #[test]
    fn a_read_waiting_for_a_stopped_syncer_fails() {
        let durability = Durability::default();
        let failure = LogFailure::default();
        durability.begin_batch();
        let (read, mut read_rx) = batch(&["read"]);
        durability.deliver_reads(read, durability.began(), &failure);
        let text = "the log syncer has stopped; the write may be lost";
        assert_eq!(
            read_rx.remove(0).try_recv(),
            Ok(Err(Failure::Sql(text.to_string())))
        );
        assert_eq!(failure.get().map(String::as_str), Some(text));
    }

    /// Batches queued while a sync runs share the next one.
    #[test]
    fn batches_queued_during_a_sync_share_the_next_one() {
        let (sync, go, syncs) = gated();
        let syncer =
            Syncer::start_with(sync, LogFailure::default(), Durability::default()).unwrap();
        let (first, first_rx) = batch(&["a"]);
        syncer.deliver(first);
        let (second, second_rx) = batch(&["b"]);
        let (third, third_rx) = batch(&["c"]);
        syncer.deliver(second);
        syncer.deliver(third);
        go.send(()).unwrap();
        go.send(()).unwrap();
        for (rx, want) in [first_rx, second_rx, third_rx]
            .into_iter()
            .zip(["a", "b", "c"])
        {
            assert_eq!(
                rx.into_iter().next().unwrap().blocking_recv().unwrap(),
                ok(want)
            );
        }
        syncer.stop();
        // One sync for the first batch, at most one for the two others.
        assert!(syncs.load(Ordering::SeqCst) <= 2);
    }

    /// The first failure is final: a later sync that reports success is
    /// not believed (Linux reports a write-back error once), and no sync is
    /// even tried again.
    #[test]
    fn after_a_failed_sync_every_later_batch_fails_without_a_sync() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        let sync: SyncLog = Box::new(move || match counted.fetch_add(1, Ordering::SeqCst) {
            0 => Err(io::Error::from_raw_os_error(5)), // EIO
            _ => Ok(()),
        });
        let failure = LogFailure::default();
        let syncer = Syncer::start_with(sync, Arc::clone(&failure), Durability::default()).unwrap();
        let text = "cannot sync the database log to disk (Input/output error (os error 5)): \
                    the write may be lost, and the server refuses every call until it restarts";
        for round in ["first", "second"] {
            let (answers, rx) = batch(&[round]);
            syncer.deliver(answers);
            assert_eq!(
                rx.into_iter().next().unwrap().blocking_recv().unwrap(),
                Err(Failure::Sql(text.to_string())),
                "{round} batch"
            );
        }
        assert_eq!(failure.get().map(String::as_str), Some(text));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        syncer.stop();
    }

    /// The real sync: the log file of a WAL database.
    #[test]
    fn the_wal_of_a_database_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        assert_eq!(
            Syncer::start(&path, LogFailure::default(), Durability::default()).err(),
            Some(format!(
                "cannot open the database log {}-wal: No such file or directory (os error 2)",
                path.display()
            ))
        );
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);",
        )
        .unwrap();
        let failure = LogFailure::default();
        let syncer = Syncer::start(&path, Arc::clone(&failure), Durability::default()).unwrap();
        let (answers, rx) = batch(&["after"]);
        syncer.deliver(answers);
        assert_eq!(
            rx.into_iter().next().unwrap().blocking_recv().unwrap(),
            ok("after")
        );
        assert_eq!(failure.get(), None);
        syncer.stop();
    }
}
