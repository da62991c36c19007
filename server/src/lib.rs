//! `onboarding-server`: the onboarding engine's SQL functions over HTTP.
//!
//! ```no_run
//! # async fn start() -> Result<(), String> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8787").await.unwrap();
//! let config = onboarding_server::Config::default(); // onboarding.db in the cwd
//! onboarding_server::run(listener, config, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```
//!
//! Each route of [`routes::ROUTES`] is one SQL call (`SELECT onboarding_…(?)`)
//! on the one writer connection of [`db`], and its JSON text is the body.
//! Errors of the library (`onboarding_<fn>: <kind>: <detail>`) become the
//! contract's statuses in [`http`].

pub mod client;
pub mod config;
pub mod conn;
pub mod crawl;
pub mod db;
pub mod http;
pub mod limit;
pub mod outbox;
pub mod routes;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::header::HeaderValue;
use tokio::net::TcpListener;

pub use config::{Args, Config, Synchronous, WalCheckpoint};

/// Serves `listener` until `shutdown` completes, then stops accepting,
/// closes idle connections, finishes the requests in flight (up to
/// `config.shutdown_grace`), answers every queued SQL call and closes the
/// database cleanly.
///
/// Fails before serving anything when the database cannot be opened,
/// configured, given its functions or migrated; and at the end when it could
/// not be closed cleanly.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    let address = listener
        .local_addr()
        .map_err(|e| format!("listener has no address: {e}"))?;
    let app = Arc::new(build(&config, address).await?);
    let writer = app.writer.clone();
    let log_sender = app
        .outbox_wake
        .clone()
        .map(|wake| outbox::LogSender::start(writer.clone(), wake));
    let (stop_crawl, crawl_stopped) = tokio::sync::watch::channel(false);
    let crawlers = crawl::spawn(&writer, &config.crawl, &crawl_stopped);
    if config.dqlite.is_empty() {
        tracing::info!(
            %address,
            database = %config.db_path.display(),
            synchronous = %config.synchronous.pragma().to_lowercase(),
            wal_checkpoint = %match config.wal_checkpoint {
                config::WalCheckpoint::Internal => "internal",
                config::WalCheckpoint::External => "external",
            },
            extension = %config.extension.as_ref().map_or("linked".into(), |p| p.display().to_string()),
            outbox_log = config.outbox_log,
            "serving"
        );
    } else {
        tracing::info!(
            %address,
            dqlite = %config.dqlite.join(","),
            outbox_log = config.outbox_log,
            "serving"
        );
    }
    let caps = conn::ConnectionCaps {
        total: conn::fit_to_file_limit(config.max_connections),
        per_ip: config.max_connections_per_ip,
    };
    conn::serve(listener, app, caps, config.shutdown_grace, shutdown).await;
    if let Some(sender) = log_sender {
        sender.stop().await;
    }
    stop_crawlers(stop_crawl, crawlers).await;
    crawl::release_held(&writer, &config.crawl).await;
    writer.close().await
}

/// Stops the crawler workers. A worker mid-page is aborted: its job keeps
/// its frontier, and the caller gives it back (queued at once, the attempt
/// not counted) with the turn of the site it held.
async fn stop_crawlers(
    stop: tokio::sync::watch::Sender<bool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
) {
    let _ = stop.send(true);
    for w in &workers {
        w.abort();
    }
    for w in workers {
        let _ = w.await;
    }
}

