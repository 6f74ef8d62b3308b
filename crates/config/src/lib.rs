//! A node's own configuration: one TOML file, checked strictly.
//!
//! Node-local settings only (DESIGN.md §4): who the node is, where the store and blobs are, what it
//! binds to. Cluster-wide settings live in the store. An unknown key, a wrong type or a bad value is
//! an error naming the file, the key and the problem.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

pub mod file;
pub mod listen;
pub mod log;
pub mod size;
pub mod tls;

pub use file::{FileProblem, MAX_CONFIG_BYTES, read_config_file};
pub use listen::{Bind, Port, Ports};
pub use log::LogSection;

/// A problem with a configuration file. Each message carries its whole cause and none has a
/// `source()`, so a printer that walks the error chain (anyhow's `{:#}`) shows every cause once.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file is not a readable regular file of at most [`MAX_CONFIG_BYTES`].
    #[error("{file}: {problem}")]
    Read { file: String, problem: FileProblem },
    #[error("{file}: {problem}")]
    Syntax { file: String, problem: String },
    #[error("{file}: key `{key}`: {problem}")]
    Key {
        file: String,
        key: String,
        problem: String,
    },
}

/// The node configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// 2–8 of [a-z0-9], unique in the cluster; prefixes log and temp files.
    pub server_id: String,
    /// The name the node gives itself (SMTP greeting, Received headers).
    pub hostname: String,
    /// `sqlite:PATH` or `postgres://...`.
    pub store: String,
    /// Used while the primary store cannot be reached, at start or while the node runs; the
    /// node goes back to the primary when it returns (`mailfleet_store::FailoverStore`).
    #[serde(default)]
    pub backup_store: Option<String>,
    /// Temp files, logs and local blobs.
    pub data_dir: PathBuf,
    /// `fs:PATH` or `db`; default `fs:DATA_DIR/blobs`.
    #[serde(default)]
    pub blobs: Option<String>,
    /// With `fs:` blobs, messages up to this size (`64K`, `0` for none) are kept in the store,
    /// in the delivery's own transaction, instead of as files. Default 64K when `blobs` is not
    /// set (one machine, everything under `data_dir`), else 0: blobs an administrator has put on
    /// a path of their choosing all go there unless this says otherwise.
    #[serde(default)]
    pub blobs_inline_max: Option<String>,
    /// The addresses every listener binds to: one (`"192.0.2.1"`), a list, or `"*"` (every
    /// address, IPv4 and IPv6). Default 127.0.0.1.
    #[serde(default)]
    pub bind: Bind,
    /// The addresses other machines reach this node at (one or a list), where `bind` does not
    /// say: a listener bound to every address (`"*"`, `0.0.0.0`, `::`) is reported in the
    /// heartbeat at these, for balancers with `servers = "cluster"` and the watchdog.
    #[serde(default)]
    pub advertise: Option<Bind>,
    /// Added to every port of `[ports]`.
    #[serde(default)]
    pub port_offset: u16,
    /// Each service's port, or `false` for a service turned off (see [`listen`]).
    #[serde(default)]
    pub ports: Ports,
    /// Addresses, CIDRs, ranges or wildcards allowed to send a PROXY protocol header.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Default `DATA_DIR/logs`.
    #[serde(default)]
    pub log_dir: Option<PathBuf>,
    /// Log retention, size rotation, one file per service, syslog (see [`log`]).
    #[serde(default)]
    pub log: LogSection,
    /// Certificates for TLS listeners; none means a self-signed one kept in `data_dir`.
    #[serde(default)]
    pub tls: tls::TlsSection,
    /// Whether this node may become the cluster's master and run its cluster-wide jobs
    /// (default true). A node with `master = false` never takes the master lease.
    #[serde(default = "default_master")]
    pub master: bool,
}

fn default_master() -> bool {
    true
}

/// Largest `blobs_inline_max`: past this a message is better off as a file.
const MAX_INLINE: i64 = 16 << 20;
/// `blobs_inline_max` when neither it nor `blobs` is set.
const DEFAULT_INLINE: usize = 64 << 10;

