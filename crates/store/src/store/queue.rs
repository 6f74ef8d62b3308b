//! The outbound queue: enqueueing, claiming and leasing items, finishing them, and the admin
//! views (list, get, retry, delete).

use async_trait::async_trait;

use super::Result;
use crate::model::{
    Fence, NewQueueItem, QueueItem, QueueOutcome, QueueSummary, QueuedMessage, Timestamp,
};

/// Messages on their way to other hosts. Any node may deliver any item: it claims the item
/// with an expiring lease, and only the lease holder may record the outcome.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Queues a message that is already a blob.
    async fn enqueue(&self, blob_id: &str, size: i64, item: &NewQueueItem) -> Result<i64>;
    /// Claims up to `limit` items due at `now` for `holder` until `now + lease_secs`: an item
    /// leased to another holder whose lease has not expired is never returned.
    async fn claim_queue(
        &self,
        holder: &str,
        now: Timestamp,
        lease_secs: i64,
        limit: i64,
    ) -> Result<Vec<QueueItem>>;
    /// Extends `holder`'s lease on item `id` so it runs to `until`. True when `holder` still held
    /// the lease (even if it had run out without anyone claiming the item since); false when
    /// the lease passed to another holder, was dropped, or the item is gone.
    async fn renew_queue_lease(&self, id: i64, holder: &str, until: Timestamp) -> Result<bool>;
    /// For the master's lifetime sweep: claims for `holder` until `now + lease_secs` up to
    /// `limit` items created before `created_before` that no live lease holds, whenever their
    /// next attempt is due, if `fence` holds at `now` (in the same transaction; else
    /// [`crate::StoreError::Fenced`] and nothing claimed). The holder then finishes them as an
    /// attempt does ([`Queue::finish_queue_item`]).
    async fn claim_expired_queue(
        &self,
        fence: &Fence,
        holder: &str,
        now: Timestamp,
        lease_secs: i64,
        created_before: Timestamp,
        limit: i64,
    ) -> Result<Vec<QueueItem>>;
    /// Gives back every lease `holder` holds (a node that stops or drains): the items are due
    /// for any node at once, at their `next_attempt`. Returns how many it held.
    async fn release_queue_leases(&self, holder: &str) -> Result<u64>;
    /// Records the outcome of an attempt by `holder`; refused (`LeaseLost`) if the lease passed
    /// on. `notice` (a delivery status notification) is queued in the same transaction, so
    /// it is queued exactly when the outcome is recorded: a holder that lost its lease sends
    /// none, and the node that takes the item over sends its own once. Returns the notice's
    /// queue id.
    async fn finish_queue_item(
        &self,
        id: i64,
        holder: &str,
        outcome: &QueueOutcome,
        notice: Option<&QueuedMessage>,
    ) -> Result<Option<i64>>;
    async fn list_queue(&self) -> Result<Vec<QueueItem>>;
    /// How many items the queue holds, when the oldest was queued, and how many each holder
    /// has under a lease that runs past `now`: two aggregate queries, no item read.
    async fn queue_summary(&self, now: Timestamp) -> Result<QueueSummary>;
    async fn get_queue_item(&self, id: i64) -> Result<Option<QueueItem>>;
    /// Makes an item due now. An item under a lease stays with its holder (no second node may
    /// start on it) until that attempt ends or the lease expires. False if there is no such item.
    async fn retry_queue_item(&self, id: i64) -> Result<bool>;
    async fn delete_queue_item(&self, id: i64) -> Result<bool>;
}
