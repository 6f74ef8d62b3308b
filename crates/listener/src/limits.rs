//! Node-local counters behind the admission policy: open connections, in total and per
//! address. (Sender rates and failed logins are counted for the whole cluster, in the store.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

/// How long a connection that finds its address at the limit waits for one of that address's
/// slots to come back before it is refused. A client that ends a session by closing first (no
/// QUIT, or not waiting for the reply) may connect again before the old session's task has
/// seen the close; within this grace the new connection takes the freed slot instead of a 421.
pub const PER_IP_GRACE: Duration = Duration::from_millis(200);

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
    /// Told whenever a slot is given back.
    released: Notify,
}

/// Held while a connection is open; dropping it gives the slot back.
pub struct ConnectionSlot {
    owner: Arc<Connections>,
    ip: IpAddr,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    /// Takes a slot like [`Connections::acquire`], but when the address is at its limit waits
    /// up to `grace` for one of its slots to come back (see [`PER_IP_GRACE`]). The node's total
    /// is refused at once.
    pub async fn acquire_within(
        self: &Arc<Self>,
        ip: IpAddr,
        max_total: usize,
        max_per_ip: usize,
        grace: Duration,
    ) -> Result<ConnectionSlot, Refused> {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Registered before the check, so a slot given back in between is not missed.
            released.as_mut().enable();
            match self.acquire(ip, max_total, max_per_ip) {
                Err(Refused::PerIp) => {
                    if tokio::time::timeout_at(deadline, released).await.is_err() {
                        return Err(Refused::PerIp);
                    }
                }
                other => return other,
            }
        }
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
        drop(g);
        self.owner.released.notify_waiters();
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

    #[tokio::test]
    async fn a_connection_at_the_limit_waits_briefly_for_a_slot() {
        let c = Arc::new(Connections::default());
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let held = c.acquire(a, 10, 1).unwrap();
        // Nothing comes back: refused once the grace is over.
        let started = std::time::Instant::now();
        let r = c.acquire_within(a, 10, 1, Duration::from_millis(50)).await;
        assert_eq!(r.err(), Some(Refused::PerIp));
        assert!(started.elapsed() >= Duration::from_millis(50));
        // The slot comes back within the grace: taken.
        let waiter = {
            let c = c.clone();
            tokio::spawn(async move {
                c.acquire_within(a, 10, 1, Duration::from_secs(30))
                    .await
                    .map(|_| ())
            })
        };
        tokio::task::yield_now().await;
        drop(held);
        let got = tokio::time::timeout(Duration::from_secs(30), waiter)
            .await
            .expect("the waiter is told")
            .unwrap();
        assert_eq!(got, Ok(()));
    }
}
