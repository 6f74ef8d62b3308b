//! The queue's cluster settings (`queue.*`): their names, defaults, checks, and the parsed
//! [`Policy`] the worker reads at the start of every round, so a change applies without restart.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mailfleet_cluster::Settings;

/// Every fixed `queue.*` key: name, default (empty = unset) and what it does.
/// `queue.transport.<domain>` entries are open-ended and checked by [`validate`] too.
pub const KEYS: &[(&str, &str, &str)] = &[
    (
        "queue.dns_servers",
        "",
        "comma-separated DNS servers (ip or ip:port, [v6]:port) for MX/A/AAAA lookups; empty = the system resolver",
    ),
    (
        "queue.retry_schedule",
        "5m,15m,30m,1h,2h,4h",
        "waits between attempts, comma-separated; the last one repeats",
    ),
    (
        "queue.lifetime",
        "5d",
        "how long a message is retried before it bounces to its sender",
    ),
    (
        "queue.delay_warning",
        "4h",
        "after this long undelivered, send the sender one delay notice; empty = never",
    ),
    (
        "queue.lease",
        "300s",
        "how long a claim lasts; the delivering node renews it every third of this, and another node retries the item only once it runs out (its holder died or lost the store)",
    ),
    (
        "queue.attempt_timeout",
        "30m",
        "longest one delivery attempt may run, however long its lease is renewed; then its pending recipients are deferred",
    ),
    ("queue.concurrency", "16", "items one node delivers at once"),
    (
        "queue.poll_interval",
        "5s",
        "how often an idle node looks for due items",
    ),
    (
        "queue.connect_timeout",
        "30s",
        "TCP connect timeout for one address",
    ),
    (
        "queue.command_timeout",
        "5m",
        "how long to wait for one SMTP reply",
    ),
    (
        "queue.port",
        "25",
        "port used for MX hosts and for transports given without a port",
    ),
    (
        "queue.tls",
        "opportunistic",
        "opportunistic (STARTTLS when offered, any certificate accepted) | required (STARTTLS with a certificate valid for the host name, webpki roots) | none",
    ),
    (
        "queue.smarthost",
        "",
        "host:port to relay all remote mail through (unless a transport entry says otherwise); empty = deliver to MX",
    ),
    (
        "queue.smarthost.username",
        "",
        "AUTH user for the smart host; empty = no AUTH",
    ),
    (
        "queue.smarthost.password",
        "",
        "AUTH password for the smart host",
    ),
    (
        "queue.smarthost.allow_cleartext",
        "false",
        "allow AUTH to the smart host without TLS",
    ),
];

/// Prefix of the per-domain transport entries: `queue.transport.<domain>` (or `queue.transport.*`
/// for every domain without its own entry) = `host[:port]` | `mx:<domain>` | `smarthost`.
pub const TRANSPORT_PREFIX: &str = "queue.transport.";

/// Checks a value before it is stored. `None` if the key is not a queue key.
pub fn validate(key: &str, value: &str) -> Option<Result<(), String>> {
    if !key.starts_with("queue.") {
        return None;
    }
    let v = value.trim();
    let r = match key {
        "queue.dns_servers" => parse_dns_servers(v).map(|_| ()),
        "queue.retry_schedule" => parse_schedule(v).map(|_| ()),
        "queue.lifetime"
        | "queue.lease"
        | "queue.attempt_timeout"
        | "queue.poll_interval"
        | "queue.connect_timeout"
        | "queue.command_timeout" => parse_positive_duration(v).map(|_| ()),
        "queue.delay_warning" => {
            if v.is_empty() {
                Ok(())
            } else {
                parse_positive_duration(v).map(|_| ())
            }
        }
        "queue.concurrency" => match v.parse::<usize>() {
            Ok(n) if (1..=1024).contains(&n) => Ok(()),
            _ => Err(format!("{v:?}: expected a number from 1 to 1024")),
        },
        "queue.port" => parse_port(v).map(|_| ()),
        "queue.tls" => TlsMode::parse(v).map(|_| ()),
        "queue.smarthost" => {
            if v.is_empty() {
                Ok(())
            } else {
                parse_host_port(v, 25).map(|_| ())
            }
        }
        "queue.smarthost.username" | "queue.smarthost.password" => {
            if v.contains(['\r', '\n', '\0']) {
                Err("must not contain line breaks or NUL".into())
            } else {
                Ok(())
            }
        }
        "queue.smarthost.allow_cleartext" => v
            .parse::<bool>()
            .map(|_| ())
            .map_err(|_| format!("{v:?}: expected true or false")),
        _ => match key.strip_prefix(TRANSPORT_PREFIX) {
            Some(domain) => {
                if domain != "*" && !valid_domain(domain) {
                    Err(format!("{domain:?} is not a domain name (or *)"))
                } else {
                    Transport::parse(v, 25).map(|_| ())
                }
            }
            None => Err(format!("unknown queue setting; known: {}", known_keys())),
        },
    };
    Some(r.map_err(|e| format!("{key}: {e}")))
}

