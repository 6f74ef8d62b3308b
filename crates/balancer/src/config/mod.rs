//! The balancer's configuration file: TOML read strictly, then checked into [`Config`].
//!
//! Two layers: the `File*` structs mirror the file one to one (`deny_unknown_fields`, so a typo is
//! an error), and [`Config`] is the checked result the rest of the crate uses (durations parsed,
//! addresses resolved, access lists compiled, defaults filled in). Every problem names the file,
//! the key (as a path such as `service[0].scheduler`) and what is wrong.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::access::Access;
use crate::error::BalancerError;

// ---------------------------------------------------------------------------------------------
// The file as written.

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    admin: Option<FileAdmin>,
    #[serde(default)]
    service: Vec<FileService>,
    #[serde(default)]
    pair: Option<mailfleet_ha::PairSection>,
    #[serde(default)]
    stop_timeout: Option<String>,
    #[serde(default)]
    state_file: Option<std::path::PathBuf>,
    #[serde(default)]
    cluster: Option<FileCluster>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCluster {
    store: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAdmin {
    listen: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileService {
    name: String,
    listen: Vec<String>,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    scheduler: SchedulerKind,
    #[serde(default)]
    persistence: Option<FilePersistence>,
    #[serde(default)]
    timeouts: Option<FileTimeouts>,
    #[serde(default)]
    max_connections: Option<u64>,
    #[serde(default)]
    proxy_protocol: ProxyProtocol,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    health: Option<FileHealthSetting>,
    #[serde(default)]
    slow_start: Option<String>,
    #[serde(default)]
    tcp_keepalive: Option<String>,
    #[serde(default)]
    resolve_interval: Option<String>,
    #[serde(default)]
    reject: RejectStyle,
    #[serde(default)]
    relay: RelayKind,
    #[serde(default)]
    quick_ack: bool,
    #[serde(default)]
    tls: Option<crate::tls::FileTls>,
    #[serde(default)]
    redirect_http: Vec<String>,
    #[serde(default)]
    server: Vec<FileServer>,
    #[serde(default)]
    servers: Option<String>,
    #[serde(default)]
    cluster_service: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePersistence {
    kind: PersistenceKind,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    cookie: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTimeouts {
    #[serde(default)]
    connect: Option<String>,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    server: Option<String>,
    #[serde(default)]
    header: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHealth {
    check: CheckKind,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    rise: Option<u32>,
    #[serde(default)]
    fall: Option<u32>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    expect: Option<u16>,
    #[serde(default)]
    host: Option<String>,
}

/// `health = { ... }`, or `health = "none"` (no checks: every server counts as up).
#[derive(Debug, Clone)]
enum FileHealthSetting {
    Off,
    On(FileHealth),
}

impl<'de> Deserialize<'de> for FileHealthSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = FileHealthSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table such as { check = \"tcp\" } or the string \"none\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == "none" {
                    Ok(FileHealthSetting::Off)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<Self::Value, A::Error> {
                FileHealth::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(FileHealthSetting::On)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    name: String,
    address: String,
    #[serde(default)]
    weight: Option<u32>,
}

// ---------------------------------------------------------------------------------------------
// Enumerations shared by the file and the checked form.

/// How a service relays: plain TCP, or HTTP/1.1 requests (webmail).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Tcp,
    Http,
}

/// The scheduling algorithm of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedulerKind {
    #[default]
    Roundrobin,
    Wrr,
    Leastconn,
    Wlc,
    Source,
}

/// What keeps a client on the server it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PersistenceKind {
    #[default]
    None,
    SourceIp,
    Cookie,
}

/// Which PROXY protocol header, if any, opens each connection to a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    #[default]
    None,
    V1,
    V2,
}

/// The protocol a health check speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Tcp,
    Smtp,
    Imap,
    Pop3,
    Http,
}

/// What a refused client (denied, service full, no server up) is told before the balancer closes
/// its connection. `none` closes silently, which suits TLS ports; the others send the protocol's
/// "service unavailable" line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RejectStyle {
    #[default]
    None,
    Smtp,
    Imap,
    Pop3,
    Http,
}

