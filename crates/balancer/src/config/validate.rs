//! Checking the file as written into a [`Config`]: every value parsed, every default filled in,
//! every problem named by its key.

use super::*;

pub(super) fn check(raw: FileConfig, text: &str, file: &str) -> Result<Config, BalancerError> {
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
