//! Change notification whose cost does not grow with idle sessions: one poller per node.
//!
//! A session that selects a mailbox takes a [`Watch`] on it. The node's poller asks the store
//! for the HIGHESTMODSEQ of every watched mailbox in one query every [`POLL_INTERVAL`]
//! (deliveries, appends, flag changes, expunges, copies and moves all raise it), and bumps the
//! mailbox's generation when it moved. A session's own writes bump it at once ([`Watcher::bump`]),
//! so the other sessions of the node see them at their next command. A session in IDLE waits on
//! its generation; at its next command a session compares the generation it last saw and asks
//! the store what changed only when it moved. An idle session holds no database connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailfleet_store::Store;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

/// How often the node asks the store for the watched mailboxes' HIGHESTMODSEQ.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

struct Entry {
    tx: watch::Sender<u64>,
    modseq: Option<i64>,
    sessions: usize,
}

/// The node's change poller and the mailboxes its sessions watch.
pub struct Watcher {
    entries: Mutex<HashMap<i64, Entry>>,
    wake: Notify,
}

/// A session's interest in one mailbox; dropping it ends the interest.
pub struct Watch {
    watcher: Arc<Watcher>,
    mailbox_id: i64,
    rx: watch::Receiver<u64>,
    seen: u64,
}

impl Watcher {
    /// Starts the node's poller; it stops with `shutdown`.
    pub fn spawn(store: Arc<dyn Store>, shutdown: CancellationToken) -> Arc<Watcher> {
        let watcher = Arc::new(Watcher {
            entries: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        });
        let w = watcher.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(POLL_INTERVAL) => {}
                    _ = w.wake.notified() => {}
                }
                let ids = w.watched();
                if ids.is_empty() {
                    continue;
                }
                match store.mailbox_versions(&ids).await {
                    Ok(versions) => {
                        failing = false;
                        w.apply(&versions);
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!("imap change poller cannot read the store: {e}");
                        }
                        failing = true;
                    }
                }
            }
        });
        watcher
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn watched(&self) -> Vec<i64> {
        self.lock().keys().copied().collect()
    }

    fn apply(&self, versions: &[(i64, i64)]) {
        let mut entries = self.lock();
        for &(id, modseq) in versions {
            if let Some(e) = entries.get_mut(&id)
                && e.modseq != Some(modseq)
            {
                // The first reading of a newly watched mailbox wakes its sessions too: a change
                // made between a session's SELECT and this reading would otherwise be taken
                // as the starting point and never told (a session whose view is current just
                // finds nothing new).
                e.modseq = Some(modseq);
                e.tx.send_modify(|g| *g += 1);
            }
        }
    }

    /// Starts watching a mailbox for one session.
    pub fn watch(self: &Arc<Self>, mailbox_id: i64) -> Watch {
        let mut entries = self.lock();
        let entry = entries.entry(mailbox_id).or_insert_with(|| Entry {
            tx: watch::channel(0).0,
            modseq: None,
            sessions: 0,
        });
        entry.sessions += 1;
        let rx = entry.tx.subscribe();
        let seen = *rx.borrow();
        Watch {
            watcher: self.clone(),
            mailbox_id,
            rx,
            seen,
        }
    }

    /// A session of this node changed the mailbox: the others learn it at once.
    pub fn bump(&self, mailbox_id: i64) {
        if let Some(e) = self.lock().get(&mailbox_id) {
            e.tx.send_modify(|g| *g += 1);
        }
        self.wake.notify_one();
    }

    /// How many mailboxes are watched (for tests and status).
    pub fn watched_count(&self) -> usize {
        self.lock().len()
    }
}

impl Watch {
    /// Whether the mailbox changed since [`Watch::mark_seen`] was last called.
    pub fn changed(&self) -> bool {
        *self.rx.borrow() != self.seen
    }

    /// Records the current generation as seen; call before reading the changes.
    pub fn mark_seen(&mut self) {
        self.seen = *self.rx.borrow_and_update();
    }

    /// Waits until the mailbox changes (returns at once if it already has).
    pub async fn wait(&mut self) {
        if self.changed() {
            return;
        }
        if self.rx.changed().await.is_err() {
            // The poller is gone (shutdown): never wake.
            std::future::pending::<()>().await;
        }
    }

    pub fn mailbox_id(&self) -> i64 {
        self.mailbox_id
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut entries = self.watcher.lock();
        if let Some(e) = entries.get_mut(&self.mailbox_id) {
            e.sessions = e.sessions.saturating_sub(1);
            if e.sessions == 0 {
                entries.remove(&self.mailbox_id);
            }
        }
    }
}
