//! One page over HTTP, under the public-address rule and the crawl limits.
//!
//! reqwest's resolver hook is not enough on its own: a URL with a literal
//! IP host never reaches the resolver. So every hop is checked here before
//! any connection: the URL against the library's rule, then each address
//! the name resolves to; reqwest is then handed exactly the approved
//! addresses (its resolver answers only from them), redirects are followed
//! here one hop at a time, and the address actually connected to is checked
//! again on the response.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onboarding::kb::{check_parsed, is_public_ip, same_site, site_of, AllowList};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// The crawl limits of the contract; tests shorten the timeouts.
#[derive(Debug, Clone)]
pub struct Limits {
    pub connect: Duration,
    /// The whole response, body included.
    pub response: Duration,
    pub page_bytes: usize,
    pub job_bytes: usize,
    pub job_time: Duration,
    pub redirects: usize,
    /// Between two requests to a site; robots' Crawl-delay may raise it
    /// up to `max_delay`.
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Retries of one page after a 429 or 503.
    pub retries: usize,
    /// The longest Retry-After a page waits for in hand (the job keeps
    /// its worker meanwhile); a longer one puts the job back in the queue
    /// until the site's wait is over.
    pub max_retry_after: Duration,
    /// The longest Retry-After honoured at all (the job waits in the
    /// queue, the site is left alone that long by every crawler); a longer
    /// one fails the page, and the site is left alone this long.
    pub max_site_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connect: Duration::from_secs(5),
            response: Duration::from_secs(15),
            page_bytes: 2 * 1024 * 1024,
            job_bytes: 20 * 1024 * 1024,
            job_time: Duration::from_secs(180),
            redirects: 5,
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(5),
            retries: onboarding::kb::MAX_PAGE_RETRIES as usize,
            max_retry_after: Duration::from_secs(120),
            max_site_wait: Duration::from_millis(onboarding::kb::MAX_SITE_WAIT_MS as u64),
        }
    }
}

/// Why a fetch gave no page; `reason` is what the page is reported with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    Dns,
    Unreachable,
    PrivateAddress,
    Timeout,
    TooLarge,
    TooManyRedirects,
    RedirectLoop,
    /// A redirect out of the site: not followed.
    OffSite,
    Status(u16, Option<Duration>),
    UnsupportedType,
    /// A body in a content coding the client does not decode (it decodes
    /// gzip, deflate and br, which it asks for): bytes, not text.
    UnsupportedEncoding,
    /// A page, or a redirect hop, robots.txt disallows: never asked for.
    RobotsDisallowed,
    /// The connection was made, then the answer broke off: closed before
    /// its head, or in its body (reported as `unreachable` for a page; for
    /// robots.txt, the file is unavailable, not the site unreachable).
    BodyCut,
    /// The site's turn, shared through the database with the crawlers of
    /// other processes, could not be had: never asked for.
    NoTurn,
    /// Waiting for the site's turn would pass the job's time limit: never
    /// asked for, and the job ends (`timeout`) with its pages left unfetched.
    JobTime,
    /// The site asked every crawler to leave it alone (a long Retry-After)
    /// past what the job can wait in hand: never asked for, and the job
    /// waits in the queue that long.
    SiteWait(Duration),
    /// A redirect to what the crawler never asks for whatever its address:
    /// another scheme than http(s) (`ftp:`, `javascript:`), or a URL
    /// carrying credentials.
    UnsupportedUrl,
}

impl FetchError {
    pub fn reason(&self) -> String {
        match self {
            FetchError::Dns => "dns".into(),
            FetchError::Unreachable => "unreachable".into(),
            FetchError::PrivateAddress => "private_address".into(),
            FetchError::Timeout => "timeout".into(),
            FetchError::TooLarge => "too_large".into(),
            FetchError::TooManyRedirects => "too_many_redirects".into(),
            FetchError::RedirectLoop => "redirect_loop".into(),
            FetchError::OffSite => "redirect_off_site".into(),
            FetchError::Status(code, _) => format!("http_{code}"),
            FetchError::UnsupportedType => "unsupported_type".into(),
            FetchError::UnsupportedEncoding => "unsupported_encoding".into(),
            FetchError::RobotsDisallowed => "robots_disallowed".into(),
            FetchError::BodyCut => "unreachable".into(),
            FetchError::NoTurn => "site_busy".into(),
            FetchError::JobTime => "timeout".into(),
            FetchError::SiteWait(_) => "site_wait".into(),
            FetchError::UnsupportedUrl => "unsupported_url".into(),
        }
    }
}

/// A fetched page: where it ended, its decoded text, its size (decoded from
/// gzip, deflate or br: the limits count what the page really is).
#[derive(Debug)]
pub struct Page {
    pub final_url: Url,
    pub content_type: String,
    pub text: String,
    pub bytes: usize,
    /// An `X-Robots-Tag` header for every crawler, or this one, says
    /// `noindex` (or `none`).
    pub noindex: bool,
    /// The page's `X-Robots-Tag` says `nofollow` (or `none`): its links are
    /// not followed.
    pub nofollow: bool,
    /// The URLs asked for the page, in order: the one asked first, then
    /// each redirect hop's (the last is `final_url`). A meta refresh
    /// followed from the page goes on from them ([`Fetcher::refresh_in_turn`]).
    pub chain: Vec<Url>,
}

/// What a request accepts: pages, XML for sitemaps, or anything (robots.txt,
/// parsed whatever type the server gives it, as RFC 9309 reads a 2xx, and
/// whose redirects may leave the site; one past a page's size is read to
/// that size, the rest ignored, as § 2.5 allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    Page,
    Xml,
    Any,
}

/// Names the crawler has resolved and approved, the only answers the
/// resolver hook gives reqwest.
#[derive(Debug, Default, Clone)]
struct Approved(Arc<Mutex<HashMap<String, Vec<SocketAddr>>>>);

