//! Every syntax, every error, IPv4-mapped clients, lists, access lists and serde.

use std::net::IpAddr;

use mailfleet_ip_rules::{AccessList, IpRule, IpRules, OctetRange, RuleError, RuleErrorKind};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn rule(s: &str) -> IpRule {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn err(s: &str) -> RuleError {
    match s.parse::<IpRule>() {
        Ok(r) => panic!("{s:?} parsed as {r:?}"),
        Err(e) => e,
    }
}

fn check(rule_text: &str, inside: &[&str], outside: &[&str]) {
    let r = rule(rule_text);
    for a in inside {
        assert!(r.matches(ip(a)), "{rule_text} should match {a}");
    }
    for a in outside {
        assert!(!r.matches(ip(a)), "{rule_text} should not match {a}");
    }
}

#[test]
fn single_addresses() {
    assert_eq!(rule("127.0.0.1"), IpRule::Single(ip("127.0.0.1")));
    assert_eq!(rule(" 2001:db8::1 "), IpRule::Single(ip("2001:db8::1")));
    check(
        "127.0.0.1",
        &["127.0.0.1", "::ffff:127.0.0.1"],
        &["127.0.0.2", "::1", "::127.0.0.1"],
    );
    check("2001:db8::1", &["2001:db8::1"], &["2001:db8::2", "0.0.0.1"]);
}

#[test]
fn cidr() {
    assert_eq!(
        rule("10.0.0.0/8"),
        IpRule::Cidr {
            network: ip("10.0.0.0"),
            prefix: 8
        }
    );
    check(
        "10.0.0.0/8",
        &["10.0.0.0", "10.255.255.255", "::ffff:10.1.2.3"],
        &["11.0.0.0", "9.255.255.255", "fd00::1"],
    );
    check(
        "fd00::/8",
        &["fd00::", "fdff:ffff::1"],
        &["fe00::", "10.0.0.1", "::ffff:253.0.0.1"],
    );
    check(
        "0.0.0.0/0",
        &["0.0.0.0", "255.255.255.255", "::ffff:1.2.3.4"],
        &["::1"],
    );
    check(
        "::/0",
        &["::", "2001:db8::1"],
        &["1.2.3.4", "::ffff:1.2.3.4"],
    );
    check("192.0.2.7/32", &["192.0.2.7"], &["192.0.2.6", "192.0.2.8"]);
    check("2001:db8::7/128", &["2001:db8::7"], &["2001:db8::6"]);
    check(
        "192.0.2.128/25",
        &["192.0.2.128", "192.0.2.255"],
        &["192.0.2.127"],
    );
    check("2001:db8::/33", &["2001:db8:7fff::1"], &["2001:db8:8000::"]);
}

#[test]
fn cidr_host_bits_are_dropped() {
    assert_eq!(rule("10.1.2.3/8"), rule("10.0.0.0/8"));
    assert_eq!(rule("10.1.2.3/8").to_string(), "10.0.0.0/8");
    assert_eq!(rule("2001:db8::ffff/32").to_string(), "2001:db8::/32");
    assert_eq!(rule("1.2.3.4/0").to_string(), "0.0.0.0/0");
    assert_eq!(rule(" 10.0.0.0 / 8 ").to_string(), "10.0.0.0/8");
}

#[test]
fn ranges() {
    assert_eq!(
        rule("10.0.0.1-10.0.0.99"),
        IpRule::Range {
            start: ip("10.0.0.1"),
            end: ip("10.0.0.99")
        }
    );
    check(
        "10.0.0.250-10.0.1.5",
        &[
            "10.0.0.250",
            "10.0.0.255",
            "10.0.1.0",
            "10.0.1.5",
            "::ffff:10.0.1.0",
        ],
        &["10.0.0.249", "10.0.1.6", "::a00:1ff"],
    );
    check("10.0.0.1 - 10.0.0.1", &["10.0.0.1"], &["10.0.0.2"]);
    check(
        "2001:db8::1-2001:db8::1:0",
        &["2001:db8::1", "2001:db8::ffff", "2001:db8::1:0"],
        &["2001:db8::", "2001:db8::1:1", "10.0.0.1"],
    );
}

#[test]
fn wildcards() {
    assert_eq!(
        rule("192.168.*.*"),
        IpRule::Wildcard {
            octets: [
                OctetRange::exact(192),
                OctetRange::exact(168),
                OctetRange::ANY,
                OctetRange::ANY
            ]
        }
    );
    check(
        "192.168.*.*",
        &["192.168.0.0", "192.168.255.255", "::ffff:192.168.3.4"],
        &["192.169.0.0", "193.168.0.1", "c0a8::1"],
    );
    check("*.*.*.*", &["0.0.0.0", "255.255.255.255"], &["::1", "::"]);
    check("*.0.0.1", &["9.0.0.1"], &["9.0.0.2"]);
    // Octet ranges, as in `192-193.*.*.*`.
    check(
        "192-193.*.*.*",
        &["192.0.0.0", "193.255.255.255"],
        &["191.255.255.255", "194.0.0.0"],
    );
    check(
        "10.0.0.1-50",
        &["10.0.0.1", "10.0.0.50"],
        &["10.0.0.0", "10.0.0.51"],
    );
    check(
        "10.0-1.*.7",
        &["10.0.3.7", "10.1.200.7"],
        &["10.2.0.7", "10.0.0.8"],
    );
    check("0-255.1.1.1", &["0.1.1.1", "255.1.1.1"], &["1.1.1.2"]);
}

#[test]
fn wildcard_without_wild_octets_is_a_single_address() {
    assert_eq!(rule("10.0.0.1-1"), IpRule::Single(ip("10.0.0.1")));
}

#[test]
fn display_round_trips() {
    for (input, shown) in [
        ("127.0.0.1", "127.0.0.1"),
        ("2001:DB8::1", "2001:db8::1"),
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("fd00::/8", "fd00::/8"),
        ("10.0.0.1-10.0.0.99", "10.0.0.1-10.0.0.99"),
        ("2001:db8::1-2001:db8::ff", "2001:db8::1-2001:db8::ff"),
        ("192.168.*.*", "192.168.*.*"),
        ("192-193.*.*.*", "192-193.*.*.*"),
        ("10.0-255.0.1-2", "10.*.0.1-2"),
        ("::ffff:10.0.0.0/104", "::ffff:10.0.0.0/104"),
    ] {
        let r = rule(input);
        assert_eq!(r.to_string(), shown, "{input}");
        assert_eq!(rule(shown), r, "{input}");
    }
}

#[test]
fn errors_name_the_entry_and_the_reason() {
    let cases: &[(&str, RuleErrorKind, &str)] = &[
        ("", RuleErrorKind::Empty, "\"\": empty entry"),
        ("   ", RuleErrorKind::Empty, "\"\": empty entry"),
        (
            "10.0.0.0/33",
            RuleErrorKind::PrefixTooLong {
                prefix: "33".into(),
                max: 32,
            },
            "\"10.0.0.0/33\": prefix length 33 is more than 32",
        ),
        (
            "fd00::/129",
            RuleErrorKind::PrefixTooLong {
                prefix: "129".into(),
                max: 128,
            },
            "\"fd00::/129\": prefix length 129 is more than 128",
        ),
        (
            "10.0.0.0/99999999999",
            RuleErrorKind::PrefixTooLong {
                prefix: "99999999999".into(),
                max: 32,
            },
            "\"10.0.0.0/99999999999\": prefix length 99999999999 is more than 32",
        ),
        (
            "10.0.0.0/",
            RuleErrorKind::BadPrefix("".into()),
            "\"10.0.0.0/\": prefix length \"\" is not a number",
        ),
        (
            "10.0.0.0/x",
            RuleErrorKind::BadPrefix("x".into()),
            "\"10.0.0.0/x\": prefix length \"x\" is not a number",
        ),
        (
            "10.0.0.0/-1",
            RuleErrorKind::BadPrefix("-1".into()),
            "\"10.0.0.0/-1\": prefix length \"-1\" is not a number",
        ),
        (
            "10.0.0.0/+8",
            RuleErrorKind::BadPrefix("+8".into()),
            "\"10.0.0.0/+8\": prefix length \"+8\" is not a number",
        ),
        (
            "10.0.0.0/8/8",
            RuleErrorKind::BadPrefix("8/8".into()),
            "\"10.0.0.0/8/8\": prefix length \"8/8\" is not a number",
        ),
        (
            "10.0.0/8",
            RuleErrorKind::BadAddress("10.0.0".into()),
            "\"10.0.0/8\": \"10.0.0\" is not an IP address",
        ),
        (
            "/8",
            RuleErrorKind::BadAddress("".into()),
            "\"/8\": \"\" is not an IP address",
        ),
        (
            "10.0.0.*/8",
            RuleErrorKind::BadAddress("10.0.0.*".into()),
            "\"10.0.0.*/8\": \"10.0.0.*\" is not an IP address",
        ),
        (
            "10.0.0.9-10.0.0.1",
            RuleErrorKind::RangeReversed {
                start: "10.0.0.9".into(),
                end: "10.0.0.1".into(),
            },
            "\"10.0.0.9-10.0.0.1\": range start 10.0.0.9 is after its end 10.0.0.1",
        ),
        (
            "fd00::9-fd00::1",
            RuleErrorKind::RangeReversed {
                start: "fd00::9".into(),
                end: "fd00::1".into(),
            },
            "\"fd00::9-fd00::1\": range start fd00::9 is after its end fd00::1",
        ),
        (
            "10.0.0.1-fd00::1",
            RuleErrorKind::RangeMixesFamilies,
            "\"10.0.0.1-fd00::1\": range mixes IPv4 and IPv6 addresses",
        ),
        (
            "fd00::1-10.0.0.1",
            RuleErrorKind::RangeMixesFamilies,
            "\"fd00::1-10.0.0.1\": range mixes IPv4 and IPv6 addresses",
        ),
        (
            "10.0.0.1-10.0.0.x",
            RuleErrorKind::BadAddress("10.0.0.x".into()),
            "\"10.0.0.1-10.0.0.x\": \"10.0.0.x\" is not an IP address",
        ),
        (
            "10.0.0.1-10.0.0",
            RuleErrorKind::BadAddress("10.0.0".into()),
            "\"10.0.0.1-10.0.0\": \"10.0.0\" is not an IP address",
        ),
        (
            "fd00::1-",
            RuleErrorKind::BadAddress("".into()),
            "\"fd00::1-\": \"\" is not an IP address",
        ),
        (
            "fd00::1-fd00::2-fd00::3",
            RuleErrorKind::BadAddress("fd00::2-fd00::3".into()),
            "\"fd00::1-fd00::2-fd00::3\": \"fd00::2-fd00::3\" is not an IP address",
        ),
        (
            "192.168.*",
            RuleErrorKind::WildcardParts(3),
            "\"192.168.*\": a wildcard needs 4 parts separated by dots, found 3",
        ),
        (
            "192.168.*.*.*",
            RuleErrorKind::WildcardParts(5),
            "\"192.168.*.*.*\": a wildcard needs 4 parts separated by dots, found 5",
        ),
        (
            "*",
            RuleErrorKind::WildcardParts(1),
            "\"*\": a wildcard needs 4 parts separated by dots, found 1",
        ),
        (
            "192.168.*.256",
            RuleErrorKind::BadOctet("256".into()),
            "\"192.168.*.256\": octet \"256\" is not a number from 0 to 255, \"*\" or a range like 10-20",
        ),
        (
            "10.0.0.256",
            RuleErrorKind::BadOctet("256".into()),
            "\"10.0.0.256\": octet \"256\" is not a number from 0 to 255, \"*\" or a range like 10-20",
        ),
        (
            "192.168.**.1",
            RuleErrorKind::BadOctet("**".into()),
            "\"192.168.**.1\": octet \"**\" is not a number from 0 to 255, \"*\" or a range like 10-20",
        ),
        (
            "192.168.1*.1",
            RuleErrorKind::BadOctet("1*".into()),
            "\"192.168.1*.1\": octet \"1*\" is not a number from 0 to 255, \"*\" or a range like 10-20",
        ),
        (
            "192.168..1",
            RuleErrorKind::BadOctet("".into()),
            "\"192.168..1\": octet \"\" is not a number from 0 to 255, \"*\" or a range like 10-20",
        ),
        (
            "192.168.1-.*",
            RuleErrorKind::BadOctet("".into()),
            "\"192.168.1-.*\": octet \"\" is not a number from 0 to 255, \"*\" or a range like 10-20",
        ),
        (
            "192.168.1-2-3.*",
            RuleErrorKind::BadOctet("2-3".into()),
            "\"192.168.1-2-3.*\": octet \"2-3\" is not a number from 0 to 255, \"*\" or a range like 10-20",
        ),
        (
            "192.168.*-5.*",
            RuleErrorKind::BadOctet("*".into()),
            "\"192.168.*-5.*\": octet \"*\" is not a number from 0 to 255, \"*\" or a range like 10-20",
        ),
        (
            "192.168.1000.1",
            RuleErrorKind::BadOctet("1000".into()),
            "\"192.168.1000.1\": octet \"1000\" is not a number from 0 to 255, \"*\" or a range like 10-20",
        ),
        (
            "192.168.+1.*",
            RuleErrorKind::BadOctet("+1".into()),
            "\"192.168.+1.*\": octet \"+1\" is not a number from 0 to 255, \"*\" or a range like 10-20",
        ),
        (
            "192.168.01.*",
            RuleErrorKind::OctetLeadingZero("01".into()),
            "\"192.168.01.*\": octet \"01\" has a leading zero (write it in plain decimal)",
        ),
        (
            "010.0.0.1",
            RuleErrorKind::OctetLeadingZero("010".into()),
            "\"010.0.0.1\": octet \"010\" has a leading zero (write it in plain decimal)",
        ),
        (
            "193-192.*.*.*",
            RuleErrorKind::OctetRangeReversed {
                low: 193,
                high: 192,
            },
            "\"193-192.*.*.*\": octet range 193-192 is reversed",
        ),
        (
            "10.0.0",
            RuleErrorKind::BadAddress("10.0.0".into()),
            "\"10.0.0\": \"10.0.0\" is not an IP address",
        ),
        (
            "fd00:::1",
            RuleErrorKind::BadAddress("fd00:::1".into()),
            "\"fd00:::1\": \"fd00:::1\" is not an IP address",
        ),
        (
            "[::1]",
            RuleErrorKind::BadAddress("[::1]".into()),
            "\"[::1]\": \"[::1]\" is not an IP address",
        ),
        (
            "fe80::1%eth0",
            RuleErrorKind::BadAddress("fe80::1%eth0".into()),
            "\"fe80::1%eth0\": \"fe80::1%eth0\" is not an IP address",
        ),
        (
            "localhost",
            RuleErrorKind::Unrecognized,
            "\"localhost\": not an IP address, CIDR (10.0.0.0/8), range (10.0.0.1-10.0.0.9) or wildcard (192.168.*.*)",
        ),
        (
            "[Firewall]",
            RuleErrorKind::Unrecognized,
            "\"[Firewall]\": not an IP address, CIDR (10.0.0.0/8), range (10.0.0.1-10.0.0.9) or wildcard (192.168.*.*)",
        ),
        (
            "10.0.0.1;10.0.0.2",
            RuleErrorKind::Separator(';'),
            "\"10.0.0.1;10.0.0.2\": contains ';': write one rule per entry",
        ),
        (
            "10.0.0.0/8, 10.0.0.1",
            RuleErrorKind::Separator(','),
            "\"10.0.0.0/8, 10.0.0.1\": contains ',': write one rule per entry",
        ),
        (
            "10.0.0.1 10.0.0.2",
            RuleErrorKind::BadAddress("10.0.0.1 10.0.0.2".into()),
            "\"10.0.0.1 10.0.0.2\": \"10.0.0.1 10.0.0.2\" is not an IP address",
        ),
    ];
    for (input, kind, message) in cases {
        let e = err(input);
        assert_eq!(&e.kind, kind, "{input:?}");
        assert_eq!(e.entry, input.trim(), "{input:?}");
        assert_eq!(e.to_string(), *message, "{input:?}");
    }
}

#[test]
fn lists() {
    let rules = IpRules::parse(&["10.0.0.0/8", "192.168.*.*", "2001:db8::1"]).unwrap();
    assert_eq!(rules.len(), 3);
    assert!(rules.matches(ip("10.9.9.9")));
    assert!(rules.matches(ip("192.168.1.1")));
    assert!(rules.matches(ip("::ffff:192.168.1.1")));
    assert!(rules.matches(ip("2001:db8::1")));
    assert!(!rules.matches(ip("172.16.0.1")));
    assert!(!IpRules::default().matches(ip("10.0.0.1")));
    assert!(IpRules::default().is_empty());
    let owned: Vec<String> = vec!["1.2.3.4".into()];
    assert_eq!(IpRules::parse(&owned).unwrap().rules(), &[rule("1.2.3.4")]);

    let e = IpRules::parse(&["10.0.0.0/8", "10.0.0.0/33", "bogus"]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "\"10.0.0.0/33\": prefix length 33 is more than 32"
    );
}

#[test]
fn list_in_one_string() {
    let rules =
        IpRules::parse_list("192.168.*.*;127.0.0.1; 192-193.*.*.*,\n10.0.0.0/8 ;;").unwrap();
    assert_eq!(
        rules.rules(),
        &[
            rule("192.168.*.*"),
            rule("127.0.0.1"),
            rule("192-193.*.*.*"),
            rule("10.0.0.0/8")
        ]
    );
    assert!(IpRules::parse_list(" ; ").unwrap().is_empty());
    let e = IpRules::parse_list("127.0.0.1;[Firewall]").unwrap_err();
    assert_eq!(e.entry, "[Firewall]");
}

#[test]
fn access_list() {
    let open = AccessList::default();
    assert!(open.permits(ip("203.0.113.9")));
    assert!(open.permits(ip("::1")));

    let deny_only = AccessList {
        allow: IpRules::default(),
        deny: IpRules::parse(&["203.0.113.0/24"]).unwrap(),
    };
    assert!(!deny_only.permits(ip("203.0.113.9")));
    assert!(!deny_only.permits(ip("::ffff:203.0.113.9")));
    assert!(deny_only.permits(ip("203.0.114.9")));

    let both = AccessList {
        allow: IpRules::parse(&["10.0.0.0/8", "fd00::/8"]).unwrap(),
        deny: IpRules::parse(&["10.6.6.6", "fd00::bad"]).unwrap(),
    };
    assert!(both.permits(ip("10.1.1.1")));
    assert!(both.permits(ip("::ffff:10.1.1.1")));
    assert!(both.permits(ip("fd00::1")));
    assert!(!both.permits(ip("10.6.6.6")), "deny wins over allow");
    assert!(
        !both.permits(ip("::ffff:10.6.6.6")),
        "deny wins for a mapped client too"
    );
    assert!(!both.permits(ip("fd00::bad")));
    assert!(
        !both.permits(ip("11.0.0.1")),
        "not in a non-empty allow list"
    );
    assert!(!both.permits(ip("2001:db8::1")));
}

#[test]
fn v4_mapped_rules_match_v4_clients() {
    check(
        "::ffff:10.0.0.0/104",
        &["10.1.2.3", "::ffff:10.1.2.3"],
        &["11.0.0.0"],
    );
    check("::ffff:10.0.0.1", &["10.0.0.1"], &["10.0.0.2"]);
    check(
        "::ffff:10.0.0.1-::ffff:10.0.0.9",
        &["10.0.0.5"],
        &["10.0.0.10"],
    );
    // A wide IPv6 rule is about IPv6 clients, never IPv4 ones.
    check("::/1", &["::1"], &["10.0.0.1", "::ffff:10.0.0.1"]);
    check("::-::ffff:ffff:ffff", &["::1"], &["10.0.0.1"]);
}

#[test]
fn hand_built_values_never_panic() {
    let odd = [
        IpRule::Cidr {
            network: ip("10.0.0.0"),
            prefix: 200,
        },
        IpRule::Cidr {
            network: ip("fd00::"),
            prefix: 255,
        },
        IpRule::Range {
            start: ip("10.0.0.9"),
            end: ip("10.0.0.1"),
        },
        IpRule::Range {
            start: ip("10.0.0.1"),
            end: ip("fd00::"),
        },
        IpRule::Wildcard {
            octets: [OctetRange { low: 9, high: 1 }; 4],
        },
    ];
    for r in odd {
        for a in ["10.0.0.0", "10.0.0.5", "fd00::", "::ffff:10.0.0.0"] {
            let _ = r.matches(ip(a));
        }
        let _ = r.to_string();
    }
    // Prefixes over the maximum count as the maximum.
    assert!(odd[0].matches(ip("10.0.0.0")));
    assert!(!odd[0].matches(ip("10.0.0.1")));
}

#[cfg(feature = "serde")]
mod serde_tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Listener {
        access: AccessList,
        trusted: IpRules,
    }

    #[test]
    fn from_toml() {
        let cfg: Listener = toml::from_str(
            r#"
            trusted = ["10.0.0.0/8", "fd00::/8"]
            [access]
            allow = ["192.168.*.*", "127.0.0.1"]
            deny = "192.168.6.6; 192.168.7.0/24"
            "#,
        )
        .unwrap();
        assert_eq!(
            cfg.trusted,
            IpRules::parse(&["10.0.0.0/8", "fd00::/8"]).unwrap()
        );
        assert!(cfg.access.permits(ip("192.168.1.1")));
        assert!(!cfg.access.permits(ip("192.168.7.1")));
        assert!(!cfg.access.permits(ip("8.8.8.8")));
    }

    #[test]
    fn missing_lists_default_to_empty() {
        let a: AccessList = toml::from_str("deny = [\"10.0.0.1\"]").unwrap();
        assert!(a.allow.is_empty());
        assert!(!a.permits(ip("10.0.0.1")));
        assert!(a.permits(ip("10.0.0.2")));
        let a: AccessList = toml::from_str("").unwrap();
        assert_eq!(a, AccessList::default());
    }

    #[test]
    fn errors_name_the_entry() {
        let e =
            toml::from_str::<AccessList>("allow = [\"10.0.0.0/8\", \"10.0.0.0/33\"]").unwrap_err();
        assert!(
            e.to_string()
                .contains("\"10.0.0.0/33\": prefix length 33 is more than 32"),
            "{e}"
        );
        let e = toml::from_str::<AccessList>("allow = [1]").unwrap_err();
        assert!(e.to_string().contains("expected"), "{e}");
        let e = toml::from_str::<AccessList>("alow = []").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = serde_json::from_str::<IpRules>(r#"["1.2.3.4", "nope"]"#).unwrap_err();
        assert!(e.to_string().contains("\"nope\": not an IP address"), "{e}");
    }

    #[test]
    fn serialize_round_trips() {
        let a = AccessList {
            allow: IpRules::parse(&["10.1.2.3/8", "192-193.*.*.*", "fd00::1-fd00::9"]).unwrap(),
            deny: IpRules::parse(&["10.6.6.6"]).unwrap(),
        };
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(
            json,
            r#"{"allow":["10.0.0.0/8","192-193.*.*.*","fd00::1-fd00::9"],"deny":["10.6.6.6"]}"#
        );
        assert_eq!(serde_json::from_str::<AccessList>(&json).unwrap(), a);
        let r: IpRule = serde_json::from_str("\"fd00::/8\"").unwrap();
        assert_eq!(r, rule("fd00::/8"));
    }
}
