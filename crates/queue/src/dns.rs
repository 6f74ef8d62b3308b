//! Where to connect: MX lookup with the A/AAAA fallback of RFC 5321 §5.1, null MX (RFC 7505),
//! and plain host names, through a hickory resolver that uses `queue.dns_servers` when set.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use rand::seq::SliceRandom;

use crate::outcome::Failure;

/// One address to try, with the host name it belongs to (for TLS and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub host: String,
    pub addr: SocketAddr,
}

/// Keeps one resolver per configured server list, rebuilt when the list changes.
#[derive(Default)]
pub struct Resolvers {
    current: Mutex<Option<(Vec<SocketAddr>, TokioResolver)>>,
}

impl Resolvers {
    /// The resolver for `servers` (empty = the system configuration).
    pub fn get(&self, servers: &[SocketAddr]) -> Result<TokioResolver, Failure> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((s, r)) = current.as_ref()
            && s.as_slice() == servers
        {
            return Ok(r.clone());
        }
        let resolver = build(servers).map_err(|e| {
            Failure::temporary("4.4.3", format!("cannot set up the DNS resolver: {e}"))
        })?;
        *current = Some((servers.to_vec(), resolver.clone()));
        Ok(resolver)
    }
}

fn build(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let provider = TokioRuntimeProvider::default();
    let mut builder = if servers.is_empty() {
        TokioResolver::builder(provider).map_err(|e| e.to_string())?
    } else {
        let name_servers = servers
            .iter()
            .map(|sa| {
                let mut udp = ConnectionConfig::udp();
                udp.port = sa.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = sa.port();
                NameServerConfig::new(sa.ip(), true, vec![udp, tcp])
            })
            .collect();
        let mut b = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(name_servers),
            provider,
        );
        *b.options_mut() = ResolverOpts::default();
        b
    };
    let opts = builder.options_mut();
    opts.timeout = Duration::from_secs(5);
    opts.attempts = 2;
    opts.ndots = 0;
    builder.build().map_err(|e| e.to_string())
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// The addresses of one host name (or IP literal) on `port`.
pub async fn host_hops(
    resolver: &TokioResolver,
    host: &str,
    port: u16,
) -> Result<Vec<Hop>, Failure> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![Hop {
            host: ip.to_string(),
            addr: SocketAddr::new(ip, port),
        }]);
    }
    match resolver.lookup_ip(fqdn(host)).await {
        Ok(ips) => {
            let hops: Vec<Hop> = ips
                .iter()
                .map(|ip| Hop {
                    host: host.to_string(),
                    addr: SocketAddr::new(ip, port),
                })
                .collect();
            if hops.is_empty() {
                Err(Failure::permanent(
                    "5.1.2",
                    format!("{host} has no address records"),
                ))
            } else {
                Ok(hops)
            }
        }
        Err(e) if e.is_no_records_found() => Err(Failure::permanent(
            "5.1.2",
            format!("{host}: no such host ({e})"),
        )),
        Err(e) => Err(Failure::temporary(
            "4.4.3",
            format!("DNS lookup of {host} failed: {e}"),
        )),
    }
}

/// The hosts to try for mail to `domain`, best first: its MX hosts by preference (equal ones
/// shuffled), or the domain itself when it has no MX records. A null MX or a domain that does
/// not exist is a permanent failure; a DNS failure is a temporary one.
pub async fn mx_hops(
    resolver: &TokioResolver,
    domain: &str,
    port: u16,
) -> Result<Vec<Hop>, Failure> {
    if domain.starts_with('[') {
        return host_hops(resolver, domain, port).await;
    }
    let lookup = match resolver.mx_lookup(fqdn(domain)).await {
        Ok(l) => l,
        Err(e) if e.is_nx_domain() => {
            return Err(Failure::permanent(
                "5.1.2",
                format!("domain {domain} does not exist"),
            ));
        }
        Err(e) if e.is_no_records_found() => {
            // RFC 5321 §5.1: no MX records, so the domain itself is the implicit MX.
            return host_hops(resolver, domain, port).await;
        }
        Err(e) => {
            return Err(Failure::temporary(
                "4.4.3",
                format!("MX lookup of {domain} failed: {e}"),
            ));
        }
    };
    let mut mxs: Vec<(u16, String)> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::MX(mx) => Some((
                mx.preference,
                mx.exchange
                    .to_ascii()
                    .trim_end_matches('.')
                    .to_ascii_lowercase(),
            )),
            _ => None,
        })
        .collect();
    if mxs.is_empty() {
        return host_hops(resolver, domain, port).await;
    }
    if mxs.len() == 1 && mxs[0].1.is_empty() {
        return Err(Failure::permanent(
            "5.1.10",
            format!("{domain} accepts no mail (null MX)"),
        ));
    }
    mxs.retain(|(_, host)| !host.is_empty());
    mxs.shuffle(&mut rand::thread_rng());
    mxs.sort_by_key(|(pref, _)| *pref);
    let mut hops = Vec::new();
    let mut last = None;
    for (_, host) in &mxs {
        match host_hops(resolver, host, port).await {
            Ok(h) => hops.extend(h),
            Err(e) => {
                tracing::debug!(domain, mx = %host, "MX host unusable: {}", e.diagnostic);
                last = Some(e);
            }
        }
    }
    if hops.is_empty() {
        let why = last.map(|f| f.diagnostic).unwrap_or_default();
        return Err(Failure::temporary(
            "4.4.4",
            format!("no usable MX host for {domain}: {why}"),
        ));
    }
    Ok(hops)
}