impl Resolve for Approved {
    fn resolve(&self, name: Name) -> Resolving {
        let found = self
            .0
            .lock()
            .ok()
            .and_then(|m| m.get(name.as_str()).cloned());
        Box::pin(async move {
            match found {
                Some(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                None => Err("name not approved by the crawl address rule".into()),
            }
        })
    }
}

/// A crawler worker's HTTP client, built once and kept for all its jobs:
/// building one loads and parses the system's root certificates, which cost
/// more than a failed job itself. Its connection pool only ever holds
/// connections to approved addresses. Not `Clone`: each worker has its own,
/// since a job's start forgets the names the previous job approved.
pub struct Client {
    http: reqwest::Client,
    approved: Approved,
}

impl Client {
    pub fn new(user_agent: &str, limits: &Limits) -> Result<Client, String> {
        let approved = Approved::default();
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(limits.connect)
            .timeout(limits.response)
            .dns_resolver(approved.clone())
            .build()
            .map_err(|e| format!("cannot build the crawler's HTTP client: {e}"))?;
        Ok(Client { http, approved })
    }
}

/// Whether robots.txt lets the crawler fetch a URL.
pub type RobotsRule = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A site's turn in this process: when its last request ended, and the gap
/// to keep.
pub type PaceState = (Option<std::time::Instant>, Duration);
type Pace = tokio::sync::Mutex<PaceState>;

/// A boxed future, for [`SharedTurn`]'s methods.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The site's turn shared with the crawlers of other processes (the
/// crawler keeps it in the database): taken before each request, every
/// redirect hop included, and given back once its answer is read, with the
/// gap the next request to the site must keep.
pub trait SharedTurn: Send + Sync {
    fn take<'a>(&'a self, url: &'a Url) -> BoxFuture<'a, Result<(), FetchError>>;
    fn release<'a>(&'a self, url: &'a Url, gap: Duration) -> BoxFuture<'a, ()>;
}

/// What one request of a page's redirect chain led to.
enum Hop {
    Next(Url),
    Page(Page),
}

/// The pace of `site`, shared by the workers of this process: two jobs on
/// one site (two sessions of one business) take turns, one request at a
/// time, the gap kept between them. A site is the crawl scope's
/// ([`site_of`]): `www.` and the bare host, http and https, are one.
fn pace_of(site: &Url, min_delay: Duration) -> Arc<Pace> {
    type Sites = HashMap<(String, Option<u16>), Arc<Pace>>;
    static SITES: Mutex<Option<Sites>> = Mutex::new(None);
    let mut sites = SITES.lock().unwrap_or_else(|p| p.into_inner());
    let sites = sites.get_or_insert_with(HashMap::new);
    // The sites no job holds any more go (bounded by the jobs running).
    sites.retain(|_, pace| Arc::strong_count(pace) > 1);
    Arc::clone(
        sites
            .entry(site_of(site))
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new((None, min_delay)))),
    )
}

pub struct Fetcher {
    client: reqwest::Client,
    approved: Approved,
    allow: AllowList,
    /// Names resolved to these addresses instead of DNS (tests), still
    /// checked by the rule.
    overrides: HashMap<String, Vec<IpAddr>>,
    pub limits: Limits,
    /// When the last request ended and the gap to keep after it: every
    /// request to the site, redirect hops included, waits its turn. Shared
    /// by every job of this process crawling the same site (see [`pace_of`]).
    pace: Arc<Pace>,
    /// The site's robots.txt, once read: a page or redirect hop it
    /// disallows is never asked for.
    robots: std::sync::OnceLock<RobotsRule>,
    /// The site's turn among processes, when the crawler shares one.
    shared: std::sync::OnceLock<Arc<dyn SharedTurn>>,
    /// The job's time limit: no request outlasts it.
    deadline: std::sync::OnceLock<std::time::Instant>,
}

impl Fetcher {
    /// One job's fetcher of `site` on its worker's `client`. The names the
    /// previous job approved are forgotten: every request approves its own
    /// again.
    pub fn new(
        client: &Client,
        site: &Url,
        allow: AllowList,
        overrides: HashMap<String, Vec<IpAddr>>,
        limits: Limits,
    ) -> Fetcher {
        if let Ok(mut map) = client.approved.0.lock() {
            map.clear();
        }
        let pace = pace_of(site, limits.min_delay);
        Fetcher {
            client: client.http.clone(),
            approved: client.approved.clone(),
            allow,
            overrides,
            limits,
            pace,
            robots: std::sync::OnceLock::new(),
            shared: std::sync::OnceLock::new(),
            deadline: std::sync::OnceLock::new(),
        }
    }

    /// A request's time out: the job's (`JobTime`: the page stays to be
    /// asked, the job ends `timeout`) once its limit has passed, else the
    /// page's 15 s.
    fn timed_out(&self) -> FetchError {
        match self.deadline.get() {
            Some(deadline) if std::time::Instant::now() >= *deadline => FetchError::JobTime,
            _ => FetchError::Timeout,
        }
    }

    /// The job's time limit: a request is given at most what is left of it
    /// (a page asked 170 s into the job has 10 s, not its 15), so that the
    /// job ends within its 3 minutes, not one response past them.
    pub fn set_deadline(&self, deadline: std::time::Instant) {
        let _ = self.deadline.set(deadline);
    }

    /// The rule of the site's robots.txt, for every later page request and
    /// its redirects.
    pub fn set_robots(&self, allowed: RobotsRule) {
        let _ = self.robots.set(allowed);
    }

