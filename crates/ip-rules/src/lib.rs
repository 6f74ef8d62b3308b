//! mailfleet address rules: single IPs, CIDRs, ranges and wildcards for allow/deny lists.
//!
//! Administrators write entries such as `127.0.0.1`, `10.0.0.0/8`, `fd00::/8`,
//! `10.0.0.1-10.0.0.99`, `192.168.*.*` or `192-193.*.*.*` (see [`IpRule`]). [`IpRules`] is a list
//! of them, [`AccessList`] an allow list and a deny list where deny wins.

use std::net::IpAddr;

mod error;
mod rule;
#[cfg(feature = "serde")]
mod serde_impl;

pub use error::{RuleError, RuleErrorKind};
pub use rule::{IpRule, OctetRange};

/// A list of rules; an address matches the list when it matches any rule.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
pub struct IpRules(Vec<IpRule>);

impl IpRules {
    /// Parses one rule per entry; the first invalid entry is the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, RuleError> {
        entries
            .iter()
            .map(|e| e.as_ref().parse())
            .collect::<Result<Vec<_>, _>>()
            .map(IpRules)
    }

    /// Parses entries written in one string, separated by `;`, `,` or whitespace
    /// (`192.168.*.*;127.0.0.1`). Empty entries between separators are skipped.
    pub fn parse_list(list: &str) -> Result<Self, RuleError> {
        let entries: Vec<&str> = list
            .split(|c: char| c == ';' || c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
            .collect();
        Self::parse(&entries)
    }

    /// Whether `ip` matches any rule (false for an empty list).
    pub fn matches(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|rule| rule.matches(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The rules, in the order written.
    pub fn rules(&self) -> &[IpRule] {
        &self.0
    }
}

impl From<Vec<IpRule>> for IpRules {
    fn from(rules: Vec<IpRule>) -> Self {
        IpRules(rules)
    }
}

impl FromIterator<IpRule> for IpRules {
    fn from_iter<I: IntoIterator<Item = IpRule>>(iter: I) -> Self {
        IpRules(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a IpRules {
    type Item = &'a IpRule;
    type IntoIter = std::slice::Iter<'a, IpRule>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Who may connect: an address is permitted unless it matches `deny`, and, when `allow` is not
/// empty, only if it matches `allow`. An empty allow list allows everyone not denied.
#[derive(Default, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct AccessList {
    pub allow: IpRules,
    pub deny: IpRules,
}

impl AccessList {
    pub fn permits(&self, ip: IpAddr) -> bool {
        !self.deny.matches(ip) && (self.allow.is_empty() || self.allow.matches(ip))
    }
}
