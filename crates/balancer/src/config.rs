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

fn check(raw: FileConfig, text: &str, file: &str) -> Result<Config, BalancerError> {
    let err = |key: String, problem: String| BalancerError::Config {
        file: file.to_string(),
        key,
        problem,
    };
    let admin_allow_empty = raw.admin.as_ref().is_none_or(|a| a.allow.is_empty());
    let admin = match raw.admin {
        None => None,
        Some(a) => Some(AdminConfig {
            listen: a
                .listen
                .parse()
                .map_err(|_| err("admin.listen".into(), bad_addr(&a.listen)))?,
            access: Access::new(&a.allow, &a.deny)
                .map_err(|(k, p)| err(format!("admin.{k}"), p))?,
            token: match a.token {
                Some(t) if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) => {
                    return Err(err(
                        "admin.token".into(),
                        "must be at least 16 printable characters without spaces".into(),
                    ));
                }
                t => t,
            },
        }),
    };
    if let Some(a) = &admin
        && !a.listen.ip().is_loopback()
        && a.token.is_none()
        && admin_allow_empty
    {
        return Err(err(
            "admin.listen".into(),
            format!(
                "{} is not a loopback address: the runtime API can change servers and reload, \
                 so set `admin.token` or an `admin.allow` list (or listen on 127.0.0.1 or ::1)",
                a.listen
            ),
        ));
    }
    let mut names = HashSet::new();
    let mut listens: HashSet<SocketAddr> = HashSet::new();
    // Port 0 (tests: "any free port") cannot clash with a service listener.
    if let Some(a) = admin.as_ref().filter(|a| a.listen.port() != 0) {
        listens.insert(a.listen);
    }
    let mut services = Vec::with_capacity(raw.service.len());
    for (i, s) in raw.service.into_iter().enumerate() {
        let k = |rest: &str| format!("service[{i}].{rest}");
        check_name(&s.name).map_err(|p| err(k("name"), p))?;
        if !names.insert(s.name.clone()) {
            return Err(err(
                k("name"),
                format!("{:?} is used by two services", s.name),
            ));
        }
        if s.listen.is_empty() {
            return Err(err(k("listen"), "needs at least one address".into()));
        }
        let mut listen = Vec::new();
        for (j, l) in s.listen.iter().enumerate() {
            let a: SocketAddr = l
                .parse()
                .map_err(|_| err(k(&format!("listen[{j}]")), bad_addr(l)))?;
            if !listens.insert(a) {
                return Err(err(
                    k(&format!("listen[{j}]")),
                    format!("{a} is already used by another listener"),
                ));
            }
            listen.push(a);
        }
        let tls = match &s.tls {
            None => None,
            Some(t) => Some(crate::tls::check(t, s.mode).map_err(|(kk, p)| err(k(&kk), p))?),
        };
        let mut redirect_http = Vec::new();
        for (j, l) in s.redirect_http.iter().enumerate() {
            let key = k(&format!("redirect_http[{j}]"));
            if s.mode != Mode::Http || tls.is_none() {
                return Err(err(key, "needs mode = \"http\" and a tls table".into()));
            }
            let a: SocketAddr = l.parse().map_err(|_| err(key.clone(), bad_addr(l)))?;
            if !listens.insert(a) {
                return Err(err(key, format!("{a} is already used by another listener")));
            }
            redirect_http.push(a);
            listen.push(a);
        }
        let (persistence, persistence_timeout, cookie_name) = match &s.persistence {
            None => (
                PersistenceKind::None,
                Duration::from_secs(3600),
                DEFAULT_COOKIE.into(),
            ),
            Some(p) => {
                let timeout = match &p.timeout {
                    None => Duration::from_secs(3600),
                    Some(t) => parse_duration(t).map_err(|e| err(k("persistence.timeout"), e))?,
                };
                if p.kind == PersistenceKind::Cookie && s.mode != Mode::Http {
                    return Err(err(
                        k("persistence.kind"),
                        "\"cookie\" needs mode = \"http\"".into(),
                    ));
                }
                if p.cookie.is_some() && p.kind != PersistenceKind::Cookie {
                    return Err(err(
                        k("persistence.cookie"),
                        "only meaningful with kind = \"cookie\"".into(),
                    ));
                }
                let cookie = p.cookie.clone().unwrap_or_else(|| DEFAULT_COOKIE.into());
                if cookie.is_empty()
                    || !cookie
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(err(
                        k("persistence.cookie"),
                        format!("{cookie:?} is not a cookie name (letters, digits, _ and -)"),
                    ));
                }
                (p.kind, timeout, cookie)
            }
        };
        let t = s.timeouts.clone().unwrap_or(FileTimeouts {
            connect: None,
            client: None,
            server: None,
            header: None,
        });
        let dur = |v: &Option<String>, key: &str, default: Duration| match v {
            None => Ok(default),
            Some(v) => parse_duration(v).map_err(|e| err(k(key), e)),
        };
        let connect_timeout = dur(&t.connect, "timeouts.connect", DEFAULT_CONNECT_TIMEOUT)?;
        let client_default = match s.mode {
            Mode::Tcp => DEFAULT_TCP_IDLE_TIMEOUT,
            Mode::Http => DEFAULT_HTTP_CLIENT_TIMEOUT,
        };
        let client_timeout = dur(&t.client, "timeouts.client", client_default)?;
        let server_timeout = dur(&t.server, "timeouts.server", DEFAULT_TCP_IDLE_TIMEOUT)?;
        if t.header.is_some() && s.mode != Mode::Http {
            return Err(err(
                k("timeouts.header"),
                "only meaningful with mode = \"http\"".into(),
            ));
        }
        let header_timeout = dur(&t.header, "timeouts.header", DEFAULT_HTTP_HEADER_TIMEOUT)?;
        if header_timeout.is_zero() {
            return Err(err(k("timeouts.header"), "must be more than zero".into()));
        }
        let max_connections = s.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            return Err(err(k("max_connections"), "must be at least 1".into()));
        }
        let access = Access::new(&s.allow, &s.deny).map_err(|(kk, p)| err(k(&kk), p))?;
        let health = match &s.health {
            None => Some(HealthConfig::default_tcp()),
            Some(FileHealthSetting::Off) => None,
            Some(FileHealthSetting::On(h)) => {
                Some(check_health(h, s.mode).map_err(|(kk, p)| err(k(&kk), p))?)
            }
        };
        if s.quick_ack && s.mode != Mode::Tcp {
            return Err(err(
                k("quick_ack"),
                "only meaningful with mode = \"tcp\"".into(),
            ));
        }
        let slow_start = dur(&s.slow_start, "slow_start", Duration::ZERO)?;
        // "0s" or "off" turns keepalive off.
        let tcp_keepalive = match s.tcp_keepalive.as_deref().map(str::trim) {
            None => Some(DEFAULT_TCP_KEEPALIVE),
            Some("off") => None,
            Some(v) => {
                let d = parse_duration(v).map_err(|e| err(k("tcp_keepalive"), e))?;
                if d.is_zero() {
                    None
                } else if d < Duration::from_secs(1) || d > Duration::from_secs(32_767) {
                    return Err(err(
                        k("tcp_keepalive"),
                        format!("{v:?} is out of range (1s to 32767s, or \"off\")"),
                    ));
                } else {
                    Some(d)
                }
            }
        };
        let resolve_interval = dur(
            &s.resolve_interval,
            "resolve_interval",
            DEFAULT_RESOLVE_INTERVAL,
        )?;
        if resolve_interval < Duration::from_secs(1) {
            return Err(err(k("resolve_interval"), "must be at least 1s".into()));
        }
        let cluster_service = match (s.servers.as_deref(), &s.cluster_service) {
            (None, None) => None,
            (Some("cluster"), Some(node_service)) => {
                if raw.cluster.is_none() {
                    return Err(err(
                        k("servers"),
                        "\"cluster\" needs a [cluster] section with the store's URL".into(),
                    ));
                }
                if !s.server.is_empty() {
                    return Err(err(
                        k("server"),
                        "a service with servers = \"cluster\" takes its servers from the \
                         cluster, not from [[service.server]]"
                            .into(),
                    ));
                }
                check_name(node_service).map_err(|p| err(k("cluster_service"), p))?;
                Some(node_service.clone())
            }
            (Some("cluster"), None) => {
                return Err(err(
                    k("cluster_service"),
                    "servers = \"cluster\" needs the node service it fronts, e.g. \
                     cluster_service = \"imap\""
                        .into(),
                ));
            }
            (Some(other), _) => {
                return Err(err(
                    k("servers"),
                    format!(
                        "{other:?}: the only value is \"cluster\" (or list [[service.server]])"
                    ),
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    k("cluster_service"),
                    "only meaningful with servers = \"cluster\"".into(),
                ));
            }
        };
        if s.server.is_empty() && cluster_service.is_none() {
            return Err(err(
                k("server"),
                "needs at least one [[service.server]] (or servers = \"cluster\")".into(),
            ));
        }
        let mut servers = Vec::with_capacity(s.server.len());
        let mut server_names = HashSet::new();
        for (j, srv) in s.server.iter().enumerate() {
            let sk = |rest: &str| k(&format!("server[{j}].{rest}"));
            check_name(&srv.name).map_err(|p| err(sk("name"), p))?;
            if !server_names.insert(srv.name.clone()) {
                return Err(err(
                    sk("name"),
                    format!("{:?} is used by two servers of this service", srv.name),
                ));
            }
            let (host, port) =
                parse_server_address(&srv.address).map_err(|p| err(sk("address"), p))?;
            let weight = srv.weight.unwrap_or(DEFAULT_WEIGHT);
            if weight > MAX_WEIGHT {
                return Err(err(
                    sk("weight"),
                    format!("{weight} is too large (0 to {MAX_WEIGHT})"),
                ));
            }
            servers.push(ServerConfig {
                name: srv.name.clone(),
                host,
                port,
                weight,
            });
        }
        services.push(Arc::new(ServiceConfig {
            name: s.name,
            listen,
            mode: s.mode,
            scheduler: s.scheduler,
            persistence,
            persistence_timeout,
            cookie_name,
            connect_timeout,
            client_timeout,
            server_timeout,
            header_timeout,
            max_connections,
            max_connections_set: s.max_connections.is_some(),
            proxy_protocol: s.proxy_protocol,
            access,
            health,
            slow_start,
            tcp_keepalive,
            resolve_interval,
            reject: s.reject,
            relay: s.relay,
            quick_ack: s.quick_ack,
            tls,
            redirect_http,
            cluster_service,
            servers,
        }));
    }
    if services.is_empty() {
        return Err(err(
            "service".into(),
            "needs at least one [[service]]".into(),
        ));
    }
    if let Some(p) = &raw.pair {
        p.validate().map_err(|e| match e {
            mailfleet_ha::HaError::Config { key, message } => err(format!("pair.{key}"), message),
            other => err("pair".into(), other.to_string()),
        })?;
    }
    let stop_timeout = match &raw.stop_timeout {
        None => DEFAULT_STOP_TIMEOUT,
        Some(t) => parse_duration(t).map_err(|e| err("stop_timeout".into(), e))?,
    };
    let cluster = match raw.cluster {
        None => None,
        Some(c) => {
            if c.store.trim().is_empty() {
                return Err(err(
                    "cluster.store".into(),
                    "needs the store's URL (sqlite:PATH or postgres://...)".into(),
                ));
            }
            let name = match c.name {
                Some(n) => {
                    check_name(&n).map_err(|p| err("cluster.name".into(), p))?;
                    n
                }
                None => host_name(),
            };
            Some(ClusterConfig {
                store: c.store,
                name,
            })
        }
    };
    Ok(Config {
        text: text.to_string(),
        file: file.to_string(),
        admin,
        services,
        pair: raw.pair,
        stop_timeout,
        state_file: raw.state_file,
        cluster,
    })
}

