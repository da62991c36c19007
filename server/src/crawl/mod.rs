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
//! | `canonical.rs` | `rel=canonical`: the canonical page asked, and trusted only with the same text |
//! | `lease.rs` | a claimed job's lease, renewed on a timer |
//! | `turns.rs` | the sites' turns in the database, shared with other processes' crawlers |
//! | here | the worker loop, politeness, what each page is reported as |

mod canonical;
pub mod extract;
pub mod fetch;
mod lease;
pub mod nesting;
pub mod robots;
mod turns;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onboarding::kb::AllowList;
use serde_json::{json, Value};
use tokio::sync::watch;
use url::Url;

use crate::db::{KbFunction, Query, Writer};
use canonical::{identity, Canonical, Known};
use fetch::{Accept, Client, FetchError, Fetcher, Limits, Page};
use lease::{lease_lost, Lease, LeaseKeeper};
pub use turns::SiteTurns;

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
    /// The wait after a job was given back because its database failed
    /// (a full disk) before the next claim ([`STORAGE_BACKOFF`]).
    pub storage_backoff: Duration,
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
            storage_backoff: STORAGE_BACKOFF,
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
    // Doubled at each crawl its database fails in a row (a disk still
    // full), so that the site is not asked again every 30 s for hours.
    let mut storage_wait = config.storage_backoff;
    while !*stop.borrow() {
        let claimed = sql(
            &writer,
            KbFunction::Claim,
            json!({"worker": name, "lease_seconds": config.lease_seconds}),
        )
        .await;
        match claimed.map(|v| v["job"].clone()) {
            Ok(job) if job.is_object() => {
                let Err(e) = crawl_job(&writer, &config, &client, &name, &job).await else {
                    storage_wait = config.storage_backoff;
                    continue;
                };
                tracing::warn!(job = job["id"].as_i64(), error = %e, "crawl stopped");
                if storage_failed(&e) {
                    give_back(&writer, &config, &name, &job).await;
                    tracing::info!(
                        retry_in_s = storage_wait.as_secs(),
                        "the crawler waits for its database"
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(storage_wait) => {}
                        _ = stop.changed() => {}
                    }
                    storage_wait = (storage_wait * 2).min(MAX_STORAGE_BACKOFF);
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

/// How long a worker waits by default before its next claim after its
/// database failed it (a full disk): the job it gave back, claimed again at
/// once, would fetch pages it cannot store.
pub const STORAGE_BACKOFF: Duration = Duration::from_secs(30);

/// The longest of those waits, the database failing crawl after crawl.
const MAX_STORAGE_BACKOFF: Duration = Duration::from_secs(600);

/// Whether a crawl stopped because its own database failed (SQLite's
/// texts for a full disk, an I/O error, a lock held past the busy timeout,
/// a file it cannot open or write, memory): no failure of the site, which
/// must not spend the job's attempts (each lease run out is one, and the
/// third ends the job `timeout` with its pages never fetched), nor
/// anything a retry on the same state would repeat for ever (a refusal,
/// a lost lease).
fn storage_failed(error: &str) -> bool {
    crate::db::storage_failure(error).is_some()
        || crate::db::sqlite_text(error) == Some("database is locked")
}

/// Gives `job` back, queued again at once with the attempt it was on not
/// counted (as a worker that stops does), after its crawl stopped on a
/// failure of this side ([`storage_failed`]), with what it spent of its
/// budget: a job given back again and again runs out of its 3 minutes as
/// it would crawling. When even that write fails, the lease runs out
/// instead, and the takeover counts an attempt.
async fn give_back(writer: &Writer, config: &CrawlConfig, worker: &str, job: &Value) {
    let mut release = json!({"job_id": job["id"], "worker": worker});
    let spent = config
        .budgets
        .lock()
        .ok()
        .and_then(|mut b| b.remove(worker));
    if let Some((_, budget)) = spent {
        budget.report(&mut release);
    }
    let released = sql(writer, KbFunction::Release, release).await;
    match released {
        Ok(_) => tracing::info!(
            job = job["id"].as_i64(),
            "the job given back, its attempt not counted"
        ),
        Err(e) => {
            tracing::warn!(job = job["id"].as_i64(), error = %e, "the job could not be given back; its lease will run out")
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
        fetcher.set_deadline(turns.deadline);
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
        tracing::info!(
            job = self.job_id,
            url = %site,
            attempt = %job["attempts"],
            pages_found = %job["pages_found"],
            pages_stored = %job["pages_stored"],
            "crawl started"
        );
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
            // A crawl is a minute or more at a page a second: its counters
            // as it goes, one line a page (at most the job's 50).
            let counters = &answer["job"];
            tracing::info!(
                job = self.job_id,
                url = %url,
                status = %answer["status"],
                reason = %answer["reason"],
                found = %counters["pages_found"],
                stored = %counters["pages_stored"],
                skipped = %counters["pages_skipped"],
                failed = %counters["pages_failed"],
                "crawl page"
            );
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
        let job = &done["job"];
        if job["status"] == "queued" {
            // A whole-site failure with attempts left: that attempt ended,
            // not the crawl.
            tracing::info!(job = self.job_id, error_code = %job["error_code"], attempts = %job["attempts"], next_attempt_at = %job["next_attempt_at"], "crawl attempt failed; the job is queued again");
        } else {
            tracing::info!(job = self.job_id, status = %job["status"], error_code = %job["error_code"], stored = %job["pages_stored"], "crawl finished");
        }
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
            if storage_failed(&e) {
                give_back(&writer, &config, &name, &job).await;
            }
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
