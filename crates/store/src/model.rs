//! The values the store reads and writes. Plain data, no I/O.

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch.
pub type Timestamp = i64;

/// Current time as a [`Timestamp`].
pub fn now() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    pub name: String,
    pub created: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: i64,
    /// Lower-case `local@domain`.
    pub address: String,
    /// PHC string (`$argon2id$...`).
    #[serde(skip_serializing)]
    pub password_hash: String,
    /// 0 means no limit.
    pub quota_bytes: i64,
    pub used_bytes: i64,
    pub shard: String,
    pub enabled: bool,
    pub created: Timestamp,
}

impl Account {
    /// Would `extra` more bytes exceed the quota?
    pub fn over_quota_with(&self, extra: i64) -> bool {
        self.quota_bytes > 0 && self.used_bytes.saturating_add(extra) > self.quota_bytes
    }
}

/// A new account; the address must already be normalised and its domain must exist.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub address: String,
    pub password_hash: String,
    pub quota_bytes: i64,
    pub shard: String,
}

/// Changes to an account; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AccountUpdate {
    pub password_hash: Option<String>,
    pub quota_bytes: Option<i64>,
    pub enabled: Option<bool>,
    pub shard: Option<String>,
}

/// One address (or a catch-all `@domain`) forwarding to one or more targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    pub address: String,
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub name: String,
    pub weight: i64,
    /// Number of accounts homed on the shard.
    pub accounts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    pub id: i64,
    pub account_id: i64,
    /// '/'-separated hierarchy, e.g. `INBOX`, `Archive/2026`.
    pub name: String,
    /// RFC 6154 attribute such as `\Sent`, if any.
    pub special_use: Option<String>,
    pub subscribed: bool,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highestmodseq: i64,
}

/// Counts for one mailbox, as `mailbox status` and IMAP STATUS show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailboxStatus {
    pub name: String,
    pub messages: i64,
    pub unseen: i64,
    /// Messages flagged `\Deleted`, not yet expunged (not in `mailbox status --json`, whose
    /// keys stay as they were).
    #[serde(default, skip_serializing)]
    pub deleted: i64,
    pub uidnext: u32,
    pub uidvalidity: u32,
    pub bytes: i64,
    /// The mailbox's HIGHESTMODSEQ (RFC 7162; not in `mailbox status --json` either).
    #[serde(default, skip_serializing)]
    pub highestmodseq: i64,
    /// Messages no session has seen as recent yet (IMAP4rev1 `RECENT`; not in the JSON).
    #[serde(default, skip_serializing)]
    pub recent: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub mailbox_id: i64,
    pub uid: u32,
    pub modseq: i64,
    /// System flags (`\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`, in that order),
    /// then keywords in the order stored.
    pub flags: Vec<String>,
    pub internal_date: Timestamp,
    pub size: i64,
    pub blob_id: String,
    pub expunged: bool,
}

/// One message of an IMAP MULTIAPPEND ([`crate::Mailboxes::append_many`]), its blob already
/// stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub blob_id: String,
    pub size: i64,
    pub internal_date: Timestamp,
    pub flags: Vec<String>,
    /// The message's `mailfleet_message::Metadata::to_stored()`, kept for its blob unless the
    /// blob already has some; `None` when not computed.
    pub meta: Option<String>,
}

/// How [`crate::Mailboxes::set_flags`] changes the flags (IMAP STORE `+FLAGS`, `-FLAGS`,
/// `FLAGS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    Add,
    Remove,
    Replace,
}

/// A message whose flags changed, with its flags and MODSEQ now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagChange {
    pub uid: u32,
    pub flags: Vec<String>,
    pub modseq: i64,
}

/// What [`crate::Mailboxes::set_flags`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagOutcome {
    /// The messages whose flags changed, by UID; all carry the one new MODSEQ.
    pub changed: Vec<FlagChange>,
    /// UIDs refused because they changed after `unchanged_since` (RFC 7162 `MODIFIED`).
    pub modified: Vec<u32>,
}

/// What changed in a mailbox since a MODSEQ ([`crate::Mailboxes::changes_since`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Messages still there whose flags changed (or which arrived), by UID.
    pub changed: Vec<FlagChange>,
    /// UIDs expunged, by UID.
    pub expunged: Vec<u32>,
    /// The highest MODSEQ among these changes (and expunges), 0 when there are none: every
    /// change raises the mailbox's HIGHESTMODSEQ to the MODSEQ it gives its message, so after
    /// reading the changes a reader knows the mailbox up to this MODSEQ.
    pub highest: i64,
    /// The mailbox's tombstone floor: the highest MODSEQ of an expunge whose tombstone was
    /// purged (0: none ever was). A reader that asked for changes since a MODSEQ below it
    /// may miss expunges in `expunged`, and learns them by comparing UIDs instead.
    pub purged_up_to: i64,
}

/// What [`crate::Mailboxes::purge_tombstones`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TombstonePurge {
    /// Mailboxes whose floor rose.
    pub mailboxes: u64,
    pub tombstones: u64,
}

/// Where a message goes: one mailbox of one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryTarget {
    pub account_id: i64,
    /// Mailbox name; created (without special-use) if it does not exist yet.
    pub mailbox: String,
    pub flags: Vec<String>,
}

