//! The SMTP service's cluster settings (`mailfleet settings set KEY VALUE`), applied live.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `smtp.max_message_size` | 25M | largest message accepted: bytes, or with K, M or G (advertised in `SIZE`) |
//! | `smtp.max_recipients` | 100 | recipients per message; more get `452 4.5.3` |
//! | `smtp.max_connections` | 1000 | simultaneous connections, all SMTP listeners of the node |
//! | `smtp.max_connections_per_ip` | 50 | simultaneous connections from one client address |
//! | `smtp.limit_exceptions` | relay_networks | client addresses with no per-address connection limit (like Postfix's `smtpd_client_event_limit_exceptions`); the word `relay_networks` stands for the addresses of `smtp.relay_networks`; empty: none |
//! | `smtp.rate.messages_per_sender_per_minute` | 0 | messages one sender (the login, else the envelope sender) may have accepted per minute on all nodes together (counted in 10 s steps, other nodes seen within about a second); past it MAIL gets 450 4.7.1; 0 = no limit |
//! | `smtp.auth.allow_cleartext` | false | offer AUTH without TLS |
//! | `smtp.postmaster` | empty | where mail to `<Postmaster>` and to `postmaster@` a local domain goes when no account or alias of that name exists |
//! | `smtp.submission.check_from_header` | true | on 587/465 the `From:` header must hold only the user's own address or aliases leading to it (as the envelope sender must) |
//! | `smtp.command_deadline_seconds` | 60 | longest time one command line (or AUTH answer) may take to arrive, from its first byte |
//! | `smtp.data_min_rate` | 500 | slowest average rate (bytes per second) a message may arrive at with DATA or BDAT, after `smtp.command_deadline_seconds` of grace; 0 = no minimum |
//! | `smtp.sender_must_match` | true | an authenticated user may only use their own address or an alias that leads to it as the sender |
//! | `smtp.access.mx.allow` / `.deny` | empty | client addresses allowed / refused on port 25 |
//! | `smtp.access.submission.allow` / `.deny` | empty | the same for 587 and 465 |
//! | `smtp.relay_networks` | empty | clients that may relay through port 25 without AUTH (application servers, other MTAs of the site); empty: none |
//! | `smtp.timeout_seconds` | 300 | idle time allowed while waiting for a command or message data |
//! | `smtp.max_errors` | 20 | protocol errors before the connection is closed |
//!
//! The address lockout and the login cache are shared with IMAP and POP3: the `auth.*` keys of
//! `mailfleet_auth::settings`.
//!
//! Access lists are comma-separated rules: single addresses (`192.0.2.7`, `::1`), CIDRs
//! (`10.0.0.0/8`), ranges (`192.0.2.10-192.0.2.20`) and wildcards (`192.168.*.*`). An empty allow
//! list allows everyone; deny wins over allow.

use std::sync::{Arc, Mutex};

use mailfleet_cluster::{LiveSettings, Settings};
use mailfleet_ip_rules::{AccessList, IpRules};