/// How bytes are moved between client and server in tcp mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayKind {
    /// Read into a user-space buffer and write it out.
    #[default]
    Copy,
    /// Linux `splice(2)` through a pipe for streams of data, never copying them into user
    /// space; small exchanges are copied (and everything is copied elsewhere than Linux).
    Splice,
}

// ---------------------------------------------------------------------------------------------
// The checked form.

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file's own text (replicated to a passive peer as is).
    pub text: String,
    /// The name errors use for the file.
    pub file: String,
    pub admin: Option<AdminConfig>,
    pub services: Vec<Arc<ServiceConfig>>,
    /// This balancer's half of an active/passive pair.
    pub pair: Option<mailfleet_ha::PairSection>,
    /// How long a soft stop waits for open connections before it closes them.
    pub stop_timeout: Duration,
    /// `state_file` as written (None: unset; empty: off); see `runtime_state::resolve`.
    pub state_file: Option<std::path::PathBuf>,
    /// `[cluster]`: the store whose membership `servers = "cluster"` services follow, and
    /// where this balancer reports its view of its servers.
    pub cluster: Option<ClusterConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The store's URL (`sqlite:PATH` or `postgres://...`).
    pub store: String,
    /// The name this balancer reports under (default: the machine's host name).
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub access: Access,
    /// When set, every request must carry `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: String,
    /// Every address bound for the service: `listen` as written, then the `redirect_http` ones.
    pub listen: Vec<SocketAddr>,
    pub mode: Mode,
    pub scheduler: SchedulerKind,
    pub persistence: PersistenceKind,
    pub persistence_timeout: Duration,
    pub cookie_name: String,
    pub connect_timeout: Duration,
    /// tcp mode: the client side's idle timeout. http mode: how long a client connection may
    /// move no byte while none of its requests waits on a server.
    pub client_timeout: Duration,
    pub server_timeout: Duration,
    /// http mode: how long a request's header may take to arrive whole, counted from when the
    /// balancer starts waiting for it (on a kept-alive connection, from the previous response).
    pub header_timeout: Duration,
    pub max_connections: u64,
    /// Whether the file set `max_connections` (else it is [`DEFAULT_MAX_CONNECTIONS`]); only an
    /// explicit value is refused when the open-file limit cannot hold it (`limits`).
    pub max_connections_set: bool,
    pub proxy_protocol: ProxyProtocol,
    pub access: Access,
    /// None only with `health = "none"`: a service without a `health` key gets
    /// [`HealthConfig::default_tcp`].
    pub health: Option<HealthConfig>,
    pub slow_start: Duration,
    /// TCP keepalive idle time on both sides of every relayed connection (None: off).
    pub tcp_keepalive: Option<Duration>,
    /// How often server host names are resolved again.
    pub resolve_interval: Duration,
    pub reject: RejectStyle,
    pub relay: RelayKind,
    /// tcp mode: every read from a client is acknowledged at once (TCP_QUICKACK) instead of
    /// when the kernel's delayed-ACK timer fires. For protocols whose clients send one command
    /// in several writes without waiting for an answer in between (an IMAP APPEND literal and
    /// its line end, an SMTP body and its final dot): a client with Nagle's algorithm on holds
    /// each such write until the previous one is acknowledged, 40 ms or more on Linux. It costs
    /// a system call per read, and an ACK of its own where the answer would have carried it.
    pub quick_ack: bool,
    /// TLS towards clients (`tls`), certificates loaded.
    pub tls: Option<crate::tls::ServiceTls>,
    /// http mode with TLS: plain HTTP listeners (also in `listen`) answering every request with
    /// a redirect to https.
    pub redirect_http: Vec<SocketAddr>,
    /// With `servers = "cluster"`: the node service (`services[].service` in the nodes'
    /// heartbeats) whose addresses are this service's servers, which then come from the
    /// cluster's membership and are not in the file (`servers` is empty as read).
    pub cluster_service: Option<String>,
    pub servers: Vec<ServerConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub check: CheckKind,
    pub interval: Duration,
    pub rise: u32,
    pub fall: u32,
    pub timeout: Duration,
    pub port: Option<u16>,
    pub path: String,
    pub expect: u16,
    pub host: Option<String>,
}

