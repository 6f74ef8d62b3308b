//! The balancer's error type.

use thiserror::Error;

/// Each message carries its whole cause and no variant has a `source()`, so a printer that
/// walks the error chain (anyhow's `{:#}`) shows every cause once.
#[derive(Debug, Error)]
pub enum BalancerError {
    /// The configuration file is not a readable regular file of at most 1 MiB.
    #[error("{file}: {problem}")]
    Read {
        file: String,
        problem: mailfleet_config::FileProblem,
    },
    /// A key of the configuration file is wrong; `file` may carry `:line`.
    #[error("{file}: key `{key}`: {problem}")]
    Config {
        file: String,
        key: String,
        problem: String,
    },
    /// A listener cannot be opened.
    #[error("{key}: cannot listen on {addr}: {error}")]
    Bind {
        key: String,
        addr: std::net::SocketAddr,
        error: std::io::Error,
    },
    /// A runtime API request names something that does not exist or cannot be done.
    #[error("{0}")]
    Api(String),
    /// The state file (runtime drain, maint, weight) cannot be read.
    #[error("{0}")]
    State(String),
    /// The balancer pair could not start.
    #[error("balancer pair: {0}")]
    Pair(String),
    /// Any other I/O failure (transparent: its text and its source are the I/O error's own).
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
