//! The writer thread: takes every call waiting in its queue, runs them in one
//! transaction (group commit), answers them, and closes the database.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::dqlite::{Cluster, ClusterOptions};
use super::file::File;
use super::health::LastWrite;
use super::open::Options;
use super::query::{Backend, Failure, Outcome, Query};
use super::reader::Reader;
use super::syncer::{Durability, LogFailure};
use crate::config::Synchronous;

/// The most calls one transaction takes: bounds the latency that the last
/// call of a long queue waits for its answer.
pub const MAX_BATCH: usize = 256;

/// Room in the queue; past it, request tasks wait (asynchronously) for room.
const QUEUE_CAPACITY: usize = 4096;

struct Job {
    query: Query,
    reply: oneshot::Sender<Outcome>,
    /// When it was queued.
    queued: std::time::Instant,
    /// What the call holds until it has run (a large body's share of the
    /// server's memory): dropped with the job, once its batch ran, even
    /// when the client that sent it left meanwhile.
    _hold: Option<Box<dyn Send>>,
}

enum Message {
    Run(Job),
    /// Answer what is queued before, then checkpoint (unless another process
    /// does) and close the database.
    Close(oneshot::Sender<Result<(), String>>),
}

/// The handle request tasks hold: cheap to clone, one queue behind (two on
/// a file: the reads have their own, see `reader.rs`).
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Message>,
    /// The reader thread's queue, for the calls that only read.
    reads: Option<mpsc::Sender<Message>>,
    /// The file's last write (none on a cluster).
    last_write: Option<Arc<LastWrite>>,
}

impl Writer {
    /// Starts the writer thread on the single file: opens, configures and
    /// migrates the database, then starts the reader on it, and returns
    /// once both are ready (or why not).
    pub async fn start(options: Options) -> Result<Writer, String> {
        let options = Arc::new(options);
        let log_failure = LogFailure::default();
        let durability = Durability::default();
        let last_write = Arc::new(LastWrite::default());
        let (o, failure, d, w) = (
            Arc::clone(&options),
            Arc::clone(&log_failure),
            durability.clone(),
            Arc::clone(&last_write),
        );
        let mut writer = Writer::spawn("onboarding-writer", move || {
            File::open(&o, failure, d).map(|mut file| {
                file.last_write = w;
                Box::new(file) as Box<dyn Backend>
            })
        })
        .await?;
        writer.last_write = Some(last_write);
        // After the writer: the file exists and is migrated. Under `full`,
        // its reads wait for the syncer as the writer's answers do.
        let durability = (options.synchronous == Synchronous::Full).then_some(durability);
        let reader = Writer::spawn("onboarding-reader", move || {
            Reader::open(&options, log_failure, durability).map(|r| Box::new(r) as Box<dyn Backend>)
        })
        .await;
        match reader {
            Ok(reader) => {
                writer.reads = Some(reader.queue);
                Ok(writer)
            }
            Err(e) => {
                if let Err(closing) = writer.close().await {
                    tracing::error!(error = %closing, "closing the database after the reader failed");
                }
                Err(e)
            }
        }
    }

    /// Starts the writer thread on a dqlite cluster: finds the leader,
    /// opens and migrates the replicated database.
    pub async fn start_cluster(options: ClusterOptions) -> Result<Writer, String> {
        Writer::spawn("onboarding-writer", move || {
            Cluster::open(options).map(|cluster| Box::new(cluster) as Box<dyn Backend>)
        })
        .await
    }

    /// A thread named `name` serving one queue on the backend `open` makes.
    async fn spawn<F>(name: &str, open: F) -> Result<Writer, String>
    where
        F: FnOnce() -> Result<Box<dyn Backend>, String> + Send + 'static,
    {
        let (queue, inbox) = mpsc::channel(QUEUE_CAPACITY);
        let (ready_tx, ready_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || match open() {
                Ok(backend) => {
                    let _ = ready_tx.send(Ok(()));
                    serve(backend, inbox);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })
            .map_err(|e| format!("cannot start the database thread {name}: {e}"))?;
        ready_rx
            .await
            .map_err(|_| format!("the database thread {name} died while opening"))??;
        Ok(Writer {
            queue,
            reads: None,
            last_write: None,
        })
    }

    /// SQLite's text for the last write refused for want of storage (a
    /// full disk) in the last minute, and how long it is still reported.
    /// Always `None` on a cluster.
    pub fn write_failure(&self) -> Option<(&'static str, std::time::Duration)> {
        let now = std::time::Instant::now();
        self.last_write.as_ref().and_then(|w| w.failure_at(now))
    }

    /// Queues `query` and waits for its answer; never blocks the thread.
    pub async fn run(&self, query: Query) -> Outcome {
        self.run_holding(query, None).await
    }

    /// [`Writer::run`], keeping `hold` until the call has run.
    pub async fn run_holding(&self, query: Query, hold: Option<Box<dyn Send>>) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let queue = match &self.reads {
            Some(reads) if query.reads_only() => reads,
            _ => &self.queue,
        };
        // The health check runs on the reader, but it must fail when the
        // writer has died (a supervisor restarts on it): every write would.
        if matches!(query, Query::Health) && self.queue.is_closed() {
            return Err(Failure::Sql("the database writer has stopped".to_string()));
        }
        queue
            .send(Message::Run(Job {
                query,
                reply,
                queued: std::time::Instant::now(),
                _hold: hold,
            }))
            .await
            .map_err(|_| Failure::Sql("the database writer has stopped".to_string()))?;
        answer
            .await
            .map_err(|_| Failure::Sql("the database writer stopped before answering".to_string()))?
    }