    /// Checks `url` and the addresses its host resolves to; on success the
    /// resolver hook may hand them to reqwest.
    async fn approve(&self, url: &Url) -> Result<(), FetchError> {
        check_parsed(url, &self.allow).map_err(|_| FetchError::PrivateAddress)?;
        let Some(url::Host::Domain(name)) = url.host() else {
            return Ok(()); // a literal address: checked by the rule above
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<SocketAddr> = match self.overrides.get(name) {
            Some(ips) => ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect(),
            // Bounded like a connection: a turn of the site is held meanwhile.
            None => {
                tokio::time::timeout(self.limits.connect, tokio::net::lookup_host((name, port)))
                    .await
                    .map_err(|_| FetchError::Dns)?
                    .map_err(|_| FetchError::Dns)?
                    .collect()
            }
        };
        if addrs.is_empty() {
            return Err(FetchError::Dns);
        }
        // Every address must pass: the client may connect to any of them.
        if !self.allow.allows(url) && addrs.iter().any(|a| !is_public_ip(a.ip())) {
            return Err(FetchError::PrivateAddress);
        }
        if let Ok(mut map) = self.approved.0.lock() {
            map.insert(name.to_string(), addrs);
        }
        Ok(())
    }

    /// Every request also takes `turn`, shared with other processes.
    pub fn share_turn(&self, turn: Arc<dyn SharedTurn>) {
        let _ = self.shared.set(turn);
    }

    /// The longest a request holds the site's turn: the name's resolution,
    /// the gap kept before it, the whole response, the next hop's
    /// resolution, and 5 s to spare.
    pub fn turn_hold(limits: &Limits) -> Duration {
        limits.connect * 2 + limits.max_delay + limits.response + Duration::from_secs(5)
    }

    /// The gap kept between two requests (robots' Crawl-delay).
    pub async fn set_delay(&self, delay: Duration) {
        self.pace.lock().await.1 = delay;
    }

    /// One request, no redirect followed, after the site's delay; the
    /// caller holds the site's turn (`pace`).
    ///
    /// `bounded`: the request ends with the job's time (see
    /// [`Fetcher::set_deadline`]). robots.txt is not: it keeps its 15 s, as
    /// a job resumed near its limit read it before, its time then ending
    /// the job `timeout` at the first page; cut short, it would be the
    /// file's failure (`robots_unavailable`), and the job queued again.
    async fn once(
        &self,
        url: &Url,
        pace: &mut PaceState,
        bounded: bool,
    ) -> Result<reqwest::Response, FetchError> {
        self.approve(url).await?;
        if let Some(last) = pace.0 {
            tokio::time::sleep_until((last + pace.1).into()).await;
        }
        let mut request = self.client.get(url.clone());
        if let Some(deadline) = self.deadline.get().filter(|_| bounded) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(FetchError::JobTime);
            }
            if left < self.limits.response {
                request = request.timeout(left);
            }
        }
        let sent = request.send().await;
        pace.0 = Some(std::time::Instant::now());
        // A connection that never came within the connect limit (its SYNs
        // dropped, as a firewall does) is the site's being unreachable, as
        // a refused one; only the response limit's timeout is the page's. A
        // connection made and closed before the answer's head is the answer
        // broken off, as one whose body breaks off.
        let response = sent.map_err(|e| {
            if e.is_connect() {
                FetchError::Unreachable
            } else if e.is_timeout() {
                self.timed_out()
            } else if e.is_request() {
                FetchError::BodyCut
            } else {
                FetchError::Unreachable
            }
        })?;
        let connected = response.remote_addr().map(|a| a.ip());
        if !self.allow.allows(url) && connected.is_some_and(|ip| !is_public_ip(ip)) {
            return Err(FetchError::PrivateAddress);
        }
        Ok(response)
    }

    /// Whether robots.txt lets the crawler ask for `url` (only pages are
    /// checked: robots.txt itself and sitemaps are always asked).
    pub fn may_ask(&self, url: &Url, accept: Accept) -> bool {
        accept != Accept::Page || self.robots_allow(url)
    }

    /// Waits for the site's turn among this process's jobs; held until the
    /// guard drops.
    pub async fn turn(&self) -> tokio::sync::MutexGuard<'_, PaceState> {
        self.pace.lock().await
    }

    /// `url`, following at most `limits.redirects` redirects inside the
    /// site of `site`, and its body if it is of an accepted type and size,
    /// for a caller holding the site's turn (`pace`, from [`Fetcher::turn`])
    /// from the first request to the body's end, and having checked
    /// [`Fetcher::may_ask`]: one request at a time, and a page robots.txt
    /// disallows never asked for.
    ///
    /// `spent` counts the bytes the job has read, which this read adds to
    /// as they arrive: a page is refused (`TooLarge`) the moment the job
    /// passes its `limits.job_bytes`, and a page refused past its own
    /// limit still counts what was read of it.
    pub async fn get_in_turn(
        &self,
        url: &Url,
        site: &Url,
        accept: Accept,
        pace: &mut PaceState,
        spent: &AtomicU64,
    ) -> Result<Page, FetchError> {
        let result = self.follow(url, site, accept, pace, spent, &[]).await;
        pace.0 = Some(std::time::Instant::now());
        result
    }

    /// `url`, named by the meta refresh of page `from`, as the next hop of
    /// `from`'s redirects: checked as a redirect's target is (public
    /// addresses, the site, robots.txt, no URL of the chain again), its
    /// own redirects counted with the chain's toward `limits.redirects`.
    /// A page's chain of redirects and refreshes together is thus at most
    /// 5 hops, and a refresh back to a page of it is a `RedirectLoop`. For
    /// a caller holding the site's turn, as [`Fetcher::get_in_turn`].
    pub async fn refresh_in_turn(
        &self,
        from: &Page,
        url: &Url,
        site: &Url,
        pace: &mut PaceState,
        spent: &AtomicU64,
    ) -> Result<Page, FetchError> {
        self.check_hop(url, site, &from.chain, false).await?;
        let result = self
            .follow(url, site, Accept::Page, pace, spent, &from.chain)
            .await;
        pace.0 = Some(std::time::Instant::now());
        result
    }

    /// Whether robots.txt, once read, lets the crawler ask for `url`.
    fn robots_allow(&self, url: &Url) -> bool {
        self.robots
            .get()
            .is_none_or(|allowed| allowed(url.as_str()))
    }

    /// `url` and its redirects, after the hops of `before` (the chain of a
    /// page whose meta refresh led to `url`; empty for a page asked).
    async fn follow(
        &self,
        url: &Url,
        site: &Url,
        accept: Accept,
        pace: &mut PaceState,
        spent: &AtomicU64,
        before: &[Url],
    ) -> Result<Page, FetchError> {
        let mut current = url.clone();
        let mut seen = before.to_vec();
        seen.push(current.clone());
        // `before` took that many hops of the page's redirects.
        for _ in before.len()..=self.limits.redirects {
            // A robots.txt redirected off the site: its one request there
            // takes no turn of that host (whose waits and gaps are no job's
            // of this site; see `hop` for its failures).
            let shared = self.shared.get().filter(|_| same_site(&current, site));
            if let Some(turn) = shared {
                turn.take(&current).await?;
            }
            let hop = self
                .hop(&current, site, accept, &mut seen, pace, spent)
                .await;
            if let Some(turn) = shared {
                // A site that asked to wait (429, 503 with Retry-After) is
                // left alone that long by every crawler, up to an hour: a
                // job that meets the gap and cannot wait it out in hand
                // waits in the queue (`SiteWait`), whatever its tenant.
                let gap = match &hop {
                    Err(FetchError::Status(429 | 503, Some(wait))) => {
                        pace.1.max((*wait).min(self.limits.max_site_wait))
                    }
                    // robots.txt just read: its Crawl-delay holds from now.
                    Ok(Hop::Page(page)) if current.path() == "/robots.txt" => {
                        super::robots::delay_of(
                            &page.text,
                            self.limits.min_delay,
                            self.limits.max_delay,
                        )
                    }
                    _ => pace.1,
                };
                turn.release(&current, gap).await;
            }
            match hop? {
                Hop::Next(next) => current = next,
                Hop::Page(mut page) => {
                    page.chain = seen;
                    return Ok(page);
                }
            }
        }
        Err(FetchError::TooManyRedirects)
    }

    /// One request of the chain: the next URL of a redirect (checked), or
    /// the page.
    async fn hop(
        &self,
        current: &Url,
        site: &Url,
        accept: Accept,
        seen: &mut Vec<Url>,
        pace: &mut PaceState,
        spent: &AtomicU64,
    ) -> Result<Hop, FetchError> {
        let response = match self.once(current, pace, accept != Accept::Any).await {
            // A robots.txt redirected off the site that cannot be had there
            // is the file's being unavailable, not the site's being
            // unreachable or private: its own request answered.
            Err(FetchError::Dns | FetchError::Unreachable | FetchError::PrivateAddress)
                if !same_site(current, site) =>
            {
                return Err(FetchError::OffSite)
            }
            response => response?,
        };
        let status = response.status();
        if status.is_redirection() {
            let next = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| current.join(l).ok())
                .ok_or(FetchError::Status(status.as_u16(), None))?;
            // robots.txt's redirects may leave the site: RFC 9309
            // (2.3.1.2) asks crawlers to follow them "even across
            // authorities", its rules holding for the site asked (a site
            // moved to another domain answers its robots.txt from there).
            let any_site = accept == Accept::Any;
            self.check_hop(&next, site, seen, any_site).await?;
            seen.push(next.clone());
            return Ok(Hop::Next(next));
        }
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16(), retry_after(&response)));
        }
        Ok(Hop::Page(
            self.body(current.clone(), response, accept, spent).await?,
        ))
    }

    /// Whether a redirect (or a meta refresh) from the chain `seen` may go
    /// on to `next`: on the site of `site` unless `any_site` (robots.txt's
    /// own redirects), at a public address whatever the site.
    async fn check_hop(
        &self,
        next: &Url,
        site: &Url,
        seen: &[Url],
        any_site: bool,
    ) -> Result<(), FetchError> {
        let off_site = !same_site(next, site);
        // A robots.txt's redirect off the site is checked by its own
        // request, as every request is, where a failure is the file's
        // being unavailable (see `hop`).
        if !(any_site && off_site) {
            // The address rule as written first: a redirect to a private
            // address (a literal, `localhost`) is reported as such even
            // when it also leaves the site. Then the site, before any name
            // is looked up: an off-site host is never resolved (nor
            // reported as a DNS failure when it does not resolve here).
            // Before both, what is never asked whatever its address (it
            // was reported `private_address`).
            let http = matches!(next.scheme(), "http" | "https");
            if !http || !next.username().is_empty() || next.password().is_some() {
                return Err(FetchError::UnsupportedUrl);
            }
            check_parsed(next, &self.allow).map_err(|_| FetchError::PrivateAddress)?;
            if off_site {
                return Err(FetchError::OffSite);
            }
            self.approve(next).await?;
        }
        if !self.robots_allow(next) {
            return Err(FetchError::RobotsDisallowed);
        }
        if seen.contains(next) {
            return Err(FetchError::RedirectLoop);
        }
        Ok(())
    }

    async fn body(
        &self,
        url: Url,
        mut response: reqwest::Response,
        accept: Accept,
        spent: &AtomicU64,
    ) -> Result<Page, FetchError> {
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let mime = content_type.split(';').next().unwrap_or("").trim();
        // No type at all: a page is sniffed once read (RFC 9110 § 8.3 lets
        // a recipient look at the data), as browsers show such pages.
        let sniff = mime.is_empty() && accept == Accept::Page;
        let accepted = sniff
            || match accept {
                Accept::Page => {
                    ["text/html", "application/xhtml+xml", "text/plain"].contains(&mime)
                }
                Accept::Xml => {
                    mime.ends_with("/xml")
                        || mime.ends_with("+xml")
                        || mime == "text/plain"
                        || GZIP_TYPES.contains(&mime)
                        || (mime == "application/octet-stream" && url.path().ends_with(".gz"))
                }
                Accept::Any => true,
            };
        if !accepted {
            return Err(FetchError::UnsupportedType);
        }
        // The client decodes the codings it asked for and then drops the
        // header: one still there (`compress`, `zstd`, sent unasked) would
        // be stored as binary.
        if response
            .headers()
            .get(reqwest::header::CONTENT_ENCODING)
            .is_some_and(|coding| !coding.as_bytes().eq_ignore_ascii_case(b"identity"))
        {
            return Err(FetchError::UnsupportedEncoding);
        }
        let robots_tags: Vec<&str> = response
            .headers()
            .get_all("x-robots-tag")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let noindex = robots_tags.iter().any(|v| x_robots_noindex(v));
        let nofollow = robots_tags.iter().any(|v| x_robots_nofollow(v));
        if accept == Accept::Page
            && response
                .content_length()
                .is_some_and(|n| n as usize > self.limits.page_bytes)
        {
            return Err(FetchError::TooLarge);
        }
        let mut bytes = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    // A robots.txt past a page's size: its first 2 MiB
                    // (RFC 9309 § 2.5 asks at least 500 KiB be parsed),
                    // up to its last whole line, the rest unread. Refused
                    // whole, it kept the site from ever being crawled. A
                    // sitemap likewise (the protocol allows 50 MiB), to its
                    // first 512 KiB: thousands of entries, for a job's 50
                    // pages (its parser stops at the entry cut in half),
                    // where ten sitemaps read to 2 MiB each would take the
                    // whole job's 20 MiB.
                    let cut_at = match accept {
                        Accept::Xml => SITEMAP_BYTES.min(self.limits.page_bytes),
                        _ => self.limits.page_bytes,
                    };
                    if accept != Accept::Page && bytes.len() + chunk.len() > cut_at {
                        let room = cut_at - bytes.len();
                        bytes.extend_from_slice(&chunk[..room]);
                        // Received whole, counted whole.
                        spent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        if accept == Accept::Any {
                            // A line ends with LF, CR LF or CR alone (RFC 9309).
                            let whole = bytes
                                .iter()
                                .rposition(|&b| b == b'\n' || b == b'\r')
                                .map_or(0, |n| n + 1);
                            bytes.truncate(whole);
                        }
                        break;
                    }
                    bytes.extend_from_slice(&chunk);
                    let job =
                        spent.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
                    // The page that takes the job past its size is not
                    // read further, nor stored: the job keeps within its
                    // 20 MiB (the next page's turn ends it, `too_large`).
                    let past_job = accept == Accept::Page && job > self.limits.job_bytes as u64;
                    if bytes.len() > self.limits.page_bytes || past_job {
                        return Err(FetchError::TooLarge);
                    }
                }
                Ok(None) => break,
                Err(e) if e.is_timeout() => return Err(self.timed_out()),
                Err(_) => return Err(FetchError::BodyCut),
            }
        }
        // A gzipped sitemap (`sitemap.xml.gz`, the sitemaps protocol's
        // form for large ones): inflated, its first 2 MiB (a gzip bomb
        // stops there), as much as a file cut at `SITEMAP_BYTES` gives.
        // The page's size counts the bytes received.
        let received = bytes.len();
        if accept == Accept::Xml && bytes.starts_with(&[0x1f, 0x8b]) {
            bytes = inflate(&bytes, self.limits.page_bytes)?;
        }
        // Whatever its type says, a body of binary data is no page (its
        // decoded text would be stored as replacement characters).
        let encoding = encoding_of(&bytes, &content_type, accept);
        if accept != Accept::Any && is_binary(&bytes, encoding) {
            return Err(FetchError::UnsupportedType);
        }
        let text = encoding.decode(&bytes).0.into_owned();
        let mime = match sniff {
            false => mime,
            true if looks_like_html(&text) => "text/html",
            true => return Err(FetchError::UnsupportedType),
        };
        Ok(Page {
            final_url: url,
            content_type: mime.to_string(),
            text,
            bytes: received,
            noindex,
            nofollow,
            chain: Vec::new(),
        })
    }
}

