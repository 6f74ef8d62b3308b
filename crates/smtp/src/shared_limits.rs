//! The sender rate, counted for the whole cluster in the store: messages per sender per
//! minute. Behind the balancer every node sees the same counts, so N nodes give a sender the
//! same allowance as one, and a restart forgets nothing. (Failed logins are counted by
//! `mailfleet-auth`, shared by every protocol.)
//!
//! Sender rates are counted in 10-second buckets. Accepted messages are added to a
//! node-local tally that [`SenderRates::run`] writes to the store once a second (one small
//! transaction per node per second, not one per message); a check reads the store's sum for
//! the last minute and adds what this node has not written yet. Other nodes' messages are
//! therefore seen up to about a second late.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mailfleet_store::Store;
use tokio_util::sync::CancellationToken;

/// Width of a sender-rate bucket, in seconds.
pub const RATE_BUCKET_SECS: i64 = 10;
/// Buckets summed for "the last minute": the current one and the five before (50-60 s).
const RATE_WINDOW_BUCKETS: i64 = 6;
/// How often a node writes its tally.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Buckets older than this many are removed (an hour), every [`PRUNE_EVERY_FLUSHES`].
const KEEP_BUCKETS: i64 = 360;
const PRUNE_EVERY_FLUSHES: u64 = 300;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn bucket_of(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(RATE_BUCKET_SECS)
}

#[derive(Default)]
struct Tally {
    /// Counted here and not yet handed to the store.
    pending: HashMap<(String, i64), i64>,
    /// Being written by the flush in progress.
    in_flight: HashMap<(String, i64), i64>,
}

/// Messages per sender per minute, for the whole cluster.
pub struct SenderRates {
    store: Arc<dyn Store>,
    tally: Mutex<Tally>,
}

impl SenderRates {
    /// Counts into `store`.
    pub fn new(store: Arc<dyn Store>) -> SenderRates {
        SenderRates {
            store,
            tally: Mutex::new(Tally::default()),
        }
    }

    /// Whether `key` has had fewer than `per_minute` messages accepted in the last minute
    /// on all nodes together (0 = no limit, and no store read). When the store cannot be
    /// read the sender is let through: the message still needs the store to be accepted.
    pub async fn within(&self, key: &str, per_minute: u32) -> bool {
        if per_minute == 0 {
            return true;
        }
        let first = bucket_of(mailfleet_store::now()) - (RATE_WINDOW_BUCKETS - 1);
        let stored = match self.store.rate_events_since(key, first).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("sender rate of {key} not checked: {e}");
                return true;
            }
        };
        let local: i64 = {
            let t = lock(&self.tally);
            t.pending
                .iter()
                .chain(t.in_flight.iter())
                .filter(|((k, b), _)| k == key && *b >= first)
                .map(|(_, n)| *n)
                .sum()
        };
        stored + local < i64::from(per_minute)
    }

    /// Counts one accepted message for `key` (nothing when `per_minute` is 0: no limit, no
    /// memory).
    pub fn record(&self, key: &str, per_minute: u32) {
        if per_minute == 0 {
            return;
        }
        let bucket = bucket_of(mailfleet_store::now());
        *lock(&self.tally)
            .pending
            .entry((key.to_string(), bucket))
            .or_default() += 1;
    }

    /// Writes the tally to the store; on failure it is kept for the next flush.
    pub async fn flush(&self) {
        let events: Vec<(String, i64, i64)> = {
            let mut t = lock(&self.tally);
            if t.pending.is_empty() {
                return;
            }
            let taken = std::mem::take(&mut t.pending);
            let events = taken
                .iter()
                .map(|((k, b), n)| (k.clone(), *b, *n))
                .collect();
            t.in_flight = taken;
            events
        };
        let written = self.store.add_rate_events(&events).await;
        let mut t = lock(&self.tally);
        let in_flight = std::mem::take(&mut t.in_flight);
        if let Err(e) = written {
            tracing::warn!("sender rates not written, kept for the next try: {e}");
            for (k, n) in in_flight {
                *t.pending.entry(k).or_default() += n;
            }
        }
    }

    /// Flushes every second until `shutdown`, then once more; prunes old buckets now and
    /// then (any node may: the delete is idempotent).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut flushes: u64 = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            self.flush().await;
            flushes += 1;
            if flushes.is_multiple_of(PRUNE_EVERY_FLUSHES) {
                let before = bucket_of(mailfleet_store::now()) - KEEP_BUCKETS;
                if let Err(e) = self.store.prune_rate_events(before).await {
                    tracing::warn!("old sender-rate buckets not pruned: {e}");
                }
            }
        }
        self.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("m.db").display());
        let s = mailfleet_store::open(&url).await.unwrap();
        (dir, s)
    }

    #[tokio::test]
    async fn two_nodes_share_one_sender_allowance() {
        let (_dir, s) = store().await;
        let (n1, n2) = (SenderRates::new(s.clone()), SenderRates::new(s.clone()));
        // Checking counts nothing; what a node has not flushed yet counts for itself.
        assert!(n1.within("a@x.test", 3).await && n1.within("a@x.test", 3).await);
        n1.record("a@x.test", 3);
        n1.record("a@x.test", 3);
        assert!(n1.within("a@x.test", 3).await);
        assert!(
            n2.within("a@x.test", 3).await,
            "not flushed: n2 cannot know"
        );
        n1.flush().await;
        n2.record("a@x.test", 3);
        assert!(!n2.within("a@x.test", 3).await, "2 from n1 + 1 here");
        n2.flush().await;
        assert!(!n1.within("a@x.test", 3).await);
        assert!(n1.within("b@x.test", 3).await);
        assert!(n1.within("a@x.test", 0).await, "0 = no limit");
        n1.record("c@x.test", 0);
        n1.flush().await;
        assert_eq!(s.rate_events_since("c@x.test", 0).await.unwrap(), 0);
        assert_eq!(s.rate_events_since("a@x.test", 0).await.unwrap(), 3);
    }

    #[test]
    fn buckets() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(9), 0);
        assert_eq!(bucket_of(10), 1);
        assert_eq!(bucket_of(-1), -1);
    }
}
