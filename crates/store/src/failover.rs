//! `backup_store` (a node's second store address): a [`Store`] that serves every call from the
//! primary store while it can be reached and from the backup store while it cannot, and goes
//! back to the primary once it has answered again for a while.
//!
//! At any moment one of the two is the active store and every call goes to it alone, so a
//! write never goes to both. Which one is active is decided by a monitor task, not by the
//! calls: it probes the primary every [`FailoverTiming::probe_every`] over a connection of its
//! own (so a pool busy with work never looks like a dead server), and a call that fails with a
//! connection error only makes it probe at once.
//!
//! - On the primary, [`FailoverTiming::down_after`] probes in a row that cannot reach it (or
//!   that find it no longer accepting writes: a PostgreSQL server in recovery, i.e. a standby)
//!   switch to the backup, if the backup answers (and, when the primary still answers
//!   read-only, only if the backup accepts writes).
//! - On the backup, the primary must have answered every probe, accepting writes, for
//!   [`FailoverTiming::back_after`] before the node goes back. A primary that returns as a
//!   standby (re-synced from the promoted backup by the operator's replication tooling) does
//!   not accept writes, so the node stays on the backup.
//!
//! The backup is meant to be a replica that the operator's tooling promotes (seed 000's
//! "backup connection", DESIGN.md §7): mailfleet replicates nothing. Mail accepted while the
//! node was on the backup is in the backup's database only.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::{Notify, watch};

use crate::error::StoreError;
use crate::model::*;
use crate::store::{BlobWrite, Cluster, Directory, Limits, Mailboxes, Queue, Result, Store};

/// A store call's future, as the store's traits return it.
type BoxedCall<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// How often and how patiently the monitor probes, and how sure it must be before it switches.
#[derive(Debug, Clone, Copy)]
pub struct FailoverTiming {
    /// Time between probes of the primary.
    pub probe_every: Duration,
    /// A probe that has not answered by then failed.
    pub probe_timeout: Duration,
    /// Failed probes in a row that move the node to the backup.
    pub down_after: u32,
    /// How long the primary must answer every probe before the node goes back to it.
    pub back_after: Duration,
}

impl Default for FailoverTiming {
    fn default() -> Self {
        Self {
            probe_every: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(2),
            down_after: 2,
            back_after: Duration::from_secs(3),
        }
    }
}

/// Which of its two stores a [`FailoverStore`] serves calls from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveStore {
    Primary,
    Backup,
}

impl ActiveStore {
    pub fn as_str(self) -> &'static str {
        match self {
            ActiveStore::Primary => "primary",
            ActiveStore::Backup => "backup",
        }
    }
}

/// A store with a primary and a backup address; see the module's documentation.
pub struct FailoverStore {
    /// The store opened at start: the primary, or the backup if the primary could not be
    /// reached then.
    first: Arc<dyn Store>,
    first_is: ActiveStore,
    /// The other one, once the monitor has opened it (it is kept open from then on).
    second: OnceLock<Arc<dyn Store>>,
    /// Whether calls go to `second`; set only once `second` is.
    on_second: AtomicBool,
    /// Wakes the monitor for a probe now (a call failed as if the store were unreachable).
    probe_now: Notify,
    /// Counts the moves away from a store that could not be reached: a call still waiting on
    /// that store (for a connection its pool cannot make, up to the pool's 10 s) fails at once
    /// instead, so the client's retry goes to the other store.
    abandoned: watch::Sender<u64>,
    /// The primary's URL with any password hidden, for the errors of abandoned calls.
    primary_name: String,
}

