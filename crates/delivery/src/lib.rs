//! Local delivery: resolving a recipient through accounts, aliases and catch-alls, and committing
//! one message to every local INBOX (and the remote part to the queue) in one transaction.
//!
//! Used by the SMTP session and by the outbound queue (bounces to local senders).
//!
//! Resolution of a normalised address `a@d`:
//! 1. an account `a@d` → that account;
//! 2. else an alias `a@d` → each of its targets, resolved the same way (an alias may point at
//!    accounts, other aliases, catch-alls or remote addresses), at most [`MAX_ALIAS_DEPTH`]
//!    levels deep, each address visited once (so loops end);
//! 3. else a catch-all alias `@d` → its targets;
//! 4. else unknown.
//!
//! A target whose domain is not a local domain is remote: it goes to the queue.

pub mod text_index;

use std::collections::BTreeSet;

use mailfleet_store::address::{domain_of, normalize_address, normalize_alias};
use mailfleet_store::{
    Account, BlobStore, Delivered, Delivery, DeliveryTarget, NewQueueItem, QueueRecipient, Spooled,
    Store, StoreError,
};

/// How many alias levels are followed.
pub const MAX_ALIAS_DEPTH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("alias nesting deeper than {MAX_ALIAS_DEPTH} levels at {0}")]
    TooDeep(String),
}

/// Where one recipient's copies go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Local accounts (enabled or not: the caller decides), without duplicates.
    pub local: Vec<Account>,
    /// Remote addresses, normalised, without duplicates.
    pub remote: Vec<String>,
}

impl Resolved {
    pub fn is_empty(&self) -> bool {
        self.local.is_empty() && self.remote.is_empty()
    }

    fn add_local(&mut self, a: Account) {
        if !self.local.iter().any(|x| x.id == a.id) {
            self.local.push(a);
        }
    }

    fn add_remote(&mut self, r: String) {
        if !self.remote.contains(&r) {
            self.remote.push(r);
        }
    }
}

/// Is `domain` (normalised) one of ours?
pub async fn is_local_domain(store: &dyn Store, domain: &str) -> Result<bool, StoreError> {
    store.domain_exists(domain).await
}

/// Resolves a normalised address whose domain is local. Empty means "no such user".
pub async fn resolve(store: &dyn Store, address: &str) -> Result<Resolved, DeliveryError> {
    let mut out = Resolved::default();
    let mut seen = BTreeSet::new();
    resolve_into(store, address, false, 0, &mut seen, &mut out).await?;
    Ok(out)
}

/// As [`resolve`], for an address whose domain the caller has just found to be local.
pub async fn resolve_local(store: &dyn Store, address: &str) -> Result<Resolved, DeliveryError> {
    let mut out = Resolved::default();
    let mut seen = BTreeSet::new();
    resolve_into(store, address, true, 0, &mut seen, &mut out).await?;
    Ok(out)
}

fn resolve_into<'a>(
    store: &'a dyn Store,
    address: &'a str,
    domain_is_local: bool,
    depth: usize,
    seen: &'a mut BTreeSet<String>,
    out: &'a mut Resolved,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), DeliveryError>> + Send + 'a>> {
    Box::pin(async move {
        if depth > MAX_ALIAS_DEPTH {
            return Err(DeliveryError::TooDeep(address.to_string()));
        }
        if !seen.insert(address.to_string()) {
            return Ok(());
        }
        let domain = domain_of(address).to_string();
        if !domain_is_local && !store.domain_exists(&domain).await? {
            out.add_remote(address.to_string());
            return Ok(());
        }
        if let Some(account) = store.get_account(address).await? {
            out.add_local(account);
            return Ok(());
        }
        let alias = match store.get_alias(address).await? {
            Some(a) => Some(a),
            None => store.get_alias(&format!("@{domain}")).await?,
        };
        let Some(alias) = alias else {
            return Ok(());
        };
        for target in &alias.targets {
            let Ok(target) = normalize_alias(target) else {
                tracing::warn!("alias {} has a malformed target {target:?}", alias.address);
                continue;
            };
            if target.starts_with('@') {
                // An alias to a whole domain maps the local part across: a@d → a@other.
                let local = address.rsplit_once('@').map(|(l, _)| l).unwrap_or(address);
                let mapped = format!("{local}{target}");
                resolve_into(store, &mapped, false, depth + 1, seen, out).await?;
            } else {
                resolve_into(store, &target, false, depth + 1, seen, out).await?;
            }
        }
        Ok(())
    })
}

