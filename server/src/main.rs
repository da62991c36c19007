//! `onboarding-server`: parses the flags, then runs the library's server
//! until SIGTERM or Ctrl-C.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use onboarding_server::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = args.check() {
        eprintln!("onboarding-server: error: {e}");
        return ExitCode::from(2);
    }
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

/// Tasks the runtime polls between two looks at its sockets (tokio's
/// default is 61). A request's task is short (parse, queue, answer), so at
/// the default a socket that became readable, or a connection whose answer
/// the log syncer sent, waited behind up to 61 of them. In the writer's
/// round trip of a request (2.1 ms, timed in an instrumented build), 420 us
/// were left after the queue, the batch, the sync and the answer's send:
/// the wait for the task's wake. With 2, loadgen's five-call flows at
/// concurrency 64 ran 4,383-4,705 -> 5,322-5,418 flows/s (interleaved
/// runs, 4 each; 1 and 4 measured the same as 2, 8 and 16 in between) for
/// no more CPU per flow on the HTTP thread.
const EVENT_INTERVAL: u32 = 2;

fn serve(args: &Args) -> Result<(), String> {
    // One HTTP thread (the default on two cores) is the main thread under
    // tokio's current-thread scheduler rather than one worker of the
    // multi-thread one, which keeps a work-stealing queue, a statistics
    // average (a `powf` per maintenance tick) and a main thread parked
    // beside its worker: interleaved runs of loadgen's five-call flows at
    // concurrency 64, 11 rounds each, 4,347-5,755 -> 4,793-5,851 flows/s
    // (the current-thread one ahead in 9), the writer's CPU per flow
    // 126-145 -> 122-138 us (medians 135 and 130).
    let mut builder = match args.http_threads() {
        1 => tokio::runtime::Builder::new_current_thread(),
        threads => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
    };
    let runtime = builder
        .event_interval(EVENT_INTERVAL)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        if let Some(onboarding_server::config::Command::Crawl { once }) = args.command {
            return onboarding_server::run_crawler(args.config(), once, shutdown_signal()).await;
        }
        let address = args.listen.resolve()?;
        let listener =
            listen(address).map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
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

/// Completes on the first SIGTERM (service managers, `kill`), SIGHUP (the
/// terminal closed: an SSH session dropped) or Ctrl-C, which stop the
/// server gracefully. A second one, while in-flight requests are waited
/// for, ends the process at once: whoever presses Ctrl-C twice means it,
/// and what was not committed rolls back as after a crash. Signals within
/// [`SAME_STOP`] of the first are that first one: a terminal's Ctrl-C
/// reaches every process of its group, and a wrapper (`scripts/cluster`,
/// GNU `timeout`) sends its own besides.
async fn shutdown_signal() {
    let mut signals = Signals::listen();
    let first = signals.next().await;
    let at = std::time::Instant::now();
    tracing::info!(
        "{first} received: stopping once the work in hand is done (a second signal stops at once)"
    );
    let same_stop = |other: &str| {
        tracing::info!(
            "{other} received with the first (within {} ms): the same stop",
            SAME_STOP.as_millis()
        );
    };
    // Those that came with the first (read from the driver in the same
    // turn) are that stop however late the task below first runs: one per
    // kind at most, as a listener holds at most one.
    for _ in 0..3 {
        let Some(other) = signals.already_received() else {
            break;
        };
        same_stop(other);
    }
    tokio::spawn(async move {
        loop {
            let second = signals.next().await;
            if at.elapsed() < SAME_STOP {
                same_stop(second);
                continue;
            }
            tracing::warn!(
                "{second} received while stopping: at once now, without waiting for the work in hand"
            );
            std::process::exit(130);
        }
    });
}

/// How soon after the first a signal is taken as the same stop: a
/// wrapper's arrives within milliseconds of the terminal's, a person's
/// second Ctrl-C later than this.
const SAME_STOP: std::time::Duration = std::time::Duration::from_millis(250);

/// The stopping signals, listened for once for the process's life. A
/// listener sees only what arrives after it is made: listeners made anew
/// after the first signal missed one that came in between, and a signal
/// from the first's own listeners that lost the race to it was dropped
/// with them.
#[cfg(unix)]
struct Signals {
    interrupt: Option<tokio::signal::unix::Signal>,
    terminate: Option<tokio::signal::unix::Signal>,
    hangup: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl Signals {
    fn listen() -> Signals {
        use tokio::signal::unix::SignalKind;
        Signals {
            interrupt: listen_for(SignalKind::interrupt(), "Ctrl-C"),
            terminate: listen_for(SignalKind::terminate(), "SIGTERM"),
            hangup: listen_for(SignalKind::hangup(), "SIGHUP"),
        }
    }

    /// The next stopping signal's name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            () = receive(&mut self.interrupt) => "Ctrl-C",
            () = receive(&mut self.terminate) => "SIGTERM",
            () = receive(&mut self.hangup) => "SIGHUP",
        }
    }

    /// The name of a signal received and not yet taken, without waiting.
    fn already_received(&mut self) -> Option<&'static str> {
        let next = std::pin::pin!(self.next());
        // Polled once: a waker is needed for the poll, never woken.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match std::future::Future::poll(next, &mut cx) {
            std::task::Poll::Ready(name) => Some(name),
            std::task::Poll::Pending => None,
        }
    }
}

/// A listener for `kind`, or none (said in the log): the server then runs
/// without that way to stop it rather than not at all.
#[cfg(unix)]
fn listen_for(
    kind: tokio::signal::unix::SignalKind,
    name: &str,
) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind)
        .inspect_err(|e| tracing::error!(error = %e, "cannot listen for {name}"))
        .ok()
}

/// Completes when `signal` arrives; never without a listener.
#[cfg(unix)]
async fn receive(signal: &mut Option<tokio::signal::unix::Signal>) {
    // `recv` answers `None` only once the signal driver is gone with the
    // runtime.
    if let Some(signal) = signal {
        if signal.recv().await.is_some() {
            return;
        }
    }
    std::future::pending().await
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn listen() -> Signals {
        Signals
    }

    async fn next(&mut self) -> &'static str {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        "Ctrl-C"
    }

    fn already_received(&mut self) -> Option<&'static str> {
        None
    }
}
