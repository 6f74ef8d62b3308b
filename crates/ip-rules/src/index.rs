//! A lookup structure for a list of rules: every rule that covers a contiguous block of addresses
//! becomes an interval; intervals are sorted and merged so a lookup is a binary search. Wildcards
//! that are not one block (such as `*.*.*.1`) stay in a short list checked one by one.
//!
//! It answers exactly what "any rule matches" answers, including the IPv4-mapped rules described
//! on [`IpRule`].

use std::net::IpAddr;

use crate::rule::{IpRule, OctetRange, v4_mask, v6_mask};

#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Index {
    v4: Intervals<u32>,
    v6: Intervals<u128>,
    /// Wildcards that are not a single interval.
    wildcards: Vec<[OctetRange; 4]>,
}

impl Index {
    pub(crate) fn new(rules: &[IpRule]) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut wildcards = Vec::new();
        let mapped = |ip: IpAddr| match ip {
            IpAddr::V6(a) => a.to_ipv4_mapped().map(u32::from),
            IpAddr::V4(_) => None,
        };
        for rule in rules {
            match *rule {
                IpRule::Single(IpAddr::V4(a)) => v4.push((u32::from(a), u32::from(a))),
                IpRule::Single(ip @ IpAddr::V6(a)) => {
                    v6.push((u128::from(a), u128::from(a)));
                    if let Some(m) = mapped(ip) {
                        v4.push((m, m));
                    }
                }
                IpRule::Cidr {
                    network: IpAddr::V4(n),
                    prefix,
                } => {
                    let mask = v4_mask(prefix);
                    v4.push((u32::from(n) & mask, u32::from(n) | !mask));
                }
                IpRule::Cidr {
                    network: net @ IpAddr::V6(n),
                    prefix,
                } => {
                    let mask = v6_mask(prefix);
                    v6.push((u128::from(n) & mask, u128::from(n) | !mask));
                    if let Some(m) = mapped(net).filter(|_| prefix >= 96) {
                        let mask = v4_mask(prefix.min(128) - 96);
                        v4.push((m & mask, m | !mask));
                    }
                }
                IpRule::Range {
                    start: IpAddr::V4(s),
                    end: IpAddr::V4(e),
                } => v4.push((u32::from(s), u32::from(e))),
                IpRule::Range {
                    start: start @ IpAddr::V6(s),
                    end: end @ IpAddr::V6(e),
                } => {
                    v6.push((u128::from(s), u128::from(e)));
                    if let (Some(s), Some(e)) = (mapped(start), mapped(end)) {
                        v4.push((s, e));
                    }
                }
                // A range mixing families matches nothing.
                IpRule::Range { .. } => {}
                IpRule::Wildcard { octets } => match wildcard_interval(octets) {
                    Some(interval) => v4.push(interval),
                    None => wildcards.push(octets),
                },
            }
        }
        Index {
            v4: Intervals::new(v4),
            v6: Intervals::new(v6),
            wildcards,
        }
    }

    pub(crate) fn matches(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(a) => {
                self.v4.contains(u32::from(a))
                    || self
                        .wildcards
                        .iter()
                        .any(|w| w.iter().zip(a.octets()).all(|(r, o)| r.contains(o)))
            }
            IpAddr::V6(a) => self.v6.contains(u128::from(a)),
        }
    }
}

/// The single interval a wildcard covers, if it is one: every octet after the first that is not
/// a single value must be `*`.
fn wildcard_interval(octets: [OctetRange; 4]) -> Option<(u32, u32)> {
    let first_open = octets.iter().position(|o| o.low != o.high).unwrap_or(4);
    if octets
        .iter()
        .skip(first_open + 1)
        .any(|o| *o != OctetRange::ANY)
    {
        return None;
    }
    if octets.iter().any(|o| o.low > o.high) {
        // A hand-built reversed octet range matches nothing.
        return Some((1, 0));
    }
    let low = u32::from_be_bytes(octets.map(|o| o.low));
    let high = u32::from_be_bytes(octets.map(|o| o.high));
    Some((low, high))
}

/// Sorted, non-overlapping, inclusive intervals.
#[derive(Clone, Default, PartialEq, Eq)]
struct Intervals<T>(Vec<(T, T)>);

impl<T: Ord + Copy> Intervals<T> {
    fn new(mut v: Vec<(T, T)>) -> Self {
        // Empty (reversed) intervals match nothing.
        v.retain(|(lo, hi)| lo <= hi);
        v.sort_unstable();
        let mut merged: Vec<(T, T)> = Vec::with_capacity(v.len());
        for (lo, hi) in v {
            match merged.last_mut() {
                Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        merged.shrink_to_fit();
        Intervals(merged)
    }

    fn contains(&self, x: T) -> bool {
        // The last interval starting at or before x is the only one that can hold it.
        let after = self.0.partition_point(|(lo, _)| *lo <= x);
        after > 0 && self.0.get(after - 1).is_some_and(|(_, hi)| x <= *hi)
    }
}
