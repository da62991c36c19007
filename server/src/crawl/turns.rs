//! The sites' turns in the database (`onboarding_kb_site_take` and
//! `_release`): one request at a time per site among the crawlers of every
//! process on the file, as the fetcher keeps it among this process's jobs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use url::Url;

use super::fetch::{self, FetchError};
use super::lease::Lease;
use super::{sql, HeldTurns};
use crate::db::{KbFunction, Writer};

/// A job's side of the sites' turns in the database
/// (`onboarding_kb_site_take` and `_release`).
pub struct SiteTurns {
    pub(super) writer: Writer,
    pub(super) worker: String,
    /// Where this process notes the turn while it holds it.
    pub(super) held: HeldTurns,
    /// How long a request holds the turn at most ([`fetch::Fetcher::turn_hold`]).
    pub(super) hold: Duration,
    /// The job's lease: a wait ends when it is lost.
    pub(super) lease: Arc<Lease>,
    /// The job's time limit: no wait goes past it.
    pub(super) deadline: Instant,
    /// The longest gap the site's pace makes (robots' Crawl-delay, 5 s): a
    /// longer one is a site's Retry-After.
    pub(super) pace: Duration,
}

impl SiteTurns {
    /// `NoTurn` once the job's lease is lost: the job is another worker's.
    fn still_leased(&self) -> Result<(), FetchError> {
        if self.lease.lost() {
            tracing::warn!("the job's lease was lost while waiting for a site's turn");
            return Err(FetchError::NoTurn);
        }
        Ok(())
    }

    /// Waits for `turn` (this process's turn of the site); gives up at the
    /// job's time limit, or when the job's lease is lost.
    pub(super) async fn wait_for<T>(
        &self,
        turn: impl std::future::Future<Output = T>,
    ) -> Result<T, FetchError> {
        tokio::pin!(turn);
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(FetchError::JobTime);
            }
            tokio::select! {
                got = &mut turn => return Ok(got),
                () = tokio::time::sleep(self.lease.every.min(left)) => self.still_leased()?,
            }
        }
    }

    /// Waits for the site's turn in the database as the library answers
    /// (when to ask again), while the job's lease holds. Bounded: a
    /// holder keeps the turn at most `hold`, so the time spent waiting for
    /// holders ends by twice that, or the page is given up (`NoTurn`); the
    /// site's own gap is waited out up to the job's time limit, and a
    /// `Retry-After` (up to an hour) that outlasts it is the job's to wait
    /// in the queue (`SiteWait`). A call that fails (the database busy) is
    /// tried again within those bounds.
    async fn take(&self, url: &Url) -> Result<(), FetchError> {
        let hold_seconds = self.hold.as_secs().clamp(1, 3600);
        let site = site_root(url);
        let payload =
            json!({"url": site.as_str(), "worker": self.worker, "hold_seconds": hold_seconds});
        let mut waited_for_holders = Duration::ZERO;
        loop {
            let (wait, holder) = match sql(&self.writer, KbFunction::SiteTake, payload.clone())
                .await
            {
                Ok(answer) if answer["granted"] == true => {
                    if let Ok(mut held) = self.held.lock() {
                        held.insert(self.worker.clone(), site.to_string());
                    }
                    return Ok(());
                }
                Ok(answer) => (
                    answer["retry_after_ms"].as_u64().unwrap_or(250),
                    !answer["holder"].is_null(),
                ),
                Err(e) => {
                    tracing::warn!(url = %url, error = %e, "the site's turn could not be asked for");
                    (250, true)
                }
            };
            // The site's gap (its Retry-After) known to outlast the job:
            // given up now, not after sleeping until the job's time is up.
            let wait = Duration::from_millis(wait);
            let wait = if !holder && Instant::now() + wait > self.deadline {
                wait
            } else {
                wait.clamp(Duration::from_millis(1), self.hold)
            };
            if Instant::now() + wait > self.deadline {
                if !holder && wait > self.pace {
                    tracing::info!(url = %url, wait_ms = wait.as_millis() as u64, "the site asked to wait longer than the job can: the job waits in the queue");
                    return Err(FetchError::SiteWait(wait));
                }
                tracing::warn!(url = %url, "the site's turn would come after the job's time limit");
                return Err(FetchError::JobTime);
            }
            if holder {
                // Before a long gap, a page waited for its own Retry-After
                // only: it was given up while the job had minutes left.
                waited_for_holders += wait;
                if waited_for_holders > self.hold * 2 {
                    tracing::warn!(url = %url, "the site's turn never came");
                    return Err(FetchError::NoTurn);
                }
            }
            self.still_leased()?;
            tokio::time::sleep(wait).await;
        }
    }

    /// Gives the turn back: the next request to the site waits `gap`. A
    /// failure only logs: the turn then frees itself when its hold ends.
    async fn release(&self, url: &Url, gap: Duration) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(&self.worker);
        }
        let gap_ms = (gap.as_millis() as u64).min(onboarding::kb::MAX_SITE_WAIT_MS as u64);
        let site = site_root(url);
        let payload = json!({"url": site.as_str(), "worker": self.worker, "gap_ms": gap_ms});
        if let Err(e) = sql(&self.writer, KbFunction::SiteRelease, payload).await {
            tracing::warn!(url = %url, error = %e, "the site's turn could not be released");
        }
    }
}

/// The site of `url` as the library's turns take it: its scheme, host and
/// port alone. The library reads only those, and a page's address may be
/// longer than it takes (a redirect to a URL past 2,048 characters would
/// wait for a turn never granted).
fn site_root(url: &Url) -> Url {
    let mut root = url.clone();
    root.set_path("/");
    root.set_query(None);
    root.set_fragment(None);
    let _ = root.set_username("");
    let _ = root.set_password(None);
    root
}

impl fetch::SharedTurn for SiteTurns {
    fn take<'a>(&'a self, url: &'a Url) -> fetch::BoxFuture<'a, Result<(), FetchError>> {
        Box::pin(SiteTurns::take(self, url))
    }

    fn release<'a>(&'a self, url: &'a Url, gap: Duration) -> fetch::BoxFuture<'a, ()> {
        Box::pin(SiteTurns::release(self, url, gap))
    }
}
