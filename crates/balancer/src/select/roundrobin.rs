//! Round robin: each eligible server in turn, weights ignored. A server in slow start takes its
//! share in proportion to its progress.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use super::wrr::smooth_table;
use super::{Candidate, Scheduler, next};

#[derive(Debug)]
pub struct RoundRobin {
    /// None: plain rotation; Some: the slow-start interleaving.
    table: Option<Vec<u32>>,
    counter: Arc<AtomicUsize>,
}

impl RoundRobin {
    pub fn new(cands: &[Candidate], counter: Arc<AtomicUsize>) -> Self {
        let table = if cands.iter().all(|c| c.ramp >= 1000) {
            None
        } else {
            let ramps: Vec<u32> = cands.iter().map(|c| c.ramp.max(1)).collect();
            Some(smooth_table(&ramps))
        };
        RoundRobin { table, counter }
    }
}

impl Scheduler for RoundRobin {
    fn pick(&self, _client: IpAddr, cands: &[Candidate]) -> Option<usize> {
        if cands.is_empty() {
            return None;
        }
        let n = next(&self.counter);
        match &self.table {
            None => Some(n % cands.len()),
            Some(t) if t.is_empty() => None,
            Some(t) => Some((t[n % t.len()] as usize).min(cands.len() - 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{cand, sequence};
    use super::*;

    #[test]
    fn rotates_ignoring_weights() {
        let c = vec![cand("a", 300, 0), cand("b", 1, 0), cand("c", 50, 9)];
        let s = RoundRobin::new(&c, Arc::default());
        assert_eq!(
            sequence(&s, &c, "127.0.0.1", 7),
            ["a", "b", "c", "a", "b", "c", "a"]
        );
    }

    #[test]
    fn starts_where_the_service_counter_is() {
        let c = vec![cand("a", 1, 0), cand("b", 1, 0)];
        let s = RoundRobin::new(&c, Arc::new(AtomicUsize::new(1)));
        assert_eq!(sequence(&s, &c, "127.0.0.1", 3), ["b", "a", "b"]);
    }

    #[test]
    fn a_ramping_server_gets_its_fraction() {
        let mut c = vec![cand("a", 1, 0), cand("b", 1, 0)];
        c[1].ramp = 250;
        let s = RoundRobin::new(&c, Arc::default());
        let seq = sequence(&s, &c, "127.0.0.1", 10);
        assert_eq!(seq, ["a", "a", "b", "a", "a", "a", "a", "b", "a", "a"]);
    }
}
