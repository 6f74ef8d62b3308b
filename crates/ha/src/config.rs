//! The `[pair]` configuration section and its validation.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::HaError;
use crate::wire::PairKey;

/// Shortest accepted `pair.key`.
pub const MIN_KEY_LEN: usize = 16;

/// Heartbeat interval used when `pair.interval` is not set.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Shortest accepted heartbeat interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Longest accepted heartbeat interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);

/// The `[pair]` section of a balancer's configuration: this balancer's half of an
/// active/passive pair.
#[derive(serde::Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct PairSection {
    /// The role this balancer takes when it starts and hears no active peer.
    pub role: Role,
    /// Where this balancer receives heartbeats (UDP) and replicated state (TCP, same address).
    pub listen: SocketAddr,
    /// The other balancer's `listen` address.
    pub peer: SocketAddr,
    /// Heartbeat interval (humantime, e.g. "500ms"); "1s" when unset. The peer is declared
    /// dead after three intervals of silence.
    pub interval: Option<String>,
    /// The virtual IPs the active balancer holds: one address with its prefix
    /// ("10.99.0.100/24"), or a list of them, IPv4 or IPv6 ("fd00::100/64"), each entry an
    /// address or a table `{ address = "...", interface = "eth1" }`.
    pub vip: Option<VipSetting>,
    /// Network interface the virtual IPs go on (entries that name none).
    pub interface: Option<String>,
    /// Shared secret of the pair (the same on both members, at least 16 characters):
    /// heartbeats carry an HMAC made with it and replicated state is encrypted with it.
    /// Without it the pair link is not authenticated.
    pub key: Option<String>,
}

/// `pair.vip`: one address or a list.
#[derive(serde::Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum VipSetting {
    /// `vip = "10.99.0.100/24"`.
    One(String),
    /// `vip = ["10.99.0.100/24", { address = "fd00::100/64", interface = "eth1" }]`.
    Many(Vec<VipEntry>),
}

/// One entry of a `pair.vip` list.
#[derive(serde::Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum VipEntry {
    /// An address with its prefix, on `pair.interface`.
    Address(String),
    /// An address on an interface of its own.
    OnInterface {
        /// The address with its prefix.
        address: String,
        /// Its interface (default `pair.interface`).
        interface: Option<String>,
    },
}

/// A balancer's role in the pair.
#[derive(serde::Deserialize, serde::Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds the virtual IP, serves traffic and replicates its state to the peer.
    Active,
    /// Stands by, applies the active's state and takes over when the active falls silent.
    Passive,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Active => "active",
            Role::Passive => "passive",
        })
    }
}

/// A virtual address (IPv4, announced with gratuitous ARP, or IPv6, announced with unsolicited
/// neighbour advertisements) with its prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vip {
    /// The address.
    pub addr: IpAddr,
    /// Prefix length, 0..=32 (IPv4) or 0..=128 (IPv6).
    pub prefix: u8,
}

impl std::fmt::Display for Vip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A [`PairSection`] that passed validation, with parsed values.
#[derive(Clone, Debug)]
pub struct ValidPair {
    /// Role at start.
    pub role: Role,
    /// Heartbeat and state address of this balancer.
    pub listen: SocketAddr,
    /// Heartbeat and state address of the peer.
    pub peer: SocketAddr,
    /// Heartbeat interval.
    pub interval: Duration,
    /// The virtual IPs, each with the interface it goes on (empty: none).
    pub vips: Vec<(Vip, String)>,
    /// Keys derived from `pair.key` (from the empty string when unset).
    pub key: PairKey,
    /// Whether `pair.key` is set.
    pub authenticated: bool,
}

impl ValidPair {
    /// Silence after which the peer counts as dead: three intervals.
    pub fn dead_after(&self) -> Duration {
        self.interval * 3
    }
}

fn err(key: &'static str, message: impl Into<String>) -> HaError {
    HaError::Config {
        key,
        message: message.into(),
    }
}