/// Does `sender` (any form) belong to `account`: its own address, or an alias (not a catch-all)
/// that resolves to it?
pub async fn sender_belongs_to(
    store: &dyn Store,
    sender: &str,
    account: &Account,
) -> Result<bool, DeliveryError> {
    let Ok(sender) = normalize_address(sender) else {
        return Ok(false);
    };
    if sender == account.address {
        return Ok(true);
    }
    if store.get_alias(&sender).await?.is_none() {
        return Ok(false);
    }
    let r = resolve(store, &sender).await?;
    Ok(r.local.iter().any(|a| a.id == account.id))
}

/// One remote recipient for the queue, with its DSN parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRecipient {
    pub address: String,
    pub notify: Vec<String>,
    pub orcpt: Option<String>,
}

/// What to deliver: local account ids and remote recipients of one message.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Reverse path (empty for a bounce).
    pub sender: String,
    pub local: Vec<i64>,
    pub remote: Vec<RemoteRecipient>,
    pub envid: Option<String>,
    pub ret: Option<String>,
}

impl Plan {
    pub fn add_local(&mut self, account_id: i64) {
        if !self.local.contains(&account_id) {
            self.local.push(account_id);
        }
    }

    pub fn add_remote(&mut self, r: RemoteRecipient) {
        if !self.remote.iter().any(|x| x.address == r.address) {
            self.remote.push(r);
        }
    }
}

/// As [`deliver`], for a message from a spool: one in memory goes the same way; one in a
/// spool file is moved into the blob store (no second read where the filesystem allows) and
/// then committed.
pub async fn deliver_spooled(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    message: Spooled,
    plan: &Plan,
) -> Result<Vec<Delivered>, DeliveryError> {
    let file = match message {
        Spooled::Memory(bytes) => return deliver(store, blobs, &bytes, plan).await,
        Spooled::File(f) => f,
    };
    let size = file.len() as i64;
    let blob_id = blobs.put_spooled(file).await?;
    // A spooled message is too large to parse in memory here: no metadata yet (to be computed
    // from the blob when first needed).
    let delivery = new_delivery(blob_id, size, plan, None, None);
    Ok(store.deliver(&delivery).await?)
}

/// The rows of one message's delivery.
fn new_delivery(
    blob_id: String,
    size: i64,
    plan: &Plan,
    meta: Option<String>,
    text: Option<String>,
) -> Delivery {
    let now = mailfleet_store::now();
    let queue = if plan.remote.is_empty() {
        Vec::new()
    } else {
        vec![NewQueueItem {
            sender: plan.sender.clone(),
            recipients: plan
                .remote
                .iter()
                .map(|r| {
                    let mut q = QueueRecipient::new(r.address.clone());
                    q.notify = r.notify.clone();
                    q.orcpt = r.orcpt.clone();
                    q
                })
                .collect(),
            envid: plan.envid.clone(),
            ret: plan.ret.clone(),
            next_attempt: now,
        }]
    };
    Delivery {
        blob_id,
        size,
        internal_date: now,
        targets: plan
            .local
            .iter()
            .map(|&account_id| DeliveryTarget {
                account_id,
                mailbox: "INBOX".to_string(),
                flags: Vec::new(),
            })
            .collect(),
        queue,
        meta,
        text,
    }
}

