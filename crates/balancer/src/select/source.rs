//! Source hashing: the same client address always goes to the same server while the set of
//! servers stays the same, and only the clients of a server that leaves move when it does
//! (weighted rendezvous hashing over the server names). Slow start does not move clients.

use std::net::IpAddr;

use super::{Candidate, Scheduler};

#[derive(Debug)]
pub struct SourceHash {
    /// Per candidate: the hash seed of its name and its weight.
    seeds: Vec<(u64, f64)>,
}

impl SourceHash {
    pub fn new(cands: &[Candidate]) -> Self {
        SourceHash {
            seeds: cands
                .iter()
                .map(|c| (fnv1a(c.server.name.as_bytes()), c.base_weight.max(1) as f64))
                .collect(),
        }
    }

    /// Candidate indices from best to worst for `client`.
    fn ranking(&self, client: IpAddr) -> Vec<usize> {
        let key = match client {
            IpAddr::V4(v) => fnv1a(&v.octets()),
            IpAddr::V6(v) => fnv1a(&v.octets()),
        };
        let mut scored: Vec<(f64, usize)> = self
            .seeds
            .iter()
            .enumerate()
            .map(|(i, &(seed, w))| {
                let h = mix(key ^ seed);
                // A uniform value in (0, 1], then the weighted rendezvous score.
                let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
                (-u.ln() / w, i)
            })
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        scored.into_iter().map(|s| s.1).collect()
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Scheduler for SourceHash {
    fn pick(&self, client: IpAddr, cands: &[Candidate]) -> Option<usize> {
        if cands.is_empty() || self.seeds.len() != cands.len() {
            return None;
        }
        self.ranking(client).first().copied()
    }

    fn pick_excluding(
        &self,
        client: IpAddr,
        cands: &[Candidate],
        tried: &[usize],
    ) -> Option<usize> {
        if self.seeds.len() != cands.len() {
            return None;
        }
        self.ranking(client)
            .into_iter()
            .find(|i| !tried.contains(i))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{cand, sequence};
    use super::*;

    fn three() -> Vec<Candidate> {
        vec![cand("n1", 100, 0), cand("n2", 100, 0), cand("n3", 100, 0)]
    }

    #[test]
    fn exact_choices_are_stable() {
        let c = three();
        let s = SourceHash::new(&c);
        let got: Vec<String> = ["127.0.0.5", "127.0.0.6", "127.0.0.7", "::1"]
            .iter()
            .map(|ip| sequence(&s, &c, ip, 1).remove(0))
            .collect();
        assert_eq!(got, ["n1", "n1", "n3", "n1"]);
        assert_eq!(sequence(&s, &c, "127.0.0.5", 4), ["n1", "n1", "n1", "n1"]);
    }

    #[test]
    fn removing_a_server_moves_only_its_clients() {
        let c = three();
        let s = SourceHash::new(&c);
        let less = vec![c[0].clone(), c[2].clone()];
        let s2 = SourceHash::new(&less);
        let mut moved = 0;
        for i in 0..200u8 {
            let ip = IpAddr::from([10, 0, 1, i]);
            let before = &c[s.pick(ip, &c).unwrap()].server.name;
            let after = &less[s2.pick(ip, &less).unwrap()].server.name;
            if before != "n2" {
                assert_eq!(before, after);
            } else {
                moved += 1;
            }
        }
        assert!(moved > 30 && moved < 110, "{moved}");
    }

    #[test]
    fn weights_skew_the_share() {
        let c = vec![cand("big", 300, 0), cand("small", 100, 0)];
        let s = SourceHash::new(&c);
        let big = (0..4000u32)
            .filter(|i| s.pick(IpAddr::from(i.to_be_bytes()), &c) == Some(0))
            .count();
        assert!((2800..3200).contains(&big), "{big}");
    }

    #[test]
    fn exclusion_takes_the_next_best() {
        let c = three();
        let s = SourceHash::new(&c);
        let ip = "127.0.0.5".parse().unwrap();
        let first = s.pick(ip, &c).unwrap();
        let second = s.pick_excluding(ip, &c, &[first]).unwrap();
        assert_ne!(first, second);
    }
}
