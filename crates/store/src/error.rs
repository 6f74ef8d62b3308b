//! What can go wrong in the store.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("domain not found: {0}")]
    DomainNotFound(String),
    #[error("domain exists: {0}")]
    DomainExists(String),
    #[error("account not found: {0}")]
    AccountNotFound(String),
    #[error("account exists: {0}")]
    AccountExists(String),
    #[error("alias not found: {0}")]
    AliasNotFound(String),
    #[error("mailbox not found: {0}")]
    MailboxNotFound(String),
    #[error("mailbox exists: {0}")]
    MailboxExists(String),
    #[error("account {0} has no room for the message within its quota")]
    OverQuota(i64),
    #[error("lease on queue item {0} is no longer held by this node")]
    LeaseLost(i64),
    /// A fenced write ([`crate::Fence`]) whose lease has changed hands or expired.
    #[error(
        "lease {lease} is no longer held by {holder} with fencing token {token}; nothing written"
    )]
    Fenced {
        lease: String,
        holder: String,
        token: i64,
    },
    #[error("cannot reach the store at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error(
        "the store's schema is version {found}, newer than this binary's {supported}; \
         run a newer mailfleet"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("bad store URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("invalid value: {0}")]
    Invalid(String),
    #[error("blob {0} not found")]
    BlobNotFound(String),
    #[error("blob I/O on {path}: {source}")]
    BlobIo {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A read of the SQLite store's synchronous readers (`sqlite/reader.rs`) failed.
    #[error("database error: {0}")]
    SqliteRead(String),
    #[error("commit failed: {0}")]
    CommitFailed(String),
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error(
        "the target store is not empty: its table {table} has {rows} rows; \
         restore and store copy need an empty store"
    )]
    NotEmpty { table: String, rows: i64 },
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}
