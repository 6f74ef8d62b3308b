//! The outbound queue on SQLite: enqueueing, claiming and leasing items, finishing them,
//! and the admin views (list, get, retry, delete).

use sqlx::SqliteConnection;

use super::{SqliteStore, queue_from};
use crate::error::StoreError;
use crate::model::{NewQueueItem, QueueItem, QueueOutcome, QueuedMessage, Timestamp, now};
use crate::store::Result;

const QUEUE_COLS: &str = "id, blob_id, size, sender, recipients, envid, ret, created, \
     next_attempt, attempts, last_error, warned, lease_holder, lease_until";

impl SqliteStore {
    pub(super) async fn insert_queue(
        conn: &mut SqliteConnection,
        blob_id: &str,
        size: i64,
        item: &NewQueueItem,
    ) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO queue (blob_id, size, sender, recipients, envid, ret, created, next_attempt) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
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

    pub(super) async fn enqueue_impl(
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

    pub(super) async fn claim_queue_impl(
        &self,
        holder: &str,
        now: Timestamp,
        lease_secs: i64,
        limit: i64,
    ) -> Result<Vec<QueueItem>> {
        let mut tx = self.tx().await?;
        let rows = sqlx::query(&format!(
            "UPDATE queue SET lease_holder = ?, lease_until = ?, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM queue WHERE next_attempt <= ? \
                AND (lease_until IS NULL OR lease_until <= ?) ORDER BY next_attempt, id LIMIT ?) \
             RETURNING {QUEUE_COLS}"
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

    pub(super) async fn renew_queue_lease_impl(
        &self,
        id: i64,
        holder: &str,
        until: Timestamp,
    ) -> Result<bool> {
        // One statement: the holder check and the new expiry are a single atomic write.
        let r = sqlx::query("UPDATE queue SET lease_until = ? WHERE id = ? AND lease_holder = ?")
            .bind(until)
            .bind(id)
            .bind(holder)
            .execute(&self.write)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    pub(super) async fn finish_queue_item_impl(
        &self,
        id: i64,
        holder: &str,
        outcome: &QueueOutcome,
        notice: Option<&QueuedMessage>,
    ) -> Result<Option<i64>> {
        let mut tx = self.tx().await?;
        let r = match outcome {
            QueueOutcome::Done => {
                sqlx::query("DELETE FROM queue WHERE id = ? AND lease_holder = ?")
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
            } => sqlx::query(
                "UPDATE queue SET recipients = ?, next_attempt = ?, last_error = ?, warned = ?, \
                     lease_holder = NULL, lease_until = NULL WHERE id = ? AND lease_holder = ?",
            )
            .bind(serde_json::to_string(recipients)?)
            .bind(next_attempt)
            .bind(last_error)
            .bind(warned)
            .bind(id)
            .bind(holder)
            .execute(&mut *tx)
            .await?,
        };
        if r.rows_affected() == 0 {
            // Dropping the transaction rolls it back: no notice either.
            return Err(StoreError::LeaseLost(id));
        }
        let notice_id = match notice {
            Some(n) => Some(Self::insert_queue(&mut tx, &n.blob_id, n.size, &n.item).await?),
            None => None,
        };
        tx.commit().await?;
        Ok(notice_id)
    }

    pub(super) async fn list_queue_impl(&self) -> Result<Vec<QueueItem>> {
        let rows = sqlx::query(&format!("SELECT {QUEUE_COLS} FROM queue ORDER BY id"))
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(queue_from).collect()
    }

    pub(super) async fn get_queue_item_impl(&self, id: i64) -> Result<Option<QueueItem>> {
        let row = sqlx::query(&format!("SELECT {QUEUE_COLS} FROM queue WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(queue_from).transpose()
    }

    pub(super) async fn retry_queue_item_impl(&self, id: i64) -> Result<bool> {
        let r = sqlx::query("UPDATE queue SET next_attempt = ? WHERE id = ?")
            .bind(now())
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    pub(super) async fn delete_queue_item_impl(&self, id: i64) -> Result<bool> {
        let r = sqlx::query("DELETE FROM queue WHERE id = ?")
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}
