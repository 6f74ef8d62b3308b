//! Open connections per listening address, for what a node reports about itself (its
//! heartbeat).
//!
//! A running [`crate::Listener`] registers the address it is bound to while it accepts; a
//! connection counts from its admission (past the access rules and the connection limits) to
//! the end of its session. The registry is the process's: addresses bound at the same time are
//! distinct, so several nodes in one process (tests) each read their own.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

type Registry = Mutex<HashMap<SocketAddr, Arc<AtomicU64>>>;

fn registry() -> MutexGuard<'static, HashMap<SocketAddr, Arc<AtomicU64>>> {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    let m = REGISTRY.get_or_init(Default::default);
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Connections open now on the listener bound to `addr`; `None` when no listener of this
/// process accepts there.
pub fn open_connections(addr: SocketAddr) -> Option<u64> {
    registry().get(&addr).map(|n| n.load(Ordering::Relaxed))
}

/// A listener's place in the registry, removed when dropped (the listener stopped accepting).
pub(crate) struct Registration {
    addr: SocketAddr,
    count: Arc<AtomicU64>,
}

impl Registration {
    /// Registers `addr`, replacing what an earlier listener on the same address left.
    pub(crate) fn new(addr: SocketAddr) -> Self {
        let count = Arc::new(AtomicU64::new(0));
        registry().insert(addr, count.clone());
        Self { addr, count }
    }

    /// Counts one connection until the returned guard is dropped.
    pub(crate) fn open(&self) -> OpenConnection {
        self.count.fetch_add(1, Ordering::Relaxed);
        OpenConnection {
            count: self.count.clone(),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut r = registry();
        // Only our own entry: a listener started since on the same address keeps its own.
        if r.get(&self.addr)
            .is_some_and(|c| Arc::ptr_eq(c, &self.count))
        {
            r.remove(&self.addr);
        }
    }
}

/// One open connection, counted while it lives.
pub(crate) struct OpenConnection {
    count: Arc<AtomicU64>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_forgets_stopped_listeners() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let ra = Registration::new(a);
        let rb = Registration::new(b);
        let c1 = ra.open();
        let c2 = ra.open();
        let _c3 = rb.open();
        assert_eq!(
            (open_connections(a), open_connections(b)),
            (Some(2), Some(1))
        );
        drop(c1);
        assert_eq!(open_connections(a), Some(1));
        // A new listener on the same address starts from zero; the old one's end leaves it.
        let ra2 = Registration::new(a);
        assert_eq!(open_connections(a), Some(0));
        drop(ra);
        assert_eq!(open_connections(a), Some(0));
        drop(c2);
        assert_eq!(open_connections(a), Some(0));
        drop(ra2);
        assert_eq!(open_connections(a), None);
        drop(rb);
        assert_eq!(open_connections(b), None);
    }
}