impl FailoverStore {
    /// Opens the primary store, or the backup when the primary cannot be reached, and starts the
    /// monitor that moves between them (on the current tokio runtime; it ends when the store is
    /// dropped).
    pub async fn open(
        primary_url: &str,
        backup_url: &str,
        timing: FailoverTiming,
    ) -> Result<Arc<FailoverStore>> {
        let (first, first_is) = match crate::open(primary_url).await {
            Ok(store) => (store, ActiveStore::Primary),
            Err(e @ StoreError::Unreachable { .. }) => {
                tracing::warn!("{e}; using backup_store {}", crate::redact_url(backup_url));
                (crate::open(backup_url).await?, ActiveStore::Backup)
            }
            Err(e) => return Err(e),
        };
        let this = Arc::new(FailoverStore {
            first,
            first_is,
            second: OnceLock::new(),
            on_second: AtomicBool::new(false),
            probe_now: Notify::new(),
            abandoned: watch::Sender::new(0),
            primary_name: crate::redact_url(primary_url),
        });
        let monitor = Monitor {
            store: Arc::downgrade(&this),
            timing,
            primary: Endpoint::new(ActiveStore::Primary, primary_url)?,
            backup: Endpoint::new(ActiveStore::Backup, backup_url)?,
        };
        tokio::spawn(monitor.run());
        Ok(this)
    }

    /// Which store calls go to now.
    pub fn active(&self) -> ActiveStore {
        match (self.first_is, self.on_second.load(Ordering::Acquire)) {
            (which, false) => which,
            (ActiveStore::Primary, true) => ActiveStore::Backup,
            (ActiveStore::Backup, true) => ActiveStore::Primary,
        }
    }

    fn current(&self) -> &dyn Store {
        if self.on_second.load(Ordering::Acquire)
            && let Some(second) = self.second.get()
        {
            return second.as_ref();
        }
        self.first.as_ref()
    }

    /// Runs one call on the active store: `call` is given that store. The call fails with
    /// [`StoreError::Unreachable`] if the node moves away from that store, as unreachable,
    /// while it waits.
    async fn on_active<'a, T, F>(&'a self, call: F) -> Result<T>
    where
        F: FnOnce(&'a dyn Store) -> BoxedCall<'a, T>,
    {
        // Watch before choosing, so that a move between the two is seen.
        let mut moves = self.abandoned.subscribe();
        let which = self.active();
        let store = self.current();
        let abandoned = async {
            loop {
                if self.active() != which {
                    return;
                }
                if moves.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        let result = tokio::select! {
            biased;
            result = call(store) => result,
            () = abandoned => Err(StoreError::Unreachable {
                url: self.name_of(which),
                reason: "the node moved to the other store while this call waited".into(),
            }),
        };
        self.seen(result)
    }

    fn name_of(&self, which: ActiveStore) -> String {
        match which {
            ActiveStore::Primary => self.primary_name.clone(),
            ActiveStore::Backup => "backup_store".into(),
        }
    }

    /// The primary's or the backup's store, if it is open.
    fn store_of(&self, which: ActiveStore) -> Option<&Arc<dyn Store>> {
        if which == self.first_is {
            Some(&self.first)
        } else {
            self.second.get()
        }
    }

    /// The primary's or the backup's store, opened now from `url` if it was not open yet.
    async fn open_store_of(&self, which: ActiveStore, url: &str) -> Result<Arc<dyn Store>> {
        if let Some(store) = self.store_of(which) {
            return Ok(store.clone());
        }
        let store = open_owned(url.to_string()).await?;
        // Only the monitor opens stores, one at a time, so the slot is still empty here.
        let _ = self.second.set(store);
        self.second
            .get()
            .cloned()
            .ok_or_else(|| StoreError::Invalid("store slot left empty".into()))
    }

    fn switch(&self, to: ActiveStore) {
        self.on_second.store(to != self.first_is, Ordering::Release);
    }

    /// Passes a call's result through, asking the monitor for a probe when the error says the
    /// store could not be reached.
    fn seen<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result
            && is_connection_error(e)
        {
            self.probe_now.notify_one();
        }
        result
    }
}

/// [`crate::open`] for the monitor, on a blocking thread that drives it on the node's runtime:
/// the compiler cannot prove `crate::open`'s future `Send` (sqlx's migration statements borrow
/// a connection across awaits), which a task on `tokio::spawn` needs; this future is.
async fn open_owned(url: String) -> Result<Arc<dyn Store>> {
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || runtime.block_on(crate::open(&url)))
        .await
        .map_err(|e| StoreError::Invalid(format!("opening a store failed: {e}")))?
}

