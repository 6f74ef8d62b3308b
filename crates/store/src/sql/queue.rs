//! The outbound queue (enqueueing, claiming and leasing items, finishing them, the admin
//! views): the SQL, written once, and the one implementation of [`crate::store::Queue`] that
//! both backends expand.

pub(crate) const QUEUE_COLS: &str = "id, blob_id, size, sender, recipients, envid, ret, created, \
     next_attempt, attempts, last_error, warned, lease_holder, lease_until";

pub(crate) const INSERT_QUEUE: &str = "INSERT INTO queue \
     (blob_id, size, sender, recipients, envid, ret, created, next_attempt) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id";

/// Leases up to `$5` due items that no live lease holds to `$1` until `$2` (`$3`, `$4`: now).
/// The inner `SELECT` ends with [`crate::sql::Dialect::SKIP_LOCKED`] before its closing
/// parenthesis, then `RETURNING` and [`QUEUE_COLS`] follow.
pub(crate) const CLAIM_QUEUE: &str = "UPDATE queue \
     SET lease_holder = $1, lease_until = $2, attempts = attempts + 1 \
     WHERE id IN (SELECT id FROM queue WHERE next_attempt <= $3 \
     AND (lease_until IS NULL OR lease_until <= $4) ORDER BY next_attempt, id LIMIT $5";

/// One statement: the holder check and the new expiry are a single atomic write.
pub(crate) const RENEW_QUEUE_LEASE: &str =
    "UPDATE queue SET lease_until = $1 WHERE id = $2 AND lease_holder = $3";

/// Leases up to `$5` items created before `$3` that no live lease holds (`$4`: now) to `$1`
/// until `$2`, due or not; closed as [`CLAIM_QUEUE`] is.
pub(crate) const CLAIM_EXPIRED_QUEUE: &str = "UPDATE queue \
     SET lease_holder = $1, lease_until = $2 \
     WHERE id IN (SELECT id FROM queue WHERE created < $3 \
     AND (lease_until IS NULL OR lease_until <= $4) ORDER BY id LIMIT $5";

pub(crate) const RELEASE_QUEUE_LEASES: &str =
    "UPDATE queue SET lease_holder = NULL, lease_until = NULL WHERE lease_holder = $1";

pub(crate) const FINISH_DONE: &str = "DELETE FROM queue WHERE id = $1 AND lease_holder = $2";

pub(crate) const FINISH_RETRY: &str = "UPDATE queue SET recipients = $1, next_attempt = $2, \
     last_error = $3, warned = $4, lease_holder = NULL, lease_until = NULL \
     WHERE id = $5 AND lease_holder = $6";

pub(crate) const RETRY_QUEUE_ITEM: &str = "UPDATE queue SET next_attempt = $1 WHERE id = $2";

pub(crate) const DELETE_QUEUE_ITEM: &str = "DELETE FROM queue WHERE id = $1";

/// The queue's size and its oldest item's time (`COUNT` cast: a BIGINT on both backends).
pub(crate) const QUEUE_SIZE: &str =
    "SELECT CAST(COUNT(*) AS BIGINT) AS items, MIN(created) AS oldest FROM queue";

/// Items under a lease that runs past `$1`, per holder.
pub(crate) const QUEUE_HELD: &str = "SELECT lease_holder, CAST(COUNT(*) AS BIGINT) AS items \
     FROM queue WHERE lease_holder IS NOT NULL AND lease_until > $1 \
     GROUP BY lease_holder ORDER BY lease_holder";

