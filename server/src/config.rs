//! The server's settings: [`Config`] for the library, [`Args`] for the
//! command line (each flag with its environment variable).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use ipnet::IpNet;

/// The front end's development origins (ports 3000, 3002 and 5173).
pub const DEFAULT_CORS_ORIGINS: [&str; 6] = [
    "http://localhost:3000",
    "http://localhost:3002",
    "http://localhost:5173",
    "http://127.0.0.1:3000",
    "http://127.0.0.1:3002",
    "http://127.0.0.1:5173",
];

/// `PRAGMA synchronous` for the WAL database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Synchronous {
    /// The WAL is fsynced before a commit's answers leave (by the log
    /// syncer, off the writer thread): an answered write survives power loss.
    Full,
    /// fsync at checkpoints only: an answered write survives a crash of the
    /// server, but the last commits may be lost on power loss.
    Normal,
}

impl Synchronous {
    pub fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// Who checkpoints the WAL, copying it back into the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WalCheckpoint {
    /// The server: a checkpointer thread while it runs, and a truncating
    /// checkpoint at shutdown that leaves no WAL file behind.
    Internal,
    /// Another process (Litestream, which must see every WAL frame before
    /// it is copied back): the server never checkpoints, not even when it
    /// closes, so a clean stop never waits for that process's read lock.
    External,
}

/// Everything [`crate::run`] needs besides its listener.
#[derive(Clone)]
pub struct Config {
    /// The SQLite file; created and migrated at start.
    pub db_path: PathBuf,
    /// A dqlite cluster's node addresses: when not empty, every call runs
    /// on its leader and `db_path` is not used.
    pub dqlite: Vec<String>,
    /// Origins whose browsers may call the API (exact `scheme://host:port`).
    pub cors_origins: Vec<String>,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Largest body of the kb step (its `documents` carry up to 20 texts of
    /// 200,000 characters); such bodies are read a few at a time.
    pub max_documents_body_bytes: usize,
    /// Sessions one client address may create per window (a burst of that
    /// many, then one every window / limit); 0 disables.
    pub create_rate_limit: u32,
    pub create_rate_window: Duration,
    pub synchronous: Synchronous,
    pub wal_checkpoint: WalCheckpoint,
    /// Load this built `libonboarding.so` instead of the linked functions.
    pub extension: Option<PathBuf>,
    /// Time and randomness for the linked functions (tests pin them); `None`
    /// is the system clock and the OS random source. Cannot apply to a loaded
    /// extension, which has its own.
    pub env: Option<Arc<dyn onboarding::Env>>,
    /// How long shutdown waits for in-flight requests before closing anyway.
    pub shutdown_grace: Duration,
    /// How long a call waits for another process's lock on the database
    /// before it is answered 503.
    pub busy_timeout: Duration,
    /// Open connections, all clients together; past it, 503 at accept.
    pub max_connections: usize,
    /// Open connections from one client address; past it, 429 at accept.
    pub max_connections_per_ip: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trust_proxy: Vec<IpNet>,
    /// "Email already used" answers per client address, and per session,
    /// per window (an hour by default; a burst of that many, then one every
    /// window / limit); 0 disables. Past either, the business step answers 429,
    /// and so does a completion whose answer would be one more.
    pub email_taken_per_ip: u32,
    pub email_taken_per_session: u32,
    pub email_taken_window: Duration,
    /// Phone codes sent from one client address per hour (a burst of that
    /// many, then one every hour / limit), whatever the session and the
    /// number; 0 disables. Past it, a send answers 429.
    pub code_sends_per_ip: u32,
    /// The server is the outbox's sender: each message (a phone code) is
    /// printed to the log and marked sent. For local development only.
    pub outbox_log: bool,
    /// The knowledge-base crawler: workers, the allow-list, limits.
    pub crawl: crate::crawl::CrawlConfig,
}

/// Sessions one address may create per minute by default. A person creates
/// one per visit, and an office behind one NAT address or a front end's
/// test suite a few dozen; 600 a minute (10 a second, sustained) stops only
/// scripted floods.
pub const DEFAULT_CREATE_RATE_LIMIT: u32 = 600;

/// The most crawler workers `--crawl-workers` starts: 64 sites crawled at
/// once, each at its own pace of a page a second or slower.
pub const MAX_CRAWL_WORKERS: i64 = 64;

/// The most `--max-connections` and `--max-connections-per-ip` take: past
/// it, the open-file limit lowers them anyway.
const MAX_CONNECTIONS_FLAG: i64 = 1 << 20;

/// The longest window `--create-rate-window-secs` takes: 31 days.
pub const MAX_RATE_WINDOW_SECS: u64 = 31 * 24 * 3600;

/// Open connections by default: far above what the writer can keep busy
/// (a few hundred concurrent clients saturate it), well under the file
/// descriptors a server process gets.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Open connections per client address by default: a browser opens 6 per
/// host, an office behind one NAT address a few dozen browsers.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;

/// "Email already used" answers per hour by default: a person mistyping
/// their address or reusing an old account needs one or two; testing a list
/// of addresses needs hundreds.
pub const DEFAULT_EMAIL_TAKEN_PER_IP: u32 = 20;
pub const DEFAULT_EMAIL_TAKEN_PER_SESSION: u32 = 5;

/// Phone codes sent from one address per hour by default. The library
/// limits the sends of a session, a verification and a number; a script
/// creating sessions with a new number each would otherwise send a code
/// per session, each an SMS or a call paid for (SMS pumping). A tenant
/// sends one to three, but one IPv4 address may be many people's: a mobile
/// operator's carrier-grade NAT, an office, a coworking space. Sixty, one a
/// minute on average (as one session may send), ten of them at once at
/// most (`CODE_SENDS_BURST`), stops a script's stream without turning away
/// the people who share its address.
pub const DEFAULT_CODE_SENDS_PER_IP: u32 = 60;

/// The kb step's body limit by default: the largest valid documents, 20 of
/// 200,000 characters, even with every character `\u`-escaped (about 23
/// MiB; see the library's constant).
pub const DEFAULT_MAX_DOCUMENTS_BODY_BYTES: usize = onboarding::MAX_DOCUMENTS_BODY_BYTES;

impl Default for Config {
    fn default() -> Self {
        Config {
            db_path: PathBuf::from("onboarding.db"),
            dqlite: Vec::new(),
            cors_origins: DEFAULT_CORS_ORIGINS.map(String::from).to_vec(),
            max_body_bytes: 64 * 1024,
            max_documents_body_bytes: DEFAULT_MAX_DOCUMENTS_BODY_BYTES,
            create_rate_limit: DEFAULT_CREATE_RATE_LIMIT,
            create_rate_window: Duration::from_secs(60),
            synchronous: Synchronous::Full,
            wal_checkpoint: WalCheckpoint::Internal,
            extension: None,
            env: None,
            shutdown_grace: Duration::from_secs(30),
            busy_timeout: Duration::from_secs(5),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            trust_proxy: Vec::new(),
            email_taken_per_ip: DEFAULT_EMAIL_TAKEN_PER_IP,
            email_taken_per_session: DEFAULT_EMAIL_TAKEN_PER_SESSION,
            email_taken_window: Duration::from_secs(3600),
            code_sends_per_ip: DEFAULT_CODE_SENDS_PER_IP,
            outbox_log: false,
            crawl: crate::crawl::CrawlConfig::default(),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("db_path", &self.db_path)
            .field("dqlite", &self.dqlite)
            .field("cors_origins", &self.cors_origins)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_documents_body_bytes", &self.max_documents_body_bytes)
            .field("create_rate_limit", &self.create_rate_limit)
            .field("create_rate_window", &self.create_rate_window)
            .field("synchronous", &self.synchronous)
            .field("wal_checkpoint", &self.wal_checkpoint)
            .field("extension", &self.extension)
            .field("env", &self.env.as_ref().map(|_| "custom"))
            .field("shutdown_grace", &self.shutdown_grace)
            .field("busy_timeout", &self.busy_timeout)
            .field("crawl", &self.crawl)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("trust_proxy", &self.trust_proxy)
            .field("email_taken_per_ip", &self.email_taken_per_ip)
            .field("email_taken_per_session", &self.email_taken_per_session)
            .field("email_taken_window", &self.email_taken_window)
            .field("code_sends_per_ip", &self.code_sends_per_ip)
            .field("outbox_log", &self.outbox_log)
            .finish()
    }
}

/// The onboarding engine over HTTP: each route runs one SQL function of the
/// onboarding library on one SQLite database and answers its JSON.
#[derive(Debug, Parser)]
// Negative numbers are values, so that `--crawl-workers -1` is refused
// with the flag's rule, not as an unknown argument `-1`.
#[command(name = "onboarding-server", version, allow_negative_numbers = true)]
pub struct Args {
    /// Address and port to listen on: an IP address (`0.0.0.0:8787`,
    /// `[::1]:8787`) or a host name (`localhost:8787`, its first IPv4
    /// address, else its first address).
    #[arg(long, env = "ONBOARDING_LISTEN", default_value = "127.0.0.1:8787",
          value_parser = parse_listen)]
    pub listen: Listen,

