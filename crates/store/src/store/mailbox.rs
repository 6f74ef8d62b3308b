//! Mailboxes and their messages, and message bytes kept in the database (`blobs = "db"`).

use async_trait::async_trait;

use super::{BlobWrite, Result};
use crate::model::{
    BlobEntry, Changes, Delivered, Delivery, FlagOp, FlagOutcome, Mailbox, MailboxStatus, Message,
    Timestamp,
};

/// An account's mailboxes and the messages in them: delivery, append and the reads of
/// mailbox and message state.
#[async_trait]
pub trait Mailboxes: Send + Sync {
    async fn create_mailbox(
        &self,
        account_id: i64,
        name: &str,
        special_use: Option<&str>,
    ) -> Result<Mailbox>;
    async fn get_mailbox(&self, account_id: i64, name: &str) -> Result<Option<Mailbox>>;
    async fn list_mailboxes(&self, account_id: i64) -> Result<Vec<Mailbox>>;
    async fn mailbox_status(&self, account_id: i64) -> Result<Vec<MailboxStatus>>;

    /// Delivers one blob to every target mailbox and queues the remote part, in one transaction.
    /// Each target gets the mailbox's next UID; the account's used bytes grow by the size.
    /// Refused with [`crate::StoreError::OverQuota`], writing nothing, when an account's used
    /// bytes would go over its quota (checked inside the transaction).
    async fn deliver(&self, delivery: &Delivery) -> Result<Vec<Delivered>>;
    /// As [`Mailboxes::deliver`], with the message's blob still being written by `blob_write`:
    /// nothing is committed before it has succeeded, and its error is the delivery's if it
    /// fails. A backend may prepare the rows meanwhile. The blob write must not itself need
    /// this store's write transaction (blobs kept in the database go through
    /// [`Mailboxes::deliver_with_bytes`]).
    async fn deliver_with_blob(
        &self,
        delivery: &Delivery,
        blob_write: BlobWrite<'_>,
    ) -> Result<Vec<Delivered>> {
        blob_write.await?;
        self.deliver(delivery).await
    }
    /// As [`Mailboxes::deliver`], keeping the message's bytes in the database (`blobs = "db"`)
    /// under `delivery.blob_id`, in the same transaction: one commit for blob and rows.
    async fn deliver_with_bytes(
        &self,
        delivery: &Delivery,
        bytes: &[u8],
    ) -> Result<Vec<Delivered>> {
        self.blob_put(&delivery.blob_id, bytes).await?;
        self.deliver(delivery).await
    }
    /// Appends one message to one mailbox (IMAP APPEND); returns the UID. Refused with
    /// [`crate::StoreError::OverQuota`] as [`Mailboxes::deliver`] is. `meta`, the
    /// message's `mailfleet_message::Metadata::to_stored()`, is kept for its blob in the same
    /// transaction (unless the blob already has some).
    async fn append(
        &self,
        mailbox_id: i64,
        blob_id: &str,
        size: i64,
        internal_date: Timestamp,
        flags: &[String],
        meta: Option<&str>,
    ) -> Result<u32>;
    /// Expunges the messages `uids` of a mailbox in one transaction (POP3's QUIT, later IMAP's
    /// UID EXPUNGE): their rows stay as tombstones carrying one new MODSEQ, and the account's
    /// used bytes go down by their sizes. UIDs already expunged or never there are skipped.
    /// Returns how many were expunged.
    async fn expunge(&self, mailbox_id: i64, uids: &[u32]) -> Result<u64>;
    /// The keywords any message of the mailbox has had (IMAP FLAGS and PERMANENTFLAGS), one of
    /// each without regard to case, sorted without case.
    async fn mailbox_keywords(&self, mailbox_id: i64) -> Result<Vec<String>>;
    /// The metadata stored for a blob at its first delivery or append, if any.
    async fn message_meta(&self, blob_id: &str) -> Result<Option<String>>;
    /// Changes the flags of the messages `uids` of a mailbox in one transaction (IMAP STORE):
    /// the mailbox's HIGHESTMODSEQ goes up once and every message whose flags change takes
    /// it; its counters follow. With `unchanged_since` (RFC 7162 UNCHANGEDSINCE), a message
    /// whose MODSEQ is above it is left as it is and listed in `modified`. A message whose
    /// flags would not change keeps its MODSEQ; UIDs expunged or never there are skipped.
    async fn set_flags(
        &self,
        mailbox_id: i64,
        uids: &[u32],
        op: FlagOp,
        flags: &[String],
        unchanged_since: Option<i64>,
    ) -> Result<FlagOutcome>;
    /// What changed in a mailbox after `modseq`: messages with their flags, and the UIDs
    /// expunged (their tombstones carry the expunge's MODSEQ) — for CONDSTORE/QRESYNC and for
    /// sessions on other nodes.
    async fn changes_since(&self, mailbox_id: i64, modseq: i64) -> Result<Changes>;
    /// Removes a blob's metadata if no message (not expunged) uses the blob; blob GC calls it
    /// for each blob it removes.
    async fn forget_meta(&self, blob_id: &str) -> Result<()>;
    /// Messages of a mailbox with `first <= uid <= last`, not expunged, by UID.
    async fn list_messages(&self, mailbox_id: i64, first: u32, last: u32) -> Result<Vec<Message>>;

    async fn blob_put(&self, id: &str, bytes: &[u8]) -> Result<()>;
    async fn blob_get(&self, id: &str) -> Result<Option<Vec<u8>>>;
    async fn blob_delete(&self, id: &str) -> Result<()>;
    async fn blob_list(&self) -> Result<Vec<BlobEntry>>;
    /// Which of `ids` a message (not expunged) or a queue item still uses.
    async fn blobs_in_use(&self, ids: &[String]) -> Result<Vec<String>>;
}
