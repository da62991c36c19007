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
//! written before it, so once it returns, each batch it covers and all those
//! before it are in that prefix. A batch that reads what an earlier one wrote
//! is answered after it, never before. SQLite keeps its own syncs at
//! checkpoints: a checkpoint syncs the WAL before it copies frames back into
//! the database file.
//!
//! A sync that fails leaves the disk's state unknown (and Linux may report
//! the next sync as clean even though the failed pages are lost), so the
//! syncer fails that group's answers and every later batch until the server
//! restarts and SQLite recovers the log from what the disk really holds.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};

use super::query::{Answer, Failure};

/// What makes the log durable: an fdatasync of the WAL file (tests inject
/// a failing one).
type SyncLog = Box<dyn FnMut() -> io::Result<()> + Send>;

pub(super) struct Syncer {
    queue: std_mpsc::Sender<Vec<Answer>>,
    /// The first failed sync's error: every later batch is refused with it.
    failed: Arc<Mutex<Option<String>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Syncer {
    /// A syncer of the WAL of the database at `db_path`.
    pub(super) fn start(db_path: &Path) -> Result<Syncer, String> {
        let mut wal = db_path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        // Opened at the first sync: the log file exists once a commit made
        // it. SQLite never unlinks it while a connection to the database is
        // open (it truncates it in place), so the handle stays the file's.
        let mut file: Option<std::fs::File> = None;
        Syncer::start_with(Box::new(move || {
            let handle = match &file {
                Some(handle) => handle,
                None => file.insert(OpenOptions::new().read(true).write(true).open(&wal)?),
            };
            handle.sync_data()
        }))
        .map_err(|e| format!("cannot start the log syncer thread: {e}"))
    }

    fn start_with(mut sync: SyncLog) -> io::Result<Syncer> {
        let (queue, batches) = std_mpsc::channel::<Vec<Answer>>();
        let failed = Arc::new(Mutex::new(None));
        let failure = Arc::clone(&failed);
        let thread = std::thread::Builder::new()
            .name("onboarding-syncer".into())
            .spawn(move || {
                while let Ok(first) = batches.recv() {
                    // Every batch committed meanwhile shares this sync.
                    let group: Vec<Vec<Answer>> =
                        std::iter::once(first).chain(batches.try_iter()).collect();
                    let verdict = match sync() {
                        Ok(()) => None,
                        Err(e) => {
                            let text = format!(
                                "cannot sync the database log to disk ({e}): the write may be \
                                 lost, and the server refuses every call until it restarts"
                            );
                            tracing::error!(error = %text, "log sync failed");
                            *lock(&failure) = Some(text.clone());
                            Some(text)
                        }
                    };
                    for (reply, outcome) in group.into_iter().flatten() {
                        let answer = match &verdict {
                            None => outcome,
                            Some(text) => Err(Failure::Sql(text.clone())),
                        };
                        // A client that left: its write stands.
                        let _ = reply.send(answer);
                    }
                }
            })?;
        Ok(Syncer {
            queue,
            failed,
            thread,
        })
    }

    /// Answers a committed batch once the log holding it is on disk.
    pub(super) fn deliver(&self, answers: Vec<Answer>) {
        if let Err(std_mpsc::SendError(answers)) = self.queue.send(answers) {
            // The thread died (it cannot panic short of a bug): answer
            // nothing rather than something not known to be on disk.
            for (reply, _) in answers {
                let _ = reply.send(Err(Failure::Sql(
                    "the log syncer has stopped; the write may be lost".to_string(),
                )));
            }
        }
    }

    /// Why calls are refused, after a failed sync.
    pub(super) fn failure(&self) -> Option<String> {
        lock(&self.failed).clone()
    }

    /// Syncs and answers what is queued, then ends the thread.
    pub(super) fn stop(self) {
        drop(self.queue);
        if self.thread.join().is_err() {
            tracing::error!("the log syncer thread panicked");
        }
    }
}

fn lock(failed: &Mutex<Option<String>>) -> std::sync::MutexGuard<'_, Option<String>> {
    failed
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::query::Outcome;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::oneshot;

    fn answers(texts: &[&str]) -> (Vec<Answer>, Vec<oneshot::Receiver<Outcome>>) {
        texts
            .iter()
            .map(|t| {
                let (tx, rx) = oneshot::channel();
                ((tx, Ok(t.to_string())), rx)
            })
            .unzip()
    }

    /// No answer leaves before a sync that follows its commit has returned.
    #[test]
    fn answers_wait_for_the_sync_and_keep_their_order() {
        let syncs = Arc::new(AtomicUsize::new(0));
        let (gate_tx, gate) = std_mpsc::channel::<()>();
        let counted = Arc::clone(&syncs);
        let syncer = Syncer::start_with(Box::new(move || {
            gate.recv().unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }))
        .unwrap();
        let (first, mut first_rx) = answers(&["a", "b"]);
        syncer.deliver(first);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(first_rx[0].try_recv().is_err(), "answered before the sync");
        gate_tx.send(()).unwrap();
        let got: Vec<Outcome> = first_rx
            .into_iter()
            .map(|rx| rx.blocking_recv().unwrap())
            .collect();
        assert_eq!(got, vec![Ok("a".to_string()), Ok("b".to_string())]);
        assert_eq!(syncs.load(Ordering::SeqCst), 1);

        let (second, second_rx) = answers(&["c"]);
        syncer.deliver(second);
        gate_tx.send(()).unwrap();
        assert_eq!(
            second_rx
                .into_iter()
                .next()
                .unwrap()
                .blocking_recv()
                .unwrap(),
            Ok("c".to_string())
        );
        syncer.stop();
        assert_eq!(syncs.load(Ordering::SeqCst), 2);
    }

    /// A failed sync fails its group's answers, then every later batch.
    #[test]
    fn a_failed_sync_fails_its_answers_and_stays_failed() {
        let syncer = Syncer::start_with(Box::new(|| {
            Err(io::Error::from_raw_os_error(5)) // EIO
        }))
        .unwrap();
        assert_eq!(syncer.failure(), None);
        let (batch, rx) = answers(&["a"]);
        syncer.deliver(batch);
        let text = "cannot sync the database log to disk (Input/output error (os error 5)): \
                    the write may be lost, and the server refuses every call until it restarts";
        assert_eq!(
            rx.into_iter().next().unwrap().blocking_recv().unwrap(),
            Err(Failure::Sql(text.to_string()))
        );
        assert_eq!(syncer.failure(), Some(text.to_string()));
        syncer.stop();
    }

    /// The real sync: the log file of a database, opened at the first sync.
    #[test]
    fn the_wal_of_a_database_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let syncer = Syncer::start(&path).unwrap();
        let (batch, rx) = answers(&["before the log exists"]);
        syncer.deliver(batch);
        let answer = rx.into_iter().next().unwrap().blocking_recv().unwrap();
        assert!(
            matches!(&answer, Err(Failure::Sql(t)) if t.contains("No such file or directory")),
            "{answer:?}"
        );
        syncer.stop();

        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);",
        )
        .unwrap();
        let syncer = Syncer::start(&path).unwrap();
        let (batch, rx) = answers(&["after"]);
        syncer.deliver(batch);
        assert_eq!(
            rx.into_iter().next().unwrap().blocking_recv().unwrap(),
            Ok("after".to_string())
        );
        assert_eq!(syncer.failure(), None);
        syncer.stop();
    }
}