    /// SQLite database file; created and migrated at start.
    #[arg(
        long,
        global = true,
        env = "ONBOARDING_DB",
        default_value = "onboarding.db"
    )]
    pub db: PathBuf,

    /// Run every call on the leader of this dqlite cluster (its nodes'
    /// addresses, comma-separated; the other members are learned from the
    /// leader) instead of the --db file.
    /// Global, as `--db` is: `crawl --dqlite …` is the crawler's own form.
    #[arg(long, global = true, env = "ONBOARDING_DQLITE", value_delimiter = ',')]
    pub dqlite: Vec<String>,

    /// Browser origins allowed to call the API (CORS), comma-separated
    /// [default: http://localhost:3000,http://localhost:3002,
    /// http://localhost:5173, and the same three on 127.0.0.1: the front
    /// end's development servers]
    #[arg(
        long,
        env = "ONBOARDING_CORS_ORIGINS",
        value_delimiter = ',',
        default_values_t = DEFAULT_CORS_ORIGINS.map(String::from),
        hide_default_value = true,
        value_parser = parse_origin
    )]
    pub cors_origins: Vec<String>,

    /// Largest request body in bytes (1024 to 8 MiB, what the bodies
    /// arriving at once share); larger ones are refused with 413.
    #[arg(long, env = "ONBOARDING_MAX_BODY_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::builder::RangedI64ValueParser::<usize>::new()
              .range(1024..=crate::http::BODIES_IN_FLIGHT_BYTES as i64))]
    pub max_body_bytes: usize,

    /// Largest body of the kb step in bytes (pasted documents; from
    /// --max-body-bytes to the default, the largest valid documents); larger
    /// ones are refused with 413. Such bodies hold twice this in all as their
    /// bytes arrive (503 past it), and two at a time are stored.
    #[arg(long, env = "ONBOARDING_MAX_DOCUMENTS_BODY_BYTES", default_value_t = DEFAULT_MAX_DOCUMENTS_BODY_BYTES,
          value_parser = clap::builder::RangedI64ValueParser::<usize>::new()
              .range(1024..=DEFAULT_MAX_DOCUMENTS_BODY_BYTES as i64))]
    pub max_documents_body_bytes: usize,

    /// Sessions one client address (an IPv6 one's /64) may create per window (429 past it): that many
    /// at once, then one each window's share (600 a minute: one every 0.1 s);
    /// 0 disables the limit (load tests from one address need that).
    #[arg(long, env = "ONBOARDING_CREATE_RATE_LIMIT", default_value_t = DEFAULT_CREATE_RATE_LIMIT)]
    pub create_rate_limit: u32,

    /// The window of --create-rate-limit, in seconds (at most 31 days).
    #[arg(
        long,
        env = "ONBOARDING_CREATE_RATE_WINDOW_SECS",
        default_value_t = 60,
        // Bounded: a window of 2^64 s made every create panic adding it to
        // the clock.
        value_parser = clap::builder::RangedI64ValueParser::<u64>::new().range(1..=MAX_RATE_WINDOW_SECS as i64)
    )]
    pub create_rate_window_secs: u64,

    /// SQLite durability: `full` makes every answered write survive power
    /// loss; `normal` only a crash of the server (faster on slow disks).
    #[arg(long, env = "ONBOARDING_SYNCHRONOUS", value_enum, default_value_t = Synchronous::Full)]
    pub synchronous: Synchronous,

    /// Who checkpoints the WAL: `internal`, the server; `external`, another
    /// process such as Litestream (the server then never checkpoints, not
    /// even at shutdown; without such a process the WAL grows without end).
    #[arg(long, env = "ONBOARDING_WAL_CHECKPOINT", value_enum, default_value_t = WalCheckpoint::Internal)]
    pub wal_checkpoint: WalCheckpoint,

    /// Load this built extension (e.g. dist/libonboarding.so) at run time
    /// instead of the functions linked into the server.
    #[arg(long, global = true, env = "ONBOARDING_EXTENSION", value_parser = parse_extension)]
    pub extension: Option<PathBuf>,

    /// Seconds shutdown waits for in-flight requests before closing anyway
    /// (at most a day).
    #[arg(long, env = "ONBOARDING_SHUTDOWN_GRACE_SECS", default_value_t = 30,
          value_parser = clap::builder::RangedI64ValueParser::<u64>::new().range(0..=86_400))]
    pub shutdown_grace_secs: u64,

    /// Milliseconds a call waits for another process's lock on the database
    /// (a `sqlite3` shell, a backup; with --dqlite, another client of the
    /// leader), from when it is queued, before it is answered 503; at most
    /// 2147483647 (SQLite's bound).
    #[arg(long, global = true, env = "ONBOARDING_BUSY_TIMEOUT_MS", default_value_t = 5000,
          value_parser = clap::builder::RangedI64ValueParser::<u64>::new().range(0..=2_147_483_647))]
    pub busy_timeout_ms: u64,

    /// Open connections, all clients together; past it new ones get 503.
    #[arg(long, env = "ONBOARDING_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::builder::RangedI64ValueParser::<usize>::new().range(1..=MAX_CONNECTIONS_FLAG))]
    pub max_connections: usize,

    /// Open connections from one client address (an IPv6 one's /64); past
    /// it new ones get 429. Trusted proxies (--trust-proxy) are exempt.
    #[arg(long, env = "ONBOARDING_MAX_CONNECTIONS_PER_IP", default_value_t = DEFAULT_MAX_CONNECTIONS_PER_IP,
          value_parser = clap::builder::RangedI64ValueParser::<usize>::new().range(1..=MAX_CONNECTIONS_FLAG))]
    pub max_connections_per_ip: usize,

    /// A reverse proxy (address or CIDR, repeatable) whose X-Forwarded-For
    /// names the client; from any other peer the header is ignored.
    #[arg(long, env = "ONBOARDING_TRUST_PROXY", value_delimiter = ',', value_parser = parse_net)]
    pub trust_proxy: Vec<IpNet>,

    /// "Email already used" answers one client address (an IPv6 one's /64) may get per hour
    /// (429 past it): that many at once, then one each hour's share (20: one
    /// every 3 minutes); 0 disables.
    #[arg(long, env = "ONBOARDING_EMAIL_TAKEN_PER_IP", default_value_t = DEFAULT_EMAIL_TAKEN_PER_IP)]
    pub email_taken_per_ip: u32,

    /// "Email already used" answers one session may get per hour (429 past
    /// it): that many at once, then one each hour's share (5: one every 12
    /// minutes); 0 disables.
    #[arg(long, env = "ONBOARDING_EMAIL_TAKEN_PER_SESSION", default_value_t = DEFAULT_EMAIL_TAKEN_PER_SESSION)]
    pub email_taken_per_session: u32,

    /// Phone codes one client address (an IPv6 one's /64) may have sent per
    /// hour, to any session and number (429 past it): ten at once at most,
    /// then one each hour's share (60: one a minute); a send the
    /// library refuses costs none; 0 disables.
    #[arg(long, env = "ONBOARDING_CODE_SENDS_PER_IP", default_value_t = DEFAULT_CODE_SENDS_PER_IP)]
    pub code_sends_per_ip: u32,

    /// Local development: the server sends the outbox's messages (phone
    /// codes) itself, to its log (recipient and text, one line each), and
    /// marks them sent. Without it, no code ever reaches the log. (The
    /// variable takes true/false, 1/0, yes/no or on/off.)
    #[arg(long, env = "ONBOARDING_OUTBOX_LOG",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub outbox_log: bool,
    /// Crawler workers taking knowledge-base jobs (one site each at a
    /// time), at most 64; 0 turns off the HTTP server's crawler (the crawl
    /// command runs one all the same).
    #[arg(
        long,
        global = true,
        env = "ONBOARDING_CRAWL_WORKERS",
        default_value_t = 1,
        // Each idle worker asks the writer for a job every 2 s:
        // 10,000 of them left no turn for the requests (the server stopped
        // answering), and a site is crawled one page a second whatever
        // the count.
        value_parser = clap::builder::RangedI64ValueParser::<usize>::new().range(0..=MAX_CRAWL_WORKERS)
    )]
    pub crawl_workers: usize,

    /// HOST:PORT exempt from the crawler's public-address rule, for tests
    /// and intranets (repeatable); also accepted by the kb step (a loaded
    /// --extension reads the environment variable only).
    #[arg(long, global = true, env = onboarding::kb::ALLOW_HOST_VARIABLE, value_delimiter = ',',
          value_parser = parse_allow_host)]
    pub crawl_allow_host: Vec<String>,

    /// Where the owner of a crawled site learns what the crawler is and
    /// reaches whoever runs it: an http(s) URL or a mailto: address, put in
    /// the crawler's User-Agent (by default a search for the product's
    /// name).
    #[arg(long, global = true, env = "ONBOARDING_CRAWL_CONTACT",
          value_parser = parse_crawl_contact)]
    pub crawl_contact: Option<String>,

    /// Seconds a crawler worker holds a job without reporting a page; a
    /// worker that dies loses its job to the next claim after this long.
    #[arg(long, global = true, env = "ONBOARDING_CRAWL_LEASE_SECS",
          default_value_t = crate::crawl::LEASE_SECONDS,
          value_parser = clap::value_parser!(i64).range(1..=3600))]
    pub crawl_lease_secs: i64,

    /// What to run: the HTTP server (default), or `crawl` alone.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Log level: error, warn, info (one line per request), debug or trace.
    #[arg(
        long,
        global = true,
        env = "ONBOARDING_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: tracing::level_filters::LevelFilter,

    /// Threads serving HTTP, or under `crawl` running its workers (the
    /// async runtime's workers; one is the main thread). Default: one per core but one, which the database writer
    /// thread needs to itself (at least one). On 2 cores, two HTTP threads
    /// beside the writer cost 15 to 20 % of the throughput.
    #[arg(long, global = true, env = "ONBOARDING_HTTP_THREADS",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub http_threads: Option<u16>,
}

