//! Cluster-wide limits: every node counts into the same rows.

use async_trait::async_trait;

use super::Result;

/// Sender-rate buckets and failed logins, shared by every node of the cluster.
#[async_trait]
pub trait Limits: Send + Sync {
    /// Adds each `(key, bucket, count)` to the count of that key in that time bucket, in
    /// one transaction.
    async fn add_rate_events(&self, events: &[(String, i64, i64)]) -> Result<()>;
    /// The sum of `key`'s counts in buckets from `first_bucket` on.
    async fn rate_events_since(&self, key: &str, first_bucket: i64) -> Result<i64>;
    /// Removes the counts of buckets before `first_bucket`; returns how many rows went.
    async fn prune_rate_events(&self, first_bucket: i64) -> Result<u64>;
    /// Counts a failed login from `ip` at `now` (unix seconds). Failures count while each
    /// comes within `window` seconds of the one before; returns the count, this one included.
    async fn auth_failed(&self, ip: &str, now: i64, window: i64) -> Result<i64>;
    /// Failed logins from `ip` whose last one is less than `window` seconds before `now`
    /// (0 when older or none).
    async fn auth_failures(&self, ip: &str, now: i64, window: i64) -> Result<i64>;
    /// Forgets `ip`'s failed logins (after a successful one).
    async fn clear_auth_failures(&self, ip: &str) -> Result<()>;
    /// Reserves one login attempt for `key` in one atomic step: counts it as a failure at
    /// `now` (as [`Limits::auth_failed`] does) unless `key` already has `max` failures inside
    /// `window`. `Some(count)` with this attempt included when reserved; `None` when `key` is
    /// locked out (nothing is written then, so refused attempts do not prolong the lockout).
    /// Concurrent attempts on any node each see the others' reservations.
    async fn auth_attempt(&self, key: &str, now: i64, window: i64, max: i64)
    -> Result<Option<i64>>;
    /// Takes back one reserved attempt of `key` (it turned out to be a good login); earlier
    /// failures stay counted.
    async fn auth_attempt_succeeded(&self, key: &str) -> Result<()>;
}
