//! mailfleet layer-4/HTTP load balancer with mail-aware health checks.
//!
//! `mailfleet balancer --config FILE` runs [`run_from_file`]; `--check` runs [`check_file`].
//! Tests and embedders start a [`Balancer`] in-process with [`Balancer::start`] or
//! [`Balancer::start_file`] and read the bound addresses back with [`Balancer::listen_addrs`].
//!
//! The path of a connection is the file list: `proxy` (accept, access rules, limits, server
//! choice) → `select` (one file per scheduler) → `relay` (copy or splice, idle timeouts); `http`
//! for webmail. `snapshot` is the immutable state every connection reads; `balancer` builds and
//! swaps it (reload, runtime API, health flips); `health` has one file per check; `admin` is the
//! runtime API, `stats` its figures; `persist` the source-IP table; `accept` the listeners' accept
//! loop (back-off and one log line per burst when accepts fail).

mod accept;
mod access;
mod admin;
mod balancer;
mod clock;
pub mod config;
mod error;
pub mod health;
mod http;
mod pair;
mod persist;
mod proxy;
mod relay;
pub mod select;
mod server;
mod snapshot;
pub mod stats;

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

pub use balancer::Balancer;
pub use config::Config;
pub use error::BalancerError;
pub use persist::ExportedEntry;
pub use server::AdminState;
pub use stats::Stats;

/// Runs the balancer of `path` until `shutdown` is cancelled; SIGHUP reloads the file.
pub async fn run_from_file(
    path: PathBuf,
    shutdown: CancellationToken,
) -> Result<(), BalancerError> {
    let b = Balancer::start_file(path.clone(), shutdown.clone()).await?;
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
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
    shutdown.cancelled().await;
    // The process ends when this returns: not before the pair member has released the
    // virtual IP (bounded, should netlink hang).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), b.pair_stopped()).await;
    Ok(())
}

/// Checks a configuration file without starting anything.
pub fn check_file(path: &Path) -> Result<(), BalancerError> {
    Config::load(path).map(|_| ())
}