/// One message (already a blob) for several local mailboxes and, optionally, the outbound queue,
/// committed in one transaction.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub blob_id: String,
    pub size: i64,
    pub internal_date: Timestamp,
    pub targets: Vec<DeliveryTarget>,
    /// Remote recipients: queued in the same transaction.
    pub queue: Vec<NewQueueItem>,
    /// The message's `mailfleet_message::Metadata::to_stored()`, kept once per blob in the same
    /// transaction (what IMAP FETCH needs without opening the blob); `None` when not computed.
    pub meta: Option<String>,
    /// The message's searchable text (`mailfleet_message::index_text_whole`), kept once per blob
    /// in the full-text index in the same transaction, unless the blob has some already;
    /// `None` when not computed (searches then scan the message).
    pub text: Option<String>,
}

/// The UID each target received, in the order of `Delivery::targets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub mailbox_id: i64,
    pub uid: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRecipient {
    pub address: String,
    /// RFC 3461 NOTIFY values (`SUCCESS`, `FAILURE`, `DELAY`, `NEVER`); empty means the default.
    #[serde(default)]
    pub notify: Vec<String>,
    #[serde(default)]
    pub orcpt: Option<String>,
    /// `pending`, `delivered` or `failed`.
    #[serde(default = "pending")]
    pub status: String,
    #[serde(default)]
    pub last_error: Option<String>,
}

fn pending() -> String {
    "pending".to_string()
}

impl QueueRecipient {
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            notify: Vec::new(),
            orcpt: None,
            status: pending(),
            last_error: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewQueueItem {
    /// Reverse path; empty for a bounce.
    pub sender: String,
    pub recipients: Vec<QueueRecipient>,
    /// RFC 3461 ENVID and RET (`FULL`/`HDRS`).
    pub envid: Option<String>,
    pub ret: Option<String>,
    /// Not before this time.
    pub next_attempt: Timestamp,
}

/// A message to queue whose blob is already stored: a delivery status notification written
/// with the outcome of the attempt that caused it.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    pub blob_id: String,
    pub size: i64,
    pub item: NewQueueItem,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueItem {
    pub id: i64,
    pub blob_id: String,
    pub size: i64,
    pub sender: String,
    pub recipients: Vec<QueueRecipient>,
    pub envid: Option<String>,
    pub ret: Option<String>,
    pub created: Timestamp,
    pub next_attempt: Timestamp,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// True once a delay warning was sent.
    pub warned: bool,
    pub lease_holder: Option<String>,
    pub lease_until: Option<Timestamp>,
}

/// The outbound queue at a glance: its size, its oldest item and who holds leases on items.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSummary {
    /// Items in the queue, leased or not.
    pub items: i64,
    /// When the oldest item was queued (`None` when the queue is empty).
    pub oldest: Option<Timestamp>,
    /// Items under a lease that has not expired, per holder (server ID), sorted by holder.
    pub held: Vec<(String, i64)>,
}

impl QueueSummary {
    /// Items `holder` has under a live lease.
    pub fn held_by(&self, holder: &str) -> i64 {
        self.held
            .iter()
            .find(|(h, _)| h == holder)
            .map_or(0, |(_, n)| *n)
    }
}

/// What a delivery attempt did with a claimed queue item.
#[derive(Debug, Clone)]
pub enum QueueOutcome {
    /// Every recipient is done (delivered or failed for good): remove the item.
    Done,
    /// Some recipients remain: store their new state and try again at `next_attempt`.
    Retry {
        recipients: Vec<QueueRecipient>,
        next_attempt: Timestamp,
        last_error: Option<String>,
        warned: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub server_id: String,
    pub hostname: String,
    /// Free-form JSON: addresses, services, connection counts.
    pub info: serde_json::Value,
    pub started: Timestamp,
    pub last_seen: Timestamp,
}

/// An administrator's request that a node drain: stop taking clients, let its sessions end
/// (until `deadline` at the latest), give back its queue leases, and exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainRequest {
    pub server_id: String,
    pub requested: Timestamp,
    pub deadline: Timestamp,
}

/// One balancer's view of one real server of one of its services, as it last reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalancerServerView {
    /// The balancer's name (its `[cluster] name`).
    pub balancer: String,
    pub service: String,
    pub server: String,
    /// `ip:port`, or the host name as configured.
    pub address: String,
    /// `up`, `down`, `drain` or `maint`.
    pub state: String,
    /// Client connections the balancer has open to it.
    pub active: i64,
    /// When the balancer wrote this row.
    pub updated: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    /// Increases every time the lease changes hands; a holder passes it along with its writes so
    /// a stale holder can be refused.
    pub token: i64,
    pub expires: Timestamp,
    /// When the present holder took the lease (renewals keep it; 0 for a lease last taken
    /// before schema version 6).
    #[serde(default)]
    pub acquired: Timestamp,
}

/// What a lease holder shows with a write that only the holder may make (a master job's):
/// the store makes the write only while `lease` is held by `holder` with `token` and has not
/// expired, checked in the write's own transaction, else refuses it with
/// [`crate::StoreError::Fenced`] and writes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub lease: String,
    pub holder: String,
    pub token: i64,
}

/// What [`crate::Cluster::delete_stale_leases`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StaleLeases {
    /// Lease rows deleted.
    pub leases: u64,
    /// Queue items whose run-out lease was cleared.
    pub queue_leases: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    pub key: String,
    pub value: String,
    pub version: i64,
}

/// A blob's id and when it was written, for garbage collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobEntry {
    pub id: String,
    pub created: Timestamp,
}
