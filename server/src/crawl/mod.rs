//! The knowledge-base crawler: workers that take crawl jobs and store the
//! site's pages, as clients of the library's worker functions.
//!
//! Every SQL call goes through the server's one writer queue (in
//! `onboarding-server crawl`, a writer of its own with no HTTP): the crawler
//! has no connection. A job's whole state (lease, frontier, counters) is in
//! the database, so a worker that is killed loses at most the page it was
//! fetching: its lease expires and the next claim resumes the frontier.
//!
//! | file | owns |
//! |---|---|
//! | `fetch.rs` | HTTP, the address check on every hop, limits, charsets |
//! | `robots.rs` | robots.txt, sitemaps |
//! | `extract.rs` | HTML to Markdown, the footer, links, noindex, nofollow, meta refresh |
//! | `nesting.rs` | a page nested past 256 elements, flattened before the parse |
//! | here | the worker loop, politeness, what each page is reported as |

pub mod extract;
pub mod fetch;
pub mod nesting;
pub mod robots;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onboarding::kb::AllowList;
use serde_json::{json, Value};
use tokio::sync::watch;
use url::Url;

use crate::db::{KbFunction, Query, Writer};
use fetch::{Accept, Client, FetchError, Fetcher, Limits, Page};

/// The most links of one page a report carries (same-site, each once).
pub const MAX_LINKS: usize = 1000;

/// The lease a worker asks for by default (`--crawl-lease-secs`): renewed
/// every third of it while the job runs ([`Lease`]), so it only runs out
/// when the worker stopped (killed, or its process frozen).
pub const LEASE_SECONDS: i64 = 60;

/// How the crawler runs.
#[derive(Debug, Clone)]
pub struct CrawlConfig {
    /// Concurrent jobs; 0 disables the crawler.
    pub workers: usize,
    /// `host:port` pairs exempt from the public-address rule.
    pub allow: AllowList,
    pub user_agent: String,
    pub lease_seconds: i64,
    /// The wait between two claims that found nothing.
    pub idle_poll: Duration,
    /// The wait after a failed `onboarding_kb_recut` call before the next
    /// ([`RECUT_BACKOFF`]).
    pub recut_backoff: Duration,
    pub limits: Limits,
    /// Names resolved to these addresses instead of DNS (tests); the rule
    /// still applies to them.
    pub resolve_overrides: HashMap<String, Vec<IpAddr>>,
    /// The sites' turns this process's workers hold (worker → URL), shared
    /// by the clones of this configuration: given back at shutdown by
    /// [`release_held`], after the workers are stopped mid-request.
    pub held: HeldTurns,
    /// The names of this process's workers, whose jobs [`release_held`]
    /// gives back at shutdown.
    pub names: WorkerNames,
    /// The budget each worker's job has spent, which [`release_held`]
    /// reports before giving the job back.
    pub budgets: JobBudgets,
}

/// Worker name → the URL whose site's turn it holds.
pub type HeldTurns = Arc<std::sync::Mutex<HashMap<String, String>>>;

/// The workers started by this process.
pub type WorkerNames = Arc<std::sync::Mutex<Vec<String>>>;

/// Worker name → its job and what the job has spent.
pub type JobBudgets = Arc<std::sync::Mutex<HashMap<String, (i64, Arc<Budget>)>>>;

/// Gives back the turns that `config`'s workers held when they were
/// stopped mid-request, so that the crawlers of other processes need not
/// wait out their holds; the next request keeps the least gap.
pub async fn release_held(writer: &Writer, config: &CrawlConfig) {
    // What each job spent since its last report (up to a third of a
    // lease of crawling time), reported with a last renewal of its lease,
    // so that its next worker goes on from there.
    let budgets: Vec<(String, (i64, Arc<Budget>))> = match config.budgets.lock() {
        Ok(mut budgets) => budgets.drain().collect(),
        Err(_) => Vec::new(),
    };
    for (worker, (job_id, budget)) in budgets {
        let mut renew =
            json!({"job_id": job_id, "worker": worker, "lease_seconds": config.lease_seconds});
        budget.report(&mut renew);
        if let Err(e) = sql(writer, KbFunction::Renew, renew).await {
            tracing::warn!(job = job_id, %worker, error = %e, "a stopped worker's budget could not be reported");
        }
    }
    // Then the jobs: queued again at once, the attempt they were on not
    // counted, for the next claim of any crawler on the file. By worker, so
    // that a claim sent just before the stop (its answer never read: the
    // writer runs it all the same, ahead of this) is given back too.
    let names: Vec<String> = match config.names.lock() {
        Ok(mut names) => names.drain(..).collect(),
        Err(_) => Vec::new(),
    };
    for worker in names {
        match sql(writer, KbFunction::Release, json!({"worker": worker})).await {
            Ok(answer) => {
                for job in answer["released"].as_array().into_iter().flatten() {
                    tracing::info!(job = job["id"].as_i64(), %worker, "a stopped worker's job given back");
                }
            }
            Err(e) => {
                tracing::warn!(%worker, error = %e, "a stopped worker's jobs could not be given back")
            }
        }
    }
    let turns: Vec<(String, String)> = match config.held.lock() {
        Ok(mut map) => map.drain().collect(),
        Err(_) => return,
    };
    let gap_ms = config.limits.min_delay.as_millis() as u64;
    for (worker, url) in turns {
        let payload = json!({"url": url, "worker": worker, "gap_ms": gap_ms});
        match sql(writer, KbFunction::SiteRelease, payload).await {
            Ok(_) => tracing::info!(%url, %worker, "a stopped worker's turn of a site given back"),
            Err(e) => {
                tracing::warn!(%url, error = %e, "a stopped worker's turn could not be given back")
            }
        }
    }
}

/// Where the User-Agent points when the operator names no contact: the
/// product's name, searchable.
pub const DEFAULT_CONTACT: &str = "https://github.com/search?q=onboarding-kb-crawler";

/// The crawler's User-Agent: the product and its version, and a URL (or a
/// `mailto:`) where a site's owner learns what the crawler is and reaches
/// whoever runs it (`--crawl-contact`; checked by the configuration).
pub fn user_agent(contact: Option<&str>) -> String {
    format!(
        "onboarding-kb-crawler/{} (+{})",
        env!("CARGO_PKG_VERSION"),
        contact.unwrap_or(DEFAULT_CONTACT)
    )
}

impl Default for CrawlConfig {
    fn default() -> Self {
        CrawlConfig {
            workers: 1,
            allow: AllowList::default(),
            user_agent: user_agent(None),
            lease_seconds: LEASE_SECONDS,
            idle_poll: Duration::from_secs(2),
            recut_backoff: RECUT_BACKOFF,
            limits: Limits::default(),
            resolve_overrides: HashMap::new(),
            held: HeldTurns::default(),
            names: WorkerNames::default(),
            budgets: JobBudgets::default(),
        }
    }
}

/// Starts `config.workers` workers; they stop when `stop` turns true.
pub fn spawn(
    writer: &Writer,
    config: &CrawlConfig,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let config = Arc::new(config.clone());
    (0..config.workers)
        .map(|n| {
            let name = worker_name("", n);
            tokio::spawn(worker(
                writer.clone(),
                Arc::clone(&config),
                name,
                n == 0,
                stop.clone(),
            ))
        })
        .collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "crawler".to_string())
}

