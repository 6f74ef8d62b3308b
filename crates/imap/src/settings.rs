//! The IMAP service's cluster settings (`mailfleet settings set KEY VALUE`), applied live.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `imap.max_connections` | 10000 | simultaneous IMAP connections on a node (143 and 993 together) |
//! | `imap.limit_exceptions` | empty | client addresses with no per-address connection limit |
//! | `imap.max_connections_per_ip` | 100 | simultaneous IMAP connections from one client address |
//! | `imap.timeout_seconds` | 1800 | idle time allowed between commands (RFC 9051 §5.4: at least 30 minutes) |
//! | `imap.auth.allow_cleartext` | false | allow LOGIN and AUTHENTICATE without TLS (else LOGINDISABLED) |
//! | `imap.max_append_bytes` | 52428800 | largest APPEND message (APPENDLIMIT) |
//! | `imap.access.allow` / `.deny` | empty | client addresses allowed / refused |
//! | `imap.tombstone_days` | 30 | days an expunged message's tombstone is kept for QRESYNC/CONDSTORE clients; the master then purges it |
//!
//! Logins share the node's authenticator with SMTP and POP3: the address lockout and the
//! login cache follow the `auth.*` keys (`mailfleet_auth::settings`), and count the same
//! failures whichever protocol they came by.

use std::time::Duration;

use mailfleet_cluster::Settings;
use mailfleet_ip_rules::{AccessList, IpRules};

/// Every IMAP key: (key, default, meaning).
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "imap.max_connections",
        "10000",
        "simultaneous IMAP connections on a node",
    ),
    (
        "imap.limit_exceptions",
        "",
        "client addresses with no per-address connection limit (empty: none)",
    ),
    (
        "imap.max_connections_per_ip",
        "100",
        "simultaneous IMAP connections from one client address",
    ),
    (
        "imap.timeout_seconds",
        "1800",
        "idle seconds allowed between IMAP commands (IDLE included)",
    ),
    (
        "imap.auth.allow_cleartext",
        "false",
        "allow IMAP logins without TLS",
    ),
    (
        "imap.max_append_bytes",
        "52428800",
        "largest message APPEND accepts (APPENDLIMIT)",
    ),
    (
        "imap.access.allow",
        "",
        "client addresses allowed on 143 and 993 (empty: all)",
    ),
    (
        "imap.access.deny",
        "",
        "client addresses refused on 143 and 993",
    ),
    (
        "imap.tombstone_days",
        "30",
        "days an expunged message's tombstone is kept (VANISHED); the master purges older ones",
    ),
];

/// `imap.tombstone_days`, its default when unset or not valid.
pub fn tombstone_days(s: &Settings) -> u64 {
    const KEY: &str = "imap.tombstone_days";
    let default = default_of(KEY).parse().unwrap_or(30);
    match s.get(KEY) {
        Some(v) if validate(KEY, v) == Some(Ok(())) => v.trim().parse().unwrap_or(default),
        Some(v) => {
            tracing::warn!("setting {KEY} = {v:?} is not valid; using {default}");
            default
        }
        None => default,
    }
}

fn default_of(key: &str) -> &'static str {
    KEYS.iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, d, _)| *d)
        .unwrap_or("")
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Checks a value for an IMAP key. `None` if `key` is not an IMAP key.
pub fn validate(key: &str, value: &str) -> Option<Result<(), String>> {
    KEYS.iter().find(|(k, _, _)| *k == key)?;
    let number = |min: u64, max: u64| match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(()),
        _ => Err(format!(
            "{key}: {value:?} must be a whole number from {min} to {max}"
        )),
    };
    Some(match key {
        "imap.max_connections" | "imap.max_connections_per_ip" => number(1, 10_000_000),
        "imap.timeout_seconds" => number(10, 86_400),
        "imap.tombstone_days" => number(1, 36_500),
        "imap.max_append_bytes" => number(1024, 4 * 1024 * 1024 * 1024),
        "imap.auth.allow_cleartext" => parse_bool(value)
            .map(|_| ())
            .ok_or_else(|| format!("{key}: {value:?} must be true or false")),
        _ => IpRules::parse_list(value)
            .map(|_| ())
            .map_err(|e| format!("{key}: {e}")),
    })
}

