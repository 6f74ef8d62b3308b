//! Keeping the lease on a queue item while an attempt runs.
//!
//! A claim holds an item for `queue.lease`. [`keep`] renews it every third of that (to now +
//! `queue.lease`, rounded up to the store's whole seconds) for as long as the attempt runs, so
//! an attempt may take longer than the lease: a large message to a slow server is not cut off.
//! It returns only when the lease is lost; the attempt must then stop at once and record
//! nothing, since the item may already be in another node's hands.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mailfleet_store::{Store, Timestamp};
// tokio's clock (the system's monotonic clock, or a test's paused one): the lease's deadlines
// and the timers that wait for them read the same clock.
use tokio::time::Instant;

/// Wait before trying again after a renewal failed (shorter if the renewal interval is).
const RETRY: Duration = Duration::from_secs(1);

/// Why an attempt lost its item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lost {
    /// The store says the lease is no longer ours: another node claimed the item after the
    /// lease ran out, or the item was deleted or finished.
    Taken,
    /// Renewals failed until the lease ran out; the last error.
    Expired(String),
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Taken => f.write_str("the lease passed on or the item is gone"),
            Lost::Expired(e) => write!(f, "the lease ran out while renewals failed ({e})"),
        }
    }
}

/// How long from now until the wall-clock second `until` (zero if it has passed).
fn remaining(until: Timestamp) -> Duration {
    let until = Duration::from_secs(u64::try_from(until).unwrap_or(0));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    until.saturating_sub(now)
}

/// Now + `lease_secs`, rounded up to a whole second so the lease lasts at least that long.
fn lease_end(lease_secs: i64) -> Timestamp {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let up = if now.subsec_nanos() > 0 { 1 } else { 0 };
    secs.saturating_add(up).saturating_add(lease_secs)
}

/// Renews `holder`'s lease on item `id`, which currently runs to `until`, every
/// `lease_secs / 3`, and returns once it is lost: at once when a renewal finds the lease
/// gone, or when renewals have failed (or hung) until the lease they could not extend ran out.
/// A renewal that succeeds after the lease ran out is taken: the holder check proves that no
/// one claimed the item meanwhile. Never returns while the lease is ours; drop it to stop.
pub(crate) async fn keep(
    store: &dyn Store,
    holder: &str,
    id: i64,
    lease_secs: i64,
    until: Timestamp,
) -> Lost {
    keep_with(
        |to| store.renew_queue_lease(id, holder, to),
        id,
        lease_secs,
        until,
    )
    .await
}

