//! `--outbox-log`: the server as the outbox's sender, for local development.
//!
//! It takes messages with `onboarding_outbox_claim` through the writer
//! queue, like any route (never a second writer), prints each one (recipient
//! and text, on one line) to the log, and marks it sent. It wakes when a
//! route queued a code, and once a second for messages queued by anyone
//! else (a `sqlite3` shell). Without the flag nothing here runs, and no code
//! ever reaches the log.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

use crate::db::{Query, Writer};

/// The worker name the log sender claims under.
pub const WORKER: &str = "outbox-log";
/// Far longer than printing a line takes; a crash leaves the message to the
/// next start after this.
const LEASE_SECONDS: i64 = 60;
/// How often the outbox is looked at without a wake-up.
const POLL: Duration = Duration::from_secs(1);

/// The running log sender.
pub struct LogSender {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl LogSender {
    /// Starts draining the outbox now, then at each wake-up or poll.
    pub fn start(writer: Writer, wake: Arc<Notify>) -> LogSender {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(writer, wake, stopped));
        LogSender { stop, task }
    }

    /// Stops after the message in hand, if any: call before closing the writer.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn run(writer: Writer, wake: Arc<Notify>, mut stopped: oneshot::Receiver<()>) {
    loop {
        drain(&writer).await;
        tokio::select! {
            _ = &mut stopped => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Sends (to the log) every message the outbox hands out.
async fn drain(writer: &Writer) {
    loop {
        let claim = Query::OutboxClaim {
            worker: WORKER.to_string(),
            lease_seconds: LEASE_SECONDS,
        };
        let claimed = match writer.run(claim).await {
            Ok(body) => body,
            Err(failure) => {
                tracing::warn!(error = %failure.text(), "outbox claim failed");
                return;
            }
        };
        let claimed: serde_json::Value = match serde_json::from_str(&claimed) {
            Ok(value) => value,
            Err(e) => {
                tracing::error!(error = %e, "onboarding_outbox_claim answered no JSON");
                return;
            }
        };
        let message = &claimed["message"];
        let Some(id) = message["id"].as_i64() else {
            return; // nothing queued
        };
        // Debug formatting quotes and escapes the text: one line, whatever it holds.
        tracing::info!(
            id,
            recipient = %message["recipient"].as_str().unwrap_or_default(),
            channel = %message["channel"].as_str().unwrap_or_default(),
            text = ?message["text"].as_str().unwrap_or_default(),
            "outbox message"
        );
        let sent = Query::OutboxSent {
            id,
            worker: WORKER.to_string(),
            provider_id: Some("log".to_string()),
        };
        if let Err(failure) = writer.run(sent).await {
            tracing::warn!(id, error = %failure.text(), "outbox message not marked sent");
            return;
        }
    }
}