/// The IMAP policy of one settings snapshot.
#[derive(Debug, Clone)]
pub struct Policy {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Clients with no per-address connection limit.
    pub limit_exceptions: IpRules,
    pub timeout: Duration,
    pub allow_cleartext: bool,
    pub max_append: u64,
    pub access: AccessList,
    pub lockout_failures: u32,
    pub lockout_window: Duration,
    pub login_cache: Duration,
}

impl Policy {
    pub fn from_settings(s: &Settings) -> Policy {
        let num = |key: &str, default: u64| -> u64 {
            let default = default_of(key).parse().unwrap_or(default);
            match s.get(key) {
                Some(v) if validate(key, v) == Some(Ok(())) => v.trim().parse().unwrap_or(default),
                Some(v) => {
                    tracing::warn!("setting {key} = {v:?} is not valid; using {default}");
                    default
                }
                None => default,
            }
        };
        let access = AccessList::from_settings("imap.access", |k| s.get(k)).unwrap_or_else(|e| {
            // A list that does not parse must not open the door.
            tracing::warn!("setting {e} is not valid; refusing every client");
            AccessList::deny_all()
        });
        // The lockout and cache are the node's, shared with SMTP (see the module's notes).
        let login = mailfleet_auth::settings::LoginSettings::read(|k| s.get(k));
        Policy {
            max_connections: num("imap.max_connections", 10_000) as usize,
            max_connections_per_ip: num("imap.max_connections_per_ip", 100) as usize,
            limit_exceptions: s
                .get("imap.limit_exceptions")
                .map(|v| {
                    IpRules::parse_list(v).unwrap_or_else(|e| {
                        // A list that does not parse exempts no one.
                        tracing::warn!(
                            "setting imap.limit_exceptions = {v:?} is not valid ({e}); ignored"
                        );
                        IpRules::default()
                    })
                })
                .unwrap_or_default(),
            timeout: Duration::from_secs(num("imap.timeout_seconds", 1800)),
            allow_cleartext: s
                .get("imap.auth.allow_cleartext")
                .and_then(parse_bool)
                .unwrap_or(false),
            max_append: num("imap.max_append_bytes", 52_428_800),
            access,
            lockout_failures: login.lockout_failures,
            lockout_window: login.lockout_window,
            login_cache: login.cache,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn defaults_are_valid_and_bad_values_name_the_key() {
        for (k, d, _) in KEYS {
            assert_eq!(validate(k, d), Some(Ok(())), "{k}");
        }
        assert_eq!(validate("pop3.timeout_seconds", "1"), None);
        for (k, v) in [
            ("imap.timeout_seconds", "1"),
            ("imap.auth.allow_cleartext", "maybe"),
            ("imap.access.deny", "300.1.1.1"),
            ("imap.max_append_bytes", "10"),
        ] {
            let e = validate(k, v).unwrap().unwrap_err();
            assert!(e.contains(k), "{e}");
        }
    }

    #[test]
    fn policy_from_settings() {
        let mut m = BTreeMap::new();
        let p = Policy::from_settings(&Settings::from_map(1, m.clone()));
        assert_eq!(p.timeout, Duration::from_secs(1800));
        assert!(!p.allow_cleartext);
        assert_eq!(p.max_append, 52_428_800);
        assert_eq!(tombstone_days(&Settings::from_map(1, m.clone())), 30);
        m.insert("imap.tombstone_days".to_string(), "0".to_string());
        assert_eq!(tombstone_days(&Settings::from_map(1, m.clone())), 30);
        m.insert("imap.tombstone_days".to_string(), "7".to_string());
        assert_eq!(tombstone_days(&Settings::from_map(1, m.clone())), 7);
        m.insert("imap.access.allow".to_string(), "not a rule".to_string());
        m.insert("imap.auth.allow_cleartext".to_string(), "yes".to_string());
        let p = Policy::from_settings(&Settings::from_map(2, m));
        assert!(!p.access.permits("127.0.0.1".parse().unwrap()));
        assert!(p.allow_cleartext);
    }
}