fn check_health(h: &FileHealth, mode: Mode) -> Result<HealthConfig, (String, String)> {
    let e = |key: &str, p: String| (format!("health.{key}"), p);
    let dur = |v: &Option<String>, key: &str, default: Duration| match v {
        None => Ok(default),
        Some(v) => match parse_duration(v) {
            Ok(d) if d.is_zero() => Err(e(key, "must be more than zero".into())),
            Ok(d) => Ok(d),
            Err(p) => Err(e(key, p)),
        },
    };
    let interval = dur(&h.interval, "interval", Duration::from_secs(2))?;
    let timeout = dur(&h.timeout, "timeout", Duration::from_secs(1))?;
    let rise = h.rise.unwrap_or(2);
    let fall = h.fall.unwrap_or(3);
    if rise == 0 || rise > 1000 {
        return Err(e("rise", format!("{rise} is out of range (1 to 1000)")));
    }
    if fall == 0 || fall > 1000 {
        return Err(e("fall", format!("{fall} is out of range (1 to 1000)")));
    }
    if h.port == Some(0) {
        return Err(e("port", "must not be 0".into()));
    }
    if h.check != CheckKind::Http {
        if h.path.is_some() {
            return Err(e("path", "only meaningful with check = \"http\"".into()));
        }
        if h.expect.is_some() {
            return Err(e("expect", "only meaningful with check = \"http\"".into()));
        }
        if h.host.is_some() {
            return Err(e("host", "only meaningful with check = \"http\"".into()));
        }
    }
    let path = h.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') || path.len() > 1024 || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(e(
            "path",
            format!("{path:?} must start with / and hold no spaces or control characters"),
        ));
    }
    let expect = h.expect.unwrap_or(200);
    if !(100..=599).contains(&expect) {
        return Err(e(
            "expect",
            format!("{expect} is not an HTTP status (100 to 599)"),
        ));
    }
    if let Some(host) = &h.host
        && (host.is_empty() || host.len() > 255 || host.bytes().any(|b| b <= b' ' || b == 0x7f))
    {
        return Err(e("host", format!("{host:?} is not a host name")));
    }
    let _ = mode;
    Ok(HealthConfig {
        check: h.check,
        interval,
        rise,
        fall,
        timeout,
        port: h.port,
        path,
        expect,
        host: h.host.clone(),
    })
}

