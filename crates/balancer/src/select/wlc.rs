//! Weighted least connections: the smallest `(open connections + 1) / weight`. Ties go to the
//! next server after the previous pick.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use super::leastconn::least_loaded;
use super::{Candidate, Scheduler, next};

#[derive(Debug)]
pub struct WeightedLeastConn {
    counter: Arc<AtomicUsize>,
}

impl WeightedLeastConn {
    pub fn new(counter: Arc<AtomicUsize>) -> Self {
        WeightedLeastConn { counter }
    }
}

impl Scheduler for WeightedLeastConn {
    fn pick(&self, _client: IpAddr, cands: &[Candidate]) -> Option<usize> {
        if cands.is_empty() {
            return None;
        }
        let start = next(&self.counter) % cands.len();
        least_loaded(cands, start, |c| c.weight as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{cand, sequence};
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn weight_scales_the_load() {
        // a: (4+1)/300 ≈ 0.017, b: (1+1)/100 = 0.02
        let c = vec![cand("a", 300, 4), cand("b", 100, 1)];
        let s = WeightedLeastConn::new(Arc::default());
        assert_eq!(sequence(&s, &c, "127.0.0.1", 2), ["a", "a"]);
    }

    #[test]
    fn fills_in_weight_proportion() {
        let c = vec![cand("a", 3, 0), cand("b", 1, 0)];
        let s = WeightedLeastConn::new(Arc::default());
        let ip = "127.0.0.1".parse().unwrap();
        let mut got = Vec::new();
        for _ in 0..8 {
            let i = s.pick(ip, &c).unwrap();
            c[i].server.active.fetch_add(1, Ordering::Relaxed);
            got.push(c[i].server.name.clone());
        }
        assert_eq!(got, ["a", "a", "a", "b", "a", "a", "a", "b"]);
    }
}