/// Stores `message` as a blob (fsynced) and commits it to every local INBOX of the plan plus
/// one queue item for the remote part, in one transaction. When this returns `Ok`, the message
/// is durable.
pub async fn deliver(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    message: &[u8],
    plan: &Plan,
) -> Result<Vec<Delivered>, DeliveryError> {
    let blob_id = mailfleet_store::blob::blob_id(message);
    // What IMAP FETCH needs without opening the blob, and the text IMAP SEARCH BODY/TEXT
    // narrows its candidates with (none when longer than the index takes: searches scan the
    // message then), stored with the rows when a local mailbox gets the message.
    let (meta, text) = if plan.local.is_empty() {
        (None, None)
    } else {
        let parsed = mailfleet_message::Metadata::parse(message);
        let text = mailfleet_message::index_text_whole(message, &parsed);
        (Some(parsed.to_stored()), text)
    };
    let delivery = new_delivery(blob_id, message.len() as i64, plan, meta, text);
    if blobs.written_through_store(message.len()) {
        // Blob row and message rows in one transaction.
        return Ok(store.deliver_with_bytes(&delivery, message).await?);
    }
    // The store prepares the rows while the blob is written; it commits them only once the
    // blob is on disk.
    let expected = delivery.blob_id.clone();
    let write = Box::pin(async move {
        let written = blobs.put(message).await?;
        if written != expected {
            return Err(mailfleet_store::StoreError::Corrupt(format!(
                "blob store named the message {written}"
            )));
        }
        Ok(())
    });
    Ok(store.deliver_with_blob(&delivery, write).await?)
}

/// Outcome for one recipient of [`deliver_to_addresses`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressOutcome {
    /// Delivered locally and/or queued.
    Accepted,
    /// The domain is local but nothing answers to the address.
    Unknown,
    /// Every account the address reaches is disabled, and it forwards nowhere.
    Disabled,
    /// Every enabled account the address reaches would go over its quota with this message,
    /// and it forwards nowhere.
    OverQuota,
    /// Malformed address or alias trouble, with the reason.
    Failed(String),
}

/// Delivers a ready message (headers included) to addresses, local ones to their INBOXes and
/// remote ones (only when `allow_remote`) to the queue. For the queue's bounces: resolution,
/// then one [`deliver`]. Returns one outcome per input address.
pub async fn deliver_to_addresses(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    sender: &str,
    addresses: &[String],
    message: &[u8],
    allow_remote: bool,
) -> Result<Vec<AddressOutcome>, DeliveryError> {
    let mut plan = Plan {
        sender: sender.to_string(),
        ..Plan::default()
    };
    let mut outcomes = Vec::with_capacity(addresses.len());
    for a in addresses {
        let Ok(addr) = normalize_address(a) else {
            outcomes.push(AddressOutcome::Failed(format!("malformed address {a:?}")));
            continue;
        };
        if !store.domain_exists(domain_of(&addr)).await? {
            if allow_remote {
                plan.add_remote(RemoteRecipient {
                    address: addr,
                    notify: vec!["NEVER".into()],
                    orcpt: None,
                });
                outcomes.push(AddressOutcome::Accepted);
            } else {
                outcomes.push(AddressOutcome::Failed("not a local domain".into()));
            }
            continue;
        }
        match resolve(store, &addr).await {
            Ok(r) if r.is_empty() => outcomes.push(AddressOutcome::Unknown),
            Ok(r) => {
                let enabled: Vec<_> = r.local.iter().filter(|a| a.enabled).collect();
                if enabled.is_empty() && (r.remote.is_empty() || !allow_remote) {
                    outcomes.push(AddressOutcome::Disabled);
                    continue;
                }
                // An alias's members with room get the message; the full ones go without it.
                let size = message.len() as i64;
                let room: Vec<_> = enabled
                    .iter()
                    .filter(|a| !a.over_quota_with(size))
                    .collect();
                if room.is_empty() && (r.remote.is_empty() || !allow_remote) {
                    outcomes.push(AddressOutcome::OverQuota);
                    continue;
                }
                for acc in room {
                    plan.add_local(acc.id);
                }
                if allow_remote {
                    for rem in r.remote {
                        plan.add_remote(RemoteRecipient {
                            address: rem,
                            notify: vec!["NEVER".into()],
                            orcpt: None,
                        });
                    }
                }
                outcomes.push(AddressOutcome::Accepted);
            }
            Err(DeliveryError::TooDeep(x)) => outcomes.push(AddressOutcome::Failed(format!(
                "alias nesting too deep at {x}"
            ))),
            Err(e) => return Err(e),
        }
    }
    if !plan.local.is_empty() || !plan.remote.is_empty() {
        deliver(store, blobs, message, &plan).await?;
    }
    Ok(outcomes)
}