impl NodeConfig {
    /// A node on one machine with every optional key at its default: what `mailfleet up` and
    /// tests build without a file.
    pub fn new_local(
        server_id: &str,
        hostname: &str,
        store: &str,
        data_dir: PathBuf,
        bind: IpAddr,
        port_offset: u16,
    ) -> NodeConfig {
        NodeConfig {
            server_id: server_id.into(),
            hostname: hostname.into(),
            store: store.into(),
            backup_store: None,
            data_dir,
            blobs: None,
            blobs_inline_max: None,
            bind: Bind::from(bind),
            advertise: None,
            port_offset,
            ports: Ports::default(),
            trusted_proxies: Vec::new(),
            log_dir: None,
            log: LogSection::default(),
            tls: Default::default(),
            master: true,
        }
    }

    /// Reads and checks a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let text = read_config_file(path).map_err(|problem| ConfigError::Read {
            file: file.clone(),
            problem,
        })?;
        Self::parse(&text, &file)
    }

    /// Parses and checks `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::new(text);
        let config: NodeConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let problem = inner.message().to_string();
            if key.is_empty() || key == "." {
                ConfigError::Syntax {
                    file: file.to_string(),
                    problem: inner.to_string().trim().to_string(),
                }
            } else {
                ConfigError::Key {
                    file: file.to_string(),
                    key,
                    problem,
                }
            }
        })?;
        config.validate(file)?;
        Ok(config)
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let err = |key: &str, problem: String| ConfigError::Key {
            file: file.to_string(),
            key: key.to_string(),
            problem,
        };
        let id = &self.server_id;
        if !(2..=8).contains(&id.len())
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(err(
                "server_id",
                format!("{id:?} must be 2 to 8 characters of a-z and 0-9"),
            ));
        }
        if self.hostname.is_empty()
            || self.hostname.len() > 253
            || !self
                .hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(err(
                "hostname",
                format!("{:?} is not a host name", self.hostname),
            ));
        }
        check_store_url("store", &self.store).map_err(|p| err("store", p))?;
        if let Some(b) = &self.backup_store {
            check_store_url("backup_store", b).map_err(|p| err("backup_store", p))?;
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(err("data_dir", "must not be empty".into()));
        }
        if let Some(b) = &self.blobs {
            match b.strip_prefix("fs:") {
                Some(p) if !p.is_empty() => {}
                Some(_) => return Err(err("blobs", "fs: needs a path, e.g. fs:/srv/blobs".into())),
                None if b == "db" => {}
                None => return Err(err("blobs", format!("{b:?}: expected fs:PATH or db"))),
            }
        }
        if let Some(v) = &self.blobs_inline_max {
            let n =
                crate::size::parse_size(v).map_err(|e| err("blobs_inline_max", e.to_string()))?;
            if n > MAX_INLINE {
                return Err(err(
                    "blobs_inline_max",
                    format!("{v:?} is more than the largest allowed, 16M"),
                ));
            }
        }
        match &self.advertise {
            Some(Bind::All) => {
                return Err(err(
                    "advertise",
                    "must name addresses (as others reach this node), not \"*\"".into(),
                ));
            }
            Some(Bind::Addresses(ips)) => {
                if let Some(ip) = ips.iter().find(|ip| ip.is_unspecified()) {
                    return Err(err(
                        "advertise",
                        format!("{ip} is no address to connect to"),
                    ));
                }
            }
            None => {}
        }
        for (i, entry) in self.trusted_proxies.iter().enumerate() {
            check_network(entry).map_err(|p| err(&format!("trusted_proxies[{i}]"), p))?;
        }
        for (key, port) in self.ports.all() {
            if let Port::On(p) = port
                && u32::from(p) + u32::from(self.port_offset) > 65535
            {
                return Err(err(
                    &format!("ports.{key}"),
                    format!("{p} + port_offset {} is past 65535", self.port_offset),
                ));
            }
        }
        self.log.check().map_err(|(key, p)| err(key, p))?;
        Ok(())
    }

    /// `blobs_inline_max` in bytes, with its default filled in.
    pub fn blobs_inline_max(&self) -> usize {
        match &self.blobs_inline_max {
            Some(v) => crate::size::parse_size(v)
                .ok()
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0),
            None if self.blobs.is_none() => DEFAULT_INLINE,
            None => 0,
        }
    }

    /// The blob backend spec with the default filled in.
    pub fn blobs_spec(&self) -> String {
        self.blobs
            .clone()
            .unwrap_or_else(|| format!("fs:{}", self.data_dir.join("blobs").display()))
    }

    pub fn log_dir(&self) -> PathBuf {
        self.log_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("logs"))
    }

    pub fn temp_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }

    /// A standard port moved by `port_offset` (saturating at 65535).
    pub fn port(&self, standard: u16) -> u16 {
        standard.saturating_add(self.port_offset)
    }

    /// Where a service of `[ports]` listens: one address per bound address (for `bind = "*"`,
    /// the IPv6 wildcard, which the listener opens for IPv4 too), or none when it is off.
    pub fn listen_addrs(&self, port: Port) -> Vec<SocketAddr> {
        let Port::On(p) = port else {
            return Vec::new();
        };
        let port = self.port(p);
        match self.bind.addresses() {
            Some(ips) => ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect(),
            None => vec![SocketAddr::new(IpAddr::from([0u16; 8]), port)],
        }
    }
}