/// `onboarding-server crawl`: the crawler alone on `config.db_path` (or on
/// the dqlite cluster of `config.dqlite`), for users of the loadable
/// extension without the HTTP server. Runs until `shutdown`, or with `once`
/// until no job is due.
pub async fn run_crawler(
    mut config: Config,
    once: bool,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    if config.crawl.workers == 0 {
        // The server and this command may share one environment, where
        // ONBOARDING_CRAWL_WORKERS=0 keeps the crawling out of the server.
        tracing::info!(
            "--crawl-workers 0 turns off the HTTP server's crawler; the crawl command runs one worker"
        );
        config.crawl.workers = 1;
    }
    let writer = start_writer(&config).await?;
    if config.dqlite.is_empty() {
        tracing::info!(database = %config.db_path.display(), workers = config.crawl.workers, "crawling");
    } else {
        tracing::info!(dqlite = %config.dqlite.join(","), workers = config.crawl.workers, "crawling");
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let crawl_config = Arc::new(config.crawl.clone());
    let workers: Vec<_> = (0..config.crawl.workers)
        .map(|n| {
            let name = crawl::worker_name("crawl-", n);
            let (writer, config, stopped) =
                (writer.clone(), Arc::clone(&crawl_config), stopped.clone());
            tokio::spawn(async move {
                if once {
                    crawl::drain(writer, config, name, n == 0).await
                } else {
                    crawl::worker(writer, config, name, n == 0, stopped).await;
                    Ok(())
                }
            })
        })
        .collect();
    let aborts: Vec<_> = workers.iter().map(|w| w.abort_handle()).collect();
    let all = futures_join(workers);
    tokio::pin!(all);
    let failures = tokio::select! {
        failures = &mut all => failures,
        () = shutdown => {
            // As the server stops its workers: mid-page if need be, their
            // jobs and sites' turns given back below.
            let _ = stop.send(true);
            for abort in aborts {
                abort.abort();
            }
            all.await;
            // `--once` promises nothing left due: stopped before that, it
            // fails (a dropped SSH session looked like a crawl done to
            // `crawl --once && …`). Waiting for jobs, a stop is its end.
            if once {
                vec!["stopped by a signal before every due job was crawled: those left are \
                      queued for the next run"
                    .to_string()]
            } else {
                Vec::new()
            }
        }
    };
    crawl::release_held(&writer, &crawl_config).await;
    writer.close().await?;
    // `--once` was run to leave nothing due: a worker that could not is
    // the command's failure (its exit status), each cause in the log.
    match failures.as_slice() {
        [] => Ok(()),
        [one] => Err(one.clone()),
        [first, rest @ ..] => Err(format!("{first} (and {} more failures)", rest.len())),
    }
}

/// Waits for every worker; answers the failures of those that failed.
async fn futures_join(workers: Vec<tokio::task::JoinHandle<Result<(), String>>>) -> Vec<String> {
    let mut failures = Vec::new();
    for w in workers {
        match w.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(e) if e.is_cancelled() => {}
            Err(e) => failures.push(format!("a crawler worker panicked: {e}")),
        }
    }
    failures
}

/// kb-step bodies past `--max-body-bytes` read and answered at once: bounds
/// what pasted documents hold in memory. The largest valid one (23 MiB of
/// escaped text) took the server from 20 to 176 MB at its peak: the body,
/// SQLite's copy of the bound text, the parsed documents and the stored
/// step.
const LARGE_BODIES_AT_ONCE: usize = 2;

/// Phone codes one address may have sent at once, whatever
/// `--code-sends-per-ip` allows in the hour: a script starting sessions
/// with a new number each gets ten calls or SMS paid for, then one each
/// share of the hour.
const CODE_SENDS_BURST: u32 = 10;