fn known_keys() -> String {
    let mut k: Vec<&str> = KEYS.iter().map(|(k, _, _)| *k).collect();
    k.push("queue.transport.<domain>");
    k.join(", ")
}

fn valid_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

/// How outbound sessions use STARTTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// STARTTLS when the server offers it, accepting any certificate (plain SMTP otherwise).
    Opportunistic,
    /// STARTTLS always, with a certificate valid for the host name; otherwise defer.
    Required,
    /// Never STARTTLS.
    None,
}

impl TlsMode {
    fn parse(v: &str) -> Result<Self, String> {
        match v {
            "opportunistic" | "" => Ok(Self::Opportunistic),
            "required" => Ok(Self::Required),
            "none" => Ok(Self::None),
            _ => Err(format!("{v:?}: expected opportunistic, required or none")),
        }
    }
}

/// Where mail for a domain goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// A fixed host (name or IP) and port.
    Host { host: String, port: u16 },
    /// The MX hosts of this domain (the recipient's own, or another one).
    Mx { domain: String },
    /// The configured smart host.
    SmartHost,
}

impl Transport {
    /// `host[:port]` | `[v6]:port` | `mx:<domain>` | `smarthost`.
    pub fn parse(v: &str, default_port: u16) -> Result<Self, String> {
        let v = v.trim();
        if v.eq_ignore_ascii_case("smarthost") {
            return Ok(Self::SmartHost);
        }
        if let Some(d) = v.strip_prefix("mx:") {
            let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            if !valid_domain(&d) {
                return Err(format!("{v:?}: mx: needs a domain name"));
            }
            return Ok(Self::Mx { domain: d });
        }
        let (host, port) = parse_host_port(v, default_port)?;
        Ok(Self::Host { host, port })
    }
}

/// `host`, `host:port`, `ip`, `ip:port`, `[v6]`, `[v6]:port`.
pub fn parse_host_port(v: &str, default_port: u16) -> Result<(String, u16), String> {
    let bad = || format!("{v:?}: expected host[:port]");
    if let Some(rest) = v.strip_prefix('[') {
        let (ip, after) = rest.split_once(']').ok_or_else(bad)?;
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if after.is_empty() => default_port,
            None => return Err(bad()),
        };
        return Ok((ip.to_string(), port));
    }
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Ok((ip.to_string(), default_port));
    }
    let (host, port) = match v.rsplit_once(':') {
        Some((h, p)) => (h, parse_port(p)?),
        None => (v, default_port),
    };
    let host = host.trim_end_matches('.');
    if host.parse::<IpAddr>().is_err() && !valid_domain(host) {
        return Err(bad());
    }
    Ok((host.to_ascii_lowercase(), port))
}

fn parse_port(v: &str) -> Result<u16, String> {
    match v.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{v:?}: expected a port from 1 to 65535")),
    }
}

fn parse_positive_duration(v: &str) -> Result<Duration, String> {
    match humantime::parse_duration(v) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err(format!("{v:?}: must be more than zero")),
        Err(e) => Err(format!("{v:?}: {e} (examples: 30s, 5m, 4h, 5d)")),
    }
}

fn parse_schedule(v: &str) -> Result<Vec<Duration>, String> {
    let list = v
        .split(',')
        .map(|s| parse_positive_duration(s.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    if list.is_empty() {
        return Err("needs at least one duration".into());
    }
    Ok(list)
}

fn parse_dns_servers(v: &str) -> Result<Vec<SocketAddr>, String> {
    if v.is_empty() {
        return Ok(Vec::new());
    }
    v.split(',')
        .map(|s| {
            let s = s.trim();
            if let Ok(sa) = s.parse::<SocketAddr>() {
                return Ok(sa);
            }
            if let Ok(ip) = s.parse::<IpAddr>() {
                return Ok(SocketAddr::new(ip, 53));
            }
            Err(format!("{s:?}: expected ip or ip:port ([v6]:port)"))
        })
        .collect()
}

/// The smart host and its credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct SmartHost {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: String,
    pub allow_cleartext: bool,
}

impl std::fmt::Debug for SmartHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmartHost")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("allow_cleartext", &self.allow_cleartext)
            .finish_non_exhaustive()
    }
}

/// Every queue setting, parsed, from one snapshot of the cluster settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub dns_servers: Vec<SocketAddr>,
    pub retry_schedule: Vec<Duration>,
    pub lifetime: Duration,
    pub delay_warning: Option<Duration>,
    pub lease: Duration,
    pub attempt_timeout: Duration,
    pub concurrency: usize,
    pub poll_interval: Duration,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub port: u16,
    pub tls: TlsMode,
    pub smarthost: Option<SmartHost>,
    /// Domain (lower-case, or `*`) → transport.
    pub transports: BTreeMap<String, Transport>,
}

