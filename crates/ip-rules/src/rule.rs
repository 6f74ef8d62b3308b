//! One address rule: its syntax, display and matching.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::{RuleError, RuleErrorKind};

/// One entry of an allow or deny list.
///
/// Values made by parsing are canonical: a CIDR's address has no host bits, a range's start is
/// not after its end and both are of one family, a wildcard has at least one octet that is not a
/// single value (otherwise it parses as [`IpRule::Single`]). For such values
/// `entry.parse::<IpRule>()` of `rule.to_string()` gives back `rule`. Matching never panics, even on
/// values built by hand that break these rules.
///
/// A client address that is IPv4-mapped IPv6 (`::ffff:a.b.c.d`, how a dual-stack socket reports an
/// IPv4 client) is matched as the IPv4 address `a.b.c.d`. IPv6 rules inside `::ffff:0:0/96` match
/// the IPv4 clients they map; other IPv6 rules (such as `::/0`) never match an IPv4 client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpRule {
    /// One address: `192.0.2.1`, `2001:db8::1`.
    Single(IpAddr),
    /// A network: `10.0.0.0/8`, `fd00::/8`. Written host bits are dropped (`10.1.2.3/8` is
    /// `10.0.0.0/8`).
    Cidr { network: IpAddr, prefix: u8 },
    /// Every address from `start` to `end`, both included: `10.0.0.1-10.0.0.99`,
    /// `2001:db8::1-2001:db8::ff`.
    Range { start: IpAddr, end: IpAddr },
    /// IPv4 octet patterns: each octet is a number, `*` (any) or `low-high`:
    /// `192.168.*.*`, `192-193.*.*.*`, `10.0.0.1-50`.
    Wildcard { octets: [OctetRange; 4] },
}

/// The values one octet of a [`IpRule::Wildcard`] may take, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OctetRange {
    pub low: u8,
    pub high: u8,
}

impl OctetRange {
    /// `*`: any value.
    pub const ANY: OctetRange = OctetRange { low: 0, high: 255 };

    pub fn exact(value: u8) -> Self {
        OctetRange {
            low: value,
            high: value,
        }
    }

    pub fn contains(self, value: u8) -> bool {
        self.low <= value && value <= self.high
    }

    fn is_exact(self) -> bool {
        self.low == self.high
    }
}

impl fmt::Display for OctetRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == OctetRange::ANY {
            f.write_str("*")
        } else if self.is_exact() {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

impl IpRule {
    /// Whether `ip` is covered by this rule (see the type's documentation for IPv4-mapped
    /// addresses).
    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if self.matches_same_form(ip) {
            return true;
        }
        match ip {
            IpAddr::V4(v4) if self.is_in_v4_mapped_space() => {
                self.matches_same_form(IpAddr::V6(v4.to_ipv6_mapped()))
            }
            _ => false,
        }
    }

    fn matches_same_form(&self, ip: IpAddr) -> bool {
        match (*self, ip) {
            (IpRule::Single(a), ip) => a == ip,
            (IpRule::Cidr { network, prefix }, ip) => match (network, ip) {
                (IpAddr::V4(n), IpAddr::V4(i)) => {
                    let mask = v4_mask(prefix);
                    u32::from(n) & mask == u32::from(i) & mask
                }
                (IpAddr::V6(n), IpAddr::V6(i)) => {
                    let mask = v6_mask(prefix);
                    u128::from(n) & mask == u128::from(i) & mask
                }
                _ => false,
            },
            (IpRule::Range { start, end }, ip) => match (start, end, ip) {
                (IpAddr::V4(s), IpAddr::V4(e), IpAddr::V4(i)) => s <= i && i <= e,
                (IpAddr::V6(s), IpAddr::V6(e), IpAddr::V6(i)) => s <= i && i <= e,
                _ => false,
            },
            (IpRule::Wildcard { octets }, IpAddr::V4(i)) => {
                octets.iter().zip(i.octets()).all(|(r, o)| r.contains(o))
            }
            (IpRule::Wildcard { .. }, IpAddr::V6(_)) => false,
        }
    }

    /// Whether this is an IPv6 rule that lies within `::ffff:0:0/96`, so it speaks of IPv4 clients.
    fn is_in_v4_mapped_space(&self) -> bool {
        let mapped = |ip: IpAddr| matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some());
        match *self {
            IpRule::Single(a) => mapped(a),
            IpRule::Cidr { network, prefix } => prefix >= 96 && mapped(network),
            IpRule::Range { start, end } => mapped(start) && mapped(end),
            IpRule::Wildcard { .. } => false,
        }
    }
}

/// An IPv4-mapped IPv6 address as IPv4; anything else unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The network mask of an IPv4 prefix; prefixes over 32 count as 32.
pub(crate) fn v4_mask(prefix: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0)
}

/// The network mask of an IPv6 prefix; prefixes over 128 count as 128.
pub(crate) fn v6_mask(prefix: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix.min(128)))
        .unwrap_or(0)
}