impl PairSection {
    /// Checks every key and returns the parsed values; the error names the key
    /// (`pair.vip: ...`).
    pub fn validate(&self) -> Result<ValidPair, HaError> {
        if self.listen.port() == 0 {
            return Err(err(
                "listen",
                "port 0 is not allowed: the peer must know the port",
            ));
        }
        check_peer(self.listen, self.peer)?;
        let interval = match &self.interval {
            None => DEFAULT_INTERVAL,
            Some(text) => parse_interval(text)?,
        };
        let vips = match (&self.vip, &self.interface) {
            (None, None) => Vec::new(),
            (None, Some(_)) => {
                return Err(err(
                    "interface",
                    "is set but pair.vip is not; set both or neither",
                ));
            }
            (Some(setting), interface) => check_vips(setting, interface.as_deref())?,
        };
        if let Some(key) = &self.key {
            check_key(key)?;
        }
        Ok(ValidPair {
            role: self.role,
            listen: self.listen,
            peer: self.peer,
            interval,
            vips,
            key: PairKey::new(self.key.as_deref().unwrap_or("").as_bytes()),
            authenticated: self.key.is_some(),
        })
    }
}

fn check_peer(listen: SocketAddr, peer: SocketAddr) -> Result<(), HaError> {
    if peer.port() == 0 {
        return Err(err("peer", "port 0 is not a reachable address"));
    }
    if peer.ip().is_unspecified() || peer.ip().is_multicast() {
        return Err(err(
            "peer",
            format!("{} is not a unicast address", peer.ip()),
        ));
    }
    if listen.is_ipv4() != peer.is_ipv4() {
        return Err(err(
            "peer",
            format!("{peer} is not of the same address family as pair.listen ({listen})"),
        ));
    }
    if listen == peer {
        return Err(err("peer", "must differ from pair.listen"));
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), HaError> {
    // The message never repeats the key.
    if key.chars().count() < MIN_KEY_LEN {
        return Err(err(
            "key",
            format!("must be at least {MIN_KEY_LEN} characters long"),
        ));
    }
    if key.chars().any(|c| c.is_control()) {
        return Err(err("key", "must not contain control characters"));
    }
    if key.trim() != key {
        return Err(err("key", "must not begin or end with white space"));
    }
    Ok(())
}

fn parse_interval(text: &str) -> Result<Duration, HaError> {
    let interval = humantime::parse_duration(text.trim())
        .map_err(|e| err("interval", format!("\"{text}\" is not a duration: {e}")))?;
    if interval < MIN_INTERVAL || interval > MAX_INTERVAL {
        return Err(err(
            "interval",
            format!(
                "{text} is out of range ({} to {})",
                humantime::format_duration(MIN_INTERVAL),
                humantime::format_duration(MAX_INTERVAL)
            ),
        ));
    }
    Ok(interval)
}

fn check_vips(
    setting: &VipSetting,
    interface: Option<&str>,
) -> Result<Vec<(Vip, String)>, HaError> {
    let entries: Vec<(&str, Option<&str>)> = match setting {
        VipSetting::One(a) => vec![(a.as_str(), None)],
        VipSetting::Many(list) => list
            .iter()
            .map(|e| match e {
                VipEntry::Address(a) => (a.as_str(), None),
                VipEntry::OnInterface { address, interface } => {
                    (address.as_str(), interface.as_deref())
                }
            })
            .collect(),
    };
    if entries.is_empty() {
        return Err(err(
            "vip",
            "the list is empty; leave pair.vip out for no virtual IP",
        ));
    }
    let default_interface = interface.map(check_interface).transpose()?;
    let mut out: Vec<(Vip, String)> = Vec::with_capacity(entries.len());
    for (i, (address, own)) in entries.into_iter().enumerate() {
        let vip = parse_vip(address).map_err(|e| match e {
            HaError::Config { key, message } if matches!(setting, VipSetting::Many(_)) => {
                err(key, format!("entry {i}: {message}"))
            }
            other => other,
        })?;
        let ifname = match own {
            Some(name) => check_interface(name)?,
            None => match &default_interface {
                Some(name) => name.clone(),
                None => {
                    return Err(err(
                        "interface",
                        format!("is required for {address}, which names no interface of its own"),
                    ));
                }
            },
        };
        if out.iter().any(|(v, _)| v.addr == vip.addr) {
            return Err(err("vip", format!("{} is listed twice", vip.addr)));
        }
        out.push((vip, ifname));
    }
    Ok(out)
}

fn parse_vip(text: &str) -> Result<Vip, HaError> {
    let text = text.trim();
    let (addr_text, prefix_text) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: IpAddr = addr_text
        .parse()
        .map_err(|_| err("vip", format!("\"{addr_text}\" is not an IP address")))?;
    let unusable = match addr {
        IpAddr::V4(a) => {
            a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_broadcast()
                || a.is_link_local()
        }
        IpAddr::V6(a) => {
            a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || a.is_unicast_link_local()
                || a.to_ipv4_mapped().is_some()
        }
    };
    if unusable {
        return Err(err("vip", format!("{addr} cannot be a virtual address")));
    }
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_text {
        None => max,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= max => n,
            _ => return Err(err("vip", format!("prefix \"/{p}\" must be 0 to {max}"))),
        },
    };
    Ok(Vip { addr, prefix })
}

