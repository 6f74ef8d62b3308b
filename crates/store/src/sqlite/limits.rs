//! Cluster-wide limits on SQLite: sender rate buckets and failed logins per address.

use super::SqliteStore;
use crate::store::Result;

impl SqliteStore {
    pub(super) async fn add_rate_events_impl(&self, events: &[(String, i64, i64)]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.tx().await?;
        for (key, bucket, count) in events {
            sqlx::query(
                "INSERT INTO rate_events (key, bucket, count) VALUES (?, ?, ?) \
                 ON CONFLICT (key, bucket) DO UPDATE SET count = rate_events.count + excluded.count",
            )
            .bind(key)
            .bind(bucket)
            .bind(count)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn rate_events_since_impl(&self, key: &str, first_bucket: i64) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(SUM(count), 0) FROM rate_events WHERE key = ? AND bucket >= ?",
        )
        .bind(key)
        .bind(first_bucket)
        .fetch_one(&self.read)
        .await?)
    }

    pub(super) async fn prune_rate_events_impl(&self, first_bucket: i64) -> Result<u64> {
        let r = sqlx::query("DELETE FROM rate_events WHERE bucket < ?")
            .bind(first_bucket)
            .execute(&self.write)
            .await?;
        Ok(r.rows_affected())
    }

    pub(super) async fn auth_failed_impl(&self, ip: &str, now: i64, window: i64) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO auth_failures (ip, failures, last_at) VALUES (?1, 1, ?2) \
             ON CONFLICT (ip) DO UPDATE SET \
             failures = CASE WHEN auth_failures.last_at > ?2 - ?3 THEN auth_failures.failures + 1 ELSE 1 END, \
             last_at = excluded.last_at \
             RETURNING failures",
        )
        .bind(ip)
        .bind(now)
        .bind(window)
        .fetch_one(&self.write)
        .await?)
    }

    pub(super) async fn auth_failures_impl(&self, ip: &str, now: i64, window: i64) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(MAX(failures), 0) FROM auth_failures WHERE ip = ?1 AND last_at > ?2 - ?3",
        )
        .bind(ip)
        .bind(now)
        .bind(window)
        .fetch_one(&self.read)
        .await?)
    }

    pub(super) async fn clear_auth_failures_impl(&self, ip: &str) -> Result<()> {
        sqlx::query("DELETE FROM auth_failures WHERE ip = ?")
            .bind(ip)
            .execute(&self.write)
            .await?;
        Ok(())
    }
}