/// The name of this process's worker `n`, which holds job leases and site
/// turns: unique among the crawlers of one file, even in containers that
/// share a host name or a process id (the process's start time, in ms, is
/// part of it), and within the library's 100 characters.
pub fn worker_name(prefix: &str, n: usize) -> String {
    use std::sync::OnceLock;
    static STARTED_MS: OnceLock<u128> = OnceLock::new();
    let started = STARTED_MS.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    });
    let host: String = hostname().chars().take(48).collect();
    format!("{prefix}{host}-{}-{started:x}-{n}", std::process::id())
}

/// Claims and crawls jobs until `stop`. A worker that `recuts` (one of
/// a process's) cuts the documents stored by an older chunker again when
/// it finds no job ([`recut`]).
pub async fn worker(
    writer: Writer,
    config: Arc<CrawlConfig>,
    name: String,
    recuts: bool,
    mut stop: watch::Receiver<bool>,
) {
    register(&config, &name);
    let client = match Client::new(&config.user_agent, &config.limits) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "the crawler worker cannot start");
            return;
        }
    };
    // After a recut call failed, the next is not before this: a failure
    // the library did not record (it ended the call's transaction, or the
    // record failed too: a full disk) would otherwise be tried, and
    // logged, every idle poll.
    let mut recut_after = tokio::time::Instant::now();
    while !*stop.borrow() {
        let claimed = sql(
            &writer,
            KbFunction::Claim,
            json!({"worker": name, "lease_seconds": config.lease_seconds}),
        )
        .await;
        match claimed.map(|v| v["job"].clone()) {
            Ok(job) if job.is_object() => {
                if let Err(e) = crawl_job(&writer, &config, &client, &name, &job).await {
                    tracing::warn!(job = job["id"].as_i64(), error = %e, "crawl stopped");
                }
                continue;
            }
            Ok(_) if recuts && tokio::time::Instant::now() >= recut_after => {
                // Some left after a turn's share: claim again at once, so
                // a job queued meanwhile waits one share at most (64
                // documents: well under a second, about 6 s when each is
                // a 200,000-character page rewritten whole; the recut
                // benchmark's longest call is about 0.1 s).
                match recut(&writer, RECUTS_PER_TURN, &stop).await {
                    Ok(0) => {}
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_s = config.recut_backoff.as_secs(), "cutting stored documents again failed");
                        recut_after = tokio::time::Instant::now() + config.recut_backoff;
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "claim failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(config.idle_poll) => {}
            _ = stop.changed() => {}
        }
    }
}

/// The documents an idle worker cuts again before it claims again.
const RECUTS_PER_TURN: usize = 64;

/// How long an idle worker waits by default to call `onboarding_kb_recut`
/// again after a call failed (a failure the library records, a document it cannot
/// cut, is not a failed call: the calls go on with the next document).
pub const RECUT_BACKOFF: Duration = Duration::from_secs(600);

/// Cuts again, one call each (`onboarding_kb_recut`), at most `most`
/// documents stored by an older chunker or French analysis than this
/// library's, and logs its counters as it goes: that is how the knowledge
/// stored before an upgrade comes to be cut as new knowledge is, without a
/// call long enough to hold the writer (or a dqlite leader) for seconds.
/// A document the library could not cut is logged and passed over (it
/// tries it again an hour later). Stops when an answer says none is left:
/// each call takes one document out of those left, so the calls end with
/// what is stored, whatever `most`. Answers how many are left (counted by
/// the library up to 1,000), or the error of a call that failed.
pub async fn recut(
    writer: &Writer,
    most: usize,
    stop: &watch::Receiver<bool>,
) -> Result<i64, String> {
    let (mut done, mut failed, mut left) = (0usize, 0usize, 0);
    let mut outcome: Result<(), String> = Ok(());
    while done + failed < most && !*stop.borrow() {
        let answer = match writer.run(Query::KbRecut).await {
            Ok(body) => serde_json::from_str::<Value>(&body).map_err(|e| e.to_string()),
            Err(failure) => Err(failure.text().to_string()),
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                outcome = Err(e);
                break;
            }
        };
        left = answer["remaining"].as_i64().unwrap_or(0);
        if answer["recut"].is_object() {
            done += 1;
        } else if answer["failed"].is_object() {
            failed += 1;
            let f = &answer["failed"];
            tracing::warn!(
                document = f["document_id"].as_i64(),
                tenant = f["tenant_id"].as_str(),
                error = f["error"].as_str(),
                attempts = f["attempts"].as_i64(),
                retry_at = f["retry_at"].as_str(),
                "a stored document could not be cut again; its older chunks stay"
            );
        } else {
            break;
        }
        if left == 0 {
            break;
        }
        if (done + failed) % RECUTS_PER_TURN == 0 && done + failed < most {
            tracing::info!(
                cut_again = done,
                failed,
                left,
                "cutting stored documents again"
            );
        }
    }
    if done + failed > 0 {
        tracing::info!(
            cut_again = done,
            failed,
            left,
            "documents stored by an older chunker cut again"
        );
    }
    outcome.map(|()| left)
}

/// Crawls one claimed job.
async fn crawl_job(
    writer: &Writer,
    config: &CrawlConfig,
    client: &Client,
    name: &str,
    job: &Value,
) -> Result<(), String> {
    Crawl::new(writer, config, client, name, job).run(job).await
}

/// Notes `name` among this process's workers, for [`release_held`].
fn register(config: &CrawlConfig, name: &str) {
    if let Ok(mut names) = config.names.lock() {
        names.push(name.to_string());
    }
}

/// Calls one worker function through the writer queue.
pub async fn sql(writer: &Writer, function: KbFunction, payload: Value) -> Result<Value, String> {
    let body = writer
        .run(Query::Kb {
            function,
            payload: payload.to_string(),
        })
        .await
        .map_err(|f| f.text().to_string())?;
    serde_json::from_str(&body).map_err(|e| format!("unreadable answer: {e}"))
}

/// A job's requests to its site: one at a time and paced, counted against
/// the job's byte budget here. The pace is kept twice: among this
/// process's jobs by the fetcher, and with the crawlers of other processes
/// on the same file (`onboarding-server crawl` beside a server, two
/// servers) by the site's turn in the database, which the fetcher takes for
/// each request ([`SiteTurns`]).
pub struct Polite<'f> {
    pub fetcher: &'f Fetcher,
    pub budget: Arc<Budget>,
    pub turns: Arc<SiteTurns>,
}

/// What a job has spent of its budget (20 MiB, 3 minutes): counted from
/// what its earlier workers reported (`bytes_fetched`, `crawl_ms` of the
/// claim), reported in turn with each page and each lease renewal, so that
/// a restart or a takeover does not start the job's budget again.
#[derive(Debug)]
pub struct Budget {
    bytes: AtomicU64,
    /// When the job would have started had it crawled without a break.
    started: Instant,
}

impl Budget {
    /// The budget a claimed job has left.
    pub fn resumed(job: &Value) -> Budget {
        let spent = Duration::from_millis(job["crawl_ms"].as_u64().unwrap_or(0));
        let now = Instant::now();
        Budget {
            bytes: AtomicU64::new(job["bytes_fetched"].as_u64().unwrap_or(0)),
            started: now.checked_sub(spent).unwrap_or(now),
        }
    }