fn default_of(key: &str) -> &'static str {
    KEYS.iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, d, _)| *d)
        .unwrap_or("")
}

impl Policy {
    /// Reads the settings; a value that does not parse (only possible for rows edited by hand,
    /// since `validate` guards `settings set`) falls back to the default with a warning.
    pub fn from_settings(s: &Settings) -> Self {
        fn get<T>(s: &Settings, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> T {
            let default = default_of(key);
            let raw = s.get(key).unwrap_or(default).trim();
            match parse(raw) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!("setting {key}: {e}; using the default {default:?}");
                    match parse(default) {
                        Ok(v) => v,
                        // The defaults above all parse; the unit tests check it.
                        Err(_) => unreachable_default(key),
                    }
                }
            }
        }
        let port = get(s, "queue.port", parse_port);
        let smarthost = get(s, "queue.smarthost", |v| {
            if v.is_empty() {
                Ok(None)
            } else {
                parse_host_port(v, 25).map(Some)
            }
        })
        .map(|(host, port)| SmartHost {
            host,
            port,
            username: s
                .get("queue.smarthost.username")
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string),
            password: s.get("queue.smarthost.password").unwrap_or("").to_string(),
            allow_cleartext: s.get_or("queue.smarthost.allow_cleartext", false),
        });
        let mut transports = BTreeMap::new();
        for (k, v) in s.iter() {
            if let Some(domain) = k.strip_prefix(TRANSPORT_PREFIX) {
                match Transport::parse(v, port) {
                    Ok(t) => {
                        transports.insert(domain.to_ascii_lowercase(), t);
                    }
                    Err(e) => tracing::warn!("setting {k}: {e}; entry ignored"),
                }
            }
        }
        Policy {
            dns_servers: get(s, "queue.dns_servers", parse_dns_servers),
            retry_schedule: get(s, "queue.retry_schedule", parse_schedule),
            lifetime: get(s, "queue.lifetime", parse_positive_duration),
            delay_warning: get(s, "queue.delay_warning", |v| {
                if v.is_empty() {
                    Ok(None)
                } else {
                    parse_positive_duration(v).map(Some)
                }
            }),
            lease: get(s, "queue.lease", parse_positive_duration),
            attempt_timeout: get(s, "queue.attempt_timeout", parse_positive_duration),
            concurrency: get(s, "queue.concurrency", |v| match v.parse::<usize>() {
                Ok(n) if (1..=1024).contains(&n) => Ok(n),
                _ => Err("expected 1 to 1024".into()),
            }),
            poll_interval: get(s, "queue.poll_interval", parse_positive_duration),
            connect_timeout: get(s, "queue.connect_timeout", parse_positive_duration),
            command_timeout: get(s, "queue.command_timeout", parse_positive_duration),
            port,
            tls: get(s, "queue.tls", TlsMode::parse),
            smarthost,
            transports,
        }
    }

    /// The lease in the store's whole seconds: `queue.lease` rounded down, at least one.
    pub fn lease_secs(&self) -> i64 {
        i64::try_from(self.lease.as_secs())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// The wait before the attempt that follows attempt number `attempts` (1 = the first).
    pub fn retry_after(&self, attempts: i64) -> Duration {
        let i = usize::try_from(attempts.saturating_sub(1)).unwrap_or(0);
        self.retry_schedule
            .get(i)
            .or(self.retry_schedule.last())
            .copied()
            .unwrap_or(Duration::from_secs(300))
    }

    /// The route for a recipient domain (not a local one): its transport entry, else the
    /// catch-all entry, else the smart host, else its MX.
    pub fn transport_for(&self, domain: &str) -> Transport {
        if let Some(t) = self.transports.get(domain).or(self.transports.get("*")) {
            return t.clone();
        }
        if self.smarthost.is_some() {
            return Transport::SmartHost;
        }
        Transport::Mx {
            domain: domain.to_string(),
        }
    }
}