/// Whether an error says the store could not be reached (rather than refused the call).
fn is_connection_error(e: &StoreError) -> bool {
    match e {
        StoreError::Unreachable { .. } => true,
        StoreError::Database(db) => match db {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // SQLSTATE class 08 (connection exception) and 57 (operator intervention: the
            // server is shutting down or starting up).
            sqlx::Error::Database(d) => d
                .code()
                .is_some_and(|c| c.starts_with("08") || c.starts_with("57")),
            _ => false,
        },
        _ => false,
    }
}

/// What a probe found.
#[derive(Debug)]
enum Probe {
    Down(String),
    Up { writable: bool },
}

impl Probe {
    fn usable(&self) -> bool {
        matches!(self, Probe::Up { writable: true })
    }
}

/// One of the two stores, as the monitor sees it: which one, its URL and the probe's own
/// connection.
struct Endpoint {
    which: ActiveStore,
    url: String,
    probe: Prober,
}

enum Prober {
    /// A PostgreSQL server, probed over a connection outside the store's pool.
    Postgres {
        options: Box<PgConnectOptions>,
        connection: Option<PgConnection>,
    },
    /// A SQLite file: local, probed by opening it and reading from it.
    Sqlite,
}

impl Endpoint {
    fn new(which: ActiveStore, url: &str) -> Result<Self> {
        let probe = if url.starts_with("sqlite:") {
            Prober::Sqlite
        } else {
            let options: PgConnectOptions =
                url.parse().map_err(|e: sqlx::Error| StoreError::BadUrl {
                    url: crate::redact_url(url),
                    reason: e.to_string(),
                })?;
            Prober::Postgres {
                options: Box::new(options),
                connection: None,
            }
        };
        Ok(Self {
            which,
            url: url.to_string(),
            probe,
        })
    }

    fn name(&self) -> String {
        crate::redact_url(&self.url)
    }

    async fn probe(&mut self, this: &FailoverStore, timeout: Duration) -> Probe {
        match tokio::time::timeout(timeout, self.probe_once(this)).await {
            Ok(probe) => probe,
            Err(_) => {
                // A connection that did not answer in time is not trusted again.
                if let Prober::Postgres { connection, .. } = &mut self.probe {
                    *connection = None;
                }
                Probe::Down(format!("no answer within {timeout:?}"))
            }
        }
    }

    async fn probe_once(&mut self, this: &FailoverStore) -> Probe {
        match &mut self.probe {
            Prober::Postgres {
                options,
                connection,
            } => {
                // A kept connection that fails may only have been broken by a restart of the
                // server: one more try on a new connection decides.
                let kept = connection.take();
                let had_one = kept.is_some();
                if let Some(mut c) = kept {
                    match in_recovery(&mut c).await {
                        Ok(in_recovery) => {
                            *connection = Some(c);
                            return Probe::Up {
                                writable: !in_recovery,
                            };
                        }
                        Err(e) => tracing::debug!("store probe on a kept connection: {e}"),
                    }
                }
                let mut c = match PgConnection::connect_with(options).await {
                    Ok(c) => c,
                    Err(e) => return Probe::Down(e.to_string()),
                };
                match in_recovery(&mut c).await {
                    Ok(in_recovery) => {
                        *connection = Some(c);
                        Probe::Up {
                            writable: !in_recovery,
                        }
                    }
                    Err(e) => Probe::Down(if had_one {
                        format!("{e} (also on a new connection)")
                    } else {
                        e.to_string()
                    }),
                }
            }
            Prober::Sqlite => match this.open_store_of(self.which, &self.url).await {
                Ok(store) => match store.settings_version().await {
                    Ok(_) => Probe::Up { writable: true },
                    Err(e) => Probe::Down(e.to_string()),
                },
                Err(e) => Probe::Down(e.to_string()),
            },
        }
    }
}