fn check_interface(name: &str) -> Result<String, HaError> {
    // Linux interface names: 1 to 15 bytes, no '/', no whitespace, not "." or "..".
    if name.is_empty() || name.len() > 15 {
        return Err(err(
            "interface",
            format!("\"{name}\" must be 1 to 15 characters long"),
        ));
    }
    if name == "."
        || name == ".."
        || name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(err(
            "interface",
            format!("\"{name}\" is not a valid interface name"),
        ));
    }
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(extra: &str) -> Result<PairSection, toml::de::Error> {
        toml::from_str(&format!(
            "role = \"active\"\nlisten = \"127.0.0.1:7400\"\npeer = \"127.0.0.1:7401\"\n{extra}"
        ))
    }

    fn message(extra: &str) -> String {
        section(extra).unwrap().validate().unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let v = section("").unwrap().validate().unwrap();
        assert_eq!(v.role, Role::Active);
        assert_eq!(v.interval, Duration::from_secs(1));
        assert_eq!(v.dead_after(), Duration::from_secs(3));
        assert!(v.vips.is_empty());
        assert!(!v.authenticated);
    }

    #[test]
    fn key_is_checked_and_never_echoed() {
        let v = section("key = \"0123456789abcdef\"")
            .unwrap()
            .validate()
            .unwrap();
        assert!(v.authenticated);
        for bad in ["short-key", "0123456789abcde\\n", " 0123456789abcdef"] {
            let m = message(&format!("key = \"{bad}\""));
            assert!(m.starts_with("pair.key: "), "{m}");
            assert!(!m.contains("0123"), "the message repeats the key: {m}");
        }
    }

    #[test]
    fn full_section() {
        let v = section("interval = \"250ms\"\nvip = \"10.99.0.100/24\"\ninterface = \"eth0\"")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(v.interval, Duration::from_millis(250));
        let (vip, ifname) = v.vips[0].clone();
        assert_eq!(vip.to_string(), "10.99.0.100/24");
        assert_eq!(ifname, "eth0");
        let v = section("vip = \"10.99.0.100\"\ninterface = \"eth0\"")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(v.vips[0].0.prefix, 32);
    }

    #[test]
    fn several_vips_ipv6_and_own_interfaces() {
        let v = section(
            "vip = [\"10.99.0.100/24\", \"fd00:99::100/64\", { address = \"10.98.0.1/24\", interface = \"eth1\" }, { address = \"fd00:98::1\" }]\ninterface = \"eth0\"",
        )
        .unwrap()
        .validate()
        .unwrap();
        let got: Vec<String> = v
            .vips
            .iter()
            .map(|(vip, ifname)| format!("{vip}@{ifname}"))
            .collect();
        assert_eq!(
            got,
            [
                "10.99.0.100/24@eth0",
                "fd00:99::100/64@eth0",
                "10.98.0.1/24@eth1",
                "fd00:98::1/128@eth0"
            ]
        );
        // Every entry naming its interface: pair.interface is not needed.
        let v = section("vip = [{ address = \"fd00::5/64\", interface = \"eth2\" }]")
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(v.vips.len(), 1);
    }

    #[test]
    fn role_is_lowercase_and_unknown_keys_fail() {
        let e = toml::from_str::<PairSection>(
            "role = \"Active\"\nlisten = \"127.0.0.1:1\"\npeer = \"127.0.0.1:2\"",
        )
        .unwrap_err();
        assert!(e.to_string().contains("role"), "{e}");
        let e = section("vips = \"10.0.0.1\"").unwrap_err();
        assert!(e.to_string().contains("vips"), "{e}");
    }

    #[test]
    fn messages_name_the_key() {
        assert!(message("interval = \"soon\"").starts_with("pair.interval: "));
        assert!(message("interval = \"1ms\"").starts_with("pair.interval: "));
        assert!(message("interval = \"2h\"").starts_with("pair.interval: "));
        assert!(
            message("vip = \"10.99.0.300/24\"\ninterface = \"eth0\"").starts_with("pair.vip: ")
        );
        assert!(message("vip = \"10.99.0.1/33\"\ninterface = \"eth0\"").starts_with("pair.vip: "));
        assert!(message("vip = \"10.99.0.1/x\"\ninterface = \"eth0\"").starts_with("pair.vip: "));
        assert!(message("vip = \"fd00::1/129\"\ninterface = \"eth0\"").starts_with("pair.vip: "));
        assert!(message("vip = \"fe80::1/64\"\ninterface = \"eth0\"").starts_with("pair.vip: "));
        assert!(message("vip = []\ninterface = \"eth0\"").starts_with("pair.vip: "));
        assert!(
            message("vip = [\"10.0.0.1/24\", \"10.0.0.1/16\"]\ninterface = \"eth0\"")
                .starts_with("pair.vip: ")
        );
        let m = message("vip = [\"10.0.0.1/24\", \"fd00::1/200\"]\ninterface = \"eth0\"");
        assert!(m.starts_with("pair.vip: entry 1: "), "{m}");
        assert!(
            message("vip = [\"10.0.0.1/24\", { address = \"10.0.1.1/24\" }]")
                .starts_with("pair.interface: ")
        );
        assert!(message("vip = \"127.0.0.5/8\"\ninterface = \"lo\"").starts_with("pair.vip: "));
        assert!(message("vip = \"10.99.0.1/24\"").starts_with("pair.interface: "));
        assert!(message("interface = \"eth0\"").starts_with("pair.interface: "));
        assert!(
            message("vip = \"10.99.0.1/24\"\ninterface = \"a-very-long-interface-name\"")
                .starts_with("pair.interface: ")
        );
        assert!(
            message("vip = \"10.99.0.1/24\"\ninterface = \"e/0\"").starts_with("pair.interface: ")
        );
    }

    #[test]
    fn address_checks() {
        let mut s = section("").unwrap();
        s.peer = s.listen;
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .starts_with("pair.peer: ")
        );
        s.peer = "[::1]:7401".parse().unwrap();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .starts_with("pair.peer: ")
        );
        s.peer = "0.0.0.0:7401".parse().unwrap();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .starts_with("pair.peer: ")
        );
        s.peer = "127.0.0.1:0".parse().unwrap();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .starts_with("pair.peer: ")
        );
        let mut s = section("").unwrap();
        s.listen = "127.0.0.1:0".parse().unwrap();
        assert!(
            s.validate()
                .unwrap_err()
                .to_string()
                .starts_with("pair.listen: ")
        );
    }
}