#[cold]
fn unreachable_default<T>(key: &str) -> T {
    // Only reachable if a default in KEYS stops parsing; `defaults_parse` guards that.
    panic!("built-in default of {key} does not parse")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_map(
            1,
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_parse() {
        for (k, d, _) in KEYS {
            assert_eq!(validate(k, d), Some(Ok(())), "{k} default {d:?}");
        }
        let p = Policy::from_settings(&Settings::default());
        assert_eq!(p.lifetime, Duration::from_secs(5 * 86400));
        assert_eq!(p.delay_warning, Some(Duration::from_secs(4 * 3600)));
        assert_eq!(p.lease, Duration::from_secs(300));
        assert_eq!(p.lease_secs(), 300);
        assert_eq!(p.attempt_timeout, Duration::from_secs(30 * 60));
        assert_eq!(p.port, 25);
        assert_eq!(p.tls, TlsMode::Opportunistic);
        assert!(p.dns_servers.is_empty() && p.smarthost.is_none());
        assert_eq!(p.retry_after(1), Duration::from_secs(300));
        assert_eq!(p.retry_after(6), Duration::from_secs(4 * 3600));
        assert_eq!(p.retry_after(60), Duration::from_secs(4 * 3600));
    }

    #[test]
    fn validation_names_key_and_problem() {
        assert_eq!(validate("imap.x", "1"), None);
        let e = validate("queue.lifetime", "five days")
            .unwrap()
            .unwrap_err();
        assert!(e.starts_with("queue.lifetime: "), "{e}");
        assert!(validate("queue.lease", "0s").unwrap().is_err());
        assert!(validate("queue.attempt_timeout", "2h").unwrap().is_ok());
        let e = validate("queue.attempt_timeout", "0s")
            .unwrap()
            .unwrap_err();
        assert!(e.starts_with("queue.attempt_timeout: "), "{e}");
        assert!(validate("queue.tls", "sometimes").unwrap().is_err());
        assert!(validate("queue.concurrency", "0").unwrap().is_err());
        assert!(validate("queue.port", "70000").unwrap().is_err());
        assert!(
            validate("queue.dns_servers", "127.0.0.1:5353, ::1")
                .unwrap()
                .is_ok()
        );
        assert!(
            validate("queue.dns_servers", "ns.example")
                .unwrap()
                .is_err()
        );
        assert!(validate("queue.retry_schedule", "1s,,2s").unwrap().is_err());
        assert!(validate("queue.delay_warning", "").unwrap().is_ok());
        assert!(
            validate("queue.transport.example.com", "mx:other.example")
                .unwrap()
                .is_ok()
        );
        assert!(
            validate("queue.transport.example.com", "[::1]:2525")
                .unwrap()
                .is_ok()
        );
        assert!(validate("queue.transport.*", "smarthost").unwrap().is_ok());
        assert!(
            validate("queue.transport.bad_domain", "smarthost")
                .unwrap()
                .is_err()
        );
        assert!(
            validate("queue.transport.example.com", "host:port")
                .unwrap()
                .is_err()
        );
        assert!(
            validate("queue.smarthost.password", "a\r\nb")
                .unwrap()
                .is_err()
        );
        let e = validate("queue.lifetiem", "1d").unwrap().unwrap_err();
        assert!(e.contains("unknown") && e.contains("queue.lifetime"), "{e}");
    }

    #[test]
    fn routes() {
        let p = Policy::from_settings(&settings(&[
            ("queue.port", "2525"),
            ("queue.transport.a.test", "127.0.0.1"),
            ("queue.transport.b.test", "mx:c.test"),
            ("queue.transport.d.test", "relay.test:587"),
        ]));
        assert_eq!(
            p.transport_for("a.test"),
            Transport::Host {
                host: "127.0.0.1".into(),
                port: 2525
            }
        );
        assert_eq!(
            p.transport_for("b.test"),
            Transport::Mx {
                domain: "c.test".into()
            }
        );
        assert_eq!(
            p.transport_for("d.test"),
            Transport::Host {
                host: "relay.test".into(),
                port: 587
            }
        );
        assert_eq!(
            p.transport_for("e.test"),
            Transport::Mx {
                domain: "e.test".into()
            }
        );
        let p = Policy::from_settings(&settings(&[
            ("queue.smarthost", "relay.test:587"),
            ("queue.smarthost.username", "u"),
            ("queue.transport.a.test", "mx:a.test"),
        ]));
        assert_eq!(p.transport_for("e.test"), Transport::SmartHost);
        assert_eq!(
            p.transport_for("a.test"),
            Transport::Mx {
                domain: "a.test".into()
            }
        );
        let sh = p.smarthost.unwrap();
        assert_eq!((sh.host.as_str(), sh.port), ("relay.test", 587));
        assert_eq!(sh.username.as_deref(), Some("u"));
        assert!(!format!("{sh:?}").contains("password:"));
    }

    #[test]
    fn bad_stored_value_falls_back() {
        let p = Policy::from_settings(&settings(&[
            ("queue.lifetime", "forever"),
            ("queue.attempt_timeout", "never"),
            ("queue.lease", "500ms"),
        ]));
        assert_eq!(p.lifetime, Duration::from_secs(5 * 86400));
        assert_eq!(p.attempt_timeout, Duration::from_secs(30 * 60));
        // Leases are counted in whole seconds: a sub-second lease becomes one second.
        assert_eq!(p.lease_secs(), 1);
    }
}
