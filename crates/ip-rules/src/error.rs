//! Why an entry is not a valid address rule.

/// An entry that is not a valid rule: which entry, and why.
///
/// Displays as `"10.0.0.0/33": prefix length 33 is more than 32`.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("{entry:?}: {kind}")]
pub struct RuleError {
    /// The entry as written (surrounding whitespace removed).
    pub entry: String,
    pub kind: RuleErrorKind,
}

/// What is wrong with an entry.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RuleErrorKind {
    #[error("empty entry")]
    Empty,
    #[error("contains {0:?}: write one rule per entry")]
    Separator(char),
    #[error("{0:?} is not an IP address")]
    BadAddress(String),
    #[error("prefix length {0:?} is not a number")]
    BadPrefix(String),
    #[error("prefix length {prefix} is more than {max}")]
    PrefixTooLong { prefix: String, max: u8 },
    #[error("range mixes IPv4 and IPv6 addresses")]
    RangeMixesFamilies,
    #[error("range start {start} is after its end {end}")]
    RangeReversed { start: String, end: String },
    #[error("a wildcard needs 4 parts separated by dots, found {0}")]
    WildcardParts(usize),
    #[error("octet {0:?} is not a number from 0 to 255, \"*\" or a range like 10-20")]
    BadOctet(String),
    #[error("octet {0:?} has a leading zero (write it in plain decimal)")]
    OctetLeadingZero(String),
    #[error("octet range {low}-{high} is reversed")]
    OctetRangeReversed { low: u8, high: u8 },
    #[error(
        "not an IP address, CIDR (10.0.0.0/8), range (10.0.0.1-10.0.0.9) or wildcard (192.168.*.*)"
    )]
    Unrecognized,
}