/// Implements [`crate::store::Queue`] for a backend's store, whose connection type is `$conn`,
/// and `insert_queue` (one item, in the caller's transaction) for its deliveries (see
/// [`crate::sql`]).
macro_rules! impl_queue {
    ($store:ty, $conn:ty) => {
        const _: () = {
            use $crate::error::StoreError;
            use $crate::model::{
                Fence, NewQueueItem, QueueItem, QueueOutcome, QueueSummary, QueuedMessage,
                Timestamp, now,
            };
            use $crate::sql::Dialect;
            use $crate::sql::queue::*;
            use $crate::store::{Queue, Result};

            impl $store {
                /// Queues one item in the caller's transaction; returns its id.
                pub(crate) async fn insert_queue(
                    conn: &mut $conn,
                    blob_id: &str,
                    size: i64,
                    item: &NewQueueItem,
                ) -> Result<i64> {
                    Ok(sqlx::query_scalar(INSERT_QUEUE)
                        .bind(blob_id)
                        .bind(size)
                        .bind(&item.sender)
                        .bind(serde_json::to_string(&item.recipients)?)
                        .bind(&item.envid)
                        .bind(&item.ret)
                        .bind(now())
                        .bind(item.next_attempt)
                        .fetch_one(&mut *conn)
                        .await?)
                }
            }

            #[async_trait::async_trait]
            impl Queue for $store {
                async fn enqueue(
                    &self,
                    blob_id: &str,
                    size: i64,
                    item: &NewQueueItem,
                ) -> Result<i64> {
                    let mut tx = self.tx().await?;
                    let id = Self::insert_queue(&mut tx, blob_id, size, item).await?;
                    tx.commit().await?;
                    Ok(id)
                }

                async fn claim_queue(
                    &self,
                    holder: &str,
                    now: Timestamp,
                    lease_secs: i64,
                    limit: i64,
                ) -> Result<Vec<QueueItem>> {
                    let mut tx = self.tx().await?;
                    let rows = sqlx::query(&format!(
                        "{CLAIM_QUEUE}{}) RETURNING {QUEUE_COLS}",
                        Self::SKIP_LOCKED
                    ))
                    .bind(holder)
                    .bind(now + lease_secs)
                    .bind(now)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    let mut items = rows.iter().map(queue_from).collect::<Result<Vec<_>>>()?;
                    items.sort_by_key(|i| (i.next_attempt, i.id));
                    Ok(items)
                }

                async fn claim_expired_queue(
                    &self,
                    fence: &Fence,
                    holder: &str,
                    now: Timestamp,
                    lease_secs: i64,
                    created_before: Timestamp,
                    limit: i64,
                ) -> Result<Vec<QueueItem>> {
                    let mut tx = self.tx().await?;
                    $crate::sql::cluster::hold_fence!($store, tx, fence, now);
                    let rows = sqlx::query(&format!(
                        "{CLAIM_EXPIRED_QUEUE}{}) RETURNING {QUEUE_COLS}",
                        Self::SKIP_LOCKED
                    ))
                    .bind(holder)
                    .bind(now + lease_secs)
                    .bind(created_before)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    let mut items = rows.iter().map(queue_from).collect::<Result<Vec<_>>>()?;
                    items.sort_by_key(|i| i.id);
                    Ok(items)
                }

                async fn renew_queue_lease(
                    &self,
                    id: i64,
                    holder: &str,
                    until: Timestamp,
                ) -> Result<bool> {
                    let r = sqlx::query(RENEW_QUEUE_LEASE)
                        .bind(until)
                        .bind(id)
                        .bind(holder)
                        .execute(&self.write)
                        .await?;
                    Ok(r.rows_affected() > 0)
                }

                async fn release_queue_leases(&self, holder: &str) -> Result<u64> {
                    let r = sqlx::query(RELEASE_QUEUE_LEASES)
                        .bind(holder)
                        .execute(&self.write)
                        .await?;
                    Ok(r.rows_affected())
                }

                async fn finish_queue_item(
                    &self,
                    id: i64,
                    holder: &str,
                    outcome: &QueueOutcome,
                    notice: Option<&QueuedMessage>,
                ) -> Result<Option<i64>> {
                    let mut tx = self.tx().await?;
                    let r = match outcome {
                        QueueOutcome::Done => {
                            sqlx::query(FINISH_DONE)
                                .bind(id)
                                .bind(holder)
                                .execute(&mut *tx)
                                .await?
                        }
                        QueueOutcome::Retry {
                            recipients,
                            next_attempt,
                            last_error,
                            warned,
                        } => {
                            sqlx::query(FINISH_RETRY)
                                .bind(serde_json::to_string(recipients)?)
                                .bind(next_attempt)
                                .bind(last_error)
                                .bind(warned)
                                .bind(id)
                                .bind(holder)
                                .execute(&mut *tx)
                                .await?
                        }
                    };
                    if r.rows_affected() == 0 {
                        // Dropping the transaction rolls it back: no notice either.
                        return Err(StoreError::LeaseLost(id));
                    }
                    let notice_id = match notice {
                        Some(n) => {
                            Some(Self::insert_queue(&mut tx, &n.blob_id, n.size, &n.item).await?)
                        }
                        None => None,
                    };
                    tx.commit().await?;
                    Ok(notice_id)
                }

                async fn list_queue(&self) -> Result<Vec<QueueItem>> {
                    let rows = sqlx::query(&format!("SELECT {QUEUE_COLS} FROM queue ORDER BY id"))
                        .fetch_all(&self.read)
                        .await?;
                    rows.iter().map(queue_from).collect()
                }

                async fn queue_summary(&self, now: Timestamp) -> Result<QueueSummary> {
                    use sqlx::Row;
                    let size = sqlx::query(QUEUE_SIZE).fetch_one(&self.read).await?;
                    let held = sqlx::query(QUEUE_HELD)
                        .bind(now)
                        .fetch_all(&self.read)
                        .await?;
                    Ok(QueueSummary {
                        items: size.try_get("items")?,
                        oldest: size.try_get("oldest")?,
                        held: held
                            .iter()
                            .map(|r| Ok((r.try_get("lease_holder")?, r.try_get("items")?)))
                            .collect::<Result<_>>()?,
                    })
                }

                async fn get_queue_item(&self, id: i64) -> Result<Option<QueueItem>> {
                    let row = sqlx::query(&format!("SELECT {QUEUE_COLS} FROM queue WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(&self.read)
                        .await?;
                    row.as_ref().map(queue_from).transpose()
                }

                async fn retry_queue_item(&self, id: i64) -> Result<bool> {
                    let r = sqlx::query(RETRY_QUEUE_ITEM)
                        .bind(now())
                        .bind(id)
                        .execute(&self.write)
                        .await?;
                    Ok(r.rows_affected() > 0)
                }

                async fn delete_queue_item(&self, id: i64) -> Result<bool> {
                    let r = sqlx::query(DELETE_QUEUE_ITEM)
                        .bind(id)
                        .execute(&self.write)
                        .await?;
                    Ok(r.rows_affected() > 0)
                }
            }
        };
    };
}

pub(crate) use impl_queue;
