//! mailfleet layer-4/HTTP load balancer with mail-aware health checks.
//!
//! `mailfleet balancer --config FILE` runs [`run_from_file`]; `--check` runs
//! [`check_file_and_names`].
//! Tests and embedders start a [`Balancer`] in-process with [`Balancer::start`] or
//! [`Balancer::start_file`] and read the bound addresses back with [`Balancer::listen_addrs`].
//!
//! The path of a connection is the file list: `proxy` (accept, access rules, limits, server
//! choice) → `select` (one file per scheduler) → `relay` (copy or splice, idle timeouts); `http`
//! for webmail; `tls` terminates TLS towards clients (both modes). `snapshot` is the immutable
//! state every connection reads; `balancer` builds and swaps it (reload, runtime API, health
//! flips); `health` has one file per check; `admin` is the runtime API, `stats` its figures;
//! `persist` the source-IP table; `accept` the listeners' accept loop (back-off and one log line
//! per burst when accepts fail); `limits` the open-file limit and `max_connections`; `keepalive`
//! TCP keepalive on both sides; `resolve` server host names, at start and in the background.
//! `workers`: the relay threads `mailfleet balancer` serves clients on (a runtime and a poller
//! each; a client stays on its thread).

mod accept;
mod access;
mod admin;
mod balancer;
mod clock;
mod cluster;
pub mod config;
mod error;
pub mod health;
mod http;
mod keepalive;
mod limits;
mod pair;
mod persist;
mod proxy;
mod relay;
mod resolve;
pub mod runtime_state;
pub mod select;
mod server;
mod snapshot;
pub mod stats;
mod tls;
mod workers;

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

pub use balancer::Balancer;
pub use config::Config;
pub use error::BalancerError;
pub use persist::ExportedEntry;
pub use server::AdminState;
pub use stats::Stats;
pub use workers::{relay_thread_clients, start_relay_threads};

/// Runs the balancer of `path`; SIGHUP reloads the file.
///
/// SIGTERM or SIGINT, `POST /shutdown` or cancelling `shutdown` starts a soft stop: the
/// listeners close (new connections are refused; a pair member hands its virtual IPs to its
/// peer), open connections go on until they end or `stop_timeout` passes, then this returns. A
/// second SIGTERM or SIGINT during the soft stop returns at once.
pub async fn run_from_file(
    path: PathBuf,
    shutdown: CancellationToken,
) -> Result<(), BalancerError> {
    // Before any listener opens: a client served means a stop signal is already handled (a
    // SIGTERM before then would end the process at once, cutting the client off).
    let mut signals = StopSignals::new()?;
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let b = Balancer::start_file(path.clone(), shutdown.clone()).await?;
    #[cfg(unix)]
    {
        let b2 = b.clone();
        let token = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    r = hup.recv() => if r.is_none() { return },
                }
                match b2.reload() {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "reload refused; the running configuration stays")
                    }
                }
            }
        });
    }
    tracing::info!(file = %path.display(), "balancer running");
    tokio::select! {
        _ = shutdown.cancelled() => {}
        which = signals.next() => {
            tracing::info!(signal = which, "soft stop");
            shutdown.cancel();
        }
    }
    soft_stop(&b, &mut signals).await;
    // The process ends when this returns: not before the pair member has released the
    // virtual IP (bounded, should netlink hang).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), b.pair_stopped()).await;
    Ok(())
}

/// The second half of a soft stop: waits for the open connections to end, for `stop_timeout`
/// or for another signal, whichever comes first.
async fn soft_stop(b: &Balancer, signals: &mut StopSignals) {
    let timeout = b.stop_timeout();
    let open = b.open_connections();
    tracing::info!(
        open_connections = open,
        stop_timeout = %humantime::format_duration(timeout),
        "stopping: no new connections; waiting for the open ones to end"
    );
    tokio::select! {
        _ = b.wait() => tracing::info!("every connection has ended; stopped"),
        _ = tokio::time::sleep(timeout) => tracing::warn!(
            open_connections = b.open_connections(),
            "stop_timeout passed: closing the connections still open"
        ),
        which = signals.next() => tracing::warn!(
            signal = which,
            open_connections = b.open_connections(),
            "second stop signal: closing the connections still open"
        ),
    }
}

/// SIGTERM and SIGINT, as a stream of "stop" requests.
struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> std::io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// The next stop signal's name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                Some(()) = self.term.recv() => "SIGTERM",
                Some(()) = self.int.recv() => "SIGINT",
                else => std::future::pending().await,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

/// Checks a configuration file without starting anything.
pub fn check_file(path: &Path) -> Result<(), BalancerError> {
    Config::load(path).map(|_| ())
}

/// [`check_file`], and every server host name must resolve (as it must at start).
pub async fn check_file_and_names(path: &Path) -> Result<(), BalancerError> {
    let config = Config::load(path)?;
    resolve::resolve_all(&config).await.map(|_| ())
}