impl Args {
    /// How many threads serve HTTP: `--http-threads`, or every core but the
    /// writer's.
    pub fn http_threads(&self) -> usize {
        match self.http_threads {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1))
                .max(1),
        }
    }

    /// The rules between flags that clap cannot say: `--outbox-log` writes
    /// each message (a phone code) as an info line, so a log level that
    /// hides those would mark codes sent that nobody can read.
    pub fn check(&self) -> Result<(), String> {
        // It was raised to --max-body-bytes without a word.
        if self.max_documents_body_bytes < self.max_body_bytes {
            return Err(format!(
                "--max-documents-body-bytes {} is below --max-body-bytes {}: the kb step's \
                 limit is at least every other body's",
                self.max_documents_body_bytes, self.max_body_bytes
            ));
        }
        if self.outbox_log && self.log_level < tracing::level_filters::LevelFilter::INFO {
            return Err(format!(
                "--outbox-log writes each message as an info line: it needs --log-level info, \
                 debug or trace (got {})",
                self.log_level.to_string().to_lowercase()
            ));
        }
        self.check_dqlite()
    }

    /// `--dqlite`: node addresses as HOST:PORT (empty pieces, a trailing
    /// comma, are skipped), at least one when the flag is given (an empty
    /// list would quietly serve the --db file instead of the cluster), and
    /// no `--wal-checkpoint external`, which is for a file under Litestream.
    fn check_dqlite(&self) -> Result<(), String> {
        if self.dqlite.is_empty() {
            return Ok(());
        }
        let nodes = self.dqlite_nodes();
        if nodes.is_empty() {
            return Err(
                "--dqlite names no node: expected the cluster's addresses as HOST:PORT, \
                 comma-separated (e.g. 127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003)"
                    .to_string(),
            );
        }
        for node in &nodes {
            let port = node.rsplit_once(':').and_then(|(host, port)| {
                (!host.is_empty() && !host.contains(['/', ' ']))
                    .then(|| port.parse::<u16>().ok())
                    .flatten()
            });
            if port.is_none_or(|p| p == 0) {
                return Err(format!(
                    "--dqlite node '{node}' is not HOST:PORT (e.g. 127.0.0.1:9001, a port from \
                     1 to 65535)"
                ));
            }
        }
        if self.wal_checkpoint == WalCheckpoint::External {
            return Err(
                "--wal-checkpoint external is for a --db file replicated by Litestream; a \
                 --dqlite cluster's nodes checkpoint their own databases"
                    .to_string(),
            );
        }
        Ok(())
    }

    /// `--dqlite`'s addresses, trimmed, empty pieces left out.
    fn dqlite_nodes(&self) -> Vec<String> {
        self.dqlite
            .iter()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect()
    }

    /// The library configuration these flags describe.
    pub fn config(&self) -> Config {
        Config {
            db_path: self.db.clone(),
            dqlite: self.dqlite_nodes(),
            cors_origins: self
                .cors_origins
                .iter()
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            max_body_bytes: self.max_body_bytes,
            max_documents_body_bytes: self.max_documents_body_bytes,
            create_rate_limit: self.create_rate_limit,
            create_rate_window: Duration::from_secs(self.create_rate_window_secs),
            synchronous: self.synchronous,
            wal_checkpoint: self.wal_checkpoint,
            extension: self.extension.clone(),
            env: None,
            shutdown_grace: Duration::from_secs(self.shutdown_grace_secs),
            busy_timeout: Duration::from_millis(self.busy_timeout_ms),
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            trust_proxy: self.trust_proxy.clone(),
            email_taken_per_ip: self.email_taken_per_ip,
            email_taken_per_session: self.email_taken_per_session,
            email_taken_window: Duration::from_secs(3600),
            code_sends_per_ip: self.code_sends_per_ip,
            outbox_log: self.outbox_log,
            crawl: crate::crawl::CrawlConfig {
                workers: self.crawl_workers,
                // Each entry was checked by parse_allow_host.
                allow: onboarding::kb::AllowList::parse(&self.crawl_allow_host).unwrap_or_default(),
                lease_seconds: self.crawl_lease_secs,
                user_agent: crate::crawl::user_agent(
                    self.crawl_contact.as_deref().filter(|c| !c.is_empty()),
                ),
                ..crate::crawl::CrawlConfig::default()
            },
        }
    }
}

