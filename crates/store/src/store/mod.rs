//! The store's interface. Calls are coarse: one per protocol operation (DESIGN.md §3).
//!
//! [`Store`] is what callers hold (`Arc<dyn Store>`); its methods are declared by concern, one
//! trait per file here, and `Store` requires them all, so a caller never names them.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::model::*;

mod cluster;
mod directory;
mod limits;
mod queue;

pub use cluster::Cluster;
pub use directory::Directory;
pub use limits::Limits;
pub use queue::Queue;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A blob write under way (see [`Store::deliver_with_blob`]).
pub type BlobWrite<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>>;

/// Everything mailfleet keeps durably, apart from blob bytes on a filesystem.
///
/// Two implementations: [`crate::sqlite::SqliteStore`] and [`crate::postgres::PostgresStore`];
/// the same tests run against both. The methods of each concern are in its own trait
/// ([`Directory`], [`Queue`], [`Cluster`], [`Limits`]), which `Store` requires.
#[async_trait]
pub trait Store: Directory + Queue + Cluster + Limits + Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    // ---- mailboxes ----
    async fn create_mailbox(
        &self,
        account_id: i64,
        name: &str,
        special_use: Option<&str>,
    ) -> Result<Mailbox>;
    async fn get_mailbox(&self, account_id: i64, name: &str) -> Result<Option<Mailbox>>;
    async fn list_mailboxes(&self, account_id: i64) -> Result<Vec<Mailbox>>;
    async fn mailbox_status(&self, account_id: i64) -> Result<Vec<MailboxStatus>>;

    // ---- messages ----
    /// Delivers one blob to every target mailbox and queues the remote part, in one transaction.
    /// Each target gets the mailbox's next UID; the account's used bytes grow by the size.
    async fn deliver(&self, delivery: &Delivery) -> Result<Vec<Delivered>>;
    /// As [`Store::deliver`], with the message's blob still being written by `blob_write`:
    /// nothing is committed before it has succeeded, and its error is the delivery's if it
    /// fails. A backend may prepare the rows meanwhile. The blob write must not itself need
    /// this store's write transaction (blobs kept in the database go through
    /// [`Store::deliver_with_bytes`]).
    async fn deliver_with_blob(
        &self,
        delivery: &Delivery,
        blob_write: BlobWrite<'_>,
    ) -> Result<Vec<Delivered>> {
        blob_write.await?;
        self.deliver(delivery).await
    }
    /// As [`Store::deliver`], keeping the message's bytes in the database (`blobs = "db"`)
    /// under `delivery.blob_id`, in the same transaction: one commit for blob and rows.
    async fn deliver_with_bytes(
        &self,
        delivery: &Delivery,
        bytes: &[u8],
    ) -> Result<Vec<Delivered>> {
        self.blob_put(&delivery.blob_id, bytes).await?;
        self.deliver(delivery).await
    }
    /// Appends one message to one mailbox (IMAP APPEND); returns the UID.
    async fn append(
        &self,
        mailbox_id: i64,
        blob_id: &str,
        size: i64,
        internal_date: Timestamp,
        flags: &[String],
    ) -> Result<u32>;
    /// Messages of a mailbox with `first <= uid <= last`, not expunged, by UID.
    async fn list_messages(&self, mailbox_id: i64, first: u32, last: u32) -> Result<Vec<Message>>;

    // ---- blobs kept in the database (`blobs = "db"`) ----
    async fn blob_put(&self, id: &str, bytes: &[u8]) -> Result<()>;
    async fn blob_get(&self, id: &str) -> Result<Option<Vec<u8>>>;
    async fn blob_delete(&self, id: &str) -> Result<()>;
    async fn blob_list(&self) -> Result<Vec<BlobEntry>>;
    /// Which of `ids` a message row or a queue item still uses.
    async fn blobs_in_use(&self, ids: &[String]) -> Result<Vec<String>>;
}
