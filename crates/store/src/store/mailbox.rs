//! Mailboxes and their messages, and message bytes kept in the database (`blobs = "db"`).

use async_trait::async_trait;

use super::{BlobWrite, Result};
use crate::model::{
    BlobEntry, Changes, Delivered, Delivery, FlagOp, FlagOutcome, Mailbox, MailboxStatus, Message,
    NewMessage, Timestamp,
};

/// An account's mailboxes and the messages in them: delivery, append and the reads of
/// mailbox and message state.
#[async_trait]
pub trait Mailboxes: Send + Sync {
    /// Creates a mailbox with a new UIDVALIDITY (IMAP CREATE). It is not subscribed by this
    /// (see [`Mailboxes::subscribe`]); [`crate::StoreError::MailboxExists`] if the name is taken.
    async fn create_mailbox(
        &self,
        account_id: i64,
        name: &str,
        special_use: Option<&str>,
    ) -> Result<Mailbox>;
    /// An account's mailbox by name (`INBOX` in any case). `subscribed` tells whether the
    /// account's subscriptions hold the name.
    async fn get_mailbox(&self, account_id: i64, name: &str) -> Result<Option<Mailbox>>;
    /// A mailbox by id (a session's selected mailbox, whatever it is called now).
    async fn mailbox_by_id(&self, mailbox_id: i64) -> Result<Option<Mailbox>>;
    async fn list_mailboxes(&self, account_id: i64) -> Result<Vec<Mailbox>>;
    /// Each mailbox's counters, by name, read from the mailbox rows.
    async fn mailbox_status(&self, account_id: i64) -> Result<Vec<MailboxStatus>>;
    /// One mailbox's counters (IMAP STATUS, SELECT), read from its row;
    /// [`crate::StoreError::MailboxNotFound`] if there is none.
    async fn status_of(&self, mailbox_id: i64) -> Result<MailboxStatus>;
    /// The mailbox's recent messages (IMAP4rev1 `\Recent`), messages no session has selected
    /// the mailbox since, as the UIDs `from..to`. With `claim` (a read-write SELECT, or a
    /// session that sees new messages arrive) they are this caller's: they stop being recent
    /// for every later session, in one statement, so exactly one session sees each message as
    /// recent, and `to` is where the claim ended (a message arriving after it is not in it).
    /// Without `claim` (EXAMINE), `to` is `u32::MAX`.
    async fn recent_from(&self, mailbox_id: i64, claim: bool) -> Result<(u32, u32)>;
    /// Each given mailbox's `(id, HIGHESTMODSEQ)`, ids that do not exist left out, in one read
    /// (in chunks of 500 ids): what a node's change poller asks for every mailbox its IMAP
    /// sessions have selected. Every write that changes a mailbox's messages raises it: a
    /// delivery, an append, a flag change that changes something, an expunge, a copy or move
    /// (both the destination and, for a move, the source).
    async fn mailbox_versions(&self, mailbox_ids: &[i64]) -> Result<Vec<(i64, i64)>>;
    /// Renames a mailbox and every mailbox below it (`from/...` becomes `to/...`, `/` being the
    /// hierarchy delimiter) in one transaction, keeping their ids, UIDVALIDITY and messages;
    /// the subscriptions of the renamed names follow them. Errors:
    /// [`crate::StoreError::MailboxNotFound`] (`from`), [`crate::StoreError::MailboxExists`]
    /// when `to` or the new name of a child exists. Renaming INBOX (any case) follows RFC 3501
    /// §6.3.5: a new mailbox `to` (new UIDVALIDITY) gets every INBOX message, with new UIDs
    /// 1..n in UID order and their flags, as a MOVE would; INBOX stays, empty, and its
    /// children keep their names.
    async fn rename_mailbox(&self, account_id: i64, from: &str, to: &str) -> Result<()>;
    /// Deletes a mailbox and its message rows in one transaction (IMAP DELETE); the account's
    /// used bytes go down by the sizes of its messages not expunged. Mailboxes below it stay, and
    /// so do subscriptions to its name (RFC 9051 §6.3.4). The blobs are left to blob GC:
    /// [`Mailboxes::blobs_in_use`] no longer counts them for this mailbox. INBOX cannot be
    /// deleted ([`crate::StoreError::Invalid`]); [`crate::StoreError::MailboxNotFound`] if
    /// there is no such mailbox.
    async fn delete_mailbox(&self, account_id: i64, name: &str) -> Result<()>;
    /// Subscribes an account to a name (IMAP SUBSCRIBE), which need not be a mailbox
    /// (RFC 9051 §6.3.7). Subscribing twice is harmless.
    async fn subscribe(&self, account_id: i64, name: &str) -> Result<()>;
    /// Ends a subscription (IMAP UNSUBSCRIBE); a name not subscribed is no error.
    async fn unsubscribe(&self, account_id: i64, name: &str) -> Result<()>;
    /// The names an account is subscribed to (IMAP LSUB, LIST (SUBSCRIBED)), sorted.
    async fn subscriptions(&self, account_id: i64) -> Result<Vec<String>>;

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
    /// transaction (unless the blob already has some). [`Mailboxes::append_many`] with one
    /// message.
    async fn append(
        &self,
        mailbox_id: i64,
        blob_id: &str,
        size: i64,
        internal_date: Timestamp,
        flags: &[String],
        meta: Option<&str>,
    ) -> Result<u32> {
        let message = NewMessage {
            blob_id: blob_id.into(),
            size,
            internal_date,
            flags: flags.to_vec(),
            meta: meta.map(str::to_string),
        };
        let uids = self
            .append_many(mailbox_id, std::slice::from_ref(&message))
            .await?;
        uids.first()
            .copied()
            .ok_or_else(|| crate::StoreError::Corrupt("an append returned no UID".into()))
    }
    /// Appends messages to one mailbox, all or none, in one transaction (IMAP MULTIAPPEND,
    /// RFC 3502); returns their UIDs in the order given. Each message takes the mailbox's next
    /// UID and a new MODSEQ; the quota is checked once, for their total size
    /// ([`crate::StoreError::OverQuota`], nothing written). Each `meta` is kept for its blob
    /// as [`Mailboxes::append`] keeps it. [`crate::StoreError::MailboxNotFound`] if the
    /// mailbox does not exist.
    async fn append_many(&self, mailbox_id: i64, messages: &[NewMessage]) -> Result<Vec<u32>> {
        self.append_many_with_text(mailbox_id, messages, &[]).await
    }
    /// As [`Mailboxes::append_many`], keeping each message's searchable text
    /// (`mailfleet_message::index_text_whole`; `texts[i]` for `messages[i]`, missing or `None`
    /// for none) in the full-text index for its blob in the same transaction, unless the blob
    /// has some already (see [`Delivery::text`]).
    async fn append_many_with_text(
        &self,
        mailbox_id: i64,
        messages: &[NewMessage],
        texts: &[Option<String>],
    ) -> Result<Vec<u32>>;
    /// The UIDs (not expunged), ascending, of the messages of a mailbox whose text may contain
    /// `needle` as a substring without regard to case (IMAP SEARCH BODY/TEXT), from the
    /// full-text index: a superset of those whose indexed text holds it, never missing one
    /// (messages with no text in the index are always among them). `None` when the index
    /// cannot narrow for this needle (the caller scans every message): on SQLite (trigrams)
    /// a needle of fewer than 3 characters; on PostgreSQL (words) one without an interior word,
    /// a run of letters and digits with another character on both sides inside the needle
    /// (`"o w"` has none, `"lo wo"` none, `"a big dog"` has `big`); on both, a needle with a
    /// line break or NUL. The index holds what `mailfleet_message::index_text` describes,
    /// not the transfer-encoded bytes of base64 or quoted-printable bodies.
    async fn text_candidates(&self, mailbox_id: i64, needle: &str) -> Result<Option<Vec<u32>>>;
    /// Copies (IMAP COPY, `remove_source` false) or moves (IMAP MOVE, RFC 6851, `remove_source`
    /// true) the messages `uids` of a mailbox to another (or, for a copy, the same) mailbox, in
    /// one transaction; returns `(source UID, new UID)` pairs by source UID (COPYUID). UIDs
    /// expunged or never there are skipped. Each copy takes the destination's next UID (in
    /// source UID order) and keeps the blob, flags, keywords (which join the destination's
    /// list), internal date and size; the destination's counters follow, and its HIGHESTMODSEQ
    /// goes up once, taken by every copy. The destination account's used bytes grow by the
    /// copied sizes, checked against its quota ([`crate::StoreError::OverQuota`], nothing
    /// written); a move within one account changes them by nothing. A move then expunges the
    /// sources as [`Mailboxes::expunge`] does: tombstones carrying one new MODSEQ of the
    /// source, counters and the source account's used bytes down. Nothing to copy writes
    /// nothing. [`crate::StoreError::MailboxNotFound`] if either mailbox does not exist.
    async fn copy_messages(
        &self,
        from_mailbox: i64,
        uids: &[u32],
        to_mailbox: i64,
        remove_source: bool,
    ) -> Result<Vec<(u32, u32)>>;
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
    /// `purged_up_to` is the mailbox's tombstone floor, read after the changes: if `modseq` is
    /// below it, expunges may be missing from `expunged` and the reader must compare the UIDs
    /// it knows with those that exist.
    async fn changes_since(&self, mailbox_id: i64, modseq: i64) -> Result<Changes>;
    /// Deletes the tombstones of messages expunged before `expunged_before` (a master job:
    /// only while `fence` holds at `now`, checked in each mailbox's transaction, else
    /// [`crate::StoreError::Fenced`]), and raises each mailbox's floor
    /// ([`Changes::purged_up_to`]) to the highest MODSEQ purged from it, in the same
    /// transaction. One transaction per mailbox.
    async fn purge_tombstones(
        &self,
        fence: &crate::model::Fence,
        now: crate::model::Timestamp,
        expunged_before: crate::model::Timestamp,
    ) -> Result<crate::model::TombstonePurge>;
    /// Removes a blob's metadata if no message (not expunged) uses the blob; blob GC calls it
    /// for each blob it removes.
    async fn forget_meta(&self, blob_id: &str) -> Result<()>;
    /// Messages of a mailbox with `first <= uid <= last`, not expunged, by UID.
    async fn list_messages(&self, mailbox_id: i64, first: u32, last: u32) -> Result<Vec<Message>>;
    /// At most `limit` messages of a mailbox with `first_uid <= uid <= last_uid`, by UID, each
    /// with its blob's metadata if it has some (a page of IMAP FETCH or SEARCH: ask again from
    /// the last UID + 1). Expunged messages whose tombstones remain come too, marked
    /// `expunged`: a session that has not yet told its client of an expunge still answers
    /// FETCH for the message (RFC 9051 §7.5.1).
    async fn fetch_messages(
        &self,
        mailbox_id: i64,
        first_uid: u32,
        last_uid: u32,
        limit: u32,
    ) -> Result<Vec<(Message, Option<String>)>>;
    /// Keeps a blob's metadata unless it has some already (for messages delivered without it,
    /// once a reader has parsed the blob).
    async fn put_message_meta(&self, blob_id: &str, meta: &str) -> Result<()>;

    async fn blob_put(&self, id: &str, bytes: &[u8]) -> Result<()>;
    async fn blob_get(&self, id: &str) -> Result<Option<Vec<u8>>>;
    async fn blob_delete(&self, id: &str) -> Result<()>;
    async fn blob_list(&self) -> Result<Vec<BlobEntry>>;
    /// Which of `ids` a message (not expunged) or a queue item still uses.
    async fn blobs_in_use(&self, ids: &[String]) -> Result<Vec<String>>;
}
