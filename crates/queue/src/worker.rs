//! The worker loop: claim due items under a lease, deliver up to `queue.concurrency` at once,
//! and stop claiming on shutdown.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mailfleet_store::now;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::QueueContext;
use crate::dns::Resolvers;
use crate::settings::Policy;

/// How long in-flight deliveries may run on after shutdown before they are cut off (their
/// items are then retried, by any node, once their lease expires).
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
    /// (for up to 10 s) and returns.
    pub fn spawn(ctx: QueueContext, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let holder = format!("{}-{:08x}", ctx.config.server_id, rand::random::<u32>());
        let inner = Arc::new(Inner {
            ctx,
            resolvers: Resolvers::default(),
            holder,
        });
        tokio::spawn(run(inner, shutdown))
    }
}

async fn run(inner: Arc<Inner>, shutdown: CancellationToken) {
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
            }
            _ = tokio::time::sleep(policy.poll_interval) => {}
        }
    }
    tracing::info!(in_flight = tasks.len(), "queue worker stopping");
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tasks.abort_all();
    }
}
