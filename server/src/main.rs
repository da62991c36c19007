//! `onboarding-server`: parses the flags, then runs the library's server
//! until SIGTERM or Ctrl-C.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use onboarding_server::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_max_level(args.log_level)
        .with_writer(std::io::stderr)
        // Colours only for people: log files and collectors get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("onboarding-server: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &Args) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.http_threads())
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        if let Some(onboarding_server::config::Command::Crawl { once }) = args.command {
            return onboarding_server::run_crawler(args.config(), once, shutdown_signal()).await;
        }
        let listener =
            listen(args.listen).map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        onboarding_server::run(listener, args.config(), shutdown_signal()).await
    })
}

/// Binds `address` with a deep accept queue: a burst of connections waits
/// in it for the accept loop instead of being dropped by the kernel (tokio's
/// default depth is 1,024; the kernel caps it at `net.core.somaxconn`).
fn listen(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match address {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(4096)
}

/// Completes on the first SIGTERM (service managers, `kill`) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
