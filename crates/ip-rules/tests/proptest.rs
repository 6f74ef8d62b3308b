//! Properties: matching agrees with plain arithmetic, display round-trips, parsing never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use mailfleet_ip_rules::{IpRule, IpRules, OctetRange};
use proptest::prelude::*;

fn v4_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

fn v6_mask(prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(prefix))
    }
}

fn octet_range() -> impl Strategy<Value = OctetRange> {
    prop_oneof![
        Just(OctetRange::ANY),
        any::<u8>().prop_map(OctetRange::exact),
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| OctetRange {
            low: a.min(b),
            high: a.max(b)
        }),
    ]
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        // IPv4-mapped IPv6, as dual-stack sockets report IPv4 clients.
        any::<u32>().prop_map(|a| IpAddr::V6(Ipv4Addr::from(a).to_ipv6_mapped())),
    ]
}

/// Canonical rules, built the way parsing builds them.
fn canonical_rule() -> impl Strategy<Value = IpRule> {
    prop_oneof![
        any_ip().prop_map(IpRule::Single),
        (any::<u32>(), 0u8..=32).prop_map(|(a, p)| IpRule::Cidr {
            network: IpAddr::V4(Ipv4Addr::from(a & v4_mask(p))),
            prefix: p
        }),
        (any::<u128>(), 0u8..=128).prop_map(|(a, p)| IpRule::Cidr {
            network: IpAddr::V6(Ipv6Addr::from(a & v6_mask(p))),
            prefix: p
        }),
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| IpRule::Range {
            start: IpAddr::V4(Ipv4Addr::from(a.min(b))),
            end: IpAddr::V4(Ipv4Addr::from(a.max(b)))
        }),
        (any::<u128>(), any::<u128>()).prop_map(|(a, b)| IpRule::Range {
            start: IpAddr::V6(Ipv6Addr::from(a.min(b))),
            end: IpAddr::V6(Ipv6Addr::from(a.max(b)))
        }),
        [octet_range(), octet_range(), octet_range(), octet_range()]
            .prop_filter("a wildcard has a non-exact octet", |o| o
                .iter()
                .any(|r| r.low != r.high))
            .prop_map(|octets| IpRule::Wildcard { octets }),
    ]
}