/// How much of a sitemap is read, gzipped or not (see `get_in_turn`).
const SITEMAP_BYTES: usize = 512 * 1024;

/// The types a gzipped sitemap is served with.
const GZIP_TYPES: [&str; 3] = [
    "application/gzip",
    "application/x-gzip",
    "application/gzip-compressed",
];

/// A gzip file's content, its first `limit` bytes: a sitemap's entries
/// are read from its start, and the parser stops at one cut in half. A
/// file cut short (at the page's limit) gives what it inflates to; one
/// that inflates to nothing is no sitemap (`UnsupportedType`).
fn inflate(gzip: &[u8], limit: usize) -> Result<Vec<u8>, FetchError> {
    use std::io::Read;
    let mut out = Vec::new();
    let read = flate2::read::MultiGzDecoder::new(gzip)
        .take(limit as u64)
        .read_to_end(&mut out);
    match read {
        Ok(_) => Ok(out),
        Err(_) if !out.is_empty() => Ok(out),
        Err(_) => Err(FetchError::UnsupportedType),
    }
}

/// Whether a body holds binary data, looking where a browser sniffing it
/// looks (its first 1,445 bytes) for the WHATWG MIME Sniffing standard's
/// "binary data bytes" (the control bytes but tab, line feed, form feed,
/// carriage return and escape): a zero byte, or one in twenty of them.
/// A stray control character a page carries (a vertical tab pasted from a
/// word processor) leaves it a page. UTF-16 text, however labelled, is
/// full of zero bytes and is not binary; `encoding` is the one the body
/// is read with ([`encoding_of`]).
fn is_binary(bytes: &[u8], encoding: &'static encoding_rs::Encoding) -> bool {
    if encoding == encoding_rs::UTF_16LE || encoding == encoding_rs::UTF_16BE {
        return false;
    }
    let head = &bytes[..bytes.len().min(1445)];
    let binary = head
        .iter()
        .filter(|&&b| matches!(b, 0x00..=0x08 | 0x0B | 0x0E..=0x1A | 0x1C..=0x1F))
        .count();
    head.contains(&0) || (binary > 0 && binary * 20 >= head.len())
}

