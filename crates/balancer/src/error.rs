//! The balancer's error type.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum BalancerError {
    /// The configuration file cannot be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// A key of the configuration file is wrong; `file` may carry `:line`.
    #[error("{file}: key `{key}`: {problem}")]
    Config {
        file: String,
        key: String,
        problem: String,
    },
    /// A listener cannot be opened.
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind {
        key: String,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A runtime API request names something that does not exist or cannot be done.
    #[error("{0}")]
    Api(String),
    /// The balancer pair could not start.
    #[error("balancer pair: {0}")]
    Pair(String),
    /// Any other I/O failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
