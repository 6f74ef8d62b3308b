//! Weighted round robin: a precomputed, smoothly interleaved sequence (3:1 gives a a b a, not
//! a a a b), walked by the service's counter.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use super::{Candidate, Scheduler, next};

/// The longest sequence kept; larger weight sums are scaled down to fit.
const MAX_TABLE: u64 = 4096;

#[derive(Debug)]
pub struct WeightedRoundRobin {
    table: Vec<u32>,
    counter: Arc<AtomicUsize>,
}

impl WeightedRoundRobin {
    pub fn new(cands: &[Candidate], counter: Arc<AtomicUsize>) -> Self {
        let weights: Vec<u32> = cands.iter().map(|c| c.weight).collect();
        WeightedRoundRobin {
            table: smooth_table(&weights),
            counter,
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The interleaved sequence of indices for `weights` (each index appears in proportion to its
/// weight; zero weights never appear).
pub(crate) fn smooth_table(weights: &[u32]) -> Vec<u32> {
    let mut w: Vec<u64> = weights.iter().map(|&x| x as u64).collect();
    let g = w.iter().copied().filter(|&x| x > 0).fold(0, gcd);
    if g == 0 {
        return Vec::new();
    }
    for x in &mut w {
        *x /= g;
    }
    let sum: u64 = w.iter().sum();
    if sum > MAX_TABLE {
        for x in &mut w {
            if *x > 0 {
                *x = (*x * MAX_TABLE / sum).max(1);
            }
        }
    }
    let total: i64 = w.iter().sum::<u64>() as i64;
    let mut current = vec![0i64; w.len()];
    let mut table = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0usize;
        for i in 0..w.len() {
            current[i] += w[i] as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        table.push(best as u32);
    }
    table
}

impl Scheduler for WeightedRoundRobin {
    fn pick(&self, _client: IpAddr, cands: &[Candidate]) -> Option<usize> {
        if self.table.is_empty() || cands.is_empty() {
            return None;
        }
        let i = self.table[next(&self.counter) % self.table.len()] as usize;
        (i < cands.len()).then_some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{cand, sequence};
    use super::*;

    #[test]
    fn three_to_one_interleaves() {
        let c = vec![cand("a", 300, 0), cand("b", 100, 0)];
        let s = WeightedRoundRobin::new(&c, Arc::default());
        assert_eq!(
            sequence(&s, &c, "127.0.0.1", 8),
            ["a", "a", "b", "a", "a", "a", "b", "a"]
        );
    }

    #[test]
    fn five_one_one_spreads_the_heavy_one() {
        let c = vec![cand("a", 5, 0), cand("b", 1, 0), cand("c", 1, 0)];
        let s = WeightedRoundRobin::new(&c, Arc::default());
        assert_eq!(
            sequence(&s, &c, "127.0.0.1", 7),
            ["a", "a", "b", "a", "c", "a", "a"]
        );
    }

    #[test]
    fn equal_weights_rotate() {
        let c = vec![cand("a", 7, 0), cand("b", 7, 0), cand("c", 7, 0)];
        let s = WeightedRoundRobin::new(&c, Arc::default());
        assert_eq!(sequence(&s, &c, "127.0.0.1", 4), ["a", "b", "c", "a"]);
    }

    #[test]
    fn huge_weights_are_scaled_but_keep_proportions() {
        let t = smooth_table(&[65535, 1, 30000]);
        assert!(t.len() as u64 <= MAX_TABLE + 3);
        let n0 = t.iter().filter(|&&i| i == 0).count() as f64;
        let n2 = t.iter().filter(|&&i| i == 2).count() as f64;
        assert!((n0 / n2 - 65535.0 / 30000.0).abs() < 0.01);
        assert!(t.contains(&1));
    }

    #[test]
    fn no_candidate_no_pick() {
        let s = WeightedRoundRobin::new(&[], Arc::default());
        assert_eq!(s.pick("127.0.0.1".parse().unwrap(), &[]), None);
    }
}
