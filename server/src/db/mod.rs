//! The one writer connection: a dedicated OS thread that owns the database's
//! writes, runs every SQL call of every route that writes, and
//! group-commits what is queued.
//!
//! Why one thread: SQLite allows one writer at a time. With a single
//! connection fed through a queue, requests never meet SQLITE_BUSY, and the
//! async threads never block on SQLite.
//!
//! The routes that only read (`Query::reads_only`, chosen by route:
//! `sqlite3_stmt_readonly` reports `SELECT onboarding_*()` as read-only even
//! for the writers, so the statement could not tell) go to a second thread
//! with its own read-only connection (`reader.rs`) on a single file: in WAL
//! mode a read needs no lock, so a write waiting out the busy timeout for
//! another process's lock (a `sqlite3` shell) never holds a read back. On a
//! dqlite cluster every call, reads included, runs on the leader through
//! the writer's batches.
//!
//! Why group commit: a commit (an fsync with `synchronous=FULL`) costs far
//! more than a call. The thread takes every call waiting in the queue (up to
//! [`MAX_BATCH`]), runs them inside one `BEGIN IMMEDIATE … COMMIT`, and only
//! then answers them all. A failing call must undo only itself: the library
//! would open a SAVEPOINT per call for that, but inside a batch it skips it
//! (host rollback, a quarter of a call's cost), and a call that fails after
//! changing a row is marked by the library: the whole transaction rolls
//! back and every call runs again alone, each in its savepoint (`file.rs`). The same happens if the
//! COMMIT fails (or SQLite rolls the whole transaction back after some I/O
//! error), so that no answer claims a write that was lost.
//!
//! Why a syncer: with `--synchronous full` the fsync that makes a commit
//! durable runs on a thread of its own (`syncer.rs`), which answers a batch
//! once the log holding it is on disk; meanwhile the writer runs the next
//! batch instead of waiting for the disk.
//!
//! The batch runs on a `query::Backend`: the single file (the default), or
//! with `--dqlite` the leader of a dqlite cluster (`dqlite.rs`), where one
//! batch is one Raft entry.
//!
//! Beside the file's writer, a checkpointer thread with its own connection
//! copies the WAL back into the database file, so that no commit waits for a
//! checkpoint; under Litestream (`--wal-checkpoint external`) there is none:
//! Litestream checkpoints, after copying each frame to its replica.
//!
//! | file | owns |
//! |---|---|
//! | `query.rs` | [`Query`]: the one SQL statement of each route, and its [`Outcome`] |
//! | `open.rs` | opening and configuring the connection, loading `--extension` |
//! | `checkpoint.rs` | the checkpointer thread |
//! | `writer.rs` | the writer thread: its queue, batches, close; the reads' queue |
//! | `reader.rs` | the reader thread's connection (single file): the routes that only read |
//! | `file.rs` | the single-file backend: group commit with a re-run-alone fallback, checkpoints, close |
//! | `health.rs` | whether writes are failing for want of storage (a full disk), for the health check |
//! | `gather.rs` | the writer's VFS: a commit's WAL writes reach the file in one write |
//! | `syncer.rs` | the log syncer: answers a committed batch once its WAL frames are on disk (`--synchronous full`) |
//! | `dqlite.rs` | the dqlite backend: the leader followed, batches retried, request keys |

mod checkpoint;
mod dqlite;
mod file;
mod gather;
mod health;
mod open;
mod query;
mod reader;
mod syncer;
mod writer;

pub use dqlite::ClusterOptions;
pub use health::{sqlite_text, storage_failure};
pub use open::Options;
pub use query::{Failure, KbFunction, Outcome, Query};
pub use writer::{Writer, MAX_BATCH};