/// Whether the PostgreSQL server is a standby (in recovery: it takes no writes).
async fn in_recovery(c: &mut PgConnection) -> std::result::Result<bool, sqlx::Error> {
    sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()")
        .fetch_one(c)
        .await
}

struct Monitor {
    store: Weak<FailoverStore>,
    timing: FailoverTiming,
    primary: Endpoint,
    backup: Endpoint,
}

impl Monitor {
    async fn run(mut self) {
        let mut misses = 0u32;
        let mut usable_since: Option<Instant> = None;
        let mut stuck_logged = false;
        loop {
            let Some(this) = self.store.upgrade() else {
                return;
            };
            let which = this.active();
            let probe = self.primary.probe(&this, self.timing.probe_timeout).await;
            match which {
                ActiveStore::Primary => {
                    if probe.usable() {
                        if stuck_logged {
                            tracing::info!("primary store {} answers again", self.primary.name());
                        }
                        misses = 0;
                        stuck_logged = false;
                    } else {
                        misses += 1;
                        if misses >= self.timing.down_after {
                            match self.move_to_backup(&this, &probe).await {
                                Ok(()) => {
                                    misses = 0;
                                    usable_since = None;
                                    stuck_logged = false;
                                }
                                Err(why) if !stuck_logged => {
                                    tracing::error!(
                                        "primary store {} {}; staying on it: {why}",
                                        self.primary.name(),
                                        describe(&probe)
                                    );
                                    stuck_logged = true;
                                }
                                Err(_) => {}
                            }
                        }
                    }
                }
                ActiveStore::Backup => {
                    if probe.usable() {
                        let since = *usable_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= self.timing.back_after {
                            match this
                                .open_store_of(ActiveStore::Primary, &self.primary.url)
                                .await
                            {
                                Ok(_) => {
                                    this.switch(ActiveStore::Primary);
                                    tracing::warn!(
                                        "primary store {} is back; leaving backup_store {}",
                                        self.primary.name(),
                                        self.backup.name()
                                    );
                                    usable_since = None;
                                    misses = 0;
                                }
                                Err(e) => {
                                    tracing::warn!(
                                        "primary store {} answers but cannot be opened: {e}",
                                        self.primary.name()
                                    );
                                    usable_since = None;
                                }
                            }
                        }
                    } else {
                        usable_since = None;
                    }
                }
            }
            drop(this);
            let Some(this) = self.store.upgrade() else {
                return;
            };
            tokio::select! {
                _ = tokio::time::sleep(self.timing.probe_every) => {}
                _ = this.probe_now.notified() => {}
            }
        }
    }

    /// Moves calls to the backup if it can take them; why not otherwise.
    async fn move_to_backup(
        &mut self,
        this: &FailoverStore,
        primary: &Probe,
    ) -> std::result::Result<(), String> {
        let backup = self.backup.probe(this, self.timing.probe_timeout).await;
        match (primary, &backup) {
            (_, Probe::Down(why)) => return Err(format!("backup_store {why}")),
            (Probe::Up { .. }, Probe::Up { writable: false }) => {
                return Err("backup_store does not accept writes either".into());
            }
            _ => {}
        }
        this.open_store_of(ActiveStore::Backup, &self.backup.url)
            .await
            .map_err(|e| format!("backup_store cannot be opened: {e}"))?;
        this.switch(ActiveStore::Backup);
        this.abandoned.send_modify(|n| *n += 1);
        tracing::warn!(
            "primary store {} {}; using backup_store {}{}",
            self.primary.name(),
            describe(primary),
            self.backup.name(),
            if backup.usable() {
                ""
            } else {
                " (it does not accept writes)"
            }
        );
        Ok(())
    }
}

fn describe(probe: &Probe) -> String {
    match probe {
        Probe::Down(why) => format!("cannot be reached ({why})"),
        Probe::Up { writable: false } => "no longer accepts writes (in recovery)".into(),
        Probe::Up { writable: true } => "answers".into(),
    }
}

