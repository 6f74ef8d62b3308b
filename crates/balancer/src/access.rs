//! Allow/deny rules of a service or of the admin API, built on `mailfleet_ip_rules`.

use std::net::IpAddr;

use mailfleet_ip_rules::{AccessList, IpRule, IpRules};

/// Who may connect; deny wins, an empty allow list allows everyone not denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access(AccessList);

impl Access {
    /// Parses both lists; an error is `(key, problem)` with the key as `allow[i]` or `deny[i]`.
    pub fn new(allow: &[String], deny: &[String]) -> Result<Access, (String, String)> {
        Ok(Access(AccessList {
            allow: parse("allow", allow)?,
            deny: parse("deny", deny)?,
        }))
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        // A v4-mapped IPv6 client (dual-stack listener) is judged by its IPv4 address.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.0.permits(ip)
    }
}

fn parse(key: &str, entries: &[String]) -> Result<IpRules, (String, String)> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            e.parse::<IpRule>()
                .map_err(|err| (format!("{key}[{i}]"), err.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(allow: &[&str], deny: &[&str]) -> Access {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        Access::new(&s(allow), &s(deny)).unwrap()
    }

    #[test]
    fn deny_wins_over_allow() {
        let acc = a(&["127.0.0.0/8"], &["127.0.0.5-127.0.0.6"]);
        assert!(acc.permits("127.0.0.4".parse().unwrap()));
        assert!(!acc.permits("127.0.0.5".parse().unwrap()));
        assert!(!acc.permits("127.0.0.6".parse().unwrap()));
        assert!(!acc.permits("10.1.1.1".parse().unwrap()));
    }

    #[test]
    fn mapped_v6_is_judged_as_v4() {
        let acc = a(&["127.0.0.0/8"], &[]);
        assert!(acc.permits("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn errors_name_the_entry_index() {
        let e = Access::new(&["127.0.0.1".into(), "10.0.0.0/40".into()], &[]).unwrap_err();
        assert_eq!(e.0, "allow[1]");
    }
}
