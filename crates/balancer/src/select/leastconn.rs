//! Least connections: the server with the fewest open connections, weights ignored. Ties go to
//! the next server after the previous pick, so equal servers still take turns. A server in slow
//! start counts as if its connections were multiplied by 1000/progress.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use super::{Candidate, Scheduler, next};

#[derive(Debug)]
pub struct LeastConn {
    counter: Arc<AtomicUsize>,
}

impl LeastConn {
    pub fn new(counter: Arc<AtomicUsize>) -> Self {
        LeastConn { counter }
    }
}

/// The index whose `(active + 1) / share` is smallest, scanning from `start`.
pub(super) fn least_loaded(
    cands: &[Candidate],
    start: usize,
    share: impl Fn(&Candidate) -> u64,
) -> Option<usize> {
    let n = cands.len();
    let mut best: Option<(usize, u64, u64)> = None;
    for k in 0..n {
        let i = (start + k) % n;
        let c = &cands[i];
        let load = c.active() + 1;
        let sh = share(c).max(1);
        match best {
            // load_i / sh_i < load_b / sh_b  <=>  load_i * sh_b < load_b * sh_i
            Some((_, bl, bs)) if (load as u128) * (bs as u128) >= (bl as u128) * (sh as u128) => {}
            _ => best = Some((i, load, sh)),
        }
    }
    best.map(|b| b.0)
}

impl Scheduler for LeastConn {
    fn pick(&self, _client: IpAddr, cands: &[Candidate]) -> Option<usize> {
        if cands.is_empty() {
            return None;
        }
        let start = next(&self.counter) % cands.len();
        least_loaded(cands, start, |c| c.ramp as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{cand, sequence};
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn picks_the_fewest_connections() {
        let c = vec![cand("a", 1, 5), cand("b", 100, 2), cand("c", 1, 3)];
        let s = LeastConn::new(Arc::default());
        assert_eq!(sequence(&s, &c, "127.0.0.1", 3), ["b", "b", "b"]);
    }

    #[test]
    fn counts_follow_opened_connections() {
        let c = vec![cand("a", 1, 0), cand("b", 1, 0), cand("c", 1, 2)];
        let s = LeastConn::new(Arc::default());
        let ip = "127.0.0.1".parse().unwrap();
        let mut got = Vec::new();
        for _ in 0..6 {
            let i = s.pick(ip, &c).unwrap();
            c[i].server.active.fetch_add(1, Ordering::Relaxed);
            got.push(c[i].server.name.clone());
        }
        // Ties resolve from the rotating start: the 5th pick starts at b, the 6th at c.
        assert_eq!(got, ["a", "b", "a", "b", "b", "c"]);
    }

    #[test]
    fn ties_take_turns() {
        let c = vec![cand("a", 1, 1), cand("b", 1, 1), cand("c", 1, 1)];
        let s = LeastConn::new(Arc::default());
        assert_eq!(sequence(&s, &c, "127.0.0.1", 4), ["a", "b", "c", "a"]);
    }

    #[test]
    fn a_ramping_server_is_not_flooded() {
        let mut c = vec![cand("old", 1, 10), cand("new", 1, 0)];
        c[1].ramp = 50; // 5 % through slow start: 1 connection counts as 20
        let s = LeastConn::new(Arc::default());
        assert_eq!(sequence(&s, &c, "127.0.0.1", 2), ["old", "old"]);
        c[1].ramp = 1000;
        assert_eq!(sequence(&s, &c, "127.0.0.1", 1), ["new"]);
    }
}
