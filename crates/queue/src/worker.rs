//! The worker loop: claim due items under a lease, deliver up to `queue.concurrency` at once,
//! and stop claiming on shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mailfleet_store::now;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::QueueContext;
use crate::dns::Resolvers;
use crate::settings::Policy;

/// How long in-flight deliveries may run on after shutdown before they are cut off (their
/// leases are then given back, so any node retries them).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub(crate) struct Inner {
    pub ctx: QueueContext,
    pub resolvers: Resolvers,
    /// This worker's lease holder name: the server id and a per-process suffix, so that a
    /// restarted node does not mistake its predecessor's leases for its own.
    pub holder: String,
}

/// Delivers the outbound queue. Any number of workers, on any nodes, can share one store:
/// each item is leased to one of them at a time.
pub struct QueueWorker;

impl QueueWorker {
    /// Starts the worker; it runs until `shutdown` fires, then lets in-flight deliveries finish
    /// (for up to 10 s), gives back the leases of those it cut off, and returns.
    pub fn spawn(ctx: QueueContext, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let cut_off = CancellationToken::new();
        let (stop, cut) = (shutdown.clone(), cut_off.clone());
        tokio::spawn(async move {
            stop.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            cut.cancel();
        });
        Self::spawn_stopping(ctx, shutdown, cut_off)
    }

    /// Starts the worker; it claims items until `claiming` is cancelled, then lets in-flight
    /// deliveries finish until `cut_off` is cancelled, cuts off those still running, gives
    /// back every lease it still holds (the items are due for any node at once), and returns.
    /// A draining node cancels `claiming` when the drain starts and `cut_off` at its deadline.
    pub fn spawn_stopping(
        ctx: QueueContext,
        claiming: CancellationToken,
        cut_off: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let holder = format!("{}-{:08x}", ctx.config.server_id, rand::random::<u32>());
        let inner = Arc::new(Inner {
            ctx,
            resolvers: Resolvers::default(),
            holder,
        });
        tokio::spawn(run(inner, claiming, cut_off))
    }
}

async fn run(inner: Arc<Inner>, shutdown: CancellationToken, cut_off: CancellationToken) {
    tracing::info!(holder = %inner.holder, "queue worker started");
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut in_flight: HashMap<tokio::task::Id, i64> = HashMap::new();
    loop {
        let policy = Arc::new(Policy::from_settings(&inner.ctx.settings.current()));
        let free = policy.concurrency.saturating_sub(tasks.len());
        if free > 0 {
            match inner
                .ctx
                .store
                .claim_queue(&inner.holder, now(), policy.lease_secs(), free as i64)
                .await
            {
                Ok(items) => {
                    for item in items {
                        let id = item.id;
                        if in_flight.values().any(|v| *v == id) {
                            continue;
                        }
                        tracing::debug!(id, attempt = item.attempts, "queue item claimed");
                        let (inner, policy) = (inner.clone(), policy.clone());
                        let handle = tasks
                            .spawn(async move { crate::attempt::run(&inner, &policy, item).await });
                        in_flight.insert(handle.id(), id);
                    }
                    inner.ctx.held.store(tasks.len(), Ordering::Relaxed);
                }
                Err(e) => tracing::warn!("cannot claim queue items: {e}"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let task = match &done {
                    Ok((task, ())) => *task,
                    Err(e) => e.id(),
                };
                if let (Some(id), Err(e)) = (in_flight.remove(&task), &done) {
                    tracing::error!(id, "queue delivery task failed: {e}");
                }
                inner.ctx.held.store(tasks.len(), Ordering::Relaxed);
            }
            _ = tokio::time::sleep(policy.poll_interval) => {}
        }
    }
    tracing::info!(in_flight = tasks.len(), "queue worker stopping");
    let finish = async { while tasks.join_next().await.is_some() {} };
    tokio::select! {
        _ = finish => {}
        _ = cut_off.cancelled() => {
            tracing::info!(in_flight = tasks.len(), "queue worker: cutting off the deliveries still under way");
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
    }
    inner.ctx.held.store(0, Ordering::Relaxed);
    // Whatever is still leased to this worker (a cut-off delivery) goes back now rather than
    // when its lease runs out.
    match inner.ctx.store.release_queue_leases(&inner.holder).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(items = n, "queue leases given back"),
        Err(e) => tracing::warn!("cannot give back queue leases (they run out by themselves): {e}"),
    }
}