/// The window of `--code-sends-per-ip`, and of the keyed sends it counted.
const CODE_SENDS_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// Everything requests share: the writer (the database opened, given its
/// functions and migrated), the limits and the documents.
async fn build(config: &Config, address: SocketAddr) -> Result<http::App, String> {
    if config.extension.is_some() && config.env.is_some() {
        return Err(
            "config.env applies to the linked functions only; a loaded extension has its own clock"
                .to_string(),
        );
    }
    let mut cors_origins = Vec::with_capacity(config.cors_origins.len());
    for origin in &config.cors_origins {
        let sent = config::as_browser_sends(origin)?;
        cors_origins.push(
            HeaderValue::from_str(&sent)
                .map_err(|_| format!("CORS origin '{origin}' is not a valid header value"))?,
        );
    }
    let openapi = http::openapi_for(&format!("http://{address}"))?;
    let writer = start_writer(config).await?;
    Ok(http::App {
        writer,
        cors_origins,
        max_body_bytes: config.max_body_bytes,
        max_documents_body_bytes: config.max_documents_body_bytes.max(config.max_body_bytes),
        large_bodies: Arc::new(tokio::sync::Semaphore::new(LARGE_BODIES_AT_ONCE)),
        large_body_bytes: Arc::new(tokio::sync::Semaphore::new(
            LARGE_BODIES_AT_ONCE
                .saturating_mul(config.max_documents_body_bytes.max(config.max_body_bytes))
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        )),
        large_body_senders: Default::default(),
        create_limiter: limit::RateLimiter::new(
            config.create_rate_limit,
            config.create_rate_window,
        ),
        email_taken_by_ip: limit::RateLimiter::new(
            config.email_taken_per_ip,
            config.email_taken_window,
        ),
        email_taken_by_session: limit::RateLimiter::new(
            config.email_taken_per_session,
            config.email_taken_window,
        ),
        code_sends_by_ip: limit::RateLimiter::with_burst(
            config.code_sends_per_ip,
            CODE_SENDS_WINDOW,
            CODE_SENDS_BURST,
        ),
        create_keys: limit::ChargedKeys::new(config.create_rate_window),
        code_send_keys: limit::ChargedKeys::new(CODE_SENDS_WINDOW),
        proxies: client::TrustedProxies::new(config.trust_proxy.clone()),
        openapi,
        outbox_wake: config
            .outbox_log
            .then(|| Arc::new(tokio::sync::Notify::new())),
        clock: config
            .env
            .clone()
            .unwrap_or_else(|| Arc::new(onboarding::SystemEnv)),
    })
}

/// The writer the configuration names: the single file by default, else
/// the dqlite cluster's leader.
async fn start_writer(config: &Config) -> Result<db::Writer, String> {
    if config.dqlite.is_empty() {
        start_file(config).await
    } else {
        if config.extension.is_some() || config.env.is_some() {
            return Err(
                "--extension and config.env apply to the single file; dqlite nodes load their own functions"
                    .to_string(),
            );
        }
        // The kb step runs on the nodes, whose functions know no allow-list:
        // taken here, the crawler would fetch the host while the step
        // refused it as not public.
        if !config.crawl.allow.is_empty() {
            return Err(
                "--crawl-allow-host applies to the single file's functions; the kb step runs on the dqlite nodes, which cannot receive it"
                    .to_string(),
            );
        }
        db::Writer::start_cluster(db::ClusterOptions {
            nodes: config.dqlite.clone(),
            database: "onboarding.db".to_string(),
            busy_timeout: config.busy_timeout,
        })
        .await
    }
}

/// The writer on the single file (the default).
async fn start_file(config: &Config) -> Result<db::Writer, String> {
    // A loaded extension reads the list from the flag's environment
    // variable as it loads, and from nowhere else: a list given by the
    // flag alone, or differing from the variable, would let the crawler
    // fetch what the kb step refuses to save (or the other way round).
    if config.extension.is_some() && !config.crawl.allow.is_empty() {
        use onboarding::kb::ALLOW_HOST_VARIABLE;
        let from_variable = std::env::var(ALLOW_HOST_VARIABLE)
            .ok()
            .map(|value| onboarding::kb::AllowList::parse_variable(&value));
        match from_variable {
            Some(Ok(list)) if list == config.crawl.allow => {}
            Some(Err(e)) => return Err(format!("{ALLOW_HOST_VARIABLE}: {e}")),
            _ => {
                return Err(format!(
                    "--crawl-allow-host reaches a loaded extension only through \
                     {ALLOW_HOST_VARIABLE}, which it reads as it loads: give the list in that \
                     variable instead of the flag"
                ))
            }
        }
    }
    db::Writer::start(db::Options {
        path: config.db_path.clone(),
        synchronous: config.synchronous,
        wal_checkpoint: config.wal_checkpoint,
        extension: config.extension.clone(),
        env: config
            .env
            .clone()
            .unwrap_or_else(|| Arc::new(onboarding::SystemEnv)),
        busy_timeout: config.busy_timeout,
        kb: onboarding::kb::Settings {
            crawl_allow_hosts: config.crawl.allow.clone(),
        },
    })
    .await
}
