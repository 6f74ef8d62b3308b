//! Scheduling: which eligible server a new client goes to.
//!
//! A scheduler is built from the eligible candidates of one snapshot and never changes; a change
//! of servers, weights or health builds a new snapshot with a new scheduler. Its only moving part
//! is the service's rotating counter (an atomic kept across rebuilds), so picking never locks.
//! One file per algorithm.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::SchedulerKind;
use crate::server::ServerRt;

mod leastconn;
mod roundrobin;
mod source;
mod wlc;
mod wrr;

pub use leastconn::LeastConn;
pub use roundrobin::RoundRobin;
pub use source::SourceHash;
pub use wlc::WeightedLeastConn;
pub use wrr::WeightedRoundRobin;

/// A server that may take new clients, with its weight at this snapshot.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub server: Arc<ServerRt>,
    /// The weight with slow start applied (at least 1).
    pub weight: u32,
    /// The weight without slow start.
    pub base_weight: u32,
    /// Slow-start progress in thousandths (1000 = done).
    pub ramp: u32,
}

impl Candidate {
    /// Open connections and connects under way.
    pub fn active(&self) -> u64 {
        self.server.active.load(Ordering::Relaxed) + self.server.connecting.load(Ordering::Relaxed)
    }
}

/// A scheduling algorithm over a fixed candidate list.
pub trait Scheduler: Send + Sync + std::fmt::Debug {
    /// The index into `cands` of the server for a new client, None when there is no candidate.
    fn pick(&self, client: IpAddr, cands: &[Candidate]) -> Option<usize>;

    /// Like `pick`, avoiding servers that already failed for this client.
    fn pick_excluding(
        &self,
        client: IpAddr,
        cands: &[Candidate],
        tried: &[usize],
    ) -> Option<usize> {
        for _ in 0..cands.len() * 2 {
            match self.pick(client, cands) {
                Some(i) if !tried.contains(&i) => return Some(i),
                Some(_) => {}
                None => return None,
            }
        }
        (0..cands.len()).find(|i| !tried.contains(i))
    }
}

/// Builds the scheduler of `kind` over `cands`.
pub fn build(
    kind: SchedulerKind,
    cands: &[Candidate],
    counter: Arc<AtomicUsize>,
) -> Box<dyn Scheduler> {
    match kind {
        SchedulerKind::Roundrobin => Box::new(RoundRobin::new(cands, counter)),
        SchedulerKind::Wrr => Box::new(WeightedRoundRobin::new(cands, counter)),
        SchedulerKind::Leastconn => Box::new(LeastConn::new(counter)),
        SchedulerKind::Wlc => Box::new(WeightedLeastConn::new(counter)),
        SchedulerKind::Source => Box::new(SourceHash::new(cands)),
    }
}

/// The next value of a rotating counter.
fn next(counter: &AtomicUsize) -> usize {
    counter.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A candidate named `name` with `weight` and `active` open connections.
    pub fn cand(name: &str, weight: u32, active: u64) -> Candidate {
        let s = ServerRt::new("svc", name, "127.0.0.1".parse().unwrap(), Some(1), weight);
        s.active.store(active, Ordering::Relaxed);
        Candidate {
            server: Arc::new(s),
            weight,
            base_weight: weight,
            ramp: 1000,
        }
    }

    /// The names of `n` successive picks for `client`.
    pub fn sequence(s: &dyn Scheduler, cands: &[Candidate], client: &str, n: usize) -> Vec<String> {
        let ip: IpAddr = client.parse().unwrap();
        (0..n)
            .map(|_| cands[s.pick(ip, cands).unwrap()].server.name.clone())
            .collect()
    }
}
