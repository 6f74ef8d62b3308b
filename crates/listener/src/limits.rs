//! Node-local counters behind the admission policy: open connections, in total and per
//! address. (Sender rates and failed logins are counted for the whole cluster, in the store.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

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
}
