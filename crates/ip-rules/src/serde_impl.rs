//! `IpRules` in configuration files: a list of strings, or one string of entries separated by
//! `;`, `,` or whitespace.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{IpRule, IpRules};

impl<'de> Deserialize<'de> for IpRules {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RulesVisitor)
    }
}

struct RulesVisitor;

impl<'de> Visitor<'de> for RulesVisitor {
    type Value = IpRules;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of address rules such as [\"10.0.0.0/8\", \"192.168.*.*\"]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<IpRules, A::Error> {
        // The size hint comes from the input; cap what it may reserve.
        let mut rules = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(entry) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
            rules.push(entry.parse::<IpRule>().map_err(de::Error::custom)?);
        }
        Ok(IpRules::from(rules))
    }

    fn visit_str<E: de::Error>(self, list: &str) -> Result<IpRules, E> {
        IpRules::parse_list(list).map_err(E::custom)
    }
}

impl Serialize for IpRules {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.rules().iter().map(|rule| rule.to_string()))
    }
}

impl Serialize for IpRule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entry = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        entry.parse().map_err(de::Error::custom)
    }
}
