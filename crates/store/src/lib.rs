//! mailfleet's store: domains, accounts, aliases, mailboxes, messages, the outbound queue and the
//! cluster's shared state, behind one async trait with a SQLite and a PostgreSQL implementation;
//! and message bytes as content-addressed blobs on a filesystem or in the database.

pub mod address;
pub mod backup;
pub mod blob;
pub mod error;
pub mod failover;
pub mod model;
pub mod password;
pub mod postgres;
mod rows;
mod schema;
pub mod spool;
mod sql;
pub mod sqlite;
mod store;
pub mod text_index;
pub mod transfer;

use std::sync::Arc;

pub use blob::{BlobStore, open_blobs, open_node_blobs};
pub use error::StoreError;
pub use failover::{ActiveStore, FailoverStore, FailoverTiming};
pub use model::*;
pub use spool::{Spool, SpoolWriter, Spooled, SpooledFile};
pub use store::{BlobWrite, Cluster, Directory, Limits, Mailboxes, Queue, Result, Store};

/// Opens the store a URL names (`sqlite:PATH` or `postgres://...`), applying migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PostgresStore::open(url).await?))
    } else {
        Err(StoreError::BadUrl {
            url: redact_url(url),
            reason: "expected sqlite:PATH or postgres://...".into(),
        })
    }
}

/// The URL with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}
