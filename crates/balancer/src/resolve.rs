//! Server host names: resolved before the balancer starts (a name that does not resolve then is
//! an error naming its key, as HAProxy fails at start by default), and again every
//! `resolve_interval` in a background task that never blocks a connection: a new address is
//! stored into the server (connections and health checks read it on their next use) and the
//! snapshot rebuilt. A failed resolution keeps the last address. A name that first appears in a
//! reloaded file is resolved within a second of the reload; until then its server takes no
//! client (its state is `unresolved`).
//!
//! Of a name's addresses the current one is kept while it is still among them; otherwise the
//! first the system resolver returns is taken.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::balancer::Inner;
use crate::clock::now_ms;
use crate::config::{Config, ServerHost};
use crate::error::BalancerError;
use crate::server::ServerRt;

/// How long one resolution may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a name that has no address yet is tried again.
const UNRESOLVED_RETRY: Duration = Duration::from_secs(1);

/// Resolves `name` with the system resolver (off the runtime's worker threads).
pub async fn lookup(name: &str) -> Result<Vec<IpAddr>, String> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, 0))).await {
        Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok(addrs)) => {
            let ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            if ips.is_empty() {
                Err("no address".into())
            } else {
                Ok(ips)
            }
        }
    }
}

/// The address to use out of `ips`: `current` if it is still there, else the first.
fn choose(current: Option<IpAddr>, ips: &[IpAddr]) -> Option<IpAddr> {
    match current {
        Some(c) if ips.contains(&c) => Some(c),
        _ => ips.first().copied(),
    }
}

/// Resolves every host name of `config` at once; the first that fails is an error naming its
/// key (`service[i].server[j].address`).
pub async fn resolve_all(config: &Config) -> Result<HashMap<String, IpAddr>, BalancerError> {
    resolve_all_with(config, |name| async move { lookup(&name).await }).await
}

/// [`resolve_all`] with the given lookup function.
async fn resolve_all_with<F, Fut>(
    config: &Config,
    lookup: F,
) -> Result<HashMap<String, IpAddr>, BalancerError>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<IpAddr>, String>> + Send + 'static,
{
    let mut keys: HashMap<String, String> = HashMap::new();
    for (i, svc) in config.services.iter().enumerate() {
        for (j, s) in svc.servers.iter().enumerate() {
            if let ServerHost::Name(n) = &s.host {
                keys.entry(n.clone())
                    .or_insert_with(|| format!("service[{i}].server[{j}].address"));
            }
        }
    }
    let mut lookups = tokio::task::JoinSet::new();
    for name in keys.keys().cloned() {
        let fut = lookup(name.clone());
        lookups.spawn(async move { (name, fut.await) });
    }
    let mut out = HashMap::new();
    let mut failed: Option<(String, String)> = None;
    while let Some(joined) = lookups.join_next().await {
        let (name, r) = joined.map_err(|e| BalancerError::Api(e.to_string()))?;
        match r {
            Ok(ips) => {
                if let Some(ip) = choose(None, &ips) {
                    out.insert(name, ip);
                }
            }
            Err(e) => {
                let key = keys.get(&name).cloned().unwrap_or_default();
                // Report the one that comes first in the file.
                if failed.as_ref().is_none_or(|(k, _)| key < *k) {
                    failed = Some((key, format!("{name:?} does not resolve: {e}")));
                }
            }
        }
    }
    if let Some((key, problem)) = failed {
        return Err(BalancerError::Config {
            file: config.file.clone(),
            key,
            problem,
        });
    }
    Ok(out)
}

/// Starts the task that resolves host names again: every second it looks for servers whose
/// time has come (`resolve_interval`, or at once for one never resolved), and resolves each
/// name in a task of its own.
pub(crate) fn spawn(inner: &Arc<Inner>, token: CancellationToken) {
    let weak = Arc::downgrade(inner);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(inner) = weak.upgrade() else { return };
            let now = now_ms();
            let mut due: HashMap<String, Vec<(Arc<ServerRt>, Duration)>> = HashMap::new();
            for svc in &inner.snap.load().services {
                for s in &svc.servers {
                    let ServerHost::Name(name) = &s.host else {
                        continue;
                    };
                    let at = s.resolve_at_ms.load(std::sync::atomic::Ordering::Relaxed);
                    if now < at {
                        continue;
                    }
                    // Not again while this lookup runs; `resolve_one` sets the next time.
                    s.resolve_at_ms.store(
                        now + (LOOKUP_TIMEOUT + UNRESOLVED_RETRY).as_millis() as u64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    due.entry(name.clone())
                        .or_default()
                        .push((s.clone(), svc.cfg.resolve_interval));
                }
            }
            drop(inner);
            for (name, servers) in due {
                let weak = weak.clone();
                tokio::spawn(async move {
                    let r = lookup(&name).await;
                    resolve_one(&name, r, &servers, &weak);
                });
            }
        }
    });
}