/// The modes of `onboarding-server`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Crawl the queued knowledge-base jobs of --db (or of the --dqlite
    /// cluster), without the HTTP server (for users of the loadable
    /// extension alone).
    Crawl {
        /// Stop when no job is due instead of waiting for more.
        #[arg(long)]
        once: bool,
    },
}

/// `--crawl-contact`: an absolute http(s) URL or a mailto: address, as URL
/// parsing writes it (so nothing in it can end the header line), at most
/// 200 characters. Empty (`ONBOARDING_CRAWL_CONTACT=` in a compose file)
/// means none given.
fn parse_crawl_contact(text: &str) -> Result<String, String> {
    const EXPECTED: &str =
        "expected an http(s) URL or a mailto: address, such as https://example.com/robot";
    if text.trim().is_empty() {
        return Ok(String::new());
    }
    let url = url::Url::parse(text.trim())
        .map_err(|e| format!("'{text}' is not a URL ({e}): {EXPECTED}"))?;
    if !matches!(url.scheme(), "http" | "https" | "mailto") {
        return Err(format!("'{text}' is a {}: URL: {EXPECTED}", url.scheme()));
    }
    // Sent to every crawled site: no password or user name.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "'{text}' carries a user name or password, which every crawled site would \
             see: {EXPECTED}"
        ));
    }
    if url.scheme() == "mailto" && url.path().is_empty() {
        return Err(format!("'{text}' names no address: {EXPECTED}"));
    }
    let written = url.to_string();
    // The User-Agent's comment is `(+URL)`: a space or a parenthesis
    // would split or end it.
    if let Some(c) = written.chars().find(|c| matches!(c, ' ' | '(' | ')')) {
        return Err(format!(
            "'{text}' holds {c:?}, which would break the User-Agent's comment: {EXPECTED}"
        ));
    }
    if written.len() > 200 {
        return Err(format!(
            "'{text}' is {} characters as a URL: at most 200",
            written.len()
        ));
    }
    Ok(written)
}