    pub fn bytes(&self) -> usize {
        usize::try_from(self.bytes.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The limit the job has gone past, as its error code: `timeout`, then
    /// `too_large`.
    fn exhausted(&self, limits: &Limits) -> Option<&'static str> {
        if self.elapsed() > limits.job_time {
            Some("timeout")
        } else if self.bytes() > limits.job_bytes {
            Some("too_large")
        } else {
            None
        }
    }

    /// The job's time limit, as an instant.
    fn deadline(&self, job_time: Duration) -> Instant {
        self.started + job_time
    }

    /// The report's fields: the library keeps them with the job.
    fn report(&self, into: &mut Value) {
        into["bytes"] = json!(self.bytes.load(Ordering::Relaxed));
        into["elapsed_ms"] = json!(u64::try_from(self.elapsed().as_millis()).unwrap_or(u64::MAX));
    }
}

impl Polite<'_> {
    pub async fn get(&mut self, url: &Url, site: &Url, accept: Accept) -> Result<Page, FetchError> {
        if !self.fetcher.may_ask(url, accept) {
            return Err(FetchError::RobotsDisallowed);
        }
        let mut pace = self.turns.wait_for(self.fetcher.turn()).await?;
        // The bytes are counted as they arrive (see `get_in_turn`).
        self.fetcher
            .get_in_turn(url, site, accept, &mut pace, &self.budget.bytes)
            .await
    }

    /// The page `from`'s meta refresh names, `url`, asked as the next hop
    /// of `from`'s redirects ([`Fetcher::refresh_in_turn`]).
    pub async fn refresh(
        &mut self,
        from: &Page,
        url: &Url,
        site: &Url,
    ) -> Result<Page, FetchError> {
        if !self.fetcher.may_ask(url, Accept::Page) {
            return Err(FetchError::RobotsDisallowed);
        }
        let mut pace = self.turns.wait_for(self.fetcher.turn()).await?;
        self.fetcher
            .refresh_in_turn(from, url, site, &mut pace, &self.budget.bytes)
            .await
    }
}

/// A claimed job's lease, renewed on a timer for as long as the job runs
/// (see [`Lease::keep`]), whatever the job is doing: reading robots.txt and
/// sitemaps at the site's `Crawl-delay` reports no page for a minute or
/// more, and a page's redirects and retries can take as long. Renewing only
/// with reports let a healthy worker lose its job to itself (claimed again
/// as a new attempt, its discovery done again, three times: `failed`).
struct Lease {
    writer: Writer,
    renew: Value,
    every: Duration,
    lost: AtomicBool,
    /// Reported with each renewal: a job reading sitemaps for a minute
    /// reports no page meanwhile.
    budget: Arc<Budget>,
}