impl NodeConfig {
    /// Where others connect to a listener on `addr`: `addr` itself, unless it is bound to
    /// every address; then on the first `advertise` address of its family (else the first
    /// one), or `addr` unchanged when nothing is advertised.
    pub fn advertised(&self, addr: SocketAddr) -> SocketAddr {
        if !addr.ip().is_unspecified() {
            return addr;
        }
        let Some(ips) = self.advertise.as_ref().and_then(Bind::addresses) else {
            return addr;
        };
        ips.iter()
            .find(|ip| ip.is_ipv4() == addr.ip().is_ipv4())
            .or(ips.first())
            .map_or(addr, |ip| SocketAddr::new(*ip, addr.port()))
    }
}

fn check_store_url(_key: &str, url: &str) -> Result<(), String> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        if path.is_empty() {
            return Err("sqlite: needs a path, e.g. sqlite:/var/lib/mailfleet/mailfleet.db".into());
        }
        Ok(())
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(())
    } else {
        Err("expected sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DB".into())
    }
}

/// One entry of an address list: an IP, a CIDR, a range `a-b` or a wildcard `10.1.*.*`.
fn check_network(entry: &str) -> Result<(), String> {
    entry
        .parse::<mailfleet_ip_rules::IpRule>()
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
server_id = "n1"
hostname = "mx1.example.test"
store = "sqlite:/tmp/x.db"
data_dir = "/tmp/mf"
bind = "127.0.0.2"
port_offset = 10000
trusted_proxies = ["127.0.0.0/8", "::1"]
"#;

    fn error_of(text: &str) -> String {
        NodeConfig::parse(text, "node.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn good_file() {
        let c = NodeConfig::parse(GOOD, "node.toml").unwrap();
        assert_eq!(c.server_id, "n1");
        assert_eq!(c.port(25), 10025);
        assert_eq!(c.blobs_spec(), "fs:/tmp/mf/blobs");
        assert_eq!(c.log_dir(), PathBuf::from("/tmp/mf/logs"));
    }

    #[test]
    fn master_mode_defaults_to_on_and_can_be_turned_off() {
        assert!(NodeConfig::parse(GOOD, "node.toml").unwrap().master);
        let off = NodeConfig::parse(&format!("{GOOD}master = false\n"), "node.toml").unwrap();
        assert!(!off.master);
        let e = error_of(&format!("{GOOD}master = \"no\"\n"));
        assert!(e.contains("node.toml: key `master`"), "{e}");
    }

    #[test]
    fn unknown_key_is_named() {
        let e = error_of(&format!("{GOOD}\nlisten_adress = \"x\"\n"));
        assert!(
            e.contains("node.toml") && e.contains("listen_adress"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_is_named() {
        let e = error_of(&GOOD.replace("port_offset = 10000", "port_offset = \"ten\""));
        assert!(e.contains("node.toml: key `port_offset`"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        for (from, to, key) in [
            ("server_id = \"n1\"", "server_id = \"N_1\"", "server_id"),
            (
                "server_id = \"n1\"",
                "server_id = \"toolongid\"",
                "server_id",
            ),
            (
                "store = \"sqlite:/tmp/x.db\"",
                "store = \"mysql://x\"",
                "store",
            ),
            ("bind = \"127.0.0.2\"", "bind = \"localhost\"", "bind"),
            ("\"::1\"", "\"10.0.0.0/33\"", "trusted_proxies[1]"),
            (
                "hostname = \"mx1.example.test\"",
                "hostname = \"mx 1\"",
                "hostname",
            ),
        ] {
            let e = error_of(&GOOD.replace(from, to));
            assert!(e.contains(&format!("key `{key}`")), "{to}: {e}");
        }
        let e = error_of(&format!("{GOOD}\nblobs = \"s3:bucket\"\n"));
        assert!(e.contains("key `blobs`"), "{e}");
        for bad in ["lots", "17M"] {
            let e = error_of(&format!("{GOOD}\nblobs_inline_max = \"{bad}\"\n"));
            assert!(e.contains("key `blobs_inline_max`"), "{bad}: {e}");
        }
    }

    #[test]
    fn blobs_inline_max_is_a_size() {
        let inline = |extra: &str| {
            NodeConfig::parse(&format!("{GOOD}\n{extra}\n"), "n")
                .unwrap()
                .blobs_inline_max()
        };
        // Default: 64K with the default blob directory, none with one the file names.
        assert_eq!(inline(""), 64 * 1024);
        assert_eq!(inline("blobs = \"fs:/srv/blobs\""), 0);
        assert_eq!(
            inline("blobs = \"fs:/srv/blobs\"\nblobs_inline_max = \"32K\""),
            32 * 1024
        );
        assert_eq!(inline("blobs_inline_max = \"0\""), 0);
    }

    #[test]
    fn advertise_names_where_a_wildcard_listener_is_reached() {
        let with = |extra: &str| {
            NodeConfig::parse(
                &GOOD.replace("bind = \"127.0.0.2\"", &format!("bind = \"*\"\n{extra}")),
                "n",
            )
        };
        let wild4: SocketAddr = "0.0.0.0:25".parse().unwrap();
        let wild6: SocketAddr = "[::]:993".parse().unwrap();
        // Nothing advertised: unchanged (and a specific address is always itself).
        let c = with("").unwrap();
        assert_eq!(c.advertised(wild6), wild6);
        let c = with("advertise = [\"10.0.0.11\", \"2001:db8::11\"]").unwrap();
        assert_eq!(c.advertised(wild4), "10.0.0.11:25".parse().unwrap());
        assert_eq!(c.advertised(wild6), "[2001:db8::11]:993".parse().unwrap());
        let specific: SocketAddr = "192.0.2.7:143".parse().unwrap();
        assert_eq!(c.advertised(specific), specific);
        // Only IPv4 advertised: the IPv6 wildcard (which also takes IPv4) is reported there.
        let c = with("advertise = \"10.0.0.11\"").unwrap();
        assert_eq!(c.advertised(wild6), "10.0.0.11:993".parse().unwrap());
        for bad in [
            "advertise = \"*\"",
            "advertise = \"0.0.0.0\"",
            "advertise = \"db1\"",
        ] {
            let e = with(bad).unwrap_err().to_string();
            assert!(e.contains("advertise"), "{bad}: {e}");
        }
    }

    #[test]
    fn bind_is_one_address_a_list_or_all() {
        let bind = |v: &str| {
            NodeConfig::parse(
                &GOOD.replace("bind = \"127.0.0.2\"", &format!("bind = {v}")),
                "n",
            )
            .map(|c| c.bind)
        };
        assert_eq!(
            bind("\"::1\"").unwrap(),
            Bind::from("::1".parse::<IpAddr>().unwrap())
        );
        assert_eq!(bind("\"*\"").unwrap(), Bind::All);
        assert_eq!(
            bind("[\"127.0.0.2\", \"::1\"]").unwrap(),
            Bind::Addresses(vec!["127.0.0.2".parse().unwrap(), "::1".parse().unwrap()])
        );
        for bad in [
            "[]",
            "[\"*\"]",
            "[\"::1\", \"::1\"]",
            "[\"127.0.0.1\", \"x\"]",
            "7",
        ] {
            let e = bind(bad).unwrap_err().to_string();
            assert!(e.contains("key `bind"), "{bad}: {e}");
        }
        let c =
            NodeConfig::parse(&GOOD.replace("bind = \"127.0.0.2\"", "bind = \"*\""), "n").unwrap();
        assert_eq!(
            c.listen_addrs(Port::On(25)),
            vec!["[::]:10025".parse().unwrap()]
        );
        // No bind at all: loopback, as before lists were possible.
        let c = NodeConfig::parse(&GOOD.replace("bind = \"127.0.0.2\"", ""), "n").unwrap();
        assert_eq!(
            c.listen_addrs(Port::On(25)),
            vec!["127.0.0.1:10025".parse().unwrap()]
        );
    }

    #[test]
    fn ports_move_or_turn_off() {
        let c = NodeConfig::parse(
            &format!("{GOOD}\n[ports]\nsmtp = 2525\nsmtps = false\nimap = false\n"),
            "n",
        )
        .unwrap();
        assert_eq!(c.ports.smtp, Port::On(2525));
        assert_eq!(c.ports.submissions, Port::Off);
        assert_eq!(c.ports.imap, Port::Off);
        assert_eq!(c.ports.imaps, Port::On(993));
        assert_eq!(
            c.listen_addrs(c.ports.smtp),
            vec!["127.0.0.2:12525".parse().unwrap()]
        );
        assert!(c.listen_addrs(c.ports.imap).is_empty());
        // 465 is on unless turned off (RFC 8314).
        let d = NodeConfig::parse(GOOD, "n").unwrap();
        assert_eq!(d.ports.submissions, Port::On(465));
        for (bad, key) in [
            ("pop3 = 0", "ports.pop3"),
            ("pop3 = true", "ports.pop3"),
            ("pop3 = 70000", "ports.pop3"),
            ("pop3 = \"110\"", "ports.pop3"),
            ("imap = 60000", "ports.imap"),
            ("smtpd = 25", "ports"),
        ] {
            let e = error_of(&format!("{GOOD}\n[ports]\n{bad}\n"));
            assert!(e.contains(&format!("key `{key}")), "{bad}: {e}");
        }
    }

    #[test]
    fn log_section() {
        let c = NodeConfig::parse(GOOD, "n").unwrap();
        assert_eq!(c.log.keep_days, log::DEFAULT_KEEP_DAYS);
        assert_eq!(c.log.max_size_bytes(), None);
        let c = NodeConfig::parse(
            &format!("{GOOD}\n[log]\nkeep_days = 7\nmax_size = \"100M\"\nper_service = true\nsyslog = true\nsyslog_socket = \"/run/x.sock\"\n"),
            "n",
        )
        .unwrap();
        assert_eq!(c.log.keep_days, 7);
        assert_eq!(c.log.max_size_bytes(), Some(100 << 20));
        assert!(c.log.per_service && c.log.syslog);
        for (bad, key) in [
            ("max_size = \"lots\"", "log.max_size"),
            ("max_size = \"1K\"", "log.max_size"),
            ("keep_days = -1", "log.keep_days"),
            ("keep_days = 100000", "log.keep_days"),
            ("syslog = \"yes\"", "log.syslog"),
            ("rotate = 1", "log"),
        ] {
            let e = error_of(&format!("{GOOD}\n[log]\n{bad}\n"));
            assert!(e.contains(&format!("key `{key}")), "{bad}: {e}");
        }
    }

    #[test]
    fn missing_key_is_named() {
        let e = error_of(&GOOD.replace("hostname = \"mx1.example.test\"", ""));
        assert!(e.contains("hostname"), "{e}");
    }
}