/// One `--cors-origins` entry: an origin as a browser sends it,
/// `scheme://host[:port]` (RFC 6454: `https://app.example`, and app shells'
/// own schemes such as `capacitor://localhost`), never a wildcard nor
/// `null` (which any sandboxed page or local file sends).
fn parse_origin(text: &str) -> Result<String, String> {
    let origin = text.trim();
    if origin.is_empty() {
        // A trailing comma: an empty item, which the configuration drops.
        return Ok(String::new());
    }
    const EXPECTED: &str = "expected an origin as a browser sends it, scheme://host[:port], \
                            e.g. https://app.example.fr";
    if origin.contains('*') {
        return Err(format!(
            "'{origin}': wildcards are not origins (list each origin allowed); {EXPECTED}"
        ));
    }
    if origin.eq_ignore_ascii_case("null") {
        return Err(format!(
            "'{origin}': any sandboxed page or local file sends that origin; {EXPECTED}"
        ));
    }
    let (scheme, rest) = origin
        .split_once("://")
        .ok_or_else(|| format!("'{origin}' has no scheme:// (http:// or https://); {EXPECTED}"))?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let host = rest.strip_suffix('/').unwrap_or(rest);
    if !scheme_ok || host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "'{origin}' is not scheme://host[:port]; {EXPECTED}"
        ));
    }
    as_browser_sends(origin).map_err(|e| format!("{e}; {EXPECTED}"))?;
    Ok(origin.to_string())
}

/// `origin` as a browser sends it in `Origin`, which is what an allowed
/// origin is compared with: scheme and host lowercase, an international
/// host in its ASCII form, the scheme's default port left out, no trailing
/// slash (`HTTPS://Café.example:443/` is `https://xn--caf-dma.example`).
/// Written otherwise, an origin was accepted at start and never matched,
/// its front end refused with 403.
pub fn as_browser_sends(origin: &str) -> Result<String, String> {
    let written = origin.trim().trim_end_matches('/');
    let lower = written.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        // Another scheme's origin (a browser extension's) is sent as it is.
        return Ok(lower);
    }
    let url = url::Url::parse(written)
        .map_err(|e| format!("'{}' is not a valid origin ({e})", origin.trim()))?;
    Ok(url.origin().ascii_serialization())
}

/// `--extension`: a file that exists, named with or without its `.so` as
/// SQLite's loader takes it (which would otherwise report a missing file
/// with `.so` added, from its second try).
fn parse_extension(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if path.is_file() || PathBuf::from(format!("{text}.so")).is_file() {
        Ok(path)
    } else {
        Err(format!(
            "'{text}' is not a file (the extension is built by `make loadable`, into \
             dist/libonboarding.so)"
        ))
    }
}

/// One `--crawl-allow-host` entry, checked as the library reads it.
fn parse_allow_host(text: &str) -> Result<String, String> {
    onboarding::kb::AllowList::parse(&[text]).map(|_| text.trim().to_string())
}

/// What `--listen` says: `HOST:PORT`, checked as written and resolved only
/// by [`Listen::resolve`], when the server binds (`onboarding-server crawl`
/// never resolves it: a name that only the server's host knows does not
/// stop the crawler).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen(String);

const LISTEN_EXPECTED: &str =
    "expected HOST:PORT, such as 127.0.0.1:8787, [::1]:8787 or localhost:8787";

impl Listen {
    /// The address to bind: an address as is; a name's first IPv4
    /// address, else its first.
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        use std::net::ToSocketAddrs;
        if let Ok(address) = self.0.parse::<SocketAddr>() {
            return Ok(address);
        }
        let host = self.0.rsplit_once(':').map_or("", |(h, _)| h);
        let found: Vec<SocketAddr> = self
            .0
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve '{host}' ({e}): {LISTEN_EXPECTED}"))?
            .collect();
        found
            .iter()
            .find(|a| a.is_ipv4())
            .or(found.first())
            .copied()
            .ok_or_else(|| format!("'{host}' has no address: {LISTEN_EXPECTED}"))
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `HOST:PORT`, the host an address or a name.
fn parse_listen(text: &str) -> Result<Listen, String> {
    let text = text.trim();
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(Listen(text.to_string()));
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("'{text}' has no port: {LISTEN_EXPECTED}"))?;
    if host.is_empty() || host.contains([':', '[', ']', '/', ' ']) || port.parse::<u16>().is_err() {
        return Err(format!(
            "'{text}' is not an address and port: {LISTEN_EXPECTED}"
        ));
    }
    Ok(Listen(text.to_string()))
}

