//! Source-IP persistence: which server a client address was last sent to.
//!
//! An entry lives while its client has connections open and for `timeout` after the last one
//! ended (or, with none ever open, after it was made). The table is sharded so that clients of
//! different shards never wait for each other; a lookup or update holds one shard's lock for a
//! hash-map operation only.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

const SHARDS: usize = 16;

#[derive(Debug, Clone)]
struct Entry {
    server: Arc<str>,
    last_ms: u64,
    active: u32,
}

#[derive(Debug)]
pub struct PersistTable {
    shards: Vec<Mutex<HashMap<IpAddr, Entry>>>,
}

impl Default for PersistTable {
    fn default() -> Self {
        PersistTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

/// One entry as exported to a peer balancer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExportedEntry {
    pub client: IpAddr,
    pub server: String,
    /// Milliseconds since the entry was last used (0 while connections are open).
    pub idle_ms: u64,
}

#[allow(dead_code)] // export/import serve the balancer pair
impl PersistTable {
    fn shard(&self, ip: &IpAddr) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        ip.hash(&mut h);
        let i = (h.finish() as usize) % SHARDS;
        // A poisoned shard only means a panic elsewhere held it; the map itself is still whole.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn expired(e: &Entry, now_ms: u64, timeout_ms: u64) -> bool {
        e.active == 0 && now_ms.saturating_sub(e.last_ms) > timeout_ms
    }

    /// The server a client is persistent to, if its entry has not expired.
    pub fn lookup(&self, ip: IpAddr, now_ms: u64, timeout_ms: u64) -> Option<Arc<str>> {
        let mut s = self.shard(&ip);
        match s.get(&ip) {
            Some(e) if !Self::expired(e, now_ms, timeout_ms) => Some(e.server.clone()),
            Some(_) => {
                s.remove(&ip);
                None
            }
            None => None,
        }
    }

    /// Records a new connection of `ip` to `server` (replacing any other server).
    pub fn open(&self, ip: IpAddr, server: &Arc<str>, now_ms: u64) {
        let mut s = self.shard(&ip);
        let e = s.entry(ip).or_insert_with(|| Entry {
            server: server.clone(),
            last_ms: now_ms,
            active: 0,
        });
        if e.server != *server {
            e.server = server.clone();
        }
        e.active = e.active.saturating_add(1);
        e.last_ms = now_ms;
    }

    /// Records the end of a connection of `ip`.
    pub fn close(&self, ip: IpAddr, now_ms: u64) {
        let mut s = self.shard(&ip);
        if let Some(e) = s.get_mut(&ip) {
            e.active = e.active.saturating_sub(1);
            e.last_ms = now_ms;
        }
    }

    /// Forgets a client (its server failed).
    pub fn forget(&self, ip: IpAddr) {
        self.shard(&ip).remove(&ip);
    }

    /// Removes expired entries; returns how many are left.
    pub fn sweep(&self, now_ms: u64, timeout_ms: u64) -> usize {
        let mut left = 0;
        for shard in &self.shards {
            let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
            s.retain(|_, e| !Self::expired(e, now_ms, timeout_ms));
            left += s.len();
        }
        left
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn export(&self, now_ms: u64) -> Vec<ExportedEntry> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let s = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (ip, e) in s.iter() {
                out.push(ExportedEntry {
                    client: *ip,
                    server: e.server.to_string(),
                    idle_ms: if e.active > 0 {
                        0
                    } else {
                        now_ms.saturating_sub(e.last_ms)
                    },
                });
            }
        }
        out.sort_by_key(|e| e.client);
        out
    }

    /// Replaces the table with a peer's entries (the local clients' open counts are kept).
    pub fn import(&self, entries: &[ExportedEntry], now_ms: u64) {
        for shard in &self.shards {
            let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
            s.retain(|_, e| e.active > 0);
        }
        for x in entries {
            let mut s = self.shard(&x.client);
            let e = s.entry(x.client).or_insert_with(|| Entry {
                server: Arc::from(x.server.as_str()),
                last_ms: 0,
                active: 0,
            });
            e.server = Arc::from(x.server.as_str());
            e.last_ms = now_ms.saturating_sub(x.idle_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_only_when_idle_past_the_timeout() {
        let t = PersistTable::default();
        let ip: IpAddr = "127.0.0.5".parse().unwrap();
        let n1: Arc<str> = Arc::from("n1");
        t.open(ip, &n1, 1_000);
        // Open connection: never expires.
        assert_eq!(t.lookup(ip, 100_000, 10).as_deref(), Some("n1"));
        t.close(ip, 100_000);
        assert_eq!(t.lookup(ip, 100_010, 10).as_deref(), Some("n1"));
        assert_eq!(t.lookup(ip, 100_011, 10), None);
        assert!(t.is_empty());
    }

    #[test]
    fn export_and_import_carry_ages() {
        let a = PersistTable::default();
        let ip: IpAddr = "127.0.0.6".parse().unwrap();
        a.open(ip, &Arc::from("n2"), 0);
        a.close(ip, 500);
        let ex = a.export(800);
        assert_eq!(ex[0].idle_ms, 300);
        let b = PersistTable::default();
        b.import(&ex, 10_000);
        assert_eq!(b.lookup(ip, 10_000, 400).as_deref(), Some("n2"));
        assert_eq!(b.lookup(ip, 10_200, 400), None);
    }
}