/// Applies one resolution of `name` (`r`) to the servers that use it, and schedules the next:
/// after the service's `resolve_interval`, or within a second for a server still without an
/// address.
fn resolve_one(
    name: &str,
    r: Result<Vec<IpAddr>, String>,
    servers: &[(Arc<ServerRt>, Duration)],
    weak: &Weak<Inner>,
) {
    let now = now_ms();
    let mut changed = false;
    match &r {
        Err(e) => {
            let kept: Vec<String> = servers.iter().map(|(s, _)| s.address_text()).collect();
            tracing::warn!(host = %name, error = %e, servers = ?kept,
                "host name does not resolve; servers keep their last address");
        }
        Ok(ips) => {
            for (s, _) in servers {
                let old = s.ip();
                if let Some(ip) = choose(old, ips)
                    && s.set_resolved(ip)
                {
                    changed = true;
                    tracing::info!(service = %s.service, server = %s.name, host = %name,
                        old = ?old, new = %ip, "server address changed");
                }
            }
        }
    }
    for (s, interval) in servers {
        let next = if s.ip().is_some() {
            *interval
        } else {
            UNRESOLVED_RETRY
        };
        s.resolve_at_ms.store(
            now + next.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    if let Some(inner) = weak.upgrade() {
        if let Ok(ips) = &r {
            inner.remember_resolution(name, ips);
        }
        if changed {
            inner.rebuild();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_address_is_kept_while_it_is_listed() {
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        assert_eq!(choose(None, &[a, b]), Some(a));
        assert_eq!(choose(Some(b), &[a, b]), Some(b));
        assert_eq!(choose(Some(b), &[a]), Some(a));
        assert_eq!(choose(Some(b), &[]), None);
    }

    const TEXT: &str = "[[service]]\nname = \"s\"\nlisten = [\"127.0.0.1:0\"]\n\
                    [[service.server]]\nname = \"a\"\naddress = \"localhost:25\"\n\
                    [[service.server]]\nname = \"b\"\naddress = \"mx.example:25\"\n";

    #[tokio::test]
    async fn a_name_that_does_not_resolve_names_its_key() {
        // A lookup of our own: the test sends no DNS query.
        let fake = |name: String| async move {
            match name.as_str() {
                "localhost" => Ok(vec!["127.0.0.1".parse().unwrap()]),
                _ => Err("Name or service not known".to_string()),
            }
        };
        let c = Config::parse(TEXT, "b.toml").unwrap();
        let e = resolve_all_with(&c, fake).await.unwrap_err().to_string();
        assert!(
            e.contains("service[0].server[1].address") && e.contains("mx.example"),
            "{e}"
        );
        let c = Config::parse(&TEXT.replace("mx.example", "LocalHost"), "b.toml").unwrap();
        let got = resolve_all_with(&c, fake).await.unwrap();
        assert_eq!(got.len(), 1, "one name: {got:?}");
    }

    #[tokio::test]
    async fn localhost_resolves_to_loopback() {
        let c = Config::parse(&TEXT.replace("mx.example", "localhost"), "b.toml").unwrap();
        let got = resolve_all(&c).await.unwrap();
        assert!(got["localhost"].is_loopback(), "{got:?}");
    }

    #[test]
    fn a_new_resolution_moves_the_server_and_a_failure_keeps_it() {
        let host = ServerHost::Name("mx.example".into());
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let s = Arc::new(ServerRt::with_host("s", "n1", host, None, Some(25), 1));
        assert_eq!(s.state_name(), "unresolved");
        let servers = vec![(s.clone(), Duration::from_secs(60))];
        let none = Weak::new();
        resolve_one("mx.example", Err("timed out".into()), &servers, &none);
        assert_eq!(s.ip(), None);
        let soon = s.resolve_at_ms.load(std::sync::atomic::Ordering::Relaxed);
        assert!(soon <= now_ms() + 1000, "retried within a second");
        resolve_one("mx.example", Ok(vec![a, b]), &servers, &none);
        assert_eq!(s.addr(143), Some("127.0.0.2:25".parse().unwrap()));
        assert_eq!(s.address_text(), "mx.example:25 (127.0.0.2)");
        let later = s.resolve_at_ms.load(std::sync::atomic::Ordering::Relaxed);
        assert!(later >= now_ms() + 59_000, "next after the interval");
        resolve_one("mx.example", Ok(vec![b, a]), &servers, &none);
        assert_eq!(s.ip(), Some(a), "kept while still listed");
        resolve_one("mx.example", Ok(vec![b]), &servers, &none);
        assert_eq!(s.ip(), Some(b));
        resolve_one("mx.example", Err("SERVFAIL".into()), &servers, &none);
        assert_eq!(s.ip(), Some(b), "a failure keeps the last address");
        // An IP server never moves.
        let fixed = ServerRt::new("s", "n2", a, None, 1);
        assert!(!fixed.set_resolved(b));
        assert_eq!(fixed.ip(), Some(a));
    }
}
