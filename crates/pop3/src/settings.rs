//! The POP3 service's cluster settings (`mailfleet settings set KEY VALUE`), applied live.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `pop3.max_connections` | 1000 | simultaneous POP3 connections on a node (110 and 995 together) |
//! | `pop3.limit_exceptions` | empty | client addresses with no per-address connection limit |
//! | `pop3.max_connections_per_ip` | 20 | simultaneous POP3 connections from one client address |
//! | `pop3.timeout_seconds` | 600 | idle time allowed between commands (RFC 1939: at least 10 minutes) |
//! | `pop3.auth.allow_cleartext` | false | allow USER/PASS and AUTH without TLS |
//! | `pop3.access.allow` / `.deny` | empty | client addresses allowed / refused |
//!
//! Logins share the node's authenticator with SMTP and IMAP: the address lockout and the login
//! cache follow the `auth.*` keys (`mailfleet_auth::settings`), and count the same failures
//! whichever protocol they came by.

use std::time::Duration;

use mailfleet_cluster::Settings;
use mailfleet_ip_rules::{AccessList, IpRules};

/// Every POP3 key: (key, default, meaning).
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "pop3.max_connections",
        "1000",
        "simultaneous POP3 connections on a node",
    ),
    (
        "pop3.limit_exceptions",
        "",
        "client addresses with no per-address connection limit (empty: none)",
    ),
    (
        "pop3.max_connections_per_ip",
        "20",
        "simultaneous POP3 connections from one client address",
    ),
    (
        "pop3.timeout_seconds",
        "600",
        "idle seconds allowed between POP3 commands",
    ),
    (
        "pop3.auth.allow_cleartext",
        "false",
        "allow POP3 logins without TLS",
    ),
    (
        "pop3.access.allow",
        "",
        "client addresses allowed on 110 and 995 (empty: all)",
    ),
    (
        "pop3.access.deny",
        "",
        "client addresses refused on 110 and 995",
    ),
];

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

/// Checks a value for a POP3 key. `None` if `key` is not a POP3 key.
pub fn validate(key: &str, value: &str) -> Option<Result<(), String>> {
    KEYS.iter().find(|(k, _, _)| *k == key)?;
    let number = |min: u64, max: u64| match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(()),
        _ => Err(format!(
            "{key}: {value:?} must be a whole number from {min} to {max}"
        )),
    };
    Some(match key {
        "pop3.max_connections" | "pop3.max_connections_per_ip" => number(1, 1_000_000),
        "pop3.timeout_seconds" => number(10, 86_400),
        "pop3.auth.allow_cleartext" => parse_bool(value)
            .map(|_| ())
            .ok_or_else(|| format!("{key}: {value:?} must be true or false")),
        _ => IpRules::parse_list(value)
            .map(|_| ())
            .map_err(|e| format!("{key}: {e}")),
    })
}

/// The POP3 policy of one settings snapshot.
#[derive(Debug, Clone)]
pub struct Policy {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Clients with no per-address connection limit.
    pub limit_exceptions: IpRules,
    pub timeout: Duration,
    pub allow_cleartext: bool,
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
        let access = AccessList::from_settings("pop3.access", |k| s.get(k)).unwrap_or_else(|e| {
            // A list that does not parse must not open the door.
            tracing::warn!("setting {e} is not valid; refusing every client");
            AccessList::deny_all()
        });
        // The lockout and cache are the node's, shared with SMTP (see the module's notes).
        let login = mailfleet_auth::settings::LoginSettings::read(|k| s.get(k));
        Policy {
            max_connections: num("pop3.max_connections", 1000) as usize,
            max_connections_per_ip: num("pop3.max_connections_per_ip", 20) as usize,
            limit_exceptions: s
                .get("pop3.limit_exceptions")
                .map(|v| {
                    IpRules::parse_list(v).unwrap_or_else(|e| {
                        // A list that does not parse exempts no one.
                        tracing::warn!(
                            "setting pop3.limit_exceptions = {v:?} is not valid ({e}); ignored"
                        );
                        IpRules::default()
                    })
                })
                .unwrap_or_default(),
            timeout: Duration::from_secs(num("pop3.timeout_seconds", 600)),
            allow_cleartext: s
                .get("pop3.auth.allow_cleartext")
                .and_then(parse_bool)
                .unwrap_or(false),
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
        assert_eq!(validate("smtp.max_errors", "1"), None);
        for (k, v) in [
            ("pop3.timeout_seconds", "1"),
            ("pop3.auth.allow_cleartext", "maybe"),
            ("pop3.access.deny", "300.1.1.1"),
        ] {
            let e = validate(k, v).unwrap().unwrap_err();
            assert!(e.contains(k), "{e}");
        }
    }

    #[test]
    fn policy_from_settings() {
        let mut m = BTreeMap::new();
        let p = Policy::from_settings(&Settings::from_map(1, m.clone()));
        assert_eq!(p.timeout, Duration::from_secs(600));
        assert!(!p.allow_cleartext);
        assert_eq!(p.lockout_failures, 5);
        m.insert("pop3.access.allow".to_string(), "not a rule".to_string());
        m.insert("smtp.auth.lockout_failures".to_string(), "3".to_string());
        let p = Policy::from_settings(&Settings::from_map(2, m));
        assert!(
            !p.access.permits("127.0.0.1".parse().unwrap()),
            "a bad list shuts the door"
        );
        assert_eq!(p.lockout_failures, 3);
    }
}
