//! Statistics: the JSON of `GET /stats` and the Prometheus text of `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use serde::Serialize;

use crate::balancer::Inner;
use crate::clock::now_ms;
use crate::config::{Mode, PersistenceKind, SchedulerKind};
use crate::server::{AdminState, CheckDetail};

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// "active" or "passive" when this balancer is a pair member.
    pub pair_role: Option<String>,
    pub services: Vec<ServiceStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceStats {
    pub name: String,
    pub mode: Mode,
    pub scheduler: SchedulerKind,
    pub persistence: PersistenceKind,
    /// The addresses as bound.
    pub listen: Vec<String>,
    pub active: u64,
    pub total: u64,
    pub denied: u64,
    pub rejected_full: u64,
    pub no_server: u64,
    pub max_connections: u64,
    pub persistence_entries: usize,
    pub servers: Vec<ServerStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerStats {
    pub name: String,
    /// `ip:port`, or the bare IP when the server takes the port the client connected to.
    pub address: String,
    /// up, down, drain or maint.
    pub state: &'static str,
    pub admin: AdminState,
    pub health: &'static str,
    /// The weight in force (slow start applied).
    pub weight: u32,
    /// The weight without slow start (the runtime override, if one is set).
    pub base_weight: u32,
    pub configured_weight: u32,
    pub slow_start_permille: u32,
    pub active: u64,
    pub total: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connect_errors: u64,
    /// The latest health check, when the service has checks.
    pub check: Option<CheckReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub last: String,
    pub ago_ms: u64,
    pub took_ms: u64,
    pub successes: u32,
    pub failures: u32,
}

impl Stats {
    pub fn service(&self, name: &str) -> Option<&ServiceStats> {
        self.services.iter().find(|s| s.name == name)
    }
}

impl ServiceStats {
    pub fn server(&self, name: &str) -> Option<&ServerStats> {
        self.servers.iter().find(|s| s.name == name)
    }
}

pub(crate) fn collect(inner: &Inner) -> Stats {
    let (_, services) = inner.view();
    let snap = inner.snap.load();
    let now = now_ms();
    let mut out = Vec::new();
    for (cfg, shared, servers, bound) in services {
        let snap_svc = snap.by_name.get(&cfg.name).map(|&i| &snap.services[i]);
        let mut ss = Vec::new();
        for s in servers {
            let cand = snap_svc.and_then(|sv| {
                sv.cands
                    .iter()
                    .find(|c| std::sync::Arc::ptr_eq(&c.server, &s))
            });
            let check = cfg.health.as_ref().map(|_| {
                let d: CheckDetail = s.check.lock().unwrap_or_else(|p| p.into_inner()).clone();
                CheckReport {
                    ago_ms: if d.at_ms == 0 {
                        0
                    } else {
                        now.saturating_sub(d.at_ms)
                    },
                    last: if d.at_ms == 0 {
                        "not checked yet".into()
                    } else {
                        d.last
                    },
                    took_ms: d.took_ms,
                    successes: d.successes,
                    failures: d.failures,
                }
            });
            ss.push(ServerStats {
                address: s.address_text(),
                state: s.state_name(),
                admin: s.admin(),
                health: match (&cfg.health, s.is_up()) {
                    (None, _) => "unchecked",
                    (Some(_), true) => "up",
                    (Some(_), false) => "down",
                },
                weight: cand.map(|c| c.weight).unwrap_or(0),
                base_weight: s.weight(),
                configured_weight: s.configured_weight(),
                slow_start_permille: s.ramp_permille(cfg.slow_start.as_millis() as u64, now),
                active: s.active.load(Ordering::Relaxed),
                total: s.total.load(Ordering::Relaxed),
                bytes_in: s.bytes_in.load(Ordering::Relaxed),
                bytes_out: s.bytes_out.load(Ordering::Relaxed),
                connect_errors: s.connect_errors.load(Ordering::Relaxed),
                check,
                name: s.name.clone(),
            });
        }
        out.push(ServiceStats {
            name: cfg.name.clone(),
            mode: cfg.mode,
            scheduler: cfg.scheduler,
            persistence: cfg.persistence,
            listen: bound.iter().map(|a| a.to_string()).collect(),
            active: shared.active.load(Ordering::Relaxed),
            total: shared.total.load(Ordering::Relaxed),
            denied: shared.denied.load(Ordering::Relaxed),
            rejected_full: shared.rejected_full.load(Ordering::Relaxed),
            no_server: shared.no_server.load(Ordering::Relaxed),
            max_connections: cfg.max_connections,
            persistence_entries: shared.persist.len(),
            servers: ss,
        });
    }
    Stats {
        pair_role: inner.pair_role().map(|r| r.to_string()),
        services: out,
    }
}

/// A metric: name, type, help, and how to read it.
type Metric<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

/// Prometheus text exposition of `stats`.
pub fn prometheus(stats: &Stats) -> String {
    let mut o = String::new();
    let svc_metrics: [Metric<ServiceStats>; 5] = [
        (
            "mailfleet_balancer_service_active_connections",
            "gauge",
            "Open client connections.",
            |s| s.active,
        ),
        (
            "mailfleet_balancer_service_connections_total",
            "counter",
            "Client connections accepted.",
            |s| s.total,
        ),
        (
            "mailfleet_balancer_service_denied_total",
            "counter",
            "Clients refused by the allow/deny rules.",
            |s| s.denied,
        ),
        (
            "mailfleet_balancer_service_rejected_full_total",
            "counter",
            "Clients refused at max_connections.",
            |s| s.rejected_full,
        ),
        (
            "mailfleet_balancer_service_no_server_total",
            "counter",
            "Clients refused because no server could take them.",
            |s| s.no_server,
        ),
    ];
    for (name, kind, help, f) in svc_metrics {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in &stats.services {
            let _ = writeln!(o, "{name}{{service=\"{}\"}} {}", s.name, f(s));
        }
    }
    let srv_metrics: [Metric<ServerStats>; 7] = [
        (
            "mailfleet_balancer_server_up",
            "gauge",
            "1 when the server takes new clients (up and ready).",
            |s| (s.state == "up") as u64,
        ),
        (
            "mailfleet_balancer_server_weight",
            "gauge",
            "Weight in force (slow start applied).",
            |s| s.weight as u64,
        ),
        (
            "mailfleet_balancer_server_active_connections",
            "gauge",
            "Open connections to the server.",
            |s| s.active,
        ),
        (
            "mailfleet_balancer_server_connections_total",
            "counter",
            "Connections relayed to the server.",
            |s| s.total,
        ),
        (
            "mailfleet_balancer_server_bytes_in_total",
            "counter",
            "Bytes from clients to the server.",
            |s| s.bytes_in,
        ),
        (
            "mailfleet_balancer_server_bytes_out_total",
            "counter",
            "Bytes from the server to clients.",
            |s| s.bytes_out,
        ),
        (
            "mailfleet_balancer_server_connect_errors_total",
            "counter",
            "Failed connections to the server.",
            |s| s.connect_errors,
        ),
    ];
    for (name, kind, help, f) in srv_metrics {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for svc in &stats.services {
            for s in &svc.servers {
                let _ = writeln!(
                    o,
                    "{name}{{service=\"{}\",server=\"{}\"}} {}",
                    svc.name,
                    s.name,
                    f(s)
                );
            }
        }
    }
    o
}