fn as_v4(ip: IpAddr) -> Option<u32> {
    match ip {
        IpAddr::V4(v4) => Some(u32::from(v4)),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(u32::from),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn cidr_v4_matches_mask(net in any::<u32>(), prefix in 0u8..=32, addr in any::<u32>(), mapped in any::<bool>()) {
        let rule: IpRule = format!("{}/{prefix}", Ipv4Addr::from(net)).parse().unwrap();
        let client = if mapped {
            IpAddr::V6(Ipv4Addr::from(addr).to_ipv6_mapped())
        } else {
            IpAddr::V4(Ipv4Addr::from(addr))
        };
        let expected = net & v4_mask(prefix) == addr & v4_mask(prefix);
        prop_assert_eq!(rule.matches(client), expected);
        // The network address itself is always inside.
        prop_assert!(rule.matches(IpAddr::V4(Ipv4Addr::from(net))));
    }

    #[test]
    fn cidr_v6_matches_mask(net in any::<u128>(), prefix in 0u8..=128, addr in any::<u128>(), near in any::<bool>()) {
        // Half the time, share the top bits so the match case is exercised too.
        let addr = if near { (net & v6_mask(prefix)) | (addr & !v6_mask(prefix)) } else { addr };
        let rule: IpRule = format!("{}/{prefix}", Ipv6Addr::from(net)).parse().unwrap();
        let client = Ipv6Addr::from(addr);
        let expected = if client.to_ipv4_mapped().is_some() {
            // A mapped client is an IPv4 client: only rules in the mapped space can match it.
            prefix >= 96 && Ipv6Addr::from(net).to_ipv4_mapped().is_some()
                && net & v6_mask(prefix) == addr & v6_mask(prefix)
        } else {
            net & v6_mask(prefix) == addr & v6_mask(prefix)
        };
        prop_assert_eq!(rule.matches(IpAddr::V6(client)), expected);
    }

    #[test]
    fn range_v4_matches_comparison(a in any::<u32>(), b in any::<u32>(), c in any::<u32>()) {
        let (lo, hi) = (a.min(b), a.max(b));
        let rule: IpRule = format!("{}-{}", Ipv4Addr::from(lo), Ipv4Addr::from(hi)).parse().unwrap();
        prop_assert_eq!(rule.matches(IpAddr::V4(Ipv4Addr::from(c))), lo <= c && c <= hi);
        prop_assert!(rule.matches(IpAddr::V4(Ipv4Addr::from(lo))));
        prop_assert!(rule.matches(IpAddr::V4(Ipv4Addr::from(hi))));
        if a != b {
            let reversed = format!("{}-{}", Ipv4Addr::from(hi), Ipv4Addr::from(lo)).parse::<IpRule>();
            prop_assert!(reversed.is_err());
        }
    }

    #[test]
    fn wildcard_matches_octets(octets in [octet_range(), octet_range(), octet_range(), octet_range()], addr in any::<u32>()) {
        let text = format!("{}.{}.{}.{}", octets[0], octets[1], octets[2], octets[3]);
        let rule: IpRule = text.parse().unwrap();
        let ip = Ipv4Addr::from(addr);
        let expected = octets.iter().zip(ip.octets()).all(|(r, o)| r.low <= o && o <= r.high);
        prop_assert_eq!(rule.matches(IpAddr::V4(ip)), expected);
        prop_assert_eq!(rule.matches(IpAddr::V6(ip.to_ipv6_mapped())), expected);
    }

    #[test]
    fn display_round_trips(rule in canonical_rule()) {
        let text = rule.to_string();
        let parsed: IpRule = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        prop_assert_eq!(parsed, rule);
    }

    #[test]
    fn mapped_and_plain_v4_clients_match_alike(rule in canonical_rule(), addr in any::<u32>()) {
        let v4 = Ipv4Addr::from(addr);
        prop_assert_eq!(rule.matches(IpAddr::V4(v4)), rule.matches(IpAddr::V6(v4.to_ipv6_mapped())));
    }

    #[test]
    fn parse_never_panics(s in "[0-9a-fA-F:.*/\\- ;x%\\[\\]]{0,48}") {
        match s.parse::<IpRule>() {
            Ok(rule) => {
                // Whatever parses displays as something that parses to the same rule.
                let again: IpRule = rule.to_string().parse().unwrap();
                prop_assert_eq!(again, rule);
            }
            Err(e) => {
                prop_assert_eq!(e.entry.as_str(), s.trim());
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn parse_never_panics_on_any_string(s in any::<String>()) {
        // Any string at all: no panic, and the same guarantees as for rule-like text.
        match s.parse::<IpRule>() {
            Ok(rule) => {
                let again: IpRule = rule.to_string().parse().unwrap();
                prop_assert_eq!(again, rule);
            }
            Err(e) => {
                prop_assert_eq!(e.entry.as_str(), s.trim());
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn v4_rules_never_match_plain_v6(rule in canonical_rule(), addr in any::<u128>()) {
        let client = Ipv6Addr::from(addr);
        prop_assume!(client.to_ipv4_mapped().is_none());
        let is_v4_rule = match rule {
            IpRule::Single(a) => a.is_ipv4(),
            IpRule::Cidr { network, .. } => network.is_ipv4(),
            IpRule::Range { start, .. } => start.is_ipv4(),
            IpRule::Wildcard { .. } => true,
        };
        if is_v4_rule {
            prop_assert!(!rule.matches(IpAddr::V6(client)));
        }
        let _ = as_v4(IpAddr::V6(client));
    }
}

/// Any rule value at all, including ones parsing never makes (host bits set, prefixes over the
/// maximum, reversed or mixed ranges, reversed octet ranges).
fn any_rule() -> impl Strategy<Value = IpRule> {
    let octet = (any::<u8>(), any::<u8>()).prop_map(|(low, high)| OctetRange { low, high });
    prop_oneof![
        canonical_rule(),
        (any_ip(), any::<u8>()).prop_map(|(network, prefix)| IpRule::Cidr { network, prefix }),
        (any_ip(), 96u8..=130).prop_map(|(network, prefix)| IpRule::Cidr { network, prefix }),
        (any_ip(), any_ip()).prop_map(|(start, end)| IpRule::Range { start, end }),
        [octet.clone(), octet.clone(), octet.clone(), octet]
            .prop_map(|octets| IpRule::Wildcard { octets }),
    ]
}

/// Addresses near a rule's edges, where an index is most likely to be wrong.
fn edges(rule: &IpRule) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut around = |ip: IpAddr| match ip {
        IpAddr::V4(a) => {
            let a = u32::from(a);
            for x in [a.wrapping_sub(1), a, a.wrapping_add(1)] {
                out.push(IpAddr::V4(Ipv4Addr::from(x)));
                out.push(IpAddr::V6(Ipv4Addr::from(x).to_ipv6_mapped()));
            }
        }
        IpAddr::V6(a) => {
            let a = u128::from(a);
            for x in [a.wrapping_sub(1), a, a.wrapping_add(1)] {
                out.push(IpAddr::V6(Ipv6Addr::from(x)));
                if let Some(v4) = Ipv6Addr::from(x).to_ipv4_mapped() {
                    out.push(IpAddr::V4(v4));
                }
            }
        }
    };
    match *rule {
        IpRule::Single(a) => around(a),
        IpRule::Cidr { network, prefix } => {
            around(network);
            match network {
                IpAddr::V4(n) => around(IpAddr::V4(Ipv4Addr::from(
                    u32::from(n) | !v4_mask(prefix.min(32)),
                ))),
                IpAddr::V6(n) => around(IpAddr::V6(Ipv6Addr::from(
                    u128::from(n) | !v6_mask(prefix.min(128)),
                ))),
            }
        }
        IpRule::Range { start, end } => {
            around(start);
            around(end);
        }
        IpRule::Wildcard { octets } => {
            around(IpAddr::V4(Ipv4Addr::from(octets.map(|o| o.low))));
            around(IpAddr::V4(Ipv4Addr::from(octets.map(|o| o.high))));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// The list's index answers exactly what checking every rule answers.
    #[test]
    fn list_index_agrees_with_rules(
        rules in proptest::collection::vec(any_rule(), 0..12),
        clients in proptest::collection::vec(any_ip(), 0..8),
    ) {
        let list = IpRules::from(rules.clone());
        let mut probes = clients;
        for r in &rules {
            probes.extend(edges(r));
        }
        for ip in probes {
            let expected = rules.iter().any(|r| r.matches(ip));
            prop_assert_eq!(list.matches(ip), expected, "client {} rules {:?}", ip, rules);
        }
    }
}
