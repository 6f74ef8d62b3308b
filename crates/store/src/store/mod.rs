//! The store's interface. Calls are coarse: one per protocol operation (DESIGN.md §3).
//!
//! [`Store`] is what callers hold (`Arc<dyn Store>`); its methods are declared by concern, one
//! trait per file here, and `Store` requires them all, so a caller never names them.

use async_trait::async_trait;

use crate::error::StoreError;

mod cluster;
mod directory;
mod limits;
mod mailbox;
mod queue;

pub use cluster::Cluster;
pub use directory::Directory;
pub use limits::Limits;
pub use mailbox::Mailboxes;
pub use queue::Queue;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A blob write under way (see [`Mailboxes::deliver_with_blob`]).
pub type BlobWrite<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>>;

/// Everything mailfleet keeps durably, apart from blob bytes on a filesystem.
///
/// Two implementations: [`crate::sqlite::SqliteStore`] and [`crate::postgres::PostgresStore`];
/// the same tests run against both. The methods of each concern are in its own trait
/// ([`Directory`], [`Mailboxes`], [`Queue`], [`Cluster`], [`Limits`]), which `Store`
/// requires.
#[async_trait]
pub trait Store: Directory + Mailboxes + Queue + Cluster + Limits + Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// The backend's pools, for the whole-store dump and load of [`crate::transfer`].
    fn transfer_access(&self) -> crate::transfer::Access<'_>;
    /// For a node's store with a `backup_store` ([`crate::FailoverStore`]), which of the two
    /// it uses now: `primary` or `backup`; `None` for a store with one address.
    fn active_store(&self) -> Option<&'static str> {
        None
    }
    /// The database server's clock, in milliseconds since the Unix epoch, for nodes to see
    /// how far their own clocks are from it (leases compare times the nodes write). `None`
    /// where the store has no clock of its own: SQLite runs on the node's machine.
    async fn clock_ms(&self) -> Result<Option<i64>> {
        Ok(None)
    }
}