/// Writes each trait's methods as calls on the active store.
macro_rules! forward {
    ($trait:ident { $( fn $name:ident( $($arg:ident : $ty:ty),* ) -> $ret:ty; )* }) => {
        #[async_trait]
        impl $trait for FailoverStore {
            $(
                async fn $name(&self, $($arg: $ty),*) -> Result<$ret> {
                    self.on_active(move |store| store.$name($($arg),*)).await
                }
            )*
        }
    };
}

#[async_trait]
impl Store for FailoverStore {
    fn backend(&self) -> &'static str {
        self.current().backend()
    }
    fn transfer_access(&self) -> crate::transfer::Access<'_> {
        self.current().transfer_access()
    }
    fn active_store(&self) -> Option<&'static str> {
        Some(self.active().as_str())
    }
    async fn clock_ms(&self) -> Result<Option<i64>> {
        self.on_active(|store| store.clock_ms()).await
    }
}
forward! { Directory {
    fn add_domain(name: &str) -> ();
    fn remove_domain(name: &str) -> ();
    fn list_domains() -> Vec<Domain>;
    fn domain_exists(name: &str) -> bool;
    fn create_account(account: &NewAccount) -> Account;
    fn create_accounts(accounts: &[NewAccount]) -> ();
    fn get_account(address: &str) -> Option<Account>;
    fn get_account_by_id(id: i64) -> Option<Account>;
    fn update_account(address: &str, update: &AccountUpdate) -> Account;
    fn remove_account(address: &str) -> ();
    fn list_accounts(domain: Option<&str>) -> Vec<Account>;
    fn add_alias(address: &str, targets: &[String]) -> ();
    fn remove_alias(address: &str) -> ();
    fn get_alias(address: &str) -> Option<Alias>;
    fn list_aliases(domain: Option<&str>) -> Vec<Alias>;
    fn put_shard(name: &str, weight: i64) -> ();
    fn list_shards() -> Vec<Shard>;
} }
forward! { Mailboxes {
    fn create_mailbox(account_id: i64, name: &str, special_use: Option<&str>) -> Mailbox;
    fn get_mailbox(account_id: i64, name: &str) -> Option<Mailbox>;
    fn mailbox_by_id(mailbox_id: i64) -> Option<Mailbox>;
    fn list_mailboxes(account_id: i64) -> Vec<Mailbox>;
    fn mailbox_status(account_id: i64) -> Vec<MailboxStatus>;
    fn status_of(mailbox_id: i64) -> MailboxStatus;
    fn recent_from(mailbox_id: i64, claim: bool) -> (u32, u32);
    fn mailbox_versions(mailbox_ids: &[i64]) -> Vec<(i64, i64)>;
    fn rename_mailbox(account_id: i64, from: &str, to: &str) -> ();
    fn delete_mailbox(account_id: i64, name: &str) -> ();
    fn subscribe(account_id: i64, name: &str) -> ();
    fn unsubscribe(account_id: i64, name: &str) -> ();
    fn subscriptions(account_id: i64) -> Vec<String>;
    fn deliver(delivery: &Delivery) -> Vec<Delivered>;
    fn deliver_with_blob(delivery: &Delivery, blob_write: BlobWrite<'_>) -> Vec<Delivered>;
    fn deliver_with_bytes(delivery: &Delivery, bytes: &[u8]) -> Vec<Delivered>;
    fn append(mailbox_id: i64, blob_id: &str, size: i64, internal_date: Timestamp, flags: &[String], meta: Option<&str>) -> u32;
    fn append_many(mailbox_id: i64, messages: &[NewMessage]) -> Vec<u32>;
    fn append_many_with_text(mailbox_id: i64, messages: &[NewMessage], texts: &[Option<String>]) -> Vec<u32>;
    fn text_candidates(mailbox_id: i64, needle: &str) -> Option<Vec<u32>>;
    fn copy_messages(from_mailbox: i64, uids: &[u32], to_mailbox: i64, remove_source: bool) -> Vec<(u32, u32)>;
    fn expunge(mailbox_id: i64, uids: &[u32]) -> u64;
    fn mailbox_keywords(mailbox_id: i64) -> Vec<String>;
    fn message_meta(blob_id: &str) -> Option<String>;
    fn set_flags(mailbox_id: i64, uids: &[u32], op: FlagOp, flags: &[String], unchanged_since: Option<i64>) -> FlagOutcome;
    fn changes_since(mailbox_id: i64, modseq: i64) -> Changes;
    fn purge_tombstones(fence: &Fence, now: Timestamp, expunged_before: Timestamp) -> TombstonePurge;
    fn forget_meta(blob_id: &str) -> ();
    fn list_messages(mailbox_id: i64, first: u32, last: u32) -> Vec<Message>;
    fn fetch_messages(mailbox_id: i64, first_uid: u32, last_uid: u32, limit: u32) -> Vec<(Message, Option<String>)>;
    fn put_message_meta(blob_id: &str, meta: &str) -> ();
    fn blob_put(id: &str, bytes: &[u8]) -> ();
    fn blob_get(id: &str) -> Option<Vec<u8>>;
    fn blob_delete(id: &str) -> ();
    fn blob_list() -> Vec<BlobEntry>;
    fn blobs_in_use(ids: &[String]) -> Vec<String>;
} }
forward! { Queue {
    fn enqueue(blob_id: &str, size: i64, item: &NewQueueItem) -> i64;
    fn claim_queue(holder: &str, now: Timestamp, lease_secs: i64, limit: i64) -> Vec<QueueItem>;
    fn renew_queue_lease(id: i64, holder: &str, until: Timestamp) -> bool;
    fn claim_expired_queue(fence: &Fence, holder: &str, now: Timestamp, lease_secs: i64, created_before: Timestamp, limit: i64) -> Vec<QueueItem>;
    fn release_queue_leases(holder: &str) -> u64;
    fn finish_queue_item(id: i64, holder: &str, outcome: &QueueOutcome, notice: Option<&QueuedMessage>) -> Option<i64>;
    fn list_queue() -> Vec<QueueItem>;
    fn queue_summary(now: Timestamp) -> QueueSummary;
    fn get_queue_item(id: i64) -> Option<QueueItem>;
    fn retry_queue_item(id: i64) -> bool;
    fn delete_queue_item(id: i64) -> bool;
} }
forward! { Cluster {
    fn heartbeat(node: &NodeInfo) -> ();
    fn list_nodes() -> Vec<NodeInfo>;
    fn acquire_lease(name: &str, holder: &str, now: Timestamp, ttl_secs: i64) -> Option<Lease>;
    fn release_lease(name: &str, holder: &str) -> ();
    fn get_lease(name: &str) -> Option<Lease>;
    fn check_fence(fence: &Fence, now: Timestamp) -> ();
    fn delete_stale_leases(fence: &Fence, now: Timestamp, expired_before: Timestamp) -> StaleLeases;
    fn get_setting(key: &str) -> Option<Setting>;
    fn set_setting(key: &str, value: &str) -> Setting;
    fn delete_setting(key: &str) -> bool;
    fn list_settings() -> Vec<Setting>;
    fn settings_version() -> i64;
    fn request_drain(request: &DrainRequest) -> ();
    fn drain_request(server_id: &str) -> Option<DrainRequest>;
    fn clear_drain(server_id: &str, requested_before: Timestamp) -> bool;
    fn report_balancer(balancer: &str, servers: &[BalancerServerView]) -> ();
    fn list_balancer_servers() -> Vec<BalancerServerView>;
} }
forward! { Limits {
    fn add_rate_events(events: &[(String, i64, i64)]) -> ();
    fn rate_events_since(key: &str, first_bucket: i64) -> i64;
    fn prune_rate_events(first_bucket: i64) -> u64;
    fn auth_failed(ip: &str, now: i64, window: i64) -> i64;
    fn auth_failures(ip: &str, now: i64, window: i64) -> i64;
    fn clear_auth_failures(ip: &str) -> ();
    fn auth_attempt(key: &str, now: i64, window: i64, max: i64) -> Option<i64>;
    fn auth_attempt_succeeded(key: &str) -> ();
} }
