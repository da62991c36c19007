//! A claimed job's lease: renewed on a timer while the job runs, and
//! marked lost when another worker took the job over.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{sql, Budget};
use crate::db::{KbFunction, Writer};

/// A claimed job's lease, renewed on a timer for as long as the job runs
/// (see [`Lease::keep`]), whatever the job is doing: reading robots.txt and
/// sitemaps at the site's `Crawl-delay` reports no page for a minute or
/// more, and a page's redirects and retries can take as long. Renewing only
/// with reports let a healthy worker lose its job to itself (claimed again
/// as a new attempt, its discovery done again, three times: `failed`).
pub(super) struct Lease {
    writer: Writer,
    renew: Value,
    /// A third of the lease: how often it is renewed, and how often a
    /// wait checks that it still holds.
    pub(super) every: Duration,
    lost: AtomicBool,
    /// Reported with each renewal: a job reading sitemaps for a minute
    /// reports no page meanwhile.
    budget: Arc<Budget>,
}

impl Lease {
    pub(super) fn new(
        writer: Writer,
        job_id: i64,
        worker: &str,
        seconds: i64,
        budget: Arc<Budget>,
    ) -> Lease {
        Lease {
            writer,
            budget,
            renew: json!({"job_id": job_id, "worker": worker, "lease_seconds": seconds}),
            every: Duration::from_millis((seconds.max(1) as u64) * 1000 / 3),
            lost: AtomicBool::new(false),
        }
    }

    /// Renews the lease every third of it until the keeper is dropped (the
    /// job ended). A lease taken over by another worker (this process was
    /// frozen past it) stops the renewals and marks the lease lost, which
    /// ends the job's waits and its loop; a failure of the call itself only
    /// logs: the next renewal may pass.
    pub(super) fn keep(self: &Arc<Lease>) -> LeaseKeeper {
        let lease = Arc::clone(self);
        LeaseKeeper(tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease.every).await;
                let mut renew = lease.renew.clone();
                lease.budget.report(&mut renew);
                match sql(&lease.writer, KbFunction::Renew, renew).await {
                    Err(e) if lease_lost(&e) => {
                        tracing::warn!(error = %e, "the job's lease was lost");
                        lease.lost.store(true, Ordering::Relaxed);
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "the job's lease could not be renewed"),
                    Ok(_) => {}
                }
            }
        }))
    }

    pub(super) fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

/// Whether a renewal's error says the job is no longer this worker's: taken
/// over (`conflict`) or gone (`not_found`), rather than the call failing.
pub(super) fn lease_lost(error: &str) -> bool {
    error.contains(": conflict: ") || error.contains(": not_found: ")
}

/// Stops a lease's renewals when the job that holds it ends, however it
/// ends (an early return, an error, a panic).
pub(super) struct LeaseKeeper(tokio::task::JoinHandle<()>);

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}
