//! Node heartbeats and the master lease (DESIGN.md §4).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mailfleet_store::{NodeInfo, Store, now};
use tokio_util::sync::CancellationToken;

/// Writes this node's heartbeat row every `every` until shutdown.
pub struct Heartbeat;

impl Heartbeat {
    pub fn spawn(
        store: Arc<dyn Store>,
        mut node: NodeInfo,
        every: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                node.last_seen = now();
                if let Err(e) = store.heartbeat(&node).await {
                    tracing::warn!("heartbeat failed: {e}");
                }
            }
        })
    }
}

/// Name of the lease whose holder runs the cluster-wide jobs.
pub const MASTER_LEASE: &str = "master";

/// Keeps trying to hold the master lease; `is_master()` tells whether this node holds it now.
#[derive(Clone)]
pub struct MasterLease {
    held: Arc<AtomicBool>,
}

impl MasterLease {
    pub fn spawn(
        store: Arc<dyn Store>,
        holder: String,
        ttl_secs: i64,
        shutdown: CancellationToken,
    ) -> Self {
        let held = Arc::new(AtomicBool::new(false));
        let flag = held.clone();
        let renew = Duration::from_millis((ttl_secs.max(3) * 1000 / 3) as u64);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(renew);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let got = match store
                    .acquire_lease(MASTER_LEASE, &holder, now(), ttl_secs)
                    .await
                {
                    Ok(l) => l.is_some(),
                    Err(e) => {
                        tracing::warn!("master lease: {e}");
                        false
                    }
                };
                if flag.swap(got, Ordering::SeqCst) != got {
                    tracing::info!(master = got, "master role changed");
                }
            }
            if flag.load(Ordering::SeqCst) {
                let _ = store.release_lease(MASTER_LEASE, &holder).await;
            }
            // Stopped: whatever the release did, this node runs no cluster-wide job now.
            flag.store(false, Ordering::SeqCst);
        });
        Self { held }
    }

    pub fn is_master(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }
}