impl Lease {
    fn new(writer: Writer, job_id: i64, worker: &str, seconds: i64, budget: Arc<Budget>) -> Lease {
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
    fn keep(self: &Arc<Lease>) -> LeaseKeeper {
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

    fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

/// Whether a renewal's error says the job is no longer this worker's: taken
/// over (`conflict`) or gone (`not_found`), rather than the call failing.
fn lease_lost(error: &str) -> bool {
    error.contains(": conflict: ") || error.contains(": not_found: ")
}

/// Stops a lease's renewals when the job that holds it ends, however it
/// ends (an early return, an error, a panic).
struct LeaseKeeper(tokio::task::JoinHandle<()>);

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A job's side of the sites' turns in the database
/// (`onboarding_kb_site_take` and `_release`).
pub struct SiteTurns {
    writer: Writer,
    worker: String,
    /// Where this process notes the turn while it holds it.
    held: HeldTurns,
    /// How long a request holds the turn at most ([`Fetcher::turn_hold`]).
    hold: Duration,
    /// The job's lease: a wait ends when it is lost.
    lease: Arc<Lease>,
    /// The job's time limit: no wait goes past it.
    deadline: Instant,
    /// The longest gap the site's pace makes (robots' Crawl-delay, 5 s): a
    /// longer one is a site's Retry-After.
    pace: Duration,
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
    async fn wait_for<T>(
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

/// Why a job stops before its frontier is done, other than its budget.
enum Stop {
    /// Its time would run out waiting for the site's turn.
    JobTime,
    /// The site asked to be left alone this long, longer than the job can
    /// wait in hand; with the retries the page has had, the one it waits
    /// for included (0 when the wait was another request's and the page
    /// was never refused).
    Wait(Duration, usize),
    /// The job is another worker's now.
    LeaseLost,
}

/// One claimed job being crawled.
struct Crawl<'a> {
    writer: &'a Writer,
    config: &'a CrawlConfig,
    client: &'a Client,
    worker: &'a str,
    job_id: i64,
    stored: usize,
    /// The job's lease renewals, stopped before the job is finished (a
    /// renewal after it would be refused, and logged as a lease lost).
    renewing: Option<LeaseKeeper>,
    /// What the job has spent (from what its earlier workers reported),
    /// reported with its pages.
    budget: Arc<Budget>,
    /// The site answered a path without its trailing slash by a redirect
    /// to it (WordPress, most CMSs): a page's path is asked with the slash
    /// first, saving each page a request and a turn of the site's gap.
    slashed_paths: bool,
    /// Pages this worker asked for, by [`identity`]: what each was stored
    /// as, or `None` when it was not ([`Crawl::report_under`]). Their text
    /// counted in the job's bytes, so 20 MiB at most.
    known: HashMap<String, Option<Known>>,
    /// Reports of canonical pages asked ahead of their turn in the queue
    /// ([`Crawl::ask_ahead`]), by [`identity`], with the URL asked, used
    /// when it comes. Their text is also in `known`: with it, twice the
    /// job's 20 MiB at most.
    ahead: HashMap<String, (String, Value)>,
    /// The canonical pages asked ahead (or tried), each once a job.
    asked_ahead: std::collections::HashSet<String>,
}

impl<'a> Crawl<'a> {
    fn new(
        writer: &'a Writer,
        config: &'a CrawlConfig,
        client: &'a Client,
        worker: &'a str,
        job: &Value,
    ) -> Self {
        Crawl {
            writer,
            config,
            client,
            worker,
            job_id: job["id"].as_i64().unwrap_or(0),
            stored: 0,
            renewing: None,
            budget: Arc::new(Budget::resumed(job)),
            slashed_paths: false,
            known: HashMap::new(),
            ahead: HashMap::new(),
            asked_ahead: std::collections::HashSet::new(),
        }
    }

    async fn run(&mut self, job: &Value) -> Result<(), String> {
        let budget = Arc::clone(&self.budget);
        if let Ok(mut budgets) = self.config.budgets.lock() {
            budgets.insert(self.worker.to_string(), (self.job_id, Arc::clone(&budget)));
        }
        let site =
            Url::parse(job["url"].as_str().unwrap_or("")).map_err(|e| format!("job url: {e}"))?;
        let fetcher = Fetcher::new(
            self.client,
            &site,
            self.config.allow.clone(),
            self.config.resolve_overrides.clone(),
            self.config.limits.clone(),
        );
        let lease = Arc::new(Lease::new(
            self.writer.clone(),
            self.job_id,
            self.worker,
            self.config.lease_seconds,
            Arc::clone(&budget),
        ));
        self.renewing = Some(lease.keep());
        let turns = Arc::new(SiteTurns {
            writer: self.writer.clone(),
            worker: self.worker.to_string(),
            held: Arc::clone(&self.config.held),
            hold: Fetcher::turn_hold(&self.config.limits),
            lease: Arc::clone(&lease),
            deadline: budget.deadline(self.config.limits.job_time),
            pace: self.config.limits.max_delay,
        });
        fetcher.share_turn(Arc::clone(&turns) as Arc<dyn fetch::SharedTurn>);
        let mut polite = Polite {
            fetcher: &fetcher,
            budget: Arc::clone(&budget),
            turns,
        };
        // Taken over with its budget spent (its earlier worker died at the
        // limit): it ends as it would have, without asking the site.
        if let Some(code) = budget.exhausted(&self.config.limits) {
            return self.finish(Some(code)).await;
        }
        let rules = match robots::rules(&mut polite, &site).await {
            Ok(rules) => rules,
            // Met another request's wait, or robots.txt itself asked to
            // wait (429 or 503 with a Retry-After): read on resuming.
            // Past the job's waits, robots.txt was not to be had: the
            // job's attempt ends as for any robots.txt not read.
            Err(FetchError::SiteWait(wait)) => {
                return self.wait_for_site(wait, None, "robots_unavailable").await
            }
            Err(FetchError::Status(429 | 503, Some(wait)))
                if wait <= self.config.limits.max_site_wait =>
            {
                return self.wait_for_site(wait, None, "robots_unavailable").await
            }
            Err(e) => return self.finish(Some(robots::job_code(&e))).await,
        };
        fetcher.set_delay(rules.delay).await;
        let rules = Arc::new(rules);
        let for_fetcher = Arc::clone(&rules);
        fetcher.set_robots(Arc::new(move |url: &str| for_fetcher.allowed(url)));
        // Each page with the retries it had before the job waited for its
        // site: they count toward the page's two.
        let mut queue: VecDeque<(String, i64, usize)> = job["frontier"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let retries = p["retries"].as_u64().unwrap_or(0) as usize;
                Some((
                    p["url"].as_str()?.to_string(),
                    p["depth"].as_i64()?,
                    retries,
                ))
            })
            .collect();
        // A fresh job (only its start page known) reads the sitemaps first.
        let mut sitemap = Vec::new();
        if job["pages_found"] == 1 && queue.len() == 1 {
            sitemap = robots::sitemap_urls(&mut polite, &site, &rules, 49).await;
        }
        // Why pages were not stored, for a job that stores none.
        let mut reasons = std::collections::HashSet::new();
        // Pages of the queue the library has settled already: the target
        // of a redirect or a canonical link, stored under it when its
        // source was reported. Fetched again, its report would be refused.
        let mut settled = std::collections::HashSet::new();
        while let Some((url, depth, tried)) = queue.pop_front() {
            if settled.contains(&url) {
                continue;
            }
            if lease.lost() {
                return Err(format!("job {}: the lease was lost", self.job_id));
            }
            if let Some(code) = budget.exhausted(&self.config.limits) {
                return self.finish(Some(code)).await;
            }
            // robots.txt is the fetcher's to apply: a disallowed page comes
            // back skipped, never asked for.
            let mut report = match self.page(&mut polite, &site, &url, tried).await {
                Ok(report) => report,
                // The site's turn would come after the job's time limit:
                // this page and the rest are left unfetched (`not_fetched`),
                // as at the limit itself.
                Err(Stop::JobTime) => return self.finish(Some("timeout")).await,
                Err(Stop::Wait(wait, retries)) => {
                    let page = (retries > 0).then_some((url.as_str(), retries));
                    return self.wait_for_site(wait, page, "timeout").await;
                }
                Err(Stop::LeaseLost) => {
                    return Err(format!("job {}: the lease was lost", self.job_id))
                }
            };
            if depth == 0 {
                let links = report["links"].as_array().cloned().unwrap_or_default();
                report["links"] = sitemap.drain(..).map(Value::from).chain(links).collect();
            }
            if let Some(reason) = report["reason"].as_str() {
                reasons.insert(reason.to_string());
            }
            let answer = match self.report(report, &url).await {
                Ok(answer) => answer,
                // A report the library refuses (a rule this crawler missed)
                // fails its page, not the whole job.
                Err(e) if e.contains(": invalid_field: ") || e.contains(": invalid_json: ") => {
                    tracing::warn!(job = self.job_id, url = %url, error = %e, "page report refused");
                    let failed = json!({"status": "failed", "reason": "report_refused"});
                    self.report(failed, &url).await?
                }
                // The page was settled meanwhile (another form of it): the
                // job goes on.
                Err(e) if e.contains(": conflict: ") && e.contains("was already reported") => {
                    tracing::warn!(job = self.job_id, url = %url, error = %e, "page already reported");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(stored_at) = answer["url"].as_str().filter(|u| *u != url) {
                settled.insert(stored_at.to_string());
                // A canonical page asked ahead, settled by a page naming it.
                if let Ok(stored_at) = Url::parse(stored_at) {
                    self.ahead.remove(&identity(&stored_at));
                }
            }
            if answer["status"] == "stored" {
                self.stored += 1;
            }
            for added in answer["added"].as_array().into_iter().flatten() {
                if let (Some(u), Some(d)) = (added["url"].as_str(), added["depth"].as_i64()) {
                    queue.push_back((u.to_string(), d, 0));
                }
            }
        }
        // The page that went past the job's size was the last one queued:
        // the job still ends for its size, as when pages are left.
        if budget.bytes() > self.config.limits.job_bytes {
            return self.finish(Some("too_large")).await;
        }
        // Nothing stored: the job says why, the most telling reason first
        // (without one, the library's `no_content`). Only final reasons: a
        // page's DNS or connection failure after robots.txt answered is not
        // the whole site's, which the library would retry. A page given up
        // for want of the site's turn timed out waiting.
        if reasons.remove("site_busy") {
            reasons.insert("timeout".to_string());
        }
        let code = match self.stored {
            0 => [
                "js_required",
                "robots_disallowed",
                "private_address",
                "too_large",
                "timeout",
            ]
            .into_iter()
            .find(|code| reasons.contains(*code)),
            _ => None,
        };
        self.finish(code).await
    }

    /// Reports the page at `url` (`report`: its status, reason, text and
    /// links) under this job and worker, renewing the lease.
    async fn report(&self, mut report: Value, url: &str) -> Result<Value, String> {
        report["job_id"] = json!(self.job_id);
        report["worker"] = json!(self.worker);
        report["url"] = json!(url);
        report["lease_seconds"] = json!(self.config.lease_seconds);
        self.budget.report(&mut report);
        sql(self.writer, KbFunction::StorePage, report).await
    }

    /// Keeps the `retries` of page `url` with the job before one is waited
    /// out in hand (`onboarding_kb_renew`, which renews the lease too): a
    /// worker that takes the job over if this one dies meanwhile goes on
    /// counting, and the page is retried twice at most whoever asks.
    /// `LeaseLost` when the job is another worker's; another failure only
    /// logs, the lease's own renewals telling whether it holds.
    async fn keep_retry(&self, url: &str, retries: usize) -> Result<(), Stop> {
        let mut renew = json!({
            "job_id": self.job_id,
            "worker": self.worker,
            "lease_seconds": self.config.lease_seconds,
            "url": url,
            "retries": retries,
        });
        self.budget.report(&mut renew);
        match sql(self.writer, KbFunction::Renew, renew).await {
            Err(e) if lease_lost(&e) => {
                tracing::warn!(job = self.job_id, url, error = %e, "the job's lease was lost");
                Err(Stop::LeaseLost)
            }
            Err(e) => {
                tracing::warn!(job = self.job_id, url, error = %e, "a page's retry could not be kept");
                Ok(())
            }
            Ok(_) => Ok(()),
        }
    }

    /// Fetches one page (retrying a 429/503 as Retry-After says; `tries`
    /// retries made before the job last waited for its site) and answers
    /// its report, without the job fields; `Stop` when the job's time ends
    /// before the site's turn comes, or the job is to wait for its site. A
    /// page asked ahead of its turn (a canonical page) answers the report
    /// it had then.
    async fn page(
        &mut self,
        polite: &mut Polite<'_>,
        site: &Url,
        url: &str,
        tries: usize,
    ) -> Result<Value, Stop> {
        // The queue may hold the page in another form than the one asked
        // ahead (`http:`, `www.`): what was read is that page's (stored or
        // skipped); a failure of another form is asked again in this one.
        let ahead = Url::parse(url)
            .ok()
            .and_then(|u| self.ahead.remove(&identity(&u)));
        if let Some((asked, report)) = ahead {
            if asked == url || report["status"] != "failed" {
                return Ok(report);
            }
        }
        self.fetch_page(polite, site, url, tries, true).await
    }

    /// [`Crawl::page`]'s fetch and report; `canonicals`: whether a
    /// canonical page not asked yet may be asked now ([`Crawl::ask_ahead`]),
    /// not for a page asked ahead itself (a chain of canonical links stops
    /// there, and each page is asked in its turn).
    async fn fetch_page(
        &mut self,
        polite: &mut Polite<'_>,
        site: &Url,
        url: &str,
        mut tries: usize,
        canonicals: bool,
    ) -> Result<Value, Stop> {
        let Ok(target) = Url::parse(url) else {
            return Ok(json!({"status": "failed", "reason": "bad_url"}));
        };
        let mut fetched = match self.fetch(polite, site, url, &target, &mut tries).await? {
            Ok(page) => page,
            Err(report) => {
                self.remember(&[&target], &report);
                return Ok(report);
            }
        };
        // A page with no content of its own that sends its visitors on with
        // a meta refresh (`<meta http-equiv=refresh content="0; url=/fr/">`,
        // a start page that only picks the language) is a redirect: the
        // page it names is asked as one more hop of the page's redirects,
        // under their rules (the site's, robots.txt, public addresses, 5
        // hops, no loop), and reported in its place. Bounded by those 5.
        let (page, extracted) = loop {
            let page = Arc::new(fetched);
            let Some(extracted) = parse(Arc::clone(&page)).await else {
                let report = json!({"status": "failed", "reason": "extraction_failed"});
                self.remember(&[&target], &report);
                return Ok(report);
            };
            let Some(next) = refresh_target(&page, &extracted) else {
                break (page, extracted);
            };
            // Its 429 or 503 waited out as any page's, the page's tries
            // counted together.
            let refreshed = self
                .get_waiting(polite, site, url, &next, Some(&page), &mut tries)
                .await?;
            fetched = match refreshed {
                Ok(page) => page,
                Err(e) => {
                    let report = unfetched(e, tries)?;
                    self.remember(&[&target], &report);
                    return Ok(report);
                }
            };
        };
        let own = self.report_of(site, &page, &extracted, &page.final_url);
        let asked = [&target, &page.final_url];
        self.remember(&asked, &own);
        Ok(
            match self.canonical_of(polite, site, &target, &page, &extracted) {
                Canonical::None => own,
                // The library stores the page at the form its canonical names.
                Canonical::Itself(canonical) => self.report_of(site, &page, &extracted, &canonical),
                Canonical::Other(canonical) => {
                    let nofollow = page.nofollow || extracted.nofollow;
                    let report = self
                        .report_under(polite, site, own, &canonical, nofollow, canonicals)
                        .await;
                    // A redirect to the canonical page: a page naming this one
                    // is a redirect to that one.
                    if report["final_url"] != page.final_url.as_str() {
                        let named = self.known.get(&identity(&canonical)).cloned().flatten();
                        for url in asked {
                            self.known.insert(identity(url), named.clone());
                        }
                    }
                    report
                }
            },
        )
    }

    /// Keeps what `report` says of the page at `urls` (where it was asked,
    /// where it ended): its address, title and text when stored, nothing
    /// when it is not, for good (a 429, a 503 or the site's turn not come
    /// may pass: the page stays unknown). A page naming it as its
    /// canonical is compared with it ([`Crawl::report_under`]).
    fn remember(&mut self, urls: &[&Url], report: &Value) {
        let reason = report["reason"].as_str().unwrap_or_default();
        if matches!(reason, "http_429" | "http_503" | "site_busy") {
            return;
        }
        // As the library holds it, the form the queue asks; past the URLs
        // it takes, no page's canonical (a report naming it is refused).
        let stored_at = report["final_url"]
            .as_str()
            .and_then(|u| Url::parse(u).ok())
            .map(|u| onboarding::kb::normalize(&u).to_string())
            .filter(|u| u.chars().count() <= onboarding::kb::MAX_URL_CHARS);
        let text = stored_at
            .filter(|_| report["status"] == "stored")
            .map(|url| Known {
                url,
                title: report["title"].as_str().unwrap_or_default().to_string(),
                markdown: report["markdown"].as_str().unwrap_or_default().to_string(),
            });
        for url in urls {
            self.known.insert(identity(url), text.clone());
        }
    }

    /// The page that `page`'s canonical link names, when it is one this
    /// crawler may store a page under: on the site, allowed by robots.txt
    /// (a canonical it disallows would store the page under an address the
    /// site keeps from crawlers), within the URLs the library takes.
    fn canonical_of(
        &self,
        polite: &Polite<'_>,
        site: &Url,
        asked: &Url,
        page: &Page,
        extracted: &extract::Extracted,
    ) -> Canonical {
        let Some(canonical) = extracted
            .canonical
            .as_deref()
            .and_then(|c| Url::parse(c).ok())
        else {
            return Canonical::None;
        };
        if !onboarding::kb::same_site(&canonical, site)
            || !polite.fetcher.may_ask(&canonical, Accept::Page)
            || canonical.as_str().chars().count() > onboarding::kb::MAX_URL_CHARS
        {
            return Canonical::None;
        }
        let key = identity(&canonical);
        if key == identity(&page.final_url) || key == identity(asked) {
            Canonical::Itself(canonical)
        } else {
            Canonical::Other(canonical)
        }
    }

    /// The report of a page (`own`, its report at its own address) whose
    /// canonical link names another page of the site. A canonical link is
    /// the site's hint, and templates get it wrong: a page naming one that
    /// is gone (a 404) was stored under a dead address, never asked, and
    /// the second page of a list naming the first took the first's place.
    /// So the canonical page is asked, once a job (now, when this worker
    /// has not asked it yet and `ahead` allows: its report then waits for
    /// its turn in the queue), and a page with a text of its own is a
    /// redirect to it only when it is stored with the same text
    /// ([`same_text`]: the same words, in any order, a list sorted another
    /// way); the report then carries the canonical page's text, under its
    /// address, which the library settles (or finds stored). Otherwise the
    /// page is stored at its own address (or skipped, with no text of its
    /// own), and the canonical page (stored or not, its links followed) at
    /// its own when its turn comes, from this page's links (unless
    /// `nofollow`): whichever of the two the crawl meets first. `ask`:
    /// whether the canonical page may be asked now.
    async fn report_under(
        &mut self,
        polite: &mut Polite<'_>,
        site: &Url,
        mut own: Value,
        canonical: &Url,
        nofollow: bool,
        ask: bool,
    ) -> Value {
        let key = identity(canonical);
        // A page with no text of its own is no redirect, whatever the
        // canonical holds: it need not be asked now.
        let own_text = own["markdown"]
            .as_str()
            .filter(|_| own["status"] == "stored");
        if ask && own_text.is_some() && !self.known.contains_key(&key) {
            self.ask_ahead(polite, site, canonical).await;
        }
        let named = self
            .known
            .get(&key)
            .and_then(Option::as_ref)
            .filter(|named| own_text.is_some_and(|text| same_text(text, &named.markdown)));
        let Some(named) = named else {
            // The canonical page among the links, so that the job has it,
            // at the address asked ahead: its turn uses that report.
            if !nofollow {
                let link = Value::from(onboarding::kb::normalize(canonical).to_string());
                if let Some(links) = own["links"].as_array_mut() {
                    if !links.contains(&link) {
                        links.insert(0, link);
                        links.truncate(MAX_LINKS);
                    }
                }
            }
            return own;
        };
        // The links of both, the canonical page's when its report waits.
        let waiting = self.ahead.get(&key).map(|(_, r)| &r["links"]);
        let mut seen = std::collections::HashSet::new();
        let links: Vec<Value> = [Some(&own["links"]), waiting]
            .into_iter()
            .flatten()
            .filter_map(Value::as_array)
            .flatten()
            .filter(|l| l.as_str().is_some_and(|l| seen.insert(l.to_string())))
            .take(MAX_LINKS)
            .cloned()
            .collect();
        let (url, title, markdown) = (
            named.url.clone(),
            named.title.clone(),
            named.markdown.clone(),
        );
        own["links"] = Value::Array(links);
        own["final_url"] = json!(url);
        own["title"] = json!(title);
        own["markdown"] = json!(markdown);
        own
    }

    /// Asks for `canonical` ahead of its turn in the queue, as the queue
    /// would (its trailing slash as the site wants it, its meta refresh
    /// followed, a 429 not waited for): what it holds is remembered, and
    /// its report kept for its turn. Once a job, and not past the job's
    /// budget; a refusal that may pass (a 429, a 503, the site's turn not
    /// come) leaves it unknown, asked at its turn.
    async fn ask_ahead(&mut self, polite: &mut Polite<'_>, site: &Url, canonical: &Url) {
        let target = onboarding::kb::normalize(canonical);
        if !self.asked_ahead.insert(identity(&target))
            || self.budget.exhausted(&self.config.limits).is_some()
        {
            return;
        }
        // No retries in hand: they are kept with a page of the job.
        let report = Box::pin(self.fetch_page(polite, site, target.as_str(), usize::MAX, false));
        let Ok(report) = report.await else {
            return;
        };
        if !self.known.contains_key(&identity(&target)) {
            return;
        }
        if report["status"] != "stored" {
            tracing::info!(job = self.job_id, canonical = %canonical, reason = %report["reason"],
                "a canonical page not stored: the pages naming it are stored at their own address");
        }
        // Under where it ended too (a redirect to a page the queue holds):
        // unless that page's own report is kept already.
        let ended = report["final_url"]
            .as_str()
            .and_then(|u| Url::parse(u).ok())
            .filter(|u| identity(u) != identity(&target));
        if let Some(ended) = ended {
            let asked = onboarding::kb::normalize(&ended).to_string();
            self.ahead
                .entry(identity(&ended))
                .or_insert_with(|| (asked, report.clone()));
        }
        self.ahead
            .insert(identity(&target), (target.to_string(), report));
    }

    /// The page at `target` (frontier page `url`), retrying a 429/503 as
    /// Retry-After says, or the report of a page that could not be had.
    async fn fetch(
        &mut self,
        polite: &mut Polite<'_>,
        site: &Url,
        url: &str,
        target: &Url,
        tries: &mut usize,
    ) -> Result<Result<Page, Value>, Stop> {
        // Identity drops a path's trailing slash: asked with it while the
        // site is known to want it.
        let slashed = slashed(target);
        let guessed = slashed.as_ref().filter(|_| self.slashed_paths);
        let asked = guessed.unwrap_or(target);
        let mut page = self
            .get_waiting(polite, site, url, asked, None, tries)
            .await?;
        match (&page, guessed) {
            // The slashed form guessed failed (a 404, a 403 of a directory,
            // robots.txt disallowing it): the form as listed is asked, and
            // when it answers, the site is no longer taken to want slashes.
            (Err(_), Some(_)) => {
                page = self
                    .get_waiting(polite, site, url, target, None, tries)
                    .await?;
                self.slashed_paths &= page.is_err();
            }
            // A site that answers only the form it linked (`/tarifs/`) gets
            // that one asked as well.
            (Err(FetchError::Status(404, _)), None) => {
                if let Some(slashed) = &slashed {
                    page = self
                        .get_waiting(polite, site, url, slashed, None, tries)
                        .await?;
                }
            }
            _ => {}
        }
        if let Ok(page) = &page {
            // The site's way, told by its first redirect: a slash-less path
            // sent on to its slashed form, or the slashed one sent back.
            let sent_to = page.chain.get(1);
            if sent_to.is_some() && sent_to == slashed.as_ref() {
                self.slashed_paths = true;
            } else if guessed.is_some() && sent_to == Some(target) {
                self.slashed_paths = false;
            }
        }
        match page {
            Ok(page) => Ok(Ok(page)),
            Err(e) => unfetched(e, *tries).map(Err),
        }
    }

    /// `asked` for frontier page `url` (as the next hop of page `from`,
    /// whose meta refresh names it, when given), its 429s and 503s with a
    /// Retry-After waited out ([`Crawl::waited_out`], the page's `tries`).
    async fn get_waiting(
        &mut self,
        polite: &mut Polite<'_>,
        site: &Url,
        url: &str,
        asked: &Url,
        from: Option<&Page>,
        tries: &mut usize,
    ) -> Result<Result<Page, FetchError>, Stop> {
        loop {
            let got = match from {
                Some(from) => polite.refresh(from, asked, site).await,
                None => polite.get(asked, site, Accept::Page).await,
            };
            match &got {
                Err(e) if self.waited_out(url, e, tries).await? => continue,
                _ => return Ok(got),
            }
        }
    }

    /// Whether a page's failure `e` was a 429 or 503 with a Retry-After
    /// waited out here (then the page is asked again, one more of its
    /// `tries`): in hand when short and within the job's time (the site's
    /// gap keeps every crawler away as long: a page given up while the site
    /// is waited for all the same was lost for nothing; the job's lease is
    /// renewed meanwhile), else in the queue (`Stop::Wait`), up to an hour;
    /// a longer one, or one past the retries, fails the page.
    async fn waited_out(
        &mut self,
        url: &str,
        e: &FetchError,
        tries: &mut usize,
    ) -> Result<bool, Stop> {
        let limits = &self.config.limits;
        // The library keeps at most its own count of a page's retries.
        let max_retries = limits
            .retries
            .min(onboarding::kb::MAX_PAGE_RETRIES as usize);
        let &FetchError::Status(429 | 503, Some(wait)) = e else {
            return Ok(false);
        };
        if *tries >= max_retries || wait > limits.max_site_wait {
            return Ok(false);
        }
        if wait > limits.max_retry_after || self.budget.elapsed() + wait > limits.job_time {
            return Err(Stop::Wait(wait, *tries + 1));
        }
        *tries += 1;
        self.keep_retry(url, *tries).await?;
        tokio::time::sleep(wait).await;
        Ok(true)
    }

    /// The report of a fetched page, stored under `identity`, or skipped
    /// with the reason.
    fn report_of(
        &self,
        site: &Url,
        page: &Page,
        extracted: &extract::Extracted,
        identity: &Url,
    ) -> Value {
        // The site's links, each once, at most MAX_LINKS of them: a job
        // stores 50 pages, and a page of 10,000 links must not make a
        // report the library refuses.
        let mut seen = std::collections::HashSet::new();
        let links: Vec<&String> = extracted
            .links
            .iter()
            .filter(|_| !page.nofollow)
            .filter(|l| Url::parse(l).is_ok_and(|u| onboarding::kb::same_site(&u, site)))
            .filter(|l| seen.insert(l.as_str()))
            .take(MAX_LINKS)
            .collect();
        let mut report = json!({"links": links, "final_url": identity.as_str()});
        if let Some(footer) = &extracted.footer {
            report["shared"] = json!([{"title": "Informations pratiques", "markdown": footer}]);
        }
        if extracted.noindex || page.noindex {
            report["status"] = json!("skipped");
            report["reason"] = json!("noindex");
        } else if extracted.script_only {
            report["status"] = json!("skipped");
            report["reason"] = json!("js_required");
        } else if !has_content(extracted) {
            report["status"] = json!("skipped");
            report["reason"] = json!("no_content");
        } else {
            report["status"] = json!("stored");
            // Cut to what the library keeps.
            let title: String = extracted
                .title
                .chars()
                .take(onboarding::kb::MAX_PAGE_TITLE_CHARS)
                .collect();
            report["title"] = json!(title);
            report["markdown"] = json!(extracted.markdown);
        }
        report
    }

    /// Gives the job back to the queue until its site's wait is over; `page`
    /// (url, retries), when the site refused it, is asked again on resuming
    /// and its retries kept. Past the job's waits, the library refuses: the
    /// job finishes with `code` (`timeout`, as at its time limit, or
    /// `robots_unavailable` before robots.txt was read).
    async fn wait_for_site(
        &mut self,
        wait: Duration,
        page: Option<(&str, usize)>,
        code: &'static str,
    ) -> Result<(), String> {
        self.let_go();
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut payload = json!({"job_id": self.job_id, "worker": self.worker, "wait_ms": wait_ms});
        if let Some((url, retries)) = page {
            payload["url"] = json!(url);
            payload["retries"] = json!(retries);
        }
        self.budget.report(&mut payload);
        match sql(self.writer, KbFunction::Release, payload).await {
            Ok(answer) => {
                let job = &answer["released"][0];
                tracing::info!(job = self.job_id, next_attempt_at = %job["next_attempt_at"], "crawl waits for its site");
                Ok(())
            }
            Err(e) if e.contains(": conflict: ") && e.contains("has waited for its site") => {
                tracing::warn!(job = self.job_id, error = %e, "the job cannot wait for its site again");
                self.finish(Some(code)).await
            }
            Err(e) => Err(e),
        }
    }

    /// Stops the job's lease renewals (a renewal after the job is finished
    /// or given back would be refused, and logged as a lease lost) and its
    /// budget's report at a shutdown: the job is about to leave the worker.
    fn let_go(&mut self) {
        self.renewing = None;
        if let Ok(mut budgets) = self.config.budgets.lock() {
            budgets.remove(self.worker);
        }
    }

    async fn finish(&mut self, code: Option<&str>) -> Result<(), String> {
        self.let_go();
        let done = sql(
            self.writer,
            KbFunction::Finish,
            json!({"job_id": self.job_id, "worker": self.worker, "error_code": code}),
        )
        .await?;
        tracing::info!(job = self.job_id, status = %done["job"]["status"], error_code = %done["job"]["error_code"], stored = %done["job"]["pages_stored"], "crawl finished");
        Ok(())
    }
}

/// `target` with a trailing slash, when its path may take one: not the
/// root, not already slashed, not a file's name (`/plaquette.pdf`).
fn slashed(target: &Url) -> Option<Url> {
    let path = target.path();
    let last = path.rsplit('/').next().unwrap_or("");
    if path.len() <= 1 || path.ends_with('/') || last.contains('.') {
        return None;
    }
    let mut slashed = target.clone();
    slashed.set_path(&format!("{path}/"));
    Some(slashed)
}

/// What a page's canonical link names ([`Crawl::canonical_of`]).
enum Canonical {
    /// Nothing the page may be stored under: no link, or one to another
    /// site, disallowed by robots.txt or too long.
    None,
    /// The page itself, in another form.
    Itself(Url),
    /// Another page of the site.
    Other(Url),
}

/// A page a worker asked for and stored ([`Crawl::remember`]).
#[derive(Clone)]
struct Known {
    /// The address it is stored under.
    url: String,
    title: String,
    markdown: String,
}

/// Whether two pages' texts are one text: the same words, each as many
/// times, in any order, but for a tenth of the longer (a list sorted
/// another way, a date or a counter that changes). A list's second page
/// shares its headings with the first, not its items. A link counts by
/// its label and its address's last segment: a list's items link to paths
/// that share the rest.
fn same_text(a: &str, b: &str) -> bool {
    fn words(text: &str) -> HashMap<String, i64> {
        let mut counts = HashMap::new();
        let mut rest = text;
        let mut shown = String::with_capacity(text.len());
        // `[label](target)`: the label is text, and of the target its
        // last segment alone (`/boutique/soins/shampooing`: `shampooing`),
        // which names the item where paths share the rest (and an image's
        // file, where a gallery has no labels).
        while let Some(at) = rest.find("](") {
            shown.push_str(&rest[..at]);
            let target = &rest[at + 2..];
            let Some(end) = target.find(')') else {
                rest = target;
                break;
            };
            let path = target[..end].split(['?', '#']).next().unwrap_or_default();
            shown.push(' ');
            shown.push_str(
                path.trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or_default(),
            );
            shown.push(' ');
            rest = &target[end + 1..];
        }
        shown.push_str(rest);
        for word in shown
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            *counts.entry(word.to_lowercase()).or_insert(0) += 1;
        }
        counts
    }
    if a == b {
        return true;
    }
    let (a, b) = (words(a), words(b));
    let total = |counts: &HashMap<String, i64>| counts.values().sum::<i64>();
    let shared: i64 = a
        .iter()
        .map(|(word, n)| (*n).min(b.get(word).copied().unwrap_or(0)))
        .sum();
    let longer = total(&a).max(total(&b));
    longer > 0 && shared * 10 >= longer * 9
}

/// A page's identity as a key: its normalised URL, the `http` and `https`
/// forms and the `www.` and bare hosts as one (as the library takes them).
fn identity(url: &Url) -> String {
    let mut key = onboarding::kb::normalize(url);
    let _ = key.set_scheme("https");
    if let Some(bare) = key.host_str().and_then(|h| h.strip_prefix("www.")) {
        let bare = bare.to_string();
        let _ = key.set_host(Some(&bare));
    }
    key.to_string()
}

/// The report of a page that could not be had (`e`), or why the job
/// stops; `tries`, the page's retries. Failed: asked, and the answer (or
/// its absence) was wrong; skipped: not asked, or not what the knowledge
/// base keeps (a page whose site's turn never came, `site_busy`, was never
/// asked).
fn unfetched(e: FetchError, tries: usize) -> Result<Value, Stop> {
    match e {
        FetchError::JobTime => Err(Stop::JobTime),
        FetchError::SiteWait(wait) => Err(Stop::Wait(wait, tries)),
        FetchError::Status(..)
        | FetchError::Dns
        | FetchError::Unreachable
        | FetchError::BodyCut
        | FetchError::Timeout => Ok(json!({"status": "failed", "reason": e.reason()})),
        e => Ok(json!({"status": "skipped", "reason": e.reason()})),
    }
}

/// A fetched page's text, links and directives; `None` when the parse
/// itself failed (logged). Parsing a page of up to 2 MiB is CPU work: on
/// the blocking pool, not on the threads that serve HTTP (one, on two
/// cores).
async fn parse(page: Arc<Page>) -> Option<extract::Extracted> {
    let parsed = Arc::clone(&page);
    let extracted = tokio::task::spawn_blocking(move || {
        if parsed.content_type == "text/plain" {
            extract::plain(&parsed.text, &parsed.final_url)
        } else {
            extract::extract(&parsed.text, &parsed.final_url)
        }
    })
    .await;
    match extracted {
        Ok(extracted) => Some(extracted),
        Err(e) => {
            tracing::error!(error = %e, url = %page.final_url, "page extraction failed");
            None
        }
    }
}

/// Whether a page has text of its own to store (not "nearly empty").
fn has_content(extracted: &extract::Extracted) -> bool {
    let text_chars = extracted
        .markdown
        .chars()
        .filter(|c| c.is_alphanumeric())
        .count();
    text_chars >= extract::MIN_TEXT_CHARS
}

/// Where a page's meta refresh sends the crawler: only from a page with no
/// content of its own (one with text is stored as it is, and the page it
/// names, usually linked too, is reached as a link), and not to the page
/// itself (a refresh that reloads it).
fn refresh_target(page: &Page, extracted: &extract::Extracted) -> Option<Url> {
    let next = extracted.refresh.as_ref()?;
    let itself = onboarding::kb::normalize(next) == onboarding::kb::normalize(&page.final_url);
    (!itself && !has_content(extracted)).then(|| next.clone())
}

/// Claims and crawls jobs until none is due (`onboarding-server crawl
/// --once`). Jobs waiting for a backoff are not due: they are left queued.
/// A worker that `recuts` then cuts every document stored by an older
/// chunker again ([`recut`]). `Err` when a call failed (logged): the
/// command then exits with an error, since what it was run for is not done.
pub async fn drain(
    writer: Writer,
    config: Arc<CrawlConfig>,
    name: String,
    recuts: bool,
) -> Result<(), String> {
    register(&config, &name);
    // Bounded: each claim takes a job out of the queue or ends the loop,
    // and a job is claimed at most MAX_ATTEMPTS times plus MAX_SITE_WAITS
    // (a job waiting for its site is not due: it is left queued too).
    let client = match Client::new(&config.user_agent, &config.limits) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "the crawler cannot start");
            return Err(format!("the crawler cannot start: {e}"));
        }
    };
    // A failed claim or crawl ends the jobs, not the recut: the documents
    // cut again do not depend on them.
    let crawled = loop {
        let claimed = sql(
            &writer,
            KbFunction::Claim,
            json!({"worker": name, "lease_seconds": config.lease_seconds}),
        )
        .await;
        let job = match claimed {
            Ok(answer) if answer["job"].is_object() => answer["job"].clone(),
            Ok(_) => break Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "claim failed");
                break Err(format!("a claim failed: {e}"));
            }
        };
        if let Err(e) = crawl_job(&writer, &config, &client, &name, &job).await {
            tracing::warn!(job = job["id"].as_i64(), error = %e, "crawl stopped");
            break Err(format!("the crawl of job {} stopped: {e}", job["id"]));
        }
    };
    if recuts {
        let (_, never) = watch::channel(false);
        if let Err(e) = recut(&writer, usize::MAX, &never).await {
            tracing::warn!(error = %e, "cutting stored documents again failed");
            return crawled.and(Err(format!("cutting stored documents again failed: {e}")));
        }
    }
    crawled
}

