//! The queue's lifetime sweep, a master job: items past `queue.lifetime` that no worker holds
//! (their node died holding them, or their next attempt lies past the lifetime) are given up
//! as an attempt gives them up: every recipient still pending fails with `5.4.7`, the sender
//! gets the failure notice NOTIFY asks for, and the item leaves the queue.
//!
//! The items are claimed under the master's fence ([`mailfleet_store::Queue::claim_expired_queue`])
//! with an ordinary queue lease, so a worker never has one at the same time, and finished with
//! the same lease check as any attempt.

use mailfleet_cluster::master::JobRun;
use mailfleet_store::{Fence, StoreError, now};

use crate::QueueContext;
use crate::dns::Resolvers;
use crate::settings::Policy;
use crate::worker::Inner;

/// Items claimed at a time.
const BATCH: i64 = 100;

/// Gives up every item created more than `queue.lifetime` ago that no live lease holds;
/// returns how many.
pub async fn sweep_expired(ctx: &QueueContext, fence: &Fence) -> Result<u64, StoreError> {
    let policy = Policy::from_settings(&ctx.settings.current());
    let lifetime = i64::try_from(policy.lifetime.as_secs()).unwrap_or(i64::MAX);
    let inner = Inner {
        ctx: ctx.clone(),
        resolvers: Resolvers::default(),
        holder: format!("{}-sweep-{}", fence.holder, fence.token),
    };
    let mut swept = 0;
    loop {
        let t = now();
        let items = ctx
            .store
            .claim_expired_queue(
                fence,
                &inner.holder,
                t,
                policy.lease_secs(),
                t.saturating_sub(lifetime),
                BATCH,
            )
            .await?;
        let claimed = items.len() as i64;
        for item in items {
            tracing::info!(
                id = item.id,
                created = item.created,
                "queue item past queue.lifetime and held by no worker: giving up"
            );
            crate::attempt::give_up(&inner, &policy, item).await?;
            swept += 1;
        }
        if claimed < BATCH {
            return Ok(swept);
        }
    }
}

/// The sweep as a master job (`mailfleet_cluster::MasterJobs::add`).
pub fn lifetime_sweep(ctx: QueueContext) -> impl Fn(Fence) -> JobRun + Send + Sync + 'static {
    move |fence| {
        let ctx = ctx.clone();
        Box::pin(async move {
            let swept = sweep_expired(&ctx, &fence).await?;
            Ok(if swept == 0 {
                String::new()
            } else {
                format!("queue lifetime sweep gave up {swept} expired items")
            })
        })
    }
}
