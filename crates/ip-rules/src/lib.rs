//! mailfleet address rules: single IPs, CIDRs, ranges and wildcards for allow/deny lists.
//!
//! Administrators write entries such as `127.0.0.1`, `10.0.0.0/8`, `fd00::/8`,
//! `10.0.0.1-10.0.0.99`, `192.168.*.*` or `192-193.*.*.*` (see [`IpRule`]). [`IpRules`] is a list
//! of them, [`AccessList`] an allow list and a deny list where deny wins.
//!
//! ```
//! use mailfleet_ip_rules::{AccessList, IpRules};
//!
//! let access = AccessList {
//!     allow: IpRules::parse(&["10.0.0.0/8", "192.168.*.*", "fd00::/8"]).unwrap(),
//!     deny: IpRules::parse(&["10.6.0.1-10.6.0.99"]).unwrap(),
//! };
//! assert!(access.permits("10.1.2.3".parse().unwrap()));
//! assert!(access.permits("::ffff:192.168.4.5".parse().unwrap())); // IPv4 on a dual-stack socket
//! assert!(!access.permits("10.6.0.50".parse().unwrap())); // deny wins
//! assert!(!access.permits("203.0.113.1".parse().unwrap())); // not allowed
//!
//! let err = IpRules::parse(&["10.0.0.0/33"]).unwrap_err();
//! assert_eq!(err.to_string(), r#""10.0.0.0/33": prefix length 33 is more than 32"#);
//! ```
//!

#![forbid(unsafe_code)]

use std::net::IpAddr;

mod error;
mod index;
mod rule;
#[cfg(feature = "serde")]
mod serde_impl;

pub use error::{RuleError, RuleErrorKind};
pub use rule::{IpRule, OctetRange};

use index::Index;

/// A list of rules; an address matches the list when it matches any rule.
///
/// Lookups use an index built with the list (sorted intervals and a binary search), so long lists
/// stay cheap to check per connection.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct IpRules {
    rules: Vec<IpRule>,
    index: Index,
}

impl std::fmt::Debug for IpRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("IpRules").field(&self.rules).finish()
    }
}

impl IpRules {
    /// Parses one rule per entry; the first invalid entry is the error.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, RuleError> {
        entries
            .iter()
            .map(|e| e.as_ref().parse())
            .collect::<Result<Vec<_>, _>>()
            .map(IpRules::from)
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
        self.index.matches(ip)
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The rules, in the order written.
    pub fn rules(&self) -> &[IpRule] {
        &self.rules
    }
}

impl From<Vec<IpRule>> for IpRules {
    fn from(rules: Vec<IpRule>) -> Self {
        let index = Index::new(&rules);
        IpRules { rules, index }
    }
}

impl FromIterator<IpRule> for IpRules {
    fn from_iter<I: IntoIterator<Item = IpRule>>(iter: I) -> Self {
        IpRules::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl<'a> IntoIterator for &'a IpRules {
    type Item = &'a IpRule;
    type IntoIter = std::slice::Iter<'a, IpRule>;

    fn into_iter(self) -> Self::IntoIter {
        self.rules.iter()
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

    /// Everyone refused.
    pub fn deny_all() -> AccessList {
        AccessList {
            allow: IpRules::default(),
            deny: IpRules::parse_list("0.0.0.0/0,::/0").unwrap_or_default(),
        }
    }

    /// The access list of a service's `PREFIX.allow` and `PREFIX.deny` settings (comma
    /// separated; absent is empty), read by `get`; a list that does not parse is an error
    /// naming its key (callers refuse everyone then, see [`AccessList::deny_all`]).
    pub fn from_settings<'a>(
        prefix: &str,
        get: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<AccessList, String> {
        let rules = |key: String| match get(&key) {
            None => Ok(IpRules::default()),
            Some(v) => IpRules::parse_list(v).map_err(|e| format!("{key} = {v:?}: {e}")),
        };
        Ok(AccessList {
            allow: rules(format!("{prefix}.allow"))?,
            deny: rules(format!("{prefix}.deny"))?,
        })
    }
}