/// Whether a body sent without a type is HTML: its first tag, after
/// white space, a byte-order mark or comments, is one an HTML page starts
/// with (the WHATWG sniffing rule's tags, the common ones).
fn looks_like_html(text: &str) -> bool {
    let head: String = text
        .trim_start_matches(['\u{feff}', ' ', '\t', '\r', '\n'])
        .chars()
        .take(64)
        .collect::<String>()
        .to_ascii_lowercase();
    [
        "<!doctype html",
        "<html",
        "<head",
        "<body",
        "<!--",
        "<title",
        "<meta",
        "<div",
        "<p>",
        "<h1",
    ]
    .iter()
    .any(|tag| head.starts_with(tag))
}

/// Retry-After in seconds or as an HTTP date (RFC 9110 § 10.2.3); a date
/// in the past is no wait.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    match value.parse::<u64>() {
        Ok(seconds) => Some(Duration::from_secs(seconds)),
        Err(_) => httpdate::parse_http_date(value).ok().map(|at| {
            at.duration_since(std::time::SystemTime::now())
                .unwrap_or(Duration::ZERO)
        }),
    }
}

/// Directives of `X-Robots-Tag` that take a value after a colon: a name
/// before a colon that is none of these is a crawler's.
const VALUED_DIRECTIVES: [&str; 4] = [
    "max-snippet",
    "max-image-preview",
    "max-video-preview",
    "unavailable_after",
];

/// Whether one `X-Robots-Tag` value forbids indexing to this crawler: its
/// directives apply to every crawler, or follow a `name:` that is this
/// crawler's (`googlebot: noindex` is Google's alone).
pub fn x_robots_noindex(value: &str) -> bool {
    x_robots_says(value, "noindex")
}

/// Whether one `X-Robots-Tag` value forbids this crawler to follow the
/// page's links, as [`x_robots_noindex`] reads it.
pub fn x_robots_nofollow(value: &str) -> bool {
    x_robots_says(value, "nofollow")
}

/// Whether `value` holds `directive` (or `none`, which is both) for this
/// crawler.
fn x_robots_says(value: &str, directive: &str) -> bool {
    let value = value.to_ascii_lowercase();
    let mut directives: Vec<&str> = value.split(',').map(str::trim).collect();
    let mut ours = true;
    if let Some((name, rest)) = directives.first().and_then(|d| d.split_once(':')) {
        let name = name.trim();
        if !VALUED_DIRECTIVES.contains(&name) {
            ours = name == super::robots::ROBOTS_TOKEN;
            directives[0] = rest.trim();
        }
    }
    ours && directives.iter().any(|d| *d == directive || *d == "none")
}

/// The encoding a body is read with: the charset of the Content-Type
/// header, else a BOM, else a `<meta charset>` in the first 1,024 bytes,
/// else, for a page, what its bytes look like ([`undeclared`]); robots.txt
/// and sitemaps are UTF-8 by their protocols (RFC 9309, sitemaps.org), a
/// stray byte in them never a reason to read their rules as another text.
///
/// A page declared UTF-8 (by its header or its meta, not by a BOM) whose
/// bytes say windows-1252 ([`undeclared`]: more invalid sequences than
/// characters past ASCII) is read as windows-1252: a server's default
/// `charset=utf-8` over pages saved as Latin-1 is common in France, and
/// read as declared, every accented word was stored with U+FFFD
/// ("Fen\u{fffd}tre") and never found. A browser shows it garbled; a
/// crawler storing what the page says does better to read it.
fn encoding_of(bytes: &[u8], content_type: &str, accept: Accept) -> &'static encoding_rs::Encoding {
    let label = |text: &str| -> Option<&'static encoding_rs::Encoding> {
        let at = text.find("charset=")? + "charset=".len();
        let rest = text[at..].trim_start_matches(['"', '\'']);
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
            .unwrap_or(rest.len());
        encoding_rs::Encoding::for_label(&rest.as_bytes()[..end])
    };
    let head = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).to_ascii_lowercase();
    let bom = encoding_rs::Encoding::for_bom(bytes).map(|(e, _)| e);
    let declared = label(content_type).or(bom).or_else(|| label(&head));
    match (declared, accept) {
        (Some(utf8), Accept::Page) if utf8 == encoding_rs::UTF_8 && bom.is_none() => {
            undeclared(bytes)
        }
        (Some(encoding), _) => encoding,
        (None, Accept::Page) => undeclared(bytes),
        (None, Accept::Xml | Accept::Any) => encoding_rs::UTF_8,
    }
}