impl fmt::Display for IpRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpRule::Single(ip) => write!(f, "{ip}"),
            IpRule::Cidr { network, prefix } => write!(f, "{network}/{prefix}"),
            IpRule::Range { start, end } => write!(f, "{start}-{end}"),
            IpRule::Wildcard {
                octets: [a, b, c, d],
            } => write!(f, "{a}.{b}.{c}.{d}"),
        }
    }
}

impl FromStr for IpRule {
    type Err = RuleError;

    /// Parses one entry; surrounding whitespace is ignored.
    fn from_str(s: &str) -> Result<Self, RuleError> {
        let entry = s.trim();
        parse(entry).map_err(|kind| RuleError {
            entry: entry.to_owned(),
            kind,
        })
    }
}

fn parse(entry: &str) -> Result<IpRule, RuleErrorKind> {
    if entry.is_empty() {
        return Err(RuleErrorKind::Empty);
    }
    // Lists written in one string belong in `IpRules::parse_list`.
    if let Some(sep) = entry.chars().find(|&c| c == ';' || c == ',') {
        return Err(RuleErrorKind::Separator(sep));
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(IpRule::Single(ip));
    }
    if let Some((addr, prefix)) = entry.split_once('/') {
        return parse_cidr(addr, prefix);
    }
    let dots = entry.bytes().filter(|&b| b == b'.').count();
    let colon = entry.contains(':');
    if let Some((start, end)) = entry.split_once('-')
        && (colon || dots > 3)
    {
        return parse_range(start.trim(), end.trim());
    }
    if colon {
        return Err(RuleErrorKind::BadAddress(entry.to_owned()));
    }
    if dots > 0 || entry.contains('*') {
        return parse_wildcard(entry);
    }
    Err(RuleErrorKind::Unrecognized)
}

fn parse_address(s: &str) -> Result<IpAddr, RuleErrorKind> {
    s.parse()
        .map_err(|_| RuleErrorKind::BadAddress(s.to_owned()))
}

fn parse_cidr(addr: &str, prefix: &str) -> Result<IpRule, RuleErrorKind> {
    let addr = parse_address(addr.trim())?;
    let prefix = prefix.trim();
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RuleErrorKind::BadPrefix(prefix.to_owned()));
    }
    let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let too_long = || RuleErrorKind::PrefixTooLong {
        prefix: prefix.to_owned(),
        max,
    };
    let value = prefix.parse::<u8>().map_err(|_| too_long())?;
    if value > max {
        return Err(too_long());
    }
    let network = match addr {
        IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & v4_mask(value))),
        IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & v6_mask(value))),
    };
    Ok(IpRule::Cidr {
        network,
        prefix: value,
    })
}

fn parse_range(start: &str, end: &str) -> Result<IpRule, RuleErrorKind> {
    let start_ip = parse_address(start)?;
    let end_ip = parse_address(end)?;
    if start_ip.is_ipv4() != end_ip.is_ipv4() {
        return Err(RuleErrorKind::RangeMixesFamilies);
    }
    if start_ip > end_ip {
        return Err(RuleErrorKind::RangeReversed {
            start: start_ip.to_string(),
            end: end_ip.to_string(),
        });
    }
    Ok(IpRule::Range {
        start: start_ip,
        end: end_ip,
    })
}

fn parse_wildcard(entry: &str) -> Result<IpRule, RuleErrorKind> {
    let parts: Vec<&str> = entry.split('.').collect();
    let [a, b, c, d] = parts[..] else {
        if entry.contains('*') || entry.contains('-') {
            return Err(RuleErrorKind::WildcardParts(parts.len()));
        }
        return Err(RuleErrorKind::BadAddress(entry.to_owned()));
    };
    let octets = [
        parse_octet_range(a)?,
        parse_octet_range(b)?,
        parse_octet_range(c)?,
        parse_octet_range(d)?,
    ];
    if octets.iter().all(|o| o.is_exact()) {
        let [a, b, c, d] = octets.map(|o| o.low);
        return Ok(IpRule::Single(IpAddr::V4(Ipv4Addr::new(a, b, c, d))));
    }
    Ok(IpRule::Wildcard { octets })
}

fn parse_octet_range(part: &str) -> Result<OctetRange, RuleErrorKind> {
    if part == "*" {
        return Ok(OctetRange::ANY);
    }
    if let Some((low, high)) = part.split_once('-') {
        let (low, high) = (parse_octet(low)?, parse_octet(high)?);
        if low > high {
            return Err(RuleErrorKind::OctetRangeReversed { low, high });
        }
        return Ok(OctetRange { low, high });
    }
    parse_octet(part).map(OctetRange::exact)
}

fn parse_octet(s: &str) -> Result<u8, RuleErrorKind> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RuleErrorKind::BadOctet(s.to_owned()));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(RuleErrorKind::OctetLeadingZero(s.to_owned()));
    }
    s.parse().map_err(|_| RuleErrorKind::BadOctet(s.to_owned()))
}
