//! Cluster-wide limits (sender-rate buckets, failed logins): the SQL, written once, and the
//! one implementation of [`crate::store::Limits`] that both backends expand.

/// Adds to a key's count in a bucket (`$1` key, `$2` bucket, `$3` count).
pub(crate) const ADD_RATE_EVENT: &str = "INSERT INTO rate_events (key, bucket, count) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (key, bucket) DO UPDATE SET count = rate_events.count + excluded.count";

/// `SUM` of a BIGINT is a NUMERIC on PostgreSQL: the cast makes it a BIGINT on both.
pub(crate) const RATE_EVENTS_SINCE: &str = "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) \
     FROM rate_events WHERE key = $1 AND bucket >= $2";

pub(crate) const PRUNE_RATE_EVENTS: &str = "DELETE FROM rate_events WHERE bucket < $1";

/// See [`crate::store::Limits::auth_failed`] (`$1` key, `$2` now, `$3` window).
pub(crate) const AUTH_FAILED: &str = "INSERT INTO auth_failures (ip, failures, last_at) \
     VALUES ($1, 1, $2) \
     ON CONFLICT (ip) DO UPDATE SET \
     failures = CASE WHEN auth_failures.last_at > $2 - $3 \
     THEN auth_failures.failures + 1 ELSE 1 END, \
     last_at = excluded.last_at \
     RETURNING failures";

pub(crate) const AUTH_FAILURES: &str = "SELECT COALESCE(MAX(failures), 0) FROM auth_failures \
     WHERE ip = $1 AND last_at > $2 - $3";

pub(crate) const CLEAR_AUTH_FAILURES: &str = "DELETE FROM auth_failures WHERE ip = $1";

/// See [`crate::store::Limits::auth_attempt`] (`$4` max). The conflict branch updates only
/// while the key is under `max` inside the window (or its window has passed); otherwise no
/// row comes back.
pub(crate) const AUTH_ATTEMPT: &str = "INSERT INTO auth_failures (ip, failures, last_at) \
     VALUES ($1, 1, $2) \
     ON CONFLICT (ip) DO UPDATE SET \
     failures = CASE WHEN auth_failures.last_at > $2 - $3 \
     THEN auth_failures.failures + 1 ELSE 1 END, \
     last_at = excluded.last_at \
     WHERE auth_failures.last_at <= $2 - $3 OR auth_failures.failures < $4 \
     RETURNING failures";

pub(crate) const AUTH_ATTEMPT_SUCCEEDED: &str =
    "UPDATE auth_failures SET failures = failures - 1 WHERE ip = $1 AND failures > 0";

/// Implements [`crate::store::Limits`] for a backend's store (see [`crate::sql`]).
macro_rules! impl_limits {
    ($store:ty) => {
        const _: () = {
            use $crate::sql::limits::*;
            use $crate::store::{Limits, Result};

            #[async_trait::async_trait]
            impl Limits for $store {
                async fn add_rate_events(&self, events: &[(String, i64, i64)]) -> Result<()> {
                    if events.is_empty() {
                        return Ok(());
                    }
                    let mut tx = self.tx().await?;
                    for (key, bucket, count) in events {
                        sqlx::query(ADD_RATE_EVENT)
                            .bind(key)
                            .bind(bucket)
                            .bind(count)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn rate_events_since(&self, key: &str, first_bucket: i64) -> Result<i64> {
                    Ok(sqlx::query_scalar(RATE_EVENTS_SINCE)
                        .bind(key)
                        .bind(first_bucket)
                        .fetch_one(&self.read)
                        .await?)
                }

                async fn prune_rate_events(&self, first_bucket: i64) -> Result<u64> {
                    let r = sqlx::query(PRUNE_RATE_EVENTS)
                        .bind(first_bucket)
                        .execute(&self.write)
                        .await?;
                    Ok(r.rows_affected())
                }

                async fn auth_failed(&self, ip: &str, now: i64, window: i64) -> Result<i64> {
                    Ok(sqlx::query_scalar(AUTH_FAILED)
                        .bind(ip)
                        .bind(now)
                        .bind(window)
                        .fetch_one(&self.write)
                        .await?)
                }

                async fn auth_failures(&self, ip: &str, now: i64, window: i64) -> Result<i64> {
                    Ok(sqlx::query_scalar(AUTH_FAILURES)
                        .bind(ip)
                        .bind(now)
                        .bind(window)
                        .fetch_one(&self.read)
                        .await?)
                }

                async fn clear_auth_failures(&self, ip: &str) -> Result<()> {
                    sqlx::query(CLEAR_AUTH_FAILURES)
                        .bind(ip)
                        .execute(&self.write)
                        .await?;
                    Ok(())
                }

                async fn auth_attempt(
                    &self,
                    key: &str,
                    now: i64,
                    window: i64,
                    max: i64,
                ) -> Result<Option<i64>> {
                    Ok(sqlx::query_scalar(AUTH_ATTEMPT)
                        .bind(key)
                        .bind(now)
                        .bind(window)
                        .bind(max)
                        .fetch_optional(&self.write)
                        .await?)
                }

                async fn auth_attempt_succeeded(&self, key: &str) -> Result<()> {
                    sqlx::query(AUTH_ATTEMPT_SUCCEEDED)
                        .bind(key)
                        .execute(&self.write)
                        .await?;
                    Ok(())
                }
            }
        };
    };
}

pub(crate) use impl_limits;
