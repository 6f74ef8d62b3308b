//! What a node listens on: `bind` (one address, a list, or `"*"`) and the `[ports]` table.
//!
//! ```toml
//! bind = "*"                     # or "192.0.2.10", or ["192.0.2.10", "2001:db8::10"]
//! port_offset = 10000            # added to every port below
//! [ports]                        # every key optional; shown with its default
//! smtp = 25
//! submission = 587
//! submissions = 465              # also spelled smtps; on by default (RFC 8314)
//! pop3 = 110
//! pop3s = 995
//! imap = 143
//! imaps = 993
//! ```
//!
//! A port is a number from 1 to 65535, or `false` to turn the service off.

use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

/// The addresses every listener binds to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bind {
    /// `"*"`: every address of the machine, IPv4 and IPv6.
    All,
    /// One or more addresses (never empty, no duplicates).
    Addresses(Vec<IpAddr>),
}

impl Bind {
    /// The addresses named, or `None` for every address.
    pub fn addresses(&self) -> Option<&[IpAddr]> {
        match self {
            Bind::All => None,
            Bind::Addresses(a) => Some(a),
        }
    }
}

impl From<IpAddr> for Bind {
    fn from(ip: IpAddr) -> Self {
        Bind::Addresses(vec![ip])
    }
}

impl Default for Bind {
    fn default() -> Self {
        Bind::from(IpAddr::from([127, 0, 0, 1]))
    }
}

impl fmt::Display for Bind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bind::All => f.write_str("*"),
            Bind::Addresses(a) => {
                for (i, ip) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{ip}")?;
                }
                Ok(())
            }
        }
    }
}

fn parse_ip<E: de::Error>(v: &str) -> Result<IpAddr, E> {
    v.trim().parse::<IpAddr>().map_err(|_| {
        E::custom(format!(
            "{v:?} is not an IP address (write \"*\" for every address)"
        ))
    })
}

impl<'de> Deserialize<'de> for Bind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BindVisitor;
        impl<'de> Visitor<'de> for BindVisitor {
            type Value = Bind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IP address, a list of IP addresses, or \"*\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bind, E> {
                if v.trim() == "*" {
                    return Ok(Bind::All);
                }
                Ok(Bind::from(parse_ip::<E>(v)?))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bind, A::Error> {
                let mut out: Vec<IpAddr> = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    if s.trim() == "*" {
                        return Err(de::Error::custom(
                            "\"*\" already means every address: write bind = \"*\" alone",
                        ));
                    }
                    let ip = parse_ip::<A::Error>(&s)?;
                    if out.contains(&ip) {
                        return Err(de::Error::custom(format!("{ip} is listed twice")));
                    }
                    out.push(ip);
                }
                if out.is_empty() {
                    return Err(de::Error::custom("the list is empty"));
                }
                Ok(Bind::Addresses(out))
            }
        }
        d.deserialize_any(BindVisitor)
    }
}

/// One service's port: on at a number, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    On(u16),
    Off,
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port from 1 to 65535, or false to turn the service off")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                match u16::try_from(v) {
                    Ok(p) if p > 0 => Ok(Port::On(p)),
                    _ => Err(E::custom(format!(
                        "{v} is not a port from 1 to 65535 (write false to turn the service off)"
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(-1))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Port, E> {
                if v {
                    Err(E::custom(
                        "true is not a port: write the port number, or false to turn the service off",
                    ))
                } else {
                    Ok(Port::Off)
                }
            }
        }
        d.deserialize_any(PortVisitor)
    }
}

/// The `[ports]` table: each service's standard port, before `port_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ports {
    pub smtp: Port,
    pub submission: Port,
    /// Submission over implicit TLS (RFC 8314).
    #[serde(alias = "smtps")]
    pub submissions: Port,
    pub pop3: Port,
    pub pop3s: Port,
    pub imap: Port,
    pub imaps: Port,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            smtp: Port::On(25),
            submission: Port::On(587),
            submissions: Port::On(465),
            pop3: Port::On(110),
            pop3s: Port::On(995),
            imap: Port::On(143),
            imaps: Port::On(993),
        }
    }
}

impl Ports {
    /// Every service with its key and port.
    pub fn all(&self) -> [(&'static str, Port); 7] {
        [
            ("smtp", self.smtp),
            ("submission", self.submission),
            ("submissions", self.submissions),
            ("pop3", self.pop3),
            ("pop3s", self.pop3s),
            ("imap", self.imap),
            ("imaps", self.imaps),
        ]
    }
}