/// Every SMTP key: (key, default, meaning).
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "smtp.max_message_size",
        "25M",
        "largest message accepted, in bytes (advertised as SIZE)",
    ),
    ("smtp.max_recipients", "100", "recipients per message"),
    (
        "smtp.max_connections",
        "1000",
        "simultaneous SMTP connections on a node",
    ),
    (
        "smtp.max_connections_per_ip",
        "50",
        "simultaneous SMTP connections from one client address",
    ),
    (
        "smtp.limit_exceptions",
        "relay_networks",
        "client addresses with no per-address connection limit; the word relay_networks stands for smtp.relay_networks; empty: none",
    ),
    (
        "smtp.rate.messages_per_sender_per_minute",
        "0",
        "messages one sender (login, else envelope sender) may have accepted per minute, all nodes together; 0 = no limit",
    ),
    (
        "smtp.auth.allow_cleartext",
        "false",
        "offer AUTH on connections without TLS",
    ),
    (
        "smtp.postmaster",
        "",
        "address that gets mail for <Postmaster> and postmaster@ every local domain without an account or alias of that name",
    ),
    (
        "smtp.submission.check_from_header",
        "true",
        "on submission the From: header may only hold the user's own address or aliases leading to it",
    ),
    (
        "smtp.command_deadline_seconds",
        "60",
        "longest time a command line may take to arrive, from its first byte",
    ),
    (
        "smtp.data_min_rate",
        "500",
        "slowest average rate in bytes/s for DATA and BDAT after the command deadline's grace; 0 = no minimum",
    ),
    (
        "smtp.sender_must_match",
        "true",
        "authenticated users may only send as their own address or an alias leading to it",
    ),
    (
        "smtp.access.mx.allow",
        "",
        "client addresses allowed on port 25 (empty: all)",
    ),
    (
        "smtp.access.mx.deny",
        "",
        "client addresses refused on port 25",
    ),
    (
        "smtp.access.submission.allow",
        "",
        "client addresses allowed on 587 and 465 (empty: all)",
    ),
    (
        "smtp.access.submission.deny",
        "",
        "client addresses refused on 587 and 465",
    ),
    (
        "smtp.relay_networks",
        "",
        "client addresses that may relay through port 25 without AUTH (empty: none)",
    ),
    (
        "smtp.timeout_seconds",
        "300",
        "idle seconds allowed while waiting for a command or data",
    ),
    (
        "smtp.max_errors",
        "20",
        "protocol errors before the connection is closed",
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

fn parse_rules(v: &str) -> Result<IpRules, String> {
    IpRules::parse_list(v).map_err(|e| e.to_string())
}

/// The word in `smtp.limit_exceptions` that stands for `smtp.relay_networks`.
const RELAY_NETWORKS_WORD: &str = "relay_networks";

/// `smtp.limit_exceptions` with the word `relay_networks` replaced by `relay_networks`' rules.
fn limit_exceptions(value: &str, relay_networks: &IpRules) -> Result<IpRules, String> {
    let mut with_relays = false;
    let own: Vec<&str> = value
        .split(|c: char| c == ';' || c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
        .filter(|e| {
            let word = e.eq_ignore_ascii_case(RELAY_NETWORKS_WORD);
            with_relays |= word;
            !word
        })
        .collect();
    let own = IpRules::parse(&own).map_err(|e| e.to_string())?;
    if !with_relays {
        return Ok(own);
    }
    Ok(own
        .rules()
        .iter()
        .chain(relay_networks.rules())
        .cloned()
        .collect())
}

/// The largest message size a node accepts: 1 KiB to 1 GiB, as bytes or with a unit.
fn message_size(value: &str) -> Result<u64, String> {
    const MIN: i64 = 1024;
    const MAX: i64 = 1 << 30;
    match mailfleet_config::size::parse_size(value) {
        Ok(n) if (MIN..=MAX).contains(&n) => Ok(n as u64),
        Ok(_) => Err(format!("{value:?} must be from 1K to 1G")),
        Err(e) => Err(e.to_string()),
    }
}

/// Checks a value for an SMTP key. `None` if `key` is not an SMTP key.
pub fn validate(key: &str, value: &str) -> Option<Result<(), String>> {
    KEYS.iter().find(|(k, _, _)| *k == key)?;
    let number = |min: u64, max: u64| -> Result<(), String> {
        match value.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(()),
            _ => Err(format!(
                "{key}: {value:?} must be a whole number from {min} to {max}"
            )),
        }
    };
    Some(match key {
        "smtp.max_message_size" => message_size(value)
            .map(|_| ())
            .map_err(|e| format!("{key}: {e}")),
        "smtp.max_recipients" => number(1, 100_000),
        "smtp.max_connections" | "smtp.max_connections_per_ip" => number(1, 1_000_000),
        "smtp.rate.messages_per_sender_per_minute" => number(0, 1_000_000),
        "smtp.timeout_seconds" => number(5, 86_400),
        "smtp.command_deadline_seconds" => number(1, 86_400),
        "smtp.data_min_rate" => number(0, 1 << 30),
        "smtp.postmaster" => {
            if value.trim().is_empty() {
                Ok(())
            } else {
                mailfleet_store::address::normalize_address(value.trim())
                    .map(|_| ())
                    .map_err(|e| format!("{key}: {value:?}: {e}"))
            }
        }
        "smtp.max_errors" => number(1, 10_000),
        "smtp.limit_exceptions" => limit_exceptions(value, &IpRules::default())
            .map(|_| ())
            .map_err(|e| format!("{key}: {e}")),
        "smtp.auth.allow_cleartext"
        | "smtp.sender_must_match"
        | "smtp.submission.check_from_header" => parse_bool(value)
            .map(|_| ())
            .ok_or_else(|| format!("{key}: {value:?} must be true or false")),
        _ => parse_rules(value)
            .map(|_| ())
            .map_err(|e| format!("{key}: {e}")),
    })
}

/// The SMTP policy parsed from one settings snapshot.
#[derive(Debug, Clone)]
pub struct Policy {
    pub version: i64,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// Clients with no per-address connection limit.
    pub limit_exceptions: IpRules,
    pub rate_per_minute: u32,
    pub allow_cleartext_auth: bool,
    pub lockout_failures: u32,
    pub lockout_seconds: u64,
    pub sender_must_match: bool,
    /// How long a good login is remembered.
    pub auth_cache: std::time::Duration,
    /// Where postmaster mail goes when no account or alias takes it (normalised; empty: none).
    pub postmaster: String,
    pub check_from_header: bool,
    /// Longest time for one command line, from its first byte.
    pub command_deadline: std::time::Duration,
    /// Slowest average DATA/BDAT rate in bytes per second (0: none).
    pub data_min_rate: u64,
    pub access_mx: AccessList,
    pub access_submission: AccessList,
    /// Clients allowed to relay without AUTH; empty: none.
    pub relay_networks: IpRules,
    pub timeout: std::time::Duration,
    pub max_errors: u32,
}

impl Policy {
    /// Reads every key, falling back to the default for unset or unusable values (and logging
    /// the latter: `mailfleet settings set` validates, so only hand-edited rows get there).
    pub fn from_settings(s: &Settings) -> Policy {
        let num = |key: &str| -> u64 {
            let default: u64 = default_of(key).parse().unwrap_or(0);
            match s.get(key) {
                Some(v) if validate(key, v) == Some(Ok(())) => v.trim().parse().unwrap_or(default),
                Some(v) => {
                    tracing::warn!("setting {key} = {v:?} is not valid; using {default}");
                    default
                }
                None => default,
            }
        };
        let flag = |key: &str| -> bool {
            s.get(key)
                .and_then(parse_bool)
                .or_else(|| parse_bool(default_of(key)))
                .unwrap_or(false)
        };
        let rules = |key: &str| -> Option<IpRules> {
            let v = s.get(key)?;
            if v.trim().is_empty() {
                return None;
            }
            match parse_rules(v) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!("setting {key} = {v:?} is not valid ({e}); ignored");
                    None
                }
            }
        };
        let access = |svc: &str| {
            let allow = rules(&format!("smtp.access.{svc}.allow"));
            let mut deny = rules(&format!("smtp.access.{svc}.deny"));
            // An allow list that does not parse must not open the door: deny everything.
            if allow.is_none()
                && s.get(&format!("smtp.access.{svc}.allow"))
                    .is_some_and(|v| !v.trim().is_empty())
            {
                deny = parse_rules("0.0.0.0/0,::/0").ok();
            }
            AccessList {
                allow: allow.unwrap_or_default(),
                deny: deny.unwrap_or_default(),
            }
        };
        // A list that does not parse relays for no one.
        let relay_networks = rules("smtp.relay_networks").unwrap_or_default();
        let exceptions_value = s
            .get("smtp.limit_exceptions")
            .unwrap_or(default_of("smtp.limit_exceptions"));
        let limit_exceptions = limit_exceptions(exceptions_value, &relay_networks)
            .unwrap_or_else(|e| {
                // A list that does not parse exempts no one.
                tracing::warn!("setting smtp.limit_exceptions = {exceptions_value:?} is not valid ({e}); ignored");
                IpRules::default()
            });
        // The lockout and the login cache are every protocol's (`auth.*`).
        let login = mailfleet_auth::settings::LoginSettings::read(|k| s.get(k));
        Policy {
            version: s.version,
            max_message_size: s
                .get("smtp.max_message_size")
                .and_then(|v| match message_size(v) {
                    Ok(n) => Some(n),
                    Err(e) => {
                        tracing::warn!("setting smtp.max_message_size: {e}; using the default");
                        None
                    }
                })
                .or_else(|| message_size(default_of("smtp.max_message_size")).ok())
                .unwrap_or(25 << 20) as usize,
            max_recipients: num("smtp.max_recipients") as usize,
            max_connections: num("smtp.max_connections") as usize,
            max_connections_per_ip: num("smtp.max_connections_per_ip") as usize,
            limit_exceptions,
            rate_per_minute: num("smtp.rate.messages_per_sender_per_minute") as u32,
            allow_cleartext_auth: flag("smtp.auth.allow_cleartext"),
            lockout_failures: login.lockout_failures,
            lockout_seconds: login.lockout_window.as_secs(),
            sender_must_match: flag("smtp.sender_must_match"),
            auth_cache: login.cache,
            postmaster: s
                .get("smtp.postmaster")
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .and_then(|v| match mailfleet_store::address::normalize_address(v) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        tracing::warn!(
                            "setting smtp.postmaster = {v:?} is not valid ({e}); ignored"
                        );
                        None
                    }
                })
                .unwrap_or_default(),
            check_from_header: flag("smtp.submission.check_from_header"),
            command_deadline: std::time::Duration::from_secs(num("smtp.command_deadline_seconds")),
            data_min_rate: num("smtp.data_min_rate"),
            access_mx: access("mx"),
            access_submission: access("submission"),
            relay_networks,
            timeout: std::time::Duration::from_secs(num("smtp.timeout_seconds")),
            max_errors: num("smtp.max_errors") as u32,
        }
    }
}