/// `10.0.0.0/8`, `2001:db8::/32`, or one address (`192.0.2.1`).
fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("'{text}' is not an address or CIDR range (e.g. 10.0.0.0/8)"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn flags_are_consistent() {
        Args::command().debug_assert();
    }

    /// `--crawl-workers` is at most 64 (10,000 idle workers' claims left
    /// the server no turn to answer); a negative count is refused with the
    /// flag's rule.
    #[test]
    fn crawl_workers_are_bounded() {
        let workers = |n: &str| {
            Args::try_parse_from(["onboarding-server", "--crawl-workers", n])
                .map(|a| a.crawl_workers)
                .map_err(|e| e.to_string().lines().next().unwrap_or("").to_string())
        };
        assert_eq!(workers("0"), Ok(0));
        assert_eq!(workers("64"), Ok(64));
        assert_eq!(
            workers("65"),
            Err("error: invalid value '65' for '--crawl-workers <CRAWL_WORKERS>': 65 is not in 0..=64".into())
        );
        // The same for every number a flag takes.
        for (flag, range) in [
            ("--busy-timeout-ms", "0..=2147483647"),
            ("--shutdown-grace-secs", "0..=86400"),
            ("--max-connections", "1..=1048576"),
        ] {
            let said = Args::try_parse_from(["onboarding-server", flag, "-5"])
                .unwrap_err()
                .to_string();
            assert!(
                said.starts_with(&format!("error: invalid value '-5' for '{flag} <"))
                    && said.contains(&format!("-5 is not in {range}")),
                "{said}"
            );
        }
        assert_eq!(
            workers("-1"),
            Err("error: invalid value '-1' for '--crawl-workers <CRAWL_WORKERS>': -1 is not in 0..=64".into())
        );
    }

    /// The flags the crawl command honours are taken after `crawl` too
    /// (`crawl --once --log-level debug` was refused as an unexpected
    /// argument).
    #[test]
    fn the_crawl_command_takes_its_flags_after_it() {
        // Any file passes the flag's check (the extension is loaded later).
        let file = std::env::current_exe().unwrap();
        let args = Args::try_parse_from([
            "onboarding-server",
            "crawl",
            "--once",
            "--log-level",
            "debug",
            "--busy-timeout-ms",
            "10",
            "--extension",
            file.to_str().unwrap(),
        ])
        .unwrap();
        assert_eq!(args.log_level, tracing::level_filters::LevelFilter::DEBUG);
        assert_eq!(args.busy_timeout_ms, 10);
        assert!(matches!(args.command, Some(Command::Crawl { once: true })));
    }

    #[test]
    fn the_crawl_contact_is_a_url_or_mailto_written_into_the_user_agent() {
        let user_agent = |contact: Option<&str>| {
            let mut argv = vec!["onboarding-server"];
            argv.extend(
                contact
                    .map(|c| ["--crawl-contact", c])
                    .into_iter()
                    .flatten(),
            );
            Args::try_parse_from(argv)
                .map(|a| a.config().crawl.user_agent)
                .map_err(|e| e.to_string())
        };
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            user_agent(None),
            Ok(format!(
                "onboarding-kb-crawler/{version} (+https://github.com/search?q=onboarding-kb-crawler)"
            ))
        );
        assert_eq!(
            user_agent(Some("https://Exemple.fr/robot d'indexation")),
            Ok(format!(
                "onboarding-kb-crawler/{version} (+https://exemple.fr/robot%20d'indexation)"
            ))
        );
        assert_eq!(
            user_agent(Some("mailto:robot@exemple.fr")),
            Ok(format!(
                "onboarding-kb-crawler/{version} (+mailto:robot@exemple.fr)"
            ))
        );
        // A line break is dropped by URL parsing: it can never end the
        // header.
        assert_eq!(
            user_agent(Some("https://exemple.fr/a\r\nX-Injected: 1")),
            Ok(format!(
                "onboarding-kb-crawler/{version} (+https://exemple.fr/aX-Injected:%201)"
            ))
        );
        // Empty (an environment variable set to nothing) is none given.
        assert_eq!(user_agent(Some("")), user_agent(None));
        for (contact, expected) in [
            (
                "https://robot:s3cret@exemple.fr/robot",
                "'https://robot:s3cret@exemple.fr/robot' carries a user name or password, which \
                 every crawled site would see",
            ),
            ("mailto:", "'mailto:' names no address"),
            (
                "mailto:robot @exemple.fr",
                "'mailto:robot @exemple.fr' holds ' ', which would break the User-Agent's comment",
            ),
            (
                "https://exemple.fr/robot)",
                "'https://exemple.fr/robot)' holds ')', which would break the User-Agent's comment",
            ),
            (
                "exemple.fr/robot",
                "'exemple.fr/robot' is not a URL (relative URL without a base): expected an \
                 http(s) URL or a mailto: address, such as https://example.com/robot",
            ),
            (
                "ftp://exemple.fr/robot",
                "'ftp://exemple.fr/robot' is a ftp: URL: expected an http(s) URL or a mailto: \
                 address",
            ),
        ] {
            let refused = user_agent(Some(contact)).unwrap_err();
            assert!(refused.contains(expected), "{refused}");
        }
        let long = format!("https://exemple.fr/{}", "a".repeat(190));
        let refused = user_agent(Some(&long)).unwrap_err();
        assert!(
            refused.contains("is 209 characters as a URL: at most 200"),
            "{refused}"
        );
    }

    #[test]
    fn listen_takes_an_address_or_a_host_name() {
        let listen = |text: &str| {
            Args::try_parse_from(["onboarding-server", "--listen", text])
                .map_err(|e| e.to_string())
                .and_then(|a| a.listen.resolve())
                .map(|a| a.to_string())
        };
        assert_eq!(listen("0.0.0.0:9000"), Ok("0.0.0.0:9000".to_string()));
        assert_eq!(listen("[::1]:9000"), Ok("[::1]:9000".to_string()));
        // /etc/hosts names localhost on every machine this runs on.
        assert_eq!(listen("localhost:9000"), Ok("127.0.0.1:9000".to_string()));
        let refused = listen("localhost").unwrap_err();
        assert!(
            refused.contains("'localhost' has no port: expected HOST:PORT, such as 127.0.0.1:8787"),
            "{refused}"
        );
        let refused = listen("localhost:http").unwrap_err();
        assert!(
            refused.contains("'localhost:http' is not an address and port: expected HOST:PORT"),
            "{refused}"
        );
    }

    #[test]
    fn no_flags_give_the_contract_defaults() {
        let args = Args::try_parse_from(["onboarding-server"]).unwrap();
        assert_eq!(args.listen.resolve(), Ok("127.0.0.1:8787".parse().unwrap()));
        let config = args.config();
        let default = Config::default();
        assert_eq!(config.db_path, default.db_path);
        assert_eq!(config.cors_origins, default.cors_origins);
        assert_eq!(config.max_body_bytes, 64 * 1024);
        assert_eq!(config.create_rate_limit, default.create_rate_limit);
        assert_eq!(config.create_rate_window, default.create_rate_window);
        assert_eq!(config.synchronous, Synchronous::Full);
        assert_eq!(config.wal_checkpoint, WalCheckpoint::Internal);
        assert_eq!(config.extension, None);
        assert!(!config.outbox_log);
        let args = Args::try_parse_from(["onboarding-server", "--outbox-log"]).unwrap();
        assert!(args.config().outbox_log);
        assert_eq!(config.dqlite, Vec::<String>::new());
    }

    #[test]
    fn outbox_log_needs_the_info_lines() {
        for level in ["info", "debug", "trace"] {
            let args =
                Args::try_parse_from(["onboarding-server", "--outbox-log", "--log-level", level])
                    .unwrap();
            assert_eq!(args.check(), Ok(()), "{level}");
        }
        for level in ["warn", "error", "off"] {
            let args =
                Args::try_parse_from(["onboarding-server", "--outbox-log", "--log-level", level])
                    .unwrap();
            assert_eq!(
                args.check(),
                Err(format!(
                    "--outbox-log writes each message as an info line: it needs --log-level info, \
                     debug or trace (got {level})"
                ))
            );
        }
        let args = Args::try_parse_from(["onboarding-server", "--log-level", "warn"]).unwrap();
        assert_eq!(args.check(), Ok(()));
    }

    /// Every core but the writer's serves HTTP, unless told otherwise.
    #[test]
    fn http_threads_leave_a_core_to_the_writer() {
        let cores = std::thread::available_parallelism().unwrap().get();
        let args = Args::try_parse_from(["onboarding-server"]).unwrap();
        assert_eq!(args.http_threads(), (cores - 1).max(1));
        let args = Args::try_parse_from(["onboarding-server", "--http-threads", "3"]).unwrap();
        assert_eq!(args.http_threads(), 3);
        let err = Args::try_parse_from(["onboarding-server", "--http-threads", "0"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "invalid value '0' for '--http-threads <HTTP_THREADS>': 0 is not in 1..=65535"
            ),
            "{err}"
        );
    }

    #[test]
    fn dqlite_nodes_split_on_commas_and_trim() {
        let args = Args::try_parse_from([
            "onboarding-server",
            "--dqlite",
            "127.0.0.1:9001, 127.0.0.1:9002,127.0.0.1:9003,",
        ])
        .unwrap();
        assert_eq!(
            args.config().dqlite,
            ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
        );
    }

    #[test]
    fn dqlite_nodes_are_host_and_port_and_at_least_one() {
        let checked = |flags: &[&str]| {
            let mut argv = vec!["onboarding-server"];
            argv.extend_from_slice(flags);
            Args::try_parse_from(argv).unwrap().check()
        };
        assert_eq!(
            checked(&["--dqlite", "127.0.0.1:9001,node2.internal:9002,[::1]:9003"]),
            Ok(())
        );
        assert_eq!(checked(&[]), Ok(()));
        for empty in ["", ",", " , "] {
            assert_eq!(
                checked(&["--dqlite", empty]),
                Err(
                    "--dqlite names no node: expected the cluster's addresses as HOST:PORT, \
                     comma-separated (e.g. 127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003)"
                        .to_string()
                ),
                "{empty:?}"
            );
        }
        for bad in [
            "bogus",
            "127.0.0.1",
            "127.0.0.1:99999",
            "127.0.0.1:0",
            ":9001",
            "a b:1",
        ] {
            assert_eq!(
                checked(&["--dqlite", bad]),
                Err(format!(
                    "--dqlite node '{bad}' is not HOST:PORT (e.g. 127.0.0.1:9001, a port from \
                     1 to 65535)"
                )),
                "{bad:?}"
            );
        }
        assert_eq!(
            checked(&["--dqlite", "127.0.0.1:9001", "--wal-checkpoint", "external"]),
            Err(
                "--wal-checkpoint external is for a --db file replicated by Litestream; a \
                 --dqlite cluster's nodes checkpoint their own databases"
                    .to_string()
            )
        );
    }

    #[test]
    fn wal_checkpoint_is_internal_or_external() {
        let args =
            Args::try_parse_from(["onboarding-server", "--wal-checkpoint", "external"]).unwrap();
        assert_eq!(args.config().wal_checkpoint, WalCheckpoint::External);
        let args =
            Args::try_parse_from(["onboarding-server", "--wal-checkpoint", "internal"]).unwrap();
        assert_eq!(args.config().wal_checkpoint, WalCheckpoint::Internal);
        let err = Args::try_parse_from(["onboarding-server", "--wal-checkpoint", "litestream"])
            .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
        assert!(
            err.to_string()
                .contains("[possible values: internal, external]"),
            "{err}"
        );
    }

    #[test]
    fn cors_origins_split_on_commas_and_trim() {
        let args = Args::try_parse_from([
            "onboarding-server",
            "--cors-origins",
            "https://app.example, https://admin.example,",
            "--synchronous",
            "normal",
            "--create-rate-limit",
            "0",
        ])
        .unwrap();
        let config = args.config();
        assert_eq!(
            config.cors_origins,
            ["https://app.example", "https://admin.example"]
        );
        assert_eq!(config.synchronous, Synchronous::Normal);
        assert_eq!(config.create_rate_limit, 0);
    }

    #[test]
    fn flags_that_would_break_the_server_are_refused_with_the_rule() {
        let refused = |flags: &[&str]| {
            let mut argv = vec!["onboarding-server"];
            argv.extend_from_slice(flags);
            let err = Args::try_parse_from(argv).unwrap_err().to_string();
            err.lines().next().unwrap_or_default().to_string()
        };
        assert_eq!(
            refused(&["--cors-origins", "https://app.example,*"]),
            "error: invalid value '*' for '--cors-origins <CORS_ORIGINS>': '*': wildcards are \
             not origins (list each origin allowed); expected an origin as a browser sends it, \
             scheme://host[:port], e.g. https://app.example.fr"
        );
        assert_eq!(
            refused(&["--cors-origins", "https://app.example/admin"]),
            "error: invalid value 'https://app.example/admin' for '--cors-origins \
             <CORS_ORIGINS>': 'https://app.example/admin' is not scheme://host[:port]; expected \
             an origin as a browser sends it, scheme://host[:port], e.g. https://app.example.fr"
        );
        assert_eq!(
            refused(&["--cors-origins", "app.example"]),
            "error: invalid value 'app.example' for '--cors-origins <CORS_ORIGINS>': \
             'app.example' has no scheme:// (http:// or https://); expected an origin as a \
             browser sends it, scheme://host[:port], e.g. https://app.example.fr"
        );
        // Past the largest valid documents, a body is refused all the same,
        // after it was held in memory.
        assert_eq!(
            refused(&["--max-documents-body-bytes", "24089537"]),
            "error: invalid value '24089537' for '--max-documents-body-bytes \
             <MAX_DOCUMENTS_BODY_BYTES>': 24089537 is not in 1024..=24089536"
        );
        let under =
            Args::try_parse_from(["onboarding-server", "--max-documents-body-bytes", "2048"])
                .unwrap()
                .check();
        assert_eq!(
            under,
            Err(
                "--max-documents-body-bytes 2048 is below --max-body-bytes 65536: the kb \
                 step's limit is at least every other body's"
                    .to_string()
            )
        );
        assert_eq!(
            refused(&["--max-body-bytes", "0"]),
            "error: invalid value '0' for '--max-body-bytes <MAX_BODY_BYTES>': 0 is not in \
             1024..=8388608"
        );
        // Past what the bodies arriving at once share, a body could never
        // be read.
        assert_eq!(
            refused(&["--max-body-bytes", "8388609"]),
            "error: invalid value '8388609' for '--max-body-bytes <MAX_BODY_BYTES>': 8388609 \
             is not in 1024..=8388608"
        );
        assert_eq!(
            refused(&["--busy-timeout-ms", "2147483648"]),
            "error: invalid value '2147483648' for '--busy-timeout-ms <BUSY_TIMEOUT_MS>': \
             2147483648 is not in 0..=2147483647"
        );
        assert_eq!(
            refused(&["--extension", "/nonexistent/libonboarding.so"]),
            "error: invalid value '/nonexistent/libonboarding.so' for '--extension \
             <EXTENSION>': '/nonexistent/libonboarding.so' is not a file (the extension is \
             built by `make loadable`, into dist/libonboarding.so)"
        );
        let args = Args::try_parse_from([
            "onboarding-server",
            "--cors-origins",
            "HTTPS://App.example/,http://127.0.0.1:3000,capacitor://localhost",
        ])
        .unwrap();
        assert_eq!(
            args.config().cors_origins,
            [
                "HTTPS://App.example/",
                "http://127.0.0.1:3000",
                "capacitor://localhost"
            ]
        );
        assert_eq!(
            refused(&["--cors-origins", "null"]),
            "error: invalid value 'null' for '--cors-origins <CORS_ORIGINS>': 'null': any \
             sandboxed page or local file sends that origin; expected an origin as a browser \
             sends it, scheme://host[:port], e.g. https://app.example.fr"
        );
    }

    #[test]
    fn trust_proxy_takes_ranges_and_addresses_repeatedly() {
        let args = Args::try_parse_from([
            "onboarding-server",
            "--trust-proxy",
            "10.0.0.0/8",
            "--trust-proxy",
            "192.0.2.1,2001:db8::/32",
        ])
        .unwrap();
        let nets: Vec<String> = args
            .config()
            .trust_proxy
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32"]);
        let err = Args::try_parse_from(["onboarding-server", "--trust-proxy", "10.0.0.300/8"])
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("'10.0.0.300/8' is not an address or CIDR range (e.g. 10.0.0.0/8)"),
            "{err}"
        );
    }

    #[test]
    fn a_zero_rate_window_is_refused() {
        let err = Args::try_parse_from(["onboarding-server", "--create-rate-window-secs", "0"])
            .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn a_rate_window_past_31_days_is_refused() {
        for (window, ok) in [
            ("2678400", true),
            ("2678401", false),
            ("18446744073709551615", false),
        ] {
            let parsed =
                Args::try_parse_from(["onboarding-server", "--create-rate-window-secs", window]);
            assert_eq!(parsed.is_ok(), ok, "{window}");
        }
    }
}