impl HealthConfig {
    /// The check of a service without a `health` key: a TCP connect every 2 s, rise 2, fall 3
    /// (HAProxy's `check`), 1 s timeout.
    pub fn default_tcp() -> HealthConfig {
        HealthConfig {
            check: CheckKind::Tcp,
            interval: Duration::from_secs(2),
            rise: 2,
            fall: 3,
            timeout: Duration::from_secs(1),
            port: None,
            path: "/".into(),
            expect: 200,
            host: None,
        }
    }
}

/// Where a server is: an IP address, or a host name resolved at start and every
/// `resolve_interval`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServerHost {
    Ip(IpAddr),
    Name(String),
}

impl std::fmt::Display for ServerHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerHost::Ip(ip) => ip.fmt(f),
            ServerHost::Name(n) => f.write_str(n),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub name: String,
    pub host: ServerHost,
    /// None: the port the client connected to (a service listening on several ports).
    pub port: Option<u16>,
    pub weight: u32,
}

impl ServerConfig {
    /// The address to connect to for a client that came in on `listen_port`, when the server
    /// is given by IP address (None for a host name).
    pub fn addr(&self, listen_port: u16) -> Option<SocketAddr> {
        match &self.host {
            ServerHost::Ip(ip) => Some(SocketAddr::new(*ip, self.port.unwrap_or(listen_port))),
            ServerHost::Name(_) => None,
        }
    }
}

/// The largest weight a server may have.
pub const MAX_WEIGHT: u32 = 65_535;
/// The weight a server has when the file gives none.
pub const DEFAULT_WEIGHT: u32 = 100;
/// The cookie that carries the server in http mode when the file names none.
pub const DEFAULT_COOKIE: &str = "MFSERVER";
/// `stop_timeout` when the file gives none.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// `timeouts.connect` when the file gives none.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `timeouts.client` and `timeouts.server` in tcp mode when the file gives none: a mail client
/// may sit idle in an IMAP IDLE for a long time.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// `max_connections` when the file gives none.
pub const DEFAULT_MAX_CONNECTIONS: u64 = 20_000;
/// `tcp_keepalive` when the file gives none (seed 003's 600 s).
pub const DEFAULT_TCP_KEEPALIVE: Duration = Duration::from_secs(600);
/// `resolve_interval` when the file gives none.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(60);
/// `timeouts.header` (http mode only) when the file gives none.
pub const DEFAULT_HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// `timeouts.client` in http mode when the file gives none.
pub const DEFAULT_HTTP_CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

impl Config {
    /// Reads and checks a file.
    pub fn load(path: &Path) -> Result<Config, BalancerError> {
        let file = path.display().to_string();
        let text =
            mailfleet_config::read_config_file(path).map_err(|problem| BalancerError::Read {
                file: file.clone(),
                problem,
            })?;
        Config::parse(&text, &file)
    }

    /// Parses and checks `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, BalancerError> {
        let de = toml::Deserializer::new(text);
        let raw: FileConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let line = inner
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let at = match line {
                Some(l) => format!("{file}:{l}"),
                None => file.to_string(),
            };
            if key.is_empty() || key == "." {
                BalancerError::Config {
                    file: at,
                    key: "(top level)".into(),
                    problem: inner.message().trim().to_string(),
                }
            } else {
                BalancerError::Config {
                    file: at,
                    key,
                    problem: inner.message().trim().to_string(),
                }
            }
        })?;
        check(raw, text, file)
    }
}

#[cfg(test)]
mod tests;
mod validate;

use validate::check;
pub use validate::parse_duration;