/// [`keep`] with the renewal given as `renew(to)`, which answers whether the lease was still
/// ours and now runs to `to`.
async fn keep_with<F, Fut, E>(renew: F, id: i64, lease_secs: i64, until: Timestamp) -> Lost
where
    F: Fn(Timestamp) -> Fut,
    Fut: std::future::Future<Output = Result<bool, E>>,
    E: std::fmt::Display,
{
    let lease = Duration::from_secs(u64::try_from(lease_secs).unwrap_or(1).max(1));
    let interval = lease / 3;
    let mut left = remaining(until);
    let mut expires = Instant::now() + left;
    // A claim rounds down to whole seconds, so its lease may be nearly over already.
    let mut next = Instant::now() + interval.min(left / 2);
    loop {
        tokio::time::sleep_until(next).await;
        let start = Instant::now();
        // A renewal that takes a whole interval counts as failed, and none runs past the
        // lease it is meant to extend.
        let bound = if expires > start {
            expires.min(start + interval)
        } else {
            start + interval
        };
        let to = lease_end(lease_secs);
        let error = match tokio::time::timeout_at(bound, renew(to)).await {
            Ok(Ok(true)) => {
                left = remaining(to);
                expires = Instant::now() + left;
                next = Instant::now() + interval.min(left / 2);
                tracing::trace!(id, until = to, "queue lease renewed");
                continue;
            }
            Ok(Ok(false)) => return Lost::Taken,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", bound - start),
        };
        if Instant::now() >= expires {
            return Lost::Expired(error);
        }
        tracing::warn!(id, "cannot renew the queue lease: {error}; trying again");
        next = Instant::now() + RETRY.min(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Mutex;

    /// What each renewal answers, in order; the last one repeats.
    #[derive(Clone, Copy, Debug)]
    enum Answer {
        Renewed,
        NotOurs,
        Fails,
        Hangs,
    }

    /// Runs `keep_with` on a 3 s lease against the scripted answers; returns how it ended, how
    /// long it took (on tokio's clock: virtual time in the paused tests below) and how many
    /// renewals were tried. The lease's end is a wall-clock second, read once at the start
    /// (3-4 s away), so the virtual durations are exact up to that rounding.
    async fn run(script: &[Answer]) -> (Lost, Duration, usize) {
        let calls = Mutex::new(0usize);
        let started = Instant::now();
        let until = lease_end(3);
        let lost = keep_with(
            |_to| {
                let n = {
                    let mut calls = calls.lock().unwrap();
                    *calls += 1;
                    *calls
                };
                let answer = script[(n - 1).min(script.len() - 1)];
                async move {
                    match answer {
                        Answer::Renewed => Ok(true),
                        Answer::NotOurs => Ok(false),
                        Answer::Fails => Err("store unreachable"),
                        Answer::Hangs => std::future::pending().await,
                    }
                }
            },
            7,
            3,
            until,
        )
        .await;
        let calls = *calls.lock().unwrap();
        (lost, started.elapsed(), calls)
    }

    #[tokio::test(start_paused = true)]
    async fn failing_renewals_give_up_when_the_lease_runs_out() {
        let (lost, took, calls) = run(&[Answer::Fails]).await;
        assert_eq!(lost, Lost::Expired("store unreachable".into()));
        // The lease ran 3-4 s from the claim: the first renewal at a third (1 s), then one a
        // second until the lease is over, and the failure after its end gives up.
        assert!(
            took >= Duration::from_secs(3) && took <= Duration::from_secs(5),
            "{took:?}"
        );
        assert!((3..=5).contains(&calls), "{calls} renewals");
    }

    #[tokio::test(start_paused = true)]
    async fn hanging_renewals_give_up_when_the_lease_runs_out() {
        let (lost, took, _) = run(&[Answer::Hangs]).await;
        assert!(
            matches!(&lost, Lost::Expired(e) if e.starts_with("no answer within")),
            "{lost:?}"
        );
        // A hanging renewal is cut off at the lease's end, not later.
        assert!(
            took >= Duration::from_secs(3) && took <= Duration::from_secs(4),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_that_succeeds_after_failures_keeps_the_lease() {
        // Two failures, then renewals that work, until the store says the lease is gone.
        let script = [
            Answer::Fails,
            Answer::Fails,
            Answer::Renewed,
            Answer::Renewed,
            Answer::Renewed,
            Answer::NotOurs,
        ];
        let (lost, took, calls) = run(&script).await;
        assert_eq!(lost, Lost::Taken);
        assert_eq!(calls, 6);
        // Past the first lease's end: the late renewal kept it.
        assert!(took > Duration::from_secs(4), "{took:?}");
    }

    #[test]
    fn lease_end_rounds_up_to_a_whole_second() {
        let before = mailfleet_store::now();
        let end = lease_end(5);
        assert!((before + 5..=before + 7).contains(&end), "{before} {end}");
        // At least the lease from now, and at most a second more.
        let left = remaining(end);
        assert!(
            left >= Duration::from_millis(4900) && left <= Duration::from_secs(6),
            "{left:?}"
        );
        assert_eq!(remaining(before - 10), Duration::ZERO);
        assert_eq!(remaining(-1), Duration::ZERO);
    }
}