#[cfg(test)]
mod tests {
    use super::{identity, same_text};
    use url::Url;

    #[test]
    fn one_text_is_the_same_words_in_any_order_but_for_a_tenth() {
        let list = "# Produits\n\nShampooing 12 euros, masque 20 euros, huile 25 euros.";
        assert!(same_text(list, list));
        assert!(same_text(
            list,
            "# Produits\n\nHuile 25 euros, MASQUE 20 euros, shampooing 12 euros."
        ));
        // A date that changes: one word of twelve.
        let dated = "Promotion du mois de juillet : moins vingt pour cent sur les soins";
        assert!(same_text(
            dated,
            "Promotion du mois de août : moins vingt pour cent sur les soins"
        ));
        // Two words of twelve, or a list's next page: its own items.
        assert!(!same_text(
            dated,
            "Promotion du mois de août : moins trente pour cent sur les soins"
        ));
        assert!(!same_text(
            "# Avis\n\nUn accueil parfait, merci à Léa.",
            "# Avis\n\nDes clientes ravies de leur balayage."
        ));
        // Links count by their labels: items linking to paths that share
        // their words are still other items.
        let page = |items: &[&str]| -> String {
            items
                .iter()
                .map(|i| format!("- [{i}](/boutique/produits/soins/cheveux/{i})\n"))
                .collect()
        };
        assert!(!same_text(
            &page(&["shampooing", "masque", "huile"]),
            &page(&["serum", "baume", "lotion"])
        ));
        assert!(same_text(
            &page(&["shampooing", "masque", "huile"]),
            &page(&["huile", "shampooing", "masque"])
        ));
        // A gallery without labels, by its images' and links' last
        // segments; a bracket left open keeps the rest of the text.
        let gallery = |n: u32| -> String {
            (n..n + 6)
                .map(|i| format!("[![](/img/coupe-{i}.jpg)](/galerie/{i})\n"))
                .collect()
        };
        assert!(!same_text(&gallery(1), &gallery(7)));
        assert!(same_text(&gallery(1), &gallery(1).replace('\n', " ")));
        assert!(!same_text("[a](b c d e f g", "[a](b h i j k l"));
        // A text and none.
        assert!(!same_text(list, ""));
        assert!(!same_text("", "!"));
    }

    #[test]
    fn a_pages_identity_takes_both_schemes_and_the_www_host_as_one() {
        let key = |u: &str| identity(&Url::parse(u).unwrap());
        assert_eq!(
            key("http://www.salon.fr/avis#haut"),
            "https://salon.fr/avis"
        );
        assert_eq!(key("https://salon.fr/avis"), "https://salon.fr/avis");
        assert_eq!(
            key("https://Salon.fr/avis?utm_source=x&b=2&a=1"),
            "https://salon.fr/avis?a=1&b=2"
        );
        assert_ne!(
            key("https://salon.fr/avis?page=2"),
            key("https://salon.fr/avis")
        );
        // One trailing-slash form, as the library's.
        assert_eq!(key("https://salon.fr/avis/"), "https://salon.fr/avis");
    }
}
