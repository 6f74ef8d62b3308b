//! Node-local counters behind the policy: connections (total and per address), messages per
//! sender per minute, and AUTH failures per address (seed 002's login policy).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Open connections, in total and per client address.
#[derive(Default)]
pub struct Connections {
    inner: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Held while a connection is open; dropping it gives the slot back.
pub struct ConnectionSlot {
    owner: Arc<Connections>,
    ip: IpAddr,
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerIp,
}

impl Connections {
    /// Takes a slot unless `max_total` or `max_per_ip` is reached.
    pub fn acquire(
        self: &Arc<Self>,
        ip: IpAddr,
        max_total: usize,
        max_per_ip: usize,
    ) -> Result<ConnectionSlot, Refused> {
        let mut g = lock(&self.inner);
        if g.0 >= max_total {
            return Err(Refused::Total);
        }
        let n = g.1.entry(ip).or_insert(0);
        if *n >= max_per_ip {
            return Err(Refused::PerIp);
        }
        *n += 1;
        g.0 += 1;
        Ok(ConnectionSlot {
            owner: self.clone(),
            ip,
        })
    }

    /// Open connections now.
    pub fn total(&self) -> usize {
        lock(&self.inner).0
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut g = lock(&self.owner.inner);
        g.0 = g.0.saturating_sub(1);
        if let Some(n) = g.1.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                g.1.remove(&self.ip);
            }
        }
    }
}

const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Events per key in a sliding one-minute window.
#[derive(Default)]
pub struct RateLimiter {
    inner: Mutex<HashMap<String, Vec<Instant>>>,
}

impl RateLimiter {
    /// Whether `key` has had fewer than `per_minute` events in the last minute (0 = no limit).
    pub fn within(&self, key: &str, per_minute: u32) -> bool {
        if per_minute == 0 {
            return true;
        }
        let now = Instant::now();
        let g = lock(&self.inner);
        g.get(key).is_none_or(|times| {
            times
                .iter()
                .filter(|t| now.duration_since(**t) < RATE_WINDOW)
                .count()
                < per_minute as usize
        })
    }

    /// Records one event for `key` (nothing when `per_minute` is 0: no limit, no memory).
    pub fn record(&self, key: &str, per_minute: u32) {
        if per_minute == 0 {
            return;
        }
        let now = Instant::now();
        let mut g = lock(&self.inner);
        if g.len() > 100_000 {
            g.retain(|_, v| {
                v.last()
                    .is_some_and(|t| now.duration_since(*t) < RATE_WINDOW)
            });
        }
        let times = g.entry(key.to_string()).or_default();
        times.retain(|t| now.duration_since(*t) < RATE_WINDOW);
        // Only the last `per_minute` events can matter to `within`.
        if times.len() >= per_minute as usize {
            times.remove(0);
        }
        times.push(now);
    }
}

/// Failed logins per client address, and lockouts.
#[derive(Default)]
pub struct AuthFailures {
    inner: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl AuthFailures {
    /// Whether `ip` is locked out now.
    pub fn locked(&self, ip: IpAddr, max_failures: u32, window: Duration) -> bool {
        if max_failures == 0 {
            return false;
        }
        let mut g = lock(&self.inner);
        match g.get(&ip) {
            Some((n, since)) if since.elapsed() < window => *n >= max_failures,
            Some(_) => {
                g.remove(&ip);
                false
            }
            None => false,
        }
    }

    /// Counts a failure; returns the count in the current window.
    pub fn failed(&self, ip: IpAddr, window: Duration) -> u32 {
        let mut g = lock(&self.inner);
        if g.len() > 100_000 {
            g.retain(|_, (_, since)| since.elapsed() < window);
        }
        let e = g.entry(ip).or_insert((0, Instant::now()));
        if e.1.elapsed() >= window {
            *e = (0, Instant::now());
        }
        e.0 += 1;
        // The lockout runs from the latest failure.
        e.1 = Instant::now();
        e.0
    }

    /// A successful login clears the count.
    pub fn succeeded(&self, ip: IpAddr) {
        lock(&self.inner).remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slots() {
        let c = Arc::new(Connections::default());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = c.acquire(a, 3, 2).unwrap();
        let _s2 = c.acquire(a, 3, 2).unwrap();
        assert_eq!(c.acquire(a, 3, 2).err(), Some(Refused::PerIp));
        let _s3 = c.acquire(b, 3, 2).unwrap();
        assert_eq!(c.acquire(b, 3, 2).err(), Some(Refused::Total));
        drop(s1);
        assert!(c.acquire(a, 3, 2).is_ok());
    }

    #[test]
    fn rate_and_lockout() {
        let r = RateLimiter::default();
        // Checking records nothing; two events fill a limit of two.
        assert!(r.within("x", 2) && r.within("x", 2));
        r.record("x", 2);
        assert!(r.within("x", 2));
        r.record("x", 2);
        assert!(!r.within("x", 2));
        r.record("x", 2);
        assert_eq!(lock(&r.inner)["x"].len(), 2, "no more kept than the limit");
        assert!(r.within("y", 2));
        assert!(r.within("x", 0));
        let f = AuthFailures::default();
        let ip: IpAddr = "::1".parse().unwrap();
        let w = Duration::from_secs(60);
        assert!(!f.locked(ip, 2, w));
        f.failed(ip, w);
        f.failed(ip, w);
        assert!(f.locked(ip, 2, w));
        assert!(!f.locked(ip, 2, Duration::ZERO));
        f.succeeded(ip);
        assert!(!f.locked(ip, 2, w));
    }
}
