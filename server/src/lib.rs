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

pub mod config;
pub mod db;
pub mod http;
pub mod limit;
pub mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

pub use config::{Args, Config, Synchronous};

/// How long a client may take to send its request headers; also closes
/// keep-alive connections that stay idle that long.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `listener` until `shutdown` completes, then stops accepting,
/// finishes the requests in flight (up to `config.shutdown_grace`), answers
/// every queued SQL call and closes the database cleanly.
///
/// Fails before serving anything when the database cannot be opened,
/// configured, given its functions or migrated; and at the end when it could
/// not be closed cleanly.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), String> {
    if config.extension.is_some() && config.env.is_some() {
        return Err(
            "config.env applies to the linked functions only; a loaded extension has its own clock"
                .to_string(),
        );
    }
    let mut cors_origins = Vec::with_capacity(config.cors_origins.len());
    for origin in &config.cors_origins {
        cors_origins.push(
            HeaderValue::from_str(origin)
                .map_err(|_| format!("CORS origin '{origin}' is not a valid header value"))?,
        );
    }
    let writer = db::Writer::start(db::Options {
        path: config.db_path.clone(),
        synchronous: config.synchronous,
        extension: config.extension.clone(),
        env: config
            .env
            .clone()
            .unwrap_or_else(|| Arc::new(onboarding::SystemEnv)),
        busy_timeout: config.busy_timeout,
    })
    .await?;
    let app = Arc::new(http::App {
        writer: writer.clone(),
        cors_origins,
        max_body_bytes: config.max_body_bytes,
        create_limiter: limit::RateLimiter::new(
            config.create_rate_limit,
            config.create_rate_window,
        ),
    });
    tracing::info!(
        address = %listener.local_addr().map_err(|e| format!("listener has no address: {e}"))?,
        database = %config.db_path.display(),
        synchronous = config.synchronous.pragma(),
        extension = ?config.extension,
        "serving"
    );

    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather
                    // than spin, and keep serving the open connections.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        serve_connection(&builder, &graceful, &app, stream, peer);
    }
    drop(listener);
    tracing::info!("shutting down: finishing requests in flight");
    if tokio::time::timeout(config.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after the grace period; closing anyway");
    }
    drop(app);
    writer.close().await
}

fn serve_connection(
    builder: &http1::Builder,
    graceful: &GracefulShutdown,
    app: &Arc<http::App>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    // Small JSON answers: send them now rather than wait for more (Nagle).
    let _ = stream.set_nodelay(true);
    let app = Arc::clone(app);
    let service = service_fn(move |req| {
        let app = Arc::clone(&app);
        async move { Ok::<_, std::convert::Infallible>(http::handle(&app, req, peer.ip()).await) }
    });
    let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            // Clients that vanish mid-request are routine: not an error.
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}