/// This machine's host name (`balancer` if it cannot be read or is not a valid name).
fn host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|n| n.trim().to_string())
        .unwrap_or_default();
    if check_name(&name).is_ok() {
        name
    } else {
        "balancer".into()
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(format!(
            "{name:?} must be 1 to 64 characters of letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

fn bad_addr(v: &str) -> String {
    format!("{v:?} is not an address with a port (e.g. \"127.0.0.1:143\" or \"[::1]:143\")")
}

/// `IP:PORT`, `[IPv6]:PORT`, `HOST:PORT`, or a bare IP or host name (the port the client
/// connected to).
fn parse_server_address(v: &str) -> Result<(ServerHost, Option<u16>), String> {
    if let Ok(a) = v.parse::<SocketAddr>() {
        if a.port() == 0 {
            return Err(format!("{v:?}: port 0 cannot be connected to"));
        }
        return Ok((ServerHost::Ip(a.ip()), Some(a.port())));
    }
    let bare = v.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok((ServerHost::Ip(ip), None));
    }
    let bad = || {
        format!(
            "{v:?} is not an IP address or host name with an optional port \
             (e.g. \"10.0.0.2:143\", \"10.0.0.2\" or \"n1.example.net:143\")"
        )
    };
    let (name, port) = match v.rsplit_once(':') {
        Some((name, port)) => {
            let port: u16 = port.parse().map_err(|_| bad())?;
            if port == 0 {
                return Err(format!("{v:?}: port 0 cannot be connected to"));
            }
            (name, Some(port))
        }
        None => (v, None),
    };
    if !is_host_name(name) {
        return Err(bad());
    }
    Ok((ServerHost::Name(name.to_ascii_lowercase()), port))
}

/// A DNS host name: dot-separated labels of letters, digits and '-' (not at either end of a
/// label), at most 253 characters, and not all digits and dots (that would be a bad IP).
fn is_host_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Durations are written as humantime spells them: "5s", "1h", "15000s", "250ms", "1h 30m".
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    humantime::parse_duration(v.trim())
        .map_err(|e| format!("{v:?} is not a duration like \"5s\", \"250ms\" or \"1h\" ({e})"))
}

#[cfg(test)]
mod tests;