/// A page that declares no charset is read as browsers read it: the WHATWG
/// Encoding standard's fallback for a French (or any Western) locale is
/// windows-1252, and an older site saved as Latin-1 declares nothing. Read
/// as UTF-8, its accents were stored as U+FFFD ("R\u{fffd}servez") and
/// its words never matched a caller's. But UTF-8 read as windows-1252
/// turns every "é" into "Ã©": a page with at least as many UTF-8
/// characters past ASCII as invalid sequences (an excerpt cut in the
/// middle of a character) stays UTF-8. A windows-1252 text's accents are invalid sequences, and next to
/// never form valid ones.
fn undeclared(bytes: &[u8]) -> &'static encoding_rs::Encoding {
    // Valid UTF-8 (most pages, each declared UTF-8 one passing here too):
    // no invalid sequence to count, and no character to count against.
    if std::str::from_utf8(bytes).is_ok() {
        return encoding_rs::UTF_8;
    }
    let (mut characters, mut invalid) = (0usize, 0usize);
    for chunk in bytes.utf8_chunks() {
        characters += chunk.valid().chars().filter(|c| !c.is_ascii()).count();
        invalid += usize::from(!chunk.invalid().is_empty());
    }
    if characters >= invalid {
        encoding_rs::UTF_8
    } else {
        encoding_rs::WINDOWS_1252
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x_robots_tag_applies_to_every_crawler_or_to_this_one() {
        for (value, noindex, nofollow) in [
            ("noindex", true, false),
            ("NoIndex, nofollow", true, true),
            ("none", true, true),
            ("nofollow", false, true),
            ("googlebot: noindex", false, false),
            ("onboarding-kb-crawler: noindex", true, false),
            ("onboarding-kb-crawler: nofollow", false, true),
            ("unavailable_after: 25 Jun 2010 15:00:00 PST", false, false),
            (
                "noindex, unavailable_after: 25 Jun 2010 15:00:00 PST",
                true,
                false,
            ),
            ("max-snippet: -1, noindex", true, false),
            ("googlebot: noindex, nofollow", false, false),
            ("", false, false),
        ] {
            assert_eq!(
                (x_robots_noindex(value), x_robots_nofollow(value)),
                (noindex, nofollow),
                "{value:?}"
            );
        }
    }

    #[test]
    fn http_and_https_www_and_bare_host_share_one_turn() {
        let url = |u: &str| Url::parse(u).unwrap();
        let min = Duration::from_secs(1);
        let a = pace_of(&url("http://salon.fr/"), min);
        assert!(Arc::ptr_eq(
            &a,
            &pace_of(&url("https://www.salon.fr/tarifs"), min)
        ));
        assert!(!Arc::ptr_eq(
            &a,
            &pace_of(&url("http://salon.fr:8080/"), min)
        ));
        assert!(!Arc::ptr_eq(&a, &pace_of(&url("http://autre.fr/"), min)));
    }

    /// Answers each of `answers` (head, body) to one connection in turn on
    /// a loopback port, and hands back what each request's head said.
    fn one_shot_server(
        answers: Vec<(String, Vec<u8>)>,
    ) -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let thread = std::thread::spawn(move || {
            let mut heads = Vec::new();
            for (head, body) in answers {
                let (mut stream, _) = listener.accept().unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buf).unwrap();
                    assert!(n > 0, "the client closed before its head's end");
                    request.extend_from_slice(&buf[..n]);
                }
                heads.push(String::from_utf8_lossy(&request).to_ascii_lowercase());
                let head = format!(
                    "HTTP/1.1 200 OK\r\n{head}content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(&body).unwrap();
            }
            heads
        });
        (addr, thread)
    }

    /// A fetcher with the default limits for the site a test serves on
    /// `addr`, and that site's root.
    fn loopback_fetcher(addr: SocketAddr) -> (Fetcher, Url) {
        loopback_fetcher_with(addr, Limits::default())
    }

    /// The same with `limits`.
    fn loopback_fetcher_with(addr: SocketAddr, limits: Limits) -> (Fetcher, Url) {
        let client = Client::new("test", &limits).unwrap();
        let site = Url::parse(&format!("http://{addr}/")).unwrap();
        let allow = AllowList::parse(&[addr.to_string()]).unwrap();
        let fetcher = Fetcher::new(&client, &site, allow, HashMap::new(), limits);
        (fetcher, site)
    }

    /// Pages counted against the job's bytes as they arrive: one past its
    /// own limit, sent without a length (read up to the limit, then
    /// refused), counts what was read of it, which a job of such pages
    /// counted as nothing; one that takes the job past its size is not
    /// read to its end.
    #[tokio::test]
    async fn the_bytes_of_a_page_count_as_they_arrive() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for body_len in [30_000, 8_000] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut head = [0u8; 2048];
                let _ = std::io::Read::read(&mut stream, &mut head);
                // No length: the body runs to the connection's end.
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nconnection: close\r\n\r\n",
                );
                for _ in 0..body_len / 1_000 {
                    let _ = stream.write_all(&[b'a'; 1_000]);
                    let _ = stream.flush();
                }
            }
        });
        let limits = Limits {
            page_bytes: 10_000,
            job_bytes: 25_000,
            ..Limits::default()
        };
        let (fetcher, site) = loopback_fetcher_with(addr, limits);
        let mut pace = fetcher.turn().await;
        let url = site.join("/grand").unwrap();
        // The job's bytes before each page, and what they may be after it:
        // the 30,000-byte page read past 10,000 and counted; then, 20,000
        // spent, the 8,000 bytes of the next page pass 25,000.
        for (before, after) in [(0, 10_001..=30_000), (20_000, 25_001..=28_000)] {
            let spent = AtomicU64::new(before);
            assert_eq!(
                fetcher
                    .get_in_turn(&url, &site, Accept::Page, &mut pace, &spent)
                    .await
                    .err(),
                Some(FetchError::TooLarge)
            );
            let read = spent.load(Ordering::Relaxed);
            assert!(after.contains(&read), "{before}: {read}");
        }
    }

    /// The page at `path` of `site`, in the turn `pace`.
    async fn get(
        fetcher: &Fetcher,
        site: &Url,
        path: &str,
        pace: &mut PaceState,
    ) -> Result<Page, FetchError> {
        let url = site.join(path).unwrap();
        fetcher
            .get_in_turn(&url, site, Accept::Page, pace, &AtomicU64::new(0))
            .await
    }

    /// A redirect to another scheme or to a URL with credentials is never
    /// followed, whatever its address, and is said so (`unsupported_url`),
    /// not `private_address`, which stays a private address's.
    #[tokio::test]
    async fn a_redirect_to_another_scheme_or_credentials_is_an_unsupported_url() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let targets = [
            "ftp://127.0.0.1/x".to_string(),
            "javascript:alert(1)".to_string(),
            format!("http://user:secret@{addr}/y"),
            "http://10.0.0.1/z".to_string(),
        ];
        let answers = targets.clone();
        let server = std::thread::spawn(move || {
            for target in answers {
                let (mut stream, _) = listener.accept().unwrap();
                let mut head = [0u8; 2048];
                let _ = std::io::Read::read(&mut stream, &mut head);
                let answer = format!(
                    "HTTP/1.1 302 Found\r\nlocation: {target}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        let (fetcher, site) = loopback_fetcher(addr);
        let mut pace = fetcher.turn().await;
        let mut seen = Vec::new();
        for _ in &targets {
            seen.push(get(&fetcher, &site, "/", &mut pace).await.err());
        }
        assert_eq!(
            seen,
            [
                Some(FetchError::UnsupportedUrl),
                Some(FetchError::UnsupportedUrl),
                Some(FetchError::UnsupportedUrl),
                Some(FetchError::PrivateAddress),
            ]
        );
        assert_eq!(FetchError::UnsupportedUrl.reason(), "unsupported_url");
        drop(pace);
        server.join().unwrap();
    }

    /// A page asked near the job's end is given what is left of the job's
    /// time, not its own 15 s: one whose body trickles past the job's end
    /// stops there (`JobTime`: the job ends `timeout`, the page left to be
    /// asked), and one asked once the time is up is not asked at all.
    #[tokio::test]
    async fn a_request_never_outlasts_the_jobs_time() {
        use std::io::Write;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = [0u8; 2048];
            let _ = std::io::Read::read(&mut stream, &mut head);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 100\r\n\r\n<p>",
            );
            // The rest of the body never comes while the test runs.
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = std::io::Read::read(&mut stream, &mut head);
        });
        let (fetcher, site) = loopback_fetcher(addr);
        let started = std::time::Instant::now();
        fetcher.set_deadline(started + Duration::from_millis(300));
        let mut pace = fetcher.turn().await;
        assert_eq!(
            get(&fetcher, &site, "/", &mut pace).await.err(),
            Some(FetchError::JobTime)
        );
        // Stopped at the job's end, far from the page's 15 s.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        // Asked past it: refused before any request.
        assert_eq!(
            get(&fetcher, &site, "/other", &mut pace).await.err(),
            Some(FetchError::JobTime)
        );
        drop(pace);
        server.join().unwrap();
    }

    /// A site whose connection never comes (its listen queue full: the
    /// kernel drops the SYNs, as a firewall does) is unreachable after the
    /// connect limit, as one refusing it; one that connects and never
    /// answers runs out the response limit, the page's `timeout`; one that
    /// connects and closes before its answer's head broke the answer off
    /// (`BodyCut`: for robots.txt, the file unavailable, not the site
    /// unreachable).
    #[tokio::test]
    async fn a_connection_that_never_comes_is_unreachable_an_answer_that_never_comes_a_timeout() {
        let limits = Limits {
            connect: Duration::from_millis(500),
            response: Duration::from_millis(1500),
            ..Limits::default()
        };
        let fetch = |addr: SocketAddr| {
            let (fetcher, site) = loopback_fetcher_with(addr, limits.clone());
            async move {
                let mut pace = fetcher.turn().await;
                get(&fetcher, &site, "/", &mut pace).await.err()
            }
        };
        // A backlog of 0 queues one connection, never accepted; the next
        // connections' SYNs are dropped.
        let full = tokio::net::TcpSocket::new_v4().unwrap();
        full.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let full = full.listen(0).unwrap();
        let addr = full.local_addr().unwrap();
        let mut queued = Vec::new();
        for _ in 0..2 {
            if let Ok(Ok(stream)) = tokio::time::timeout(
                Duration::from_millis(300),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            {
                queued.push(stream);
            }
        }
        assert_eq!(fetch(addr).await, Some(FetchError::Unreachable));
        // Refused: nothing listens on the port.
        let refused = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert_eq!(fetch(refused).await, Some(FetchError::Unreachable));
        // Accepted, never answered.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            fetch(silent.local_addr().unwrap()).await,
            Some(FetchError::Timeout)
        );
        // Accepted, its request read, then closed with no answer.
        let closing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closing_addr = closing.local_addr().unwrap();
        let closer = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let (mut stream, _) = closing.accept().await.unwrap();
            let mut head = [0u8; 1024];
            let _ = stream.read(&mut head).await;
        });
        assert_eq!(fetch(closing_addr).await, Some(FetchError::BodyCut));
        closer.await.unwrap();
        drop((queued, full, silent));
    }

    /// A sitemap past 512 KiB is read to its first 512 KiB, whose entries
    /// are the job's (counted whole in the job's bytes); a gzipped one
    /// inflates to 2 MiB at most (a bomb stops there); a file that does
    /// not inflate is none.
    #[tokio::test]
    async fn a_gzipped_sitemap_is_inflated_within_the_limit() {
        use std::io::Write;
        let gzip = |bytes: &[u8]| {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(bytes).unwrap();
            gz.finish().unwrap()
        };
        let xml = "<urlset><url><loc>http://a.fr/tarifs</loc></url></urlset>";
        let small = gzip(xml.as_bytes());
        // 3 MiB of spaces, a few kilobytes gzipped: past the 2 MiB limit.
        let bomb = gzip(&vec![b' '; 3 * 1024 * 1024]);
        // 3 MiB of entries, plain: the first 2 MiB of them are read.
        let entry = "<url><loc>http://a.fr/p</loc></url>";
        let entries = entry.repeat(3 * 1024 * 1024 / entry.len());
        let large = format!("<urlset>{entries}</urlset>");
        let (addr, server) = one_shot_server(vec![
            ("content-type: application/x-gzip\r\n".into(), small.clone()),
            (
                "content-type: application/octet-stream\r\n".into(),
                small.clone(),
            ),
            ("content-type: application/gzip\r\n".into(), bomb),
            (
                "content-type: application/xml\r\n".into(),
                large.into_bytes(),
            ),
            (
                "content-type: application/gzip\r\n".into(),
                b"\x1f\x8bnot gzip".to_vec(),
            ),
        ]);
        let (fetcher, site) = loopback_fetcher(addr);
        let mut pace = fetcher.turn().await;
        let url = site.join("/sitemap.xml.gz").unwrap();
        for _ in 0..2 {
            let page = fetcher
                .get_in_turn(&url, &site, Accept::Xml, &mut pace, &AtomicU64::new(0))
                .await
                .unwrap();
            assert_eq!((page.text.as_str(), page.bytes), (xml, small.len()));
        }
        let limit = 2 * 1024 * 1024;
        let bombed = fetcher
            .get_in_turn(&url, &site, Accept::Xml, &mut pace, &AtomicU64::new(0))
            .await
            .unwrap();
        assert_eq!(bombed.text, " ".repeat(limit));
        let spent = AtomicU64::new(0);
        let cut = fetcher
            .get_in_turn(&url, &site, Accept::Xml, &mut pace, &spent)
            .await
            .unwrap();
        assert_eq!(cut.bytes, SITEMAP_BYTES);
        assert!(spent.load(Ordering::Relaxed) >= SITEMAP_BYTES as u64);
        // Every whole entry of the 512 KiB, none of the one cut in half.
        let (is_index, locs) = super::super::robots::parse_sitemap(&cut.text);
        assert_eq!(
            (is_index, locs.len()),
            (false, (SITEMAP_BYTES - 8) / entry.len())
        );
        assert_eq!(
            fetcher
                .get_in_turn(&url, &site, Accept::Xml, &mut pace, &AtomicU64::new(0))
                .await
                .err(),
            Some(FetchError::UnsupportedType)
        );
        drop(pace);
        server.join().unwrap();
    }

    #[tokio::test]
    async fn compressed_pages_are_decoded_untyped_ones_sniffed_and_the_rest_skipped() {
        use std::io::Write;
        let html = "<html><body><main><h1>Tarifs</h1><p>Coupe femme 35 €</p></main></body></html>";
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(html.as_bytes()).unwrap();
        let (addr, server) = one_shot_server(vec![
            (
                "content-type: text/html; charset=utf-8\r\ncontent-encoding: gzip\r\n".into(),
                gzip.finish().unwrap(),
            ),
            (
                "content-type: text/html\r\ncontent-encoding: compress\r\n".into(),
                b"\x1f\x9d\x90binary".to_vec(),
            ),
            // No Content-Type: sniffed.
            (
                String::new(),
                format!("\n  <!DOCTYPE html>{html}").into_bytes(),
            ),
            (String::new(), b"%PDF-1.4 plaquette".to_vec()),
            // Binary data sent as HTML.
            (
                "content-type: text/html\r\n".into(),
                b"\x00\x01\x02\xff\xfe<html>".repeat(100),
            ),
            // Control bytes without a zero byte, one in twenty or more.
            (
                "content-type: text/html\r\n".into(),
                b"<html>\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f".repeat(100),
            ),
            // A stray control character in a page: still a page.
            (
                "content-type: text/html\r\n".into(),
                format!("<html><head><title>Tarifs\u{b}</title></head>{html}").into_bytes(),
            ),
            // UTF-16 with its byte-order mark: zero bytes, and text.
            (
                "content-type: text/html\r\n".into(),
                std::iter::once(0xFEFF_u16)
                    .chain(html.encode_utf16())
                    .flat_map(u16::to_le_bytes)
                    .collect(),
            ),
        ]);
        let (fetcher, site) = loopback_fetcher(addr);
        let mut pace = fetcher.turn().await;
        let page = get(&fetcher, &site, "/tarifs", &mut pace).await.unwrap();
        assert_eq!(page.text, html);
        assert_eq!(page.bytes, html.len());
        let err = get(&fetcher, &site, "/ancien", &mut pace)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "unsupported_encoding");
        let sniffed = get(&fetcher, &site, "/sans-type", &mut pace).await.unwrap();
        assert_eq!(sniffed.content_type, "text/html");
        assert!(sniffed.text.ends_with("35 €</p></main></body></html>"));
        let err = get(&fetcher, &site, "/plaquette", &mut pace)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "unsupported_type");
        let err = get(&fetcher, &site, "/binaire", &mut pace)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "unsupported_type");
        let err = get(&fetcher, &site, "/controles", &mut pace)
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "unsupported_type");
        let stray = get(&fetcher, &site, "/vt", &mut pace).await.unwrap();
        assert!(stray.text.ends_with("35 €</p></main></body></html>"));
        let utf16 = get(&fetcher, &site, "/utf16", &mut pace).await.unwrap();
        assert_eq!(utf16.text, html);
        let heads = server.join().unwrap();
        assert!(
            heads[0].contains("accept-encoding: gzip,deflate,br"),
            "{}",
            heads[0]
        );
    }

    #[test]
    fn an_undeclared_or_utf_8_charset_is_utf_8_when_the_bytes_are_else_windows_1252() {
        let page =
            |bytes: &[u8], content_type: &str| encoding_of(bytes, content_type, Accept::Page);
        let latin = b"<p>R\xe9servez votre caf\xe9 cr\xe8me \x80</p>";
        let utf8 = "<p>Réservez votre café crème €</p>".as_bytes();
        assert_eq!(page(latin, "text/html"), encoding_rs::WINDOWS_1252);
        assert_eq!(page(utf8, "text/html"), encoding_rs::UTF_8);
        assert_eq!(page(b"<p>Tarifs</p>", ""), encoding_rs::UTF_8);
        // A charset declared wins, but UTF-8 declared over windows-1252
        // bytes (a server's default over pages saved as Latin-1), by the
        // header or the meta: read as UTF-8, every accent was U+FFFD.
        assert_eq!(
            page(utf8, "text/html; charset=iso-8859-1"),
            encoding_rs::WINDOWS_1252
        );
        assert_eq!(page(utf8, "text/html; charset=utf-8"), encoding_rs::UTF_8);
        assert_eq!(
            page(latin, "text/html; charset=utf-8"),
            encoding_rs::WINDOWS_1252
        );
        let meta = b"<meta charset=\"utf-8\"><p>caf\xe9</p>";
        assert_eq!(page(meta, "text/html"), encoding_rs::WINDOWS_1252);
        // A BOM says UTF-8 for sure: a stray byte stays a U+FFFD.
        let bom = b"\xef\xbb\xbf<p>caf\xe9</p>";
        assert_eq!(page(bom, "text/html"), encoding_rs::UTF_8);
        let text = page(latin, "").decode(latin).0;
        assert_eq!(text, "<p>Réservez votre café crème €</p>");
        // UTF-8 with one character cut in half (an excerpt cut by bytes)
        // stays UTF-8: one U+FFFD, not every accent garbled.
        let cut = b"<p>R\xc3\xa9servez votre caf\xc3\xa9 cr\xc3\xa8me, caf\xc3</p>";
        assert_eq!(page(cut, "text/html"), encoding_rs::UTF_8);
        assert_eq!(page(cut, "text/html; charset=utf-8"), encoding_rs::UTF_8);
        assert_eq!(
            page(cut, "").decode(cut).0,
            "<p>Réservez votre café crème, caf\u{fffd}</p>"
        );
        // robots.txt and sitemaps are UTF-8 whatever their bytes: a Latin-1
        // comment does not turn a rule's UTF-8 path into another.
        let robots = b"User-agent: *\n# G\xe9r\xe9\nDisallow: /caf\xc3\xa9/\n";
        for accept in [Accept::Any, Accept::Xml] {
            assert_eq!(
                encoding_of(robots, "text/plain", accept),
                encoding_rs::UTF_8
            );
        }
    }

    #[test]
    fn a_page_robots_txt_disallows_is_never_asked_for() {
        let limits = Limits::default();
        let client = Client::new("test", &limits).unwrap();
        // Nothing listens there: a request would fail otherwise.
        let site = Url::parse("http://127.0.0.1:9/").unwrap();
        let fetcher = Fetcher::new(
            &client,
            &site,
            AllowList::parse(&["127.0.0.1:9".to_string()]).unwrap(),
            HashMap::new(),
            limits,
        );
        fetcher.set_robots(Arc::new(|url: &str| !url.contains("/prive")));
        let prive = site.join("/prive/").unwrap();
        // A page is checked (the crawler's `Polite::get` asks nothing then);
        // robots.txt and sitemaps are always asked.
        assert!(!fetcher.may_ask(&prive, Accept::Page));
        assert!(fetcher.may_ask(&site.join("/tarifs").unwrap(), Accept::Page));
        assert!(fetcher.may_ask(&prive, Accept::Any));
    }
}