/// The live policy: re-parsed only when the settings version moves.
#[derive(Clone)]
pub struct LivePolicy {
    settings: LiveSettings,
    cached: Arc<Mutex<Arc<Policy>>>,
}

impl LivePolicy {
    pub fn new(settings: LiveSettings) -> Self {
        let first = Arc::new(Policy::from_settings(&settings.current()));
        Self {
            settings,
            cached: Arc::new(Mutex::new(first)),
        }
    }

    /// The policy for the current settings.
    pub fn current(&self) -> Arc<Policy> {
        let snapshot = self.settings.current();
        let mut cached = match self.cached.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if cached.version != snapshot.version {
            *cached = Arc::new(Policy::from_settings(&snapshot));
        }
        cached.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn defaults_are_valid() {
        for (k, d, _) in KEYS {
            assert_eq!(validate(k, d), Some(Ok(())), "{k}");
        }
        assert_eq!(validate("imap.x", "1"), None);
    }

    #[test]
    fn bad_values_name_the_key() {
        for (k, v) in [
            ("smtp.max_recipients", "0"),
            ("smtp.max_message_size", "big"),
            ("smtp.max_message_size", "2G"),
            ("smtp.max_message_size", "512"),
            ("smtp.auth.allow_cleartext", "maybe"),
            ("smtp.access.mx.allow", "300.1.1.1"),
            ("smtp.postmaster", "not an address"),
            ("smtp.command_deadline_seconds", "0"),
            ("smtp.submission.check_from_header", "sometimes"),
            ("smtp.limit_exceptions", "relay_networks, 10.0.0.0/33"),
        ] {
            let e = validate(k, v).unwrap().unwrap_err();
            assert!(e.contains(k), "{e}");
        }
        assert_eq!(
            validate(
                "smtp.access.mx.deny",
                "10.0.0.0/8, 192.168.*.*, 1.2.3.4-1.2.3.9"
            ),
            Some(Ok(()))
        );
    }

    #[test]
    fn policy_from_settings() {
        let mut m = BTreeMap::new();
        m.insert("smtp.max_recipients".to_string(), "3".to_string());
        m.insert("smtp.access.mx.deny".to_string(), "127.0.0.9".to_string());
        m.insert(
            "smtp.access.submission.allow".to_string(),
            "10.*.*.*".to_string(),
        );
        let p = Policy::from_settings(&Settings::from_map(1, m.clone()));
        assert_eq!(p.max_recipients, 3);
        assert_eq!(p.max_message_size, 26214400);
        m.insert("smtp.max_message_size".to_string(), "50M".to_string());
        let p50 = Policy::from_settings(&Settings::from_map(2, m.clone()));
        assert_eq!(p50.max_message_size, 50 << 20);
        m.insert("smtp.max_message_size".to_string(), "70000".to_string());
        let bytes = Policy::from_settings(&Settings::from_map(3, m));
        assert_eq!(bytes.max_message_size, 70000);
        assert!(!p.access_mx.permits("127.0.0.9".parse().unwrap()));
        assert!(p.access_mx.permits("127.0.0.1".parse().unwrap()));
        assert!(p.access_submission.permits("10.1.2.3".parse().unwrap()));
        assert!(!p.access_submission.permits("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn limit_exceptions_hold_relay_networks_by_default() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let mut m = BTreeMap::new();
        let p = Policy::from_settings(&Settings::from_map(1, m.clone()));
        assert!(
            p.limit_exceptions.is_empty(),
            "no relay networks: no exceptions"
        );
        m.insert(
            "smtp.relay_networks".to_string(),
            "192.0.2.0/24".to_string(),
        );
        let p = Policy::from_settings(&Settings::from_map(2, m.clone()));
        assert!(p.limit_exceptions.matches(ip("192.0.2.9")));
        assert!(!p.limit_exceptions.matches(ip("127.0.0.1")));
        m.insert(
            "smtp.limit_exceptions".to_string(),
            "127.0.0.1, relay_networks".to_string(),
        );
        let p = Policy::from_settings(&Settings::from_map(3, m.clone()));
        assert!(p.limit_exceptions.matches(ip("192.0.2.9")));
        assert!(p.limit_exceptions.matches(ip("127.0.0.1")));
        m.insert("smtp.limit_exceptions".to_string(), "::1".to_string());
        let p = Policy::from_settings(&Settings::from_map(4, m.clone()));
        assert!(!p.limit_exceptions.matches(ip("192.0.2.9")));
        assert!(p.limit_exceptions.matches(ip("::1")));
        m.insert("smtp.limit_exceptions".to_string(), String::new());
        let p = Policy::from_settings(&Settings::from_map(5, m));
        assert!(p.limit_exceptions.is_empty());
    }
}
