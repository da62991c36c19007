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
pub mod db;
pub mod http;
pub mod limit;
pub mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::header::HeaderValue;
use tokio::net::TcpListener;

pub use config::{Args, Config, Synchronous};

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
    tracing::info!(
        %address,
        database = %config.db_path.display(),
        synchronous = config.synchronous.pragma(),
        extension = ?config.extension,
        "serving"
    );
    let caps = conn::ConnectionCaps {
        total: config.max_connections,
        per_ip: config.max_connections_per_ip,
    };
    conn::serve(listener, app, caps, config.shutdown_grace, shutdown).await;
    writer.close().await
}

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
        cors_origins.push(
            HeaderValue::from_str(origin)
                .map_err(|_| format!("CORS origin '{origin}' is not a valid header value"))?,
        );
    }
    let openapi = http::openapi_for(&format!("http://{address}"))?;
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
    Ok(http::App {
        writer,
        cors_origins,
        max_body_bytes: config.max_body_bytes,
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
        proxies: client::TrustedProxies::new(config.trust_proxy.clone()),
        openapi,
    })
}
