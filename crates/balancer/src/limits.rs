//! The open-file limit: raised to the hard limit at start, and the services' `max_connections`
//! fitted into it.
//!
//! Each relayed connection holds two descriptors (the client's and its server's; a `splice`
//! relay up to two pipes more, four descriptors). On top of that the balancer needs one per
//! listener, one per health check in progress (one per checked server), the runtime API and its
//! connections, and a reserve for itself ([`RESERVED`]). A configuration whose explicit
//! `max_connections` cannot fit is refused naming the key; services that leave it unset keep
//! [`DEFAULT_MAX_CONNECTIONS`], with a warning when the limit cannot hold that many (past the
//! limit, accepts fail and the listeners back off: `accept`).

use crate::config::{Config, DEFAULT_MAX_CONNECTIONS, RelayKind};
use crate::error::BalancerError;

/// Descriptors kept for everything that is not a relayed connection or a listener: standard
/// streams, the runtime's epoll and wake-up descriptors, the runtime API's connections, the
/// pair link, log files, configuration reads.
pub const RESERVED: u64 = 64;

/// `rlim_t` is not 64 bits wide everywhere.
#[allow(clippy::unnecessary_cast)]
fn to_u64(v: libc::rlim_t) -> u64 {
    v as u64
}

/// Raises this process's soft open-file limit to its hard limit and returns the soft limit now
/// in force. When the hard limit is "unlimited", the kernel's ceiling (`fs.nr_open` on Linux)
/// is tried instead.
pub fn raise_nofile() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur >= lim.rlim_max {
        return Ok(to_u64(lim.rlim_cur));
    }
    let mut targets = vec![lim.rlim_max];
    if lim.rlim_max == libc::RLIM_INFINITY
        && let Some(n) = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|t| t.trim().parse::<libc::rlim_t>().ok())
    {
        targets.insert(0, n);
    }
    for t in targets {
        let new = libc::rlimit {
            rlim_cur: t,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `new` is a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
            return Ok(to_u64(t));
        }
    }
    // Could not raise it: the current soft limit stays.
    Ok(to_u64(lim.rlim_cur))
}

/// The soft open-file limit in force.
pub fn current_nofile() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(to_u64(lim.rlim_cur))
}

/// Descriptors one relayed connection of a service may hold.
fn per_connection(relay: RelayKind) -> u64 {
    match relay {
        RelayKind::Copy => 2,
        RelayKind::Splice => 6,
    }
}

/// Checks `config` against an open-file limit of `limit`: refuses explicit `max_connections`
/// that cannot fit (naming them). Services that leave it unset keep the default, and a warning
/// says how many connections the limit really holds: the balancer then relies on its accept
/// back-off when descriptors run out.
pub fn fit(config: Config, limit: u64) -> Result<Config, BalancerError> {
    let listeners: u64 = config.services.iter().map(|s| s.listen.len() as u64).sum();
    let checks: u64 = config
        .services
        .iter()
        .filter(|s| s.health.is_some())
        .map(|s| s.servers.len() as u64)
        .sum();
    let fixed = RESERVED + listeners + checks + u64::from(config.admin.is_some());
    let need = |explicit: bool| {
        config
            .services
            .iter()
            .filter(|s| s.max_connections_set == explicit)
            .map(|s| s.max_connections.saturating_mul(per_connection(s.relay)))
            .fold(0u64, u64::saturating_add)
    };
    let explicit = need(true);
    let how = "raise the hard limit (LimitNOFILE= in systemd, nofile in limits.conf) or lower it";
    let keys: Vec<String> = config
        .services
        .iter()
        .enumerate()
        .filter(|(_, s)| s.max_connections_set)
        .map(|(i, _)| format!("service[{i}].max_connections"))
        .collect();
    if !keys.is_empty() && fixed.saturating_add(explicit) > limit {
        return Err(BalancerError::Config {
            file: config.file.clone(),
            key: keys.join(" + "),
            problem: format!(
                "the connections need up to {} file descriptors ({} per connection, {} for \
                 listeners, health checks and the balancer itself) but the open-file limit is \
                 {limit}: {how}",
                fixed.saturating_add(explicit),
                if config.services.iter().any(|s| s.relay == RelayKind::Splice) {
                    "2, or 6 with relay = \"splice\","
                } else {
                    "2"
                },
                fixed
            ),
        });
    }
    let unset = need(false);
    let total = fixed.saturating_add(explicit).saturating_add(unset);
    if unset > 0 && total > limit {
        tracing::warn!(
            limit,
            needed = total,
            "services without max_connections (default {DEFAULT_MAX_CONNECTIONS}) may need more \
             file descriptors than the open-file limit allows; past it new clients wait in the \
             listen queue: set max_connections to fit"
        );
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra0: &str, extra1: &str) -> Config {
        let text = format!(
            "[[service]]\nname = \"a\"\nlisten = [\"127.0.0.1:0\"]\n{extra0}\n\
             [[service.server]]\nname = \"s\"\naddress = \"127.0.0.1:1\"\n\
             [[service]]\nname = \"b\"\nlisten = [\"127.0.0.1:1\"]\n{extra1}\n\
             [[service.server]]\nname = \"s\"\naddress = \"127.0.0.1:1\"\n"
        );
        Config::parse(&text, "b.toml").unwrap()
    }

    #[test]
    fn explicit_limits_that_do_not_fit_are_refused_naming_the_keys() {
        // 2 × 2 × 10,000 + reserve > 40,000.
        let c = cfg("max_connections = 10000", "max_connections = 10000");
        let e = fit(c.clone(), 40_000).unwrap_err().to_string();
        assert!(
            e.contains("service[0].max_connections + service[1].max_connections"),
            "{e}"
        );
        assert!(e.contains("open-file limit is 40000"), "{e}");
        let ok = fit(c, 41_000).unwrap();
        assert_eq!(ok.services[0].max_connections, 10_000);
        // splice counts six descriptors a connection.
        let c = cfg(
            "max_connections = 10000\nrelay = \"splice\"",
            "health = \"none\"",
        );
        let e = fit(c.clone(), 60_000).unwrap_err().to_string();
        assert!(e.contains("service[0].max_connections"), "{e}");
        assert!(fit(c, 61_000).is_ok());
    }

    #[test]
    fn unset_limits_keep_the_default() {
        let c = cfg("max_connections = 1000", "");
        // The default does not fit, but it is not a promise the file made: allowed (warned).
        let ok = fit(c.clone(), 10_000).unwrap();
        assert_eq!(ok.services[0].max_connections, 1000);
        assert_eq!(ok.services[1].max_connections, DEFAULT_MAX_CONNECTIONS);
        // The explicit one must fit even so.
        let e = fit(c, 2000).unwrap_err().to_string();
        assert!(e.contains("key `service[0].max_connections`"), "{e}");
        // Without any explicit value nothing is refused, however small the limit.
        assert!(fit(cfg("", ""), 64).is_ok());
    }

    #[test]
    fn the_limit_is_raised_to_the_hard_limit() {
        let soft = raise_nofile().unwrap();
        assert_eq!(current_nofile().unwrap(), soft);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid rlimit for getrlimit to fill.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        if lim.rlim_max != libc::RLIM_INFINITY {
            assert_eq!(soft, to_u64(lim.rlim_max));
        }
    }
}