    /// Lets every call queued so far finish, then checkpoints the WAL and
    /// closes the database. Calls queued afterwards fail. The reader closes
    /// first, so that the writer's connection is the last one, which
    /// checkpoints (or not) as `--wal-checkpoint` says.
    pub async fn close(&self) -> Result<(), String> {
        if let Some(reads) = &self.reads {
            if let Err(e) = close_queue(reads).await {
                tracing::error!(error = %e, "closing the reader");
            }
        }
        close_queue(&self.queue).await
    }
}

/// Asks the thread behind `queue` to close its database, and waits for it.
async fn close_queue(queue: &mpsc::Sender<Message>) -> Result<(), String> {
    let (done, closed) = oneshot::channel();
    queue
        .send(Message::Close(done))
        .await
        .map_err(|_| "the database thread had already stopped".to_string())?;
    closed
        .await
        .map_err(|_| "the database thread died while closing".to_string())?
}

/// Runs the calls of `batch` as one batch and hands their answers to the
/// backend to deliver; `batch` is left empty. Answers how many calls ran.
fn run_one(backend: &mut dyn Backend, batch: &mut Vec<Job>, replies: &mut Vec<Outcome>) -> u64 {
    let queries: Vec<&Query> = batch.iter().map(|job| &job.query).collect();
    if let Some(oldest) = batch.iter().map(|job| job.queued).min() {
        backend.queued_since(oldest);
    }
    backend.run_batch(&queries, replies);
    backend.after_batch();
    let ran = batch.len() as u64;
    let answers = batch.drain(..).map(|job| job.reply).zip(replies.drain(..));
    backend.deliver(answers.collect());
    ran
}

/// The thread's loop: take a batch, run it, answer it; until closed.
fn serve(mut backend: Box<dyn Backend>, mut inbox: mpsc::Receiver<Message>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut replies: Vec<Outcome> = Vec::with_capacity(MAX_BATCH);
    let mut close: Option<oneshot::Sender<Result<(), String>>> = None;
    // Calls per transaction is what group commit buys: logged at close.
    let (mut transactions, mut calls) = (0u64, 0u64);
    while close.is_none() {
        let Some(first) = inbox.blocking_recv() else {
            break;
        };
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Run(job) => batch.push(job),
                Message::Close(done) => {
                    close = Some(done);
                    break;
                }
            }
            if batch.len() < MAX_BATCH {
                next = inbox.try_recv().ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        calls += run_one(&mut *backend, &mut batch, &mut replies);
        transactions += 1;
    }
    // Calls still queued behind a Close are dropped with the inbox: their
    // tasks get "stopped before answering".
    drop(inbox);
    let closed = backend.close();
    // Which of the two connections (the writer's, the reader's): each says
    // it closed, and two bare lines read as one said twice.
    let thread = std::thread::current();
    let connection = thread
        .name()
        .map_or("database", |n| n.trim_start_matches("onboarding-"));
    match &closed {
        Ok(()) => tracing::info!(connection = %connection, transactions, calls, "database closed"),
        Err(e) => {
            tracing::error!(connection = %connection, error = %e, "database did not close cleanly")
        }
    }
    if let Some(done) = close {
        let _ = done.send(closed);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::WalCheckpoint;

    /// `/healthz` runs on the reader, but a supervisor must learn that the
    /// writer died: every write would fail from then on.
    #[tokio::test]
    async fn health_fails_once_the_writer_has_stopped_while_reads_still_answer() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Writer::start(Options {
            path: dir.path().join("health.db"),
            synchronous: Synchronous::Normal,
            wal_checkpoint: WalCheckpoint::Internal,
            extension: None,
            env: Arc::new(onboarding::SystemEnv),
            busy_timeout: Duration::from_secs(1),
            kb: onboarding::kb::Settings::default(),
        })
        .await
        .unwrap();
        assert!(writer.run(Query::Health).await.is_ok());
        // The writer thread alone ends, as it does when it dies.
        close_queue(&writer.queue).await.unwrap();
        for _ in 0..200 {
            if writer.queue.is_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            writer.run(Query::Health).await,
            Err(Failure::Sql("the database writer has stopped".to_string()))
        );
        let voices = writer.run(Query::Voices).await.unwrap();
        assert!(
            voices.starts_with(r#"{"success":true,"voices":["#),
            "{voices}"
        );
        assert_eq!(
            writer.close().await,
            Err("the database thread had already stopped".to_string())
        );
    }
}
